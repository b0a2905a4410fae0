//! PEM text split into labelled DER blocks, for the key lists of the
//! signature policy and the image decryption keys.
//!
//! Like `ztinit::pem`, each block is base64-decoded on its own and only
//! then parsed from DER, so a block cut short is an error, never a hang.

use p256::pkcs8::der::pem;
use zeroize::Zeroizing;

const BEGIN: &[u8] = b"-----BEGIN ";
const END: &[u8] = b"-----END ";
const DASHES: &[u8] = b"-----";

/// Why PEM text is not a list of blocks.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PemError {
    #[error("no PEM block found")]
    NoBlock,
    #[error("more than {0} PEM blocks")]
    TooMany(usize),
    #[error("PEM block {0} has no END line")]
    Unterminated(usize),
    #[error("text outside the PEM blocks (before block {0})")]
    Stray(usize),
    #[error("PEM block {index} is not valid PEM: {reason}")]
    Encoding { index: usize, reason: String },
}

/// One block: its label and DER bytes (zeroized when dropped: private keys
/// pass through here).
pub struct Block {
    pub label: String,
    pub der: Zeroizing<Vec<u8>>,
}

impl std::fmt::Debug for Block {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Block({:?}, {} bytes)", self.label, self.der.len())
    }
}

/// Every block of `text`, in order; only whitespace may surround them.
pub fn blocks(text: &[u8], max: usize) -> Result<Vec<Block>, PemError> {
    let mut out = Vec::new();
    let mut rest = text;
    loop {
        let index = out.len();
        let Some(start) = find(rest, BEGIN) else {
            if out.is_empty() {
                return Err(PemError::NoBlock);
            }
            if !rest.iter().all(u8::is_ascii_whitespace) {
                return Err(PemError::Stray(index));
            }
            return Ok(out);
        };
        if !rest[..start].iter().all(u8::is_ascii_whitespace) {
            return Err(PemError::Stray(index));
        }
        if index == max {
            return Err(PemError::TooMany(max));
        }
        let block = &rest[start..];
        let end_line = find(block, END).ok_or(PemError::Unterminated(index))?;
        let after_end = end_line + END.len();
        let close = find(&block[after_end..], DASHES).ok_or(PemError::Unterminated(index))?;
        let len = after_end + close + DASHES.len();
        let (label, der) =
            pem::decode_vec(&block[..len]).map_err(|e| PemError::Encoding { index, reason: e.to_string() })?;
        out.push(Block { label: label.to_owned(), der: Zeroizing::new(der) });
        rest = &block[len..];
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &[u8] = include_bytes!("../../tests/fixtures/signature/cosign.pub");

    #[test]
    fn blocks_are_split_and_labelled() {
        let mut two = KEY.to_vec();
        two.extend_from_slice(b"\n\n");
        two.extend_from_slice(KEY);
        let b = blocks(&two, 4).unwrap();
        assert_eq!(b.len(), 2);
        assert_eq!(b[0].label, "PUBLIC KEY");
        assert_eq!(b[0].der.as_slice(), b[1].der.as_slice());
        assert_eq!(blocks(&two, 1).unwrap_err(), PemError::TooMany(1));
    }

    #[test]
    fn malformed_text_names_its_fault() {
        assert_eq!(blocks(b"", 4).unwrap_err(), PemError::NoBlock);
        assert_eq!(blocks(b"junk", 4).unwrap_err(), PemError::NoBlock);
        let mut junk = b"x\n".to_vec();
        junk.extend_from_slice(KEY);
        assert_eq!(blocks(&junk, 4).unwrap_err(), PemError::Stray(0));
        let mut trailing = KEY.to_vec();
        trailing.push(b'x');
        assert_eq!(blocks(&trailing, 4).unwrap_err(), PemError::Stray(1));
        assert_eq!(blocks(b"-----BEGIN PUBLIC KEY-----\nAAAA\n", 4).unwrap_err(), PemError::Unterminated(0));
        let bad = b"-----BEGIN PUBLIC KEY-----\n!!!!\n-----END PUBLIC KEY-----\n";
        assert!(matches!(blocks(bad, 4), Err(PemError::Encoding { index: 0, .. })));
    }
}
