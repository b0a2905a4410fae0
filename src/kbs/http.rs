//! A small HTTP/1.1 message reader with hard limits, shared by the KBS
//! client and the development KBS. Everything it reads is hostile input:
//! every line, the number of headers and the body are capped, and framing
//! is strict (one `Content-Length`, or `Transfer-Encoding: chunked`).

use std::io::{self, BufRead, Read};

/// Limits on one message head.
pub const MAX_LINE: usize = 8 * 1024;
pub const MAX_HEADERS: usize = 64;

#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("{0}")]
    Io(#[from] io::Error),
    #[error("malformed HTTP message: {0}")]
    Malformed(String),
    #[error("HTTP {what} larger than {limit} bytes")]
    TooLarge { what: &'static str, limit: usize },
    /// Refused from its `Content-Length`, before reading any of it.
    #[error("HTTP body of {length} bytes announced, more than the {limit} accepted")]
    Announced { length: usize, limit: usize },
}

/// Start line and headers of a message.
#[derive(Debug, Clone, Default)]
pub struct Head {
    pub start: String,
    pub headers: Vec<(String, String)>,
}

impl Head {
    /// The first header named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    /// Every header named `name`.
    pub fn headers_named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.headers.iter().filter(move |(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

/// Reads one CRLF (or LF) terminated line of at most `max` bytes, without
/// the terminator. `Ok(None)` at a clean end of stream before any byte.
fn read_line<R: BufRead>(r: &mut R, max: usize) -> Result<Option<String>, HttpError> {
    let mut buf = Vec::new();
    r.by_ref().take(max as u64 + 2).read_until(b'\n', &mut buf)?;
    if buf.is_empty() {
        return Ok(None);
    }
    if buf.last() != Some(&b'\n') {
        if buf.len() > max {
            return Err(HttpError::TooLarge { what: "header line", limit: max });
        }
        return Err(HttpError::Malformed("connection closed inside a line".into()));
    }
    buf.pop();
    if buf.last() == Some(&b'\r') {
        buf.pop();
    }
    String::from_utf8(buf).map(Some).map_err(|_| HttpError::Malformed("non-UTF-8 bytes in the message head".into()))
}

/// Reads a start line and headers. `Ok(None)` when the peer closed the
/// connection before sending anything.
pub fn read_head<R: BufRead>(r: &mut R) -> Result<Option<Head>, HttpError> {
    let Some(start) = read_line(r, MAX_LINE)? else {
        return Ok(None);
    };
    if start.is_empty() || start.bytes().any(|b| b.is_ascii_control()) {
        return Err(HttpError::Malformed("empty or invalid start line".into()));
    }
    let mut head = Head { start, headers: Vec::new() };
    loop {
        let line =
            read_line(r, MAX_LINE)?.ok_or_else(|| HttpError::Malformed("connection closed inside the head".into()))?;
        if line.is_empty() {
            return Ok(Some(head));
        }
        if head.headers.len() == MAX_HEADERS {
            return Err(HttpError::TooLarge { what: "header count", limit: MAX_HEADERS });
        }
        if line.starts_with([' ', '\t']) {
            return Err(HttpError::Malformed("folded header line".into()));
        }
        let (name, value) =
            line.split_once(':').ok_or_else(|| HttpError::Malformed("header line without ':'".into()))?;
        if name.is_empty() || !name.bytes().all(is_token_char) {
            return Err(HttpError::Malformed("invalid header name".into()));
        }
        let value = value.trim_matches([' ', '\t']);
        if value.bytes().any(|b| b.is_ascii_control() && b != b'\t') {
            return Err(HttpError::Malformed(format!("control character in header {name}")));
        }
        head.headers.push((name.to_string(), value.to_string()));
    }
}

pub fn is_token_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// How the body of a message is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    None,
    Length(usize),
    Chunked,
    /// Until the peer closes (responses only).
    Close,
}

/// The framing announced by `head`. `until_close_allowed` is true for
/// responses, which may be delimited by the end of the connection.
pub fn framing(head: &Head, until_close_allowed: bool) -> Result<Framing, HttpError> {
    let mut te = head.headers_named("transfer-encoding");
    if let Some(t) = te.next() {
        if te.next().is_some() || !t.eq_ignore_ascii_case("chunked") {
            return Err(HttpError::Malformed(format!("unsupported Transfer-Encoding {t:?}")));
        }
        if head.header("content-length").is_some() {
            return Err(HttpError::Malformed("both Transfer-Encoding and Content-Length".into()));
        }
        return Ok(Framing::Chunked);
    }
    let mut lengths = head.headers_named("content-length");
    match lengths.next() {
        Some(l) => {
            if lengths.any(|other| other != l) {
                return Err(HttpError::Malformed("conflicting Content-Length headers".into()));
            }
            if l.is_empty() || !l.bytes().all(|b| b.is_ascii_digit()) || l.len() > 18 {
                return Err(HttpError::Malformed(format!("invalid Content-Length {l:?}")));
            }
            l.parse::<usize>().map(Framing::Length).map_err(|_| HttpError::Malformed("invalid Content-Length".into()))
        }
        None if until_close_allowed => Ok(Framing::Close),
        None => Ok(Framing::None),
    }
}

/// Reads a body of at most `max` bytes.
pub fn read_body<R: BufRead>(r: &mut R, framing: Framing, max: usize) -> Result<Vec<u8>, HttpError> {
    let too_large = || HttpError::TooLarge { what: "body", limit: max };
    match framing {
        Framing::None => Ok(Vec::new()),
        Framing::Length(n) => {
            if n > max {
                return Err(HttpError::Announced { length: n, limit: max });
            }
            let mut body = vec![0u8; n];
            r.read_exact(&mut body).map_err(|e| match e.kind() {
                io::ErrorKind::UnexpectedEof => HttpError::Malformed("connection closed inside the body".into()),
                _ => HttpError::Io(e),
            })?;
            Ok(body)
        }
        Framing::Close => {
            let mut body = Vec::new();
            r.take(max as u64 + 1).read_to_end(&mut body)?;
            if body.len() > max {
                return Err(too_large());
            }
            Ok(body)
        }
        Framing::Chunked => {
            let mut body = Vec::new();
            loop {
                let line = read_line(r, 256)?
                    .ok_or_else(|| HttpError::Malformed("connection closed inside a chunk".into()))?;
                let size = line.split(';').next().unwrap_or("").trim();
                if size.is_empty() || size.len() > 8 || !size.bytes().all(|b| b.is_ascii_hexdigit()) {
                    return Err(HttpError::Malformed(format!("invalid chunk size {size:?}")));
                }
                let size =
                    usize::from_str_radix(size, 16).map_err(|_| HttpError::Malformed("invalid chunk size".into()))?;
                if size == 0 {
                    // Trailers, up to the empty line.
                    for _ in 0..=MAX_HEADERS {
                        match read_line(r, MAX_LINE)? {
                            Some(l) if l.is_empty() => return Ok(body),
                            Some(_) => {}
                            None => {
                                return Err(HttpError::Malformed("connection closed inside trailers".into()));
                            }
                        }
                    }
                    return Err(HttpError::TooLarge { what: "trailer count", limit: MAX_HEADERS });
                }
                if body.len() + size > max {
                    return Err(too_large());
                }
                let start = body.len();
                body.resize(start + size, 0);
                r.read_exact(&mut body[start..])
                    .map_err(|_| HttpError::Malformed("connection closed inside a chunk".into()))?;
                let mut crlf = [0u8; 2];
                if r.read_exact(&mut crlf).is_err() || &crlf != b"\r\n" {
                    return Err(HttpError::Malformed("chunk not followed by CRLF".into()));
                }
            }
        }
    }
}

/// A parsed response status line.
pub fn parse_status_line(line: &str) -> Result<u16, HttpError> {
    let mut parts = line.splitn(3, ' ');
    let version = parts.next().unwrap_or("");
    let code = parts.next().unwrap_or("");
    if !(version == "HTTP/1.1" || version == "HTTP/1.0") || code.len() != 3 || !code.bytes().all(|b| b.is_ascii_digit())
    {
        return Err(HttpError::Malformed(format!("invalid status line {:?}", truncate(line, 64))));
    }
    code.parse().map_err(|_| HttpError::Malformed("invalid status code".into()))
}

/// At most `n` characters of `s`, for messages about hostile input.
pub fn truncate(s: &str, n: usize) -> String {
    s.chars().take(n).map(|c| if c.is_control() { '?' } else { c }).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(raw: &[u8], max: usize) -> Result<(Head, Vec<u8>), HttpError> {
        let mut r = io::BufReader::new(raw);
        let head = read_head(&mut r)?.unwrap();
        let f = framing(&head, true)?;
        let body = read_body(&mut r, f, max)?;
        Ok((head, body))
    }

    #[test]
    fn content_length_body() {
        let (h, b) = parse(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX: y\r\n\r\nhello", 10).unwrap();
        assert_eq!(parse_status_line(&h.start).unwrap(), 200);
        assert_eq!(h.header("x"), Some("y"));
        assert_eq!(b, b"hello");
    }

    #[test]
    fn chunked_body_with_extensions_and_trailers() {
        let raw = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nT: v\r\n\r\n";
        assert_eq!(parse(raw, 100).unwrap().1, b"hello world");
    }

    #[test]
    fn until_close_body() {
        assert_eq!(parse(b"HTTP/1.0 200 OK\r\n\r\nabc", 10).unwrap().1, b"abc");
    }

    #[test]
    fn size_caps() {
        let e = parse(b"HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\nhello world", 10).unwrap_err();
        assert!(matches!(e, HttpError::Announced { length: 11, limit: 10 }), "{e}");
        assert_eq!(e.to_string(), "HTTP body of 11 bytes announced, more than the 10 accepted");
        let e = parse(b"HTTP/1.1 200 OK\r\n\r\nhello world", 10).unwrap_err();
        assert!(matches!(e, HttpError::TooLarge { what: "body", .. }), "{e}");
        let raw = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n6\r\nhello \r\n5\r\nworld\r\n0\r\n\r\n";
        assert!(matches!(parse(raw, 10).unwrap_err(), HttpError::TooLarge { what: "body", .. }));
        let long = format!("HTTP/1.1 200 OK\r\nX: {}\r\n\r\n", "a".repeat(MAX_LINE));
        assert!(matches!(parse(long.as_bytes(), 10).unwrap_err(), HttpError::TooLarge { what: "header line", .. }));
        let many = format!("HTTP/1.1 200 OK\r\n{}\r\n", "X: y\r\n".repeat(MAX_HEADERS + 1));
        assert!(matches!(parse(many.as_bytes(), 10).unwrap_err(), HttpError::TooLarge { what: "header count", .. }));
    }

    #[test]
    fn malformed_messages() {
        for raw in [
            &b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhel"[..],
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello",
            b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhelloXX0\r\n\r\n",
            b"HTTP/1.1 200 OK\r\n folded\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nNo colon\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-",
        ] {
            assert!(matches!(parse(raw, 100), Err(HttpError::Malformed(_))), "{:?}", String::from_utf8_lossy(raw));
        }
        for line in ["HTTP/2 200 OK", "HTTP/1.1 20 OK", "SSH-2.0-OpenSSH", "HTTP/1.1 abc"] {
            assert!(parse_status_line(line).is_err(), "{line}");
        }
    }

    #[test]
    fn clean_close_before_anything_is_not_an_error() {
        assert!(read_head(&mut io::BufReader::new(&b""[..])).unwrap().is_none());
    }
}
