//! `[kbs]` and `[[secrets]]`: where the Key Broker Service is, how it is
//! authenticated, how long to try, and which resources become files.
//!
//! Everything security-relevant (URL, certificate, `insecure_http`,
//! resources) comes only from the baked, measured file (initdata may set
//! `url` only when the baked trust is a pin or a CA); the kernel command
//! line may tune the timeouts and retry counts (see `config::cmdline`).

use serde::Deserialize;

use super::resource::ResourcePath;
use super::transport::{Endpoint, Scheme, parse_pem_certs};
use crate::schema::{KeyedError, Section, Validator};

/// A pinned certificate or CA bundle file is small; anything larger is not one.
pub const MAX_CERT_FILE_BYTES: u64 = 1 << 20;

/// The `[kbs]` section as written: the four certificate keys and
/// `insecure_http` become one [`KbsTrust`] when the section is read.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawKbsConfig {
    /// Base URL, e.g. `https://kbs.example:8080`. Absent: no KBS.
    url: Option<Endpoint>,
    /// PEM of the CA(s) that issued the KBS certificate (hostname and
    /// validity are checked).
    ca_cert: Option<String>,
    /// The same, as a file in the image.
    ca_cert_file: Option<String>,
    /// PEM of the KBS's own certificate: the server must present exactly
    /// this certificate (no chain, hostname or validity check).
    pinned_cert: Option<String>,
    /// The same, as a file in the image.
    pinned_cert_file: Option<String>,
    /// Allow a plain `http://` URL (development only).
    insecure_http: bool,
    connect_timeout_ms: u64,
    read_timeout_ms: u64,
    retries: u32,
    retry_backoff_ms: u64,
    deadline_ms: u64,
    max_resource_bytes: u64,
}

impl Default for RawKbsConfig {
    fn default() -> Self {
        Self {
            url: None,
            ca_cert: None,
            ca_cert_file: None,
            pinned_cert: None,
            pinned_cert_file: None,
            insecure_http: false,
            connect_timeout_ms: 5_000,
            read_timeout_ms: 30_000,
            retries: 5,
            retry_backoff_ms: 500,
            deadline_ms: 120_000,
            max_resource_bytes: 1 << 20,
        }
    }
}

/// `[kbs]`: the server and how it is authenticated (decided when the
/// section is read, so no later stage parses the url or picks among
/// certificate keys again), and the timing knobs.
#[derive(Debug, Clone, Deserialize)]
#[serde(try_from = "RawKbsConfig")]
pub struct KbsConfig {
    /// `None`: no KBS.
    pub server: Option<KbsServer>,
    /// TCP connect timeout per attempt.
    pub connect_timeout_ms: u64,
    /// Longest wait for the next bytes of a response.
    pub read_timeout_ms: u64,
    /// Further attempts after a connection failure, per request.
    pub retries: u32,
    /// First pause between attempts; doubled each time, up to 8 s.
    pub retry_backoff_ms: u64,
    /// Bound on the whole KBS conversation: attestation and every resource.
    pub deadline_ms: u64,
    /// Largest resource accepted (plaintext bytes).
    pub max_resource_bytes: u64,
}

/// Where the KBS is and why the guest believes it is talking to it. The
/// scheme and the trust agree by construction: `http://` goes with
/// [`KbsTrust::InsecureHttp`] and nothing else.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KbsServer {
    url: Endpoint,
    trust: KbsTrust,
}

impl KbsServer {
    /// Refuses a scheme and a trust that do not agree.
    pub fn new(url: Endpoint, trust: KbsTrust) -> Result<Self, KeyedError> {
        match (url.scheme, &trust) {
            (Scheme::Http, KbsTrust::InsecureHttp) | (Scheme::Https, KbsTrust::Pinned(_) | KbsTrust::Ca(_)) => {
                Ok(Self { url, trust })
            }
            (Scheme::Http, _) => Err(KeyedError::new(trust.key(), "has no effect with an http:// url")),
            (Scheme::Https, _) => Err(KeyedError::new(
                "insecure_http",
                "the url is https://: insecure_http = true must go with an http:// url",
            )),
        }
    }

    pub fn url(&self) -> &Endpoint {
        &self.url
    }

    pub fn trust(&self) -> &KbsTrust {
        &self.trust
    }
}

/// How the KBS is authenticated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KbsTrust {
    /// The server presents exactly this certificate.
    Pinned(Pem),
    /// A CA that issued the server's certificate (hostname and validity checked).
    Ca(Pem),
    /// Plain HTTP: no authenticity at all (development images only).
    InsecureHttp,
}

/// PEM text, inline in the baked file or a file in the image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pem {
    Inline(String),
    File(String),
}

impl KbsTrust {
    /// True when the baked file authenticates whatever server a url names.
    pub fn is_anchored(&self) -> bool {
        !matches!(self, KbsTrust::InsecureHttp)
    }

    /// The configuration key the trust was read from.
    pub fn key(&self) -> &'static str {
        match self {
            KbsTrust::Pinned(Pem::Inline(_)) => "pinned_cert",
            KbsTrust::Pinned(Pem::File(_)) => "pinned_cert_file",
            KbsTrust::Ca(Pem::Inline(_)) => "ca_cert",
            KbsTrust::Ca(Pem::File(_)) => "ca_cert_file",
            KbsTrust::InsecureHttp => "insecure_http",
        }
    }

    fn pem(&self) -> Option<&Pem> {
        match self {
            KbsTrust::Pinned(p) | KbsTrust::Ca(p) => Some(p),
            KbsTrust::InsecureHttp => None,
        }
    }
}

impl Default for KbsConfig {
    fn default() -> Self {
        Self::with_knobs(None, &RawKbsConfig::default())
    }
}

impl KbsConfig {
    /// `server` with the timing knobs of `raw`.
    fn with_knobs(server: Option<KbsServer>, raw: &RawKbsConfig) -> Self {
        Self {
            server,
            connect_timeout_ms: raw.connect_timeout_ms,
            read_timeout_ms: raw.read_timeout_ms,
            retries: raw.retries,
            retry_backoff_ms: raw.retry_backoff_ms,
            deadline_ms: raw.deadline_ms,
            max_resource_bytes: raw.max_resource_bytes,
        }
    }
}

/// Upper bound of `max_resource_bytes`.
pub const MAX_RESOURCE_BYTES: u64 = 64 << 20;

impl TryFrom<RawKbsConfig> for KbsConfig {
    type Error = KeyedError;

    fn try_from(raw: RawKbsConfig) -> Result<Self, KeyedError> {
        let knobs = Self::with_knobs(None, &raw);
        let certs: Vec<(&'static str, KbsTrust)> = [
            ("ca_cert", raw.ca_cert.map(|p| KbsTrust::Ca(Pem::Inline(p)))),
            ("ca_cert_file", raw.ca_cert_file.map(|p| KbsTrust::Ca(Pem::File(p)))),
            ("pinned_cert", raw.pinned_cert.map(|p| KbsTrust::Pinned(Pem::Inline(p)))),
            ("pinned_cert_file", raw.pinned_cert_file.map(|p| KbsTrust::Pinned(Pem::File(p)))),
        ]
        .into_iter()
        .filter_map(|(k, t)| Some((k, t?)))
        .collect();
        let server = match raw.url {
            None => {
                let stray = certs.first().map(|(k, _)| *k).or(raw.insecure_http.then_some("insecure_http"));
                if let Some(key) = stray {
                    return Err(KeyedError::new(key, "has no effect without kbs.url"));
                }
                None
            }
            Some(url) => {
                let trust = match (url.scheme, raw.insecure_http, certs.as_slice()) {
                    (Scheme::Http, false, _) => {
                        return Err(KeyedError::new(
                            "url",
                            "http:// needs insecure_http = true (development only); use https:// with a pinned certificate",
                        ));
                    }
                    (Scheme::Http, true, []) => KbsTrust::InsecureHttp,
                    (Scheme::Http, true, [(key, _), ..]) => {
                        return Err(KeyedError::new(key, "has no effect with an http:// url"));
                    }
                    (Scheme::Https, true, _) => {
                        return Err(KeyedError::new(
                            "insecure_http",
                            "the url is https://: insecure_http = true must go with an http:// url",
                        ));
                    }
                    (Scheme::Https, false, []) => {
                        return Err(KeyedError::new(
                            "",
                            "an https:// url needs exactly one of ca_cert, ca_cert_file, pinned_cert, pinned_cert_file (the guest has no system roots)",
                        ));
                    }
                    (Scheme::Https, false, [(_, trust)]) => trust.clone(),
                    (Scheme::Https, false, several) => {
                        let keys: Vec<&str> = several.iter().map(|(k, _)| *k).collect();
                        return Err(KeyedError::new(keys[1], format!("only one of {} may be set", keys.join(", "))));
                    }
                };
                Some(KbsServer::new(url, trust)?)
            }
        };
        Ok(Self { server, ..knobs })
    }
}

impl KbsConfig {
    /// True when a KBS is configured.
    pub fn is_enabled(&self) -> bool {
        self.server.is_some()
    }
}

impl Section for KbsConfig {
    fn validate(&self, v: &mut Validator<'_>) {
        v.range("connect_timeout_ms", self.connect_timeout_ms, 100, 600_000);
        v.range("read_timeout_ms", self.read_timeout_ms, 100, 600_000);
        v.range("retries", self.retries, 0, 100);
        v.range("retry_backoff_ms", self.retry_backoff_ms, 0, 60_000);
        v.range("deadline_ms", self.deadline_ms, 1_000, 3_600_000);
        v.range("max_resource_bytes", self.max_resource_bytes, 1, MAX_RESOURCE_BYTES);
        let Some(server) = &self.server else { return };
        let key = server.trust().key();
        let pem = match server.trust().pem() {
            None => return,
            Some(Pem::Inline(pem)) => pem.as_bytes().to_vec(),
            Some(Pem::File(path)) => {
                if !v.absolute_path(key, path) {
                    return;
                }
                match v.file(key, path, MAX_CERT_FILE_BYTES) {
                    Some(bytes) => bytes,
                    None => return,
                }
            }
        };
        if let Err(e) = parse_pem_certs(&pem) {
            v.error(key, e);
        }
    }
}

/// One `[[secrets]]` entry: a KBS resource delivered to the workload as a
/// file under `$CREDENTIALS_DIRECTORY`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecretConfig {
    /// `repo/type/tag`.
    pub resource: ResourcePath,
    /// File name under the credentials directory.
    pub file: String,
    /// File mode: 0o400 (default) or 0o440 (readable by the workload's group).
    #[serde(default = "owner_only")]
    pub mode: u32,
}

fn owner_only() -> u32 {
    0o400
}

/// A name for a file directly under the credentials directory.
pub fn valid_file_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 255
        && !name.starts_with('.')
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
}

impl Section for SecretConfig {
    fn validate(&self, v: &mut Validator<'_>) {
        if !valid_file_name(&self.file) {
            v.error(
                "file",
                format!("{:?} must be a plain file name: 1-255 of a-z A-Z 0-9 . _ -, not starting with '.'", self.file),
            );
        }
        if self.mode != 0o400 && self.mode != 0o440 {
            v.error("mode", format!("{:#o} is not allowed: use 0o400 or 0o440", self.mode));
        }
    }
}

/// Rules between `[kbs]` and `[[secrets]]`, as (key, message) pairs. The
/// integrator's `Config::validate_across` records each with `v.error(key, msg)`.
pub fn cross_check(kbs: &KbsConfig, secrets: &[SecretConfig]) -> Vec<(String, String)> {
    let mut issues = Vec::new();
    if !secrets.is_empty() && !kbs.is_enabled() {
        issues.push(("kbs.url".to_string(), "required: [[secrets]] are fetched from the KBS".to_string()));
    }
    for (i, s) in secrets.iter().enumerate() {
        if secrets[..i].iter().any(|earlier| earlier.file == s.file) {
            issues.push((format!("secrets[{i}].file"), format!("{:?} is already used by another secret", s.file)));
        }
    }
    issues
}

#[cfg(test)]
mod tests;
