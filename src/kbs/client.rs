//! The RCAR handshake (auth → challenge → attest) and resource retrieval.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;
use serde_json::Value;
use zeroize::Zeroizing;

use super::config::{KbsConfig, KbsServer, KbsTrust, Pem};
use super::http::truncate;
use super::jwe::TeeKey;
use super::protocol::{
    self, API_PREFIX, Attestation, AttestationToken, Challenge, CompositeEvidence, ErrorInformation, HashAlgorithm,
    InitData, JweResponse, PROTOCOL_VERSION, RuntimeData,
};
use super::resource::ResourcePath;
use super::transport::{self, Policy, Request, Transport, TransportError, Trust, parse_pem_certs};
use super::{DeviceEvidence, FailureClass, KbsError, Op};
use crate::tee::EvidenceProvider;

/// Response caps. A challenge is ~100 bytes; an EAR token with verbose
/// evidence can reach hundreds of KiB.
const MAX_CHALLENGE_BYTES: usize = 64 << 10;
const MAX_TOKEN_BYTES: usize = 4 << 20;
/// Longest nonce we hash (Trustee's is 44 characters).
const MAX_NONCE_LEN: usize = 1024;
/// The token is also sent as `Authorization: Bearer` when that header line
/// is at most this long. Common servers refuse longer header lines (Apache
/// 8190 bytes, nginx 8 KiB buffers, the dev KBS's 8 KiB reader), and an EAR
/// token carrying GPU measurements is longer: the cookie session suffices.
const MAX_BEARER_LINE: usize = 8000;
/// Cookies we keep from a KBS (session id, maybe a load balancer's).
const MAX_COOKIES: usize = 8;
const MAX_COOKIE_LEN: usize = 4096;

/// A KBS client with its ephemeral key. One per boot.
pub struct Client {
    transport: Transport,
    key: Arc<EvidenceKey>,
    deadline: Duration,
    max_resource_bytes: usize,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client").field("endpoint", self.transport.endpoint()).field("key", &self.key).finish()
    }
}

impl Client {
    /// Prepares the transport from the (validated) configuration and
    /// generates the ephemeral key. Certificate files are read from the
    /// paths as given.
    pub fn new(server: &KbsServer, cfg: &KbsConfig) -> Result<Self, KbsError> {
        Client::with_key(server, cfg, Arc::default())
    }

    /// [`Client::new`] with the evidence key another thread may make
    /// meanwhile.
    pub fn with_key(server: &KbsServer, cfg: &KbsConfig, key: Arc<EvidenceKey>) -> Result<Self, KbsError> {
        let part = crate::timeline::part("tls-config");
        let trust = load_trust(server.trust())?;
        let policy = Policy {
            connect_timeout: Duration::from_millis(cfg.connect_timeout_ms),
            read_timeout: Duration::from_millis(cfg.read_timeout_ms),
            retries: cfg.retries,
            backoff: Duration::from_millis(cfg.retry_backoff_ms),
        };
        let transport = Transport::new(server.url().clone(), trust, policy)
            .map_err(|e| KbsError::Transport { op: Op::Setup, source: e })?;
        drop(part);
        Ok(Self {
            transport,
            key,
            deadline: Duration::from_millis(cfg.deadline_ms),
            max_resource_bytes: usize::try_from(cfg.max_resource_bytes).unwrap_or(usize::MAX),
        })
    }

    /// Makes the TLS state of that connection before the network is up
    /// ([`Transport::prepare_ahead`]).
    pub fn prepare_ahead(&self) {
        self.transport.prepare_ahead();
    }

    /// Opens the connection for the first request now ([`Transport::connect_ahead`]).
    pub fn connect_ahead(&self, started: Option<super::transport::Connecting>) {
        self.transport.connect_ahead(started);
    }

    /// (connections opened, responses received) over the client's life.
    pub fn counts(&self) -> (u32, u32) {
        self.transport.counts()
    }

    /// The tee-pubkey this client binds into its evidence.
    pub fn public_jwk(&self) -> Result<&Value, KbsError> {
        Ok(self.key.get()?.public_jwk())
    }

    /// Runs the handshake: `/auth`, evidence from `cpu` and every device
    /// (bound to the challenge and our key), `/attest`. The returned
    /// session fetches resources until the configured deadline, which
    /// starts now.
    pub fn attest<'a>(
        &'a self,
        cpu: &'a mut dyn EvidenceProvider,
        devices: Vec<&'a mut dyn DeviceEvidence>,
        init_data: Option<&'a InitData>,
    ) -> Result<Session<'a>, KbsError> {
        let mut names: Vec<&str> = Vec::new();
        for d in &devices {
            let name = d.name();
            if name.is_empty() || names.contains(&name) {
                return Err(KbsError::Evidence {
                    op: Op::Attest,
                    reason: format!("device evidence name {name:?} is empty or used twice"),
                });
            }
            names.push(name);
        }
        let mut session = Session {
            client: self,
            cpu,
            devices,
            init_data,
            deadline: Instant::now() + self.deadline,
            cookies: BTreeMap::new(),
            token: None,
            fresh_handshake_left: true,
        };
        session.handshake()?;
        Ok(session)
    }
}

/// The ephemeral key the evidence binds (the KBS encrypts every resource
/// to it), made once by whoever needs it first: the boot thread makes it
/// while it waits for the client's TLS handshake ([`EvidenceKey::make`]),
/// otherwise its first use does. Boxed where it is made, so the secret
/// scalar is not copied about afterwards, and zeroized on drop.
#[derive(Default)]
pub struct EvidenceKey(std::sync::OnceLock<Box<TeeKey>>);

impl std::fmt::Debug for EvidenceKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0.get() {
            Some(k) => k.fmt(f),
            None => f.write_str("EvidenceKey(not made yet)"),
        }
    }
}

impl EvidenceKey {
    /// Makes the key unless it is made. A failure is left for its first
    /// use to meet again and report.
    pub fn make(&self) {
        let _ = self.get();
    }

    fn get(&self) -> Result<&TeeKey, KbsError> {
        if let Some(k) = self.0.get() {
            return Ok(k);
        }
        let part = crate::timeline::part("keygen");
        let generated =
            TeeKey::generate().map(Box::new).map_err(|source| KbsError::Crypto { op: Op::Setup, source })?;
        drop(part);
        Ok(self.0.get_or_init(|| generated))
    }
}

/// The certificates the baked trust names (files are read from the image
/// root as given; the configuration checked them when it was loaded).
fn load_trust(trust: &KbsTrust) -> Result<Trust, KbsError> {
    let load = |pem: &Pem| -> Result<_, KbsError> {
        let bytes = match pem {
            Pem::Inline(pem) => pem.as_bytes().to_vec(),
            Pem::File(path) => {
                crate::files::read_image_file(std::path::Path::new("/"), path, super::config::MAX_CERT_FILE_BYTES)
                    .map_err(|source| KbsError::CertFile { path: path.clone(), source })?
            }
        };
        parse_pem_certs(&bytes).map_err(KbsError::Cert)
    };
    Ok(match trust {
        KbsTrust::InsecureHttp => Trust::None,
        KbsTrust::Ca(pem) => Trust::Ca(load(pem)?),
        KbsTrust::Pinned(pem) => Trust::Pinned(load(pem)?),
    })
}

/// True for the error kinds with which a KBS says it no longer knows the
/// session (Trustee: `TokenNotFound` for an unknown or expired cookie).
fn session_lost(kind: &str) -> bool {
    kind == "TokenNotFound" || kind.contains("Cookie")
}

/// An attested session: the cookie and token from `/attest`, and what is
/// needed for one fresh handshake if the KBS forgets the session.
pub struct Session<'a> {
    client: &'a Client,
    cpu: &'a mut dyn EvidenceProvider,
    devices: Vec<&'a mut dyn DeviceEvidence>,
    init_data: Option<&'a InitData>,
    deadline: Instant,
    cookies: BTreeMap<String, Zeroizing<String>>,
    token: Option<Zeroizing<String>>,
    fresh_handshake_left: bool,
}

impl std::fmt::Debug for Session<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session").field("tee", &self.cpu.kind()).field("devices", &self.devices.len()).finish()
    }
}

impl Session<'_> {
    /// Fetches and decrypts one resource. When the KBS says it lost the
    /// session (401 `TokenNotFound`, or a cookie error), runs at most one
    /// fresh handshake per session and tries again. Any other refusal (a
    /// policy denial, a missing resource: Trustee's `PluginInternalError`)
    /// fails at once with the KBS's error: another handshake would get the
    /// same answer.
    pub fn fetch(&mut self, path: &ResourcePath) -> Result<Zeroizing<Vec<u8>>, KbsError> {
        match self.fetch_once(path) {
            Err(KbsError::Refused { status: 401, ref kind, .. }) if session_lost(kind) && self.fresh_handshake_left => {
                self.fresh_handshake_left = false;
                log::warn!("KBS refused resource {path} with 401 {kind}; attesting once more");
                self.handshake()?;
                self.fetch_once(path)
            }
            other => other,
        }
    }

    fn fetch_once(&mut self, path: &ResourcePath) -> Result<Zeroizing<Vec<u8>>, KbsError> {
        let op = Op::Resource(path.to_string());
        let url_path = format!("{API_PREFIX}/{}", path.url_path());
        // base64url expands by 4/3; the header and member names add little.
        let cap = self.client.max_resource_bytes.saturating_mul(4) / 3 + (16 << 10);
        let resp = self.call(&op, "GET", &url_path, None, cap)?;
        let jwe: JweResponse = parse_json(&op, &resp.body)?;
        let part = crate::timeline::part("jwe-decrypt");
        let key = self.client.key.get()?;
        let plaintext = key.decrypt(&jwe).map_err(|source| KbsError::Crypto { op: op.clone(), source })?;
        drop(part);
        if plaintext.len() > self.client.max_resource_bytes {
            return Err(KbsError::Protocol {
                op,
                reason: format!("resource larger than max_resource_bytes ({})", self.client.max_resource_bytes),
            });
        }
        // The size of a secret says something about it (a key's length, a
        // token's kind) and the console is the host's to read: the name
        // only, the size at debug.
        log::info!("KBS resource {path} received");
        log::debug!("KBS resource {path}: {} bytes", plaintext.len());
        Ok(plaintext)
    }

    fn handshake(&mut self) -> Result<(), KbsError> {
        self.cookies.clear();
        self.token = None;
        let tee = self.cpu.kind();

        // 1. auth → challenge
        let request = protocol::Request {
            version: PROTOCOL_VERSION.into(),
            tee: tee.as_str().into(),
            extra_params: protocol::request_extra_params(),
        };
        let body = serde_json::to_vec(&request).map_err(|e| protocol_error(Op::Auth, e))?;
        let resp = self.call(&Op::Auth, "POST", &format!("{API_PREFIX}/auth"), Some(&body), MAX_CHALLENGE_BYTES)?;
        let challenge: Challenge = parse_json(&Op::Auth, &resp.body)?;
        if challenge.nonce.is_empty() || challenge.nonce.len() > MAX_NONCE_LEN {
            return Err(KbsError::Protocol {
                op: Op::Auth,
                reason: format!("challenge nonce of {} bytes (expected 1..={MAX_NONCE_LEN})", challenge.nonce.len()),
            });
        }
        let alg = protocol::selected_hash(&challenge.extra_params)
            .map_err(|e| KbsError::Protocol { op: Op::Auth, reason: e.to_string() })?;

        // 2. evidence: devices first, then the CPU report that covers them
        let tee_pubkey = self.client.public_jwk()?;
        let part = crate::timeline::part("evidence");
        let (primary_evidence, additional_evidence) =
            collect_evidence(tee_pubkey, &challenge.nonce, alg, &mut *self.cpu, &mut self.devices)?;
        drop(part);
        let attestation = Attestation {
            init_data: self.init_data.cloned(),
            runtime_data: RuntimeData { nonce: challenge.nonce, tee_pubkey: tee_pubkey.clone() },
            tee_evidence: CompositeEvidence { primary_evidence, additional_evidence },
        };

        // 3. attest → token
        let body = serde_json::to_vec(&attestation).map_err(|e| protocol_error(Op::Attest, e))?;
        let resp = self.call(&Op::Attest, "POST", &format!("{API_PREFIX}/attest"), Some(&body), MAX_TOKEN_BYTES)?;
        let token: AttestationToken = parse_json(&Op::Attest, &resp.body)?;
        self.token = Some(Zeroizing::new(token.token));
        if !self.cookies.contains_key(protocol::SESSION_COOKIE) {
            log::warn!("KBS sent no {} cookie; relying on the bearer token", protocol::SESSION_COOKIE);
        }
        log::info!(
            "KBS accepted the {tee} evidence{} (hash {})",
            match self.devices.len() {
                0 => String::new(),
                n => format!(" with {n} device(s)"),
            },
            alg.as_str()
        );
        Ok(())
    }

    /// One request with the session's credentials; non-2xx answers become
    /// [`KbsError::Refused`] (with the KBS's error body) or a protocol error.
    fn call(
        &mut self,
        op: &Op,
        method: &'static str,
        path: &str,
        body: Option<&[u8]>,
        max_body: usize,
    ) -> Result<transport::Response, KbsError> {
        let mut headers = Vec::new();
        if !self.cookies.is_empty() {
            let jar: Vec<String> = self.cookies.iter().map(|(k, v)| format!("{k}={}", v.as_str())).collect();
            headers.push(("Cookie", jar.join("; ")));
        }
        if let Some(value) = self.token.as_deref().and_then(|t| bearer(t)) {
            headers.push(("Authorization", value));
        }
        let req = Request { method, path, body, headers, max_body };
        let resp = self.client.transport.send(&req, self.deadline).map_err(|source| match source {
            // A malformed or oversized answer is the peer's protocol fault.
            TransportError::Http(e) => KbsError::Protocol { op: op.clone(), reason: e.to_string() },
            source => KbsError::Transport { op: op.clone(), source },
        })?;
        for value in resp.head.headers_named("set-cookie") {
            self.store_cookie(value);
        }
        match resp.status {
            200 => Ok(resp),
            status => Err(refusal(op, status, &resp.body)),
        }
    }

    /// Keeps `name=value` of a `Set-Cookie` header; attributes are ignored
    /// (one host, one short session).
    fn store_cookie(&mut self, header: &str) {
        let pair = header.split(';').next().unwrap_or("").trim();
        let Some((name, value)) = pair.split_once('=') else {
            return;
        };
        let value = value.trim_matches('"');
        let name_ok = !name.is_empty() && name.bytes().all(super::http::is_token_char);
        let value_ok = value.len() <= MAX_COOKIE_LEN
            && value.bytes().all(|b| b.is_ascii_graphic() && !matches!(b, b'"' | b',' | b';' | b'\\'));
        if !name_ok || !value_ok {
            log::warn!("ignoring a malformed cookie from the KBS");
            return;
        }
        if self.cookies.len() >= MAX_COOKIES && !self.cookies.contains_key(name) {
            log::warn!("ignoring cookie {}: too many cookies", truncate(name, 32));
            return;
        }
        self.cookies.insert(name.to_string(), Zeroizing::new(value.to_string()));
    }
}

/// Evidence bound to our key and the nonce. Each device binds
/// H(JCS({nonce, tee-pubkey})); their evidence is serialised once into the
/// `additional_evidence` string, and that exact string goes into the CPU's
/// runtime data, so the CPU report covers the devices.
pub(crate) fn collect_evidence(
    jwk: &Value,
    nonce: &str,
    alg: HashAlgorithm,
    cpu: &mut dyn EvidenceProvider,
    devices: &mut [&mut dyn DeviceEvidence],
) -> Result<(Value, String), KbsError> {
    let evidence_error = |reason: String| KbsError::Evidence { op: Op::Attest, reason };
    let additional = if devices.is_empty() {
        String::new()
    } else {
        let device_digest = protocol::runtime_data_digest(alg, &protocol::device_runtime_data(nonce, jwk))
            .map_err(|e| evidence_error(e.to_string()))?;
        let mut map = serde_json::Map::new();
        for device in devices.iter_mut() {
            let name = device.name().to_string();
            let ev = device.collect(&device_digest).map_err(|e| evidence_error(format!("{name}: {e}")))?;
            map.insert(name, ev);
        }
        serde_json::to_string(&map).map_err(|e| evidence_error(e.to_string()))?
    };
    let digest = protocol::runtime_data_digest(alg, &protocol::cpu_runtime_data(nonce, jwk, &additional))
        .map_err(|e| evidence_error(e.to_string()))?;
    let primary = cpu.evidence(&digest).map_err(|e| evidence_error(format!("{}: {e}", cpu.kind())))?;
    Ok((primary, additional))
}

/// The `Authorization` value for `token`, when it is plain token68 and its
/// header line stays within `MAX_BEARER_LINE`.
pub(crate) fn bearer(token: &str) -> Option<String> {
    let value = format!("Bearer {token}");
    let line = "Authorization: ".len() + value.len();
    (line <= MAX_BEARER_LINE && token.bytes().all(is_token68_char)).then_some(value)
}

/// RFC 7235 token68 characters (what a JWT consists of).
fn is_token68_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-._~+/=".contains(&b)
}

fn parse_json<T: DeserializeOwned>(op: &Op, body: &[u8]) -> Result<T, KbsError> {
    serde_json::from_slice(body).map_err(|e| KbsError::Protocol {
        op: op.clone(),
        reason: format!("malformed JSON from the KBS: {}", truncate(&e.to_string(), 120)),
    })
}

fn protocol_error(op: Op, e: impl std::fmt::Display) -> KbsError {
    KbsError::Protocol { op, reason: e.to_string() }
}

/// An error answer. Trustee sends `{"type", "detail"}` with 401 (most
/// errors), 403 or 404; anything else is reported by status.
fn refusal(op: &Op, status: u16, body: &[u8]) -> KbsError {
    match serde_json::from_slice::<ErrorInformation>(body) {
        Ok(info) => KbsError::Refused {
            op: op.clone(),
            status,
            kind: truncate(info.variant(), 48),
            detail: truncate(&info.detail, 200),
        },
        Err(_) => KbsError::Refused {
            op: op.clone(),
            status,
            kind: "-".into(),
            detail: truncate(&String::from_utf8_lossy(body), 200),
        },
    }
}

impl KbsError {
    /// Which side failed, for callers and tests.
    pub fn class(&self) -> FailureClass {
        match self {
            KbsError::CertFile { .. } | KbsError::Cert(_) => FailureClass::Config,
            KbsError::Transport { .. } => FailureClass::Transport,
            KbsError::Protocol { .. } => FailureClass::Protocol,
            KbsError::Refused { .. } => FailureClass::Refused,
            KbsError::Crypto { .. } => FailureClass::Crypto,
            KbsError::Evidence { .. } => FailureClass::Evidence,
        }
    }
}
