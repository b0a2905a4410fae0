//! `cargo xtask`: build, image and test tooling for ztinit.
//!
//! Each subcommand lives in its own module and takes the remaining
//! arguments; add a new one with one line in the match below.

mod bench;
mod cli;
mod cosign_key;
mod cpio;
mod demo;
mod dev_cert;
mod dev_secret;
mod disk_image;
mod e2e;
mod echo_server;
mod elf;
mod fixture;
mod fuzz;
mod image;
mod image_push;
mod interrupt;
mod kconfig;
mod kernel;
mod manifest;
mod model_volume;
mod oci_image;
mod peers;
mod prereq;
mod procs;
mod qemu;
mod registry;
mod relay;
mod repro;
mod test;
mod translation;
mod util;
mod verify_gpu;

use anyhow::Result;

const USAGE: &str = "usage: cargo xtask <command> [args]   (each command has --help)
commands:
  test [--no-unit] [SCENARIO...]      the full test suite: prerequisites, cargo test, QEMU scenarios
  repro                               build the release musl ztinit twice, in two directories; compare the bytes
  fuzz [TARGET...] [--time S] [--jobs N] [--list]   run the parser fuzz targets (cargo-fuzz, nightly)
  demo                                boot the demo image and summarise the boot
  bench [--runs N]                    boot timings and sizes; writes target/bench.json
  kernel [--profile production|test]  build or find the cached guest kernel; prints the bzImage path
  image --manifest M [--out P] [--list]   build a reproducible initramfs from rootfs/M.toml
  image --format disk --manifest M --out IMG   a dm-verity root disk + Kata drop-in (docs/kata-image.md)
  qemu --image P [--kernel K] [--append A] [--disk D[:ro]] [--forward PORT]   boot interactively
  e2e [--list] [SCENARIO...]          only the QEMU scenarios of tests/e2e/
  interrupt-test [--signal S]...      interrupt a running demo; check that nothing it started survives
  model-volume --input DIR|FILE --key FILE --out IMG   an encrypted, verity-protected model disk
  fixture random|sha256|secret-forms|flip-byte ...      file tools for e2e prepare steps
  cosign-key --out DIR [--passphrase-file F] | --ec-pair NAME   test keys: encrypted cosign signing key, or EC P-256 JWE pair
  cosign-sign --key K --passphrase-file F --digest sha256:HEX --identity REF --out DIR   a sigstore signature attachment as an OCI layout
  oci-image --out DIR [--file G=H]... [--bin G=PKG:BIN]...   an OCI image layout for the image scenarios
  image-push --layout DIR --registry H:P --repo R --tag T [--sign-key D] [--encrypt-key P]   push with skopeo
  registry --listen 127.0.0.1:PORT --root DIR [--htpasswd U:P]   the test registry (docker-registry)
  registry-tamper --root DIR (--digest D | --layer-of M N)   corrupt a stored blob, same size
  verify-gpu (--report F --chain F [--nonce HEX] [--rim F] | --evidence F)
                                      verify NVIDIA GPU evidence offline (exit 0 valid, 1 invalid, 2 unusable)";

/// Exit status: 0 success, 1 failure, 2 bad arguments (`verify-gpu`: 1
/// invalid evidence, 2 unusable input), 128+N interrupted by signal N.
fn main() {
    procs::install_signal_handlers();
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let Err(e) = dispatch(&args) {
        eprintln!("xtask: error: {e:#}");
        std::process::exit(if e.downcast_ref::<cli::UsageError>().is_some() { 2 } else { 1 });
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
        "repro" => repro::cmd(rest),
        "fuzz" => fuzz::cmd(rest),
        "demo" => demo::cmd(rest),
        "bench" => bench::cmd(rest),
        "model-volume" => model_volume::cmd(rest),
        "fixture" => fixture::cmd(rest),
        "cosign-key" => cosign_key::key_cmd(rest),
        "cosign-sign" => cosign_key::sign_cmd(rest),
        "verify-gpu" => std::process::exit(verify_gpu::main(rest)),
        // Hidden: QEMU's guestfwd runs it once per guest connection.
        "relay" => relay::cmd(rest),
        // Hidden: the host service of the `network` scenario.
        "echo-server" => echo_server::cmd(rest),
        // Hidden: a random secret for the dev-KBS scenarios and the demo.
        "dev-secret" => dev_secret::cmd(rest),
        // Hidden: per-run TLS certificates for the dev KBS and the MITM proxy.
        "dev-cert" => dev_cert::cmd(rest),
        "interrupt-test" => interrupt::cmd(rest),
        "oci-image" => oci_image::cmd(rest),
        "image-push" => image_push::cmd(rest),
        "registry" => registry::cmd(rest),
        "registry-tamper" => registry::tamper_cmd(rest),
        "-h" | "--help" | "help" => {
            println!("{USAGE}");
            Ok(())
        }
        other => Err(cli::usage_error(format!("unknown command {other:?}"), USAGE)),
    }
}
