//! The demo image's workload: shows who and where it runs, then exits 0.
//! With the model volume mounted it prints the SHA-256 of each model file.

use std::path::Path;

use ztinit_testkit::files::sha256_file;
use ztinit_testkit::{boottime_ms, say};

fn main() {
    // SAFETY: these getters cannot fail.
    let (pid, uid, gid) = unsafe { (libc::getpid(), libc::getuid(), libc::getgid()) };
    say(&format!("demo: workload started at {} ms: pid={pid} uid={uid} gid={gid}", boottime_ms()));
    let args: Vec<String> = std::env::args().skip(1).collect();
    if !args.is_empty() {
        say(&format!("demo: args: {}", args.join(" ")));
    }
    report_models(Path::new("/models"));
    say("demo: workload done");
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
