//! ztinit: PID 1 of a confidential AI VM. `boot` reads as the boot sequence
//! of DESIGN.md; each step is a module of the library.

use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use ztinit::config::{self, Config, NetworkMode, OnExit, RootFiles};
use ztinit::power;
use ztinit::supervise::{self, Scope, Supervisor};
use ztinit::tee::initdata::Initdata;
use ztinit::tee::{self, EvidenceProvider, InitdataMode, TeeConfig, TeeKind, TeePaths};
use ztinit::timeline::Timeline;
use ztinit::{console, kmsg, launch, mount, net, version};

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

    // early: mounts, console, logging.
    let early = early();
    kmsg::notice(&version::line());
    if let Err(e) = early {
        power::fatal("early", &e);
    }
    timeline.done("early");

    // config: the baked file, initdata, harmless kernel parameters.
    let mut loaded = load_config();
    timeline.done("config");
    let config = loaded.config.clone();

    // network
    if let Err(e) = network(&config) {
        power::fatal("network", &e);
    }
    timeline.done("network");

    // Stages whose features are not in this build yet; their configuration
    // sections are refused at load time, so skipping them is exact.
    for stage in ["modules", "gpu"] {
        timeline.skipped(stage);
    }

    // attest: the TEE this image accepts, then the KBS.
    match config.effective_tee() {
        Some(tee) => {
            if let Err(e) = attest(&mut loaded, &tee) {
                power::fatal("attest", &e);
            }
            timeline.done("attest");
        }
        None => timeline.skipped("attest"),
    }

    for stage in ["secrets", "volume", "lockdown"] {
        timeline.skipped(stage);
    }
    kmsg::notice(&timeline.summary());

    // launch
    let spawned = match launch::spawn(&config.workload, &[], Path::new("/dev/null")) {
        Ok(s) => s,
        Err(e) => power::fatal("launch", &e),
    };
    kmsg::notice(&format!("workload started: {} (pid {})", config.workload.path, spawned.pid));
    timeline.done("launch");

    // supervise
    let shutdown = Duration::from_millis(config.boot.shutdown_timeout_ms);
    let mut supervisor = match Supervisor::new(
        spawned.pid,
        Scope::System,
        shutdown,
        supervise::nonblocking_console(Path::new("/dev")),
    ) {
        Ok(s) => s,
        Err(e) => power::fatal("supervise", &e),
    };
    supervisor.add_output(spawned.stdout, "[workload] ");
    supervisor.add_output(spawned.stderr, "[workload] ");
    let outcome = supervisor.run();
    power::end(outcome)
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
        power::configure(true, OnExit::Poweroff, true);
    }
    for line in e.issues().iter().skip(1) {
        kmsg::always(3, &format!("ztinit: error: config: {line}"));
    }
    power::fatal("config", e)
}

fn apply_boot_settings(config: &Config) {
    kmsg::set_level(config.boot.log_level.filter());
    power::configure(true, config.boot.on_exit, config.boot.isa_debug_exit);
    if let Some(h) = &config.boot.hostname
        && let Err(e) = rustix::system::sethostname(h.as_bytes())
    {
        log::warn!("sethostname {h}: {e}");
    }
}

/// Detects the TEE (unless initdata already did) and attests.
fn attest(loaded: &mut Loaded, tee: &TeeConfig) -> Result<(), tee::TeeError> {
    let provider = match loaded.tee.as_mut() {
        Some(p) => p,
        None => loaded.tee.insert(tee::detect(tee, &TeePaths::default())?),
    };
    match provider.kind() {
        TeeKind::Sample => log::warn!("TEE: sample: this guest proves nothing (development image)"),
        kind => log::info!("TEE: {kind}"),
    }
    if !loaded.config.attestation_configured() {
        log::info!("no [kbs] configured: nothing to attest to");
    }
    let _ = &loaded.initdata;
    Ok(())
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
