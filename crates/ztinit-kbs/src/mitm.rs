//! A man-in-the-middle between a guest and a KBS, as a hostile host would
//! run it (tests only: it shows what the guest's TLS pin is for).
//!
//! It terminates the guest's connection itself (plain HTTP, or HTTPS with
//! a certificate of its own), forwards every request to the real KBS, and
//! learns the guest's ephemeral public key from the `tee-pubkey` of the
//! `/attest` request it forwards. A GET of the resource it was told to
//! replace is answered by the proxy itself: a JWE of *its* content,
//! encrypted to that key. Over plain HTTP the guest cannot tell the
//! difference (JWE gives confidentiality, not authenticity); over HTTPS
//! with a pinned certificate the guest refuses the proxy's certificate
//! before sending anything.

use std::collections::HashMap;
use std::io::{BufReader, Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use ztinit::kbs::ResourcePath;
use ztinit::kbs::http as client_http;
use ztinit::kbs::protocol::{API_PREFIX, Attestation, SESSION_COOKIE};
use ztinit::kbs::transport::Endpoint;

use crate::http::{self, Response};
use crate::jwe::{self, TeePubKey};
use crate::{ServerError, TlsFiles};

/// Largest upstream response relayed.
const MAX_UPSTREAM_BODY: usize = 64 << 20;
const MAX_REQUEST_BYTES: usize = 2 << 20;

pub struct MitmOptions {
    /// Must be 127.0.0.1 (port 0 picks a free one).
    pub listen: SocketAddr,
    /// The real KBS, `http://` or `https://` (its certificate is not checked:
    /// the proxy is the attacker, not a victim).
    pub upstream: String,
    /// Serve HTTPS to the guest with this certificate (the proxy's own).
    pub tls: Option<TlsFiles>,
    /// The resource answered by the proxy instead of the KBS.
    pub replace: ResourcePath,
    /// What the guest gets for it.
    pub replacement: Vec<u8>,
}

/// What the proxy did, for tests and the log.
#[derive(Debug, Default)]
pub struct MitmStats {
    pub forwarded: AtomicUsize,
    pub keys_learned: AtomicUsize,
    pub replaced: AtomicUsize,
    pub tls_failures: AtomicUsize,
}

struct Shared {
    upstream: Endpoint,
    upstream_tls: Option<Arc<rustls::ClientConfig>>,
    replace: ResourcePath,
    replacement: Vec<u8>,
    /// The guest's key by session cookie, and the last one seen.
    keys: Mutex<(HashMap<String, TeePubKey>, Option<TeePubKey>)>,
    stats: Arc<MitmStats>,
}

pub struct Mitm {
    listener: TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
    shared: Arc<Shared>,
    stop: Arc<AtomicBool>,
}

pub struct MitmHandle {
    pub addr: SocketAddr,
    pub url: String,
    pub stats: Arc<MitmStats>,
    stop: Arc<AtomicBool>,
}

impl Drop for MitmHandle {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
    }
}

impl Mitm {
    pub fn bind(opts: MitmOptions) -> Result<Self, ServerError> {
        if opts.listen.ip() != IpAddr::V4(Ipv4Addr::LOCALHOST) {
            return Err(ServerError::NotLoopback(opts.listen));
        }
        let upstream = Endpoint::parse(&opts.upstream).map_err(|e| ServerError::Tls(e.to_string()))?;
        let upstream_tls = match upstream.scheme {
            ztinit::kbs::transport::Scheme::Http => None,
            ztinit::kbs::transport::Scheme::Https => Some(upstream_client_config()?),
        };
        let tls = opts.tls.as_ref().map(crate::tls_config).transpose()?;
        let listener =
            TcpListener::bind(opts.listen).map_err(|source| ServerError::Bind { addr: opts.listen, source })?;
        let shared = Shared {
            upstream,
            upstream_tls,
            replace: opts.replace,
            replacement: opts.replacement,
            keys: Mutex::new((HashMap::new(), None)),
            stats: Arc::default(),
        };
        Ok(Self { listener, tls, shared: Arc::new(shared), stop: Arc::new(AtomicBool::new(false)) })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr().unwrap_or_else(|_| SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))
    }

    pub fn url(&self) -> String {
        format!("{}://{}", if self.tls.is_some() { "https" } else { "http" }, self.local_addr())
    }

    pub fn run(self) {
        for conn in self.listener.incoming() {
            if self.stop.load(Ordering::SeqCst) {
                return;
            }
            let Ok(stream) = conn else { continue };
            let shared = self.shared.clone();
            let tls = self.tls.clone();
            std::thread::spawn(move || serve_connection(stream, tls, &shared));
        }
    }

    pub fn spawn(self) -> MitmHandle {
        let handle = MitmHandle {
            addr: self.local_addr(),
            url: self.url(),
            stats: self.shared.stats.clone(),
            stop: self.stop.clone(),
        };
        std::thread::spawn(move || self.run());
        handle
    }
}

fn serve_connection(mut stream: TcpStream, tls: Option<Arc<rustls::ServerConfig>>, shared: &Shared) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    let _ = stream.set_write_timeout(Some(Duration::from_secs(10)));
    match tls {
        None => serve(stream, shared),
        Some(config) => match crate::tls_accept(&mut stream, config) {
            Ok(conn) => serve(rustls::StreamOwned::new(conn, stream), shared),
            Err(e) => {
                shared.stats.tls_failures.fetch_add(1, Ordering::SeqCst);
                log::warn!("mitm: TLS handshake with the guest failed: {e}");
            }
        },
    }
}

fn serve<S: Read + Write>(stream: S, shared: &Shared) {
    let mut reader = BufReader::new(stream);
    let req = match http::read_request(&mut reader, MAX_REQUEST_BYTES) {
        Ok(r) => r,
        Err(_) => return,
    };
    let out = reader.get_mut();
    let replaced = format!("{API_PREFIX}/resource/{}", shared.replace);
    if req.method == "GET" && req.path == replaced {
        if let Some(resp) = forge(shared, &req) {
            let _ = resp.write_to(out);
            return;
        }
        log::warn!("mitm: no key learned for this session: forwarding {}", req.path);
    }
    if req.method == "POST" && req.path == format!("{API_PREFIX}/attest") {
        learn(shared, &req);
    }
    let resp = match forward(shared, &req) {
        Ok(r) => r,
        Err(e) => {
            log::warn!("mitm: {} {}: upstream: {e}", req.method, req.path);
            Response::text(502, "bad gateway")
        }
    };
    shared.stats.forwarded.fetch_add(1, Ordering::SeqCst);
    log::info!("mitm: forwarded {} {} -> {}", req.method, req.path, resp.status);
    let _ = resp.write_to(out);
}

/// Keeps the guest's ephemeral key from a forwarded `/attest`.
fn learn(shared: &Shared, req: &http::Request) {
    let Ok(attestation) = serde_json::from_slice::<Attestation>(&req.body) else { return };
    let Ok(key) = serde_json::from_value::<TeePubKey>(attestation.runtime_data.tee_pubkey) else { return };
    let mut keys = shared.keys.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(id) = req.cookie(SESSION_COOKIE) {
        keys.0.insert(id, key.clone());
    }
    keys.1 = Some(key);
    shared.stats.keys_learned.fetch_add(1, Ordering::SeqCst);
    log::info!("mitm: learned the guest's ephemeral key from /attest");
}

/// The replaced resource, encrypted to the key learned for this session.
fn forge(shared: &Shared, req: &http::Request) -> Option<Response> {
    let key = {
        let keys = shared.keys.lock().unwrap_or_else(|e| e.into_inner());
        req.cookie(SESSION_COOKIE).and_then(|id| keys.0.get(&id).cloned()).or_else(|| keys.1.clone())?
    };
    let jwe = jwe::recipient(&key).and_then(|r| jwe::encrypt(&r, &shared.replacement));
    match jwe {
        Ok(jwe) => {
            shared.stats.replaced.fetch_add(1, Ordering::SeqCst);
            log::info!("mitm: answered GET {} with its own JWE to the guest's key", req.path);
            Some(Response::json(200, serde_json::to_vec(&jwe).unwrap_or_default()))
        }
        Err(e) => {
            log::warn!("mitm: cannot encrypt to the guest's key: {e}");
            None
        }
    }
}

/// Sends `req` to the real KBS and returns its answer.
fn forward(shared: &Shared, req: &http::Request) -> Result<Response, String> {
    let up = &shared.upstream;
    let addr = format!("{}:{}", up.host, up.port);
    let tcp = TcpStream::connect(&addr).map_err(|e| format!("connect {addr}: {e}"))?;
    let _ = tcp.set_read_timeout(Some(Duration::from_secs(30)));
    let _ = tcp.set_write_timeout(Some(Duration::from_secs(30)));
    let mut head = format!("{} {}{} HTTP/1.1\r\nHost: {addr}\r\n", req.method, up.base_path, req.path);
    for (name, value) in &req.head.headers {
        let hop = ["host", "connection", "content-length", "transfer-encoding"];
        if !hop.iter().any(|h| name.eq_ignore_ascii_case(h)) {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
    }
    head.push_str(&format!("Content-Length: {}\r\nConnection: close\r\n\r\n", req.body.len()));
    match &shared.upstream_tls {
        None => exchange(tcp, head.as_bytes(), &req.body),
        Some(config) => {
            let name = ServerName::try_from(up.host.clone()).map_err(|e| format!("server name: {e}"))?;
            let conn = rustls::ClientConnection::new(config.clone(), name).map_err(|e| e.to_string())?;
            exchange(rustls::StreamOwned::new(conn, tcp), head.as_bytes(), &req.body)
        }
    }
}

fn exchange<S: Read + Write>(mut s: S, head: &[u8], body: &[u8]) -> Result<Response, String> {
    s.write_all(head).and_then(|_| s.write_all(body)).and_then(|_| s.flush()).map_err(|e| e.to_string())?;
    let mut r = BufReader::new(s);
    let head = client_http::read_head(&mut r).map_err(|e| e.to_string())?.ok_or("closed before answering")?;
    let status = client_http::parse_status_line(&head.start).map_err(|e| e.to_string())?;
    let framing = client_http::framing(&head, true).map_err(|e| e.to_string())?;
    let body = client_http::read_body(&mut r, framing, MAX_UPSTREAM_BODY).map_err(|e| e.to_string())?;
    let hop = ["connection", "content-length", "transfer-encoding"];
    let headers =
        head.headers.into_iter().filter(|(n, _)| !hop.iter().any(|h| n.eq_ignore_ascii_case(h))).collect::<Vec<_>>();
    Ok(Response { status, headers, body })
}

/// A TLS client that accepts any certificate from the real KBS.
fn upstream_client_config() -> Result<Arc<rustls::ClientConfig>, ServerError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = Arc::new(AnyCertificate(provider.clone()));
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ServerError::Tls(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

#[derive(Debug)]
struct AnyCertificate(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
