//! The dev KBS's `nvidia` device verifier on evidence produced by the real
//! `ztinit-gpu` helper over the test-only fake libnvidia-ml.so.1 (signed by
//! the fake's test CA), directly and through the whole KBS protocol.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use common::*;
use serde_json::Value;
use sha2::{Digest, Sha384};
use ztinit::gpu::evidence::{CollectedDevice, NvidiaEvidence};
use ztinit::gpu::helper::{Confinement, Helper, HelperCommand};
use ztinit::gpu::verify::Arch;
use ztinit::kbs::{Client, DeviceEvidence, DeviceEvidenceError, KbsError};
use ztinit::tee::sample::SampleProvider;
use ztinit_kbs::nvidia::NvidiaDeviceVerifier;
use ztinit_kbs::{Policy, Verifier};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The helper and the fake library, built once (no test target of this
/// crate depends on them).
fn built() -> &'static (PathBuf, PathBuf) {
    static BUILT: OnceLock<(PathBuf, PathBuf)> = OnceLock::new();
    BUILT.get_or_init(|| {
        let status = Command::new(env!("CARGO"))
            .args(["build", "--quiet", "-p", "fake-nvml", "-p", "ztinit-gpu"])
            .current_dir(repo())
            .status()
            .expect("cargo build -p fake-nvml -p ztinit-gpu");
        assert!(status.success());
        // target/debug/deps/nvidia-HASH -> target/debug
        let exe = std::env::current_exe().unwrap();
        let dir = exe.parent().and_then(Path::parent).unwrap().to_path_buf();
        let (helper, lib) = (dir.join("ztinit-gpu"), dir.join("libfake_nvml.so"));
        assert!(helper.is_file() && lib.is_file(), "{} {}", helper.display(), lib.display());
        (helper, lib)
    })
}

fn fake_measurement(i: u8) -> String {
    hex::encode(Sha384::digest(format!("ztinit fake-nvml measurement {i}")))
}

/// The fake library's configuration in a temporary directory.
struct Fake {
    dir: tempfile::TempDir,
}

impl Fake {
    fn new(extra: Value) -> Fake {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = serde_json::json!({
            "record": dir.path().join("calls").to_str().unwrap(),
            "ready_file": dir.path().join("ready").to_str().unwrap(),
        });
        for (k, v) in extra.as_object().unwrap() {
            cfg[k] = v.clone();
        }
        std::fs::write(dir.path().join("fake.json"), cfg.to_string()).unwrap();
        Fake { dir }
    }

    fn helper(&self) -> Helper {
        let (helper, lib) = built();
        Helper::spawn(&HelperCommand {
            program: helper.clone(),
            nvml_library: Some(lib.to_str().unwrap().into()),
            env: vec![("FAKE_NVML_CONFIG".into(), self.dir.path().join("fake.json").into())],
            timeout: Duration::from_secs(20),
            confinement: Confinement::Unconfined,
        })
        .unwrap()
    }

    /// Trustee's `nvidia` evidence of the fake's GPU over `nonce`.
    fn evidence(&self, nonce: &[u8; 32]) -> Value {
        let mut h = self.helper();
        let (report, chain_pem) = h.evidence(0, nonce).unwrap();
        h.close();
        let uuid = "GPU-00000000-0000-0000-0000-000000000000".to_string();
        NvidiaEvidence::from_devices(&[CollectedDevice { arch: Arch::Hopper, uuid, report, chain_pem }]).to_value()
    }
}

/// A policy file's `[nvidia]` table pinning the fake's test root, with two
/// reference measurements of the fake.
fn nvidia_policy() -> String {
    let root = repo().join("crates/fake-nvml/testca/root.pem");
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
    let client = Client::new(&config(kbs.url()))?;
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
