//! Capability names and the values the child uses to drop them.
//! Everything here runs before fork; the child only issues the syscalls.

/// Linux capability names, indexed by number (include/uapi/linux/capability.h).
pub const NAMES: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
];

/// The number of a capability name (`CAP_SYS_ADMIN`, case-insensitive, the
/// `CAP_` prefix optional).
pub fn by_name(name: &str) -> Option<u32> {
    let upper = name.to_ascii_uppercase();
    let full = if upper.starts_with("CAP_") { upper } else { format!("CAP_{upper}") };
    NAMES.iter().position(|n| *n == full).and_then(|i| u32::try_from(i).ok())
}

/// A capability name the table does not know.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown capability {0:?}")]
pub struct UnknownCapability(pub String);

/// Bit mask of the named capabilities; the first unknown name is the error.
pub fn mask(names: &[String]) -> Result<u64, UnknownCapability> {
    names.iter().try_fold(0u64, |m, n| by_name(n).map(|c| m | (1u64 << c)).ok_or_else(|| UnknownCapability(n.clone())))
}

/// The highest capability the running kernel knows, from
/// `/proc/sys/kernel/cap_last_cap`; every bounding-set entry up to it is
/// dropped (unknown ones in between are skipped on EINVAL).
pub fn last_cap(proc_root: &std::path::Path) -> std::io::Result<u32> {
    let text = std::fs::read_to_string(proc_root.join("sys/kernel/cap_last_cap"))?;
    text.trim().parse::<u32>().ok().filter(|c| *c < 64).ok_or_else(|| {
        std::io::Error::new(std::io::ErrorKind::InvalidData, format!("cap_last_cap is {:?}", text.trim()))
    })
}

/// `struct __user_cap_header_struct` and `__user_cap_data_struct` for
/// capset(2), version 3 (64 capability bits in two data words).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct CapHeader {
    pub version: u32,
    pub pid: i32,
}

#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct CapData {
    pub effective: u32,
    pub permitted: u32,
    pub inheritable: u32,
}

pub const LINUX_CAPABILITY_VERSION_3: u32 = 0x2008_0522;

/// The capset(2) data for keeping exactly `keep` in E, P and I.
pub fn cap_data(keep: u64) -> [CapData; 2] {
    let [a, b, c, d, e, f, g, h] = keep.to_le_bytes();
    let lo = u32::from_le_bytes([a, b, c, d]);
    let hi = u32::from_le_bytes([e, f, g, h]);
    [
        CapData { effective: lo, permitted: lo, inheritable: lo },
        CapData { effective: hi, permitted: hi, inheritable: hi },
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_masks() {
        assert_eq!(by_name("CAP_SYS_ADMIN"), Some(21));
        assert_eq!(by_name("net_bind_service"), Some(10));
        assert_eq!(by_name("CAP_CHECKPOINT_RESTORE"), Some(40));
        assert_eq!(by_name("CAP_NOPE"), None);
        assert_eq!(mask(&["CAP_CHOWN".into(), "CAP_KILL".into()]), Ok(0b10_0001));
        assert_eq!(mask(&["CAP_KILL".into(), "CAP_X".into()]), Err(UnknownCapability("CAP_X".into())));
        let d = cap_data(1 << 40 | 1);
        assert_eq!((d[0].effective, d[1].permitted), (1, 1 << 8));
    }

    #[test]
    fn last_cap_from_proc() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("sys/kernel")).unwrap();
        std::fs::write(dir.path().join("sys/kernel/cap_last_cap"), "40\n").unwrap();
        assert_eq!(last_cap(dir.path()).unwrap(), 40);
        std::fs::write(dir.path().join("sys/kernel/cap_last_cap"), "x\n").unwrap();
        assert!(last_cap(dir.path()).unwrap_err().to_string().contains("cap_last_cap is \"x\""));
    }
}
