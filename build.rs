//! Embeds the version, the git revision and a hash of the build inputs, so a
//! running guest can say exactly which ztinit it is. Everything here must be
//! deterministic: no timestamps, no absolute paths. The input hash covers
//! the sources, Cargo.toml, Cargo.lock, this file and the compiler's
//! `rustc -vV` (pinned by rust-toolchain.toml).

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
    // The compiler is an input too (rust-toolchain.toml pins it): the same
    // sources built by another rustc are another binary, and the version
    // line must say so.
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let rustc_version = Command::new(&rustc)
        .arg("-vV")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| o.stdout)
        .unwrap_or_else(|| panic!("`{rustc} -vV` failed: the compiler version is part of the input hash"));
    h.update(b"rustc -vV");
    h.update([0]);
    h.update((rustc_version.len() as u64).to_le_bytes());
    h.update(&rustc_version);
    let digest = h.finalize();
    let input_hash: String = digest.iter().take(8).map(|b| format!("{b:02x}")).collect();

    // Rebuild when HEAD moves (a commit or a checkout). Ask git where its
    // files are: in a worktree `.git` is a file, and a rerun-if-changed path
    // that does not exist makes cargo rebuild every time. The index is not
    // watched: `git status` above refreshes it, which would also rebuild
    // every time; the watched sources already cover "dirty".
    for path in ["HEAD", "packed-refs"] {
        if let Some(p) = git(root, &["rev-parse", "--git-path", path]) {
            watch_if_exists(root, &p);
        }
    }
    if let Some(head_ref) = git(root, &["symbolic-ref", "-q", "HEAD"])
        && let Some(p) = git(root, &["rev-parse", "--git-path", &head_ref])
    {
        watch_if_exists(root, &p);
    }
    println!("cargo:rustc-env=ZTINIT_GIT_REV={rev}{}", if dirty { "-dirty" } else { "" });
    println!("cargo:rustc-env=ZTINIT_INPUT_HASH={input_hash}");
}

fn watch_if_exists(root: &Path, path: &str) {
    let full = root.join(path);
    if full.exists() {
        println!("cargo:rerun-if-changed={}", full.display());
    }
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
