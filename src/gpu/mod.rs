//! Confidential NVIDIA GPUs: detection, bring-up, evidence and its offline
//! verification, and the ready state that only attestation may set.
//!
//! Verification (`spdm`, `certs`, `verify`, `rim`, `evidence`) is pure Rust
//! and used by three callers: the boot flow, `cargo xtask verify-gpu` and the
//! dev KBS. Talking to the driver is the job of the glibc helper
//! `ztinit-gpu` (NVML cannot be loaded into a static musl PID 1), spoken to
//! over a pipe by [`helper`].
//!
//! Boot flow (see `docs/gpu.md`): [`plan`] → load [`GpuPlan::modules`] →
//! start [`bringup::persistenced_command`] and
//! [`bringup::wait_persistenced_ready`] → [`GpuAttester::start`] → the KBS
//! client calls [`GpuAttester::collect`] → after the KBS accepted,
//! [`GpuAttester::set_ready`].

pub mod attester;
pub mod bringup;
pub mod certs;
pub mod config;
pub mod detect;
pub mod evidence;
pub mod helper;
pub use ztinit_gpu_protocol as protocol;
pub mod rim;
pub mod spdm;
pub mod verify;
pub mod xml;

#[cfg(test)]
mod tests;

use std::path::Path;
use std::time::Duration;

pub use attester::{AttesterEnv, GpuAttester};
pub use config::{GpuConfig, GpuMode};

/// Why the GPU stage failed. Every variant stops the boot.
#[derive(Debug, thiserror::Error)]
pub enum GpuError {
    #[error("PCI scan: {0}")]
    Detect(#[from] detect::DetectError),
    #[error("mode is \"gpu\" but no NVIDIA GPU is on the PCI bus")]
    NoGpu,
    #[error("{0}")]
    Helper(#[from] helper::HelperError),
    #[error("{0}")]
    Persistenced(#[from] bringup::ReadinessError),
    #[error("configuration: {path}: {source}")]
    ConfigFile {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("configuration: device_root {path}: {source}")]
    DeviceRoot {
        path: String,
        #[source]
        source: Box<certs::CertError>,
    },
    #[error("configuration: {0}")]
    Measurement(#[from] config::MeasurementError),
    #[error("configuration: RIM: {0}")]
    Rim(#[from] rim::RimLoadError),
    #[error("configuration: {0}")]
    ReferenceConflict(#[from] verify::ReferenceConflict),
    #[error("refused: {0}")]
    Policy(String),
    #[error("inventory: {0}")]
    Inventory(String),
    #[error("GPU {gpu} ({uuid}) evidence rejected: {reason}")]
    Evidence { gpu: u32, uuid: String, reason: String },
    #[error("GPU evidence was already collected once (one attempt per GPU)")]
    AlreadyCollected,
    #[error("ready state requested before GPU evidence was verified and accepted")]
    NotAttested,
    #[error("GPUs did not report the ready state after it was set")]
    ReadyNotSet,
    #[error("driver: {0}")]
    Modules(#[from] crate::modules::ModulesError),
    #[error("driver: start nvidia-persistenced: {0}")]
    PersistencedStart(#[source] std::io::Error),
}

/// What the GPU stage needs from the rest of ztinit: the module loader and
/// the supervisor (which owns the daemon and reaps it).
pub trait DriverHooks {
    /// Loads the modules in order, with their parameters.
    fn load_modules(&mut self, modules: &[bringup::ModuleLoad]) -> Result<(), crate::modules::ModulesError>;
    /// Starts and supervises `cmd`; returns a probe telling whether it still runs.
    fn start_persistenced(&mut self, cmd: std::process::Command) -> std::io::Result<Box<dyn FnMut() -> bool>>;
}

/// The whole GPU stage up to evidence: plan, driver, daemon readiness,
/// helper, policy. `Ok(None)`: CPU-only boot. The returned attester is
/// handed to the KBS client (`collect`), and `set_ready` is called after
/// the KBS accepted.
pub fn bring_up(
    cfg: &GpuConfig,
    root: &Path,
    hooks: &mut dyn DriverHooks,
    env: &AttesterEnv,
) -> Result<Option<GpuAttester>, GpuError> {
    let Some(plan) = plan(cfg, root)? else {
        return Ok(None);
    };
    log::info!("gpu: {} GPU(s) on the PCI bus", plan.detected.gpus.len());
    if !plan.modules.is_empty() {
        hooks.load_modules(&plan.modules)?;
    }
    if plan.start_persistenced {
        let program = Path::new(&cfg.persistenced);
        let alive =
            hooks.start_persistenced(bringup::persistenced_command(program)).map_err(GpuError::PersistencedStart)?;
        let socket = crate::files::under(root, &cfg.persistenced_socket);
        let took = bringup::wait_persistenced_ready(&socket, plan.readiness_deadline, alive)?;
        log::info!("gpu: nvidia-persistenced ready after {} ms", took.as_millis());
    }
    GpuAttester::start(cfg, &plan, env).map(Some)
}

/// What the GPU stage will do on this machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GpuPlan {
    pub detected: detect::Detected,
    /// For the module loader, in order (empty when `load_driver = false`).
    pub modules: Vec<bringup::ModuleLoad>,
    /// Start nvidia-persistenced and wait for it (`load_driver`).
    pub start_persistenced: bool,
    /// How long to wait for nvidia-persistenced.
    pub readiness_deadline: Duration,
}

/// Detects NVIDIA devices under `root` + `[gpu] pci_devices` (normally
/// `/sys/bus/pci/devices`) and decides the mode: `None` means CPU-only
/// (skip the stage).
pub fn plan(cfg: &GpuConfig, root: &Path) -> Result<Option<GpuPlan>, GpuError> {
    let pci_devices = crate::files::under(root, &cfg.pci_devices);
    if cfg.mode == GpuMode::Cpu {
        return Ok(None);
    }
    let detected = detect::detect(&pci_devices)?;
    if !detected.switches.is_empty() {
        log::warn!("gpu: {} NVSwitch function(s) present; NVSwitches are not attested", detected.switches.len());
    }
    if detected.gpus.is_empty() {
        return match cfg.mode {
            GpuMode::Gpu => Err(GpuError::NoGpu),
            _ => Ok(None),
        };
    }
    let n = detected.gpus.len();
    Ok(Some(GpuPlan {
        modules: if cfg.load_driver { bringup::modules(n) } else { Vec::new() },
        start_persistenced: cfg.load_driver,
        readiness_deadline: bringup::readiness_deadline(
            Duration::from_millis(cfg.ready_timeout_ms),
            Duration::from_millis(cfg.ready_timeout_per_gpu_ms),
            n,
        ),
        detected,
    }))
}

#[cfg(test)]
mod plan_tests {
    use super::*;

    #[test]
    fn mode_follows_the_pci_bus_unless_configured() {
        let t = tempfile::tempdir().unwrap();
        let auto = GpuConfig::default();
        assert_eq!(plan(&auto, t.path()).unwrap(), None);
        let gpu = GpuConfig { mode: GpuMode::Gpu, ..GpuConfig::default() };
        assert!(matches!(plan(&gpu, t.path()), Err(GpuError::NoGpu)));
        let pci = t.path().join("sys/bus/pci/devices");
        detect::tests::fake_pci(&pci, &[("0000:01:00.0", "0x10de", "0x2331", "0x030200")]);
        let p = plan(&auto, t.path()).unwrap().unwrap();
        assert_eq!(p.modules[0].params, ["NVreg_NvLinkDisable=1"]);
        assert!(p.start_persistenced);
        assert_eq!(p.readiness_deadline, Duration::from_secs(70));
        let cpu = GpuConfig { mode: GpuMode::Cpu, ..GpuConfig::default() };
        assert_eq!(plan(&cpu, t.path()).unwrap(), None);
        // A test image: fake PCI tree elsewhere, driver already "up".
        detect::tests::fake_pci(&t.path().join("etc/fake-pci"), &[("0000:01:00.0", "0x10de", "0x2331", "0x030200")]);
        let test = GpuConfig { pci_devices: "/etc/fake-pci".into(), load_driver: false, ..GpuConfig::default() };
        let p = plan(&test, t.path()).unwrap().unwrap();
        assert!(p.modules.is_empty() && !p.start_persistenced);
    }
}
