//! `/dev/tdx_guest`: the TDREPORT through `TDX_CMD_GET_REPORT0`.
//!
//! The ioctl goes through [`TdxGuest`] so that tests can stand in for the
//! kernel at exactly this interface, as [`super::super::tsm::ConfigFs`] does
//! for configfs-tsm; [`RealTdxGuest`] is the kernel.

use std::io;
use std::os::fd::AsRawFd;
use std::path::Path;

use super::report::TDREPORT_LEN;
use crate::tee::REPORT_DATA_LEN;

/// The device's name under the device directory.
pub const DEVICE: &str = "tdx_guest";

/// `struct tdx_report_req` (include/uapi/linux/tdx-guest.h).
#[repr(C)]
struct TdxReportReq {
    reportdata: [u8; REPORT_DATA_LEN],
    tdreport: [u8; TDREPORT_LEN],
}

/// `_IOWR('T', 1, struct tdx_report_req)`: direction read|write (3) in bits
/// 30–31, the argument size in bits 16–29, the type and the number below.
// The request struct is 1088 bytes: its size fits the ioctl's 14-bit field.
#[allow(clippy::cast_possible_truncation)]
pub const TDX_CMD_GET_REPORT0: u32 = (3 << 30) | ((size_of::<TdxReportReq>() as u32) << 16) | ((b'T' as u32) << 8) | 1;

/// `TDX_CMD_GET_REPORT0` with the kernel's semantics.
pub trait TdxGuest: Send + Sync {
    /// The TDREPORT_STRUCT that `device` returns for `report_data`, exactly
    /// as answered (the caller checks its length and content).
    fn get_report0(&self, device: &Path, report_data: &[u8; REPORT_DATA_LEN]) -> io::Result<Vec<u8>>;
}

/// The kernel's TDX guest driver.
#[derive(Debug, Default, Clone, Copy)]
pub struct RealTdxGuest;

impl TdxGuest for RealTdxGuest {
    fn get_report0(&self, device: &Path, report_data: &[u8; REPORT_DATA_LEN]) -> io::Result<Vec<u8>> {
        // std opens with O_CLOEXEC; no O_CREAT, so a missing node stays missing.
        let file = std::fs::OpenOptions::new().read(true).write(true).open(device)?;
        let mut req = Box::new(TdxReportReq { reportdata: *report_data, tdreport: [0; TDREPORT_LEN] });
        let arg: *mut TdxReportReq = &mut *req;
        // SAFETY: `file` is an open descriptor for the whole call; `arg`
        // points at a live, exclusively borrowed `struct tdx_report_req`
        // (repr(C), the size encoded in the request number), which the
        // kernel reads 64 bytes from and writes 1024 bytes into, and nothing
        // else. On a node that is not the TDX driver the kernel refuses the
        // unknown request (ENOTTY) without touching the buffer.
        let rc = unsafe { libc::ioctl(file.as_raw_fd(), TDX_CMD_GET_REPORT0 as _, arg) };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(req.tdreport.to_vec())
    }
}
