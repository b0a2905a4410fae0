//! The real KBS client against the real development KBS on 127.0.0.1.

mod common;

use std::time::{Duration, Instant};

use common::*;
use ztinit::kbs::transport::{Connecting, Endpoint};
use ztinit::kbs::{
    DeviceEvidence, FailureClass, InitData, JweError, KbsError, KbsTrust, Pem, ResourcePath, SampleDevice,
    TransportError,
};
use ztinit::tee::sample::SampleProvider;
use ztinit_kbs::Fault;

fn model() -> ResourcePath {
    "default/key/model".parse().unwrap()
}

/// Attests with the sample TEE and fetches the model key.
fn fetch(cfg: &ztinit::kbs::KbsConfig) -> Result<Vec<u8>, KbsError> {
    let client = client(cfg)?;
    let mut cpu = SampleProvider;
    let mut session = client.attest(&mut cpu, Vec::new(), None)?;
    Ok(session.fetch(&model())?.to_vec())
}

#[test]
fn happy_path_over_http() {
    let kbs = kbs(ALLOW_SAMPLE, &[]);
    let client = client(&config(kbs.url())).unwrap();
    let mut cpu = SampleProvider;
    let mut session = client.attest(&mut cpu, Vec::new(), None).unwrap();
    assert_eq!(session.fetch(&model()).unwrap().as_slice(), SECRET);
    assert_eq!(session.fetch(&"default/key/other".parse().unwrap()).unwrap().as_slice(), b"another secret");
    assert_eq!(kbs.auths(), 1, "one handshake for every resource of the session");
}

#[test]
fn composite_evidence_with_a_device() {
    let kbs = kbs(ALLOW_SAMPLE, &[]);
    let client = client(&config(kbs.url())).unwrap();
    let (mut cpu, mut dev) = (SampleProvider, SampleDevice);
    let devices: Vec<&mut dyn DeviceEvidence> = vec![&mut dev];
    let mut session = client.attest(&mut cpu, devices, None).unwrap();
    assert_eq!(session.fetch(&model()).unwrap().as_slice(), SECRET);
}

#[test]
fn init_data_is_sent_as_toml() {
    let kbs = kbs(ALLOW_SAMPLE, &[]);
    let client = client(&config(kbs.url())).unwrap();
    let init = InitData::toml("version = \"0.1.0\"\nalgorithm = \"sha384\"\n[data]\n");
    let mut cpu = SampleProvider;
    let mut session = client.attest(&mut cpu, Vec::new(), Some(&init)).unwrap();
    assert_eq!(session.fetch(&model()).unwrap().as_slice(), SECRET);
}

#[test]
fn https_with_a_pinned_self_signed_certificate() {
    let kbs = kbs_with(ALLOW_SAMPLE, &[], Some(("pinned.pem", "pinned.key")), |_| {});
    let cfg = config_trusting(kbs.url(), KbsTrust::Pinned(Pem::Inline(pem("pinned.pem"))));
    assert_eq!(fetch(&cfg).unwrap(), SECRET);
    // The same certificate from a file in the image. Image files may not
    // lie under /tmp, /run... (files::VOLATILE_TREES), where a checkout
    // (and the temp dir) may be: the file is copied under /var/tmp.
    let dir = tempfile::Builder::new().prefix("ztinit-kbs-test").tempdir_in("/var/tmp").unwrap();
    let file = dir.path().join("pinned.pem");
    std::fs::copy(testdata("pinned.pem"), &file).unwrap();
    let cfg = config_trusting(kbs.url(), KbsTrust::Pinned(Pem::File(file.display().to_string())));
    assert_eq!(fetch(&cfg).unwrap(), SECRET);
}

#[test]
fn https_with_a_ca_by_ip_and_by_name() {
    let kbs = kbs_with(ALLOW_SAMPLE, &[], Some(("server.pem", "server.key")), |_| {});
    let ca = KbsTrust::Ca(Pem::Inline(pem("ca.pem")));
    let cfg = config_trusting(kbs.url(), ca.clone());
    assert_eq!(fetch(&cfg).unwrap(), SECRET);
    let cfg = config_trusting(&format!("https://localhost:{}", kbs.handle.addr.port()), ca);
    assert_eq!(fetch(&cfg).unwrap(), SECRET);
}

fn tls_failure(e: KbsError) -> String {
    match e {
        KbsError::Transport { source: TransportError::Tls(why), .. } => why.to_string(),
        other => panic!("expected a TLS failure, got {other}"),
    }
}

#[test]
fn a_different_certificate_than_the_pin_is_refused_at_once() {
    let kbs = kbs_with(ALLOW_SAMPLE, &[], Some(("pinned.pem", "pinned.key")), |_| {});
    let mut cfg = config_trusting(kbs.url(), KbsTrust::Pinned(Pem::Inline(pem("other.pem"))));
    cfg.retries = 5;
    let why = tls_failure(fetch(&cfg).unwrap_err());
    assert!(why.contains("other than the pinned one"), "{why}");
    assert_eq!(kbs.connections(), 1, "TLS failures are not retried");
    assert_eq!(kbs.auths(), 0);
}

/// The boot connects ahead while other stages run: the boot thread sends
/// the SYN (`Connecting`), the client's thread does the TLS handshake on
/// that socket, and the connection carries the whole session.
#[test]
fn the_tls_connection_made_ahead_carries_the_session() {
    let kbs = kbs_with(ALLOW_SAMPLE, &[], Some(("pinned.pem", "pinned.key")), |_| {});
    let cfg = config_trusting(kbs.url(), KbsTrust::Pinned(Pem::Inline(pem("pinned.pem"))));
    let syn_sent = Connecting::start(&Endpoint::parse(kbs.url()).unwrap());
    assert!(syn_sent.is_some(), "an IP-literal KBS is connected to ahead");
    let client = client(&cfg).unwrap();
    client.connect_ahead(syn_sent);
    assert_eq!((kbs.connections(), kbs.requests()), (1, 0));
    let mut cpu = SampleProvider;
    let mut session = client.attest(&mut cpu, Vec::new(), None).unwrap();
    assert_eq!(session.fetch(&model()).unwrap().as_slice(), SECRET);
    assert_eq!(kbs.connections(), 1);
    assert_eq!(client.counts(), (1, 3), "auth, attest and the resource on the connection made ahead");
}

/// A certificate refused while connecting ahead (its alert sent then) is
/// the first request's failure, with no second handshake.
#[test]
fn a_certificate_refused_ahead_fails_the_first_request() {
    let kbs = kbs_with(ALLOW_SAMPLE, &[], Some(("pinned.pem", "pinned.key")), |_| {});
    let mut cfg = config_trusting(kbs.url(), KbsTrust::Pinned(Pem::Inline(pem("other.pem"))));
    cfg.retries = 5;
    let client = client(&cfg).unwrap();
    client.connect_ahead(None);
    let waited = Instant::now();
    while kbs.tls_failures() == 0 && waited.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!((kbs.tls_failures(), kbs.requests()), (1, 0), "refused during connect_ahead, before any request");
    let mut cpu = SampleProvider;
    let why = tls_failure(client.attest(&mut cpu, Vec::new(), None).err().unwrap());
    assert!(why.contains("other than the pinned one"), "{why}");
    assert_eq!((kbs.connections(), kbs.tls_failures(), kbs.auths()), (1, 1, 0));
    assert_eq!(client.counts(), (1, 0));
}

#[test]
fn ca_mode_checks_the_chain_and_the_name() {
    let kbs = kbs_with(ALLOW_SAMPLE, &[], Some(("wrong-name.pem", "wrong-name.key")), |_| {});
    let cfg = config_trusting(kbs.url(), KbsTrust::Ca(Pem::Inline(pem("ca.pem"))));
    let why = tls_failure(fetch(&cfg).unwrap_err());
    assert!(why.contains("not valid for name"), "{why}");

    let kbs = kbs_with(ALLOW_SAMPLE, &[], Some(("pinned.pem", "pinned.key")), |_| {});
    let cfg = config_trusting(kbs.url(), KbsTrust::Ca(Pem::Inline(pem("ca.pem"))));
    let why = tls_failure(fetch(&cfg).unwrap_err());
    // A self-signed certificate is neither issued by the CA nor an end entity.
    assert!(why.contains("CaUsedAsEndEntity") || why.contains("UnknownIssuer"), "{why}");
}

#[test]
fn plain_http_client_against_https_kbs_fails_closed() {
    let kbs = kbs_with(ALLOW_SAMPLE, &[], Some(("pinned.pem", "pinned.key")), |_| {});
    let cfg = config(&kbs.url().replace("https://", "http://"));
    let e = fetch(&cfg).unwrap_err();
    assert!(matches!(e.class(), FailureClass::Protocol | FailureClass::Transport), "{e}");
}

#[test]
fn kbs_down_bounded_retries() {
    let mut cfg = config(&format!("http://{}", dead_addr()));
    cfg.retries = 3;
    cfg.retry_backoff_ms = 20;
    let start = Instant::now();
    let e = fetch(&cfg).unwrap_err();
    match &e {
        KbsError::Transport { source: TransportError::Exhausted { attempts, last, .. }, .. } => {
            assert_eq!(*attempts, 4);
            assert!(last.contains("onnection refused"), "{last}");
        }
        other => panic!("{other}"),
    }
    assert!(e.to_string().starts_with("KBS auth: transport: gave up after 4 attempt(s)"), "{e}");
    // 20 + 40 + 80 ms of backoff.
    assert!(start.elapsed() >= Duration::from_millis(140) && start.elapsed() < Duration::from_secs(5));
}

#[test]
fn kbs_down_deadline_respected() {
    let mut cfg = config(&format!("http://{}", dead_addr()));
    cfg.retries = 100;
    cfg.retry_backoff_ms = 200;
    cfg.deadline_ms = 1_000;
    let start = Instant::now();
    let e = fetch(&cfg).unwrap_err();
    assert!(matches!(e, KbsError::Transport { source: TransportError::Deadline { .. }, .. }), "{e}");
    assert!(start.elapsed() < Duration::from_millis(1_300), "{:?}", start.elapsed());
}

#[test]
fn a_kbs_that_never_answers_is_bounded_by_the_read_timeout_and_the_deadline() {
    let kbs = kbs(ALLOW_SAMPLE, &[Fault::Stall]);
    let mut cfg = config(kbs.url());
    cfg.read_timeout_ms = 300;
    cfg.retries = 1;
    let start = Instant::now();
    let e = fetch(&cfg).unwrap_err();
    assert!(
        matches!(&e, KbsError::Transport { source: TransportError::Exhausted { attempts: 2, last, .. }, .. } if last.ends_with("timed out: no data from the KBS within 300 ms")),
        "{e}"
    );
    assert!(start.elapsed() < Duration::from_secs(3));

    let mut cfg = config(kbs.url());
    cfg.read_timeout_ms = 60_000;
    cfg.deadline_ms = 1_000;
    let start = Instant::now();
    let e = fetch(&cfg).unwrap_err();
    assert_eq!(e.class(), FailureClass::Transport, "{e}");
    assert!(start.elapsed() < Duration::from_millis(1_500), "{:?}", start.elapsed());
}

fn refused(e: &KbsError) -> (u16, &str, &str) {
    match e {
        KbsError::Refused { status, kind, detail, .. } => (*status, kind.as_str(), detail.as_str()),
        other => panic!("expected a refusal, got {other}"),
    }
}

#[test]
fn policy_deny_surfaces_the_reason_without_a_second_handshake() {
    let kbs = kbs("allow_sample = true\ndeny_all = true\n", &[]);
    let e = fetch(&config(kbs.url())).unwrap_err();
    assert_eq!(refused(&e), (401, "PolicyDeny", "Access denied by policy: deny_all is set"));
    assert_eq!(
        e.to_string(),
        "KBS resource default/key/model: refused by the KBS (HTTP 401 PolicyDeny): Access denied by policy: deny_all is set"
    );
    assert_eq!(kbs.auths(), 1);
}

#[test]
fn per_resource_rule_reason() {
    let kbs = kbs(
        "allow_sample = true\n[[resources]]\npath = \"default/key/model\"\nallow = false\nreason = \"model keys need SNP\"\n",
        &[],
    );
    let e = fetch(&config(kbs.url())).unwrap_err();
    assert_eq!(refused(&e).2, "Access denied by policy: model keys need SNP");
}

#[test]
fn sample_evidence_refused_by_policy() {
    let kbs = kbs("", &[]);
    let e = fetch(&config(kbs.url())).unwrap_err();
    assert_eq!(refused(&e), (401, "PolicyDeny", "Access denied by policy: sample evidence is not allowed"));
}

#[test]
fn missing_resource() {
    let kbs = kbs(ALLOW_SAMPLE, &[]);
    let client = client(&config(kbs.url())).unwrap();
    let mut cpu = SampleProvider;
    let mut session = client.attest(&mut cpu, Vec::new(), None).unwrap();
    let e = session.fetch(&"default/key/absent".parse().unwrap()).unwrap_err();
    assert_eq!(refused(&e).1, "PluginInternalError");
    assert_eq!(kbs.auths(), 1, "a missing resource costs no second handshake");
    assert_eq!((kbs.connections(), kbs.requests()), (1, 3));
}

#[test]
fn the_conversation_is_two_round_trips_plus_one_per_resource_on_one_connection() {
    for tls in [false, true] {
        let kbs = kbs_with(ALLOW_SAMPLE, &[], tls.then_some(("pinned.pem", "pinned.key")), |_| {});
        let client = client(&config(kbs.url())).unwrap();
        let mut cpu = SampleProvider;
        let mut session = client.attest(&mut cpu, Vec::new(), None).unwrap();
        for _ in 0..3 {
            assert_eq!(session.fetch(&model()).unwrap().as_slice(), SECRET);
        }
        assert_eq!((kbs.connections(), kbs.requests()), (1, 5), "tls {tls}");
        assert_eq!(client.counts(), (1, 5), "tls {tls}");
    }
}

#[test]
fn a_kept_connection_the_kbs_closed_is_replaced_without_a_retry() {
    // The server closes after every answer (a proxy, an idle timeout): the
    // client notices on its next request and opens another connection at
    // once, without a failed attempt or a backoff.
    let kbs = kbs(ALLOW_SAMPLE, &[Fault::CloseAfterEachAnswer]);
    let mut cfg = config(kbs.url());
    cfg.retries = 0;
    cfg.retry_backoff_ms = 10_000;
    let start = Instant::now();
    assert_eq!(fetch(&cfg).unwrap(), SECRET);
    assert!(start.elapsed() < Duration::from_secs(5));
    assert_eq!((kbs.connections(), kbs.requests()), (3, 3));
}

#[test]
fn jwe_for_another_key() {
    let kbs = kbs(ALLOW_SAMPLE, &[Fault::WrongKeyJwe]);
    let e = fetch(&config(kbs.url())).unwrap_err();
    assert!(matches!(e, KbsError::Crypto { source: JweError::Unwrap, .. }), "{e}");
    assert_eq!(e.class(), FailureClass::Crypto);
}

#[test]
fn tampered_jwe() {
    let kbs = kbs(ALLOW_SAMPLE, &[Fault::TamperedJwe]);
    let e = fetch(&config(kbs.url())).unwrap_err();
    assert!(matches!(e, KbsError::Crypto { source: JweError::Decrypt, .. }), "{e}");
}

#[test]
fn malformed_json() {
    let kbs = kbs(ALLOW_SAMPLE, &[Fault::MalformedJson]);
    let e = fetch(&config(kbs.url())).unwrap_err();
    assert_eq!(e.class(), FailureClass::Protocol);
    assert!(e.to_string().contains("malformed JSON from the KBS"), "{e}");
}

#[test]
fn oversized_body_is_refused_without_reading_it() {
    let kbs = kbs(ALLOW_SAMPLE, &[Fault::OversizedBody]);
    let start = Instant::now();
    let e = fetch(&config(kbs.url())).unwrap_err();
    assert_eq!(e.class(), FailureClass::Protocol, "{e}");
    assert!(e.to_string().contains("HTTP body of 268435456 bytes announced, more than the"), "{e}");
    assert!(start.elapsed() < Duration::from_secs(3));
}

#[test]
fn wrong_protocol_version() {
    let kbs = kbs(ALLOW_SAMPLE, &[Fault::WrongVersion]);
    let e = fetch(&config(kbs.url())).unwrap_err();
    let (status, kind, detail) = refused(&e);
    assert_eq!((status, kind), (401, "AttestationError"));
    assert!(detail.contains("Protocol Version Mismatch: expect =0.3.0 while the request is 0.4.0"), "{detail}");
    assert!(e.to_string().starts_with("KBS auth: refused by the KBS"), "{e}");
}

#[test]
fn a_forgotten_session_gets_exactly_one_fresh_handshake() {
    let kbs = kbs(ALLOW_SAMPLE, &[Fault::ForgetSessions]);
    let e = fetch(&config(kbs.url())).unwrap_err();
    assert_eq!(refused(&e), (401, "TokenNotFound", "Attestation Token not found"));
    assert_eq!(kbs.auths(), 2);
}

#[test]
fn evidence_for_an_unsupported_tee_is_refused_at_auth() {
    struct Snp;
    impl ztinit::tee::EvidenceProvider for Snp {
        fn kind(&self) -> ztinit::tee::TeeKind {
            ztinit::tee::TeeKind::Snp
        }
        fn evidence(&mut self, _: &[u8]) -> Result<serde_json::Value, ztinit::tee::TeeError> {
            unreachable!("no challenge, no evidence")
        }
    }
    let kbs = kbs(ALLOW_SAMPLE, &[]);
    let client = client(&config(kbs.url())).unwrap();
    let e = client.attest(&mut Snp, Vec::new(), None).unwrap_err();
    assert_eq!(refused(&e).1, "AttestationError");
}

#[test]
fn a_request_over_the_servers_limit_reports_its_answer() {
    let kbs = kbs_with(ALLOW_SAMPLE, &[], None, |o| o.max_request_bytes = 300);
    let e = fetch(&config(kbs.url())).unwrap_err();
    assert_eq!(refused(&e), (413, "-", "payload reached size limit"));
    assert!(e.to_string().starts_with("KBS attest: refused by the KBS (HTTP 413 -)"), "{e}");
}
