//! The GPU boot flow after the driver is up: CC policy, per-GPU evidence
//! over the KBS-derived nonce, local verification, and — only once the KBS
//! has accepted the composite evidence — the ready state.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use super::GpuError;
use super::config::GpuConfig;
use super::evidence::{CollectedDevice, NvidiaEvidence};
use super::helper::{Confinement, Helper, HelperCommand};
use super::protocol::{CcSettings, Inventory};
use super::rim;
use super::verify::{self, Arch, Evidence, Expected, ReferenceValues, Trust};
use super::{GpuPlan, certs};

/// NVML architecture numbers.
const NVML_ARCH_HOPPER: u32 = 9;
const NVML_ARCH_BLACKWELL: u32 = 10;

/// CC settings a production guest accepts; every violation is its own reason.
pub fn check_cc_settings(s: &CcSettings, cfg: &GpuConfig) -> Result<(), GpuError> {
    let refuse = |m: String| Err(GpuError::Policy(m));
    if s.devtools_mode != 0 {
        return refuse("GPU CC devtools mode is on (debugging interfaces open to the host)".into());
    }
    if s.environment != 2 {
        let env = match s.environment {
            0 => "unavailable",
            1 => "simulation",
            _ => "unknown",
        };
        return refuse(format!("GPU CC environment is {env} ({}), not production", s.environment));
    }
    let want = cfg.multi_gpu_mode.nvml_value();
    if s.multi_gpu_mode != want {
        return refuse(format!("GPU multi-GPU CC mode is {} but the configuration expects {want}", s.multi_gpu_mode));
    }
    // With protected PCIe on, the driver reports the CC feature as off.
    if s.cc_feature != 1 && s.multi_gpu_mode != 1 {
        return refuse(format!("GPU CC feature is off ({})", s.cc_feature));
    }
    if s.gpus_caps != 1 {
        return refuse("no CC-capable GPU according to the driver".into());
    }
    if !matches!(s.cpu_caps, 2..=4) {
        return refuse(format!("driver does not see a confidential CPU (SEV-SNP or TDX); cpuCaps = {}", s.cpu_caps));
    }
    Ok(())
}

/// Inputs of [`GpuAttester::start`] that tests replace.
#[derive(Debug, Clone)]
pub struct AttesterEnv {
    /// Root under which configured guest paths (RIMs, device root) are read.
    pub files_root: PathBuf,
    /// The helper's environment (empty at boot).
    pub helper_env: Vec<(std::ffi::OsString, std::ffi::OsString)>,
    /// Time for certificate validity (RIM signers, device chains).
    pub now: SystemTime,
    /// Run the helper in its sandbox (see `helper::Confinement`). Only tests
    /// run by an ordinary user, who cannot set one up, turn this off.
    pub confine: bool,
}

impl Default for AttesterEnv {
    fn default() -> Self {
        AttesterEnv { files_root: PathBuf::from("/"), helper_env: Vec::new(), now: SystemTime::now(), confine: true }
    }
}

/// Collects and verifies GPU evidence for the KBS client, then sets the
/// ready state once told the KBS accepted. The shape matches the KBS
/// client's additional-evidence trait: `name()` and `collect(digest)`.
pub struct GpuAttester {
    helper: Helper,
    inventory: Inventory,
    trust: Trust,
    reference: ReferenceValues,
    state: State,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Started,
    /// Evidence was requested (one attempt per GPU, success or not).
    Collected {
        verified: bool,
    },
    Ready,
}

fn read_guest_file(root: &Path, guest: &str) -> Result<Vec<u8>, GpuError> {
    crate::files::read_image_file(root, guest, crate::files::MAX_REFERENCED_FILE_BYTES)
        .map_err(|source| GpuError::ConfigFile { path: guest.to_string(), source })
}

impl GpuAttester {
    /// Starts the helper, checks inventory against the PCI scan and the CC
    /// settings against policy, applies optional tuning, and prepares the
    /// trust anchor and reference values. Ready state must still be 0.
    pub fn start(cfg: &GpuConfig, plan: &GpuPlan, env: &AttesterEnv) -> Result<GpuAttester, GpuError> {
        let root = match &cfg.device_root {
            Some(p) => certs::parse_pem_cert(&String::from_utf8_lossy(&read_guest_file(&env.files_root, p)?))
                .map_err(|source| GpuError::DeviceRoot { path: p.clone(), source: Box::new(source) })?,
            None => certs::nvidia_device_root(),
        };
        let mut reference = cfg.inline_reference()?;
        let rim_files = cfg
            .rims
            .iter()
            .map(|p| Ok((p.clone(), read_guest_file(&env.files_root, p)?)))
            .collect::<Result<Vec<_>, GpuError>>()?;
        let from_rims = rim::load_reference(&rim_files, &certs::nvidia_rim_root(), env.now, cfg.verify_rim_signatures)?;
        reference.merge(from_rims)?;

        let mut helper = Helper::spawn(&HelperCommand {
            program: PathBuf::from(&cfg.helper),
            nvml_library: Some(cfg.nvml_library.clone()),
            env: env.helper_env.clone(),
            timeout: cfg.helper_timeout(),
            confinement: if env.confine {
                Confinement::Sandboxed {
                    read_write: cfg.helper_read_write.clone(),
                    seccomp_allow: cfg.helper_seccomp_allow.clone(),
                }
            } else {
                Confinement::Unconfined
            },
        })?;
        let inventory = helper.inventory()?;
        if inventory.gpus.len() != plan.detected.gpus.len() {
            return Err(GpuError::Inventory(format!(
                "the driver sees {} GPUs but {} are on the PCI bus",
                inventory.gpus.len(),
                plan.detected.gpus.len()
            )));
        }
        for g in &inventory.gpus {
            if arch_of(g.arch).is_none() {
                return Err(GpuError::Inventory(format!(
                    "GPU {} ({}) has architecture {}, not Hopper or Blackwell",
                    g.index, g.uuid, g.arch
                )));
            }
            // Configured version lists are an extra constraint on top of
            // NVML's; checked before any evidence attempt is spent. The
            // verification later binds the signed report to this inventory.
            for (what, list, got) in [
                ("driver", &cfg.driver_versions, &inventory.driver_version),
                ("VBIOS", &cfg.vbios_versions, &g.vbios_version),
            ] {
                if !list.is_empty() && !list.iter().any(|v| v.eq_ignore_ascii_case(got)) {
                    return Err(GpuError::Policy(format!(
                        "GPU {} {what} version {got} is not one of {}",
                        g.index,
                        list.join(", ")
                    )));
                }
            }
        }
        let settings = helper.cc_settings()?;
        check_cc_settings(&settings, cfg)?;
        if helper.get_ready()? {
            return Err(GpuError::Policy("GPUs already accept work before attestation".into()));
        }
        if cfg.locked_clocks_mhz.is_some() || cfg.power_limit_w.is_some() {
            for g in &inventory.gpus {
                let clocks = cfg.locked_clocks_mhz.map(|[a, b]| (a, b));
                helper.tune(g.index, clocks, cfg.power_limit_w.map(|w| w.saturating_mul(1000)))?;
            }
        }
        log::info!(
            "gpu: driver {}, {} GPU(s): {}",
            inventory.driver_version,
            inventory.gpus.len(),
            inventory
                .gpus
                .iter()
                .map(|g| format!("{} VBIOS {}", g.uuid, g.vbios_version))
                .collect::<Vec<_>>()
                .join(", ")
        );
        Ok(GpuAttester { helper, inventory, trust: Trust { root, now: env.now }, reference, state: State::Started })
    }

    /// The additional-evidence key Trustee expects.
    pub fn name(&self) -> &str {
        "nvidia"
    }

    pub fn inventory(&self) -> &Inventory {
        &self.inventory
    }

    /// Evidence of every GPU over `device_digest[..32]` (the digest of the
    /// canonical `{"nonce","tee-pubkey"}` runtime data), each verified
    /// locally before anything leaves the guest. One attempt per GPU: a
    /// second call is refused.
    pub fn collect(&mut self, device_digest: &[u8]) -> Result<serde_json::Value, GpuError> {
        if self.state != State::Started {
            return Err(GpuError::AlreadyCollected);
        }
        self.state = State::Collected { verified: false };
        if device_digest.len() < 32 {
            return Err(GpuError::Policy(format!(
                "device digest is {} bytes, fewer than the 32 a GPU nonce needs",
                device_digest.len()
            )));
        }
        let nonce = verify::nonce_from_digest(device_digest);
        let mut devices = Vec::new();
        for g in self.inventory.gpus.clone() {
            let (report, chain_pem) = self.helper.evidence(g.index, &nonce)?;
            let arch = arch_of(g.arch);
            let driver = [self.inventory.driver_version.clone()];
            let vbios = [g.vbios_version.clone()];
            let expected = Expected {
                nonce: Some(&nonce),
                driver_versions: &driver,
                vbios_versions: &vbios,
                reference: Some(&self.reference),
            };
            let verdict = verify::verify_device(
                &Evidence { report: &report, chain_pem: &chain_pem, arch },
                &expected,
                &self.trust,
            );
            for c in &verdict.checks {
                log::debug!("gpu {}: {c}", g.index);
            }
            if let Some(failure) = verdict.first_failure() {
                return Err(GpuError::Evidence { gpu: g.index, uuid: g.uuid.clone(), reason: failure.to_string() });
            }
            log::info!("gpu {} ({}): evidence verified locally", g.index, g.uuid);
            devices.push(CollectedDevice {
                arch: arch.unwrap_or(Arch::Hopper),
                uuid: g.uuid.clone(),
                report,
                chain_pem,
            });
        }
        self.state = State::Collected { verified: true };
        Ok(NvidiaEvidence::from_devices(&devices).to_value())
    }

    /// Call only after the KBS accepted the evidence: sets the GPUs ready
    /// (accepting work) and reads the state back. Never sets 0.
    pub fn set_ready(&mut self) -> Result<(), GpuError> {
        match self.state {
            State::Collected { verified: true } => {}
            State::Ready => return Ok(()),
            _ => return Err(GpuError::NotAttested),
        }
        if !self.helper.set_ready()? || !self.helper.get_ready()? {
            return Err(GpuError::ReadyNotSet);
        }
        self.state = State::Ready;
        log::info!("gpu: {} GPU(s) set ready after attestation", self.inventory.gpus.len());
        Ok(())
    }

    /// Ends the helper.
    pub fn finish(self) {
        self.helper.close();
    }
}

fn arch_of(nvml: u32) -> Option<Arch> {
    match nvml {
        NVML_ARCH_HOPPER => Some(Arch::Hopper),
        NVML_ARCH_BLACKWELL => Some(Arch::Blackwell),
        _ => None,
    }
}

/// The attester is the `nvidia` additional evidence of the KBS handshake.
impl crate::kbs::DeviceEvidence for GpuAttester {
    fn name(&self) -> &str {
        GpuAttester::name(self)
    }

    fn collect(&mut self, device_digest: &[u8]) -> Result<serde_json::Value, crate::kbs::DeviceEvidenceError> {
        GpuAttester::collect(self, device_digest).map_err(Into::into)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gpu::config::MultiGpuMode;

    fn prod() -> CcSettings {
        CcSettings { environment: 2, cc_feature: 1, devtools_mode: 0, multi_gpu_mode: 0, cpu_caps: 3, gpus_caps: 1 }
    }

    fn refused(s: CcSettings, cfg: &GpuConfig) -> String {
        match check_cc_settings(&s, cfg) {
            Err(GpuError::Policy(m)) => m,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn cc_policy_accepts_production_and_refuses_each_deviation() {
        let cfg = GpuConfig::default();
        check_cc_settings(&prod(), &cfg).unwrap();
        assert!(refused(CcSettings { devtools_mode: 1, ..prod() }, &cfg).contains("devtools mode is on"));
        assert_eq!(
            refused(CcSettings { environment: 1, ..prod() }, &cfg),
            "GPU CC environment is simulation (1), not production"
        );
        assert!(refused(CcSettings { cc_feature: 0, ..prod() }, &cfg).contains("CC feature is off"));
        assert!(refused(CcSettings { multi_gpu_mode: 1, cc_feature: 0, ..prod() }, &cfg).contains("expects 0"));
        assert!(refused(CcSettings { cpu_caps: 1, ..prod() }, &cfg).contains("cpuCaps = 1"));
        assert!(refused(CcSettings { gpus_caps: 0, ..prod() }, &cfg).contains("no CC-capable GPU"));
        let ppcie = GpuConfig { multi_gpu_mode: MultiGpuMode::ProtectedPcie, ..GpuConfig::default() };
        check_cc_settings(&CcSettings { multi_gpu_mode: 1, cc_feature: 0, ..prod() }, &ppcie).unwrap();
    }
}
