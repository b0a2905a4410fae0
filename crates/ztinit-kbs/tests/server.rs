//! The development KBS's own checks, driven with hand-made requests:
//! nonce freshness and single use, the runtime-data binding it rebuilds,
//! tokens, error shapes, and the binary.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use common::*;
use serde_json::{Value, json};
use ztinit::kbs::jwe::TeeKey;
use ztinit::kbs::protocol::{self, HashAlgorithm};

struct Handshake {
    cookie: String,
    nonce: String,
}

fn auth(kbs: &Kbs) -> Handshake {
    let r =
        raw(kbs.handle.addr, "POST", "/kbs/v0/auth", &[], br#"{"version":"0.4.0","tee":"sample","extra-params":""}"#);
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.head.header("content-type"), Some("application/json"));
    let challenge = r.json();
    assert_eq!(challenge["extra-params"], "");
    let nonce = challenge["nonce"].as_str().unwrap().to_string();
    assert_eq!(STANDARD.decode(&nonce).unwrap().len(), 32);
    let cookie = r.cookie().unwrap();
    assert!(cookie.starts_with("kbs-session-id=") && cookie.len() == "kbs-session-id=".len() + 32, "{cookie}");
    assert!(r.head.header("set-cookie").unwrap().contains("; Expires="));
    Handshake { cookie, nonce }
}

/// An /attest body for `nonce`, its sample evidence bound to `bound_runtime_data`.
fn attestation(nonce: &str, jwk: &Value, bound_runtime_data: &Value) -> Vec<u8> {
    let digest = protocol::runtime_data_digest(HashAlgorithm::Sha384, bound_runtime_data).unwrap();
    serde_json::to_vec(&json!({
        "init-data": null,
        "runtime-data": {"nonce": nonce, "tee-pubkey": jwk},
        "tee-evidence": {"primary_evidence": {"svn": "1", "report_data": STANDARD.encode(digest)}, "additional_evidence": ""}
    }))
    .unwrap()
}

fn good_attestation(nonce: &str, key: &TeeKey) -> Vec<u8> {
    attestation(nonce, key.public_jwk(), &protocol::cpu_runtime_data(nonce, key.public_jwk(), ""))
}

fn attest(kbs: &Kbs, cookie: &str, body: &[u8]) -> RawResponse {
    raw(kbs.handle.addr, "POST", "/kbs/v0/attest", &[("Cookie", cookie)], body)
}

fn error_of(r: &RawResponse) -> (u16, String, String) {
    assert!(r.head.header("content-type").is_none(), "Trustee's errors carry no Content-Type");
    let v = r.json();
    let t = v["type"].as_str().unwrap();
    let variant = t.strip_prefix("https://github.com/confidential-containers/kbs/errors/").unwrap();
    (r.status, variant.to_string(), v["detail"].as_str().unwrap().to_string())
}

#[test]
fn nonces_are_single_use_and_bound_to_their_session() {
    let kbs = kbs(ALLOW_SAMPLE, &[]);
    let key = TeeKey::generate().unwrap();
    let a = auth(&kbs);
    let body_a = good_attestation(&a.nonce, &key);
    let r = attest(&kbs, &a.cookie, &body_a);
    assert_eq!(r.status, 200);
    assert_eq!(r.cookie().as_deref(), Some(a.cookie.as_str()), "same session id after /attest");

    // Session B, replaying A's attestation (A's nonce).
    let b = auth(&kbs);
    let (status, kind, detail) = error_of(&attest(&kbs, &b.cookie, &body_a));
    assert_eq!((status, kind.as_str()), (401, "AttestationError"));
    assert!(detail.ends_with("nonce mismatch"), "{detail}");
    // B was consumed by that attempt, even with a now correct body.
    let (_, _, detail) = error_of(&attest(&kbs, &b.cookie, &good_attestation(&b.nonce, &key)));
    assert!(detail.ends_with("session not found"), "{detail}");

    // Session C with its own nonce but A's evidence.
    let c = auth(&kbs);
    let stale = attestation(&c.nonce, key.public_jwk(), &protocol::cpu_runtime_data(&a.nonce, key.public_jwk(), ""));
    let (_, _, detail) = error_of(&attest(&kbs, &c.cookie, &stale));
    assert!(detail.ends_with("sample REPORT_DATA does not match the runtime data"), "{detail}");
}

#[test]
fn expired_sessions_are_refused() {
    let kbs = kbs_with(ALLOW_SAMPLE, &[], None, |o| o.session_ttl = Duration::from_millis(300));
    let key = TeeKey::generate().unwrap();
    let a = auth(&kbs);
    std::thread::sleep(Duration::from_millis(400));
    let (_, _, detail) = error_of(&attest(&kbs, &a.cookie, &good_attestation(&a.nonce, &key)));
    assert!(detail.ends_with("session expired"), "{detail}");
}

#[test]
fn the_binding_is_rebuilt_exactly_as_trustee_does() {
    let kbs = kbs(ALLOW_SAMPLE, &[]);
    let key = TeeKey::generate().unwrap();
    // Without the empty additional-evidence member: refused (research/kbs.md §5 pitfall c).
    let h = auth(&kbs);
    let without = json!({"nonce": h.nonce, "tee-pubkey": key.public_jwk()});
    let (_, _, detail) = error_of(&attest(&kbs, &h.cookie, &attestation(&h.nonce, key.public_jwk(), &without)));
    assert!(detail.contains("REPORT_DATA does not match"), "{detail}");
    // A key with an extra member is hashed without it by the server (pitfall a).
    let h = auth(&kbs);
    let mut jwk = key.public_jwk().clone();
    jwk["use"] = json!("enc");
    let body = attestation(&h.nonce, &jwk, &protocol::cpu_runtime_data(&h.nonce, &jwk, ""));
    let (_, _, detail) = error_of(&attest(&kbs, &h.cookie, &body));
    assert!(detail.contains("REPORT_DATA does not match"), "{detail}");
    // Init-data must be TOML.
    let h = auth(&kbs);
    let mut body: Value = serde_json::from_slice(&good_attestation(&h.nonce, &key)).unwrap();
    body["init-data"] = json!({"format": "json", "body": "{}"});
    let (_, _, detail) = error_of(&attest(&kbs, &h.cookie, &serde_json::to_vec(&body).unwrap()));
    assert!(detail.contains("Unsupported initdata format"), "{detail}");
}

#[test]
fn tokens_work_as_bearer_and_requests_need_one() {
    let kbs = kbs(ALLOW_SAMPLE, &[]);
    let key = TeeKey::generate().unwrap();
    let path = "/kbs/v0/resource/default/key/model";
    let (status, kind, _) = error_of(&raw(kbs.handle.addr, "GET", path, &[], b""));
    assert_eq!((status, kind.as_str()), (401, "TokenNotFound"));

    let h = auth(&kbs);
    let token =
        attest(&kbs, &h.cookie, &good_attestation(&h.nonce, &key)).json()["token"].as_str().unwrap().to_string();
    // An attested session answers a second /attest with the same token.
    assert_eq!(attest(&kbs, &h.cookie, &good_attestation(&h.nonce, &key)).json()["token"], token.as_str());
    let bearer = format!("Bearer {token}");
    let r = raw(kbs.handle.addr, "GET", path, &[("Authorization", &bearer)], b"");
    assert_eq!(r.status, 200);
    assert_eq!(r.head.header("content-type"), Some("application/json"));
    let jwe: protocol::JweResponse = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(key.decrypt(&jwe).unwrap().as_slice(), SECRET);
    let forged = format!("Bearer {}x", token);
    let (status, kind, _) = error_of(&raw(kbs.handle.addr, "GET", path, &[("Authorization", &forged)], b""));
    assert_eq!((status, kind.as_str()), (401, "TokenNotFound"));
}

#[test]
fn request_errors_have_trustees_shapes() {
    let kbs = kbs(ALLOW_SAMPLE, &[]);
    let addr = kbs.handle.addr;
    let (s, k, d) = error_of(&raw(addr, "POST", "/kbs/v0/auth", &[], br#"{"version":"0.4.0","tee":"sample"}"#));
    assert_eq!(
        (s, k.as_str(), d.as_str()),
        (401, "AttestationError", "Attestation error: RCAR handshake Auth failed: deserialize Request")
    );
    let (s, k, d) =
        error_of(&raw(addr, "POST", "/kbs/v0/auth", &[], br#"{"version":"0.3.0","tee":"sample","extra-params":""}"#));
    assert_eq!((s, k.as_str()), (401, "AttestationError"));
    assert!(d.ends_with("KBS Client Protocol Version Mismatch: expect =0.4.0 while the request is 0.3.0"), "{d}");
    let (s, k, d) = error_of(&raw(addr, "POST", "/kbs/v0/attest", &[], b"{}"));
    assert_eq!(
        (s, k.as_str(), d.as_str()),
        (401, "AttestationError", "Attestation error: RCAR handshake Attest failed: cookie not found")
    );
    let (s, k, d) = error_of(&raw(addr, "GET", "/kbs/v0/foo/bar", &[], b""));
    assert_eq!((s, k.as_str(), d.as_str()), (404, "PluginNotFound", "Plugin foo not found"));
    let r = raw(addr, "POST", "/kbs/v0/auth", &[], &vec![b' '; 3 << 20]);
    assert_eq!(r.status, 413);
}

#[test]
fn only_loopback() {
    let mut opts = ztinit_kbs::Options::new("/nonexistent");
    opts.listen = "0.0.0.0:0".parse().unwrap();
    let e = ztinit_kbs::Server::bind(opts).err().unwrap();
    assert!(e.to_string().contains("binds 127.0.0.1 only"), "{e}");
}

#[test]
fn the_binary_prints_its_url_and_serves() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("default/key")).unwrap();
    std::fs::write(dir.path().join("default/key/model"), SECRET).unwrap();
    std::fs::write(dir.path().join("policy.toml"), ALLOW_SAMPLE).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_ztinit-kbs"))
        .args(["--listen", "127.0.0.1:0", "--resources"])
        .arg(dir.path())
        .arg("--policy")
        .arg(dir.path().join("policy.toml"))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let url = line.trim().strip_prefix("ztinit-kbs: listening on ").unwrap().to_string();
    let result = (|| {
        let client = client(&config(&url))?;
        let mut cpu = ztinit::tee::sample::SampleProvider;
        let mut session = client.attest(&mut cpu, Vec::new(), None)?;
        session.fetch(&"default/key/model".parse().unwrap())
    })();
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(result.unwrap().as_slice(), SECRET);
}

#[test]
fn the_binary_refuses_other_addresses_and_marks_faults_test_only() {
    let out = Command::new(env!("CARGO_BIN_EXE_ztinit-kbs"))
        .args(["--listen", "0.0.0.0:8080", "--resources", "/nonexistent"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("binds 127.0.0.1 only"));
    let help = Command::new(env!("CARGO_BIN_EXE_ztinit-kbs")).arg("--help").output().unwrap();
    assert!(String::from_utf8_lossy(&help.stdout).contains("TEST-ONLY fault injection"));
    let bad = Command::new(env!("CARGO_BIN_EXE_ztinit-kbs"))
        .args(["--resources", "/x", "--fault", "explode"])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&bad.stderr).contains("unknown fault \"explode\""));
}
