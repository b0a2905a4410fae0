//! The glue of each boot stage: what `main.rs`'s `boot` calls, in order.
//! Each function does one stage with the real paths of the system and ends
//! the boot with that stage's FATAL line when it fails; the work itself is
//! in the stage's own module, which the unit tests drive against temporary
//! trees.

use std::path::Path;
use std::time::Duration;

use zeroize::Zeroizing;

use crate::config::{self, Config, LaunchMode, NetworkMode, OnExit, RootFiles};
use crate::gpu::{self, AttesterEnv, GpuAttester};
use crate::lockdown::{self, KernelRemount};
use crate::modules::{self, KernelLoader, ModulesConfig, ModulesEnv};
use crate::power::{self, Outcome};
use crate::sandbox::{CompiledSeccomp, LaunchPlan, Launched, SandboxError};
use crate::supervise::{self, Scope, Supervisor};
use crate::tee::initdata::Initdata;
use crate::tee::{self, EvidenceProvider, TeePaths};
use crate::timeline::{self, Stage, Timeline};
use crate::volume::{self, VolumePaths};
use crate::{console, kbs, kernel_params, kmsg, mount, net, secrets};

/// The value, or the FATAL line of `stage` and the end of the boot.
pub fn or_fatal<T, E: std::fmt::Display>(stage: Stage, r: Result<T, E>) -> T {
    r.unwrap_or_else(|e| power::fatal(stage, &e))
}

#[derive(Debug, thiserror::Error)]
pub enum EarlyError {
    #[error(transparent)]
    Mount(#[from] mount::MountError),
    #[error(transparent)]
    Console(#[from] console::ConsoleError),
    #[error(transparent)]
    Signals(#[from] supervise::SuperviseError),
    #[error(transparent)]
    Loopback(#[from] net::NetError),
}

/// Signals first; then the mounts, the console, logging and loopback in a
/// thread of their own while this thread reads, parses and validates the
/// baked configuration ([`ParsingConfig`]): every later stage waits on the
/// configuration, so its work starts at once, and a new thread's start
/// (tens of ms under emulation) delays the mounts instead. As soon as the
/// sections the network and the KBS client need have validated, the
/// network comes up and the client starts (`start_ahead`), while the rest of
/// the configuration is checked.
pub fn early() -> (Result<(), EarlyError>, ParsingConfig) {
    // Signals first: nothing may be delivered the classic way to PID 1.
    if let Err(e) = supervise::block_signals() {
        kmsg::notice(&crate::version::line());
        power::fatal(Stage::Early, &EarlyError::from(e));
    }
    let started = std::time::Instant::now();
    crate::prefault::own_code();
    let prefaulted = started.elapsed();
    let slot = std::sync::Arc::new(CmdlineSlot::new(None));
    let handover = CmdlineHandover { slot: std::sync::Arc::clone(&slot), to: std::thread::current() };
    let (mut thread, mut done) =
        match std::thread::Builder::new().name("early".into()).spawn(move || set_up_system(&handover, prefaulted)) {
            Ok(handle) => (Some(handle), None),
            // No thread: the system first, then the file.
            Err(_) => {
                let handover = CmdlineHandover { slot: std::sync::Arc::clone(&slot), to: std::thread::current() };
                (None, Some(joined(set_up_system(&handover, prefaulted))))
            }
        };
    let mut ahead = Ahead::default();
    let mut parsed = parse_baked(&slot, &mut |first| {
        let started = std::time::Instant::now();
        // The network needs the mounts and logs its lines: the early
        // thread is done first, and nothing starts when it failed.
        let result = done.get_or_insert_with(|| join_early(thread.take()));
        if result.is_ok() {
            ahead = start_ahead(first);
        }
        ahead.took = started.elapsed();
    });
    // The configuration's own time, without what started ahead.
    parsed.parse_validate = parsed.parse_validate.saturating_sub(ahead.took);
    parsed.ahead = ahead;
    let result = done.unwrap_or_else(|| join_early(thread.take()));
    (result, ParsingConfig(parsed))
}

type EarlyThread = std::thread::JoinHandle<Result<(), EarlyError>>;

fn join_early(thread: Option<EarlyThread>) -> Result<(), EarlyError> {
    // A panic in the thread has already ended the boot (the panic hook).
    let result = thread.map(|t| t.join().unwrap_or_else(|_| power::fatal(Stage::Early, &"the early thread panicked")));
    joined(result.unwrap_or(Ok(())))
}

/// The system is set up (or failed to be): the logger is there, and the
/// version line is the first it logs of this boot.
#[inline(always)]
fn joined(result: Result<(), EarlyError>) -> Result<(), EarlyError> {
    kmsg::notice(&crate::version::line());
    result
}

/// What starts before the configuration is fully checked, from its first
/// sections alone ([`config::FIRST_SECTIONS`]).
#[derive(Default)]
struct Ahead {
    kbs: Option<PreparingKbs>,
    network: Option<Result<(), net::NetError>>,
    took: Duration,
}

/// The KBS client needs only `[tee]`, which is baked-only, and `[kbs]`:
/// unless the baked file opens a `kbs.` key to initdata, both are final
/// once they validate, and the client's TLS state and keys are made while
/// the rest of the configuration is checked. Likewise `[network]`: brought
/// up now, so that the client connects meanwhile. Nothing is sent to the
/// KBS before the attest stage, and a configuration problem found later
/// still ends the boot first; how the network went is the network stage's
/// to report, after the config stage's own failures.
fn start_ahead(first: &Config) -> Ahead {
    kmsg::set_level(first.boot.log_level.filter());
    let kbs = (!initdata_may_set(first, "kbs.")).then(|| prepare_kbs(first));
    let network = (!initdata_may_set(first, "network.")).then(|| {
        let up = bring_up_network(&first.network);
        if let (Ok(()), Some(kbs)) = (&up, &kbs) {
            kbs.network_up();
        }
        up
    });
    Ahead { kbs, network, took: Duration::ZERO }
}

/// Mounts, the console, the logger, PID 1's OOM score and loopback. The
/// kernel command line goes to the boot thread as soon as /proc is there.
/// `prefaulted`: how long mapping ztinit's code took, logged once the
/// logger is up.
fn set_up_system(handover: &CmdlineHandover, prefaulted: Duration) -> Result<(), EarlyError> {
    let started = std::time::Instant::now();
    let mut mounter = mount::SystemMounter;
    let proc_mounted = mount::setup_proc(Path::new("/"), &mut mounter);
    let cmdline = config::read_cmdline(Path::new("/proc/cmdline"));
    let level = early_log_level(cmdline.as_deref().unwrap_or_default());
    handover.give(cmdline);
    let mounted = proc_mounted.and_then(|()| mount::setup_rest(Path::new("/"), &mut mounter));
    let mounts = started.elapsed();
    // The console and the logger come up even when a mount failed, so the
    // failure can be reported.
    let console = console::attach(Path::new("/dev"));
    kmsg::init(Path::new("/dev"), Path::new("/proc"), level);
    timeline::log_part("prefault", prefaulted);
    timeline::log_part("mounts", mounts);
    // The OOM killer must pick the workload, never PID 1 (the score is the
    // process's, whichever thread writes it).
    let _ = std::fs::write("/proc/self/oom_score_adj", "-1000");
    // Loopback comes up in every configuration: here, while the boot
    // thread is still at work on the configuration.
    let loopback = net::IoctlNet::new().and_then(|mut ops| net::loopback_up(&mut ops));
    match (mounted, console, loopback) {
        (Err(e), _, _) => Err(e.into()),
        (Ok(_), Err(e), _) => Err(e.into()),
        (Ok(_), Ok(()), Err(e)) => Err(e.into()),
        (Ok(_), Ok(()), Ok(())) => Ok(()),
    }
}

/// The baked file, read and parsed by the boot thread during `early`, and
/// validated once the early thread hands it the kernel command line (read
/// once /proc is mounted). The files a configuration references must lie
/// outside the volatile trees `early` mounts ([`config::open_image_file`]),
/// so the mounts cannot change what it reads. Nothing is logged before the
/// early thread is joined (the logger may not be up yet): the parts' times
/// wait for the config stage.
pub struct ParsingConfig(Parsed);

/// The kernel command line, or why it could not be read, on its way from
/// the early thread to the boot thread.
type CmdlineSlot = std::sync::Mutex<Option<Result<String, config::ConfigError>>>;

struct CmdlineHandover {
    slot: std::sync::Arc<CmdlineSlot>,
    to: std::thread::Thread,
}

impl CmdlineHandover {
    /// Gives the boot thread the kernel command line (or the reason it
    /// could not be read, which the config stage reports).
    fn give(&self, cmdline: Result<String, config::ConfigError>) {
        *self.slot.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(cmdline);
        self.to.unpark();
    }
}

/// What parsing the baked file gave, with its parts' times, and what
/// started ahead of the rest of the boot.
struct Parsed {
    result: Result<ParsedConfig, config::ConfigError>,
    read: Duration,
    parse_validate: Duration,
    ahead: Ahead,
}

struct ParsedConfig {
    text: String,
    cmdline: String,
    config: Config,
}

/// Waits (parked) until the early thread has handed over the command line.
fn wait_for_cmdline(slot: &CmdlineSlot) -> Result<String, config::ConfigError> {
    loop {
        if let Some(cmdline) = slot.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take() {
            return cmdline;
        }
        std::thread::park();
    }
}

/// `first_ready`: see [`Config::from_table_then`].
fn parse_baked(cmdline: &CmdlineSlot, first_ready: &mut dyn FnMut(&Config)) -> Parsed {
    let path = Path::new(config::DEFAULT_PATH);
    let origin = path.display().to_string();
    let started = std::time::Instant::now();
    let text = match config::read_baked(path) {
        Ok(t) => t,
        Err(e) => {
            let read = started.elapsed();
            return Parsed { result: Err(e), read, parse_validate: Duration::ZERO, ahead: Ahead::default() };
        }
    };
    let read = started.elapsed();
    let started = std::time::Instant::now();
    let table = config::parse_table(&origin, &text);
    let parsed = started.elapsed();
    let cmdline = match wait_for_cmdline(cmdline) {
        Ok(c) => c,
        Err(e) => return Parsed { result: Err(e), read, parse_validate: parsed, ahead: Ahead::default() },
    };
    let started = std::time::Instant::now();
    let files = RootFiles::new("/");
    let result = table.and_then(|table| {
        let sources = config::Sources { origin: &origin, text: &text, cmdline: Some(&cmdline), files: &files };
        Config::from_table_then(sources, table, first_ready)
    });
    let parse_validate = parsed + started.elapsed();
    let result = result.map(|config| ParsedConfig { text, cmdline, config });
    Parsed { result, read, parse_validate, ahead: Ahead::default() }
}

/// Info, or debug when the kernel command line asks for it (`ztinit.log=debug`,
/// a knob the host may set anyway): so the config stage's own parts are
/// logged for `cargo xtask bench` before the configuration sets the level.
fn early_log_level(cmdline: &str) -> log::LevelFilter {
    let debug = cmdline.split_whitespace().any(|w| w == "ztinit.log=debug" || w == "ztinit.boot.log_level=debug");
    if debug { log::LevelFilter::Debug } else { log::LevelFilter::Info }
}

/// What the config stage hands on: the validated configuration, and the
/// TEE evidence provider when initdata already required detecting it.
pub struct Loaded {
    pub config: Config,
    pub tee: Option<Box<dyn EvidenceProvider>>,
    pub initdata: Option<Initdata>,
    /// The KBS client, prepared as soon as the baked `[tee]` and `[kbs]`
    /// validated when nothing after that can change `[kbs]` (during
    /// `early`; [`prepare_kbs`] after the config stage otherwise).
    pub kbs: Option<PreparingKbs>,
    /// The network, when it was brought up as soon as `[network]`
    /// validated (nothing after that can change it): how that went.
    pub network: Option<Result<(), net::NetError>>,
    /// The SHA-256 of the baked file's text, which the image's precompiled
    /// seccomp program must name ([`compile_seccomp`]).
    pub baked: [u8; 32],
}

/// The baked file, the kernel command line and, when the baked `[tee]`
/// opens keys to it, initdata bound to the launch.
pub fn load_config(parsing: ParsingConfig) -> Loaded {
    let origin = config::DEFAULT_PATH.to_string();
    let files = RootFiles::new("/");
    let parsed = parsing.0;
    timeline::log_part("read-config", parsed.read);
    timeline::log_part("parse-validate", parsed.parse_validate);
    let Ahead { kbs, network, .. } = parsed.ahead;
    let ParsedConfig { text, cmdline, mut config } = parsed.result.unwrap_or_else(|e| config_fatal(&e));
    let baked = crate::sandbox::precompiled::config_digest(&text);
    let sources = || config::Sources { origin: &origin, text: &text, cmdline: Some(&cmdline), files: &files };
    apply_boot_settings(&config);
    let part = timeline::part("kernel-params");
    check_kernel_params(&cmdline, &config);
    drop(part);

    // Initdata (Kata): bound to the launch through HOSTDATA / MRCONFIGID,
    // so reading it needs the TEE; its `ztinit.toml` entry may then set the
    // keys the baked `[tee] initdata_keys` opens to it. Failing to find the
    // TEE here is a config failure: the configuration asked for it.
    let Some(tee) = config.initdata_policy() else {
        return Loaded { config, tee: None, initdata: None, kbs, network, baked };
    };
    let paths = TeePaths::default();
    let part = timeline::part("tee-detect");
    let mut provider = or_fatal(Stage::Config, tee::detect(&tee, &paths));
    drop(part);
    let part = timeline::part("initdata");
    let volume_disks = volume_disks(&config);
    let initdata = or_fatal(Stage::Config, tee::initdata::load(&tee, &paths, provider.as_mut(), &volume_disks));
    drop(part);
    let overlay = match &initdata {
        Some(doc) => or_fatal(Stage::Config, doc.overlay()),
        None => None,
    };
    if let Some(overlay) = overlay {
        // Parsed again (it parsed before): only a boot whose initdata sets
        // keys pays for it, where keeping a copy cost every boot.
        let mut merged = config::parse_table(&origin, &text).unwrap_or_else(|e| config_fatal(&e));
        let keys = config::overlay::apply(&mut merged, overlay, &config)
            .unwrap_or_else(|issues| config_fatal(&config::ConfigError::Invalid(issues)));
        if !keys.is_empty() {
            log::info!("initdata sets {}", keys.join(", "));
        }
        config = Config::from_table_with_initdata(sources(), merged, &keys).unwrap_or_else(|e| config_fatal(&e));
        apply_boot_settings(&config);
    }
    Loaded { config, tee: Some(provider), initdata, kbs, network, baked }
}

/// True when the baked `[tee] initdata_keys` opens a key of the section
/// `prefix` names (`"kbs."`, `"network."`) to initdata.
fn initdata_may_set(config: &Config, prefix: &str) -> bool {
    config.tee.as_ref().is_some_and(|t| t.initdata_keys.iter().any(|k| k.starts_with(prefix)))
}

/// The kernel names of the disks that `[[volumes]]` entries name by serial,
/// as far as they are there now; a lookup that fails is the volume stage's
/// to report.
fn volume_disks(config: &Config) -> Vec<String> {
    let sys_block = VolumePaths::default().sys_block;
    config
        .volumes
        .iter()
        .filter_map(|v| volume::disk::find_by_serial(&sys_block, &v.serial).ok().flatten())
        .map(|d| d.name)
        .collect()
}

/// Every kernel parameter besides `ztinit.*` must be on the allowlist
/// (built in, plus the baked `[boot] allowed_kernel_params`).
fn check_kernel_params(cmdline: &str, config: &Config) {
    let exe = std::fs::read_link("/proc/self/exe").ok();
    let resolve = |p: &str| std::fs::canonicalize(p).ok();
    let ctx = kernel_params::Context {
        extension: &config.boot.allowed_kernel_params,
        self_exe: exe.as_deref(),
        resolve: &resolve,
        kernel_ip: config.network.mode == NetworkMode::Kernel,
    };
    let n = or_fatal(Stage::Config, kernel_params::check(cmdline, &ctx));
    log::debug!("kernel command line: {n} parameters accepted");
}

fn config_fatal(e: &config::ConfigError) -> ! {
    // A test image must still end through isa-debug-exit when its
    // configuration is refused: take that one flag from the raw file.
    if config::peek_isa_debug_exit(Path::new(config::DEFAULT_PATH)) {
        power::configure(OnExit::Poweroff, true);
    }
    for line in e.issues().iter().skip(1) {
        kmsg::always(3, &format!("ztinit: error: config: {line}"));
    }
    power::fatal(Stage::Config, e)
}

fn apply_boot_settings(config: &Config) {
    kmsg::set_level(config.boot.log_level.filter());
    power::configure(config.boot.on_exit, config.boot.isa_debug_exit);
    if let Some(h) = &config.boot.hostname
        && let Err(e) = rustix::system::sethostname(h.as_bytes())
    {
        log::warn!("sethostname {h}: {e}");
    }
}

/// The network stage: the outcome of the bring-up done while the
/// configuration was checked ([`Loaded::network`]), or the network brought
/// up now.
pub fn network(config: &Config, done: Option<Result<(), net::NetError>>) -> Result<(), net::NetError> {
    done.unwrap_or_else(|| bring_up_network(&config.network))
}

fn bring_up_network(network: &net::NetworkConfig) -> Result<(), net::NetError> {
    let mut ops = net::IoctlNet::new()?;
    // Loopback is up already (`early`).
    net::setup_interface(network, Path::new("/sys/class/net"), net::INTERFACE_WAIT, &mut ops)?;
    match network.mode {
        NetworkMode::None => log::info!("network: loopback only"),
        NetworkMode::Static => log::info!("network: {} {}", network.interface, network.address),
        NetworkMode::Kernel => log::info!("network: configured by the kernel"),
    }
    Ok(())
}

/// The configured modules, before the GPU driver and lockdown. True when
/// any was loaded.
pub fn load_modules(config: &Config) -> bool {
    let loaded =
        or_fatal(Stage::Modules, modules::load_configured(&config.modules, &ModulesEnv::default(), &mut KernelLoader));
    if !loaded.is_empty() {
        log::info!("modules: loaded {}", loaded.join(", "));
    }
    !loaded.is_empty()
}

/// Driver, nvidia-persistenced, helper, CC policy. Evidence is collected
/// during attest, and the GPUs are set ready only after the KBS has
/// accepted it (`lock_down`).
pub fn bring_up_gpus(config: &Config, hooks: &mut GpuHooks) -> Option<GpuAttester> {
    or_fatal(Stage::Gpu, gpu::bring_up(&config.gpu, Path::new("/"), hooks, &AttesterEnv::default()))
}

/// The GPU stage's access to the module loader and to process start-up.
/// Daemons started here are handed to the supervisor, the only reaper.
#[derive(Default)]
pub struct GpuHooks {
    pub daemons: Vec<(libc::pid_t, &'static str)>,
}

impl gpu::DriverHooks for GpuHooks {
    fn load_modules(&mut self, list: &[gpu::bringup::ModuleLoad]) -> Result<(), modules::ModulesError> {
        let cfg = ModulesConfig {
            load: list.iter().map(|m| m.name.to_string()).collect(),
            parameters: list
                .iter()
                .filter(|m| !m.params.is_empty())
                .map(|m| (m.name.to_string(), m.params.join(" ")))
                .collect(),
        };
        modules::load_configured(&cfg, &ModulesEnv::default(), &mut KernelLoader).map(drop)
    }

    fn start_persistenced(&mut self, mut cmd: std::process::Command) -> std::io::Result<Box<dyn FnMut() -> bool>> {
        let child = cmd.env_clear().spawn()?;
        // pid_max is at most 2^22: a pid is a positive pid_t.
        let pid = child.id().cast_signed();
        // Dropping `Child` neither kills nor waits: the supervisor reaps it.
        drop(child);
        self.daemons.push((pid, "nvidia-persistenced"));
        Ok(Box::new(move || supervise::still_running(pid)))
    }
}

/// What attestation released: the credentials directory for the workload
/// (or, for an image, the secrets still to deliver once the image names
/// its user) and the image's credentials and keys, which never leave
/// memory. The volume keys went to the volume stage as they came.
#[derive(Default)]
pub struct Released {
    pub credentials_dir: Option<&'static str>,
    pub image: crate::image::ImageSecrets,
    pub undelivered: Vec<secrets::Secret>,
}

/// The KBS client made in a thread while the network comes up (its TLS
/// configuration and the key its evidence binds), which then opens the
/// connection of the first request as soon as [`PreparingKbs::network_up`]
/// says it can. Empty without a KBS to attest to.
pub struct PreparingKbs(Option<PreparingClient>);

struct PreparingClient {
    handle: std::thread::JoinHandle<Result<kbs::Client, kbs::KbsError>>,
    network_up: std::sync::Arc<NetworkUp>,
    endpoint: kbs::transport::Endpoint,
    key: std::sync::Arc<kbs::EvidenceKey>,
}

/// (the network is up, the TCP connect to the KBS begun then): the boot
/// thread sends the SYN as soon as the network is up, so that the kernel
/// completes the TCP handshake while the client thread is still making its
/// TLS state.
type NetworkUp = std::sync::Mutex<(bool, Option<kbs::transport::Connecting>)>;

/// Starts [`PreparingKbs`] for the configured KBS, if any.
#[inline(never)]
pub fn prepare_kbs(config: &Config) -> PreparingKbs {
    let (Some(_), Some(server)) = (config.effective_tee(), config.kbs.server.clone()) else {
        return PreparingKbs(None);
    };
    let cfg = config.kbs.clone();
    let endpoint = server.url().clone();
    let network_up = std::sync::Arc::new(NetworkUp::new((false, None)));
    let up = network_up.clone();
    let key = std::sync::Arc::new(kbs::EvidenceKey::default());
    let client_key = key.clone();
    let prepare = move || {
        // The evidence key is the boot thread's to make (`take`), so the
        // connection below does not wait for it.
        let client = kbs::Client::with_key(&server, &cfg, client_key)?;
        client.prepare_ahead();
        // Unparked by `network_up` (a failed network stage ends the boot
        // instead; park may also return early, hence the flag).
        let started = loop {
            let mut state = up.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            if state.0 {
                break state.1.take();
            }
            drop(state);
            std::thread::park();
        };
        client.connect_ahead(started);
        Ok(client)
    };
    // No thread: the attest stage makes the client itself.
    let spawned = std::thread::Builder::new().name("kbs-client".into()).spawn(prepare).ok();
    PreparingKbs(spawned.map(|handle| PreparingClient { handle, network_up, endpoint, key }))
}

impl PreparingKbs {
    /// The network is configured: the TCP connect to the KBS begins (once,
    /// however often this is called) and the client may go on.
    pub fn network_up(&self) {
        if let Some(p) = &self.0 {
            let mut state = p.network_up.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            if !state.0 {
                *state = (true, kbs::transport::Connecting::start(&p.endpoint));
                p.handle.thread().unpark();
            }
        }
    }

    fn take(self) -> Option<Result<kbs::Client, kbs::KbsError>> {
        let p = self.0?;
        // Needed for the evidence, after the handshake: made while the
        // client thread is at it.
        p.key.make();
        let _part = timeline::part("client-wait");
        // A panic in the thread has already ended the boot (the panic hook).
        Some(p.handle.join().unwrap_or_else(|_| power::fatal(Stage::Attest, &"the KBS client thread panicked")))
    }
}

/// The attest and secrets stages: detect the TEE (unless initdata already
/// did), attest with the CPU and GPU evidence, fetch every resource.
/// `detected` and `initdata` are what the config stage found ([`Loaded`]).
pub fn attest_and_fetch(
    config: &Config,
    detected: Option<Box<dyn EvidenceProvider>>,
    initdata: Option<&Initdata>,
    preparing: PreparingKbs,
    gpus: Option<&mut GpuAttester>,
    volumes: &mut PreparingVolumes,
    timeline: &mut Timeline,
) -> Released {
    let Some(tee) = config.effective_tee() else {
        timeline.skipped(Stage::Attest);
        timeline.skipped(Stage::Secrets);
        return Released::default();
    };
    let mut provider = match detected {
        Some(p) => p,
        None => {
            let _part = timeline::part("tee-detect");
            or_fatal(Stage::Attest, tee::detect(&tee, &TeePaths::default()))
        }
    };
    // tee::detect has already warned when the sample TEE stands in.
    let kind = provider.kind();
    log::info!("TEE: {kind}");
    let Some(server) = &config.kbs.server else {
        log::info!("no [kbs] configured: nothing to attest to");
        timeline.done(Stage::Attest);
        timeline.skipped(Stage::Secrets);
        return Released::default();
    };
    let client = match preparing.take() {
        Some(prepared) => or_fatal(Stage::Attest, prepared),
        None => or_fatal(Stage::Attest, kbs::Client::new(server, &config.kbs)),
    };
    let init_data = initdata.map(|d| kbs::InitData::toml(d.body()));
    let mut devices: Vec<&mut dyn kbs::DeviceEvidence> = Vec::new();
    if let Some(g) = gpus {
        devices.push(g);
    }
    let mut session = or_fatal(Stage::Attest, client.attest(provider.as_mut(), devices, init_data.as_ref()));
    log::info!("KBS {} accepted the {kind} evidence", server.url());
    timeline.done(Stage::Attest);

    // Volume keys first: each volume's dm-crypt and mount then run in the
    // volume thread while the rest is fetched and delivered.
    for vol in config.volumes.iter() {
        volumes.give_key(or_fatal(Stage::Secrets, session.fetch(&vol.key)));
    }
    let mut files = Vec::new();
    for s in &config.secrets {
        files.push(secrets::Secret::new(&s.file, s.mode, or_fatal(Stage::Secrets, session.fetch(&s.resource))));
    }
    let mut image = crate::image::ImageSecrets::default();
    if let Some(resource) = &config.image.credentials {
        image.credentials = Some(or_fatal(Stage::Secrets, session.fetch(resource)));
    }
    for resource in &config.image.decryption_keys {
        image.decryption_keys.push(or_fatal(Stage::Secrets, session.fetch(resource)));
    }
    let (connections, requests) = client.counts();
    log::info!("KBS: {requests} request(s) on {connections} connection(s)");
    if config.image.is_enabled() {
        // Delivered by the image stage, owned by the user the image names.
        timeline.stage(Stage::Secrets, true);
        return Released { credentials_dir: None, image, undelivered: files };
    }
    let credentials_dir = if files.is_empty() {
        None
    } else {
        let owner = secrets::Owner { uid: config.workload.user, gid: config.workload.group };
        let _part = timeline::part("deliver");
        Some(or_fatal(Stage::Secrets, secrets::deliver(Path::new("/"), &mut secrets::SystemSecretsFs, owner, files)))
    };
    timeline.stage(Stage::Secrets, credentials_dir.is_some() || !config.volumes.is_empty());
    Released { credentials_dir, image, undelivered: Vec::new() }
}

/// The image stage: pull, verify, decrypt and unpack `[image]` in the
/// confined helper, deliver the secrets to the user the image names, and
/// mount what the workload sees besides the image. `None` without `[image]`.
pub fn pull_image(config: &Config, released: &mut Released) -> Option<PulledImage> {
    if !config.image.is_enabled() {
        return None;
    }
    let base = Path::new(crate::image::root::IMAGE_BASE);
    let mut mounter = crate::image::root::SystemRootMounter;
    let write = vec![base.display().to_string()];
    let env = crate::image::PullEnv {
        host_root: Path::new("/"),
        base,
        confinement: crate::image::helper::Confinement::Sandboxed { write },
        mounter: &mut mounter,
    };
    let secrets = std::mem::take(&mut released.image);
    let pulled = or_fatal(Stage::Image, crate::image::pull(&config.image, secrets, env));
    let a = &pulled.answer;
    log::info!(
        "image {} verified ({}), {} layer(s), {} unpacked",
        a.manifest_digest,
        a.verified_by,
        a.layers,
        crate::image::human_size(a.unpacked_bytes)
    );
    let workload = or_fatal(Stage::Image, crate::image::workload(&config.image, a, &pulled.dirs.root));
    let files = std::mem::take(&mut released.undelivered);
    if !files.is_empty() {
        let owner = secrets::Owner { uid: workload.uid, gid: workload.gid };
        released.credentials_dir =
            Some(or_fatal(Stage::Image, secrets::deliver(Path::new("/"), &mut secrets::SystemSecretsFs, owner, files)));
    }
    let mounts = crate::image::root::RuntimeMounts {
        secrets: released.credentials_dir.map(std::path::PathBuf::from),
        volumes: config.volumes.iter().map(|v| std::path::PathBuf::from(&v.mountpoint)).collect(),
        devices: crate::sandbox::fs_access::expand_devices(&config.sandbox.devices)
            .into_iter()
            .filter(|d| !crate::image::root::is_minimal_node(d))
            .collect(),
    };
    or_fatal(Stage::Image, crate::image::root::mount_runtime(&pulled.dirs, Path::new("/"), &mounts, &mut mounter));
    Some(PulledImage { workload, root: pulled.dirs.root })
}

/// The image's workload and the root it runs in.
pub struct PulledImage {
    pub workload: crate::image::ImageWorkload,
    pub root: std::path::PathBuf,
}

/// Opening the volumes, under way in a thread of its own: first the
/// key-independent half of every volume (disk, verity device, the full
/// check), so that reading and hashing the whole volume overlaps the GPU
/// and attest stages; then each volume's dm-crypt and mount as soon as the
/// KBS has released its key ([`PreparingVolumes::give_key`]), while the
/// secrets stage fetches and delivers the rest.
pub struct PreparingVolumes(Preparing);

/// The volumes opened, in order, up to the first without a key; or the
/// first failure.
type Opening = Result<Vec<volume::OpenVolume>, volume::VolumeError>;

enum Preparing {
    None,
    Thread {
        handle: std::thread::JoinHandle<Opening>,
        keys: std::sync::Arc<KeyQueue>,
    },
    /// The thread could not be started: the volume stage does it all,
    /// with the keys kept here.
    Later(Vec<Zeroizing<Vec<u8>>>),
}

impl PreparingVolumes {
    /// The key of the next `[[volumes]]` entry, in order, handed on as
    /// soon as the KBS released it. A thread that has stopped at a failure
    /// (the volume stage reports it) drops the key, which zeroizes it.
    pub fn give_key(&mut self, key: Zeroizing<Vec<u8>>) {
        match &mut self.0 {
            Preparing::None => {}
            Preparing::Thread { keys, .. } => keys.push(key),
            Preparing::Later(keys) => keys.push(key),
        }
    }
}

/// Starts opening every `[[volumes]]` entry, in order, stopping at the
/// first failure (reported by the volume stage). After the modules stage:
/// dm-verity may be a module.
pub fn prepare_volumes(config: &Config) -> PreparingVolumes {
    if config.volumes.is_empty() {
        return PreparingVolumes(Preparing::None);
    }
    let volumes = config.volumes.clone();
    let keys = std::sync::Arc::new(KeyQueue::default());
    let received = std::sync::Arc::clone(&keys);
    let spawned = std::thread::Builder::new().name("volumes".into()).spawn(move || {
        let paths = VolumePaths::default();
        let mut prepared = Vec::new();
        for v in volumes.iter() {
            prepared.push(volume::prepare(v, &paths)?);
        }
        let mut opened = Vec::new();
        for (v, p) in volumes.iter().zip(prepared) {
            // No key: the boot ended, or released none (the volume stage says so).
            let Some(key) = received.pop() else { break };
            opened.push(finish_volume(p, v, &key, &paths)?);
        }
        Ok(opened)
    });
    match spawned {
        Ok(handle) => PreparingVolumes(Preparing::Thread { handle, keys }),
        Err(e) => {
            log::warn!("volume: cannot start the verification thread ({e}); verifying in the volume stage");
            PreparingVolumes(Preparing::Later(Vec::new()))
        }
    }
}

/// The volume keys on their way to the volume thread, in order (a std
/// channel would cost PID 1 about 20 KiB of code for this one use).
#[derive(Default)]
struct KeyQueue {
    state: std::sync::Mutex<KeyState>,
    changed: std::sync::Condvar,
}

#[derive(Default)]
struct KeyState {
    keys: std::collections::VecDeque<Zeroizing<Vec<u8>>>,
    closed: bool,
}

impl KeyQueue {
    fn lock(&self) -> std::sync::MutexGuard<'_, KeyState> {
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn push(&self, key: Zeroizing<Vec<u8>>) {
        self.lock().keys.push_back(key);
        self.changed.notify_one();
    }

    /// No more keys will come.
    fn close(&self) {
        self.lock().closed = true;
        self.changed.notify_one();
    }

    /// The next key, waiting for it; `None` once closed and empty.
    fn pop(&self) -> Option<Zeroizing<Vec<u8>>> {
        let mut state = self.lock();
        loop {
            if let Some(key) = state.keys.pop_front() {
                return Some(key);
            }
            if state.closed {
                return None;
            }
            state = self.changed.wait(state).unwrap_or_else(std::sync::PoisonError::into_inner);
        }
    }
}

fn finish_volume(
    prepared: volume::Prepared,
    vol: &volume::VolumeConfig,
    key: &[u8],
    paths: &VolumePaths,
) -> Result<volume::OpenVolume, volume::VolumeError> {
    let _part = timeline::part("volume-finish");
    let opened = volume::finish(prepared, vol, key, paths)?;
    if let Err(e) = volume::set_read_ahead(&opened.device, volume::READ_AHEAD_KIB) {
        log::warn!("volume {}: cannot set the read-ahead to {} KiB: {e}", vol.name, volume::READ_AHEAD_KIB);
    }
    Ok(opened)
}

/// dm-verity + dm-crypt with the released keys, mounted read-only for the
/// life of the VM (volume::finish logs what it opened and verified). The
/// keys are dropped, and zeroized, once the kernel holds them. True when
/// any volume was opened.
pub fn open_volumes(config: &Config, preparing: PreparingVolumes) -> bool {
    let paths = VolumePaths::default();
    let opened: Opening = match preparing.0 {
        Preparing::None => return false,
        Preparing::Later(keys) => {
            let mut opened = Vec::new();
            for (vol, key) in config.volumes.iter().zip(keys) {
                let prepared = or_fatal(Stage::Volume, volume::prepare(vol, &paths));
                opened.push(or_fatal(Stage::Volume, finish_volume(prepared, vol, &key, &paths)));
            }
            Ok(opened)
        }
        Preparing::Thread { handle, keys } => {
            // Every key released has been given: the thread stops at the
            // first volume without one.
            keys.close();
            // A panic in the thread has already ended the boot (the panic
            // hook powers off); this is for completeness.
            handle.join().unwrap_or_else(|_| power::fatal(Stage::Volume, &"the volume thread panicked"))
        }
    };
    let opened = or_fatal(Stage::Volume, opened);
    if let Some(vol) = config.volumes.get(opened.len()) {
        power::fatal(Stage::Volume, &format!("volume {}: the KBS released no key for it", vol.name));
    }
    log_crypto_drivers();
    true
}

/// The kernel's chosen cipher and hash drivers, from /proc/crypto (which
/// lists the dm-crypt instance only once its table is loaded): read in a
/// thread, since generating that file costs several ms under emulation
/// and nothing waits for the line.
fn log_crypto_drivers() {
    let describe = || log::info!("volume crypto: {}", volume::crypto::describe(Path::new("/proc/crypto")));
    if std::thread::Builder::new().name("crypto-drivers".into()).spawn(describe).is_err() {
        describe();
    }
}

/// GPUs ready (the KBS has accepted them), then the kernel knobs,
/// modules_disabled last.
pub fn lock_down(config: &Config, gpus: Option<GpuAttester>) {
    if let Some(mut g) = gpus {
        or_fatal(Stage::Lockdown, g.set_ready());
        g.finish();
    }
    // Test images keep their isa-debug-exit port: lockdown refuses ioperm.
    if let Err(e) = power::keep_debug_exit_port(config.workload.mode == LaunchMode::Handoff) {
        log::error!("lockdown: cannot keep the isa-debug-exit port: {e}");
    }
    or_fatal(Stage::Lockdown, lockdown::apply(&config.lockdown, &lockdown::Paths::default(), &KernelRemount));
}

/// The workload's seccomp program: the image's, compiled from the baked
/// configuration by `xtask image` (`sandbox::precompiled`), or being
/// compiled in a thread of its own while the guest attests (it depends on
/// the configuration only).
pub enum CompilingSeccomp {
    Ready(CompiledSeccomp),
    Thread(std::thread::JoinHandle<Result<CompiledSeccomp, SandboxError>>),
    /// No thread could be started: the launch stage compiles it.
    Later,
}

impl CompilingSeccomp {
    /// The program, `None` when the launch stage is to compile it.
    fn finish(self) -> Option<Result<CompiledSeccomp, SandboxError>> {
        match self {
            CompilingSeccomp::Ready(c) => Some(Ok(c)),
            CompilingSeccomp::Thread(handle) => {
                let _part = timeline::part("seccomp-wait");
                // A panic in the thread has already ended the boot (the panic hook).
                Some(
                    handle
                        .join()
                        .unwrap_or_else(|_| power::fatal(Stage::Launch, &"the seccomp compiler thread panicked")),
                )
            }
            CompilingSeccomp::Later => None,
        }
    }
}

/// The image's program when it was made from this baked configuration
/// (`baked`: its SHA-256) by this build; otherwise starts compiling it,
/// and when no thread can be started the launch stage compiles it.
pub fn compile_seccomp(config: &Config, baked: &[u8; 32]) -> CompilingSeccomp {
    use crate::sandbox::precompiled;
    match precompiled::load(Path::new(precompiled::PATH), baked, &config.sandbox) {
        Ok(Some(precompiled::Precompiled { program, no_kills })) => {
            log::info!(
                "sandbox: seccomp program {} ({} instructions) precompiled by the image",
                program.name,
                program.len()
            );
            if no_kills {
                crate::sandbox::warn_no_kills_in_handoff(&program.name);
            }
            return CompilingSeccomp::Ready(CompiledSeccomp(Some(program)));
        }
        Ok(None) => {}
        Err(e) => log::warn!("sandbox: {e}; compiling the seccomp program at boot"),
    }
    let (workload, sandbox) = (config.workload.clone(), config.sandbox.clone());
    let spawned = std::thread::Builder::new().name("seccomp".into()).spawn(move || {
        // Needed only at launch.
        crate::background::lower_this_thread();
        LaunchPlan::compile_seccomp(&workload, &sandbox)
    });
    match spawned {
        Ok(handle) => CompilingSeccomp::Thread(handle),
        Err(e) => {
            log::warn!("sandbox: cannot start the seccomp compiler thread ({e}); compiling at launch");
            CompilingSeccomp::Later
        }
    }
}

/// Starts the workload in its sandbox. In handoff mode the workload
/// replaces ztinit as PID 1 and this never returns.
pub fn launch(
    config: &Config,
    released: &Released,
    seccomp: CompilingSeccomp,
    image: Option<&PulledImage>,
    timeline: &mut Timeline,
) -> Launched {
    let mut env = Vec::new();
    if let Some(dir) = released.credentials_dir {
        env.push((secrets::CREDENTIALS_ENV.to_string(), dir.to_string()));
    }
    if let Some(image) = image {
        return launch_image(config, image, &env, seccomp, timeline);
    }
    let planned = match seccomp.finish() {
        Some(compiled) => {
            LaunchPlan::with_seccomp(&config.workload, &config.sandbox, &env, or_fatal(Stage::Launch, compiled))
        }
        None => LaunchPlan::new(&config.workload, &config.sandbox, &env),
    };
    let plan = or_fatal(Stage::Launch, planned);
    if plan.mode() == LaunchMode::Handoff {
        kmsg::notice(&format!("handing PID 1 over to {}", config.workload.path));
        timeline.done(Stage::Launch);
        match plan.exec_in_place() {
            Err(e) => power::fatal(Stage::Launch, &e),
            Ok(never) => match never {},
        }
    }
    let part = timeline::part("fork-exec");
    let launched = or_fatal(Stage::Launch, plan.spawn());
    drop(part);
    kmsg::notice(&format!("workload started: {} (pid {})", config.workload.path, launched.pid));
    timeline.done(Stage::Launch);
    launched
}

fn launch_image(
    config: &Config,
    image: &PulledImage,
    env: &[(String, String)],
    seccomp: CompilingSeccomp,
    timeline: &mut Timeline,
) -> Launched {
    let w = &image.workload;
    let process = crate::sandbox::Process {
        path: &w.path,
        args: &w.args,
        env: &w.env,
        user: w.uid,
        group: w.gid,
        supplementary_groups: &w.groups,
        workdir: &w.workdir,
        mode: LaunchMode::Supervise,
    };
    let opts = crate::sandbox::LaunchOptions { new_root: Some(image.root.clone()), ..Default::default() };
    // The profile was compiled from the configuration alone while the
    // guest attested; it does not depend on the program.
    let planned = match seccomp.finish() {
        Some(c) => {
            LaunchPlan::for_process_with_seccomp(&process, &config.sandbox, env, &opts, or_fatal(Stage::Launch, c))
        }
        None => LaunchPlan::for_process(&process, &config.sandbox, env, &opts),
    };
    let plan = or_fatal(Stage::Launch, planned);
    let part = timeline::part("fork-exec");
    let launched = or_fatal(Stage::Launch, plan.spawn());
    drop(part);
    kmsg::notice(&format!("workload started: {} from the image (pid {})", w.path, launched.pid));
    timeline.done(Stage::Launch);
    launched
}

/// Reaps, forwards signals and relays the workload's output until it ends
/// (then the shutdown timeout for the rest); the daemons of the GPU stage
/// are watched too.
pub fn supervise(config: &Config, launched: Launched, daemons: Vec<(libc::pid_t, &'static str)>) -> Outcome {
    let shutdown = Duration::from_millis(config.boot.shutdown_timeout_ms);
    let console = supervise::nonblocking_console(Path::new("/dev"));
    let mut supervisor = or_fatal(Stage::Supervise, Supervisor::new(launched.pid, Scope::System, shutdown, console));
    supervisor.add_output(launched.stdout, "workload: ");
    supervisor.add_output(launched.stderr, "workload: ");
    for (pid, name) in daemons {
        supervisor.watch(pid, name);
    }
    supervisor.run()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_initdata_keys(keys: &[&str]) -> Config {
        let tee = crate::tee::TeeConfig {
            initdata_keys: keys.iter().map(ToString::to_string).collect(),
            ..Default::default()
        };
        Config { tee: Some(tee), ..Default::default() }
    }

    #[test]
    fn volume_keys_reach_the_volume_thread_in_order_and_end_when_closed() {
        let queue = std::sync::Arc::new(KeyQueue::default());
        let received = std::sync::Arc::clone(&queue);
        // The thread waits for keys that come later, as the volume thread
        // does while the KBS answers.
        let thread = std::thread::spawn(move || std::iter::from_fn(|| received.pop()).collect::<Vec<_>>());
        std::thread::sleep(Duration::from_millis(20));
        queue.push(Zeroizing::new(b"first".to_vec()));
        queue.push(Zeroizing::new(b"second".to_vec()));
        queue.close();
        let keys = thread.join().unwrap();
        let keys: Vec<&[u8]> = keys.iter().map(|k| k.as_slice()).collect();
        assert_eq!(keys, [b"first".as_slice(), b"second"]);
        // Closed and empty: no waiting.
        assert!(queue.pop().is_none());
    }

    #[test]
    fn kbs_and_network_are_final_after_the_baked_file_unless_initdata_may_set_them() {
        assert!(!initdata_may_set(&Config::default(), "kbs."));
        assert!(!initdata_may_set(&Config::default(), "network."));
        let kbs_url = with_initdata_keys(&["boot.log_level", "kbs.url"]);
        assert!(initdata_may_set(&kbs_url, "kbs."));
        assert!(!initdata_may_set(&kbs_url, "network."));
        let address = with_initdata_keys(&["network.address"]);
        assert!(initdata_may_set(&address, "network."));
        assert!(!initdata_may_set(&address, "kbs."));
    }
}
