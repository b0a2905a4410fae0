//! Lockdown before launch: kernel hardening sysctls, each written and read
//! back (a mismatch is fatal), `kernel.modules_disabled = 1` last (after
//! module loading and GPU bring-up), and the root mount made read-only.
//!
//! A knob whose file does not exist belongs to a feature the kernel was
//! built without (no Yama, no io_uring, no kexec...): nothing to lock, so it
//! is logged and skipped. Any other failure is an error.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::config::{Section, Validator};

/// What happens with the root mount.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum ReadOnlyRoot {
    /// Make it read-only; if the kernel refuses, warn and go on.
    #[default]
    Auto,
    /// Make it read-only or fail the boot.
    Required,
    /// Leave it writable.
    Off,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct LockdownConfig {
    /// Yama `kernel.yama.ptrace_scope`: 0-3. CUDA IPC (pidfd_getfd) and MPI
    /// CMA need ≤ 1. 3 cannot be lowered until reboot.
    pub ptrace_scope: u8,
    /// `kernel.io_uring_disabled`: 0-2 (2: io_uring_setup fails for everyone).
    pub io_uring_disabled: u8,
    /// `kernel.perf_event_paranoid` (3 needs the perf-lockdown patch to mean
    /// more than 2; seccomp kills perf_event_open anyway).
    pub perf_event_paranoid: i32,
    pub read_only_root: ReadOnlyRoot,
}

impl Default for LockdownConfig {
    fn default() -> Self {
        Self { ptrace_scope: 2, io_uring_disabled: 2, perf_event_paranoid: 3, read_only_root: ReadOnlyRoot::Auto }
    }
}

impl Section for LockdownConfig {
    fn validate(&self, v: &mut Validator<'_>) {
        v.range("ptrace_scope", self.ptrace_scope, 0, 3);
        v.range("io_uring_disabled", self.io_uring_disabled, 0, 2);
        v.range("perf_event_paranoid", self.perf_event_paranoid, 2, 3);
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LockdownError {
    #[error("{knob}: cannot write {value}: {source}")]
    Write {
        knob: String,
        value: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{knob}: cannot read back: {source}")]
    Read {
        knob: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{knob}: wrote {wanted}, the kernel reports {got:?}")]
    Mismatch { knob: String, wanted: String, got: String },
    #[error("read-only root: {0}")]
    ReadOnlyRoot(std::io::Error),
}

/// Remounting the root read-only needs privileges; behind a trait so the
/// sysctl logic is tested as an ordinary user.
pub trait RootRemount {
    /// Makes the mount at `/` read-only.
    fn remount_read_only(&self) -> std::io::Result<()>;
}

/// The real one: `mount(NULL, "/", NULL, MS_REMOUNT|MS_BIND|MS_RDONLY)` sets
/// the per-mount read-only flag. It works on any filesystem, including the
/// initramfs rootfs (ramfs/tmpfs), whose superblock stays writable but can
/// no longer be written through this mount. Then statvfs confirms it.
pub struct KernelRemount;

impl RootRemount for KernelRemount {
    fn remount_read_only(&self) -> std::io::Result<()> {
        use rustix::mount::MountFlags;
        rustix::mount::mount_remount("/", MountFlags::BIND | MountFlags::RDONLY, "")?;
        let st = rustix::fs::statvfs("/")?;
        if !st.f_flag.contains(rustix::fs::StatVfsMountFlags::RDONLY) {
            return Err(std::io::Error::other("statvfs still reports the root writable"));
        }
        Ok(())
    }
}

/// The knobs in the order they are written; `modules_disabled` is last.
pub fn knobs(cfg: &LockdownConfig) -> Vec<(&'static str, String)> {
    vec![
        ("kernel/kptr_restrict", "2".into()),
        ("kernel/dmesg_restrict", "1".into()),
        ("kernel/unprivileged_bpf_disabled", "1".into()),
        ("kernel/kexec_load_disabled", "1".into()),
        ("kernel/io_uring_disabled", cfg.io_uring_disabled.to_string()),
        ("kernel/perf_event_paranoid", cfg.perf_event_paranoid.to_string()),
        ("kernel/yama/ptrace_scope", cfg.ptrace_scope.to_string()),
        ("fs/suid_dumpable", "0".into()),
        ("kernel/modules_disabled", "1".into()),
    ]
}

/// What `apply` did, for the log.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Applied {
    pub set: Vec<String>,
    pub absent: Vec<String>,
    pub root_read_only: bool,
}

/// Applies the lockdown. `proc_sys` is `/proc/sys` at boot.
pub fn apply(cfg: &LockdownConfig, proc_sys: &Path, root: &dyn RootRemount) -> Result<Applied, LockdownError> {
    let mut applied = Applied::default();
    for (knob, value) in knobs(cfg) {
        let path: PathBuf = proc_sys.join(knob);
        let name = knob.replace('/', ".");
        if !path.exists() {
            log::info!("lockdown: {name} is absent (feature not built into this kernel)");
            applied.absent.push(name);
            continue;
        }
        write_and_check(&path, &name, &value)?;
        applied.set.push(format!("{name}={value}"));
    }
    applied.root_read_only = match cfg.read_only_root {
        ReadOnlyRoot::Off => false,
        ReadOnlyRoot::Required => {
            root.remount_read_only().map_err(LockdownError::ReadOnlyRoot)?;
            true
        }
        ReadOnlyRoot::Auto => match root.remount_read_only() {
            Ok(()) => true,
            Err(e) => {
                log::warn!("lockdown: the root stays writable: {e}");
                false
            }
        },
    };
    log::info!("lockdown: {}{}", applied.set.join(" "), if applied.root_read_only { " root=ro" } else { "" });
    Ok(applied)
}

fn write_and_check(path: &Path, name: &str, value: &str) -> Result<(), LockdownError> {
    use std::io::Write;
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::OpenOptions::new().write(true).open(path)?;
        f.write_all(format!("{value}\n").as_bytes())
    };
    write().map_err(|source| LockdownError::Write { knob: name.to_string(), value: value.to_string(), source })?;
    let got = crate::config::read_capped(path, 4096)
        .map_err(|source| LockdownError::Read { knob: name.to_string(), source })?;
    let got = String::from_utf8_lossy(&got).trim().to_string();
    if got != value {
        return Err(LockdownError::Mismatch { knob: name.to_string(), wanted: value.to_string(), got });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use super::*;

    struct FakeRemount {
        result: Option<std::io::ErrorKind>,
        calls: Cell<u32>,
    }

    impl RootRemount for FakeRemount {
        fn remount_read_only(&self) -> std::io::Result<()> {
            self.calls.set(self.calls.get() + 1);
            match self.result {
                None => Ok(()),
                Some(kind) => Err(std::io::Error::new(kind, "refused")),
            }
        }
    }

    fn ok_remount() -> FakeRemount {
        FakeRemount { result: None, calls: Cell::new(0) }
    }

    fn tree(knobs: &[&str]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for k in knobs {
            let p = dir.path().join(k);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, "0\n").unwrap();
        }
        dir
    }

    const ALL: &[&str] = &[
        "kernel/kptr_restrict",
        "kernel/dmesg_restrict",
        "kernel/unprivileged_bpf_disabled",
        "kernel/kexec_load_disabled",
        "kernel/io_uring_disabled",
        "kernel/perf_event_paranoid",
        "kernel/yama/ptrace_scope",
        "fs/suid_dumpable",
        "kernel/modules_disabled",
    ];

    #[test]
    fn writes_every_knob_and_modules_disabled_last() {
        let dir = tree(ALL);
        let cfg = LockdownConfig { ptrace_scope: 1, ..LockdownConfig::default() };
        let fake = ok_remount();
        let applied = apply(&cfg, dir.path(), &fake).unwrap();
        assert_eq!(applied.set.last().unwrap(), "kernel.modules_disabled=1");
        assert!(applied.set.contains(&"kernel.yama.ptrace_scope=1".to_string()));
        assert!(applied.root_read_only);
        assert_eq!(fake.calls.get(), 1);
        let read = |k: &str| std::fs::read_to_string(dir.path().join(k)).unwrap();
        assert_eq!(read("kernel/kptr_restrict"), "2\n");
        assert_eq!(read("kernel/io_uring_disabled"), "2\n");
        assert_eq!(read("kernel/perf_event_paranoid"), "3\n");
        assert_eq!(read("fs/suid_dumpable"), "0\n");
    }

    #[test]
    fn absent_knobs_are_skipped() {
        let dir = tree(&["kernel/kptr_restrict", "kernel/modules_disabled"]);
        let applied = apply(&LockdownConfig::default(), dir.path(), &ok_remount()).unwrap();
        assert_eq!(applied.set, ["kernel.kptr_restrict=2", "kernel.modules_disabled=1"]);
        assert!(applied.absent.contains(&"kernel.yama.ptrace_scope".to_string()));
    }

    #[test]
    fn a_value_the_kernel_does_not_keep_is_fatal() {
        let dir = tree(ALL);
        // Reads back empty, as a kernel that ignored the write.
        std::fs::remove_file(dir.path().join("kernel/dmesg_restrict")).unwrap();
        std::os::unix::fs::symlink("/dev/null", dir.path().join("kernel/dmesg_restrict")).unwrap();
        let err = apply(&LockdownConfig::default(), dir.path(), &ok_remount()).unwrap_err();
        assert_eq!(err.to_string(), "kernel.dmesg_restrict: wrote 1, the kernel reports \"\"");
        // modules_disabled was not reached.
        assert_eq!(std::fs::read_to_string(dir.path().join("kernel/modules_disabled")).unwrap(), "0\n");
    }

    #[test]
    fn a_write_error_is_fatal() {
        let dir = tree(ALL);
        std::fs::remove_file(dir.path().join("kernel/kexec_load_disabled")).unwrap();
        std::fs::create_dir(dir.path().join("kernel/kexec_load_disabled")).unwrap();
        let err = apply(&LockdownConfig::default(), dir.path(), &ok_remount()).unwrap_err();
        assert!(err.to_string().starts_with("kernel.kexec_load_disabled: cannot write 1: "), "{err}");
    }

    #[test]
    fn read_only_root_modes() {
        let dir = tree(ALL);
        let refuse = FakeRemount { result: Some(std::io::ErrorKind::PermissionDenied), calls: Cell::new(0) };
        let applied = apply(&LockdownConfig::default(), dir.path(), &refuse).unwrap();
        assert!(!applied.root_read_only);
        let required = LockdownConfig { read_only_root: ReadOnlyRoot::Required, ..LockdownConfig::default() };
        let err = apply(&required, dir.path(), &refuse).unwrap_err();
        assert_eq!(err.to_string(), "read-only root: refused");
        let off = LockdownConfig { read_only_root: ReadOnlyRoot::Off, ..LockdownConfig::default() };
        let fake = ok_remount();
        assert!(!apply(&off, dir.path(), &fake).unwrap().root_read_only);
        assert_eq!(fake.calls.get(), 0);
    }

    #[test]
    fn config_section() {
        use crate::config::{Config, NoFiles, Sources};
        let load = |t: &str| {
            let text = format!("[workload]\npath = \"/bin/w\"\n{t}");
            Config::load(Sources { origin: "c.toml", text: &text, cmdline: None, files: &NoFiles })
        };
        let c = load("[lockdown]\nptrace_scope = 1\nread_only_root = \"required\"\n").unwrap();
        assert_eq!((c.lockdown.ptrace_scope, c.lockdown.read_only_root), (1, ReadOnlyRoot::Required));
        assert_eq!(c.lockdown.io_uring_disabled, 2);
        let issues = load("[lockdown]\nptrace_scope = 4\nio_uring_disabled = 3\n").unwrap_err().issues();
        assert!(issues.iter().any(|i| i.contains("lockdown.ptrace_scope: 4 is out of range (0..=3)")), "{issues:?}");
        assert!(issues.iter().any(|i| i.contains("lockdown.io_uring_disabled: 3 is out of range (0..=2)")));
    }
}
