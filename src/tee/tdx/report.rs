//! The TDREPORT: what the TDX module itself says about this TD.
//!
//! The quote that configfs-tsm returns is built by the host's quote
//! generation service, and the guest cannot check its signature (that is
//! the KBS's job). Before ztinit uses or sends a quote it therefore asks the
//! TDX module for a TDREPORT (`TDG.MR.REPORT`, through the kernel's
//! `TDX_CMD_GET_REPORT0` ioctl on `/dev/tdx_guest`) with the same
//! REPORTDATA and requires the quote body to describe exactly that report.
//! The host cannot forge the TDREPORT: the call goes from the guest kernel
//! to the TDX module without passing the VMM.
//!
//! Layout of `TDREPORT_STRUCT` (1024 bytes; Intel TDX module ABI; the same
//! offsets as Linux `tools/testing/selftests/tdx/tdx_guest_test.c` and the
//! DCAP `sgx_report2_t` that Intel's TD quoting enclave reads):
//!
//! ```text
//!   0  REPORTMACSTRUCT (256): REPORTTYPE 4 (type 0x81 = TDX, subtype, version, reserved)
//!      ‖ reserved 12 ‖ CPUSVN 16 ‖ TEE_TCB_INFO_HASH 48 (@32) ‖ TEE_INFO_HASH 48 (@80)
//!      ‖ REPORTDATA 64 (@128) ‖ reserved 32 ‖ MAC 32
//! 256  TEE_TCB_INFO (239): VALID 8 ‖ TEE_TCB_SVN 16 (@264) ‖ MRSEAM 48 (@280)
//!      ‖ MRSIGNERSEAM 48 (@328) ‖ ATTRIBUTES 8 (@376) ‖ TEE_TCB_SVN2 16 (@384, TDX 1.5) ‖ reserved
//! 495  reserved 17
//! 512  TDINFO (512): ATTRIBUTES 8 ‖ XFAM 8 ‖ MRTD 48 (@528) ‖ MRCONFIGID 48 (@576)
//!      ‖ MROWNER 48 (@624) ‖ MROWNERCONFIG 48 (@672) ‖ RTMR0..3 4×48 (@720)
//!      ‖ SERVTD_HASH 48 (@912, TDX 1.5) ‖ reserved 64
//! ```
//!
//! The MAC is keyed by the CPU and cannot be checked in the guest; the two
//! hashes can, and are, the way Intel's quoting enclave checks them
//! (SHA-384 over the 239 bytes of TEE_TCB_INFO and the 512 bytes of TDINFO):
//! a garbled answer from the device is refused rather than compared.

use sha2::{Digest, Sha384};

use super::quote::TdReport as QuoteBody;
use crate::tee::REPORT_DATA_LEN;

/// Size of `TDREPORT_STRUCT`.
pub const TDREPORT_LEN: usize = 1024;
/// REPORTTYPE.TYPE of a TDX report (SGX is 0).
pub const REPORT_TYPE_TDX: u8 = 0x81;

const TEE_TCB_INFO_HASH: usize = 32;
const TEE_INFO_HASH: usize = 80;
const REPORT_DATA: usize = 128;
const TEE_TCB_INFO: usize = 256;
const TEE_TCB_INFO_LEN: usize = 239;
const TDINFO: usize = 512;
const TDINFO_LEN: usize = 512;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TdReportError {
    #[error("{0} bytes, expected {TDREPORT_LEN}")]
    Length(usize),
    #[error("REPORTTYPE.TYPE is {0:#x}, not TDX (0x81)")]
    NotTdx(u8),
    #[error("{hash} does not match the SHA-384 of {over}: the report is garbled")]
    Hash { hash: &'static str, over: &'static str },
}

/// The fields of a TDREPORT that a quote body repeats.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TdxReport {
    /// REPORTTYPE: type, subtype, version, reserved.
    pub report_type: [u8; 4],
    pub report_data: [u8; REPORT_DATA_LEN],
    pub tee_tcb_svn: [u8; 16],
    pub mr_seam: [u8; 48],
    pub mrsigner_seam: [u8; 48],
    pub seam_attributes: [u8; 8],
    pub tee_tcb_svn2: [u8; 16],
    pub td_attributes: [u8; 8],
    pub xfam: [u8; 8],
    pub mr_td: [u8; 48],
    pub mr_config_id: [u8; 48],
    pub mr_owner: [u8; 48],
    pub mr_owner_config: [u8; 48],
    pub rtmr: [[u8; 48]; 4],
    pub servtd_hash: [u8; 48],
}

fn at<const N: usize>(bytes: &[u8], offset: usize) -> [u8; N] {
    let mut out = [0u8; N];
    out.copy_from_slice(&bytes[offset..offset + N]);
    out
}

/// Parses a TDREPORT_STRUCT: exactly 1024 bytes, type TDX, both hashes of
/// the MAC structure consistent with the data they cover.
pub fn parse(bytes: &[u8]) -> Result<TdxReport, TdReportError> {
    if bytes.len() != TDREPORT_LEN {
        return Err(TdReportError::Length(bytes.len()));
    }
    if bytes[0] != REPORT_TYPE_TDX {
        return Err(TdReportError::NotTdx(bytes[0]));
    }
    let tcb_info = &bytes[TEE_TCB_INFO..TEE_TCB_INFO + TEE_TCB_INFO_LEN];
    if Sha384::digest(tcb_info)[..] != bytes[TEE_TCB_INFO_HASH..TEE_TCB_INFO_HASH + 48] {
        return Err(TdReportError::Hash { hash: "TEE_TCB_INFO_HASH", over: "TEE_TCB_INFO" });
    }
    let td_info = &bytes[TDINFO..TDINFO + TDINFO_LEN];
    if Sha384::digest(td_info)[..] != bytes[TEE_INFO_HASH..TEE_INFO_HASH + 48] {
        return Err(TdReportError::Hash { hash: "TEE_INFO_HASH", over: "TDINFO" });
    }
    Ok(TdxReport {
        report_type: at(bytes, 0),
        report_data: at(bytes, REPORT_DATA),
        tee_tcb_svn: at(bytes, TEE_TCB_INFO + 8),
        mr_seam: at(bytes, TEE_TCB_INFO + 24),
        mrsigner_seam: at(bytes, TEE_TCB_INFO + 72),
        seam_attributes: at(bytes, TEE_TCB_INFO + 120),
        tee_tcb_svn2: at(bytes, TEE_TCB_INFO + 128),
        td_attributes: at(bytes, TDINFO),
        xfam: at(bytes, TDINFO + 8),
        mr_td: at(bytes, TDINFO + 16),
        mr_config_id: at(bytes, TDINFO + 64),
        mr_owner: at(bytes, TDINFO + 112),
        mr_owner_config: at(bytes, TDINFO + 160),
        rtmr: [at(bytes, TDINFO + 208), at(bytes, TDINFO + 256), at(bytes, TDINFO + 304), at(bytes, TDINFO + 352)],
        servtd_hash: at(bytes, TDINFO + 400),
    })
}

impl TdxReport {
    pub fn attributes(&self) -> u64 {
        u64::from_le_bytes(self.td_attributes)
    }

    pub fn debug(&self) -> bool {
        self.attributes() & super::quote::TD_ATTR_DEBUG != 0
    }

    /// The bytes of a TDREPORT with these fields, the hashes filled in and
    /// everything else zero (CPUSVN, VALID, MAC). Tests only: no real
    /// TDREPORT exists for the public sample quotes, so the tests build the
    /// one the TDX module would have given for a quote's body.
    #[cfg(test)]
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut b = vec![0u8; TDREPORT_LEN];
        let mut put = |offset: usize, data: &[u8]| b[offset..offset + data.len()].copy_from_slice(data);
        put(0, &self.report_type);
        put(REPORT_DATA, &self.report_data);
        put(TEE_TCB_INFO + 8, &self.tee_tcb_svn);
        put(TEE_TCB_INFO + 24, &self.mr_seam);
        put(TEE_TCB_INFO + 72, &self.mrsigner_seam);
        put(TEE_TCB_INFO + 120, &self.seam_attributes);
        put(TEE_TCB_INFO + 128, &self.tee_tcb_svn2);
        put(TDINFO, &self.td_attributes);
        put(TDINFO + 8, &self.xfam);
        put(TDINFO + 16, &self.mr_td);
        put(TDINFO + 64, &self.mr_config_id);
        put(TDINFO + 112, &self.mr_owner);
        put(TDINFO + 160, &self.mr_owner_config);
        for (i, r) in self.rtmr.iter().enumerate() {
            put(TDINFO + 208 + 48 * i, r);
        }
        put(TDINFO + 400, &self.servtd_hash);
        let tcb_hash = Sha384::digest(&b[TEE_TCB_INFO..TEE_TCB_INFO + TEE_TCB_INFO_LEN]);
        let info_hash = Sha384::digest(&b[TDINFO..TDINFO + TDINFO_LEN]);
        b[TEE_TCB_INFO_HASH..TEE_TCB_INFO_HASH + 48].copy_from_slice(&tcb_hash);
        b[TEE_INFO_HASH..TEE_INFO_HASH + 48].copy_from_slice(&info_hash);
        b
    }

    /// The TDREPORT the TDX module gives for the TD a quote body describes.
    #[cfg(test)]
    pub fn from_quote_body(body: &QuoteBody) -> Self {
        Self {
            report_type: [REPORT_TYPE_TDX, 0, u8::from(body.mr_servicetd.is_some()), 0],
            report_data: body.report_data,
            tee_tcb_svn: body.tee_tcb_svn,
            mr_seam: body.mr_seam,
            mrsigner_seam: body.mrsigner_seam,
            seam_attributes: body.seam_attributes,
            tee_tcb_svn2: body.tee_tcb_svn2.unwrap_or_default(),
            td_attributes: body.td_attributes,
            xfam: body.xfam,
            mr_td: body.mr_td,
            mr_config_id: body.mr_config_id,
            mr_owner: body.mr_owner,
            mr_owner_config: body.mr_owner_config,
            rtmr: body.rtmr,
            servtd_hash: body.mr_servicetd.unwrap_or([0; 48]),
        }
    }
}

/// A quote body field that differs from the TDREPORT.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Difference {
    /// The field's name in Intel's documents (`MRCONFIGID`, `RTMR2`, ...).
    pub field: &'static str,
    pub quote: String,
    pub tdreport: String,
}

/// Compares a quote body with the TDREPORT; the first field that differs.
///
/// Every TDINFO field, REPORTDATA, TEE_TCB_SVN and MRSEAM must be equal:
/// Intel's TD quoting enclave copies them from the TDREPORT it was given.
/// MRSIGNERSEAM and SEAMATTRIBUTES (and, in a TDX 1.5 body, TEE_TCB_SVN2 and
/// MRSERVICETD) must be equal or all zero: the reference quoting enclave
/// zeroes the body before it copies fields and does not copy these. They
/// are zero for an Intel-signed TDX module anyway, and the KBS checks them
/// against Intel's TCB information; ztinit itself decides nothing on them.
pub fn compare(quote: &QuoteBody, report: &TdxReport) -> Result<(), Difference> {
    fn exact(field: &'static str, quote: &[u8], tdreport: &[u8]) -> Result<(), Difference> {
        if quote == tdreport {
            return Ok(());
        }
        // In full: a prefix could hide the differing bytes. These are
        // public measurement values, never secrets.
        Err(Difference { field, quote: hex::encode(quote), tdreport: hex::encode(tdreport) })
    }
    fn or_zero(field: &'static str, quote: &[u8], tdreport: &[u8]) -> Result<(), Difference> {
        if quote.iter().all(|&b| b == 0) { Ok(()) } else { exact(field, quote, tdreport) }
    }
    exact("REPORTDATA", &quote.report_data, &report.report_data)?;
    exact("TDATTRIBUTES", &quote.td_attributes, &report.td_attributes)?;
    exact("XFAM", &quote.xfam, &report.xfam)?;
    exact("MRTD", &quote.mr_td, &report.mr_td)?;
    exact("MRCONFIGID", &quote.mr_config_id, &report.mr_config_id)?;
    exact("MROWNER", &quote.mr_owner, &report.mr_owner)?;
    exact("MROWNERCONFIG", &quote.mr_owner_config, &report.mr_owner_config)?;
    const RTMR: [&str; 4] = ["RTMR0", "RTMR1", "RTMR2", "RTMR3"];
    for (i, name) in RTMR.into_iter().enumerate() {
        exact(name, &quote.rtmr[i], &report.rtmr[i])?;
    }
    exact("TEE_TCB_SVN", &quote.tee_tcb_svn, &report.tee_tcb_svn)?;
    exact("MRSEAM", &quote.mr_seam, &report.mr_seam)?;
    or_zero("MRSIGNERSEAM", &quote.mrsigner_seam, &report.mrsigner_seam)?;
    or_zero("SEAMATTRIBUTES", &quote.seam_attributes, &report.seam_attributes)?;
    if let Some(svn2) = &quote.tee_tcb_svn2 {
        or_zero("TEE_TCB_SVN2", svn2, &report.tee_tcb_svn2)?;
    }
    if let Some(servtd) = &quote.mr_servicetd {
        or_zero("MRSERVICETD", servtd, &report.servtd_hash)?;
    }
    Ok(())
}
