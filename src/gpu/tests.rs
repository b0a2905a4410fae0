//! Tests over the public NVIDIA samples in `tests/data/gpu` (see its MANIFEST.md).

use std::path::PathBuf;

use super::certs;
use super::spdm::{self, Report};
use super::verify::{self, Evidence, Expected, Outcome, Trust};

pub(crate) fn sample(rel: &str) -> Vec<u8> {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/gpu").join(rel);
    std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

pub(crate) fn report(rel: &str) -> Vec<u8> {
    spdm::decode_report_text(&sample(rel)).expect("sample report decodes")
}

fn trust() -> Trust {
    // Fixed time: the samples' device chains are valid to 9999.
    Trust { root: certs::nvidia_device_root(), now: certs::unix(1_780_000_000) }
}

fn outcome<'a>(v: &'a verify::DeviceVerdict, name: &str) -> &'a Outcome {
    &v.check(name).unwrap_or_else(|| panic!("no check {name}")).outcome
}

fn fail_text(v: &verify::DeviceVerdict, name: &str) -> String {
    match outcome(v, name) {
        Outcome::Fail(s) => s.clone(),
        other => panic!("{name}: expected a failure, got {other:?}"),
    }
}

#[test]
fn trustee_hopper_report_parses_like_trustee_claims() {
    let r = Report::parse(&report("trustee/hopperAttestationReport.txt")).unwrap();
    let claims: serde_json::Value =
        serde_json::from_slice(&sample("trustee/hopperAttestationReport-claims.txt")).unwrap();
    assert_eq!(r.driver_version().as_deref(), Some("550.90.07"));
    assert_eq!(r.vbios_version().unwrap().to_lowercase(), claims["config"]["vbios_version"].as_str().unwrap());
    assert_eq!(hex::encode(r.fwid().unwrap()), claims["config"]["fwid"].as_str().unwrap());
    assert_eq!(r.project().as_deref(), Some("1010"));
    assert_eq!(r.project_sku().as_deref(), Some("0200"));
    assert_eq!(r.chip_sku().as_deref(), Some("882"));
    assert!(!r.nvdec0_enabled());
    let m = verify::measurement_claims(&r);
    for (k, v) in claims["measurements"].as_object().unwrap() {
        assert_eq!(m.get(k).map(String::as_str), v.as_str(), "measurement {k}");
    }
    assert_eq!(hex::encode(&r.request_nonce[..4]), "931d8dd0");
}

#[test]
fn valid_hex_reports_verify() {
    let cases = [
        ("trustee/hopperAttestationReport.txt", "trustee/hopper_cert_chain_case1.txt", "550.90.07", "96.00.9F.00.01"),
        ("nvat/sample_attestation_data/gpu/hopperAttestationReport.txt", "nvat/sample_attestation_data/gpu/hopperCertChain.txt", "535.86.09", "96.00.5E.00.01"),
        ("nvat/sample_attestation_data/gpu/blackwellAttestationReport.txt", "nvat/sample_attestation_data/gpu/blackwellCertChain.txt", "575.32", "97.00.88.00.0F"),
        ("nvat/sample_attestation_data/gpu/hopperAttestationReportExpired.txt", "nvat/sample_attestation_data/gpu/hopperCertChainExpired.txt", "570.124.03", "96.00.5E.00.04"),
    ];
    for (rep, chain, driver, vbios) in cases {
        let raw = report(rep);
        let chain = sample(chain);
        let parsed = Report::parse(&raw).unwrap();
        let nonce = parsed.request_nonce;
        let ev = Evidence { report: &raw, chain_pem: &chain, arch: None };
        let exp = Expected { nonce: Some(&nonce), driver_versions: &[driver.to_string()], vbios_versions: &[vbios.to_string()], reference: None };
        let v = verify::verify_device(&ev, &exp, &trust());
        assert!(v.passed(), "{rep}: {:?}", v.checks);
    }
}

fn verify_pair(rep: &str, chain: &str, nonce: Option<&[u8; 32]>) -> verify::DeviceVerdict {
    let raw = report(rep);
    let chain = sample(chain);
    let ev = Evidence { report: &raw, chain_pem: &chain, arch: None };
    verify::verify_device(&ev, &Expected { nonce, ..Default::default() }, &trust())
}

const TRUSTEE_REPORT: &str = "trustee/hopperAttestationReport.txt";

#[test]
fn invalid_signature_fails_on_signature_only() {
    let v = verify_pair(
        "nvat/sample_attestation_data/gpu/hopperAttestationReportInvalidSignature.txt",
        "nvat/sample_attestation_data/gpu/hopperCertChain.txt",
        None,
    );
    assert!(fail_text(&v, "signature").contains("does not verify with the key of"), "{:?}", v.checks);
    assert!(matches!(outcome(&v, "chain"), Outcome::Pass(_)));
    assert_eq!(v.first_failure().unwrap().name, "signature");
}

#[test]
fn chain_of_root_only_fails() {
    let v = verify_pair(TRUSTEE_REPORT, "trustee/hopper_cert_chain_case2.txt", None);
    assert!(fail_text(&v, "chain").contains("only the root"), "{:?}", v.checks);
    assert!(!v.passed());
}

#[test]
fn chain_without_leaf_fails_signature_and_fwid() {
    let v = verify_pair(TRUSTEE_REPORT, "trustee/hopper_cert_chain_case4.txt", None);
    assert!(fail_text(&v, "signature").contains("GH100 A01 GSP BROM"), "{:?}", v.checks);
    assert!(fail_text(&v, "fwid").contains("carries no FWID extension"), "{:?}", v.checks);
}

#[test]
fn chain_to_a_foreign_root_fails() {
    let raw = report(TRUSTEE_REPORT);
    let chain = sample("trustee/hopper_cert_chain_case1.txt");
    let foreign = Trust { root: certs::nvidia_rim_root(), now: certs::unix(1_780_000_000) };
    let v = verify::verify_device(&Evidence { report: &raw, chain_pem: &chain, arch: None }, &Expected::default(), &foreign);
    assert!(fail_text(&v, "chain").contains("does not end at the pinned root"), "{:?}", v.checks);
}

#[test]
fn chain_outside_validity_fails_with_injected_clock() {
    let raw = report(TRUSTEE_REPORT);
    let chain = sample("trustee/hopper_cert_chain_case1.txt");
    // 2019: before every certificate of the chain.
    let early = Trust { root: certs::nvidia_device_root(), now: certs::unix(1_560_000_000) };
    let v = verify::verify_device(&Evidence { report: &raw, chain_pem: &chain, arch: None }, &Expected::default(), &early);
    assert!(fail_text(&v, "chain").contains("is not valid at 2019"), "{:?}", v.checks);
}

#[test]
fn wrong_nonce_fails() {
    let wrong = [0x42u8; 32];
    let v = verify_pair(TRUSTEE_REPORT, "trustee/hopper_cert_chain_case1.txt", Some(&wrong));
    let reason = fail_text(&v, "nonce");
    assert!(reason.contains("931d8dd0") && reason.contains(&hex::encode(wrong)), "{reason}");
    assert_eq!(v.first_failure().unwrap().name, "nonce");
}

#[test]
fn tampered_measurement_breaks_the_signature() {
    let mut raw = report(TRUSTEE_REPORT);
    let r = Report::parse(&raw).unwrap();
    // Flip one byte of the value of measurement block 2 (after the 37-byte
    // request, 8-byte response header and block 1).
    let block1_len = 4 + 3 + r.measurements[0].value.len();
    let pos = spdm::REQUEST_LEN + 8 + block1_len + 4 + 3;
    assert_eq!(raw[pos], r.measurements[1].value[0]);
    raw[pos] ^= 0x01;
    let chain = sample("trustee/hopper_cert_chain_case1.txt");
    let v = verify::verify_device(&Evidence { report: &raw, chain_pem: &chain, arch: None }, &Expected::default(), &trust());
    assert!(fail_text(&v, "signature").contains("does not verify"), "{:?}", v.checks);
}

#[test]
fn measurement_differing_from_reference_fails() {
    let raw = report(TRUSTEE_REPORT);
    let r = Report::parse(&raw).unwrap();
    let mut reference = verify::ReferenceValues::default();
    reference.insert(2, vec![r.measurement(2).unwrap().value.clone()], "config");
    reference.insert(3, vec![vec![0u8; 48]], "config");
    let chain = sample("trustee/hopper_cert_chain_case1.txt");
    let exp = Expected { reference: Some(&reference), ..Default::default() };
    let v = verify::verify_device(&Evidence { report: &raw, chain_pem: &chain, arch: None }, &exp, &trust());
    let reason = fail_text(&v, "measurements");
    assert!(reason.starts_with("block 3 (RIM index 2) is "), "{reason}");
    assert!(reason.contains("config expects 0000"), "{reason}");
}

#[test]
fn declared_arch_must_match_the_certificate() {
    let raw = report(TRUSTEE_REPORT);
    let chain = sample("trustee/hopper_cert_chain_case1.txt");
    let ev = Evidence { report: &raw, chain_pem: &chain, arch: Some(verify::Arch::Blackwell) };
    let v = verify::verify_device(&ev, &Expected::default(), &trust());
    assert_eq!(fail_text(&v, "arch"), "declared BLACKWELL but the device certificate is HOPPER");
}

#[test]
fn driver_version_mismatch_fails() {
    let raw = report(TRUSTEE_REPORT);
    let chain = sample("trustee/hopper_cert_chain_case1.txt");
    let exp = Expected { driver_versions: &["550.90.08".to_string()], ..Default::default() };
    let v = verify::verify_device(&Evidence { report: &raw, chain_pem: &chain, arch: None }, &exp, &trust());
    assert_eq!(fail_text(&v, "driver-version"), "report says driver 550.90.07, expected 550.90.08");
}

#[test]
fn truncated_reports_fail_to_parse_at_every_length() {
    let raw = report(TRUSTEE_REPORT);
    let r = Report::parse(&raw).unwrap();
    for len in 0..r.signed_len + spdm::SIGNATURE_LEN {
        assert!(Report::parse(&raw[..len]).is_err(), "length {len}");
    }
}

#[test]
fn nvat_json_samples_verify() {
    use super::evidence::{NvidiaPolicy, verify_nvidia_evidence};
    for (file, count) in [
        ("nvat/common-test-data/hopper_evidence.json", 1),
        ("nvat/common-test-data/multi_gpu_hopper.json", 4),
        ("nvat/common-test-data/hopper_evidence_cert_hold.json", 1),
        ("nvat/testdata/evidence_hopper_590_12.json", 1),
        ("nvat/common-test-data/switch_evidence_ls10.json", 1),
    ] {
        let value: serde_json::Value = serde_json::from_slice(&sample(file)).unwrap();
        let v = verify_nvidia_evidence(&value, None, &NvidiaPolicy::default(), &trust()).unwrap();
        assert_eq!(v.devices.len(), count, "{file}");
        assert!(v.passed(), "{file}: {:?}", v.first_failure());
    }
}

#[test]
fn trustee_format_round_trip_binds_the_device_digest() {
    use super::evidence::{CollectedDevice, NvidiaEvidence, NvidiaPolicy, verify_nvidia_evidence};
    let raw = report(TRUSTEE_REPORT);
    let nonce = Report::parse(&raw).unwrap().request_nonce;
    let dev = CollectedDevice {
        arch: verify::Arch::Hopper,
        uuid: "GPU-1".into(),
        report: raw,
        chain_pem: sample("trustee/hopper_cert_chain_case1.txt"),
    };
    let value = NvidiaEvidence::from_devices(&[dev]).to_value();
    assert_eq!(value["device_evidence_list"][0]["arch"], "HOPPER");
    // A 48-byte digest whose first 32 bytes are the report's nonce.
    let mut digest = nonce.to_vec();
    digest.extend_from_slice(&[7u8; 16]);
    let ok = verify_nvidia_evidence(&value, Some(&digest), &NvidiaPolicy::default(), &trust()).unwrap();
    assert!(ok.passed(), "{:?}", ok.first_failure());
    digest[0] ^= 1;
    let bad = verify_nvidia_evidence(&value, Some(&digest), &NvidiaPolicy::default(), &trust()).unwrap();
    assert!(bad.first_failure().unwrap().contains("nonce: FAIL"), "{:?}", bad.first_failure());
}
