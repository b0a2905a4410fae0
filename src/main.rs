//! ztinit: PID 1 of a confidential AI VM. `boot` reads as the boot sequence
//! of DESIGN.md; each step is a module of the library.

use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use zeroize::Zeroizing;
use ztinit::config::LaunchMode;
use ztinit::config::{self, Config, NetworkMode, OnExit, RootFiles};
use ztinit::gpu::{self, AttesterEnv, GpuAttester};
use ztinit::lockdown::{self, KernelRemount};
use ztinit::modules::{self, KernelLoader, ModulesConfig, ModulesEnv};
use ztinit::power;
use ztinit::sandbox::LaunchPlan;
use ztinit::supervise::{self, Scope, Supervisor};
use ztinit::tee::initdata::Initdata;
use ztinit::tee::{self, EvidenceProvider, InitdataMode, TeeConfig, TeePaths};
use ztinit::timeline::Timeline;
use ztinit::volume::{self, VolumePaths};
use ztinit::{console, kmsg, mount, net, version};
use ztinit::{kbs, secrets};

fn main() -> ExitCode {
    if rustix::process::getpid().is_init() {
        boot()
    }
    cli(std::env::args().skip(1).collect())
}

/// Not PID 1: a tool for operators. Touches nothing on the system.
fn cli(args: Vec<String>) -> ExitCode {
    match args.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
        [] | ["--version"] | ["-V"] => {
            println!("{}", version::line());
            ExitCode::SUCCESS
        }
        ["check-config", file] => check_config(file, None),
        ["check-config", file, "--root", root] | ["check-config", "--root", root, file] => {
            check_config(file, Some(root))
        }
        ["--help"] | ["-h"] => {
            println!("{}\n\n{USAGE}", version::line());
            ExitCode::SUCCESS
        }
        _ => {
            eprintln!("{USAGE}");
            ExitCode::from(2)
        }
    }
}

const USAGE: &str = "usage: ztinit [--version]
       ztinit check-config FILE [--root DIR]

As PID 1, ztinit boots the guest from /etc/ztinit.toml. Run by hand it only
prints its version, or validates a configuration: check-config prints `ok`
or every problem as FILE:LINE: KEY: MESSAGE and exits 1. With --root, files
the configuration references are checked inside DIR (the image's staging
tree); without it they are checked for form only.";

fn check_config(file: &str, root: Option<&str>) -> ExitCode {
    let text = match config::read_capped(Path::new(file), config::MAX_CONFIG_BYTES).map(String::from_utf8) {
        Ok(Ok(t)) => t,
        Ok(Err(_)) => {
            eprintln!("{file}: not valid UTF-8");
            return ExitCode::FAILURE;
        }
        Err(e) => {
            eprintln!("{file}: {e}");
            return ExitCode::FAILURE;
        }
    };
    let root_files;
    let files: &dyn config::Files = match root {
        Some(r) => {
            root_files = RootFiles::new(r);
            &root_files
        }
        None => &config::NoFiles,
    };
    match Config::load(config::Sources { origin: file, text: &text, cmdline: None, files }) {
        Ok(_) => {
            println!("ok");
            ExitCode::SUCCESS
        }
        Err(e) => {
            for line in e.issues() {
                println!("{line}");
            }
            ExitCode::FAILURE
        }
    }
}

/// The boot sequence. Never returns: every path ends in `power::end`.
fn boot() -> ! {
    let mut timeline = Timeline::start();
    power::set_pid1(true);
    power::install_panic_hook();

    // early: signals, mounts, console, logging.
    let early = early();
    kmsg::notice(&version::line());
    if let Err(e) = early {
        power::fatal("early", &e);
    }
    timeline.done("early");

    // config: the baked file, initdata, harmless kernel parameters.
    let mut loaded = load_config();
    let config = loaded.config.clone();
    timeline.done("config");

    // network
    or_fatal("network", network(&config));
    timeline.done("network");

    // modules: the configured list, before the GPU driver and lockdown.
    let loaded_modules =
        or_fatal("modules", modules::load_configured(&config.modules, &ModulesEnv::default(), &mut KernelLoader));
    if !loaded_modules.is_empty() {
        log::info!("modules: loaded {}", loaded_modules.join(", "));
    }
    timeline.stage("modules", !loaded_modules.is_empty());

    // gpu: driver, nvidia-persistenced, helper, CC policy. Evidence is
    // collected during attest, and the GPUs are set ready only after the
    // KBS has accepted it.
    let mut hooks = GpuHooks::default();
    let mut gpus = or_fatal("gpu", gpu::bring_up(&config.gpu, Path::new("/"), &mut hooks, &AttesterEnv::default()));
    timeline.stage("gpu", gpus.is_some());

    // attest + secrets: the TEE, the KBS handshake, then every resource.
    let released = match config.effective_tee() {
        Some(tee) => attest_and_fetch(&mut loaded, &tee, gpus.as_mut(), &mut timeline),
        None => {
            timeline.skipped("attest");
            timeline.skipped("secrets");
            Released::default()
        }
    };

    // volume: dm-verity + dm-crypt with the released keys, mounted read-only.
    let mut volume_keys = released.volume_keys;
    for (vol, key) in config.volumes.iter().zip(volume_keys.drain(..)) {
        // volume::open logs what it opened and verified; the volume stays
        // mounted for the life of the VM.
        or_fatal("volume", volume::open(vol, &key, &VolumePaths::default()));
    }
    timeline.stage("volume", !config.volumes.is_empty());

    // lockdown: GPUs ready (the KBS has accepted them), then the kernel
    // knobs, modules_disabled last.
    if let Some(mut g) = gpus.take() {
        or_fatal("lockdown", g.set_ready());
        g.finish();
    }
    or_fatal("lockdown", lockdown::apply(&config.lockdown, Path::new("/proc/sys"), &KernelRemount));
    timeline.done("lockdown");
    kmsg::notice(&timeline.summary());

    // launch
    let mut env = Vec::new();
    if let Some(dir) = released.credentials_dir {
        env.push((secrets::CREDENTIALS_ENV.to_string(), dir.to_string()));
    }
    let plan = or_fatal("launch", LaunchPlan::new(&config.workload, &config.sandbox, &env));
    if plan.mode() == LaunchMode::Handoff {
        kmsg::notice(&format!("handing PID 1 over to {}", config.workload.path));
        timeline.done("launch");
        match plan.exec_in_place() {
            Err(e) => power::fatal("launch", &e),
            Ok(never) => match never {},
        }
    }
    let launched = or_fatal("launch", plan.spawn());
    kmsg::notice(&format!("workload started: {} (pid {})", config.workload.path, launched.pid));
    timeline.done("launch");

    // supervise
    let shutdown = Duration::from_millis(config.boot.shutdown_timeout_ms);
    let console = supervise::nonblocking_console(Path::new("/dev"));
    let mut supervisor = or_fatal("supervise", Supervisor::new(launched.pid, Scope::System, shutdown, console));
    supervisor.add_output(launched.stdout, "workload: ");
    supervisor.add_output(launched.stderr, "workload: ");
    for (pid, name) in hooks.daemons {
        supervisor.watch(pid, name);
    }
    let outcome = supervisor.run();
    power::end(outcome)
}

/// The value, or the FATAL line of `stage` and the end of the boot.
fn or_fatal<T, E: std::fmt::Display>(stage: &str, r: Result<T, E>) -> T {
    r.unwrap_or_else(|e| power::fatal(stage, &e))
}

/// What attestation released: the credentials directory for the workload
/// and the volume keys, which never leave memory.
#[derive(Default)]
struct Released {
    credentials_dir: Option<&'static str>,
    volume_keys: Vec<Zeroizing<Vec<u8>>>,
}

/// The attest and secrets stages: detect the TEE (unless initdata already
/// did), attest with the CPU and GPU evidence, fetch every resource.
fn attest_and_fetch(
    loaded: &mut Loaded,
    tee: &TeeConfig,
    gpus: Option<&mut GpuAttester>,
    timeline: &mut Timeline,
) -> Released {
    let config = &loaded.config;
    let provider = match loaded.tee.as_mut() {
        Some(p) => p,
        None => loaded.tee.insert(or_fatal("attest", tee::detect(tee, &TeePaths::default()))),
    };
    // tee::detect has already warned when the sample TEE stands in.
    let kind = provider.kind();
    log::info!("TEE: {kind}");
    if !config.attestation_configured() {
        log::info!("no [kbs] configured: nothing to attest to");
        timeline.done("attest");
        timeline.skipped("secrets");
        return Released::default();
    }
    let client = or_fatal("attest", kbs::Client::new(&config.kbs));
    let init_data = loaded.initdata.as_ref().map(|d| kbs::InitData::toml(d.body()));
    let mut devices: Vec<&mut dyn kbs::DeviceEvidence> = Vec::new();
    if let Some(g) = gpus {
        devices.push(g);
    }
    let mut session = or_fatal("attest", client.attest(provider.as_mut(), devices, init_data.as_ref()));
    log::info!("KBS {} accepted the {kind} evidence", config.kbs.url);
    timeline.done("attest");

    let mut files = Vec::new();
    for s in &config.secrets {
        let path = or_fatal("secrets", s.resource_path());
        files.push(secrets::Secret::new(&s.file, s.mode, or_fatal("secrets", session.fetch(&path))));
    }
    let mut volume_keys = Vec::new();
    for vol in config.volumes.iter() {
        let path = or_fatal("secrets", vol.key.parse::<kbs::ResourcePath>());
        volume_keys.push(or_fatal("secrets", session.fetch(&path)));
    }
    let credentials_dir = if files.is_empty() {
        None
    } else {
        let owner = secrets::Owner { uid: config.workload.user, gid: config.workload.group };
        Some(or_fatal("secrets", secrets::deliver(Path::new("/"), &mut secrets::SystemSecretsFs, owner, files)))
    };
    timeline.stage("secrets", credentials_dir.is_some() || !volume_keys.is_empty());
    Released { credentials_dir, volume_keys }
}

/// The GPU stage's access to the module loader and to process start-up.
/// Daemons started here are handed to the supervisor, the only reaper.
#[derive(Default)]
struct GpuHooks {
    daemons: Vec<(libc::pid_t, &'static str)>,
}

impl gpu::DriverHooks for GpuHooks {
    fn load_modules(&mut self, list: &[gpu::bringup::ModuleLoad]) -> Result<(), String> {
        let cfg = ModulesConfig {
            load: list.iter().map(|m| m.name.to_string()).collect(),
            parameters: list
                .iter()
                .filter(|m| !m.params.is_empty())
                .map(|m| (m.name.to_string(), m.params.join(" ")))
                .collect(),
        };
        modules::load_configured(&cfg, &ModulesEnv::default(), &mut KernelLoader).map(drop).map_err(|e| e.to_string())
    }

    fn start_persistenced(&mut self, mut cmd: std::process::Command) -> Result<Box<dyn FnMut() -> bool>, String> {
        let child = cmd.env_clear().spawn().map_err(|e| format!("start nvidia-persistenced: {e}"))?;
        let pid = child.id() as libc::pid_t;
        // Dropping `Child` neither kills nor waits: the supervisor reaps it.
        drop(child);
        self.daemons.push((pid, "nvidia-persistenced"));
        Ok(Box::new(move || still_running(pid)))
    }
}

/// True while `pid` has not exited. WNOWAIT leaves the zombie for the
/// supervisor to reap and report.
fn still_running(pid: libc::pid_t) -> bool {
    // SAFETY: siginfo_t is plain data; waitid only writes into it.
    let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
    // SAFETY: waitid on our own child with a valid siginfo pointer.
    let rc = unsafe {
        libc::waitid(libc::P_PID, pid as libc::id_t, &mut info, libc::WEXITED | libc::WNOHANG | libc::WNOWAIT)
    };
    // SAFETY: si_pid is valid to read after a successful waitid.
    rc == 0 && unsafe { info.si_pid() } == 0
}

#[derive(Debug, thiserror::Error)]
enum EarlyError {
    #[error(transparent)]
    Mount(#[from] mount::MountError),
    #[error(transparent)]
    Console(#[from] console::ConsoleError),
    #[error(transparent)]
    Signals(#[from] supervise::SuperviseError),
}

fn early() -> Result<(), EarlyError> {
    // Signals first: nothing may be delivered the classic way to PID 1.
    supervise::block_signals()?;
    let mounted = mount::setup(Path::new("/"), &mut mount::SystemMounter);
    // The console and the logger come up even when a mount failed, so the
    // failure can be reported.
    let console = console::attach(Path::new("/dev"));
    kmsg::init(Path::new("/dev"), Path::new("/proc"), log::LevelFilter::Info);
    // The OOM killer must pick the workload, never PID 1.
    let _ = std::fs::write("/proc/self/oom_score_adj", "-1000");
    mounted?;
    console?;
    Ok(())
}

/// What the config stage hands on: the validated configuration, and the
/// TEE evidence provider when initdata already required detecting it.
struct Loaded {
    config: Config,
    tee: Option<Box<dyn EvidenceProvider>>,
    initdata: Option<Initdata>,
}

fn load_config() -> Loaded {
    let path = Path::new(config::DEFAULT_PATH);
    let origin = path.display().to_string();
    let files = RootFiles::new("/");
    let (text, cmdline) = match config::read_system_sources(path, Path::new("/proc/cmdline")) {
        Ok(t) => t,
        Err(e) => config_fatal(&e),
    };
    let sources = || config::Sources { origin: &origin, text: &text, cmdline: Some(&cmdline), files: &files };
    let table = match config::parse_table(&origin, &text) {
        Ok(t) => t,
        Err(e) => config_fatal(&e),
    };
    let mut config = match Config::from_table(sources(), table.clone()) {
        Ok(c) => c,
        Err(e) => config_fatal(&e),
    };
    apply_boot_settings(&config);

    // Initdata (Kata): bound to the launch through HOSTDATA / MRCONFIGID,
    // so reading it needs the TEE; its `ztinit.toml` entry may then set the
    // sections the baked `[tee]` opens to it.
    let mut provider = None;
    let mut initdata = None;
    if let Some(tee) = config.tee.clone().filter(|t| t.initdata != InitdataMode::Off) {
        let paths = TeePaths::default();
        let mut p = tee::detect(&tee, &paths).unwrap_or_else(|e| power::fatal("attest", &e));
        initdata = tee::initdata::load(&tee, &paths, p.as_mut()).unwrap_or_else(|e| power::fatal("config", &e));
        if let Some(doc) = &initdata {
            let mut table = table;
            match tee::initdata::apply_overlay(&mut table, doc, &tee.initdata_sections) {
                Ok(sections) if sections.is_empty() => {}
                Ok(sections) => {
                    log::info!("initdata sets [{}]", sections.join("], ["));
                    config = Config::from_table(sources(), table).unwrap_or_else(|e| config_fatal(&e));
                    apply_boot_settings(&config);
                }
                Err(e) => power::fatal("config", &e),
            }
        }
        provider = Some(p);
    }
    Loaded { config, tee: provider, initdata }
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
    power::fatal("config", e)
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

fn network(config: &Config) -> Result<(), net::NetError> {
    let mut ops = net::IoctlNet::new()?;
    net::setup(&config.network, Path::new("/sys/class/net"), net::INTERFACE_WAIT, &mut ops)?;
    match config.network.mode {
        NetworkMode::None => log::info!("network: loopback only"),
        NetworkMode::Static => log::info!("network: {} {}", config.network.interface, config.network.address),
        NetworkMode::Kernel => log::info!("network: configured by the kernel"),
    }
    Ok(())
}
