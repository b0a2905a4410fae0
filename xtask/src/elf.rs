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

/// One program header.
struct Segment {
    kind: u32,
    offset: u64,
    vaddr: u64,
    filesz: u64,
    memsz: u64,
}

impl Segment {
    /// Where `vaddr` lies in the file, if this segment's file image holds it.
    fn file_offset(&self, vaddr: u64) -> Option<u64> {
        (self.vaddr..self.vaddr.saturating_add(self.filesz)).contains(&vaddr).then(|| vaddr - self.vaddr + self.offset)
    }
}

/// The program headers of a little-endian ELF64 file.
fn segments(bytes: &[u8]) -> Result<(Reader<'_>, Vec<Segment>)> {
    if !is_elf(bytes) {
        bail!("not an ELF file");
    }
    if bytes.get(4) != Some(&2) || bytes.get(5) != Some(&1) {
        bail!("only little-endian ELF64 files are supported");
    }
    let r = Reader(bytes);
    let (phoff, phentsize, phnum) = (r.u64(0x20)?, u64::from(r.u16(0x36)?), u64::from(r.u16(0x38)?));
    let mut segments = Vec::new();
    for i in 0..phnum {
        let ph = phoff + i * phentsize;
        segments.push(Segment {
            kind: r.u32(ph)?,
            offset: r.u64(ph + 8)?,
            vaddr: r.u64(ph + 16)?,
            filesz: r.u64(ph + 32)?,
            memsz: r.u64(ph + 40)?,
        });
    }
    Ok((r, segments))
}

/// The entry point of a little-endian ELF64 file and the first `n` bytes
/// of code there (fewer if its segment ends sooner), read through the
/// PT_LOAD segment that holds it.
pub fn entry_code(bytes: &[u8], n: usize) -> Result<(u64, Vec<u8>)> {
    let (r, segments) = segments(bytes)?;
    let entry = r.u64(0x18)?;
    let Some((seg, offset)) =
        segments.iter().filter(|s| s.kind == PT_LOAD).find_map(|s| Some((s, s.file_offset(entry)?)))
    else {
        bail!("no PT_LOAD segment holds the entry point {entry:#x}")
    };
    let len = (seg.vaddr + seg.filesz - entry).min(u64::try_from(n)?);
    Ok((entry, r.bytes(offset, len)?.to_vec()))
}

/// How far the PT_LOAD segments of a little-endian ELF64 file reach, from
/// the lowest segment's address to the end of the highest's memory image.
pub fn load_span(bytes: &[u8]) -> Result<u64> {
    let (_, segments) = segments(bytes)?;
    let loads = segments.iter().filter(|s| s.kind == PT_LOAD);
    let low = loads.clone().map(|s| s.vaddr).min().context("no PT_LOAD segment")?;
    let high = loads.map(|s| s.vaddr.saturating_add(s.memsz)).max().context("no PT_LOAD segment")?;
    Ok(high - low)
}

/// Reads PT_INTERP and the dynamic section of a little-endian ELF64 file.
pub fn parse(bytes: &[u8]) -> Result<DynInfo> {
    let (r, segments) = segments(bytes)?;
    let mut info = DynInfo::default();
    let mut dynamic = None;
    for seg in &segments {
        match seg.kind {
            PT_INTERP => info.interp = Some(r.cstr(seg.offset)?),
            PT_DYNAMIC => dynamic = Some((seg.offset, seg.filesz)),
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
    let strtab = segments
        .iter()
        .filter(|s| s.kind == PT_LOAD)
        .find_map(|s| s.file_offset(strtab_vaddr))
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

    /// An ELF64 header and the program headers `(type, offset, vaddr,
    /// filesz, memsz)`, then `code` at file offset 0x100.
    fn tiny_elf(entry: u64, segments: &[(u32, u64, u64, u64, u64)], code: &[u8]) -> Vec<u8> {
        let mut b = vec![0u8; 0x100];
        b[..6].copy_from_slice(b"\x7fELF\x02\x01");
        b[24..32].copy_from_slice(&entry.to_le_bytes());
        b[32..40].copy_from_slice(&64u64.to_le_bytes());
        b[54..56].copy_from_slice(&56u16.to_le_bytes());
        b[56..58].copy_from_slice(&u16::try_from(segments.len()).unwrap().to_le_bytes());
        for (i, &(kind, offset, vaddr, filesz, memsz)) in segments.iter().enumerate() {
            let ph = 64 + i * 56;
            b[ph..ph + 4].copy_from_slice(&kind.to_le_bytes());
            b[ph + 8..ph + 16].copy_from_slice(&offset.to_le_bytes());
            b[ph + 16..ph + 24].copy_from_slice(&vaddr.to_le_bytes());
            b[ph + 32..ph + 40].copy_from_slice(&filesz.to_le_bytes());
            b[ph + 40..ph + 48].copy_from_slice(&memsz.to_le_bytes());
        }
        b.extend_from_slice(code);
        b
    }

    #[test]
    fn entry_code_and_load_span_read_the_load_segments() {
        let code: Vec<u8> = (0u8..16).collect();
        let segments = [(4, 0, 0, 0, 0), (PT_LOAD, 0x100, 0x1000, 0x10, 0x2000), (PT_LOAD, 0x100, 0x4000, 0x10, 0x100)];
        let elf = tiny_elf(0x1004, &segments, &code);
        assert_eq!(entry_code(&elf, 8).unwrap(), (0x1004, code[4..12].to_vec()));
        // Never past the segment's bytes in the file.
        assert_eq!(entry_code(&elf, 64).unwrap().1, code[4..].to_vec());
        assert_eq!(load_span(&elf).unwrap(), 0x4100 - 0x1000);
        let outside = tiny_elf(0x3000, &segments, &code);
        assert!(
            entry_code(&outside, 8)
                .unwrap_err()
                .to_string()
                .contains("no PT_LOAD segment holds the entry point 0x3000")
        );
        assert!(load_span(&tiny_elf(0, &[], &[])).unwrap_err().to_string().contains("no PT_LOAD"));
        assert!(entry_code(b"#!/bin/sh", 8).is_err());
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
