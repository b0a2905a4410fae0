//! Evidence verification: the seam where SNP, TDX and NVIDIA verifiers
//! plug in. The server has already rebuilt the runtime data and hashed it;
//! a verifier checks that the evidence is genuine and that it binds exactly
//! that digest (each in its TEE's way: SNP/TDX zero-pad to 64 bytes,
//! NVIDIA truncates to its 32-byte nonce, `sample` compares as is).

use std::collections::BTreeMap;
use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};
use ztinit::kbs::InitData;
use ztinit::tee::TeeKind;
use ztinit::tee::initdata::Initdata;
use ztinit::tee::verify;

/// Verifies one kind of evidence. Returns the claims to put in the token.
pub trait Verifier: Send + Sync {
    /// Trustee's name of the evidence kind (`sample`, `snp`, `tdx`,
    /// `nvidia`, `sampledevice`).
    fn tee(&self) -> &str;
    /// `report_data` is the hash of the canonical runtime data the evidence
    /// must bind; `init_data` is what the guest sent (CPU verifiers compare
    /// its digest with HOSTDATA / MRCONFIGID).
    fn verify(&self, evidence: &Value, report_data: &[u8], init_data: Option<&InitData>) -> Result<Value, String>;
}

/// The verifiers a server knows, for primary (CPU) and additional (device)
/// evidence.
#[derive(Default)]
pub struct Verifiers {
    cpu: BTreeMap<String, Box<dyn Verifier>>,
    devices: BTreeMap<String, Box<dyn Verifier>>,
}

impl Verifiers {
    /// `sample` and `sampledevice`, which prove nothing (the policy decides
    /// whether a `sample` guest gets anything).
    pub fn with_samples() -> Self {
        let mut v = Self::default();
        v.add_cpu(Box::new(SampleVerifier));
        v.add_device(Box::new(SampleDeviceVerifier));
        v
    }

    /// The samples, plus SEV-SNP and TDX checked by `ztinit::tee::verify`
    /// against `policy` (the reference values of the policy file).
    pub fn with_tee(policy: verify::Policy) -> Self {
        let mut v = Self::with_samples();
        let policy = Arc::new(policy);
        for kind in [TeeKind::Snp, TeeKind::Tdx] {
            v.add_cpu(Box::new(TeeVerifier { kind, policy: policy.clone() }));
        }
        v
    }

    pub fn add_cpu(&mut self, v: Box<dyn Verifier>) {
        self.cpu.insert(v.tee().to_string(), v);
    }

    pub fn add_device(&mut self, v: Box<dyn Verifier>) {
        self.devices.insert(v.tee().to_string(), v);
    }

    pub fn cpu(&self, tee: &str) -> Option<&dyn Verifier> {
        self.cpu.get(tee).map(|b| b.as_ref())
    }

    pub fn device(&self, tee: &str) -> Option<&dyn Verifier> {
        self.devices.get(tee).map(|b| b.as_ref())
    }

    pub fn cpu_kinds(&self) -> Vec<&str> {
        self.cpu.keys().map(String::as_str).collect()
    }
}

/// `{"svn": "...", "report_data": "<std base64>"}`: the base64-decoded
/// report data must equal the digest exactly (Trustee's sample verifier).
fn check_sample(evidence: &Value, report_data: &[u8], kind: &str) -> Result<Value, String> {
    let obj = evidence.as_object().ok_or_else(|| format!("{kind} evidence is not an object"))?;
    let svn = obj.get("svn").and_then(Value::as_str).ok_or_else(|| format!("{kind} evidence has no svn string"))?;
    let rd = obj
        .get("report_data")
        .and_then(Value::as_str)
        .ok_or_else(|| format!("{kind} evidence has no report_data string"))?;
    let rd = STANDARD.decode(rd).map_err(|_| format!("{kind} report_data is not base64"))?;
    if rd != report_data {
        return Err(format!("{kind} REPORT_DATA does not match the runtime data"));
    }
    Ok(json!({ "svn": svn, "report_data": STANDARD.encode(&rd) }))
}

/// SEV-SNP or TDX evidence, verified by `ztinit::tee::verify::verify`:
/// report structure and signature chain, REPORT_DATA = the runtime-data
/// digest zero-padded to 64 bytes, HOSTDATA / MRCONFIGID = the init-data
/// digest when the guest sent init-data, debug, and the reference values.
pub struct TeeVerifier {
    kind: TeeKind,
    policy: Arc<verify::Policy>,
}

/// The digest the launch must have bound: the init-data document hashed
/// with the algorithm it declares (as Trustee and Kata do).
pub fn init_data_digest(init_data: &InitData) -> Result<Vec<u8>, String> {
    Initdata::parse(init_data.body.as_bytes().to_vec()).map(|d| d.digest()).map_err(|e| format!("init-data: {e}"))
}

impl Verifier for TeeVerifier {
    fn tee(&self) -> &str {
        self.kind.as_str()
    }

    fn verify(&self, evidence: &Value, report_data: &[u8], init_data: Option<&InitData>) -> Result<Value, String> {
        let init_digest = init_data.map(init_data_digest).transpose()?;
        verify::verify(self.kind, evidence, report_data, init_digest.as_deref(), &self.policy)
            .map_err(|e| e.to_string())
    }
}

pub struct SampleVerifier;

impl Verifier for SampleVerifier {
    fn tee(&self) -> &str {
        "sample"
    }

    fn verify(&self, evidence: &Value, report_data: &[u8], _: Option<&InitData>) -> Result<Value, String> {
        let mut claims = check_sample(evidence, report_data, "sample")?;
        claims["launch_digest"] = json!("abcde");
        claims["debug"] = json!(false);
        Ok(claims)
    }
}

pub struct SampleDeviceVerifier;

impl Verifier for SampleDeviceVerifier {
    fn tee(&self) -> &str {
        "sampledevice"
    }

    fn verify(&self, evidence: &Value, report_data: &[u8], _: Option<&InitData>) -> Result<Value, String> {
        check_sample(evidence, report_data, "sampledevice")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sample_binds_the_digest_exactly() {
        let d = [9u8; 48];
        let ev = json!({"svn": "1", "report_data": STANDARD.encode(d)});
        assert!(SampleVerifier.verify(&ev, &d, None).is_ok());
        let mut padded = d.to_vec();
        padded.extend([0u8; 16]);
        assert_eq!(
            SampleVerifier.verify(&ev, &padded, None).unwrap_err(),
            "sample REPORT_DATA does not match the runtime data"
        );
        assert!(SampleVerifier.verify(&json!({"svn": "1"}), &d, None).is_err());
        assert!(SampleVerifier.verify(&json!("x"), &d, None).is_err());
    }
}
