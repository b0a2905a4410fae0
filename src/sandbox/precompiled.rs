//! The workload's seccomp program, compiled by `xtask image` from the baked
//! configuration and shipped beside it in the measured image
//! ([`PATH`]), so that the boot reads it instead of compiling it.
//!
//! The file is as trusted as the configuration and ztinit itself: all three
//! are in the initramfs the TEE measures. It is used only when it says it
//! was compiled from exactly the baked file (its SHA-256) by exactly this
//! build of ztinit (the input hash of its sources and compiler), and only
//! for a built-in profile: an OCI/Docker profile file depends on the
//! running kernel's version, so it is compiled at boot. `[workload]` and
//! `[sandbox]` are baked-only (neither initdata nor the kernel command
//! line may set any of their keys), so the baked file's digest decides.
//! Any other file (absent, another configuration or build, malformed) is
//! not used, and the boot compiles the program from the configuration as
//! it always did: the same program, so nothing is weaker for it.
//!
//! Layout (integers little-endian): the 8-byte magic, the configuration's
//! SHA-256 (32 bytes), the build's input hash (u8 length, ASCII), the flags
//! (u8: [`LOG`], [`NO_KILLS`]), the profile name (u8 length, UTF-8), the number of
//! instructions (u16, 1 to 4096), then each instruction as code (u16),
//! jt (u8), jf (u8), k (u32). Nothing may follow.

use std::io::Read;
use std::path::Path;

use sha2::{Digest, Sha256};

use super::config::{SandboxConfig, SeccompChoice};
use super::launch::{CompiledSeccomp, LaunchPlan};
use super::seccomp::Program;
use super::{LaunchMode, SandboxError, WorkloadConfig};
use crate::version::INPUT_HASH;

/// Where the image carries the program, beside `/etc/ztinit.toml`.
pub const PATH: &str = "/etc/ztinit.seccomp";

const MAGIC: &[u8; 8] = b"ztbpf\x00\x00\x01";
/// The kernel's BPF_MAXINSNS.
const MAX_INSTRUCTIONS: usize = 4096;
/// Flag: install with SECCOMP_FILTER_FLAG_LOG.
const LOG: u8 = 1;
/// Flag: a handoff workload's program whose kill and trap actions answer
/// EPERM instead (the boot says so, as when it compiles the program).
const NO_KILLS: u8 = 2;
/// A larger file is refused before it is read in full.
const MAX_BYTES: u64 = 8 + 32 + 256 + 1 + 256 + 2 + 8 * MAX_INSTRUCTIONS as u64;

/// Why the image's program is not used (the boot then compiles it).
#[derive(Debug, thiserror::Error)]
pub enum PrecompiledError {
    #[error("{PATH}: {0}")]
    Read(std::io::Error),
    #[error("{PATH} is not a precompiled seccomp program of this format ({0})")]
    Malformed(&'static str),
    #[error("{PATH} was compiled from another configuration than the baked one")]
    OtherConfig,
    #[error("{PATH} was compiled by another ztinit build (inputs {found}; this one is {INPUT_HASH})")]
    OtherBuild { found: String },
}

/// The SHA-256 of the baked configuration's text, which binds the program to it.
pub fn config_digest(text: &str) -> [u8; 32] {
    Sha256::digest(text.as_bytes()).into()
}

/// True for the profiles that depend on the configuration alone.
fn precompilable(choice: &SeccompChoice) -> bool {
    matches!(choice, SeccompChoice::WorkloadDefault | SeccompChoice::Strict | SeccompChoice::Agent)
}

/// The file `xtask image` writes for the baked configuration `text`, whose
/// validated sections are `workload` and `sandbox`; `None` when its profile
/// is compiled at boot (an OCI/Docker file) or there is none (`"none"`).
pub fn build(text: &str, workload: &WorkloadConfig, sandbox: &SandboxConfig) -> Result<Option<Vec<u8>>, SandboxError> {
    if !precompilable(&sandbox.seccomp) {
        return Ok(None);
    }
    let CompiledSeccomp(program) = LaunchPlan::compile_seccomp(workload, sandbox)?;
    let no_kills = workload.mode == LaunchMode::Handoff && {
        let supervised = WorkloadConfig { mode: LaunchMode::Supervise, ..workload.clone() };
        LaunchPlan::compile_seccomp(&supervised, sandbox)?.0.is_some_and(|p| p.has_fatal_actions())
    };
    Ok(program.and_then(|p| encode(&config_digest(text), INPUT_HASH, &p, no_kills)))
}

/// `None` for a program the format cannot hold (compile() already refuses
/// more than BPF_MAXINSNS instructions): the boot compiles that one.
fn encode(digest: &[u8; 32], build: &str, program: &Program, no_kills: bool) -> Option<Vec<u8>> {
    let count = u16::try_from(program.len()).ok().filter(|&n| (1..=MAX_INSTRUCTIONS).contains(&usize::from(n)))?;
    let mut out = Vec::with_capacity(64 + program.name.len() + 8 * program.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(digest);
    push_short(&mut out, build.as_bytes());
    out.push(if program.log { LOG } else { 0 } | if no_kills { NO_KILLS } else { 0 });
    push_short(&mut out, program.name.as_bytes());
    out.extend_from_slice(&count.to_le_bytes());
    for ins in program.instructions() {
        out.extend_from_slice(&ins.code.to_le_bytes());
        out.push(ins.jt);
        out.push(ins.jf);
        out.extend_from_slice(&ins.k.to_le_bytes());
    }
    Some(out)
}

fn push_short(out: &mut Vec<u8>, bytes: &[u8]) {
    // Names and build ids are short; a longer one is cut (and then matches
    // nothing), never wrapped.
    let len = u8::try_from(bytes.len()).unwrap_or(u8::MAX);
    out.push(len);
    out.extend_from_slice(&bytes[..usize::from(len)]);
}

/// A program read back, and whether its kills were made EPERM for handoff.
#[derive(Debug)]
pub struct Precompiled {
    pub program: Program,
    pub no_kills: bool,
}

/// The program in `bytes`, if it was compiled from the configuration whose
/// digest is `digest` by this build.
pub fn decode(bytes: &[u8], digest: &[u8; 32]) -> Result<Precompiled, PrecompiledError> {
    decode_for(bytes, digest, INPUT_HASH)
}

fn decode_for(bytes: &[u8], digest: &[u8; 32], this_build: &str) -> Result<Precompiled, PrecompiledError> {
    let mut r = Reader(bytes);
    if r.take(8)? != MAGIC {
        return Err(PrecompiledError::Malformed("no magic"));
    }
    let config = r.take(32)?;
    let build = r.short()?;
    if build != this_build.as_bytes() {
        return Err(PrecompiledError::OtherBuild { found: String::from_utf8_lossy(build).into_owned() });
    }
    if config != digest {
        return Err(PrecompiledError::OtherConfig);
    }
    let flags = r.byte()?;
    if flags & !(LOG | NO_KILLS) != 0 {
        return Err(PrecompiledError::Malformed("flags"));
    }
    let name = std::str::from_utf8(r.short()?).map_err(|_| PrecompiledError::Malformed("name"))?.to_string();
    let count = usize::from(u16::from_le_bytes([r.byte()?, r.byte()?]));
    if count == 0 || count > MAX_INSTRUCTIONS {
        return Err(PrecompiledError::Malformed("instruction count"));
    }
    let mut insns = Vec::with_capacity(count);
    for _ in 0..count {
        let b = r.take(8)?;
        insns.push(seccompiler::sock_filter {
            code: u16::from_le_bytes([b[0], b[1]]),
            jt: b[2],
            jf: b[3],
            k: u32::from_le_bytes([b[4], b[5], b[6], b[7]]),
        });
    }
    if !r.0.is_empty() {
        return Err(PrecompiledError::Malformed("bytes after the program"));
    }
    let program = Program::from_parts(name, insns, flags & LOG != 0);
    Ok(Precompiled { program, no_kills: flags & NO_KILLS != 0 })
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], PrecompiledError> {
        if self.0.len() < n {
            return Err(PrecompiledError::Malformed("truncated"));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn byte(&mut self) -> Result<u8, PrecompiledError> {
        Ok(self.take(1)?[0])
    }

    fn short(&mut self) -> Result<&'a [u8], PrecompiledError> {
        let n = usize::from(self.byte()?);
        self.take(n)
    }
}

/// At boot: the image's program for the baked configuration (`digest`),
/// `Ok(None)` when the image has none or the profile is compiled at boot.
pub fn load(path: &Path, digest: &[u8; 32], sandbox: &SandboxConfig) -> Result<Option<Precompiled>, PrecompiledError> {
    if !precompilable(&sandbox.seccomp) {
        return Ok(None);
    }
    let file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(PrecompiledError::Read(e)),
    };
    let mut bytes = Vec::new();
    file.take(MAX_BYTES + 1).read_to_end(&mut bytes).map_err(PrecompiledError::Read)?;
    if bytes.len() as u64 > MAX_BYTES {
        return Err(PrecompiledError::Malformed("too large"));
    }
    decode(&bytes, digest).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "[workload]\npath = \"/bin/app\"\n";

    fn sections(sandbox: &str) -> (WorkloadConfig, SandboxConfig) {
        let workload = WorkloadConfig { path: "/bin/app".into(), ..Default::default() };
        let sandbox: SandboxConfig = toml::from_str(sandbox).unwrap();
        (workload, sandbox)
    }

    fn compiled(workload: &WorkloadConfig, sandbox: &SandboxConfig) -> Program {
        LaunchPlan::compile_seccomp(workload, sandbox).unwrap().0.unwrap()
    }

    #[test]
    fn the_image_program_is_the_one_the_boot_would_compile() {
        for profile in ["", "seccomp = \"strict\"", "seccomp = \"agent\"", "seccomp_log = true"] {
            let (workload, sandbox) = sections(profile);
            let bytes = build(TEXT, &workload, &sandbox).unwrap().expect("a built-in profile is precompiled");
            let read = decode(&bytes, &config_digest(TEXT)).unwrap();
            assert!(!read.no_kills);
            let read = read.program;
            let boot = compiled(&workload, &sandbox);
            assert_eq!(read.instructions(), boot.instructions(), "{profile}");
            assert_eq!((read.name.as_str(), read.log), (boot.name.as_str(), boot.log), "{profile}");
        }
    }

    #[test]
    fn handoff_programs_keep_their_eperm_instead_of_kills() {
        let (mut workload, sandbox) = sections("");
        workload.mode = crate::sandbox::LaunchMode::Handoff;
        let bytes = build(TEXT, &workload, &sandbox).unwrap().unwrap();
        let read = decode(&bytes, &config_digest(TEXT)).unwrap();
        assert!(read.no_kills, "the boot must still say so");
        assert!(!read.program.has_fatal_actions());
        assert_eq!(read.program.instructions(), compiled(&workload, &sandbox).instructions());
    }

    #[test]
    fn file_profiles_and_none_are_compiled_at_boot() {
        for profile in ["seccomp = \"none\"", "seccomp = \"/etc/seccomp.json\""] {
            let (workload, sandbox) = sections(profile);
            assert!(build(TEXT, &workload, &sandbox).unwrap().is_none(), "{profile}");
            // Even a file that would otherwise pass is not read for them.
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("ztinit.seccomp");
            let (w, s) = sections("");
            std::fs::write(&path, build(TEXT, &w, &s).unwrap().unwrap()).unwrap();
            assert!(load(&path, &config_digest(TEXT), &sandbox).unwrap().is_none(), "{profile}");
        }
    }

    #[test]
    fn another_configuration_or_build_is_not_used() {
        let (workload, sandbox) = sections("");
        let bytes = build(TEXT, &workload, &sandbox).unwrap().unwrap();
        let other = config_digest("[workload]\npath = \"/bin/other\"\n");
        assert!(matches!(decode(&bytes, &other), Err(PrecompiledError::OtherConfig)));
        let e = decode_for(&bytes, &config_digest(TEXT), "0011223344556677").unwrap_err();
        assert!(matches!(&e, PrecompiledError::OtherBuild { found } if found == INPUT_HASH), "{e}");
        assert!(e.to_string().contains("compiled by another ztinit build"), "{e}");
    }

    #[test]
    fn malformed_files_are_refused() {
        let (workload, sandbox) = sections("");
        let good = build(TEXT, &workload, &sandbox).unwrap().unwrap();
        let digest = config_digest(TEXT);
        let refused = |bytes: &[u8]| matches!(decode(bytes, &digest), Err(PrecompiledError::Malformed(_)));
        assert!(refused(&good[..good.len() - 1]), "truncated");
        assert!(refused(&[good.as_slice(), &[0]].concat()), "trailing byte");
        assert!(refused(b"ztbpf"), "short");
        let mut bad = good.clone();
        bad[0] ^= 1;
        assert!(refused(&bad), "magic");
        // The flags follow the magic, the digest and the build id.
        let flag = 8 + 32 + 1 + INPUT_HASH.len();
        let mut bad = good.clone();
        bad[flag] = 4;
        assert!(refused(&bad), "flags");
        let count = flag + 1 + 1 + good[flag + 1] as usize;
        let mut bad = good.clone();
        bad[count..count + 2].copy_from_slice(&0u16.to_le_bytes());
        assert!(refused(&bad), "no instructions");
    }

    #[test]
    fn load_reads_the_file_or_finds_none() {
        let (workload, sandbox) = sections("");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ztinit.seccomp");
        let digest = config_digest(TEXT);
        assert!(load(&path, &digest, &sandbox).unwrap().is_none(), "absent");
        std::fs::write(&path, build(TEXT, &workload, &sandbox).unwrap().unwrap()).unwrap();
        let program = load(&path, &digest, &sandbox).unwrap().unwrap().program;
        assert_eq!(program.instructions(), compiled(&workload, &sandbox).instructions());
        std::fs::write(&path, vec![0u8; usize::try_from(MAX_BYTES).unwrap() + 1]).unwrap();
        assert!(matches!(load(&path, &digest, &sandbox), Err(PrecompiledError::Malformed("too large"))));
    }
}
