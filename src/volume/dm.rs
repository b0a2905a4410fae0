//! Device-mapper through raw ioctls on `/dev/mapper/control`
//! (linux-6.12 `include/uapi/linux/dm-ioctl.h`, `drivers/md/dm-ioctl.c`).
//!
//! No libdevmapper, no udev: the header and target specs are encoded by hand
//! into a byte buffer, and replies are parsed with every offset bounds-checked.
//! Buffers that carry a table are [`Zeroizing`] and sent with
//! `DM_SECURE_DATA_FLAG`, so the kernel wipes its copy too.

use std::fmt;
use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::Path;

use zeroize::Zeroizing;

/// `sizeof(struct dm_ioctl)`.
pub const HEADER_SIZE: usize = 312;
const HEADER_SIZE_U32: u32 = 312;
const _: () = assert!(HEADER_SIZE_U32 as usize == HEADER_SIZE);
/// `sizeof(struct dm_target_spec)`.
pub const TARGET_SPEC_SIZE: usize = 40;
/// `DM_NAME_LEN`, including the NUL.
pub const NAME_LEN: usize = 128;
/// `DM_UUID_LEN`, including the NUL.
pub const UUID_LEN: usize = 129;
/// `DM_MAX_TYPE_NAME`, including the NUL.
pub const MAX_TYPE_NAME: usize = 16;
/// The interface major version this code speaks; minor 0 is enough for
/// everything used here and any 4.x kernel accepts it.
pub const INTERFACE_VERSION: [u32; 3] = [4, 0, 0];

// Field offsets in struct dm_ioctl.
const OFF_VERSION: usize = 0;
const OFF_DATA_SIZE: usize = 12;
const OFF_DATA_START: usize = 16;
const OFF_TARGET_COUNT: usize = 20;
const OFF_OPEN_COUNT: usize = 24;
const OFF_FLAGS: usize = 28;
const OFF_EVENT_NR: usize = 32;
const OFF_DEV: usize = 40;
const OFF_NAME: usize = 48;
const OFF_UUID: usize = OFF_NAME + NAME_LEN;

pub const READONLY_FLAG: u32 = 1 << 0;
pub const SUSPEND_FLAG: u32 = 1 << 1;
pub const STATUS_TABLE_FLAG: u32 = 1 << 4;
pub const ACTIVE_PRESENT_FLAG: u32 = 1 << 5;
pub const BUFFER_FULL_FLAG: u32 = 1 << 8;
pub const SECURE_DATA_FLAG: u32 = 1 << 15;

/// The ioctl commands used (`DM_*_CMD`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    Version = 0,
    DevCreate = 3,
    DevRemove = 4,
    /// Suspend or, without `SUSPEND_FLAG`, resume.
    DevSuspend = 6,
    TableLoad = 9,
    TableStatus = 12,
}

impl Command {
    /// `_IOWR(0xfd, nr, struct dm_ioctl)`.
    pub fn request(self) -> u32 {
        const IOC_READ_WRITE: u32 = 3;
        (IOC_READ_WRITE << 30) | (HEADER_SIZE_U32 << 16) | (0xfd << 8) | self as u32
    }

    pub fn name(self) -> &'static str {
        match self {
            Command::Version => "DM_VERSION",
            Command::DevCreate => "DM_DEV_CREATE",
            Command::DevRemove => "DM_DEV_REMOVE",
            Command::DevSuspend => "DM_DEV_SUSPEND",
            Command::TableLoad => "DM_TABLE_LOAD",
            Command::TableStatus => "DM_TABLE_STATUS",
        }
    }
}

/// A block device number as the kernel encodes it in `dm_ioctl.dev`
/// (`huge_encode_dev`: 12-bit major, 20-bit minor).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DevId {
    pub major: u32,
    pub minor: u32,
}

impl DevId {
    pub fn decode(dev: u64) -> DevId {
        // The kernel's new_encode_dev: the low 32 bits hold majors below 4096
        // and minors below 2^20, which is what device-mapper hands out.
        let [a, b, c, d, ..] = dev.to_le_bytes();
        let dev = u32::from_le_bytes([a, b, c, d]);
        DevId { major: (dev >> 8) & 0xfff, minor: (dev & 0xff) | ((dev >> 12) & 0xf_ff00) }
    }

    pub fn encode(self) -> u64 {
        u64::from((self.minor & 0xff) | ((self.major & 0xfff) << 8) | ((self.minor & !0xff) << 12))
    }
}

impl fmt::Display for DevId {
    /// The `MAJOR:MINOR` form, which table parameters accept in place of a path.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.major, self.minor)
    }
}

/// Why a request could not be encoded or a reply not decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    #[error("device name must be 1..{} bytes without NUL or '/'", NAME_LEN - 1)]
    BadName,
    #[error("device uuid must be at most {} bytes without NUL", UUID_LEN - 1)]
    BadUuid,
    #[error("target type must be 1..{} bytes without NUL", MAX_TYPE_NAME - 1)]
    BadTargetType,
    #[error("target parameters contain a NUL byte")]
    NulInParams,
    #[error("reply is malformed: {0}")]
    BadReply(&'static str),
    #[error("reply did not fit in {0} bytes")]
    ReplyTooLarge(usize),
    #[error("request of {0} bytes does not fit the ioctl's 32-bit sizes")]
    RequestTooLarge(usize),
}

/// A size or count for one of `struct dm_ioctl`'s 32-bit fields.
fn u32_field(n: usize) -> Result<u32, EncodeError> {
    u32::try_from(n).map_err(|_| EncodeError::RequestTooLarge(n))
}

/// One target line of a table.
pub struct Target<'a> {
    pub sector_start: u64,
    pub length: u64,
    pub target_type: &'a str,
    /// May hold a key: the caller keeps it in a `Zeroizing` buffer.
    pub params: &'a str,
}

/// A request to encode.
pub struct Request<'a> {
    pub name: &'a str,
    pub uuid: &'a str,
    pub flags: u32,
    pub targets: &'a [Target<'a>],
    /// Bytes reserved after the header for the kernel's answer.
    pub reply_space: usize,
}

fn check_name(name: &str) -> Result<(), EncodeError> {
    if name.is_empty() || name.len() >= NAME_LEN || name.contains('\0') || name.contains('/') {
        return Err(EncodeError::BadName);
    }
    Ok(())
}

fn align8(n: usize) -> usize {
    (n + 7) & !7
}

fn put_u32(buf: &mut [u8], at: usize, v: u32) {
    buf[at..at + 4].copy_from_slice(&v.to_ne_bytes());
}

fn put_u64(buf: &mut [u8], at: usize, v: u64) {
    buf[at..at + 8].copy_from_slice(&v.to_ne_bytes());
}

fn get_u32(buf: &[u8], at: usize) -> u32 {
    let mut b = [0u8; 4];
    b.copy_from_slice(&buf[at..at + 4]);
    u32::from_ne_bytes(b)
}

fn get_u64(buf: &[u8], at: usize) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&buf[at..at + 8]);
    u64::from_ne_bytes(b)
}

/// Encodes a request: the header, then (for a table load) each target spec
/// followed by its NUL-terminated parameters, padded to 8 bytes, `next` being
/// the distance from this spec to the next (the `DM_TABLE_LOAD` convention).
pub fn encode(req: &Request<'_>) -> Result<Zeroizing<Vec<u8>>, EncodeError> {
    // An empty name is allowed only for DM_VERSION, which names no device.
    if !req.name.is_empty() {
        check_name(req.name)?;
    }
    if req.uuid.len() >= UUID_LEN || req.uuid.contains('\0') {
        return Err(EncodeError::BadUuid);
    }
    let mut payload = 0usize;
    for t in req.targets {
        if t.target_type.is_empty() || t.target_type.len() >= MAX_TYPE_NAME || t.target_type.contains('\0') {
            return Err(EncodeError::BadTargetType);
        }
        if t.params.contains('\0') {
            return Err(EncodeError::NulInParams);
        }
        payload += align8(TARGET_SPEC_SIZE + t.params.len() + 1);
    }
    let size = HEADER_SIZE + payload.max(req.reply_space);
    let mut buf = Zeroizing::new(vec![0u8; size]);
    for (i, v) in INTERFACE_VERSION.iter().enumerate() {
        put_u32(&mut buf, OFF_VERSION + 4 * i, *v);
    }
    put_u32(&mut buf, OFF_DATA_SIZE, u32_field(size)?);
    put_u32(&mut buf, OFF_DATA_START, HEADER_SIZE_U32);
    put_u32(&mut buf, OFF_TARGET_COUNT, u32_field(req.targets.len())?);
    put_u32(&mut buf, OFF_FLAGS, req.flags);
    buf[OFF_NAME..OFF_NAME + req.name.len()].copy_from_slice(req.name.as_bytes());
    buf[OFF_UUID..OFF_UUID + req.uuid.len()].copy_from_slice(req.uuid.as_bytes());
    let mut at = HEADER_SIZE;
    for t in req.targets {
        let len = align8(TARGET_SPEC_SIZE + t.params.len() + 1);
        put_u64(&mut buf, at, t.sector_start);
        put_u64(&mut buf, at + 8, t.length);
        // status (s32) at +16 stays 0
        put_u32(&mut buf, at + 20, u32_field(len)?);
        buf[at + 24..at + 24 + t.target_type.len()].copy_from_slice(t.target_type.as_bytes());
        let p = at + TARGET_SPEC_SIZE;
        buf[p..p + t.params.len()].copy_from_slice(t.params.as_bytes());
        at += len;
    }
    Ok(buf)
}

/// The fixed part of a reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub version: [u32; 3],
    pub data_size: u32,
    pub data_start: u32,
    pub target_count: u32,
    pub open_count: i32,
    pub flags: u32,
    pub event_nr: u32,
    pub dev: DevId,
}

/// Decodes the header of the kernel's answer in `buf`.
pub fn decode_header(buf: &[u8]) -> Result<Reply, EncodeError> {
    if buf.len() < HEADER_SIZE {
        return Err(EncodeError::BadReply("shorter than the header"));
    }
    Ok(Reply {
        version: [get_u32(buf, 0), get_u32(buf, 4), get_u32(buf, 8)],
        data_size: get_u32(buf, OFF_DATA_SIZE),
        data_start: get_u32(buf, OFF_DATA_START),
        target_count: get_u32(buf, OFF_TARGET_COUNT),
        open_count: get_u32(buf, OFF_OPEN_COUNT).cast_signed(),
        flags: get_u32(buf, OFF_FLAGS),
        event_nr: get_u32(buf, OFF_EVENT_NR),
        dev: DevId::decode(get_u64(buf, OFF_DEV)),
    })
}

/// One target of a `DM_TABLE_STATUS` answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetStatus {
    pub sector_start: u64,
    pub length: u64,
    pub target_type: String,
    pub status: String,
}

/// Parses the targets of a `DM_TABLE_STATUS` answer. There `next` counts
/// from the first spec (dm-ioctl.h), unlike in a table load. Every offset
/// is checked against the buffer actually held, never trusted.
pub fn decode_status(buf: &[u8]) -> Result<Vec<TargetStatus>, EncodeError> {
    let reply = decode_header(buf)?;
    if reply.flags & BUFFER_FULL_FLAG != 0 {
        return Err(EncodeError::ReplyTooLarge(buf.len()));
    }
    let start = reply.data_start as usize;
    let end = reply.data_size as usize;
    if start < HEADER_SIZE || end > buf.len() || start > end {
        return Err(EncodeError::BadReply("data_start/data_size outside the buffer"));
    }
    if reply.target_count > 64 {
        return Err(EncodeError::BadReply("implausible target count"));
    }
    let area = &buf[start..end];
    let mut out = Vec::new();
    let mut at = 0usize;
    for i in 0..reply.target_count {
        if at.checked_add(TARGET_SPEC_SIZE).is_none_or(|e| e > area.len()) {
            return Err(EncodeError::BadReply("target spec beyond data_size"));
        }
        let spec = &area[at..at + TARGET_SPEC_SIZE];
        let target_type = c_str(&spec[24..40]).ok_or(EncodeError::BadReply("target type not terminated"))?;
        let text = &area[at + TARGET_SPEC_SIZE..];
        let status = c_str(text).ok_or(EncodeError::BadReply("status string not terminated"))?;
        out.push(TargetStatus { sector_start: get_u64(spec, 0), length: get_u64(spec, 8), target_type, status });
        if i + 1 < reply.target_count {
            let next = get_u32(spec, 20) as usize;
            if next <= at {
                return Err(EncodeError::BadReply("next does not move forward"));
            }
            at = next;
        }
    }
    Ok(out)
}

/// The UTF-8 text before the first NUL of `b`; `None` without a NUL.
fn c_str(b: &[u8]) -> Option<String> {
    let n = b.iter().position(|&c| c == 0)?;
    Some(String::from_utf8_lossy(&b[..n]).into_owned())
}

/// A failed ioctl: which command, on which device, and the errno.
#[derive(Debug, thiserror::Error)]
pub enum DmError {
    #[error("cannot open {path}: {source}")]
    Control {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{cmd} {name}: {source} (the kernel log names the reason)")]
    Ioctl {
        cmd: &'static str,
        name: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{cmd} {name}: {source}")]
    Encode {
        cmd: &'static str,
        name: String,
        #[source]
        source: EncodeError,
    },
}

/// The operations the volume code needs; the real one is [`Control`],
/// tests substitute a recorder.
pub trait DeviceMapper {
    fn version(&mut self) -> Result<[u32; 3], DmError>;
    /// Creates a device with no table (suspended); returns its number.
    fn create(&mut self, name: &str, uuid: &str, read_only: bool) -> Result<DevId, DmError>;
    /// Loads the inactive table. `secure` makes the kernel wipe its buffers.
    fn load(&mut self, name: &str, target: &Target<'_>, read_only: bool, secure: bool) -> Result<(), DmError>;
    /// Swaps the loaded table in and lets I/O through.
    fn resume(&mut self, name: &str) -> Result<(), DmError>;
    fn remove(&mut self, name: &str) -> Result<(), DmError>;
    /// The `INFO` status of each target (never the table, which holds keys).
    fn status(&mut self, name: &str) -> Result<Vec<TargetStatus>, DmError>;
}

/// `/dev/mapper/control`.
pub struct Control {
    file: File,
}

/// Room for status answers; a verity or crypt status line is tens of bytes.
const STATUS_SPACE: usize = 16 << 10;

impl Control {
    pub fn open(path: &Path) -> Result<Control, DmError> {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .map_err(|source| DmError::Control { path: path.display().to_string(), source })?;
        Ok(Control { file })
    }

    fn call(&mut self, cmd: Command, req: &Request<'_>) -> Result<Zeroizing<Vec<u8>>, DmError> {
        let name = req.name.to_string();
        let mut buf = encode(req).map_err(|source| DmError::Encode { cmd: cmd.name(), name: name.clone(), source })?;
        // SAFETY: `buf` is a live, exclusively borrowed buffer of
        // `data_size` bytes (written into its header by `encode`), which is
        // all the kernel reads or writes for these commands.
        let rc = unsafe { libc::ioctl(self.file.as_raw_fd(), cmd.request() as _, buf.as_mut_ptr()) };
        if rc < 0 {
            return Err(DmError::Ioctl { cmd: cmd.name(), name, source: std::io::Error::last_os_error() });
        }
        // `buf` is Zeroizing: dropped answers are wiped.
        Ok(buf)
    }

    fn header(cmd: Command, name: &str, buf: &[u8]) -> Result<Reply, DmError> {
        decode_header(buf).map_err(|source| DmError::Encode { cmd: cmd.name(), name: name.to_string(), source })
    }
}

impl DeviceMapper for Control {
    fn version(&mut self) -> Result<[u32; 3], DmError> {
        let req = Request { name: "", uuid: "", flags: 0, targets: &[], reply_space: 0 };
        let buf = self.call(Command::Version, &req)?;
        Ok(Self::header(Command::Version, "", &buf)?.version)
    }

    fn create(&mut self, name: &str, uuid: &str, read_only: bool) -> Result<DevId, DmError> {
        let flags = if read_only { READONLY_FLAG } else { 0 };
        let req = Request { name, uuid, flags, targets: &[], reply_space: 0 };
        let buf = self.call(Command::DevCreate, &req)?;
        Ok(Self::header(Command::DevCreate, name, &buf)?.dev)
    }

    fn load(&mut self, name: &str, target: &Target<'_>, read_only: bool, secure: bool) -> Result<(), DmError> {
        let flags = if read_only { READONLY_FLAG } else { 0 } | if secure { SECURE_DATA_FLAG } else { 0 };
        let req = Request { name, uuid: "", flags, targets: std::slice::from_ref(target), reply_space: 0 };
        self.call(Command::TableLoad, &req).map(drop)
    }

    fn resume(&mut self, name: &str) -> Result<(), DmError> {
        let req = Request { name, uuid: "", flags: 0, targets: &[], reply_space: 0 };
        self.call(Command::DevSuspend, &req).map(drop)
    }

    fn remove(&mut self, name: &str) -> Result<(), DmError> {
        let req = Request { name, uuid: "", flags: 0, targets: &[], reply_space: 0 };
        self.call(Command::DevRemove, &req).map(drop)
    }

    fn status(&mut self, name: &str) -> Result<Vec<TargetStatus>, DmError> {
        let req = Request { name, uuid: "", flags: 0, targets: &[], reply_space: STATUS_SPACE };
        let buf = self.call(Command::TableStatus, &req)?;
        decode_status(&buf).map_err(|source| DmError::Encode { cmd: "DM_TABLE_STATUS", name: name.to_string(), source })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ioctl_numbers_match_the_kernel() {
        // Verified on 6.12: DM_VERSION returned 4.48.0 through 0xC138FD00.
        assert_eq!(Command::Version.request(), 0xC138_FD00);
        assert_eq!(Command::DevCreate.request(), 0xC138_FD03);
        assert_eq!(Command::DevRemove.request(), 0xC138_FD04);
        assert_eq!(Command::DevSuspend.request(), 0xC138_FD06);
        assert_eq!(Command::TableLoad.request(), 0xC138_FD09);
        assert_eq!(Command::TableStatus.request(), 0xC138_FD0C);
        assert_eq!(SECURE_DATA_FLAG, 0x8000);
        assert_eq!(READONLY_FLAG, 1);
        assert_eq!(SUSPEND_FLAG, 2);
        assert_eq!(BUFFER_FULL_FLAG, 0x100);
    }

    #[test]
    fn header_layout_matches_struct_dm_ioctl() {
        // name[128] then uuid[129] then data[7] close the 312-byte struct.
        assert_eq!(OFF_UUID, 176);
        assert_eq!(OFF_UUID + UUID_LEN + 7, HEADER_SIZE);
        let req = Request { name: "model", uuid: "ZTINIT-model", flags: READONLY_FLAG, targets: &[], reply_space: 0 };
        let buf = encode(&req).unwrap();
        assert_eq!(buf.len(), HEADER_SIZE);
        assert_eq!(get_u32(&buf, 0), 4);
        assert_eq!(get_u32(&buf, 4), 0);
        assert_eq!(get_u32(&buf, OFF_DATA_SIZE), 312);
        assert_eq!(get_u32(&buf, OFF_DATA_START), 312);
        assert_eq!(get_u32(&buf, OFF_TARGET_COUNT), 0);
        assert_eq!(get_u32(&buf, OFF_FLAGS), 1);
        assert_eq!(&buf[48..54], b"model\0");
        assert_eq!(&buf[176..189], b"ZTINIT-model\0");
    }

    #[test]
    fn names_and_uuids_are_bounded() {
        let long = "a".repeat(NAME_LEN);
        let ok = "a".repeat(NAME_LEN - 1);
        let enc = |name: &str, uuid: &str| encode(&Request { name, uuid, flags: 0, targets: &[], reply_space: 0 });
        assert_eq!(enc(&long, "").err(), Some(EncodeError::BadName));
        let buf = enc(&ok, "").unwrap();
        assert_eq!(buf[OFF_NAME + NAME_LEN - 1], 0, "the name keeps its NUL");
        assert_eq!(enc("a/b", "").err(), Some(EncodeError::BadName));
        assert_eq!(enc("a\0b", "").err(), Some(EncodeError::BadName));
        assert_eq!(enc("a", &"u".repeat(UUID_LEN)).err(), Some(EncodeError::BadUuid));
        let buf = enc("a", &"u".repeat(UUID_LEN - 1)).unwrap();
        assert_eq!(buf[OFF_UUID + UUID_LEN - 1], 0);
        assert_eq!(buf[OFF_UUID - 1], 0, "the uuid does not spill into the name");
    }

    #[test]
    fn table_specs_are_packed_with_relative_next_and_8_byte_alignment() {
        let targets = [
            Target { sector_start: 0, length: 8, target_type: "verity", params: "abc" },
            Target { sector_start: 8, length: 16, target_type: "crypt", params: "0123456789" },
        ];
        let req = Request { name: "m", uuid: "", flags: SECURE_DATA_FLAG, targets: &targets, reply_space: 0 };
        let buf = encode(&req).unwrap();
        // 40 + 4 ("abc\0") = 44 -> 48; 40 + 11 = 51 -> 56.
        assert_eq!(buf.len(), HEADER_SIZE + 48 + 56);
        assert_eq!(get_u32(&buf, OFF_DATA_SIZE) as usize, buf.len());
        assert_eq!(get_u32(&buf, OFF_TARGET_COUNT), 2);
        assert_eq!(get_u32(&buf, OFF_FLAGS), SECURE_DATA_FLAG);
        let s0 = HEADER_SIZE;
        assert_eq!(get_u64(&buf, s0), 0);
        assert_eq!(get_u64(&buf, s0 + 8), 8);
        assert_eq!(get_u32(&buf, s0 + 16), 0, "status");
        assert_eq!(get_u32(&buf, s0 + 20), 48, "next is relative to this spec");
        assert_eq!(&buf[s0 + 24..s0 + 31], b"verity\0");
        assert_eq!(&buf[s0 + 40..s0 + 44], b"abc\0");
        let s1 = s0 + 48;
        assert_eq!(s1 % 8, 0);
        assert_eq!(get_u64(&buf, s1), 8);
        assert_eq!(get_u64(&buf, s1 + 8), 16);
        assert_eq!(&buf[s1 + 24..s1 + 30], b"crypt\0");
        assert_eq!(&buf[s1 + 40..s1 + 51], b"0123456789\0");
        assert!(buf[s1 + 51..].iter().all(|&b| b == 0));
    }

    #[test]
    fn bad_targets_are_refused() {
        let enc = |t: Target<'_>| {
            encode(&Request { name: "m", uuid: "", flags: 0, targets: std::slice::from_ref(&t), reply_space: 0 })
        };
        let t = |target_type, params| Target { sector_start: 0, length: 1, target_type, params };
        assert_eq!(enc(t("", "x")).err(), Some(EncodeError::BadTargetType));
        assert_eq!(enc(t("0123456789abcdef", "x")).err(), Some(EncodeError::BadTargetType));
        assert!(enc(t("0123456789abcde", "x")).is_ok());
        assert_eq!(enc(t("crypt", "a\0b")).err(), Some(EncodeError::NulInParams));
    }

    #[test]
    fn dev_numbers_round_trip_huge_encode_dev() {
        // 253:0 -> 0xfd00; 253:300 -> minor bits above 8 go to bits 20+.
        assert_eq!(DevId::decode(0xfd00), DevId { major: 253, minor: 0 });
        let d = DevId { major: 253, minor: 300 };
        assert_eq!(d.encode(), 0x10_fd2c);
        assert_eq!(DevId::decode(d.encode()), d);
        assert_eq!(DevId { major: 252, minor: 1 }.to_string(), "252:1");
    }

    /// A status answer laid out as `retrieve_status` writes it.
    fn status_reply(targets: &[(&str, &str)], space: usize) -> Vec<u8> {
        let mut buf = vec![0u8; HEADER_SIZE + space];
        let mut at = 0usize;
        for (i, (ty, st)) in targets.iter().enumerate() {
            let p = HEADER_SIZE + at;
            put_u64(&mut buf, p, i as u64 * 8);
            put_u64(&mut buf, p + 8, 8);
            buf[p + 24..p + 24 + ty.len()].copy_from_slice(ty.as_bytes());
            buf[p + 40..p + 40 + st.len()].copy_from_slice(st.as_bytes());
            at = align8(at + TARGET_SPEC_SIZE + st.len() + 1);
            put_u32(&mut buf, p + 20, u32::try_from(at).unwrap());
        }
        put_u32(&mut buf, OFF_DATA_START, HEADER_SIZE_U32);
        put_u32(&mut buf, OFF_DATA_SIZE, u32::try_from(HEADER_SIZE + at).unwrap());
        put_u32(&mut buf, OFF_TARGET_COUNT, u32::try_from(targets.len()).unwrap());
        buf
    }

    #[test]
    fn status_replies_are_parsed() {
        let buf = status_reply(&[("verity", "V"), ("crypt", "")], 256);
        let st = decode_status(&buf).unwrap();
        assert_eq!(st.len(), 2);
        assert_eq!(st[0].target_type, "verity");
        assert_eq!(st[0].status, "V");
        assert_eq!(st[1].target_type, "crypt");
        assert_eq!(st[1].sector_start, 8);
        assert_eq!(st[1].status, "");
    }

    #[test]
    fn hostile_status_replies_are_refused() {
        let good = status_reply(&[("verity", "V")], 64);
        let mut b = good.clone();
        put_u32(&mut b, OFF_DATA_SIZE, u32::MAX);
        assert_eq!(decode_status(&b).err(), Some(EncodeError::BadReply("data_start/data_size outside the buffer")));
        let mut b = good.clone();
        put_u32(&mut b, OFF_DATA_START, 8);
        assert_eq!(decode_status(&b).err(), Some(EncodeError::BadReply("data_start/data_size outside the buffer")));
        let mut b = good.clone();
        put_u32(&mut b, OFF_TARGET_COUNT, 2);
        put_u32(&mut b, HEADER_SIZE + 20, 0);
        assert_eq!(decode_status(&b).err(), Some(EncodeError::BadReply("next does not move forward")));
        let mut b = good.clone();
        put_u32(&mut b, OFF_TARGET_COUNT, 2);
        put_u32(&mut b, HEADER_SIZE + 20, 1 << 30);
        assert_eq!(decode_status(&b).err(), Some(EncodeError::BadReply("target spec beyond data_size")));
        let mut b = good.clone();
        put_u32(&mut b, OFF_TARGET_COUNT, 1000);
        assert_eq!(decode_status(&b).err(), Some(EncodeError::BadReply("implausible target count")));
        // A status string running to the end of data_size without a NUL.
        let mut b = good.clone();
        let end = get_u32(&b, OFF_DATA_SIZE) as usize;
        b[HEADER_SIZE + 40..end].fill(b'x');
        assert_eq!(decode_status(&b).err(), Some(EncodeError::BadReply("status string not terminated")));
        let mut b = good.clone();
        b[HEADER_SIZE + 24..HEADER_SIZE + 40].fill(b'x');
        assert_eq!(decode_status(&b).err(), Some(EncodeError::BadReply("target type not terminated")));
        let mut b = good;
        put_u32(&mut b, OFF_FLAGS, BUFFER_FULL_FLAG);
        assert_eq!(decode_status(&b).err(), Some(EncodeError::ReplyTooLarge(HEADER_SIZE + 64)));
        assert_eq!(decode_status(&[0u8; 100]).err(), Some(EncodeError::BadReply("shorter than the header")));
    }
}
