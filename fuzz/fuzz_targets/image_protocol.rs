//! The PID 1 ↔ helper protocol: the helper's answer as PID 1 reads it and
//! the workload it builds from it (resolved in a scratch root with one
//! executable), and the request as the helper reads it.
#![no_main]
use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use ztinit::image::config::ImageConfig;
use ztinit::image::protocol::{self, Answer, Request};
use ztinit::image::reference::Reference;
use ztinit_image::{ocicrypt, signature};

/// A root with `/bin/sh`, for the PATH lookup.
static ROOT: LazyLock<tempfile::TempDir> = LazyLock::new(|| {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("a scratch directory");
    std::fs::create_dir(dir.path().join("bin")).expect("bin");
    let sh = dir.path().join("bin/sh");
    std::fs::write(&sh, b"#!/bin/false\n").expect("sh");
    std::fs::set_permissions(&sh, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    // SAFETY: registers a plain `extern "C" fn` with no arguments.
    unsafe { libc::atexit(remove_root) };
    dir
});

extern "C" fn remove_root() {
    let _ = std::fs::remove_dir_all(ROOT.path());
}

fuzz_target!(|data: &[u8]| {
    if let Ok(answer) = serde_json::from_slice::<Answer>(data) {
        let again: Answer = serde_json::from_slice(&serde_json::to_vec(&answer).expect("serialises")).expect("parses");
        assert_eq!(again, answer);
        if answer.version == protocol::VERSION
            && let Ok(w) = ztinit::image::workload(&ImageConfig::default(), &answer, ROOT.path())
        {
            assert!(w.path.starts_with('/') && w.workdir.starts_with('/'));
            assert!(!w.env.contains_key(ztinit::secrets::CREDENTIALS_ENV), "the image cannot name the secrets");
        }
    }
    // What the helper does with a request before it opens a connection.
    if let Ok(req) = serde_json::from_slice::<Request>(data) {
        if req.version != protocol::VERSION {
            return;
        }
        let _ = Reference::parse(&req.reference);
        let _ = signature::PublicKeys::from_pem(req.signature_keys.join("\n").as_bytes());
        let pem: Vec<&str> = req.decryption_keys.iter().map(|k| k.0.as_str()).collect();
        let _ = ocicrypt::PrivateKeys::from_pem(pem.join("\n").as_bytes());
    }
});
