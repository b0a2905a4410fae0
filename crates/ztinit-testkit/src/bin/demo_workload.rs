//! The demo image's workload: shows who and where it runs, the secrets the
//! KBS released to it (size and SHA-256, never the bytes), then exits 0.
//! Each part is one function, so the demo can grow (e.g. the model volume).

use std::path::Path;

use ztinit_testkit::{boottime_ms, say, sha256};

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
                say(&format!("demo: secret {shown}: {} bytes, sha256={}", bytes.len(), sha256::hex_digest(&bytes)))
            }
            Err(e) => {
                say(&format!("demo: secret {shown}: cannot read: {e}"));
                ok = false;
            }
        }
    }
    ok
}
