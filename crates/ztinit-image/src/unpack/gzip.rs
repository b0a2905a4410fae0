//! Streaming gzip (RFC 1952): member headers parsed here (FEXTRA, FNAME,
//! FCOMMENT, FHCRC), raw deflate by `miniz_oxide`, each member's CRC-32 and
//! ISIZE checked at its end. Concatenated members are one stream, as gzip(1)
//! and Go (so Docker) read them.

use std::io::{self, Read};

use miniz_oxide::inflate::stream::{InflateState, inflate};
use miniz_oxide::{DataFormat, MZError, MZFlush, MZStatus};

/// FNAME and FCOMMENT longer than this are not a gzip writer's doing.
const MAX_HEADER_STRING: usize = 64 << 10;
const INPUT_BUFFER: usize = 64 << 10;

#[derive(Debug, thiserror::Error)]
pub enum GzipError {
    #[error("gzip: not a gzip member (magic {0:02x}{1:02x})")]
    Magic(u8, u8),
    #[error("gzip: compression method {0} is not deflate")]
    Method(u8),
    #[error("gzip: reserved header flags {0:#04x} are set")]
    ReservedFlags(u8),
    #[error("gzip: header {0} is longer than {MAX_HEADER_STRING} bytes")]
    HeaderString(&'static str),
    #[error("gzip: header CRC mismatch")]
    HeaderCrc,
    #[error("gzip: the stream is truncated ({0})")]
    Truncated(&'static str),
    #[error("gzip: corrupt deflate data")]
    Corrupt,
    #[error("gzip: CRC-32 mismatch (trailer {stored:08x}, data {computed:08x})")]
    Crc { stored: u32, computed: u32 },
    #[error("gzip: length mismatch (trailer {stored}, data {computed} mod 2^32)")]
    Length { stored: u32, computed: u32 },
}

impl From<GzipError> for io::Error {
    fn from(e: GzipError) -> io::Error {
        io::Error::new(io::ErrorKind::InvalidData, e)
    }
}

/// Buffered compressed input, so header parsing and inflate share bytes.
struct Input<R> {
    inner: R,
    buf: Vec<u8>,
    start: usize,
    end: usize,
    eof: bool,
}

impl<R: Read> Input<R> {
    fn available(&self) -> &[u8] {
        &self.buf[self.start..self.end]
    }

    fn consume(&mut self, n: usize) {
        self.start = (self.start + n).min(self.end);
    }

    /// Reads more input; false at end of stream.
    fn fill(&mut self) -> io::Result<bool> {
        if self.eof {
            return Ok(false);
        }
        if self.start > 0 {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        if self.end == self.buf.len() {
            return Ok(true);
        }
        loop {
            match self.inner.read(&mut self.buf[self.end..]) {
                Ok(0) => {
                    self.eof = true;
                    return Ok(false);
                }
                Ok(n) => {
                    self.end += n;
                    return Ok(true);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
    }

    /// True when no input is left.
    fn at_end(&mut self) -> io::Result<bool> {
        Ok(self.available().is_empty() && !self.fill()?)
    }

    fn byte(&mut self, what: &'static str) -> io::Result<u8> {
        if self.at_end()? {
            return Err(GzipError::Truncated(what).into());
        }
        let b = self.buf[self.start];
        self.start += 1;
        Ok(b)
    }

    fn bytes<const N: usize>(&mut self, what: &'static str) -> io::Result<[u8; N]> {
        let mut out = [0u8; N];
        for b in &mut out {
            *b = self.byte(what)?;
        }
        Ok(out)
    }
}

enum Phase {
    Header,
    Body,
    Done,
}

/// Decompresses a gzip stream.
pub struct GzipReader<R> {
    input: Input<R>,
    inflater: Box<InflateState>,
    crc: Crc32,
    length: u64,
    phase: Phase,
    members: u64,
}

impl<R: Read> GzipReader<R> {
    pub fn new(inner: R) -> Self {
        GzipReader {
            input: Input { inner, buf: vec![0u8; INPUT_BUFFER], start: 0, end: 0, eof: false },
            inflater: InflateState::new_boxed(DataFormat::Raw),
            crc: Crc32::new(),
            length: 0,
            phase: Phase::Header,
            members: 0,
        }
    }

    fn member_header(&mut self) -> io::Result<()> {
        let mut header_crc = Crc32::new();
        let fixed: [u8; 10] = self.input.bytes("member header")?;
        header_crc.update(&fixed);
        if fixed[0] != 0x1f || fixed[1] != 0x8b {
            return Err(GzipError::Magic(fixed[0], fixed[1]).into());
        }
        if fixed[2] != 8 {
            return Err(GzipError::Method(fixed[2]).into());
        }
        let flags = fixed[3];
        if flags & 0xe0 != 0 {
            return Err(GzipError::ReservedFlags(flags).into());
        }
        if flags & 0x04 != 0 {
            let xlen: [u8; 2] = self.input.bytes("FEXTRA")?;
            header_crc.update(&xlen);
            for _ in 0..u16::from_le_bytes(xlen) {
                header_crc.update(&[self.input.byte("FEXTRA")?]);
            }
        }
        for (flag, what) in [(0x08, "FNAME"), (0x10, "FCOMMENT")] {
            if flags & flag != 0 {
                let mut len = 0;
                loop {
                    let b = self.input.byte(what)?;
                    header_crc.update(&[b]);
                    if b == 0 {
                        break;
                    }
                    len += 1;
                    if len > MAX_HEADER_STRING {
                        return Err(GzipError::HeaderString(what).into());
                    }
                }
            }
        }
        if flags & 0x02 != 0 {
            let stored = u16::from_le_bytes(self.input.bytes("FHCRC")?);
            if u32::from(stored) != header_crc.value() & 0xffff {
                return Err(GzipError::HeaderCrc.into());
            }
        }
        self.inflater.reset(DataFormat::Raw);
        self.crc = Crc32::new();
        self.length = 0;
        Ok(())
    }

    fn member_trailer(&mut self) -> io::Result<()> {
        let trailer: [u8; 8] = self.input.bytes("member trailer")?;
        let stored_crc = u32::from_le_bytes([trailer[0], trailer[1], trailer[2], trailer[3]]);
        let stored_len = u32::from_le_bytes([trailer[4], trailer[5], trailer[6], trailer[7]]);
        if stored_crc != self.crc.value() {
            return Err(GzipError::Crc { stored: stored_crc, computed: self.crc.value() }.into());
        }
        let computed = u32::try_from(self.length & 0xffff_ffff).unwrap_or(u32::MAX);
        if stored_len != computed {
            return Err(GzipError::Length { stored: stored_len, computed }.into());
        }
        self.members += 1;
        Ok(())
    }
}

impl<R: Read> Read for GzipReader<R> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if out.is_empty() {
            return Ok(0);
        }
        loop {
            match self.phase {
                Phase::Done => return Ok(0),
                Phase::Header => {
                    // Another member, or the end after at least one.
                    if self.members > 0 && self.input.at_end()? {
                        self.phase = Phase::Done;
                        continue;
                    }
                    self.member_header()?;
                    self.phase = Phase::Body;
                }
                Phase::Body => {
                    if self.input.available().is_empty() {
                        self.input.fill()?;
                    }
                    let had_input = !self.input.available().is_empty();
                    let result = inflate(&mut self.inflater, self.input.available(), out, MZFlush::None);
                    self.input.consume(result.bytes_consumed);
                    let written = &out[..result.bytes_written];
                    self.crc.update(written);
                    self.length += u64::try_from(written.len()).unwrap_or(u64::MAX);
                    match result.status {
                        Ok(MZStatus::StreamEnd) => {
                            self.member_trailer()?;
                            self.phase = Phase::Header;
                        }
                        Ok(_) => {
                            if result.bytes_consumed == 0 && result.bytes_written == 0 && !self.input.fill()? {
                                return Err(GzipError::Truncated("deflate data").into());
                            }
                        }
                        // No progress for want of input.
                        Err(MZError::Buf) if !had_input => {
                            if !self.input.fill()? {
                                return Err(GzipError::Truncated("deflate data").into());
                            }
                        }
                        Err(_) => return Err(GzipError::Corrupt.into()),
                    }
                    if result.bytes_written > 0 {
                        return Ok(result.bytes_written);
                    }
                }
            }
        }
    }
}

/// CRC-32 (IEEE, reflected, as gzip uses), slicing by 8.
pub struct Crc32(u32);

const CRC_TABLES: [[u32; 256]; 8] = crc_tables();

// Indices stay below 256 (`i` and `& 0xff`): the casts cannot truncate,
// and `From` is not callable in a const fn.
#[allow(clippy::cast_possible_truncation)]
const fn crc_tables() -> [[u32; 256]; 8] {
    let mut tables = [[0u32; 256]; 8];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 { 0xedb8_8320 ^ (c >> 1) } else { c >> 1 };
            k += 1;
        }
        tables[0][i] = c;
        i += 1;
    }
    let mut i = 0;
    while i < 256 {
        let mut t = 1;
        while t < 8 {
            let prev = tables[t - 1][i];
            tables[t][i] = (prev >> 8) ^ tables[0][(prev & 0xff) as usize];
            t += 1;
        }
        i += 1;
    }
    tables
}

impl Crc32 {
    pub fn new() -> Self {
        Crc32(0xffff_ffff)
    }

    pub fn update(&mut self, data: &[u8]) {
        let t = &CRC_TABLES;
        let mut c = self.0;
        let mut chunks = data.chunks_exact(8);
        for ch in &mut chunks {
            let lo = c ^ u32::from_le_bytes([ch[0], ch[1], ch[2], ch[3]]);
            let hi = u32::from_le_bytes([ch[4], ch[5], ch[6], ch[7]]);
            let [l0, l1, l2, l3] = lo.to_le_bytes();
            let [h0, h1, h2, h3] = hi.to_le_bytes();
            c = t[7][usize::from(l0)]
                ^ t[6][usize::from(l1)]
                ^ t[5][usize::from(l2)]
                ^ t[4][usize::from(l3)]
                ^ t[3][usize::from(h0)]
                ^ t[2][usize::from(h1)]
                ^ t[1][usize::from(h2)]
                ^ t[0][usize::from(h3)];
        }
        for &b in chunks.remainder() {
            c = (c >> 8) ^ t[0][usize::from(c.to_le_bytes()[0] ^ b)];
        }
        self.0 = c;
    }

    pub fn value(&self) -> u32 {
        !self.0
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A gzip member around `data`, with optional header fields.
    pub fn gzip_member(
        data: &[u8],
        name: Option<&[u8]>,
        extra: Option<&[u8]>,
        comment: Option<&[u8]>,
        hcrc: bool,
    ) -> Vec<u8> {
        let mut flags = 0u8;
        let mut header = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3];
        if let Some(extra) = extra {
            flags |= 0x04;
            header.extend_from_slice(&u16::try_from(extra.len()).unwrap().to_le_bytes());
            header.extend_from_slice(extra);
        }
        if let Some(name) = name {
            flags |= 0x08;
            header.extend_from_slice(name);
            header.push(0);
        }
        if let Some(comment) = comment {
            flags |= 0x10;
            header.extend_from_slice(comment);
            header.push(0);
        }
        if hcrc {
            flags |= 0x02;
        }
        header[3] = flags;
        if hcrc {
            let mut c = Crc32::new();
            c.update(&header);
            header.extend_from_slice(&u16::try_from(c.value() & 0xffff).unwrap().to_le_bytes());
        }
        header.extend_from_slice(&miniz_oxide::deflate::compress_to_vec(data, 6));
        let mut crc = Crc32::new();
        crc.update(data);
        header.extend_from_slice(&crc.value().to_le_bytes());
        header.extend_from_slice(&u32::try_from(data.len()).unwrap().to_le_bytes());
        header
    }

    pub fn gzip(data: &[u8]) -> Vec<u8> {
        gzip_member(data, None, None, None, false)
    }

    fn gunzip(bytes: &[u8]) -> io::Result<Vec<u8>> {
        let mut out = Vec::new();
        // Small reads exercise the resumable paths.
        let mut reader = GzipReader::new(bytes);
        let mut buf = [0u8; 777];
        loop {
            let n = reader.read(&mut buf)?;
            if n == 0 {
                return Ok(out);
            }
            out.extend_from_slice(&buf[..n]);
        }
    }

    fn sample() -> Vec<u8> {
        (0..200_000u32).map(|i| u8::try_from((i * 7 + i / 13) % 251).unwrap()).collect()
    }

    #[test]
    fn crc32_known_values() {
        let mut c = Crc32::new();
        c.update(b"123456789");
        assert_eq!(c.value(), 0xcbf4_3926);
        let mut split = Crc32::new();
        split.update(b"1234");
        split.update(b"56789");
        assert_eq!(split.value(), 0xcbf4_3926);
    }

    #[test]
    fn round_trip_with_every_header_field_and_two_members() {
        let data = sample();
        let mut stream = gzip_member(&data[..1000], Some(b"layer.tar"), Some(b"AB\x02\0xy"), Some(b"hi"), true);
        stream.extend_from_slice(&gzip(&data[1000..]));
        assert_eq!(gunzip(&stream).unwrap(), data);
    }

    #[test]
    fn gzip_cli_fixture() {
        // `printf 'hello, layer\n' | gzip -9 -n`: what real writers emit.
        let fixture = [
            0x1f, 0x8b, 0x08, 0x00, 0x00, 0x00, 0x00, 0x00, 0x02, 0x03, 0xcb, 0x48, 0xcd, 0xc9, 0xc9, 0xd7, 0x51, 0xc8,
            0x49, 0xac, 0x4c, 0x2d, 0xe2, 0x02, 0x00, 0x33, 0x31, 0x4d, 0xe6, 0x0d, 0x00, 0x00, 0x00,
        ];
        assert_eq!(gunzip(&fixture).unwrap(), b"hello, layer\n");
    }

    #[test]
    fn bad_crc_length_header_and_truncation_are_errors() {
        let data = sample();
        let good = gzip(&data);
        let msg = |bytes: &[u8]| gunzip(bytes).unwrap_err().to_string();

        let mut bad_crc = good.clone();
        let at = bad_crc.len() - 8;
        bad_crc[at] ^= 1;
        assert!(msg(&bad_crc).contains("CRC-32 mismatch"), "{}", msg(&bad_crc));

        let mut bad_len = good.clone();
        let at = bad_len.len() - 1;
        bad_len[at] ^= 1;
        assert!(msg(&bad_len).contains("length mismatch"));

        let mut bad_hcrc = gzip_member(b"x", Some(b"n"), None, None, true);
        bad_hcrc[12] ^= 1;
        assert!(msg(&bad_hcrc).contains("header CRC"));

        assert!(msg(&good[..good.len() - 3]).contains("truncated"));
        assert!(msg(&good[..good.len() / 2]).contains("truncated"));
        assert!(msg(&good[..5]).contains("truncated"));
        assert!(msg(b"").contains("truncated"));

        let mut garbage_after = good.clone();
        garbage_after.extend_from_slice(b"junk!junk!");
        assert!(msg(&garbage_after).contains("not a gzip member"));

        let mut reserved = good.clone();
        reserved[3] = 0x20;
        assert!(msg(&reserved).contains("reserved"));

        let mut corrupt = good;
        corrupt[10] = 0xff; // block type 3 (reserved) in the first deflate header
        assert!(gunzip(&corrupt).is_err());
    }
}
