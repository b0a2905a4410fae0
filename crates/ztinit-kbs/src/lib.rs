//! A development Key Broker Service that speaks the Confidential Containers
//! Trustee KBS protocol (0.4.0) as the current Trustee server does: the same
//! endpoints, cookie, runtime-data reconstruction and hashing, JWE and error
//! shapes. It exists for tests and demos: it binds 127.0.0.1 only, its
//! tokens are unsigned and live in its memory, and its policy is a small
//! TOML file instead of Rego.
//!
//! Evidence is checked by [`verifier::Verifier`]s; `sample` and
//! `sampledevice` are built in, SNP and TDX come from `ztinit::tee::verify`
//! with the policy file's reference values ([`Verifiers::with_tee`], what
//! the binary uses), NVIDIA plugs in through the same trait.

mod api;
pub mod http;
pub mod jwe;
pub mod mitm;
pub mod nvidia;
pub mod policy;
pub mod verifier;

use std::io::{BufReader, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

pub use mitm::{Mitm, MitmHandle, MitmOptions, MitmStats};
pub use nvidia::NvidiaDeviceVerifier;
pub use policy::Policy;
pub use verifier::{TeeVerifier, Verifier, Verifiers};

/// Test-only misbehaviours, to check that a client fails closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Resources are encrypted to a fresh key instead of the guest's.
    WrongKeyJwe,
    /// One bit of each resource's ciphertext is flipped.
    TamperedJwe,
    /// Resource responses are truncated JSON.
    MalformedJson,
    /// Resource responses announce and stream 256 MiB.
    OversizedBody,
    /// `/auth` insists on protocol version 0.3.0.
    WrongVersion,
    /// Attested sessions are forgotten at once (every resource GET gets
    /// 401 TokenNotFound).
    ForgetSessions,
    /// Requests are read and never answered.
    Stall,
    /// Every connection ends after one answer that does not say so (as a
    /// proxy or an idle timeout may end it).
    CloseAfterEachAnswer,
}

impl Fault {
    pub const ALL: [(&'static str, Fault); 8] = [
        ("wrong-key-jwe", Fault::WrongKeyJwe),
        ("tampered-jwe", Fault::TamperedJwe),
        ("malformed-json", Fault::MalformedJson),
        ("oversized-body", Fault::OversizedBody),
        ("wrong-version", Fault::WrongVersion),
        ("forget-sessions", Fault::ForgetSessions),
        ("stall", Fault::Stall),
        ("close-after-each-answer", Fault::CloseAfterEachAnswer),
    ];
}

impl FromStr for Fault {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Fault::ALL
            .iter()
            .find(|(n, _)| *n == s)
            .map(|(_, f)| *f)
            .ok_or_else(|| format!("unknown fault {s:?} (known: {})", Fault::ALL.map(|(n, _)| n).join(", ")))
    }
}

/// TLS certificate chain and key (PEM files).
#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

pub struct Options {
    /// Must be 127.0.0.1 (port 0 picks a free one).
    pub listen: SocketAddr,
    /// Resources are files `DIR/REPO/TYPE/TAG`.
    pub resources: PathBuf,
    pub policy: Policy,
    pub tls: Option<TlsFiles>,
    /// Lifetime of a session (and its nonce and token), like Trustee's
    /// `attestation_service.timeout` (5 minutes).
    pub session_ttl: Duration,
    /// Request body limit (Trustee: 2 MiB).
    pub max_request_bytes: usize,
    pub faults: Vec<Fault>,
    pub verifiers: Verifiers,
}

impl Options {
    pub fn new(resources: impl Into<PathBuf>) -> Self {
        Self {
            listen: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            resources: resources.into(),
            policy: Policy::default(),
            tls: None,
            session_ttl: Duration::from_secs(300),
            max_request_bytes: 2 << 20,
            faults: Vec::new(),
            verifiers: Verifiers::with_samples(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("refusing to listen on {0}: the development KBS binds 127.0.0.1 only")]
    NotLoopback(SocketAddr),
    #[error("cannot listen on {addr}: {source}")]
    Bind { addr: SocketAddr, source: std::io::Error },
    #[error("TLS: {0}")]
    Tls(String),
}

/// Request counters, for tests and the log.
#[derive(Debug, Default)]
pub struct Stats {
    pub auth: AtomicUsize,
    pub attest: AtomicUsize,
    pub resource: AtomicUsize,
    pub connections: AtomicUsize,
    /// Requests read, on every connection.
    pub requests: AtomicUsize,
    /// TLS handshakes that did not complete.
    pub tls_failures: AtomicUsize,
}

impl Stats {
    pub fn get(c: &AtomicUsize) -> usize {
        c.load(Ordering::SeqCst)
    }
}

pub struct Server {
    listener: TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
    shared: Arc<api::Shared>,
    stop: Arc<AtomicBool>,
}

impl Server {
    pub fn bind(opts: Options) -> Result<Self, ServerError> {
        if opts.listen.ip() != IpAddr::V4(Ipv4Addr::LOCALHOST) {
            return Err(ServerError::NotLoopback(opts.listen));
        }
        let tls = opts.tls.as_ref().map(tls_config).transpose()?;
        let listener =
            TcpListener::bind(opts.listen).map_err(|source| ServerError::Bind { addr: opts.listen, source })?;
        Ok(Self { listener, tls, shared: Arc::new(api::Shared::new(opts)), stop: Arc::new(AtomicBool::new(false)) })
    }

    pub fn local_addr(&self) -> SocketAddr {
        // A bound listener always has an address.
        self.listener.local_addr().unwrap_or_else(|_| SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))
    }

    /// `http://127.0.0.1:PORT` (or https).
    pub fn url(&self) -> String {
        format!("{}://{}", if self.tls.is_some() { "https" } else { "http" }, self.local_addr())
    }

    pub fn stats(&self) -> Arc<Stats> {
        self.shared.stats.clone()
    }

    /// Serves until stopped, one thread per connection.
    pub fn run(self) {
        for conn in self.listener.incoming() {
            if self.stop.load(Ordering::SeqCst) {
                return;
            }
            let Ok(stream) = conn else { continue };
            let id = self.shared.stats.connections.fetch_add(1, Ordering::SeqCst) + 1;
            let shared = self.shared.clone();
            let tls = self.tls.clone();
            std::thread::spawn(move || serve_connection(id, stream, tls, &shared));
        }
    }

    /// Serves on a background thread until the handle is dropped.
    pub fn spawn(self) -> Handle {
        let handle = Handle { addr: self.local_addr(), url: self.url(), stats: self.stats(), stop: self.stop.clone() };
        std::thread::spawn(move || self.run());
        handle
    }
}

pub struct Handle {
    pub addr: SocketAddr,
    pub url: String,
    pub stats: Arc<Stats>,
    stop: Arc<AtomicBool>,
}

impl Drop for Handle {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
    }
}

/// A TLS 1.3 server configuration (what Trustee serves, and the only
/// version the guest speaks).
pub(crate) fn tls_config(files: &TlsFiles) -> Result<Arc<rustls::ServerConfig>, ServerError> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&files.cert)
        .and_then(|it| it.collect::<Result<_, _>>())
        .map_err(|e| ServerError::Tls(format!("{}: {e}", files.cert.display())))?;
    let key = PrivateKeyDer::from_pem_file(&files.key)
        .map_err(|e| ServerError::Tls(format!("{}: {e}", files.key.display())))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| ServerError::Tls(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| ServerError::Tls(e.to_string()))?;
    // The guest never resumes a session (one connection per boot), and the
    // tickets would reach it as a segment of their own ahead of the first
    // answer, which then waits for the guest's delayed ACK.
    config.send_tls13_tickets = 0;
    Ok(Arc::new(config))
}

/// Completes a server handshake on `stream`, so that a client refusing
/// the certificate shows in the log (its alert), not as a silent close.
pub(crate) fn tls_accept(
    stream: &mut TcpStream,
    config: Arc<rustls::ServerConfig>,
) -> Result<rustls::ServerConnection, String> {
    let mut conn = rustls::ServerConnection::new(config).map_err(|e| e.to_string())?;
    while conn.is_handshaking() {
        match conn.complete_io(stream) {
            Ok((0, 0)) if conn.is_handshaking() => return Err("the client closed during the handshake".into()),
            Ok(_) => {}
            Err(e) => return Err(e.to_string()),
        }
    }
    Ok(conn)
}

fn serve_connection(id: usize, mut stream: TcpStream, tls: Option<Arc<rustls::ServerConfig>>, shared: &api::Shared) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    let _ = stream.set_write_timeout(Some(Duration::from_secs(10)));
    let _ = stream.set_nodelay(true);
    match tls {
        None => serve_stream(id, stream.try_clone().ok(), stream, shared),
        Some(config) => match tls_accept(&mut stream, config) {
            Ok(conn) => {
                let raw = stream.try_clone().ok();
                serve_stream(id, raw, rustls::StreamOwned::new(conn, stream), shared)
            }
            Err(e) => {
                shared.stats.tls_failures.fetch_add(1, Ordering::SeqCst);
                log::warn!("TLS handshake failed: {e}");
            }
        },
    }
}

/// Most requests one connection may carry (Trustee's actix-web keeps
/// connections alive too; the guest needs 2 + one per resource).
const MAX_REQUESTS_PER_CONNECTION: usize = 100;

/// Serves requests on one connection until the client closes it, an answer
/// closes it, or the cap is reached. `raw` is the underlying socket, to
/// watch for the peer leaving while stalled.
fn serve_stream<S: Read + Write>(id: usize, raw: Option<TcpStream>, stream: S, shared: &api::Shared) {
    let mut reader = BufReader::new(stream);
    for n in 1..=MAX_REQUESTS_PER_CONNECTION {
        let last = n == MAX_REQUESTS_PER_CONNECTION;
        if !serve_request(id, n, last, raw.as_ref(), &mut reader, shared) {
            return;
        }
    }
}

/// One request and its answer; false when the connection ends here.
fn serve_request<S: Read + Write>(
    id: usize,
    n: usize,
    last: bool,
    raw: Option<&TcpStream>,
    reader: &mut BufReader<S>,
    shared: &api::Shared,
) -> bool {
    let req = match http::read_request(reader, shared.opts.max_request_bytes) {
        Ok(r) => r,
        Err(http::ReadError::Closed) => return false,
        Err(http::ReadError::TooLarge) => {
            let _ = http::Response::text(413, "payload reached size limit").closing().write_to(reader.get_mut());
            // Lingering close: read (a bounded amount of) what the client is
            // still sending, so that closing does not reset the connection
            // before it has read the answer.
            let _ = std::io::copy(&mut reader.take(64 << 20), &mut std::io::sink());
            return false;
        }
        Err(http::ReadError::Bad(why)) => {
            log::warn!("bad request: {why}");
            let _ = http::Response::text(400, "bad request").closing().write_to(reader.get_mut());
            return false;
        }
    };
    shared.stats.requests.fetch_add(1, Ordering::SeqCst);
    let at = format!("(connection {id}, request {n})");
    if shared.has(Fault::Stall) {
        log::info!("{} {} -> (stalled: test fault) {at}", req.method, req.path);
        if let Some(raw) = raw.and_then(|r| r.try_clone().ok()) {
            stall_until_closed(raw);
        }
        return false;
    }
    let reply = api::handle(shared, &req);
    let out = reader.get_mut();
    match reply {
        api::Reply::Full(resp) => {
            log::info!("{} {} -> {}{} {at}", req.method, req.path, resp.status, api::error_summary(&resp));
            let resp = if last || req.wants_close() { resp.closing() } else { resp };
            let keep = !resp.closes() && !shared.has(Fault::CloseAfterEachAnswer);
            resp.write_to(out).is_ok() && keep
        }
        api::Reply::Endless(resp) => {
            log::info!("{} {} -> {} (endless body: test fault) {at}", req.method, req.path, resp.status);
            let total = 256usize << 20;
            if resp.closing().write_head(out, total).is_err() {
                return false;
            }
            let chunk = vec![b'A'; 64 << 10];
            let mut sent = 0;
            while sent < total && out.write_all(&chunk).is_ok() {
                sent += chunk.len();
            }
            false
        }
    }
}

fn stall_until_closed(mut raw: TcpStream) {
    let _ = raw.set_read_timeout(Some(Duration::from_millis(200)));
    let mut buf = [0u8; 256];
    for _ in 0..(600 * 5) {
        match raw.read(&mut buf) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
            Err(_) => break,
        }
    }
    let _ = raw.shutdown(Shutdown::Both);
}
