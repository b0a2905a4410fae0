//! `cargo xtask kernel`: the guest kernel from Debian's linux-source-6.12,
//! configured from `kernel-config/` fragments, cached by input hash.
//!
//! Layout under the cache directory (`~/.cache/ztinit`, `ZTINIT_CACHE_DIR`):
//! - `src/VERSION/linux-source-6.12/`: the extracted source, shared, and
//!   removed again once a kernel is built (disk space);
//! - `build/VERSION/`: the `O=` build tree, shared by the profiles and kept
//!   for incremental rebuilds (a changed fragment or another profile);
//! - `kernel/HASH/`: the result: `bzImage`, `config`, `modules/lib/modules/
//!   RELEASE/` (with `modules.dep`) and `kernel.json`.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::cli;
use crate::kconfig;
use crate::util;

const SOURCE_PACKAGE: &str = "linux-source-6.12";
const SOURCE_TARBALL: &str = "/usr/src/linux-source-6.12.tar.xz";
const SOURCE_DIR: &str = "linux-source-6.12";
/// Host packages the kernel build needs.
pub const BUILD_DEBS: &[&str] = &[
    "linux-source-6.12",
    "flex",
    "bison",
    "libelf-dev",
    "libssl-dev",
    "bc",
    "gcc",
    "make",
    "libc6-dev",
    "xz-utils",
    "zstd",
    "kmod",
];
/// Bump when the build procedure changes in a way that changes the output.
const RECIPE: &str = "ztinit-kernel-recipe-1";
/// Fixed build identity so the same inputs give the same kernel.
const BUILD_TIMESTAMP: &str = "Thu Jan  1 00:00:00 UTC 1970";
const PROGRESS_EVERY: Duration = Duration::from_secs(15);

pub const DEFAULT_PROFILE: &str = "test";

/// A built kernel in the cache.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Kernel {
    pub profile: String,
    pub hash: String,
    pub source_version: String,
    pub release: String,
    pub fragments: Vec<String>,
    #[serde(skip)]
    pub dir: PathBuf,
}

impl Kernel {
    pub fn bzimage(&self) -> PathBuf {
        self.dir.join("bzImage")
    }
    /// The kernel's symbol table, when the build tree it came from is still
    /// on this machine and still configured as it was (the tree is shared
    /// by the profiles of one source version).
    pub fn system_map(&self) -> Option<PathBuf> {
        let tree = util::cache_dir().ok()?.join("build").join(&self.source_version);
        let same = std::fs::read(tree.join(".config")).ok()? == std::fs::read(self.dir.join("config")).ok()?;
        same.then(|| tree.join("System.map")).filter(|m| m.is_file())
    }
    /// `lib/modules/RELEASE` of this kernel (holds `modules.dep`).
    pub fn modules_dir(&self) -> PathBuf {
        self.dir.join("modules/lib/modules").join(&self.release)
    }
}

#[derive(Debug, Deserialize)]
struct ProfileDef {
    fragments: Vec<String>,
}

/// What makes up one kernel: every input that goes into the cache key.
struct Inputs {
    profile: String,
    source_version: String,
    /// (name, text), in merge order.
    fragments: Vec<(String, String)>,
    /// Fragments beyond the profile's (`--fragment`).
    extra: bool,
    hash: String,
}

pub fn cmd(args: &[String]) -> Result<()> {
    let mut profile = DEFAULT_PROFILE.to_string();
    let mut extra = Vec::new();
    let mut config_only = false;
    const USAGE: &str = "usage: cargo xtask kernel [--profile production|test] [--fragment PATH]... [--config-only]
Builds (or finds in the cache) the guest kernel; prints the bzImage path.
--config-only stops after checking that every requested option is in the .config.
Default profile: test. Cache: $ZTINIT_CACHE_DIR or ~/.cache/ztinit.";
    let mut p = cli::Args::new(args, USAGE);
    while let Some(arg) = p.next()? {
        match arg {
            cli::Long("profile") => profile = p.string()?,
            cli::Long("fragment") => extra.push(PathBuf::from(p.value()?)),
            cli::Long("config-only") => config_only = true,
            cli::Short('h') | cli::Long("help") => return p.help(),
            other => {
                let e = other.unexpected();
                return Err(p.error(e));
            }
        }
    }
    if config_only {
        ensure_host_packages()?;
        let inputs = Inputs::gather(&profile, &extra)?;
        let (_, out) = configure(&inputs)?;
        println!("{}", out.join(".config").display());
        return Ok(());
    }
    let kernel = ensure_with(&profile, &extra)?;
    println!(
        "kernel: {} kernel {} ({}), cached in {}",
        kernel.profile,
        kernel.release,
        kernel.hash,
        kernel.dir.display()
    );
    println!("{}", kernel.bzimage().display());
    Ok(())
}

/// The kernel of a profile, built if it is not in the cache.
pub fn ensure(profile: &str) -> Result<Kernel> {
    ensure_with(profile, &[])
}

fn ensure_with(profile: &str, extra: &[PathBuf]) -> Result<Kernel> {
    ensure_host_packages()?;
    let inputs = Inputs::gather(profile, extra)?;
    if let Some(k) = load_cached(&inputs)? {
        return Ok(k);
    }
    build(&inputs)
}

fn ensure_host_packages() -> Result<()> {
    // Every scenario and image asks for its kernel; one package check per
    // run is enough (each one is a dozen dpkg-query calls).
    static CHECKED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    if CHECKED.load(std::sync::atomic::Ordering::Relaxed) {
        return Ok(());
    }
    util::ensure_debs(BUILD_DEBS, "building the guest kernel")?;
    if !Path::new(SOURCE_TARBALL).is_file() {
        bail!(
            "{SOURCE_PACKAGE} is installed but {SOURCE_TARBALL} is missing; reinstall it: apt-get install --reinstall {SOURCE_PACKAGE}"
        );
    }
    CHECKED.store(true, std::sync::atomic::Ordering::Relaxed);
    Ok(())
}

impl Inputs {
    fn gather(profile: &str, extra: &[PathBuf]) -> Result<Inputs> {
        let dir = util::workspace_root().join("kernel-config");
        let profiles_path = dir.join("profiles.toml");
        let text = std::fs::read_to_string(&profiles_path)
            .with_context(|| format!("cannot read {}", profiles_path.display()))?;
        let profiles: BTreeMap<String, ProfileDef> =
            toml::from_str(&text).with_context(|| format!("{}: invalid", profiles_path.display()))?;
        let Some(def) = profiles.get(profile) else {
            let known: Vec<&str> = profiles.keys().map(String::as_str).collect();
            bail!("unknown kernel profile {profile:?} (known: {})", known.join(", "));
        };
        let mut fragments = Vec::new();
        for name in &def.fragments {
            let path = dir.join(format!("{name}.conf"));
            let text =
                std::fs::read_to_string(&path).with_context(|| format!("cannot read fragment {}", path.display()))?;
            fragments.push((format!("{name}.conf"), text));
        }
        for path in extra {
            let text =
                std::fs::read_to_string(path).with_context(|| format!("cannot read fragment {}", path.display()))?;
            fragments.push((path.display().to_string(), text));
        }
        let source_version =
            util::deb_version(SOURCE_PACKAGE).with_context(|| format!("{SOURCE_PACKAGE} is not installed"))?;
        let mut h = Sha256::new();
        for part in [RECIPE, profile, &source_version] {
            h.update(part.as_bytes());
            h.update([0]);
        }
        for (name, text) in &fragments {
            h.update(name.as_bytes());
            h.update([0]);
            h.update(text.as_bytes());
            h.update([0]);
        }
        let hash = hex::encode(&h.finalize()[..8]);
        Ok(Inputs { profile: profile.to_string(), source_version, fragments, extra: !extra.is_empty(), hash })
    }
}

fn kernel_dir(hash: &str) -> Result<PathBuf> {
    Ok(util::cache_dir()?.join("kernel").join(hash))
}

fn load_cached(inputs: &Inputs) -> Result<Option<Kernel>> {
    let dir = kernel_dir(&inputs.hash)?;
    let meta = dir.join("kernel.json");
    let Ok(text) = std::fs::read_to_string(&meta) else {
        return Ok(None);
    };
    let mut k: Kernel =
        serde_json::from_str(&text).with_context(|| format!("{}: corrupt; delete it", meta.display()))?;
    k.dir = dir;
    if !k.bzimage().is_file() || !k.modules_dir().join("modules.dep").is_file() {
        return Ok(None);
    }
    Ok(Some(k))
}

/// Configures the profile's build tree and checks the result; returns the
/// source and build directories.
fn configure(inputs: &Inputs) -> Result<(PathBuf, PathBuf)> {
    let cache = util::cache_dir()?;
    let src = extract_source(&cache, &inputs.source_version)?;
    // One build tree per source version, shared by the profiles (they differ
    // in a few options, so switching is an incremental build); extra
    // fragments get their own tree so trying one never disturbs it.
    let tree = match inputs.extra {
        false => inputs.source_version.clone(),
        true => format!("{}-extra-{}", inputs.source_version, inputs.hash),
    };
    let out = cache.join("build").join(tree);
    std::fs::create_dir_all(&out).with_context(|| format!("cannot create {}", out.display()))?;
    lock_tree(&out)?;

    // Configure: allnoconfig with the merged fragments as KCONFIG_ALLCONFIG,
    // so everything not asked for stays off.
    let mut merged = kconfig::Merged::default();
    for (name, text) in &inputs.fragments {
        merged.add(kconfig::parse_fragment(name, text)?);
    }
    for (old, new) in &merged.overrides {
        println!(
            "kernel: note: {} sets CONFIG_{}{} over {}'s CONFIG_{}{}",
            new.fragment, new.symbol, new.want, old.fragment, old.symbol, old.want
        );
    }
    let allconfig = out.join("ztinit.fragment");
    util::write_atomic(&allconfig, merged.render().as_bytes())?;
    println!(
        "kernel: configuring {} profile from {} fragments ({} options)",
        inputs.profile,
        inputs.fragments.len(),
        merged.requests.len()
    );
    let jobs = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let mut make = make_cmd(&src, &out, jobs);
    make.arg(format!("KCONFIG_ALLCONFIG={}", allconfig.display())).arg("allnoconfig");
    quiet(&mut make).context("kernel configuration failed")?;

    let final_text = std::fs::read_to_string(out.join(".config")).context("no .config after allnoconfig")?;
    let known = kconfig::known_symbols(&src)?;
    let misses = kconfig::verify(&merged, &kconfig::parse_dotconfig(&final_text), &known);
    if !misses.is_empty() {
        let mut msg = format!("{} requested kernel option(s) did not reach the final .config:", misses.len());
        for m in &misses {
            msg.push_str(&format!("\n    {m}"));
        }
        msg.push_str(&format!("\n(final config: {})", out.join(".config").display()));
        bail!(msg);
    }
    println!("kernel: all {} requested options are in the final .config", merged.requests.len());
    Ok((src, out))
}

fn build(inputs: &Inputs) -> Result<Kernel> {
    let started = Instant::now();
    let cache = util::cache_dir()?;
    let (src, out) = configure(inputs)?;
    let jobs = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);

    // Build with progress.
    let units_file = out.join("ztinit-units");
    let expected: Option<usize> = std::fs::read_to_string(&units_file).ok().and_then(|s| s.trim().parse().ok());
    println!("kernel: building bzImage and modules with -j{jobs} (log: {})", out.join("build.log").display());
    let mut make = make_cmd(&src, &out, jobs);
    make.args(["bzImage", "modules"]);
    let units = make_with_progress(&mut make, &out.join("build.log"), expected)?;
    if units > 0 {
        std::fs::write(&units_file, units.to_string()).ok();
    }

    // Install modules (compressed by modules_install, modules.dep by depmod).
    let staging = cache.join("kernel").join(format!(".{}.tmp", inputs.hash));
    if staging.exists() {
        std::fs::remove_dir_all(&staging).with_context(|| format!("cannot remove {}", staging.display()))?;
    }
    std::fs::create_dir_all(&staging)?;
    let mut make = make_cmd(&src, &out, jobs);
    make.arg(format!("INSTALL_MOD_PATH={}", staging.join("modules").display()))
        .arg("INSTALL_MOD_STRIP=1")
        .arg("DEPMOD=/sbin/depmod")
        .arg("modules_install");
    quiet(&mut make).context("modules_install failed")?;

    let release = std::fs::read_to_string(out.join("include/config/kernel.release"))
        .context("no include/config/kernel.release after the build")?
        .trim()
        .to_string();
    let moddir = staging.join("modules/lib/modules").join(&release);
    // The build tree links are host paths; they are not part of the result.
    for link in ["build", "source"] {
        let _ = std::fs::remove_file(moddir.join(link));
    }
    if !moddir.join("modules.dep").is_file() {
        bail!("modules_install produced no {}", moddir.join("modules.dep").display());
    }
    std::fs::copy(out.join("arch/x86/boot/bzImage"), staging.join("bzImage")).context("no bzImage after the build")?;
    std::fs::copy(out.join(".config"), staging.join("config"))?;
    let mut kernel = Kernel {
        profile: inputs.profile.clone(),
        hash: inputs.hash.clone(),
        source_version: inputs.source_version.clone(),
        release,
        fragments: inputs.fragments.iter().map(|(n, _)| n.clone()).collect(),
        dir: PathBuf::new(),
    };
    std::fs::write(staging.join("kernel.json"), serde_json::to_string_pretty(&kernel)?)?;
    let dir = kernel_dir(&inputs.hash)?;
    if dir.exists() {
        std::fs::remove_dir_all(&dir).with_context(|| format!("cannot replace {}", dir.display()))?;
    }
    std::fs::rename(&staging, &dir).with_context(|| format!("cannot move the kernel into {}", dir.display()))?;
    kernel.dir = dir;
    remove_source(&cache, &inputs.source_version)?;
    let size = std::fs::metadata(kernel.bzimage()).map(|m| m.len()).unwrap_or(0);
    println!(
        "kernel: built {} kernel {} in {} ({} units, bzImage {})",
        kernel.profile,
        kernel.release,
        fmt_duration(started.elapsed()),
        units,
        util::human_size(size)
    );
    Ok(kernel)
}

/// Takes an exclusive lock on a build tree for the life of this process, so
/// two builds never share one tree at the same time.
fn lock_tree(out: &Path) -> Result<()> {
    use std::os::fd::AsRawFd;
    let path = out.with_extension("lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("cannot open {}", path.display()))?;
    // SAFETY: flock on a file descriptor we own.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        println!("kernel: waiting for another build of {} to finish", out.display());
        // SAFETY: as above, blocking this time.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) } != 0 {
            bail!("cannot lock {}: {}", path.display(), std::io::Error::last_os_error());
        }
    }
    // Held until the process exits.
    std::mem::forget(file);
    Ok(())
}

fn make_cmd(src: &Path, out: &Path, jobs: usize) -> Command {
    let mut c = Command::new("make");
    c.arg("-C")
        .arg(src)
        .arg(format!("O={}", out.display()))
        .arg(format!("-j{jobs}"))
        .env("LC_ALL", "C")
        .env("KBUILD_BUILD_TIMESTAMP", BUILD_TIMESTAMP)
        .env("KBUILD_BUILD_USER", "ztinit")
        .env("KBUILD_BUILD_HOST", "ztinit")
        .env("KBUILD_BUILD_VERSION", "1")
        .env_remove("ARCH")
        .env_remove("CROSS_COMPILE")
        .env_remove("MAKEFLAGS");
    c
}

/// Runs a short make step, printing its output only when it fails.
fn quiet(cmd: &mut Command) -> Result<()> {
    util::output(cmd).map(|_| ())
}

fn extract_source(cache: &Path, version: &str) -> Result<PathBuf> {
    let base = cache.join("src").join(version);
    let src = base.join(SOURCE_DIR);
    let marker = base.join(".extracted");
    if marker.is_file() {
        return Ok(src);
    }
    println!("kernel: extracting {SOURCE_TARBALL} ({version}) into {}", base.display());
    if base.exists() {
        std::fs::remove_dir_all(&base).with_context(|| format!("cannot clean {}", base.display()))?;
    }
    std::fs::create_dir_all(&base)?;
    util::run(Command::new("tar").arg("-xJf").arg(SOURCE_TARBALL).arg("-C").arg(&base))?;
    if !src.join("Makefile").is_file() {
        bail!("{SOURCE_TARBALL} did not contain {SOURCE_DIR}/Makefile");
    }
    std::fs::write(&marker, version)?;
    Ok(src)
}

/// Removes the extracted source once a kernel is built: it is 1.7 GiB,
/// and a rebuild extracts it again in well under a minute. The tarball's
/// timestamps come back with it, so the `O=` tree still rebuilds only what
/// a changed configuration touches. The marker goes first: a half-removed
/// tree is never taken for a whole one.
fn remove_source(cache: &Path, version: &str) -> Result<()> {
    let base = cache.join("src").join(version);
    match std::fs::remove_file(base.join(".extracted")) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("cannot remove {}/.extracted", base.display())),
    }
    util::remove_tree(&base)
}

/// Runs make, writing everything to `log`, and printing a progress line
/// every few seconds instead of thousands of lines. Returns the number of
/// compiled units. On failure the tail of the log is shown.
fn make_with_progress(cmd: &mut Command, log: &Path, expected: Option<usize>) -> Result<usize> {
    let shown = util::show(cmd);
    let log_file = std::fs::File::create(log).with_context(|| format!("cannot create {}", log.display()))?;
    let log_file = Arc::new(std::sync::Mutex::new(log_file));
    let mut child = crate::procs::tie(cmd)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot start `{shown}`"))?;
    let units = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let started = Instant::now();

    let stderr = child.stderr.take().context("no stderr pipe")?;
    let err_log = Arc::clone(&log_file);
    let err_reader = std::thread::spawn(move || {
        let mut tail: Vec<String> = Vec::new();
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Ok(mut f) = err_log.lock() {
                let _ = writeln!(f, "{line}");
            }
            tail.push(line);
            if tail.len() > 60 {
                tail.remove(0);
            }
        }
        tail
    });
    let ticker = {
        let units = Arc::clone(&units);
        let done = Arc::clone(&done);
        std::thread::spawn(move || {
            let mut next = PROGRESS_EVERY;
            while !done.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(250));
                let elapsed = started.elapsed();
                if elapsed >= next {
                    next += PROGRESS_EVERY;
                    let n = units.load(Ordering::Relaxed);
                    let pct =
                        expected.map(|e| format!(" of ~{e} ({}%)", (n * 100 / e.max(1)).min(99))).unwrap_or_default();
                    println!("kernel: [{}] {n}{pct} units compiled", fmt_duration(elapsed));
                }
            }
        })
    };
    let stdout = child.stdout.take().context("no stdout pipe")?;
    let mut out_tail: Vec<String> = Vec::new();
    for line in BufReader::new(stdout).lines().map_while(Result::ok) {
        let first = line.split_whitespace().next().unwrap_or("");
        if matches!(first, "CC" | "AS") {
            units.fetch_add(1, Ordering::Relaxed);
        }
        if let Ok(mut f) = log_file.lock() {
            let _ = writeln!(f, "{line}");
        }
        out_tail.push(line);
        if out_tail.len() > 20 {
            out_tail.remove(0);
        }
    }
    let status = child.wait()?;
    done.store(true, Ordering::Relaxed);
    let _ = ticker.join();
    let err_tail = err_reader.join().unwrap_or_default();
    if !status.success() {
        let mut msg = format!("`{shown}` failed ({status}); full log: {}\n", log.display());
        for l in out_tail.iter().chain(err_tail.iter()).rev().take(40).collect::<Vec<_>>().into_iter().rev() {
            msg.push_str("    ");
            msg.push_str(l);
            msg.push('\n');
        }
        bail!(msg);
    }
    Ok(units.load(Ordering::Relaxed))
}

pub fn fmt_duration(d: Duration) -> String {
    let s = d.as_secs();
    if s >= 60 { format!("{}m{:02}s", s / 60, s % 60) } else { format!("{:.1}s", d.as_secs_f64()) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_source_goes_after_a_build() {
        let cache = tempfile::tempdir().unwrap();
        let base = cache.path().join("src/6.12.1");
        std::fs::create_dir_all(base.join(SOURCE_DIR).join("kernel")).unwrap();
        std::fs::write(base.join(SOURCE_DIR).join("Makefile"), "all:\n").unwrap();
        std::fs::write(base.join(".extracted"), "6.12.1").unwrap();
        remove_source(cache.path(), "6.12.1").unwrap();
        assert!(!base.exists());
        // Nothing there (a second build, another version): not an error.
        remove_source(cache.path(), "6.12.1").unwrap();
    }
}
