//! The Landlock ruleset, built in PID 1 before fork; the child only calls
//! `landlock_restrict_self` on its fd.
//!
//! Rights: `read_only` → read files and list directories; `read_write` →
//! also write, create, remove, rename, truncate (never execute); `executable`
//! → read and execute; devices → read, write and ioctl on the node. The
//! workload program and its ELF interpreter get read + execute (the kernel
//! checks Execute on both at exec). Handled rights are those of Landlock ABI
//! 5 (Linux 6.10: ioctl on devices); on an older kernel the rights it does
//! not know are not enforced (logged). Network and scoping rights are not
//! handled: the inference server binds its port, and CUDA uses abstract unix
//! sockets.

use std::io::Read;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};

use ::landlock::{
    ABI, Access, AccessFs, BitFlags, CompatLevel, Compatible, PathBeneath, Ruleset, RulesetAttr, RulesetCreatedAttr,
};

use super::SandboxError;
use super::config::{LandlockMode, SandboxConfig};

/// The ABI whose rights we handle.
const TARGET_ABI: ABI = ABI::V5;

/// The Landlock ABI version of the running kernel, 0 without Landlock.
pub fn kernel_abi() -> i32 {
    const LANDLOCK_CREATE_RULESET_VERSION: libc::c_uint = 1;
    // SAFETY: with a NULL attribute and size 0 and the VERSION flag the call
    // only returns the ABI version; it takes no memory.
    let v = unsafe {
        libc::syscall(
            libc::SYS_landlock_create_ruleset,
            std::ptr::null::<u8>(),
            0usize,
            LANDLOCK_CREATE_RULESET_VERSION,
        )
    };
    i32::try_from(v).unwrap_or(0).max(0)
}

fn read_rights() -> BitFlags<AccessFs> {
    AccessFs::ReadFile | AccessFs::ReadDir
}

fn write_rights() -> BitFlags<AccessFs> {
    AccessFs::from_write(TARGET_ABI) & !AccessFs::IoctlDev
}

fn device_rights() -> BitFlags<AccessFs> {
    AccessFs::ReadFile | AccessFs::WriteFile | AccessFs::Truncate | AccessFs::IoctlDev
}

/// What a path may be used for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Grant {
    Read,
    ReadWrite,
    Execute,
    Device,
}

impl Grant {
    fn rights(self) -> BitFlags<AccessFs> {
        match self {
            Grant::Read => read_rights(),
            Grant::ReadWrite => read_rights() | write_rights(),
            Grant::Execute => read_rights() | AccessFs::Execute,
            Grant::Device => device_rights(),
        }
    }
}

/// Expands device patterns (a trailing `*` in the last component matches by
/// prefix) to the nodes present now.
pub fn expand_devices(patterns: &[String]) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for pattern in patterns {
        match pattern.strip_suffix('*') {
            None => {
                if Path::new(pattern).exists() {
                    out.push(PathBuf::from(pattern));
                }
            }
            Some(stem) => {
                let stem = Path::new(stem);
                let (dir, prefix) = if pattern.ends_with("/*") {
                    (stem.to_path_buf(), String::new())
                } else {
                    let prefix = stem.file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or_default();
                    (stem.parent().unwrap_or(Path::new("/")).to_path_buf(), prefix)
                };
                let Ok(entries) = std::fs::read_dir(&dir) else {
                    continue;
                };
                let mut found: Vec<PathBuf> = entries
                    .flatten()
                    .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
                    .map(|e| e.path())
                    .collect();
                found.sort();
                out.extend(found);
            }
        }
    }
    out
}

/// The PT_INTERP of an ELF64 executable, if any.
pub fn elf_interpreter(path: &Path) -> std::io::Result<Option<PathBuf>> {
    elf_interpreter_of(path, std::fs::File::open(path)?)
}

/// The first 64 KiB of a program.
fn head_of(file: std::fs::File) -> std::io::Result<Vec<u8>> {
    let mut head = Vec::new();
    file.take(64 << 10).read_to_end(&mut head)?;
    Ok(head)
}

/// The interpreter a `#!` script names, if `head` is one.
fn script_interpreter(head: &[u8]) -> Option<PathBuf> {
    use std::os::unix::ffi::OsStrExt;
    let line = head.strip_prefix(b"#!")?;
    let line = line.split(|b| *b == b'\n').next().unwrap_or_default();
    let word = line.split(|b| *b == b' ' || *b == b'\t').find(|w| !w.is_empty())?;
    Some(PathBuf::from(std::ffi::OsStr::from_bytes(word)))
}

fn elf_interpreter_of(path: &Path, file: std::fs::File) -> std::io::Result<Option<PathBuf>> {
    elf_interpreter_in(path, &head_of(file)?)
}

fn elf_interpreter_in(path: &Path, head: &[u8]) -> std::io::Result<Option<PathBuf>> {
    use std::os::unix::ffi::OsStrExt;
    let bad = |m: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, format!("{}: {m}", path.display()));
    if head.len() < 64 || &head[..4] != b"\x7fELF" {
        return Err(bad("not an ELF file"));
    }
    if head[4] != 2 || head[5] != 1 {
        return Err(bad("not a 64-bit little-endian ELF file"));
    }
    let u16_at = |o: usize| head.get(o..o + 2).map(|b| u16::from_le_bytes([b[0], b[1]]) as usize);
    let u32_at = |o: usize| head.get(o..o + 4).map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]));
    let u64_at = |o: usize| head.get(o..o + 8).and_then(|b| b.try_into().ok()).map(u64::from_le_bytes);
    let (Some(phoff), Some(phentsize), Some(phnum)) = (u64_at(0x20), u16_at(0x36), u16_at(0x38)) else {
        return Err(bad("truncated ELF header"));
    };
    for i in 0..phnum {
        // Out of range saturates: `get` then fails and the error says where.
        let at = usize::try_from(phoff).unwrap_or(usize::MAX).saturating_add(i * phentsize);
        let (Some(p_type), Some(off), Some(size)) = (u32_at(at), u64_at(at + 8), u64_at(at + 32)) else {
            return Err(bad("program headers beyond the first 64 KiB"));
        };
        if p_type == 3 {
            let (off, size) = (usize::try_from(off).unwrap_or(usize::MAX), usize::try_from(size).unwrap_or(usize::MAX));
            let Some(raw) = head.get(off..off.saturating_add(size)) else {
                return Err(bad("PT_INTERP beyond the first 64 KiB"));
            };
            let raw = raw.split(|b| *b == 0).next().unwrap_or_default();
            return Ok(Some(PathBuf::from(std::ffi::OsStr::from_bytes(raw))));
        }
    }
    Ok(None)
}

/// Builds the ruleset. `None` when Landlock is off, or unavailable in
/// best-effort mode (a warning is logged).
pub fn build(cfg: &SandboxConfig, program: &Path) -> Result<Option<OwnedFd>, SandboxError> {
    build_with(cfg, program, kernel_abi(), None)
}

/// [`build`] for a workload that will run in `root` (a container image):
/// every path, the program's and its interpreters' included, is resolved
/// inside `root` (`RESOLVE_IN_ROOT`), as the workload will see it. A `#!`
/// script's interpreter (and its ELF interpreter) is granted execution too.
pub fn build_in_root(cfg: &SandboxConfig, program: &Path, root: &Path) -> Result<Option<OwnedFd>, SandboxError> {
    build_with(cfg, program, kernel_abi(), Some(root))
}

/// Opens `path` (O_PATH, or for reading) in the host's view or inside `root`.
struct Opener(Option<OwnedFd>);

impl Opener {
    fn new(root: Option<&Path>) -> std::io::Result<Self> {
        let flags = rustix::fs::OFlags::PATH | rustix::fs::OFlags::DIRECTORY | rustix::fs::OFlags::CLOEXEC;
        Ok(Self(root.map(|r| rustix::fs::open(r, flags, rustix::fs::Mode::empty())).transpose()?))
    }

    fn open(&self, path: &Path, flags: rustix::fs::OFlags) -> std::io::Result<OwnedFd> {
        use rustix::fs::{Mode, OFlags, ResolveFlags};
        let flags = flags | OFlags::CLOEXEC;
        Ok(match &self.0 {
            None => rustix::fs::open(path, flags, Mode::empty())?,
            Some(root) => {
                let how = ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS;
                rustix::fs::openat2(root, path, flags, Mode::empty(), how)?
            }
        })
    }

    /// The interpreters the kernel will execute for `program`: its
    /// PT_INTERP; for a script (inside a root only) the `#!` interpreter
    /// and that one's PT_INTERP.
    fn interpreters(&self, program: &Path) -> std::io::Result<Vec<PathBuf>> {
        let head = head_of(self.open(program, rustix::fs::OFlags::RDONLY)?.into())?;
        if self.0.is_some()
            && let Some(script) = script_interpreter(&head)
        {
            let inner = head_of(self.open(&script, rustix::fs::OFlags::RDONLY)?.into())?;
            let mut found = vec![script.clone()];
            found.extend(elf_interpreter_in(&script, &inner)?);
            return Ok(found);
        }
        Ok(elf_interpreter_in(program, &head)?.into_iter().collect())
    }
}

pub(crate) fn build_with(
    cfg: &SandboxConfig,
    program: &Path,
    abi: i32,
    root: Option<&Path>,
) -> Result<Option<OwnedFd>, SandboxError> {
    match (cfg.landlock, abi) {
        // A weakening, reported at boot with the others.
        (LandlockMode::Off, _) => return Ok(None),
        (LandlockMode::Required, a) if a < 1 => return Err(SandboxError::LandlockUnsupported),
        (LandlockMode::BestEffort, a) if a < 1 => {
            log::warn!("sandbox: the kernel has no Landlock; running without it (landlock = \"best-effort\")");
            return Ok(None);
        }
        (_, a) if a < TARGET_ABI as i32 => {
            log::warn!(
                "sandbox: kernel Landlock ABI {a} < {}: newer access rights are not enforced",
                TARGET_ABI as i32
            );
        }
        _ => {}
    }
    let mut ruleset = Ruleset::default()
        .set_compatibility(CompatLevel::BestEffort)
        .handle_access(AccessFs::from_all(TARGET_ABI))?
        .create()?;

    let mut grants: Vec<(PathBuf, Grant, bool)> = Vec::new();
    for (paths, g) in
        [(&cfg.read_only, Grant::Read), (&cfg.read_write, Grant::ReadWrite), (&cfg.executable, Grant::Execute)]
    {
        grants.extend(paths.iter().map(|p| (PathBuf::from(p), g, false)));
    }
    grants.push((program.to_path_buf(), Grant::Execute, true));
    let program_error = |source| SandboxError::LandlockProgram { path: program.display().to_string(), source };
    let opener = Opener::new(root).map_err(program_error)?;
    for interp in opener.interpreters(program).map_err(program_error)? {
        grants.push((interp, Grant::Execute, true));
    }
    // In an image, the nodes of the /dev ztinit made there (minimal nodes
    // of its own, the host's GPU nodes bound in): no image content.
    let devices = match root {
        None => expand_devices(&cfg.devices),
        Some(r) => {
            let inside: Vec<String> =
                cfg.devices.iter().map(|p| r.join(p.trim_start_matches('/')).display().to_string()).collect();
            expand_devices(&inside)
        }
    };

    let host = Opener(None);
    for (path, grant, required) in grants.into_iter().chain(devices.into_iter().map(|p| (p, Grant::Device, false))) {
        let from = if grant == Grant::Device { &host } else { &opener };
        let fd = match from.open(&path, rustix::fs::OFlags::PATH) {
            Ok(fd) => fd,
            Err(e) if !required && e.kind() == std::io::ErrorKind::NotFound => {
                log::warn!("sandbox: landlock: {} does not exist; no access granted there", path.display());
                continue;
            }
            Err(e) => {
                return Err(SandboxError::LandlockPath { path: path.display().to_string(), source: e });
            }
        };
        let is_dir = rustix::fs::fstat(&fd).map(|st| st.st_mode & libc::S_IFMT == libc::S_IFDIR).unwrap_or(false);
        let mut rights = grant.rights();
        if !is_dir {
            rights &= AccessFs::from_file(TARGET_ABI);
        }
        ruleset = ruleset.add_rule(PathBeneath::new(fd.as_fd(), rights))?;
        log::debug!("sandbox: landlock: {:?} {}", grant, path.display());
    }
    let fd: Option<OwnedFd> = ruleset.into();
    match (fd, cfg.landlock) {
        (Some(fd), _) => Ok(Some(fd)),
        (None, LandlockMode::BestEffort) => Ok(None),
        (None, _) => Err(SandboxError::LandlockUnsupported),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_patterns() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        for f in ["nvidia0", "nvidia1", "nvidiactl", "null", "nvidia-caps/nvidia-cap1"] {
            std::fs::create_dir_all(d.join(f).parent().unwrap()).unwrap();
            std::fs::write(d.join(f), "").unwrap();
        }
        let p = |s: &str| format!("{}/{s}", d.display());
        let found = expand_devices(&[p("nvidia*"), p("nvidia-caps/*"), p("null"), p("missing"), p("gone/*")]);
        let names: Vec<String> = found.iter().map(|f| f.strip_prefix(d).unwrap().display().to_string()).collect();
        assert_eq!(names, ["nvidia-caps", "nvidia0", "nvidia1", "nvidiactl", "nvidia-caps/nvidia-cap1", "null"]);
    }

    #[test]
    fn interpreter_of_dynamic_and_static_programs() {
        let exe = std::env::current_exe().unwrap();
        // The test binary is a dynamically linked glibc program.
        let interp = elf_interpreter(&exe).unwrap().expect("PT_INTERP");
        assert!(interp.to_string_lossy().contains("ld-linux"), "{}", interp.display());
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("x"), b"#!/bin/sh\n").unwrap();
        assert!(elf_interpreter(&dir.path().join("x")).unwrap_err().to_string().contains("not an ELF file"));
    }

    #[test]
    fn required_fails_closed_without_landlock() {
        let cfg = SandboxConfig::default();
        let exe = std::env::current_exe().unwrap();
        let err = build_with(&cfg, &exe, 0, None).unwrap_err();
        assert_eq!(
            err.to_string(),
            "landlock: the kernel does not support Landlock (set [sandbox] landlock = \"best-effort\" to run without it)"
        );
        let best = SandboxConfig { landlock: LandlockMode::BestEffort, ..SandboxConfig::default() };
        assert!(build_with(&best, &exe, 0, None).unwrap().is_none());
        let off = SandboxConfig { landlock: LandlockMode::Off, ..SandboxConfig::default() };
        assert!(build_with(&off, &exe, 7, None).unwrap().is_none());
    }
}
