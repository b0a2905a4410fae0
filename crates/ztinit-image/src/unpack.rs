//! The layer unpacker: a layer blob (tar, gzip or zstd) streamed into the
//! new root, its diff_id computed on the way.
//!
//! Everything read here is attacker-shaped even after the blob digest
//! check: a signed image can still be a hostile one. The rules (details in
//! `extract`): names are normalised lexically and a `..` above the root is
//! FATAL; parents resolve beneath the root fd (`openat2`) and an absolute
//! or climbing symlink on the way is FATAL; final components are never
//! followed; symlinks are stored verbatim; hard links name only regular
//! files already unpacked inside the root; device, FIFO (and, tar having
//! no socket type, nothing else) nodes are refused; whiteouts and opaque
//! directories apply overlay semantics; owners are set when running as
//! root, modes (set-id bits as given) and mtimes always; every entry and
//! every byte counts against the [`Budget`] before it is written.

mod extract;
mod gzip;
mod tar;
mod zstd;

use std::io::{self, Read};
use std::os::fd::AsFd;

use ring::digest::{Context, SHA256};

pub use self::extract::{PathError, normalise};
pub use self::tar::{
    Block, Entry, Header, HeaderError, Kind, PaxError, TarError, TarReader, parse_header, parse_numeric, parse_pax,
};

/// How a layer blob is compressed (from its media type; the seam with
/// `manifest::LayerMedia`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
}

/// What the layers of one image may still write: file bytes (data and
/// symlink targets) and entries (every header, implicit parents too).
/// Shared by all layers of an image; whiteouts give nothing back.
#[derive(Debug, Clone)]
pub struct Budget {
    pub bytes_left: u64,
    pub entries_left: u64,
    byte_cap: u64,
    entry_cap: u64,
}

impl Budget {
    pub fn new(max_bytes: u64, max_entries: u64) -> Self {
        Budget { bytes_left: max_bytes, entries_left: max_entries, byte_cap: max_bytes, entry_cap: max_entries }
    }

    fn take_bytes(&mut self, n: u64, path: &str) -> Result<(), UnpackError> {
        self.bytes_left = self
            .bytes_left
            .checked_sub(n)
            .ok_or_else(|| UnpackError::SizeCap { path: path.to_string(), cap: self.byte_cap })?;
        Ok(())
    }

    fn take_entry(&mut self, path: &str) -> Result<(), UnpackError> {
        self.entries_left = self
            .entries_left
            .checked_sub(1)
            .ok_or_else(|| UnpackError::EntryCap { path: path.to_string(), cap: self.entry_cap })?;
        Ok(())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum UnpackError {
    #[error(transparent)]
    Tar(#[from] TarError),
    #[error("entry {path}: the path leaves the root (`..` above it)")]
    PathEscape { path: String },
    #[error(
        "entry {path}: its parent resolves outside the root or across a mount (an absolute or climbing symlink on the way)"
    )]
    SymlinkEscape { path: String },
    #[error("entry {path}: {why}")]
    Path { path: String, why: &'static str },
    #[error("entry {path}: {kind} nodes are refused")]
    Node { path: String, kind: &'static str },
    #[error("entry {path}: hard link to {target} refused: {why}")]
    HardLink { path: String, target: String, why: String },
    #[error("entry {path}: {what} {value} is out of range")]
    Id { path: String, what: &'static str, value: u64 },
    #[error("entry {path}: the unpack size cap of {cap} bytes is exceeded")]
    SizeCap { path: String, cap: u64 },
    #[error("entry {path}: the unpack cap of {cap} entries is exceeded")]
    EntryCap { path: String, cap: u64 },
    #[error("entry {path}: {op}: {source}")]
    Fs {
        path: String,
        op: &'static str,
        #[source]
        source: io::Error,
    },
}

/// A tar name for messages: quoted, control characters escaped, so a
/// hostile name cannot forge log lines.
fn show(bytes: &[u8]) -> String {
    format!("{:?}", String::from_utf8_lossy(bytes))
}

enum Decoder<R> {
    Plain(R),
    Gzip(gzip::GzipReader<R>),
    // Boxed: the frame decoder state is ~800 bytes.
    Zstd(Box<zstd::ZstdReader<R>>),
}

impl<R: Read> Read for Decoder<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Decoder::Plain(r) => r.read(buf),
            Decoder::Gzip(r) => r.read(buf),
            Decoder::Zstd(r) => r.read(buf),
        }
    }
}

/// Hashes the decompressed stream: the diff_id.
struct Hashing<R> {
    inner: R,
    sha: Context,
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.sha.update(&buf[..n]);
        Ok(n)
    }
}

/// The decompressed stream of a layer blob (gzip CRC-32/ISIZE and zstd
/// content checksums are checked as the end of each member or frame is
/// read). Public for the decompression fuzz target.
pub fn decompressed<R: Read>(input: R, compression: Compression) -> impl Read {
    match compression {
        Compression::None => Decoder::Plain(input),
        Compression::Gzip => Decoder::Gzip(gzip::GzipReader::new(input)),
        Compression::Zstd => Decoder::Zstd(Box::new(zstd::ZstdReader::new(input))),
    }
}

/// Unpacks one layer into `root` (an `O_PATH|O_DIRECTORY` fd of the new
/// root) over what earlier layers left there, and returns its diff_id: the
/// SHA-256 of the whole decompressed stream, end-of-archive blocks and any
/// padding after them included (what Docker computes and image configs
/// list). The caller compares it with the config's `rootfs.diff_ids`.
///
/// On error the root is half-written and must be discarded.
pub fn unpack_layer(
    input: impl Read,
    compression: Compression,
    root: &impl AsFd,
    budget: &mut Budget,
) -> Result<[u8; 32], UnpackError> {
    let decoder = decompressed(input, compression);
    let chown = rustix::process::geteuid().is_root();
    if !chown {
        log::debug!("not running as root: layer owners are not applied");
    }
    let mut tar = TarReader::new(Hashing { inner: decoder, sha: Context::new(&SHA256) });
    let mut extractor = extract::Extractor::new(root.as_fd(), chown);
    let mut entries: u64 = 0;
    while let Some(entry) = tar.next_entry()? {
        extractor.entry(&entry, &mut tar, budget)?;
        entries += 1;
    }
    extractor.finish()?;
    let hashing = tar.finish()?;
    log::debug!("unpacked a layer of {entries} entries");
    Ok(crate::digest::sha256(hashing.sha.finish()))
}

/// `sha256:<hex>`, the form image configs list diff_ids in.
pub fn diff_id_string(diff_id: &[u8; 32]) -> String {
    format!("sha256:{}", hex::encode(diff_id))
}

#[cfg(test)]
mod tests;
