//! End-to-end unpacking into temp dirs (run as any user: owners are only
//! checked when the tests run as root).

use std::os::fd::OwnedFd;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use rustix::fs::{Mode, OFlags};
use sha2::{Digest as _, Sha256};

use super::gzip::tests::gzip;
use super::tar::build::TarBuilder;
use super::*;

struct Scene {
    _tmp: tempfile::TempDir,
    root: PathBuf,
    outside: PathBuf,
    fd: OwnedFd,
}

impl Scene {
    fn new() -> Scene {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("root");
        let outside = tmp.path().join("outside");
        std::fs::create_dir(&root).unwrap();
        std::fs::create_dir(&outside).unwrap();
        let fd = rustix::fs::open(&root, OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty()).unwrap();
        Scene { _tmp: tmp, root, outside, fd }
    }

    fn unpack(&self, tar: &[u8]) -> Result<[u8; 32], UnpackError> {
        self.unpack_with(tar, Compression::None, &mut Budget::new(1 << 30, 1 << 20))
    }

    fn unpack_with(
        &self,
        bytes: &[u8],
        compression: Compression,
        budget: &mut Budget,
    ) -> Result<[u8; 32], UnpackError> {
        unpack_layer(bytes, compression, &self.fd, budget)
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.root.join(rel)
    }

    fn read(&self, rel: &str) -> Vec<u8> {
        std::fs::read(self.path(rel)).unwrap()
    }

    fn exists(&self, rel: &str) -> bool {
        self.path(rel).symlink_metadata().is_ok()
    }

    fn outside_is_empty(&self) -> bool {
        std::fs::read_dir(&self.outside).unwrap().next().is_none()
            && !self.root.parent().unwrap().join("x").exists()
            && !self.root.parent().unwrap().join("escaped").exists()
    }
}

fn mode(path: &Path) -> u32 {
    path.symlink_metadata().unwrap().permissions().mode() & 0o7777
}

fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

#[test]
fn every_entry_type_and_diff_id() {
    let s = Scene::new();
    let mut tar = TarBuilder::new();
    tar.dir(b"./", 0o755);
    tar.dir(b"etc/", 0o755);
    tar.file(b"etc/hostname", b"box\n", 0o644);
    tar.file(b"usr/bin/tool", b"#!/bin/sh\n", 0o4755);
    tar.symlink(b"bin", b"usr/bin");
    tar.symlink(b"abs", b"/etc/hostname");
    tar.hardlink(b"etc/hostname2", b"etc/hostname");
    tar.dir(b"ro", 0o555);
    tar.file(b"ro/inside", b"filled before the mode", 0o444);
    tar.uid = 1234;
    tar.gid = 4321;
    tar.file(b"owned", b"", 0o600);
    let bytes = tar.finish();
    let diff_id = s.unpack(&bytes).unwrap();
    assert_eq!(diff_id, <[u8; 32]>::from(Sha256::digest(&bytes)));
    assert_eq!(diff_id_string(&diff_id), format!("sha256:{}", hex::encode(Sha256::digest(&bytes))));

    assert_eq!(s.read("etc/hostname"), b"box\n");
    assert_eq!(mode(&s.path("etc/hostname")), 0o644);
    assert_eq!(mode(&s.path("usr/bin/tool")), 0o4755, "set-uid kept");
    assert_eq!(mode(&s.path("usr")), 0o755, "implicit parents are 0755");
    assert_eq!(std::fs::read_link(s.path("bin")).unwrap(), Path::new("usr/bin"));
    assert_eq!(std::fs::read_link(s.path("abs")).unwrap(), Path::new("/etc/hostname"), "stored verbatim");
    assert_eq!(s.path("etc/hostname2").metadata().unwrap().ino(), s.path("etc/hostname").metadata().unwrap().ino());
    assert_eq!(mode(&s.path("ro")), 0o555);
    assert_eq!(s.read("ro/inside"), b"filled before the mode");
    assert_eq!(s.path("etc/hostname").metadata().unwrap().mtime(), 1_700_000_000);
    if is_root() {
        let meta = s.path("owned").metadata().unwrap();
        assert_eq!((meta.uid(), meta.gid()), (1234, 4321));
    }
}

#[test]
fn compressed_layers_hash_the_tar() {
    let mut tar = TarBuilder::new();
    tar.file(b"a", &vec![42u8; 100_000], 0o644);
    tar.file(b"b", b"bee", 0o644);
    let bytes = tar.finish();
    let want = <[u8; 32]>::from(Sha256::digest(&bytes));

    let s = Scene::new();
    assert_eq!(s.unpack_with(&gzip(&bytes), Compression::Gzip, &mut Budget::new(1 << 30, 100)).unwrap(), want);
    assert_eq!(s.read("a").len(), 100_000);

    let s = Scene::new();
    let zst = ruzstd::encoding::compress_to_vec(bytes.as_slice(), ruzstd::encoding::CompressionLevel::Fastest);
    assert_eq!(s.unpack_with(&zst, Compression::Zstd, &mut Budget::new(1 << 30, 100)).unwrap(), want);
    assert_eq!(s.read("b"), b"bee");

    let s = Scene::new();
    let mut bad = gzip(&bytes);
    let at = bad.len() - 8;
    bad[at] ^= 0xff;
    let err = s.unpack_with(&bad, Compression::Gzip, &mut Budget::new(1 << 30, 100)).unwrap_err();
    assert!(err.to_string().contains("CRC-32 mismatch"), "{err}");
}

#[test]
fn trailing_padding_is_part_of_the_diff_id() {
    let mut tar = TarBuilder::new();
    tar.file(b"f", b"x", 0o644);
    let mut bytes = tar.finish();
    bytes.resize(10240, 0); // GNU tar's record padding
    let s = Scene::new();
    assert_eq!(s.unpack(&bytes).unwrap(), <[u8; 32]>::from(Sha256::digest(&bytes)));
}

#[test]
fn pax_and_gnu_long_names_are_unpacked() {
    let s = Scene::new();
    let long_pax = format!("{}pax-file", "d123456789/".repeat(15));
    let long_gnu = format!("{}gnu-file", "g123456789/".repeat(15));
    let mut tar = TarBuilder::new();
    tar.pax(&[("path", long_pax.as_bytes())]);
    tar.file(b"truncated-name", b"pax", 0o644);
    tar.gnu_long_name(long_gnu.as_bytes());
    tar.file(b"truncated-too", b"gnu", 0o644);
    tar.gnu_long_link(long_pax.as_bytes());
    tar.hardlink(b"link-to-long", b"ignored");
    s.unpack(&tar.finish()).unwrap();
    assert_eq!(s.read(&long_pax), b"pax");
    assert_eq!(s.read(&long_gnu), b"gnu");
    assert_eq!(s.read("link-to-long"), b"pax");
    assert!(!s.exists("truncated-name"));
}

#[test]
fn whiteouts_and_opaque_directories_across_layers() {
    let s = Scene::new();
    let mut lower = TarBuilder::new();
    lower.file(b"keep", b"k", 0o644);
    lower.file(b"gone", b"g", 0o644);
    lower.file(b"tree/a/deep", b"d", 0o644);
    lower.file(b"opq/old", b"o", 0o644);
    lower.file(b"opq/sub/old", b"o", 0o644);
    lower.symlink(b"link", b"/keep");
    s.unpack(&lower.finish()).unwrap();

    let mut upper = TarBuilder::new();
    upper.file(b".wh.gone", b"", 0o644);
    upper.file(b".wh.tree", b"", 0o644);
    upper.file(b".wh.link", b"", 0o644);
    upper.file(b".wh.never-existed", b"", 0o644);
    upper.dir(b"opq", 0o755);
    upper.file(b"opq/new-before", b"n", 0o644);
    upper.file(b"opq/.wh..wh..opq", b"", 0o644);
    upper.file(b"opq/sub/new-after", b"n", 0o644);
    upper.file(b".wh..wh.plnk", b"", 0o644);
    s.unpack(&upper.finish()).unwrap();

    assert!(s.exists("keep"));
    assert!(!s.exists("gone"));
    assert!(!s.exists("tree"));
    assert!(!s.exists("link"));
    assert!(!s.exists("opq/old"));
    assert!(!s.exists("opq/sub/old"));
    assert!(s.exists("opq/new-before"), "this layer's own entries survive the opaque marker");
    assert!(s.exists("opq/sub/new-after"));
    assert!(
        !s.exists(".wh.gone") && !s.exists("opq/.wh..wh..opq") && !s.exists(".wh..wh.plnk"),
        "markers are not written"
    );
}

#[test]
fn entries_replace_lower_ones() {
    let s = Scene::new();
    let mut lower = TarBuilder::new();
    lower.file(b"was-dir/child/x", b"x", 0o644);
    lower.file(b"was-file", b"f", 0o644);
    lower.dir(b"merged", 0o700);
    lower.file(b"merged/lower", b"l", 0o644);
    lower.symlink(b"was-link", b"merged");
    s.unpack(&lower.finish()).unwrap();

    let mut upper = TarBuilder::new();
    upper.file(b"was-dir", b"now a file", 0o644);
    upper.dir(b"was-file", 0o750);
    upper.dir(b"merged", 0o755);
    upper.file(b"merged/upper", b"u", 0o644);
    upper.dir(b"was-link", 0o755);
    s.unpack(&upper.finish()).unwrap();

    assert_eq!(s.read("was-dir"), b"now a file");
    assert!(s.path("was-file").is_dir());
    assert_eq!(mode(&s.path("was-file")), 0o750);
    assert!(s.exists("merged/lower") && s.exists("merged/upper"), "a directory over a directory merges");
    assert_eq!(mode(&s.path("merged")), 0o755);
    assert!(s.path("was-link").symlink_metadata().unwrap().is_dir(), "the symlink itself was replaced");
    assert!(s.exists("merged/lower"), "not removed through the symlink");
}

#[test]
fn dot_dot_escape_is_refused() {
    let s = Scene::new();
    let mut tar = TarBuilder::new();
    tar.file(b"../outside/x", b"escaped", 0o644);
    let err = s.unpack(&tar.finish()).unwrap_err();
    assert!(matches!(err, UnpackError::PathEscape { .. }), "{err}");
    assert!(s.outside_is_empty());

    let mut tar = TarBuilder::new();
    tar.file(b"a/../../x", b"escaped", 0o644);
    assert!(matches!(s.unpack(&tar.finish()), Err(UnpackError::PathEscape { .. })));
    assert!(s.outside_is_empty());
}

#[test]
fn writing_through_an_escaping_symlink_is_refused() {
    for case in 0..4 {
        let s = Scene::new();
        let target = match case {
            0 => s.outside.to_str().unwrap().to_string(),
            1 => "/".to_string(),
            2 => "../outside".to_string(),
            _ => "../../..".to_string(),
        };
        let mut tar = TarBuilder::new();
        tar.symlink(b"evil", target.as_bytes());
        tar.file(b"evil/escaped", b"written through", 0o644);
        let err = s.unpack(&tar.finish()).unwrap_err();
        assert!(matches!(err, UnpackError::SymlinkEscape { .. }), "{target}: {err}");
        assert!(s.outside_is_empty(), "{target}");
        assert!(!s.exists("escaped"), "{target}: not redirected into the root either");
        // The link itself is kept verbatim (it was a valid entry).
        assert_eq!(std::fs::read_link(s.path("evil")).unwrap(), Path::new(&target));
    }
}

#[test]
fn writing_through_an_absolute_etc_link_stays_out_of_the_hosts_etc() {
    let s = Scene::new();
    let mut tar = TarBuilder::new();
    tar.symlink(b"etc", b"/etc");
    tar.file(b"etc/ztinit-unpack-test-escape", b"x", 0o644);
    assert!(matches!(s.unpack(&tar.finish()), Err(UnpackError::SymlinkEscape { .. })));
    assert!(!Path::new("/etc/ztinit-unpack-test-escape").exists());
}

#[test]
fn relative_symlinks_inside_the_root_are_followed() {
    let s = Scene::new();
    let mut tar = TarBuilder::new();
    tar.dir(b"usr/lib", 0o755);
    tar.symlink(b"lib", b"usr/lib");
    tar.file(b"lib/libx.so", b"elf", 0o755);
    tar.symlink(b"usr/lib/up", b"../../usr");
    tar.file(b"usr/lib/up/via-up", b"u", 0o644);
    s.unpack(&tar.finish()).unwrap();
    assert_eq!(s.read("usr/lib/libx.so"), b"elf");
    assert_eq!(s.read("usr/via-up"), b"u");
}

#[test]
fn hard_links_outside_or_to_non_files_are_refused() {
    let s = Scene::new();
    std::fs::write(s.outside.join("secret"), b"host").unwrap();
    let cases: Vec<(&[u8], &str)> = vec![
        (b"../outside/secret", "leaves the root"),
        (b"missing", "does not exist"),
        (b"sym", "not a regular file"),
        (b"dir", "not a regular file"),
        (b"self", "names itself"),
    ];
    for (target, why) in cases {
        let mut tar = TarBuilder::new();
        tar.symlink(b"sym", b"/etc/passwd");
        tar.dir(b"dir", 0o755);
        tar.hardlink(b"self", b"self");
        let mut tar2 = TarBuilder::new();
        tar2.hardlink(b"link", target);
        let mut bytes = tar.finish();
        bytes.truncate(bytes.len() - 1024);
        if target != b"self" {
            bytes.truncate(bytes.len() - 512); // drop the self link
        }
        bytes.extend_from_slice(&tar2.finish());
        let err = s.unpack(&bytes).unwrap_err();
        assert!(matches!(err, UnpackError::HardLink { .. }), "{err}");
        assert!(err.to_string().contains(why), "{err}");
    }
    // Through an absolute symlink parent.
    let mut tar = TarBuilder::new();
    tar.symlink(b"out", s.outside.to_str().unwrap().as_bytes());
    tar.hardlink(b"link", b"out/secret");
    assert!(matches!(s.unpack(&tar.finish()), Err(UnpackError::SymlinkEscape { .. })));
    assert_eq!(s.outside.join("secret").metadata().unwrap().nlink(), 1);
    assert!(!s.exists("link"));
}

#[test]
fn device_and_fifo_nodes_are_refused() {
    for (flag, kind) in [(b'3', "character device"), (b'4', "block device"), (b'6', "FIFO")] {
        let s = Scene::new();
        let mut tar = TarBuilder::new();
        tar.node(b"dev/node", flag);
        let err = s.unpack(&tar.finish()).unwrap_err();
        assert!(matches!(err, UnpackError::Node { .. }), "{err}");
        assert!(err.to_string().contains(kind));
        assert!(!s.exists("dev/node"));
    }
}

#[test]
fn budget_caps_are_enforced_before_writing() {
    let s = Scene::new();
    let mut tar = TarBuilder::new();
    tar.file(b"small", &[1u8; 100], 0o644);
    tar.file(b"big", &[2u8; 1000], 0o644);
    let bytes = tar.finish();
    let mut budget = Budget::new(1050, 100);
    let err = s.unpack_with(&bytes, Compression::None, &mut budget).unwrap_err();
    assert!(matches!(err, UnpackError::SizeCap { cap: 1050, .. }), "{err}");
    assert!(err.to_string().contains("1050 bytes"), "{err}");
    assert!(!s.exists("big"));

    // The budget spans layers.
    let s = Scene::new();
    let mut budget = Budget::new(1 << 20, 3);
    let mut one = TarBuilder::new();
    one.file(b"a", b"", 0o644);
    one.file(b"b", b"", 0o644);
    s.unpack_with(&one.finish(), Compression::None, &mut budget).unwrap();
    assert_eq!(budget.entries_left, 1);
    let mut two = TarBuilder::new();
    two.file(b"dir/c", b"", 0o644); // the implicit parent counts too
    let err = s.unpack_with(&two.finish(), Compression::None, &mut budget).unwrap_err();
    assert!(matches!(err, UnpackError::EntryCap { cap: 3, .. }), "{err}");
}

#[test]
fn bad_checksum_and_truncation_fail() {
    let s = Scene::new();
    let mut tar = TarBuilder::new();
    tar.file(b"f", &[5u8; 2000], 0o644);
    let mut bytes = tar.finish();
    bytes[10] ^= 0x20;
    let err = s.unpack(&bytes).unwrap_err();
    assert!(err.to_string().contains("checksum mismatch"), "{err}");

    let mut tar = TarBuilder::new();
    tar.file(b"f", &[5u8; 2000], 0o644);
    let bytes = tar.finish();
    let err = s.unpack(&bytes[..1500]).unwrap_err();
    assert!(matches!(err, UnpackError::Tar(TarError::Truncated { .. })), "{err}");

    let gz = gzip(&bytes);
    let err = s.unpack_with(&gz[..gz.len() / 2], Compression::Gzip, &mut Budget::new(1 << 20, 10)).unwrap_err();
    assert!(err.to_string().contains("truncated"), "{err}");
}

#[test]
fn odd_names_are_refused() {
    let s = Scene::new();
    let mut tar = TarBuilder::new();
    tar.file(b"./", b"", 0o644);
    assert!(matches!(s.unpack(&tar.finish()), Err(UnpackError::Path { .. })));
    let mut tar = TarBuilder::new();
    tar.file(b".wh..", b"", 0o644);
    assert!(matches!(s.unpack(&tar.finish()), Err(UnpackError::Path { .. })));
    let mut tar = TarBuilder::new();
    tar.symlink(b"empty-target", b"");
    assert!(matches!(s.unpack(&tar.finish()), Err(UnpackError::Path { .. })));
    let mut tar = TarBuilder::new();
    tar.pax(&[("uid", b"4294967295")]);
    tar.file(b"minus-one", b"", 0o644);
    assert!(matches!(s.unpack(&tar.finish()), Err(UnpackError::Id { .. })));
    let mut tar = TarBuilder::new();
    tar.file(b"file", b"", 0o644);
    tar.file(b"file/below", b"", 0o644);
    let err = s.unpack(&tar.finish()).unwrap_err();
    assert!(err.to_string().contains("not a directory"), "{err}");
}
