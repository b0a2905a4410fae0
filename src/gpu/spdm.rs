//! SPDM 1.1 GET_MEASUREMENTS transcripts as NVIDIA GPUs and NVSwitches return
//! them: the 37-byte request followed by the MEASUREMENTS response (DSP0274).
//!
//! Every length comes from the (hostile) bytes, so every read is bounded and
//! a short or inconsistent report is an error naming the field. Some real
//! reports carry bytes after the signature; the parser takes lengths from the
//! headers and never assumes the signature is the last 96 bytes.

use std::collections::BTreeMap;

use crate::bytes::{ByteReader, Truncated};

/// SPDM version byte for 1.1.
const SPDM_1_1: u8 = 0x11;
const GET_MEASUREMENTS: u8 = 0xE0;
const MEASUREMENTS: u8 = 0x60;
/// Size of the request: version, code, param1, param2, nonce, slot.
pub const REQUEST_LEN: usize = 4 + NONCE_LEN + 1;
pub const NONCE_LEN: usize = 32;
/// Raw ECDSA P-384 `r || s`.
pub const SIGNATURE_LEN: usize = 96;
/// Reports larger than NVML's buffer cannot be genuine.
pub const MAX_REPORT_LEN: usize = 0x2000;

/// Opaque data types (NVIDIA's SPDM opaque TLVs).
pub mod opaque {
    pub const CERT_ISSUER_NAME: u16 = 1;
    pub const CERT_AUTHORITY_KEY_ID: u16 = 2;
    pub const DRIVER_VERSION: u16 = 3;
    pub const GPU_INFO: u16 = 4;
    pub const SKU: u16 = 5;
    pub const VBIOS_VERSION: u16 = 6;
    pub const MANUFACTURER_ID: u16 = 7;
    pub const TAMPER_DETECTION: u16 = 8;
    pub const SMC: u16 = 9;
    pub const VPR: u16 = 10;
    pub const NVDEC0_STATUS: u16 = 11;
    pub const MEASUREMENT_COUNT: u16 = 12;
    pub const CPR_INFO: u16 = 13;
    pub const BOARD_ID: u16 = 14;
    pub const CHIP_SKU: u16 = 15;
    pub const CHIP_SKU_MOD: u16 = 16;
    pub const PROJECT: u16 = 17;
    pub const PROJECT_SKU: u16 = 18;
    pub const PROJECT_SKU_MOD: u16 = 19;
    pub const FWID: u16 = 20;
    pub const PROTECTED_PCIE_STATUS: u16 = 21;
    pub const SWITCH_PDIS: u16 = 22;
    pub const FLOORSWEPT_PORTS: u16 = 23;
    pub const POSITION_ID: u16 = 24;
    pub const LOCK_SWITCH_STATUS: u16 = 25;
    pub const GPU_LINK_CONN: u16 = 32;
    pub const SYS_ENABLE_STATUS: u16 = 33;
    pub const OPAQUE_DATA_VERSION: u16 = 34;
    pub const CHIP_INFO: u16 = 35;
    pub const FEATURE_FLAG: u16 = 36;
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpdmError {
    #[error("report is {0} bytes, more than the {MAX_REPORT_LEN} NVML can return")]
    TooLarge(usize),
    #[error("report is truncated: {0}")]
    Truncated(#[from] Truncated),
    #[error("request is not SPDM 1.1 GET_MEASUREMENTS (version {version:#04x}, code {code:#04x})")]
    BadRequest { version: u8, code: u8 },
    #[error("request does not ask for a signed measurement (param1 {0:#04x})")]
    UnsignedRequest(u8),
    #[error("response is not SPDM 1.1 MEASUREMENTS (version {version:#04x}, code {code:#04x})")]
    BadResponse { version: u8, code: u8 },
    #[error("measurement record is {record} bytes but its {blocks} blocks take {used}")]
    RecordLength { record: usize, blocks: usize, used: usize },
    #[error("measurement block {0} is not a DMTF measurement")]
    NotDmtf(u8),
    #[error("measurement block {index}: value size {value} does not fit its block size {block}")]
    BlockSize { index: u8, value: usize, block: usize },
    #[error("measurement block index {0} appears twice")]
    DuplicateBlock(u8),
    #[error("opaque data field {field} claims {len} bytes, only {left} left")]
    OpaqueField { field: u16, len: usize, left: usize },
    #[error("opaque data field {0} appears twice")]
    DuplicateOpaque(u16),
}

/// One DMTF measurement block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Measurement {
    /// 1-based SPDM index.
    pub index: u8,
    /// DMTF value type (bit 7: raw bitstream rather than digest).
    pub value_type: u8,
    pub value: Vec<u8>,
}

/// A parsed, not yet verified, report.
#[derive(Debug, Clone)]
pub struct Report {
    /// The nonce the requester sent (what binds the report to a session).
    pub request_nonce: [u8; NONCE_LEN],
    pub request_param1: u8,
    pub request_param2: u8,
    pub slot_id: u8,
    pub measurements: Vec<Measurement>,
    pub responder_nonce: [u8; NONCE_LEN],
    /// Opaque TLVs in order of appearance, unique by type.
    pub opaque: BTreeMap<u16, Vec<u8>>,
    pub signature: [u8; SIGNATURE_LEN],
    /// Request and response up to the signature: what the signature covers.
    pub signed_len: usize,
    /// Bytes after the signature (present in some genuine reports).
    pub trailing: usize,
}

impl Report {
    pub fn parse(bytes: &[u8]) -> Result<Report, SpdmError> {
        if bytes.len() > MAX_REPORT_LEN {
            return Err(SpdmError::TooLarge(bytes.len()));
        }
        let mut r = ByteReader::new(bytes);
        let version = r.u8("request version")?;
        let code = r.u8("request code")?;
        if version != SPDM_1_1 || code != GET_MEASUREMENTS {
            return Err(SpdmError::BadRequest { version, code });
        }
        let request_param1 = r.u8("request param1")?;
        let request_param2 = r.u8("request param2")?;
        if request_param1 & 1 == 0 {
            return Err(SpdmError::UnsignedRequest(request_param1));
        }
        let request_nonce = r.array::<NONCE_LEN>("request nonce")?;
        let slot_id = r.u8("request slot id")?;

        let version = r.u8("response version")?;
        let code = r.u8("response code")?;
        if version != SPDM_1_1 || code != MEASUREMENTS {
            return Err(SpdmError::BadResponse { version, code });
        }
        let _param1 = r.u8("response param1")?;
        let _param2 = r.u8("response param2")?;
        let blocks = usize::from(r.u8("number of blocks")?);
        let record_len = usize::try_from(r.u24("measurement record length")?).unwrap_or(usize::MAX);
        let record = r.take(record_len, "measurement record")?;
        let measurements = parse_blocks(record, blocks)?;
        let responder_nonce = r.array::<NONCE_LEN>("responder nonce")?;
        let opaque_len = usize::from(r.u16("opaque length")?);
        let opaque = parse_opaque(r.take(opaque_len, "opaque data")?)?;
        let signed_len = r.pos();
        let signature = r.array::<SIGNATURE_LEN>("signature")?;
        Ok(Report {
            request_nonce,
            request_param1,
            request_param2,
            slot_id,
            measurements,
            responder_nonce,
            opaque,
            signature,
            signed_len,
            trailing: r.rest().len(),
        })
    }

    pub fn opaque(&self, field: u16) -> Option<&[u8]> {
        self.opaque.get(&field).map(Vec::as_slice)
    }

    /// The driver version the GPU firmware reports (opaque field 3).
    pub fn driver_version(&self) -> Option<String> {
        self.opaque(opaque::DRIVER_VERSION).map(opaque_string)
    }

    /// The VBIOS version (opaque field 6) formatted as NVML prints it,
    /// e.g. `96.00.9F.00.01`.
    pub fn vbios_version(&self) -> Option<String> {
        self.opaque(opaque::VBIOS_VERSION).and_then(format_vbios_version)
    }

    /// FWID of the firmware that signed the report (opaque field 20), absent
    /// in reports of old drivers.
    pub fn fwid(&self) -> Option<&[u8]> {
        self.opaque(opaque::FWID)
    }

    /// Measurement values by 1-based index.
    pub fn measurement(&self, index: u8) -> Option<&Measurement> {
        self.measurements.iter().find(|m| m.index == index)
    }

    pub fn project(&self) -> Option<String> {
        self.opaque(opaque::PROJECT).map(opaque_string)
    }
    pub fn project_sku(&self) -> Option<String> {
        self.opaque(opaque::PROJECT_SKU).map(opaque_string)
    }
    pub fn chip_sku(&self) -> Option<String> {
        self.opaque(opaque::CHIP_SKU).map(opaque_string)
    }

    /// NVDEC0 status byte: `false` when the engine is disabled (0x55; 0xAA is enabled), which makes
    /// its measurement (RIM index 35) meaningless.
    pub fn nvdec0_enabled(&self) -> bool {
        !matches!(self.opaque(opaque::NVDEC0_STATUS), Some([0x55, ..]))
    }
}

fn parse_blocks(record: &[u8], blocks: usize) -> Result<Vec<Measurement>, SpdmError> {
    let mut r = ByteReader::new(record);
    let mut out: Vec<Measurement> = Vec::with_capacity(blocks);
    for _ in 0..blocks {
        let index = r.u8("measurement block index")?;
        let spec = r.u8("measurement block specification")?;
        let size = usize::from(r.u16("measurement block size")?);
        let body = r.take(size, "measurement block")?;
        if spec != 1 {
            return Err(SpdmError::NotDmtf(index));
        }
        let mut b = ByteReader::new(body);
        let value_type = b.u8("DMTF value type")?;
        let value_len = usize::from(b.u16("DMTF value size")?);
        if value_len + 3 != size {
            return Err(SpdmError::BlockSize { index, value: value_len, block: size });
        }
        let value = b.take(value_len, "DMTF value")?.to_vec();
        if out.iter().any(|m| m.index == index) {
            return Err(SpdmError::DuplicateBlock(index));
        }
        out.push(Measurement { index, value_type, value });
    }
    if !r.is_empty() {
        return Err(SpdmError::RecordLength { record: record.len(), blocks, used: r.pos() });
    }
    Ok(out)
}

fn parse_opaque(data: &[u8]) -> Result<BTreeMap<u16, Vec<u8>>, SpdmError> {
    let mut r = ByteReader::new(data);
    let mut out = BTreeMap::new();
    while !r.is_empty() {
        let field = r.u16("opaque field type")?;
        let len = usize::from(r.u16("opaque field length")?);
        let left = r.rest().len();
        let value = r.take(len, "opaque field").map_err(|_| SpdmError::OpaqueField { field, len, left })?;
        if out.insert(field, value.to_vec()).is_some() {
            return Err(SpdmError::DuplicateOpaque(field));
        }
    }
    Ok(out)
}

/// A NUL-terminated (or padded) ASCII field.
fn opaque_string(data: &[u8]) -> String {
    let end = data.iter().position(|&b| b == 0).unwrap_or(data.len());
    String::from_utf8_lossy(&data[..end]).into_owned()
}

/// NVIDIA's VBIOS encoding: the first half little-endian, then the first
/// byte of the second half (`01 00 9f 00 | 96 ..` → `96.00.9F.00.01`... read
/// as reversed first half then one byte).
fn format_vbios_version(data: &[u8]) -> Option<String> {
    if data.len() < 2 || !data.len().is_multiple_of(2) {
        return None;
    }
    let half = data.len() / 2;
    let mut parts: Vec<String> = data[..half].iter().rev().map(|b| format!("{b:02X}")).collect();
    parts.push(format!("{:02X}", data[half]));
    Some(parts.join("."))
}

/// Decodes a report given as hex (NVIDIA samples, older Trustee evidence) or
/// base64 (NVAT, current Trustee evidence); surrounding whitespace is ignored.
pub fn decode_report_text(text: &[u8]) -> Option<Vec<u8>> {
    use base64::Engine;
    let t: Vec<u8> = text.iter().copied().filter(|b| !b.is_ascii_whitespace()).collect();
    if t.is_empty() {
        return None;
    }
    if t.len().is_multiple_of(2) && t.iter().all(u8::is_ascii_hexdigit) {
        return hex::decode(&t).ok();
    }
    base64::engine::general_purpose::STANDARD.decode(&t).ok()
}
