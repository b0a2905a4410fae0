//! Just enough HTTP/1.1 for a KBS: persistent connections (a request may
//! ask to close; errors and faults close), bounded reads (the message
//! reader is ztinit's own).

use std::io::{BufRead, Write};

use ztinit::kbs::http::{self, HttpError};

pub struct Request {
    pub method: String,
    /// Path without the query string.
    pub path: String,
    pub head: http::Head,
    pub body: Vec<u8>,
}

impl Request {
    /// The value of cookie `name`, if sent.
    pub fn cookie(&self, name: &str) -> Option<String> {
        self.head.headers_named("cookie").flat_map(|h| h.split(';')).find_map(|pair| {
            let (k, v) = pair.trim().split_once('=')?;
            (k == name).then(|| v.to_string())
        })
    }

    /// True when the client sent `Connection: close` (or spoke HTTP/1.0,
    /// which closes by default).
    pub fn wants_close(&self) -> bool {
        let close = self
            .head
            .header("connection")
            .is_some_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case("close")));
        close || self.head.start.ends_with("HTTP/1.0")
    }

    pub fn bearer(&self) -> Option<&str> {
        self.head.header("authorization")?.strip_prefix("Bearer ")
    }
}

pub enum ReadError {
    /// The peer closed, or the connection failed (e.g. no TLS): nothing to answer.
    Closed,
    TooLarge,
    Bad(String),
}

pub fn read_request<R: BufRead>(r: &mut R, max_body: usize) -> Result<Request, ReadError> {
    let head = match http::read_head(r) {
        Ok(Some(h)) => h,
        Ok(None) | Err(HttpError::Io(_)) => return Err(ReadError::Closed),
        Err(HttpError::TooLarge { .. }) => return Err(ReadError::TooLarge),
        Err(e) => return Err(ReadError::Bad(e.to_string())),
    };
    let mut parts = head.start.split(' ');
    let (Some(method), Some(target), Some(version), None) = (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(ReadError::Bad("invalid request line".into()));
    };
    if version != "HTTP/1.1" && version != "HTTP/1.0" {
        return Err(ReadError::Bad("unsupported HTTP version".into()));
    }
    let path = target.split('?').next().unwrap_or("").to_string();
    let (method, path) = (method.to_string(), path);
    let framing = http::framing(&head, false).map_err(|e| ReadError::Bad(e.to_string()))?;
    let body = match http::read_body(r, framing, max_body) {
        Ok(b) => b,
        Err(HttpError::TooLarge { .. } | HttpError::Announced { .. }) => return Err(ReadError::TooLarge),
        Err(HttpError::Io(_)) => return Err(ReadError::Closed),
        Err(e) => return Err(ReadError::Bad(e.to_string())),
    };
    Ok(Request { method, path, head, body })
}

pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn json(status: u16, body: Vec<u8>) -> Self {
        Self { status, headers: vec![("Content-Type".into(), "application/json".into())], body }
    }

    /// Trustee's error responses carry no Content-Type.
    pub fn error(status: u16, variant: &str, detail: impl Into<String>) -> Self {
        let info = ztinit::kbs::protocol::ErrorInformation::new(variant, detail);
        Self { status, headers: Vec::new(), body: serde_json::to_vec(&info).unwrap_or_default() }
    }

    pub fn text(status: u16, text: &str) -> Self {
        Self { status, headers: vec![("Content-Type".into(), "text/plain".into())], body: text.as_bytes().to_vec() }
    }

    /// The same answer, ending the connection (`Connection: close`).
    pub fn closing(self) -> Self {
        if self.closes() { self } else { self.with_header("Connection", "close".into()) }
    }

    pub fn closes(&self) -> bool {
        self.headers.iter().any(|(k, v)| k.eq_ignore_ascii_case("connection") && v.eq_ignore_ascii_case("close"))
    }

    pub fn with_header(mut self, name: &str, value: String) -> Self {
        self.headers.push((name.to_string(), value));
        self
    }

    /// Head and body in one write: one TLS record and one TCP segment, so
    /// no Nagle or delayed-ACK wait between them on the way to the guest.
    pub fn write_to<W: Write>(&self, w: &mut W) -> std::io::Result<()> {
        let mut bytes = self.head(self.body.len()).into_bytes();
        bytes.extend_from_slice(&self.body);
        w.write_all(&bytes)?;
        w.flush()
    }

    pub fn write_head<W: Write>(&self, w: &mut W, content_length: usize) -> std::io::Result<()> {
        w.write_all(self.head(content_length).as_bytes())
    }

    fn head(&self, content_length: usize) -> String {
        let mut head = format!("HTTP/1.1 {} {}\r\n", self.status, reason(self.status));
        for (k, v) in &self.headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        head.push_str(&format!("Content-Length: {content_length}\r\n\r\n"));
        head
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        413 => "Payload Too Large",
        _ => "Error",
    }
}

/// An HTTP-date (RFC 9110 §5.6.7) for `Expires`.
// civil_from_days keeps every value in range: days < 2^48 (u64 seconds /
// 86400), the weekday and month indexes are 0..7 and 0..12.
#[allow(clippy::cast_possible_wrap, clippy::cast_sign_loss, clippy::cast_possible_truncation)]
pub fn http_date(t: std::time::SystemTime) -> String {
    let secs = t.duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let days = (secs / 86_400) as i64;
    let (h, m, s) = ((secs % 86_400) / 3600, (secs % 3600) / 60, secs % 60);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    const WD: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MON: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
    format!("{}, {d:02} {} {year} {h:02}:{m:02}:{s:02} GMT", WD[days.rem_euclid(7) as usize], MON[(month - 1) as usize])
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn http_dates() {
        assert_eq!(http_date(UNIX_EPOCH), "Thu, 01 Jan 1970 00:00:00 GMT");
        // The Set-Cookie captured from a live Trustee (research/kbs.md §2.1).
        assert_eq!(http_date(UNIX_EPOCH + Duration::from_secs(1_795_917_474)), "Sun, 29 Nov 2026 01:57:54 GMT");
    }

    #[test]
    fn requests_parse_with_cookies_and_bearer() {
        let raw = b"GET /kbs/v0/resource/a/b/c?x=1 HTTP/1.1\r\nHost: h\r\nCookie: a=1; kbs-session-id=abc\r\nAuthorization: Bearer t.k.\r\n\r\n";
        let r = read_request(&mut &raw[..], 10).ok().unwrap();
        assert_eq!((r.method.as_str(), r.path.as_str()), ("GET", "/kbs/v0/resource/a/b/c"));
        assert_eq!(r.cookie("kbs-session-id").as_deref(), Some("abc"));
        assert_eq!(r.bearer(), Some("t.k."));
    }

    #[test]
    fn oversized_bodies_are_refused() {
        let raw = b"POST /kbs/v0/auth HTTP/1.1\r\nContent-Length: 11\r\n\r\nhello world";
        assert!(matches!(read_request(&mut &raw[..], 10), Err(ReadError::TooLarge)));
    }
}
