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
        (
            "nvat/sample_attestation_data/gpu/hopperAttestationReport.txt",
            "nvat/sample_attestation_data/gpu/hopperCertChain.txt",
            "535.86.09",
            "96.00.5E.00.01",
        ),
        (
            "nvat/sample_attestation_data/gpu/blackwellAttestationReport.txt",
            "nvat/sample_attestation_data/gpu/blackwellCertChain.txt",
            "575.32",
            "97.00.88.00.0F",
        ),
        (
            "nvat/sample_attestation_data/gpu/hopperAttestationReportExpired.txt",
            "nvat/sample_attestation_data/gpu/hopperCertChainExpired.txt",
            "570.124.03",
            "96.00.5E.00.04",
        ),
    ];
    for (rep, chain, driver, vbios) in cases {
        let raw = report(rep);
        let chain = sample(chain);
        let parsed = Report::parse(&raw).unwrap();
        let nonce = parsed.request_nonce;
        let ev = Evidence { report: &raw, chain_pem: &chain, arch: None };
        let exp = Expected {
            nonce: Some(&nonce),
            driver_versions: &[driver.to_string()],
            vbios_versions: &[vbios.to_string()],
            reference: None,
        };
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
    assert!(fail_text(&v, "chain").contains("GH100 A01 GSP BROM") && fail_text(&v, "chain").contains("is a CA"));
}

#[test]
fn chain_to_a_foreign_root_fails() {
    let raw = report(TRUSTEE_REPORT);
    let chain = sample("trustee/hopper_cert_chain_case1.txt");
    let foreign = Trust { root: certs::nvidia_rim_root(), now: certs::unix(1_780_000_000) };
    let v = verify::verify_device(
        &Evidence { report: &raw, chain_pem: &chain, arch: None },
        &Expected::default(),
        &foreign,
    );
    assert!(fail_text(&v, "chain").contains("does not end at the pinned root"), "{:?}", v.checks);
}

#[test]
fn chain_outside_validity_fails_with_injected_clock() {
    let raw = report(TRUSTEE_REPORT);
    let chain = sample("trustee/hopper_cert_chain_case1.txt");
    // 2019: before every certificate of the chain.
    let early = Trust { root: certs::nvidia_device_root(), now: certs::unix(1_560_000_000) };
    let v =
        verify::verify_device(&Evidence { report: &raw, chain_pem: &chain, arch: None }, &Expected::default(), &early);
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
    let v = verify::verify_device(
        &Evidence { report: &raw, chain_pem: &chain, arch: None },
        &Expected::default(),
        &trust(),
    );
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

mod rims {
    use super::*;
    use crate::gpu::rim::{Rim, RimError, RimKind};

    fn rim(rel: &str) -> Rim {
        Rim::parse(&sample(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
    }

    fn rim_root() -> x509_cert::Certificate {
        certs::nvidia_rim_root()
    }

    const NVAT_REPORT: &str = "nvat/sample_attestation_data/gpu/hopperAttestationReport.txt";
    const VBIOS_PROD: &str = "nvtrust/1010_0200_882_96005E0001_PROD.swidtag";
    const VBIOS_MISMATCH: &str =
        "nvat/testdata/sample_rims/NV_GPU_VBIOS_1010_0200_882_96005E0001_measurement_mismatch.xml";
    const DRIVER_550: &str = "nvat/testdata/NV_GPU_DRIVER_GH100_550.144.03.xml";
    const DRIVER_EXPIRED: &str = "nvat/testdata/sample_rims/NV_GPU_DRIVER_GH100_570.124.03_expired.xml";

    fn verify_with(reference: &verify::ReferenceValues) -> verify::DeviceVerdict {
        let raw = report(NVAT_REPORT);
        let chain = sample("nvat/sample_attestation_data/gpu/hopperCertChain.txt");
        let exp = Expected { reference: Some(reference), ..Default::default() };
        verify::verify_device(&Evidence { report: &raw, chain_pem: &chain, arch: None }, &exp, &trust())
    }

    #[test]
    fn vbios_rim_matches_all_active_measurements_of_its_report() {
        let r = rim(VBIOS_PROD);
        assert_eq!(r.kind, RimKind::Vbios);
        assert_eq!(r.version, "96.00.5E.00.01");
        let rv = r.reference_values();
        assert_eq!(rv.entries.len(), 12);
        let v = verify_with(&rv);
        assert_eq!(*outcome(&v, "measurements"), Outcome::Pass("12 reference measurements match".into()));
        // The RIM ID derived from the report names this RIM.
        let rep = v.report.unwrap();
        let id = crate::gpu::rim::vbios_rim_id(
            &rep.project().unwrap(),
            &rep.project_sku().unwrap(),
            &rep.chip_sku().unwrap(),
            &rep.vbios_version().unwrap(),
        );
        assert_eq!(id, "NV_GPU_VBIOS_1010_0200_882_96005E0001");
    }

    #[test]
    fn mismatching_vbios_rim_fails_at_index_9() {
        let r = rim(VBIOS_MISMATCH);
        let v = verify_with(&r.reference_values());
        let reason = fail_text(&v, "measurements");
        assert!(reason.starts_with("block 10 (RIM index 9) is "), "{reason}");
        assert!(reason.contains("VBIOS RIM 96.00.5E.00.01 expects"), "{reason}");
        assert!(!reason.contains("more"), "only index 9 differs: {reason}");
    }

    #[test]
    fn rim_signatures_verify_inside_their_signers_validity() {
        let t2024 = certs::unix(1_740_787_200); // 2025-03-01: every signer below was valid then
        for f in [
            VBIOS_PROD,
            VBIOS_MISMATCH,
            DRIVER_550,
            "nvtrust/Driver_RIM_test_no_gpu.swidtag",
            "nvtrust/1010_0200_882_96005E0001_test_no_gpu.swidtag",
        ] {
            let signer = rim(f).verify_signature(&rim_root(), t2024).unwrap_or_else(|e| panic!("{f}: {e}"));
            assert!(signer.contains("RIM"), "{f}: {signer}");
        }
        // The 550.144.03 driver RIM's signer is valid to 2026-12-30.
        rim(DRIVER_550).verify_signature(&rim_root(), certs::unix(1_780_000_000)).unwrap();
    }

    #[test]
    fn expired_rim_signer_fails_with_injected_clock() {
        // nvtrust's PROD VBIOS RIM: L4 signer valid 2023-06-23..2025-06-22.
        let after = certs::unix(1_767_225_600); // 2026-01-01
        match rim(VBIOS_PROD).verify_signature(&rim_root(), after) {
            Err(RimError::Chain(certs::CertError::Expired { index: 0, subject, .. })) => {
                assert!(subject.contains("HCC RIM L4 Signer"), "{subject}")
            }
            other => panic!("{other:?}"),
        }
        // NVAT's expired driver RIM: signer valid 2025-01-01..2025-01-02.
        match rim(DRIVER_EXPIRED).verify_signature(&rim_root(), certs::unix(1_767_225_600)) {
            Err(RimError::Chain(certs::CertError::Expired { index: 0, not_after, .. })) => {
                assert!(not_after.starts_with("2025-01-02"), "{not_after}")
            }
            other => panic!("{other:?}"),
        }
        // Inside its validity its content digest still does not match.
        let inside = certs::unix(1_735_732_800); // 2025-01-01T12:00Z
        assert_eq!(rim(DRIVER_EXPIRED).verify_signature(&rim_root(), inside).unwrap_err(), RimError::DigestMismatch);
    }

    #[test]
    fn rim_with_wrong_chain_or_root_fails() {
        let t = certs::unix(1_704_067_200);
        let err =
            rim("nvat/testdata/incorrect_cert_chain_driver_rim.xml").verify_signature(&rim_root(), t).unwrap_err();
        assert!(matches!(err, RimError::Chain(_)), "{err}");
        let wrong_root =
            certs::parse_pem_cert(std::str::from_utf8(&sample("nvat/testdata/incorrect_rim_root.crt")).unwrap())
                .unwrap();
        let err = rim(VBIOS_PROD).verify_signature(&wrong_root, t).unwrap_err();
        assert!(matches!(err, RimError::Chain(certs::CertError::UntrustedRoot { .. })), "{err}");
    }

    #[test]
    fn modified_rim_fails_the_digest() {
        let text = String::from_utf8(sample(VBIOS_PROD)).unwrap();
        let tampered = text.replacen("c3f65ef79a19c029", "c3f65ef79a19c028", 1);
        assert_ne!(text, tampered);
        let err = Rim::parse(tampered.as_bytes())
            .unwrap()
            .verify_signature(&rim_root(), certs::unix(1_704_067_200))
            .unwrap_err();
        assert_eq!(err, RimError::DigestMismatch);
    }

    #[test]
    fn driver_and_vbios_rims_do_not_overlap() {
        let mut rv = rim(DRIVER_550).reference_values();
        rv.merge(rim(VBIOS_PROD).reference_values()).unwrap();
        let err = rv.clone().merge(rim(VBIOS_MISMATCH).reference_values()).unwrap_err();
        assert!(err.to_string().contains("VBIOS RIM 96.00.5E.00.01"), "{err}");
    }
}

#[test]
fn kbs_verifier_applies_its_policy() {
    use super::evidence::{CollectedDevice, NvidiaEvidence, NvidiaPolicyFile, NvidiaVerifier};
    let raw = report(TRUSTEE_REPORT);
    let parsed = Report::parse(&raw).unwrap();
    let m2 = hex::encode(&parsed.measurement(2).unwrap().value);
    let dev = CollectedDevice {
        arch: verify::Arch::Hopper,
        uuid: "GPU-1".into(),
        report: raw,
        chain_pem: sample("trustee/hopper_cert_chain_case1.txt"),
    };
    let value = NvidiaEvidence::from_devices(&[dev]).to_value();
    let mut digest = parsed.request_nonce.to_vec();
    digest.extend_from_slice(&[0u8; 16]);
    let policy: NvidiaPolicyFile = toml::from_str(&format!(
        "driver_versions = [\"550.90.07\"]\nmeasurements = {{ \"2\" = [\"{m2}\"] }}\nrefuse_switches = true\n"
    ))
    .unwrap();
    let v = NvidiaVerifier::from_policy(&policy).unwrap();
    let claims = v.verify_at(&value, &digest, certs::unix(1_780_000_000)).unwrap();
    assert_eq!(claims[0]["driver_version"], "550.90.07");
    assert_eq!(claims[0]["measurements"]["2"], m2.as_str());

    let strict: NvidiaPolicyFile = toml::from_str("vbios_versions = [\"96.00.00.00.00\"]").unwrap();
    let err = NvidiaVerifier::from_policy(&strict)
        .unwrap()
        .verify_at(&value, &digest, certs::unix(1_780_000_000))
        .unwrap_err()
        .to_string();
    assert!(err.starts_with("device 0 (HOPPER GPU-1): vbios-version: FAIL"), "{err}");
    let err = v.verify_at(&value, &[0u8; 48], certs::unix(1_780_000_000)).unwrap_err().to_string();
    assert!(err.contains("nonce: FAIL"), "{err}");
    assert!(toml::from_str::<NvidiaPolicyFile>("typo = 1").is_err());
}
