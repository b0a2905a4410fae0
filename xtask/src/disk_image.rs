//! `cargo xtask image --format disk`: the manifest's image as a read-only
//! root disk protected by dm-verity, laid out the way Kata's
//! `image_builder.sh` lays out a measured root (`MEASURED_ROOTFS=yes`), so
//! Kata's runtime can boot it from `kernel_verity_params`:
//!
//! ```text
//! sector 0           MBR (msdos label), two primary partitions
//! 1 MiB              partition 1 (/dev/vda1): erofs, uncompressed, 4 KiB blocks
//! next 1 MiB mark    partition 2 (/dev/vda2): the dm-verity hash tree
//!                    (version 1, SHA-256, 4 KiB blocks, no superblock, hash start 0)
//! ```
//!
//! The kernel sets the verity device up from the command line (dm-init,
//! `dm-mod.create=`), mounts it as `/` read-only and runs ztinit from it.
//! Everything that could vary is fixed (erofs UUID and times, owners, no
//! host xattrs, the MBR signature, the salt), so the same inputs give the
//! same bytes. The verity tree is the model volumes' code
//! ([`model_volume::hash_tree`]), which the guest uses too.

use std::fs::{self, File};
use std::io::{BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail, ensure};
use sha2::{Digest, Sha256};

use crate::image::{self, Data, Node, Tree};
use crate::manifest::DeviceType;
use crate::model_volume;
use crate::util;

pub const USAGE: &str = "usage: cargo xtask image --format disk --manifest rootfs/NAME.toml --out IMG \
[--kata-kernel PATH] [--kata-image PATH]
  Builds a read-only erofs root disk with a dm-verity tree (Kata's measured-rootfs layout:
  /dev/vda1 data, /dev/vda2 hash tree), prints the kernel parameters that boot it and writes
  IMG.cmdline (those parameters) and IMG.kata.toml (a Kata config.d drop-in for QEMU SNP/TDX).
  --kata-kernel / --kata-image: the paths the drop-in names (where you install the guest
  kernel and IMG on the Kata host; default: Kata's confidential kernel and IMG's absolute path).";

/// Data and hash block size (erofs' block size; Kata's default).
pub const BLOCK: u64 = 4096;
const SECTOR: u64 = 512;
/// Partitions start on 1 MiB marks, as parted's `-a optimal` puts them.
const ALIGN: u64 = 1 << 20;
/// The device-mapper name Kata's runtime gives the root (`dm-mod.create`).
pub const DM_NAME: &str = "dm-verity";
/// The devices of the root on virtio-blk (Kata: `disable_image_nvdimm = true`).
pub const DATA_DEVICE: &str = "/dev/vda1";
pub const HASH_DEVICE: &str = "/dev/vda2";
/// Where Kata installs its confidential guest kernel.
const KATA_KERNEL: &str = "/opt/kata/share/kata-containers/vmlinuz-confidential.container";

/// A built root disk and what the kernel command line needs to boot it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Disk {
    pub path: PathBuf,
    pub root_hash: String,
    pub salt: String,
    pub data_blocks: u64,
    /// Byte offsets of partition 1 (the filesystem) and 2 (the hash tree).
    pub data_offset: u64,
    pub hash_offset: u64,
    pub size: u64,
    /// ztinit's path inside the image (`init=`).
    pub init: String,
}

impl Disk {
    /// The verity table for dm-init: data on partition 1, the tree from
    /// block 0 of partition 2.
    pub fn dm_table(&self) -> String {
        format!(
            "0 {sectors} verity 1 {DATA_DEVICE} {HASH_DEVICE} {BLOCK} {BLOCK} {blocks} 0 sha256 {root} {salt}",
            sectors = self.data_blocks * (BLOCK / SECTOR),
            blocks = self.data_blocks,
            root = self.root_hash,
            salt = self.salt,
        )
    }

    /// The kernel parameters that boot this disk, as one word each (the
    /// first holds spaces inside its quotes, as the kernel parses it).
    pub fn kernel_params(&self) -> Vec<String> {
        vec![
            format!("dm-mod.create=\"{DM_NAME},,,ro,{}\"", self.dm_table()),
            "root=/dev/dm-0".into(),
            "rootfstype=erofs".into(),
            "rootflags=ro".into(),
            "ro".into(),
            format!("init={}", self.init),
        ]
    }

    /// Kata's `kernel_verity_params`, from which its runtime writes the same
    /// `dm-mod.create=`, `root=`, `rootflags=` and `rootfstype=` (Kata's
    /// `GetKernelRootParams`).
    pub fn kata_verity_params(&self) -> String {
        format!(
            "root_hash={},salt={},data_blocks={},data_block_size={BLOCK},hash_block_size={BLOCK}",
            self.root_hash, self.salt, self.data_blocks
        )
    }
}

/// `image --format disk ...` (the `--format` pair already removed).
pub fn cmd(args: &[String]) -> Result<()> {
    let mut manifest = None;
    let mut out = None;
    let mut kata_kernel = KATA_KERNEL.to_string();
    let mut kata_image = None;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = || it.next().with_context(|| format!("{a} needs a value\n{USAGE}"));
        match a.as_str() {
            "--manifest" => manifest = Some(PathBuf::from(value()?)),
            "--out" => out = Some(PathBuf::from(value()?)),
            "--kata-kernel" => kata_kernel = value()?.clone(),
            "--kata-image" => kata_image = Some(value()?.clone()),
            "-h" | "--help" => {
                println!("{USAGE}");
                return Ok(());
            }
            other => bail!("image --format disk: unknown argument {other:?}\n{USAGE}"),
        }
    }
    let manifest = manifest.with_context(|| format!("image --format disk: --manifest is required\n{USAGE}"))?;
    let out = out.with_context(|| format!("image --format disk: --out is required\n{USAGE}"))?;
    let disk = build(&manifest, &[], &out)?;
    let image_path = match kata_image {
        Some(p) => p,
        None => std::path::absolute(&out)?.display().to_string(),
    };
    let dropin = sidecar(&out, "kata.toml");
    fs::write(&dropin, kata_dropin(&disk, &manifest, &kata_kernel, &image_path))
        .with_context(|| format!("writing {}", dropin.display()))?;
    println!(
        "image: root disk {} ({}): erofs {} blocks at byte {}, verity tree at byte {}",
        disk.path.display(),
        util::human_size(disk.size),
        disk.data_blocks,
        disk.data_offset,
        disk.hash_offset
    );
    println!("root hash: {}", disk.root_hash);
    println!("kernel parameters (also in {}):", sidecar(&out, "cmdline").display());
    println!("{}", disk.kernel_params().join(" "));
    println!("Kata kernel_verity_params: {}", disk.kata_verity_params());
    println!("Kata drop-in: {}", dropin.display());
    Ok(())
}

/// `IMG.EXT` next to the image.
pub fn sidecar(out: &Path, ext: &str) -> PathBuf {
    let mut name = out.as_os_str().to_os_string();
    name.push(".");
    name.push(ext);
    PathBuf::from(name)
}

/// Builds the manifest's root disk at `out` (and `out.cmdline`).
pub fn build(manifest: &Path, config_append: &[PathBuf], out: &Path) -> Result<Disk> {
    let (loaded, tree) = image::load_and_resolve(manifest, config_append)?;
    let init = image::ztinit_path(&loaded)
        .with_context(|| format!("{}: a root disk needs ztinit ([ztinit] install = true)", manifest.display()))?;
    let disk = write(&tree, &init, out).with_context(|| format!("{}: root disk", manifest.display()))?;
    fs::write(sidecar(out, "cmdline"), format!("{}\n", disk.kernel_params().join(" ")))?;
    Ok(disk)
}

/// Writes `tree` as a root disk whose init is `init`.
pub fn write(tree: &Tree, init: &str, out: &Path) -> Result<Disk> {
    check_tree(tree, init)?;
    let work = sidecar(out, "work");
    if work.exists() {
        fs::remove_dir_all(&work).with_context(|| format!("removing stale {}", work.display()))?;
    }
    fs::create_dir_all(&work).with_context(|| format!("creating {}", work.display()))?;
    let result = write_in(tree, init, out, &work);
    let _ = fs::remove_dir_all(&work);
    result
}

/// What a read-only root needs that an initramfs does not: ztinit cannot
/// create a mount point on it, and erofs is written with `--all-root`.
fn check_tree(tree: &Tree, init: &str) -> Result<()> {
    // The early mounts whose mount point is on the root itself (the others
    // are inside /dev or /sys, which are mounted by then).
    for spec in ztinit::mount::ALL.iter().filter(|m| m.target.matches('/').count() == 1) {
        if !matches!(tree.get(spec.target), Some(e) if e.node == Node::Dir) {
            bail!(
                "{} must be a directory of the image: ztinit mounts {} there and cannot create it on a \
                 read-only root (add [[dir]] path = \"{}\")",
                spec.target,
                spec.fstype,
                spec.target
            );
        }
    }
    ensure!(
        matches!(tree.get(init), Some(e) if matches!(e.node, Node::File(_))),
        "{init} (init=) is not a file of the image"
    );
    for (key, e) in tree.ordered() {
        if e.uid != 0 || e.gid != 0 {
            bail!(
                "/{key} ({}) is owned by {}:{}: a root disk holds root-owned entries only (erofs --all-root)",
                e.origin,
                e.uid,
                e.gid
            );
        }
        if matches!(e.node, Node::Device { .. }) && !key.starts_with("dev/") {
            bail!("/{key} ({}): device nodes outside /dev cannot go on a root disk", e.origin);
        }
    }
    Ok(())
}

fn write_in(tree: &Tree, init: &str, out: &Path, work: &Path) -> Result<Disk> {
    let stage = work.join("root");
    stage_tree(tree, &stage)?;
    let fs_img = work.join("root.erofs");
    // The UUID is fixed by what is in the image, not by where it is built.
    let uuid = model_volume::fixed_uuid("root-disk", &tree.listing()?);
    let mut mkfs = model_volume::erofs_command(&stage, &fs_img, &uuid);
    let status = mkfs.status().context("running mkfs.erofs (install erofs-utils)")?;
    ensure!(status.success(), "mkfs.erofs failed: {status}");

    let fs_bytes = fs::metadata(&fs_img)?.len();
    ensure!(fs_bytes > 0, "mkfs.erofs produced an empty image");
    let data_blocks = fs_bytes.div_ceil(BLOCK);
    let data_bytes = data_blocks * BLOCK;
    File::options().write(true).open(&fs_img)?.set_len(data_bytes)?;
    // Public and fixed: derived from the filesystem, so rebuilding gives the
    // same salt (as the model volumes' is).
    let salt = Sha256::new_with_prefix(b"ztinit root-disk verity salt\0")
        .chain_update(sha256_file(&fs_img)?)
        .finalize()
        .to_vec();
    let tree_bytes = model_volume::hash_tree(&fs_img, data_blocks, &salt).context("hashing the filesystem")?;

    let data_offset = ALIGN;
    let hash_offset = (data_offset + data_bytes).next_multiple_of(ALIGN);
    // A one-block filesystem has an empty tree; partition 2 still gets a block.
    let hash_bytes = (tree_bytes.bytes.len() as u64).max(BLOCK);
    let size = hash_offset + hash_bytes;
    let root_hash = hex::encode(tree_bytes.root);
    let signature: [u8; 4] =
        Sha256::digest(format!("ztinit root-disk signature\0{root_hash}"))[..4].try_into().context("signature")?;
    let mbr = mbr(
        u32::from_le_bytes(signature),
        &[(data_offset / SECTOR, data_bytes / SECTOR), (hash_offset / SECTOR, hash_bytes / SECTOR)],
    )?;

    let dir = out.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let tmp = sidecar(out, "tmp");
    {
        let mut f = BufWriter::new(File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?);
        f.write_all(&mbr)?;
        f.seek(SeekFrom::Start(data_offset))?;
        std::io::copy(&mut BufReader::new(File::open(&fs_img)?), &mut f)?;
        f.seek(SeekFrom::Start(hash_offset))?;
        f.write_all(&tree_bytes.bytes)?;
        let f = f.into_inner().map_err(|e| e.into_error())?;
        f.set_len(size)?;
        f.sync_all()?;
    }
    fs::rename(&tmp, out).with_context(|| format!("renaming {} to {}", tmp.display(), out.display()))?;
    Ok(Disk {
        path: out.to_path_buf(),
        root_hash,
        salt: hex::encode(salt),
        data_blocks,
        data_offset,
        hash_offset,
        size,
        init: init.to_string(),
    })
}

/// Writes the entries under `stage` (as the build user; erofs records them
/// as root's). Device nodes under /dev are left out: ztinit mounts devtmpfs
/// on /dev, and the kernel opens the console for PID 1 on its built-in
/// initramfs before it mounts the root.
fn stage_tree(tree: &Tree, stage: &Path) -> Result<()> {
    fs::create_dir_all(stage)?;
    let mut dirs = Vec::new();
    for (key, e) in tree.ordered() {
        let path = stage.join(key);
        match &e.node {
            Node::Dir => {
                fs::create_dir_all(&path)?;
                dirs.push((path, e.perm));
            }
            Node::File(data) => {
                match data {
                    Data::Host(p) => {
                        fs::copy(p, &path).with_context(|| format!("copying {} to /{key}", p.display()))?;
                    }
                    Data::Bytes(b) => fs::write(&path, b)?,
                }
                fs::set_permissions(&path, fs::Permissions::from_mode(e.perm))?;
            }
            Node::Symlink(target) => std::os::unix::fs::symlink(target, &path)?,
            Node::Device { kind, .. } => {
                let t = if *kind == DeviceType::Char { "character" } else { "block" };
                println!("image: /{key}: {t} device left out of the root disk (devtmpfs provides /dev)");
            }
        }
    }
    // Directory modes last (a read-only one would refuse its own entries).
    for (path, perm) in dirs.iter().rev() {
        fs::set_permissions(path, fs::Permissions::from_mode(*perm))?;
    }
    fs::set_permissions(stage, fs::Permissions::from_mode(0o755))?;
    Ok(())
}

fn sha256_file(path: &Path) -> Result<[u8; 32]> {
    let mut f = BufReader::new(File::open(path)?);
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        match f.read(&mut buf)? {
            0 => break,
            n => h.update(&buf[..n]),
        }
    }
    Ok(h.finalize().into())
}

/// A master boot record with the given primary partitions (start sector,
/// sectors), type 0x83, the first one active as parted's `set 1 boot on`
/// makes it. CHS fields hold the "use LBA" marker; Linux reads only LBAs.
pub fn mbr(signature: u32, parts: &[(u64, u64)]) -> Result<[u8; 512]> {
    ensure!(parts.len() <= 4, "an MBR holds four primary partitions");
    let mut m = [0u8; 512];
    m[440..444].copy_from_slice(&signature.to_le_bytes());
    for (i, &(start, sectors)) in parts.iter().enumerate() {
        let e = &mut m[446 + 16 * i..446 + 16 * (i + 1)];
        e[0] = if i == 0 { 0x80 } else { 0 };
        e[1..4].copy_from_slice(&[0xfe, 0xff, 0xff]);
        e[4] = 0x83;
        e[5..8].copy_from_slice(&[0xfe, 0xff, 0xff]);
        e[8..12].copy_from_slice(&u32::try_from(start).context("partition start beyond 2 TiB")?.to_le_bytes());
        e[12..16].copy_from_slice(&u32::try_from(sectors).context("partition beyond 2 TiB")?.to_le_bytes());
    }
    m[510] = 0x55;
    m[511] = 0xaa;
    Ok(m)
}

/// A Kata `config.d` drop-in for the QEMU SNP or TDX runtime that boots this
/// disk with ztinit as PID 1.
pub fn kata_dropin(disk: &Disk, manifest: &Path, kernel: &str, image: &str) -> String {
    format!(
        r#"# ztinit root disk for Kata Containers (QEMU SNP or TDX), written by
#   cargo xtask image --format disk --manifest {manifest}
# Install as config.d/50-ztinit.toml next to configuration-qemu-snp.toml or
# configuration-qemu-tdx.toml (see docs/kata-image.md). A drop-in cannot
# remove keys: the base file must not set `initrd` (it would compete with
# `image`), and this `kernel_params` replaces the base file's.
[hypervisor.qemu]
# A guest kernel with CONFIG_DM_INIT, CONFIG_DM_VERITY, CONFIG_EROFS_FS and
# CONFIG_VIRTIO_BLK built in.
kernel = "{kernel}"
# The root disk: erofs on /dev/vda1, its dm-verity tree on /dev/vda2.
image = "{image}"
rootfs_type = "erofs"
# virtio-blk, so the partitions are /dev/vda1 and /dev/vda2 as the table says.
disable_image_nvdimm = true
# Kata's runtime turns this into
#   dm-mod.create="{dm_name},,,ro,{table}"
#   root=/dev/dm-0 rootflags=ro rootfstype=erofs
# on the measured kernel command line: the root hash is part of the launch
# measurement, so a changed disk either fails verity or attests differently.
kernel_verity_params = "{verity}"
# ztinit is PID 1 (Kata would otherwise start /sbin/init).
kernel_params = "init={init}"
# Initdata (the `cc_init_data` annotation) reaches ztinit, bound to the
# launch through HOSTDATA (SNP) / MRCONFIGID (TDX). The kernel command line
# and the verity parameters are not annotations a pod may set.
enable_annotations = ["cc_init_data", "default_vcpus", "default_memory"]
"#,
        manifest = manifest.display(),
        dm_name = DM_NAME,
        table = disk.dm_table(),
        verity = disk.kata_verity_params(),
        init = disk.init,
    )
}

/// Splits `--format disk` off `image`'s arguments: `Some(rest)` when the
/// disk format is asked for, `None` for the initramfs (the default).
pub fn format_disk(args: &[String]) -> Result<Option<Vec<String>>> {
    let mut rest = Vec::new();
    let mut disk = false;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let value = match a.as_str() {
            "--format" => it.next().context("--format needs a value: initramfs or disk")?.as_str(),
            other => match other.strip_prefix("--format=") {
                Some(v) => v,
                None => {
                    rest.push(a.clone());
                    continue;
                }
            },
        };
        disk = match value {
            "disk" => true,
            "initramfs" => false,
            other => bail!("--format {other:?}: initramfs or disk"),
        };
    }
    Ok(disk.then_some(rest))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest;
    use ztinit::volume::verity::{self, Geometry};

    fn have(tool: &str) -> bool {
        std::process::Command::new(tool).arg("--help").output().is_ok()
    }

    const BASE: &str = "[[dir]]\npath = \"/dev\"\n[[dir]]\npath = \"/proc\"\n[[dir]]\npath = \"/sys\"\n\
[[dir]]\npath = \"/run\"\n[[dir]]\npath = \"/tmp\"\nmode = 0o1777\n\
[[device]]\npath = \"/dev/console\"\ntype = \"char\"\nmajor = 5\nminor = 1\n\
[[file]]\npath = \"/init\"\ntext = \"not really ztinit\"\nmode = 0o755\n\
[[file]]\npath = \"/etc/motd\"\ntext = \"hello\\n\"\n[[symlink]]\npath = \"/sbin/init\"\ntarget = \"/init\"\n";

    fn tree(dir: &Path, extra: &str) -> Result<Tree> {
        let m = dir.join("m.toml");
        fs::write(&m, format!("{BASE}{extra}")).unwrap();
        image::resolve(&manifest::load(&m)?)
    }

    #[test]
    fn disk_is_reproducible_partitioned_and_verifiable() {
        if !have("mkfs.erofs") {
            eprintln!("skipping: mkfs.erofs is not installed (erofs-utils)");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        // A file of several blocks, so the tree has a level.
        let big: String = (0..40_000).map(|i| char::from(b'a' + u8::try_from(i % 26).unwrap())).collect();
        let t = tree(dir.path(), &format!("[[file]]\npath = \"/usr/bin/app\"\ntext = \"{big}\"\n")).unwrap();
        let a = write(&t, "/init", &dir.path().join("a/root.img")).unwrap();
        let b = write(&t, "/init", &dir.path().join("b.img")).unwrap();
        assert_eq!(Disk { path: a.path.clone(), ..b.clone() }, a);
        let img = fs::read(&a.path).unwrap();
        assert_eq!(img, fs::read(&b.path).unwrap(), "byte-identical disks");
        assert!(!sidecar(&a.path, "work").exists(), "the scratch directory is removed");
        assert_eq!(img.len() as u64, a.size);

        // The MBR: two type-0x83 partitions on 1 MiB marks, as the table says.
        assert_eq!(&img[510..512], &[0x55, 0xaa]);
        let part = |i: usize| {
            let e = &img[446 + 16 * i..462 + 16 * i];
            (e[4], u32::from_le_bytes(e[8..12].try_into().unwrap()), u32::from_le_bytes(e[12..16].try_into().unwrap()))
        };
        assert_eq!(part(0), (0x83, 2048, u32::try_from(a.data_blocks * 8).unwrap()));
        assert_eq!(part(1).0, 0x83);
        assert_eq!(u64::from(part(1).1) * 512, a.hash_offset);
        assert_eq!(a.hash_offset % (1 << 20), 0);
        assert_eq!(part(2), (0, 0, 0));

        // erofs in partition 1, and the tree over it in partition 2.
        let offset = |o: u64| usize::try_from(o).unwrap();
        let data = &img[offset(a.data_offset)..offset(a.data_offset + a.data_blocks * BLOCK)];
        assert_eq!(&data[1024..1028], &0xE0F5_E1E2u32.to_le_bytes(), "erofs superblock magic");
        let g = Geometry::new(a.data_blocks, u32::try_from(BLOCK).unwrap()).unwrap();
        let salt = hex::decode(&a.salt).unwrap();
        let vt = verity::build_tree(&mut &data[..], u32::try_from(BLOCK).unwrap(), &g, &salt).unwrap();
        assert_eq!(hex::encode(vt.root), a.root_hash);
        assert!(!vt.bytes.is_empty());
        assert_eq!(&img[offset(a.hash_offset)..offset(a.hash_offset) + vt.bytes.len()], &vt.bytes[..]);

        let params = a.kernel_params().join(" ");
        let table = format!(
            "dm-mod.create=\"dm-verity,,,ro,0 {} verity 1 /dev/vda1 /dev/vda2 4096 4096 {} 0 sha256 {} {}\"",
            a.data_blocks * 8,
            a.data_blocks,
            a.root_hash,
            a.salt
        );
        assert!(params.starts_with(&table), "{params}");
        assert!(params.ends_with(" root=/dev/dm-0 rootfstype=erofs rootflags=ro ro init=/init"), "{params}");

        // One changed byte in a file changes the root hash.
        let t2 = tree(dir.path(), &format!("[[file]]\npath = \"/usr/bin/app\"\ntext = \"{big}!\"\n")).unwrap();
        let c = write(&t2, "/init", &dir.path().join("c.img")).unwrap();
        assert_ne!(c.root_hash, a.root_hash);

        // What the filesystem holds, when erofs-utils can extract it.
        if have("fsck.erofs") {
            let fs_img = dir.path().join("p1.erofs");
            fs::write(&fs_img, data).unwrap();
            let x = dir.path().join("x");
            let out = std::process::Command::new("fsck.erofs")
                .arg(format!("--extract={}", x.display()))
                .arg(&fs_img)
                .output()
                .unwrap();
            if out.status.success() {
                assert_eq!(fs::read_to_string(x.join("etc/motd")).unwrap(), "hello\n");
                assert_eq!(fs::read_link(x.join("sbin/init")).unwrap(), Path::new("/init"));
                assert!(x.join("proc").is_dir() && !x.join("dev/console").exists());
                let mode = fs::metadata(x.join("tmp")).unwrap().permissions().mode();
                assert_eq!(mode & 0o7777, 0o1777);
            } else {
                eprintln!("fsck.erofs --extract unsupported: {}", String::from_utf8_lossy(&out.stderr));
            }
        }
    }

    #[test]
    fn what_a_read_only_root_cannot_hold_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let t = tree(dir.path(), "[[dir]]\npath = \"/data\"\nuid = 1000\n").unwrap();
        let e = check_tree(&t, "/init").unwrap_err().to_string();
        assert!(e.contains("/data") && e.contains("1000:0"), "{e}");
        let t = tree(dir.path(), "[[device]]\npath = \"/etc/null\"\ntype = \"char\"\nmajor = 1\nminor = 3\n").unwrap();
        assert!(check_tree(&t, "/init").unwrap_err().to_string().contains("outside /dev"));
        assert!(check_tree(&tree(dir.path(), "").unwrap(), "/sbin/ztinit").unwrap_err().to_string().contains("init="));
        check_tree(&tree(dir.path(), "").unwrap(), "/init").unwrap();

        let m = dir.path().join("m.toml");
        fs::write(&m, BASE.replace("[[dir]]\npath = \"/run\"\n", "")).unwrap();
        let t = image::resolve(&manifest::load(&m).unwrap()).unwrap();
        let e = check_tree(&t, "/init").unwrap_err().to_string();
        assert!(e.contains("/run must be a directory of the image"), "{e}");
    }

    #[test]
    fn mbr_fields_and_limits() {
        let m = mbr(0x1234_5678, &[(2048, 16), (4096, 8)]).unwrap();
        assert_eq!(&m[440..444], &[0x78, 0x56, 0x34, 0x12]);
        assert_eq!(m[446], 0x80);
        assert_eq!(m[462], 0);
        assert!(mbr(0, &[(1 << 32, 1)]).is_err());
        assert!(mbr(0, &[(1, 1); 5]).is_err());
    }

    #[test]
    fn the_format_option_is_split_off() {
        let s = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(format_disk(&s(&["--manifest", "m", "--out", "o"])).unwrap(), None);
        assert_eq!(format_disk(&s(&["--format", "disk", "--manifest", "m"])).unwrap(), Some(s(&["--manifest", "m"])));
        assert_eq!(format_disk(&s(&["--format=initramfs", "--list"])).unwrap(), None);
        assert!(format_disk(&s(&["--format", "ext4"])).is_err());
        assert!(format_disk(&s(&["--format"])).is_err());
    }

    #[test]
    fn the_kata_dropin_is_toml_with_the_disk_parameters() {
        let d = Disk {
            path: "/x/root.img".into(),
            root_hash: "ab".repeat(32),
            salt: "cd".repeat(32),
            data_blocks: 10,
            data_offset: 1 << 20,
            hash_offset: 2 << 20,
            size: (2 << 20) + 4096,
            init: "/sbin/init".into(),
        };
        let text = kata_dropin(&d, Path::new("rootfs/x.toml"), "/k", "/opt/root.img");
        let v: toml::Table = toml::from_str(&text).unwrap();
        let q = v["hypervisor"]["qemu"].as_table().unwrap();
        assert_eq!(q["image"].as_str(), Some("/opt/root.img"));
        assert_eq!(q["kernel"].as_str(), Some("/k"));
        assert_eq!(q["rootfs_type"].as_str(), Some("erofs"));
        assert_eq!(q["kernel_params"].as_str(), Some("init=/sbin/init"));
        assert_eq!(
            q["kernel_verity_params"].as_str().unwrap(),
            format!(
                "root_hash={},salt={},data_blocks=10,data_block_size=4096,hash_block_size=4096",
                d.root_hash, d.salt
            )
        );
        let annotations: Vec<&str> =
            q["enable_annotations"].as_array().unwrap().iter().filter_map(|a| a.as_str()).collect();
        assert!(annotations.contains(&"cc_init_data"));
        assert!(!annotations.iter().any(|a| a.starts_with("kernel")));
    }
}
