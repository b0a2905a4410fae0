//! Which TEE is this guest in? configfs-tsm names its provider; the guest
//! devices tell what the kernel found even when configfs-tsm is missing.
//! The answer is checked against the accepted kinds and never falls back:
//! `sample` is used only when the configuration allows it and no hardware
//! TEE is present, or when it is the only accepted kind.

use super::paths::TeePaths;
use super::sample::SampleProvider;
use super::snp::{self, SnpProvider};
use super::tdx::{self, TdxProvider};
use super::tsm::{Probe, Tsm};
use super::{EvidenceProvider, TeeConfig, TeeError, TeeKind};

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
