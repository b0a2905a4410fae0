//! `cargo xtask`: build, image and test tooling for ztinit.
//!
//! Each subcommand lives in its own module and takes the remaining
//! arguments; add a new one with one line in the match below.

mod bench;
mod cpio;
mod demo;
mod dev_secret;
mod e2e;
mod echo_server;
mod elf;
mod fixture;
mod image;
mod kconfig;
mod kernel;
mod manifest;
mod model_volume;
mod prereq;
mod qemu;
mod relay;
mod test;
mod util;
mod verify_gpu;

use anyhow::Result;

const USAGE: &str = "usage: cargo xtask <command> [args]   (each command has --help)
commands:
  test [--no-unit] [SCENARIO...]      the full test suite: prerequisites, cargo test, QEMU scenarios
  demo                                boot the demo image and summarise the boot
  bench [--runs N]                    boot timings and sizes; writes target/bench.json
  kernel [--profile production|test]  build or find the cached guest kernel; prints the bzImage path
  image --manifest M [--out P] [--list]   build a reproducible initramfs from rootfs/M.toml
  qemu --image P [--kernel K] [--append A] [--disk D[:ro]] [--forward PORT]   boot interactively
  e2e [--list] [SCENARIO...]          only the QEMU scenarios of tests/e2e/
  model-volume --input DIR|FILE --key FILE --out IMG   an encrypted, verity-protected model disk
  fixture random|sha256|secret-forms|flip-byte ...      file tools for e2e prepare steps
  verify-gpu (--report F --chain F [--nonce HEX] [--rim F] | --evidence F)
                                      verify NVIDIA GPU evidence offline (exit 0 valid, 1 invalid, 2 unusable)";

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
        "test" => test::cmd(rest),
        "demo" => demo::cmd(rest),
        "bench" => bench::cmd(rest),
        "model-volume" => model_volume::cmd(rest),
        "fixture" => fixture::cmd(rest),
        "verify-gpu" => std::process::exit(verify_gpu::main(rest)),
        // Hidden: QEMU's guestfwd runs it once per guest connection.
        "relay" => relay::cmd(rest),
        // Hidden: the host service of the `network` scenario.
        "echo-server" => echo_server::cmd(rest),
        // Hidden: a random secret for the dev-KBS scenarios and the demo.
        "dev-secret" => dev_secret::cmd(rest),
        "-h" | "--help" | "help" => {
            println!("{USAGE}");
            Ok(())
        }
        other => anyhow::bail!("unknown command {other:?}\n{USAGE}"),
    }
}
