//! The client against small HTTP servers on 127.0.0.1 (a std listener and
//! a thread per connection), each test scripting the registry it needs.

use std::io::{BufReader, Write};
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::*;
use crate::manifest::{self, OCI_LAYER_GZIP, OCI_MANIFEST};

#[derive(Debug, Clone)]
struct Req {
    target: String,
    headers: Vec<(String, String)>,
}

impl Req {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

struct Reply {
    bytes: Vec<u8>,
    /// Close the connection after writing.
    close: bool,
}

fn reply(status: &str, headers: &[(&str, &str)], body: &[u8]) -> Reply {
    let mut r = format!("HTTP/1.1 {status}\r\nContent-Length: {}\r\n", body.len());
    for (n, v) in headers {
        r.push_str(&format!("{n}: {v}\r\n"));
    }
    r.push_str("\r\n");
    let mut bytes = r.into_bytes();
    bytes.extend_from_slice(body);
    Reply { bytes, close: false }
}

fn ok(body: &[u8], content_type: &str) -> Reply {
    reply("200 OK", &[("Content-Type", content_type)], body)
}

/// The body in 3-byte chunks, with an extension and a trailer.
fn chunked(body: &[u8]) -> Reply {
    let mut bytes = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    for c in body.chunks(3) {
        bytes.extend_from_slice(format!("{:x};x=y\r\n", c.len()).as_bytes());
        bytes.extend_from_slice(c);
        bytes.extend_from_slice(b"\r\n");
    }
    bytes.extend_from_slice(b"0\r\nTrailer: t\r\n\r\n");
    Reply { bytes, close: false }
}

fn raw(bytes: &[u8], close: bool) -> Reply {
    Reply { bytes: bytes.to_vec(), close }
}

struct Server {
    addr: SocketAddr,
    log: Arc<Mutex<Vec<Req>>>,
    conns: Arc<AtomicUsize>,
}

impl Server {
    fn host(&self) -> String {
        self.addr.to_string()
    }

    fn requests(&self) -> Vec<Req> {
        self.log.lock().unwrap().clone()
    }
}

/// A server whose `handler` answers each request (with the number of
/// requests seen before it).
fn serve(handler: impl Fn(&Req, usize) -> Reply + Send + Sync + 'static) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let log = Arc::new(Mutex::new(Vec::new()));
    let conns = Arc::new(AtomicUsize::new(0));
    let handler = Arc::new(handler);
    let (log2, conns2) = (log.clone(), conns.clone());
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { return };
            conns2.fetch_add(1, Ordering::SeqCst);
            let (log, handler) = (log2.clone(), handler.clone());
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream);
                while let Ok(Some(head)) = ztinit::kbs::http::read_head(&mut reader) {
                    let target = head.start.split(' ').nth(1).unwrap_or("").to_string();
                    let req = Req { target, headers: head.headers };
                    let seen = {
                        let mut log = log.lock().unwrap();
                        log.push(req.clone());
                        log.len() - 1
                    };
                    let r = handler(&req, seen);
                    if reader.get_mut().write_all(&r.bytes).is_err() || r.close {
                        return;
                    }
                }
            });
        }
    });
    Server { addr, log, conns }
}

fn options(host: &str) -> RegistryOptions {
    let mut o = RegistryOptions::new(host, Scheme::Http, Trust::None, Instant::now() + Duration::from_secs(20));
    o.retries = 2;
    o.backoff = Duration::from_millis(10);
    o.read_timeout = Duration::from_secs(5);
    o.connect_timeout = Duration::from_secs(2);
    o
}

fn registry(host: &str) -> Registry {
    Registry::new(options(host)).unwrap()
}

fn descriptor(bytes: &[u8]) -> Descriptor {
    Descriptor {
        media_type: OCI_LAYER_GZIP.into(),
        digest: Digest::of(bytes),
        size: u64::try_from(bytes.len()).unwrap(),
        annotations: Default::default(),
        platform: None,
    }
}

const BLOB: &[u8] = b"a layer's bytes, not really gzip";

fn manifest_bytes() -> Vec<u8> {
    format!(
        r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","config":{{"mediaType":"{}","digest":"{}","size":2}},"layers":[]}}"#,
        manifest::OCI_CONFIG,
        Digest::of(b"{}")
    )
    .into_bytes()
}

/// Serves the manifest by tag and digest and BLOB; anything else is 404.
fn plain_registry(req: &Req) -> Reply {
    let m = manifest_bytes();
    let by_digest = format!("/v2/app/manifests/{}", Digest::of(&m));
    let blob = format!("/v2/app/blobs/{}", Digest::of(BLOB));
    match req.target.as_str() {
        "/v2/app/manifests/v1" => ok(&m, &format!("{OCI_MANIFEST}; charset=utf-8")),
        t if t == by_digest => ok(&m, OCI_MANIFEST),
        t if t == blob => ok(BLOB, "application/octet-stream"),
        _ => reply(
            "404 Not Found",
            &[("Content-Type", "application/json")],
            br#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown"}]}"#,
        ),
    }
}

#[test]
fn anonymous_manifest_and_blobs_on_one_kept_connection() {
    let server = serve(|req, _| plain_registry(req));
    let r = registry(&server.host());
    let m = r.get_manifest("app", "v1", manifest::MANIFEST_ACCEPT, 4096).unwrap();
    assert_eq!(m.bytes, manifest_bytes());
    assert_eq!(m.media_type, OCI_MANIFEST);
    assert_eq!(m.digest, Digest::of(&manifest_bytes()));
    let by_digest = r.get_manifest("app", &m.digest.to_string(), &[OCI_MANIFEST], 4096).unwrap();
    assert_eq!(by_digest.bytes, m.bytes);
    assert_eq!(r.get_blob("app", &descriptor(BLOB), 1024).unwrap(), BLOB);
    let mut out = Vec::new();
    r.copy_blob("app", &descriptor(BLOB), &mut out).unwrap();
    assert_eq!(out, BLOB);

    assert_eq!((r.connections_opened(), server.conns.load(Ordering::SeqCst)), (1, 1), "keep-alive");
    let reqs = server.requests();
    assert_eq!(reqs.len(), 4);
    assert!(reqs.iter().all(|q| q.header("authorization").is_none()));
    assert_eq!(reqs[0].header("host"), Some(server.host().as_str()));
    let accept = reqs[0].header("accept").unwrap();
    assert!(accept.contains(manifest::OCI_INDEX) && accept.contains(manifest::DOCKER_MANIFEST), "{accept}");

    let e = r.get_manifest("app", "missing", &[OCI_MANIFEST], 4096).unwrap_err();
    assert_eq!(
        e.to_string(),
        format!(
            "manifest missing: HTTP 404 from http://{}/v2/app/manifests/missing: MANIFEST_UNKNOWN: manifest unknown",
            server.host()
        )
    );
}

#[test]
fn a_manifest_by_digest_must_hash_to_it() {
    let server = serve(|_, _| ok(b"{}", OCI_MANIFEST));
    let r = registry(&server.host());
    let wanted = Digest::of(b"something else");
    let e = r.get_manifest("app", &wanted.to_string(), &[OCI_MANIFEST], 4096).unwrap_err();
    assert!(matches!(e.kind, Kind::Digest(DigestError::Mismatch { .. })), "{e}");
    assert!(e.to_string().starts_with(&format!("manifest {wanted}: digest mismatch")), "{e}");
    // Requests that could not be sent as they are refused before any I/O.
    for (repo, reference) in [("App", "v1"), ("app", "v1 x"), ("app", "sha256:00"), ("app/../x", "v1"), ("app", "")] {
        let e = r.get_manifest(repo, reference, &[OCI_MANIFEST], 4096).unwrap_err();
        assert!(matches!(e.kind, Kind::Request(_)), "{e}");
    }
    assert!(r.get_manifest("app", "v1", &["a\r\nb"], 4096).is_err());
    assert_eq!(server.requests().len(), 1);
}

#[test]
fn bearer_token_flow_with_the_realm_on_another_listener() {
    let token_server = serve(|req, _| {
        if req.header("authorization") == Some("Basic dXNlcjpwYXNz") {
            ok(br#"{"token":"tok-123","expires_in":300}"#, "application/json")
        } else {
            reply("401 Unauthorized", &[], b"")
        }
    });
    let realm = format!("http://{}/token?x=1", token_server.host());
    let challenge = format!(r#"Bearer realm="{realm}",service="test registry",scope="repository:app:pull""#);
    let server = serve(move |req, _| {
        if req.header("authorization") == Some("Bearer tok-123") {
            plain_registry(req)
        } else {
            reply("401 Unauthorized", &[("WWW-Authenticate", &challenge)], br#"{"errors":[]}"#)
        }
    });
    let mut o = options(&server.host());
    o.credentials = Some(Credentials { username: "user".into(), password: "pass".into() });
    let r = Registry::new(o).unwrap();
    r.get_manifest("app", "v1", &[OCI_MANIFEST], 4096).unwrap();
    r.get_blob("app", &descriptor(BLOB), 1024).unwrap();

    let tokens = token_server.requests();
    assert_eq!(tokens.len(), 1, "one token for both requests");
    assert_eq!(tokens[0].target, "/token?x=1&service=test%20registry&scope=repository%3Aapp%3Apull");
    let reqs = server.requests();
    assert_eq!(reqs.len(), 3);
    assert_eq!(reqs[0].header("authorization"), None, "anonymous first");
    assert!(reqs[1..].iter().all(|q| q.header("authorization") == Some("Bearer tok-123")));

    // Without credentials the realm refuses: the error names the token step.
    let r = registry(&server.host());
    let e = r.get_manifest("app", "v1", &[OCI_MANIFEST], 4096).unwrap_err();
    assert_eq!(e.to_string(), format!("manifest v1: token from http://{}/token: HTTP 401", token_server.host()));
    assert_eq!(token_server.requests()[1].header("authorization"), None);
}

#[test]
fn a_refused_token_is_not_retried_forever_and_a_hostile_token_is_refused() {
    let token_server = serve(|req, _| {
        if req.target.contains("scope=repository%3Abad") {
            ok(b"{\"token\":\"a\\r\\nX-Injected: 1\"}", "application/json")
        } else {
            ok(br#"{"access_token":"useless"}"#, "application/json")
        }
    });
    let realm = format!("http://{}/token", token_server.host());
    // No scope in the challenge: the client asks for the repository's pull.
    let challenge = format!(r#"Bearer realm="{realm}""#);
    let server = serve(move |_, _| reply("401 Unauthorized", &[("WWW-Authenticate", &challenge)], b""));
    let r = registry(&server.host());
    let e = r.get_manifest("app", "v1", &[OCI_MANIFEST], 4096).unwrap_err();
    assert!(matches!(e.kind, Kind::Unauthorized(_)), "{e}");
    assert!(e.to_string().contains("after authenticating"), "{e}");
    assert_eq!(server.requests().len(), 2);
    assert_eq!(token_server.requests()[0].target, "/token?scope=repository%3Aapp%3Apull");
    let e = r.get_manifest("bad", "v1", &[OCI_MANIFEST], 4096).unwrap_err();
    assert!(matches!(e.kind, Kind::Token { .. }), "{e}");
    assert!(e.to_string().contains("visible ASCII"), "{e}");
}

#[test]
fn basic_auth_is_sent_once_asked_for() {
    let server = serve(|req, _| match req.header("authorization") {
        Some("Basic dXNlcjpwYXNz") => plain_registry(req),
        _ => reply("401 Unauthorized", &[("WWW-Authenticate", r#"Basic realm="registry""#)], b""),
    });
    let mut o = options(&server.host());
    o.credentials = Some(Credentials { username: "user".into(), password: "pass".into() });
    let r = Registry::new(o).unwrap();
    r.get_manifest("app", "v1", &[OCI_MANIFEST], 4096).unwrap();
    r.get_blob("app", &descriptor(BLOB), 1024).unwrap();
    let reqs = server.requests();
    assert_eq!(reqs.len(), 3, "one 401, then credentials up front");
    assert_eq!(reqs[2].header("authorization"), Some("Basic dXNlcjpwYXNz"));

    let mut o = options(&server.host());
    o.credentials = Some(Credentials { username: "user".into(), password: "wrong".into() });
    let e = Registry::new(o).unwrap().get_manifest("app", "v1", &[OCI_MANIFEST], 4096).unwrap_err();
    assert!(matches!(e.kind, Kind::Unauthorized(_)), "{e}");
    let e = registry(&server.host()).get_manifest("app", "v1", &[OCI_MANIFEST], 4096).unwrap_err();
    assert!(e.to_string().ends_with("no credentials are configured"), "{e}");
}

#[test]
fn hostile_challenges_are_refused() {
    let server = serve(|req, _| {
        let challenge = match req.target.as_str() {
            "/v2/a/manifests/v1" => "Bearer realm=\"unterminated",
            "/v2/b/manifests/v1" => "Negotiate abc==",
            "/v2/c/manifests/v1" => r#"Bearer realm="ftp://x/token""#,
            _ => return reply("401 Unauthorized", &[], b""),
        };
        reply("401 Unauthorized", &[("WWW-Authenticate", challenge)], b"")
    });
    let r = registry(&server.host());
    for (repo, want) in [
        ("a", "invalid WWW-Authenticate header: unterminated quoted string"),
        ("b", "no Bearer or Basic challenge"),
        ("c", "not an http:// or https:// URL"),
        ("d", "without a WWW-Authenticate challenge"),
    ] {
        let e = r.get_manifest(repo, "v1", &[OCI_MANIFEST], 4096).unwrap_err().to_string();
        assert!(e.contains(want), "{repo}: {e}");
    }
}

#[test]
fn a_blob_that_does_not_match_its_digest_is_an_error() {
    let tampered = BLOB.iter().map(|b| b ^ 1).collect::<Vec<u8>>();
    let server = serve(move |_, _| ok(&tampered, "application/octet-stream"));
    let r = registry(&server.host());
    let e = r.get_blob("app", &descriptor(BLOB), 1024).unwrap_err();
    assert!(matches!(e.kind, Kind::Digest(DigestError::Mismatch { .. })), "{e}");
    assert!(e.to_string().starts_with(&format!("blob {}: digest mismatch", Digest::of(BLOB))), "{e}");
    let e = r.copy_blob("app", &descriptor(BLOB), &mut Vec::new()).unwrap_err();
    assert!(matches!(e.kind, Kind::Digest(DigestError::Mismatch { .. })), "{e}");
    assert_eq!(server.requests().len(), 2, "a digest mismatch is not retried");
}

#[test]
fn sizes_are_refused_before_reading_or_allocating() {
    // Announces a terabyte and sends nothing: refusing must not wait.
    let server = serve(|_, _| raw(b"HTTP/1.1 200 OK\r\nContent-Length: 1000000000000\r\n\r\n", false));
    let r = registry(&server.host());
    let started = Instant::now();
    let e = r.get_manifest("app", "v1", &[OCI_MANIFEST], 4096).unwrap_err();
    assert!(matches!(e.kind, Kind::TooLarge { what: "manifest", size: 1_000_000_000_000, cap: 4096 }), "{e}");
    let e = r.copy_blob("app", &descriptor(BLOB), &mut Vec::new()).unwrap_err();
    assert!(matches!(e.kind, Kind::TooLarge { size: 1_000_000_000_000, .. }), "{e}");
    let e = r.get_blob("app", &descriptor(BLOB), 1024).unwrap_err();
    assert!(matches!(e.kind, Kind::TooLarge { .. }), "{e}");
    assert!(started.elapsed() < Duration::from_secs(2), "{:?}", started.elapsed());
    // A descriptor over the cap is refused before any request.
    let before = server.requests().len();
    let mut big = descriptor(BLOB);
    big.size = 1 << 40;
    let e = r.get_blob("app", &big, 1 << 20).unwrap_err();
    assert_eq!(
        e.to_string(),
        format!("blob {}: blob of 1099511627776 bytes is larger than the 1048576-byte cap", big.digest)
    );
    assert_eq!(server.requests().len(), before);

    // Shorter than the descriptor, and an unannounced body longer than the cap.
    let server =
        serve(
            |req, _| {
                if req.target.contains("manifests") { chunked(&[b'x'; 5000]) } else { reply("200 OK", &[], &BLOB[1..]) }
            },
        );
    let r = registry(&server.host());
    let e = r.get_manifest("app", "v1", &[OCI_MANIFEST], 4096).unwrap_err();
    assert!(matches!(e.kind, Kind::TooLarge { what: "manifest", cap: 4096, .. }), "{e}");
    let e = r.copy_blob("app", &descriptor(BLOB), &mut Vec::new()).unwrap_err();
    assert!(e.to_string().contains("announced 31 bytes where the descriptor leaves 32"), "{e}");
}

#[test]
fn chunked_bodies() {
    let server = serve(|req, _| match req.target.as_str() {
        "/v2/app/manifests/v1" => chunked(&manifest_bytes()),
        "/v2/bad/manifests/v1" => {
            raw(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nabcdeXX0\r\n\r\n", false)
        }
        "/v2/short/manifests/v1" => raw(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", false),
        _ => chunked(BLOB),
    });
    let r = registry(&server.host());
    assert_eq!(r.get_manifest("app", "v1", &[OCI_MANIFEST], 4096).unwrap().bytes, manifest_bytes());
    let mut out = Vec::new();
    r.copy_blob("app", &descriptor(BLOB), &mut out).unwrap();
    assert_eq!(out, BLOB);
    assert_eq!(r.get_blob("app", &descriptor(BLOB), 1024).unwrap(), BLOB);
    assert_eq!(r.connections_opened(), 1, "chunked bodies read to the end keep the connection");
    for repo in ["bad", "short"] {
        let e = r.get_manifest(repo, "v1", &[OCI_MANIFEST], 4096).unwrap_err();
        assert!(matches!(e.kind, Kind::Invalid(_)), "{e}");
    }
}

#[test]
fn a_redirect_to_another_host_gets_no_authorization() {
    let storage = serve(|req, _| match req.target.as_str() {
        "/bucket/blob?sig=s3cr3t" => ok(BLOB, "application/octet-stream"),
        _ => reply("404 Not Found", &[], b""),
    });
    let location = format!("http://{}/bucket/blob?sig=s3cr3t", storage.host());
    let server = serve(move |req, _| {
        if req.header("authorization") != Some("Basic dXNlcjpwYXNz") {
            return reply("401 Unauthorized", &[("WWW-Authenticate", "Basic realm=r")], b"");
        }
        match req.target.as_str() {
            "/v2/app/manifests/v1" => plain_registry(req),
            "/v2/loop/blobs/sha256:e0de0b2ad0af5a6b7bbd46ccdd11d8b1a7ab2f6cd0ac3c9a6b35f13d23dcc5e8" => reply(
                "302 Found",
                &[(
                    "Location",
                    "/v2/loop/blobs/sha256:e0de0b2ad0af5a6b7bbd46ccdd11d8b1a7ab2f6cd0ac3c9a6b35f13d23dcc5e8",
                )],
                b"",
            ),
            "/v2/nowhere/blobs/sha256:e0de0b2ad0af5a6b7bbd46ccdd11d8b1a7ab2f6cd0ac3c9a6b35f13d23dcc5e8" => {
                reply("307 Temporary Redirect", &[], b"")
            }
            _ => reply("307 Temporary Redirect", &[("Location", &location)], b"moved"),
        }
    });
    let mut o = options(&server.host());
    o.credentials = Some(Credentials { username: "user".into(), password: "pass".into() });
    let r = Registry::new(o).unwrap();
    r.get_manifest("app", "v1", &[OCI_MANIFEST], 4096).unwrap();
    let mut out = Vec::new();
    r.copy_blob("app", &descriptor(BLOB), &mut out).unwrap();
    assert_eq!(out, BLOB);
    assert_eq!(r.get_blob("app", &descriptor(BLOB), 1024).unwrap(), BLOB);
    let at_storage = storage.requests();
    assert_eq!(at_storage.len(), 2);
    assert!(at_storage.iter().all(|q| q.header("authorization").is_none()), "{at_storage:?}");
    assert_eq!(at_storage[0].header("host"), Some(storage.host().as_str()));
    assert_eq!(r.connections_opened(), 2, "one kept connection per host");

    let mut loop_blob = descriptor(BLOB);
    loop_blob.digest =
        Digest::parse("sha256:e0de0b2ad0af5a6b7bbd46ccdd11d8b1a7ab2f6cd0ac3c9a6b35f13d23dcc5e8").unwrap();
    let e = r.copy_blob("loop", &loop_blob, &mut Vec::new()).unwrap_err();
    assert!(e.to_string().ends_with("redirect: more than 5 redirects"), "{e}");
    let e = r.copy_blob("nowhere", &loop_blob, &mut Vec::new()).unwrap_err();
    assert!(e.to_string().contains("without a Location"), "{e}");
}

#[test]
fn server_errors_are_retried_then_succeed() {
    let server = serve(|req, seen| match seen {
        0 => reply("503 Service Unavailable", &[], b"busy"),
        1 => reply("429 Too Many Requests", &[], b""),
        _ => plain_registry(req),
    });
    let r = registry(&server.host());
    let m = r.get_manifest("app", "v1", &[OCI_MANIFEST], 4096).unwrap();
    assert_eq!(m.bytes, manifest_bytes());
    assert_eq!(server.requests().len(), 3);
    // Every attempt failing ends after retries + 1 attempts, named.
    let server = serve(|_, _| reply("502 Bad Gateway", &[], b""));
    let e = registry(&server.host()).get_manifest("app", "v1", &[OCI_MANIFEST], 4096).unwrap_err();
    assert!(matches!(e.kind, Kind::Exhausted { attempts: 3, .. }), "{e}");
    assert!(e.to_string().starts_with("manifest v1: gave up after 3 attempt(s) in "), "{e}");
    assert!(e.to_string().ends_with(&format!("HTTP 502 from http://{}/v2/app/manifests/v1", server.host())), "{e}");
    assert_eq!(server.requests().len(), 3);
}

#[test]
fn a_cut_blob_resumes_with_a_range_request() {
    let half = BLOB.len() / 2;
    // First answer: the whole length announced, half sent, then the close.
    let server = serve(move |req, seen| match seen {
        0 => {
            let mut bytes = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", BLOB.len()).into_bytes();
            bytes.extend_from_slice(&BLOB[..half]);
            raw(&bytes, true)
        }
        _ => {
            assert_eq!(req.header("range"), Some(format!("bytes={half}-").as_str()));
            let range = format!("bytes {half}-{}/{}", BLOB.len() - 1, BLOB.len());
            reply("206 Partial Content", &[("Content-Range", &range)], &BLOB[half..])
        }
    });
    let mut out = Vec::new();
    registry(&server.host()).copy_blob("app", &descriptor(BLOB), &mut out).unwrap();
    assert_eq!(out, BLOB);
    assert_eq!(server.requests().len(), 2);

    // A server that ignores the range: what was already written is skipped.
    let server = serve(move |_, seen| match seen {
        0 => {
            let mut bytes = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", BLOB.len()).into_bytes();
            bytes.extend_from_slice(&BLOB[..half]);
            raw(&bytes, true)
        }
        _ => ok(BLOB, "application/octet-stream"),
    });
    let mut out = Vec::new();
    registry(&server.host()).copy_blob("app", &descriptor(BLOB), &mut out).unwrap();
    assert_eq!(out, BLOB);

    // A range that does not continue where the copy stopped is refused.
    let server = serve(move |_, seen| match seen {
        0 => {
            let mut bytes = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", BLOB.len()).into_bytes();
            bytes.extend_from_slice(&BLOB[..half]);
            raw(&bytes, true)
        }
        _ => reply("206 Partial Content", &[("Content-Range", "bytes 0-31/32")], BLOB),
    });
    let e = registry(&server.host()).copy_blob("app", &descriptor(BLOB), &mut Vec::new()).unwrap_err();
    assert!(e.to_string().contains("does not continue at byte 16 of 32"), "{e}");
}

#[test]
fn connection_refused_gives_up_after_the_retries_within_the_deadline() {
    let addr = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let started = Instant::now();
    let e = registry(&addr.to_string()).get_manifest("app", "v1", &[OCI_MANIFEST], 4096).unwrap_err();
    assert!(matches!(e.kind, Kind::Exhausted { attempts: 3, .. }), "{e}");
    assert!(e.to_string().contains(&format!("connect to {addr}")), "{e}");
    assert!(started.elapsed() < Duration::from_secs(2));

    // Many retries, a short deadline: the deadline ends it.
    let mut o = options(&addr.to_string());
    o.retries = 1000;
    o.backoff = Duration::from_millis(50);
    o.deadline = Instant::now() + Duration::from_millis(400);
    let started = Instant::now();
    let e = Registry::new(o).unwrap().copy_blob("app", &descriptor(BLOB), &mut Vec::new()).unwrap_err();
    assert!(matches!(e.kind, Kind::Deadline { .. }), "{e}");
    assert!(e.to_string().starts_with(&format!("blob {}: deadline reached after ", Digest::of(BLOB))), "{e}");
    assert!(started.elapsed() < Duration::from_millis(1500), "{:?}", started.elapsed());
}

#[test]
fn a_silent_server_is_bounded_by_the_deadline() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let held = std::thread::spawn(move || {
        let conns: Vec<_> = listener.incoming().take(1).collect();
        std::thread::sleep(Duration::from_millis(1500));
        drop(conns);
    });
    let mut o = options(&addr.to_string());
    o.deadline = Instant::now() + Duration::from_millis(500);
    let started = Instant::now();
    let e = Registry::new(o).unwrap().get_manifest("app", "v1", &[OCI_MANIFEST], 4096).unwrap_err();
    assert!(matches!(e.kind, Kind::Deadline { attempts: 1, .. }), "{e}");
    assert!(started.elapsed() < Duration::from_millis(1200), "{:?}", started.elapsed());
    held.join().unwrap();
}

#[test]
fn setup_is_checked() {
    let deadline = Instant::now() + Duration::from_secs(1);
    let new = |host: &str, scheme, trust| Registry::new(RegistryOptions::new(host, scheme, trust, deadline));
    assert!(new("reg.example:5000", Scheme::Http, Trust::None).is_ok());
    for (host, scheme, trust, want) in [
        ("reg.example", Scheme::Https, Trust::None, "needs a CA or pinned certificate"),
        ("reg.example", Scheme::Http, Trust::Pinned(vec![]), "cannot use a certificate"),
        ("reg example", Scheme::Http, Trust::None, "invalid host"),
        ("user@reg.example", Scheme::Http, Trust::None, "user info"),
        ("reg.example:0", Scheme::Http, Trust::None, "invalid port"),
    ] {
        let e = new(host, scheme, trust).err().unwrap().to_string();
        assert!(e.starts_with("registry: ") && e.contains(want), "{host}: {e}");
    }
    let mut o = RegistryOptions::new("reg.example", Scheme::Http, Trust::None, deadline);
    o.credentials = Some(Credentials { username: "a:b".into(), password: "c".into() });
    assert!(Registry::new(o).is_err());
}
