//! X.509 certificate lists in PEM, block by block.
//!
//! x509-cert 0.2's `Certificate::load_pem_chain` and `from_pem` never
//! return on a block whose DER is cut short (`MII=`: a SEQUENCE header
//! with its length missing; der 0.7's PEM reader waits for bytes that
//! never come). Fuzzing found it (`cargo xtask fuzz gpu_cert_chain`); a
//! GPU's chain, a RIM signer or a TDX quote's PCK chain could hang the
//! boot with it. Here each block is decoded to DER first and parsed with
//! `from_der`, which reports the truncation.

use x509_cert::Certificate;
use x509_cert::der::{self, Decode};

const BEGIN: &[u8] = b"-----BEGIN ";
const END: &[u8] = b"-----END ";
const DASHES: &[u8] = b"-----";

/// Why PEM text is not a list of certificates.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PemChainError {
    #[error("no PEM block found")]
    NoBlock,
    #[error("PEM block {index} has no END line")]
    Unterminated { index: usize },
    #[error("text outside the PEM blocks (before block {index})")]
    Stray { index: usize },
    /// Bad base64 or encapsulation (`der` reports PEM errors as its own).
    #[error("PEM block {index}: {source}")]
    Pem {
        index: usize,
        #[source]
        source: der::Error,
    },
    #[error("PEM block {index} is a {label:?}, not a CERTIFICATE")]
    Label { index: usize, label: String },
    #[error("certificate {index}: {source}")]
    Der {
        index: usize,
        #[source]
        source: der::Error,
    },
}

/// Every certificate of `pem`, in order. Only whitespace may surround the
/// blocks; every block must be a CERTIFICATE.
pub fn certificates(pem: &[u8]) -> Result<Vec<Certificate>, PemChainError> {
    let mut certs = Vec::new();
    let mut rest = pem;
    loop {
        let index = certs.len();
        let Some(start) = find(rest, BEGIN) else {
            if certs.is_empty() {
                return Err(PemChainError::NoBlock);
            }
            if !rest.iter().all(u8::is_ascii_whitespace) {
                return Err(PemChainError::Stray { index });
            }
            return Ok(certs);
        };
        if !rest[..start].iter().all(u8::is_ascii_whitespace) {
            return Err(PemChainError::Stray { index });
        }
        let block = &rest[start..];
        let end_line = find(block, END).ok_or(PemChainError::Unterminated { index })?;
        let after_end = end_line + END.len();
        let close = find(&block[after_end..], DASHES).ok_or(PemChainError::Unterminated { index })?;
        let block_len = after_end + close + DASHES.len();
        let (label, der) =
            der::pem::decode_vec(&block[..block_len]).map_err(|e| PemChainError::Pem { index, source: e.into() })?;
        if label != "CERTIFICATE" {
            return Err(PemChainError::Label { index, label: label.chars().take(32).collect() });
        }
        certs.push(Certificate::from_der(&der).map_err(|source| PemChainError::Der { index, source })?);
        rest = &block[block_len..];
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two public certificates, one after the other.
    fn chain() -> Vec<u8> {
        let mut pem = include_bytes!("../tests/data/gpu/trustee/hopper_signing_cert.pem").to_vec();
        pem.extend_from_slice(include_bytes!("../tests/data/gpu/nvtrust/verifier_device_root.pem"));
        pem
    }

    #[test]
    fn a_real_chain_parses_block_by_block() {
        let certs = certificates(&chain()).unwrap();
        assert_eq!(certs.len(), 2);
        let mut padded = b"\n  \r\n".to_vec();
        padded.extend_from_slice(&chain());
        padded.extend_from_slice(b"\n\n");
        assert_eq!(certificates(&padded).unwrap().len(), certs.len());
    }

    /// The fuzzer's input: x509-cert's own PEM reader never returns on it.
    #[test]
    fn a_truncated_certificate_is_an_error_not_a_hang() {
        let pem = b"-----BEGIN CERTIFICATE-----\nMII=\n-----END CERTIFICATE-----\n";
        assert!(matches!(certificates(pem), Err(PemChainError::Der { index: 0, .. })), "{:?}", certificates(pem));
        let mut three = chain();
        three.extend_from_slice(pem);
        assert!(matches!(certificates(&three), Err(PemChainError::Der { index: 2, .. })));
    }

    #[test]
    fn malformed_lists_name_their_fault() {
        assert_eq!(certificates(b"").unwrap_err(), PemChainError::NoBlock);
        assert_eq!(certificates(b" \n").unwrap_err(), PemChainError::NoBlock);
        assert_eq!(certificates(b"junk").unwrap_err(), PemChainError::NoBlock);
        let mut junk_first = b"junk\n".to_vec();
        junk_first.extend_from_slice(&chain());
        assert_eq!(certificates(&junk_first).unwrap_err(), PemChainError::Stray { index: 0 });
        assert_eq!(
            certificates(b"-----BEGIN CERTIFICATE-----\nAAAA\n").unwrap_err(),
            PemChainError::Unterminated { index: 0 }
        );
        assert_eq!(
            certificates(b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERT").unwrap_err(),
            PemChainError::Unterminated { index: 0 }
        );
        let key = b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n";
        assert!(matches!(certificates(key), Err(PemChainError::Label { index: 0, .. })));
        let bad = b"-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n";
        assert!(matches!(certificates(bad), Err(PemChainError::Pem { index: 0, .. })));
        let mut trailing = chain();
        trailing.extend_from_slice(b"x");
        assert!(matches!(certificates(&trailing), Err(PemChainError::Stray { .. })));
    }
}
