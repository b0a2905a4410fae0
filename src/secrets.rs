//! Delivery of KBS resources to the workload as files, the way systemd
//! hands out credentials: a private `ramfs` (never swapped, unlike tmpfs)
//! at `/run/ztinit/secrets`, directory 0700 and files 0400 owned by the
//! workload's user, then remounted read-only. The workload learns the path
//! from `$CREDENTIALS_DIRECTORY`; no secret byte goes into the environment,
//! the console or any disk, and ztinit's copies are zeroized once written.

use std::fs::{DirBuilder, OpenOptions, Permissions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use zeroize::Zeroizing;

use crate::kbs::config::valid_file_name;

/// Where the secrets are mounted, in the guest.
pub const CREDENTIALS_DIR: &str = "/run/ztinit/secrets";
/// The variable that tells the workload where they are.
pub const CREDENTIALS_ENV: &str = "CREDENTIALS_DIRECTORY";

/// The privileged filesystem operations; tests substitute a recorder.
pub trait SecretsFs {
    /// Mounts a fresh, private ramfs on `dir` (mode 0700, nosuid, nodev, noexec).
    fn mount_ramfs(&mut self, dir: &Path) -> io::Result<()>;
    /// Remounts it read-only once the files are written.
    fn seal(&mut self, dir: &Path) -> io::Result<()>;
}

/// The real operations (mount(2)).
pub struct SystemSecretsFs;

impl SecretsFs for SystemSecretsFs {
    fn mount_ramfs(&mut self, dir: &Path) -> io::Result<()> {
        use rustix::mount::{MountFlags, MountPropagationFlags};
        let flags = MountFlags::NOSUID | MountFlags::NODEV | MountFlags::NOEXEC;
        rustix::mount::mount("ramfs", dir, "ramfs", flags, Some(c"mode=0700"))?;
        // Nothing mounted here later propagates anywhere else, and vice versa.
        rustix::mount::mount_change(dir, MountPropagationFlags::PRIVATE)?;
        Ok(())
    }

    fn seal(&mut self, dir: &Path) -> io::Result<()> {
        use rustix::mount::MountFlags;
        let flags = MountFlags::RDONLY | MountFlags::NOSUID | MountFlags::NODEV | MountFlags::NOEXEC;
        rustix::mount::mount_remount(dir, flags, c"")?;
        Ok(())
    }
}

/// One secret to deliver. Its bytes are zeroized when it is dropped.
pub struct Secret {
    file: String,
    mode: u32,
    bytes: Zeroizing<Vec<u8>>,
}

impl Secret {
    /// `file` is a plain name under the credentials directory; `mode` is
    /// 0o400 or 0o440 (checked by [`deliver`]).
    pub fn new(file: impl Into<String>, mode: u32, bytes: Zeroizing<Vec<u8>>) -> Self {
        Self { file: file.into(), mode, bytes }
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Secret")
            .field("file", &self.file)
            .field("mode", &format_args!("{:#o}", self.mode))
            .field("len", &self.bytes.len())
            .finish()
    }
}

/// Who may read the secrets: the workload's numeric user and group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Owner {
    pub uid: u32,
    pub gid: u32,
}

#[derive(Debug, thiserror::Error)]
pub enum SecretsError {
    #[error("invalid secret file name {0:?}")]
    Name(String),
    #[error("secret file name {0:?} is used twice")]
    Duplicate(String),
    #[error("secret {file}: mode {mode:#o} is not allowed (0o400 or 0o440)")]
    Mode { file: String, mode: u32 },
    #[error("{path} already exists and is not an empty directory")]
    NotEmpty { path: String },
    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: String,
        #[source]
        source: io::Error,
    },
}

fn io_err<'p>(what: &'static str, path: &'p Path) -> impl FnOnce(io::Error) -> SecretsError + 'p {
    move |source| SecretsError::Io { what, path: path.display().to_string(), source }
}

/// Writes every secret into a fresh ramfs at `root` + [`CREDENTIALS_DIR`]
/// and seals it. Returns the guest path to export as
/// [`CREDENTIALS_ENV`]. The secrets are consumed (and zeroized) whatever
/// the outcome.
pub fn deliver(
    root: &Path,
    fs: &mut dyn SecretsFs,
    owner: Owner,
    secrets: Vec<Secret>,
) -> Result<&'static str, SecretsError> {
    for (i, s) in secrets.iter().enumerate() {
        if !valid_file_name(&s.file) {
            return Err(SecretsError::Name(s.file.clone()));
        }
        if secrets[..i].iter().any(|o| o.file == s.file) {
            return Err(SecretsError::Duplicate(s.file.clone()));
        }
        if s.mode != 0o400 && s.mode != 0o440 {
            return Err(SecretsError::Mode { file: s.file.clone(), mode: s.mode });
        }
    }
    let dir = crate::files::under(root, CREDENTIALS_DIR);
    prepare_mount_point(&dir)?;
    fs.mount_ramfs(&dir).map_err(io_err("mount ramfs on", &dir))?;
    std::fs::set_permissions(&dir, Permissions::from_mode(0o700)).map_err(io_err("chmod", &dir))?;
    std::os::unix::fs::chown(&dir, Some(owner.uid), Some(owner.gid)).map_err(io_err("chown", &dir))?;
    let count = secrets.len();
    for secret in secrets {
        write_secret(&dir, owner, &secret)?;
    }
    fs.seal(&dir).map_err(io_err("remount read-only", &dir))?;
    log::info!("{count} secret(s) delivered in {CREDENTIALS_DIR}");
    Ok(CREDENTIALS_DIR)
}

/// Creates the mount point (parents 0755), refusing anything already there
/// but an empty directory: a symlink or a populated directory would mean
/// someone prepared the ground.
fn prepare_mount_point(dir: &Path) -> Result<(), SecretsError> {
    let parent = dir.parent().unwrap_or(Path::new("/"));
    DirBuilder::new().recursive(true).mode(0o755).create(parent).map_err(io_err("create", parent))?;
    match std::fs::symlink_metadata(dir) {
        Ok(meta) => {
            let empty = meta.is_dir() && std::fs::read_dir(dir).map_err(io_err("read", dir))?.next().is_none();
            if !empty {
                return Err(SecretsError::NotEmpty { path: dir.display().to_string() });
            }
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            DirBuilder::new().mode(0o700).create(dir).map_err(io_err("create", dir))?;
        }
        Err(e) => return Err(io_err("stat", dir)(e)),
    }
    Ok(())
}

fn write_secret(dir: &Path, owner: Owner, secret: &Secret) -> Result<(), SecretsError> {
    let path: PathBuf = dir.join(&secret.file);
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o400)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(&path)
        .map_err(io_err("create", &path))?;
    file.write_all(&secret.bytes).map_err(io_err("write", &path))?;
    std::os::unix::fs::fchown(&file, Some(owner.uid), Some(owner.gid)).map_err(io_err("chown", &path))?;
    file.set_permissions(Permissions::from_mode(secret.mode)).map_err(io_err("chmod", &path))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[derive(Default)]
    struct Recorder {
        calls: Vec<String>,
        fail_mount: bool,
    }

    impl SecretsFs for Recorder {
        fn mount_ramfs(&mut self, dir: &Path) -> io::Result<()> {
            if self.fail_mount {
                return Err(io::Error::from_raw_os_error(libc::EPERM));
            }
            // The mount hides whatever was in the directory: nothing may be there yet.
            assert_eq!(std::fs::read_dir(dir)?.count(), 0);
            self.calls.push("mount".into());
            Ok(())
        }
        fn seal(&mut self, dir: &Path) -> io::Result<()> {
            self.calls.push(format!("seal {}", std::fs::read_dir(dir)?.count()));
            Ok(())
        }
    }

    fn me() -> Owner {
        Owner { uid: rustix::process::geteuid().as_raw(), gid: rustix::process::getegid().as_raw() }
    }

    fn secret(file: &str, mode: u32, bytes: &[u8]) -> Secret {
        Secret::new(file, mode, Zeroizing::new(bytes.to_vec()))
    }

    #[test]
    fn files_are_written_owned_and_sealed() {
        let root = tempfile::tempdir().unwrap();
        let mut fs = Recorder::default();
        let owner = if rustix::process::geteuid().is_root() { Owner { uid: 12345, gid: 23456 } } else { me() };
        let env = deliver(
            root.path(),
            &mut fs,
            owner,
            vec![secret("api-token", 0o400, b"tok\x00\xff"), secret("tls.pem", 0o440, b"pem")],
        )
        .unwrap();
        assert_eq!(env, "/run/ztinit/secrets");
        assert_eq!(fs.calls, ["mount", "seal 2"]);
        let dir = root.path().join("run/ztinit/secrets");
        let meta = std::fs::metadata(&dir).unwrap();
        assert_eq!(meta.mode() & 0o7777, 0o700);
        assert_eq!((meta.uid(), meta.gid()), (owner.uid, owner.gid));
        let f = dir.join("api-token");
        assert_eq!(std::fs::read(&f).unwrap(), b"tok\x00\xff");
        let meta = std::fs::metadata(&f).unwrap();
        assert_eq!(meta.mode() & 0o7777, 0o400);
        assert_eq!((meta.uid(), meta.gid()), (owner.uid, owner.gid));
        assert_eq!(std::fs::metadata(dir.join("tls.pem")).unwrap().mode() & 0o7777, 0o440);
        assert_eq!(std::fs::metadata(root.path().join("run/ztinit")).unwrap().mode() & 0o7777, 0o755);
    }

    #[test]
    fn no_secrets_still_gives_an_empty_sealed_directory() {
        let root = tempfile::tempdir().unwrap();
        let mut fs = Recorder::default();
        deliver(root.path(), &mut fs, me(), Vec::new()).unwrap();
        assert_eq!(fs.calls, ["mount", "seal 0"]);
    }

    #[test]
    fn bad_names_modes_and_duplicates_are_refused_before_mounting() {
        let root = tempfile::tempdir().unwrap();
        let mut fs = Recorder::default();
        let cases = [
            (vec![secret("../etc/passwd", 0o400, b"x")], "invalid secret file name \"../etc/passwd\""),
            (vec![secret("a", 0o400, b"x"), secret("a", 0o400, b"y")], "secret file name \"a\" is used twice"),
            (vec![secret("a", 0o644, b"x")], "secret a: mode 0o644 is not allowed (0o400 or 0o440)"),
        ];
        for (secrets, msg) in cases {
            assert_eq!(deliver(root.path(), &mut fs, me(), secrets).unwrap_err().to_string(), msg);
        }
        assert!(fs.calls.is_empty());
    }

    #[test]
    fn a_prepared_mount_point_is_refused() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("run/ztinit/secrets");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("planted"), b"x").unwrap();
        let e = deliver(root.path(), &mut Recorder::default(), me(), vec![]).unwrap_err();
        assert!(matches!(e, SecretsError::NotEmpty { .. }), "{e}");

        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(root.path().join("run/ztinit")).unwrap();
        std::os::unix::fs::symlink("/tmp", root.path().join("run/ztinit/secrets")).unwrap();
        let e = deliver(root.path(), &mut Recorder::default(), me(), vec![]).unwrap_err();
        assert!(matches!(e, SecretsError::NotEmpty { .. }), "{e}");
    }

    #[test]
    fn a_failed_mount_writes_nothing() {
        let root = tempfile::tempdir().unwrap();
        let mut fs = Recorder { fail_mount: true, ..Default::default() };
        let e = deliver(root.path(), &mut fs, me(), vec![secret("k", 0o400, b"x")]).unwrap_err();
        assert!(e.to_string().starts_with("mount ramfs on "), "{e}");
        assert_eq!(std::fs::read_dir(root.path().join("run/ztinit/secrets")).unwrap().count(), 0);
    }

    #[test]
    fn debug_shows_no_secret_bytes() {
        let s = secret("k", 0o400, b"hunter2");
        let dbg = format!("{s:?}");
        assert!(!dbg.contains("hunter2") && !dbg.contains("104, 117"), "{dbg}");
        assert!(dbg.contains("len: 7"), "{dbg}");
    }
}
