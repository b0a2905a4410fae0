//! Wire types of the Trustee KBS protocol ("RCAR", version 0.4.0) and the
//! runtime-data binding.
//!
//! Field names follow kbs-types 0.18.0 exactly (note the kebab-case outer
//! members and the snake_case members of `tee-evidence`). The crate itself is
//! not used: its JWE `Response` re-serialises the protected header instead of
//! keeping the received string (which is the GCM AAD), and its `std` feature
//! pulls OpenSSL in through `ear`.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::jcs;

/// The only version the server accepts (semver `=0.4.0`).
pub const PROTOCOL_VERSION: &str = "0.4.0";
/// URL path prefix of every endpoint.
pub const API_PREFIX: &str = "/kbs/v0";
/// Name of the session cookie set by `/auth`.
pub const SESSION_COOKIE: &str = "kbs-session-id";
/// Prefix of the `type` member of error bodies.
pub const ERROR_TYPE_PREFIX: &str = "https://github.com/confidential-containers/kbs/errors/";
/// The key algorithm of our ephemeral tee-pubkey (Trustee's and
/// guest-components' default).
pub const KEY_ALG: &str = "ECDH-ES+A256KW";

/// `POST /kbs/v0/auth` body.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Request {
    pub version: String,
    pub tee: String,
    /// Must be present (kbs-types has no default for it).
    #[serde(rename = "extra-params")]
    pub extra_params: Value,
}

/// `/auth` answer.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Challenge {
    /// Opaque: hashed verbatim, never decoded.
    pub nonce: String,
    /// Usually `""`; an object with `selected-hash-algorithm` for some TEEs.
    #[serde(rename = "extra-params", default)]
    pub extra_params: Value,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RuntimeData {
    pub nonce: String,
    #[serde(rename = "tee-pubkey")]
    pub tee_pubkey: Value,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CompositeEvidence {
    pub primary_evidence: Value,
    /// A JSON *string* holding `{"<tee>": evidence, ...}`, or `""`.
    pub additional_evidence: String,
}

/// Initialisation data sent with the evidence. The built-in Trustee AS
/// accepts only `format = "toml"`.
#[derive(Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct InitData {
    pub format: String,
    pub body: String,
}

impl InitData {
    pub fn toml(body: impl Into<String>) -> Self {
        Self { format: "toml".into(), body: body.into() }
    }
}

impl std::fmt::Debug for InitData {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InitData").field("format", &self.format).field("body_len", &self.body.len()).finish()
    }
}

/// `POST /kbs/v0/attest` body.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "kebab-case")]
pub struct Attestation {
    pub init_data: Option<InitData>,
    pub runtime_data: RuntimeData,
    pub tee_evidence: CompositeEvidence,
}

/// `/attest` answer.
#[derive(Clone, Serialize, Deserialize)]
pub struct AttestationToken {
    pub token: String,
}

impl std::fmt::Debug for AttestationToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AttestationToken").field("token_len", &self.token.len()).finish()
    }
}

/// A resource, as a flattened JWE JSON serialisation. All members are
/// base64url without padding; `protected` is kept as received because its
/// ASCII bytes are the GCM additional authenticated data.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct JweResponse {
    pub protected: String,
    pub encrypted_key: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aad: Option<String>,
    pub iv: String,
    pub ciphertext: String,
    pub tag: String,
}

/// Error body of every failed request (RFC 7807-like).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ErrorInformation {
    #[serde(rename = "type")]
    pub error_type: String,
    pub detail: String,
}

impl ErrorInformation {
    pub fn new(variant: &str, detail: impl Into<String>) -> Self {
        Self { error_type: format!("{ERROR_TYPE_PREFIX}{variant}"), detail: detail.into() }
    }

    /// The variant name (`PolicyDeny`, `TokenNotFound`...): the last path
    /// segment of `type`.
    pub fn variant(&self) -> &str {
        self.error_type.rsplit('/').next().unwrap_or(&self.error_type)
    }
}

pub use crate::tee::HashAlgorithm;

/// A challenge's `selected-hash-algorithm` that we do not support: the
/// KBS's text, at most 32 characters of it, control characters replaced.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("challenge selects unsupported hash algorithm {0}")]
pub struct UnsupportedHash(pub String);

impl UnsupportedHash {
    fn new(text: &str) -> UnsupportedHash {
        UnsupportedHash(super::http::truncate(text, 32))
    }
}

/// The algorithm a challenge selects: `extra-params.selected-hash-algorithm`
/// when present (as guest-components reads it), otherwise SHA-384.
pub fn selected_hash(extra_params: &Value) -> Result<HashAlgorithm, UnsupportedHash> {
    match extra_params.get("selected-hash-algorithm") {
        None => Ok(HashAlgorithm::Sha384),
        Some(Value::String(name)) => HashAlgorithm::parse(name).ok_or_else(|| UnsupportedHash::new(name)),
        Some(other) => Err(UnsupportedHash::new(&other.to_string())),
    }
}

/// The `extra-params` we send to `/auth`: the hash algorithms we can use.
pub fn request_extra_params() -> Value {
    json!({ "supported-hash-algorithms": HashAlgorithm::SUPPORTED })
}

/// The object the CPU evidence binds: `{tee-pubkey, nonce, additional-evidence}`;
/// `additional-evidence` is present even when empty.
pub fn cpu_runtime_data(nonce: &str, tee_pubkey: &Value, additional_evidence: &str) -> Value {
    json!({ "tee-pubkey": tee_pubkey, "nonce": nonce, "additional-evidence": additional_evidence })
}

/// The object each additional device's evidence binds: `{tee-pubkey, nonce}`.
pub fn device_runtime_data(nonce: &str, tee_pubkey: &Value) -> Value {
    json!({ "tee-pubkey": tee_pubkey, "nonce": nonce })
}

/// Hash of the JCS bytes of `runtime_data`: what goes into REPORT_DATA (or a
/// device's nonce).
pub fn runtime_data_digest(alg: HashAlgorithm, runtime_data: &Value) -> Result<Vec<u8>, jcs::JcsError> {
    Ok(alg.digest(&jcs::to_vec(runtime_data)?))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    #[test]
    fn request_matches_the_wire_form() {
        let r = Request { version: PROTOCOL_VERSION.into(), tee: "snp".into(), extra_params: request_extra_params() };
        assert_eq!(
            serde_json::to_string(&r).unwrap(),
            r#"{"version":"0.4.0","tee":"snp","extra-params":{"supported-hash-algorithms":["sha256","sha384","sha512"]}}"#
        );
    }

    #[test]
    fn live_challenge_parses_and_selects_sha384() {
        let c: Challenge =
            serde_json::from_str(r#"{"nonce":"xrbGvHykm71xPXl5h6Wv9IE5FKZ7+jR0jyH6ekt1GYc=","extra-params":""}"#)
                .unwrap();
        assert_eq!(c.nonce, "xrbGvHykm71xPXl5h6Wv9IE5FKZ7+jR0jyH6ekt1GYc=");
        assert_eq!(selected_hash(&c.extra_params), Ok(HashAlgorithm::Sha384));
    }

    #[test]
    fn selected_hash_algorithm_is_honoured_or_refused() {
        let pick = |v: Value| selected_hash(&v);
        assert_eq!(pick(json!({"selected-hash-algorithm": "sha512"})), Ok(HashAlgorithm::Sha512));
        assert_eq!(pick(json!({})), Ok(HashAlgorithm::Sha384));
        assert_eq!(pick(Value::Null), Ok(HashAlgorithm::Sha384));
        assert_eq!(pick(json!({"selected-hash-algorithm": "sm3"})), Err(UnsupportedHash("sm3".to_string())));
        let long = "x".repeat(100);
        assert_eq!(pick(json!({"selected-hash-algorithm": long})), Err(UnsupportedHash("x".repeat(32))));
        assert_eq!(HashAlgorithm::Sha384.digest(b"").len(), 48);
    }

    #[test]
    fn attestation_uses_kebab_outer_and_snake_inner_names() {
        let a = Attestation {
            init_data: None,
            runtime_data: RuntimeData { nonce: "n".into(), tee_pubkey: json!({"kty": "EC"}) },
            tee_evidence: CompositeEvidence {
                primary_evidence: json!({"svn": "1"}),
                additional_evidence: String::new(),
            },
        };
        let v = serde_json::to_value(&a).unwrap();
        assert_eq!(
            v,
            json!({
                "init-data": null,
                "runtime-data": {"nonce": "n", "tee-pubkey": {"kty": "EC"}},
                "tee-evidence": {"primary_evidence": {"svn": "1"}, "additional_evidence": ""}
            })
        );
        let with_init = Attestation { init_data: Some(InitData::toml("version = \"0.1.0\"\n")), ..a };
        let v = serde_json::to_value(&with_init).unwrap();
        assert_eq!(v["init-data"], json!({"format": "toml", "body": "version = \"0.1.0\"\n"}));
    }

    #[test]
    fn live_error_bodies_parse() {
        let e: ErrorInformation = serde_json::from_str(
            r#"{"type":"https://github.com/confidential-containers/kbs/errors/PolicyDeny","detail":"Access denied by policy"}"#,
        )
        .unwrap();
        assert_eq!(e.variant(), "PolicyDeny");
        assert_eq!(e, ErrorInformation::new("PolicyDeny", "Access denied by policy"));
    }

    #[test]
    fn live_jwe_response_parses() {
        let r: JweResponse = serde_json::from_str(LIVE_JWE).unwrap();
        assert_eq!(r.iv, "JI4Ka-91iT0xDyGa");
        assert!(r.aad.is_none());
    }

    #[test]
    fn device_runtime_data_has_no_additional_evidence() {
        let v = device_runtime_data("n", &json!({"kty": "EC"}));
        assert_eq!(String::from_utf8(jcs::to_vec(&v).unwrap()).unwrap(), r#"{"nonce":"n","tee-pubkey":{"kty":"EC"}}"#);
    }

    /// A resource response captured from a live Trustee KBS (research/kbs.md §6.2).
    pub(crate) const LIVE_JWE: &str = r#"{"protected":"eyJhbGciOiJFQ0RILUVTK0EyNTZLVyIsImVuYyI6IkEyNTZHQ00iLCJlcGsiOnsiY3J2IjoiUC0yNTYiLCJrdHkiOiJFQyIsIngiOiJuN1A0bzVMREltbElFekZlT0owdjRyRnFIVElPd3VzMTdTOHdEckQxa3FjIiwieSI6IlUtMDJjaExVQl9YMy1RLWYydXNFZUtoT2lGRjl4dWhYa2t2eTN0QmRNcWcifX0",
 "encrypted_key":"UrBZBUANCFLKOn6TX03XBQubyzVd8WWoXB827nM-djMMUU0QZdl_rQ",
 "iv":"JI4Ka-91iT0xDyGa","ciphertext":"4-LAA5taVR7g32CKj-X4GIEX3xLABeSipq9eulzlZbk","tag":"MNIi9itu4XDcaQMRvxYKgw"}"#;
}
