//! One HTTP/1.1 connection to one origin: TCP (or rustls over TCP) whose
//! every read and write is bounded by the read timeout and the overall
//! deadline, the request written in one go, the response head read with
//! `ztinit::kbs::http`, and the body streamed through `Body` with strict
//! Content-Length or chunked framing.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection, StreamOwned};
use ztinit::kbs::http::{self, Framing, Head, HttpError};

use super::Fail;
use super::RegistryErrorKind as Kind;
use super::url::Origin;

/// Longest chunk-size line (with extensions) accepted.
const MAX_CHUNK_LINE: usize = 256;
/// Interim (1xx) responses skipped before giving up.
const MAX_INTERIM: usize = 4;

pub(super) struct DeadlineStream {
    inner: TcpStream,
    deadline: Instant,
    read_timeout: Duration,
    peer: String,
}

impl DeadlineStream {
    fn budget(&self) -> io::Result<Duration> {
        let left = self.deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::Error::new(io::ErrorKind::TimedOut, "deadline reached"));
        }
        Ok(left.min(self.read_timeout))
    }

    /// The socket's EAGAIN ("Resource temporarily unavailable") said as the
    /// timeout it is.
    fn timed_out(&self, e: io::Error, what: &str, waited: Duration) -> io::Error {
        match e.kind() {
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => io::Error::new(
                io::ErrorKind::TimedOut,
                format!("{what} {} within {} ms", self.peer, waited.as_millis()),
            ),
            _ => e,
        }
    }
}

impl Read for DeadlineStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let t = self.budget()?;
        self.inner.set_read_timeout(Some(t))?;
        self.inner.read(buf).map_err(|e| self.timed_out(e, "no data from", t))
    }
}

impl Write for DeadlineStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let t = self.budget()?;
        self.inner.set_write_timeout(Some(t))?;
        self.inner.write(buf).map_err(|e| self.timed_out(e, "no data taken by", t))
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

pub(super) enum Stream {
    Plain(DeadlineStream),
    Tls(Box<StreamOwned<ClientConnection, DeadlineStream>>),
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.read(buf),
            Stream::Tls(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.write(buf),
            Stream::Tls(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Stream::Plain(s) => s.flush(),
            Stream::Tls(s) => s.flush(),
        }
    }
}

pub(super) struct Conn {
    pub origin: Origin,
    reader: BufReader<Stream>,
}

/// The knobs a connection needs.
pub(super) struct Limits {
    pub connect_timeout: Duration,
    pub read_timeout: Duration,
    pub deadline: Instant,
}

/// TLS failures (certificate refused, bad handshake) are never retried:
/// they will not fix themselves and may be an attack. Other socket errors
/// are.
pub(super) fn io_failure(e: io::Error, origin: &Origin) -> Fail {
    if let Some(tls) = e.get_ref().and_then(|inner| inner.downcast_ref::<rustls::Error>()) {
        return Fail::Fatal(Kind::Tls { origin: origin.to_string(), source: tls.clone() });
    }
    match e.kind() {
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => Fail::Retry(format!("timed out: {e}")),
        _ => Fail::Retry(format!("{origin}: {e}")),
    }
}

impl Conn {
    pub fn open(origin: &Origin, tls: Option<&Arc<ClientConfig>>, limits: &Limits) -> Result<Self, Fail> {
        let addrs = (origin.host.as_str(), origin.port)
            .to_socket_addrs()
            .map_err(|e| Fail::Retry(format!("cannot resolve {}: {e}", origin.host)))?;
        let mut last = format!("{} has no address", origin.host);
        let mut tcp = None;
        for addr in addrs {
            let left = limits.deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(Fail::Retry(format!("deadline reached while connecting to {origin}")));
            }
            match TcpStream::connect_timeout(&addr, limits.connect_timeout.min(left)) {
                Ok(s) => {
                    tcp = Some(s);
                    break;
                }
                Err(e) => last = format!("connect to {addr}: {e}"),
            }
        }
        let tcp = tcp.ok_or(Fail::Retry(last))?;
        // Requests are written whole; Nagle would only delay them.
        let _ = tcp.set_nodelay(true);
        let peer = tcp.peer_addr().map_or_else(|_| origin.host_header(), |a| a.to_string());
        let sock = DeadlineStream { inner: tcp, deadline: limits.deadline, read_timeout: limits.read_timeout, peer };
        let stream = match (origin.scheme, tls) {
            (ztinit::kbs::transport::Scheme::Http, _) => Stream::Plain(sock),
            (ztinit::kbs::transport::Scheme::Https, Some(config)) => {
                let name = ServerName::try_from(origin.host.clone())
                    .map_err(|e| Fail::Fatal(Kind::Setup(format!("TLS server name {:?}: {e}", origin.host))))?;
                let conn = ClientConnection::new(config.clone(), name)
                    .map_err(|e| Fail::Fatal(Kind::Setup(format!("TLS to {origin}: {e}"))))?;
                Stream::Tls(Box::new(StreamOwned::new(conn, sock)))
            }
            (ztinit::kbs::transport::Scheme::Https, None) => {
                return Err(Fail::Fatal(Kind::Setup(format!(
                    "{origin} is https but the registry is configured for plain http (no certificate to trust)"
                ))));
            }
        };
        Ok(Self { origin: origin.clone(), reader: BufReader::new(stream) })
    }

    /// Writes `request` and reads the response head. `reused`: this
    /// connection served a previous request, so a close before any answer
    /// is the server's idle timeout (`Fail::Stale`), not a failure.
    pub fn exchange(mut self, request: &[u8], reused: bool) -> Result<Response, Fail> {
        let origin = self.origin.clone();
        let stale = |e: &io::Error| {
            reused
                && matches!(
                    e.kind(),
                    io::ErrorKind::UnexpectedEof
                        | io::ErrorKind::ConnectionReset
                        | io::ErrorKind::ConnectionAborted
                        | io::ErrorKind::BrokenPipe
                )
        };
        let stream = self.reader.get_mut();
        // A server may answer (e.g. 413) and close before reading all of the
        // request: its answer then says more than the failed write.
        let mut write_error = stream.write_all(request).and_then(|()| stream.flush()).err();
        for interim in 0..MAX_INTERIM {
            let head = match http::read_head(&mut self.reader) {
                Ok(Some(h)) => h,
                failed => {
                    let first = interim == 0;
                    if let Some(e) = write_error.take() {
                        return Err(if first && stale(&e) {
                            Fail::Stale(e.to_string())
                        } else {
                            io_failure(e, &origin)
                        });
                    }
                    return Err(match failed {
                        Err(HttpError::Io(e)) if first && stale(&e) => Fail::Stale(e.to_string()),
                        Err(HttpError::Io(e)) => io_failure(e, &origin),
                        Err(e) => Fail::Fatal(Kind::Http { origin: origin.to_string(), source: e }),
                        Ok(_) if first && reused => Fail::Stale("closed".into()),
                        Ok(_) => Fail::Retry(format!("{origin} closed the connection before answering")),
                    });
                }
            };
            let status = http::parse_status_line(&head.start)
                .map_err(|e| Fail::Fatal(Kind::Http { origin: origin.to_string(), source: e }))?;
            if (100..200).contains(&status) {
                continue;
            }
            let framing = if matches!(status, 204 | 304) {
                Framing::None
            } else {
                http::framing(&head, true)
                    .map_err(|e| Fail::Fatal(Kind::Http { origin: origin.to_string(), source: e }))?
            };
            if let Some(enc) = head.header("content-encoding")
                && !enc.eq_ignore_ascii_case("identity")
            {
                return Err(Fail::Fatal(Kind::Invalid(format!(
                    "{origin} sent Content-Encoding {:?}, which was not asked for",
                    http::truncate(enc, 40)
                ))));
            }
            let close =
                head.header("connection").is_some_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case("close")))
                    || head.start.starts_with("HTTP/1.0");
            let reusable = !close && !matches!(framing, Framing::Close);
            let state = match framing {
                Framing::None | Framing::Length(0) => State::Done,
                Framing::Length(n) => State::Length(u64::try_from(n).unwrap_or(u64::MAX)),
                Framing::Chunked => State::ChunkSize,
                Framing::Close => State::Close,
            };
            let announced = match framing {
                Framing::Length(n) => Some(u64::try_from(n).unwrap_or(u64::MAX)),
                Framing::None => Some(0),
                _ => None,
            };
            return Ok(Response { status, head, body: Body { conn: self, state, reusable, announced } });
        }
        Err(Fail::Fatal(Kind::Http {
            origin: origin.to_string(),
            source: HttpError::Malformed("too many interim responses".into()),
        }))
    }
}

pub(super) struct Response {
    pub status: u16,
    pub head: Head,
    pub body: Body,
}

enum State {
    Length(u64),
    ChunkSize,
    Chunk(u64),
    Close,
    Done,
}

/// A response body, read as its framing says. Framing violations are
/// `InvalidData` errors; an early close is `UnexpectedEof`.
pub(super) struct Body {
    conn: Conn,
    state: State,
    reusable: bool,
    announced: Option<u64>,
}

fn invalid(why: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, why.to_string())
}

fn early_eof() -> io::Error {
    io::Error::new(io::ErrorKind::UnexpectedEof, "connection closed inside the body")
}

impl Body {
    /// The Content-Length, when the body has one (0 for no body).
    pub fn announced(&self) -> Option<u64> {
        self.announced
    }

    pub fn origin(&self) -> &Origin {
        &self.conn.origin
    }

    /// False for a body that ends only when the server closes.
    pub fn delimited(&self) -> bool {
        !matches!(self.state, State::Close)
    }

    /// The connection, when the whole body was read and the server allows
    /// another request on it.
    pub fn into_reusable(self) -> Option<Conn> {
        (matches!(self.state, State::Done) && self.reusable && self.conn.reader.buffer().is_empty())
            .then_some(self.conn)
    }

    fn line(&mut self, max: usize) -> io::Result<Vec<u8>> {
        let mut line = Vec::new();
        let limit = u64::try_from(max).unwrap_or(u64::MAX).saturating_add(2);
        (&mut self.conn.reader).take(limit).read_until(b'\n', &mut line)?;
        if line.last() != Some(&b'\n') {
            return Err(if line.len() > max { invalid("chunk line too long") } else { early_eof() });
        }
        line.pop();
        if line.last() == Some(&b'\r') {
            line.pop();
        }
        Ok(line)
    }

    fn chunk_size(&mut self) -> io::Result<u64> {
        let line = self.line(MAX_CHUNK_LINE)?;
        let size = line.split(|&b| b == b';').next().unwrap_or(&[]);
        let size = size.trim_ascii();
        if size.is_empty() || size.len() > 15 || !size.iter().all(u8::is_ascii_hexdigit) {
            return Err(invalid("invalid chunk size"));
        }
        let text = std::str::from_utf8(size).map_err(|_| invalid("invalid chunk size"))?;
        u64::from_str_radix(text, 16).map_err(|_| invalid("invalid chunk size"))
    }

    fn trailers(&mut self) -> io::Result<()> {
        for _ in 0..=http::MAX_HEADERS {
            if self.line(http::MAX_LINE)?.is_empty() {
                return Ok(());
            }
        }
        Err(invalid("too many trailer lines"))
    }

    fn read_some(&mut self, buf: &mut [u8], left: u64) -> io::Result<usize> {
        let want = usize::try_from(left).unwrap_or(usize::MAX).min(buf.len());
        let n = self.conn.reader.read(&mut buf[..want])?;
        if n == 0 && want > 0 {
            return Err(early_eof());
        }
        Ok(n)
    }
}

impl Read for Body {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        loop {
            match self.state {
                State::Done => return Ok(0),
                State::Close => {
                    let n = self.conn.reader.read(buf)?;
                    if n == 0 {
                        self.state = State::Done;
                    }
                    return Ok(n);
                }
                State::Length(left) => {
                    let n = self.read_some(buf, left)?;
                    let left = left - u64::try_from(n).unwrap_or(left);
                    self.state = if left == 0 { State::Done } else { State::Length(left) };
                    return Ok(n);
                }
                State::ChunkSize => {
                    let size = self.chunk_size()?;
                    if size == 0 {
                        self.trailers()?;
                        self.state = State::Done;
                    } else {
                        self.state = State::Chunk(size);
                    }
                }
                State::Chunk(left) => {
                    let n = self.read_some(buf, left)?;
                    let left = left - u64::try_from(n).unwrap_or(left);
                    if left == 0 {
                        let mut crlf = [0u8; 2];
                        self.conn.reader.read_exact(&mut crlf)?;
                        if &crlf != b"\r\n" {
                            return Err(invalid("chunk not followed by CRLF"));
                        }
                        self.state = State::ChunkSize;
                    } else {
                        self.state = State::Chunk(left);
                    }
                    return Ok(n);
                }
            }
        }
    }
}
