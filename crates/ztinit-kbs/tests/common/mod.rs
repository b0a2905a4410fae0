//! Shared set-up: a dev KBS with resources on 127.0.0.1, client configs,
//! and a raw HTTP helper for requests a well-behaved client never sends.
#![allow(dead_code)]

use std::io::{BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::time::Duration;

use ztinit::kbs::http::{self, Head};
use ztinit::kbs::transport::Endpoint;
use ztinit::kbs::{Client, KbsConfig, KbsError, KbsServer, KbsTrust, Pem};
use ztinit_kbs::{Fault, Handle, Options, Policy, Server, TlsFiles};

pub const SECRET: &[u8] = b"model-key:\x00\x01\x02\xfe\xff 32 bytes of secret!!";
pub const ALLOW_SAMPLE: &str = "allow_sample = true\n";

pub fn testdata(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("testdata").join(name)
}

pub struct Kbs {
    pub handle: Handle,
    _dir: tempfile::TempDir,
}

impl Kbs {
    pub fn url(&self) -> &str {
        &self.handle.url
    }
    pub fn auths(&self) -> usize {
        ztinit_kbs::Stats::get(&self.handle.stats.auth)
    }
    pub fn connections(&self) -> usize {
        ztinit_kbs::Stats::get(&self.handle.stats.connections)
    }
    pub fn requests(&self) -> usize {
        ztinit_kbs::Stats::get(&self.handle.stats.requests)
    }
    pub fn tls_failures(&self) -> usize {
        ztinit_kbs::Stats::get(&self.handle.stats.tls_failures)
    }
}

pub fn kbs_with(policy: &str, faults: &[Fault], tls: Option<(&str, &str)>, tweak: impl FnOnce(&mut Options)) -> Kbs {
    let dir = tempfile::tempdir().unwrap();
    let key_dir = dir.path().join("default/key");
    std::fs::create_dir_all(&key_dir).unwrap();
    std::fs::write(key_dir.join("model"), SECRET).unwrap();
    std::fs::write(key_dir.join("other"), b"another secret").unwrap();
    let mut opts = Options::new(dir.path());
    opts.policy = Policy::parse(policy).unwrap();
    opts.faults = faults.to_vec();
    opts.tls = tls.map(|(c, k)| TlsFiles { cert: testdata(c), key: testdata(k) });
    tweak(&mut opts);
    let handle = Server::bind(opts).unwrap().spawn();
    Kbs { handle, _dir: dir }
}

pub fn kbs(policy: &str, faults: &[Fault]) -> Kbs {
    kbs_with(policy, faults, None, |_| {})
}

/// A client configuration with short timeouts: plain HTTP for an http://
/// url, else the test KBS's pinned certificate.
pub fn config(url: &str) -> KbsConfig {
    let trust = match url.starts_with("http://") {
        true => KbsTrust::InsecureHttp,
        false => KbsTrust::Pinned(Pem::Inline(pem("pinned.pem"))),
    };
    config_trusting(url, trust)
}

/// The same, authenticating the KBS with `trust`.
pub fn config_trusting(url: &str, trust: KbsTrust) -> KbsConfig {
    KbsConfig {
        server: Some(KbsServer::new(Endpoint::parse(url).unwrap(), trust).unwrap()),
        connect_timeout_ms: 1_000,
        read_timeout_ms: 5_000,
        retries: 2,
        retry_backoff_ms: 50,
        deadline_ms: 20_000,
        ..KbsConfig::default()
    }
}

pub fn pem(name: &str) -> String {
    std::fs::read_to_string(testdata(name)).unwrap()
}

/// A free port with nothing listening on it.
pub fn dead_addr() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

pub struct RawResponse {
    pub status: u16,
    pub head: Head,
    pub body: Vec<u8>,
}

impl RawResponse {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap()
    }
    pub fn cookie(&self) -> Option<String> {
        let h = self.head.header("set-cookie")?;
        Some(h.split(';').next()?.to_string())
    }
}

/// One plain-HTTP request, exactly as given.
pub fn raw(addr: SocketAddr, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> RawResponse {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut req =
        format!("{method} {path} HTTP/1.1\r\nHost: kbs\r\nConnection: close\r\nContent-Length: {}\r\n", body.len());
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).unwrap();
    // A server may answer (413) before reading the whole body.
    let _ = s.write_all(body);
    let mut r = BufReader::new(s);
    let head = http::read_head(&mut r).unwrap().unwrap();
    let status = http::parse_status_line(&head.start).unwrap();
    let framing = http::framing(&head, true).unwrap();
    let body = http::read_body(&mut r, framing, 1 << 20).unwrap();
    RawResponse { status, head, body }
}

/// The client of a test configuration (which always names a server).
pub fn client(cfg: &KbsConfig) -> Result<Client, KbsError> {
    Client::new(cfg.server.as_ref().expect("a test configuration names its KBS"), cfg)
}
