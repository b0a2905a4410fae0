//! The OCI distribution API client: manifests and blobs over HTTP/1.1 (TLS
//! through rustls with the baked CA or pinned certificate), anonymous,
//! bearer-token and basic authentication, redirects, bounded retries with
//! backoff inside one overall deadline, sizes capped before anything is
//! allocated, and every byte checked against its digest. The registry is
//! the adversary: whatever it sends is checked, and nothing it sends is
//! trusted until its digest matched.

pub mod auth;
mod conn;
#[cfg(test)]
mod tests;
pub mod url;

use std::cell::Cell;
use std::io::{self, Read, Write};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use rustls::ClientConfig;
use zeroize::Zeroizing;
use ztinit::kbs::http::{HttpError, truncate};
pub use ztinit::kbs::transport::{Scheme, Trust};

pub use self::auth::{Challenge, ChallengeError, Credentials, parse_token_response, parse_www_authenticate};
use self::conn::{Conn, Limits, Response, io_failure};
use self::url::{Origin, Url};
use crate::digest::{Digest, DigestError, DigestWriter};
use crate::manifest::Descriptor;
use crate::reference::{is_valid_repository, is_valid_tag};

/// Longest pause between two attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(4);
const MAX_REDIRECTS: u32 = 5;
/// The bounded buffer a blob streams through.
const COPY_BUFFER: usize = 64 * 1024;
/// A redirect's or error's body read to keep the connection; more is not.
const DRAIN_CAP: u64 = 64 * 1024;
/// Of an error body, for the registry's error code in the message.
const ERROR_BODY_CAP: u64 = 4 * 1024;

pub struct RegistryOptions {
    /// `host[:port]`, as in the image reference.
    pub host: String,
    pub scheme: Scheme,
    /// `Trust::None` for http; `Ca` or `Pinned` for https. Also used for a
    /// token realm or redirect target on another host.
    pub trust: Trust,
    pub credentials: Option<Credentials>,
    /// Attempts after the first, per request, on connection failures,
    /// timeouts, 429 and 5xx.
    pub retries: u32,
    /// No attempt starts, and no read waits, past this instant.
    pub deadline: Instant,
    pub connect_timeout: Duration,
    pub read_timeout: Duration,
    /// The first pause between attempts; it doubles up to 4 s.
    pub backoff: Duration,
}

impl RegistryOptions {
    /// Anonymous, with 4 retries, 10 s to connect, 30 s per read and a
    /// 250 ms first backoff.
    pub fn new(host: impl Into<String>, scheme: Scheme, trust: Trust, deadline: Instant) -> Self {
        Self {
            host: host.into(),
            scheme,
            trust,
            credentials: None,
            retries: 4,
            deadline,
            connect_timeout: Duration::from_secs(10),
            read_timeout: Duration::from_secs(30),
            backoff: Duration::from_millis(250),
        }
    }
}

/// A manifest as the registry sent it.
#[derive(Debug, Clone)]
pub struct Fetched {
    pub bytes: Vec<u8>,
    /// The response's Content-Type without parameters ("" when absent):
    /// informative only, it is not covered by the digest.
    pub media_type: String,
    /// sha256 of `bytes`.
    pub digest: Digest,
}

/// A failed registry step: `"{step}: {kind}"`, the step being `registry`
/// (setup), `manifest TAG-OR-DIGEST` or `blob sha256:…`.
#[derive(Debug, thiserror::Error)]
#[error("{step}: {kind}")]
pub struct RegistryError {
    pub step: String,
    pub kind: RegistryErrorKind,
}

#[derive(Debug, thiserror::Error)]
pub enum RegistryErrorKind {
    #[error("gave up after {attempts} attempt(s) in {elapsed_ms} ms: {last}")]
    Exhausted { attempts: u32, elapsed_ms: u64, last: String },
    #[error("deadline reached after {attempts} attempt(s) in {elapsed_ms} ms: {last}")]
    Deadline { attempts: u32, elapsed_ms: u64, last: String },
    #[error("HTTP {status} from {url}{detail}")]
    Status { status: u16, url: String, detail: String },
    #[error("{origin}: {source}")]
    Http {
        origin: String,
        #[source]
        source: HttpError,
    },
    #[error("TLS with {origin}: {source}")]
    Tls {
        origin: String,
        #[source]
        source: rustls::Error,
    },
    #[error("{0}")]
    Setup(String),
    #[error("{what} of {size} bytes is larger than the {cap}-byte cap")]
    TooLarge { what: &'static str, size: u64, cap: u64 },
    #[error("{0}")]
    Digest(#[from] DigestError),
    #[error("not authorized: {0}")]
    Unauthorized(String),
    #[error("token from {realm}: {why}")]
    Token { realm: String, why: String },
    #[error("{0}")]
    Challenge(#[from] ChallengeError),
    #[error("redirect: {0}")]
    Redirect(String),
    #[error("invalid response: {0}")]
    Invalid(String),
    #[error("cannot write the blob out: {0}")]
    Output(#[source] io::Error),
    #[error("invalid request: {0}")]
    Request(String),
}

use RegistryErrorKind as Kind;

/// How one attempt failed.
enum Fail {
    /// Worth another attempt (connection refused or lost, timeout, 429, 5xx).
    Retry(String),
    Fatal(Kind),
    /// A kept connection the server had closed before this request reached
    /// it: the request is sent again on a fresh one at once.
    Stale(String),
}

#[derive(Default)]
struct AuthState {
    /// The registry asked for basic credentials: send them up front.
    basic: bool,
    /// Bearer tokens by repository.
    tokens: Vec<(String, Zeroizing<String>)>,
}

pub struct Registry {
    origin: Origin,
    tls: Option<Arc<ClientConfig>>,
    credentials: Option<Credentials>,
    retries: u32,
    deadline: Instant,
    connect_timeout: Duration,
    read_timeout: Duration,
    backoff: Duration,
    /// Idle kept-alive connections, at most one per origin.
    pool: Mutex<Vec<Conn>>,
    auth: Mutex<AuthState>,
    opened: AtomicU32,
    user_agent: String,
}

fn setup(kind: Kind) -> RegistryError {
    RegistryError { step: "registry".into(), kind }
}

impl Registry {
    pub fn new(opts: RegistryOptions) -> Result<Self, RegistryError> {
        let origin = Origin::parse(opts.scheme, &opts.host)
            .map_err(|why| setup(Kind::Setup(format!("registry host {:?}: {why}", truncate(&opts.host, 80)))))?;
        let tls_setup = |e: ztinit::kbs::transport::TransportError| setup(Kind::Setup(e.to_string()));
        let tls = match (opts.scheme, opts.trust) {
            (Scheme::Http, Trust::None) => None,
            (Scheme::Https, Trust::Ca(certs)) => {
                Some(Arc::new(ztinit::kbs::transport::ca_config(certs).map_err(tls_setup)?))
            }
            (Scheme::Https, Trust::Pinned(certs)) => {
                Some(Arc::new(ztinit::kbs::transport::pinned_config(certs).map_err(tls_setup)?))
            }
            (Scheme::Http, _) => {
                return Err(setup(Kind::Setup("a plain http registry cannot use a certificate".into())));
            }
            (Scheme::Https, Trust::None) => {
                return Err(setup(Kind::Setup("an https registry needs a CA or pinned certificate".into())));
            }
        };
        if let Some(c) = &opts.credentials {
            c.check().map_err(|why| setup(Kind::Setup(why.into())))?;
        }
        Ok(Self {
            origin,
            tls,
            credentials: opts.credentials,
            retries: opts.retries,
            deadline: opts.deadline,
            connect_timeout: opts.connect_timeout,
            read_timeout: opts.read_timeout,
            backoff: opts.backoff,
            pool: Mutex::new(Vec::new()),
            auth: Mutex::new(AuthState::default()),
            opened: AtomicU32::new(0),
            user_agent: format!("ztinit-image/{}", env!("CARGO_PKG_VERSION")),
        })
    }

    /// TCP connections opened so far (keep-alive makes this small).
    pub fn connections_opened(&self) -> u32 {
        self.opened.load(Ordering::Relaxed)
    }

    /// The manifest (or index) `reference` (a tag or `sha256:` digest) of
    /// `repo`, at most `cap` bytes. Fetched by digest, the bytes must hash
    /// to it.
    pub fn get_manifest(
        &self,
        repo: &str,
        reference: &str,
        accept: &[&str],
        cap: usize,
    ) -> Result<Fetched, RegistryError> {
        let step = format!("manifest {}", truncate(reference, 80));
        let fail = |kind| RegistryError { step: step.clone(), kind };
        check_repo(repo).map_err(fail)?;
        let pinned = if reference.contains(':') {
            Some(Digest::parse(reference).map_err(|e| fail(Kind::Request(e.to_string())))?)
        } else if is_valid_tag(reference) {
            None
        } else {
            return Err(fail(Kind::Request(format!("invalid tag {:?}", truncate(reference, 80)))));
        };
        if let Some(bad) = accept.iter().find(|a| a.is_empty() || !a.bytes().all(|b| b.is_ascii_graphic() && b != b','))
        {
            return Err(fail(Kind::Request(format!("invalid media type {:?} to accept", truncate(bad, 80)))));
        }
        let cap64 = u64::try_from(cap).unwrap_or(u64::MAX);
        let path = format!("/v2/{repo}/manifests/{reference}");
        let fetched = self.fetch(&step, repo, &path, &accept.join(", "), None, &mut |resp| {
            if resp.status != 200 {
                return Err(Fail::Fatal(Kind::Invalid(format!("HTTP {} for a manifest", resp.status))));
            }
            let origin = resp.body_origin();
            let bytes = read_capped(&mut resp.body, "manifest", cap64, &origin)?;
            let media_type = resp
                .head
                .header("content-type")
                .and_then(|c| c.split(';').next())
                .map(|c| truncate(c.trim(), 255))
                .unwrap_or_default();
            Ok(Fetched { digest: Digest::of(&bytes), bytes, media_type })
        })?;
        if let Some(expected) = pinned
            && fetched.digest != expected
        {
            return Err(fail(Kind::Digest(DigestError::Mismatch { expected, actual: fetched.digest })));
        }
        Ok(fetched)
    }

    /// A small blob (a config, a signature payload) read whole: its
    /// descriptor's size is checked against `cap` before any request, the
    /// announced length against the descriptor before any byte is read,
    /// and the digest at the end.
    pub fn get_blob(&self, repo: &str, descriptor: &Descriptor, cap: usize) -> Result<Vec<u8>, RegistryError> {
        let step = format!("blob {}", descriptor.digest);
        let fail = |kind| RegistryError { step: step.clone(), kind };
        check_repo(repo).map_err(fail)?;
        let cap64 = u64::try_from(cap).unwrap_or(u64::MAX);
        if descriptor.size > cap64 {
            return Err(fail(Kind::TooLarge { what: "blob", size: descriptor.size, cap: cap64 }));
        }
        let path = format!("/v2/{repo}/blobs/{}", descriptor.digest);
        self.fetch(&step, repo, &path, "", None, &mut |resp| {
            if resp.status != 200 {
                return Err(Fail::Fatal(Kind::Invalid(format!("HTTP {} for a whole blob", resp.status))));
            }
            check_announced(resp, descriptor.size, 0)?;
            let origin = resp.body_origin();
            let bytes = read_capped(&mut resp.body, "blob", descriptor.size, &origin)?;
            let len = u64::try_from(bytes.len()).unwrap_or(u64::MAX);
            if len != descriptor.size {
                return Err(Fail::Fatal(Kind::Digest(DigestError::Size { expected: descriptor.size, actual: len })));
            }
            let actual = Digest::of(&bytes);
            if actual != descriptor.digest {
                return Err(Fail::Fatal(Kind::Digest(DigestError::Mismatch {
                    expected: descriptor.digest.clone(),
                    actual,
                })));
            }
            Ok(bytes)
        })
    }

    /// A blob streamed into `out` through a bounded buffer, its size and
    /// digest checked: `out` holds unverified bytes until this returns Ok.
    /// A connection lost mid-blob resumes with a `Range` request (or skips
    /// what it already has when the server ignores the range).
    pub fn copy_blob(&self, repo: &str, descriptor: &Descriptor, out: &mut dyn Write) -> Result<(), RegistryError> {
        let step = format!("blob {}", descriptor.digest);
        let fail = |kind| RegistryError { step: step.clone(), kind };
        check_repo(repo).map_err(fail)?;
        let path = format!("/v2/{repo}/blobs/{}", descriptor.digest);
        let size = descriptor.size;
        let resume = Cell::new(0u64);
        let mut writer = DigestWriter::new(out);
        let mut buf = vec![0u8; COPY_BUFFER];
        self.fetch(&step, repo, &path, "", Some(&resume), &mut |resp| {
            let have = writer.written();
            let mut skip = match resp.status {
                200 => {
                    check_announced(resp, size, 0)?;
                    have
                }
                206 if have > 0 => {
                    check_content_range(resp, have, size)?;
                    check_announced(resp, size, have)?;
                    0
                }
                s => return Err(Fail::Fatal(Kind::Invalid(format!("unexpected HTTP {s} for a blob")))),
            };
            let origin = resp.body_origin();
            loop {
                let n = resp.body.read(&mut buf).map_err(|e| body_failure(e, &origin))?;
                if n == 0 {
                    break;
                }
                let mut chunk = buf.get(..n).unwrap_or(&[]);
                if skip > 0 {
                    let dropped = usize::try_from(skip).unwrap_or(usize::MAX).min(chunk.len());
                    chunk = chunk.get(dropped..).unwrap_or(&[]);
                    skip -= u64::try_from(dropped).unwrap_or(skip);
                }
                let len = u64::try_from(chunk.len()).unwrap_or(u64::MAX);
                if writer.written().saturating_add(len) > size {
                    return Err(Fail::Fatal(Kind::TooLarge { what: "blob", size: writer.written() + len, cap: size }));
                }
                writer.write_all(chunk).map_err(|e| Fail::Fatal(Kind::Output(e)))?;
                resume.set(writer.written());
            }
            if writer.written() != size {
                return Err(Fail::Fatal(Kind::Digest(DigestError::Size { expected: size, actual: writer.written() })));
            }
            Ok(())
        })?;
        writer.finish(&descriptor.digest, size).map_err(|e| fail(Kind::Digest(e)))?;
        Ok(())
    }

    /// One GET with retries, backoff and the deadline around whole attempts
    /// (authentication and redirects included).
    fn fetch<T>(
        &self,
        step: &str,
        repo: &str,
        path: &str,
        accept: &str,
        resume: Option<&Cell<u64>>,
        consume: &mut dyn FnMut(&mut Response) -> Result<T, Fail>,
    ) -> Result<T, RegistryError> {
        let started = Instant::now();
        let elapsed_ms = || u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        let mut backoff = self.backoff;
        let mut attempts = 0u32;
        loop {
            attempts = attempts.saturating_add(1);
            let why = match self.attempt(repo, path, accept, resume, consume) {
                Ok(v) => return Ok(v),
                Err(Fail::Fatal(kind)) => return Err(RegistryError { step: step.into(), kind }),
                Err(Fail::Retry(why) | Fail::Stale(why)) => why,
            };
            let now = Instant::now();
            if now >= self.deadline || now + backoff >= self.deadline {
                let kind = Kind::Deadline { attempts, elapsed_ms: elapsed_ms(), last: why };
                return Err(RegistryError { step: step.into(), kind });
            }
            if attempts > self.retries {
                let kind = Kind::Exhausted { attempts, elapsed_ms: elapsed_ms(), last: why };
                return Err(RegistryError { step: step.into(), kind });
            }
            log::warn!("{step}: attempt {attempts} failed ({why}); retrying in {} ms", backoff.as_millis());
            std::thread::sleep(backoff);
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }

    fn attempt<T>(
        &self,
        repo: &str,
        path: &str,
        accept: &str,
        resume: Option<&Cell<u64>>,
        consume: &mut dyn FnMut(&mut Response) -> Result<T, Fail>,
    ) -> Result<T, Fail> {
        let mut url = Url { origin: self.origin.clone(), target: path.to_string() };
        let mut redirects = 0;
        let mut authenticated = false;
        loop {
            let ours = url.origin == self.origin;
            // Credentials go to the registry only, never to a redirect target.
            let authorization = if ours { self.authorization(repo) } else { None };
            let range = resume.map(Cell::get).filter(|&n| n > 0).map(|n| format!("bytes={n}-"));
            let extra: Vec<(&str, &str)> = range.iter().map(|r| ("Range", r.as_str())).collect();
            let mut resp = self.roundtrip(&url, accept, &extra, authorization.as_ref().map(|a| a.as_str()))?;
            match resp.status {
                200 | 206 => {
                    let out = consume(&mut resp)?;
                    self.release(resp);
                    return Ok(out);
                }
                401 if ours && !authenticated => {
                    authenticated = true;
                    let head = resp.head.clone();
                    self.discard(resp);
                    self.authenticate(repo, &head)?;
                }
                401 => {
                    let detail = error_detail(resp);
                    let why = if ours { "after authenticating" } else { "at a redirect target" };
                    return Err(Fail::Fatal(Kind::Unauthorized(format!("HTTP 401 from {url} {why}{detail}"))));
                }
                s @ (301 | 302 | 303 | 307 | 308) => {
                    redirects += 1;
                    if redirects > MAX_REDIRECTS {
                        return Err(Fail::Fatal(Kind::Redirect(format!("more than {MAX_REDIRECTS} redirects"))));
                    }
                    let location = resp.head.header("location").ok_or_else(|| {
                        Fail::Fatal(Kind::Redirect(format!("HTTP {s} from {url} without a Location")))
                    })?;
                    let next = url.join(location).map_err(|e| Fail::Fatal(Kind::Redirect(e.to_string())))?;
                    if url.origin.scheme == Scheme::Https && next.origin.scheme == Scheme::Http {
                        return Err(Fail::Fatal(Kind::Redirect(format!("from https to plain http ({next}) refused"))));
                    }
                    log::debug!("{url} redirects to {next}");
                    self.discard(resp);
                    url = next;
                }
                s @ (429 | 500..=599) => {
                    self.discard(resp);
                    return Err(Fail::Retry(format!("HTTP {s} from {url}")));
                }
                s => {
                    let detail = error_detail(resp);
                    return Err(Fail::Fatal(Kind::Status { status: s, url: url.to_string(), detail }));
                }
            }
        }
    }

    fn authorization(&self, repo: &str) -> Option<Zeroizing<String>> {
        let state = self.auth.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((_, token)) = state.tokens.iter().find(|(r, _)| r == repo) {
            return Some(Zeroizing::new(format!("Bearer {}", token.as_str())));
        }
        if state.basic {
            return self.credentials.as_ref().map(Credentials::basic_authorization);
        }
        None
    }

    /// Answers a 401 from the registry: a bearer token from the realm, or
    /// basic credentials from now on.
    fn authenticate(&self, repo: &str, head: &ztinit::kbs::http::Head) -> Result<(), Fail> {
        let mut challenges = Vec::new();
        for value in head.headers_named("www-authenticate") {
            challenges.extend(auth::parse_www_authenticate(value.as_bytes()).map_err(|e| Fail::Fatal(e.into()))?);
        }
        if challenges.is_empty() {
            return Err(Fail::Fatal(Kind::Unauthorized("HTTP 401 without a WWW-Authenticate challenge".into())));
        }
        match auth::plan(&challenges).map_err(|e| Fail::Fatal(e.into()))? {
            auth::Plan::Basic => {
                if self.credentials.is_none() {
                    return Err(Fail::Fatal(Kind::Unauthorized(
                        "the registry asks for basic authentication and no credentials are configured".into(),
                    )));
                }
                self.auth.lock().unwrap_or_else(PoisonError::into_inner).basic = true;
            }
            auth::Plan::Bearer { realm, service, scope } => {
                let token = self.fetch_token(repo, &realm, service.as_deref(), scope.as_deref())?;
                let mut state = self.auth.lock().unwrap_or_else(PoisonError::into_inner);
                state.tokens.retain(|(r, _)| r != repo);
                state.tokens.push((repo.to_string(), token));
            }
        }
        Ok(())
    }

    /// GET the token realm (possibly another host: same trust, its own
    /// connection), with basic credentials when configured.
    fn fetch_token(
        &self,
        repo: &str,
        realm: &str,
        service: Option<&str>,
        scope: Option<&str>,
    ) -> Result<Zeroizing<String>, Fail> {
        let shown = truncate(realm.split('?').next().unwrap_or(""), 120);
        let token_err = |why: String| Fail::Fatal(Kind::Token { realm: shown.clone(), why });
        let realm_url = Url::parse(realm).map_err(|e| token_err(e.why.into()))?;
        if self.origin.scheme == Scheme::Https && realm_url.origin.scheme == Scheme::Http {
            return Err(token_err("a plain http realm for an https registry is refused".into()));
        }
        let default_scope = format!("repository:{repo}:pull");
        let mut query = Vec::new();
        if let Some(s) = service {
            query.push(("service", s));
        }
        query.push(("scope", scope.unwrap_or(&default_scope)));
        let url = realm_url.with_query(&query);
        log::debug!("fetching a bearer token from {url}");
        let authorization = self.credentials.as_ref().map(Credentials::basic_authorization);
        let mut resp = self.roundtrip(&url, "application/json", &[], authorization.as_ref().map(|a| a.as_str()))?;
        match resp.status {
            200 => {
                let origin = resp.body_origin();
                let cap = u64::try_from(auth::MAX_TOKEN_RESPONSE).unwrap_or(u64::MAX);
                let body = Zeroizing::new(read_capped(&mut resp.body, "token answer", cap, &origin)?);
                self.release(resp);
                auth::parse_token_response(&body).map_err(token_err)
            }
            s @ (429 | 500..=599) => {
                self.discard(resp);
                Err(Fail::Retry(format!("HTTP {s} from the token endpoint {url}")))
            }
            s => {
                let detail = error_detail(resp);
                Err(token_err(format!("HTTP {s}{detail}")))
            }
        }
    }

    fn request_bytes(
        &self,
        url: &Url,
        accept: &str,
        extra: &[(&str, &str)],
        authorization: Option<&str>,
    ) -> Zeroizing<Vec<u8>> {
        let mut r = format!(
            "GET {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: {}\r\nAccept-Encoding: identity\r\n",
            url.target,
            url.origin.host_header(),
            self.user_agent
        );
        if !accept.is_empty() {
            r.push_str(&format!("Accept: {accept}\r\n"));
        }
        for (name, value) in extra {
            r.push_str(&format!("{name}: {value}\r\n"));
        }
        let mut r = Zeroizing::new(r.into_bytes());
        if let Some(a) = authorization {
            r.extend_from_slice(b"Authorization: ");
            r.extend_from_slice(a.as_bytes());
            r.extend_from_slice(b"\r\n");
        }
        r.extend_from_slice(b"\r\n");
        r
    }

    /// One request and its response head, on the origin's kept connection
    /// when there is one, else on a new one.
    fn roundtrip(
        &self,
        url: &Url,
        accept: &str,
        extra: &[(&str, &str)],
        authorization: Option<&str>,
    ) -> Result<Response, Fail> {
        let request = self.request_bytes(url, accept, extra, authorization);
        let kept = {
            let mut pool = self.pool.lock().unwrap_or_else(PoisonError::into_inner);
            pool.iter().position(|c| c.origin == url.origin).map(|i| pool.swap_remove(i))
        };
        if let Some(conn) = kept {
            match conn.exchange(&request, true) {
                Ok(resp) => return Ok(resp),
                Err(Fail::Stale(why)) => {
                    log::debug!("{} closed the kept connection ({why}); opening another", url.origin)
                }
                Err(f) => return Err(f),
            }
        }
        let limits =
            Limits { connect_timeout: self.connect_timeout, read_timeout: self.read_timeout, deadline: self.deadline };
        let conn = Conn::open(&url.origin, self.tls.as_ref(), &limits)?;
        self.opened.fetch_add(1, Ordering::Relaxed);
        conn.exchange(&request, false)
    }

    /// Keeps the response's connection when its body was read to the end.
    fn release(&self, resp: Response) {
        if let Some(conn) = resp.body.into_reusable() {
            let mut pool = self.pool.lock().unwrap_or_else(PoisonError::into_inner);
            pool.retain(|c| c.origin != conn.origin);
            pool.push(conn);
        }
    }

    /// Reads a small unwanted body to keep the connection; a large one, or
    /// one delimited by the close, costs a new connection instead.
    fn discard(&self, mut resp: Response) {
        if !resp.body.delimited() || resp.body.announced().is_some_and(|n| n > DRAIN_CAP) {
            return;
        }
        let mut sink = Vec::new();
        if (&mut resp.body).take(DRAIN_CAP + 1).read_to_end(&mut sink).is_ok()
            && u64::try_from(sink.len()).unwrap_or(u64::MAX) <= DRAIN_CAP
        {
            self.release(resp);
        }
    }
}

impl Response {
    fn body_origin(&self) -> Origin {
        self.body.origin().clone()
    }
}

fn check_repo(repo: &str) -> Result<(), Kind> {
    if is_valid_repository(repo) {
        Ok(())
    } else {
        Err(Kind::Request(format!("invalid repository {:?}", truncate(repo, 80))))
    }
}

/// A Content-Length that is not what the descriptor says (less `have`
/// already received) is refused before any byte of the body is read.
fn check_announced(resp: &Response, size: u64, have: u64) -> Result<(), Fail> {
    let want = size.saturating_sub(have);
    match resp.body.announced() {
        Some(n) if n > want => Err(Fail::Fatal(Kind::TooLarge { what: "announced blob body", size: n, cap: want })),
        Some(n) if n != want => Err(Fail::Fatal(Kind::Invalid(format!(
            "the registry announced {n} bytes where the descriptor leaves {want}"
        )))),
        _ => Ok(()),
    }
}

/// `Content-Range: bytes START-END/TOTAL` of a resumed blob.
fn check_content_range(resp: &Response, start: u64, size: u64) -> Result<(), Fail> {
    let value = resp.head.header("content-range").unwrap_or("");
    let expected_end = size.saturating_sub(1);
    let parsed = value
        .strip_prefix("bytes ")
        .and_then(|r| r.split_once('/'))
        .and_then(|(range, total)| range.split_once('-').map(|(s, e)| (s, e, total)));
    let ok = parsed.is_some_and(|(s, e, total)| {
        s.parse::<u64>() == Ok(start)
            && e.parse::<u64>() == Ok(expected_end)
            && (total == "*" || total.parse::<u64>() == Ok(size))
    });
    if ok {
        Ok(())
    } else {
        Err(Fail::Fatal(Kind::Invalid(format!(
            "Content-Range {:?} does not continue at byte {start} of {size}",
            truncate(value, 60)
        ))))
    }
}

/// Socket errors are worth a retry; framing violations are not.
fn body_failure(e: io::Error, origin: &Origin) -> Fail {
    let tls = e.get_ref().is_some_and(|inner| inner.is::<rustls::Error>());
    if e.kind() == io::ErrorKind::InvalidData && !tls {
        return Fail::Fatal(Kind::Invalid(format!("{origin}: {e}")));
    }
    io_failure(e, origin)
}

/// The body, refused from its Content-Length when that is over `cap`, else
/// read up to `cap` bytes (one more byte is an error).
fn read_capped(body: &mut conn::Body, what: &'static str, cap: u64, origin: &Origin) -> Result<Vec<u8>, Fail> {
    let mut out = Vec::new();
    if let Some(n) = body.announced() {
        if n > cap {
            return Err(Fail::Fatal(Kind::TooLarge { what, size: n, cap }));
        }
        // Within the cap, so it fits memory the caller agreed to.
        out.reserve_exact(usize::try_from(n).unwrap_or(0));
    }
    body.take(cap.saturating_add(1)).read_to_end(&mut out).map_err(|e| body_failure(e, origin))?;
    let len = u64::try_from(out.len()).unwrap_or(u64::MAX);
    if len > cap {
        return Err(Fail::Fatal(Kind::TooLarge { what, size: len, cap }));
    }
    Ok(out)
}

/// `: CODE: message` from a distribution error body, for messages.
fn error_detail(mut resp: Response) -> String {
    #[derive(serde::Deserialize)]
    struct Errors {
        errors: Vec<ErrorEntry>,
    }
    #[derive(serde::Deserialize)]
    struct ErrorEntry {
        #[serde(default)]
        code: String,
        #[serde(default)]
        message: String,
    }
    let mut body = Vec::new();
    // A body that ends only at the close could hold us until the timeout.
    if !resp.body.delimited() {
        return String::new();
    }
    let _ = (&mut resp.body).take(ERROR_BODY_CAP).read_to_end(&mut body);
    match serde_json::from_slice::<Errors>(&body) {
        Ok(e) => match e.errors.first() {
            Some(first) => format!(": {}: {}", truncate(&first.code, 40), truncate(&first.message, 120)),
            None => String::new(),
        },
        Err(_) => String::new(),
    }
}
