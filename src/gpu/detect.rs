//! NVIDIA devices on the PCI bus, read from sysfs before any driver loads.

use std::path::{Path, PathBuf};

pub const DEFAULT_PCI_DEVICES: &str = "/sys/bus/pci/devices";
const NVIDIA_VENDOR: u32 = 0x10de;
/// More NVIDIA functions than this is not a plausible pass-through.
const MAX_DEVICES: usize = 64;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceKind {
    /// Display controller: VGA (0x0300) or 3D (0x0302).
    Gpu,
    /// NVSwitch: bridge, other (0x0680).
    NvSwitch,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PciDevice {
    /// Bus/device/function, e.g. `0000:01:00.0`.
    pub bdf: String,
    pub device_id: u32,
    pub kind: DeviceKind,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Detected {
    pub gpus: Vec<PciDevice>,
    pub switches: Vec<PciDevice>,
}

#[derive(Debug, thiserror::Error)]
pub enum DetectError {
    #[error("cannot list {path}: {source}")]
    List {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {reason}")]
    Attribute { path: String, reason: String },
    #[error("more than {MAX_DEVICES} NVIDIA PCI functions")]
    TooMany,
}

/// Scans `pci_devices` (normally `/sys/bus/pci/devices`).
pub fn detect(pci_devices: &Path) -> Result<Detected, DetectError> {
    let entries = match std::fs::read_dir(pci_devices) {
        Ok(e) => e,
        // No PCI bus at all (e.g. a microVM without PCI): no GPUs.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Detected::default()),
        Err(source) => {
            return Err(DetectError::List { path: pci_devices.display().to_string(), source });
        }
    };
    let mut found = Detected::default();
    let mut names: Vec<String> = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|source| DetectError::List { path: pci_devices.display().to_string(), source })?;
        names.push(entry.file_name().to_string_lossy().into_owned());
    }
    names.sort();
    for bdf in names {
        let dir = pci_devices.join(&bdf);
        if read_hex(&dir.join("vendor"))? != NVIDIA_VENDOR {
            continue;
        }
        let class = read_hex(&dir.join("class"))?;
        let kind = match class >> 8 {
            0x0300 | 0x0302 => DeviceKind::Gpu,
            0x0680 => DeviceKind::NvSwitch,
            // Audio functions and other companions of a GPU.
            _ => continue,
        };
        let device_id = read_hex(&dir.join("device"))?;
        let dev = PciDevice { bdf, device_id, kind };
        match kind {
            DeviceKind::Gpu => found.gpus.push(dev),
            DeviceKind::NvSwitch => found.switches.push(dev),
        }
        if found.gpus.len() + found.switches.len() > MAX_DEVICES {
            return Err(DetectError::TooMany);
        }
    }
    Ok(found)
}

fn read_hex(path: &PathBuf) -> Result<u32, DetectError> {
    let err = |reason: String| DetectError::Attribute { path: path.display().to_string(), reason };
    let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
    let t = text.trim();
    let digits = t.strip_prefix("0x").ok_or_else(|| err(format!("{t:?} is not 0x-prefixed hex")))?;
    if digits.is_empty() || digits.len() > 8 {
        return Err(err(format!("{t:?} is not a 32-bit hex value")));
    }
    u32::from_str_radix(digits, 16).map_err(|_| err(format!("{t:?} is not hex")))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn fake_pci(root: &Path, devices: &[(&str, &str, &str, &str)]) {
        for (bdf, vendor, device, class) in devices {
            let d = root.join(bdf);
            std::fs::create_dir_all(&d).unwrap();
            std::fs::write(d.join("vendor"), format!("{vendor}\n")).unwrap();
            std::fs::write(d.join("device"), format!("{device}\n")).unwrap();
            std::fs::write(d.join("class"), format!("{class}\n")).unwrap();
        }
    }

    #[test]
    fn finds_gpus_and_switches_and_skips_the_rest() {
        let t = tempfile::tempdir().unwrap();
        fake_pci(
            t.path(),
            &[
                ("0000:00:01.0", "0x8086", "0x1237", "0x060000"),
                ("0000:02:00.0", "0x10de", "0x2336", "0x030200"),
                ("0000:01:00.0", "0x10de", "0x2331", "0x030200"),
                ("0000:01:00.1", "0x10de", "0x22a3", "0x040300"),
                ("0000:05:00.0", "0x10de", "0x22a3", "0x068000"),
            ],
        );
        let d = detect(t.path()).unwrap();
        let bdfs: Vec<_> = d.gpus.iter().map(|g| g.bdf.as_str()).collect();
        assert_eq!(bdfs, ["0000:01:00.0", "0000:02:00.0"]);
        assert_eq!(d.gpus[0].device_id, 0x2331);
        assert_eq!(d.switches.len(), 1);
    }

    #[test]
    fn missing_bus_is_no_gpu_but_garbage_is_an_error() {
        let t = tempfile::tempdir().unwrap();
        assert_eq!(detect(&t.path().join("none")).unwrap(), Detected::default());
        fake_pci(t.path(), &[("0000:01:00.0", "0x10de", "0x2331", "zz")]);
        let e = detect(t.path()).unwrap_err().to_string();
        assert!(e.ends_with("class: \"zz\" is not 0x-prefixed hex"), "{e}");
    }
}
