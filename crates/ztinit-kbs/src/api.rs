//! The protocol endpoints and their state.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::sync::atomic::Ordering;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use rand_core::{OsRng, RngCore};
use serde_json::{Value, json};
use ztinit::kbs::ResourcePath;
use ztinit::kbs::protocol::{self, Attestation, Challenge, HashAlgorithm, PROTOCOL_VERSION, SESSION_COOKIE};

use crate::http::{Request, Response, http_date};
use crate::jwe::{self, TeePubKey};
use crate::{Fault, Options, Stats};

/// Resources larger than this are not served.
const MAX_RESOURCE_BYTES: u64 = 64 << 20;
/// Live sessions kept at most (a development server, but still bounded).
const MAX_SESSIONS: usize = 4096;

pub struct Shared {
    pub opts: Options,
    pub stats: std::sync::Arc<Stats>,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    sessions: HashMap<String, Session>,
    tokens: HashMap<String, TokenInfo>,
    /// Every nonce handed out that has been used in an /attest: never again.
    used_nonces: HashSet<String>,
}

struct Session {
    expires: Instant,
    expires_wall: SystemTime,
    tee: String,
    nonce: String,
    attested: Option<String>,
}

#[derive(Clone)]
struct TokenInfo {
    token: String,
    tee: String,
    tee_pubkey: TeePubKey,
    expires: Instant,
}

pub enum Reply {
    Full(Response),
    /// Headers, then a body that never ends (test fault).
    Endless(Response),
}

impl Shared {
    pub fn new(opts: Options) -> Self {
        Self { opts, stats: Default::default(), state: Mutex::new(State::default()) }
    }

    pub fn has(&self, f: Fault) -> bool {
        self.opts.faults.contains(&f)
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        // A panicking handler thread must not take the server down.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// One line about an error response, for the log.
pub fn error_summary(resp: &Response) -> String {
    if resp.status == 200 {
        return String::new();
    }
    let body: Value = serde_json::from_slice(&resp.body).unwrap_or(Value::Null);
    match (body.get("type").and_then(Value::as_str), body.get("detail").and_then(Value::as_str)) {
        (Some(t), Some(d)) => format!(" {}: {d}", t.rsplit('/').next().unwrap_or(t)),
        _ => String::new(),
    }
}

pub fn handle(shared: &Shared, req: &Request) -> Reply {
    let Some(rest) = req.path.strip_prefix(protocol::API_PREFIX).and_then(|r| r.strip_prefix('/')) else {
        return Reply::Full(Response::error(
            404,
            "InvalidRequestPath",
            format!("Request path {} is invalid", shown(&req.path)),
        ));
    };
    let (first, tail) = rest.split_once('/').unwrap_or((rest, ""));
    match (req.method.as_str(), first) {
        ("POST", "auth") => Reply::Full(auth(shared, req)),
        ("POST", "attest") => Reply::Full(attest(shared, req)),
        ("GET", "resource") => resource(shared, req, tail),
        (_, "auth" | "attest" | "resource") => Reply::Full(Response::text(405, "method not allowed")),
        (_, other) => Reply::Full(Response::error(404, "PluginNotFound", format!("Plugin {} not found", shown(other)))),
    }
}

fn shown(s: &str) -> String {
    ztinit::kbs::http::truncate(s, 80)
}

fn random_bytes<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    OsRng.fill_bytes(&mut b);
    b
}

fn cookie_header(id: &str, expires: SystemTime) -> String {
    format!("{SESSION_COOKIE}={id}; Expires={}", http_date(expires))
}

fn auth_error(why: impl std::fmt::Display) -> Response {
    Response::error(401, "AttestationError", format!("Attestation error: RCAR handshake Auth failed: {why}"))
}

fn attest_error(why: impl std::fmt::Display) -> Response {
    Response::error(401, "AttestationError", format!("Attestation error: RCAR handshake Attest failed: {why}"))
}

fn auth(shared: &Shared, req: &Request) -> Response {
    shared.stats.auth.fetch_add(1, Ordering::SeqCst);
    let Ok(request) = serde_json::from_slice::<protocol::Request>(&req.body) else {
        return auth_error("deserialize Request");
    };
    let expected = if shared.has(Fault::WrongVersion) { "0.3.0" } else { PROTOCOL_VERSION };
    if request.version != expected {
        return auth_error(format!(
            "KBS Client Protocol Version Mismatch: expect ={expected} while the request is {}",
            shown(&request.version)
        ));
    }
    if shared.opts.verifiers.cpu(&request.tee).is_none() {
        return auth_error(format!(
            "tee {:?} is not supported (this KBS verifies: {})",
            shown(&request.tee),
            shared.opts.verifiers.cpu_kinds().join(", ")
        ));
    }
    let id = hex::encode(random_bytes::<16>());
    let nonce = STANDARD.encode(random_bytes::<32>());
    let now = Instant::now();
    let expires_wall = SystemTime::now() + shared.opts.session_ttl;
    {
        let mut state = shared.state();
        state.sessions.retain(|_, s| s.expires > now);
        state.tokens.retain(|_, t| t.expires > now);
        if state.sessions.len() >= MAX_SESSIONS {
            return auth_error("too many sessions");
        }
        state.sessions.insert(
            id.clone(),
            Session {
                expires: now + shared.opts.session_ttl,
                expires_wall,
                tee: request.tee.clone(),
                nonce: nonce.clone(),
                attested: None,
            },
        );
    }
    // Trustee sends "" for every TEE but IBM SE.
    let challenge = Challenge { nonce, extra_params: json!("") };
    Response::json(200, serde_json::to_vec(&challenge).unwrap_or_default())
        .with_header("Set-Cookie", cookie_header(&id, expires_wall))
}

fn attest(shared: &Shared, req: &Request) -> Response {
    shared.stats.attest.fetch_add(1, Ordering::SeqCst);
    let Some(id) = req.cookie(SESSION_COOKIE) else {
        return attest_error("cookie not found");
    };
    let Ok(attestation) = serde_json::from_slice::<Attestation>(&req.body) else {
        return attest_error("deserialize Attestation");
    };
    let now = Instant::now();
    // The session's nonce is single use: the session leaves the table now
    // and comes back only if the evidence verifies.
    let session = {
        let mut state = shared.state();
        match state.sessions.get(&id) {
            Some(s) if s.expires <= now => {
                state.sessions.remove(&id);
                return attest_error("session expired");
            }
            // Trustee answers a repeated /attest with the stored token.
            Some(Session { attested: Some(token), expires_wall, .. }) => {
                let body = serde_json::to_vec(&json!({ "token": token })).unwrap_or_default();
                return Response::json(200, body).with_header("Set-Cookie", cookie_header(&id, *expires_wall));
            }
            Some(_) => state.sessions.remove(&id),
            None => None,
        }
    };
    let Some(session) = session else {
        return attest_error("session not found");
    };
    match verify(shared, &session, &attestation) {
        Err(why) => {
            log::warn!("attestation refused: {why}");
            attest_error(why)
        }
        Ok(info) => {
            let token = info.token.clone();
            let expires_wall = session.expires_wall;
            if !shared.has(Fault::ForgetSessions) {
                let mut state = shared.state();
                let jti = jti_of(&token).unwrap_or_default();
                state.tokens.insert(jti, info);
                state.sessions.insert(id.clone(), Session { attested: Some(token.clone()), ..session });
            }
            let body = serde_json::to_vec(&json!({ "token": token })).unwrap_or_default();
            // Same id, same expiry: attesting does not extend the session.
            Response::json(200, body).with_header("Set-Cookie", cookie_header(&id, expires_wall))
        }
    }
}

/// Rebuilds the runtime data as Trustee does, checks it binds the evidence,
/// and issues a token.
fn verify(shared: &Shared, session: &Session, a: &Attestation) -> Result<TokenInfo, String> {
    if a.runtime_data.nonce != session.nonce {
        return Err("nonce mismatch".into());
    }
    if !shared.state().used_nonces.insert(session.nonce.clone()) {
        return Err("nonce already used".into());
    }
    let tee_pubkey: TeePubKey =
        serde_json::from_value(a.runtime_data.tee_pubkey.clone()).map_err(|_| "invalid tee-pubkey".to_string())?;
    if let Some(init) = &a.init_data
        && init.format != "toml"
    {
        return Err(format!("Unsupported initdata format {}", shown(&init.format)));
    }
    let alg = HashAlgorithm::Sha384;
    let key = tee_pubkey.to_value();
    let additional = &a.tee_evidence.additional_evidence;
    let cpu_rd = protocol::cpu_runtime_data(&session.nonce, &key, additional);
    let digest = protocol::runtime_data_digest(alg, &cpu_rd).map_err(|e| e.to_string())?;
    let verifier = shared.opts.verifiers.cpu(&session.tee).ok_or_else(|| format!("no verifier for {}", session.tee))?;
    let cpu_claims = verifier.verify(&a.tee_evidence.primary_evidence, &digest, a.init_data.as_ref())?;

    let mut submods = serde_json::Map::new();
    submods.insert(
        "cpu0".into(),
        json!({
            "ear.status": "affirming",
            "ear.veraison.annotated-evidence": {
                session.tee.clone(): cpu_claims,
                "runtime_data_claims": cpu_rd,
            }
        }),
    );
    let mut verified = Vec::new();
    if !additional.is_empty() {
        let devices: serde_json::Map<String, Value> =
            serde_json::from_str(additional).map_err(|_| "additional_evidence is not a JSON object".to_string())?;
        let device_rd = protocol::device_runtime_data(&session.nonce, &key);
        let device_digest = protocol::runtime_data_digest(alg, &device_rd).map_err(|e| e.to_string())?;
        for (i, (name, evidence)) in devices.iter().enumerate() {
            let v = shared
                .opts
                .verifiers
                .device(name)
                .ok_or_else(|| format!("no verifier for additional evidence {:?}", shown(name)))?;
            let claims = v.verify(evidence, &device_digest, None).map_err(|e| format!("{name}: {e}"))?;
            verified.push(shown(name));
            submods.insert(
                format!("gpu{i}"),
                json!({"ear.status": "affirming", "ear.veraison.annotated-evidence": { name.clone(): claims }}),
            );
        }
    }
    log::info!(
        "attestation accepted: {}{}",
        session.tee,
        if verified.is_empty() { String::new() } else { format!(" + {}", verified.join(", ")) }
    );
    let iat = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let jti = hex::encode(random_bytes::<16>());
    let claims = json!({
        "iss": "ztinit-kbs",
        "iat": iat,
        "exp": iat + shared.opts.session_ttl.as_secs(),
        "jti": jti,
        "submods": submods,
    });
    // Unsigned: this server keeps its tokens and looks them up by jti.
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#);
    let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims).map_err(|e| e.to_string())?);
    Ok(TokenInfo {
        token: format!("{header}.{payload}."),
        tee: session.tee.clone(),
        tee_pubkey,
        expires: Instant::now() + shared.opts.session_ttl,
    })
}

fn jti_of(token: &str) -> Option<String> {
    let payload = token.split('.').nth(1)?;
    let claims: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).ok()?).ok()?;
    claims.get("jti")?.as_str().map(str::to_string)
}

/// The token of the request: the attested cookie session first, then
/// `Authorization: Bearer`, as Trustee looks them up.
fn token_of(shared: &Shared, req: &Request) -> Option<TokenInfo> {
    let now = Instant::now();
    let state = shared.state();
    let from_cookie = req
        .cookie(SESSION_COOKIE)
        .and_then(|id| state.sessions.get(&id).filter(|s| s.expires > now).and_then(|s| s.attested.clone()));
    let token = from_cookie.or_else(|| req.bearer().map(str::to_string))?;
    let info = state.tokens.get(&jti_of(&token)?)?;
    (info.token == token && info.expires > now).then(|| info.clone())
}

fn resource(shared: &Shared, req: &Request, tail: &str) -> Reply {
    shared.stats.resource.fetch_add(1, Ordering::SeqCst);
    let Some(token) = token_of(shared, req) else {
        return Reply::Full(Response::error(401, "TokenNotFound", "Attestation Token not found"));
    };
    let path = match ResourcePath::parse(tail) {
        Ok(p) => p,
        Err(_) => {
            return Reply::Full(Response::error(
                404,
                "InvalidRequestPath",
                format!("Request path {} is invalid", shown(&req.path)),
            ));
        }
    };
    if let Err(why) = shared.opts.policy.check(&token.tee, &path) {
        return Reply::Full(Response::error(401, "PolicyDeny", format!("Access denied by policy: {why}")));
    }
    let plaintext = match read_resource(shared, &path) {
        Ok(b) => zeroize::Zeroizing::new(b),
        Err(why) => {
            return Reply::Full(Response::error(401, "PluginInternalError", format!("Plugin internal error: {why}")));
        }
    };
    let recipient = if shared.has(Fault::WrongKeyJwe) {
        Ok(p256::SecretKey::random(&mut OsRng).public_key())
    } else {
        jwe::recipient(&token.tee_pubkey)
    };
    let mut jwe = match recipient.and_then(|r| jwe::encrypt(&r, &plaintext)) {
        Ok(j) => j,
        Err(why) => return Reply::Full(Response::error(401, "JweError", format!("JWE failed: {why}"))),
    };
    if shared.has(Fault::TamperedJwe) {
        let mut ct = URL_SAFE_NO_PAD.decode(&jwe.ciphertext).unwrap_or_default();
        if let Some(b) = ct.first_mut() {
            *b ^= 0x01;
            jwe.ciphertext = URL_SAFE_NO_PAD.encode(&ct);
        } else {
            jwe.tag = URL_SAFE_NO_PAD.encode([0u8; 16]);
        }
    }
    let mut body = serde_json::to_vec(&jwe).unwrap_or_default();
    if shared.has(Fault::MalformedJson) {
        body.truncate(body.len() / 2);
    }
    if shared.has(Fault::OversizedBody) {
        return Reply::Endless(Response::json(200, Vec::new()));
    }
    Reply::Full(Response::json(200, body))
}

fn read_resource(shared: &Shared, path: &ResourcePath) -> Result<Vec<u8>, String> {
    // Segments are validated (no '/', no leading '.'), so this stays inside the directory.
    let file = shared.opts.resources.join(path.repo()).join(path.kind()).join(path.tag());
    let meta = std::fs::symlink_metadata(&file).map_err(|_| format!("resource {path} not found"))?;
    if !meta.is_file() {
        return Err(format!("resource {path} is not a regular file"));
    }
    ztinit::config::read_capped(&file, MAX_RESOURCE_BYTES).map_err(|e| format!("resource {path}: {e}"))
}
