//! The tar stream: header blocks (ustar, GNU, V7), GNU long names (`L`/`K`)
//! and PAX extended headers (`x`/`g`), read one entry at a time without
//! buffering file data. [`parse_header`] and [`parse_pax`] are pure
//! functions on bytes (fuzz targets); [`TarReader`] adds the stream state.
//!
//! Interpretation follows Go's `archive/tar` (what Docker and containerd
//! unpack with) wherever the formats leave room, so an image means the same
//! thing here as there: header-only types carry no data whatever their size
//! field says, a `'\0'` type with a trailing `/` is a directory, and the
//! archive may end at a block boundary without its zero blocks (the layer's
//! diff_id, checked by the caller, is what guards against truncation there).

use std::collections::BTreeMap;
use std::io::Read;

/// The tar block size.
pub const BLOCK: usize = 512;
/// A PAX header larger than this is refused (Go's `archive/tar` uses the
/// same bound): its records are held in memory.
pub const MAX_PAX_BYTES: u64 = 1 << 20;
/// A GNU long name or link larger than this is refused; paths longer than
/// PATH_MAX are refused later anyway.
pub const MAX_LONG_NAME_BYTES: u64 = 64 << 10;
/// Bytes after the end-of-archive marker are hashed into the diff_id (as
/// Docker does) but only up to this much: writers pad to a 10 KiB record,
/// anything far beyond is not a tar writer's doing.
pub const MAX_TRAILING_BYTES: u64 = 1 << 20;

#[derive(Debug, thiserror::Error)]
pub enum TarError {
    #[error("reading the layer at byte {offset}: {source}")]
    Read {
        offset: u64,
        #[source]
        source: std::io::Error,
    },
    #[error("the tar stream is truncated at byte {offset} ({what})")]
    Truncated { offset: u64, what: &'static str },
    #[error("tar header at byte {offset}: {why}")]
    Header { offset: u64, why: HeaderError },
    #[error("PAX header at byte {offset}: {why}")]
    Pax { offset: u64, why: PaxError },
    #[error("{what} of {size} bytes at byte {offset} exceeds the cap of {cap} bytes")]
    TooLarge { offset: u64, what: &'static str, size: u64, cap: u64 },
    #[error("a zero block at byte {offset} is followed by a header, not by the second end-of-archive block")]
    ZeroThenHeader { offset: u64 },
    #[error("{what} at byte {offset} is not followed by the entry it describes")]
    DanglingMeta { offset: u64, what: &'static str },
    #[error("more than {MAX_TRAILING_BYTES} bytes follow the end-of-archive marker")]
    TrailingData,
}

/// What is wrong with one header block (no stream position: the pure part).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeaderError {
    #[error("a header block is {0} bytes, not 512")]
    BlockSize(usize),
    #[error("checksum mismatch (stored {stored}, computed {computed})")]
    Checksum { stored: u64, computed: u64 },
    #[error("field {0} is not a valid number")]
    Number(&'static str),
    #[error("field {0} is negative")]
    Negative(&'static str),
    #[error("entry type {0:?} is not supported")]
    UnsupportedType(char),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PaxError {
    #[error("malformed record at byte {0} of the header")]
    Record(usize),
    #[error("record key is not UTF-8")]
    Key,
    #[error("value of {0} is not a valid number")]
    Number(&'static str),
    #[error("sparse files (GNU.sparse.*) are not supported")]
    Sparse,
}

/// The type of a tar entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Regular,
    HardLink,
    Symlink,
    CharDevice,
    BlockDevice,
    Directory,
    Fifo,
    /// `x`: PAX records for the next entry.
    PaxLocal,
    /// `g`: PAX records for every later entry.
    PaxGlobal,
    /// `L`: the next entry's name.
    GnuLongName,
    /// `K`: the next entry's link target.
    GnuLongLink,
}

impl Kind {
    fn from_flag(flag: u8, name: &[u8]) -> Result<Kind, HeaderError> {
        Ok(match flag {
            0 if name.ends_with(b"/") => Kind::Directory,
            0 | b'0' | b'7' => Kind::Regular,
            b'1' => Kind::HardLink,
            b'2' => Kind::Symlink,
            b'3' => Kind::CharDevice,
            b'4' => Kind::BlockDevice,
            b'5' => Kind::Directory,
            b'6' => Kind::Fifo,
            b'x' => Kind::PaxLocal,
            b'g' => Kind::PaxGlobal,
            b'L' => Kind::GnuLongName,
            b'K' => Kind::GnuLongLink,
            // Sparse, multi-volume, dump dirs, labels, vendor types: an
            // unknown type silently read as a file would be a different
            // image than the one its author built.
            other => return Err(HeaderError::UnsupportedType(char::from(other))),
        })
    }

    /// Types whose data size is ignored (Go's `isHeaderOnlyType`).
    fn header_only(self) -> bool {
        matches!(
            self,
            Kind::HardLink | Kind::Symlink | Kind::CharDevice | Kind::BlockDevice | Kind::Directory | Kind::Fifo
        )
    }
}

/// One header block, decoded; numbers as stored (ids not yet narrowed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// The name, with the ustar prefix joined in.
    pub name: Vec<u8>,
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    pub size: u64,
    pub mtime: i64,
    pub kind: Kind,
    pub linkname: Vec<u8>,
}

/// A header block is either a header or a zero block (end of archive).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Block {
    Zero,
    Header(Header),
}

/// Decodes one 512-byte header block, checksum verified.
pub fn parse_header(block: &[u8]) -> Result<Block, HeaderError> {
    if block.len() != BLOCK {
        return Err(HeaderError::BlockSize(block.len()));
    }
    if block.iter().all(|&b| b == 0) {
        return Ok(Block::Zero);
    }
    let stored = parse_octal(&block[148..156]).ok_or(HeaderError::Number("chksum"))?;
    // Sum with the checksum field as spaces; some old writers summed signed
    // bytes, so either sum is accepted (as GNU tar and Go do).
    let (mut unsigned, mut signed) = (0u64, 0i64);
    for (i, &b) in block.iter().enumerate() {
        let b = if (148..156).contains(&i) { b' ' } else { b };
        unsigned += u64::from(b);
        signed += i64::from(i8::from_ne_bytes([b]));
    }
    if stored != unsigned && i64::try_from(stored).ok() != Some(signed) {
        return Err(HeaderError::Checksum { stored, computed: unsigned });
    }

    let magic = &block[257..263];
    let version = &block[263..265];
    let mut name = cstr(&block[0..100]).to_vec();
    if magic == b"ustar\0" && version == b"00" {
        // POSIX ustar, or star when "tar\0" ends the block (shorter prefix).
        let prefix = if &block[508..512] == b"tar\0" { &block[345..476] } else { &block[345..500] };
        let prefix = cstr(prefix);
        if !prefix.is_empty() {
            let mut joined = prefix.to_vec();
            joined.push(b'/');
            joined.extend_from_slice(&name);
            name = joined;
        }
    }
    // GNU ("ustar  \0") keeps atime/ctime where ustar has the prefix; V7
    // has nothing there.

    let kind = Kind::from_flag(block[156], &name)?;
    let mode = parse_numeric(&block[100..108]).ok_or(HeaderError::Number("mode"))?;
    let mode = u32::try_from(mode & 0o7777_7777).map_err(|_| HeaderError::Number("mode"))?;
    let uid = non_negative(parse_numeric(&block[108..116]).ok_or(HeaderError::Number("uid"))?, "uid")?;
    let gid = non_negative(parse_numeric(&block[116..124]).ok_or(HeaderError::Number("gid"))?, "gid")?;
    let size = non_negative(parse_numeric(&block[124..136]).ok_or(HeaderError::Number("size"))?, "size")?;
    let mtime = parse_numeric(&block[136..148]).ok_or(HeaderError::Number("mtime"))?;
    let size = if kind.header_only() { 0 } else { size };
    Ok(Block::Header(Header { name, mode, uid, gid, size, mtime, kind, linkname: cstr(&block[157..257]).to_vec() }))
}

fn non_negative(v: i64, field: &'static str) -> Result<u64, HeaderError> {
    u64::try_from(v).map_err(|_| HeaderError::Negative(field))
}

/// The bytes of a NUL-terminated (or full-width) field.
fn cstr(field: &[u8]) -> &[u8] {
    field.iter().position(|&b| b == 0).map_or(field, |end| &field[..end])
}

/// A numeric field: octal (space/NUL padded) or GNU base-256 when the high
/// bit of the first byte is set.
pub fn parse_numeric(field: &[u8]) -> Option<i64> {
    match field.first() {
        Some(first) if first & 0x80 != 0 => parse_base256(field),
        _ => parse_octal(field).and_then(|v| i64::try_from(v).ok()),
    }
}

fn parse_octal(field: &[u8]) -> Option<u64> {
    let trimmed = trim(field);
    let mut value: u64 = 0;
    for &b in trimmed {
        if !(b'0'..=b'7').contains(&b) {
            return None;
        }
        value = value.checked_mul(8)?.checked_add(u64::from(b - b'0'))?;
    }
    Some(value)
}

fn trim(field: &[u8]) -> &[u8] {
    let pad = |b: &u8| *b == b' ' || *b == 0;
    let start = field.iter().position(|b| !pad(b)).unwrap_or(field.len());
    let end = field.iter().rposition(|b| !pad(b)).map_or(start, |e| e + 1);
    &field[start..end]
}

/// Two's complement big-endian, the top bit of the first byte the marker
/// and the next one the sign (Go's `parseNumeric`).
fn parse_base256(field: &[u8]) -> Option<i64> {
    let negative = field.first()? & 0x40 != 0;
    let invert = if negative { 0xff } else { 0 };
    let mut value: u64 = 0;
    for (i, &b) in field.iter().enumerate() {
        let mut b = b ^ invert;
        if i == 0 {
            b &= 0x7f;
        }
        if value >> 56 != 0 {
            return None;
        }
        value = (value << 8) | u64::from(b);
    }
    let value = i64::try_from(value).ok()?;
    Some(if negative { !value } else { value })
}

/// Parses PAX records (`"<len> <key>=<value>\n"`, the length counting the
/// whole record) into `(key, value)` pairs in order.
pub fn parse_pax(data: &[u8]) -> Result<Vec<(String, Vec<u8>)>, PaxError> {
    let mut records = Vec::new();
    let mut at = 0;
    while at < data.len() {
        let rest = &data[at..];
        let space = rest.iter().position(|&b| b == b' ').ok_or(PaxError::Record(at))?;
        let digits = &rest[..space];
        if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) || (digits.len() > 1 && digits[0] == b'0') {
            return Err(PaxError::Record(at));
        }
        let len: usize = std::str::from_utf8(digits).ok().and_then(|s| s.parse().ok()).ok_or(PaxError::Record(at))?;
        if len <= space + 1 || len > rest.len() || rest[len - 1] != b'\n' {
            return Err(PaxError::Record(at));
        }
        let body = &rest[space + 1..len - 1];
        let eq = body.iter().position(|&b| b == b'=').ok_or(PaxError::Record(at))?;
        if eq == 0 {
            return Err(PaxError::Record(at));
        }
        let key = std::str::from_utf8(&body[..eq]).map_err(|_| PaxError::Key)?;
        if key.starts_with("GNU.sparse.") {
            return Err(PaxError::Sparse);
        }
        records.push((key.to_string(), body[eq + 1..].to_vec()));
        at += len;
    }
    Ok(records)
}

/// PAX decimal: an optional sign, digits, and for times an optional
/// fraction (dropped: mtimes are kept to the second).
fn pax_integer(value: &[u8], key: &'static str, fraction_allowed: bool) -> Result<i64, PaxError> {
    let bad = || PaxError::Number(key);
    let text = std::str::from_utf8(value).map_err(|_| bad())?;
    let whole = match text.split_once('.') {
        Some((whole, frac)) if fraction_allowed && !frac.is_empty() && frac.bytes().all(|b| b.is_ascii_digit()) => {
            whole
        }
        Some(_) => return Err(bad()),
        None => text,
    };
    let digits = whole.strip_prefix('-').unwrap_or(whole);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    whole.parse().map_err(|_| bad())
}

fn pax_unsigned(value: &[u8], key: &'static str) -> Result<u64, PaxError> {
    u64::try_from(pax_integer(value, key, false)?).map_err(|_| PaxError::Number(key))
}

/// An entry with every extended header applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub path: Vec<u8>,
    pub link: Vec<u8>,
    pub kind: Kind,
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    pub size: u64,
    pub mtime: i64,
    /// Byte offset of the entry's header in the stream (for messages).
    pub offset: u64,
}

/// Extended values for the next entry.
#[derive(Default)]
struct Pending {
    long_name: Option<Vec<u8>>,
    long_link: Option<Vec<u8>>,
    pax: BTreeMap<String, Vec<u8>>,
    first_offset: Option<(u64, &'static str)>,
}

/// Streams entries out of a tar archive.
pub struct TarReader<R> {
    inner: R,
    offset: u64,
    /// Data bytes of the current entry not yet read, then its padding.
    data_left: u64,
    padding_left: u64,
    global: BTreeMap<String, Vec<u8>>,
    ended: bool,
}

impl<R: Read> TarReader<R> {
    pub fn new(inner: R) -> Self {
        TarReader { inner, offset: 0, data_left: 0, padding_left: 0, global: BTreeMap::new(), ended: false }
    }

    /// The next entry, or `None` at the end of the archive. The previous
    /// entry's unread data is skipped.
    pub fn next_entry(&mut self) -> Result<Option<Entry>, TarError> {
        if self.ended {
            return Ok(None);
        }
        self.skip_rest()?;
        let mut pending = Pending::default();
        loop {
            let at = self.offset;
            let Some(block) = self.read_block("header")? else {
                return self.end(&pending);
            };
            let header = match parse_header(&block).map_err(|why| TarError::Header { offset: at, why })? {
                Block::Header(h) => h,
                Block::Zero => {
                    let second = self.offset;
                    match self.read_block("end-of-archive block")? {
                        Some(b) if b.iter().any(|&x| x != 0) => {
                            return Err(TarError::ZeroThenHeader { offset: second });
                        }
                        _ => return self.end(&pending),
                    }
                }
            };
            match header.kind {
                Kind::PaxLocal | Kind::PaxGlobal => {
                    let data = self.read_meta(&header, MAX_PAX_BYTES, "PAX header")?;
                    let records = parse_pax(&data).map_err(|why| TarError::Pax { offset: at, why })?;
                    let global = header.kind == Kind::PaxGlobal;
                    for (key, value) in records {
                        if global {
                            // An empty value deletes the key (POSIX).
                            if value.is_empty() {
                                self.global.remove(&key);
                            } else {
                                self.global.insert(key, value);
                            }
                        } else {
                            pending.pax.insert(key, value);
                        }
                    }
                    if !global {
                        pending.first_offset.get_or_insert((at, "a PAX header"));
                    }
                }
                Kind::GnuLongName | Kind::GnuLongLink => {
                    let data = self.read_meta(&header, MAX_LONG_NAME_BYTES, "GNU long name")?;
                    let value = cstr(&data).to_vec();
                    if header.kind == Kind::GnuLongName {
                        pending.long_name = Some(value);
                    } else {
                        pending.long_link = Some(value);
                    }
                    pending.first_offset.get_or_insert((at, "a GNU long name"));
                }
                _ => return self.entry(header, pending, at).map(Some),
            }
        }
    }

    /// Reads the current entry's data; 0 at its end.
    pub fn read_data(&mut self, buf: &mut [u8]) -> Result<usize, TarError> {
        let want = usize::try_from(self.data_left).unwrap_or(usize::MAX).min(buf.len());
        if want == 0 {
            return Ok(0);
        }
        let n = self.read_some(&mut buf[..want])?;
        if n == 0 {
            return Err(TarError::Truncated { offset: self.offset, what: "file data" });
        }
        self.data_left -= u64::try_from(n).unwrap_or(u64::MAX).min(self.data_left);
        Ok(n)
    }

    /// After the last entry: reads what follows the end marker (it is part
    /// of the diff_id) and hands back the inner reader.
    pub fn finish(mut self) -> Result<R, TarError> {
        let mut sink = [0u8; 8192];
        let mut trailing: u64 = 0;
        loop {
            let n = self.read_some(&mut sink)?;
            if n == 0 {
                return Ok(self.inner);
            }
            trailing += u64::try_from(n).unwrap_or(u64::MAX);
            if trailing > MAX_TRAILING_BYTES {
                return Err(TarError::TrailingData);
            }
        }
    }

    fn end(&mut self, pending: &Pending) -> Result<Option<Entry>, TarError> {
        if let Some((offset, what)) = pending.first_offset {
            return Err(TarError::DanglingMeta { offset, what });
        }
        self.ended = true;
        Ok(None)
    }

    fn entry(&mut self, header: Header, pending: Pending, offset: u64) -> Result<Entry, TarError> {
        let pax_err = |why| TarError::Pax { offset, why };
        let lookup = |key: &str| -> Option<&[u8]> {
            match pending.pax.get(key) {
                // An empty local value masks the global one too (POSIX).
                Some(v) if v.is_empty() => None,
                Some(v) => Some(v),
                None => self.global.get(key).map(Vec::as_slice),
            }
        };
        let mut entry = Entry {
            path: header.name,
            link: header.linkname,
            kind: header.kind,
            mode: header.mode,
            uid: header.uid,
            gid: header.gid,
            size: header.size,
            mtime: header.mtime,
            offset,
        };
        if let Some(name) = pending.long_name.clone() {
            entry.path = name;
        }
        if let Some(link) = pending.long_link.clone() {
            entry.link = link;
        }
        if let Some(v) = lookup("path") {
            entry.path = v.to_vec();
        }
        if let Some(v) = lookup("linkpath") {
            entry.link = v.to_vec();
        }
        if let Some(v) = lookup("uid") {
            entry.uid = pax_unsigned(v, "uid").map_err(pax_err)?;
        }
        if let Some(v) = lookup("gid") {
            entry.gid = pax_unsigned(v, "gid").map_err(pax_err)?;
        }
        if let Some(v) = lookup("mtime") {
            entry.mtime = pax_integer(v, "mtime", true).map_err(pax_err)?;
        }
        if let Some(v) = lookup("size") {
            let size = pax_unsigned(v, "size").map_err(pax_err)?;
            entry.size = if entry.kind.header_only() { 0 } else { size };
        }
        self.data_left = entry.size;
        self.padding_left = padding(entry.size);
        Ok(entry)
    }

    /// Reads a meta entry's data whole, refusing sizes above `cap`.
    fn read_meta(&mut self, header: &Header, cap: u64, what: &'static str) -> Result<Vec<u8>, TarError> {
        if header.size > cap {
            return Err(TarError::TooLarge { offset: self.offset, what, size: header.size, cap });
        }
        let len = usize::try_from(header.size).map_err(|_| TarError::TooLarge {
            offset: self.offset,
            what,
            size: header.size,
            cap,
        })?;
        let mut data = vec![0u8; len];
        self.read_exact(&mut data, what)?;
        self.padding_left = padding(header.size);
        self.skip_rest()?;
        Ok(data)
    }

    fn skip_rest(&mut self) -> Result<(), TarError> {
        let mut sink = [0u8; 8192];
        while self.data_left > 0 {
            self.read_data(&mut sink)?;
        }
        while self.padding_left > 0 {
            let want = usize::try_from(self.padding_left).unwrap_or(BLOCK).min(BLOCK);
            self.read_exact(&mut sink[..want], "block padding")?;
            self.padding_left -= u64::try_from(want).unwrap_or(self.padding_left).min(self.padding_left);
        }
        Ok(())
    }

    /// One block, or `None` at a clean end of stream; a partial block is
    /// truncation.
    fn read_block(&mut self, what: &'static str) -> Result<Option<[u8; BLOCK]>, TarError> {
        let mut block = [0u8; BLOCK];
        let mut filled = 0;
        while filled < BLOCK {
            let n = self.read_some(&mut block[filled..])?;
            if n == 0 {
                if filled == 0 {
                    return Ok(None);
                }
                return Err(TarError::Truncated { offset: self.offset, what });
            }
            filled += n;
        }
        Ok(Some(block))
    }

    fn read_exact(&mut self, buf: &mut [u8], what: &'static str) -> Result<(), TarError> {
        let mut filled = 0;
        while filled < buf.len() {
            let n = self.read_some(&mut buf[filled..])?;
            if n == 0 {
                return Err(TarError::Truncated { offset: self.offset, what });
            }
            filled += n;
        }
        Ok(())
    }

    fn read_some(&mut self, buf: &mut [u8]) -> Result<usize, TarError> {
        loop {
            match self.inner.read(buf) {
                Ok(n) => {
                    self.offset += u64::try_from(n).unwrap_or(u64::MAX);
                    return Ok(n);
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(source) => return Err(TarError::Read { offset: self.offset, source }),
            }
        }
    }
}

fn padding(size: u64) -> u64 {
    let block = 512u64;
    (block - size % block) % block
}

#[cfg(test)]
pub(crate) mod build;

#[cfg(test)]
mod tests {
    use super::build::{TarBuilder, header_block};
    use super::*;

    fn entries(bytes: &[u8]) -> Result<Vec<(Entry, Vec<u8>)>, TarError> {
        let mut reader = TarReader::new(bytes);
        let mut out = Vec::new();
        while let Some(entry) = reader.next_entry()? {
            let mut data = Vec::new();
            let mut buf = [0u8; 100];
            loop {
                let n = reader.read_data(&mut buf)?;
                if n == 0 {
                    break;
                }
                data.extend_from_slice(&buf[..n]);
            }
            out.push((entry, data));
        }
        reader.finish()?;
        Ok(out)
    }

    #[test]
    fn octal_and_base256_numbers() {
        assert_eq!(parse_numeric(b"0000644\0"), Some(0o644));
        assert_eq!(parse_numeric(b"  755 \0"), Some(0o755));
        assert_eq!(parse_numeric(b"\0\0\0\0"), Some(0));
        assert_eq!(parse_numeric(b"12 34\0"), None);
        assert_eq!(parse_numeric(b"0008\0"), None);
        assert_eq!(parse_numeric(&[0x80, 0, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0]), Some(0x20000));
        assert_eq!(parse_numeric(&[0xff; 8]), Some(-1));
        assert_eq!(parse_numeric(&[0x80, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]), None, "overflows i64");
        assert_eq!(parse_numeric(b"77777777777777777777777"), None, "overflows u64");
    }

    #[test]
    fn header_fields_and_checksum() {
        let block = header_block(b"dir/file", b'0', 0o4755, 1000, 100, 5, b"");
        let Block::Header(h) = parse_header(&block).unwrap() else { panic!("zero") };
        assert_eq!(
            (h.name.as_slice(), h.mode, h.uid, h.gid, h.size, h.kind),
            (&b"dir/file"[..], 0o4755, 1000, 100, 5, Kind::Regular)
        );
        let mut bad = block;
        bad[0] ^= 1;
        assert!(matches!(parse_header(&bad), Err(HeaderError::Checksum { .. })));
        assert_eq!(parse_header(&[0u8; 512]), Ok(Block::Zero));
        assert_eq!(parse_header(&[0u8; 100]), Err(HeaderError::BlockSize(100)));
        let sparse = header_block(b"s", b'S', 0o644, 0, 0, 0, b"");
        assert_eq!(parse_header(&sparse), Err(HeaderError::UnsupportedType('S')));
    }

    #[test]
    fn ustar_prefix_is_joined() {
        let mut block = header_block(b"name", b'0', 0o644, 0, 0, 0, b"");
        block[345..351].copy_from_slice(b"prefix");
        super::build::fix_checksum(&mut block);
        let Block::Header(h) = parse_header(&block).unwrap() else { panic!("zero") };
        assert_eq!(h.name, b"prefix/name");
    }

    #[test]
    fn header_only_types_carry_no_data_and_v7_dirs() {
        let block = header_block(b"d", b'5', 0o755, 0, 0, 4096, b"");
        let Block::Header(h) = parse_header(&block).unwrap() else { panic!("zero") };
        assert_eq!(h.size, 0);
        let block = header_block(b"old/", 0, 0o755, 0, 0, 0, b"");
        let Block::Header(h) = parse_header(&block).unwrap() else { panic!("zero") };
        assert_eq!(h.kind, Kind::Directory);
    }

    #[test]
    fn pax_records() {
        let records = parse_pax(b"16 path=a/b/cde\n10 uid=42\n").unwrap();
        assert_eq!(records, vec![("path".to_string(), b"a/b/cde".to_vec()), ("uid".to_string(), b"42".to_vec())]);
        assert!(parse_pax(b"15 path=a/b/cde\n").is_err(), "length off by one");
        assert!(parse_pax(b"99 path=x\n").is_err(), "length beyond the data");
        assert!(parse_pax(b"08 path=\n").is_err(), "leading zero");
        assert!(parse_pax(b"7 =abc\n").is_err(), "empty key");
        assert!(parse_pax(b"10 pathabc\n").is_err(), "no =");
        assert_eq!(parse_pax(b"22 GNU.sparse.map=0,1\n"), Err(PaxError::Sparse));
        assert_eq!(pax_integer(b"1700000000.123", "mtime", true), Ok(1_700_000_000));
        assert_eq!(pax_integer(b"-5", "mtime", true), Ok(-5));
        assert!(pax_integer(b"1.", "mtime", true).is_err());
        assert!(pax_unsigned(b"-1", "uid").is_err());
        assert!(pax_unsigned(b"1.5", "uid").is_err());
    }

    #[test]
    fn pax_long_path_and_gnu_long_names() {
        let long: Vec<u8> = "deep/".repeat(60).into_bytes().into_iter().chain(*b"file").collect();
        let mut tar = TarBuilder::new();
        tar.pax(&[("path", &long), ("uid", b"70000"), ("mtime", b"12.5")]);
        tar.file(b"short", b"data", 0o644);
        tar.gnu_long_name(&long);
        tar.gnu_long_link(b"target/of/the/link/that/is/long");
        tar.symlink(b"x", b"y");
        tar.global_pax(&[("gid", b"7")]);
        tar.file(b"after-global", b"", 0o600);
        tar.pax(&[("gid", b"")]);
        tar.file(b"masked", b"", 0o600);
        let got = entries(&tar.finish()).unwrap();
        assert_eq!(got[0].0.path, long);
        assert_eq!((got[0].0.uid, got[0].0.mtime, got[0].1.as_slice()), (70000, 12, &b"data"[..]));
        assert_eq!(got[1].0.path, long);
        assert_eq!(got[1].0.link, b"target/of/the/link/that/is/long");
        assert_eq!(got[1].0.kind, Kind::Symlink);
        assert_eq!(got[2].0.gid, 7);
        assert_eq!(got[3].0.gid, 0, "an empty local value masks the global one");
    }

    #[test]
    fn pax_size_overrides_header() {
        let mut tar = TarBuilder::new();
        tar.pax(&[("size", b"3")]);
        tar.raw_entry(b"f", b'0', 0o644, 0, b"abc", b"");
        let got = entries(&tar.finish()).unwrap();
        assert_eq!(got[0].1, b"abc");
    }

    #[test]
    fn caps_on_meta_entries() {
        let mut tar = TarBuilder::new();
        tar.gnu_long_name(&vec![b'a'; usize::try_from(MAX_LONG_NAME_BYTES).unwrap() + 1]);
        tar.file(b"f", b"", 0o644);
        assert!(matches!(entries(&tar.finish()), Err(TarError::TooLarge { what: "GNU long name", .. })));
        // A PAX header claiming a huge size is refused before reading.
        let mut tar = TarBuilder::new();
        tar.raw_entry(b"pax", b'x', 0o644, MAX_PAX_BYTES + 1, b"", b"");
        assert!(matches!(entries(&tar.finish()), Err(TarError::TooLarge { what: "PAX header", .. })));
    }

    #[test]
    fn truncation_and_bad_endings() {
        let mut tar = TarBuilder::new();
        tar.file(b"f", &[7u8; 1000], 0o644);
        let bytes = tar.finish();
        assert!(matches!(entries(&bytes[..700]), Err(TarError::Truncated { what: "file data", .. })));
        assert!(matches!(entries(&bytes[..300]), Err(TarError::Truncated { what: "header", .. })));
        // Clean end at a block boundary without the zero blocks: accepted.
        assert_eq!(entries(&bytes[..1536]).unwrap().len(), 1);
        // A zero block then a header.
        let mut odd = bytes[..1536].to_vec();
        odd.extend_from_slice(&[0u8; 512]);
        odd.extend_from_slice(&bytes[..512]);
        assert!(matches!(entries(&odd), Err(TarError::ZeroThenHeader { .. })));
        // A PAX header with no entry after it.
        let mut tar = TarBuilder::new();
        tar.pax(&[("path", b"x")]);
        assert!(matches!(entries(&tar.finish()), Err(TarError::DanglingMeta { .. })));
        // Trailing bytes after the end marker are bounded.
        let mut long_tail = TarBuilder::new().finish();
        long_tail.resize(long_tail.len() + usize::try_from(MAX_TRAILING_BYTES).unwrap() + 1, 0);
        assert!(matches!(entries(&long_tail), Err(TarError::TrailingData)));
    }
}
