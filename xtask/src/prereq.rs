//! Host prerequisites of the build and the tests: installed when we are
//! root, otherwise named with the exact command to run.

use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::manifest::MUSL_TARGET;
use crate::{kernel, util};

/// Debian packages besides the kernel build's: QEMU, the musl C toolchain
/// (ring's C code), cpio (reads our archives in tests), and the filesystem
/// builders of `xtask model-volume` (the demo's and the volume scenarios'
/// model disks).
const TOOL_DEBS: &[&str] = &["qemu-system-x86", "musl-tools", "cpio", "erofs-utils", "e2fsprogs"];

/// Every Debian package the build and the tests need.
pub fn debs() -> Vec<&'static str> {
    let mut all: Vec<&str> = TOOL_DEBS.iter().chain(kernel::BUILD_DEBS).copied().collect();
    all.sort_unstable();
    all.dedup();
    all
}

pub fn ensure() -> Result<()> {
    let debs = debs();
    let missing: Vec<&str> = debs.iter().copied().filter(|p| util::deb_version(p).is_none()).collect();
    if missing.is_empty() {
        println!("prereq: host packages present ({})", debs.len());
    } else {
        util::ensure_debs(&debs, "the ztinit build and QEMU tests")?;
    }
    ensure_rust_target(MUSL_TARGET)
}

fn ensure_rust_target(target: &str) -> Result<()> {
    let sysroot = util::output(Command::new("rustc").args(["--print", "sysroot"])).context("cannot run rustc")?;
    let lib = Path::new(sysroot.trim()).join("lib/rustlib").join(target).join("lib");
    if lib.is_dir() {
        println!("prereq: Rust target {target} present");
        return Ok(());
    }
    if !util::have_program("rustup") {
        bail!(
            "the Rust standard library for {target} is missing and rustup is not installed; install it for your toolchain"
        );
    }
    println!("prereq: installing the Rust target {target} (rustup target add {target})");
    util::run(Command::new("rustup").args(["target", "add", target]))
        .with_context(|| format!("run `rustup target add {target}` by hand"))
}
