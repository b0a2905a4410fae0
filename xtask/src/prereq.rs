//! Host prerequisites of the build and the tests: installed when we are
//! root, otherwise named with the exact command to run.

use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::manifest::MUSL_TARGET;
use crate::{kernel, qemu, util};

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
    ensure_qemu_cpu()?;
    ensure_rust_target(MUSL_TARGET)
}

/// The Debian release whose QEMU (7.2) cannot emulate SHA-NI under TCG,
/// and the suite that has one that can (10.0).
const OLD_QEMU_RELEASE: &str = "bookworm";
const BACKPORTS: &str = "bookworm-backports";
const BACKPORTS_SOURCES: &str = "/etc/apt/sources.list.d/ztinit-bookworm-backports.sources";
const BACKPORTS_ENTRY: &str = "Types: deb\nURIs: http://deb.debian.org/debian\nSuites: bookworm-backports\n\
                               Components: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n";

/// A QEMU whose TCG boots the harness CPU model ([`qemu::TCG_CPU`], with
/// SHA-NI): on Debian 12 that is bookworm-backports' QEMU, which this
/// installs (adding the backports suite to apt's sources when none names
/// it); elsewhere the message says what is needed.
fn ensure_qemu_cpu() -> Result<()> {
    if std::env::var("ZTINIT_QEMU_ACCEL").is_ok_and(|a| a != "tcg") {
        return Ok(());
    }
    let Some(why) = qemu::tcg_cpu_missing()? else {
        println!("prereq: QEMU emulates the harness CPU (-cpu {})", qemu::TCG_CPU);
        return Ok(());
    };
    if os_codename().as_deref() != Some(OLD_QEMU_RELEASE) {
        bail!("{why}\ninstall a QEMU whose TCG emulates SHA-NI (QEMU 10.0 does)");
    }
    let have_suite = apt_sources_name(BACKPORTS);
    if !util::is_root() {
        let add = if have_suite {
            String::new()
        } else {
            format!("    printf '{}' | sudo tee {BACKPORTS_SOURCES}\n", BACKPORTS_ENTRY.replace('\n', "\\n"))
        };
        bail!(
            "{why}\nDebian 12's QEMU 7.2 cannot; {BACKPORTS}'s can. Run:\n{add}    sudo apt-get update\n    \
             sudo apt-get install -y -t {BACKPORTS} qemu-system-x86"
        );
    }
    println!("prereq: {why}");
    if !have_suite {
        println!("prereq: adding {BACKPORTS} to apt's sources ({BACKPORTS_SOURCES})");
        util::write_atomic(Path::new(BACKPORTS_SOURCES), BACKPORTS_ENTRY.as_bytes())?;
    }
    println!("prereq: installing QEMU from {BACKPORTS}");
    util::run(Command::new("apt-get").args(["update", "-q"]))?;
    util::run(
        Command::new("apt-get")
            .args(["install", "-y", "-q", "--no-install-recommends", "-t", BACKPORTS, "qemu-system-x86"])
            .env("DEBIAN_FRONTEND", "noninteractive"),
    )?;
    match qemu::tcg_cpu_missing()? {
        None => Ok(()),
        Some(why) => bail!("after installing QEMU from {BACKPORTS}: {why}"),
    }
}

/// `VERSION_CODENAME` from /etc/os-release.
fn os_codename() -> Option<String> {
    codename_in(&std::fs::read_to_string("/etc/os-release").ok()?)
}

fn codename_in(os_release: &str) -> Option<String> {
    os_release.lines().find_map(|l| l.strip_prefix("VERSION_CODENAME=")).map(|v| v.trim().trim_matches('"').to_string())
}

/// Whether any of apt's source lists names `suite`.
fn apt_sources_name(suite: &str) -> bool {
    let mut files = vec![std::path::PathBuf::from("/etc/apt/sources.list")];
    if let Ok(dir) = std::fs::read_dir("/etc/apt/sources.list.d") {
        files.extend(dir.flatten().map(|e| e.path()));
    }
    files.iter().filter_map(|f| std::fs::read_to_string(f).ok()).any(|text| names_suite(&text, suite))
}

/// A one-line (`deb URI SUITE ...`) or deb822 (`Suites: ...`) source
/// naming `suite`, comments aside.
fn names_suite(text: &str, suite: &str) -> bool {
    text.lines().map(|l| l.split('#').next().unwrap_or("")).any(|l| {
        let words: Vec<&str> = l.split_whitespace().collect();
        match words.first() {
            Some(&"deb") => words.iter().skip(1).any(|w| *w == suite),
            Some(&"Suites:") => words[1..].contains(&suite),
            _ => false,
        }
    })
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
    fn the_release_and_a_backports_source_are_recognised() {
        assert_eq!(codename_in("NAME=\"Debian GNU/Linux\"\nVERSION_CODENAME=bookworm\n").as_deref(), Some("bookworm"));
        assert_eq!(codename_in("ID=debian\n"), None);
        assert!(names_suite(BACKPORTS_ENTRY, BACKPORTS));
        assert!(names_suite("deb http://deb.debian.org/debian bookworm-backports main\n", BACKPORTS));
        assert!(!names_suite("Suites: bookworm bookworm-updates\n", BACKPORTS));
        assert!(!names_suite("# deb http://deb.debian.org/debian bookworm-backports main\n", BACKPORTS));
        assert!(!names_suite("deb http://deb.debian.org/debian bookworm main\n", BACKPORTS));
    }

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
