//! Binding of evidence to the runtime data, and error reporting.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};

use super::client::collect_evidence;
use super::protocol::HashAlgorithm;
use super::transport::Endpoint;
use super::*;
use crate::tee::sample::SampleProvider;
use crate::tee::{EvidenceProvider, TeeError, TeeKind};

const NONCE: &str = "xrbGvHykm71xPXl5h6Wv9IE5FKZ7+jR0jyH6ekt1GYc=";

fn live_jwk() -> Value {
    json!({
        "kty": "EC", "crv": "P-256", "alg": "ECDH-ES+A256KW",
        "x": "Cwe3UOWXOiv2xdNcFxHIc2K4IZA6qhcrFgGbWya_7oc",
        "y": "TMDdlkwFV19qSQ4DkTLnkEHyb1HpjWzOuSimj1Bt_nY"
    })
}

/// With no devices, the sample evidence is exactly what a live Trustee
/// accepted for this nonce and key (research/kbs.md §5).
#[test]
fn sample_evidence_matches_the_live_trustee_exchange() {
    let (primary, additional) =
        collect_evidence(&live_jwk(), NONCE, HashAlgorithm::Sha384, &mut SampleProvider, &mut []).unwrap();
    assert_eq!(additional, "");
    assert_eq!(
        primary,
        json!({"svn": "1", "report_data": "Ji94mitjEJNX2RJZ6uySf8g28i8o9O8e7VfyNRR/EqsD9rh3j2s0jsyp3K0ldQZK"})
    );
}

struct Recorder {
    name: &'static str,
    seen: Vec<Vec<u8>>,
}

impl DeviceEvidence for Recorder {
    fn name(&self) -> &str {
        self.name
    }
    fn collect(&mut self, digest: &[u8]) -> Result<Value, DeviceEvidenceError> {
        self.seen.push(digest.to_vec());
        Ok(json!({"nonce": hex::encode(&digest[..32])}))
    }
}

/// Devices bind H(JCS({nonce, tee-pubkey})); the CPU binds the hash of the
/// runtime data that contains the exact additional-evidence string.
#[test]
fn devices_are_bound_through_the_cpu_runtime_data() {
    let mut gpu = Recorder { name: "nvidia", seen: Vec::new() };
    let mut dev = SampleDevice;
    let mut devices: Vec<&mut dyn DeviceEvidence> = vec![&mut gpu, &mut dev];
    let (primary, additional) =
        collect_evidence(&live_jwk(), NONCE, HashAlgorithm::Sha384, &mut SampleProvider, &mut devices).unwrap();
    drop(devices);

    let device_jcs = format!(r#"{{"nonce":"{NONCE}","tee-pubkey":{}}}"#, jcs_of(&live_jwk()));
    let device_digest = HashAlgorithm::Sha384.digest(device_jcs.as_bytes());
    assert_eq!(gpu.seen, vec![device_digest.clone()]);

    let map: Value = serde_json::from_str(&additional).unwrap();
    assert_eq!(map["nvidia"]["nonce"], hex::encode(&device_digest[..32]));
    assert_eq!(map["sampledevice"]["report_data"], STANDARD.encode(&device_digest));

    let cpu_jcs = format!(
        r#"{{"additional-evidence":{},"nonce":"{NONCE}","tee-pubkey":{}}}"#,
        serde_json::to_string(&additional).unwrap(),
        jcs_of(&live_jwk())
    );
    let cpu_digest = HashAlgorithm::Sha384.digest(cpu_jcs.as_bytes());
    assert_eq!(primary["report_data"], STANDARD.encode(cpu_digest));
}

fn jcs_of(v: &Value) -> String {
    String::from_utf8(jcs::to_vec(v).unwrap()).unwrap()
}

#[test]
fn selected_hash_algorithm_changes_the_digest_length() {
    let (primary, _) =
        collect_evidence(&live_jwk(), NONCE, HashAlgorithm::Sha512, &mut SampleProvider, &mut []).unwrap();
    let rd = STANDARD.decode(primary["report_data"].as_str().unwrap()).unwrap();
    assert_eq!(rd.len(), 64);
}

struct Broken;

impl EvidenceProvider for Broken {
    fn kind(&self) -> TeeKind {
        TeeKind::Snp
    }
    fn evidence(&mut self, digest: &[u8]) -> Result<Value, TeeError> {
        Err(TeeError::ReportDataTooLong(digest.len() + 100))
    }
}

struct BrokenDevice;

impl DeviceEvidence for BrokenDevice {
    fn name(&self) -> &str {
        "nvidia"
    }
    fn collect(&mut self, _: &[u8]) -> Result<Value, DeviceEvidenceError> {
        Err("GPU 0 did not answer".into())
    }
}

#[test]
fn evidence_failures_name_the_source() {
    let e = collect_evidence(&live_jwk(), NONCE, HashAlgorithm::Sha384, &mut Broken, &mut []).unwrap_err();
    assert_eq!(e.class(), FailureClass::Evidence);
    assert!(e.to_string().starts_with("KBS attest: evidence: snp: "), "{e}");
    let mut d = BrokenDevice;
    let e =
        collect_evidence(&live_jwk(), NONCE, HashAlgorithm::Sha384, &mut SampleProvider, &mut [&mut d]).unwrap_err();
    assert_eq!(e.to_string(), "KBS attest: evidence: nvidia: GPU 0 did not answer");
}

#[test]
fn refusals_read_as_one_line() {
    let e = KbsError::Refused {
        op: Op::Resource("default/key/k".into()),
        status: 401,
        kind: "PolicyDeny".into(),
        detail: "Access denied by policy".into(),
    };
    assert_eq!(
        e.to_string(),
        "KBS resource default/key/k: refused by the KBS (HTTP 401 PolicyDeny): Access denied by policy"
    );
    assert_eq!(e.class(), FailureClass::Refused);
}

/// A plain-HTTP configuration for a server that is not there.
fn plain_http() -> (KbsServer, KbsConfig) {
    let server = KbsServer::new("http://127.0.0.1:1".parse().unwrap(), KbsTrust::InsecureHttp).unwrap();
    (server.clone(), KbsConfig { server: Some(server), ..KbsConfig::default() })
}

#[test]
fn the_scheme_and_the_trust_agree_by_construction() {
    let https: Endpoint = "https://127.0.0.1:1".parse().unwrap();
    let http: Endpoint = "http://127.0.0.1:1".parse().unwrap();
    let pin = KbsTrust::Pinned(Pem::File("/kbs.pem".into()));
    let e = KbsServer::new(https, KbsTrust::InsecureHttp).unwrap_err();
    assert_eq!(e.key, "insecure_http");
    let e = KbsServer::new(http, pin).unwrap_err();
    assert_eq!(e.key, "pinned_cert_file");
    assert!(e.message.contains("no effect with an http:// url"), "{e}");
}

#[test]
fn client_setup_reads_the_pinned_certificate() {
    let (_, cfg) = plain_http();
    let https: Endpoint = "https://127.0.0.1:1".parse().unwrap();
    let missing = KbsServer::new(https, KbsTrust::Pinned(Pem::File("/nonexistent/kbs.pem".into()))).unwrap();
    let e = Client::new(&missing, &cfg).unwrap_err();
    assert_eq!(e.class(), FailureClass::Config, "{e}");
    assert!(e.to_string().contains("cannot read /nonexistent/kbs.pem"), "{e}");
}

#[test]
fn device_names_must_be_unique() {
    let (server, cfg) = plain_http();
    let client = Client::new(&server, &cfg).unwrap();
    let (mut a, mut b) = (SampleDevice, SampleDevice);
    let e = client.attest(&mut SampleProvider, vec![&mut a, &mut b], None).unwrap_err();
    assert!(e.to_string().contains("\"sampledevice\" is empty or used twice"), "{e}");
}

#[test]
fn long_tokens_travel_in_the_cookie_session_only() {
    use super::client::bearer;
    // A JWT-shaped token of a CPU-only attestation goes out as Bearer too.
    let short = format!("{}.{}.", "e".repeat(36), "a".repeat(2000));
    assert_eq!(bearer(&short), Some(format!("Bearer {short}")));
    // An EAR token carrying GPU measurements (~12 KiB) would make a header
    // line that common servers, and the dev KBS, refuse.
    let gpu = format!("{}.{}.", "e".repeat(36), "a".repeat(12_000));
    assert_eq!(bearer(&gpu), None);
    // The limit is on the whole header line.
    let edge = "a".repeat(8000 - "Authorization: Bearer ".len());
    assert!(bearer(&edge).is_some());
    assert!(bearer(&format!("{edge}a")).is_none());
    // Never anything but token68.
    assert_eq!(bearer("a b"), None);
    assert_eq!(bearer("a\r\nX-Injected: 1"), None);
}

#[test]
fn the_evidence_key_made_by_another_thread_is_the_one_the_client_binds() {
    let (server, cfg) = plain_http();
    let key = std::sync::Arc::new(super::EvidenceKey::default());
    assert_eq!(format!("{key:?}"), "EvidenceKey(not made yet)");
    let client = Client::with_key(&server, &cfg, key.clone()).unwrap();
    let maker = key.clone();
    std::thread::spawn(move || maker.make()).join().unwrap();
    let made = format!("{key:?}");
    assert_ne!(made, "EvidenceKey(not made yet)");
    let jwk = client.public_jwk().unwrap().clone();
    key.make();
    assert_eq!(format!("{key:?}"), made, "made once");
    assert_eq!(client.public_jwk().unwrap(), &jwk);

    // Nobody made it ahead: the first use does.
    let fresh = Client::new(&server, &cfg).unwrap();
    assert_ne!(fresh.public_jwk().unwrap(), &jwk);
}
