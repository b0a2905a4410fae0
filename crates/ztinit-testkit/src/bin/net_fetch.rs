//! `net-fetch URL`: one plain HTTP/1.1 GET of `http://HOST:PORT/PATH`
//! (std TcpStream, no TLS, no redirects), the body read to its end and
//! discarded, timed from the connect to the last byte. Prints
//! `testkit: net-fetch: N bytes in M ms (R MiB/s)`: `cargo xtask bench`
//! sets it beside the image pull of the same blob over the same guest
//! network in the same boot (the `image-bench` scenario). Exits 1 on any
//! failure (a status other than 200, a body shorter than its
//! Content-Length).

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use ztinit_testkit::files::mib_per_s;
use ztinit_testkit::say;

/// Read size: what the image helper's blob copy uses, and more.
const CHUNK: usize = 256 << 10;
/// The response head's cap.
const MAX_HEAD: usize = 64 << 10;
const TIMEOUT: Duration = Duration::from_secs(60);

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [url] = args.as_slice() else {
        say("testkit: net-fetch: FAILED: usage: net-fetch http://HOST:PORT/PATH");
        std::process::exit(2);
    };
    match fetch(url) {
        Ok((bytes, took)) => {
            say(&format!(
                "testkit: net-fetch: {bytes} bytes in {} ms ({:.1} MiB/s)",
                took.as_millis(),
                mib_per_s(bytes, took)
            ));
        }
        Err(e) => {
            say(&format!("testkit: net-fetch: FAILED: {url}: {e}"));
            std::process::exit(1);
        }
    }
}

/// `http://HOST:PORT/PATH` → (HOST:PORT, /PATH). HOST is an IPv4 address:
/// the guest has no resolver.
fn split_url(url: &str) -> Result<(SocketAddr, &str, &str), String> {
    let rest = url.strip_prefix("http://").ok_or("not an http:// URL")?;
    let (authority, path) = rest.find('/').map_or((rest, "/"), |i| (&rest[..i], &rest[i..]));
    let addr = authority.parse().map_err(|_| format!("{authority:?} is not IPv4:PORT"))?;
    Ok((addr, authority, path))
}

fn fetch(url: &str) -> Result<(u64, Duration), String> {
    let (addr, host, path) = split_url(url)?;
    let start = Instant::now();
    let mut s = TcpStream::connect_timeout(&addr, TIMEOUT).map_err(|e| format!("connect {addr}: {e}"))?;
    s.set_read_timeout(Some(TIMEOUT)).map_err(|e| e.to_string())?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nAccept: */*\r\nConnection: close\r\n\r\n");
    s.write_all(request.as_bytes()).map_err(|e| format!("send: {e}"))?;
    let mut buf = vec![0u8; CHUNK];
    let (head, mut body) = read_head(&mut s, &mut buf)?;
    let length = parse_head(&head)?;
    loop {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => body += u64::try_from(n).map_err(|e| e.to_string())?,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(format!("after {body} bytes of the body: {e}")),
        }
    }
    let took = start.elapsed();
    match length {
        Some(want) if want != body => Err(format!("{body} bytes of a body of {want}")),
        _ => Ok((body, took)),
    }
}

/// Reads up to the blank line; returns the head and how many body bytes
/// came with it.
fn read_head(s: &mut TcpStream, buf: &mut [u8]) -> Result<(String, u64), String> {
    let mut head = Vec::new();
    loop {
        let n = match s.read(buf) {
            Ok(0) => return Err("the connection closed before the response head ended".into()),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(format!("response head: {e}")),
        };
        head.extend_from_slice(&buf[..n]);
        if let Some(end) = head.windows(4).position(|w| w == b"\r\n\r\n") {
            let extra = u64::try_from(head.len() - end - 4).map_err(|e| e.to_string())?;
            head.truncate(end);
            return Ok((String::from_utf8_lossy(&head).into_owned(), extra));
        }
        if head.len() > MAX_HEAD {
            return Err(format!("a response head over {MAX_HEAD} bytes"));
        }
    }
}

/// Checks the status (200) and that the body is not chunked; returns its
/// Content-Length, if given (else the body ends with the connection).
fn parse_head(head: &str) -> Result<Option<u64>, String> {
    let mut lines = head.split("\r\n");
    let status = lines.next().unwrap_or_default();
    let code = status.split_whitespace().nth(1);
    if !status.starts_with("HTTP/1.") || code != Some("200") {
        return Err(format!("status {status:?}, not 200"));
    }
    let mut length = None;
    for line in lines {
        let Some((name, value)) = line.split_once(':') else { continue };
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            length = Some(value.parse().map_err(|_| format!("Content-Length {value:?}"))?);
        } else if name.eq_ignore_ascii_case("transfer-encoding") && !value.eq_ignore_ascii_case("identity") {
            return Err(format!("Transfer-Encoding {value:?} is not supported"));
        }
    }
    Ok(length)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_and_heads() {
        let (addr, host, path) = split_url("http://10.0.2.101:5000/v2/app/blobs/sha256:ab").unwrap();
        assert_eq!(
            (addr.to_string().as_str(), host, path),
            ("10.0.2.101:5000", "10.0.2.101:5000", "/v2/app/blobs/sha256:ab")
        );
        assert_eq!(split_url("http://10.0.2.101:5000").unwrap().2, "/");
        assert!(split_url("https://10.0.2.101:5000/").is_err());
        assert!(split_url("http://registry:5000/").is_err());
        let ok = "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\ncontent-length: 42";
        assert_eq!(parse_head(ok), Ok(Some(42)));
        assert_eq!(parse_head("HTTP/1.0 200 OK"), Ok(None));
        assert!(parse_head("HTTP/1.1 404 Not Found\r\nContent-Length: 0").unwrap_err().contains("404"));
        assert!(parse_head("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked").unwrap_err().contains("chunked"));
        assert!(parse_head("HTTP/1.1 200 OK\r\nContent-Length: x").is_err());
    }
}
