//! The QEMU end-to-end harness: every `tests/e2e/*.toml` is one scenario
//! (see docs/testing.md). Each scenario's image is built once per run, host
//! services are started on free loopback ports, the VM boots with a
//! timeout, and the console log (`target/e2e/NAME.log`) is checked for the
//! expected markers, the forbidden strings and the isa-debug-exit value.

use std::collections::BTreeMap;
use std::io::Read;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde::Deserialize;

use crate::cli;
use crate::disk_image;
use crate::image;
use crate::kernel;
use crate::procs;
use crate::qemu::{self, Outcome};
use crate::util;

/// Strings that fail every scenario.
const ALWAYS_FORBIDDEN: &[&str] = &["Kernel panic", "BUG: kernel", "Oops:"];
const DEFAULT_TIMEOUT_S: u64 = 120;
const SERVICE_READY_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Debug, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    #[serde(skip)]
    pub name: String,
    /// Set by `bench --only translation`, never by a scenario file:
    /// [`qemu::Spec::translation_log`].
    #[serde(skip)]
    pub translation_log: Option<PathBuf>,
    pub description: String,
    /// Image manifest, relative to the workspace root.
    pub manifest: String,
    /// How the manifest is booted: "initramfs" (default), or "disk": a
    /// dm-verity root disk (`xtask image --format disk`) as `/dev/vda`, no
    /// initramfs, the disk's kernel parameters before `append`.
    #[serde(default)]
    pub format: ImageFormat,
    /// With `format = "disk"`: boot this file (placeholders allowed)
    /// instead, with the built disk's parameters and root hash (e.g. a copy
    /// of `{image}` a prepare step tampered with).
    pub root_disk: Option<String>,
    /// Kernel profile (default "test").
    pub kernel: Option<String>,
    /// Extra kernel command-line words.
    #[serde(default)]
    pub append: Vec<String>,
    pub timeout_s: Option<u64>,
    pub memory_mib: Option<u32>,
    /// Expected end: a number is the isa-debug-exit value, "poweroff" a clean
    /// ACPI power-off.
    pub exit: ExpectedExit,
    /// Console substrings that must appear, in this order.
    #[serde(default)]
    pub expect: Vec<String>,
    /// Console substrings that must not appear.
    #[serde(default)]
    pub forbid: Vec<String>,
    /// Console substrings that must appear exactly once (with `expect`: a
    /// marker that comes after another and never before it).
    #[serde(default)]
    pub once: Vec<String>,
    /// Files whose every non-empty line must not appear (e.g. a secret's hex
    /// and base64 forms written by a prepare step).
    #[serde(default)]
    pub forbid_files: Vec<String>,
    /// TOML files (placeholders allowed) merged, in order, into the
    /// manifest's baked config (`image::merge_config`); written by prepare
    /// steps (e.g. a `[[volumes]]` entry with the root hash of a disk built
    /// for this run, or a `[kbs]` fragment with this run's pinned
    /// certificate). The scenario then gets an image of its own, built
    /// after the prepare steps.
    #[serde(default)]
    pub config_append: Vec<String>,
    #[serde(default)]
    pub prepare: Vec<Prepare>,
    #[serde(default)]
    pub service: Vec<Service>,
    #[serde(default)]
    pub disk: Vec<DiskDef>,
    /// Time bounds between console markers (host arrival times).
    #[serde(default)]
    pub within: Vec<Within>,
    /// Test peers the scenario boots (`kata-agent`, see `peers.rs`) or
    /// host tools it runs (`skopeo`, `docker-registry`, see
    /// `prereq::TEST_TOOLS`): when one is not there the scenario is
    /// reported as SKIP, never PASS.
    #[serde(default)]
    pub requires: Vec<String>,
}

#[derive(Debug, Deserialize, Clone, Copy, Default, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ImageFormat {
    #[default]
    Initramfs,
    Disk,
}

#[derive(Debug, Deserialize, Clone, PartialEq, Eq)]
#[serde(untagged)]
pub enum ExpectedExit {
    Value(u8),
    Named(String),
}

#[derive(Debug, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct Prepare {
    pub command: Vec<String>,
}

#[derive(Debug, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct Service {
    pub name: String,
    #[serde(default)]
    pub command: Vec<String>,
    /// `false`: the service is down. Its port is reserved and forwarded
    /// but nothing listens there (connections are refused).
    #[serde(default = "yes")]
    pub running: bool,
    /// Workspace packages to `cargo build` (debug, host) before starting.
    #[serde(default)]
    pub build: Vec<String>,
    /// A line the service prints when it is ready; without it the harness
    /// waits until the port accepts connections.
    pub ready: Option<String>,
    /// Relay the guest's 10.0.2.100:8080 to this service (default: true
    /// when it is the only service without a `guest` address).
    pub forward: Option<bool>,
    /// Relay this guest address (`IP:PORT` in 10.0.2.0/24, e.g. a
    /// registry's "10.0.2.101:5000") to this service instead.
    pub guest: Option<String>,
    /// Start before the prepare steps (which can then use it through
    /// `{port.NAME}`: a registry the test images are pushed to before the
    /// scenario's config, carrying their digest, is baked). Stopped at the
    /// end like the others.
    #[serde(default)]
    pub early: bool,
    /// Substrings its log (stdout and stderr) must contain, in order, once
    /// the VM has ended.
    #[serde(default)]
    pub expect: Vec<String>,
    /// Substrings its log must not contain.
    #[serde(default)]
    pub forbid: Vec<String>,
}

/// `from` → `to` took at most `max_ms` (and at least `min_ms`), measured
/// on the host from the arrival of the console lines.
#[derive(Debug, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct Within {
    /// Console marker; default: QEMU's start.
    pub from: Option<String>,
    /// Console marker; default: the end of the VM (QEMU's exit).
    pub to: Option<String>,
    pub max_ms: u64,
    #[serde(default)]
    pub min_ms: u64,
}

#[derive(Debug, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct DiskDef {
    /// Existing file (placeholders allowed), or created when `size_mib` is given.
    pub path: Option<String>,
    pub size_mib: Option<u64>,
    #[serde(default)]
    pub readonly: bool,
    /// virtio-blk serial the guest sees in /sys/block/*/serial.
    pub serial: Option<String>,
}

fn yes() -> bool {
    true
}

pub fn scenario_dir() -> PathBuf {
    util::workspace_root().join("tests/e2e")
}

pub fn load_all() -> Result<Vec<Scenario>> {
    let dir = scenario_dir();
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir)
        .with_context(|| format!("cannot list {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    paths.sort();
    paths.iter().map(|p| load(p)).collect()
}

pub fn load(path: &Path) -> Result<Scenario> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let name = path.file_stem().and_then(|n| n.to_str()).unwrap_or("scenario");
    parse(name, &text).with_context(|| format!("{}: invalid scenario", path.display()))
}

/// A scenario from TOML text (see docs/testing.md for the keys).
pub fn parse(name: &str, text: &str) -> Result<Scenario> {
    let mut s: Scenario = toml::from_str(text)?;
    s.name = name.to_string();
    if let ExpectedExit::Named(n) = &s.exit
        && n != "poweroff"
    {
        bail!("exit = {n:?}: use a number (isa-debug-exit value) or \"poweroff\"");
    }
    if s.root_disk.is_some() && s.format != ImageFormat::Disk {
        bail!("root_disk needs format = \"disk\"");
    }
    if s.service.iter().filter(|sv| sv.forward == Some(true)).count() > 1 {
        bail!("only one service can be forwarded to the guest");
    }
    for sv in &s.service {
        if let Some(guest) = &sv.guest {
            qemu::parse_guest_addr(guest).with_context(|| format!("service {}", sv.name))?;
            if sv.forward == Some(true) {
                bail!("service {}: give forward = true (10.0.2.100:8080) or a guest address, not both", sv.name);
            }
        }
        if sv.early && !sv.running {
            bail!("service {}: early needs a running service", sv.name);
        }
    }
    let placeholder_ports: BTreeMap<String, u16> = s.service.iter().map(|sv| (sv.name.clone(), 1)).collect();
    qemu::check_forwards(&forwards(&s, &placeholder_ports)?)?;
    for d in &s.disk {
        if let Some(serial) = &d.serial {
            qemu::check_serial(serial)?;
        }
    }
    for peer in &s.requires {
        let known_tool = crate::prereq::TEST_TOOLS.iter().any(|(n, _)| n == peer);
        if !known_tool && !crate::peers::KNOWN.iter().any(|(n, _)| n == peer) {
            bail!("requires: unknown test peer {peer:?}");
        }
    }
    for sv in &s.service {
        if sv.running == sv.command.is_empty() {
            bail!("service {}: a command is needed exactly when the service is running", sv.name);
        }
        let needs_a_process = !sv.expect.is_empty() || sv.ready.is_some() || !sv.build.is_empty();
        if !sv.running && needs_a_process {
            bail!("service {}: a service that is not running has no build, ready or expect", sv.name);
        }
    }
    Ok(s)
}

/// `cargo xtask e2e [NAME...]`: run scenarios (all when none is named).
pub fn cmd(args: &[String]) -> Result<()> {
    const USAGE: &str = "usage: cargo xtask e2e [--list] [NAME...]
Runs the QEMU scenarios of tests/e2e/ (all unless named); --list lists them.";
    let (mut list, mut names) = (false, Vec::new());
    let mut p = cli::Args::new(args, USAGE);
    while let Some(arg) = p.next()? {
        match arg {
            cli::Long("list") => list = true,
            cli::Short('h') | cli::Long("help") => return p.help(),
            cli::Value(name) => names.push(cli::string(name, USAGE)?),
            other => {
                let e = other.unexpected();
                return Err(p.error(e));
            }
        }
    }
    if list {
        for s in load_all()? {
            println!("{:<20} {}", s.name, s.description);
        }
        return Ok(());
    }
    run_selected(&names)
}

pub fn run_selected(names: &[String]) -> Result<()> {
    let all = load_all()?;
    let selected: Vec<Scenario> = if names.is_empty() {
        all
    } else {
        let mut v = Vec::new();
        for n in names {
            match all.iter().find(|s| &s.name == n) {
                Some(s) => v.push(s.clone()),
                None => bail!("no scenario {n:?} in {}", scenario_dir().display()),
            }
        }
        v
    };
    if selected.is_empty() {
        bail!("no scenarios in {}", scenario_dir().display());
    }
    let mut images = ImageCache::default();
    let mut results = Vec::new();
    let mut skipped = Vec::new();
    for s in &selected {
        println!("e2e: {} - {}", s.name, s.description);
        match missing_peers(s) {
            Ok(missing) if !missing.is_empty() => {
                println!("e2e: SKIP {} ({})", s.name, missing.join("; "));
                skipped.push(s.name.clone());
                continue;
            }
            Ok(_) => {}
            Err(e) => {
                println!("e2e: FAIL {}\ne2e:     {e:#}", s.name);
                results.push((s.name.clone(), vec![format!("{e:#}")]));
                continue;
            }
        }
        let started = Instant::now();
        let failures = match run_one(s, &mut images) {
            Ok(f) => f,
            Err(e) => vec![format!("{e:#}")],
        };
        let verdict = if failures.is_empty() { "PASS" } else { "FAIL" };
        println!("e2e: {verdict} {} ({})", s.name, kernel::fmt_duration(started.elapsed()));
        if failures.is_empty() {
            // A passed scenario's scratch (disks, registries, keys) is not
            // looked at again; 60 of them filled a CI disk. Its log stays.
            if let Err(e) = util::remove_tree(&e2e_dir().join(&s.name)) {
                println!("e2e:   {e:#}");
            }
        }
        for f in &failures {
            println!("e2e:     {f}");
        }
        results.push((s.name.clone(), failures));
    }
    let failed: Vec<&String> = results.iter().filter(|(_, f)| !f.is_empty()).map(|(n, _)| n).collect();
    println!("e2e: logs in {}", e2e_dir().display());
    if !skipped.is_empty() {
        println!("e2e: skipped (test peer missing): {}", skipped.join(", "));
    }
    println!("e2e: {}", summary(results.len() - failed.len(), failed.len(), skipped.len()));
    if !failed.is_empty() {
        bail!("e2e scenarios failed: {}", failed.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", "));
    }
    Ok(())
}

/// The closing line: `N passed, N failed` and, when some were, `, N skipped`.
fn summary(passed: usize, failed: usize, skipped: usize) -> String {
    let mut line = format!("{passed} passed, {failed} failed");
    if skipped > 0 {
        line.push_str(&format!(", {skipped} skipped"));
    }
    line
}

/// Why the test peers and host tools a scenario requires are missing
/// (empty: all there).
pub fn missing_peers(s: &Scenario) -> Result<Vec<String>> {
    let mut missing = Vec::new();
    for peer in &s.requires {
        if crate::prereq::TEST_TOOLS.iter().any(|(n, _)| n == peer) {
            missing.extend(crate::prereq::missing_tool(peer));
        } else if crate::peers::find(peer)?.is_none() {
            missing.push(crate::peers::describe(peer));
        }
    }
    Ok(missing)
}

pub fn e2e_dir() -> PathBuf {
    util::target_dir().join("e2e")
}

/// Images built during this run, by manifest.
#[derive(Default)]
pub struct ImageCache {
    built: BTreeMap<String, PathBuf>,
    disks: BTreeMap<String, disk_image::Disk>,
}

impl ImageCache {
    pub fn get(&mut self, manifest: &str) -> Result<PathBuf> {
        if let Some(p) = self.built.get(manifest) {
            return Ok(p.clone());
        }
        let stem = manifest.trim_end_matches(".toml").replace('/', "-");
        let out = e2e_dir().join("images").join(format!("{stem}.cpio"));
        let b = image::build(&util::workspace_root().join(manifest), &out)?;
        println!("e2e: image {manifest}: {} entries, {}", b.entries, util::human_size(b.size));
        self.built.insert(manifest.to_string(), out.clone());
        Ok(out)
    }
}

impl ImageCache {
    /// The manifest's root disk (`format = "disk"`).
    pub fn get_disk(&mut self, manifest: &str) -> Result<disk_image::Disk> {
        if let Some(d) = self.disks.get(manifest) {
            return Ok(d.clone());
        }
        let stem = manifest.trim_end_matches(".toml").replace('/', "-");
        let out = e2e_dir().join("images").join(format!("{stem}.disk"));
        let d = disk_image::build(&util::workspace_root().join(manifest), &[], &out)?;
        println!("e2e: root disk {manifest}: {}, root hash {}", util::human_size(d.size), d.root_hash);
        self.disks.insert(manifest.to_string(), d.clone());
        Ok(d)
    }
}

/// What one boot of a scenario gave.
pub struct Report {
    /// The image that was booted (initramfs, or root disk with `format = "disk"`).
    pub image: PathBuf,
    pub outcome: Outcome,
    pub console: String,
    pub wall: Duration,
    pub log: PathBuf,
    /// The scenario's scratch directory (what its prepare steps wrote).
    pub scratch: PathBuf,
    /// Every failed check (empty: pass).
    pub failures: Vec<String>,
}

/// Runs one scenario; returns the list of failed checks.
fn run_one(s: &Scenario, images: &mut ImageCache) -> Result<Vec<String>> {
    let r = run_scenario(s, images, false, None)?;
    println!("e2e:   {} in {} (log {})", r.outcome, kernel::fmt_duration(r.wall), r.log.display());
    Ok(r.failures)
}

/// Where a scenario's own image goes (one with `config_append`).
pub fn own_image_path(s: &Scenario) -> PathBuf {
    let name = if s.format == ImageFormat::Disk { "image.disk" } else { "image.cpio" };
    e2e_dir().join(&s.name).join(name)
}

/// Boots a scenario once: prepare steps, image, services, disks, QEMU,
/// checks. `echo` streams the console to stdout; `log_name` overrides the
/// log file name (default `target/e2e/NAME.log`).
pub fn run_scenario(s: &Scenario, images: &mut ImageCache, echo: bool, log_name: Option<&str>) -> Result<Report> {
    run_scenario_settled(s, images, echo, log_name, Duration::ZERO)
}

/// [`run_scenario`], waiting `settle` between making everything the boot
/// needs (prepare steps, its image, its services) and starting QEMU.
pub fn run_scenario_settled(
    s: &Scenario,
    images: &mut ImageCache,
    echo: bool,
    log_name: Option<&str>,
    settle: Duration,
) -> Result<Report> {
    let kernel = kernel::ensure(s.kernel.as_deref().unwrap_or(kernel::DEFAULT_PROFILE))?;
    let scratch = e2e_dir().join(&s.name);
    if scratch.exists() {
        std::fs::remove_dir_all(&scratch).with_context(|| format!("cannot clean {}", scratch.display()))?;
    }
    std::fs::create_dir_all(&scratch)?;
    let own_image = !s.config_append.is_empty();
    let mut root = None;
    let image_path = match (own_image, s.format) {
        (true, _) => own_image_path(s),
        (false, ImageFormat::Initramfs) => images.get(&s.manifest)?,
        (false, ImageFormat::Disk) => root.insert(images.get_disk(&s.manifest)?).path.clone(),
    };
    let mut vars = Vars::new(&scratch, &kernel.bzimage(), &image_path)?;
    // Ports first, so services and prepare steps can name each other's.
    for (sv, port) in s.service.iter().zip(free_ports(s.service.len())?) {
        vars.ports.insert(sv.name.clone(), port);
    }
    let mut running = Running::default();
    let service_log = |name: &str| e2e_dir().join(format!("{}.{name}.log", s.name));
    // Prepare steps run before a scenario's own image is built, so what they
    // write (a disk's root hash, an image digest) can be baked into its config.
    early_services_and_prepare(s, &vars, &mut running, &service_log)?;
    if own_image && s.format == ImageFormat::Disk {
        let append: Vec<PathBuf> = vars.expand_all(&s.config_append)?.into_iter().map(PathBuf::from).collect();
        let d = root.insert(disk_image::build(&util::workspace_root().join(&s.manifest), &append, &image_path)?);
        println!("e2e: root disk {} + {}: root hash {}", s.manifest, s.config_append.join(" + "), d.root_hash);
    } else if own_image {
        let append: Vec<PathBuf> = vars.expand_all(&s.config_append)?.into_iter().map(PathBuf::from).collect();
        let b = image::build_with_config(&util::workspace_root().join(&s.manifest), &append, &image_path)?;
        println!(
            "e2e: image {} + {}: {} entries, {}",
            s.manifest,
            s.config_append.join(" + "),
            b.entries,
            util::human_size(b.size)
        );
    }
    let image = image_path;
    for sv in s.service.iter().filter(|sv| !sv.early) {
        let port = vars.ports[&sv.name];
        if sv.running {
            running.start(sv, &vars, port, &service_log(&sv.name))?;
        } else {
            println!("e2e:   service {} is down (nothing listens on 127.0.0.1:{port})", sv.name);
        }
    }
    let mut spec = qemu::Spec::new(kernel.bzimage(), image.clone());
    spec.append = vars.expand_all(&s.append)?;
    if let Some(d) = &root {
        let file = s.root_disk.as_deref().map(|p| vars.expand(p)).transpose()?.map(PathBuf::from);
        spec.root_disk = Some(file.unwrap_or_else(|| d.path.clone()));
        spec.append.splice(0..0, d.kernel_params());
    }
    spec.forwards = forwards(s, &vars.ports)?;
    spec.translation_log = s.translation_log.clone();
    if let Some(m) = s.memory_mib {
        spec.memory_mib = m;
    }
    for (i, d) in s.disk.iter().enumerate() {
        let path = match (&d.path, d.size_mib) {
            (Some(p), None) => PathBuf::from(vars.expand(p)?),
            (p, Some(size)) => {
                let path = match p {
                    Some(p) => PathBuf::from(vars.expand(p)?),
                    None => scratch.join(format!("disk{i}.img")),
                };
                let f = std::fs::File::create(&path).with_context(|| format!("cannot create {}", path.display()))?;
                f.set_len(size << 20)?;
                path
            }
            (None, None) => bail!("{}: [[disk]] {i} needs path or size_mib", s.name),
        };
        spec.disks.push(qemu::Disk { path, readonly: d.readonly, serial: d.serial.clone() });
    }
    let timeout = Duration::from_secs(s.timeout_s.unwrap_or(DEFAULT_TIMEOUT_S));
    let log = e2e_dir().join(format!("{}.log", log_name.unwrap_or(&s.name)));
    if !settle.is_zero() {
        std::thread::sleep(settle);
    }
    let run = qemu::run_captured(&spec, timeout, &log, echo)?;
    running.stop();
    let expect = vars.expand_all(&s.expect)?;
    let mut forbidden: Vec<String> =
        ALWAYS_FORBIDDEN.iter().map(|s| s.to_string()).chain(vars.expand_all(&s.forbid)?).collect();
    for f in &s.forbid_files {
        let path = vars.expand(f)?;
        let text = std::fs::read_to_string(&path).with_context(|| format!("forbid_files: cannot read {path}"))?;
        forbidden.extend(text.lines().map(str::trim).filter(|l| !l.is_empty()).map(str::to_string));
    }
    let mut failures = check(&run.outcome, &run.console, &s.exit, &expect, &forbidden);
    failures.extend(check_once(&run.console, &vars.expand_all(&s.once)?));
    for w in &s.within {
        let w = Within {
            from: w.from.as_deref().map(|m| vars.expand(m)).transpose()?,
            to: w.to.as_deref().map(|m| vars.expand(m)).transpose()?,
            ..w.clone()
        };
        let (measured, failed) = check_within(&run.timed_lines, run.wall, &w);
        if let Some(line) = measured {
            println!("e2e:   within: {line}");
        }
        failures.extend(failed);
    }
    for sv in s.service.iter().filter(|sv| sv.running) {
        if sv.expect.is_empty() && sv.forbid.is_empty() {
            continue;
        }
        let log = service_log(&sv.name);
        let text = std::fs::read_to_string(&log).with_context(|| format!("cannot read {}", log.display()))?;
        let found = check_markers(&text, &vars.expand_all(&sv.expect)?, &vars.expand_all(&sv.forbid)?);
        failures.extend(found.into_iter().map(|f| format!("service {} ({}): {f}", sv.name, log.display())));
    }
    Ok(Report { image, outcome: run.outcome, console: run.console, wall: run.wall, log, scratch, failures })
}

/// The guest addresses relayed to the services' ports: each service's
/// `guest` address, and 10.0.2.100:8080 to the one with `forward = true`
/// or, by default, to the only service without a `guest` address.
fn forwards(s: &Scenario, ports: &BTreeMap<String, u16>) -> Result<Vec<qemu::Forward>> {
    let unaddressed = s.service.iter().filter(|sv| sv.guest.is_none()).count();
    let mut out = Vec::new();
    for sv in &s.service {
        let port = *ports.get(&sv.name).with_context(|| format!("service {} has no port", sv.name))?;
        match &sv.guest {
            Some(guest) => out.push(qemu::Forward { guest: qemu::parse_guest_addr(guest)?, port }),
            None if sv.forward.unwrap_or(unaddressed == 1) => out.push(qemu::Forward::default_to(port)),
            None => {}
        }
    }
    Ok(out)
}

/// Starts the `early` services, then runs the prepare steps (which reach
/// them through `{port.NAME}`, e.g. to push images to the registry).
fn early_services_and_prepare(
    s: &Scenario,
    vars: &Vars,
    running: &mut Running,
    service_log: &dyn Fn(&str) -> PathBuf,
) -> Result<()> {
    for sv in s.service.iter().filter(|sv| sv.early) {
        let port = *vars.ports.get(&sv.name).with_context(|| format!("service {} has no port", sv.name))?;
        running.start(sv, vars, port, &service_log(&sv.name))?;
    }
    for p in &s.prepare {
        let argv = vars.expand_all(&p.command)?;
        let (prog, rest) = argv.split_first().context("prepare: empty command")?;
        util::run(Command::new(prog).args(rest).current_dir(util::workspace_root()))
            .with_context(|| format!("prepare step of {}", s.name))?;
    }
    Ok(())
}

/// `expect` in order and no `forbid` in `text`.
pub fn check_markers(text: &str, expect: &[String], forbid: &[String]) -> Vec<String> {
    let mut failures = Vec::new();
    let mut from = 0;
    for marker in expect {
        match text[from..].find(marker.as_str()) {
            Some(i) => from += i + marker.len(),
            None if text.contains(marker.as_str()) => failures.push(format!("marker out of order: {marker:?}")),
            None => failures.push(format!("missing marker: {marker:?}")),
        }
    }
    for f in forbid {
        if text.contains(f.as_str()) {
            failures.push(format!("forbidden string present: {f:?}"));
        }
    }
    failures
}

/// Each of `once` exactly once in `console`.
pub fn check_once(console: &str, once: &[String]) -> Vec<String> {
    once.iter()
        .filter_map(|m| match console.matches(m.as_str()).count() {
            1 => None,
            n => Some(format!("expected exactly once, found {n} times: {m:?}")),
        })
        .collect()
}

/// The time between two console markers (first lines containing them),
/// or from QEMU's start / to QEMU's exit where a marker is not given:
/// what was measured (for the run's output) and the failures.
pub fn check_within(lines: &[(Duration, String)], end: Duration, w: &Within) -> (Option<String>, Vec<String>) {
    let at = |marker: &Option<String>, default: Duration| -> Result<Duration, String> {
        match marker {
            None => Ok(default),
            Some(m) => lines
                .iter()
                .find(|(_, l)| l.contains(m.as_str()))
                .map(|(t, _)| *t)
                .ok_or_else(|| format!("within: marker {m:?} is not on the console")),
        }
    };
    let span = match (at(&w.from, Duration::ZERO), at(&w.to, end)) {
        (Ok(from), Ok(to)) => to.saturating_sub(from),
        (Err(e), _) | (_, Err(e)) => return (None, vec![e]),
    };
    let name = |m: &Option<String>, default: &str| m.as_deref().map_or(default.to_string(), |m| format!("{m:?}"));
    let (from, to) = (name(&w.from, "QEMU start"), name(&w.to, "the end of the VM"));
    let ms = u64::try_from(span.as_millis()).unwrap_or(u64::MAX);
    let measured = format!("{from} -> {to} took {ms} ms (bounds {}..={} ms)", w.min_ms, w.max_ms);
    let failures = if ms > w.max_ms {
        vec![format!("{from} -> {to} took {ms} ms, more than {} ms", w.max_ms)]
    } else if ms < w.min_ms {
        vec![format!("{from} -> {to} took {ms} ms, less than {} ms", w.min_ms)]
    } else {
        Vec::new()
    };
    (Some(measured), failures)
}

/// Every way the run differs from the expectation.
pub fn check(
    outcome: &Outcome,
    console: &str,
    exit: &ExpectedExit,
    expect: &[String],
    forbid: &[String],
) -> Vec<String> {
    let mut failures = Vec::new();
    match (exit, outcome) {
        (ExpectedExit::Value(want), Outcome::DebugExit(got)) if want == got => {}
        (ExpectedExit::Named(_), Outcome::PoweredOff) => {}
        (ExpectedExit::Value(want), got) => failures
            .push(format!("expected isa-debug-exit value {want}{}, got: {got}", qemu::describe_exit_value(*want))),
        (ExpectedExit::Named(_), got) => failures.push(format!("expected a clean power-off, got: {got}")),
    }
    failures.extend(check_markers(console, expect, forbid));
    failures
}

/// Placeholder values for scenario strings.
struct Vars {
    fixed: BTreeMap<&'static str, String>,
    ports: BTreeMap<String, u16>,
}

impl Vars {
    fn new(scratch: &Path, kernel: &Path, image: &Path) -> Result<Self> {
        let mut fixed = BTreeMap::new();
        fixed.insert("workspace", util::workspace_root().display().to_string());
        fixed.insert("target", util::target_dir().display().to_string());
        fixed.insert("scratch", scratch.display().to_string());
        fixed.insert("kernel", kernel.display().to_string());
        fixed.insert("image", image.display().to_string());
        fixed.insert("xtask", util::self_exe().display().to_string());
        Ok(Vars { fixed, ports: BTreeMap::new() })
    }

    /// `{name}`; `{port}` is the current service's port (`{port.NAME}` any's);
    /// `{file:NAME}` is the content of `{scratch}/NAME` (written by a prepare
    /// step), without surrounding whitespace.
    fn expand_with(&self, s: &str, own_port: Option<u16>) -> Result<String> {
        let mut out = String::new();
        let mut rest = s;
        while let Some(start) = rest.find('{') {
            out.push_str(&rest[..start]);
            let end = rest[start..].find('}').with_context(|| format!("unclosed placeholder in {s:?}"))? + start;
            let key = &rest[start + 1..end];
            let value = match key {
                "port" => {
                    own_port.map(|p| p.to_string()).with_context(|| format!("{{port}} outside a service in {s:?}"))?
                }
                k if k.starts_with("file:") => self.scratch_file(&k[5..]).with_context(|| format!("in {s:?}"))?,
                k if k.starts_with("port.") => self
                    .ports
                    .get(&k[5..])
                    .map(|p| p.to_string())
                    .with_context(|| format!("no service {:?} for {s:?}", &k[5..]))?,
                k => self.fixed.get(k).cloned().with_context(|| format!("unknown placeholder {{{k}}} in {s:?}"))?,
            };
            out.push_str(&value);
            rest = &rest[end + 1..];
        }
        out.push_str(rest);
        Ok(out)
    }

    fn expand(&self, s: &str) -> Result<String> {
        self.expand_with(s, None)
    }

    fn scratch_file(&self, name: &str) -> Result<String> {
        if name.is_empty() || Path::new(name).components().any(|c| !matches!(c, std::path::Component::Normal(_))) {
            bail!("{{file:{name}}}: give a path relative to the scratch directory");
        }
        let path = Path::new(&self.fixed["scratch"]).join(name);
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("{{file:{name}}}: cannot read {} (written by a prepare step?)", path.display()))?;
        let text = text.trim();
        if text.is_empty() {
            bail!("{{file:{name}}}: {} is empty", path.display());
        }
        if text.contains('\n') {
            bail!("{{file:{name}}}: {} holds more than one line", path.display());
        }
        Ok(text.to_string())
    }

    fn expand_all(&self, v: &[String]) -> Result<Vec<String>> {
        v.iter().map(|s| self.expand(s)).collect()
    }
}

/// `n` distinct free loopback ports. Each probe listener is held until
/// all are picked: one bound and closed at once may be handed out again
/// by the next bind (a registry and a KBS once got the same port).
fn free_ports(n: usize) -> Result<Vec<u16>> {
    let probes = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0").context("cannot bind a loopback port"))
        .collect::<Result<Vec<_>>>()?;
    probes.iter().map(|l| Ok(l.local_addr()?.port())).collect()
}

/// Host services of one scenario; stopped (by pid) when dropped.
#[derive(Default)]
struct Running {
    children: Vec<(String, Child)>,
}

impl Running {
    fn start(&mut self, sv: &Service, vars: &Vars, port: u16, log: &Path) -> Result<()> {
        if !sv.build.is_empty() {
            let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
            let mut c = Command::new(cargo);
            c.current_dir(util::workspace_root()).arg("build");
            for p in &sv.build {
                c.args(["-p", p]);
            }
            util::run(&mut c).with_context(|| format!("building service {}", sv.name))?;
        }
        let argv: Vec<String> = sv.command.iter().map(|a| vars.expand_with(a, Some(port))).collect::<Result<_>>()?;
        let (prog, rest) = argv.split_first().with_context(|| format!("service {}: empty command", sv.name))?;
        let out = std::fs::File::create(log)?;
        let mut c = Command::new(prog);
        // Its own process group (stopped as a whole), SIGKILL should xtask die.
        let child = procs::own(&mut c)
            .args(rest)
            .current_dir(util::workspace_root())
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .spawn()
            .with_context(|| format!("cannot start service {} ({prog})", sv.name))?;
        procs::register(child.id());
        self.children.push((sv.name.clone(), child));
        let deadline = Instant::now() + SERVICE_READY_TIMEOUT;
        loop {
            let (_, child) = self.children.last_mut().context("service vanished")?;
            if let Some(status) = child.try_wait()? {
                bail!("service {} exited before it was ready ({status}); log: {}", sv.name, log.display());
            }
            let ready = match &sv.ready {
                Some(line) => {
                    let mut text = String::new();
                    std::fs::File::open(log)?.read_to_string(&mut text)?;
                    text.contains(line.as_str())
                }
                None => TcpStream::connect(("127.0.0.1", port)).is_ok(),
            };
            if ready {
                println!("e2e:   service {} ready on 127.0.0.1:{port}", sv.name);
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "service {} not ready after {}s; log: {}",
                    sv.name,
                    SERVICE_READY_TIMEOUT.as_secs(),
                    log.display()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn stop(&mut self) {
        for (_, child) in &mut self.children {
            // SAFETY: signals the process group of a service this harness
            // started (the group's id is the service's pid, not yet reaped).
            unsafe { libc::kill(-child.id().cast_signed(), libc::SIGTERM) };
        }
        let deadline = Instant::now() + Duration::from_secs(3);
        for (_, child) in &mut self.children {
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            // SAFETY: as above; the leader is not reaped before the wait below.
            unsafe { libc::kill(-child.id().cast_signed(), libc::SIGKILL) };
            let _ = child.wait();
            procs::release(child.id());
        }
        self.children.clear();
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn free_ports_are_distinct() {
        for _ in 0..20 {
            let mut ports = free_ports(8).unwrap();
            ports.sort_unstable();
            ports.dedup();
            assert_eq!(ports.len(), 8, "{ports:?}");
        }
    }

    #[test]
    fn every_checked_scenario_file_parses() {
        let all = load_all().unwrap();
        assert!(all.iter().any(|s| s.name == "exit-status"), "scenario files missing");
        for s in &all {
            assert!(util::workspace_root().join(&s.manifest).is_file(), "{}: no manifest {}", s.name, s.manifest);
        }
    }

    #[test]
    fn exit_value_and_markers_are_both_required() {
        let console = "a\nztinit: workload exited status=3\n";
        let ok = check(&Outcome::DebugExit(3), console, &ExpectedExit::Value(3), &strings(&["a", "status=3"]), &[]);
        assert!(ok.is_empty(), "{ok:?}");
        let wrong_value = check(&Outcome::DebugExit(0), console, &ExpectedExit::Value(3), &[], &[]);
        assert!(wrong_value[0].contains("expected isa-debug-exit value 3"), "{wrong_value:?}");
        let missing = check(&Outcome::DebugExit(3), console, &ExpectedExit::Value(3), &strings(&["nope"]), &[]);
        assert!(missing[0].contains("missing marker"), "{missing:?}");
        let order = check(&Outcome::DebugExit(3), console, &ExpectedExit::Value(3), &strings(&["status=3", "a"]), &[]);
        assert!(order[0].contains("out of order"), "{order:?}");
    }

    #[test]
    fn a_panic_or_hang_never_passes() {
        let panic = check(&Outcome::Panicked, "Kernel panic", &ExpectedExit::Value(3), &[], &strings(ALWAYS_FORBIDDEN));
        assert_eq!(panic.len(), 2, "{panic:?}");
        let hang =
            check(&Outcome::TimedOut(Duration::from_secs(1)), "", &ExpectedExit::Named("poweroff".into()), &[], &[]);
        assert!(hang[0].contains("timed out"), "{hang:?}");
    }

    #[test]
    fn placeholders_expand_and_unknown_ones_fail() {
        let v = Vars::new(Path::new("/s"), Path::new("/k"), Path::new("/i")).unwrap();
        assert_eq!(v.expand("{scratch}/x").unwrap(), "/s/x");
        assert_eq!(v.expand_with("127.0.0.1:{port}", Some(5)).unwrap(), "127.0.0.1:5");
        assert!(v.expand("{nope}").is_err());
        assert!(v.expand("{port}").is_err());
    }

    #[test]
    fn file_placeholders_read_one_line_from_the_scratch_directory() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("secret.sha256"), "abc123\n").unwrap();
        std::fs::write(dir.path().join("two"), "a\nb\n").unwrap();
        let v = Vars::new(dir.path(), Path::new("/k"), Path::new("/i")).unwrap();
        assert_eq!(v.expand("sha256={file:secret.sha256}.").unwrap(), "sha256=abc123.");
        assert!(v.expand("{file:absent}").is_err());
        assert!(v.expand("{file:two}").map_err(|e| format!("{e:#}")).unwrap_err().contains("more than one line"));
        assert!(v.expand("{file:../x}").is_err());
        assert!(v.expand("{file.secret.sha256}").is_err(), "one spelling only");
    }

    #[test]
    fn within_measures_between_markers_and_to_the_end() {
        let ms = Duration::from_millis;
        let lines = vec![(ms(100), "start".to_string()), (ms(900), "ztinit: FATAL: x".to_string())];
        let w = |from: Option<&str>, to: Option<&str>, max_ms, min_ms| Within {
            from: from.map(str::to_string),
            to: to.map(str::to_string),
            max_ms,
            min_ms,
        };
        let (measured, ok) = check_within(&lines, ms(1000), &w(Some("start"), Some("FATAL"), 800, 800));
        assert!(ok.is_empty(), "{ok:?}");
        assert_eq!(measured.unwrap(), "\"start\" -> \"FATAL\" took 800 ms (bounds 800..=800 ms)");
        let slow = check_within(&lines, ms(1000), &w(Some("start"), None, 800, 0)).1;
        assert_eq!(slow, vec!["\"start\" -> the end of the VM took 900 ms, more than 800 ms".to_string()]);
        let fast = check_within(&lines, ms(1000), &w(None, Some("FATAL"), 5000, 1000)).1;
        assert!(fast[0].contains("less than 1000 ms"), "{fast:?}");
        let missing = check_within(&lines, ms(1000), &w(Some("nope"), None, 5000, 0));
        assert!(missing.0.is_none() && missing.1[0].contains("\"nope\" is not on the console"), "{missing:?}");
    }

    #[test]
    fn service_logs_are_checked_and_down_services_are_consistent() {
        let f = check_markers("POST /kbs/v0/auth -> 200\n", &[], &strings(&["/kbs/v0/"]));
        assert_eq!(f, vec!["forbidden string present: \"/kbs/v0/\"".to_string()]);
        let base = "description = \"d\"\nmanifest = \"m\"\nexit = 0\n";
        let down = parse("x", &format!("{base}[[service]]\nname = \"kbs\"\nrunning = false\n")).unwrap();
        assert!(!down.service[0].running);
        assert!(parse("x", &format!("{base}[[service]]\nname = \"kbs\"\n")).is_err());
        assert!(
            parse("x", &format!("{base}[[service]]\nname = \"kbs\"\nrunning = false\ncommand = [\"x\"]\n")).is_err()
        );
    }

    #[test]
    fn once_markers_and_service_logs() {
        let console = "accepted\nset-ready\nset-ready\n";
        assert_eq!(check_once(console, &strings(&["accepted"])), Vec::<String>::new());
        assert_eq!(
            check_once(console, &strings(&["set-ready"])),
            ["expected exactly once, found 2 times: \"set-ready\""]
        );
        assert_eq!(check_once(console, &strings(&["gone"])), ["expected exactly once, found 0 times: \"gone\""]);
        let log = "ztinit-kbs: listening\nztinit-kbs: attestation accepted: sample + nvidia\n";
        assert!(check_markers(log, &strings(&["listening", "accepted: sample + nvidia"]), &[]).is_empty());
        assert_eq!(check_markers(log, &[], &strings(&["refused"])), Vec::<String>::new());
        assert_eq!(
            check_markers(log, &strings(&["accepted", "listening"]), &[]),
            ["marker out of order: \"listening\""]
        );
        let s = parse("x", "description = \"d\"\nmanifest = \"m\"\nexit = 0\nonce = [\"a\"]\n[[service]]\nname = \"kbs\"\ncommand = [\"k\"]\nexpect = [\"e\"]\nforbid = [\"f\"]\n").unwrap();
        assert_eq!((s.once.len(), s.service[0].expect.len(), s.service[0].forbid.len()), (1, 1, 1));
    }

    #[test]
    fn file_placeholders_read_the_scratch_directory() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("model.sha256"), "abc123\n").unwrap();
        std::fs::write(dir.path().join("empty"), "\n").unwrap();
        let v = Vars::new(dir.path(), Path::new("/k"), Path::new("/i")).unwrap();
        assert_eq!(v.expand("sha256 {file:model.sha256} ok").unwrap(), "sha256 abc123 ok");
        let missing = format!("{:#}", v.expand("{file:nope}").unwrap_err());
        assert!(missing.contains("cannot read"), "{missing}");
        assert!(v.expand("{file:empty}").map_err(|e| format!("{e:#}")).unwrap_err().contains("is empty"));
        for escape in ["{file:../x}", "{file:/etc/passwd}", "{file:}"] {
            assert!(
                v.expand(escape).map_err(|e| format!("{e:#}")).unwrap_err().contains("relative to the scratch"),
                "{escape}"
            );
        }
    }

    #[test]
    fn required_peers_are_known_and_the_summary_counts_skips() {
        let base = "description = \"d\"\nmanifest = \"m\"\nexit = 0\n";
        let s = parse("x", &format!("{base}requires = [\"kata-agent\"]\n")).unwrap();
        assert_eq!(s.requires, ["kata-agent"]);
        let e = parse("x", &format!("{base}requires = [\"nope\"]\n")).unwrap_err().to_string();
        assert!(e.contains("unknown test peer \"nope\""), "{e}");
        assert!(missing_peers(&parse("x", base).unwrap()).unwrap().is_empty());
        let tools = parse("x", &format!("{base}requires = [\"skopeo\", \"docker-registry\"]\n")).unwrap();
        for m in missing_peers(&tools).unwrap() {
            assert!(m.contains("apt-get install"), "{m}");
        }
        assert_eq!(summary(3, 0, 0), "3 passed, 0 failed");
        assert_eq!(summary(1, 1, 2), "1 passed, 1 failed, 2 skipped");
    }

    #[test]
    fn services_get_guest_addresses_and_the_default_forward_is_unchanged() {
        let base = "description = \"d\"\nmanifest = \"m\"\nexit = 0\n";
        let ports = |s: &Scenario| -> BTreeMap<String, u16> {
            s.service.iter().enumerate().map(|(i, sv)| (sv.name.clone(), 100 + u16::try_from(i).unwrap())).collect()
        };
        let shown = |s: &Scenario| -> Vec<String> {
            forwards(s, &ports(s)).unwrap().iter().map(|f| format!("{}->{}", f.guest, f.port)).collect()
        };
        // One service: forwarded to 10.0.2.100:8080 as before; two: only when asked.
        let one = parse("x", &format!("{base}[[service]]\nname = \"kbs\"\ncommand = [\"k\"]\n")).unwrap();
        assert_eq!(shown(&one), ["10.0.2.100:8080->100"]);
        let two = "[[service]]\nname = \"a\"\ncommand = [\"a\"]\n[[service]]\nname = \"b\"\ncommand = [\"b\"]\n";
        assert!(shown(&parse("x", &format!("{base}{two}")).unwrap()).is_empty());
        let chosen = parse("x", &format!("{base}{two}forward = true\n")).unwrap();
        assert_eq!(shown(&chosen), ["10.0.2.100:8080->101"]);
        // A registry with its own address beside the KBS: the KBS stays the default.
        let registry =
            "[[service]]\nname = \"registry\"\ncommand = [\"r\"]\nguest = \"10.0.2.101:5000\"\nearly = true\n";
        let kbs = "[[service]]\nname = \"kbs\"\ncommand = [\"k\"]\n";
        let s = parse("x", &format!("{base}{registry}{kbs}")).unwrap();
        assert_eq!(shown(&s), ["10.0.2.101:5000->100", "10.0.2.100:8080->101"]);
        assert!(s.service[0].early && !s.service[1].early);
        // A registry that is down keeps its address (connections are refused).
        let down = "[[service]]\nname = \"registry\"\nrunning = false\nguest = \"10.0.2.101:5000\"\n";
        assert_eq!(shown(&parse("x", &format!("{base}{down}")).unwrap()), ["10.0.2.101:5000->100"]);
        let errors = [
            (format!("{base}{registry}forward = true\n"), "not both"),
            (format!("{base}{registry}{}", registry.replace("\"registry\"", "\"r2\"")), "forwarded twice"),
            (format!("{base}{}", registry.replace("10.0.2.101", "10.0.2.2")), "guest network"),
            (format!("{base}{}", down.replace("running = false", "running = false\nearly = true")), "early"),
        ];
        for (text, want) in errors {
            let e = format!("{:#}", parse("x", &text).unwrap_err());
            assert!(e.contains(want), "{want}: {e}");
        }
    }

    #[test]
    fn early_services_run_before_the_prepare_steps_and_stop_with_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().display();
        let text = format!(
            r#"description = "d"
manifest = "m"
exit = 0
[[prepare]]
command = ["sh", "-c", "cat {d}/early.log > {{scratch}}/seen; echo {{port.early}} > {{scratch}}/port"]
[[service]]
name = "early"
early = true
command = ["sh", "-c", "echo early-ready on {{port}}; exec sleep 60"]
ready = "early-ready"
[[service]]
name = "late"
command = ["sh", "-c", "echo late; exec sleep 60"]
"#
        );
        let s = parse("x", &text).unwrap();
        let mut v = Vars::new(dir.path(), Path::new("/k"), Path::new("/i")).unwrap();
        v.ports.insert("early".into(), 4321);
        v.ports.insert("late".into(), 4322);
        let mut running = Running::default();
        let log = |name: &str| dir.path().join(format!("{name}.log"));
        early_services_and_prepare(&s, &v, &mut running, &log).unwrap();
        assert_eq!(std::fs::read_to_string(dir.path().join("seen")).unwrap(), "early-ready on 4321\n");
        assert_eq!(std::fs::read_to_string(dir.path().join("port")).unwrap(), "4321\n");
        assert!(!log("late").exists(), "only early services start before the prepare steps");
        let pid = running.children[0].1.id();
        running.stop();
        // SAFETY: signal 0 only checks whether the (now reaped) process exists.
        let alive = unsafe { libc::kill(i32::try_from(pid).unwrap(), 0) } == 0;
        assert!(!alive, "the early service was stopped");
    }

    #[test]
    fn prepare_steps_can_name_service_ports() {
        let mut v = Vars::new(Path::new("/s"), Path::new("/k"), Path::new("/i")).unwrap();
        v.ports.insert("registry".into(), 5000);
        assert_eq!(v.expand("127.0.0.1:{port.registry}").unwrap(), "127.0.0.1:5000");
        assert!(v.expand("{port.kbs}").is_err());
    }

    #[test]
    fn root_disk_scenarios_parse() {
        let base = "description = \"d\"\nmanifest = \"m\"\nexit = 0\n";
        assert_eq!(parse("x", base).unwrap().format, ImageFormat::Initramfs);
        let s = parse("x", &format!("{base}format = \"disk\"\nroot_disk = \"{{scratch}}/t.disk\"\n")).unwrap();
        assert_eq!((s.format, s.root_disk.as_deref()), (ImageFormat::Disk, Some("{scratch}/t.disk")));
        let e = parse("x", &format!("{base}root_disk = \"x\"\n")).unwrap_err().to_string();
        assert!(e.contains("format = \"disk\""), "{e}");
        assert!(parse("x", &format!("{base}format = \"ext4\"\n")).is_err());
    }

    #[test]
    fn disk_serials_are_checked_when_parsed() {
        let base = "description = \"d\"\nmanifest = \"m\"\nexit = 0\n[[disk]]\npath = \"x\"\n";
        let s = parse("d", &format!("{base}serial = \"ztmodel\"\n")).unwrap();
        assert_eq!(s.disk[0].serial.as_deref(), Some("ztmodel"));
        for bad in ["a,b", "twenty-one-characters", ""] {
            let e = parse("d", &format!("{base}serial = {bad:?}\n")).unwrap_err().to_string();
            assert!(e.contains("serial"), "{bad}: {e}");
        }
    }
}
