//! HTTP(S) to the KBS: one kept-alive connection for the whole
//! conversation (a TLS handshake under a confidential VM's emulated or
//! trapped crypto costs more than the request), TLS through rustls with
//! only the pinned certificate or CA from the baked configuration, connect
//! and read timeouts, an overall deadline that also bounds slow senders,
//! bounded retries with exponential backoff, and size caps on every body.

use std::io::{self, BufReader, Read, Write};
use std::net::{IpAddr, TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, ClientConnection, DigitallySignedStruct, RootCertStore, SignatureScheme, StreamOwned};

use super::http::{self, Framing, Head, HttpError};

/// Longest pause between two attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(8);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    Http,
    Https,
}

/// A url that is not a KBS base URL.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{url:?} is not a valid KBS url: {why}")]
pub struct EndpointError {
    /// The url, shortened for messages.
    pub url: String,
    pub why: &'static str,
}

/// The KBS base URL, parsed strictly.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub scheme: Scheme,
    /// Host name or IP address (IPv6 without brackets).
    pub host: String,
    pub port: u16,
    /// Path prefix before `/kbs/v0`, without a trailing slash ("" for none).
    pub base_path: String,
}

impl Endpoint {
    pub fn parse(url: &str) -> Result<Self, EndpointError> {
        let bad = |why: &'static str| EndpointError { url: http::truncate(url, 120), why };
        let (scheme, rest) = if let Some(r) = url.strip_prefix("https://") {
            (Scheme::Https, r)
        } else if let Some(r) = url.strip_prefix("http://") {
            (Scheme::Http, r)
        } else {
            return Err(bad("the scheme must be https:// (or http:// with insecure_http)"));
        };
        let (authority, path) = match rest.find('/') {
            Some(i) => rest.split_at(i),
            None => (rest, ""),
        };
        if authority.contains('@') {
            return Err(bad("user information is not allowed"));
        }
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let (addr, after) = v6.split_once(']').ok_or_else(|| bad("unterminated IPv6 address"))?;
            addr.parse::<std::net::Ipv6Addr>().map_err(|_| bad("invalid IPv6 address"))?;
            let port = match after {
                "" => None,
                p => Some(p.strip_prefix(':').ok_or_else(|| bad("junk after the IPv6 address"))?),
            };
            (addr.to_string(), port)
        } else {
            match authority.rsplit_once(':') {
                Some((h, p)) => (h.to_string(), Some(p)),
                None => (authority.to_string(), None),
            }
        };
        let valid_host = !host.is_empty()
            && host.len() <= 253
            && (host.parse::<IpAddr>().is_ok()
                || host.split('.').all(|l| {
                    !l.is_empty() && l.len() <= 63 && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                }));
        if !valid_host {
            return Err(bad("invalid host"));
        }
        let port = match port {
            None => match scheme {
                Scheme::Http => 80,
                Scheme::Https => 443,
            },
            Some(p) => match p.parse::<u16>() {
                Ok(n) if n > 0 && p.bytes().all(|b| b.is_ascii_digit()) => n,
                _ => return Err(bad("invalid port")),
            },
        };
        let base_path = path.trim_end_matches('/');
        let path_ok = base_path.bytes().all(|b| b.is_ascii_alphanumeric() || b"/-._~".contains(&b))
            && !base_path.split('/').any(|s| s == "." || s == "..");
        if !path_ok {
            return Err(bad("the path may only contain a-z A-Z 0-9 / - . _ ~ (no query, fragment, . or ..)"));
        }
        Ok(Self { scheme, host, port, base_path: base_path.to_string() })
    }

    /// Value of the `Host` header.
    fn host_header(&self) -> String {
        let host = if self.host.contains(':') { format!("[{}]", self.host) } else { self.host.clone() };
        let default = match self.scheme {
            Scheme::Http => 80,
            Scheme::Https => 443,
        };
        if self.port == default { host } else { format!("{host}:{}", self.port) }
    }
}

impl<'de> serde::Deserialize<'de> for Endpoint {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let url = String::deserialize(d)?;
        Endpoint::parse(&url).map_err(serde::de::Error::custom)
    }
}

impl std::str::FromStr for Endpoint {
    type Err = EndpointError;
    fn from_str(url: &str) -> Result<Self, EndpointError> {
        Endpoint::parse(url)
    }
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let scheme = match self.scheme {
            Scheme::Http => "http",
            Scheme::Https => "https",
        };
        write!(f, "{scheme}://{}{}", self.host_header(), self.base_path)
    }
}

/// True when `pem` holds at least one PEM block start: checked before any
/// PEM parser sees host-supplied bytes, so empty or blank input is one clear
/// error and never reaches a parser's edge cases.
pub fn has_pem_block(pem: &[u8]) -> bool {
    pem.windows(11).any(|w| w == b"-----BEGIN ")
}

/// Why PEM text is not a usable certificate list.
#[derive(Debug, thiserror::Error)]
pub enum PemCertError {
    #[error("no PEM CERTIFICATE block found")]
    NoCertificate,
    #[error("invalid PEM: {0}")]
    Pem(#[source] rustls::pki_types::pem::Error),
    #[error("not a usable X.509 certificate: {0}")]
    X509(#[source] rustls::Error),
}

/// Certificates from PEM text; at least one, each a parseable X.509.
pub fn parse_pem_certs(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, PemCertError> {
    if !has_pem_block(pem) {
        return Err(PemCertError::NoCertificate);
    }
    let mut certs = Vec::new();
    for item in CertificateDer::pem_slice_iter(pem) {
        let der = item.map_err(PemCertError::Pem)?;
        RootCertStore::empty().add(der.clone()).map_err(PemCertError::X509)?;
        certs.push(der);
    }
    if certs.is_empty() {
        return Err(PemCertError::NoCertificate);
    }
    Ok(certs)
}

/// How the KBS is authenticated.
#[derive(Debug, Clone)]
pub enum Trust {
    /// Plain HTTP (`insecure_http = true`).
    None,
    /// A CA: chain, hostname and validity are checked by webpki.
    Ca(Vec<CertificateDer<'static>>),
    /// The server's own certificate, compared byte for byte.
    Pinned(Vec<CertificateDer<'static>>),
}

/// Timeouts and retries.
#[derive(Debug, Clone, Copy)]
pub struct Policy {
    pub connect_timeout: Duration,
    pub read_timeout: Duration,
    /// Attempts after the first one, per request, on connection failures.
    pub retries: u32,
    pub backoff: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    #[error("gave up after {attempts} attempt(s) in {elapsed_ms} ms: {last}")]
    Exhausted { attempts: u32, elapsed_ms: u64, last: String },
    #[error("deadline reached after {attempts} attempt(s) in {elapsed_ms} ms: {last}")]
    Deadline { attempts: u32, elapsed_ms: u64, last: String },
    #[error("TLS: {0}")]
    Tls(#[source] rustls::Error),
    #[error("{0}")]
    Http(#[from] HttpError),
    #[error("an http:// url cannot use a certificate")]
    PlainWithCertificate,
    #[error("an https:// url needs a pinned certificate or CA")]
    TlsWithoutTrust,
    #[error("cannot set up TLS: server name: {0}")]
    ServerName(#[source] rustls::pki_types::InvalidDnsNameError),
    #[error("cannot set up TLS: CA certificate: {0}")]
    CaCertificate(#[source] rustls::Error),
    #[error("cannot set up TLS: {0}")]
    Setup(#[source] rustls::Error),
}

/// One request to the KBS.
pub struct Request<'a> {
    pub method: &'static str,
    /// Path below the base path, e.g. `/kbs/v0/auth`.
    pub path: &'a str,
    pub body: Option<&'a [u8]>,
    /// Extra headers (`Cookie`, `Authorization`). Values are checked for
    /// CR/LF by the caller's construction.
    pub headers: Vec<(&'static str, String)>,
    /// Cap on the response body.
    pub max_body: usize,
}

pub struct Response {
    pub status: u16,
    pub head: Head,
    pub body: Vec<u8>,
}

enum Failure {
    /// Worth another attempt (connection refused, reset, timeout, 502-504).
    Retry(String),
    Fatal(TransportError),
    /// A kept connection the server had closed before this request reached
    /// it: send the request again on a fresh one, as any HTTP/1.1 client does.
    Stale(String),
}

/// A failure after the connection was made names the peer, as a
/// connection failure does ("connect to ADDR: ...").
fn named(peer: &str, f: Failure) -> Failure {
    match f {
        Failure::Retry(why) | Failure::Stale(why) => Failure::Retry(format!("{peer}: {why}")),
        fatal => fatal,
    }
}

/// A connection kept between requests.
enum Conn {
    Plain(BufReader<DeadlineStream>),
    Tls(Box<BufReader<StreamOwned<ClientConnection, DeadlineStream>>>),
}

impl Conn {
    fn set_deadline(&mut self, deadline: Instant) {
        match self {
            Conn::Plain(r) => r.get_mut().deadline = deadline,
            Conn::Tls(r) => r.get_mut().sock.deadline = deadline,
        }
    }

    fn exchange(&mut self, request: &[u8], max_body: usize, reused: bool) -> Result<(Response, bool), Failure> {
        match self {
            Conn::Plain(r) => exchange(r, request, max_body, reused),
            Conn::Tls(r) => exchange(r, request, max_body, reused),
        }
    }

    /// Completes the TLS handshake now rather than with the first
    /// request's write. A refused certificate is a TLS error, and its alert
    /// goes out, exactly as it would have then.
    fn handshake(&mut self) -> Result<(), Failure> {
        let Conn::Tls(r) = self else { return Ok(()) };
        let s = r.get_mut();
        while s.conn.is_handshaking() {
            if let Err(e) = s.conn.complete_io(&mut s.sock) {
                // The alert rustls queued for a refused certificate is
                // still to be written: send it, as the first request's
                // next write would have.
                while s.conn.wants_write() && s.conn.write_tls(&mut s.sock).is_ok_and(|n| n > 0) {}
                let _ = s.sock.flush();
                drain(&mut s.sock.inner);
                return Err(io_failure(e));
            }
        }
        Ok(())
    }
}

/// After a failed handshake: reads what the server still sends until it
/// closes (at most [`DRAIN_AFTER_ALERT`]). Closing a socket with unread
/// bytes sends a reset, which can overtake our alert on its way through a
/// relay, and the server would log a bare close instead of the refusal.
fn drain(tcp: &mut TcpStream) {
    let until = Instant::now() + DRAIN_AFTER_ALERT;
    let mut buf = [0u8; 4096];
    while let Some(left) = until.checked_duration_since(Instant::now()).filter(|d| !d.is_zero()) {
        if tcp.set_read_timeout(Some(left)).is_err() || !matches!(tcp.read(&mut buf), Ok(n) if n > 0) {
            return;
        }
    }
}

/// How long a failed handshake waits for the server to close after our
/// alert (see [`Conn::drain`]).
const DRAIN_AFTER_ALERT: Duration = Duration::from_millis(250);

/// What connecting ahead left for the first request.
enum Ahead {
    /// Connected (and for https, the handshake done), with the peer's
    /// address for messages.
    Ready(Conn, String),
    /// The TLS handshake failed for good (the certificate was refused): the
    /// first request reports it as its own, without a second handshake.
    Refused(TransportError),
}

pub struct Transport {
    endpoint: Endpoint,
    tls: Option<Arc<ClientConfig>>,
    policy: Policy,
    user_agent: String,
    /// The connection of the previous request, if the server kept it
    /// open, with its peer's address for messages.
    kept: std::cell::RefCell<Option<(Conn, String)>>,
    /// Connections opened, requests answered (for the log and the bench).
    counts: std::cell::Cell<(u32, u32)>,
    /// The connection made ahead of the first request ([`Transport::connect_ahead`]),
    /// with the time it was made.
    ahead: std::cell::RefCell<Option<(Ahead, Instant)>>,
    /// The TLS client state made for the connection ahead before there was
    /// a network ([`Transport::prepare_ahead`]): its key share is already
    /// generated. Taken by [`Transport::connect_ahead`], used at most once.
    prepared: std::cell::Cell<Option<ClientConnection>>,
}

/// A connection made ahead is used only this fresh: a server may close one
/// that sends nothing for a while (a request head timeout), and a fresh
/// connection is cheaper than a failed first attempt.
const AHEAD_MAX_AGE: Duration = Duration::from_secs(1);

impl Transport {
    pub fn new(endpoint: Endpoint, trust: Trust, policy: Policy) -> Result<Self, TransportError> {
        let tls = match (&endpoint.scheme, trust) {
            (Scheme::Http, Trust::None) => None,
            (Scheme::Https, Trust::Ca(certs)) => Some(Arc::new(ca_config(certs)?)),
            (Scheme::Https, Trust::Pinned(certs)) => Some(Arc::new(pinned_config(certs)?)),
            (Scheme::Http, _) => {
                return Err(TransportError::PlainWithCertificate);
            }
            (Scheme::Https, Trust::None) => {
                return Err(TransportError::TlsWithoutTrust);
            }
        };
        let user_agent = format!("ztinit/{}", env!("CARGO_PKG_VERSION"));
        Ok(Self {
            endpoint,
            tls,
            policy,
            user_agent,
            kept: std::cell::RefCell::new(None),
            counts: std::cell::Cell::new((0, 0)),
            ahead: std::cell::RefCell::new(None),
            prepared: std::cell::Cell::new(None),
        })
    }

    /// Makes the TLS client state of the connection ahead now, before the
    /// network is up, so that its ephemeral key share (a P-256 key, tens of
    /// ms under emulation) is not made between the TCP connect and the
    /// ClientHello. Nothing for plain HTTP. A failure here is left for
    /// [`Transport::connect_ahead`] to meet again and report.
    pub fn prepare_ahead(&self) {
        if let Some(config) = &self.tls {
            self.prepared.set(self.client_connection(config).ok());
        }
    }

    /// Opens the connection for the first request now, TLS handshake
    /// included (within the connect and read timeouts), so that its round
    /// trips overlap other work. The handshake checks the server exactly as
    /// the first request's would. A refused certificate is kept for the
    /// first request to report; any other failure is only logged, and the
    /// first request connects again and reports it with its retries.
    /// `started`: the TCP connect [`Connecting::start`] began, when the
    /// endpoint is one of its addresses (waited for here, within the
    /// connect timeout); otherwise the endpoint is connected to here.
    pub fn connect_ahead(&self, started: Option<Connecting>) {
        let prepared = self.prepared.take();
        let deadline = Instant::now() + self.policy.connect_timeout;
        let failed = |why: &dyn std::fmt::Display| log::debug!("KBS: connecting ahead failed: {why}");
        let part = crate::timeline::part("tcp-connect");
        let ours = |c: &Connecting| Connecting::addr_of(&self.endpoint) == Some(c.addr);
        let connected = match started.filter(ours) {
            Some(c) => c.finish(self.policy.connect_timeout),
            None => self.connect(deadline),
        };
        drop(part);
        let tcp = match connected {
            Ok(tcp) => tcp,
            Err(Failure::Retry(why) | Failure::Stale(why)) => return failed(&why),
            Err(Failure::Fatal(e)) => return failed(&e),
        };
        let (stream, peer) = self.stream(tcp, Instant::now() + self.policy.read_timeout);
        let part = crate::timeline::part("tls-handshake");
        let ready = self.open(stream, prepared).and_then(|mut conn| conn.handshake().map(|()| conn));
        drop(part);
        let ahead = match ready {
            Ok(conn) => Ahead::Ready(conn, peer),
            Err(Failure::Fatal(e)) => Ahead::Refused(e),
            Err(Failure::Retry(why) | Failure::Stale(why)) => return failed(&format!("{peer}: {why}")),
        };
        *self.ahead.borrow_mut() = Some((ahead, Instant::now()));
    }

    /// (connections opened, responses received) so far.
    pub fn counts(&self) -> (u32, u32) {
        self.counts.get()
    }

    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// Sends `req`, retrying connection failures with backoff, never past `deadline`.
    pub fn send(&self, req: &Request<'_>, deadline: Instant) -> Result<Response, TransportError> {
        let started = Instant::now();
        let elapsed_ms = || u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        let mut backoff = self.policy.backoff;
        let mut attempts = 0;
        loop {
            attempts += 1;
            let why = match self.attempt(req, deadline) {
                Ok(resp) => return Ok(resp),
                Err(Failure::Fatal(e)) => return Err(e),
                Err(Failure::Retry(why) | Failure::Stale(why)) => why,
            };
            if Instant::now() >= deadline {
                return Err(TransportError::Deadline { attempts, elapsed_ms: elapsed_ms(), last: why });
            }
            if attempts > self.policy.retries {
                return Err(TransportError::Exhausted { attempts, elapsed_ms: elapsed_ms(), last: why });
            }
            log::warn!(
                "KBS {} {}: attempt {attempts} failed ({why}); retrying in {} ms",
                req.method,
                req.path,
                backoff.as_millis()
            );
            if Instant::now() + backoff >= deadline {
                return Err(TransportError::Deadline { attempts, elapsed_ms: elapsed_ms(), last: why });
            }
            std::thread::sleep(backoff);
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }

    fn attempt(&self, req: &Request<'_>, deadline: Instant) -> Result<Response, Failure> {
        let request = self.request_bytes(req);
        // The connection made ahead, still fresh, is taken as a kept one:
        // ready for a request, and stale if the server has closed it since.
        match self.ahead.borrow_mut().take() {
            Some((Ahead::Refused(e), _)) => {
                self.count_opened();
                return Err(Failure::Fatal(e));
            }
            Some((Ahead::Ready(conn, peer), at)) if at.elapsed() < AHEAD_MAX_AGE => {
                self.count_opened();
                *self.kept.borrow_mut() = Some((conn, peer));
            }
            _ => {}
        }
        // Taken out: a failed exchange leaves nothing behind to reuse.
        let kept = self.kept.borrow_mut().take();
        if let Some((mut conn, peer)) = kept {
            conn.set_deadline(deadline);
            let part = crate::timeline::part_with("request", || format!("{} {}", req.method, req.path));
            let result = conn.exchange(&request, req.max_body, true);
            drop(part);
            match result {
                Ok(done) => return Ok(self.answered(conn, peer, done)),
                Err(Failure::Stale(why)) => log::debug!("KBS closed the kept connection ({why}); opening another"),
                Err(f) => return Err(named(&peer, f)),
            }
        }
        let part = crate::timeline::part("tcp-connect");
        let tcp = self.connect(deadline)?;
        drop(part);
        let (stream, peer) = self.stream(tcp, deadline);
        self.count_opened();
        let mut conn = self.open(stream, None).map_err(|f| named(&peer, f))?;
        let part = crate::timeline::part_with("request", || format!("{} {}", req.method, req.path));
        let result = conn.exchange(&request, req.max_body, false);
        drop(part);
        match result {
            Ok(done) => Ok(self.answered(conn, peer, done)),
            Err(f) => Err(named(&peer, f)),
        }
    }

    /// A connected socket bounded by `deadline` and the read timeout, and
    /// its peer's address for messages.
    fn stream(&self, tcp: TcpStream, deadline: Instant) -> (DeadlineStream, String) {
        let peer = tcp.peer_addr().map_or_else(|_| self.endpoint.host_header(), |a| a.to_string());
        (DeadlineStream { inner: tcp, deadline, read_timeout: self.policy.read_timeout }, peer)
    }

    fn count_opened(&self) {
        let (opened, answered) = self.counts.get();
        self.counts.set((opened.saturating_add(1), answered));
    }

    /// Counts the answer and keeps the connection when the server allows.
    fn answered(&self, conn: Conn, peer: String, (resp, keep): (Response, bool)) -> Response {
        let (opened, answered) = self.counts.get();
        self.counts.set((opened, answered.saturating_add(1)));
        if keep {
            *self.kept.borrow_mut() = Some((conn, peer));
        }
        resp
    }

    /// `prepared`: TLS client state made ahead ([`Transport::prepare_ahead`]).
    fn open(&self, stream: DeadlineStream, prepared: Option<ClientConnection>) -> Result<Conn, Failure> {
        match &self.tls {
            None => Ok(Conn::Plain(BufReader::new(stream))),
            Some(config) => {
                // The handshake runs with the first request's write (so a
                // refused certificate's alert goes out as it always has):
                // the first request's part includes it.
                let conn = match prepared {
                    Some(conn) => conn,
                    None => self.client_connection(config)?,
                };
                Ok(Conn::Tls(Box::new(BufReader::new(StreamOwned::new(conn, stream)))))
            }
        }
    }

    /// A fresh TLS client for the endpoint (its ClientHello, key share
    /// included, is made here).
    fn client_connection(&self, config: &Arc<ClientConfig>) -> Result<ClientConnection, Failure> {
        let name = ServerName::try_from(self.endpoint.host.clone())
            .map_err(|e| Failure::Fatal(TransportError::ServerName(e)))?;
        ClientConnection::new(config.clone(), name).map_err(|e| Failure::Fatal(TransportError::Setup(e)))
    }

    fn connect(&self, deadline: Instant) -> Result<TcpStream, Failure> {
        let addrs = (self.endpoint.host.as_str(), self.endpoint.port)
            .to_socket_addrs()
            .map_err(|e| Failure::Retry(format!("cannot resolve {}: {e}", self.endpoint.host)))?;
        let mut last = format!("{} has no address", self.endpoint.host);
        for addr in addrs {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(Failure::Retry("deadline reached while connecting".into()));
            }
            match TcpStream::connect_timeout(&addr, self.policy.connect_timeout.min(left)) {
                Ok(s) => {
                    let _ = s.set_nodelay(true);
                    return Ok(s);
                }
                Err(e) => last = format!("connect to {addr}: {e}"),
            }
        }
        Err(Failure::Retry(last))
    }

    fn request_bytes(&self, req: &Request<'_>) -> Vec<u8> {
        let mut head = format!(
            "{} {}{} HTTP/1.1\r\nHost: {}\r\nUser-Agent: {}\r\nAccept: application/json\r\n",
            req.method,
            self.endpoint.base_path,
            req.path,
            self.endpoint.host_header(),
            self.user_agent
        );
        for (name, value) in &req.headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        match req.body {
            Some(body) => {
                head.push_str(&format!("Content-Type: application/json\r\nContent-Length: {}\r\n\r\n", body.len()))
            }
            None => head.push_str("\r\n"),
        }
        let mut bytes = head.into_bytes();
        if let Some(body) = req.body {
            bytes.extend_from_slice(body);
        }
        bytes
    }
}

/// Writes the request and reads one response. Returns it with whether the
/// connection may carry another request: the body was framed by length or
/// chunks, the server did not say `Connection: close`, and nothing beyond
/// the response arrived. On a `reused` connection, a server that had closed
/// it (EOF, reset or broken pipe before any answer) is [`Failure::Stale`].
fn exchange<S: Read + Write>(
    reader: &mut BufReader<S>,
    request: &[u8],
    max_body: usize,
    reused: bool,
) -> Result<(Response, bool), Failure> {
    // A server may answer (e.g. 413) and close before reading the whole
    // request: then its answer says more than the failed write.
    let stream = reader.get_mut();
    let mut write_error = stream.write_all(request).and_then(|_| stream.flush()).err();
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
    // Skip interim 1xx responses, but not forever.
    for interim in 0..4 {
        let head = match http::read_head(reader) {
            Ok(Some(h)) => h,
            failed => {
                let first = interim == 0;
                if let Some(e) = write_error.take() {
                    return Err(if first && stale(&e) { Failure::Stale(e.to_string()) } else { io_failure(e) });
                }
                return Err(match failed {
                    Err(HttpError::Io(e)) if first && stale(&e) => Failure::Stale(e.to_string()),
                    Err(HttpError::Io(e)) => io_failure(e),
                    Err(e) => Failure::Fatal(e.into()),
                    Ok(_) if first && reused => Failure::Stale("closed".into()),
                    Ok(_) => Failure::Retry("connection closed before a response".into()),
                });
            }
        };
        let status = http::parse_status_line(&head.start).map_err(|e| Failure::Fatal(e.into()))?;
        if (100..200).contains(&status) {
            continue;
        }
        let framing = match status {
            204 | 304 => Framing::None,
            _ => http::framing(&head, true).map_err(|e| Failure::Fatal(e.into()))?,
        };
        let reusable = !matches!(framing, Framing::Close)
            && !head.header("connection").is_some_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case("close")));
        let body = match http::read_body(reader, framing, max_body) {
            Ok(b) => b,
            Err(HttpError::Io(e)) => return Err(io_failure(e)),
            Err(e) => return Err(Failure::Fatal(e.into())),
        };
        if matches!(status, 502..=504) {
            return Err(Failure::Retry(format!("HTTP {status} from the KBS or a proxy")));
        }
        let keep = reusable && reader.buffer().is_empty();
        return Ok((Response { status, head, body }, keep));
    }
    Err(Failure::Fatal(HttpError::Malformed("too many interim responses".into()).into()))
}

/// TLS failures (certificate refused, bad handshake) are never retried: they
/// will not fix themselves and may be an attack. Everything else on the
/// socket is.
fn io_failure(e: io::Error) -> Failure {
    if let Some(tls) = e.get_ref().and_then(|inner| inner.downcast_ref::<rustls::Error>()) {
        return Failure::Fatal(TransportError::Tls(tls.clone()));
    }
    match e.kind() {
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => Failure::Retry(format!("timed out: {e}")),
        _ => Failure::Retry(e.to_string()),
    }
}

/// A TCP stream whose every read and write is bounded by both the read
/// timeout and the overall deadline, so that a peer trickling bytes cannot
/// hold the boot past the deadline.
struct DeadlineStream {
    inner: TcpStream,
    deadline: Instant,
    read_timeout: Duration,
}

impl DeadlineStream {
    fn budget(&self) -> io::Result<Duration> {
        let left = self.deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::Error::new(io::ErrorKind::TimedOut, "deadline reached"));
        }
        Ok(left.min(self.read_timeout))
    }
}

/// The socket's timeout error (EAGAIN on Linux, whose text "Resource
/// temporarily unavailable" hides that it is a timeout) as one that says
/// how long ztinit waited.
fn timed_out(e: io::Error, what: &str, waited: Duration) -> io::Error {
    match e.kind() {
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => {
            io::Error::new(io::ErrorKind::TimedOut, format!("{what} within {} ms", waited.as_millis()))
        }
        _ => e,
    }
}

impl Read for DeadlineStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let t = self.budget()?;
        self.inner.set_read_timeout(Some(t))?;
        self.inner.read(buf).map_err(|e| timed_out(e, "no data from the KBS", t))
    }
}

impl Write for DeadlineStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let t = self.budget()?;
        self.inner.set_write_timeout(Some(t))?;
        self.inner.write(buf).map_err(|e| timed_out(e, "the KBS took no data", t))
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(super::tls::provider())
}

/// A rustls client configuration that trusts exactly these CA certificates
/// (webpki checks chain, hostname and validity), with ztinit's provider.
/// Also used by the image helper for its registry connections.
pub fn ca_config(certs: Vec<CertificateDer<'static>>) -> Result<ClientConfig, TransportError> {
    let mut roots = RootCertStore::empty();
    for c in certs {
        roots.add(c).map_err(TransportError::CaCertificate)?;
    }
    Ok(ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(TransportError::Setup)?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// A rustls client configuration that accepts only these end-entity
/// certificates, byte for byte (see `PinnedCert`), with ztinit's provider.
/// Also used by the image helper for its registry connections.
pub fn pinned_config(certs: Vec<CertificateDer<'static>>) -> Result<ClientConfig, TransportError> {
    let provider = provider();
    let verifier = PinnedCert { certs, algorithms: provider.signature_verification_algorithms };
    Ok(ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(TransportError::Setup)?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth())
}

/// Accepts exactly the pinned end-entity certificate(s). The handshake
/// signature is still verified with the certificate's key, so only the
/// holder of the matching private key passes. Chain, hostname and validity
/// dates are deliberately not checked: the pin is the identity, and the
/// guest's clock comes from the untrusted host.
#[derive(Debug)]
struct PinnedCert {
    certs: Vec<CertificateDer<'static>>,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for PinnedCert {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if self.certs.iter().any(|c| c.as_ref() == end_entity.as_ref()) {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::General("the KBS presented a certificate other than the pinned one".into()))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// A TCP connect to an IP address, begun without waiting for it to
/// complete: the kernel carries on with the handshake's packets while the
/// caller does other work, and [`Connecting::finish`] waits for it.
#[derive(Debug)]
pub struct Connecting {
    socket: std::os::fd::OwnedFd,
    addr: std::net::SocketAddr,
}

impl Connecting {
    /// Sends the SYN to the endpoint `url` names, when its host is an IP
    /// address (a name would need a lookup, which the client does itself).
    /// `None` when the connect could not even start: the client then
    /// connects itself and reports what fails.
    pub fn start(url: &Endpoint) -> Option<Connecting> {
        use rustix::net::{AddressFamily, SocketFlags, SocketType};
        let addr = Connecting::addr_of(url)?;
        let family = if addr.is_ipv4() { AddressFamily::INET } else { AddressFamily::INET6 };
        let flags = SocketFlags::NONBLOCK | SocketFlags::CLOEXEC;
        let socket = rustix::net::socket_with(family, SocketType::STREAM, flags, None).ok()?;
        match rustix::net::connect(&socket, &addr) {
            Ok(()) | Err(rustix::io::Errno::INPROGRESS) => Some(Connecting { socket, addr }),
            Err(_) => None,
        }
    }

    fn addr_of(url: &Endpoint) -> Option<std::net::SocketAddr> {
        Some(std::net::SocketAddr::new(url.host.parse().ok()?, url.port))
    }

    /// Waits up to `timeout` for the connect to complete.
    fn finish(self, timeout: Duration) -> Result<TcpStream, Failure> {
        use rustix::event::{PollFd, PollFlags, Timespec};
        let failed = |e: &dyn std::fmt::Display| Failure::Retry(format!("connect to {}: {e}", self.addr));
        let timespec = Timespec::try_from(timeout).map_err(|e| failed(&e))?;
        let mut fds = [PollFd::new(&self.socket, PollFlags::OUT)];
        match rustix::event::poll(&mut fds, Some(&timespec)) {
            Ok(0) => return Err(failed(&"timed out")),
            Ok(_) => {}
            Err(e) => return Err(failed(&e)),
        }
        match rustix::net::sockopt::socket_error(&self.socket) {
            Ok(Ok(())) => {}
            Ok(Err(e)) | Err(e) => return Err(failed(&e)),
        }
        let tcp = TcpStream::from(self.socket);
        tcp.set_nonblocking(false).map_err(|e| failed(&e))?;
        let _ = tcp.set_nodelay(true);
        Ok(tcp)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blank_pem_is_refused_before_any_parser() {
        // Finding 7: x509-cert's PEM reader underflowed on these (a debug
        // build panicked); both readers now refuse them first.
        for blank in [&b""[..], b"\n", b"\n\n\n", b"  \r\n\t"] {
            assert!(matches!(parse_pem_certs(blank), Err(PemCertError::NoCertificate)));
            assert_eq!(crate::gpu::certs::parse_pem_chain(blank).unwrap_err(), crate::gpu::certs::CertError::Empty);
        }
        let err = crate::gpu::certs::parse_pem_chain(b"not pem\n").unwrap_err();
        assert_eq!(err.to_string(), "certificate chain is not valid PEM/DER: no PEM block found");
    }

    #[test]
    fn urls() {
        let e = Endpoint::parse("https://kbs.example:8080").unwrap();
        assert_eq!((e.scheme, e.host.as_str(), e.port, e.base_path.as_str()), (Scheme::Https, "kbs.example", 8080, ""));
        assert_eq!(e.host_header(), "kbs.example:8080");
        let e = Endpoint::parse("http://10.0.2.100:8080/").unwrap();
        assert_eq!((e.scheme, e.host.as_str(), e.port), (Scheme::Http, "10.0.2.100", 8080));
        let e = Endpoint::parse("https://[fd00::1]/prefix/kbs").unwrap();
        assert_eq!((e.host.as_str(), e.port, e.base_path.as_str()), ("fd00::1", 443, "/prefix/kbs"));
        assert_eq!(e.host_header(), "[fd00::1]");
        for bad in [
            "",
            "kbs.example",
            "ftp://kbs",
            "HTTPS://kbs",
            "https://",
            "https://user@kbs",
            "https://kbs:0",
            "https://kbs:99999",
            "https://kbs:+80",
            "https://kbs:",
            "https://kb s",
            "https://kbs/a?b",
            "https://kbs/a#b",
            "https://kbs/../x",
            "https://[fd00::1",
            "https://[nope]",
            "https://kbs..example",
        ] {
            assert!(Endpoint::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn pem_parsing() {
        assert_eq!(parse_pem_certs(b"").unwrap_err().to_string(), "no PEM CERTIFICATE block found");
        assert!(parse_pem_certs(b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n").is_err());
    }

    #[test]
    fn request_head_is_well_formed() {
        let t = Transport::new(
            Endpoint::parse("http://127.0.0.1:8080/base").unwrap(),
            Trust::None,
            Policy {
                connect_timeout: Duration::from_secs(1),
                read_timeout: Duration::from_secs(1),
                retries: 0,
                backoff: Duration::ZERO,
            },
        )
        .unwrap();
        let req = Request {
            method: "POST",
            path: "/kbs/v0/auth",
            body: Some(b"{}"),
            headers: vec![("Cookie", "kbs-session-id=abc".into())],
            max_body: 10,
        };
        let text = String::from_utf8(t.request_bytes(&req)).unwrap();
        assert!(text.starts_with("POST /base/kbs/v0/auth HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n"), "{text}");
        assert!(text.contains("\r\nCookie: kbs-session-id=abc\r\n"));
        assert!(text.ends_with("Content-Length: 2\r\n\r\n{}"));
    }

    #[test]
    fn scheme_and_trust_must_agree() {
        let p = Policy {
            connect_timeout: Duration::from_secs(1),
            read_timeout: Duration::from_secs(1),
            retries: 0,
            backoff: Duration::ZERO,
        };
        let https = Endpoint::parse("https://kbs").unwrap();
        assert!(matches!(Transport::new(https, Trust::None, p), Err(TransportError::TlsWithoutTrust)));
        let http = Endpoint::parse("http://kbs").unwrap();
        assert!(matches!(Transport::new(http, Trust::Pinned(vec![]), p), Err(TransportError::PlainWithCertificate)));
    }

    fn plain(url: &str, read_timeout_ms: u64, retries: u32) -> Transport {
        let policy = Policy {
            connect_timeout: Duration::from_secs(2),
            read_timeout: Duration::from_millis(read_timeout_ms),
            retries,
            backoff: Duration::from_millis(10),
        };
        Transport::new(Endpoint::parse(url).unwrap(), Trust::None, policy).unwrap()
    }

    fn get() -> Request<'static> {
        Request { method: "POST", path: "/kbs/v0/auth", body: Some(b"{}"), headers: Vec::new(), max_body: 1024 }
    }

    /// A forward whose service is down (QEMU's relay) accepts and closes:
    /// the message names the peer, the attempts and the time spent.
    #[test]
    fn a_peer_that_closes_at_once_is_named_with_attempts_and_time() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            for conn in listener.incoming().take(3) {
                drop(conn);
            }
        });
        let t = plain(&format!("http://{addr}"), 2_000, 2);
        let err = t.send(&get(), Instant::now() + Duration::from_secs(10)).err().unwrap();
        assert!(matches!(err, TransportError::Exhausted { attempts: 3, .. }), "{err}");
        let msg = err.to_string();
        assert!(msg.starts_with("gave up after 3 attempt(s) in "), "{msg}");
        assert!(msg.contains(&format!(" ms: {addr}: ")), "{msg}");
    }

    /// A server that answers one request per connection and tells, for
    /// each connection it accepts, when it did.
    fn one_answer_per_connection() -> (std::net::SocketAddr, std::sync::mpsc::Receiver<Instant>) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let (accepted, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { return };
                let _ = accepted.send(Instant::now());
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") && conn.read(&mut byte).is_ok_and(|n| n == 1) {
                    head.push(byte[0]);
                }
                let mut body = [0u8; 2];
                let _ = conn.read_exact(&mut body);
                let _ = conn.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok");
            }
        });
        (addr, rx)
    }

    #[test]
    fn the_first_request_uses_the_connection_made_ahead() {
        let (addr, accepted) = one_answer_per_connection();
        let t = plain(&format!("http://{addr}"), 2_000, 0);
        t.connect_ahead(None);
        let connected_at = accepted.recv_timeout(Duration::from_secs(5)).expect("connected ahead");
        let sent_at = Instant::now();
        let resp = t.send(&get(), Instant::now() + Duration::from_secs(10)).unwrap();
        assert_eq!(resp.body, b"ok");
        assert!(connected_at <= sent_at);
        assert!(accepted.try_recv().is_err(), "no second connection");
        assert_eq!(t.counts(), (1, 1));
    }

    #[test]
    fn a_connect_begun_before_the_client_is_ready_is_the_connection_ahead() {
        let (addr, accepted) = one_answer_per_connection();
        let url = format!("http://{addr}");
        let started = Connecting::start(&Endpoint::parse(&url).unwrap()).expect("a SYN to an IP address");
        let connected_at = accepted.recv_timeout(Duration::from_secs(5)).expect("connected before the client");
        let t = plain(&url, 2_000, 0);
        t.connect_ahead(Some(started));
        let resp = t.send(&get(), Instant::now() + Duration::from_secs(10)).unwrap();
        assert_eq!(resp.body, b"ok");
        assert!(connected_at <= Instant::now());
        assert!(accepted.try_recv().is_err(), "no second connection");
        assert_eq!(t.counts(), (1, 1));

        // Begun towards another address: not used, the client connects to
        // its own endpoint.
        let (other, other_accepted) = one_answer_per_connection();
        let elsewhere = Connecting::start(&Endpoint::parse(&format!("http://{other}")).unwrap()).unwrap();
        let t = plain(&url, 2_000, 0);
        t.connect_ahead(Some(elsewhere));
        accepted.recv_timeout(Duration::from_secs(5)).expect("its own endpoint");
        t.send(&get(), Instant::now() + Duration::from_secs(10)).unwrap();
        assert!(accepted.try_recv().is_err(), "the request used that connection");
        other_accepted.recv_timeout(Duration::from_secs(5)).expect("the SYN to the other address went out");

        // Refused: only logged; the request fails with its own attempts.
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
        let url = format!("http://{closed}");
        let refused = Connecting::start(&Endpoint::parse(&url).unwrap()).unwrap();
        let t = plain(&url, 200, 1);
        t.connect_ahead(Some(refused));
        let err = t.send(&get(), Instant::now() + Duration::from_secs(10)).err().unwrap();
        assert!(matches!(err, TransportError::Exhausted { attempts: 2, .. }), "{err}");

        // A host name needs a lookup: nothing begins.
        assert!(Connecting::start(&Endpoint::parse("http://kbs.example:8080").unwrap()).is_none());
    }

    #[test]
    fn a_stale_or_failed_connection_ahead_is_replaced() {
        let (addr, accepted) = one_answer_per_connection();
        let t = plain(&format!("http://{addr}"), 2_000, 0);
        t.connect_ahead(None);
        accepted.recv_timeout(Duration::from_secs(5)).unwrap();
        std::thread::sleep(AHEAD_MAX_AGE + Duration::from_millis(100));
        t.send(&get(), Instant::now() + Duration::from_secs(10)).unwrap();
        accepted.recv_timeout(Duration::from_secs(5)).expect("a fresh connection for the request");
        assert_eq!(t.counts(), (1, 1));

        // Nothing listens: connecting ahead only logs; the request then
        // fails with its own attempts, as without it.
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
        let t = plain(&format!("http://{closed}"), 200, 1);
        t.connect_ahead(None);
        let err = t.send(&get(), Instant::now() + Duration::from_secs(10)).err().unwrap();
        assert!(matches!(err, TransportError::Exhausted { attempts: 2, .. }), "{err}");
    }

    #[test]
    fn the_tls_state_made_before_the_network_serves_the_connection_ahead_once() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        // Reads the first record's header, then closes: the handshake fails
        // and connecting ahead only logs it.
        let server = std::thread::spawn(move || {
            let (mut conn, _) = listener.accept().unwrap();
            let mut header = [0u8; 5];
            conn.read_exact(&mut header).unwrap();
            header
        });
        let policy = Policy {
            connect_timeout: Duration::from_secs(2),
            read_timeout: Duration::from_secs(2),
            retries: 0,
            backoff: Duration::ZERO,
        };
        let t = Transport::new(Endpoint::parse(&format!("https://{addr}")).unwrap(), Trust::Pinned(vec![]), policy)
            .unwrap();
        t.prepare_ahead();
        let prepared = t.prepared.take();
        assert!(prepared.is_some(), "made before any connection");
        t.prepared.set(prepared);
        t.connect_ahead(None);
        assert!(t.prepared.take().is_none(), "taken by the connection ahead, never used again");
        assert_eq!(server.join().unwrap()[0], 0x16, "the prepared ClientHello went out as a handshake record");
        assert!(t.ahead.borrow().is_none(), "a failed handshake leaves nothing for the first request");

        let t = plain(&format!("http://{addr}"), 200, 0);
        t.prepare_ahead();
        assert!(t.prepared.take().is_none(), "nothing to prepare for plain HTTP");
    }

    /// Linux reports a socket timeout as EAGAIN ("Resource temporarily
    /// unavailable"); the message says it is a timeout and how long it was.
    #[test]
    fn a_silent_peer_is_reported_as_a_timeout_with_its_duration() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let held = std::thread::spawn(move || {
            let (conn, _) = listener.accept().unwrap();
            std::thread::sleep(Duration::from_millis(800));
            drop(conn);
        });
        let t = plain(&format!("http://{addr}"), 200, 0);
        let err = t.send(&get(), Instant::now() + Duration::from_secs(10)).err().unwrap();
        let msg = err.to_string();
        assert!(msg.ends_with(&format!("{addr}: timed out: no data from the KBS within 200 ms")), "{msg}");
        assert!(!msg.contains("temporarily unavailable"), "{msg}");
        held.join().unwrap();
    }
}
