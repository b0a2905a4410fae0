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
//! - or the feature is not built and a knob that is always there proves
//!   that sysctls work: `kernel.core_pattern` is registered exactly when
//!   core dumps are built (`CONFIG_COREDUMP`); without it, but with
//!   `fs.suid_dumpable`, the kernel writes no core dumps at all.
//!
//! `fs.suid_dumpable` and `kernel.randomize_va_space` have no excuse (they
//! are always registered with sysctl support on x86_64): their absence is
//! fatal. Probing a system call means calling it with arguments the kernel
//! rejects before doing anything; only `ENOSYS` counts as "not built".
//!
//! After the sysctls the kernel lockdown LSM is raised through securityfs
//! (`[lockdown] kernel_lockdown`, default `confidentiality`) and read back;
//! the LSM must be active (`/sys/kernel/security/lsm`). Lockdown also
//! refuses `ioperm(2)`: a test image keeps its isa-debug-exit port from
//! before (`power::keep_debug_exit_port`).

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::schema::{Section, Validator};

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

/// The kernel lockdown LSM's level (`/sys/kernel/security/lockdown`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum KernelLockdown {
    /// Not raised. Test images only (ioperm for isa-debug-exit after handoff).
    None,
    /// No kernel modification from user space: unsigned modules, /dev/mem,
    /// kexec, ioperm/iopl, MSR writes, ACPI table overrides...
    Integrity,
    /// Integrity, and no reading kernel memory either: /proc/kcore, kprobes,
    /// BPF reads of kernel memory, perf, tracefs.
    #[default]
    Confidentiality,
}

impl KernelLockdown {
    pub fn label(self) -> &'static str {
        match self {
            KernelLockdown::None => "none",
            KernelLockdown::Integrity => "integrity",
            KernelLockdown::Confidentiality => "confidentiality",
        }
    }

    fn from_label(s: &str) -> Option<Self> {
        [KernelLockdown::None, KernelLockdown::Integrity, KernelLockdown::Confidentiality]
            .into_iter()
            .find(|l| l.label() == s)
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
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
    /// The kernel lockdown LSM level raised after the sysctls.
    pub kernel_lockdown: KernelLockdown,
    /// `kernel.modules_disabled = 1` after the modules and GPU stages
    /// (default true). `false` leaves module loading open to whoever holds
    /// CAP_SYS_MODULE, e.g. a container agent asked by its runtime to load
    /// one (listed as a weakening).
    pub modules_disabled: bool,
}

impl Default for LockdownConfig {
    fn default() -> Self {
        Self {
            ptrace_scope: 2,
            io_uring_disabled: 2,
            perf_event_paranoid: 3,
            read_only_root: ReadOnlyRoot::Auto,
            kernel_lockdown: KernelLockdown::Confidentiality,
            modules_disabled: true,
        }
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
    #[error("kernel lockdown: {0}")]
    KernelLockdown(String),
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
    /// A knob registered whenever sysctls work: when it is there, this
    /// knob's absence means its feature is not built (core dumps).
    pub witness: Option<&'static str>,
    /// Why the knob may be missing and what accepts that, for the error.
    pub note: &'static str,
}

impl Knob {
    fn new(path: &'static str, value: impl ToString, guards: &'static [&'static str]) -> Self {
        Self { path, value: value.to_string(), guards, absent_means: None, witness: None, note: "" }
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
        // The kernel's default. A pipe (`|prog`) would run prog as root in
        // the initial namespaces on every crash, with the dump on stdin;
        // RLIMIT_CORE does not stop a pipe. A plain name writes a file only
        // within RLIMIT_CORE, which the workload has at 0 (hard) and cannot
        // raise, and never for setuid programs (suid_dumpable = 0).
        Knob {
            witness: Some("fs/suid_dumpable"),
            note: "it exists whenever core dumps are built (CONFIG_COREDUMP), and fs.suid_dumpable shows \
                   sysctls work",
            ..Knob::new("kernel/core_pattern", "core", &[])
        },
        // 2: stack, mmap, vDSO and heap (brk) randomised.
        Knob { note: "it exists on every kernel with an MMU", ..Knob::new("kernel/randomize_va_space", 2, &[]) },
        Knob::new("kernel/modules_disabled", 1, &["finit_module", "init_module"]),
    ]
}

/// `kernel.modules_disabled`, left alone with `modules_disabled = false`.
const MODULES_DISABLED: &str = "kernel/modules_disabled";

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
    /// `name=value` per sysctl written, then `lockdown=LEVEL`.
    pub set: Vec<String>,
    pub absent: Vec<String>,
    pub root_read_only: bool,
}

/// Where the lockdown writes: `/proc/sys` and `/sys/kernel/security` at
/// boot, temporary trees in tests.
#[derive(Debug, Clone)]
pub struct Paths {
    pub proc_sys: PathBuf,
    pub security: PathBuf,
}

impl Default for Paths {
    fn default() -> Self {
        Self { proc_sys: "/proc/sys".into(), security: "/sys/kernel/security".into() }
    }
}

/// Applies the lockdown.
pub fn apply(cfg: &LockdownConfig, paths: &Paths, root: &dyn RootRemount) -> Result<Applied, LockdownError> {
    apply_with(cfg, paths, root, &KernelProbe)
}

/// `apply` with the system-call probe given (tests).
pub fn apply_with(
    cfg: &LockdownConfig,
    paths: &Paths,
    root: &dyn RootRemount,
    probe: &dyn SyscallProbe,
) -> Result<Applied, LockdownError> {
    let mut applied = Applied::default();
    let proc_sys = paths.proc_sys.as_path();
    for knob in knobs(cfg).into_iter().filter(|k| cfg.modules_disabled || k.path != MODULES_DISABLED) {
        let path: PathBuf = proc_sys.join(knob.path);
        let name = knob.name();
        if !path.exists() {
            // Not inside log!: its arguments are not evaluated when the level is off.
            let excuse = absent_excuse(&knob, proc_sys, probe)?;
            log::info!("lockdown: {name} is absent: {excuse}");
            applied.absent.push(name);
            continue;
        }
        write_and_check(&path, &name, &knob.value)?;
        applied.set.push(format!("{name}={}", knob.value));
    }
    let level = raise_kernel_lockdown(cfg.kernel_lockdown, &SecurityDir(&paths.security))?;
    applied.set.push(format!("lockdown={}", level.label()));
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
fn absent_excuse(knob: &Knob, proc_sys: &Path, probe: &dyn SyscallProbe) -> Result<String, LockdownError> {
    if knob.absent_means == Some(knob.value.as_str()) {
        return Ok(format!("the kernel behaves as with {}", knob.value));
    }
    if let Some(w) = knob.witness
        && proc_sys.join(w).exists()
    {
        return Ok(format!("not built into this kernel ({} is there)", w.replace('/', ".")));
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

/// The level `/sys/kernel/security/lockdown` marks: `none integrity [confidentiality]`.
fn current_lockdown(text: &str) -> Option<KernelLockdown> {
    text.split_whitespace().find_map(|w| w.strip_prefix('[')?.strip_suffix(']')).and_then(KernelLockdown::from_label)
}

/// The lockdown LSM's securityfs files (`lsm`, `lockdown`), behind a trait
/// so that raising the level is tested against a fake kernel.
pub trait SecurityFs {
    fn read(&self, name: &str) -> std::io::Result<String>;
    fn write(&self, name: &str, value: &str) -> std::io::Result<()>;
    /// For messages.
    fn describe(&self, name: &str) -> String;
}

/// The files under a securityfs mount (`/sys/kernel/security` at boot).
pub struct SecurityDir<'a>(pub &'a Path);

impl SecurityFs for SecurityDir<'_> {
    fn read(&self, name: &str) -> std::io::Result<String> {
        crate::files::read_capped(&self.0.join(name), 4096).map(|b| String::from_utf8_lossy(&b).into_owned())
    }

    fn write(&self, name: &str, value: &str) -> std::io::Result<()> {
        use std::io::Write;
        // One write(2): the kernel parses each write on its own.
        std::fs::OpenOptions::new().write(true).open(self.0.join(name))?.write_all(value.as_bytes())
    }

    fn describe(&self, name: &str) -> String {
        self.0.join(name).display().to_string()
    }
}

/// Raises the lockdown LSM to `wanted` (a level already higher stays: the
/// kernel never lowers it) and reads it back. Returns the level in force.
pub fn raise_kernel_lockdown(wanted: KernelLockdown, fs: &dyn SecurityFs) -> Result<KernelLockdown, LockdownError> {
    let err = |m: String| LockdownError::KernelLockdown(m);
    let read = || -> Result<KernelLockdown, LockdownError> {
        let text = fs.read("lockdown").map_err(|e| err(format!("cannot read {}: {e}", fs.describe("lockdown"))))?;
        current_lockdown(&text)
            .ok_or_else(|| err(format!("{} reads {:?}: no [level]", fs.describe("lockdown"), text.trim())))
    };
    if wanted == KernelLockdown::None {
        log::warn!(
            "lockdown: the kernel lockdown LSM is not raised ([lockdown] kernel_lockdown = \"none\": test images only)"
        );
        // Nothing to raise; without the LSM there is not even the file.
        return Ok(read().unwrap_or(KernelLockdown::None));
    }
    // securityfs offers the file even when the LSM is not active (lsm=
    // left it out): the write would then succeed and enforce nothing.
    let lsms = fs.read("lsm").map_err(|e| err(format!("cannot read {}: {e}", fs.describe("lsm"))))?;
    if !lsms.trim().split(',').any(|l| l == "lockdown") {
        return Err(err(format!("the lockdown LSM is not active (active: {})", lsms.trim())));
    }
    if read()? < wanted {
        fs.write("lockdown", wanted.label())
            .map_err(|e| err(format!("cannot write {} to {}: {e}", wanted.label(), fs.describe("lockdown"))))?;
    }
    let got = read()?;
    if got < wanted {
        return Err(err(format!("wrote {}, the kernel reports {}", wanted.label(), got.label())));
    }
    if got != KernelLockdown::Confidentiality {
        log::warn!("lockdown: kernel lockdown is {} only: kernel memory stays readable from user space", got.label());
    }
    Ok(got)
}

fn write_and_check(path: &Path, name: &str, value: &str) -> Result<(), LockdownError> {
    use std::io::Write;
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::OpenOptions::new().write(true).open(path)?;
        f.write_all(format!("{value}\n").as_bytes())
    };
    write().map_err(|source| LockdownError::Write { knob: name.to_string(), value: value.to_string(), source })?;
    let got = crate::files::read_capped(path, 4096)
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
        // securityfs of a kernel already at confidentiality (a plain file
        // cannot play the kernel's write; FakeLsm below does).
        let sec = dir.path().join("security");
        std::fs::create_dir_all(&sec).unwrap();
        std::fs::write(sec.join("lsm"), "capability,landlock,lockdown,yama").unwrap();
        std::fs::write(sec.join("lockdown"), "none integrity [confidentiality]\n").unwrap();
        dir
    }

    fn paths(dir: &tempfile::TempDir) -> Paths {
        Paths { proc_sys: dir.path().to_path_buf(), security: dir.path().join("security") }
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
        "kernel/core_pattern",
        "kernel/randomize_va_space",
        "kernel/modules_disabled",
    ];

    #[test]
    fn writes_every_knob_and_modules_disabled_last() {
        let dir = tree(ALL);
        let cfg = LockdownConfig { ptrace_scope: 1, ..LockdownConfig::default() };
        let fake = ok_remount();
        let applied = apply(&cfg, &paths(&dir), &fake).unwrap();
        assert_eq!(applied.set[applied.set.len() - 2..], ["kernel.modules_disabled=1", "lockdown=confidentiality"]);
        assert!(applied.set.contains(&"kernel.yama.ptrace_scope=1".to_string()));
        assert!(applied.root_read_only);
        assert_eq!(fake.calls.get(), 1);
        let read = |k: &str| std::fs::read_to_string(dir.path().join(k)).unwrap();
        assert_eq!(read("kernel/kptr_restrict"), "2\n");
        assert_eq!(read("kernel/io_uring_disabled"), "2\n");
        assert_eq!(read("kernel/perf_event_paranoid"), "3\n");
        assert_eq!(read("fs/suid_dumpable"), "0\n");
        assert_eq!(read("kernel/core_pattern"), "core\n");
        assert_eq!(read("kernel/randomize_va_space"), "2\n");
        // Already at confidentiality: nothing written.
        assert_eq!(read("security/lockdown"), "none integrity [confidentiality]\n");
    }

    #[test]
    fn core_pattern_absent_means_no_core_dumps_only_with_sysctls_working() {
        let dir = without(&["kernel/core_pattern"]);
        let applied = apply_with(&LockdownConfig::default(), &paths(&dir), &ok_remount(), &TEST_KERNEL).unwrap();
        assert_eq!(applied.absent, ["kernel.core_pattern"]);
        // randomize_va_space has no excuse.
        let dir = without(&["kernel/randomize_va_space"]);
        let err = apply_with(&LockdownConfig::default(), &paths(&dir), &ok_remount(), &TEST_KERNEL).unwrap_err();
        assert_eq!(
            err.to_string(),
            "kernel.randomize_va_space is absent, so 2 cannot be enforced: it exists on every kernel with an MMU"
        );
        // A pattern the kernel does not keep (a pipe someone set) is fatal.
        let dir = tree(ALL);
        std::fs::remove_file(dir.path().join("kernel/core_pattern")).unwrap();
        std::os::unix::fs::symlink("/dev/null", dir.path().join("kernel/core_pattern")).unwrap();
        let err = apply(&LockdownConfig::default(), &paths(&dir), &ok_remount()).unwrap_err();
        assert_eq!(err.to_string(), "kernel.core_pattern: wrote core, the kernel reports \"\"");
    }

    /// The lockdown LSM as the kernel implements it (security/lockdown/lockdown.c).
    struct FakeLsm {
        lsms: &'static str,
        level: Cell<KernelLockdown>,
        writes: std::cell::RefCell<Vec<String>>,
        /// A kernel that accepts the write and keeps nothing.
        ignores_writes: bool,
    }

    impl FakeLsm {
        fn new(level: KernelLockdown) -> Self {
            Self {
                lsms: "capability,landlock,lockdown,yama",
                level: Cell::new(level),
                writes: Default::default(),
                ignores_writes: false,
            }
        }
    }

    impl SecurityFs for FakeLsm {
        fn read(&self, name: &str) -> std::io::Result<String> {
            match name {
                "lsm" => Ok(self.lsms.to_string()),
                "lockdown" => Ok(match self.level.get() {
                    KernelLockdown::None => "[none] integrity confidentiality\n",
                    KernelLockdown::Integrity => "none [integrity] confidentiality\n",
                    KernelLockdown::Confidentiality => "none integrity [confidentiality]\n",
                }
                .to_string()),
                _ => Err(std::io::ErrorKind::NotFound.into()),
            }
        }

        fn write(&self, name: &str, value: &str) -> std::io::Result<()> {
            assert_eq!(name, "lockdown");
            self.writes.borrow_mut().push(value.to_string());
            let wanted = KernelLockdown::from_label(value).ok_or(std::io::ErrorKind::InvalidInput)?;
            // lock_kernel_down: never lowered, EPERM when already there.
            if self.level.get() >= wanted {
                return Err(std::io::Error::from_raw_os_error(libc::EPERM));
            }
            if !self.ignores_writes {
                self.level.set(wanted);
            }
            Ok(())
        }

        fn describe(&self, name: &str) -> String {
            format!("/sys/kernel/security/{name}")
        }
    }

    #[test]
    fn the_lockdown_lsm_is_raised_and_read_back() {
        use KernelLockdown::*;
        let k = FakeLsm::new(None);
        assert_eq!(raise_kernel_lockdown(Confidentiality, &k).unwrap(), Confidentiality);
        assert_eq!(*k.writes.borrow(), ["confidentiality"]);
        let k = FakeLsm::new(None);
        assert_eq!(raise_kernel_lockdown(Integrity, &k).unwrap(), Integrity);
        // Already higher: nothing written (the kernel would say EPERM), the higher level stays.
        let k = FakeLsm::new(Confidentiality);
        assert_eq!(raise_kernel_lockdown(Integrity, &k).unwrap(), Confidentiality);
        assert!(k.writes.borrow().is_empty());
        // "none" writes nothing and reports what is there.
        let k = FakeLsm::new(None);
        assert_eq!(raise_kernel_lockdown(None, &k).unwrap(), None);
        assert!(k.writes.borrow().is_empty());
    }

    #[test]
    fn a_lockdown_lsm_that_is_inactive_or_ignores_the_write_is_fatal() {
        use KernelLockdown::*;
        let k = FakeLsm { lsms: "capability,landlock,yama", ..FakeLsm::new(None) };
        assert_eq!(
            raise_kernel_lockdown(Confidentiality, &k).unwrap_err().to_string(),
            "kernel lockdown: the lockdown LSM is not active (active: capability,landlock,yama)"
        );
        assert!(k.writes.borrow().is_empty());
        let k = FakeLsm { ignores_writes: true, ..FakeLsm::new(None) };
        assert_eq!(
            raise_kernel_lockdown(Confidentiality, &k).unwrap_err().to_string(),
            "kernel lockdown: wrote confidentiality, the kernel reports none"
        );
        // On a temporary tree the write lands (over the old text) but reads back without [ ].
        let dir = tree(ALL);
        std::fs::write(dir.path().join("security/lockdown"), "[none] integrity confidentiality\n").unwrap();
        let err = apply(&LockdownConfig::default(), &paths(&dir), &ok_remount()).unwrap_err();
        assert!(err.to_string().ends_with("\": no [level]"), "{err}");
        assert!(err.to_string().contains("security/lockdown reads \"confidentiality"), "{err}");
        // No securityfs at all.
        std::fs::remove_dir_all(dir.path().join("security")).unwrap();
        let err = apply(&LockdownConfig::default(), &paths(&dir), &ok_remount()).unwrap_err();
        assert!(err.to_string().starts_with("kernel lockdown: cannot read "), "{err}");
        assert!(err.to_string().contains("security/lsm"), "{err}");
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
        let applied = apply_with(&LockdownConfig::default(), &paths(&dir), &ok_remount(), &TEST_KERNEL).unwrap();
        assert_eq!(
            applied.absent,
            ["kernel.unprivileged_bpf_disabled", "kernel.kexec_load_disabled", "kernel.io_uring_disabled"]
        );
        assert_eq!(applied.set.len(), 9);
        assert_eq!(applied.set[applied.set.len() - 2..], ["kernel.modules_disabled=1", "lockdown=confidentiality"]);
    }

    #[test]
    fn an_absent_knob_whose_system_call_exists_is_fatal() {
        // io_uring built, knob missing (a kernel before 6.6).
        let dir = without(&["kernel/io_uring_disabled"]);
        let probe = FakeProbe(&["syslog", "io_uring_setup", "perf_event_open", "finit_module"]);
        let err = apply_with(&LockdownConfig::default(), &paths(&dir), &ok_remount(), &probe).unwrap_err();
        assert_eq!(
            err.to_string(),
            "kernel.io_uring_disabled is absent, so 2 cannot be enforced: the kernel implements io_uring_setup; \
             kernels before 6.6 have io_uring without this knob ([lockdown] io_uring_disabled = 0 accepts that)"
        );
        assert_eq!(std::fs::read_to_string(dir.path().join("kernel/modules_disabled")).unwrap(), "0\n");
        // io_uring_disabled = 0 is what such a kernel does anyway.
        let open = LockdownConfig { io_uring_disabled: 0, ..LockdownConfig::default() };
        let applied = apply_with(&open, &paths(&dir), &ok_remount(), &probe).unwrap();
        assert_eq!(applied.absent, ["kernel.io_uring_disabled"]);
        // One implemented guard is enough: kexec_file_load without kexec_load.
        let dir = without(&["kernel/kexec_load_disabled"]);
        let err = apply_with(&LockdownConfig::default(), &paths(&dir), &ok_remount(), &FakeProbe(&["kexec_file_load"]))
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
            let err = apply_with(&cfg, &paths(&dir), &ok_remount(), &TEST_KERNEL).unwrap_err();
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
        let applied = apply_with(&classic, &paths(&dir), &ok_remount(), &TEST_KERNEL).unwrap();
        assert_eq!(applied.absent, ["kernel.yama.ptrace_scope"]);
        assert_eq!(applied.set[applied.set.len() - 2..], ["kernel.modules_disabled=1", "lockdown=confidentiality"]);
    }

    #[test]
    fn without_sysctl_support_nothing_is_excused() {
        // No /proc/sys at all: the first knob whose call exists stops it.
        let dir = tempfile::tempdir().unwrap();
        let err = apply_with(&LockdownConfig::default(), &paths(&dir), &ok_remount(), &TEST_KERNEL).unwrap_err();
        assert_eq!(
            err.to_string(),
            "kernel.kptr_restrict is absent, so 2 cannot be enforced: the kernel implements syslog"
        );
        // Even a kernel with none of the guarded calls keeps suid_dumpable.
        let err = apply_with(&LockdownConfig::default(), &paths(&dir), &ok_remount(), &FakeProbe(&[])).unwrap_err();
        assert!(err.to_string().starts_with("kernel.yama.ptrace_scope is absent"), "{err}");
        let classic = LockdownConfig { ptrace_scope: 0, ..LockdownConfig::default() };
        let err = apply_with(&classic, &paths(&dir), &ok_remount(), &FakeProbe(&[])).unwrap_err();
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
        let err = apply(&LockdownConfig::default(), &paths(&dir), &ok_remount()).unwrap_err();
        assert_eq!(err.to_string(), "kernel.dmesg_restrict: wrote 1, the kernel reports \"\"");
        // modules_disabled was not reached.
        assert_eq!(std::fs::read_to_string(dir.path().join("kernel/modules_disabled")).unwrap(), "0\n");
    }

    #[test]
    fn a_write_error_is_fatal() {
        let dir = tree(ALL);
        std::fs::remove_file(dir.path().join("kernel/kexec_load_disabled")).unwrap();
        std::fs::create_dir(dir.path().join("kernel/kexec_load_disabled")).unwrap();
        let err = apply(&LockdownConfig::default(), &paths(&dir), &ok_remount()).unwrap_err();
        assert!(err.to_string().starts_with("kernel.kexec_load_disabled: cannot write 1: "), "{err}");
    }

    #[test]
    fn modules_disabled_can_be_left_off() {
        let dir = tree(ALL);
        let open = LockdownConfig { modules_disabled: false, ..LockdownConfig::default() };
        let applied = apply(&open, &paths(&dir), &ok_remount()).unwrap();
        assert!(!applied.set.iter().any(|k| k.starts_with("kernel.modules_disabled")), "{:?}", applied.set);
        assert_eq!(std::fs::read_to_string(dir.path().join("kernel/modules_disabled")).unwrap(), "0\n");
        use crate::config::{Config, NoFiles, Sources};
        let text = "[workload]\npath = \"/bin/w\"\n[lockdown]\nmodules_disabled = false\n";
        let c = Config::load(Sources { origin: "c.toml", text, cmdline: None, files: &NoFiles }).unwrap();
        assert!(!c.lockdown.modules_disabled);
        assert!(LockdownConfig::default().modules_disabled);
    }

    #[test]
    fn read_only_root_modes() {
        let dir = tree(ALL);
        let refuse = FakeRemount { result: Some(std::io::ErrorKind::PermissionDenied), calls: Cell::new(0) };
        let applied = apply(&LockdownConfig::default(), &paths(&dir), &refuse).unwrap();
        assert!(!applied.root_read_only);
        let required = LockdownConfig { read_only_root: ReadOnlyRoot::Required, ..LockdownConfig::default() };
        let err = apply(&required, &paths(&dir), &refuse).unwrap_err();
        assert_eq!(err.to_string(), "read-only root: refused");
        let off = LockdownConfig { read_only_root: ReadOnlyRoot::Off, ..LockdownConfig::default() };
        let fake = ok_remount();
        assert!(!apply(&off, &paths(&dir), &fake).unwrap().root_read_only);
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
        assert_eq!(c.lockdown.kernel_lockdown, KernelLockdown::Confidentiality);
        let c = load("[lockdown]\nkernel_lockdown = \"integrity\"\n").unwrap();
        assert_eq!(c.lockdown.kernel_lockdown, KernelLockdown::Integrity);
        let issues = load("[lockdown]\nkernel_lockdown = \"lax\"\n").unwrap_err().issues();
        assert!(issues[0].contains("lockdown.kernel_lockdown"), "{issues:?}");
        let issues = load("[lockdown]\nptrace_scope = 4\nio_uring_disabled = 3\n").unwrap_err().issues();
        assert!(issues.iter().any(|i| i.contains("lockdown.ptrace_scope: 4 is out of range (0..=3)")), "{issues:?}");
        assert!(issues.iter().any(|i| i.contains("lockdown.io_uring_disabled: 3 is out of range (0..=2)")));
    }
}
