//! Reading files the host may have touched or swapped: capped reads, and
//! files of the measured image opened so that they are what was measured.
//! The ground floor: imports no other module of the crate.

use std::path::{Path, PathBuf};

/// Files referenced by the configuration are read up to this size.
pub const MAX_REFERENCED_FILE_BYTES: u64 = 16 << 20;

/// Guest trees that are never part of the measured image: kernel and
/// runtime filesystems mounted at boot, where the host's disks and devices
/// appear (`/dev/vdc`).
pub const VOLATILE_TREES: &[&str] = &["/dev", "/sys", "/proc", "/run", "/tmp"];

/// The volatile tree `path` lies in, if any.
pub fn volatile_tree(path: &str) -> Option<&'static str> {
    VOLATILE_TREES.iter().copied().find(|t| path == *t || path.strip_prefix(t).is_some_and(|r| r.starts_with('/')))
}

/// Opens a file of the image for reading: `guest_path` is resolved inside
/// `root` (symlinks too, never above it) and must end in a regular file on
/// the root's own filesystem, outside [`VOLATILE_TREES`]. A symlink in the
/// image that points at a host disk, a device node, or a mount the host
/// fills is refused, so a referenced file is always what was measured.
pub fn open_image_file(root: &Path, guest_path: &str) -> std::io::Result<std::fs::File> {
    use rustix::fs::{FileType, Mode, OFlags, ResolveFlags};
    let refuse = |why: String| std::io::Error::new(std::io::ErrorKind::PermissionDenied, why);
    if let Some(tree) = volatile_tree(guest_path) {
        return Err(refuse(format!("{tree} is not part of the image")));
    }
    let root_fd = rustix::fs::open(root, OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())?;
    // O_NONBLOCK: opening a FIFO must not wait for a writer before the
    // type check below refuses it; regular files ignore the flag.
    let fd = rustix::fs::openat2(
        &root_fd,
        guest_path.trim_start_matches('/'),
        OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NOCTTY | OFlags::NONBLOCK,
        Mode::empty(),
        ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS,
    )?;
    let stat = rustix::fs::fstat(&fd)?;
    if FileType::from_raw_mode(stat.st_mode) != FileType::RegularFile {
        return Err(refuse("not a regular file".to_string()));
    }
    if stat.st_dev != rustix::fs::fstat(&root_fd)?.st_dev {
        return Err(refuse("resolves onto another filesystem than the image's".to_string()));
    }
    let resolved = fd_path(&fd)?;
    let root_path = fd_path(&root_fd)?;
    let inside = match root_path.as_str() {
        "/" => Some(resolved.as_str()),
        r => resolved.strip_prefix(r).filter(|rest| rest.starts_with('/')),
    };
    match inside {
        Some(p) if volatile_tree(p).is_none() => Ok(std::fs::File::from(fd)),
        Some(p) => Err(refuse(format!("resolves to {p}, which is not part of the image"))),
        None => Err(refuse("resolves outside the image".to_string())),
    }
}

/// The path the kernel resolved an open file to.
fn fd_path(fd: &impl std::os::fd::AsRawFd) -> std::io::Result<String> {
    let link = rustix::fs::readlink(format!("/proc/self/fd/{}", fd.as_raw_fd()), Vec::new())?;
    Ok(link.to_string_lossy().into_owned())
}

/// A file of the image (see [`open_image_file`]) read whole, refusing
/// files larger than `max` bytes.
pub fn read_image_file(root: &Path, guest_path: &str, max: u64) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let mut buf = Vec::new();
    open_image_file(root, guest_path)?.take(max + 1).read_to_end(&mut buf)?;
    if buf.len() as u64 > max {
        return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, format!("larger than {max} bytes")));
    }
    Ok(buf)
}

/// Reads a whole file, refusing files larger than `max` bytes.
pub fn read_capped(path: &Path, max: u64) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let file = std::fs::File::open(path)?;
    let mut buf = Vec::new();
    file.take(max + 1).read_to_end(&mut buf)?;
    if buf.len() as u64 > max {
        return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, format!("larger than {max} bytes")));
    }
    Ok(buf)
}

/// `root` + an absolute path.
pub fn under(root: &Path, abs: &str) -> PathBuf {
    root.join(abs.trim_start_matches('/'))
}
