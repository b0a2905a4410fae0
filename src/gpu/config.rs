//! The `[gpu]` configuration section.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;

use super::certs;
use super::rim::Rim;
use super::verify::ReferenceValues;
use crate::schema::{Section, Validator};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum GpuMode {
    /// `gpu` when NVIDIA GPUs are on the PCI bus, else `cpu`.
    #[default]
    Auto,
    /// No GPU bring-up: GPUs (if any) stay without a driver.
    Cpu,
    /// GPUs are required: none found is fatal.
    Gpu,
}

/// The multi-GPU CC mode the host must have configured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum MultiGpuMode {
    /// Single-GPU CC (each GPU attested on its own).
    #[default]
    None,
    /// Hopper protected PCIe (GPUs + NVSwitches in one CVM).
    ProtectedPcie,
    /// Blackwell NVLink encryption.
    Nvle,
}

impl MultiGpuMode {
    /// NVML's `multiGpuMode` value.
    pub fn nvml_value(self) -> u32 {
        match self {
            MultiGpuMode::None => 0,
            MultiGpuMode::ProtectedPcie => 1,
            MultiGpuMode::Nvle => 2,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GpuConfig {
    pub mode: GpuMode,
    /// Where NVIDIA PCI functions are looked for (test images point this at
    /// a baked fake tree; hiding GPUs only leaves them without a driver).
    pub pci_devices: String,
    /// Load `nvidia`/`nvidia-uvm` and start nvidia-persistenced. `false`
    /// only where the driver is already up (test images with the fake NVML).
    pub load_driver: bool,
    /// The glibc NVML helper.
    pub helper: String,
    /// The NVML library the helper loads.
    pub nvml_library: String,
    /// Deadline of each helper request.
    pub helper_timeout_ms: u64,
    /// Paths the helper may also write, beyond the NVIDIA device nodes
    /// (test images: the fake NVML's record and ready-state files).
    pub helper_read_write: Vec<String>,
    /// System calls the helper's `strict` seccomp profile also allows.
    pub helper_seccomp_allow: Vec<String>,
    pub persistenced: String,
    /// Appears once nvidia-persistenced is ready.
    pub persistenced_socket: String,
    /// Readiness deadline: this plus `ready_timeout_per_gpu_ms` per GPU.
    pub ready_timeout_ms: u64,
    pub ready_timeout_per_gpu_ms: u64,
    pub multi_gpu_mode: MultiGpuMode,
    /// PEM of the device identity root to pin instead of NVIDIA's (test images).
    pub device_root: Option<String>,
    /// NVIDIA RIM files (driver and/or VBIOS) whose active measurements the
    /// GPUs must match.
    pub rims: Vec<String>,
    /// Verify each RIM's XMLDSig and signer chain (to NVIDIA's RIM root, at
    /// the guest's clock).
    pub verify_rim_signatures: bool,
    /// Golden measurements by SPDM block index (1-based = RIM index + 1):
    /// accepted hex values.
    pub measurements: BTreeMap<String, Vec<String>>,
    /// Accepted driver / VBIOS versions (besides matching NVML's inventory).
    pub driver_versions: Vec<String>,
    pub vbios_versions: Vec<String>,
    /// Lock GPU clocks to `[min, max]` MHz after attestation-independent bring-up.
    pub locked_clocks_mhz: Option<[u32; 2]>,
    /// Power limit in watts.
    pub power_limit_w: Option<u32>,
}

impl Default for GpuConfig {
    fn default() -> Self {
        GpuConfig {
            mode: GpuMode::Auto,
            pci_devices: super::detect::DEFAULT_PCI_DEVICES.into(),
            load_driver: true,
            helper: "/usr/libexec/ztinit/ztinit-gpu".into(),
            nvml_library: "libnvidia-ml.so.1".into(),
            helper_timeout_ms: 60_000,
            helper_read_write: Vec::new(),
            helper_seccomp_allow: Vec::new(),
            persistenced: super::bringup::DEFAULT_PERSISTENCED.into(),
            persistenced_socket: super::bringup::DEFAULT_PERSISTENCED_SOCKET.into(),
            ready_timeout_ms: 60_000,
            ready_timeout_per_gpu_ms: 10_000,
            multi_gpu_mode: MultiGpuMode::None,
            device_root: None,
            rims: Vec::new(),
            verify_rim_signatures: true,
            measurements: BTreeMap::new(),
            driver_versions: Vec::new(),
            vbios_versions: Vec::new(),
            locked_clocks_mhz: None,
            power_limit_w: None,
        }
    }
}

impl GpuConfig {
    pub fn helper_timeout(&self) -> Duration {
        Duration::from_millis(self.helper_timeout_ms)
    }

    /// Reference values written in the configuration (validated at load).
    pub fn inline_reference(&self) -> Result<ReferenceValues, MeasurementError> {
        let mut rv = ReferenceValues::default();
        for (key, values) in &self.measurements {
            let index = parse_index(key)?;
            let decoded = values.iter().map(|v| parse_value(key, v)).collect::<Result<Vec<_>, _>>()?;
            rv.insert(index, decoded, "config");
        }
        Ok(rv)
    }
}

/// A `[gpu.measurements]` entry that is not `"INDEX" = ["HEX", ...]`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MeasurementError {
    #[error("measurements.{0}: the key must be an SPDM block index 1-255")]
    Index(String),
    #[error("measurements.{key}: {value:?} is not 1-64 bytes of hex")]
    Value { key: String, value: String },
}

fn parse_index(key: &str) -> Result<u8, MeasurementError> {
    key.parse::<u8>().ok().filter(|&i| i >= 1).ok_or_else(|| MeasurementError::Index(key.to_string()))
}

fn parse_value(key: &str, v: &str) -> Result<Vec<u8>, MeasurementError> {
    match hex::decode(v) {
        Ok(b) if !b.is_empty() && b.len() <= 64 => Ok(b),
        _ => Err(MeasurementError::Value { key: key.to_string(), value: v.to_string() }),
    }
}

impl Section for GpuConfig {
    fn validate(&self, v: &mut Validator<'_>) {
        v.absolute_path("pci_devices", &self.pci_devices);
        // Programs ztinit starts as root, and the library the helper loads,
        // come from the measured image only.
        for (key, path) in [("helper", &self.helper), ("persistenced", &self.persistenced)] {
            if v.absolute_path(key, path) {
                v.image_path(key, path);
            }
        }
        if self.nvml_library.starts_with('/') {
            v.image_path("nvml_library", &self.nvml_library);
        }
        v.absolute_path("persistenced_socket", &self.persistenced_socket);
        if self.nvml_library.is_empty() || self.nvml_library.contains('\0') {
            v.error("nvml_library", "must be a library name or absolute path");
        }
        v.range("helper_timeout_ms", self.helper_timeout_ms, 1_000, 600_000);
        for (i, path) in self.helper_read_write.iter().enumerate() {
            v.absolute_path(&format!("helper_read_write[{i}]"), path);
        }
        for (i, name) in self.helper_seccomp_allow.iter().enumerate() {
            let key = format!("helper_seccomp_allow[{i}]");
            if crate::sandbox::seccomp::syscalls::number(name).is_none() {
                v.error(&key, format!("{name:?} is not an x86_64 system call"));
            } else if crate::sandbox::seccomp::builtin::KILL_LIST.contains(&name.as_str()) {
                v.error(&key, format!("{name} is on the kill list and cannot be allowed"));
            }
        }
        v.range("ready_timeout_ms", self.ready_timeout_ms, 1_000, 1_800_000);
        v.range("ready_timeout_per_gpu_ms", self.ready_timeout_per_gpu_ms, 0, 600_000);
        if let Some(root) = &self.device_root
            && v.absolute_path("device_root", root)
            && let Some(bytes) = v.file("device_root", root, crate::files::MAX_REFERENCED_FILE_BYTES)
            && let Err(e) = certs::parse_pem_cert(&String::from_utf8_lossy(&bytes))
        {
            v.error("device_root", format!("{root}: {e}"));
        }
        for (i, rim) in self.rims.iter().enumerate() {
            let key = format!("rims[{i}]");
            if v.absolute_path(&key, rim)
                && let Some(bytes) = v.file(&key, rim, crate::files::MAX_REFERENCED_FILE_BYTES)
                && let Err(e) = Rim::parse(&bytes)
            {
                v.error(&key, format!("{rim}: {e}"));
            }
        }
        for (key, values) in &self.measurements {
            if parse_index(key).is_err() {
                v.error(&format!("measurements.{key}"), "the key must be an SPDM block index 1-255");
            }
            if values.is_empty() {
                v.error(&format!("measurements.{key}"), "lists no accepted value");
            }
            for value in values {
                if parse_value(key, value).is_err() {
                    v.error(&format!("measurements.{key}"), format!("{value:?} is not 1-64 bytes of hex"));
                }
            }
        }
        if let Some([min, max]) = self.locked_clocks_mhz
            && (min == 0 || min > max)
        {
            v.error("locked_clocks_mhz", format!("[{min}, {max}] must be [min, max] with 0 < min <= max"));
        }
        if self.multi_gpu_mode == MultiGpuMode::ProtectedPcie {
            // PPCIe trusts NVSwitches too, whose evidence comes through NSCQ,
            // which the helper does not speak: accepting it would leave them
            // unattested.
            v.error("multi_gpu_mode", "\"protected-pcie\" is not supported yet (NVSwitch attestation is missing)");
        }
        if let Some(w) = self.power_limit_w {
            v.range("power_limit_w", w, 50, 2_000);
        }
        if self.mode == GpuMode::Cpu
            && (!self.rims.is_empty() || !self.measurements.is_empty() || self.locked_clocks_mhz.is_some())
        {
            v.error("mode", "\"cpu\" mode cannot be combined with GPU reference values or tuning");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Config, ConfigError, NoFiles, RootFiles, Sources};

    fn load_with(text: &str, files: &dyn crate::schema::Files) -> Result<Config, ConfigError> {
        let full = format!("[workload]\npath = \"/bin/app\"\n{text}");
        Config::load(Sources { origin: "ztinit.toml", text: &full, cmdline: None, files })
    }

    fn problems(text: &str, files: &dyn crate::schema::Files) -> Vec<String> {
        match load_with(text, files) {
            Err(ConfigError::Invalid(i)) => i.iter().map(|i| format!("{}: {}", i.key, i.message)).collect(),
            Err(e) => panic!("{e}"),
            Ok(_) => panic!("accepted:\n{text}"),
        }
    }

    #[test]
    fn full_section_loads() {
        let c = load_with(
            r#"
[gpu]
mode = "gpu"
multi_gpu_mode = "nvle"
helper_timeout_ms = 20000
measurements = { "10" = ["aabb", "ccdd"] }
driver_versions = ["550.90.07"]
locked_clocks_mhz = [1500, 1980]
power_limit_w = 700
"#,
            &NoFiles,
        )
        .unwrap();
        assert_eq!(c.gpu.mode, GpuMode::Gpu);
        assert_eq!(c.gpu.multi_gpu_mode, MultiGpuMode::Nvle);
        let rv = c.gpu.inline_reference().unwrap();
        assert_eq!(rv.entries[&10], vec![vec![0xaa, 0xbb], vec![0xcc, 0xdd]]);
        assert_eq!(c.gpu.locked_clocks_mhz, Some([1500, 1980]));
        // Absent section: auto mode with NVIDIA's root.
        let d = load_with("", &NoFiles).unwrap();
        assert_eq!(d.gpu.mode, GpuMode::Auto);
        assert!(d.gpu.device_root.is_none() && d.gpu.verify_rim_signatures);
    }

    #[test]
    fn bad_values_are_reported_by_key() {
        let p = problems(
            r#"
[gpu]
helper = "relative/helper"
helper_timeout_ms = 5
measurements = { "0" = ["zz"], "2" = [] }
locked_clocks_mhz = [2000, 1000]
power_limit_w = 5
multi_gpu_mode = "protected-pcie"
helper_read_write = ["run"]
helper_seccomp_allow = ["mount", "no_such_call"]
typo = 1
"#,
            &NoFiles,
        );
        let joined = p.join("\n");
        for needle in [
            "gpu.helper: \"relative/helper\" must be an absolute path",
            "gpu.helper_timeout_ms: 5 is out of range",
            "gpu.measurements.0: the key must be an SPDM block index 1-255",
            "gpu.measurements.0: \"zz\" is not 1-64 bytes of hex",
            "gpu.measurements.2: lists no accepted value",
            "gpu.locked_clocks_mhz: [2000, 1000] must be [min, max]",
            "gpu.power_limit_w: 5 is out of range",
            "gpu.typo: unknown key",
            "gpu.multi_gpu_mode: \"protected-pcie\" is not supported yet",
            "gpu.helper_read_write[0]: \"run\" must be an absolute path",
            "gpu.helper_seccomp_allow[0]: mount is on the kill list and cannot be allowed",
            "gpu.helper_seccomp_allow[1]: \"no_such_call\" is not an x86_64 system call",
        ] {
            assert!(joined.contains(needle), "missing {needle:?} in\n{joined}");
        }
    }

    #[test]
    fn referenced_rims_and_root_are_checked_in_the_image() {
        let t = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(t.path().join("etc")).unwrap();
        std::fs::write(t.path().join("etc/bad.xml"), "<a/>").unwrap();
        std::fs::write(t.path().join("etc/root.pem"), "not pem").unwrap();
        let files = RootFiles::new(t.path());
        let p =
            problems("[gpu]\nrims = [\"/etc/bad.xml\", \"/etc/none.xml\"]\ndevice_root = \"/etc/root.pem\"\n", &files);
        let joined = p.join("\n");
        assert!(joined.contains("gpu.rims[0]: /etc/bad.xml: RIM is not a SWID tag"), "{joined}");
        assert!(joined.contains("gpu.rims[1]: /etc/none.xml: no such file in the image"), "{joined}");
        assert!(
            joined
                .contains("gpu.device_root: /etc/root.pem: certificate chain is not valid PEM/DER: no PEM block found"),
            "{joined}"
        );
    }
}
