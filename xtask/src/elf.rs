//! Just enough ELF64 reading to put a dynamically linked program into an
//! image with what it needs at run time: its interpreter (PT_INTERP) and
//! the transitive closure of its DT_NEEDED libraries, looked up the way
//! ld.so does (DT_RPATH when there is no DT_RUNPATH, then DT_RUNPATH, then
//! the standard directories), on the host or under a sysroot.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

const PT_LOAD: u32 = 1;
const PT_DYNAMIC: u32 = 2;
const PT_INTERP: u32 = 3;
const DT_NULL: u64 = 0;
const DT_NEEDED: u64 = 1;
const DT_STRTAB: u64 = 5;
const DT_RPATH: u64 = 15;
const DT_RUNPATH: u64 = 29;

/// Where x86_64 glibc's ld.so looks after RPATH/RUNPATH (Debian multiarch first).
pub const STANDARD_DIRS: &[&str] =
    &["/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu", "/lib64", "/usr/lib64", "/lib", "/usr/lib"];

/// The dynamic-linking facts of one ELF file.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct DynInfo {
    pub interp: Option<String>,
    pub needed: Vec<String>,
    pub rpath: Vec<String>,
    pub runpath: Vec<String>,
}

pub fn is_elf(bytes: &[u8]) -> bool {
    bytes.starts_with(b"\x7fELF")
}

struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn u16(&self, off: u64) -> Result<u16> {
        let b = self.bytes(off, 2)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }
    fn u32(&self, off: u64) -> Result<u32> {
        let b = self.bytes(off, 4)?;
        Ok(u32::from_le_bytes(b.try_into()?))
    }
    fn u64(&self, off: u64) -> Result<u64> {
        let b = self.bytes(off, 8)?;
        Ok(u64::from_le_bytes(b.try_into()?))
    }
    fn bytes(&self, off: u64, len: u64) -> Result<&[u8]> {
        let start = usize::try_from(off)?;
        let end = start.checked_add(usize::try_from(len)?).context("offset overflow")?;
        self.0.get(start..end).context("truncated ELF file")
    }
    fn cstr(&self, off: u64) -> Result<String> {
        let start = usize::try_from(off)?;
        let rest = self.0.get(start..).context("string offset out of range")?;
        let end = rest.iter().position(|&b| b == 0).context("unterminated string")?;
        Ok(String::from_utf8_lossy(&rest[..end]).into_owned())
    }
}

/// Reads PT_INTERP and the dynamic section of a little-endian ELF64 file.
pub fn parse(bytes: &[u8]) -> Result<DynInfo> {
    if !is_elf(bytes) {
        bail!("not an ELF file");
    }
    if bytes.get(4) != Some(&2) || bytes.get(5) != Some(&1) {
        bail!("only little-endian ELF64 files are supported");
    }
    let r = Reader(bytes);
    let phoff = r.u64(0x20)?;
    let phentsize = u64::from(r.u16(0x36)?);
    let phnum = u64::from(r.u16(0x38)?);
    let mut info = DynInfo::default();
    let mut loads = Vec::new();
    let mut dynamic = None;
    for i in 0..phnum {
        let ph = phoff + i * phentsize;
        let p_type = r.u32(ph)?;
        let (offset, vaddr, filesz) = (r.u64(ph + 8)?, r.u64(ph + 16)?, r.u64(ph + 32)?);
        match p_type {
            PT_INTERP => info.interp = Some(r.cstr(offset)?),
            PT_LOAD => loads.push((offset, vaddr, filesz)),
            PT_DYNAMIC => dynamic = Some((offset, filesz)),
            _ => {}
        }
    }
    let Some((dyn_off, dyn_size)) = dynamic else {
        return Ok(info);
    };
    let mut entries = Vec::new();
    let mut strtab_vaddr = None;
    for i in 0..dyn_size / 16 {
        let tag = r.u64(dyn_off + i * 16)?;
        let val = r.u64(dyn_off + i * 16 + 8)?;
        match tag {
            DT_NULL => break,
            DT_STRTAB => strtab_vaddr = Some(val),
            DT_NEEDED | DT_RPATH | DT_RUNPATH => entries.push((tag, val)),
            _ => {}
        }
    }
    if entries.is_empty() {
        return Ok(info);
    }
    let strtab_vaddr = strtab_vaddr.context("dynamic section without DT_STRTAB")?;
    // DT_STRTAB is a virtual address: map it to a file offset through PT_LOAD.
    let strtab = loads
        .iter()
        .find(|(_, vaddr, filesz)| strtab_vaddr >= *vaddr && strtab_vaddr < vaddr + filesz)
        .map(|(offset, vaddr, _)| strtab_vaddr - vaddr + offset)
        .context("DT_STRTAB is not inside a loaded segment")?;
    for (tag, val) in entries {
        let s = r.cstr(strtab + val)?;
        match tag {
            DT_NEEDED => info.needed.push(s),
            DT_RPATH => info.rpath.extend(s.split(':').filter(|p| !p.is_empty()).map(str::to_string)),
            _ => info.runpath.extend(s.split(':').filter(|p| !p.is_empty()).map(str::to_string)),
        }
    }
    Ok(info)
}

/// One file the closure adds: where it goes in the image and where its
/// bytes come from on the host.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Dependency {
    pub guest_path: String,
    pub host_path: PathBuf,
}

/// The interpreter and every library `program` (a host file, installed at
/// `guest_path`) needs, found under `sysroot` (`/` for the host).
pub fn closure(program: &Path, guest_path: &str, sysroot: &Path) -> Result<Vec<Dependency>> {
    let bytes = std::fs::read(program).with_context(|| format!("cannot read {}", program.display()))?;
    let info = parse(&bytes).with_context(|| format!("{}", program.display()))?;
    let mut found: BTreeMap<String, Dependency> = BTreeMap::new();
    if let Some(interp) = &info.interp {
        let host = in_sysroot(sysroot, interp);
        if !host.is_file() {
            bail!("{}: interpreter {interp} not found at {}", program.display(), host.display());
        }
        found.insert(interp.clone(), Dependency { guest_path: interp.clone(), host_path: host });
    }
    let mut queue: VecDeque<(String, DynInfo, String)> = VecDeque::new();
    queue.push_back((guest_path.to_string(), info, program.display().to_string()));
    let mut seen_names = BTreeSet::new();
    while let Some((guest, info, shown)) = queue.pop_front() {
        let origin = Path::new(&guest).parent().map(|p| p.display().to_string()).unwrap_or_else(|| "/".into());
        for name in &info.needed {
            if !seen_names.insert(name.clone()) {
                continue;
            }
            let dep = resolve(name, &info, &origin, sysroot).with_context(|| {
                format!(
                    "{shown}: needed library {name} not found (searched RPATH/RUNPATH and {})",
                    STANDARD_DIRS.join(":")
                )
            })?;
            let bytes =
                std::fs::read(&dep.host_path).with_context(|| format!("cannot read {}", dep.host_path.display()))?;
            let dep_info = parse(&bytes).with_context(|| format!("{}", dep.host_path.display()))?;
            queue.push_back((dep.guest_path.clone(), dep_info, dep.host_path.display().to_string()));
            found.insert(dep.guest_path.clone(), dep);
        }
    }
    Ok(found.into_values().collect())
}

fn resolve(name: &str, info: &DynInfo, origin: &str, sysroot: &Path) -> Option<Dependency> {
    if name.contains('/') {
        let host = in_sysroot(sysroot, name);
        return host.is_file().then(|| Dependency { guest_path: name.to_string(), host_path: host });
    }
    let mut dirs: Vec<String> = Vec::new();
    if info.runpath.is_empty() {
        dirs.extend(info.rpath.iter().cloned());
    }
    dirs.extend(info.runpath.iter().cloned());
    dirs.extend(STANDARD_DIRS.iter().map(|s| s.to_string()));
    for dir in dirs {
        let dir = dir.replace("$ORIGIN", origin).replace("${ORIGIN}", origin);
        if !dir.starts_with('/') {
            continue;
        }
        let guest = format!("{}/{name}", dir.trim_end_matches('/'));
        let host = in_sysroot(sysroot, &guest);
        if host.is_file() {
            return Some(Dependency { guest_path: normalize(&guest), host_path: host });
        }
    }
    None
}

fn in_sysroot(sysroot: &Path, guest: &str) -> PathBuf {
    sysroot.join(guest.trim_start_matches('/'))
}

/// Removes `.` and resolves `..` textually; absolute result.
fn normalize(path: &str) -> String {
    format!("/{}", crate::util::normalize_path(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_glibc_program_needs_libc_and_the_interpreter() {
        let prog = Path::new("/usr/bin/true");
        if !prog.is_file() {
            return;
        }
        let info = parse(&std::fs::read(prog).unwrap()).unwrap();
        assert!(info.interp.is_some());
        assert!(info.needed.iter().any(|n| n == "libc.so.6"), "{info:?}");
        let deps = closure(prog, "/usr/bin/true", Path::new("/")).unwrap();
        let guest: Vec<&str> = deps.iter().map(|d| d.guest_path.as_str()).collect();
        assert!(guest.contains(&"/lib64/ld-linux-x86-64.so.2"), "{guest:?}");
        assert!(guest.iter().any(|g| g.ends_with("/libc.so.6")), "{guest:?}");
    }

    #[test]
    fn missing_library_is_named() {
        let dir = tempfile::tempdir().unwrap();
        // A sysroot without any library: the interpreter is missing first.
        let err = closure(Path::new("/usr/bin/true"), "/usr/bin/true", dir.path()).unwrap_err();
        assert!(format!("{err:#}").contains("interpreter /lib64/ld-linux-x86-64.so.2 not found"), "{err:#}");
    }

    #[test]
    fn rejects_non_elf() {
        assert!(parse(b"#!/bin/sh\n").unwrap_err().to_string().contains("not an ELF"));
    }

    #[test]
    fn normalizes_origin_paths() {
        assert_eq!(normalize("/usr/bin/../lib/./x.so"), "/usr/lib/x.so");
    }
}
