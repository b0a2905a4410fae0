//! `cargo xtask test`: the README test command. Prerequisites, the
//! workspace's unit and integration tests, the test kernel (cached), then
//! every QEMU end-to-end scenario. Any failure fails the command.

use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result};

use crate::{cli, e2e, fuzz, interrupt, kernel, prereq, repro, util};

const USAGE: &str = "usage: cargo xtask test [--no-unit] [--no-fuzz] [SCENARIO...]
Checks prerequisites, runs `cargo fmt --check`, clippy and `cargo test --workspace` (as root with
--include-ignored: the tests that need root; otherwise they are listed as skipped), checks that the release
musl ztinit builds byte-identically in two directories (`cargo xtask repro`), runs every fuzz target for a few
seconds (`cargo xtask fuzz --time 10`; --no-fuzz skips it), builds the test kernel (cached),
runs the QEMU scenarios of tests/e2e/ (all unless named) and, with none named, the interrupt test.";

pub fn cmd(args: &[String]) -> Result<()> {
    let mut unit = true;
    let mut fuzz = true;
    let mut names = Vec::new();
    let mut p = cli::Args::new(args, USAGE);
    while let Some(arg) = p.next()? {
        match arg {
            cli::Long("no-unit") => unit = false,
            cli::Long("no-fuzz") => fuzz = false,
            cli::Short('h') | cli::Long("help") => return p.help(),
            cli::Value(name) => names.push(cli::string(name, USAGE)?),
            other => {
                let e = other.unexpected();
                return Err(p.error(e));
            }
        }
    }
    let started = Instant::now();
    step("prerequisites");
    prereq::ensure()?;
    if unit {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        step("lint (cargo fmt --check, cargo clippy -D warnings)");
        util::run(Command::new(&cargo).current_dir(util::workspace_root()).args(["fmt", "--all", "--", "--check"]))
            .context("cargo fmt --check failed: run `cargo fmt`")?;
        util::run(Command::new(&cargo).current_dir(util::workspace_root()).args([
            "clippy",
            "--workspace",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ]))
        .context("clippy found warnings")?;
        if util::is_root() {
            step("unit and integration tests, with those that need root (cargo test --workspace -- --include-ignored)");
            util::run(Command::new(&cargo).current_dir(util::workspace_root()).args([
                "test",
                "--workspace",
                "--",
                "--include-ignored",
            ]))
            .context("workspace tests failed")?;
        } else {
            step("unit and integration tests (cargo test --workspace)");
            util::run(Command::new(&cargo).current_dir(util::workspace_root()).args(["test", "--workspace"]))
                .context("workspace tests failed")?;
            let skipped = root_only_tests(&cargo)?;
            println!(
                "\ntest: SKIPPED {} tests that need root (run `cargo xtask test` as root to include them):",
                skipped.len()
            );
            for name in &skipped {
                println!("  skipped: {name}");
            }
        }
        step("reproducible build (cargo xtask repro)");
        repro::check()?;
        if fuzz {
            step(&format!(
                "fuzz targets, {} s each (cargo xtask fuzz --time {})",
                fuzz::SHORT_PASS_SECONDS,
                fuzz::SHORT_PASS_SECONDS
            ));
            fuzz::short_pass()?;
            // The instrumented builds (~1 GiB) are not used again in this
            // run; CI's disk is not large. The corpus stays.
            fuzz::remove_builds()?;
        }
    }
    step("test kernel");
    let k = kernel::ensure(kernel::DEFAULT_PROFILE)?;
    println!("{}", k.bzimage().display());
    step("QEMU end-to-end scenarios");
    e2e::run_selected(&names)?;
    if names.is_empty() {
        step("interrupt test (nothing outlives an interrupted `cargo xtask demo`)");
        interrupt::run(&[libc::SIGTERM, libc::SIGINT, libc::SIGKILL])?;
    }
    println!("test: all passed in {}", kernel::fmt_duration(started.elapsed()));
    Ok(())
}

/// The tests marked `#[ignore = "needs root: ..."]` (the only ignored
/// ones in the workspace), as libtest lists them.
fn root_only_tests(cargo: &str) -> Result<Vec<String>> {
    let out = Command::new(cargo)
        .current_dir(util::workspace_root())
        .args(["test", "--workspace", "--quiet", "--", "--list", "--ignored"])
        .stderr(std::process::Stdio::inherit())
        .output()
        .context("cannot run cargo test -- --list --ignored")?;
    if !out.status.success() {
        anyhow::bail!("cargo test --workspace -- --list --ignored failed");
    }
    Ok(parse_list(&String::from_utf8_lossy(&out.stdout)))
}

/// `NAME: test` lines of libtest's `--list` output.
fn parse_list(text: &str) -> Vec<String> {
    text.lines().filter_map(|l| l.strip_suffix(": test")).map(str::to_string).collect()
}

/// The step's heading, with the space left where the build goes: a full
/// disk shows up as a cause, not as a later step's odd failure.
fn step(what: &str) {
    let target = util::target_dir();
    let probe = if target.exists() { target } else { util::workspace_root() };
    match util::free_space(&probe) {
        Some(free) => println!("\n== {what} ({} free)", util::human_size(free)),
        None => println!("\n== {what}"),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn list_output_gives_the_test_names() {
        let text = "sandbox::launch::tests::workload_runs_confined: test\n\
                    probe_passes_under_the_default_sandbox: test\n\n2 tests, 0 benchmarks\n";
        assert_eq!(
            super::parse_list(text),
            ["sandbox::launch::tests::workload_runs_confined", "probe_passes_under_the_default_sandbox"]
        );
    }
}
