//! `cargo xtask`: build, image and test tooling for ztinit.
//!
//! Each subcommand lives in its own module and takes the remaining
//! arguments; add a new one with one line in the match below.

mod cpio;
mod e2e;
mod elf;
mod image;
mod kconfig;
mod kernel;
mod manifest;
mod qemu;
mod relay;
mod util;

use anyhow::Result;

const USAGE: &str = "usage: cargo xtask <command> [args]
commands:
  kernel [--profile production|test] [--fragment PATH]   build or find the cached guest kernel";

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let Err(e) = dispatch(&args) {
        eprintln!("xtask: error: {e:#}");
        std::process::exit(1);
    }
}

fn dispatch(args: &[String]) -> Result<()> {
    let Some((command, rest)) = args.split_first() else {
        println!("{USAGE}");
        return Ok(());
    };
    match command.as_str() {
        "kernel" => kernel::cmd(rest),
        "image" => image::cmd(rest),
        "qemu" => qemu::cmd(rest),
        "e2e" => e2e::cmd(rest),
        "relay" => relay::cmd(rest),
        "-h" | "--help" | "help" => {
            println!("{USAGE}");
            Ok(())
        }
        other => anyhow::bail!("unknown command {other:?}\n{USAGE}"),
    }
}
