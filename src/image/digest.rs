//! Content digests (`sha256:<hex>`) and a writer that checks one while the
//! bytes stream through. Only SHA-256: the registry chooses nothing here,
//! and an algorithm we would have to trust less is refused by the parser.

use std::fmt;
use std::io::{self, Write};

// ring's SHA-256 (linked already for TLS) is its assembly: 2.5x RustCrypto's
// portable code in a guest without SHA-NI, and a layer is hashed per byte.
use ring::digest::{Context, SHA256};

const PREFIX: &str = "sha256:";
const HEX_LEN: usize = 64;

#[derive(Debug, thiserror::Error)]
pub enum DigestError {
    #[error("invalid digest {value:?}: {why}")]
    Invalid { value: String, why: &'static str },
    #[error("digest mismatch: expected {expected}, got {actual}")]
    Mismatch { expected: Digest, actual: Digest },
    #[error("size mismatch: expected {expected} bytes, got {actual}")]
    Size { expected: u64, actual: u64 },
    #[error("cannot flush the output: {0}")]
    Flush(#[source] io::Error),
}

/// A SHA-256 content digest; the hex is always 64 lowercase characters.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest {
    hex: String,
}

impl Digest {
    /// Parses `sha256:<64 lowercase hex>`; anything else (other algorithms,
    /// uppercase, wrong length) is refused.
    pub fn parse(value: &str) -> Result<Self, DigestError> {
        let bad = |why| DigestError::Invalid { value: crate::kbs::http::truncate(value, 80), why };
        let Some((algorithm, hex)) = value.split_once(':') else {
            return Err(bad("no algorithm prefix (expected sha256:<hex>)"));
        };
        if algorithm != "sha256" {
            return Err(bad("only sha256 digests are accepted"));
        }
        if hex.len() != HEX_LEN {
            return Err(bad("a sha256 digest has 64 hex characters"));
        }
        if !hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
            return Err(bad("the hex must be lowercase 0-9a-f"));
        }
        Ok(Self { hex: hex.to_string() })
    }

    /// The digest of `bytes`.
    pub fn of(bytes: &[u8]) -> Self {
        Self::from_hash(sha256(ring::digest::digest(&SHA256, bytes)))
    }

    pub fn from_hash(hash: [u8; 32]) -> Self {
        Self { hex: hex::encode(hash) }
    }

    /// The 64 lowercase hex characters, without the `sha256:` prefix.
    pub fn hex(&self) -> &str {
        &self.hex
    }

    /// The 32 hash bytes.
    pub fn bytes(&self) -> [u8; 32] {
        let mut out = [0u8; 32];
        // Cannot fail: `hex` is 64 checked hex characters by construction.
        let _ = hex::decode_to_slice(&self.hex, &mut out);
        out
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{PREFIX}{}", self.hex)
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self}")
    }
}

impl std::str::FromStr for Digest {
    type Err = DigestError;
    fn from_str(s: &str) -> Result<Self, DigestError> {
        Self::parse(s)
    }
}

impl serde::Serialize for Digest {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Digest {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Digest::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// A finished SHA-256 as its 32 bytes.
pub fn sha256(d: ring::digest::Digest) -> [u8; 32] {
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

/// Hashes and counts everything written through it. Nothing it passed on
/// may be trusted until `finish` has checked both the size and the digest.
pub struct DigestWriter<W: Write> {
    inner: W,
    hasher: Context,
    written: u64,
}

impl<W: Write> DigestWriter<W> {
    pub fn new(inner: W) -> Self {
        Self { inner, hasher: Context::new(&SHA256), written: 0 }
    }

    /// Bytes accepted so far.
    pub fn written(&self) -> u64 {
        self.written
    }

    /// The inner writer, once the bytes are exactly `expected_size` long and
    /// hash to `expected`. The size is checked first: it is the cheaper and
    /// clearer message when a transfer was cut short.
    pub fn finish(mut self, expected: &Digest, expected_size: u64) -> Result<W, DigestError> {
        self.inner.flush().map_err(DigestError::Flush)?;
        if self.written != expected_size {
            return Err(DigestError::Size { expected: expected_size, actual: self.written });
        }
        let actual = Digest::from_hash(sha256(self.hasher.finish()));
        if &actual != expected {
            return Err(DigestError::Mismatch { expected: expected.clone(), actual });
        }
        Ok(self.inner)
    }
}

impl<W: Write> Write for DigestWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        let taken = buf.get(..n).unwrap_or(buf);
        self.hasher.update(taken);
        self.written = self.written.saturating_add(u64::try_from(n).unwrap_or(u64::MAX));
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EMPTY: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn parse_and_display() {
        let d = Digest::parse(EMPTY).unwrap();
        assert_eq!(d, Digest::of(b""));
        assert_eq!(d.to_string(), EMPTY);
        assert_eq!(d.hex(), &EMPTY[7..]);
        assert_eq!(Digest::from_hash(d.bytes()), d);
        let json = serde_json::to_string(&d).unwrap();
        assert_eq!(json, format!("\"{EMPTY}\""));
        assert_eq!(serde_json::from_str::<Digest>(&json).unwrap(), d);
        for bad in [
            "",
            "sha256:",
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            "sha512:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            "SHA256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            "sha256:E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855",
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b85",
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b8555",
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b85g",
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b8\u{e9}",
        ] {
            assert!(Digest::parse(bad).is_err(), "{bad:?}");
            assert!(serde_json::from_value::<Digest>(serde_json::Value::String(bad.into())).is_err());
        }
        let e = Digest::parse("md5:abc").unwrap_err().to_string();
        assert_eq!(e, "invalid digest \"md5:abc\": only sha256 digests are accepted");
    }

    #[test]
    fn writer_accepts_matching_bytes() {
        let mut w = DigestWriter::new(Vec::new());
        w.write_all(b"hello ").unwrap();
        w.write_all(b"world").unwrap();
        assert_eq!(w.written(), 11);
        let out = w.finish(&Digest::of(b"hello world"), 11).unwrap();
        assert_eq!(out, b"hello world");
    }

    #[test]
    fn writer_refuses_a_wrong_digest() {
        let mut w = DigestWriter::new(Vec::new());
        w.write_all(b"hello world").unwrap();
        let e = w.finish(&Digest::of(b"hello worle"), 11).unwrap_err();
        assert!(matches!(&e, DigestError::Mismatch { actual, .. } if *actual == Digest::of(b"hello world")), "{e}");
        assert!(e.to_string().starts_with("digest mismatch: expected sha256:"), "{e}");
    }

    #[test]
    fn writer_refuses_a_wrong_size_even_with_the_right_digest() {
        let mut w = DigestWriter::new(Vec::new());
        w.write_all(b"hello world").unwrap();
        let e = w.finish(&Digest::of(b"hello world"), 12).unwrap_err();
        assert!(matches!(e, DigestError::Size { expected: 12, actual: 11 }), "{e}");
        assert_eq!(e.to_string(), "size mismatch: expected 12 bytes, got 11");
    }

    /// A writer that takes one byte at a time: only what it took is hashed.
    #[test]
    fn writer_hashes_only_what_the_inner_writer_took() {
        struct OneByte(Vec<u8>);
        impl Write for OneByte {
            fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
                self.0.extend_from_slice(&buf[..buf.len().min(1)]);
                Ok(buf.len().min(1))
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let mut w = DigestWriter::new(OneByte(Vec::new()));
        w.write_all(b"abc").unwrap();
        assert_eq!(w.finish(&Digest::of(b"abc"), 3).unwrap().0, b"abc");
    }
}
