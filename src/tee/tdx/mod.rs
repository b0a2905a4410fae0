//! Intel TDX evidence through configfs-tsm (provider `tdx_guest`).
//!
//! `outblob` is a DCAP quote (v4, or v5 on TDX 1.5 hosts) made by the host's
//! quote generation service; there is no `auxblob`. The host builds that
//! quote, and the guest cannot verify its signature, so nothing in it is
//! believed as it stands: every quote is compared with the TDREPORT the
//! guest gets from the TDX module itself (`/dev/tdx_guest`,
//! `TDX_CMD_GET_REPORT0`, see [`report`]) for the same REPORTDATA, and a
//! quote whose body differs is refused. The values ztinit decides on
//! (MRCONFIGID for initdata, the DEBUG attribute, REPORTDATA) are read from
//! the TDREPORT.
//!
//! The evidence is Trustee's `tdx` format:
//! `{"cc_eventlog": base64(CCEL) | null, "quote": base64(quote)}`.
//! The CC event log is the firmware's TCG log that ACPI's CCEL table points
//! at (`/sys/firmware/acpi/tables/data/CCEL`); the KBS replays it against
//! RTMR0..3.

pub mod device;
pub mod quote;
pub mod report;

use std::io;
use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

pub use device::{RealTdxGuest, TdxGuest};
pub use quote::{Quote, QuoteError, TdReport};
pub use report::{TdReportError, TdxReport};

use super::paths::TeePaths;
use super::tsm::Tsm;
use super::{EvidenceProvider, REPORT_DATA_LEN, TeeError, TeeKind, pad_report_data, short_hex};

/// The configfs-tsm provider name.
pub const PROVIDER: &str = "tdx_guest";
/// MRCONFIGID size.
pub const MR_CONFIG_ID_LEN: usize = 48;
/// Larger event logs are refused: Trustee's default request limit is 2 MiB
/// and the log travels base64-encoded.
pub const MAX_EVENTLOG_LEN: usize = 1536 << 10;
/// Size of the ACPI CCEL table (header 36 + type, subtype, reserved, LAML, LASA).
const CCEL_TABLE_LEN: usize = 56;

#[derive(Debug, thiserror::Error)]
pub enum TdxError {
    #[error("quote: {0}")]
    Quote(#[from] QuoteError),
    #[error(
        "{path} is missing: ztinit checks the quote the host builds against the TDREPORT it reads there (the kernel needs CONFIG_TDX_GUEST_DRIVER)"
    )]
    GuestDeviceMissing { path: String },
    #[error("TDX_CMD_GET_REPORT0 on {path}: {source}")]
    GetReport {
        path: String,
        #[source]
        source: io::Error,
    },
    #[error("TDREPORT from {path}: {source}")]
    TdReport {
        path: String,
        #[source]
        source: TdReportError,
    },
    #[error("the TDREPORT's REPORTDATA {found} is not the requested {expected}")]
    ReportDataMismatch { expected: String, found: String },
    #[error(
        "the quote's {field} {quote} differs from the TDREPORT's {tdreport}: the host's quote does not describe this TD; refusing it"
    )]
    QuoteMismatch { field: &'static str, quote: String, tdreport: String },
    #[error(
        "TD attributes {attributes:#x} have DEBUG set: the host can read TD memory; only tee.allow_debug = true accepts that"
    )]
    DebugTd { attributes: u64 },
    #[error("event log {path}: larger than {max} bytes")]
    EventLogTooLarge { path: String, max: usize },
    #[error("event log {path}: {source}")]
    EventLog {
        path: String,
        #[source]
        source: io::Error,
    },
}

/// The checks made on this TD's own TDREPORT: it answers the REPORTDATA we
/// asked for, and DEBUG is off unless allowed.
pub fn check_tdreport(report: &TdxReport, expected: &[u8; REPORT_DATA_LEN], allow_debug: bool) -> Result<(), TdxError> {
    if report.report_data != *expected {
        return Err(TdxError::ReportDataMismatch {
            expected: short_hex(expected, 16),
            found: short_hex(&report.report_data, 16),
        });
    }
    if report.debug() && !allow_debug {
        return Err(TdxError::DebugTd { attributes: report.attributes() });
    }
    Ok(())
}

/// The check made before a quote leaves the guest: its body describes
/// exactly the TDREPORT (see [`report::compare`] for the fields).
pub fn check_quote(quote: &Quote<'_>, tdreport: &TdxReport) -> Result<(), TdxError> {
    report::compare(&quote.body, tdreport).map_err(|d| TdxError::QuoteMismatch {
        field: d.field,
        quote: d.quote,
        tdreport: d.tdreport,
    })
}

/// Reads the CC event log. `None` when the firmware published none.
pub fn read_ccel(acpi_tables: &Path) -> Result<Option<Vec<u8>>, TdxError> {
    let data_path = acpi_tables.join("data/CCEL");
    let data = match crate::files::read_capped(&data_path, MAX_EVENTLOG_LEN as u64) {
        Ok(d) => d,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            if acpi_tables.join("CCEL").exists() {
                log::warn!("TDX: ACPI has a CCEL table but {} is missing: no event log", data_path.display());
            }
            return Ok(None);
        }
        Err(e) if e.kind() == io::ErrorKind::InvalidData => {
            return Err(TdxError::EventLogTooLarge { path: data_path.display().to_string(), max: MAX_EVENTLOG_LEN });
        }
        Err(source) => {
            return Err(TdxError::EventLog { path: data_path.display().to_string(), source });
        }
    };
    check_ccel_table(&acpi_tables.join("CCEL"), data.len());
    Ok(if data.is_empty() { None } else { Some(data) })
}

/// Cross-checks the log size with the table's LAML; only logged, since the
/// KBS replays the log against the RTMRs anyway.
fn check_ccel_table(path: &Path, data_len: usize) {
    let Ok(table) = crate::files::read_capped(path, 4096) else {
        return;
    };
    if table.len() < CCEL_TABLE_LEN || &table[..4] != b"CCEL" {
        log::warn!("TDX: {} is not a CCEL table", path.display());
        return;
    }
    let mut laml = [0u8; 8];
    laml.copy_from_slice(&table[40..48]);
    let laml = u64::from_le_bytes(laml);
    if laml != data_len as u64 {
        log::warn!("TDX: CCEL table says the log area is {laml} bytes, the log is {data_len}");
    }
}

/// Trustee's `tdx` evidence document.
pub fn evidence_json(quote: &[u8], eventlog: Option<&[u8]>) -> serde_json::Value {
    serde_json::json!({
        "cc_eventlog": eventlog.map(|l| STANDARD.encode(l)),
        "quote": STANDARD.encode(quote),
    })
}

/// Evidence from the TDX module: the TDREPORT through `/dev/tdx_guest`,
/// the quote through configfs-tsm and the host's QGS.
pub struct TdxProvider {
    paths: TeePaths,
    allow_debug: bool,
}

impl TdxProvider {
    pub fn new(paths: TeePaths, allow_debug: bool) -> Self {
        Self { paths, allow_debug }
    }

    /// This TD's TDREPORT for `report_data`, from the TDX module.
    fn tdreport(&self, report_data: &[u8; REPORT_DATA_LEN]) -> Result<TdxReport, TdxError> {
        let device = self.paths.dev.join(device::DEVICE);
        let path = || device.display().to_string();
        let raw = self.paths.tdx_guest.get_report0(&device, report_data).map_err(|source| {
            if source.kind() == io::ErrorKind::NotFound {
                TdxError::GuestDeviceMissing { path: path() }
            } else {
                TdxError::GetReport { path: path(), source }
            }
        })?;
        let report = report::parse(&raw).map_err(|source| TdxError::TdReport { path: path(), source })?;
        check_tdreport(&report, report_data, self.allow_debug)?;
        Ok(report)
    }

    /// A quote for `report_data` that describes this TD's TDREPORT. The
    /// kernel takes a second TDREPORT for the quote; the compared fields
    /// are the same in both unless an RTMR is extended in between, which
    /// nothing in the boot does, and which would only stop it.
    fn quote(&self, report_data: &[u8; REPORT_DATA_LEN]) -> Result<(Vec<u8>, TdxReport), TeeError> {
        let tdreport = self.tdreport(report_data)?;
        let tsm = Tsm { fs: &*self.paths.configfs, base: &self.paths.tsm_report };
        let out = tsm.report(PROVIDER, report_data, false)?;
        let parsed = quote::parse(&out.outblob).map_err(TdxError::from)?;
        check_quote(&parsed, &tdreport)?;
        Ok((out.outblob, tdreport))
    }
}

impl EvidenceProvider for TdxProvider {
    fn kind(&self) -> TeeKind {
        TeeKind::Tdx
    }

    fn evidence(&mut self, digest: &[u8]) -> Result<serde_json::Value, TeeError> {
        let report_data = pad_report_data(digest)?;
        let (quote, tdreport) = self.quote(&report_data)?;
        let eventlog = read_ccel(&self.paths.acpi_tables)?;
        log::debug!(
            "TDX quote of {} bytes, MRTD {}, event log {} bytes",
            quote.len(),
            hex::encode(tdreport.mr_td),
            eventlog.as_ref().map_or(0, Vec::len)
        );
        Ok(evidence_json(&quote, eventlog.as_deref()))
    }

    /// MRCONFIGID from the TDREPORT alone: no quote, so nothing the host
    /// builds is involved.
    fn host_data(&mut self) -> Result<Option<Vec<u8>>, TeeError> {
        let tdreport = self.tdreport(&[0; REPORT_DATA_LEN])?;
        Ok(Some(tdreport.mr_config_id.to_vec()))
    }
}
