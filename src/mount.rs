//! Early mounts of PID 1.
//!
//! The mounts are applied through a [`Mounter`], so tests apply them against
//! a temporary tree without privileges. A required mount that fails stops
//! the boot; optional ones (configfs, securityfs, cgroup2) are mounted when
//! the kernel has them: their mount points under /sys exist only when the
//! kernel has the filesystem, and a filesystem it does not know fails with
//! ENODEV. Neither needs `/proc/filesystems` read and parsed at boot.

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
    /// Mounted only when the kernel knows the filesystem: its mount point
    /// exists (the kernel makes it) and the mount does not fail with ENODEV.
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
    mount_at(spec, &target, mounter)
}

fn mount_at(spec: &MountSpec, target: &Path, mounter: &mut dyn Mounter) -> Result<(), MountError> {
    mounter.mount(spec, target).map_err(|source| MountError::Mount {
        fstype: spec.fstype,
        target: spec.target.to_string(),
        source,
    })
}

/// An optional mount, when the kernel has its filesystem: true when it is
/// mounted. Its mount point is never created (the kernel makes it).
fn apply_optional(root: &Path, spec: &MountSpec, mounter: &mut dyn Mounter) -> Result<bool, MountError> {
    let target = under(root, spec.target);
    if !target.is_dir() {
        return Ok(false);
    }
    if mounter.is_mounted(&target) {
        return Ok(true);
    }
    match mount_at(spec, &target, mounter) {
        Ok(()) => Ok(true),
        Err(MountError::Mount { source, .. }) if source.raw_os_error() == Some(libc::ENODEV) => Ok(false),
        Err(e) => Err(e),
    }
}

/// The whole early-mount step: /proc first, then the rest, then /dev links.
pub fn setup(root: &Path, mounter: &mut dyn Mounter) -> Result<Vec<&'static str>, MountError> {
    setup_proc(root, mounter)?;
    setup_rest(root, mounter)
}

/// The first part of [`setup`]: /proc alone (what the configuration's
/// reader needs, for the kernel command line).
pub fn setup_proc(root: &Path, mounter: &mut dyn Mounter) -> Result<(), MountError> {
    apply_one(root, &ALL[0], mounter)
}

/// The rest of [`setup`], once /proc is mounted: the targets mounted, /proc
/// included.
pub fn setup_rest(root: &Path, mounter: &mut dyn Mounter) -> Result<Vec<&'static str>, MountError> {
    let mut done = vec![ALL[0].target];
    for spec in &ALL[1..] {
        if spec.optional {
            if apply_optional(root, spec, mounter)? {
                done.push(spec.target);
            }
        } else {
            apply_one(root, spec, mounter)?;
            done.push(spec.target);
        }
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
        /// A target whose mount fails, with the errno.
        fail: Option<(&'static str, i32)>,
        already: Vec<PathBuf>,
    }

    impl Mounter for Recorder {
        fn mount(&mut self, spec: &MountSpec, target: &Path) -> std::io::Result<()> {
            if let Some((t, errno)) = self.fail
                && t == spec.target
            {
                return Err(std::io::Error::from_raw_os_error(errno));
            }
            self.mounted.push((spec.fstype.to_string(), target.to_path_buf()));
            Ok(())
        }
        fn is_mounted(&mut self, target: &Path) -> bool {
            self.already.iter().any(|p| p == target)
        }
    }

    /// The mount points a kernel with configfs, securityfs and cgroups
    /// makes under /sys.
    fn kernel_mount_points(root: &Path) {
        for spec in ALL.iter().filter(|m| m.optional) {
            std::fs::create_dir_all(under(root, spec.target)).unwrap();
        }
    }

    fn targets(m: &Recorder, root: &Path) -> Vec<String> {
        m.mounted.iter().map(|(_, p)| format!("/{}", p.strip_prefix(root).unwrap().display())).collect()
    }

    #[test]
    fn optional_mounts_need_the_mount_point_the_kernel_makes() {
        let dir = tempfile::tempdir().unwrap();
        let mut m = Recorder::default();
        let done = setup(dir.path(), &mut m).unwrap();
        assert_eq!(done, ["/proc", "/sys", "/dev", "/dev/pts", "/dev/shm", "/run", "/tmp"]);
        assert_eq!(targets(&m, dir.path()), done);
        assert!(!dir.path().join("sys/kernel").exists(), "no optional mount point is created");
    }

    #[test]
    fn setup_mounts_everything_in_order_under_the_root() {
        let dir = tempfile::tempdir().unwrap();
        kernel_mount_points(dir.path());
        let mut m = Recorder::default();
        let done = setup(dir.path(), &mut m).unwrap();
        let all: Vec<&str> = ALL.iter().map(|s| s.target).collect();
        assert_eq!(done, all);
        assert_eq!(targets(&m, dir.path()), all);
        assert_eq!(m.mounted[0], ("proc".to_string(), dir.path().join("proc")));
        assert!(m.mounted.iter().any(|(t, p)| t == "cgroup2" && p.ends_with("sys/fs/cgroup")));
        assert_eq!(std::fs::read_link(dir.path().join("dev/fd")).unwrap(), Path::new("/proc/self/fd"));
    }

    #[test]
    fn an_optional_filesystem_the_kernel_does_not_know_is_left_out() {
        let dir = tempfile::tempdir().unwrap();
        kernel_mount_points(dir.path());
        let mut m = Recorder { fail: Some(("/sys/kernel/security", libc::ENODEV)), ..Default::default() };
        let done = setup(dir.path(), &mut m).unwrap();
        assert!(!done.contains(&"/sys/kernel/security"));
        assert!(done.contains(&"/sys/kernel/config") && done.contains(&"/sys/fs/cgroup"));
    }

    #[test]
    fn an_optional_mount_failing_for_another_reason_stops_the_boot() {
        let dir = tempfile::tempdir().unwrap();
        kernel_mount_points(dir.path());
        let mut m = Recorder { fail: Some(("/sys/fs/cgroup", libc::EPERM)), ..Default::default() };
        let err = setup(dir.path(), &mut m).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("mount cgroup2 on /sys/fs/cgroup: {}", std::io::Error::from_raw_os_error(libc::EPERM))
        );
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
        kernel_mount_points(dir.path());
        let mut m = Recorder {
            already: vec![dir.path().join("dev"), dir.path().join("sys/kernel/config")],
            ..Default::default()
        };
        let done = setup(dir.path(), &mut m).unwrap();
        assert!(!m.mounted.iter().any(|(t, _)| t == "devtmpfs" || t == "configfs"));
        assert!(done.contains(&"/dev") && done.contains(&"/sys/kernel/config"));
    }

    #[test]
    fn a_failing_mount_names_the_filesystem_and_target() {
        let dir = tempfile::tempdir().unwrap();
        // ENODEV ends the boot for a required filesystem.
        let mut m = Recorder { fail: Some(("/run", libc::ENODEV)), ..Default::default() };
        let err = setup(dir.path(), &mut m).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("mount tmpfs on /run: {}", std::io::Error::from_raw_os_error(libc::ENODEV))
        );
    }
}
