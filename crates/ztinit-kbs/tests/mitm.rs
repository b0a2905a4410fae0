//! The man-in-the-middle proxy (`ztinit-kbs mitm`) against the real KBS
//! client: over plain HTTP it replaces a secret unnoticed (why
//! `insecure_http` is for development only); against a pinned certificate
//! it is refused before the guest sends a byte of the protocol.

mod common;

use std::sync::Arc;
use std::sync::atomic::Ordering;

use common::*;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use ztinit::kbs::{KbsError, ResourcePath, TransportError};
use ztinit::tee::sample::SampleProvider;
use ztinit_kbs::{Mitm, MitmHandle, MitmOptions, TlsFiles};

const FORGED: &[u8] = b"the host's own secret, not the KBS's";

fn model() -> ResourcePath {
    "default/key/model".parse().unwrap()
}

fn mitm(upstream: &str, tls: Option<(&str, &str)>) -> MitmHandle {
    let opts = MitmOptions {
        listen: "127.0.0.1:0".parse().unwrap(),
        upstream: upstream.to_string(),
        tls: tls.map(|(c, k)| TlsFiles { cert: testdata(c), key: testdata(k) }),
        replace: model(),
        replacement: FORGED.to_vec(),
    };
    Mitm::bind(opts).unwrap().spawn()
}

/// Attests with the sample TEE and fetches the model key and another resource.
fn fetch(cfg: &ztinit::kbs::KbsConfig) -> Result<(Vec<u8>, Vec<u8>), KbsError> {
    let client = client(cfg)?;
    let mut cpu = SampleProvider;
    let mut session = client.attest(&mut cpu, Vec::new(), None)?;
    let model = session.fetch(&model())?.to_vec();
    let other = session.fetch(&"default/key/other".parse().unwrap())?.to_vec();
    Ok((model, other))
}

fn count(c: &std::sync::atomic::AtomicUsize) -> usize {
    c.load(Ordering::SeqCst)
}

#[test]
fn over_plain_http_the_proxy_replaces_the_secret_unnoticed() {
    let kbs = kbs(ALLOW_SAMPLE, &[]);
    let proxy = mitm(kbs.url(), None);
    let (model, other) = fetch(&config(&proxy.url)).unwrap();
    assert_eq!(model, FORGED, "the guest accepted the proxy's JWE as the KBS's secret");
    assert_eq!(other, b"another secret", "everything else came from the real KBS");
    assert_eq!(kbs.auths(), 1, "the handshake went through to the real KBS");
    assert_eq!(count(&proxy.stats.keys_learned), 1);
    assert_eq!(count(&proxy.stats.replaced), 1);
}

#[test]
fn a_pinned_certificate_refuses_the_proxy_before_any_request() {
    // The real KBS serves the pinned certificate; the proxy has a
    // certificate of its own, even one a CA issued for the right address.
    let kbs = kbs_with(ALLOW_SAMPLE, &[], Some(("pinned.pem", "pinned.key")), |_| {});
    let proxy = mitm(kbs.url(), Some(("server.pem", "server.key")));
    let mut cfg = config(&proxy.url);
    cfg.retries = 3;
    let e = fetch(&cfg).unwrap_err();
    assert!(e.to_string().starts_with("KBS auth: transport: TLS: "), "{e}");
    match e {
        KbsError::Transport { source: TransportError::Tls(why), .. } => {
            assert!(why.to_string().contains("other than the pinned one"), "{why}")
        }
        other => panic!("expected a TLS failure, got {other}"),
    }
    assert_eq!(kbs.auths(), 0, "nothing reached the KBS");
    assert_eq!(count(&proxy.stats.forwarded), 0);
    assert_eq!(count(&proxy.stats.keys_learned), 0);
    // The proxy counts the failed handshake on its own thread, after the
    // client has already given up: wait for it.
    let waited = std::time::Instant::now();
    while count(&proxy.stats.tls_failures) == 0 && waited.elapsed() < std::time::Duration::from_secs(5) {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert_eq!(count(&proxy.stats.tls_failures), 1, "TLS failures are not retried");
}

/// The control: the same proxy over TLS succeeds when the guest trusts its
/// certificate, so the pin is what stopped it above.
#[test]
fn the_proxy_works_over_tls_when_its_certificate_is_trusted() {
    let kbs = kbs_with(ALLOW_SAMPLE, &[], Some(("server.pem", "server.key")), |_| {});
    let proxy = mitm(kbs.url(), Some(("pinned.pem", "pinned.key")));
    let cfg = config(&proxy.url);
    let (model, other) = fetch(&cfg).unwrap();
    assert_eq!((model.as_slice(), other.as_slice()), (FORGED, &b"another secret"[..]));
    assert_eq!(kbs.auths(), 1);
}

#[test]
fn the_kbs_serves_tls_1_3_only_and_counts_failed_handshakes() {
    let kbs = kbs_with(ALLOW_SAMPLE, &[], Some(("pinned.pem", "pinned.key")), |_| {});
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    roots.add(CertificateDer::from_pem_file(testdata("pinned.pem")).unwrap()).unwrap();
    let tls12 = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS12])
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
    let mut conn = rustls::ClientConnection::new(Arc::new(tls12), name).unwrap();
    let mut tcp = std::net::TcpStream::connect(kbs.handle.addr).unwrap();
    let e = conn.complete_io(&mut tcp).and_then(|_| conn.complete_io(&mut tcp)).unwrap_err();
    assert!(e.to_string().contains("ProtocolVersion") || e.to_string().contains("protocol"), "{e}");
    drop(tcp);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while ztinit_kbs::Stats::get(&kbs.handle.stats.tls_failures) == 0 && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert_eq!(ztinit_kbs::Stats::get(&kbs.handle.stats.tls_failures), 1);
    assert_eq!(kbs.auths(), 0);
}
