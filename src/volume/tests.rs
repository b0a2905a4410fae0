//! The open sequence against a recording device-mapper and host: what is
//! loaded with which flags, in which order, and what is torn down on failure.

use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::dm::{DevId, DeviceMapper, DmError, TargetStatus};
use super::*;

#[derive(Default)]
struct FakeDm {
    calls: Vec<String>,
    next_minor: u32,
    /// Fails the first call whose log line starts with this.
    fail: Option<&'static str>,
    verity_status: Option<String>,
}

impl FakeDm {
    fn step(&mut self, line: String) -> Result<(), DmError> {
        let fail = self.fail.is_some_and(|f| line.starts_with(f));
        self.calls.push(line);
        if fail {
            return Err(DmError::Ioctl {
                cmd: "DM_TEST",
                name: "x".into(),
                source: io::Error::from_raw_os_error(libc::EINVAL),
            });
        }
        Ok(())
    }
}

impl DeviceMapper for FakeDm {
    fn version(&mut self) -> Result<[u32; 3], DmError> {
        self.step("version".into())?;
        Ok([4, 48, 0])
    }
    fn create(&mut self, name: &str, uuid: &str, read_only: bool) -> Result<DevId, DmError> {
        self.step(format!("create {name} uuid={uuid} ro={read_only}"))?;
        self.next_minor += 1;
        Ok(DevId { major: 252, minor: self.next_minor - 1 })
    }
    fn load(&mut self, name: &str, t: &Target<'_>, read_only: bool, secure: bool) -> Result<(), DmError> {
        self.step(format!(
            "load {name} ro={read_only} secure={secure} {} {} {} {}",
            t.sector_start, t.length, t.target_type, t.params
        ))
    }
    fn resume(&mut self, name: &str) -> Result<(), DmError> {
        self.step(format!("resume {name}"))
    }
    fn remove(&mut self, name: &str) -> Result<(), DmError> {
        self.step(format!("remove {name}"))
    }
    fn status(&mut self, name: &str) -> Result<Vec<TargetStatus>, DmError> {
        self.step(format!("status {name}"))?;
        Ok(vec![TargetStatus {
            sector_start: 0,
            length: 2400,
            target_type: "verity".into(),
            status: self.verity_status.clone().unwrap_or_else(|| "V".into()),
        }])
    }
}

#[derive(Default)]
struct FakeHost {
    calls: Vec<String>,
    read_error_at: Option<u64>,
    mount_error: Option<i32>,
    slept: Duration,
}

impl Host for FakeHost {
    fn block_node(&mut self, path: &Path, dev: DevId) -> io::Result<()> {
        self.calls.push(format!("node {} {dev}", path.file_name().unwrap().to_string_lossy()));
        Ok(())
    }
    fn remove_node(&mut self, path: &Path) -> io::Result<()> {
        self.calls.push(format!("rmnode {}", path.file_name().unwrap().to_string_lossy()));
        Ok(())
    }
    fn mount_read_only(&mut self, source: &Path, target: &Path, fs: Filesystem, exec: bool) -> io::Result<()> {
        assert!(target.is_dir(), "the mountpoint is created first");
        self.calls.push(format!(
            "mount {} {} {} exec={exec}",
            source.file_name().unwrap().to_string_lossy(),
            fs.as_str(),
            target.file_name().unwrap().to_string_lossy()
        ));
        match self.mount_error {
            Some(errno) => Err(io::Error::from_raw_os_error(errno)),
            None => Ok(()),
        }
    }
    fn unmount(&mut self, target: &Path) -> io::Result<()> {
        self.calls.push(format!("umount {}", target.file_name().unwrap().to_string_lossy()));
        Ok(())
    }
    fn read_through(&mut self, device: &Path, len: u64) -> Result<(), (u64, io::Error)> {
        self.calls.push(format!("read {} {len}", device.file_name().unwrap().to_string_lossy()));
        match self.read_error_at {
            Some(at) => Err((at, io::Error::from_raw_os_error(libc::EIO))),
            None => Ok(()),
        }
    }
    fn sleep(&mut self, d: Duration) {
        self.slept += d;
    }
}

const ROOT_HASH: &str = "f45c22db0d0dc438e8454bb8a933a9e353f6bf1912a036c9949fc1bdfb2a8111";

fn config() -> VolumeConfig {
    VolumeConfig {
        name: "model".into(),
        serial: "ztmodel".into(),
        mountpoint: "/models".into(),
        device_timeout_ms: 200,
        verity: VerityConfig {
            root_hash: ROOT_HASH.into(),
            salt: "7a74696e6974".into(),
            data_blocks: 300,
            hash_offset: 300 * 4096,
            ..VerityConfig::default()
        },
        ..VolumeConfig::with_key("default/model/key".parse().unwrap())
    }
}

fn key() -> Vec<u8> {
    (0x40..0x80).collect()
}

fn key_hex() -> String {
    hex::encode(key())
}

struct World {
    _dir: tempfile::TempDir,
    paths: VolumePaths,
}

fn world(disk_sectors: u64) -> World {
    let dir = tempfile::tempdir().unwrap();
    let sys = dir.path().join("sys/block");
    disk::tests::add_disk(&sys, "vda", Some("rootfs"), "253:0", 8);
    disk::tests::add_disk(&sys, "vdb", Some("ztmodel"), "253:16", disk_sectors);
    let paths = VolumePaths {
        sys_block: sys,
        dm_control: dir.path().join("dev/mapper/control"),
        dev_mapper: dir.path().join("dev/mapper"),
        root: dir.path().join("root"),
    };
    World { _dir: dir, paths }
}

/// Data (300 blocks) plus a 4-block tree.
const ENOUGH: u64 = (300 + 4) * 8;

fn open_fake(cfg: &VolumeConfig, w: &World, dm: &mut FakeDm, host: &mut FakeHost) -> Result<OpenVolume, VolumeError> {
    open_with(cfg, &key(), &w.paths, dm, host)
}

#[test]
fn the_happy_path_stacks_verity_then_crypt_then_mounts() {
    let w = world(ENOUGH);
    let (mut dm, mut host) = (FakeDm::default(), FakeHost::default());
    let v = open_fake(&config(), &w, &mut dm, &mut host).unwrap();
    assert_eq!(
        dm.calls,
        [
            "version".to_string(),
            "create model-verity uuid=ZTINIT-model-verity ro=true".into(),
            format!(
                "load model-verity ro=true secure=false 0 2400 verity \
                 1 253:16 253:16 4096 4096 300 300 sha256 {ROOT_HASH} 7a74696e6974"
            ),
            "resume model-verity".into(),
            "status model-verity".into(),
            "create model uuid=ZTINIT-model ro=true".into(),
            format!(
                "load model ro=true secure=true 0 2400 crypt aes-xts-plain64 {} 0 252:0 0 {}",
                key_hex(),
                if super::table::READ_WORKQUEUE_OFF {
                    "2 sector_size:4096 no_read_workqueue"
                } else {
                    "1 sector_size:4096"
                }
            ),
            "resume model".into(),
        ]
    );
    assert_eq!(
        host.calls,
        [
            "node model-verity 252:0",
            "read model-verity 1228800",
            "node model 252:1",
            "mount model erofs models exec=false"
        ]
    );
    assert_eq!(v.name, "model");
    assert_eq!(v.disk, "vdb");
    assert_eq!(v.device, w.paths.dev_mapper.join("model"));
    assert_eq!(v.mountpoint, w.paths.root.join("models"));
    assert_eq!(v.dm_names, ["model", "model-verity"]);
    assert_eq!(v.verified_bytes, 1228800);

    // close() undoes it, top first.
    let (mut dm2, mut host2) = (FakeDm::default(), FakeHost::default());
    v.close(&mut dm2, &mut host2).unwrap();
    assert_eq!(dm2.calls, ["remove model", "remove model-verity"]);
    assert_eq!(host2.calls, ["umount models", "rmnode model", "rmnode model-verity"]);
}

#[test]
fn lazy_verification_skips_the_full_read() {
    let w = world(ENOUGH);
    let (mut dm, mut host) = (FakeDm::default(), FakeHost::default());
    let cfg = VolumeConfig { verify: VerifyMode::Lazy, exec: true, filesystem: Filesystem::Ext4, ..config() };
    let v = open_fake(&cfg, &w, &mut dm, &mut host).unwrap();
    assert_eq!(v.verified_bytes, 0);
    assert_eq!(host.calls, ["node model-verity 252:0", "node model 252:1", "mount model ext4 models exec=true"]);
}

#[test]
fn a_key_of_the_wrong_size_touches_nothing() {
    let w = world(ENOUGH);
    let (mut dm, mut host) = (FakeDm::default(), FakeHost::default());
    let e = open_with(&config(), &key()[..32], &w.paths, &mut dm, &mut host).unwrap_err();
    assert_eq!(e.to_string(), "volume model: the key from the KBS has 32 bytes, the config says key_size = 64");
    assert!(dm.calls.is_empty() && host.calls.is_empty());
}

#[test]
fn a_missing_disk_names_the_volume_after_waiting() {
    let w = world(ENOUGH);
    let cfg = VolumeConfig { serial: "absent".into(), ..config() };
    let (mut dm, mut host) = (FakeDm::default(), FakeHost::default());
    let start = std::time::Instant::now();
    let e = open_fake(&cfg, &w, &mut dm, &mut host).unwrap_err();
    assert_eq!(e.to_string(), "volume model: no disk with serial \"absent\" appeared within 200 ms");
    assert!(host.slept >= Duration::from_millis(50), "it polled");
    assert!(start.elapsed() >= Duration::from_millis(200) || host.slept > Duration::ZERO);
    assert!(dm.calls.is_empty());
}

#[test]
fn a_disk_smaller_than_the_layout_is_refused() {
    let w = world(ENOUGH - 1);
    let (mut dm, mut host) = (FakeDm::default(), FakeHost::default());
    let e = open_fake(&config(), &w, &mut dm, &mut host).unwrap_err();
    assert_eq!(
        e.to_string(),
        format!("volume model: disk vdb has {} bytes, the verity layout needs {}", (ENOUGH - 1) * 512, ENOUGH * 512)
    );
    assert!(dm.calls.is_empty());
}

#[test]
fn corruption_found_while_reading_stops_before_the_key_is_used() {
    let w = world(ENOUGH);
    let (mut dm, mut host) = (FakeDm::default(), FakeHost { read_error_at: Some(4096 * 17), ..Default::default() });
    let e = open_fake(&config(), &w, &mut dm, &mut host).unwrap_err();
    assert!(matches!(e, VolumeError::Corrupted { offset: 69632, .. }), "{e:?}");
    let msg = e.to_string();
    assert!(msg.starts_with("volume model: verity check failed: the ciphertext on disk vdb"), "{msg}");
    assert!(msg.contains("byte 69632"), "{msg}");
    assert!(!dm.calls.iter().any(|c| c.contains("crypt")), "no crypt table was loaded: {:?}", dm.calls);
    assert_eq!(dm.calls.last().unwrap(), "remove model-verity");
    assert_eq!(host.calls.last().unwrap(), "rmnode model-verity");
}

#[test]
fn a_corrupted_verity_status_is_refused() {
    let w = world(ENOUGH);
    let cfg = VolumeConfig { verify: VerifyMode::Lazy, ..config() };
    let (mut dm, mut host) = (FakeDm { verity_status: Some("C".into()), ..Default::default() }, FakeHost::default());
    let e = open_fake(&cfg, &w, &mut dm, &mut host).unwrap_err();
    assert_eq!(e.to_string(), "volume model: verity reports corruption on disk vdb (status \"C\")");
    assert_eq!(dm.calls.last().unwrap(), "remove model-verity");
}

#[test]
fn a_failed_mount_tears_everything_down_in_reverse() {
    let w = world(ENOUGH);
    let (mut dm, mut host) = (FakeDm::default(), FakeHost { mount_error: Some(libc::EINVAL), ..Default::default() });
    let e = open_fake(&config(), &w, &mut dm, &mut host).unwrap_err();
    let msg = e.to_string();
    assert!(msg.starts_with("volume model: mounting erofs read-only on /models failed: Invalid argument"), "{msg}");
    assert!(msg.ends_with("(wrong key, or not an erofs image)"), "{msg}");
    assert_eq!(dm.calls[dm.calls.len() - 2..], ["remove model", "remove model-verity"]);
    assert_eq!(host.calls[host.calls.len() - 2..], ["rmnode model", "rmnode model-verity"]);
    assert!(!host.calls.iter().any(|c| c.starts_with("umount")), "nothing was mounted");
}

#[test]
fn a_failed_table_load_removes_the_created_devices() {
    let w = world(ENOUGH);
    let (mut dm, mut host) = (FakeDm { fail: Some("load model ro"), ..Default::default() }, FakeHost::default());
    let e = open_fake(&config(), &w, &mut dm, &mut host).unwrap_err();
    assert!(matches!(e, VolumeError::DeviceMapper { ref volume, .. } if volume == "model"));
    assert_eq!(dm.calls[dm.calls.len() - 2..], ["remove model", "remove model-verity"]);
    // The crypt device had no node yet; the verity one did.
    assert_eq!(host.calls.last().unwrap(), "rmnode model-verity");
    assert_eq!(host.calls.iter().filter(|c| c.starts_with("rmnode")).count(), 1);
}

#[test]
fn a_failed_create_removes_only_what_exists() {
    let w = world(ENOUGH);
    let (mut dm, mut host) = (FakeDm { fail: Some("create model-verity"), ..Default::default() }, FakeHost::default());
    let e = open_fake(&config(), &w, &mut dm, &mut host).unwrap_err();
    assert!(e.to_string().starts_with("volume model: DM_TEST x: Invalid argument"), "{e}");
    assert!(!dm.calls.iter().any(|c| c.starts_with("remove")));
}

#[test]
fn no_error_carries_key_material() {
    let hex_key = key_hex();
    let cases: Vec<(FakeDm, FakeHost)> = vec![
        (FakeDm { fail: Some("load model ro"), ..Default::default() }, FakeHost::default()),
        (FakeDm { fail: Some("resume model"), ..Default::default() }, FakeHost::default()),
        (FakeDm::default(), FakeHost { mount_error: Some(libc::EINVAL), ..Default::default() }),
    ];
    for (mut dm, mut host) in cases {
        let w = world(ENOUGH);
        let e = open_fake(&config(), &w, &mut dm, &mut host).unwrap_err();
        for text in [e.to_string(), format!("{e:?}")] {
            assert!(!text.contains(&hex_key[..16]), "{text}");
        }
    }
}

#[test]
fn read_through_reads_exactly_and_reports_where_it_stopped() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("dev");
    std::fs::write(&f, vec![7u8; (1 << 20) + 4096]).unwrap();
    read_through(&f, (1 << 20) + 4096).unwrap();
    read_through(&f, 4096).unwrap();
    let (at, e) = read_through(&f, (2 << 20) as u64).unwrap_err();
    assert_eq!(at, (1 << 20) + 4096);
    assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof);
    let (at, _) = read_through(&PathBuf::from("/nonexistent/dev"), 1).unwrap_err();
    assert_eq!(at, 0);
}

#[test]
fn parallel_readers_cover_every_byte_and_report_the_lowest_failure() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("dev");
    let size = (3 << 20) + 12288;
    std::fs::write(&f, vec![7u8; size]).unwrap();
    for readers in [1, 2, 3, 4, 64] {
        read_through_with(&f, size as u64, readers).unwrap_or_else(|e| panic!("{readers}: {e:?}"));
        // One byte more than the file: every reader but the last one's stops cleanly.
        let (at, e) = read_through_with(&f, size as u64 + 1, readers).unwrap_err();
        assert_eq!((at, e.kind()), (size as u64, io::ErrorKind::UnexpectedEof), "{readers}");
    }
    // A directory fails every read at its start: the lowest offset wins.
    let (at, _) = read_through_with(dir.path(), 10 << 20, 4).unwrap_err();
    assert_eq!(at, 0);
}

#[test]
fn prepare_needs_no_key_and_a_failed_finish_removes_both_halves() {
    let w = world(ENOUGH);
    let (mut dm, mut host) = (FakeDm::default(), FakeHost::default());
    let p = prepare_with(&config(), &w.paths, &mut dm, &mut host).unwrap();
    assert_eq!(p.verified_bytes, 1228800);
    assert!(!dm.calls.iter().any(|c| c.contains("crypt")), "{:?}", dm.calls);
    assert_eq!(host.calls, ["node model-verity 252:0", "read model-verity 1228800"]);
    // The key checked only now: refused, and the verity device goes too.
    let e = finish_with(p, &config(), &key()[..32], &w.paths, &mut dm, &mut host).unwrap_err();
    assert!(matches!(e, VolumeError::KeySize { got: 32, .. }), "{e}");
    assert_eq!(dm.calls.last().unwrap(), "remove model-verity");

    // A failed mount after a good prepare removes crypt, then verity.
    let (mut dm, mut host) = (FakeDm::default(), FakeHost { mount_error: Some(libc::EINVAL), ..Default::default() });
    let p = prepare_with(&config(), &w.paths, &mut dm, &mut host).unwrap();
    finish_with(p, &config(), &key(), &w.paths, &mut dm, &mut host).unwrap_err();
    assert_eq!(dm.calls[dm.calls.len() - 2..], ["remove model", "remove model-verity"]);

    // Both halves in a row make what open makes.
    let (mut dm, mut host) = (FakeDm::default(), FakeHost::default());
    let p = prepare_with(&config(), &w.paths, &mut dm, &mut host).unwrap();
    let split = finish_with(p, &config(), &key(), &w.paths, &mut dm, &mut host).unwrap();
    let (mut dm2, mut host2) = (FakeDm::default(), FakeHost::default());
    let whole = open_fake(&config(), &w, &mut dm2, &mut host2).unwrap();
    assert_eq!((split, dm.calls, host.calls), (whole, dm2.calls, host2.calls));
}

#[test]
fn a_failed_prepare_leaves_nothing_behind() {
    let w = world(ENOUGH);
    let (mut dm, mut host) = (FakeDm::default(), FakeHost { read_error_at: Some(4096 * 17), ..Default::default() });
    let e = prepare_with(&config(), &w.paths, &mut dm, &mut host).unwrap_err();
    assert!(matches!(e, VolumeError::Corrupted { offset: 69632, .. }), "{e}");
    assert_eq!(dm.calls.last().unwrap(), "remove model-verity");
}

#[test]
fn read_ahead_is_set_only_on_a_block_device() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("not-a-device");
    std::fs::write(&file, b"").unwrap();
    let e = set_read_ahead(&file, READ_AHEAD_KIB).unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
    let e = set_read_ahead(&dir.path().join("missing"), READ_AHEAD_KIB).unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::NotFound);
}

#[test]
#[ignore = "needs root: a loop device (losetup)"]
fn read_ahead_reaches_the_devices_queue() {
    let dir = tempfile::tempdir().unwrap();
    let image = dir.path().join("disk.img");
    std::fs::write(&image, vec![0u8; 1 << 20]).unwrap();
    let out = std::process::Command::new("losetup").args(["-f", "--show"]).arg(&image).output().unwrap();
    assert!(out.status.success(), "losetup: {}", String::from_utf8_lossy(&out.stderr));
    let loop_dev = PathBuf::from(String::from_utf8(out.stdout).unwrap().trim());
    let name = loop_dev.file_name().unwrap().to_string_lossy().into_owned();
    let attr = PathBuf::from(format!("/sys/block/{name}/queue/read_ahead_kb"));
    let result = set_read_ahead(&loop_dev, READ_AHEAD_KIB);
    let read_back = std::fs::read_to_string(&attr);
    let detached = std::process::Command::new("losetup").arg("-d").arg(&loop_dev).status().unwrap();
    result.unwrap();
    assert_eq!(read_back.unwrap().trim(), "1024");
    assert!(detached.success());
}
