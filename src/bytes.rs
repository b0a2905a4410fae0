//! One bounds-checked little-endian reader for the binary formats the host
//! hands the guest: SPDM measurement reports, TDX quotes and the CC event
//! log. Every read names what it was reading, so a truncated input is one
//! clear error, never an index panic.

/// An input ended before a field it must hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{what} needs {need} bytes at offset {at}, {have} left")]
pub struct Truncated {
    pub what: &'static str,
    pub at: usize,
    pub need: usize,
    pub have: usize,
}

/// Reads fields front to back from a borrowed buffer.
#[derive(Debug, Clone)]
pub struct ByteReader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> ByteReader<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Self { buf, pos: 0 }
    }

    /// Bytes read so far.
    pub fn pos(&self) -> usize {
        self.pos
    }

    /// What is left to read.
    pub fn rest(&self) -> &'a [u8] {
        self.buf.get(self.pos..).unwrap_or_default()
    }

    pub fn is_empty(&self) -> bool {
        self.rest().is_empty()
    }

    pub fn take(&mut self, need: usize, what: &'static str) -> Result<&'a [u8], Truncated> {
        let rest = self.rest();
        let out = rest.get(..need).ok_or(Truncated { what, at: self.pos, need, have: rest.len() })?;
        self.pos += need;
        Ok(out)
    }

    pub fn array<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], Truncated> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N, what)?);
        Ok(out)
    }

    pub fn u8(&mut self, what: &'static str) -> Result<u8, Truncated> {
        Ok(u8::from_le_bytes(self.array(what)?))
    }

    pub fn u16(&mut self, what: &'static str) -> Result<u16, Truncated> {
        Ok(u16::from_le_bytes(self.array(what)?))
    }

    /// A 3-byte little-endian length (SPDM measurement records).
    pub fn u24(&mut self, what: &'static str) -> Result<u32, Truncated> {
        let [a, b, c] = self.array(what)?;
        Ok(u32::from_le_bytes([a, b, c, 0]))
    }

    pub fn u32(&mut self, what: &'static str) -> Result<u32, Truncated> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }

    /// A u32 length or count, as a `usize` (lossless on every target
    /// ztinit builds for; a platform where it is not fails the read).
    pub fn u32_len(&mut self, what: &'static str) -> Result<usize, Truncated> {
        let at = self.pos;
        let n = self.u32(what)?;
        usize::try_from(n).map_err(|_| Truncated { what, at, need: usize::MAX, have: self.rest().len() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_little_endian_fields_in_order() {
        let buf = [1, 0x34, 0x12, 0x56, 0x34, 0x12, 0x78, 0x56, 0x34, 0x12, 9, 9];
        let mut r = ByteReader::new(&buf);
        assert_eq!(r.u8("a"), Ok(1));
        assert_eq!(r.u16("b"), Ok(0x1234));
        assert_eq!(r.u24("c"), Ok(0x12_3456));
        assert_eq!(r.u32("d"), Ok(0x1234_5678));
        assert_eq!(r.pos(), 10);
        assert_eq!(r.rest(), [9, 9]);
        assert_eq!(r.array::<2>("e"), Ok([9, 9]));
        assert!(r.is_empty());
    }

    #[test]
    fn a_short_input_names_the_field_and_does_not_move() {
        let mut r = ByteReader::new(&[1, 2, 3]);
        r.u8("version").unwrap();
        let e = r.u32("length").unwrap_err();
        assert_eq!(e, Truncated { what: "length", at: 1, need: 4, have: 2 });
        assert_eq!(e.to_string(), "length needs 4 bytes at offset 1, 2 left");
        assert_eq!(r.pos(), 1);
        assert_eq!(r.take(usize::MAX, "huge").unwrap_err().have, 2, "no overflow on a hostile length");
        assert_eq!(r.take(2, "rest"), Ok(&[2, 3][..]));
        assert!(r.take(1, "more").is_err());
    }
}
