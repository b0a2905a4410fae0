//! The demo image's workload: shows who and where it runs, the secrets the
//! KBS released to it (size and SHA-256, never the bytes), the SHA-256 of
//! each file of the model volume, then exits 0. Each part is one function,
//! so the demo can grow.

use std::path::Path;

use ztinit_testkit::files::{self, sha256_file};
use ztinit_testkit::{boottime_ms, say};

fn main() {
    // SAFETY: these getters cannot fail.
    let (pid, uid, gid) = unsafe { (libc::getpid(), libc::getuid(), libc::getgid()) };
    say(&format!("demo: workload started at {} ms: pid={pid} uid={uid} gid={gid}", boottime_ms()));
    let args: Vec<String> = std::env::args().skip(1).collect();
    if !args.is_empty() {
        say(&format!("demo: args: {}", args.join(" ")));
    }
    let mut ok = true;
    if let Some(dir) = std::env::var_os("CREDENTIALS_DIRECTORY") {
        ok &= show_secrets(Path::new(&dir));
    }
    report_models(Path::new("/models"));
    say("demo: workload done");
    std::process::exit(if ok { 0 } else { 1 });
}

/// `demo: secret NAME: N bytes, sha256=HEX` for each file of the
/// credentials directory, in name order. False if one cannot be read.
fn show_secrets(dir: &Path) -> bool {
    let mut names: Vec<_> = match std::fs::read_dir(dir) {
        Ok(entries) => entries.filter_map(|e| e.ok().map(|e| e.file_name())).collect(),
        Err(e) => {
            say(&format!("demo: cannot list {}: {e}", dir.display()));
            return false;
        }
    };
    names.sort();
    let mut ok = true;
    for name in names {
        let shown = name.to_string_lossy();
        match std::fs::read(dir.join(&name)) {
            Ok(bytes) => {
                say(&format!("demo: secret {shown}: {} bytes, sha256={}", bytes.len(), files::sha256_hex(&bytes)))
            }
            Err(e) => {
                say(&format!("demo: secret {shown}: cannot read: {e}"));
                ok = false;
            }
        }
    }
    ok
}

/// The SHA-256 of each file of the model volume (tests/e2e/demo.toml attaches
/// one; the demo summary compares it with the host's).
fn report_models(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    let mut paths: Vec<_> = entries.filter_map(|e| e.ok().map(|e| e.path())).filter(|p| p.is_file()).collect();
    paths.sort();
    for p in paths {
        match sha256_file(&p) {
            Ok((hex, bytes)) => say(&format!("demo: model {} sha256 {hex} ({bytes} bytes)", p.display())),
            Err(e) => say(&format!("demo: model {}: cannot read: {e}", p.display())),
        }
    }
}
