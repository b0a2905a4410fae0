//! read-secret: the workload of the dev-KBS end-to-end scenarios. Reads
//! `$CREDENTIALS_DIRECTORY/FILE`, prints its size and SHA-256 (never its
//! bytes) for the harness to compare with the host's, and checks how ztinit
//! delivered it:
//!
//! ```text
//! testkit: read-secret: kbs-secret: 32 bytes, sha256=3f1c…
//! testkit: read-secret: PASS file-mode: regular file, mode 0400, owner 1000:1000
//! testkit: read-secret: FAIL write: open for writing succeeded
//! testkit: read-secret: SUMMARY passed=9 failed=1
//! ```
//!
//! Usage: `read-secret FILE [--uid N] [--gid N]` (expected ids of the
//! workload, default 1000). Exit status 0 when every check passed, 1
//! otherwise, 2 when the secret cannot be read at all.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use ztinit_testkit::{files, say};

/// `/run/ztinit/secrets` is a ramfs (include/uapi/linux/magic.h).
const RAMFS_MAGIC: i64 = 0x8584_58f6;
const EXPECTED_DIR: &str = "/run/ztinit/secrets";

struct Checks {
    passed: u32,
    failed: u32,
}

impl Checks {
    fn check(&mut self, name: &str, result: Result<String, String>) {
        match result {
            Ok(detail) => {
                self.passed += 1;
                say(&format!("testkit: read-secret: PASS {name}: {detail}"));
            }
            Err(why) => {
                self.failed += 1;
                say(&format!("testkit: read-secret: FAIL {name}: {why}"));
            }
        }
    }
}

fn errno_name(e: i32) -> String {
    match e {
        libc::EPERM => "EPERM".into(),
        libc::EACCES => "EACCES".into(),
        libc::EROFS => "EROFS".into(),
        libc::ENOENT => "ENOENT".into(),
        other => format!("errno {other}"),
    }
}

fn last_errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

fn cpath(p: &Path) -> CString {
    CString::new(p.as_os_str().as_bytes()).unwrap_or_default()
}

/// `Ok` with the errno when the call was refused, `Err` when it succeeded.
fn refused(what: &str, rc: libc::c_int) -> Result<String, String> {
    if rc < 0 { Ok(format!("{what} refused ({})", errno_name(last_errno()))) } else { Err(format!("{what} succeeded")) }
}

fn arg_value(args: &[String], name: &str, default: u32) -> u32 {
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(file) = args.first().filter(|f| !f.starts_with('-')) else {
        say("testkit: read-secret: usage: read-secret FILE [--uid N] [--gid N]");
        std::process::exit(2);
    };
    let (want_uid, want_gid) = (arg_value(&args, "--uid", 1000), arg_value(&args, "--gid", 1000));
    let Some(dir) = std::env::var_os("CREDENTIALS_DIRECTORY").map(PathBuf::from) else {
        say("testkit: read-secret: FAILED: CREDENTIALS_DIRECTORY is not set");
        std::process::exit(2);
    };
    let path = dir.join(file);
    let secret = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) => {
            say(&format!("testkit: read-secret: FAILED: cannot read {}: {e}", path.display()));
            std::process::exit(2);
        }
    };
    say(&format!("testkit: read-secret: {file}: {} bytes, sha256={}", secret.len(), files::sha256_hex(&secret)));

    let mut c = Checks { passed: 0, failed: 0 };
    // SAFETY: these getters cannot fail.
    let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
    c.check(
        "identity",
        if uid == want_uid && gid == want_gid && uid != 0 {
            Ok(format!("uid={uid} gid={gid}"))
        } else {
            Err(format!("uid={uid} gid={gid}, expected {want_uid}:{want_gid} (not root)"))
        },
    );
    c.check(
        "directory-env",
        if dir == Path::new(EXPECTED_DIR) {
            Ok(format!("CREDENTIALS_DIRECTORY={}", dir.display()))
        } else {
            Err(format!("CREDENTIALS_DIRECTORY={}, expected {EXPECTED_DIR}", dir.display()))
        },
    );
    c.check("file-mode", owned_with_mode(&path, 0o400, false, uid, gid));
    c.check("directory-mode", owned_with_mode(&dir, 0o700, true, uid, gid));
    c.check("ramfs", ramfs_read_only(&dir));

    let p = cpath(&path);
    // SAFETY: a valid NUL-terminated path; the descriptor is closed if opened.
    let fd = unsafe { libc::open(p.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC) };
    if fd >= 0 {
        // SAFETY: closing the descriptor just opened.
        unsafe { libc::close(fd) };
    }
    c.check("write", refused("open for writing", fd));
    // SAFETY: a valid NUL-terminated path.
    c.check("chmod", refused("chmod 0600", unsafe { libc::chmod(p.as_ptr(), 0o600) }));
    // SAFETY: a valid NUL-terminated path.
    c.check("unlink", refused("unlink", unsafe { libc::unlink(p.as_ptr()) }));
    let new = cpath(&dir.join("planted"));
    // SAFETY: a valid NUL-terminated path; the descriptor is closed if opened.
    let fd =
        unsafe { libc::open(new.as_ptr(), libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_CLOEXEC, 0o600) };
    if fd >= 0 {
        // SAFETY: closing the descriptor just opened.
        unsafe { libc::close(fd) };
    }
    c.check("create", refused("creating a file beside it", fd));
    c.check("environment", not_in_environment(&secret));

    say(&format!("testkit: read-secret: SUMMARY passed={} failed={}", c.passed, c.failed));
    std::process::exit(if c.failed == 0 { 0 } else { 1 });
}

fn owned_with_mode(path: &Path, mode: u32, dir: bool, uid: u32, gid: u32) -> Result<String, String> {
    let m = std::fs::symlink_metadata(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let kind = if dir { m.is_dir() } else { m.is_file() };
    let found = m.permissions().mode() & 0o7777;
    let shown =
        format!("{}, mode {found:04o}, owner {}:{}", if dir { "directory" } else { "regular file" }, m.uid(), m.gid());
    if kind && found == mode && m.uid() == uid && m.gid() == gid {
        Ok(shown)
    } else {
        Err(format!("{}: {shown}; expected mode {mode:04o}, owner {uid}:{gid}", path.display()))
    }
}

fn ramfs_read_only(dir: &Path) -> Result<String, String> {
    let p = cpath(dir);
    // SAFETY: plain data, filled by the kernel.
    let mut fs: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: a valid path and a writable statfs.
    if unsafe { libc::statfs(p.as_ptr(), &mut fs) } != 0 {
        return Err(format!("statfs: {}", errno_name(last_errno())));
    }
    // SAFETY: plain data, filled by the kernel.
    let mut vfs: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: a valid path and a writable statvfs.
    if unsafe { libc::statvfs(p.as_ptr(), &mut vfs) } != 0 {
        return Err(format!("statvfs: {}", errno_name(last_errno())));
    }
    let ramfs = fs.f_type as i64 == RAMFS_MAGIC;
    let ro = vfs.f_flag & libc::ST_RDONLY != 0;
    let shown = format!("f_type {:#x}, {}", fs.f_type, if ro { "read-only" } else { "read-write" });
    if ramfs && ro {
        Ok(format!("ramfs, read-only ({shown})"))
    } else {
        Err(format!("expected a read-only ramfs: {shown}"))
    }
}

/// No environment variable holds the secret (raw, or as lowercase hex).
fn not_in_environment(secret: &[u8]) -> Result<String, String> {
    let hex: String = secret.iter().map(|b| format!("{b:02x}")).collect();
    let mut n = 0;
    for (name, value) in std::env::vars_os() {
        n += 1;
        let v = value.as_bytes();
        let holds = v.windows(secret.len().max(1)).any(|w| w == secret) || value.to_string_lossy().contains(&hex);
        if holds {
            return Err(format!("{} holds the secret", name.to_string_lossy()));
        }
    }
    Ok(format!("none of the {n} variables holds it"))
}
