//! `cargo xtask fixture`: small file tools for the `[[prepare]]` steps of
//! e2e scenarios, so a scenario needs no shell script:
//!
//! - `random --out FILE --bytes N`: N random bytes (parent directories made);
//! - `sha256 --in FILE --out FILE`: the lowercase hex SHA-256 and a newline;
//! - `secret-forms --in FILE --out FILE`: one line per way a secret could
//!   leak into a log (hex, HEX, base64 and base64url with and without
//!   padding, and the hex of each half), for a scenario's `forbid_files`;
//! - `flip-byte --file FILE (--offset N | --block-of PART) [--out COPY]`:
//!   XORs one byte with 0x01, in place or in a copy; `--block-of`: the
//!   first byte of the first 4 KiB-aligned block of FILE that equals PART's
//!   first 4 KiB (a file's first block on a disk image);
//! - `initdata --ztinit-toml FILE --out FILE`: a Kata initdata disk whose
//!   document carries FILE as its `"ztinit.toml"` entry (what a host that
//!   chooses the initdata attaches).

use std::fs;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail, ensure};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
use sha2::{Digest, Sha256};

use crate::cli;

const USAGE: &str = "usage: cargo xtask fixture random --out FILE --bytes N
       cargo xtask fixture sha256 --in FILE --out FILE
       cargo xtask fixture secret-forms --in FILE --out FILE
       cargo xtask fixture flip-byte --file FILE (--offset N | --block-of PART) [--out COPY]
       cargo xtask fixture initdata --ztinit-toml FILE --out FILE";

/// Largest `random` file (the fixtures are test data, not disks).
const MAX_RANDOM_BYTES: u64 = 1 << 30;

pub fn cmd(args: &[String]) -> Result<()> {
    let Some((tool, rest)) = args.split_first() else { return Err(cli::usage_error("no tool given", USAGE)) };
    let flags: &[&str] = match tool.as_str() {
        "random" => &["--out", "--bytes"],
        "sha256" | "secret-forms" => &["--in", "--out"],
        "flip-byte" => &["--file", "--offset", "--block-of", "--out"],
        "initdata" => &["--ztinit-toml", "--out"],
        "-h" | "--help" => &[],
        other => return Err(cli::usage_error(format!("unknown tool {other:?}"), USAGE)),
    };
    let Some(opts) = Opts::parse(rest, flags)? else { return Ok(()) };
    match tool.as_str() {
        "random" => {
            let bytes: u64 = opts.number("--bytes")?;
            ensure!(bytes <= MAX_RANDOM_BYTES, "--bytes: at most {MAX_RANDOM_BYTES}");
            random(&opts.path("--out")?, bytes)
        }
        "sha256" => {
            let hex = sha256_file(&opts.path("--in")?)?;
            write(&opts.path("--out")?, format!("{hex}\n").as_bytes())
        }
        "secret-forms" => {
            let input = opts.path("--in")?;
            let secret = fs::read(&input).with_context(|| format!("cannot read {}", input.display()))?;
            ensure!(secret.len() >= 8, "{}: a secret of at least 8 bytes is expected", input.display());
            write(&opts.path("--out")?, secret_forms(&secret).join("\n").as_bytes())
        }
        "flip-byte" => {
            let mut file = opts.path("--file")?;
            let offset = match (opts.has("--offset"), opts.has("--block-of")) {
                (true, false) => opts.number("--offset")?,
                (false, true) => block_of(&file, &opts.path("--block-of")?)?,
                _ => bail!("flip-byte: give --offset or --block-of\n{USAGE}"),
            };
            if opts.has("--out") {
                let out = opts.path("--out")?;
                fs::copy(&file, &out)
                    .with_context(|| format!("cannot copy {} to {}", file.display(), out.display()))?;
                file = out;
            }
            println!("fixture: flipping byte {offset} of {}", file.display());
            flip_byte(&file, offset)
        }
        "initdata" => {
            let entry = opts.path("--ztinit-toml")?;
            let text = fs::read_to_string(&entry).with_context(|| format!("cannot read {}", entry.display()))?;
            write(&opts.path("--out")?, &initdata_disk(&initdata_document(&text)?))
        }
        "-h" | "--help" => {
            println!("{USAGE}");
            Ok(())
        }
        other => Err(cli::usage_error(format!("unknown tool {other:?}"), USAGE)),
    }
}

/// `--flag value` pairs.
struct Opts(Vec<(String, String)>);

impl Opts {
    /// The `--flag value` pairs among `flags`; `None` after `--help`.
    fn parse(args: &[String], flags: &[&str]) -> Result<Option<Self>> {
        let mut v = Vec::new();
        let mut p = cli::Args::new(args, USAGE);
        while let Some(arg) = p.next()? {
            match arg {
                cli::Short('h') | cli::Long("help") => {
                    p.help()?;
                    return Ok(None);
                }
                cli::Long(name) if flags.contains(&format!("--{name}").as_str()) => {
                    let flag = format!("--{name}");
                    v.push((flag, p.string()?));
                }
                other => {
                    let e = other.unexpected();
                    return Err(p.error(e));
                }
            }
        }
        Ok(Some(Opts(v)))
    }

    fn get(&self, flag: &str) -> Result<&str> {
        let found = self.0.iter().find(|(f, _)| f == flag).map(|(_, v)| v.as_str());
        found.ok_or_else(|| cli::usage_error(format!("{flag} is required"), USAGE))
    }

    fn has(&self, flag: &str) -> bool {
        self.0.iter().any(|(f, _)| f == flag)
    }

    fn path(&self, flag: &str) -> Result<PathBuf> {
        Ok(PathBuf::from(self.get(flag)?))
    }

    fn number(&self, flag: &str) -> Result<u64> {
        self.get(flag)?.parse().with_context(|| format!("{flag} needs a number"))
    }
}

fn write(path: &Path, bytes: &[u8]) -> Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    fs::write(path, bytes).with_context(|| format!("cannot write {}", path.display()))
}

/// An initdata document (Trustee `kbs/docs/initdata.md`) with one entry.
fn initdata_document(ztinit_toml: &str) -> Result<String> {
    ensure!(!ztinit_toml.contains("'''"), "the ztinit.toml entry may not contain '''");
    Ok(format!("version = \"0.1.0\"\nalgorithm = \"sha384\"\n\n[data]\n\"ztinit.toml\" = '''\n{ztinit_toml}'''\n"))
}

/// Kata's initdata disk: `initdata` ‖ u64 LE length ‖ gzip ‖ zero padding
/// to 512 bytes. The gzip stream uses stored deflate blocks: valid gzip
/// that needs no compressor here.
fn initdata_disk(document: &str) -> Vec<u8> {
    let data = document.as_bytes();
    let mut gz = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff];
    let mut chunks = data.chunks(0xffff).peekable();
    if data.is_empty() {
        gz.extend_from_slice(&[1, 0, 0, 0xff, 0xff]);
    }
    while let Some(chunk) = chunks.next() {
        // chunks(0xffff): every length fits.
        let len = u16::try_from(chunk.len()).unwrap_or(u16::MAX);
        gz.push(u8::from(chunks.peek().is_none()));
        gz.extend_from_slice(&len.to_le_bytes());
        gz.extend_from_slice(&(!len).to_le_bytes());
        gz.extend_from_slice(chunk);
    }
    gz.extend_from_slice(&crc32(data).to_le_bytes());
    // ISIZE: the length modulo 2^32, little-endian (RFC 1952).
    gz.extend_from_slice(&(data.len() as u64).to_le_bytes()[..4]);
    let mut disk = b"initdata".to_vec();
    disk.extend_from_slice(&(gz.len() as u64).to_le_bytes());
    disk.extend_from_slice(&gz);
    disk.resize(disk.len().div_ceil(512) * 512, 0);
    disk
}

fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 { (crc >> 1) ^ 0xedb8_8320 } else { crc >> 1 };
        }
    }
    !crc
}

fn random(path: &Path, bytes: u64) -> Result<()> {
    let mut data = vec![0u8; usize::try_from(bytes)?];
    fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut data)).context("cannot read /dev/urandom")?;
    write(path, &data)
}

pub fn sha256_file(path: &Path) -> Result<String> {
    let mut f = fs::File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut h = Sha256::new();
    std::io::copy(&mut f, &mut h).with_context(|| format!("cannot read {}", path.display()))?;
    Ok(hex::encode(h.finalize()))
}

/// Bytes of a prefix whose encodings are forbidden too, so that a shortened
/// preview (`d4f3…`) of a secret is caught as well.
pub const PREFIX: usize = 12;

/// Every text form of `secret` a log line could hold: lower- and uppercase
/// hex of the secret, of each half and of its first [`PREFIX`] bytes;
/// standard base64 and base64url with and without padding; Rust's `Debug`
/// of the bytes (an accidental `{:?}`).
pub fn secret_forms(secret: &[u8]) -> Vec<String> {
    let mut forms = Vec::new();
    let (a, b) = secret.split_at(secret.len() / 2);
    let prefix = &secret[..PREFIX.min(secret.len())];
    for part in [secret, a, b, prefix] {
        forms.push(hex::encode(part));
        forms.push(hex::encode_upper(part));
    }
    for part in [secret, prefix] {
        for engine in [&STANDARD, &STANDARD_NO_PAD, &URL_SAFE, &URL_SAFE_NO_PAD] {
            forms.push(engine.encode(part));
        }
        forms.push(format!("{part:?}").trim_end_matches(']').to_string());
    }
    let mut seen = std::collections::BTreeSet::new();
    forms.retain(|f| !f.is_empty() && seen.insert(f.clone()));
    forms
}

/// The offset of the first 4 KiB-aligned block of `file` equal to the
/// first 4 KiB of `part` (which must be that long).
fn block_of(file: &Path, part: &Path) -> Result<u64> {
    const BLOCK: usize = 4096;
    let mut needle = vec![0u8; BLOCK];
    fs::File::open(part)
        .and_then(|mut f| f.read_exact(&mut needle))
        .with_context(|| format!("cannot read the first {BLOCK} bytes of {}", part.display()))?;
    let mut f =
        std::io::BufReader::new(fs::File::open(file).with_context(|| format!("cannot open {}", file.display()))?);
    let mut block = vec![0u8; BLOCK];
    let mut offset = 0u64;
    loop {
        match f.read_exact(&mut block) {
            Ok(()) if block == needle => return Ok(offset),
            Ok(()) => offset += BLOCK as u64,
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                bail!("{} holds no aligned copy of the first block of {}", file.display(), part.display())
            }
            Err(e) => return Err(e).with_context(|| format!("reading {}", file.display())),
        }
    }
}

fn flip_byte(path: &Path, offset: u64) -> Result<()> {
    let mut f = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .with_context(|| format!("cannot open {}", path.display()))?;
    let len = f.metadata()?.len();
    ensure!(offset < len, "--offset {offset} is past the end of {} ({len} bytes)", path.display());
    let mut byte = [0u8];
    f.seek(SeekFrom::Start(offset))?;
    f.read_exact(&mut byte)?;
    byte[0] ^= 0x01;
    f.seek(SeekFrom::Start(offset))?;
    f.write_all(&byte)?;
    f.sync_all()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_of_finds_an_aligned_copy() {
        let dir = tempfile::tempdir().unwrap();
        let part: Vec<u8> = (0..5000u32).map(|i| (i % 253) as u8).collect();
        let mut disk = vec![0u8; 3 * 4096];
        disk.extend_from_slice(&part[..4096]);
        disk.extend_from_slice(&[7u8; 4096]);
        fs::write(dir.path().join("part"), &part).unwrap();
        fs::write(dir.path().join("disk"), &disk).unwrap();
        assert_eq!(block_of(&dir.path().join("disk"), &dir.path().join("part")).unwrap(), 3 * 4096);
        fs::write(dir.path().join("other"), vec![1u8; 4096]).unwrap();
        assert!(block_of(&dir.path().join("disk"), &dir.path().join("other")).is_err());
        fs::write(dir.path().join("short"), [1u8; 10]).unwrap();
        assert!(block_of(&dir.path().join("disk"), &dir.path().join("short")).is_err());
    }

    #[test]
    fn initdata_disks_read_back_through_ztinit() {
        let dir = tempfile::tempdir().unwrap();
        let entry = dir.path().join("entry.toml");
        fs::write(&entry, "[kbs]\nurl = \"https://10.0.2.100:8443\"\n").unwrap();
        let out = dir.path().join("initdata.img");
        run(&["initdata", "--ztinit-toml", entry.to_str().unwrap(), "--out", out.to_str().unwrap()]).unwrap();
        let disk = fs::read(&out).unwrap();
        assert_eq!(disk.len() % 512, 0);
        let doc = ztinit::tee::initdata::Initdata::parse(ztinit::tee::initdata::read_device(&out).unwrap()).unwrap();
        let overlay = doc.overlay().unwrap().unwrap();
        assert_eq!(overlay["kbs"]["url"].as_str(), Some("https://10.0.2.100:8443"));
        assert_eq!(crc32(b"123456789"), 0xcbf4_3926);
    }

    fn run(args: &[&str]) -> Result<()> {
        cmd(&args.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn secret_forms_cover_hex_and_base64_variants() {
        let forms = secret_forms(&[0xfb, 0xff, 0x00, 0x10, 0xab, 0xcd, 0xef, 0x01]);
        assert_eq!(
            forms,
            [
                "fbff0010abcdef01",
                "FBFF0010ABCDEF01",
                "fbff0010",
                "FBFF0010",
                "abcdef01",
                "ABCDEF01",
                "+/8AEKvN7wE=",
                "+/8AEKvN7wE",
                "-_8AEKvN7wE=",
                "-_8AEKvN7wE",
                "[251, 255, 0, 16, 171, 205, 239, 1",
            ]
        );
    }

    #[test]
    fn tools_write_what_they_say() {
        let dir = tempfile::tempdir().unwrap();
        let d = |n: &str| dir.path().join(n).display().to_string();
        run(&["random", "--out", &d("sub/dir/r.bin"), "--bytes", "4096"]).unwrap();
        let r = fs::read(d("sub/dir/r.bin")).unwrap();
        assert_eq!(r.len(), 4096);
        assert!(r.iter().any(|&b| b != 0));

        run(&["sha256", "--in", &d("sub/dir/r.bin"), "--out", &d("r.sha256")]).unwrap();
        assert_eq!(fs::read_to_string(d("r.sha256")).unwrap(), format!("{}\n", hex::encode(Sha256::digest(&r))));

        run(&["flip-byte", "--file", &d("sub/dir/r.bin"), "--offset", "4095"]).unwrap();
        let flipped = fs::read(d("sub/dir/r.bin")).unwrap();
        assert_eq!(flipped[..4095], r[..4095]);
        assert_eq!(flipped[4095], r[4095] ^ 1);
        let past = run(&["flip-byte", "--file", &d("sub/dir/r.bin"), "--offset", "4096"]).unwrap_err();
        assert!(past.to_string().contains("past the end"), "{past}");

        run(&["secret-forms", "--in", &d("sub/dir/r.bin"), "--out", &d("forms")]).unwrap();
        let forms = fs::read_to_string(d("forms")).unwrap();
        assert!(forms.lines().any(|l| l == hex::encode_upper(&flipped)), "{forms}");

        assert!(run(&["random", "--out", &d("x")]).unwrap_err().to_string().contains("--bytes is required"));
        assert!(run(&["nope"]).is_err());
    }
}
