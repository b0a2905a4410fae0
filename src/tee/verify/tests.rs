//! The verifiers against the public samples (tests/data/tee, expected values
//! from shared/tee-evidence-samples/MANIFEST.md) and the `sev` crate's
//! Milan vectors.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use sev::firmware::guest::AttestationReport;
use sev::firmware::host::{CertTableEntry, CertType};

use super::*;
use crate::tee::snp::{evidence_json, parse_report};
use crate::tee::tdx::quote;
use crate::tee::tests::{MILAN_MEASUREMENT, data, milan_report};

fn h<const N: usize>(s: &str) -> [u8; N] {
    parse_hex(s).unwrap()
}

// ---------------------------------------------------------------- SNP

fn milan() -> AttestationReport {
    parse_report(&milan_report()).unwrap()
}

fn with_vcek(report: &AttestationReport, vcek: &[u8]) -> serde_json::Value {
    evidence_json(report, Some(vec![CertTableEntry::new(CertType::VCEK, vcek.to_vec())]))
}

fn milan_evidence() -> serde_json::Value {
    with_vcek(&milan(), &data("vcek_milan.der"))
}

fn milan_digest() -> Vec<u8> {
    milan().report_data.0.to_vec()
}

fn genoa_evidence() -> serde_json::Value {
    serde_json::from_slice(&data("snp_evidence_genoa.json")).unwrap()
}

const GENOA_REPORT_DATA: &str = "7e7320889600c7ac133aea7b896c51f41026002982292a7369559796999c1bf929eef3ff23c46e858f0b1982f9a92b17c51b578d958cde6b0c92978f150cf9b0";

#[test]
fn milan_sample_parses_to_the_manifest_values() {
    let r = milan();
    assert_eq!(r.version, 2);
    assert_eq!(u64::from(r.policy), 0x30000);
    assert!(!r.policy.debug_allowed());
    assert_eq!(hex::encode(r.measurement.0), MILAN_MEASUREMENT);
    assert_eq!(
        hex::encode(r.report_data.0),
        "d447b55d197491bfe15cf298f9de9986b7a7c4be2468b4f6e2d53b71d7c645810b0f2cdfca0040433be063fc1a8293f0f3f8dae7b79fecb3d1cd82bd6a93ebfd"
    );
    assert_eq!(r.host_data.0, [0; 32]);
    assert_eq!(hex::encode(&r.chip_id.0[..16]), "d49554ec717f4e5b0fe6b143bcf0405b");
    let t = &r.reported_tcb;
    assert_eq!((t.bootloader, t.tee, t.snp, t.microcode), (3, 0, 8, 115));
}

#[test]
fn genoa_sample_parses_to_the_manifest_values() {
    let r: AttestationReport = serde_json::from_value(genoa_evidence()["attestation_report"].clone()).unwrap();
    assert_eq!(r.version, 3);
    assert_eq!(
        hex::encode(r.measurement.0),
        "6a6519d757e68c2e939c9dbbbc1828498e8de35d2766dd05f1a2cca5059d0cf4ae62a36d75c837974dd50b315506e73e"
    );
    assert_eq!(hex::encode(r.report_data.0), GENOA_REPORT_DATA);
    assert_eq!(r.host_data.0, [0; 32]);
    assert_eq!(hex::encode(&r.chip_id.0[..16]), "371c55d6d15cb50f16dc31d39a24e300");
    assert_eq!((r.cpuid_fam_id, r.cpuid_mod_id, r.cpuid_step), (Some(0x19), Some(0xa0), Some(2)));
}

#[test]
fn the_valid_snp_samples_are_accepted() {
    let claims = snp::verify(&milan_evidence(), &milan_digest(), None, &SnpPolicy::default()).unwrap();
    assert_eq!(claims["measurement"], MILAN_MEASUREMENT);
    assert_eq!(claims["signer"], "VCEK");
    assert_eq!(claims["product"], "Milan");
    let genoa_rd = hex::decode(GENOA_REPORT_DATA).unwrap();
    let claims = snp::verify(&genoa_evidence(), &genoa_rd, None, &SnpPolicy::default()).unwrap();
    assert_eq!(claims["product"], "Genoa");
    assert_eq!(claims["version"], 3);
}

#[test]
fn snp_report_data_must_match_the_runtime_data() {
    let err = snp::verify(&milan_evidence(), &[0x42; 48], None, &SnpPolicy::default()).unwrap_err();
    assert!(matches!(err, VerifyError::ReportDataMismatch { .. }), "{err}");
    assert!(err.to_string().starts_with("report data mismatch: the evidence binds d447b55d"), "{err}");
    // The 48-byte digest the KBS computes is zero-padded, never truncated.
    let err = snp::verify(&milan_evidence(), &milan_digest()[..48], None, &SnpPolicy::default()).unwrap_err();
    assert!(matches!(err, VerifyError::ReportDataMismatch { .. }), "{err}");
}

#[test]
fn snp_endorsement_keys_come_from_the_evidence_or_the_policy() {
    let bare = evidence_json(&milan(), None);
    assert_eq!(snp::verify(&bare, &milan_digest(), None, &SnpPolicy::default()).unwrap_err(), VerifyError::NoVek);
    let policy = SnpPolicy { endorsement_keys: vec![data("vcek_milan.der")], ..SnpPolicy::default() };
    assert!(snp::verify(&bare, &milan_digest(), None, &policy).is_ok());
}

#[test]
fn snp_wrong_or_forged_endorsement_keys_are_refused() {
    // Turin VCEK: a genuine AMD certificate, but not for this chip.
    let err = snp::verify(&with_vcek(&milan(), &data("vcek_turin.der")), &milan_digest(), None, &SnpPolicy::default())
        .unwrap_err();
    assert!(matches!(err, VerifyError::Signature(_)), "{err}");
    assert!(err.to_string().contains("does not sign this report"), "{err}");
    // Trustee's VCEK-shaped certificate that AMD never signed.
    let err = snp::verify(
        &with_vcek(&milan(), &data("test-vcek-invalid-legacy.der")),
        &milan_digest(),
        None,
        &SnpPolicy::default(),
    )
    .unwrap_err();
    assert!(matches!(err, VerifyError::Chain(_)), "{err}");
    // The Genoa report with the Milan VCEK.
    let mut ev = genoa_evidence();
    ev["cert_chain"] = serde_json::to_value(vec![CertTableEntry::new(CertType::VCEK, data("vcek_milan.der"))]).unwrap();
    let genoa_rd = hex::decode(GENOA_REPORT_DATA).unwrap();
    let err = snp::verify(&ev, &genoa_rd, None, &SnpPolicy::default()).unwrap_err();
    assert!(matches!(err, VerifyError::Signature(_)), "{err}");
}

#[test]
fn snp_a_flipped_bit_breaks_the_signature() {
    let mut raw = milan_report();
    raw[21] ^= 1; // family_id, inside the signed range (the sev crate's own test)
    let ev = with_vcek(&parse_report(&raw).unwrap(), &data("vcek_milan.der"));
    let err = snp::verify(&ev, &milan_digest(), None, &SnpPolicy::default()).unwrap_err();
    assert!(matches!(err, VerifyError::Signature(_)), "{err}");
}

#[test]
fn snp_policy_is_applied() {
    let ev = milan_evidence();
    let rd = milan_digest();
    let wrong = SnpPolicy { measurements: vec![[0x11; 48]], ..SnpPolicy::default() };
    let err = snp::verify(&ev, &rd, None, &wrong).unwrap_err();
    assert_eq!(err, VerifyError::ReferenceValue { field: "measurement", found: MILAN_MEASUREMENT.into() });
    let right = SnpPolicy { measurements: vec![h(MILAN_MEASUREMENT)], ..SnpPolicy::default() };
    assert!(snp::verify(&ev, &rd, None, &right).is_ok());

    let v3 = SnpPolicy { min_report_version: 3, ..SnpPolicy::default() };
    assert_eq!(snp::verify(&ev, &rd, None, &v3).unwrap_err(), VerifyError::ReportVersion { found: 2, min: 3 });

    let tcb = snp::Tcb { bootloader: 3, tee: 0, snp: 9, microcode: 115, fmc: None };
    let newer = SnpPolicy { min_tcb: Some(tcb), ..SnpPolicy::default() };
    assert!(matches!(snp::verify(&ev, &rd, None, &newer).unwrap_err(), VerifyError::Tcb(_)));

    let mut debug = milan();
    debug.policy.set_debug_allowed(true);
    let err = snp::verify(&with_vcek(&debug, &data("vcek_milan.der")), &rd, None, &SnpPolicy::default()).unwrap_err();
    assert!(matches!(err, VerifyError::Debug(_)), "{err}");
}

#[test]
fn snp_init_data_is_bound_to_host_data() {
    let ev = milan_evidence();
    let rd = milan_digest();
    // HOSTDATA is zero: a zero digest matches, any other does not.
    assert!(snp::verify(&ev, &rd, Some(&[0; 48]), &SnpPolicy::default()).is_ok());
    let err = snp::verify(&ev, &rd, Some(&[7; 48]), &SnpPolicy::default()).unwrap_err();
    assert!(matches!(err, VerifyError::InitDataMismatch { field: "HOSTDATA", .. }), "{err}");
}

#[test]
fn snp_malformed_evidence_is_refused() {
    let mut ev = milan_evidence();
    ev["attestation_report"]["measurement"] = serde_json::json!([1, 2, 3]);
    assert!(matches!(
        snp::verify(&ev, &milan_digest(), None, &SnpPolicy::default()),
        Err(VerifyError::Malformed { .. })
    ));
    let err = snp::verify(&serde_json::json!({"quote": "x"}), &[0; 48], None, &SnpPolicy::default()).unwrap_err();
    assert!(matches!(err, VerifyError::Malformed { tee: "snp", .. }), "{err}");
    let mut future = milan_evidence();
    future["attestation_report"]["version"] = 9.into();
    let err = snp::verify(&future, &milan_digest(), None, &SnpPolicy::default()).unwrap_err();
    assert_eq!(err, VerifyError::ReportVersion { found: 9, min: 2 });
}

// ---------------------------------------------------------------- TDX

struct QuoteFacts {
    file: &'static str,
    version: u16,
    body: quote::BodyKind,
    attributes: u64,
    mr_td: &'static str,
    rtmr0: &'static str,
    rtmr1: &'static str,
    report_data: &'static str,
    trailing: usize,
}

const QUOTES: [QuoteFacts; 3] = [
    QuoteFacts {
        file: "tdx_quote_4.dat",
        version: 4,
        body: quote::BodyKind::Tdx10,
        attributes: 0x1000_0001,
        mr_td: "705ee9381b8633a9fbe532b52345e8433343d2868959f57889d84ca377c395b689cac1599ccea1b7d420483a9ce5f031",
        rtmr0: "e940da7c2712d2790e2961e00484f4fa8e6f9eed71361655ae22699476b14f9e63867eb41edd4b480fef0c59f496b288",
        rtmr1: "559cfcf42716ed6c40a48a73d5acb7da255435012f0a9f00fbe8c1c57612ede486a5684c4c9ff3ddf52315fcdca3a596",
        report_data: "7c71fe2c86eff65a7cf8dbc22b3275689fd0464a267baced1bf94fc1324656aeb755da3d44d098c0c87382f3a5f85b45c8a28fee1d3bdb38342bf96671501429",
        trailing: 0,
    },
    QuoteFacts {
        file: "tdx_quote_5.dat",
        version: 5,
        body: quote::BodyKind::Tdx15,
        attributes: 0x1000_0000,
        mr_td: "dfba221b48a22af8511542ee796603f37382800840dcd978703909bf8e64d4c8a1e9de86e7c9638bfcba422f3886400a",
        rtmr0: "9b529f3689e2e8ebb899e9abbbc3dab394d6545e8cdb28a2abb9cc2f377b83a65c01ba56b824cd3ee885df20051f5128",
        rtmr1: "ca5a979317ffe8a527a3b7aadab03976d7cb6eef1041fb9bd9d69e6fafa7252cdc10e4c2a55e7ecbd2ddb5cacc867430",
        report_data: "6d6ab13b046cff606ac0074be13981b07b6325dba10b5facc96febf551c0c3be2b75f92fe1f88f4bb996969ad0174b4b7a70261b7b85c844f4b33a4674fd049f",
        trailing: 0,
    },
    QuoteFacts {
        file: "tdx_quote_4_azure.dat",
        version: 4,
        body: quote::BodyKind::Tdx10,
        attributes: 0,
        mr_td: "024a32b070383331181619fa387cb4d55d1e38879f989933055ccad5bc2db795d1737b66205949d15469dc8c1ba7ab7b",
        rtmr0: "000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000",
        rtmr1: "000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000",
        report_data: "9734504f161d104c74e3165c15f779b06a9bb40dfa71937817d7eee68e5938390000000000000000000000000000000000000000000000000000000000000000",
        trailing: 70,
    },
];

fn tdx_evidence(quote: &[u8], log: Option<&[u8]>) -> serde_json::Value {
    crate::tee::tdx::evidence_json(quote, log)
}

#[test]
fn tdx_samples_parse_to_the_manifest_values() {
    for f in &QUOTES {
        let raw = data(f.file);
        let q = quote::parse(&raw).unwrap_or_else(|e| panic!("{}: {e}", f.file));
        assert_eq!(q.version, f.version, "{}", f.file);
        assert_eq!(q.body_kind, f.body, "{}", f.file);
        assert_eq!(q.body.attributes(), f.attributes, "{}", f.file);
        assert_eq!(hex::encode(q.body.mr_td), f.mr_td, "{}", f.file);
        assert_eq!(hex::encode(q.body.rtmr[0]), f.rtmr0, "{}", f.file);
        assert_eq!(hex::encode(q.body.rtmr[1]), f.rtmr1, "{}", f.file);
        assert_eq!(q.body.rtmr[2], [0; 48], "{}", f.file);
        assert_eq!(q.body.rtmr[3], [0; 48], "{}", f.file);
        assert_eq!(q.body.mr_config_id, [0; 48], "{}", f.file);
        assert_eq!(hex::encode(q.body.report_data), f.report_data, "{}", f.file);
        assert_eq!(q.trailing, f.trailing, "{}", f.file);
        assert_eq!(q.signature_data.len(), 4300, "{}", f.file);
        assert_eq!(hex::encode(q.qe_vendor_id), tdx::INTEL_QE_VENDOR_ID);
    }
    let q5 = data("tdx_quote_5.dat");
    let q5 = quote::parse(&q5).unwrap();
    assert_eq!(
        q5.body.mr_servicetd.map(hex::encode).as_deref(),
        Some("383c87d3bbb047b2d171eaca95312ede99f258088dc788f6ae2ccf8b6dd848fe8d47629e08b3f6cbd4a00dd47a5a033d")
    );
}

#[test]
fn the_valid_tdx_samples_are_accepted() {
    let debug_ok = TdxPolicy { allow_debug: true, ..TdxPolicy::default() };
    for f in &QUOTES {
        let raw = data(f.file);
        let rd = hex::decode(f.report_data).unwrap();
        let claims =
            tdx::verify(&tdx_evidence(&raw, None), &rd, None, &debug_ok).unwrap_or_else(|e| panic!("{}: {e}", f.file));
        assert_eq!(claims["mr_td"], f.mr_td);
        assert_eq!(claims["signature_verified"], true);
    }
}

#[test]
fn tdx_report_data_must_match_the_runtime_data() {
    let raw = data("tdx_quote_5.dat");
    let err = tdx::verify(&tdx_evidence(&raw, None), &[0x42; 48], None, &TdxPolicy::default()).unwrap_err();
    assert!(matches!(err, VerifyError::ReportDataMismatch { .. }), "{err}");
    assert!(err.to_string().contains("the evidence binds 6d6ab13b"), "{err}");
}

#[test]
fn tdx_debug_tds_are_refused_by_default() {
    let raw = data("tdx_quote_4.dat");
    let rd = hex::decode(QUOTES[0].report_data).unwrap();
    let err = tdx::verify(&tdx_evidence(&raw, None), &rd, None, &TdxPolicy::default()).unwrap_err();
    assert_eq!(err, VerifyError::Debug("TD attributes 0x10000001 have DEBUG set".into()));
}

#[test]
fn tdx_reference_values_are_applied() {
    let raw = data("tdx_quote_5.dat");
    let ev = tdx_evidence(&raw, None);
    let rd = hex::decode(QUOTES[1].report_data).unwrap();
    let right = TdxPolicy {
        mrtd: vec![h(QUOTES[1].mr_td)],
        rtmr: [Some(h(QUOTES[1].rtmr0)), Some(h(QUOTES[1].rtmr1)), Some([0; 48]), None],
        mr_config_id: Some([0; 48]),
        ..TdxPolicy::default()
    };
    assert!(tdx::verify(&ev, &rd, None, &right).is_ok());
    let err = tdx::verify(&ev, &rd, None, &TdxPolicy { mrtd: vec![[1; 48]], ..right.clone() }).unwrap_err();
    assert_eq!(err, VerifyError::ReferenceValue { field: "MRTD", found: QUOTES[1].mr_td.into() });
    let mut rtmr = right.rtmr;
    rtmr[1] = Some([2; 48]);
    let err = tdx::verify(&ev, &rd, None, &TdxPolicy { rtmr, ..right.clone() }).unwrap_err();
    assert!(matches!(err, VerifyError::ReferenceValue { field: "RTMR1", .. }), "{err}");
    let err = tdx::verify(&ev, &rd, Some(&[9; 32]), &right).unwrap_err();
    assert!(matches!(err, VerifyError::InitDataMismatch { field: "MRCONFIGID", .. }), "{err}");
}

#[test]
fn tdx_tampered_quotes_fail_the_signature() {
    let rd = hex::decode(QUOTES[1].report_data).unwrap();
    let mut raw = data("tdx_quote_5.dat");
    raw[54 + 136] ^= 1; // MRTD
    let err = tdx::verify(&tdx_evidence(&raw, None), &rd, None, &TdxPolicy::default()).unwrap_err();
    assert_eq!(err, VerifyError::Signature("the attestation key does not sign this quote".into()));
    // A QE report that does not vouch for the attestation key.
    let mut raw = data("tdx_quote_5.dat");
    let qe_report_data = 54 + 648 + 4 + 128 + 6 + 320;
    raw[qe_report_data] ^= 1;
    let err = tdx::verify(&tdx_evidence(&raw, None), &rd, None, &TdxPolicy::default()).unwrap_err();
    assert_eq!(err, VerifyError::Signature("QE report data does not bind the attestation key".into()));
    // A PCK certificate byte changed.
    let mut raw = data("tdx_quote_5.dat");
    let n = raw.len();
    let pem_body = n - 400;
    raw[pem_body] = if raw[pem_body] == b'A' { b'B' } else { b'A' };
    let err = tdx::verify(&tdx_evidence(&raw, None), &rd, None, &TdxPolicy::default()).unwrap_err();
    assert!(matches!(err, VerifyError::Chain(_) | VerifyError::Signature(_)), "{err}");
}

#[test]
fn tdx_truncated_oversized_and_garbled_quotes_never_panic() {
    let raw = data("tdx_quote_4.dat");
    for len in 0..raw.len() {
        let err = quote::parse(&raw[..len]).unwrap_err();
        assert!(matches!(err, quote::QuoteError::Truncated(_)), "length {len}: {err}");
    }
    let big = vec![0u8; quote::MAX_QUOTE_LEN + 1];
    assert_eq!(quote::parse(&big).unwrap_err(), quote::QuoteError::Oversized(quote::MAX_QUOTE_LEN + 1));
    let mut v3 = raw.clone();
    v3[0] = 3;
    assert_eq!(quote::parse(&v3).unwrap_err(), quote::QuoteError::UnsupportedVersion(3));
    let mut sgx = raw.clone();
    sgx[4] = 0;
    assert_eq!(quote::parse(&sgx).unwrap_err(), quote::QuoteError::NotTdx(0));
    let mut key = raw.clone();
    key[2] = 3;
    assert_eq!(quote::parse(&key).unwrap_err(), quote::QuoteError::UnsupportedKeyType(3));
    let mut v5 = data("tdx_quote_5.dat");
    v5[48] = 1;
    assert_eq!(quote::parse(&v5).unwrap_err(), quote::QuoteError::UnsupportedBodyType(1));
    let mut v5 = data("tdx_quote_5.dat");
    v5[50] = 0;
    assert!(matches!(quote::parse(&v5).unwrap_err(), quote::QuoteError::BodySize { .. }));
    let mut long_sig = raw.clone();
    long_sig[632..636].copy_from_slice(&u32::MAX.to_le_bytes());
    assert!(matches!(
        quote::parse(&long_sig).unwrap_err(),
        quote::QuoteError::Truncated(crate::bytes::Truncated { what: "signature data", .. })
    ));

    // Random bytes behind a valid header, and random bytes everywhere.
    let mut seed = 0x2545_f491_4f6c_dd1d_u64;
    let mut next = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for round in 0..2000 {
        let len = (next() % 6000) as usize;
        let mut buf: Vec<u8> = (0..len).map(|_| next().to_le_bytes()[0]).collect();
        if round % 2 == 0 && len >= 8 {
            buf[..8].copy_from_slice(&raw[..8]);
        }
        if let Ok(q) = quote::parse(&buf) {
            let _ = q.signature_data();
        }
        let _ = tdx::verify(&tdx_evidence(&buf, Some(&buf)), &[0; 48], None, &TdxPolicy::default());
        let _ = eventlog::replay(&buf);
    }
}

#[test]
fn tdx_malformed_evidence_is_refused() {
    let err = tdx::verify(&serde_json::json!({"quote": "%%%"}), &[0; 48], None, &TdxPolicy::default()).unwrap_err();
    assert!(matches!(err, VerifyError::Malformed { tee: "tdx", .. }), "{err}");
    let huge = STANDARD.encode(vec![0u8; 64 << 10]);
    let err = tdx::verify(&serde_json::json!({"quote": huge}), &[0; 48], None, &TdxPolicy::default()).unwrap_err();
    assert!(err.to_string().contains("too large"), "{err}");
}

// ---------------------------------------------------------------- event log

#[test]
fn ccel_replay_gives_the_manifest_rtmrs() {
    let r = eventlog::replay(&data("CCEL_data_ovmf")).unwrap();
    assert_eq!(
        hex::encode(r.rtmr[0]),
        "8566f998798db09443b244c62de9a3041fb02e2e6936c4396d784bba2e90177329ec5aba3bb484404f2ab9cc90abe193"
    );
    assert_eq!(
        hex::encode(r.rtmr[1]),
        "775b9f6bfe99f8a31396f0d0218e67ffa796d3b96ccf961cbb0deba48c79c00f082cda1a5567c1c16305f1fc210c13c6"
    );
    assert_eq!(
        hex::encode(r.rtmr[2]),
        "94eaf7a7bf398ed8d888c91057ae0261802e4f3df084213a76ca7f0b5055ac9d2241de43cd58d9e8b49c503bbf25f34a"
    );
    assert_eq!(r.rtmr[3], [0; 48]);
    assert_eq!(r.events, 20);
}

#[test]
fn an_event_log_that_does_not_replay_to_the_quote_is_refused() {
    let raw = data("tdx_quote_5.dat");
    let rd = hex::decode(QUOTES[1].report_data).unwrap();
    let ev = tdx_evidence(&raw, Some(&data("CCEL_data_ovmf")));
    let err = tdx::verify(&ev, &rd, None, &TdxPolicy::default()).unwrap_err();
    assert!(
        matches!(err, VerifyError::RtmrMismatch { index: 0, ref replayed, .. } if replayed.starts_with("8566f998")),
        "{err}"
    );
    let skip = TdxPolicy { replay_eventlog: false, ..TdxPolicy::default() };
    assert!(tdx::verify(&ev, &rd, None, &skip).is_ok());
    let mut cut = data("CCEL_data_ovmf");
    cut.truncate(200);
    assert!(matches!(eventlog::replay(&cut), Err(eventlog::EventLogError::Truncated(_))));
}

// ---------------------------------------------------------------- dispatch

#[test]
fn dispatch_and_sample() {
    use crate::tee::TeeKind;
    assert_eq!(TeeKind::from_name("tdx"), Some(TeeKind::Tdx));
    assert_eq!(TeeKind::from_name("SNP"), None);
    let policy = Policy::default();
    assert!(verify(TeeKind::Snp, &milan_evidence(), &milan_digest(), None, &policy).is_ok());
    let sample = serde_json::json!({"svn": "1", "report_data": STANDARD.encode([5u8; 48])});
    let err = verify(TeeKind::Sample, &sample, &[5; 48], None, &policy).unwrap_err();
    assert!(err.to_string().contains("not accepted"), "{err}");
    let allow = Policy { allow_sample: true, ..Policy::default() };
    assert!(verify(TeeKind::Sample, &sample, &[5; 48], None, &allow).is_ok());
    let err = verify(TeeKind::Sample, &sample, &[6; 48], None, &allow).unwrap_err();
    assert!(matches!(err, VerifyError::ReportDataMismatch { .. }));
}

#[test]
fn the_built_in_amd_roots_are_the_pinned_ones() {
    use sev::certs::snp::builtin;
    use sha2::{Digest, Sha256};
    // Pins from the samples' MANIFEST.md.
    let arks = [builtin::milan::ark(), builtin::genoa::ark(), builtin::turin::ark()];
    for ((name, pin), ark) in snp::AMD_ARK_SHA256.iter().zip(arks) {
        let der = ark.unwrap().to_der().unwrap();
        assert_eq!(hex::encode(Sha256::digest(der)), *pin, "{name}");
    }
    assert_eq!(snp::AMD_ARK_SHA256[0].1, "69d063b45344d26a2e94e1f4210de49ef555308287d4c174445c95639a540bcd");
}
