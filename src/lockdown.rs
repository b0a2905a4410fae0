//! Lockdown before launch: kernel hardening sysctls, each written and read
//! back (a mismatch is fatal), `kernel.modules_disabled = 1` last (after
//! module loading and GPU bring-up), and the root mount made read-only.
//!
//! A knob whose file does not exist is accepted only when its absence
//! cannot leave the guest weaker than configured:
//!
//! - the knob is registered exactly when the kernel implements the system
//!   calls it restricts (`io_uring_disabled` with `io_uring_setup`,
//!   `kexec_load_disabled` with `kexec_load`/`kexec_file_load`...), and
//!   each of those answers `ENOSYS`: the feature is not built, nothing to
//!   lock. If one of them is implemented, the knob is missing for another
//!   reason (a kernel older than the knob, no sysctl support) and the
//!   interface is open: fatal.
//! - or the kernel behaves without the knob as with the configured value:
//!   Yama's `ptrace_scope` is registered only while Yama is active (it is
//!   absent when Yama is not built or `lsm=` on the command line leaves it
//!   out), and without Yama ptrace follows the classic rules, i.e. scope 0.
//!   So `ptrace_scope = 0` accepts an absent Yama; any stricter value is
//!   fatal, since ptrace itself is always there.
//!
//! `fs.suid_dumpable` has neither excuse (it is always registered with
//! sysctl support): its absence is fatal. Probing a system call means
//! calling it with arguments the kernel rejects before doing anything;
//! only `ENOSYS` counts as "not built".

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
    #[error("{knob} is absent, so {value} cannot be enforced: {reason}")]
    Absent { knob: String, value: String, reason: String },
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

/// One sysctl of the lockdown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Knob {
    /// Path below /proc/sys.
    pub path: &'static str,
    pub value: String,
    /// The system calls the knob restricts. The kernel registers the knob
    /// whenever it implements one of them, so an absent knob is accepted
    /// when none is implemented. Empty: the knob has no such excuse.
    pub guards: &'static [&'static str],
    /// How the kernel behaves without the knob, as a value of it (Yama
    /// inactive: classic ptrace rules, scope 0). An absent knob is accepted
    /// when the configured value is this one.
    pub absent_means: Option<&'static str>,
    /// Why the knob may be missing and what accepts that, for the error.
    pub note: &'static str,
}

impl Knob {
    fn new(path: &'static str, value: impl ToString, guards: &'static [&'static str]) -> Self {
        Self { path, value: value.to_string(), guards, absent_means: None, note: "" }
    }

    /// `kernel.yama.ptrace_scope`.
    pub fn name(&self) -> String {
        self.path.replace('/', ".")
    }
}

/// The knobs in the order they are written; `modules_disabled` is last.
pub fn knobs(cfg: &LockdownConfig) -> Vec<Knob> {
    // kptr_restrict and dmesg_restrict are registered by printk's sysctl
    // table (CONFIG_PRINTK), whose system call is syslog.
    vec![
        Knob::new("kernel/kptr_restrict", 2, &["syslog"]),
        Knob::new("kernel/dmesg_restrict", 1, &["syslog"]),
        Knob::new("kernel/unprivileged_bpf_disabled", 1, &["bpf"]),
        Knob::new("kernel/kexec_load_disabled", 1, &["kexec_load", "kexec_file_load"]),
        Knob {
            absent_means: Some("0"),
            note: "kernels before 6.6 have io_uring without this knob ([lockdown] io_uring_disabled = 0 accepts that)",
            ..Knob::new("kernel/io_uring_disabled", cfg.io_uring_disabled, &["io_uring_setup"])
        },
        Knob::new("kernel/perf_event_paranoid", cfg.perf_event_paranoid, &["perf_event_open"]),
        // ptrace itself is always there.
        Knob {
            absent_means: Some("0"),
            note: "Yama is not active (not built, or left out by lsm= on the kernel command line); \
                   [lockdown] ptrace_scope = 0 accepts classic ptrace rules",
            ..Knob::new("kernel/yama/ptrace_scope", cfg.ptrace_scope, &[])
        },
        Knob { note: "it exists whenever the kernel has sysctl support", ..Knob::new("fs/suid_dumpable", 0, &[]) },
        Knob::new("kernel/modules_disabled", 1, &["finit_module", "init_module"]),
    ]
}

/// Whether the running kernel implements a system call, behind a trait so
/// the absent-knob rules are tested on any host.
pub trait SyscallProbe {
    /// False only when the call is known not to be built (`ENOSYS`).
    fn implemented(&self, name: &str) -> bool;
}

/// The real probe: each call with arguments that the kernel rejects
/// (bad flags, a NULL or empty buffer, an unknown command) before it
/// changes anything; `ENOSYS` means the call is not built. A name without
/// a known harmless invocation counts as implemented (fail closed).
pub struct KernelProbe;

impl SyscallProbe for KernelProbe {
    fn implemented(&self, name: &str) -> bool {
        // Arguments (x86_64): each rejected up front, see the comments.
        let args: [u64; 5] = match name {
            // SYSLOG_ACTION_SIZE_BUFFER: only reads the buffer size.
            "syslog" => [10, 0, 0, 0, 0],
            // An unknown command: EINVAL after the permission checks.
            "bpf" => [i32::MAX as u64, 0, 0, 0, 0],
            // 0x8000 is not a KEXEC_* flag: EINVAL before anything is read.
            "kexec_load" => [0, 0, 0, 0x8000, 0],
            // 1 << 20 is not a KEXEC_FILE_* flag: EINVAL.
            "kexec_file_load" => [u64::MAX, u64::MAX, 0, 0, 1 << 20],
            // Parameters at NULL: EFAULT (or EPERM when disabled).
            "io_uring_setup" => [0, 0, 0, 0, 0],
            // 1 << 31 is not a PERF_FLAG_*: EINVAL before the attr is read.
            "perf_event_open" => [0, 0, u64::MAX, u64::MAX, 1 << 31],
            // fd -1 and an unknown flag: EPERM or EINVAL.
            "finit_module" => [u64::MAX, 0, 1 << 31, 0, 0],
            // An empty image: ENOEXEC (or EPERM).
            "init_module" => [0, 0, 0, 0, 0],
            _ => return true,
        };
        let Some(nr) = crate::sandbox::seccomp::syscalls::number(name) else {
            return true;
        };
        // SAFETY: the arguments above make the kernel fail the call before
        // it has any effect; no pointer argument is dereferenced (all NULL).
        let r = unsafe { libc::syscall(nr as libc::c_long, args[0], args[1], args[2], args[3], args[4]) };
        !(r == -1 && std::io::Error::last_os_error().raw_os_error() == Some(libc::ENOSYS))
    }
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
    apply_with(cfg, proc_sys, root, &KernelProbe)
}

/// `apply` with the system-call probe given (tests).
pub fn apply_with(
    cfg: &LockdownConfig,
    proc_sys: &Path,
    root: &dyn RootRemount,
    probe: &dyn SyscallProbe,
) -> Result<Applied, LockdownError> {
    let mut applied = Applied::default();
    for knob in knobs(cfg) {
        let path: PathBuf = proc_sys.join(knob.path);
        let name = knob.name();
        if !path.exists() {
            // Not inside log!: its arguments are not evaluated when the level is off.
            let excuse = absent_excuse(&knob, probe)?;
            log::info!("lockdown: {name} is absent: {excuse}");
            applied.absent.push(name);
            continue;
        }
        write_and_check(&path, &name, &knob.value)?;
        applied.set.push(format!("{name}={}", knob.value));
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

/// Why an absent knob leaves the guest as configured, or the error.
fn absent_excuse(knob: &Knob, probe: &dyn SyscallProbe) -> Result<String, LockdownError> {
    if knob.absent_means == Some(knob.value.as_str()) {
        return Ok(format!("the kernel behaves as with {}", knob.value));
    }
    let implemented = knob.guards.iter().find(|g| probe.implemented(g));
    let reason = match implemented {
        None if !knob.guards.is_empty() => return Ok(format!("{} not built into this kernel", knob.guards.join(", "))),
        None => knob.note.to_string(),
        Some(call) if knob.note.is_empty() => format!("the kernel implements {call}"),
        Some(call) => format!("the kernel implements {call}; {}", knob.note),
    };
    Err(LockdownError::Absent { knob: knob.name(), value: knob.value.clone(), reason })
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

    /// A kernel implementing exactly these system calls.
    struct FakeProbe(&'static [&'static str]);

    impl SyscallProbe for FakeProbe {
        fn implemented(&self, name: &str) -> bool {
            self.0.contains(&name)
        }
    }

    /// The test kernel: no BPF syscall, no kexec, no io_uring.
    const TEST_KERNEL: FakeProbe = FakeProbe(&["syslog", "perf_event_open", "finit_module", "init_module"]);

    fn without(knobs: &[&str]) -> tempfile::TempDir {
        tree(&ALL.iter().copied().filter(|k| !knobs.contains(k)).collect::<Vec<_>>())
    }

    #[test]
    fn knobs_of_features_not_built_are_skipped() {
        let dir =
            without(&["kernel/unprivileged_bpf_disabled", "kernel/kexec_load_disabled", "kernel/io_uring_disabled"]);
        let applied = apply_with(&LockdownConfig::default(), dir.path(), &ok_remount(), &TEST_KERNEL).unwrap();
        assert_eq!(
            applied.absent,
            ["kernel.unprivileged_bpf_disabled", "kernel.kexec_load_disabled", "kernel.io_uring_disabled"]
        );
        assert_eq!(applied.set.len(), 6);
        assert_eq!(applied.set.last().unwrap(), "kernel.modules_disabled=1");
    }

    #[test]
    fn an_absent_knob_whose_system_call_exists_is_fatal() {
        // io_uring built, knob missing (a kernel before 6.6).
        let dir = without(&["kernel/io_uring_disabled"]);
        let probe = FakeProbe(&["syslog", "io_uring_setup", "perf_event_open", "finit_module"]);
        let err = apply_with(&LockdownConfig::default(), dir.path(), &ok_remount(), &probe).unwrap_err();
        assert_eq!(
            err.to_string(),
            "kernel.io_uring_disabled is absent, so 2 cannot be enforced: the kernel implements io_uring_setup; \
             kernels before 6.6 have io_uring without this knob ([lockdown] io_uring_disabled = 0 accepts that)"
        );
        assert_eq!(std::fs::read_to_string(dir.path().join("kernel/modules_disabled")).unwrap(), "0\n");
        // io_uring_disabled = 0 is what such a kernel does anyway.
        let open = LockdownConfig { io_uring_disabled: 0, ..LockdownConfig::default() };
        let applied = apply_with(&open, dir.path(), &ok_remount(), &probe).unwrap();
        assert_eq!(applied.absent, ["kernel.io_uring_disabled"]);
        // One implemented guard is enough: kexec_file_load without kexec_load.
        let dir = without(&["kernel/kexec_load_disabled"]);
        let err = apply_with(&LockdownConfig::default(), dir.path(), &ok_remount(), &FakeProbe(&["kexec_file_load"]))
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "kernel.kexec_load_disabled is absent, so 1 cannot be enforced: the kernel implements kexec_file_load"
        );
    }

    #[test]
    fn yama_absent_is_fatal_unless_ptrace_scope_is_0() {
        let dir = without(&["kernel/yama/ptrace_scope"]);
        for scope in [1, 2, 3] {
            let cfg = LockdownConfig { ptrace_scope: scope, ..LockdownConfig::default() };
            let err = apply_with(&cfg, dir.path(), &ok_remount(), &TEST_KERNEL).unwrap_err();
            assert_eq!(
                err.to_string(),
                format!(
                    "kernel.yama.ptrace_scope is absent, so {scope} cannot be enforced: Yama is not active (not \
                     built, or left out by lsm= on the kernel command line); [lockdown] ptrace_scope = 0 accepts \
                     classic ptrace rules"
                )
            );
        }
        let classic = LockdownConfig { ptrace_scope: 0, ..LockdownConfig::default() };
        let applied = apply_with(&classic, dir.path(), &ok_remount(), &TEST_KERNEL).unwrap();
        assert_eq!(applied.absent, ["kernel.yama.ptrace_scope"]);
        assert_eq!(applied.set.last().unwrap(), "kernel.modules_disabled=1");
    }

    #[test]
    fn without_sysctl_support_nothing_is_excused() {
        // No /proc/sys at all: the first knob whose call exists stops it.
        let dir = tempfile::tempdir().unwrap();
        let err = apply_with(&LockdownConfig::default(), dir.path(), &ok_remount(), &TEST_KERNEL).unwrap_err();
        assert_eq!(
            err.to_string(),
            "kernel.kptr_restrict is absent, so 2 cannot be enforced: the kernel implements syslog"
        );
        // Even a kernel with none of the guarded calls keeps suid_dumpable.
        let err = apply_with(&LockdownConfig::default(), dir.path(), &ok_remount(), &FakeProbe(&[])).unwrap_err();
        assert!(err.to_string().starts_with("kernel.yama.ptrace_scope is absent"), "{err}");
        let classic = LockdownConfig { ptrace_scope: 0, ..LockdownConfig::default() };
        let err = apply_with(&classic, dir.path(), &ok_remount(), &FakeProbe(&[])).unwrap_err();
        assert_eq!(
            err.to_string(),
            "fs.suid_dumpable is absent, so 0 cannot be enforced: it exists whenever the kernel has sysctl support"
        );
    }

    #[test]
    fn the_kernel_probe_tells_enosys_from_a_rejected_call() {
        // syslog exists on every kernel these tests run on (CONFIG_PRINTK);
        // SYSLOG_ACTION_SIZE_BUFFER or EPERM, never ENOSYS.
        assert!(KernelProbe.implemented("syslog"));
        // A call without a known harmless invocation counts as implemented.
        assert!(KernelProbe.implemented("reboot"));
        // Every guard has a harmless invocation (none falls back to "implemented").
        for knob in knobs(&LockdownConfig::default()) {
            for g in knob.guards {
                assert!(crate::sandbox::seccomp::syscalls::number(g).is_some(), "{g}");
            }
        }
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
