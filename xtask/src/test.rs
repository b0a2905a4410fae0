//! `cargo xtask test`: the README test command. Prerequisites, the
//! workspace's unit and integration tests, the test kernel (cached), then
//! every QEMU end-to-end scenario. Any failure fails the command.

use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result, bail};

use crate::{e2e, kernel, prereq, util};

pub fn cmd(args: &[String]) -> Result<()> {
    let mut unit = true;
    let mut names = Vec::new();
    for a in args {
        match a.as_str() {
            "--no-unit" => unit = false,
            "-h" | "--help" => {
                println!(
                    "usage: cargo xtask test [--no-unit] [SCENARIO...]\n\
                     Checks prerequisites, runs `cargo fmt --check`, clippy and `cargo test --workspace`, builds the test kernel\n\
                     (cached) and runs the QEMU scenarios of tests/e2e/ (all unless named)."
                );
                return Ok(());
            }
            s if s.starts_with('-') => bail!("test: unknown option {s}"),
            s => names.push(s.to_string()),
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
        step("unit and integration tests (cargo test --workspace)");
        util::run(Command::new(cargo).current_dir(util::workspace_root()).args(["test", "--workspace"]))
            .context("workspace tests failed")?;
    }
    step("test kernel");
    let k = kernel::ensure(kernel::DEFAULT_PROFILE)?;
    println!("{}", k.bzimage().display());
    step("QEMU end-to-end scenarios");
    e2e::run_selected(&names)?;
    println!("test: all passed in {}", kernel::fmt_duration(started.elapsed()));
    Ok(())
}

fn step(what: &str) {
    println!("\n== {what}");
}
