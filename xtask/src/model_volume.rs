//! `cargo xtask model-volume`: builds an encrypted, verity-protected model
//! volume on the host, without root or loop devices.
//!
//! 1. stage the input with fixed modes and timestamps;
//! 2. build a filesystem from it (`mkfs.erofs` or `mkfs.ext4 -d`) with a
//!    fixed UUID and time, so the same input gives the same bytes;
//! 3. encrypt it exactly as dm-crypt `aes-xts-plain64` reads it: units of
//!    `--sector-size` bytes (4096 by default, dm-crypt's `sector_size:`),
//!    tweak = the unit's first 512-byte sector number, little-endian, IV
//!    offset 0;
//! 4. append a dm-verity (version 1, SHA-256, 4 KiB blocks, no superblock)
//!    hash tree over the ciphertext, built by the same code the guest uses
//!    for its size checks (`ztinit::volume::verity`);
//! 5. print the root hash and the `[[volumes]]` snippet for the baked config.
//!
//! Image layout: `[ciphertext: data_blocks * 4096][hash tree]`,
//! `hash_offset = data_blocks * 4096`. See docs/volume.md.

use std::fs::{self, File};
use std::io::{BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime};

use aes::cipher::KeyInit;
use aes::{Aes128, Aes256};
use anyhow::{Context, Result, bail, ensure};
use sha2::{Digest, Sha256};
use xts_mode::{Xts128, get_tweak_default};
use ztinit::volume::verity::{self, Geometry};

use crate::cli;

pub const USAGE: &str = "usage: cargo xtask model-volume --input DIR|FILE --key FILE --out IMG [--fs erofs|ext4] [--name NAME] \
[--serial SERIAL] [--key-resource REPO/TYPE/TAG] [--mountpoint PATH] [--salt HEX] [--sector-size 4096|512] \
[--verify full|lazy] [--snippet-out FILE]";

const BLOCK: u64 = 4096;
/// The unit dm-crypt's IV counts in, whatever the encryption unit.
const SECTOR: usize = 512;
/// Encryption and hashing stream in chunks of this many bytes.
const CHUNK: usize = 1 << 20;
/// All timestamps in the filesystem (1970-01-01T00:00:01Z; e2fsprogs treats 0 as unset).
const FIXED_TIME: u64 = 1;

#[derive(Debug, Clone)]
pub struct Options {
    pub input: PathBuf,
    pub key_file: PathBuf,
    pub out: PathBuf,
    pub fs: Fs,
    pub name: String,
    pub serial: String,
    pub key_resource: String,
    pub mountpoint: String,
    pub salt: Option<Vec<u8>>,
    /// dm-crypt's encryption unit: 4096 or 512 bytes.
    pub sector_size: u32,
    /// The snippet's `verify`.
    pub verify: VerifyMode,
    /// Also write the `[[volumes]]` snippet here (for scripts and test harnesses).
    pub snippet_out: Option<PathBuf>,
}

/// The filesystems ztinit mounts, by the names its config uses.
pub use ztinit::volume::config::Filesystem as Fs;
use ztinit::volume::config::VerifyMode;

/// What was built: everything the `[[volumes]]` entry needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Built {
    pub root_hash: String,
    pub salt: String,
    pub data_blocks: u64,
    pub hash_offset: u64,
    pub image_bytes: u64,
    pub key_size: usize,
}

pub fn cmd(args: &[String]) -> Result<()> {
    let Some(opts) = parse(args)? else { return Ok(()) };
    let built = build(&opts)?;
    eprintln!(
        "model-volume: wrote {} ({} bytes: {} data blocks of ciphertext, verity tree at byte {})",
        opts.out.display(),
        built.image_bytes,
        built.data_blocks,
        built.hash_offset
    );
    println!("root hash: {}", built.root_hash);
    println!();
    let text = snippet(&opts, &built);
    print!("{text}");
    if let Some(path) = &opts.snippet_out {
        fs::write(path, &text).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

/// The options, or `None` after `--help`.
fn parse(args: &[String]) -> Result<Option<Options>> {
    let mut o = Options {
        input: PathBuf::new(),
        key_file: PathBuf::new(),
        out: PathBuf::new(),
        fs: Fs::Erofs,
        name: "model".into(),
        serial: "ztmodel".into(),
        key_resource: "default/model/key".into(),
        mountpoint: "/models".into(),
        salt: None,
        sector_size: 4096,
        verify: VerifyMode::Full,
        snippet_out: None,
    };
    let mut p = cli::Args::new(args, USAGE);
    while let Some(arg) = p.next()? {
        match arg {
            cli::Long("input") => o.input = p.value()?.into(),
            cli::Long("key") => o.key_file = p.value()?.into(),
            cli::Long("out") => o.out = p.value()?.into(),
            cli::Long("fs") => {
                o.fs = match p.string()?.as_str() {
                    "erofs" => Fs::Erofs,
                    "ext4" => Fs::Ext4,
                    other => return Err(p.error(format!("--fs {other:?}: erofs or ext4"))),
                }
            }
            cli::Long("name") => o.name = p.string()?,
            cli::Long("serial") => o.serial = p.string()?,
            cli::Long("key-resource") => o.key_resource = p.string()?,
            cli::Long("mountpoint") => o.mountpoint = p.string()?,
            cli::Long("salt") => o.salt = Some(hex::decode(p.string()?).map_err(|_| p.error("--salt must be hex"))?),
            cli::Long("sector-size") => {
                o.sector_size = match p.string()?.as_str() {
                    "4096" => 4096,
                    "512" => 512,
                    other => return Err(p.error(format!("--sector-size {other:?}: 4096 or 512"))),
                }
            }
            cli::Long("verify") => {
                o.verify = match p.string()?.as_str() {
                    "full" => VerifyMode::Full,
                    "lazy" => VerifyMode::Lazy,
                    other => return Err(p.error(format!("--verify {other:?}: full or lazy"))),
                }
            }
            cli::Long("snippet-out") => o.snippet_out = Some(p.value()?.into()),
            cli::Short('h') | cli::Long("help") => {
                p.help()?;
                return Ok(None);
            }
            other => {
                let e = other.unexpected();
                return Err(p.error(e));
            }
        }
    }
    for (flag, set) in [("--input", &o.input), ("--key", &o.key_file), ("--out", &o.out)] {
        if set.as_os_str().is_empty() {
            return Err(p.error(format!("{flag} is required")));
        }
    }
    ztinit::kbs::ResourcePath::parse(&o.key_resource).map_err(|e| p.error(format!("--key-resource: {e}")))?;
    Ok(Some(o))
}

/// Builds the image at `opts.out`.
pub fn build(opts: &Options) -> Result<Built> {
    let key = fs::read(&opts.key_file).with_context(|| format!("reading key {}", opts.key_file.display()))?;
    ensure!(
        key.len() == 64 || key.len() == 32,
        "{}: a raw key of 64 bytes (AES-256-XTS) or 32 bytes (AES-128-XTS) is needed, found {} bytes \
         (make one with: head -c 64 /dev/urandom > model.key)",
        opts.key_file.display(),
        key.len()
    );
    if let Some(salt) = &opts.salt {
        ensure!(salt.len() <= verity::MAX_SALT_BYTES, "--salt: at most {} bytes", verity::MAX_SALT_BYTES);
    }
    let work = scratch_dir(&opts.out)?;
    let result = build_in(opts, &key, &work);
    let _ = fs::remove_dir_all(&work);
    result
}

fn scratch_dir(out: &Path) -> Result<PathBuf> {
    let mut name = out.file_name().context("--out needs a file name")?.to_os_string();
    name.push(".work");
    let dir = out.with_file_name(name);
    if dir.exists() {
        fs::remove_dir_all(&dir).with_context(|| format!("removing stale {}", dir.display()))?;
    }
    fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    Ok(dir)
}

fn build_in(opts: &Options, key: &[u8], work: &Path) -> Result<Built> {
    let stage = work.join("root");
    stage_input(&opts.input, &stage)?;
    let plain = work.join("fs.img");
    make_fs(opts.fs, &opts.name, &stage, &plain)?;

    let fs_bytes = fs::metadata(&plain)?.len();
    ensure!(fs_bytes > 0, "mkfs produced an empty image");
    let data_blocks = fs_bytes.div_ceil(BLOCK);
    let data_bytes = data_blocks * BLOCK;
    let ciphertext_digest = encrypt_file(&plain, &opts.out, key, data_bytes, opts.sector_size)?;
    // The salt must be fixed for a reproducible image, and public: derive it
    // from the ciphertext (never from the key or the plaintext).
    let salt = match &opts.salt {
        Some(s) => s.clone(),
        None => Sha256::new_with_prefix(b"ztinit model-volume verity salt\0")
            .chain_update(ciphertext_digest)
            .finalize()
            .to_vec(),
    };

    let tree = hash_tree(&opts.out, data_blocks, &salt).context("hashing the ciphertext")?;
    let mut out = fs::OpenOptions::new().write(true).open(&opts.out)?;
    out.seek(SeekFrom::Start(data_bytes))?;
    out.write_all(&tree.bytes)?;
    out.sync_all()?;
    let image_bytes = data_bytes + tree.bytes.len() as u64;
    out.set_len(image_bytes)?;
    Ok(Built {
        root_hash: hex::encode(tree.root),
        salt: hex::encode(salt),
        data_blocks,
        hash_offset: data_bytes,
        image_bytes,
        key_size: key.len(),
    })
}

/// The dm-verity tree (version 1, SHA-256, 4 KiB data and hash blocks) of
/// the first `data_blocks` blocks of `data`; shared with the root disks of
/// `xtask image --format disk`.
pub fn hash_tree(data: &Path, data_blocks: u64, salt: &[u8]) -> Result<verity::Tree> {
    let block = u32::try_from(BLOCK)?;
    let geometry = Geometry::new(data_blocks, block).context("verity geometry")?;
    let file = File::open(data).with_context(|| format!("opening {}", data.display()))?;
    let mut reader = BufReader::with_capacity(CHUNK, file);
    Ok(verity::build_tree(&mut reader, block, &geometry, salt)?)
}

/// Copies the input into `stage` with modes 0755/0644 (0755 for files with
/// any execute bit) and every timestamp fixed. Symlinks and special files
/// are refused: a model volume holds plain files.
fn stage_input(input: &Path, stage: &Path) -> Result<()> {
    let meta = fs::symlink_metadata(input).with_context(|| format!("reading {}", input.display()))?;
    fs::create_dir_all(stage)?;
    if meta.is_dir() {
        copy_tree(input, stage)?;
    } else if meta.is_file() {
        let name = input.file_name().context("--input has no file name")?;
        copy_file(input, &stage.join(name), meta.permissions().mode())?;
    } else {
        bail!("{}: --input must be a directory or a regular file", input.display());
    }
    fix_time(stage)
}

fn copy_tree(from: &Path, to: &Path) -> Result<()> {
    let mut entries: Vec<_> = fs::read_dir(from)?.collect::<std::io::Result<_>>()?;
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let src = e.path();
        let dst = to.join(e.file_name());
        let meta = fs::symlink_metadata(&src)?;
        if meta.is_dir() {
            fs::create_dir(&dst)?;
            copy_tree(&src, &dst)?;
            fs::set_permissions(&dst, fs::Permissions::from_mode(0o755))?;
            fix_time(&dst)?;
        } else if meta.is_file() {
            copy_file(&src, &dst, meta.permissions().mode())?;
        } else {
            bail!("{}: only directories and regular files can go into a model volume", src.display());
        }
    }
    fs::set_permissions(to, fs::Permissions::from_mode(0o755))?;
    Ok(())
}

fn copy_file(src: &Path, dst: &Path, mode: u32) -> Result<()> {
    fs::copy(src, dst).with_context(|| format!("copying {}", src.display()))?;
    let mode = if mode & 0o111 != 0 { 0o755 } else { 0o644 };
    fs::set_permissions(dst, fs::Permissions::from_mode(mode))?;
    fix_time(dst)
}

fn fix_time(path: &Path) -> Result<()> {
    let t = SystemTime::UNIX_EPOCH + Duration::from_secs(FIXED_TIME);
    let f = File::open(path)?;
    f.set_times(fs::FileTimes::new().set_accessed(t).set_modified(t))
        .with_context(|| format!("setting the time of {}", path.display()))
}

/// A UUID fixed by the volume name, so rebuilding gives the same bytes.
fn fs_uuid(name: &str) -> String {
    fixed_uuid("model-volume", name)
}

/// A UUID fixed by `domain` and `name` (the same inputs, the same UUID).
pub fn fixed_uuid(domain: &str, name: &str) -> String {
    let d = Sha256::digest(format!("ztinit {domain} fs uuid\0{name}"));
    let mut b = [0u8; 16];
    b.copy_from_slice(&d[..16]);
    b[6] = (b[6] & 0x0f) | 0x40; // version 4 layout, deterministic content
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = hex::encode(b);
    format!("{}-{}-{}-{}-{}", &h[..8], &h[8..12], &h[12..16], &h[16..20], &h[20..])
}

fn make_fs(fs_type: Fs, name: &str, stage: &Path, img: &Path) -> Result<()> {
    let uuid = fs_uuid(name);
    let mut cmd = match fs_type {
        Fs::Erofs => erofs_command(stage, img, &uuid),
        Fs::Ext4 => {
            let size = ext4_size(stage)?;
            File::create(img)?.set_len(size)?;
            let mut c = Command::new("mkfs.ext4");
            c.args(["-q", "-F", "-b", "4096", "-m", "0", "-U", &uuid]);
            c.args(["-O", "^has_journal,^resize_inode"]);
            c.arg("-E").arg(format!("root_owner=0:0,hash_seed={uuid},lazy_itable_init=0,lazy_journal_init=0"));
            c.arg("-d").arg(stage).arg(img);
            c.env("E2FSPROGS_FAKE_TIME", FIXED_TIME.to_string());
            c
        }
    };
    cmd.env("SOURCE_DATE_EPOCH", FIXED_TIME.to_string());
    let status = cmd.status().with_context(|| {
        format!(
            "running {:?} (install {})",
            cmd.get_program(),
            if fs_type == Fs::Erofs { "erofs-utils" } else { "e2fsprogs" }
        )
    })?;
    ensure!(status.success(), "{:?} failed: {status}", cmd.get_program());
    if fs_type == Fs::Ext4 {
        fix_ext4_times(stage, img)?;
    }
    Ok(())
}

/// `mkfs.erofs` with everything that would vary fixed: every inode's time
/// (`-T`, and `SOURCE_DATE_EPOCH` for the superblock), the UUID, owners
/// (`--all-root`: uid/gid 0) and no extended attributes from the build host
/// (`-x-1`). Uncompressed, so the kernel needs no EROFS_FS_ZIP.
pub fn erofs_command(stage: &Path, img: &Path, uuid: &str) -> Command {
    let mut c = Command::new("mkfs.erofs");
    c.arg("--quiet").arg(format!("-T{FIXED_TIME}")).arg(format!("-U{uuid}")).arg("--all-root").arg("-x-1");
    c.arg(img).arg(stage);
    c.env("SOURCE_DATE_EPOCH", FIXED_TIME.to_string());
    c
}

/// `mkfs.ext4 -d` copies each file's ctime (which cannot be set) and atime
/// (which mkfs's own read updates) from the staging tree; rewrite both with
/// debugfs (e2fsprogs, works on an image file without root).
fn fix_ext4_times(stage: &Path, img: &Path) -> Result<()> {
    fn walk(dir: &Path, guest: &str, out: &mut String) -> Result<()> {
        let mut entries: Vec<_> = fs::read_dir(dir)?.collect::<std::io::Result<_>>()?;
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            let name = e.file_name().into_string().map_err(|n| anyhow::anyhow!("{n:?}: file names must be UTF-8"))?;
            ensure!(!name.contains(['"', '\n', '\\']), "{name:?}: quotes, backslashes and newlines are not supported");
            let path = format!("{guest}/{name}");
            for field in ["atime", "ctime"] {
                out.push_str(&format!("sif \"{path}\" {field} {FIXED_TIME}\n"));
            }
            if e.file_type()?.is_dir() {
                walk(&e.path(), &path, out)?;
            }
        }
        Ok(())
    }
    let mut script = format!("sif / atime {FIXED_TIME}\nsif / ctime {FIXED_TIME}\n");
    walk(stage, "", &mut script)?;
    let cmds = img.with_extension("debugfs");
    fs::write(&cmds, script)?;
    let out = Command::new("debugfs")
        .arg("-w")
        .arg("-f")
        .arg(&cmds)
        .arg(img)
        .output()
        .context("running debugfs (e2fsprogs)")?;
    ensure!(out.status.success(), "debugfs failed: {}", String::from_utf8_lossy(&out.stderr));
    // debugfs reports a failed command on stderr but still exits 0.
    let err = String::from_utf8_lossy(&out.stderr);
    ensure!(!err.lines().skip(1).any(|l| !l.trim().is_empty()), "debugfs: {err}");
    Ok(())
}

/// Room for the files (whole blocks) plus metadata: 10 % + 4 MiB.
fn ext4_size(stage: &Path) -> Result<u64> {
    fn walk(p: &Path, sum: &mut u64, count: &mut u64) -> Result<()> {
        for e in fs::read_dir(p)? {
            let e = e?;
            let meta = e.metadata()?;
            *count += 1;
            if meta.is_dir() {
                walk(&e.path(), sum, count)?;
            } else {
                *sum += meta.len().div_ceil(BLOCK) * BLOCK;
            }
        }
        Ok(())
    }
    let (mut sum, mut count) = (0, 0);
    walk(stage, &mut sum, &mut count)?;
    let size = sum + sum / 10 + count * BLOCK + (4 << 20);
    Ok(size.div_ceil(BLOCK) * BLOCK)
}

/// AES-XTS as dm-crypt `aes-xts-plain64`: the key is data key ‖ tweak key;
/// each unit of `sector_size` bytes is one XTS data unit whose tweak is the
/// number of its first 512-byte sector as 16 little-endian bytes (no
/// `iv_large_sectors`).
pub enum Xts {
    Aes128(Box<Xts128<Aes128>>),
    Aes256(Box<Xts128<Aes256>>),
}

impl Xts {
    pub fn new(key: &[u8]) -> Result<Xts> {
        let (k1, k2) = key.split_at(key.len() / 2);
        Ok(match key.len() {
            32 => Xts::Aes128(Box::new(Xts128::new(Aes128::new_from_slice(k1)?, Aes128::new_from_slice(k2)?))),
            64 => Xts::Aes256(Box::new(Xts128::new(Aes256::new_from_slice(k1)?, Aes256::new_from_slice(k2)?))),
            n => bail!("XTS keys are 32 or 64 bytes, not {n}"),
        })
    }

    /// Encrypts whole units of `sector_size` bytes in place, the first
    /// starting at byte `offset` of the device (a multiple of the unit).
    pub fn encrypt(&self, buf: &mut [u8], offset: u64, sector_size: usize) {
        debug_assert!(buf.len().is_multiple_of(sector_size) && sector_size.is_multiple_of(SECTOR));
        let per_unit = (sector_size / SECTOR) as u128;
        let tweak = |unit: u128| get_tweak_default(unit * per_unit);
        let first = u128::from(offset) / sector_size as u128;
        match self {
            Xts::Aes128(x) => x.encrypt_area(buf, sector_size, first, tweak),
            Xts::Aes256(x) => x.encrypt_area(buf, sector_size, first, tweak),
        }
    }
}

/// Encrypts `plain` (zero-padded to `data_bytes`) into `out`; returns the
/// SHA-256 of the ciphertext.
fn encrypt_file(plain: &Path, out: &Path, key: &[u8], data_bytes: u64, sector_size: u32) -> Result<[u8; 32]> {
    let xts = Xts::new(key)?;
    let mut input = File::open(plain)?;
    let mut output = BufWriter::new(File::create(out).with_context(|| format!("creating {}", out.display()))?);
    let mut digest = Sha256::new();
    let mut buf = vec![0u8; CHUNK];
    let mut done = 0u64;
    while done < data_bytes {
        let n = usize::try_from(data_bytes - done).map_or(CHUNK, |n| n.min(CHUNK));
        let chunk = &mut buf[..n];
        read_padded(&mut input, chunk)?;
        xts.encrypt(chunk, done, sector_size as usize);
        digest.update(&*chunk);
        output.write_all(chunk)?;
        done += n as u64;
    }
    output.flush()?;
    Ok(digest.finalize().into())
}

/// Fills `buf` from `r`, with zeros past its end.
fn read_padded(r: &mut impl Read, buf: &mut [u8]) -> Result<()> {
    let mut filled = 0;
    while filled < buf.len() {
        match r.read(&mut buf[filled..])? {
            0 => break,
            n => filled += n,
        }
    }
    buf[filled..].fill(0);
    Ok(())
}

/// The `[[volumes]]` entry for the baked config, with the QEMU arguments
/// that attach the image under the serial it names.
pub fn snippet(opts: &Options, b: &Built) -> String {
    let (name, serial) = (&opts.name, &opts.serial);
    format!(
        "# QEMU: -drive file={img},if=none,id={name},format=raw,readonly=on \
-device virtio-blk-pci,drive={name},serial={serial}
[[volumes]]
name = \"{name}\"
serial = \"{serial}\"
key = \"{key}\"
cipher = \"{cipher}\"
key_size = {key_size}
sector_size = {sector_size}
filesystem = \"{fs}\"
mountpoint = \"{mountpoint}\"
verify = \"{verify}\"

[volumes.verity]
root_hash = \"{root}\"
salt = \"{salt}\"
data_blocks = {blocks}
data_block_size = 4096
hash_block_size = 4096
hash_offset = {offset}
",
        img = opts.out.display(),
        key = opts.key_resource,
        cipher = ztinit::volume::config::DEFAULT_CIPHER,
        key_size = b.key_size,
        sector_size = opts.sector_size,
        verify = match opts.verify {
            VerifyMode::Full => "full",
            VerifyMode::Lazy => "lazy",
        },
        fs = opts.fs.as_str(),
        mountpoint = opts.mountpoint,
        root = b.root_hash,
        salt = b.salt,
        blocks = b.data_blocks,
        offset = b.hash_offset,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sha256_hex(b: &[u8]) -> String {
        hex::encode(Sha256::digest(b))
    }

    /// Vectors from OpenSSL (Python `cryptography`, `modes.XTS(n.to_bytes(16, "little"))`).
    #[test]
    fn xts_matches_openssl_with_plain64_tweaks() {
        let key: Vec<u8> = (0x40..0x80).collect();
        let data: Vec<u8> = (0..1024).map(|i| u8::try_from((i * 13) % 256).unwrap()).collect();
        let xts = Xts::new(&key).unwrap();
        let mut two = data.clone();
        xts.encrypt(&mut two, 0, 512);
        assert_eq!(hex::encode(&two[..32]), "ba4f27e9226435e227fb4727bbc0f71a827068c8b0106357d3ebd860c0d3af48");
        assert_eq!(sha256_hex(&two), "5bcd63e12edb40cb9cc539e91cfa9e2b5f643a7b44858b0f12ba81c322b090d2");
        let mut one = data[..512].to_vec();
        xts.encrypt(&mut one, 0x01_0203_0405 * 512, 512);
        assert_eq!(sha256_hex(&one), "b90fb46a3a3d48150fbad6816b4700677786585b1508e7ca71ce80f66bff9dbd");
        let mut small = data[..512].to_vec();
        Xts::new(&key[..32]).unwrap().encrypt(&mut small, 7 * 512, 512);
        assert_eq!(sha256_hex(&small), "661c0f48e07a7bc87a52443ff8887ec7852638f799cb509cb6269cce7a818be0");
    }

    /// 4096-byte units (`sector_size:4096`), tweaks in 512-byte sectors:
    /// vectors from OpenSSL (Python `cryptography`, one XTS call per unit
    /// with tweak `(unit * 8).to_bytes(16, "little")`).
    #[test]
    fn xts_matches_openssl_with_4096_byte_units() {
        let key: Vec<u8> = (0x40..0x80).collect();
        let data: Vec<u8> = (0..8192).map(|i| u8::try_from((i * 13) % 256).unwrap()).collect();
        let xts = Xts::new(&key).unwrap();
        let mut two = data.clone();
        xts.encrypt(&mut two, 0, 4096);
        // The first 512 bytes of unit 0 equal a 512-byte sector 0's.
        assert_eq!(hex::encode(&two[..32]), "ba4f27e9226435e227fb4727bbc0f71a827068c8b0106357d3ebd860c0d3af48");
        assert_eq!(sha256_hex(&two), "d4162c435afeeac6b173ba900523134c7c6dbec8fc1fd15913c28c9e63be214e");
        let mut one = data[..4096].to_vec();
        xts.encrypt(&mut one, 0x10203 * 4096, 4096);
        assert_eq!(sha256_hex(&one), "265aa97e18a51f0e5f73baf558ac725b5d994d011b1cbe6550416ecd13979583");
    }

    fn have(tool: &str) -> bool {
        Command::new(tool).arg("--help").output().is_ok()
    }

    fn scratch(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("ztinit-model-volume-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).unwrap();
        d
    }

    fn options(dir: &Path, fs_type: Fs, out: &str) -> Options {
        let input = dir.join("in");
        fs::create_dir_all(input.join("sub")).unwrap();
        fs::write(input.join("model.bin"), (0..200_000u32).map(|i| (i % 251) as u8).collect::<Vec<_>>()).unwrap();
        fs::write(input.join("sub/config.json"), b"{\"layers\": 2}\n").unwrap();
        let key = dir.join("model.key");
        fs::write(&key, [0x5au8; 64]).unwrap();
        Options {
            input,
            key_file: key,
            out: dir.join(out),
            fs: fs_type,
            name: "model".into(),
            serial: "ztmodel".into(),
            key_resource: "default/model/key".into(),
            mountpoint: "/models".into(),
            salt: None,
            sector_size: 4096,
            verify: VerifyMode::Full,
            snippet_out: None,
        }
    }

    /// Builds twice, checks the bytes are equal, the layout and root hash
    /// hold, the ciphertext decrypts to the filesystem, and (when
    /// cryptsetup-bin is installed) veritysetup agrees.
    fn build_and_check(fs_type: Fs) {
        let tool = if fs_type == Fs::Erofs { "mkfs.erofs" } else { "mkfs.ext4" };
        if !have(tool) {
            eprintln!("skipping: {tool} is not installed");
            return;
        }
        let dir = scratch(fs_type.as_str());
        let a = options(&dir, fs_type, "a.img");
        let built = build(&a).unwrap();
        // Touch the input's times: the staging must hide them.
        fs::write(a.input.join("model.bin"), fs::read(a.input.join("model.bin")).unwrap()).unwrap();
        let b = Options { out: dir.join("b.img"), ..a.clone() };
        let again = build(&b).unwrap();
        assert_eq!(built, again, "same input, same volume");
        let img = fs::read(&a.out).unwrap();
        assert_eq!(img, fs::read(&b.out).unwrap(), "byte-identical images");
        assert!(!dir.join("a.img.work").exists(), "the scratch directory is removed");

        assert_eq!(img.len() as u64, built.image_bytes);
        assert_eq!(built.hash_offset, built.data_blocks * 4096);
        let g = Geometry::new(built.data_blocks, 4096).unwrap();
        assert_eq!(built.image_bytes, built.hash_offset + g.hash_bytes());
        let salt = hex::decode(&built.salt).unwrap();
        let hash_offset = usize::try_from(built.hash_offset).unwrap();
        let data = &img[..hash_offset];
        let tree = verity::build_tree(&mut &data[..], 4096, &g, &salt).unwrap();
        assert_eq!(hex::encode(tree.root), built.root_hash);
        assert_eq!(&img[hash_offset..], &tree.bytes[..]);

        // Decrypting unit by unit gives the filesystem back.
        let key = [0x5au8; 64];
        let (k1, k2) = key.split_at(32);
        let x = Xts128::new(Aes256::new_from_slice(k1).unwrap(), Aes256::new_from_slice(k2).unwrap());
        let mut plain = data.to_vec();
        x.decrypt_area(&mut plain, 4096, 0, |unit| get_tweak_default(unit * 8));
        match fs_type {
            // EROFS_SUPER_MAGIC_V1 at byte 1024.
            Fs::Erofs => assert_eq!(&plain[1024..1028], &0xE0F5_E1E2u32.to_le_bytes()),
            // ext4 magic 0xEF53 at 1024 + 0x38.
            Fs::Ext4 => assert_eq!(&plain[1080..1082], &0xEF53u16.to_le_bytes()),
        }
        assert_ne!(&data[1024..1028], &plain[1024..1028], "the disk holds ciphertext");

        // The printed snippet is a valid [[volumes]] entry describing this image.
        let text = format!(
            "[workload]\npath = \"/bin/app\"\n[tee]\naccept = [\"sample\"]\nallow_sample = true\n\n[kbs]\nurl = \"http://10.0.2.100:8080\"\ninsecure_http = true\n\n{}",
            snippet(&a, &built)
        );
        let sources =
            ztinit::config::Sources { origin: "snippet", text: &text, cmdline: None, files: &ztinit::config::NoFiles };
        let config = ztinit::config::Config::load(sources).unwrap_or_else(|e| panic!("{:?}\n{text}", e.issues()));
        let v = &config.volumes[0];
        assert_eq!(v.verity.root_hash, built.root_hash);
        assert_eq!(v.verity.required_bytes(), Some(built.image_bytes));
        assert_eq!(v.filesystem.as_str(), fs_type.as_str());
        assert_eq!((v.sector_size, v.verify), (4096, VerifyMode::Full));

        if have("veritysetup") {
            let out = Command::new("veritysetup")
                .args(["verify", "--no-superblock", "--hash-offset"])
                .arg(built.hash_offset.to_string())
                .arg(format!("--data-blocks={}", built.data_blocks))
                .arg(format!("--salt={}", built.salt))
                .arg(&a.out)
                .arg(&a.out)
                .arg(&built.root_hash)
                .output()
                .unwrap();
            assert!(out.status.success(), "veritysetup verify: {}", String::from_utf8_lossy(&out.stderr));
        } else {
            eprintln!("veritysetup cross-check skipped: install cryptsetup-bin");
        }
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn erofs_volume_is_reproducible_and_verifiable() {
        build_and_check(Fs::Erofs);
    }

    #[test]
    fn ext4_volume_is_reproducible_and_verifiable() {
        build_and_check(Fs::Ext4);
    }

    #[test]
    fn a_bad_key_file_is_refused() {
        let dir = scratch("badkey");
        let mut o = options(&dir, Fs::Erofs, "x.img");
        fs::write(&o.key_file, [1u8; 48]).unwrap();
        let e = build(&o).unwrap_err().to_string();
        assert!(e.contains("found 48 bytes"), "{e}");
        o.key_file = dir.join("missing.key");
        assert!(build(&o).unwrap_err().to_string().starts_with("reading key"));
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn arguments_are_parsed() {
        let args: Vec<String> =
            ["--input", "m", "--key", "k", "--out", "o.img", "--fs", "ext4", "--salt", "0a0b", "--serial", "s1"]
                .iter()
                .map(|s| s.to_string())
                .collect();
        let o = parse(&args).unwrap().unwrap();
        assert_eq!(o.fs, Fs::Ext4);
        assert_eq!(o.salt, Some(vec![10, 11]));
        assert_eq!(o.serial, "s1");
        assert_eq!(o.name, "model");
        assert_eq!((o.sector_size, o.verify), (4096, VerifyMode::Full));
        let more: Vec<String> =
            args.iter().cloned().chain(["--sector-size", "512", "--verify", "lazy"].map(String::from)).collect();
        let o = parse(&more).unwrap().unwrap();
        assert_eq!((o.sector_size, o.verify), (512, VerifyMode::Lazy));
        let bad: Vec<String> = args.iter().cloned().chain(["--sector-size", "1024"].map(String::from)).collect();
        assert!(parse(&bad).unwrap_err().to_string().contains("4096 or 512"));
        let e = parse(&args[..4]).unwrap_err().to_string();
        assert!(e.starts_with("--out is required"), "{e}");
        assert!(parse(&["--fs".into(), "xfs".into()]).is_err());
    }
}
