//! `cargo xtask fixture`: small file tools for the `[[prepare]]` steps of
//! e2e scenarios, so a scenario needs no shell script:
//!
//! - `random --out FILE --bytes N`: N random bytes (parent directories made);
//! - `sha256 --in FILE --out FILE`: the lowercase hex SHA-256 and a newline;
//! - `secret-forms --in FILE --out FILE`: one line per way a secret could
//!   leak into a log (hex, HEX, base64 and base64url with and without
//!   padding, and the hex of each half), for a scenario's `forbid_files`;
//! - `flip-byte --file FILE --offset N`: XORs one byte with 0x01 in place.

use std::fs;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail, ensure};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
use sha2::{Digest, Sha256};

const USAGE: &str = "usage: cargo xtask fixture random --out FILE --bytes N
       cargo xtask fixture sha256 --in FILE --out FILE
       cargo xtask fixture secret-forms --in FILE --out FILE
       cargo xtask fixture flip-byte --file FILE --offset N";

/// Largest `random` file (the fixtures are test data, not disks).
const MAX_RANDOM_BYTES: u64 = 1 << 30;

pub fn cmd(args: &[String]) -> Result<()> {
    let Some((tool, rest)) = args.split_first() else { bail!("{USAGE}") };
    let opts = Opts::parse(rest)?;
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
        "flip-byte" => flip_byte(&opts.path("--file")?, opts.number("--offset")?),
        "-h" | "--help" => {
            println!("{USAGE}");
            Ok(())
        }
        other => bail!("fixture: unknown tool {other:?}\n{USAGE}"),
    }
}

/// `--flag value` pairs.
struct Opts(Vec<(String, String)>);

impl Opts {
    fn parse(args: &[String]) -> Result<Self> {
        let mut v = Vec::new();
        let mut it = args.iter();
        while let Some(flag) = it.next() {
            ensure!(flag.starts_with("--"), "fixture: unexpected argument {flag:?}\n{USAGE}");
            let value = it.next().with_context(|| format!("{flag} needs a value\n{USAGE}"))?;
            v.push((flag.clone(), value.clone()));
        }
        Ok(Opts(v))
    }

    fn get(&self, flag: &str) -> Result<&str> {
        self.0.iter().find(|(f, _)| f == flag).map(|(_, v)| v.as_str()).with_context(|| format!("{flag} is required"))
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

fn random(path: &Path, bytes: u64) -> Result<()> {
    let mut data = vec![0u8; bytes as usize];
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
