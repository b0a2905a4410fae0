//! `cargo xtask repro`: the measured binary is reproducible. The release
//! musl `ztinit` is built twice, in this workspace (its usual `target/`)
//! and from a copy of the source tree in another directory with its own
//! target directory, and the two files must be byte-identical.
//!
//! What could make them differ, and why it does not: absolute paths
//! (`--remap-path-prefix` maps the workspace and `$CARGO_HOME` to fixed
//! names in every release build, see [`release_rustflags`]); the version
//! line's git revision (the copy's build script reads the same git
//! directory through `GIT_DIR`/`GIT_WORK_TREE`); timestamps (`build.rs`
//! embeds none); the compiler (pinned by rust-toolchain.toml, copied
//! along). The second target directory is kept between runs, so after the
//! first run only ztinit itself and the link are rebuilt.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result, bail};

use crate::manifest::MUSL_TARGET;
use crate::{cli, kernel, util};

const USAGE: &str = "usage: cargo xtask repro
Builds the release musl ztinit here and again from a copy of the source tree in another directory (own target
directory, under target/repro/), and fails unless the two binaries are byte-identical, or when ztinit (2.5 MiB)
or the image helper (2 MiB) is over its size budget.";

pub fn cmd(args: &[String]) -> Result<()> {
    let mut p = cli::Args::new(args, USAGE);
    if let Some(arg) = p.next()? {
        match arg {
            cli::Short('h') | cli::Long("help") => return p.help(),
            other => {
                let e = other.unexpected();
                return Err(p.error(e));
            }
        }
    }
    check()
}

/// The rustflags of a release build in `workspace`: paths that would end
/// up in the binary (panic locations of dependencies, the workspace if
/// anything names it absolutely) mapped to names that do not depend on
/// where the tree or the cargo home is.
pub fn release_rustflags(workspace: &Path, target: &str) -> String {
    let cargo_home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")));
    let mut flags = vec![format!("--remap-path-prefix={}=/ztinit", workspace.display())];
    if let Some(home) = cargo_home {
        flags.push(format!("--remap-path-prefix={}=/cargo", home.display()));
    }
    if target == MUSL_TARGET {
        // Relative relocations packed (DT_RELR, which musl's static-PIE
        // start code applies): a static PIE keeps its ASLR while the 150 KiB
        // of RELA entries shrink to 2 KiB, which keeps PID 1 in its budget.
        flags.push("-Clink-arg=-Wl,-z,pack-relative-relocs".to_string());
        // No `.eh_frame_hdr` (37 KiB in PID 1): it is the unwinder's index
        // for finding a function's frame. Release builds abort on panic and
        // PID 1's panic hook prints no backtrace, so nothing ever unwinds;
        // a backtrace asked of a release binary by hand (`RUST_BACKTRACE`)
        // is what would go without it.
        flags.push("-Clink-arg=-Wl,--no-eh-frame-hdr".to_string());
    }
    // CARGO_ENCODED_RUSTFLAGS: separated by 0x1f, so paths may hold spaces.
    flags.join("\u{1f}")
}

/// `cargo build --release --target T -p P...` in `workspace` into
/// `target_dir`, with [`release_rustflags`].
pub fn release_build(cmd: &mut Command, workspace: &Path, target: &str) {
    cmd.current_dir(workspace)
        .env("CARGO_ENCODED_RUSTFLAGS", release_rustflags(workspace, target))
        .env_remove("RUSTFLAGS")
        .args(["build", "--release", "--target", target]);
}

pub fn check() -> Result<()> {
    let started = Instant::now();
    let root = util::workspace_root();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());

    let mut first = Command::new(&cargo);
    release_build(&mut first, &root, MUSL_TARGET);
    util::run(first.args(["-p", "ztinit", "-p", "ztinit-image"])).context("building the release musl ztinit")?;
    let release = util::target_dir().join(MUSL_TARGET).join("release");
    let a = release.join("ztinit");
    for (binary, budget) in SIZE_BUDGETS {
        check_budget(&release.join(binary), *budget)?;
    }

    let work = util::target_dir().join("repro");
    let tree = work.join("tree");
    copy_tree(&root, &tree)?;
    let git_dir = git(&root, &["rev-parse", "--absolute-git-dir"])?;
    let second_target = work.join("target");
    let mut second = Command::new(&cargo);
    release_build(&mut second, &tree, MUSL_TARGET);
    second
        .env("CARGO_TARGET_DIR", &second_target)
        .env("GIT_DIR", git_dir.trim())
        .env("GIT_WORK_TREE", &tree)
        .args(["-p", "ztinit"]);
    util::run(&mut second).context("building the release musl ztinit from the copy")?;
    let b = second_target.join(MUSL_TARGET).join("release/ztinit");

    compare(&a, &b)?;
    println!(
        "repro: {} and {} are byte-identical ({}, {})",
        a.display(),
        b.display(),
        util::human_size(std::fs::metadata(&a)?.len()),
        kernel::fmt_duration(started.elapsed())
    );
    Ok(())
}

/// The binaries with a size budget (issue 13: PID 1 within 2.5 MiB, the
/// image helper at most 2 MiB more), in bytes.
const SIZE_BUDGETS: &[(&str, u64)] = &[("ztinit", 5 << 19), ("ztinit-image", 2 << 20)];

/// Fails when `binary` is larger than `budget` bytes.
fn check_budget(binary: &Path, budget: u64) -> Result<()> {
    let size = std::fs::metadata(binary).with_context(|| format!("cannot stat {}", binary.display()))?.len();
    if size > budget {
        bail!(
            "{} is {} ({size} bytes), over its budget of {} ({budget} bytes)",
            binary.display(),
            util::human_size(size),
            util::human_size(budget)
        );
    }
    println!("repro: {} is {} of its {} budget", binary.display(), util::human_size(size), util::human_size(budget));
    Ok(())
}

/// Fails naming the first differing offset (or the shorter file) and both paths.
pub fn compare(a: &Path, b: &Path) -> Result<()> {
    let x = std::fs::read(a).with_context(|| format!("cannot read {}", a.display()))?;
    let y = std::fs::read(b).with_context(|| format!("cannot read {}", b.display()))?;
    if let Some(at) = x.iter().zip(&y).position(|(p, q)| p != q) {
        bail!(
            "not reproducible: {} and {} first differ at offset {at:#x} ({:#04x} vs {:#04x})",
            a.display(),
            b.display(),
            x[at],
            y[at]
        );
    }
    if x.len() != y.len() {
        bail!(
            "not reproducible: {} is {} bytes, {} is {} bytes (equal up to offset {:#x})",
            a.display(),
            x.len(),
            b.display(),
            y.len(),
            x.len().min(y.len())
        );
    }
    Ok(())
}

/// The files git would commit (tracked, and untracked but not ignored),
/// copied to `to`, which is emptied first.
fn copy_tree(from: &Path, to: &Path) -> Result<()> {
    if to.exists() {
        std::fs::remove_dir_all(to).with_context(|| format!("cannot remove {}", to.display()))?;
    }
    let list = git(from, &["ls-files", "-z", "--cached", "--others", "--exclude-standard"])?;
    for rel in list.split('\0').filter(|s| !s.is_empty()) {
        let src = from.join(rel);
        // Deleted but not yet staged: not part of the tree.
        if !src.is_file() {
            continue;
        }
        let dst = to.join(rel);
        if let Some(dir) = dst.parent() {
            std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        }
        std::fs::copy(&src, &dst).with_context(|| format!("cannot copy {} to {}", src.display(), dst.display()))?;
    }
    Ok(())
}

fn git(dir: &Path, args: &[&str]) -> Result<String> {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .output()
        .with_context(|| format!("cannot run git {}", args.join(" ")))?;
    if !out.status.success() {
        bail!("git {} failed: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim());
    }
    String::from_utf8(out.stdout).context("git printed non-UTF-8")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compare_names_the_first_difference_and_both_paths() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b, c) = (dir.path().join("a"), dir.path().join("b"), dir.path().join("c"));
        std::fs::write(&a, b"\x7fELF-one").unwrap();
        std::fs::write(&b, b"\x7fELF-two").unwrap();
        std::fs::write(&c, b"\x7fELF-one-and-more").unwrap();
        assert!(compare(&a, &a).is_ok());
        let e = compare(&a, &b).unwrap_err().to_string();
        assert!(
            e.contains("offset 0x5") && e.contains(&a.display().to_string()) && e.contains(&b.display().to_string()),
            "{e}"
        );
        let e = compare(&a, &c).unwrap_err().to_string();
        assert!(e.contains("8 bytes") && e.contains("17 bytes"), "{e}");
    }

    #[test]
    fn rustflags_remap_the_workspace_and_cargo_home() {
        let f = release_rustflags(Path::new("/some where/ztinit"), "x86_64-unknown-linux-gnu");
        assert!(f.starts_with("--remap-path-prefix=/some where/ztinit=/ztinit"), "{f}");
        // One flag per 0x1f-separated field, spaces and all.
        assert!(f.split('\u{1f}').all(|flag| flag.starts_with("--remap-path-prefix=")), "{f}");
    }

    #[test]
    fn musl_builds_pack_their_relative_relocations() {
        let f = release_rustflags(Path::new("/w"), MUSL_TARGET);
        assert!(f.split('\u{1f}').any(|flag| flag == "-Clink-arg=-Wl,-z,pack-relative-relocs"), "{f}");
        assert!(f.split('\u{1f}').any(|flag| flag == "-Clink-arg=-Wl,--no-eh-frame-hdr"), "{f}");
    }

    #[test]
    fn a_binary_over_its_budget_fails_naming_both_sizes() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("bin");
        std::fs::write(&f, [0u8; 100]).unwrap();
        check_budget(&f, 100).unwrap();
        let e = check_budget(&f, 99).unwrap_err().to_string();
        assert!(e.contains("(100 bytes), over its budget") && e.contains("(99 bytes)"), "{e}");
    }
}
