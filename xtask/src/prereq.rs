//! Host prerequisites of the build and the tests: installed when we are
//! root, otherwise named with the exact command to run.

use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::manifest::MUSL_TARGET;
use crate::{kernel, util};

/// Debian packages besides the kernel build's: QEMU, the musl C toolchain
/// (ring's C code), cpio (reads our archives in tests), the filesystem
/// builders of `xtask model-volume` (the demo's and the volume scenarios'
/// model disks), and the [`TEST_TOOLS`] of the image scenarios.
const TOOL_DEBS: &[&str] =
    &["qemu-system-x86", "musl-tools", "cpio", "erofs-utils", "e2fsprogs", "skopeo", "docker-registry"];

/// Host programs a scenario can require (`requires = ["skopeo"]`), each
/// with its Debian package: the registry the image scenarios pull from
/// (CNCF distribution) and the tool that pushes, signs and encrypts their
/// images. A scenario whose tool is missing is skipped, never passed.
pub const TEST_TOOLS: &[(&str, &str)] = &[("skopeo", "skopeo"), ("docker-registry", "docker-registry")];

/// Why a required host tool cannot be used (`None`: it is on PATH).
pub fn missing_tool(name: &str) -> Option<String> {
    missing_tool_in(name, util::have_program(name))
}

fn missing_tool_in(name: &str, present: bool) -> Option<String> {
    if present {
        return None;
    }
    let deb = TEST_TOOLS.iter().find(|(n, _)| *n == name).map_or(name, |(_, d)| *d);
    Some(format!("{name} is not installed (apt-get install {deb}; `cargo xtask test` installs it when run as root)"))
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_tools_are_installed_with_the_rest_and_named_when_missing() {
        for (_, deb) in TEST_TOOLS {
            assert!(debs().contains(deb), "{deb} is not installed by the prerequisites");
        }
        assert_eq!(missing_tool_in("skopeo", true), None);
        let why = missing_tool_in("docker-registry", false).unwrap();
        assert!(why.starts_with("docker-registry is not installed (apt-get install docker-registry"), "{why}");
    }
}
