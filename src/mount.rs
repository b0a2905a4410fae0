//! Early mounts of PID 1.
//!
//! The plan is computed from what the kernel supports (`/proc/filesystems`)
//! and applied through a [`Mounter`], so tests plan and apply against a
//! temporary tree without privileges. A required mount that fails stops the
//! boot; optional ones (configfs, securityfs, cgroup2) are mounted when the
//! kernel has them.

use std::fmt;
use std::path::Path;

use crate::files::under;

use rustix::mount::MountFlags;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountSpec {
    pub source: &'static str,
    pub target: &'static str,
    pub fstype: &'static str,
    pub flags: MountFlags,
    pub data: &'static str,
    /// Mounted only when the kernel knows the filesystem.
    pub optional: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum MountError {
    #[error("mount {fstype} on {target}: {source}")]
    Mount {
        fstype: &'static str,
        target: String,
        #[source]
        source: std::io::Error,
    },
    #[error("create mount point {target}: {source}")]
    MountPoint {
        target: String,
        #[source]
        source: std::io::Error,
    },
}

const NOSUID_NODEV_NOEXEC: MountFlags = MountFlags::NOSUID.union(MountFlags::NODEV).union(MountFlags::NOEXEC);

/// Every mount ztinit knows, in order (parents before children).
pub const ALL: &[MountSpec] = &[
    // hidepid=invisible: the workload sees only its own processes.
    MountSpec {
        source: "proc",
        target: "/proc",
        fstype: "proc",
        flags: NOSUID_NODEV_NOEXEC,
        data: "hidepid=invisible",
        optional: false,
    },
    MountSpec {
        source: "sysfs",
        target: "/sys",
        fstype: "sysfs",
        flags: NOSUID_NODEV_NOEXEC,
        data: "",
        optional: false,
    },
    MountSpec {
        source: "devtmpfs",
        target: "/dev",
        fstype: "devtmpfs",
        flags: MountFlags::NOSUID.union(MountFlags::NOEXEC),
        data: "mode=0755",
        optional: false,
    },
    MountSpec {
        source: "devpts",
        target: "/dev/pts",
        fstype: "devpts",
        flags: MountFlags::NOSUID.union(MountFlags::NOEXEC),
        data: "mode=0620,ptmxmode=0666",
        optional: false,
    },
    MountSpec {
        source: "shm",
        target: "/dev/shm",
        fstype: "tmpfs",
        flags: MountFlags::NOSUID.union(MountFlags::NODEV),
        data: "mode=1777",
        optional: false,
    },
    MountSpec {
        source: "run",
        target: "/run",
        fstype: "tmpfs",
        flags: NOSUID_NODEV_NOEXEC,
        data: "mode=0755",
        optional: false,
    },
    MountSpec {
        source: "tmp",
        target: "/tmp",
        fstype: "tmpfs",
        flags: MountFlags::NOSUID.union(MountFlags::NODEV),
        data: "mode=1777",
        optional: false,
    },
    MountSpec {
        source: "configfs",
        target: "/sys/kernel/config",
        fstype: "configfs",
        flags: NOSUID_NODEV_NOEXEC,
        data: "",
        optional: true,
    },
    MountSpec {
        source: "securityfs",
        target: "/sys/kernel/security",
        fstype: "securityfs",
        flags: NOSUID_NODEV_NOEXEC,
        data: "",
        optional: true,
    },
    MountSpec {
        source: "cgroup2",
        target: "/sys/fs/cgroup",
        fstype: "cgroup2",
        flags: NOSUID_NODEV_NOEXEC,
        data: "nsdelegate",
        optional: true,
    },
];

/// Symlinks programs expect under /dev.
pub const DEV_LINKS: &[(&str, &str)] = &[
    ("/dev/fd", "/proc/self/fd"),
    ("/dev/stdin", "/proc/self/fd/0"),
    ("/dev/stdout", "/proc/self/fd/1"),
    ("/dev/stderr", "/proc/self/fd/2"),
];

/// Filesystem types the kernel supports, from `/proc/filesystems`.
pub fn supported_filesystems(text: &str) -> Vec<String> {
    text.lines().filter_map(|l| l.split_whitespace().last().map(str::to_string)).collect()
}

/// The mounts to perform: `/proc` always comes first (the rest of the plan
/// depends on reading it), optional ones only when supported.
pub fn plan(supported: &[String]) -> Vec<&'static MountSpec> {
    ALL.iter().filter(|m| !m.optional || supported.iter().any(|s| s == m.fstype)).collect()
}

/// Performs mounts; the real one calls mount(2), tests record.
pub trait Mounter {
    fn mount(&mut self, spec: &MountSpec, target: &Path) -> std::io::Result<()>;
    /// True when something is already mounted at `target` (e.g. a kernel
    /// with DEVTMPFS_MOUNT mounted /dev before us).
    fn is_mounted(&mut self, target: &Path) -> bool;
}

pub struct SystemMounter;

impl Mounter for SystemMounter {
    fn mount(&mut self, spec: &MountSpec, target: &Path) -> std::io::Result<()> {
        let data =
            std::ffi::CString::new(spec.data).map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidInput))?;
        rustix::mount::mount(spec.source, target, spec.fstype, spec.flags, Some(data.as_c_str()))
            .map_err(std::io::Error::from)
    }

    fn is_mounted(&mut self, target: &Path) -> bool {
        // A mount point has a different device than its parent directory.
        let (Ok(t), Some(Ok(p))) = (rustix::fs::stat(target), target.parent().map(rustix::fs::stat)) else {
            return false;
        };
        t.st_dev != p.st_dev
    }
}

/// Applies one mount under `root`, creating the mount point.
pub fn apply_one(root: &Path, spec: &MountSpec, mounter: &mut dyn Mounter) -> Result<(), MountError> {
    let target = under(root, spec.target);
    std::fs::create_dir_all(&target)
        .map_err(|source| MountError::MountPoint { target: spec.target.to_string(), source })?;
    if mounter.is_mounted(&target) {
        return Ok(());
    }
    mounter.mount(spec, &target).map_err(|source| MountError::Mount {
        fstype: spec.fstype,
        target: spec.target.to_string(),
        source,
    })
}

/// The whole early-mount step: /proc first, then the plan, then /dev links.
pub fn setup(root: &Path, mounter: &mut dyn Mounter) -> Result<Vec<&'static str>, MountError> {
    setup_proc(root, mounter)?;
    setup_rest(root, mounter)
}

/// The first part of [`setup`]: /proc alone (what the configuration's
/// reader needs, for the kernel command line).
pub fn setup_proc(root: &Path, mounter: &mut dyn Mounter) -> Result<(), MountError> {
    apply_one(root, &ALL[0], mounter)
}

/// The rest of [`setup`], once /proc is mounted.
pub fn setup_rest(root: &Path, mounter: &mut dyn Mounter) -> Result<Vec<&'static str>, MountError> {
    let proc_spec = &ALL[0];
    let filesystems = std::fs::read_to_string(under(root, "/proc/filesystems")).unwrap_or_default();
    let supported = supported_filesystems(&filesystems);
    let mut done = vec![proc_spec.target];
    for spec in plan(&supported).into_iter().filter(|s| s.target != "/proc") {
        apply_one(root, spec, mounter)?;
        done.push(spec.target);
    }
    for (link, target) in DEV_LINKS {
        // Best effort: these are conveniences, and devtmpfs may provide them.
        let _ = std::os::unix::fs::symlink(target, under(root, link));
    }
    Ok(done)
}

impl fmt::Display for MountSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} on {} ({})", self.fstype, self.target, self.data)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    #[derive(Default)]
    struct Recorder {
        mounted: Vec<(String, PathBuf)>,
        fail: Option<&'static str>,
        already: Vec<PathBuf>,
        proc_filesystems: Option<String>,
    }

    impl Mounter for Recorder {
        fn mount(&mut self, spec: &MountSpec, target: &Path) -> std::io::Result<()> {
            if self.fail == Some(spec.target) {
                return Err(std::io::Error::from_raw_os_error(libc::ENODEV));
            }
            if spec.fstype == "proc"
                && let Some(text) = &self.proc_filesystems
            {
                std::fs::write(target.join("filesystems"), text)?;
            }
            self.mounted.push((spec.fstype.to_string(), target.to_path_buf()));
            Ok(())
        }
        fn is_mounted(&mut self, target: &Path) -> bool {
            self.already.iter().any(|p| p == target)
        }
    }

    const FULL: &str = "nodev\tsysfs\nnodev\ttmpfs\nnodev\tproc\nnodev\tdevtmpfs\nnodev\tconfigfs\nnodev\tsecurityfs\nnodev\tcgroup2\n\text4\n";

    #[test]
    fn proc_filesystems_is_parsed() {
        assert_eq!(supported_filesystems("nodev\tsysfs\n\text4\n"), vec!["sysfs", "ext4"]);
    }

    #[test]
    fn optional_mounts_follow_kernel_support() {
        let none: Vec<String> = vec![];
        let targets: Vec<_> = plan(&none).iter().map(|m| m.target).collect();
        assert_eq!(targets, ["/proc", "/sys", "/dev", "/dev/pts", "/dev/shm", "/run", "/tmp"]);
        let all = supported_filesystems(FULL);
        assert_eq!(plan(&all).len(), ALL.len());
    }

    #[test]
    fn setup_mounts_everything_in_order_under_the_root() {
        let dir = tempfile::tempdir().unwrap();
        let mut m = Recorder { proc_filesystems: Some(FULL.into()), ..Default::default() };
        let done = setup(dir.path(), &mut m).unwrap();
        assert_eq!(done.len(), ALL.len());
        assert_eq!(m.mounted[0], ("proc".to_string(), dir.path().join("proc")));
        assert!(m.mounted.iter().any(|(t, p)| t == "cgroup2" && p.ends_with("sys/fs/cgroup")));
        assert!(dir.path().join("sys/kernel/config").is_dir());
        assert_eq!(std::fs::read_link(dir.path().join("dev/fd")).unwrap(), Path::new("/proc/self/fd"));
    }

    #[test]
    fn proc_is_mounted_with_hidepid_and_no_exec() {
        let p = &ALL[0];
        assert_eq!(p.data, "hidepid=invisible");
        assert!(p.flags.contains(MountFlags::NOEXEC | MountFlags::NOSUID | MountFlags::NODEV));
    }

    #[test]
    fn already_mounted_targets_are_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let mut m = Recorder { already: vec![dir.path().join("dev")], ..Default::default() };
        setup(dir.path(), &mut m).unwrap();
        assert!(!m.mounted.iter().any(|(t, _)| t == "devtmpfs"));
    }

    #[test]
    fn a_failing_mount_names_the_filesystem_and_target() {
        let dir = tempfile::tempdir().unwrap();
        let mut m = Recorder { fail: Some("/run"), ..Default::default() };
        let err = setup(dir.path(), &mut m).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("mount tmpfs on /run: {}", std::io::Error::from_raw_os_error(libc::ENODEV))
        );
    }
}
