//! Finding the source disk by its virtio serial in sysfs.
//!
//! The host decides the probe order (`vda`, `vdb`, ...), so a name says
//! nothing; the serial (QEMU `-drive ...,serial=NAME`) is what the platform
//! engineer configured. Either way the host controls both: what makes the
//! disk trustworthy is dm-verity with the measured root hash, not its name.
//! The serial only makes the choice deterministic and the error precise.

use std::io;
use std::path::{Path, PathBuf};

use super::dm::DevId;

/// Where block devices are listed.
pub const DEFAULT_SYS_BLOCK: &str = "/sys/block";

/// A whole disk found in sysfs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Disk {
    /// Kernel name (`vdb`).
    pub name: String,
    pub dev: DevId,
    pub size_bytes: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum DiskError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: io::Error,
    },
    #[error("{path}: unexpected content")]
    Malformed { path: String },
    #[error("serial {serial:?} is on more than one disk ({disks})")]
    Ambiguous { serial: String, disks: String },
}

/// Reads a small sysfs attribute, refusing anything larger than `max`.
fn read_attr(path: &Path, max: u64) -> Result<Option<String>, DiskError> {
    match crate::files::read_capped(path, max) {
        Ok(bytes) => Ok(Some(String::from_utf8_lossy(&bytes).into_owned())),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(DiskError::Read { path: path.display().to_string(), source }),
    }
}

fn malformed(path: &Path) -> DiskError {
    DiskError::Malformed { path: path.display().to_string() }
}

/// `MAJOR:MINOR\n`.
fn parse_dev(text: &str) -> Option<DevId> {
    let (major, minor) = text.trim_end_matches('\n').split_once(':')?;
    Some(DevId { major: major.parse().ok()?, minor: minor.parse().ok()? })
}

/// The disk whose `serial` attribute equals `serial`, if any. virtio-blk
/// writes the serial without a newline; other drivers add one, which is
/// ignored. More than one match is an error, never a guess.
pub fn find_by_serial(sys_block: &Path, serial: &str) -> Result<Option<Disk>, DiskError> {
    let entries = match std::fs::read_dir(sys_block) {
        Ok(e) => e,
        Err(source) => {
            return Err(DiskError::Read { path: sys_block.display().to_string(), source });
        }
    };
    let mut names: Vec<String> = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|source| DiskError::Read { path: sys_block.display().to_string(), source })?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let dir = sys_block.join(&name);
        let Some(found) = read_attr(&dir.join("serial"), 256)? else {
            continue;
        };
        if found.strip_suffix('\n').unwrap_or(&found) == serial {
            names.push(name);
        }
    }
    names.sort();
    match names.as_slice() {
        [] => Ok(None),
        [name] => disk(sys_block, name).map(Some),
        many => Err(DiskError::Ambiguous { serial: serial.to_string(), disks: many.join(", ") }),
    }
}

fn disk(sys_block: &Path, name: &str) -> Result<Disk, DiskError> {
    let dir: PathBuf = sys_block.join(name);
    let dev_path = dir.join("dev");
    let dev = read_attr(&dev_path, 64)?.as_deref().and_then(parse_dev).ok_or_else(|| malformed(&dev_path))?;
    let size_path = dir.join("size");
    let sectors: u64 = read_attr(&size_path, 64)?
        .and_then(|s| s.trim_end_matches('\n').parse().ok())
        .ok_or_else(|| malformed(&size_path))?;
    let size_bytes = sectors.checked_mul(512).ok_or_else(|| malformed(&size_path))?;
    Ok(Disk { name: name.to_string(), dev, size_bytes })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A fake `/sys/block` entry laid out as virtio-blk shows it.
    pub(crate) fn add_disk(root: &Path, name: &str, serial: Option<&str>, dev: &str, sectors: u64) {
        let dir = root.join(name);
        std::fs::create_dir_all(&dir).unwrap();
        if let Some(s) = serial {
            std::fs::write(dir.join("serial"), s).unwrap();
        }
        std::fs::write(dir.join("dev"), format!("{dev}\n")).unwrap();
        std::fs::write(dir.join("size"), format!("{sectors}\n")).unwrap();
    }

    #[test]
    fn the_disk_is_found_by_serial_not_by_order() {
        let t = tempfile::tempdir().unwrap();
        add_disk(t.path(), "vda", Some("rootfs"), "253:0", 100);
        add_disk(t.path(), "vdb", Some("ztmodel"), "253:16", 2048);
        add_disk(t.path(), "zram0", None, "252:0", 10);
        add_disk(t.path(), "sda", Some("ztmodel-2\n"), "8:0", 10);
        let d = find_by_serial(t.path(), "ztmodel").unwrap().unwrap();
        assert_eq!(d, Disk { name: "vdb".into(), dev: DevId { major: 253, minor: 16 }, size_bytes: 2048 * 512 });
        // A trailing newline (SCSI, NVMe) is not part of the serial.
        assert_eq!(find_by_serial(t.path(), "ztmodel-2").unwrap().unwrap().name, "sda");
        assert!(find_by_serial(t.path(), "ztmode").unwrap().is_none(), "no prefix match");
        assert!(find_by_serial(t.path(), "missing").unwrap().is_none());
    }

    #[test]
    fn two_disks_with_one_serial_are_refused() {
        let t = tempfile::tempdir().unwrap();
        add_disk(t.path(), "vdc", Some("ztmodel"), "253:32", 8);
        add_disk(t.path(), "vdb", Some("ztmodel"), "253:16", 8);
        let e = find_by_serial(t.path(), "ztmodel").unwrap_err();
        assert_eq!(e.to_string(), "serial \"ztmodel\" is on more than one disk (vdb, vdc)");
    }

    #[test]
    fn malformed_attributes_are_errors() {
        let t = tempfile::tempdir().unwrap();
        add_disk(t.path(), "vdb", Some("ztmodel"), "253-16", 8);
        let e = find_by_serial(t.path(), "ztmodel").unwrap_err();
        assert!(matches!(e, DiskError::Malformed { ref path } if path.ends_with("vdb/dev")), "{e}");
        let t = tempfile::tempdir().unwrap();
        add_disk(t.path(), "vdb", Some("ztmodel"), "253:16", u64::MAX);
        let e = find_by_serial(t.path(), "ztmodel").unwrap_err();
        assert!(matches!(e, DiskError::Malformed { ref path } if path.ends_with("vdb/size")), "{e}");
        let e = find_by_serial(&t.path().join("nope"), "x").unwrap_err();
        assert!(matches!(e, DiskError::Read { .. }));
    }
}
