//! Which TEE is this guest in? configfs-tsm names its provider; the guest
//! devices tell what the kernel found even when configfs-tsm is missing.
//! The answer is checked against the accepted kinds and never falls back:
//! `sample` is used only when the configuration allows it and no hardware
//! TEE is present, or when it is the only accepted kind.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::sample::SampleProvider;
use super::snp::{self, SnpProvider};
use super::tdx::{self, TdxProvider};
use super::tsm::{self, ConfigFs, Probe, RealConfigFs, Tsm};
use super::{EvidenceProvider, TeeConfig, TeeError, TeeKind};

/// Every path the TEE code touches, with the real ones by default, and the
/// configfs implementation (the kernel by default).
#[derive(Clone)]
pub struct TeePaths {
    /// configfs-tsm report directory.
    pub tsm_report: PathBuf,
    /// Device directory (`/dev/sev-guest`, `/dev/tdx_guest`, initdata disks).
    pub dev: PathBuf,
    /// ACPI tables (`CCEL`, `data/CCEL`).
    pub acpi_tables: PathBuf,
    pub configfs: Arc<dyn ConfigFs>,
}

impl Default for TeePaths {
    fn default() -> Self {
        Self {
            tsm_report: PathBuf::from(tsm::DEFAULT_REPORT_DIR),
            dev: PathBuf::from("/dev"),
            acpi_tables: PathBuf::from("/sys/firmware/acpi/tables"),
            configfs: Arc::new(RealConfigFs),
        }
    }
}

impl TeePaths {
    /// The real paths re-rooted under `root` (tests, offline tools).
    pub fn under(root: &Path) -> Self {
        let d = Self::default();
        let rebase = |p: &Path| root.join(p.strip_prefix("/").unwrap_or(p));
        Self {
            tsm_report: rebase(&d.tsm_report),
            dev: rebase(&d.dev),
            acpi_tables: rebase(&d.acpi_tables),
            configfs: d.configfs,
        }
    }

    pub fn with_configfs(mut self, configfs: Arc<dyn ConfigFs>) -> Self {
        self.configfs = configfs;
        self
    }

    fn device(&self, kind: TeeKind) -> Option<PathBuf> {
        match kind {
            TeeKind::Snp => Some(self.dev.join("sev-guest")),
            TeeKind::Tdx => Some(self.dev.join("tdx_guest")),
            TeeKind::Sample => None,
        }
    }
}

impl fmt::Debug for TeePaths {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TeePaths")
            .field("tsm_report", &self.tsm_report)
            .field("dev", &self.dev)
            .field("acpi_tables", &self.acpi_tables)
            .finish_non_exhaustive()
    }
}

fn kind_of_provider(provider: &str) -> Option<TeeKind> {
    match provider {
        snp::PROVIDER => Some(TeeKind::Snp),
        tdx::PROVIDER => Some(TeeKind::Tdx),
        _ => None,
    }
}

fn provider_for(kind: TeeKind, cfg: &TeeConfig, paths: &TeePaths) -> Box<dyn EvidenceProvider> {
    match kind {
        TeeKind::Snp => Box::new(SnpProvider::new(paths.clone(), cfg.allow_debug)),
        TeeKind::Tdx => Box::new(TdxProvider::new(paths.clone(), cfg.allow_debug)),
        TeeKind::Sample => {
            log::warn!("TEE: using the sample TEE: its evidence proves nothing (development image)");
            Box::new(SampleProvider)
        }
    }
}

/// Picks the evidence provider for this guest.
pub fn detect(cfg: &TeeConfig, paths: &TeePaths) -> Result<Box<dyn EvidenceProvider>, TeeError> {
    let hardware: Vec<TeeKind> = cfg.accept.iter().copied().filter(|k| *k != TeeKind::Sample).collect();
    let sample_ok = cfg.accepts(TeeKind::Sample);
    if hardware.is_empty() {
        if sample_ok {
            return Ok(provider_for(TeeKind::Sample, cfg, paths));
        }
        return Err(TeeError::NoTee { accepted: cfg.accepted_list(), found: "no TEE kind is accepted".into() });
    }

    let probe = Tsm { fs: &*paths.configfs, base: &paths.tsm_report }.probe()?;
    if let Probe::Provider(name) = &probe {
        return match kind_of_provider(name) {
            Some(kind) if cfg.accepts(kind) => {
                log::info!("TEE: {kind} (configfs-tsm provider {name})");
                Ok(provider_for(kind, cfg, paths))
            }
            Some(kind) => Err(TeeError::NotAccepted {
                accepted: cfg.accepted_list(),
                found: format!("{kind} (configfs-tsm provider {name})"),
            }),
            None => Err(TeeError::NotAccepted {
                accepted: cfg.accepted_list(),
                found: format!("configfs-tsm provider {name}"),
            }),
        };
    }

    // No usable provider. A guest device of an accepted kind means the TEE is
    // there but this kernel cannot make reports through configfs-tsm.
    let probe_text = match &probe {
        Probe::Unavailable => format!("{probe} ({} is missing)", paths.tsm_report.display()),
        other => other.to_string(),
    };
    for kind in &hardware {
        if let Some(dev) = paths.device(*kind).filter(|d| d.exists()) {
            return Err(TeeError::NoTee {
                accepted: cfg.accepted_list(),
                found: format!(
                    "{} is present but {probe_text}: ztinit needs configfs-tsm (CONFIG_TSM_REPORTS, configfs at /sys/kernel/config)",
                    dev.display()
                ),
            });
        }
    }
    if sample_ok {
        return Ok(provider_for(TeeKind::Sample, cfg, paths));
    }
    let missing: Vec<String> =
        hardware.iter().filter_map(|k| paths.device(*k)).map(|d| d.display().to_string()).collect();
    let missing = match missing.as_slice() {
        [one] => format!("{one} is missing"),
        [init @ .., last] => format!("{} and {last} are missing", init.join(", ")),
        [] => String::new(),
    };
    Err(TeeError::NoTee { accepted: cfg.accepted_list(), found: format!("{probe_text} and {missing}") })
}
