//! The dev KBS's `nvidia` device verifier on evidence produced by the real
//! `ztinit-gpu` helper over the test-only fake libnvidia-ml.so.1 (signed by
//! the fake's test CA), directly and through the whole KBS protocol.

mod common;

use std::path::Path;

use common::*;
use fake_nvml_harness::{Fake, fake_measurement, test_root_path};
use serde_json::Value;
use sha2::{Digest, Sha384};
use ztinit::gpu::evidence::{CollectedDevice, NvidiaEvidence};
use ztinit::gpu::helper::Confinement;
use ztinit::gpu::verify::Arch;
use ztinit::kbs::{DeviceEvidence, DeviceEvidenceError, KbsError};
use ztinit::tee::sample::SampleProvider;
use ztinit_kbs::nvidia::NvidiaDeviceVerifier;
use ztinit_kbs::{Policy, Verifier};

/// The dev KBS's view of the shared fake-NVML harness: the helper runs
/// unconfined, as the KBS side only needs its evidence.
trait FakeEvidence {
    fn evidence(&self, nonce: &[u8; 32]) -> Value;
}

impl FakeEvidence for Fake {
    /// Trustee's `nvidia` evidence of the fake's GPU over `nonce`.
    fn evidence(&self, nonce: &[u8; 32]) -> Value {
        let mut h = self.helper_with(Confinement::Unconfined);
        let (report, chain_pem) = h.evidence(0, nonce).unwrap();
        h.close();
        let uuid = "GPU-00000000-0000-0000-0000-000000000000".to_string();
        NvidiaEvidence::from_devices(&[CollectedDevice { arch: Arch::Hopper, uuid, report, chain_pem }]).to_value()
    }
}

/// A policy file's `[nvidia]` table pinning the fake's test root, with two
/// reference measurements of the fake.
fn nvidia_policy() -> String {
    let root = test_root_path();
    format!(
        "allow_sample = true\n[nvidia]\ndevice_root = {:?}\ndriver_versions = [\"550.90.07\"]\n\
         measurements = {{ \"2\" = [{:?}], \"36\" = [{:?}] }}\n",
        root.display().to_string(),
        fake_measurement(2),
        fake_measurement(36)
    )
}

fn verifier() -> NvidiaDeviceVerifier {
    let policy = Policy::parse(&nvidia_policy()).unwrap();
    NvidiaDeviceVerifier::from_section(policy.nvidia.as_ref().unwrap(), Path::new("/")).unwrap()
}

fn digest(seed: &[u8]) -> Vec<u8> {
    Sha384::digest(seed).to_vec()
}

fn nonce_of(digest: &[u8]) -> [u8; 32] {
    digest[..32].try_into().unwrap()
}

#[test]
fn evidence_from_the_fake_library_is_accepted() {
    let fake = Fake::new(serde_json::json!({}));
    let d = digest(b"runtime data");
    let claims = verifier().verify(&fake.evidence(&nonce_of(&d)), &d, None).unwrap();
    let device = &claims[0];
    assert_eq!(device["arch"], "HOPPER");
    assert_eq!(device["driver_version"], "550.90.07");
    assert_eq!(device["measurements"]["36"], fake_measurement(36), "{device}");
}

#[test]
fn a_wrong_nonce_is_refused_with_the_reason() {
    let fake = Fake::new(serde_json::json!({}));
    let (signed_over, expected) = (digest(b"an old session"), digest(b"this session"));
    let e = verifier().verify(&fake.evidence(&nonce_of(&signed_over)), &expected, None).unwrap_err();
    assert_eq!(
        e,
        format!(
            "device 0 (HOPPER GPU-00000000-0000-0000-0000-000000000000): nonce: FAIL: report was requested with \
             nonce {}, expected {}",
            hex::encode(&signed_over[..32]),
            hex::encode(&expected[..32])
        )
    );
}

#[test]
fn a_tampered_measurement_is_refused_with_the_reason() {
    let fake = Fake::new(serde_json::json!({"measurement_overrides": {"36": "00".repeat(48)}}));
    let d = digest(b"runtime data");
    let e = verifier().verify(&fake.evidence(&nonce_of(&d)), &d, None).unwrap_err();
    assert!(
        e.starts_with(
            "device 0 (HOPPER GPU-00000000-0000-0000-0000-000000000000): measurements: FAIL: block 36 (RIM index 35)"
        ),
        "{e}"
    );
    // Signature, chain and nonce alone do not catch it: the policy does.
    let no_reference = NvidiaDeviceVerifier::from_section(
        &Policy::parse(&nvidia_policy().replace("measurements", "#")).unwrap().nvidia.unwrap(),
        Path::new("/"),
    )
    .unwrap();
    assert_eq!(no_reference.reference_count(), 0);
    no_reference.verify(&fake.evidence(&nonce_of(&d)), &d, None).unwrap();
}

#[test]
fn nvidia_root_does_not_trust_the_test_ca() {
    let fake = Fake::new(serde_json::json!({}));
    let d = digest(b"runtime data");
    let e = NvidiaDeviceVerifier::nvidia_default().verify(&fake.evidence(&nonce_of(&d)), &d, None).unwrap_err();
    assert!(e.starts_with("device 0 (HOPPER GPU-00000000-0000-0000-0000-000000000000): chain: FAIL"), "{e}");
}

/// The fake GPU as the guest's `nvidia` additional evidence (without the
/// guest's own local verification, so the KBS alone decides).
struct FakeGpu(Fake);

impl DeviceEvidence for FakeGpu {
    fn name(&self) -> &str {
        "nvidia"
    }
    fn collect(&mut self, device_digest: &[u8]) -> Result<Value, DeviceEvidenceError> {
        Ok(self.0.evidence(&nonce_of(device_digest)))
    }
}

fn attest_with(fake: Fake) -> Result<Vec<u8>, KbsError> {
    let kbs = kbs_with(&nvidia_policy(), &[], None, |o| o.verifiers.add_device(Box::new(verifier())));
    let client = client(&config(kbs.url()))?;
    let (mut cpu, mut gpu) = (SampleProvider, FakeGpu(fake));
    let devices: Vec<&mut dyn DeviceEvidence> = vec![&mut gpu];
    let mut session = client.attest(&mut cpu, devices, None)?;
    Ok(session.fetch(&"default/key/model".parse().unwrap())?.to_vec())
}

#[test]
fn the_kbs_releases_resources_to_a_verified_gpu() {
    assert_eq!(attest_with(Fake::new(serde_json::json!({}))).unwrap(), SECRET);
}

#[test]
fn the_kbs_refuses_a_tampered_gpu_naming_the_measurement() {
    let fake = Fake::new(serde_json::json!({"measurement_overrides": {"36": "00".repeat(48)}}));
    match attest_with(fake).unwrap_err() {
        KbsError::Refused { status: 401, kind, detail, .. } => {
            assert_eq!(kind, "AttestationError");
            assert!(
                detail.contains(
                    "nvidia: device 0 (HOPPER GPU-00000000-0000-0000-0000-000000000000): measurements: FAIL: block 36"
                ),
                "{detail}"
            );
        }
        other => panic!("{other}"),
    }
}
