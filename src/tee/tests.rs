//! Tests against a fake configfs-tsm tree fed with the public samples in
//! `tests/data/tee/` (copied from `shared/tee-evidence-samples`; expected
//! values from its MANIFEST.md).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::fake::{FakeTdxGuest, FakeTsm, Fault, TdxAnswer};
use super::tdx::TdxReport;
use super::*;

pub(crate) fn data(name: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/tee").join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

pub(crate) fn milan_report() -> Vec<u8> {
    hex::decode(data("report_milan.hex")).unwrap()
}

pub(crate) const MILAN_MEASUREMENT: &str =
    "7a1e5c266c0108dbc9bb94fa926951320940915d0aafb42464bd88b579ea158d3e1a0dc39b2c60bd95b9c480cd81841f";
const SNP_REPORT_DATA_OFFSET: usize = 0x50;
const SNP_HOST_DATA_OFFSET: usize = 0xc0;
/// v4: header 48 + body offset 520; v5 adds the 6-byte body descriptor.
const TDX_V4_REPORT_DATA_OFFSET: usize = 568;
const TDX_V5_REPORT_DATA_OFFSET: usize = 574;
const TDX_V5_MRCONFIGID_OFFSET: usize = 54 + 184;

struct Guest {
    _dir: tempfile::TempDir,
    paths: TeePaths,
    fake: Arc<FakeTsm>,
    tdx: Option<Arc<FakeTdxGuest>>,
}

impl Guest {
    /// A guest tree with configfs-tsm served by `fake` (None: no configfs-tsm).
    fn new(fake: Option<FakeTsm>) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let has_tsm = fake.is_some();
        let fake = Arc::new(fake.unwrap_or_else(|| FakeTsm::new(None, Vec::new(), 0)));
        let paths = TeePaths::under(dir.path()).with_configfs(fake.clone());
        std::fs::create_dir_all(&paths.dev).unwrap();
        std::fs::create_dir_all(paths.acpi_tables.join("data")).unwrap();
        if has_tsm {
            std::fs::create_dir_all(&paths.tsm_report).unwrap();
        }
        Self { _dir: dir, paths, fake, tdx: None }
    }

    /// Adds `/dev/tdx_guest`, answering with `answer`.
    fn with_tdx_guest(mut self, answer: TdxAnswer) -> Self {
        let tdx = Arc::new(FakeTdxGuest::new(answer));
        self.paths = self.paths.clone().with_tdx_guest(tdx.clone());
        self.device(tdx::device::DEVICE, b"");
        self.tdx = Some(tdx);
        self
    }

    fn tdx_calls(&self) -> usize {
        self.tdx.as_ref().map_or(0, |t| *t.calls.lock().unwrap())
    }

    fn device(&self, name: &str, bytes: &[u8]) -> PathBuf {
        let p = self.paths.dev.join(name);
        std::fs::write(&p, bytes).unwrap();
        p
    }
}

fn snp_guest(template: Vec<u8>, fault: Fault) -> Guest {
    Guest::new(Some(FakeTsm::new(Some("sev_guest"), template, SNP_REPORT_DATA_OFFSET).with_fault(fault)))
}

/// The TDREPORT the TDX module gives the TD that `quote` describes. No
/// public TDREPORT belongs to the sample quotes, so the tests build it from
/// the quote body (the quoting enclave copies those fields from it).
fn tdreport_of(quote: &[u8]) -> TdxReport {
    TdxReport::from_quote_body(&tdx::quote::parse(quote).unwrap().body)
}

/// A TDX guest whose configfs-tsm answers with `template` and whose TDX
/// module has the TDREPORT that `template` describes.
fn tdx_guest(template: Vec<u8>, offset: usize, fault: Fault) -> Guest {
    let answer = match tdx::quote::parse(&template) {
        Ok(q) => TdxAnswer::Report(TdxReport::from_quote_body(&q.body)),
        Err(_) => TdxAnswer::Errno(libc::ENOTTY),
    };
    tdx_guest_with(template, offset, fault, answer)
}

fn tdx_guest_with(template: Vec<u8>, offset: usize, fault: Fault, answer: TdxAnswer) -> Guest {
    Guest::new(Some(FakeTsm::new(Some("tdx_guest"), template, offset).with_fault(fault))).with_tdx_guest(answer)
}

fn cfg(accept: &[TeeKind]) -> TeeConfig {
    TeeConfig { accept: accept.to_vec(), allow_sample: accept.contains(&TeeKind::Sample), ..TeeConfig::default() }
}

fn digest() -> [u8; 48] {
    let mut d = [0u8; 48];
    for (i, b) in d.iter_mut().enumerate() {
        *b = u8::try_from(i).unwrap() ^ 0x5a;
    }
    d
}

fn bytes_of(v: &serde_json::Value) -> Vec<u8> {
    v.as_array().unwrap().iter().map(|b| u8::try_from(b.as_u64().unwrap()).unwrap()).collect()
}

/// A GHCB certificate table with one VCEK entry.
fn cert_table(vcek: &[u8]) -> Vec<u8> {
    let guid = uuid::Uuid::parse_str("63da758d-e664-4564-adc5-f4b93be8accd").unwrap();
    let mut t = Vec::new();
    t.extend_from_slice(guid.as_bytes());
    t.extend_from_slice(&48u32.to_le_bytes());
    t.extend_from_slice(&u32::try_from(vcek.len()).unwrap().to_le_bytes());
    t.extend_from_slice(&[0u8; 24]);
    t.extend_from_slice(vcek);
    t
}

// ---------------------------------------------------------------- detection

#[test]
fn no_tee_names_what_was_expected_and_found() {
    let g = Guest::new(Some(FakeTsm::new(None, Vec::new(), 0)));
    let err = detect(&cfg(&[TeeKind::Snp]), &g.paths).err().unwrap();
    assert!(matches!(err, TeeError::NoTee { .. }), "{err}");
    let msg = err.to_string();
    assert!(msg.starts_with("no TEE found: accepted snp; configfs-tsm has no report provider and "), "{msg}");
    assert!(msg.ends_with("/dev/sev-guest is missing"), "{msg}");
    assert!(g.fake.created.lock().unwrap().is_empty(), "the kernel refuses the probe directory");
}

#[test]
fn the_probe_directory_is_removed() {
    let g = snp_guest(milan_report(), Fault::None);
    assert_eq!(detect(&cfg(&[TeeKind::Snp]), &g.paths).unwrap().kind(), TeeKind::Snp);
    assert!(g.fake.all_removed(), "the probe directory must be removed");
}

#[test]
fn missing_configfs_tsm_is_named() {
    let g = Guest::new(None);
    let msg = detect(&cfg(&[TeeKind::Snp, TeeKind::Tdx]), &g.paths).err().unwrap().to_string();
    assert!(msg.contains("accepted snp or tdx; configfs-tsm is not available ("), "{msg}");
    assert!(msg.contains("/dev/sev-guest and ") && msg.ends_with("/dev/tdx_guest are missing"), "{msg}");
}

#[test]
fn a_guest_device_without_configfs_tsm_is_explained() {
    let g = Guest::new(None);
    g.device("sev-guest", b"");
    let msg = detect(&cfg(&[TeeKind::Snp]), &g.paths).err().unwrap().to_string();
    assert!(msg.contains("/dev/sev-guest is present but configfs-tsm is not available"), "{msg}");
    assert!(msg.contains("CONFIG_TSM_REPORTS"), "{msg}");
}

#[test]
fn hardware_of_another_kind_is_refused_not_used() {
    let g = tdx_guest(data("tdx_quote_5.dat"), TDX_V5_REPORT_DATA_OFFSET, Fault::None);
    let err = detect(&cfg(&[TeeKind::Snp, TeeKind::Sample]), &g.paths).err().unwrap();
    assert!(matches!(err, TeeError::NotAccepted { .. }), "{err}");
    assert!(err.to_string().contains("TEE tdx (configfs-tsm provider tdx_guest) is not accepted"), "{err}");
}

#[test]
fn hardware_wins_over_sample() {
    let g = snp_guest(milan_report(), Fault::None);
    let p = detect(&cfg(&[TeeKind::Snp, TeeKind::Sample]), &g.paths).unwrap();
    assert_eq!(p.kind(), TeeKind::Snp);
    let g = tdx_guest(data("tdx_quote_5.dat"), TDX_V5_REPORT_DATA_OFFSET, Fault::None);
    assert_eq!(detect(&cfg(&[TeeKind::Snp, TeeKind::Tdx]), &g.paths).unwrap().kind(), TeeKind::Tdx);
}

#[test]
fn sample_only_when_allowed_and_no_hardware() {
    let g = Guest::new(Some(FakeTsm::new(None, Vec::new(), 0)));
    assert_eq!(detect(&cfg(&[TeeKind::Snp, TeeKind::Sample]), &g.paths).unwrap().kind(), TeeKind::Sample);
    // Listed but not allowed: no fallback.
    let mut c = cfg(&[TeeKind::Snp, TeeKind::Sample]);
    c.allow_sample = false;
    assert!(matches!(detect(&c, &g.paths), Err(TeeError::NoTee { .. })));
    // The only accepted kind: used even on hardware.
    let g = snp_guest(milan_report(), Fault::None);
    assert_eq!(detect(&cfg(&[TeeKind::Sample]), &g.paths).unwrap().kind(), TeeKind::Sample);
}

#[test]
fn a_failing_probe_is_an_error_not_a_fallback() {
    let g =
        Guest::new(Some(FakeTsm::new(Some("sev_guest"), Vec::new(), 0).with_fault(Fault::MkdirErrno(libc::EACCES))));
    let err = detect(&cfg(&[TeeKind::Snp, TeeKind::Sample]), &g.paths).err().unwrap();
    assert!(matches!(err, TeeError::Tsm(TsmError::Io { op: "mkdir", .. })), "{err}");
}

// ---------------------------------------------------------------- configfs-tsm + SNP

#[test]
fn snp_evidence_binds_the_digest_in_trustee_format() {
    let g = Guest::new(Some(
        FakeTsm::new(Some("sev_guest"), milan_report(), SNP_REPORT_DATA_OFFSET)
            .with_auxblob(cert_table(&data("vcek_milan.der"))),
    ));
    let mut p = detect(&cfg(&[TeeKind::Snp]), &g.paths).unwrap();
    let ev = p.evidence(&digest()).unwrap();
    let report = &ev["attestation_report"];
    let rd = bytes_of(&report["report_data"]);
    assert_eq!(&rd[..48], &digest());
    assert_eq!(&rd[48..], &[0u8; 16]);
    assert_eq!(hex::encode(bytes_of(&report["measurement"])), MILAN_MEASUREMENT);
    assert_eq!(report["version"], 2);
    assert_eq!(report["policy"], 0x30000);
    assert_eq!(ev["cert_chain"][0]["cert_type"], "VCEK");
    assert_eq!(bytes_of(&ev["cert_chain"][0]["data"]), data("vcek_milan.der"));
    assert!(g.fake.all_removed());
}

#[test]
fn snp_without_certificates_sends_null_cert_chain() {
    let g = snp_guest(milan_report(), Fault::None);
    let ev = detect(&cfg(&[TeeKind::Snp]), &g.paths).unwrap().evidence(&digest()).unwrap();
    assert!(ev["cert_chain"].is_null());
}

fn snp_error(template: Vec<u8>, fault: Fault) -> TeeError {
    let g = snp_guest(template, fault);
    let err = snp::SnpProvider::new(g.paths.clone(), false).evidence(&digest()).err().unwrap();
    assert!(g.fake.all_removed(), "report directory left behind after: {err}");
    err
}

#[test]
fn a_concurrent_writer_is_detected_through_generation() {
    let err = snp_error(milan_report(), Fault::ConcurrentWriter);
    assert!(matches!(err, TeeError::Tsm(TsmError::Race { .. })), "{err}");
    assert!(err.to_string().contains("generation is 2 after our single write"), "{err}");
}

#[test]
fn a_provider_that_vanishes_mid_request_is_named() {
    let err = snp_error(milan_report(), Fault::ProviderVanishes);
    assert!(matches!(err, TeeError::Tsm(TsmError::Vanished(_))), "{err}");
    assert!(err.to_string().contains("went away during the request"));
    let err = snp_error(milan_report(), Fault::DirectoryVanishes);
    assert!(matches!(err, TeeError::Tsm(TsmError::Vanished(_))), "{err}");
}

#[test]
fn kernel_errnos_become_their_own_messages() {
    for (errno, want) in [
        (libc::EBUSY, "busy (EBUSY)"),
        (libc::EINVAL, "rejected the request (EINVAL)"),
        (libc::EIO, "failed to produce the report (EIO)"),
        (libc::ETIMEDOUT, "timed out waiting for the report (ETIMEDOUT)"),
        (libc::EFBIG, "larger than 32768 bytes"),
    ] {
        let err = snp_error(milan_report(), Fault::OutblobErrno(errno));
        assert!(err.to_string().contains(want), "errno {errno}: {err}");
    }
    let g = Guest::new(Some(FakeTsm::new(None, milan_report(), 0)));
    let err = snp::SnpProvider::new(g.paths.clone(), false).evidence(&digest()).err().unwrap();
    assert_eq!(err.to_string(), "configfs-tsm: no provider: this guest is not running in a TEE");
}

#[test]
fn a_provider_of_another_kind_is_refused_per_request() {
    let g = tdx_guest(milan_report(), 0, Fault::None);
    let err = snp::SnpProvider::new(g.paths.clone(), false).evidence(&digest()).err().unwrap();
    assert!(err.to_string().contains("provider is tdx_guest, expected sev_guest"), "{err}");
}

#[test]
fn truncated_oversized_and_garbled_reports_are_refused() {
    let err = snp_error(milan_report(), Fault::Truncate(1000));
    assert!(matches!(err, TeeError::Snp(SnpError::Truncated(1000))), "{err}");
    let err = snp_error(milan_report(), Fault::Extend(16));
    assert!(matches!(err, TeeError::Snp(SnpError::Oversized(1200))), "{err}");
    let err = snp_error(milan_report(), Fault::Extend(40 << 10));
    assert!(matches!(err, TeeError::Tsm(TsmError::TooLarge { .. })), "{err}");
    let mut v7 = milan_report();
    v7[0] = 7;
    assert!(matches!(snp_error(v7, Fault::None), TeeError::Snp(SnpError::UnsupportedVersion(7))));
    // A v3 report with an unknown CPU family cannot be laid out.
    let mut garbled = milan_report();
    garbled[0] = 3;
    garbled[0x188] = 0x42;
    assert!(matches!(snp_error(garbled, Fault::None), TeeError::Snp(SnpError::Malformed(_))));
    let err = snp_error(milan_report(), Fault::Truncate(0));
    assert!(matches!(err, TeeError::Tsm(TsmError::Empty(_))), "{err}");
}

#[test]
fn a_report_that_does_not_bind_our_data_is_refused() {
    let err = snp_error(milan_report(), Fault::IgnoresInblob);
    assert!(matches!(err, TeeError::Snp(SnpError::ReportDataMismatch { .. })), "{err}");
    assert!(err.to_string().contains("d447b55d197491bfe15cf298f9de9986"), "{err}");
}

#[test]
fn a_debug_policy_is_refused_unless_allowed() {
    let mut debug = milan_report();
    debug[8 + 2] |= 0x08; // policy bit 19
    let err = snp_error(debug.clone(), Fault::None);
    assert!(matches!(err, TeeError::Snp(SnpError::DebugPolicy { policy: 0xb0000 })), "{err}");
    let g = snp_guest(debug, Fault::None);
    assert!(snp::SnpProvider::new(g.paths.clone(), true).evidence(&digest()).is_ok());
}

#[test]
fn oversized_digests_are_refused_before_any_report() {
    let g = snp_guest(milan_report(), Fault::None);
    let err = snp::SnpProvider::new(g.paths.clone(), false).evidence(&[0; 65]).err().unwrap();
    assert!(matches!(err, TeeError::ReportDataTooLong(65)));
    assert!(g.fake.created.lock().unwrap().is_empty());
}

#[test]
fn certificate_tables_are_bounds_checked() {
    let vcek = data("vcek_milan.der");
    let entries = snp::parse_cert_table(&cert_table(&vcek)).unwrap().unwrap();
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].data, vcek);
    assert!(snp::parse_cert_table(&[]).unwrap().is_none());
    assert!(snp::parse_cert_table(&[0; 24]).unwrap().is_none());
    let mut past_end = cert_table(&vcek);
    past_end[20..24].copy_from_slice(&u32::MAX.to_le_bytes());
    let err = snp::parse_cert_table(&past_end).err().unwrap().to_string();
    assert!(err.contains("outside the"), "{err}");
    let mut no_end = cert_table(&vcek)[..24].to_vec();
    no_end[16..24].copy_from_slice(&[0, 0, 0, 0, 24, 0, 0, 0]);
    assert!(snp::parse_cert_table(&no_end).err().unwrap().to_string().contains("no terminating entry"));
}

#[test]
fn real_configfs_reads_are_capped() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("blob");
    std::fs::write(&p, vec![1u8; 100]).unwrap();
    assert_eq!(tsm::RealConfigFs.read(&p, 10).unwrap().len(), 11);
    // Writes never create files: a missing attribute stays missing.
    let err = tsm::RealConfigFs.write(&dir.path().join("inblob"), &[0; 64]).err().unwrap();
    assert_eq!(err.kind(), std::io::ErrorKind::NotFound);
}

use tsm::ConfigFs as _;

// ---------------------------------------------------------------- TDX

#[test]
fn tdx_evidence_has_quote_and_event_log() {
    let g = tdx_guest(data("tdx_quote_5.dat"), TDX_V5_REPORT_DATA_OFFSET, Fault::None);
    let log = data("CCEL_data_ovmf");
    std::fs::write(g.paths.acpi_tables.join("data/CCEL"), &log).unwrap();
    let mut p = detect(&cfg(&[TeeKind::Tdx]), &g.paths).unwrap();
    let ev = p.evidence(&digest()).unwrap();
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD;
    let quote = b64.decode(ev["quote"].as_str().unwrap()).unwrap();
    let parsed = tdx::quote::parse(&quote).unwrap();
    assert_eq!(&parsed.body.report_data[..48], &digest());
    assert_eq!(b64.decode(ev["cc_eventlog"].as_str().unwrap()).unwrap(), log);
    assert!(g.fake.all_removed());
}

#[test]
fn tdx_without_event_log_sends_null() {
    let g = tdx_guest(data("tdx_quote_5.dat"), TDX_V5_REPORT_DATA_OFFSET, Fault::None);
    let ev = tdx::TdxProvider::new(g.paths.clone(), false).evidence(&digest()).unwrap();
    assert!(ev["cc_eventlog"].is_null());
}

#[test]
fn tdx_debug_td_is_refused_unless_allowed() {
    let g = tdx_guest(data("tdx_quote_4.dat"), TDX_V4_REPORT_DATA_OFFSET, Fault::None);
    let err = tdx::TdxProvider::new(g.paths.clone(), false).evidence(&digest()).err().unwrap();
    assert!(matches!(err, TeeError::Tdx(TdxError::DebugTd { attributes: 0x1000_0001 })), "{err}");
    assert!(tdx::TdxProvider::new(g.paths.clone(), true).evidence(&digest()).is_ok());
}

#[test]
fn tdx_quotes_that_do_not_bind_our_data_or_are_cut_are_refused() {
    let g = tdx_guest(data("tdx_quote_5.dat"), TDX_V5_REPORT_DATA_OFFSET, Fault::IgnoresInblob);
    let err = tdx::TdxProvider::new(g.paths.clone(), false).evidence(&digest()).err().unwrap();
    assert!(matches!(err, TeeError::Tdx(TdxError::QuoteMismatch { field: "REPORTDATA", .. })), "{err}");
    assert!(err.to_string().contains("the quote's REPORTDATA 6d6ab13b"), "{err}");
    let g = tdx_guest(data("tdx_quote_5.dat"), TDX_V5_REPORT_DATA_OFFSET, Fault::Truncate(600));
    let err = tdx::TdxProvider::new(g.paths.clone(), false).evidence(&digest()).err().unwrap();
    assert!(err.to_string().contains("quote is truncated: body.report_data"), "{err}");
    let g = tdx_guest(data("tdx_quote_5.dat"), TDX_V5_REPORT_DATA_OFFSET, Fault::ConcurrentWriter);
    let err = tdx::TdxProvider::new(g.paths.clone(), false).evidence(&digest()).err().unwrap();
    assert!(matches!(err, TeeError::Tsm(TsmError::Race { .. })), "{err}");
}

#[test]
fn oversized_event_logs_are_refused() {
    let g = tdx_guest(data("tdx_quote_5.dat"), TDX_V5_REPORT_DATA_OFFSET, Fault::None);
    std::fs::write(g.paths.acpi_tables.join("data/CCEL"), vec![0xffu8; tdx::MAX_EVENTLOG_LEN + 1]).unwrap();
    let err = tdx::TdxProvider::new(g.paths.clone(), false).evidence(&digest()).err().unwrap();
    assert!(matches!(err, TeeError::Tdx(TdxError::EventLogTooLarge { .. })), "{err}");
}

// ---------------------------------------------------------------- TDX: quote against TDREPORT

fn tdx_error(g: &Guest, allow_debug: bool) -> TdxError {
    match tdx::TdxProvider::new(g.paths.clone(), allow_debug).evidence(&digest()).err().unwrap() {
        TeeError::Tdx(e) => e,
        other => panic!("not a TDX error: {other}"),
    }
}

#[test]
fn a_quote_is_fetched_only_after_the_tdreport_and_must_describe_it() {
    let g = tdx_guest(data("tdx_quote_5.dat"), TDX_V5_REPORT_DATA_OFFSET, Fault::None);
    tdx::TdxProvider::new(g.paths.clone(), false).evidence(&digest()).unwrap();
    assert_eq!(g.tdx_calls(), 1);
    assert!(g.fake.all_removed());
}

#[test]
fn every_quote_field_that_differs_from_the_tdreport_is_named() {
    type Edit = fn(&mut TdxReport);
    let edits: [(&str, Edit); 11] = [
        ("XFAM", |r| r.xfam[0] ^= 1),
        ("MRTD", |r| r.mr_td[47] ^= 1),
        ("MRCONFIGID", |r| r.mr_config_id[40] = 0xaa),
        ("MROWNER", |r| r.mr_owner[0] = 1),
        ("MROWNERCONFIG", |r| r.mr_owner_config[0] = 1),
        ("RTMR0", |r| r.rtmr[0][3] ^= 0x80),
        ("RTMR1", |r| r.rtmr[1][3] ^= 0x80),
        ("RTMR2", |r| r.rtmr[2][0] = 1),
        ("RTMR3", |r| r.rtmr[3][47] = 1),
        ("TEE_TCB_SVN", |r| r.tee_tcb_svn[0] += 1),
        ("MRSEAM", |r| r.mr_seam[0] ^= 1),
    ];
    for (field, edit) in edits {
        let quote = data("tdx_quote_5.dat");
        let mut report = tdreport_of(&quote);
        edit(&mut report);
        let g = tdx_guest_with(quote, TDX_V5_REPORT_DATA_OFFSET, Fault::None, TdxAnswer::Report(report));
        let err = tdx_error(&g, false);
        assert!(matches!(err, TdxError::QuoteMismatch { field: f, .. } if f == field), "{field}: {err}");
        assert!(err.to_string().starts_with(&format!("the quote's {field} ")), "{err}");
        assert!(g.fake.all_removed());
    }
}

#[test]
fn a_quote_cannot_add_or_hide_the_debug_attribute() {
    // The host claims DEBUG that the TD does not have: the attribute differs.
    let quote = data("tdx_quote_4.dat");
    let mut report = tdreport_of(&quote);
    report.td_attributes[0] &= !1;
    let g = tdx_guest_with(quote, TDX_V4_REPORT_DATA_OFFSET, Fault::None, TdxAnswer::Report(report));
    let err = tdx_error(&g, true);
    assert!(matches!(err, TdxError::QuoteMismatch { field: "TDATTRIBUTES", .. }), "{err}");
    // The TD is a debug TD but the host's quote says otherwise: the DEBUG
    // check reads the TDREPORT, so it fires before any quote is asked for.
    let quote = data("tdx_quote_5.dat");
    let mut report = tdreport_of(&quote);
    report.td_attributes[0] |= 1;
    let g = tdx_guest_with(quote.clone(), TDX_V5_REPORT_DATA_OFFSET, Fault::None, TdxAnswer::Report(report.clone()));
    let err = tdx_error(&g, false);
    assert!(matches!(err, TdxError::DebugTd { attributes: 0x1000_0001 }), "{err}");
    assert!(g.fake.created.lock().unwrap().is_empty(), "no quote requested for a debug TD");
    let g = tdx_guest_with(quote, TDX_V5_REPORT_DATA_OFFSET, Fault::None, TdxAnswer::Report(report));
    let err = tdx_error(&g, true);
    assert!(matches!(err, TdxError::QuoteMismatch { field: "TDATTRIBUTES", .. }), "{err}");
}

#[test]
fn seam_fields_the_quoting_enclave_leaves_zero_may_be_zero() {
    let quote = data("tdx_quote_5.dat");
    let body = tdx::quote::parse(&quote).unwrap().body;
    let mut report = TdxReport::from_quote_body(&body);
    report.mrsigner_seam = [7; 48];
    report.seam_attributes = [7; 8];
    report.tee_tcb_svn2 = [7; 16];
    report.servtd_hash = [7; 48];
    // Zero in the quote (what Intel's reference TD QE writes): accepted.
    let mut zeroed = body.clone();
    zeroed.tee_tcb_svn2 = Some([0; 16]);
    zeroed.mr_servicetd = Some([0; 48]);
    assert_eq!(tdx::report::compare(&zeroed, &report), Ok(()));
    // Set in the quote, but to something else: refused.
    for (field, edit) in [
        ("MRSIGNERSEAM", (|b| b.mrsigner_seam = [1; 48]) as fn(&mut tdx::TdReport)),
        ("SEAMATTRIBUTES", |b| b.seam_attributes = [1; 8]),
        ("TEE_TCB_SVN2", |b| b.tee_tcb_svn2 = Some([1; 16])),
        ("MRSERVICETD", |b| b.mr_servicetd = Some([1; 48])),
    ] {
        let mut forged = zeroed.clone();
        edit(&mut forged);
        assert_eq!(tdx::report::compare(&forged, &report).unwrap_err().field, field);
    }
    // The real sample: its TDX 1.5 fields equal the TDREPORT's.
    assert_eq!(tdx::report::compare(&body, &TdxReport::from_quote_body(&body)), Ok(()));
}

#[test]
fn a_missing_tdx_guest_device_fails_closed() {
    let g = tdx_guest(data("tdx_quote_5.dat"), TDX_V5_REPORT_DATA_OFFSET, Fault::None);
    std::fs::remove_file(g.paths.dev.join("tdx_guest")).unwrap();
    let mut p = detect(&cfg(&[TeeKind::Tdx]), &g.paths).unwrap();
    let probes = g.fake.created.lock().unwrap().len();
    let err = p.evidence(&digest()).err().unwrap();
    assert!(matches!(err, TeeError::Tdx(TdxError::GuestDeviceMissing { .. })), "{err}");
    let msg = err.to_string();
    assert!(msg.contains("/dev/tdx_guest is missing") && msg.contains("CONFIG_TDX_GUEST_DRIVER"), "{msg}");
    assert_eq!(g.fake.created.lock().unwrap().len(), probes, "no quote without a TDREPORT");
    let err = initdata::load(&TeeConfig::default(), &g.paths, p.as_mut(), &[]).err().unwrap();
    assert!(matches!(err, TeeError::Tdx(TdxError::GuestDeviceMissing { .. })), "{err}");
}

#[test]
fn short_garbled_and_failed_tdreports_are_refused() {
    let quote = data("tdx_quote_5.dat");
    let good = {
        let mut r = tdreport_of(&quote);
        r.report_data = tdx_pad(&digest());
        r.to_bytes()
    };
    let mut not_tdx = good.clone();
    not_tdx[0] = 0;
    let mut forged_mrconfigid = good.clone();
    forged_mrconfigid[576] = 0xaa; // TDINFO.MRCONFIGID, without fixing TEE_INFO_HASH
    let mut forged_svn = good.clone();
    forged_svn[264] ^= 1; // TEE_TCB_INFO.TEE_TCB_SVN
    let mut long = good.clone();
    long.push(0);
    let other_data = {
        let mut r = tdreport_of(&quote);
        r.report_data = [0x42; 64];
        r.to_bytes()
    };
    let cases: [(Vec<u8>, &str); 7] = [
        (Vec::new(), "0 bytes, expected 1024"),
        (good[..1023].to_vec(), "1023 bytes, expected 1024"),
        (long, "1025 bytes, expected 1024"),
        (not_tdx, "REPORTTYPE.TYPE is 0x0, not TDX"),
        (forged_mrconfigid, "TEE_INFO_HASH does not match the SHA-384 of TDINFO"),
        (forged_svn, "TEE_TCB_INFO_HASH does not match the SHA-384 of TEE_TCB_INFO"),
        (other_data, "the TDREPORT's REPORTDATA 42424242"),
    ];
    for (raw, want) in cases {
        let g = tdx_guest_with(quote.clone(), TDX_V5_REPORT_DATA_OFFSET, Fault::None, TdxAnswer::Raw(raw));
        let err = tdx_error(&g, false);
        assert!(err.to_string().contains(want), "{want}: {err}");
        assert!(g.fake.created.lock().unwrap().is_empty(), "{want}: a quote was requested");
    }
    // The unmodified bytes are accepted, so each case above failed for its own reason.
    let g = tdx_guest_with(quote.clone(), TDX_V5_REPORT_DATA_OFFSET, Fault::None, TdxAnswer::Raw(good));
    tdx::TdxProvider::new(g.paths.clone(), false).evidence(&digest()).unwrap();
    for (errno, want) in [(libc::EIO, "TDX_CMD_GET_REPORT0 on "), (libc::ENOTTY, "Inappropriate ioctl")] {
        let g = tdx_guest_with(quote.clone(), TDX_V5_REPORT_DATA_OFFSET, Fault::None, TdxAnswer::Errno(errno));
        let err = tdx_error(&g, false);
        assert!(matches!(err, TdxError::GetReport { .. }) && err.to_string().contains(want), "{err}");
    }
}

fn tdx_pad(d: &[u8]) -> [u8; 64] {
    pad_report_data(d).unwrap()
}

#[test]
fn the_public_tdreport_sample_parses_to_the_manifest_values() {
    // guest-components' tdx_report_1.bin: a real TDREPORT (MANIFEST.md).
    let r = tdx::report::parse(&data("tdx_report_1.bin")).unwrap();
    assert_eq!(r.report_type, [0x81, 0, 1, 0]);
    assert_eq!(r.report_data, [0; 64]);
    assert_eq!(r.attributes(), 0x1000_0000);
    assert!(!r.debug());
    assert_eq!(hex::encode(r.xfam), "e742060000000000");
    assert_eq!(
        hex::encode(r.mr_td),
        "98bbc39e3e27b4cb27ed6d21870b187738f64ec44b9f3f93d603b35a84e610dcb45f1b6d79c648c7bf8e68f7a37b8ab5"
    );
    assert_eq!(
        hex::encode(r.rtmr[0]),
        "f4ec1a04670fe7926cd5de4aef9aaa7689ab4ceaa132d7c5242b47f67dfaaea64c372a17ad68fef9a6ac99aabbddabdc"
    );
    assert_eq!(
        hex::encode(r.rtmr[1]),
        "4e5f8826653198ab4bc5156fbe4bc99db054c0b8239a16c4b59249fb427f4acc50eed1b46a85c7d526c4e1e47621b14c"
    );
    assert_eq!((r.mr_config_id, r.mr_owner, r.mr_owner_config), ([0; 48], [0; 48], [0; 48]));
    assert_eq!((r.rtmr[2], r.rtmr[3]), ([0; 48], [0; 48]));
    // The same TDX module as the v5 sample quote (another TD): the
    // TEE_TCB_INFO and SERVTD_HASH offsets give the values that quote's
    // body carries.
    let q5 = tdx::quote::parse(&data("tdx_quote_5.dat")).unwrap().body;
    assert_eq!(r.tee_tcb_svn, q5.tee_tcb_svn);
    assert_eq!(r.mr_seam, q5.mr_seam);
    assert_eq!(r.mrsigner_seam, q5.mrsigner_seam);
    assert_eq!(r.seam_attributes, q5.seam_attributes);
    assert_eq!(Some(r.tee_tcb_svn2), q5.tee_tcb_svn2);
    assert_eq!(Some(r.servtd_hash), q5.mr_servicetd);
    // Built from those fields, the bytes parse back to the same report.
    assert_eq!(tdx::report::parse(&r.to_bytes()).unwrap(), r);
}

#[test]
fn the_real_tdx_guest_ioctl_fails_cleanly_off_tdx() {
    assert_eq!(tdx::device::TDX_CMD_GET_REPORT0, 0xc440_5401);
    let dir = tempfile::tempdir().unwrap();
    let real = tdx::RealTdxGuest;
    let err = real.get_report0(&dir.path().join("tdx_guest"), &[0; 64]).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::NotFound);
    let file = dir.path().join("not-a-device");
    std::fs::write(&file, b"").unwrap();
    let err = real.get_report0(&file, &[0; 64]).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::ENOTTY), "{err}");
}

use tdx::TdxGuest as _;

// ---------------------------------------------------------------- initdata

fn kata_disk(doc: &[u8]) -> Vec<u8> {
    let gz = gzip::compress_like_kata(doc);
    let mut img = initdata::MAGIC.to_vec();
    img.extend_from_slice(&(gz.len() as u64).to_le_bytes());
    img.extend_from_slice(&gz);
    img.resize(img.len().div_ceil(512) * 512, 0);
    img
}

const DOC: &str = "version = \"0.1.0\"\nalgorithm = \"sha384\"\n[data]\n\"ztinit.toml\" = '''\n[kbs]\nurl = \"http://10.0.2.100:8080\"\n'''\n";

fn snp_with_host_data(host_data: &[u8]) -> Guest {
    let mut report = milan_report();
    report[SNP_HOST_DATA_OFFSET..SNP_HOST_DATA_OFFSET + 32].copy_from_slice(host_data);
    snp_guest(report, Fault::None)
}

fn sha384(data: &[u8]) -> Vec<u8> {
    use sha2::Digest;
    sha2::Sha384::digest(data).to_vec()
}

#[test]
fn a_volume_disk_is_never_probed_for_initdata() {
    let g = snp_with_host_data(&sha384(&data("initdata.toml"))[..32]);
    g.device("vda", b"a model disk");
    g.device("vdb", &data("initdata.img"));
    assert_eq!(initdata::find_device(&g.paths.dev, &["vda".into()]).unwrap(), Some(g.paths.dev.join("vdb")));
    // Named by a volume's serial, the initdata disk is not read at all.
    assert_eq!(initdata::find_device(&g.paths.dev, &["vdb".into()]).unwrap(), None);
    // HOSTDATA commits to the initdata the host hid this way: refused.
    let mut p = detect(&cfg(&[TeeKind::Snp]), &g.paths).unwrap();
    assert!(initdata::load(&TeeConfig::default(), &g.paths, p.as_mut(), &["vdb".into()]).is_err());
    let required = TeeConfig { initdata: InitdataMode::Required, ..TeeConfig::default() };
    assert!(initdata::load(&required, &g.paths, p.as_mut(), &["vdb".into()]).is_err());
}

#[test]
fn kata_initdata_disk_from_an_independent_gzip_is_read() {
    // tests/data/tee/initdata.img was written by Python's zlib, laid out
    // like Kata's runtime-rs `create_compressed_block`.
    let g = snp_with_host_data(&sha384(&data("initdata.toml"))[..32]);
    g.device("vda", b"some other disk, not initdata");
    g.device("vdb", &data("initdata.img"));
    assert_eq!(initdata::find_device(&g.paths.dev, &[]).unwrap(), Some(g.paths.dev.join("vdb")));
    let mut p = detect(&cfg(&[TeeKind::Snp]), &g.paths).unwrap();
    let doc = initdata::load(&TeeConfig::default(), &g.paths, p.as_mut(), &[]).unwrap().unwrap();
    assert_eq!(doc.body().as_bytes(), data("initdata.toml"));
    assert_eq!(
        hex::encode(doc.digest()),
        "07c02fa6ea53537947ebaccffac36a7e259d1669c47c944ee7ce1a7dd0ccbf51075e290112f914c4e5ba718cb4ea7d9f"
    );
    assert_eq!(doc.kbs_init_data()["format"], "toml");
    assert_eq!(doc.kbs_init_data()["body"], doc.body());
}

#[test]
fn initdata_must_match_hostdata() {
    let g = snp_with_host_data(&[0xee; 32]);
    g.device("vdb", &kata_disk(DOC.as_bytes()));
    let mut p = detect(&cfg(&[TeeKind::Snp]), &g.paths).unwrap();
    let err = initdata::load(&TeeConfig::default(), &g.paths, p.as_mut(), &[]).err().unwrap();
    assert!(matches!(err, TeeError::Initdata(InitdataError::Mismatch { field: "HOSTDATA", .. })), "{err}");
    assert!(err.to_string().contains("does not match HOSTDATA eeeeeeee"), "{err}");
}

#[test]
fn initdata_binds_to_tdx_mrconfigid_with_zero_padding() {
    let doc = DOC.replace("sha384", "sha256");
    let mut mrconfigid = [0u8; 48];
    use sha2::Digest;
    mrconfigid[..32].copy_from_slice(&sha2::Sha256::digest(doc.as_bytes()));
    let mut quote = data("tdx_quote_5.dat");
    quote[TDX_V5_MRCONFIGID_OFFSET..TDX_V5_MRCONFIGID_OFFSET + 48].copy_from_slice(&mrconfigid);
    // The TD was launched with that MRCONFIGID: the TDX module says so, and
    // the quote (re-signed by a real QE, edited here) repeats it.
    let g = tdx_guest(quote.clone(), TDX_V5_REPORT_DATA_OFFSET, Fault::None);
    g.device("vdc", &kata_disk(doc.as_bytes()));
    let mut p = detect(&cfg(&[TeeKind::Tdx]), &g.paths).unwrap();
    let probes = g.fake.created.lock().unwrap().len();
    let loaded = initdata::load(&TeeConfig::default(), &g.paths, p.as_mut(), &[]).unwrap().unwrap();
    assert_eq!(loaded.algorithm, initdata::Algorithm::Sha256);
    assert_eq!(g.fake.created.lock().unwrap().len(), probes, "MRCONFIGID comes from the TDREPORT, not a quote");
    assert!(p.evidence(&digest()).is_ok());
    // The same document against an all-zero MRCONFIGID is a mismatch.
    let g = tdx_guest(data("tdx_quote_5.dat"), TDX_V5_REPORT_DATA_OFFSET, Fault::None);
    g.device("vdc", &kata_disk(doc.as_bytes()));
    let mut p = detect(&cfg(&[TeeKind::Tdx]), &g.paths).unwrap();
    let err = initdata::load(&TeeConfig::default(), &g.paths, p.as_mut(), &[]).err().unwrap();
    assert!(matches!(err, TeeError::Initdata(InitdataError::Mismatch { field: "MRCONFIGID", .. })), "{err}");
}

#[test]
fn a_host_quote_that_claims_another_mrconfigid_is_refused() {
    // Issue 12, finding 4: the TD was launched with an all-zero MRCONFIGID;
    // the host delivers its own initdata and a quote (the signed sample,
    // edited) whose MRCONFIGID is that initdata's digest.
    let doc = DOC.replace("sha384", "sha256");
    let mut mrconfigid = [0u8; 48];
    use sha2::Digest;
    mrconfigid[..32].copy_from_slice(&sha2::Sha256::digest(doc.as_bytes()));
    let genuine = data("tdx_quote_5.dat");
    let mut forged = genuine.clone();
    forged[TDX_V5_MRCONFIGID_OFFSET..TDX_V5_MRCONFIGID_OFFSET + 48].copy_from_slice(&mrconfigid);
    let g = tdx_guest_with(forged, TDX_V5_REPORT_DATA_OFFSET, Fault::None, TdxAnswer::Report(tdreport_of(&genuine)));
    g.device("vdc", &kata_disk(doc.as_bytes()));
    let mut p = detect(&cfg(&[TeeKind::Tdx]), &g.paths).unwrap();
    let err = initdata::load(&TeeConfig::default(), &g.paths, p.as_mut(), &[]).err().unwrap();
    assert!(matches!(err, TeeError::Initdata(InitdataError::Mismatch { field: "MRCONFIGID", .. })), "{err}");
    assert!(err.to_string().contains("does not match MRCONFIGID 000000"), "{err}");
    let err = p.evidence(&digest()).err().unwrap();
    assert!(matches!(err, TeeError::Tdx(TdxError::QuoteMismatch { field: "MRCONFIGID", .. })), "{err}");
    let msg = err.to_string();
    assert!(msg.contains(&format!("the quote's MRCONFIGID {}", hex::encode(mrconfigid))), "{msg}");
    assert!(msg.contains(&format!("differs from the TDREPORT's {}", hex::encode([0u8; 48]))), "{msg}");
}

#[test]
fn absent_initdata_is_fine_only_when_nothing_was_bound() {
    let g = snp_with_host_data(&[0; 32]);
    let mut p = detect(&cfg(&[TeeKind::Snp]), &g.paths).unwrap();
    assert!(initdata::load(&TeeConfig::default(), &g.paths, p.as_mut(), &[]).unwrap().is_none());
    let required = TeeConfig { initdata: InitdataMode::Required, ..TeeConfig::default() };
    let err = initdata::load(&required, &g.paths, p.as_mut(), &[]).err().unwrap();
    assert!(matches!(err, TeeError::Initdata(InitdataError::Missing(_))), "{err}");

    let g = snp_with_host_data(&[0x11; 32]);
    let mut p = detect(&cfg(&[TeeKind::Snp]), &g.paths).unwrap();
    let err = initdata::load(&TeeConfig::default(), &g.paths, p.as_mut(), &[]).err().unwrap();
    assert!(matches!(err, TeeError::Initdata(InitdataError::Withheld { field: "HOSTDATA", .. })), "{err}");
    let off = TeeConfig { initdata: InitdataMode::Off, ..TeeConfig::default() };
    assert!(initdata::load(&off, &g.paths, p.as_mut(), &[]).unwrap().is_none());
}

#[test]
fn malformed_initdata_is_refused_with_its_reason() {
    let cases: [(&[u8], &str); 5] = [
        (b"version = \"0.2.0\"\nalgorithm = \"sha384\"\n[data]\n", "version \"0.2.0\" is not supported"),
        (b"version = \"0.1.0\"\nalgorithm = \"md5\"\n[data]\n", "algorithm \"md5\" is not supported"),
        (b"version = \"0.1.0\"\nalgorithm = \"sha384\"\n", "missing field `data`"),
        (b"not toml [", "not valid initdata TOML"),
        (b"version = \"0.1.0\"\nalgorithm = \"sha384\"\n[data]\nx = \"\xff\"\n", "not UTF-8"),
    ];
    for (doc, want) in cases {
        let g = snp_with_host_data(&[0; 32]);
        g.device("vdb", &kata_disk(doc));
        let mut p = detect(&cfg(&[TeeKind::Snp]), &g.paths).unwrap();
        let err = initdata::load(&TeeConfig::default(), &g.paths, p.as_mut(), &[]).err().unwrap().to_string();
        assert!(err.contains(want), "{want}: {err}");
    }
    let g = snp_with_host_data(&[0; 32]);
    g.device("vdb", &kata_disk(DOC.as_bytes()));
    g.device("vdc", &kata_disk(DOC.as_bytes()));
    let err = initdata::find_device(&g.paths.dev, &[]).err().unwrap();
    assert!(matches!(err, InitdataError::Ambiguous(_)), "{err}");
    let mut bad_len = kata_disk(DOC.as_bytes());
    bad_len[8..16].copy_from_slice(&(u64::MAX).to_le_bytes());
    let path = g.device("vdb", &bad_len);
    assert!(matches!(initdata::read_device(&path), Err(InitdataError::BadLength { .. })));
    let mut corrupt = kata_disk(DOC.as_bytes());
    corrupt[90] ^= 0xff; // inside the deflate stream
    let path = g.device("vdb", &corrupt);
    assert!(matches!(initdata::read_device(&path), Err(InitdataError::Gzip { .. })));
}

// ---------------------------------------------------------------- config

fn tee_issues(text: &str) -> Vec<String> {
    let full = format!("[workload]\npath = \"/bin/app\"\n[tee]\n{text}");
    match crate::config::Config::load(crate::config::Sources {
        origin: "ztinit.toml",
        text: &full,
        cmdline: None,
        files: &crate::config::NoFiles,
    }) {
        Ok(_) => Vec::new(),
        Err(e) => e.issues(),
    }
}

#[test]
fn tee_section_defaults_and_validation() {
    // Absent: no TEE is required (until [kbs] asks for attestation).
    assert!(crate::config::Config::default().tee.is_none());
    assert!(crate::config::Config::default().effective_tee().is_none());
    let t = TeeConfig::default();
    assert_eq!(t.accept, [TeeKind::Snp, TeeKind::Tdx]);
    assert!(!t.allow_sample && !t.allow_debug);
    assert!(
        tee_issues("accept = [\"snp\"]\nallow_debug = true\ninitdata = \"required\"\ninitdata_keys = [\"kbs.url\"]\n")
            .is_empty()
    );
    assert!(tee_issues("accept = [\"sample\"]\nallow_sample = true\n").is_empty());
    for (text, want) in [
        ("accept = [\"sample\"]\n", "tee.accept: \"sample\" proves nothing and needs allow_sample = true"),
        ("allow_sample = true\n", "tee.allow_sample: has no effect unless accept lists \"sample\""),
        ("accept = []\n", "tee.accept: must name at least one TEE kind"),
        ("accept = [\"snp\", \"snp\"]\n", "snp is listed twice"),
        ("accept = [\"sgx\"]\n", "tee.accept"),
        ("initdata_keys = [\"tee.allow_debug\"]\n", "tee.initdata_keys[0]: tee.allow_debug is baked-only"),
        (
            "initdata_keys = [\"kbs.pinned_cert\"]\n",
            "kbs.pinned_cert is baked-only: initdata may set only boot.log_level",
        ),
        ("initdata_keys = [\"kbs.nonsense\"]\n", "kbs.nonsense is not a configuration key"),
        ("initdata_keys = [\"kbs.url\", \"kbs.url\"]\n", "kbs.url is listed twice"),
        ("initdata = \"off\"\ninitdata_keys = [\"kbs.url\"]\n", "initdata = \"off\" ignores initdata"),
        (
            "initdata_sections = [\"kbs\"]\n",
            "tee.initdata_sections: replaced by initdata_keys (one key at a time); initdata may no longer set: kbs.ca_cert, kbs.ca_cert_file, kbs.pinned_cert, kbs.pinned_cert_file, kbs.insecure_http",
        ),
        ("bogus = 1\n", "tee.bogus: unknown key"),
    ] {
        let issues = tee_issues(text);
        assert!(issues.iter().any(|i| i.contains(want)), "{text}: {issues:?}");
    }
}
