//! A newc ("070701") cpio writer for initramfs images
//! (linux Documentation/driver-api/early-userspace/buffer-format.rst).
//!
//! The caller hands entries in the order they must appear; this module only
//! encodes. Every header field is explicit, so the output depends on nothing
//! but the entries: no host uid, inode or device number leaks in.

use std::io::{self, Write};

pub const S_IFDIR: u32 = 0o040000;
pub const S_IFREG: u32 = 0o100000;
pub const S_IFLNK: u32 = 0o120000;
pub const S_IFCHR: u32 = 0o020000;
pub const S_IFBLK: u32 = 0o060000;

/// One archive member's header fields (names without a leading `/`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header<'a> {
    pub name: &'a str,
    pub ino: u32,
    /// File type bits | permission bits.
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub nlink: u32,
    pub mtime: u32,
    pub rdev_major: u32,
    pub rdev_minor: u32,
}

/// Writes newc members and keeps track of the offset for padding.
pub struct Writer<W: Write> {
    out: W,
    offset: u64,
}

impl<W: Write> Writer<W> {
    pub fn new(out: W) -> Self {
        Self { out, offset: 0 }
    }

    /// One member: header, name, padding, data, padding. `data` is the
    /// file contents for regular files and the target for symlinks.
    pub fn member(&mut self, h: &Header<'_>, data: &[u8]) -> io::Result<()> {
        let filesize = u32::try_from(data.len())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, format!("{}: larger than 4 GiB", h.name)))?;
        if h.name.is_empty() || h.name.contains('\0') {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, format!("bad member name {:?}", h.name)));
        }
        let namesize = u32::try_from(h.name.len() + 1)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, format!("{}: name too long", h.name)))?;
        let header = format!(
            "070701{:08X}{:08X}{:08X}{:08X}{:08X}{:08X}{:08X}{:08X}{:08X}{:08X}{:08X}{:08X}{:08X}",
            h.ino, h.mode, h.uid, h.gid, h.nlink, h.mtime, filesize, 0, 0, h.rdev_major, h.rdev_minor, namesize, 0
        );
        debug_assert_eq!(header.len(), 110);
        self.put(header.as_bytes())?;
        self.put(h.name.as_bytes())?;
        self.put(&[0])?;
        self.pad()?;
        self.put(data)?;
        self.pad()
    }

    /// The `TRAILER!!!` member, then the inner writer.
    pub fn finish(mut self) -> io::Result<W> {
        let trailer = Header {
            name: "TRAILER!!!",
            ino: 0,
            mode: 0,
            uid: 0,
            gid: 0,
            nlink: 1,
            mtime: 0,
            rdev_major: 0,
            rdev_minor: 0,
        };
        self.member(&trailer, &[])?;
        self.out.flush()?;
        Ok(self.out)
    }

    fn put(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.out.write_all(bytes)?;
        self.offset += bytes.len() as u64;
        Ok(())
    }

    fn pad(&mut self) -> io::Result<()> {
        let n = ((4 - (self.offset % 4)) % 4) as usize;
        self.put(&[0u8; 3][..n])
    }
}

/// A member read back (used by `--list` of an existing archive and tests).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub name: String,
    pub ino: u32,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub nlink: u32,
    pub mtime: u32,
    pub rdev: (u32, u32),
    pub data: Vec<u8>,
}

/// Parses an uncompressed newc archive up to its trailer.
pub fn parse(buf: &[u8]) -> Result<Vec<Member>, String> {
    let mut out = Vec::new();
    let mut pos = 0usize;
    let align = |p: usize| (p + 3) & !3;
    loop {
        let h = buf.get(pos..pos + 110).ok_or_else(|| format!("truncated header at {pos}"))?;
        if &h[..6] != b"070701" {
            return Err(format!("bad magic at {pos}"));
        }
        let at = pos;
        let field = |i: usize| -> Result<u32, String> {
            let s = std::str::from_utf8(&h[6 + i * 8..14 + i * 8]).map_err(|_| "non-ASCII header".to_string())?;
            u32::from_str_radix(s, 16).map_err(|_| format!("bad hex field {s:?} at {at}"))
        };
        let (namesize, filesize) = (field(11)? as usize, field(6)? as usize);
        let name_bytes = buf.get(pos + 110..pos + 110 + namesize).ok_or("truncated name")?;
        let name = String::from_utf8_lossy(&name_bytes[..namesize.saturating_sub(1)]).into_owned();
        let data_start = align(pos + 110 + namesize);
        let data = buf.get(data_start..data_start + filesize).ok_or("truncated data")?.to_vec();
        let member = Member {
            name,
            ino: field(0)?,
            mode: field(1)?,
            uid: field(2)?,
            gid: field(3)?,
            nlink: field(4)?,
            mtime: field(5)?,
            rdev: (field(9)?, field(10)?),
            data,
        };
        pos = align(data_start + filesize);
        if member.name == "TRAILER!!!" {
            return Ok(out);
        }
        out.push(member);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hdr(name: &str, ino: u32, mode: u32) -> Header<'_> {
        Header { name, ino, mode, uid: 0, gid: 0, nlink: 1, mtime: 7, rdev_major: 0, rdev_minor: 0 }
    }

    #[test]
    fn header_layout_and_padding() {
        let mut w = Writer::new(Vec::new());
        w.member(&hdr("init", 1, S_IFREG | 0o755), b"hello").unwrap();
        let buf = w.finish().unwrap();
        // 110 header + "init\0" = 115 -> padded to 116, data 5 -> 121 -> 124.
        assert_eq!(&buf[..6], b"070701");
        assert_eq!(&buf[6..14], b"00000001");
        assert_eq!(&buf[14..22], b"000081ED");
        assert_eq!(&buf[46..54], b"00000007", "mtime");
        assert_eq!(&buf[54..62], b"00000005", "filesize");
        assert_eq!(&buf[110..115], b"init\0");
        assert_eq!(buf[115], 0);
        assert_eq!(&buf[116..121], b"hello");
        assert_eq!(&buf[124..130], b"070701");
        assert_eq!(buf.len() % 4, 0);
    }

    #[test]
    fn round_trips_through_parse() {
        let mut w = Writer::new(Vec::new());
        w.member(&hdr("dev", 1, S_IFDIR | 0o755), b"").unwrap();
        let console = Header { rdev_major: 5, rdev_minor: 1, ..hdr("dev/console", 2, S_IFCHR | 0o600) };
        w.member(&console, b"").unwrap();
        w.member(&hdr("sbin", 3, S_IFLNK | 0o777), b"bin").unwrap();
        let buf = w.finish().unwrap();
        let m = parse(&buf).unwrap();
        assert_eq!(m.len(), 3);
        assert_eq!(m[1].name, "dev/console");
        assert_eq!(m[1].rdev, (5, 1));
        assert_eq!(m[2].data, b"bin");
    }

    #[test]
    fn gnu_cpio_reads_it() {
        if std::process::Command::new("cpio").arg("--version").output().is_err() {
            eprintln!("cpio not installed; skipping the cross-check");
            return;
        }
        let mut w = Writer::new(Vec::new());
        w.member(&hdr("etc", 1, S_IFDIR | 0o755), b"").unwrap();
        w.member(&hdr("etc/a", 2, S_IFREG | 0o644), b"abc").unwrap();
        let buf = w.finish().unwrap();
        let mut child = std::process::Command::new("cpio")
            .args(["-t", "--quiet"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(&buf).unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success());
        assert_eq!(String::from_utf8_lossy(&out.stdout), "etc\netc/a\n");
    }
}
