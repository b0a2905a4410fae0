//! Embeds the version, the git revision and a hash of the build inputs, so a
//! running guest can say exactly which ztinit it is. Everything here must be
//! deterministic: no timestamps, no absolute paths.

use std::path::Path;
use std::process::Command;

use sha2::{Digest, Sha256};

fn main() {
    let root = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    let root = Path::new(&root);

    let rev = git(root, &["rev-parse", "--short=12", "HEAD"]).unwrap_or_else(|| "unknown".into());
    let dirty = git(
        root,
        &["status", "--porcelain", "--untracked-files=no", "--", "src", "Cargo.toml", "Cargo.lock", "build.rs"],
    )
    .is_some_and(|s| !s.is_empty());

    // Hash of the sources that make up the binary, in a fixed order with
    // paths relative to the crate root.
    let mut files = Vec::new();
    collect(root, &root.join("src"), &mut files);
    for f in ["Cargo.toml", "Cargo.lock", "build.rs"] {
        if root.join(f).is_file() {
            files.push(f.to_string());
        }
    }
    files.sort();
    let mut h = Sha256::new();
    for f in &files {
        let data = std::fs::read(root.join(f)).unwrap_or_default();
        h.update(f.as_bytes());
        h.update([0]);
        h.update((data.len() as u64).to_le_bytes());
        h.update(&data);
        println!("cargo:rerun-if-changed={f}");
    }
    let digest = h.finalize();
    let input_hash: String = digest.iter().take(8).map(|b| format!("{b:02x}")).collect();

    println!("cargo:rerun-if-changed=.git/HEAD");
    println!("cargo:rerun-if-changed=.git/index");
    println!("cargo:rustc-env=ZTINIT_GIT_REV={rev}{}", if dirty { "-dirty" } else { "" });
    println!("cargo:rustc-env=ZTINIT_INPUT_HASH={input_hash}");
}

fn git(root: &Path, args: &[&str]) -> Option<String> {
    let out = Command::new("git").arg("-C").arg(root).args(args).output().ok()?;
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn collect(root: &Path, dir: &Path, out: &mut Vec<String>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            collect(root, &p, out);
        } else if let Ok(rel) = p.strip_prefix(root) {
            out.push(rel.to_string_lossy().replace('\\', "/"));
        }
    }
}
