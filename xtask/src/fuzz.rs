//! `cargo xtask fuzz [TARGET...] [--time SECONDS] [--jobs N] [--list]`:
//! runs the libFuzzer targets of `fuzz/` (one per parser of host- or
//! network-controlled bytes) with cargo-fuzz on a nightly toolchain, each
//! for `--time` seconds, from a corpus seeded with the public samples of
//! `tests/data/` and the hand-written seeds of `fuzz/seeds/`. The test
//! command runs every target for [`SHORT_PASS_SECONDS`]. A crash fails the
//! command and names its input; turn it into a unit test (docs/testing.md).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::Instant;

use anyhow::{Context, Result, bail};

use crate::{cli, util};

const USAGE: &str = "usage: cargo xtask fuzz [TARGET...] [--time SECONDS] [--jobs N] [--list]
Runs each fuzz target of fuzz/ (all unless named) for SECONDS (default 20) with cargo-fuzz on a nightly toolchain
(both installed when missing), N at a time (default 1). The corpus lives in target/fuzz/corpus/TARGET, seeded from
tests/data and fuzz/seeds; crashes in target/fuzz/artifacts/TARGET. Fails when any target crashes.";

/// Seconds per target in the test command's pass.
pub const SHORT_PASS_SECONDS: u64 = 10;
const DEFAULT_SECONDS: u64 = 20;

/// Each target's seeds among the repository's sample files (directories
/// are taken whole, files as they are), besides `fuzz/seeds/TARGET/`.
const SEEDS: &[(&str, &[&str])] = &[
    ("config_toml", &["rootfs/configs", "docs/ztinit.example.toml"]),
    ("gpu_cert_chain", &["tests/data/gpu/nvtrust/hopperCertChain.txt", "tests/data/gpu/trustee"]),
    ("gpu_evidence", &["tests/data/gpu/nvat/common-test-data"]),
    (
        "gpu_spdm",
        &["tests/data/gpu/nvat/sample_attestation_data/gpu", "tests/data/gpu/trustee/hopperAttestationReport.txt"],
    ),
    ("gpu_xml", &["tests/data/gpu/nvtrust", "tests/data/gpu/nvat/testdata"]),
    (
        "image_manifest",
        &[
            "crates/ztinit-image/tests/fixtures/signature/image-manifest.json",
            "crates/ztinit-image/tests/fixtures/signature/sig-manifest.json",
            "crates/ztinit-image/tests/fixtures/ocicrypt/one-recipient-manifest.json",
            "crates/ztinit-image/tests/fixtures/ocicrypt/two-recipients-manifest.json",
        ],
    ),
    (
        "image_ocicrypt",
        &[
            "crates/ztinit-image/tests/fixtures/ocicrypt/layer.key",
            "crates/ztinit-image/tests/fixtures/ocicrypt/layer-sec1.key",
        ],
    ),
    ("image_signature", &["crates/ztinit-image/tests/fixtures/signature"]),
    ("kbs_jcs", &["tests/data/gpu/nvat/sample_attestation_data", "tests/data/tee/snp_evidence_genoa.json"]),
    ("seccomp_oci", &["tests/data/seccomp"]),
    ("tee_eventlog", &["tests/data/tee/CCEL_data_ovmf"]),
    ("tee_initdata", &["tests/data/tee/initdata.img", "tests/data/tee/initdata.toml"]),
    ("tee_snp", &["tests/data/tee/report_milan.hex"]),
    (
        "tee_tdx_quote",
        &["tests/data/tee/tdx_quote_4.dat", "tests/data/tee/tdx_quote_5.dat", "tests/data/tee/tdx_report_1.bin"],
    ),
];

/// Seed files larger than this are left out: libFuzzer's default input cap
/// is 4 KiB unless a seed is larger, and huge seeds slow every execution.
const MAX_SEED_BYTES: u64 = 256 << 10;

pub fn cmd(args: &[String]) -> Result<()> {
    let mut seconds = DEFAULT_SECONDS;
    let mut jobs = 1usize;
    let mut list = false;
    let mut names = Vec::new();
    let mut p = cli::Args::new(args, USAGE);
    while let Some(arg) = p.next()? {
        match arg {
            cli::Long("time") => seconds = p.parse("--time")?,
            cli::Long("jobs") => jobs = p.parse("--jobs")?,
            cli::Long("list") => list = true,
            cli::Short('h') | cli::Long("help") => return p.help(),
            cli::Value(name) => names.push(cli::string(name, USAGE)?),
            other => {
                let e = other.unexpected();
                return Err(p.error(e));
            }
        }
    }
    let all = targets()?;
    if list {
        for t in &all {
            println!("{t}");
        }
        return Ok(());
    }
    if seconds == 0 || jobs == 0 {
        bail!("--time and --jobs must be at least 1");
    }
    for n in &names {
        if !all.contains(n) {
            bail!("no fuzz target {n:?} (cargo xtask fuzz --list: {})", all.join(", "));
        }
    }
    let selected = if names.is_empty() { all } else { names };
    run(&selected, seconds, jobs)
}

/// The test command's pass: every target for [`SHORT_PASS_SECONDS`], two at a time.
pub fn short_pass() -> Result<()> {
    run(&targets()?, SHORT_PASS_SECONDS, 2)
}

fn fuzz_dir() -> PathBuf {
    util::workspace_root().join("fuzz")
}

/// Removes the targets' instrumented builds (the next run builds them
/// again); the corpus, crash inputs and logs stay.
pub fn remove_builds() -> Result<()> {
    util::remove_tree(&util::target_dir().join("fuzz").join("build"))
}

/// Target names: the files of `fuzz/fuzz_targets/`.
pub fn targets() -> Result<Vec<String>> {
    let dir = fuzz_dir().join("fuzz_targets");
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .with_context(|| format!("cannot list {}", dir.display()))?
        .filter_map(|e| e.ok()?.file_name().to_str()?.strip_suffix(".rs").map(str::to_string))
        .collect();
    names.sort();
    Ok(names)
}

fn run(targets: &[String], seconds: u64, jobs: usize) -> Result<()> {
    ensure_tools()?;
    let work = util::target_dir().join("fuzz");
    let build_dir = work.join("build");
    let started = Instant::now();
    println!("fuzz: building {} target(s) with cargo-fuzz (nightly, AddressSanitizer)", targets.len());
    util::run(
        Command::new("cargo")
            .current_dir(util::workspace_root())
            .args(["+nightly", "fuzz", "build", "--fuzz-dir"])
            .arg(fuzz_dir())
            .arg("--target-dir")
            .arg(&build_dir)
            .env_remove("RUSTUP_TOOLCHAIN")
            .env_remove("CARGO_ENCODED_RUSTFLAGS"),
    )
    .context("cargo fuzz build failed")?;
    println!("fuzz: built in {:.0} s; {seconds} s per target, {jobs} at a time", started.elapsed().as_secs_f64());
    let bin_dir = build_dir.join(host_triple()).join("release");
    let queue = Mutex::new(targets.iter());
    let results = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..jobs.min(targets.len()) {
            s.spawn(|| {
                while let Some(t) = queue.lock().map(|mut q| q.next().cloned()).unwrap_or(None) {
                    let r = run_one(&t, &bin_dir, &work, seconds);
                    match &r {
                        Ok(execs) => println!("fuzz: PASS {t} ({execs} executions in {seconds} s)"),
                        Err(e) => println!("fuzz: FAIL {t}: {e:#}"),
                    }
                    if let Ok(mut all) = results.lock() {
                        all.push((t, r.is_ok()));
                    }
                }
            });
        }
    });
    let results = results.into_inner().unwrap_or_default();
    let failed: Vec<&String> = results.iter().filter(|(_, ok)| !ok).map(|(t, _)| t).collect();
    println!(
        "fuzz: {} passed, {} failed in {:.0} s",
        results.len() - failed.len(),
        failed.len(),
        started.elapsed().as_secs_f64()
    );
    if !failed.is_empty() {
        bail!(
            "fuzz targets crashed: {} (inputs under {}; add each as a unit test)",
            failed.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", "),
            work.join("artifacts").display()
        );
    }
    Ok(())
}

/// Runs one target; its number of executions, or why it failed.
fn run_one(target: &str, bin_dir: &Path, work: &Path, seconds: u64) -> Result<u64> {
    let corpus = work.join("corpus").join(target);
    let artifacts = work.join("artifacts").join(target);
    let logs = work.join("logs");
    for d in [&corpus, &artifacts, &logs] {
        std::fs::create_dir_all(d).with_context(|| format!("cannot create {}", d.display()))?;
    }
    seed(target, &corpus)?;
    let log = logs.join(format!("{target}.log"));
    let log_file = std::fs::File::create(&log).with_context(|| format!("cannot create {}", log.display()))?;
    let status = Command::new(bin_dir.join(target))
        .arg(&corpus)
        .arg(format!("-max_total_time={seconds}"))
        .arg("-rss_limit_mb=2048")
        .arg("-timeout=10")
        .arg("-max_len=65536")
        .arg("-print_final_stats=1")
        .arg(format!("-artifact_prefix={}/", artifacts.display()))
        .stdout(Stdio::null())
        .stderr(log_file)
        .status()
        .with_context(|| format!("cannot run fuzz target {target}"))?;
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    if !status.success() {
        let crash = std::fs::read_dir(&artifacts)
            .ok()
            .and_then(|mut d| d.find_map(|e| Some(e.ok()?.path())))
            .map_or_else(|| "no artifact written".to_string(), |p| p.display().to_string());
        // The first error line and the one after it (a panic's message
        // follows its location).
        let lines: Vec<&str> = text.lines().collect();
        let why = lines
            .iter()
            .position(|l| {
                l.contains("panicked at") || l.contains("ERROR: libFuzzer") || l.contains("ERROR: AddressSanitizer")
            })
            .map_or_else(|| "(see the log)".to_string(), |i| lines[i..lines.len().min(i + 2)].join(" "));
        bail!("{why}; input {crash}; log {}", log.display());
    }
    Ok(text
        .lines()
        .find_map(|l| l.strip_prefix("stat::number_of_executed_units:"))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0))
}

/// Copies the target's seeds into its corpus (once; libFuzzer adds to it).
fn seed(target: &str, corpus: &Path) -> Result<()> {
    let root = util::workspace_root();
    let mut sources: Vec<PathBuf> =
        SEEDS.iter().filter(|(t, _)| *t == target).flat_map(|(_, paths)| paths.iter().map(|p| root.join(p))).collect();
    sources.push(fuzz_dir().join("seeds").join(target));
    for src in sources {
        let files: Vec<PathBuf> = if src.is_dir() {
            let mut v: Vec<PathBuf> = std::fs::read_dir(&src)
                .with_context(|| format!("cannot list {}", src.display()))?
                .filter_map(|e| Some(e.ok()?.path()))
                .filter(|p| p.is_file())
                .collect();
            v.sort();
            v
        } else if src.is_file() {
            vec![src]
        } else {
            Vec::new()
        };
        for f in files {
            if std::fs::metadata(&f).map(|m| m.len()).unwrap_or(u64::MAX) > MAX_SEED_BYTES {
                continue;
            }
            let name = format!("seed-{}", f.file_name().and_then(|n| n.to_str()).unwrap_or("file"));
            let dest = corpus.join(name);
            if !dest.exists() {
                std::fs::copy(&f, &dest)
                    .with_context(|| format!("cannot copy {} to {}", f.display(), dest.display()))?;
            }
        }
    }
    Ok(())
}

fn host_triple() -> &'static str {
    "x86_64-unknown-linux-gnu"
}

/// True when `cmd` runs and exits 0 (its output discarded).
fn succeeds(cmd: &mut Command) -> bool {
    cmd.stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok_and(|s| s.success())
}

/// A nightly toolchain and cargo-fuzz, installed when missing.
fn ensure_tools() -> Result<()> {
    if !succeeds(Command::new("rustup").args(["run", "nightly", "rustc", "--version"])) {
        println!("fuzz: installing the nightly toolchain (rustup toolchain install nightly --profile minimal)");
        util::run(Command::new("rustup").args(["toolchain", "install", "nightly", "--profile", "minimal"]))
            .context("cannot install the nightly toolchain")?;
    }
    if !succeeds(Command::new("cargo").args(["+nightly", "fuzz", "--version"]).env_remove("RUSTUP_TOOLCHAIN")) {
        println!("fuzz: installing cargo-fuzz (cargo install cargo-fuzz --locked)");
        util::run(Command::new("cargo").args(["install", "cargo-fuzz", "--locked"]).env_remove("RUSTUP_TOOLCHAIN"))
            .context("cannot install cargo-fuzz")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_target_has_a_file_and_every_seed_entry_a_target_and_files() {
        let all = targets().unwrap();
        assert!(all.len() >= 26, "{all:?}");
        let root = util::workspace_root();
        for (t, paths) in SEEDS {
            assert!(all.iter().any(|a| a == t), "seeds for unknown target {t}");
            for p in *paths {
                assert!(root.join(p).exists(), "{t}: seed path {p} is missing");
            }
        }
    }
}
