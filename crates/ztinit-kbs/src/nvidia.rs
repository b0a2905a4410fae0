//! The `nvidia` device verifier: ztinit's own GPU evidence library
//! (`ztinit::gpu::evidence::NvidiaVerifier`) behind the dev KBS's
//! [`Verifier`] seam. It checks every device of the `nvidia` additional
//! evidence: the SPDM signature with the leaf key, the certificate chain to
//! the pinned device identity root, the FWID binding, the nonce (the first
//! 32 bytes of the device digest the server computed from
//! `{nonce, tee-pubkey}`), and the reference measurements and versions of
//! the policy's `[nvidia]` table.
//!
//! ```toml
//! [nvidia]
//! device_root = "testca/root.pem"    # PEM, relative to the policy file; default: NVIDIA's root
//! measurements = { "2" = ["<hex>"], "36" = ["<hex>", "<hex>"] }   # 1-based SPDM block index
//! driver_versions = ["550.90.07"]    # empty: any
//! vbios_versions = ["96.00.9F.00.01"]
//! refuse_switches = false            # refuse NVSwitch entries
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use serde::Deserialize;
use serde_json::Value;
use ztinit::gpu::evidence::{NvidiaPolicyFile, NvidiaVerifier};
use ztinit::kbs::InitData;

use crate::verifier::Verifier;

/// Largest device root PEM file read.
const MAX_ROOT_PEM: u64 = 64 << 10;

/// The policy file's `[nvidia]` table.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NvidiaSection {
    /// PEM file of the device identity root to pin instead of NVIDIA's (a
    /// test KBS pins the fake NVML's root). A relative path is taken from
    /// the policy file's directory.
    pub device_root: Option<PathBuf>,
    /// Accepted values (hex) by 1-based SPDM block index (RIM index + 1).
    pub measurements: BTreeMap<String, Vec<String>>,
    /// Accepted driver versions; empty: any.
    pub driver_versions: Vec<String>,
    /// Accepted VBIOS versions; empty: any.
    pub vbios_versions: Vec<String>,
    /// Refuse NVSwitch entries.
    pub refuse_switches: bool,
}

/// Verifies the `nvidia` additional evidence (Trustee's
/// `device_evidence_list`, or NVAT's array).
#[derive(Debug, Clone)]
pub struct NvidiaDeviceVerifier {
    inner: NvidiaVerifier,
    /// Certificate validity is checked at this time (`None`: now).
    at: Option<SystemTime>,
}

impl NvidiaDeviceVerifier {
    /// Pins NVIDIA's device identity root and compares no reference
    /// measurement (Trustee's default: signature, chain, nonce).
    pub fn nvidia_default() -> NvidiaDeviceVerifier {
        let inner = NvidiaVerifier::from_policy(&NvidiaPolicyFile::default())
            .unwrap_or_else(|_| unreachable!("the default policy has nothing to parse"));
        NvidiaDeviceVerifier { inner, at: None }
    }

    /// From the policy file's `[nvidia]` table; `base` is the directory of
    /// the policy file (for a relative `device_root`).
    pub fn from_section(section: &NvidiaSection, base: &Path) -> Result<NvidiaDeviceVerifier, String> {
        let device_root_pem = match &section.device_root {
            None => None,
            Some(p) => {
                let path = base.join(p);
                let bytes = ztinit::config::read_capped(&path, MAX_ROOT_PEM)
                    .map_err(|e| format!("nvidia.device_root {}: {e}", path.display()))?;
                Some(
                    String::from_utf8(bytes)
                        .map_err(|_| format!("nvidia.device_root {}: not UTF-8 PEM", path.display()))?,
                )
            }
        };
        let file = NvidiaPolicyFile {
            measurements: section.measurements.clone(),
            driver_versions: section.driver_versions.clone(),
            vbios_versions: section.vbios_versions.clone(),
            refuse_switches: section.refuse_switches,
            device_root_pem,
        };
        let inner = NvidiaVerifier::from_policy(&file).map_err(|e| e.to_string())?;
        Ok(NvidiaDeviceVerifier { inner, at: None })
    }

    /// Checks certificate validity at `at` instead of now (tests).
    pub fn at(mut self, at: SystemTime) -> NvidiaDeviceVerifier {
        self.at = Some(at);
        self
    }

    /// How many reference measurements the policy compares.
    pub fn reference_count(&self) -> usize {
        self.inner.policy.reference.entries.len()
    }
}

impl Verifier for NvidiaDeviceVerifier {
    fn tee(&self) -> &str {
        "nvidia"
    }

    fn verify(&self, evidence: &Value, report_data: &[u8], _: Option<&InitData>) -> Result<Value, String> {
        let result = self.inner.verify_at(evidence, report_data, self.at.unwrap_or_else(SystemTime::now));
        // The server prefixes the evidence name itself.
        let claims = result.map_err(|e| e.to_string())?;
        let devices = claims.as_array().map_or(0, Vec::len);
        log::info!(
            "nvidia: {devices} device(s) verified (signature, chain, nonce, {} reference measurement(s))",
            self.reference_count()
        );
        Ok(claims)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn section_parses_and_resolves_the_root_against_the_policy_directory() {
        let dir = tempfile::tempdir().unwrap();
        let root = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../fake-nvml/testca/root.pem"))
            .unwrap();
        std::fs::write(dir.path().join("root.pem"), root).unwrap();
        let policy = crate::Policy::parse(
            "[nvidia]\ndevice_root = \"root.pem\"\nmeasurements = { \"2\" = [\"aabb\"] }\nrefuse_switches = true\n",
        )
        .unwrap();
        let section = policy.nvidia.unwrap();
        let v = NvidiaDeviceVerifier::from_section(&section, dir.path()).unwrap();
        assert_eq!(v.reference_count(), 1);
        assert_eq!(v.tee(), "nvidia");
    }

    #[test]
    fn bad_sections_are_refused_with_the_key() {
        assert!(crate::Policy::parse("[nvidia]\nmeasurement = {}\n").unwrap_err().contains("measurement"));
        let dir = tempfile::tempdir().unwrap();
        let missing = NvidiaSection { device_root: Some("none.pem".into()), ..NvidiaSection::default() };
        let e = NvidiaDeviceVerifier::from_section(&missing, dir.path()).unwrap_err();
        assert!(e.starts_with("nvidia.device_root ") && e.contains("none.pem"), "{e}");
        let mut bad = NvidiaSection::default();
        bad.measurements.insert("0".into(), vec!["aa".into()]);
        let e = NvidiaDeviceVerifier::from_section(&bad, dir.path()).unwrap_err();
        assert!(e.contains("measurement key \"0\""), "{e}");
        bad.measurements.clear();
        bad.measurements.insert("3".into(), vec!["xyz".into()]);
        let e = NvidiaDeviceVerifier::from_section(&bad, dir.path()).unwrap_err();
        assert!(e.contains("is not hex"), "{e}");
    }

    #[test]
    fn garbage_evidence_is_refused_without_the_double_prefix() {
        let v = NvidiaDeviceVerifier::nvidia_default();
        let e = v.verify(&serde_json::json!({"device_evidence_list": []}), &[0u8; 48], None).unwrap_err();
        assert_eq!(e, "nvidia evidence lists no device");
        let e = v.verify(&serde_json::json!({"x": 1}), &[0u8; 16], None).unwrap_err();
        assert_eq!(e, "device report data is 16 bytes, fewer than 32");
    }
}
