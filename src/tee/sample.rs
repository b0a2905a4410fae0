//! The `sample` TEE: no hardware, evidence that proves nothing. Trustee
//! accepts it only when its policy says so, and ztinit offers it only when
//! the baked configuration sets `tee.allow_sample = true` (development
//! images). Format: guest-components `attester/src/sample`.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use super::{EvidenceProvider, TeeError, TeeKind};

#[derive(Debug, Default)]
pub struct SampleProvider;

impl EvidenceProvider for SampleProvider {
    fn kind(&self) -> TeeKind {
        TeeKind::Sample
    }

    fn evidence(&mut self, digest: &[u8]) -> Result<serde_json::Value, TeeError> {
        if digest.len() > 64 {
            return Err(TeeError::ReportDataTooLong(digest.len()));
        }
        Ok(serde_json::json!({ "svn": "1", "report_data": STANDARD.encode(digest) }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sample_evidence_carries_the_digest_unpadded() {
        let digest = [7u8; 48];
        let ev = SampleProvider.evidence(&digest).unwrap();
        assert_eq!(ev["svn"], "1");
        let rd = STANDARD.decode(ev["report_data"].as_str().unwrap()).unwrap();
        assert_eq!(rd, digest);
    }

    #[test]
    fn oversized_report_data_is_refused() {
        assert!(SampleProvider.evidence(&[0u8; 65]).is_err());
    }
}
