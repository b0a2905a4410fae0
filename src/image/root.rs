//! PID 1's side of the image root: the tmpfs the helper unpacks into, and,
//! once the helper has handed over a verified root, what the workload sees
//! there besides the image: a fresh /proc, a minimal /dev, /tmp, the
//! secrets directory and the model volumes, read-only.
//!
//! The image is the publisher's, but its tree decides where these mounts
//! land: every mount point is created and opened beneath the root without
//! following any symlink (`RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS`), and
//! mounted through `/proc/self/fd/N` of that very directory, so an image
//! whose `/proc` is a symlink to `/etc` gets a FATAL, not a mount over
//! PID 1's `/etc`.

use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};

use rustix::fs::{Mode, OFlags, ResolveFlags};

/// Where the image tmpfs is mounted.
pub const IMAGE_BASE: &str = "/run/ztinit/image";
/// The unpacked root, below [`IMAGE_BASE`] (bind-mounted onto itself, so
/// it is a mount the launch can `pivot_root` into).
pub const ROOT_DIR: &str = "rootfs";
/// Downloaded blobs wait here for their digest check.
pub const WORK_DIR: &str = "work";

#[derive(Debug, thiserror::Error)]
pub enum RootError {
    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("mount point {path} of the image is not a plain directory: {source}")]
    MountPoint {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

fn io<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> RootError + 'a {
    move |source| RootError::Io { what, path: path.display().to_string(), source }
}

/// The mount operations, so tests can record them.
pub trait RootMounter {
    /// A tmpfs; device nodes work on it only with `devices`.
    fn tmpfs(&mut self, target: &Path, options: &str, devices: bool) -> std::io::Result<()>;
    /// Nothing mounted beneath `target` (a mount's root) propagates
    /// anywhere else: the mounts under it inherit this.
    fn private(&mut self, target: &Path) -> std::io::Result<()>;
    /// procfs with `options` (the image's: `hidepid=2`).
    fn proc(&mut self, target: &Path, options: &std::ffi::CStr) -> std::io::Result<()>;
    fn devpts(&mut self, target: &Path) -> std::io::Result<()>;
    /// A bind mount, never carrying submounts.
    fn bind(&mut self, source: &Path, target: &Path) -> std::io::Result<()>;
    /// `target` (a bind mount's root) read-only, nosuid, nodev.
    fn remount_readonly(&mut self, target: &Path) -> std::io::Result<()>;
    fn mknod_char(&mut self, dir: &OwnedFd, name: &str, major: u32, minor: u32) -> std::io::Result<()>;
}

/// mount(2) and mknod(2).
pub struct SystemRootMounter;

impl RootMounter for SystemRootMounter {
    fn tmpfs(&mut self, target: &Path, options: &str, devices: bool) -> std::io::Result<()> {
        use rustix::mount::MountFlags;
        let opts = std::ffi::CString::new(options).map_err(std::io::Error::other)?;
        let flags =
            if devices { MountFlags::NOSUID | MountFlags::NOEXEC } else { MountFlags::NOSUID | MountFlags::NODEV };
        rustix::mount::mount("tmpfs", target, "tmpfs", flags, Some(opts.as_c_str()))?;
        Ok(())
    }

    fn private(&mut self, target: &Path) -> std::io::Result<()> {
        rustix::mount::mount_change(target, rustix::mount::MountPropagationFlags::PRIVATE)?;
        Ok(())
    }

    fn proc(&mut self, target: &Path, options: &std::ffi::CStr) -> std::io::Result<()> {
        use rustix::mount::MountFlags;
        let flags = MountFlags::NOSUID | MountFlags::NODEV | MountFlags::NOEXEC;
        rustix::mount::mount("proc", target, "proc", flags, Some(options))?;
        Ok(())
    }

    fn devpts(&mut self, target: &Path) -> std::io::Result<()> {
        use rustix::mount::MountFlags;
        let flags = MountFlags::NOSUID | MountFlags::NOEXEC;
        rustix::mount::mount("devpts", target, "devpts", flags, Some(c"newinstance,ptmxmode=0666,mode=0620"))?;
        Ok(())
    }

    fn bind(&mut self, source: &Path, target: &Path) -> std::io::Result<()> {
        rustix::mount::mount_bind(source, target)?;
        Ok(())
    }

    fn remount_readonly(&mut self, target: &Path) -> std::io::Result<()> {
        use rustix::mount::MountFlags;
        let flags = MountFlags::BIND | MountFlags::RDONLY | MountFlags::NOSUID | MountFlags::NODEV;
        rustix::mount::mount_remount(target, flags, c"")?;
        Ok(())
    }

    fn mknod_char(&mut self, dir: &OwnedFd, name: &str, major: u32, minor: u32) -> std::io::Result<()> {
        let dev = rustix::fs::makedev(major, minor);
        rustix::fs::mknodat(dir, name, rustix::fs::FileType::CharacterDevice, Mode::from_raw_mode(0o666), dev)?;
        // mknod applies the umask; the nodes are world read-write as on any /dev.
        let fd = rustix::fs::openat(dir, name, OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC, Mode::empty())?;
        rustix::fs::chmod(proc_fd_path(&fd), Mode::from_raw_mode(0o666))?;
        Ok(())
    }
}

/// The image tmpfs and its two directories.
#[derive(Debug, Clone)]
pub struct UnpackDirs {
    pub base: PathBuf,
    pub root: PathBuf,
    pub work: PathBuf,
}

/// Mounts the image tmpfs at `base` (blobs in flight count against it too,
/// hence twice the unpack cap) and makes the root and work directories.
pub fn prepare(base: &Path, max_unpacked_mib: u64, mounter: &mut dyn RootMounter) -> Result<UnpackDirs, RootError> {
    std::fs::create_dir_all(base).map_err(io("create", base))?;
    // Room for the unpacked root and the blob being unpacked (which may be
    // uncompressed, so as large), with slack so that an image over the cap
    // is stopped by the unpacker's byte budget, whose error names the cap,
    // rather than by a full tmpfs. A tmpfs limit costs no memory until used.
    let size = max_unpacked_mib.saturating_mul(2).saturating_add(64);
    mounter.tmpfs(base, &format!("mode=0700,size={size}m"), false).map_err(io("mount tmpfs on", base))?;
    mounter.private(base).map_err(io("make private", base))?;
    let root = base.join(ROOT_DIR);
    let work = base.join(WORK_DIR);
    for (dir, mode) in [(&root, 0o755), (&work, 0o700)] {
        std::fs::create_dir(dir).map_err(io("create", dir))?;
        set_mode(dir, mode)?;
    }
    Ok(UnpackDirs { base: base.to_path_buf(), root, work })
}

fn set_mode(path: &Path, mode: u32) -> Result<(), RootError> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).map_err(io("chmod", path))
}

/// What the workload sees besides the image.
#[derive(Debug, Clone, Default)]
pub struct RuntimeMounts {
    /// The secrets directory, bound read-only at the same path.
    pub secrets: Option<PathBuf>,
    /// Mounted model volumes, bound read-only at the same paths.
    pub volumes: Vec<PathBuf>,
    /// GPU device nodes (absolute `/dev/...` paths that exist), bound into
    /// the new /dev.
    pub devices: Vec<PathBuf>,
}

/// Character devices of the minimal /dev: (name, major, minor).
pub const DEV_NODES: &[(&str, u32, u32)] =
    &[("null", 1, 3), ("zero", 1, 5), ("full", 1, 7), ("random", 1, 8), ("urandom", 1, 9), ("tty", 5, 0)];

/// True for a node the minimal /dev has of its own (`/dev/null`...).
pub fn is_minimal_node(path: &Path) -> bool {
    path.parent() == Some(Path::new("/dev"))
        && path.file_name().is_some_and(|n| DEV_NODES.iter().any(|(name, ..)| n == *name))
}

/// Binds the root onto itself (so it is a mount point of its own) and
/// mounts /proc, /dev, /tmp and the read-only binds beneath it.
/// `host_root` is where the absolute paths of `mounts` are found ("/" at boot).
pub fn mount_runtime(
    dirs: &UnpackDirs,
    host_root: &Path,
    mounts: &RuntimeMounts,
    mounter: &mut dyn RootMounter,
) -> Result<(), RootError> {
    let root = &dirs.root;
    mounter.bind(root, root).map_err(io("bind the image root onto", root))?;
    let root_fd = rustix::fs::open(root, OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())
        .map_err(|e| io("open", root)(e.into()))?;

    let proc_dir = mount_point(&root_fd, "proc", 0o555)?;
    // The workload sees only its own processes, never PID 1's or a helper's.
    mounter.proc(&proc_fd_path(&proc_dir), c"hidepid=2").map_err(io("mount proc on", &root.join("proc")))?;

    let dev = mount_point(&root_fd, "dev", 0o755)?;
    mounter
        .tmpfs(&proc_fd_path(&dev), "mode=0755,size=64k,nr_inodes=256", true)
        .map_err(io("mount tmpfs on", &root.join("dev")))?;
    // Reopened: the fd above names the directory under the new mount.
    let dev = mount_point(&root_fd, "dev", 0o755)?;
    let dev_dir = rustix::fs::openat(&dev, ".", OFlags::DIRECTORY | OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty())
        .map_err(|e| io("open", &root.join("dev"))(e.into()))?;
    for (name, major, minor) in DEV_NODES {
        mounter.mknod_char(&dev_dir, name, *major, *minor).map_err(io("mknod in", &root.join("dev")))?;
    }
    let pts = mount_point(&root_fd, "dev/pts", 0o755)?;
    mounter.devpts(&proc_fd_path(&pts)).map_err(io("mount devpts on", &root.join("dev/pts")))?;
    let shm = mount_point(&root_fd, "dev/shm", 0o1777)?;
    mounter.tmpfs(&proc_fd_path(&shm), "mode=1777", false).map_err(io("mount tmpfs on", &root.join("dev/shm")))?;
    for (link, target) in [
        ("ptmx", "pts/ptmx"),
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
    ] {
        rustix::fs::symlinkat(target, &dev_dir, link).map_err(|e| io("symlink in", &root.join("dev"))(e.into()))?;
    }
    for device in &mounts.devices {
        let name = device.strip_prefix("/dev").map_err(|_| RootError::MountPoint {
            path: device.display().to_string(),
            source: std::io::Error::other("not under /dev"),
        })?;
        let target = mount_file(&root_fd, &Path::new("dev").join(name))?;
        let source = crate::files::under(host_root, &device.to_string_lossy());
        mounter.bind(&source, &proc_fd_path(&target)).map_err(io("bind", device))?;
    }

    let tmp = mount_point(&root_fd, "tmp", 0o1777)?;
    mounter.tmpfs(&proc_fd_path(&tmp), "mode=1777", false).map_err(io("mount tmpfs on", &root.join("tmp")))?;

    for dir in mounts.secrets.iter().chain(&mounts.volumes) {
        let rel = dir.strip_prefix("/").unwrap_or(dir);
        let rel = rel.to_string_lossy();
        let target = mount_point(&root_fd, &rel, 0o755)?;
        let source = crate::files::under(host_root, &dir.to_string_lossy());
        mounter.bind(&source, &proc_fd_path(&target)).map_err(io("bind", dir))?;
        // Reopened: the fd above names the directory under the new mount,
        // and a remount must name the mount's root.
        let bound = mount_point(&root_fd, &rel, 0o755)?;
        mounter.remount_readonly(&proc_fd_path(&bound)).map_err(io("remount read-only", dir))?;
    }
    Ok(())
}

/// `/proc/self/fd/N` of `fd`: mount(2) follows this magic link to exactly
/// the directory that was opened, whatever the path now says.
fn proc_fd_path(fd: &OwnedFd) -> PathBuf {
    use std::os::fd::AsRawFd;
    PathBuf::from(format!("/proc/self/fd/{}", fd.as_fd().as_raw_fd()))
}

const BENEATH: ResolveFlags = ResolveFlags::BENEATH.union(ResolveFlags::NO_SYMLINKS).union(ResolveFlags::NO_MAGICLINKS);

/// The directory `rel` beneath `root`, created (with its parents, `mode`)
/// when missing; no component may be a symlink or anything but a directory.
pub fn mount_point(root: &OwnedFd, rel: &str, mode: u32) -> Result<OwnedFd, RootError> {
    let bad = |source: std::io::Error| RootError::MountPoint { path: format!("/{rel}"), source };
    let mut dir =
        rustix::fs::openat2(root, ".", OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty(), BENEATH)
            .map_err(|e| bad(e.into()))?;
    for name in rel.split('/').filter(|c| !c.is_empty()) {
        if name == "." || name == ".." {
            return Err(bad(std::io::Error::other("a . or .. component")));
        }
        let open = |d: &OwnedFd| {
            rustix::fs::openat2(
                d,
                name,
                OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty(),
                BENEATH,
            )
        };
        dir = match open(&dir) {
            Ok(fd) => fd,
            Err(rustix::io::Errno::NOENT) => {
                rustix::fs::mkdirat(&dir, name, Mode::from_raw_mode(mode)).map_err(|e| bad(e.into()))?;
                open(&dir).map_err(|e| bad(e.into()))?
            }
            Err(e) => return Err(bad(e.into())),
        };
    }
    Ok(dir)
}

/// An empty regular file beneath `root` to bind a device node onto (its
/// parent directories as [`mount_point`]).
fn mount_file(root: &OwnedFd, rel: &Path) -> Result<OwnedFd, RootError> {
    let shown = format!("/{}", rel.display());
    let bad = |source: std::io::Error| RootError::MountPoint { path: shown.clone(), source };
    let parent = rel.parent().map(|p| p.to_string_lossy().into_owned()).unwrap_or_default();
    let name = rel.file_name().ok_or_else(|| bad(std::io::Error::other("no file name")))?;
    let dir = mount_point(root, &parent, 0o755)?;
    let dir = rustix::fs::openat(&dir, ".", OFlags::DIRECTORY | OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty())
        .map_err(|e| bad(e.into()))?;
    let flags = OFlags::CREATE | OFlags::EXCL | OFlags::WRONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    drop(rustix::fs::openat(&dir, name, flags, Mode::from_raw_mode(0o600)).map_err(|e| bad(e.into()))?);
    rustix::fs::openat2(&dir, name, OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC, Mode::empty(), BENEATH)
        .map_err(|e| bad(e.into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Records what would be mounted; nothing reaches the kernel.
    #[derive(Default)]
    struct Recorder {
        calls: Vec<String>,
    }

    impl Recorder {
        /// `/proc/self/fd/N` named in a call, as the directory it is.
        fn shown(p: &Path) -> String {
            std::fs::read_link(p).map_or_else(|_| p.display().to_string(), |t| t.display().to_string())
        }
    }

    impl RootMounter for Recorder {
        fn tmpfs(&mut self, target: &Path, options: &str, devices: bool) -> std::io::Result<()> {
            self.calls.push(format!("tmpfs {} {options} devices={devices}", Self::shown(target)));
            Ok(())
        }
        fn private(&mut self, target: &Path) -> std::io::Result<()> {
            self.calls.push(format!("private {}", Self::shown(target)));
            Ok(())
        }
        fn proc(&mut self, target: &Path, options: &std::ffi::CStr) -> std::io::Result<()> {
            self.calls.push(format!("proc {} {}", Self::shown(target), options.to_string_lossy()));
            Ok(())
        }
        fn devpts(&mut self, target: &Path) -> std::io::Result<()> {
            self.calls.push(format!("devpts {}", Self::shown(target)));
            Ok(())
        }
        fn bind(&mut self, source: &Path, target: &Path) -> std::io::Result<()> {
            self.calls.push(format!("bind {} {}", source.display(), Self::shown(target)));
            Ok(())
        }
        fn remount_readonly(&mut self, target: &Path) -> std::io::Result<()> {
            self.calls.push(format!("ro {}", Self::shown(target)));
            Ok(())
        }
        fn mknod_char(&mut self, _dir: &OwnedFd, name: &str, major: u32, minor: u32) -> std::io::Result<()> {
            self.calls.push(format!("mknod {name} {major}:{minor}"));
            Ok(())
        }
    }

    #[test]
    fn the_runtime_mounts_land_inside_the_root() {
        let tmp = tempfile::tempdir().unwrap();
        let base = tmp.path().join("image");
        let mut m = Recorder::default();
        let dirs = prepare(&base, 64, &mut m).unwrap();
        let b = base.display();
        assert_eq!(m.calls, [format!("tmpfs {b} mode=0700,size=192m devices=false"), format!("private {b}")]);
        let host = tmp.path().join("host");
        std::fs::create_dir_all(host.join("dev")).unwrap();
        std::fs::write(host.join("dev/nvidia0"), "").unwrap();
        let mounts = RuntimeMounts {
            secrets: Some("/run/ztinit/secrets".into()),
            volumes: vec!["/models".into()],
            devices: vec!["/dev/nvidia0".into()],
        };
        let mut m = Recorder::default();
        mount_runtime(&dirs, &host, &mounts, &mut m).unwrap();
        let r = dirs.root.display().to_string();
        let h = host.display().to_string();
        let want = [
            format!("bind {r} {r}"),
            format!("proc {r}/proc hidepid=2"),
            format!("tmpfs {r}/dev mode=0755,size=64k,nr_inodes=256 devices=true"),
            "mknod null 1:3".into(),
            "mknod zero 1:5".into(),
            "mknod full 1:7".into(),
            "mknod random 1:8".into(),
            "mknod urandom 1:9".into(),
            "mknod tty 5:0".into(),
            format!("devpts {r}/dev/pts"),
            format!("tmpfs {r}/dev/shm mode=1777 devices=false"),
            format!("bind {h}/dev/nvidia0 {r}/dev/nvidia0"),
            format!("tmpfs {r}/tmp mode=1777 devices=false"),
            format!("bind {h}/run/ztinit/secrets {r}/run/ztinit/secrets"),
            format!("ro {r}/run/ztinit/secrets"),
            format!("bind {h}/models {r}/models"),
            format!("ro {r}/models"),
        ];
        assert_eq!(m.calls, want);
        assert_eq!(std::fs::read_link(dirs.root.join("dev/fd")).unwrap(), Path::new("/proc/self/fd"));
    }

    #[test]
    fn an_image_symlink_never_moves_a_mount_point_out_of_the_root() {
        let tmp = tempfile::tempdir().unwrap();
        let outside = tmp.path().join("outside");
        std::fs::create_dir(&outside).unwrap();
        let mut m = Recorder::default();
        let dirs = prepare(&tmp.path().join("image"), 8, &mut m).unwrap();
        // The image's /proc points out of it, and /run/ztinit through it.
        std::os::unix::fs::symlink(&outside, dirs.root.join("proc")).unwrap();
        std::fs::create_dir(dirs.root.join("run")).unwrap();
        std::os::unix::fs::symlink("/", dirs.root.join("run/ztinit")).unwrap();
        let root_fd = rustix::fs::open(&dirs.root, OFlags::PATH | OFlags::DIRECTORY, Mode::empty()).unwrap();
        for rel in ["proc", "run/ztinit/secrets", "../outside", "tmp/../../outside"] {
            let err = mount_point(&root_fd, rel, 0o755).unwrap_err();
            assert!(
                err.to_string().starts_with(&format!("mount point /{rel} of the image is not a plain directory")),
                "{err}"
            );
        }
        let err = mount_runtime(&dirs, tmp.path(), &RuntimeMounts::default(), &mut m).unwrap_err();
        assert!(err.to_string().contains("/proc"), "{err}");
        assert!(!m.calls.iter().any(|c| c.contains("outside") && c.starts_with("proc")), "{:?}", m.calls);
        assert_eq!(std::fs::read_dir(&outside).unwrap().count(), 0, "nothing created outside the root");
        // A missing mount point is created, a file in its place refused.
        let fd = mount_point(&root_fd, "a/b", 0o700).unwrap();
        assert!(rustix::fs::fstat(&fd).is_ok() && dirs.root.join("a/b").is_dir());
        std::fs::write(dirs.root.join("file"), "").unwrap();
        assert!(mount_point(&root_fd, "file", 0o755).is_err());
    }
}
