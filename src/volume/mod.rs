//! Encrypted, integrity-protected model volumes.
//!
//! The host's disk holds AES-XTS ciphertext followed by a dm-verity hash tree
//! over that ciphertext. Opening a volume stacks, with raw device-mapper
//! ioctls and no udev:
//!
//! ```text
//! disk (found by virtio serial) -> NAME-verity (root hash from the measured
//! config) -> NAME (dm-crypt, key from the attested KBS) -> read-only mount
//! ```
//!
//! so any change to the disk is detected (by default while opening, by
//! reading the whole verity device once) and the plaintext exists only in
//! guest memory. Any failure tears down what was set up and returns an error
//! naming the volume; main turns it into a FATAL. See docs/volume.md.

pub mod config;
pub mod crypto;
pub mod disk;
pub mod dm;
pub mod table;
pub mod verity;

use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

pub use config::{Filesystem, VerifyMode, VerityConfig, VolumeConfig, Volumes};
use dm::{DevId, DeviceMapper, DmError, Target};

/// Every OS path the volume code touches.
#[derive(Debug, Clone)]
pub struct VolumePaths {
    /// `/sys/block`, where disks and their serials are listed.
    pub sys_block: PathBuf,
    /// `/dev/mapper/control`.
    pub dm_control: PathBuf,
    /// Where device nodes for the mapped devices are made (`/dev/mapper`).
    pub dev_mapper: PathBuf,
    /// Mountpoints are resolved under this root (`/`).
    pub root: PathBuf,
}

impl Default for VolumePaths {
    fn default() -> Self {
        Self {
            sys_block: disk::DEFAULT_SYS_BLOCK.into(),
            dm_control: "/dev/mapper/control".into(),
            dev_mapper: "/dev/mapper".into(),
            root: "/".into(),
        }
    }
}

/// Why a volume could not be opened. Each message names the volume and never
/// holds key material.
#[derive(Debug, thiserror::Error)]
pub enum VolumeError {
    #[error("volume {volume}: the key from the KBS has {got} bytes, the config says key_size = {expected}")]
    KeySize { volume: String, expected: u32, got: usize },
    #[error("volume {volume}: invalid verity geometry in the config")]
    Geometry { volume: String },
    #[error("volume {volume}: no disk with serial {serial:?} appeared within {waited_ms} ms")]
    DiskMissing { volume: String, serial: String, waited_ms: u64 },
    #[error("volume {volume}: {source}")]
    Disk {
        volume: String,
        #[source]
        source: disk::DiskError,
    },
    #[error("volume {volume}: disk {disk} has {size} bytes, the verity layout needs {required}")]
    DiskTooSmall { volume: String, disk: String, size: u64, required: u64 },
    #[error("volume {volume}: device-mapper interface {major}.{minor} is not 4.x")]
    Interface { volume: String, major: u32, minor: u32 },
    #[error("volume {volume}: {source}")]
    DeviceMapper {
        volume: String,
        #[source]
        source: DmError,
    },
    #[error("volume {volume}: cannot make device node {path}: {source}")]
    Node {
        volume: String,
        path: String,
        #[source]
        source: io::Error,
    },
    #[error(
        "volume {volume}: verity check failed: the ciphertext on disk {disk} does not match the measured \
         root hash (read error at byte {offset}: {source})"
    )]
    Corrupted {
        volume: String,
        disk: String,
        offset: u64,
        #[source]
        source: io::Error,
    },
    #[error("volume {volume}: verity reports corruption on disk {disk} (status {status:?})")]
    VerityStatus { volume: String, disk: String, status: String },
    #[error("volume {volume}: cannot create mountpoint {path}: {source}")]
    Mountpoint {
        volume: String,
        path: String,
        #[source]
        source: io::Error,
    },
    #[error(
        "volume {volume}: mounting {fs} read-only on {mountpoint} failed: {source} \
         (wrong key, or not an {fs} image)"
    )]
    Mount {
        volume: String,
        fs: &'static str,
        mountpoint: String,
        #[source]
        source: io::Error,
    },
}

/// An opened and mounted volume. It stays open for the life of the VM;
/// [`OpenVolume::close`] exists for orderly teardown and tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenVolume {
    pub name: String,
    /// The disk it came from (`vdb`).
    pub disk: String,
    /// The plaintext device node (`/dev/mapper/NAME`).
    pub device: PathBuf,
    pub mountpoint: PathBuf,
    /// Device-mapper names, top first.
    pub dm_names: Vec<String>,
    /// Bytes checked against the verity tree while opening (0 when lazy).
    pub verified_bytes: u64,
}

/// Read-ahead of a volume's plaintext device. A model is read
/// sequentially; with the kernel's 128 KiB the filesystem asked for one
/// 128 KiB read at a time, each decrypted and verified before the next, and
/// 1 MiB keeps dm-crypt's and dm-verity's workers busy on several at once
/// (`cargo xtask bench`, 256 MiB under TCG: 27-30 to 32-33 MiB/s; 4 MiB gave
/// no more).
pub const READ_AHEAD_KIB: u32 = 1024;

/// `BLKRASET`, `_IO(0x12, 98)`: the device's read-ahead in 512-byte sectors.
const BLKRASET: libc::Ioctl = 0x1262;

/// Sets the read-ahead of the block device `device` to `kib` KiB with
/// `BLKRASET` (the sysfs `read_ahead_kb` attribute freezes the queue, which
/// waited for an RCU grace period: 14 ms under TCG on the boot's path).
/// Only speed depends on it, so the caller logs a failure and goes on.
pub fn set_read_ahead(device: &Path, kib: u32) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    use std::os::unix::fs::FileTypeExt;
    let file = std::fs::File::open(device)?;
    if !file.metadata()?.file_type().is_block_device() {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "not a block device"));
    }
    let sectors = libc::c_ulong::from(kib) * 2;
    // SAFETY: BLKRASET takes its argument by value; `file` is an open
    // block device.
    let r = unsafe { libc::ioctl(file.as_raw_fd(), BLKRASET, sectors) };
    if r < 0 { Err(io::Error::last_os_error()) } else { Ok(()) }
}

/// The privileged operations besides device-mapper, so the sequence can be
/// tested as an ordinary process. The real one is [`LinuxHost`].
pub trait Host {
    /// Makes (or checks an existing) block device node for `dev`.
    fn block_node(&mut self, path: &Path, dev: DevId) -> io::Result<()>;
    fn remove_node(&mut self, path: &Path) -> io::Result<()>;
    fn mount_read_only(&mut self, source: &Path, target: &Path, fs: Filesystem, exec: bool) -> io::Result<()>;
    fn unmount(&mut self, target: &Path) -> io::Result<()>;
    /// Reads `len` bytes of `device` from the start, discarding them. Returns
    /// the offset reached and the error, if a read fails.
    fn read_through(&mut self, device: &Path, len: u64) -> Result<(), (u64, io::Error)>;
    fn sleep(&mut self, d: Duration) {
        std::thread::sleep(d)
    }
}

/// Opens `config`'s volume with `key` (the raw bytes of its KBS resource).
pub fn open(config: &VolumeConfig, key: &[u8], paths: &VolumePaths) -> Result<OpenVolume, VolumeError> {
    let mut control = control(config, paths)?;
    open_with(config, key, paths, &mut control, &mut LinuxHost)
}

/// The half of opening that needs no key: the disk found, its verity device
/// made and, with `verify = "full"`, every block checked. Runs while the
/// guest attests (`stages` starts it after the modules stage); [`finish`]
/// adds the crypt device and mounts once the key is released. Dropped
/// without `finish`, the verity device stays until power-off.
pub fn prepare(config: &VolumeConfig, paths: &VolumePaths) -> Result<Prepared, VolumeError> {
    let mut control = control(config, paths)?;
    prepare_with(config, paths, &mut control, &mut LinuxHost)
}

/// The second half of [`open`] after [`prepare`].
pub fn finish(
    prepared: Prepared,
    config: &VolumeConfig,
    key: &[u8],
    paths: &VolumePaths,
) -> Result<OpenVolume, VolumeError> {
    let mut control = control(config, paths)?;
    finish_with(prepared, config, key, paths, &mut control, &mut LinuxHost)
}

fn control(config: &VolumeConfig, paths: &VolumePaths) -> Result<dm::Control, VolumeError> {
    dm::Control::open(&paths.dm_control)
        .map_err(|source| VolumeError::DeviceMapper { volume: config.name.clone(), source })
}

/// [`open`] over any device-mapper and host implementation.
pub fn open_with(
    config: &VolumeConfig,
    key: &[u8],
    paths: &VolumePaths,
    dm: &mut dyn DeviceMapper,
    host: &mut dyn Host,
) -> Result<OpenVolume, VolumeError> {
    check_key(config, key)?;
    let prepared = prepare_with(config, paths, dm, host)?;
    finish_with(prepared, config, key, paths, dm, host)
}

fn check_key(config: &VolumeConfig, key: &[u8]) -> Result<(), VolumeError> {
    if key.len() != config.key_size as usize {
        return Err(VolumeError::KeySize { volume: config.name.clone(), expected: config.key_size, got: key.len() });
    }
    Ok(())
}

/// A volume whose verity device is up (and, with `verify = "full"`,
/// checked): what [`prepare`] hands to [`finish`].
#[derive(Debug)]
pub struct Prepared {
    disk: disk::Disk,
    /// (dm name, node path) in creation order: the verity device.
    devices: Vec<(String, Option<PathBuf>)>,
    verity_dev: DevId,
    sectors: u64,
    pub verified_bytes: u64,
    /// How long the key-independent half took.
    pub took: Duration,
}

/// [`prepare`] over any device-mapper and host implementation.
pub fn prepare_with(
    config: &VolumeConfig,
    paths: &VolumePaths,
    dm: &mut dyn DeviceMapper,
    host: &mut dyn Host,
) -> Result<Prepared, VolumeError> {
    let started = Instant::now();
    let volume = config.name.clone();
    let required = config.verity.required_bytes().ok_or_else(|| VolumeError::Geometry { volume: volume.clone() })?;
    let disk = wait_for_disk(config, paths, host)?;
    if disk.size_bytes < required {
        return Err(VolumeError::DiskTooSmall { volume, disk: disk.name, size: disk.size_bytes, required });
    }
    let version = dm.version().map_err(|source| VolumeError::DeviceMapper { volume: volume.clone(), source })?;
    if version[0] != dm::INTERFACE_VERSION[0] {
        return Err(VolumeError::Interface { volume, major: version[0], minor: version[1] });
    }
    log::debug!(
        "volume {volume}: disk {} ({}), device-mapper {}.{}.{}",
        disk.name,
        disk.dev,
        version[0],
        version[1],
        version[2]
    );

    let mut stack = Stack { dm, host, volume, devices: Vec::new(), mounted: None, armed: true };
    let (verity_dev, sectors, verified_bytes) = stack.build_verity(config, paths, &disk)?;
    stack.armed = false;
    let devices = std::mem::take(&mut stack.devices);
    Ok(Prepared { disk, devices, verity_dev, sectors, verified_bytes, took: started.elapsed() })
}

/// [`finish`] over any device-mapper and host implementation. On failure
/// the verity device of `prepared` is removed too.
pub fn finish_with(
    prepared: Prepared,
    config: &VolumeConfig,
    key: &[u8],
    paths: &VolumePaths,
    dm: &mut dyn DeviceMapper,
    host: &mut dyn Host,
) -> Result<OpenVolume, VolumeError> {
    let Prepared { disk, devices, verity_dev, sectors, verified_bytes, took } = prepared;
    let mut stack = Stack { dm, host, volume: config.name.clone(), devices, mounted: None, armed: true };
    check_key(config, key)?;
    let opened = stack.build_crypt(config, key, paths, &disk, verity_dev, sectors, verified_bytes, took)?;
    stack.armed = false;
    Ok(opened)
}

fn wait_for_disk(config: &VolumeConfig, paths: &VolumePaths, host: &mut dyn Host) -> Result<disk::Disk, VolumeError> {
    let start = Instant::now();
    let limit = Duration::from_millis(config.device_timeout_ms);
    loop {
        match disk::find_by_serial(&paths.sys_block, &config.serial) {
            Ok(Some(d)) => return Ok(d),
            Ok(None) if start.elapsed() < limit => host.sleep(Duration::from_millis(50)),
            Ok(None) => {
                return Err(VolumeError::DiskMissing {
                    volume: config.name.clone(),
                    serial: config.serial.clone(),
                    waited_ms: config.device_timeout_ms,
                });
            }
            Err(source) => {
                return Err(VolumeError::Disk { volume: config.name.clone(), source });
            }
        }
    }
}

/// What has been set up so far, torn down in reverse unless disarmed.
struct Stack<'a> {
    dm: &'a mut dyn DeviceMapper,
    host: &'a mut dyn Host,
    volume: String,
    /// (dm name, node path) in creation order.
    devices: Vec<(String, Option<PathBuf>)>,
    mounted: Option<PathBuf>,
    armed: bool,
}

impl Stack<'_> {
    fn dm_err(&self, source: DmError) -> VolumeError {
        VolumeError::DeviceMapper { volume: self.volume.clone(), source }
    }

    /// Creates, loads and resumes one read-only device and makes its node.
    fn map(
        &mut self,
        name: &str,
        target: &Target<'_>,
        secure: bool,
        paths: &VolumePaths,
    ) -> Result<(PathBuf, DevId), VolumeError> {
        let uuid = format!("ZTINIT-{name}");
        let dev = self.dm.create(name, &uuid, true).map_err(|e| self.dm_err(e))?;
        self.devices.push((name.to_string(), None));
        self.dm.load(name, target, true, secure).map_err(|e| self.dm_err(e))?;
        self.dm.resume(name).map_err(|e| self.dm_err(e))?;
        // devtmpfs names the device dm-<minor>, but makes the node
        // asynchronously; a node of our own under /dev/mapper is certain.
        let node = paths.dev_mapper.join(name);
        let _ = std::fs::create_dir_all(&paths.dev_mapper);
        self.host.block_node(&node, dev).map_err(|source| VolumeError::Node {
            volume: self.volume.clone(),
            path: node.display().to_string(),
            source,
        })?;
        if let Some(last) = self.devices.last_mut() {
            last.1 = Some(node.clone());
        }
        Ok((node, dev))
    }

    /// The verity device, checked in full when so configured: its dev,
    /// length in sectors and the bytes verified.
    fn build_verity(
        &mut self,
        config: &VolumeConfig,
        paths: &VolumePaths,
        disk: &disk::Disk,
    ) -> Result<(DevId, u64, u64), VolumeError> {
        let volume = self.volume.clone();
        let verity_name = format!("{}-verity", config.name);
        let (params, sectors) = table::verity(disk.dev, &config.verity);
        let target = Target { sector_start: 0, length: sectors, target_type: "verity", params: &params };
        let (verity_node, verity_dev) = self.map(&verity_name, &target, false, paths)?;

        let mut verified_bytes = 0;
        if config.verify == VerifyMode::Full {
            let len = config.verity.data_bytes();
            self.host.read_through(&verity_node, len).map_err(|(offset, source)| VolumeError::Corrupted {
                volume: volume.clone(),
                disk: disk.name.clone(),
                offset,
                source,
            })?;
            verified_bytes = len;
        }
        // "V" until a block has failed its check, then "C".
        let status = self.dm.status(&verity_name).map_err(|e| self.dm_err(e))?;
        if status.len() != 1 || status[0].status != "V" {
            let status = status.iter().map(|s| s.status.as_str()).collect::<Vec<_>>().join(",");
            return Err(VolumeError::VerityStatus { volume, disk: disk.name.clone(), status });
        }
        Ok((verity_dev, sectors, verified_bytes))
    }

    /// The crypt device over the verity device, mounted.
    #[allow(clippy::too_many_arguments)] // the two halves' hand-over, once
    fn build_crypt(
        &mut self,
        config: &VolumeConfig,
        key: &[u8],
        paths: &VolumePaths,
        disk: &disk::Disk,
        verity_dev: DevId,
        sectors: u64,
        verified_bytes: u64,
        prepare_took: Duration,
    ) -> Result<OpenVolume, VolumeError> {
        let volume = self.volume.clone();
        let started = Instant::now();
        let verity_name = format!("{}-verity", config.name);
        let params = table::crypt(&config.cipher, key, verity_dev, config.sector_size);
        let target = Target { sector_start: 0, length: sectors, target_type: "crypt", params: &params };
        let part = crate::timeline::part("crypt-map");
        let (device, _) = self.map(&config.name, &target, true, paths)?;
        drop((params, part));

        let mountpoint = crate::files::under(&paths.root, &config.mountpoint);
        std::fs::create_dir_all(&mountpoint).map_err(|source| VolumeError::Mountpoint {
            volume: volume.clone(),
            path: mountpoint.display().to_string(),
            source,
        })?;
        let part = crate::timeline::part("mount");
        self.host.mount_read_only(&device, &mountpoint, config.filesystem, config.exec).map_err(|source| {
            VolumeError::Mount {
                volume: volume.clone(),
                fs: config.filesystem.as_str(),
                mountpoint: config.mountpoint.clone(),
                source,
            }
        })?;
        drop(part);
        self.mounted = Some(mountpoint.clone());
        let checked = match config.verify {
            VerifyMode::Full => {
                format!("verified in full ({} MiB) in {} ms", verified_bytes >> 20, prepare_took.as_millis())
            }
            VerifyMode::Lazy => "verified on read".to_string(),
        };
        log::info!(
            "volume {volume}: disk {} {checked}, mounted {} read-only at {} in {} ms",
            disk.name,
            config.filesystem.as_str(),
            config.mountpoint,
            started.elapsed().as_millis()
        );
        Ok(OpenVolume {
            name: config.name.clone(),
            disk: disk.name.clone(),
            device,
            mountpoint,
            dm_names: vec![config.name.clone(), verity_name],
            verified_bytes,
        })
    }
}

impl Drop for Stack<'_> {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        if let Some(m) = self.mounted.take()
            && let Err(e) = self.host.unmount(&m)
        {
            log::warn!("volume {}: teardown: unmount {}: {e}", self.volume, m.display());
        }
        while let Some((name, node)) = self.devices.pop() {
            if let Some(node) = node {
                let _ = self.host.remove_node(&node);
            }
            if let Err(e) = self.dm.remove(&name) {
                log::warn!("volume {}: teardown: {e}", self.volume);
            }
        }
    }
}

impl OpenVolume {
    /// Unmounts and removes the devices, top first.
    pub fn close(self, dm: &mut dyn DeviceMapper, host: &mut dyn Host) -> Result<(), VolumeError> {
        host.unmount(&self.mountpoint).map_err(|source| VolumeError::Mount {
            volume: self.name.clone(),
            fs: "filesystem",
            mountpoint: self.mountpoint.display().to_string(),
            source,
        })?;
        for name in &self.dm_names {
            let _ = host.remove_node(&self.device.with_file_name(name));
            dm.remove(name).map_err(|source| VolumeError::DeviceMapper { volume: self.name.clone(), source })?;
        }
        Ok(())
    }
}

/// The real host: mknod, mount(2), reads with the page cache dropped behind.
pub struct LinuxHost;

impl Host for LinuxHost {
    fn block_node(&mut self, path: &Path, dev: DevId) -> io::Result<()> {
        use rustix::fs::{FileType, Mode};
        let rdev = rustix::fs::makedev(dev.major, dev.minor);
        match rustix::fs::mknodat(rustix::fs::CWD, path, FileType::BlockDevice, Mode::RUSR | Mode::WUSR, rdev) {
            Ok(()) => Ok(()),
            Err(rustix::io::Errno::EXIST) => {
                // Left by an earlier attempt: acceptable only if it is the same device.
                let st = rustix::fs::stat(path)?;
                if FileType::from_raw_mode(st.st_mode) == FileType::BlockDevice && st.st_rdev == rdev {
                    Ok(())
                } else {
                    Err(io::Error::new(io::ErrorKind::AlreadyExists, "exists and is not this device"))
                }
            }
            Err(e) => Err(e.into()),
        }
    }

    fn remove_node(&mut self, path: &Path) -> io::Result<()> {
        std::fs::remove_file(path)
    }

    fn mount_read_only(&mut self, source: &Path, target: &Path, fs: Filesystem, exec: bool) -> io::Result<()> {
        use rustix::mount::MountFlags;
        let mut flags = MountFlags::RDONLY | MountFlags::NODEV | MountFlags::NOSUID;
        if !exec {
            flags |= MountFlags::NOEXEC;
        }
        // ext4: never replay a journal from the host's disk.
        let data: Option<&std::ffi::CStr> = match fs {
            Filesystem::Ext4 => Some(c"noload"),
            Filesystem::Erofs => None,
        };
        rustix::mount::mount(source, target, fs.as_str(), flags, data)?;
        Ok(())
    }

    fn unmount(&mut self, target: &Path) -> io::Result<()> {
        rustix::mount::unmount(target, rustix::mount::UnmountFlags::empty())?;
        Ok(())
    }

    fn read_through(&mut self, device: &Path, len: u64) -> Result<(), (u64, io::Error)> {
        read_through(device, len)
    }
}

/// Bytes each reader asks for at a time during a full verification.
const VERIFY_CHUNK: u64 = 256 << 10;
/// Readers of a full verification at most, whatever the vCPU count: each
/// holds one chunk, and PID 1's peak memory counts them all.
const MAX_VERIFY_READERS: usize = 4;
/// A reader beyond the first is worth its thread only with this much of
/// the device to read: a thread's start costs more than spreading the
/// hashing of a few MiB over the vCPUs gains (tens of ms under emulation).
const MIN_BYTES_PER_READER: u64 = 8 << 20;

/// Reads `len` bytes from the start of `path`, dropping the page cache
/// behind (the workload reads through the filesystem later, not this
/// device). Every read makes dm-verity hash the blocks; a mismatch comes
/// back as EIO. One reader per vCPU (at most [`MAX_VERIFY_READERS`], and
/// one per [`MIN_BYTES_PER_READER`]): chunk i goes to reader i mod n, so
/// the readers advance through the disk side by side and the hashing, done
/// on the CPU that completes each read, spreads over every vCPU. On
/// failure, the lowest offset any reader stopped at.
pub fn read_through(path: &Path, len: u64) -> Result<(), (u64, io::Error)> {
    let vcpus = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
    let worth = usize::try_from(len / MIN_BYTES_PER_READER).unwrap_or(usize::MAX).max(1);
    read_through_with(path, len, vcpus.min(MAX_VERIFY_READERS).min(worth))
}

/// [`read_through`] with `readers` readers (one alone is the calling thread).
pub fn read_through_with(path: &Path, len: u64, readers: usize) -> Result<(), (u64, io::Error)> {
    let chunks = len.div_ceil(VERIFY_CHUNK);
    let readers = u64::try_from(readers.max(1)).unwrap_or(1).min(chunks.max(1));
    let read_share = |first: u64| -> Result<(), (u64, io::Error)> {
        let file = std::fs::File::open(path).map_err(|e| (0, e))?;
        let mut buf = vec![0u8; usize::try_from(VERIFY_CHUNK).unwrap_or(1 << 18)];
        let mut chunk = first;
        while chunk < chunks {
            let start = chunk * VERIFY_CHUNK;
            let end = (start + VERIFY_CHUNK).min(len);
            read_range(&file, start, end, &mut buf)?;
            chunk += readers;
        }
        Ok(())
    };
    if readers == 1 {
        return read_share(0);
    }
    let results: Vec<Result<(), (u64, io::Error)>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..readers).map(|first| scope.spawn(move || read_share(first))).collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|_| Err((0, io::Error::other("a verification reader panicked")))))
            .collect()
    });
    match results.into_iter().filter_map(Result::err).min_by_key(|(offset, _)| *offset) {
        Some(first_failure) => Err(first_failure),
        None => Ok(()),
    }
}

/// Reads bytes `start..end` of `file` with pread, then drops them from the
/// page cache.
fn read_range(file: &std::fs::File, start: u64, end: u64, buf: &mut [u8]) -> Result<(), (u64, io::Error)> {
    use std::os::unix::fs::FileExt;
    let mut at = start;
    while at < end {
        let want = usize::try_from(end - at).map_or(buf.len(), |n| n.min(buf.len()));
        match file.read_at(&mut buf[..want], at) {
            Ok(0) => return Err((at, io::Error::new(io::ErrorKind::UnexpectedEof, "device ended early"))),
            Ok(n) => at += n as u64,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err((at, e)),
        }
    }
    let _ = rustix::fs::fadvise(file, start, std::num::NonZeroU64::new(end - start), rustix::fs::Advice::DontNeed);
    Ok(())
}

#[cfg(test)]
mod tests;
