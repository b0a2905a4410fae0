//! Intel DCAP quotes, versions 4 and 5, for TDX (tee_type 0x81).
//!
//! Layout (Intel TDX DCAP Quoting Library API, appendix A; the same offsets
//! as Trustee's `deps/verifier/src/intel_dcap/quote.rs`):
//!
//! ```text
//! v4: header(48) ‖ TD report 1.0 (584)            ‖ sig_len u32 ‖ signature data
//! v5: header(48) ‖ type u16 ‖ size u32 ‖ body(584|648) ‖ sig_len u32 ‖ signature data
//! ```
//!
//! The signature data (ECDSA-P256 attestation key) is
//! `sig(64) ‖ attestation key(64) ‖ cert type u16 = 6 ‖ size u32 ‖
//! QE report(384) ‖ QE report sig(64) ‖ auth len u16 ‖ auth ‖ cert type u16 = 5 ‖ size u32 ‖ PCK chain (PEM)`.
//!
//! The parser is hand-written and bounded: every length is checked against
//! what is left, nothing is trusted, nothing panics.

use crate::bytes::{ByteReader, Truncated};

/// Largest quote accepted (configfs-tsm caps outblob at 32 KiB).
pub const MAX_QUOTE_LEN: usize = 32 << 10;
pub const HEADER_LEN: usize = 48;
pub const TD_REPORT10_LEN: usize = 584;
pub const TD_REPORT15_LEN: usize = 648;
/// `tee_type` of TDX (SGX is 0).
pub const TEE_TYPE_TDX: u32 = 0x81;
/// ECDSA-256-with-P-256 attestation key.
pub const ATT_KEY_ECDSA_P256: u16 = 2;
/// Offset of REPORTDATA inside a TD report body.
pub const BODY_REPORT_DATA_OFFSET: usize = 520;
/// TDATTRIBUTES.DEBUG (bit 0): the host can read TD memory.
pub const TD_ATTR_DEBUG: u64 = 1 << 0;
/// TDATTRIBUTES.SEPT_VE_DISABLE (bit 28).
pub const TD_ATTR_SEPT_VE_DISABLE: u64 = 1 << 28;
const CERT_DATA_QE_REPORT: u16 = 6;
const CERT_DATA_PCK_CHAIN: u16 = 5;
/// SGX report body of the Quoting Enclave.
pub const QE_REPORT_LEN: usize = 384;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QuoteError {
    #[error("quote is truncated: {0}")]
    Truncated(#[from] Truncated),
    #[error("quote is oversized: {0} bytes (at most {MAX_QUOTE_LEN})")]
    Oversized(usize),
    #[error("quote version {0} is not supported (4 or 5)")]
    UnsupportedVersion(u16),
    #[error("attestation key type {0} is not supported (2 = ECDSA-P256)")]
    UnsupportedKeyType(u16),
    #[error("tee_type {0:#x} is not TDX (0x81)")]
    NotTdx(u32),
    #[error("v5 body type {0} is not a TD report (2 = TDX 1.0, 3 = TDX 1.5)")]
    UnsupportedBodyType(u16),
    #[error("v5 body type {body_type} declares {size} bytes, expected {expected}")]
    BodySize { body_type: u16, size: u32, expected: usize },
    #[error("certification data type {0} is not supported (expected {1})")]
    CertDataType(u16, u16),
}

/// Which TD report layout the quote carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyKind {
    Tdx10,
    Tdx15,
}

/// The TD report body: the measurements a verifier cares about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TdReport {
    pub tee_tcb_svn: [u8; 16],
    pub mr_seam: [u8; 48],
    pub mrsigner_seam: [u8; 48],
    pub seam_attributes: [u8; 8],
    pub td_attributes: [u8; 8],
    pub xfam: [u8; 8],
    pub mr_td: [u8; 48],
    pub mr_config_id: [u8; 48],
    pub mr_owner: [u8; 48],
    pub mr_owner_config: [u8; 48],
    pub rtmr: [[u8; 48]; 4],
    pub report_data: [u8; 64],
    /// TDX 1.5 only.
    pub tee_tcb_svn2: Option<[u8; 16]>,
    /// TDX 1.5 only.
    pub mr_servicetd: Option<[u8; 48]>,
}

impl TdReport {
    pub fn attributes(&self) -> u64 {
        u64::from_le_bytes(self.td_attributes)
    }

    pub fn debug(&self) -> bool {
        self.attributes() & TD_ATTR_DEBUG != 0
    }
}

/// A parsed quote; slices borrow from the input.
#[derive(Debug, Clone)]
pub struct Quote<'a> {
    pub version: u16,
    pub att_key_type: u16,
    pub tee_type: u32,
    pub qe_vendor_id: [u8; 16],
    pub user_data: [u8; 20],
    pub body_kind: BodyKind,
    pub body: TdReport,
    /// Header through body: the bytes the attestation key signs.
    pub signed: &'a [u8],
    pub signature_data: &'a [u8],
    /// Bytes after the signature data (Azure's quotes have zero padding).
    pub trailing: usize,
}

/// The ECDSA-P256 signature data with its QE report certification data.
#[derive(Debug, Clone)]
pub struct SignatureData<'a> {
    /// r ‖ s, big-endian.
    pub signature: &'a [u8],
    /// Raw x ‖ y of the P-256 attestation key.
    pub attestation_key: &'a [u8],
    pub qe_report: &'a [u8],
    pub qe_report_signature: &'a [u8],
    pub qe_auth_data: &'a [u8],
    /// PEM: PCK leaf, intermediate CA, root CA.
    pub pck_chain: &'a [u8],
}

/// Parses and checks the structure of a TDX quote.
pub fn parse(bytes: &[u8]) -> Result<Quote<'_>, QuoteError> {
    if bytes.len() > MAX_QUOTE_LEN {
        return Err(QuoteError::Oversized(bytes.len()));
    }
    let mut r = ByteReader::new(bytes);
    let version = r.u16("header.version")?;
    if version != 4 && version != 5 {
        return Err(QuoteError::UnsupportedVersion(version));
    }
    let att_key_type = r.u16("header.att_key_type")?;
    if att_key_type != ATT_KEY_ECDSA_P256 {
        return Err(QuoteError::UnsupportedKeyType(att_key_type));
    }
    let tee_type = r.u32("header.tee_type")?;
    if tee_type != TEE_TYPE_TDX {
        return Err(QuoteError::NotTdx(tee_type));
    }
    r.take(4, "header.reserved")?;
    let qe_vendor_id = r.array("header.qe_vendor_id")?;
    let user_data = r.array("header.user_data")?;

    let body_kind = if version == 4 {
        BodyKind::Tdx10
    } else {
        let body_type = r.u16("v5 body type")?;
        let size = r.u32("v5 body size")?;
        let (kind, expected) = match body_type {
            2 => (BodyKind::Tdx10, TD_REPORT10_LEN),
            3 => (BodyKind::Tdx15, TD_REPORT15_LEN),
            other => return Err(QuoteError::UnsupportedBodyType(other)),
        };
        if size as usize != expected {
            return Err(QuoteError::BodySize { body_type, size, expected });
        }
        kind
    };
    let body = parse_body(&mut r, body_kind)?;
    let signed = &bytes[..r.pos()];
    let sig_len = r.u32("signature data length")? as usize;
    let signature_data = r.take(sig_len, "signature data")?;
    let trailing = r.rest().len();
    Ok(Quote {
        version,
        att_key_type,
        tee_type,
        qe_vendor_id,
        user_data,
        body_kind,
        body,
        signed,
        signature_data,
        trailing,
    })
}

fn parse_body(r: &mut ByteReader<'_>, kind: BodyKind) -> Result<TdReport, QuoteError> {
    let tee_tcb_svn = r.array("body.tee_tcb_svn")?;
    let mr_seam = r.array("body.mr_seam")?;
    let mrsigner_seam = r.array("body.mrsigner_seam")?;
    let seam_attributes = r.array("body.seam_attributes")?;
    let td_attributes = r.array("body.td_attributes")?;
    let xfam = r.array("body.xfam")?;
    let mr_td = r.array("body.mr_td")?;
    let mr_config_id = r.array("body.mr_config_id")?;
    let mr_owner = r.array("body.mr_owner")?;
    let mr_owner_config = r.array("body.mr_owner_config")?;
    let rtmr = [r.array("body.rtmr0")?, r.array("body.rtmr1")?, r.array("body.rtmr2")?, r.array("body.rtmr3")?];
    let report_data = r.array("body.report_data")?;
    let (tee_tcb_svn2, mr_servicetd) = match kind {
        BodyKind::Tdx10 => (None, None),
        BodyKind::Tdx15 => (Some(r.array("body.tee_tcb_svn2")?), Some(r.array("body.mr_servicetd")?)),
    };
    Ok(TdReport {
        tee_tcb_svn,
        mr_seam,
        mrsigner_seam,
        seam_attributes,
        td_attributes,
        xfam,
        mr_td,
        mr_config_id,
        mr_owner,
        mr_owner_config,
        rtmr,
        report_data,
        tee_tcb_svn2,
        mr_servicetd,
    })
}

impl<'a> Quote<'a> {
    /// Splits the signature data (only the verifier needs this).
    pub fn signature_data(&self) -> Result<SignatureData<'a>, QuoteError> {
        let mut r = ByteReader::new(self.signature_data);
        let signature = r.take(64, "quote signature")?;
        let attestation_key = r.take(64, "attestation key")?;
        let outer_type = r.u16("certification data type")?;
        if outer_type != CERT_DATA_QE_REPORT {
            return Err(QuoteError::CertDataType(outer_type, CERT_DATA_QE_REPORT));
        }
        let outer_len = r.u32("certification data size")? as usize;
        let mut q = ByteReader::new(r.take(outer_len, "certification data")?);
        let qe_report = q.take(QE_REPORT_LEN, "QE report")?;
        let qe_report_signature = q.take(64, "QE report signature")?;
        let auth_len = q.u16("QE auth data size")? as usize;
        let qe_auth_data = q.take(auth_len, "QE auth data")?;
        let inner_type = q.u16("PCK certification data type")?;
        if inner_type != CERT_DATA_PCK_CHAIN {
            return Err(QuoteError::CertDataType(inner_type, CERT_DATA_PCK_CHAIN));
        }
        let chain_len = q.u32("PCK chain size")? as usize;
        let pck_chain = q.take(chain_len, "PCK chain")?;
        Ok(SignatureData { signature, attestation_key, qe_report, qe_report_signature, qe_auth_data, pck_chain })
    }
}
