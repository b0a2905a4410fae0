//! Writing tar entries beneath the root directory fd, never outside it.
//!
//! Paths: an entry's name is normalised lexically first (`.` and empty
//! components dropped, `..` popped); a `..` above the root is refused, not
//! clamped, so a hostile layer is a FATAL error rather than a quietly
//! different tree. A leading `/` is dropped (the name is relative to the
//! root either way, as Docker reads it).
//!
//! Parents: resolved by the kernel with `openat2(RESOLVE_BENEATH |
//! RESOLVE_NO_MAGICLINKS | RESOLVE_NO_XDEV)` from the root fd. Relative
//! symlinks that stay inside the root are followed (a layer may write
//! `lib/x` over a usr-merged `lib -> usr/lib`), but an absolute symlink or
//! one that climbs above the root makes the entry FATAL. `RESOLVE_IN_ROOT`
//! would instead reinterpret such a link inside the root and write there:
//! safe for the host, but it turns an escape attempt into a silently
//! accepted image; layers built by Docker, BuildKit or podman never write
//! through a link (their tars record real paths), so only a hand-made or
//! hostile layer is refused.
//!
//! Final components are never followed: every operation on them is an
//! `*at` call with no-follow semantics (`O_NOFOLLOW|O_EXCL` creates,
//! `AT_SYMLINK_NOFOLLOW` stat and chown, `unlinkat`, `symlinkat`, `linkat`
//! without `AT_SYMLINK_FOLLOW`); an existing entry in the way is removed
//! first (overlay semantics: a file replaces a directory and vice versa,
//! a directory over a directory merges).

use std::collections::HashSet;
use std::ffi::CStr;
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use rustix::fs::{self as rfs, AtFlags, FileType, Mode, OFlags, ResolveFlags, Timespec, Timestamps};
use rustix::io::Errno;
use rustix::process::{Gid, Uid};

use super::tar::{Entry, Kind, TarReader};
use super::{Budget, UnpackError, show};

/// PATH_MAX less the NUL: longer paths cannot be resolved in one call.
const MAX_PATH_BYTES: usize = 4095;
/// NAME_MAX.
const MAX_NAME_BYTES: usize = 255;
/// Directory nesting removal walks (one open fd per level).
const MAX_REMOVE_DEPTH: usize = 512;
const COPY_BUFFER: usize = 128 << 10;

/// Why a name cannot be normalised.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathError {
    /// `..` above the root.
    Escape,
    Nul,
    TooLong,
}

impl PathError {
    fn message(self) -> &'static str {
        match self {
            PathError::Escape => "the path leaves the root",
            PathError::Nul => "the path contains a NUL byte",
            PathError::TooLong => "the path is longer than PATH_MAX or a component longer than NAME_MAX",
        }
    }
}

/// The components of a tar name below the root (empty for the root).
pub fn normalise(raw: &[u8]) -> Result<Vec<&[u8]>, PathError> {
    if raw.contains(&0) {
        return Err(PathError::Nul);
    }
    if raw.len() > MAX_PATH_BYTES {
        return Err(PathError::TooLong);
    }
    let mut out: Vec<&[u8]> = Vec::new();
    for component in raw.split(|&b| b == b'/') {
        match component {
            b"" | b"." => {}
            b".." => {
                out.pop().ok_or(PathError::Escape)?;
            }
            name if name.len() > MAX_NAME_BYTES => return Err(PathError::TooLong),
            name => out.push(name),
        }
    }
    Ok(out)
}

fn join(components: &[&[u8]]) -> Vec<u8> {
    components.join(&b'/')
}

/// A directory's mode and mtime, applied after its contents are written
/// (so a 0555 directory can still be filled).
struct DeferredDir {
    path: Vec<u8>,
    mode: u32,
    mtime: Option<i64>,
}

pub struct Extractor<'r> {
    root: BorrowedFd<'r>,
    chown: bool,
    /// Paths this layer wrote: an opaque directory keeps them and drops
    /// the rest (what lower layers put there).
    touched: HashSet<Vec<u8>>,
    dirs: Vec<DeferredDir>,
    buffer: Vec<u8>,
}

fn fs_err<'p>(path: &'p str, op: &'static str) -> impl FnOnce(Errno) -> UnpackError + 'p {
    move |e| UnpackError::Fs { path: path.to_string(), op, source: e.into() }
}

impl<'r> Extractor<'r> {
    pub fn new(root: BorrowedFd<'r>, chown: bool) -> Self {
        Extractor { root, chown, touched: HashSet::new(), dirs: Vec::new(), buffer: vec![0u8; COPY_BUFFER] }
    }

    pub fn entry<R: Read>(
        &mut self,
        entry: &Entry,
        tar: &mut TarReader<R>,
        budget: &mut Budget,
    ) -> Result<(), UnpackError> {
        let shown = show(&entry.path);
        let components = normalise(&entry.path).map_err(|why| path_error(&shown, why))?;
        let Some((name, parent)) = components.split_last() else {
            // The root itself ("./"): its owner and mode are the runtime's.
            if entry.kind == Kind::Directory {
                return Ok(());
            }
            return Err(UnpackError::Path { path: shown, why: "a non-directory entry names the root" });
        };
        budget.take_entry(&shown)?;
        if let Some(hidden) = name.strip_prefix(b".wh.") {
            return self.whiteout(parent, hidden, &shown);
        }
        let uid = id(entry.uid, "uid", &shown)?;
        let gid = id(entry.gid, "gid", &shown)?;
        match entry.kind {
            Kind::Regular => self.regular(parent, name, entry, tar, (uid, gid), &shown, budget)?,
            Kind::Directory => self.directory(parent, name, entry, (uid, gid), &shown, budget)?,
            Kind::Symlink => self.symlink(parent, name, entry, (uid, gid), &shown, budget)?,
            Kind::HardLink => self.hard_link(&components, entry, &shown, budget)?,
            Kind::CharDevice => return Err(UnpackError::Node { path: shown, kind: "character device" }),
            Kind::BlockDevice => return Err(UnpackError::Node { path: shown, kind: "block device" }),
            Kind::Fifo => return Err(UnpackError::Node { path: shown, kind: "FIFO" }),
            Kind::PaxLocal | Kind::PaxGlobal | Kind::GnuLongName | Kind::GnuLongLink => {
                return Err(UnpackError::Path { path: shown, why: "an extended header is not an entry" });
            }
        }
        self.touched.insert(join(&components));
        Ok(())
    }

    /// Applies the deferred directory modes, deepest (latest) first.
    pub fn finish(self) -> Result<(), UnpackError> {
        let mut seen = HashSet::new();
        for dir in self.dirs.iter().rev() {
            if !seen.insert(dir.path.as_slice()) {
                continue;
            }
            let shown = show(&dir.path);
            let fd = match self.open_beneath(&dir.path, OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW) {
                Ok(fd) => fd,
                // Replaced or whited out by a later entry of this layer:
                // nothing to apply.
                Err(Errno::NOENT | Errno::NOTDIR | Errno::LOOP | Errno::XDEV) => continue,
                Err(e) => return Err(fs_err(&shown, "opening the directory to set its mode")(e)),
            };
            rfs::fchmod(&fd, Mode::from_raw_mode(dir.mode & 0o7777)).map_err(fs_err(&shown, "setting the mode"))?;
            if let Some(mtime) = dir.mtime {
                rfs::futimens(&fd, &times(mtime)).map_err(fs_err(&shown, "setting the mtime"))?;
            }
        }
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn regular<R: Read>(
        &mut self,
        parent: &[&[u8]],
        name: &[u8],
        entry: &Entry,
        tar: &mut TarReader<R>,
        (uid, gid): (u32, u32),
        shown: &str,
        budget: &mut Budget,
    ) -> Result<(), UnpackError> {
        budget.take_bytes(entry.size, shown)?;
        let dir = self.parent(parent, shown, budget)?;
        self.clear(&dir, name, false, shown)?;
        let fd = rfs::openat(
            &dir,
            name,
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o600),
        )
        .map_err(fs_err(shown, "creating the file"))?;
        let mut file = File::from(fd);
        loop {
            let n = tar.read_data(&mut self.buffer)?;
            if n == 0 {
                break;
            }
            file.write_all(&self.buffer[..n]).map_err(|source| UnpackError::Fs {
                path: shown.to_string(),
                op: "writing the file",
                source,
            })?;
        }
        // Owner before mode: chown clears set-id bits.
        if self.chown {
            rfs::fchown(&file, Some(Uid::from_raw(uid)), Some(Gid::from_raw(gid)))
                .map_err(fs_err(shown, "setting the owner"))?;
        }
        rfs::fchmod(&file, Mode::from_raw_mode(entry.mode & 0o7777)).map_err(fs_err(shown, "setting the mode"))?;
        rfs::futimens(&file, &times(entry.mtime)).map_err(fs_err(shown, "setting the mtime"))?;
        Ok(())
    }

    fn directory(
        &mut self,
        parent: &[&[u8]],
        name: &[u8],
        entry: &Entry,
        owner: (u32, u32),
        shown: &str,
        budget: &mut Budget,
    ) -> Result<(), UnpackError> {
        let dir = self.parent(parent, shown, budget)?;
        if !self.clear(&dir, name, true, shown)? {
            rfs::mkdirat(&dir, name, Mode::from_raw_mode(0o700)).map_err(fs_err(shown, "creating the directory"))?;
        }
        self.chown_at(&dir, name, owner, shown)?;
        let mut path = join(parent);
        if !path.is_empty() {
            path.push(b'/');
        }
        path.extend_from_slice(name);
        self.dirs.push(DeferredDir { path, mode: entry.mode, mtime: Some(entry.mtime) });
        Ok(())
    }

    fn symlink(
        &mut self,
        parent: &[&[u8]],
        name: &[u8],
        entry: &Entry,
        owner: (u32, u32),
        shown: &str,
        budget: &mut Budget,
    ) -> Result<(), UnpackError> {
        if entry.link.is_empty() {
            return Err(UnpackError::Path { path: shown.to_string(), why: "a symlink with an empty target" });
        }
        if entry.link.contains(&0) {
            return Err(UnpackError::Path { path: shown.to_string(), why: "a symlink target with a NUL byte" });
        }
        budget.take_bytes(u64::try_from(entry.link.len()).unwrap_or(u64::MAX), shown)?;
        let dir = self.parent(parent, shown, budget)?;
        self.clear(&dir, name, false, shown)?;
        // Stored verbatim: it is only ever read by the workload, inside
        // its own root.
        rfs::symlinkat(entry.link.as_slice(), &dir, name).map_err(fs_err(shown, "creating the symlink"))?;
        self.chown_at(&dir, name, owner, shown)?;
        rfs::utimensat(&dir, name, &times(entry.mtime), AtFlags::SYMLINK_NOFOLLOW)
            .map_err(fs_err(shown, "setting the mtime"))?;
        Ok(())
    }

    fn hard_link(
        &mut self,
        components: &[&[u8]],
        entry: &Entry,
        shown: &str,
        budget: &mut Budget,
    ) -> Result<(), UnpackError> {
        let target_shown = show(&entry.link);
        let refuse = |why: &str| UnpackError::HardLink {
            path: shown.to_string(),
            target: target_shown.clone(),
            why: why.to_string(),
        };
        let target = normalise(&entry.link).map_err(|why| refuse(why.message()))?;
        let Some((target_name, target_parent)) = target.split_last() else {
            return Err(refuse("the target is the root"));
        };
        if target == components {
            return Err(refuse("the link names itself"));
        }
        let Some(target_dir) = self.existing_parent(target_parent, shown)? else {
            return Err(refuse("the target does not exist (links may only name files already unpacked)"));
        };
        let stat = match rfs::statat(&target_dir, *target_name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(stat) => stat,
            Err(Errno::NOENT) => {
                return Err(refuse("the target does not exist (links may only name files already unpacked)"));
            }
            Err(e) => return Err(fs_err(shown, "inspecting the link target")(e)),
        };
        if FileType::from_raw_mode(stat.st_mode) != FileType::RegularFile {
            return Err(refuse("the target is not a regular file"));
        }
        let Some((name, parent)) = components.split_last() else {
            return Err(refuse("the link names the root"));
        };
        let dir = self.parent(parent, shown, budget)?;
        self.clear(&dir, name, false, shown)?;
        rfs::linkat(&target_dir, *target_name, &dir, *name, AtFlags::empty())
            .map_err(fs_err(shown, "creating the hard link"))?;
        Ok(())
    }

    fn whiteout(&mut self, parent: &[&[u8]], hidden: &[u8], shown: &str) -> Result<(), UnpackError> {
        if hidden == b".wh..opq" {
            return self.opaque(parent, shown);
        }
        if hidden.starts_with(b".wh.") {
            // AUFS bookkeeping (.wh..wh.plnk, .wh..wh.aufs): no file of
            // the image; Docker skips them too.
            log::debug!("skipping AUFS metadata entry {shown}");
            return Ok(());
        }
        if hidden.is_empty() || hidden == b"." || hidden == b".." || hidden.contains(&b'/') {
            return Err(UnpackError::Path { path: shown.to_string(), why: "a whiteout of an invalid name" });
        }
        let Some(dir) = self.existing_parent(parent, shown)? else {
            return Ok(());
        };
        remove_tree(&dir, hidden, 0, shown)
    }

    /// `.wh..wh..opq`: the directory keeps only what this layer wrote.
    fn opaque(&mut self, dir: &[&[u8]], shown: &str) -> Result<(), UnpackError> {
        let path = join(dir);
        let Some(fd) = self.existing_parent(dir, shown)? else {
            return Ok(());
        };
        let readable = rfs::openat(&fd, ".", OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())
            .map_err(fs_err(shown, "opening the opaque directory"))?;
        self.prune(&readable, &path, 0, shown)
    }

    fn prune(&self, dir: &OwnedFd, prefix: &[u8], depth: usize, shown: &str) -> Result<(), UnpackError> {
        for name in list(dir, shown)? {
            let mut rel = prefix.to_vec();
            if !rel.is_empty() {
                rel.push(b'/');
            }
            rel.extend_from_slice(name.to_bytes());
            if !self.touched.contains(&rel) {
                remove_tree(dir, name.to_bytes(), depth, shown)?;
                continue;
            }
            let stat =
                rfs::statat(dir, name.as_c_str(), AtFlags::SYMLINK_NOFOLLOW).map_err(fs_err(shown, "inspecting"))?;
            if FileType::from_raw_mode(stat.st_mode) == FileType::Directory {
                if depth >= MAX_REMOVE_DEPTH {
                    return Err(UnpackError::Path {
                        path: shown.to_string(),
                        why: "the opaque directory is nested too deep",
                    });
                }
                let sub = rfs::openat(
                    dir,
                    name.as_c_str(),
                    OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                    Mode::empty(),
                )
                .map_err(fs_err(shown, "opening a directory to prune"))?;
                self.prune(&sub, &rel, depth + 1, shown)?;
            }
        }
        Ok(())
    }

    /// Removes what is at `name` unless it is a directory and `keep_dir`;
    /// true when a directory was kept.
    fn clear(&self, dir: &OwnedFd, name: &[u8], keep_dir: bool, shown: &str) -> Result<bool, UnpackError> {
        match rfs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
            Err(Errno::NOENT) => Ok(false),
            Err(e) => Err(fs_err(shown, "inspecting the existing entry")(e)),
            Ok(stat) if keep_dir && FileType::from_raw_mode(stat.st_mode) == FileType::Directory => Ok(true),
            Ok(_) => remove_tree(dir, name, 0, shown).map(|()| false),
        }
    }

    fn chown_at(&self, dir: &OwnedFd, name: &[u8], (uid, gid): (u32, u32), shown: &str) -> Result<(), UnpackError> {
        if self.chown {
            rfs::chownat(dir, name, Some(Uid::from_raw(uid)), Some(Gid::from_raw(gid)), AtFlags::SYMLINK_NOFOLLOW)
                .map_err(fs_err(shown, "setting the owner"))?;
        }
        Ok(())
    }

    fn open_beneath(&self, path: &[u8], flags: OFlags) -> Result<OwnedFd, Errno> {
        let path: &[u8] = if path.is_empty() { b"." } else { path };
        let resolve = ResolveFlags::BENEATH | ResolveFlags::NO_MAGICLINKS | ResolveFlags::NO_XDEV;
        let mut tries = 0;
        loop {
            match rfs::openat2(self.root, path, flags | OFlags::CLOEXEC, Mode::empty(), resolve) {
                // The kernel asks for a retry when a rename raced a `..`
                // lookup; nothing else renames here, so a few suffice.
                Err(Errno::AGAIN) if tries < 8 => tries += 1,
                other => return other,
            }
        }
    }

    fn resolve_error(&self, e: Errno, shown: &str) -> UnpackError {
        match e {
            Errno::XDEV => UnpackError::SymlinkEscape { path: shown.to_string() },
            Errno::NOTDIR => UnpackError::Path { path: shown.to_string(), why: "a parent is not a directory" },
            e => fs_err(shown, "resolving the parent directory")(e),
        }
    }

    /// The parent directory if it exists (whiteouts and link targets
    /// create nothing).
    fn existing_parent(&self, parent: &[&[u8]], shown: &str) -> Result<Option<OwnedFd>, UnpackError> {
        match self.open_beneath(&join(parent), OFlags::PATH | OFlags::DIRECTORY) {
            Ok(fd) => Ok(Some(fd)),
            Err(Errno::NOENT) => Ok(None),
            Err(e) => Err(self.resolve_error(e, shown)),
        }
    }

    /// The parent directory, created (0755, like Docker) where missing.
    fn parent(&mut self, parent: &[&[u8]], shown: &str, budget: &mut Budget) -> Result<OwnedFd, UnpackError> {
        if let Some(fd) = self.existing_parent(parent, shown)? {
            return Ok(fd);
        }
        let mut dir =
            self.open_beneath(b"", OFlags::PATH | OFlags::DIRECTORY).map_err(|e| self.resolve_error(e, shown))?;
        for depth in 1..=parent.len() {
            let prefix = join(&parent[..depth]);
            dir = match self.open_beneath(&prefix, OFlags::PATH | OFlags::DIRECTORY) {
                Ok(fd) => fd,
                Err(Errno::NOENT) => {
                    budget.take_entry(shown)?;
                    // EEXIST here is a dangling symlink in the way.
                    rfs::mkdirat(&dir, parent[depth - 1], Mode::from_raw_mode(0o700))
                        .map_err(fs_err(shown, "creating a missing parent directory"))?;
                    self.touched.insert(prefix.clone());
                    self.dirs.push(DeferredDir { path: prefix.clone(), mode: 0o755, mtime: None });
                    self.open_beneath(&prefix, OFlags::PATH | OFlags::DIRECTORY)
                        .map_err(|e| self.resolve_error(e, shown))?
                }
                Err(e) => return Err(self.resolve_error(e, shown)),
            };
        }
        Ok(dir)
    }
}

fn path_error(shown: &str, why: PathError) -> UnpackError {
    match why {
        PathError::Escape => UnpackError::PathEscape { path: shown.to_string() },
        other => UnpackError::Path { path: shown.to_string(), why: other.message() },
    }
}

fn id(value: u64, what: &'static str, shown: &str) -> Result<u32, UnpackError> {
    // u32::MAX is chown's "leave unchanged", never an owner.
    u32::try_from(value).ok().filter(|&v| v != u32::MAX).ok_or(UnpackError::Id { path: shown.to_string(), what, value })
}

fn times(mtime: i64) -> Timestamps {
    let at = Timespec { tv_sec: mtime, tv_nsec: 0 };
    Timestamps { last_access: at, last_modification: at }
}

/// The names in a directory, `.` and `..` left out.
fn list(dir: &OwnedFd, shown: &str) -> Result<Vec<std::ffi::CString>, UnpackError> {
    let mut names = Vec::new();
    for entry in rfs::Dir::read_from(dir).map_err(fs_err(shown, "listing a directory"))? {
        let entry = entry.map_err(fs_err(shown, "listing a directory"))?;
        let name: &CStr = entry.file_name();
        if name.to_bytes() != b"." && name.to_bytes() != b".." {
            names.push(name.to_owned());
        }
    }
    Ok(names)
}

/// Removes `name` in `dir` and, for a directory, everything below it;
/// symlinks are removed, never followed. Absent is fine.
fn remove_tree(dir: &impl AsFd, name: &[u8], depth: usize, shown: &str) -> Result<(), UnpackError> {
    let stat = match rfs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(stat) => stat,
        Err(Errno::NOENT) => return Ok(()),
        Err(e) => return Err(fs_err(shown, "inspecting an entry to remove")(e)),
    };
    if FileType::from_raw_mode(stat.st_mode) == FileType::Directory {
        if depth >= MAX_REMOVE_DEPTH {
            return Err(UnpackError::Path { path: shown.to_string(), why: "a directory to remove is nested too deep" });
        }
        let sub = rfs::openat(
            dir,
            name,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(fs_err(shown, "opening a directory to remove"))?;
        for child in list(&sub, shown)? {
            remove_tree(&sub, child.to_bytes(), depth + 1, shown)?;
        }
        rfs::unlinkat(dir, name, AtFlags::REMOVEDIR).map_err(fs_err(shown, "removing a directory"))?;
    } else {
        rfs::unlinkat(dir, name, AtFlags::empty()).map_err(fs_err(shown, "removing an entry"))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalisation() {
        let n = |p: &[u8]| normalise(p).map(|c| join(&c));
        assert_eq!(n(b"./a/b/../c//d/."), Ok(b"a/c/d".to_vec()));
        assert_eq!(n(b"/etc/passwd"), Ok(b"etc/passwd".to_vec()));
        assert_eq!(n(b"./"), Ok(Vec::new()));
        assert_eq!(n(b"a/../.."), Err(PathError::Escape));
        assert_eq!(n(b"../x"), Err(PathError::Escape));
        assert_eq!(n(b"/../x"), Err(PathError::Escape));
        assert_eq!(n(b"a\0b"), Err(PathError::Nul));
        assert_eq!(n(&[b'a'; 256]), Err(PathError::TooLong));
        assert_eq!(n(&b"a/".repeat(2048)), Err(PathError::TooLong));
    }
}
