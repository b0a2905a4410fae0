//! The TLS crypto provider of the KBS transport.
//!
//! TLS 1.3 only, AES-GCM only, ECDHE on P-256/P-384 and ECDSA/RSA server
//! keys: what any current KBS (Trustee serves TLS 1.3) offers, and no more.
//! Key exchange and ECDSA verification use the RustCrypto `p256`/`p384`
//! crates that the JOSE code links anyway; *ring* supplies AES-GCM, HKDF,
//! RSA verification and randomness. Not referencing *ring*'s NIST-curve,
//! X25519, Ed25519 and ChaCha20 code keeps several hundred KiB of tables and
//! code out of a binary whose size budget is 2.5 MiB.
//!
//! AES-128-GCM with SHA-256 is offered first, AES-256-GCM with SHA-384
//! second (servers follow the client's order by default): the key share
//! preferred is P-256, so the handshake's strength is 128 bits either way,
//! and SHA-256 runs on the CPUs' SHA extensions (AMD EPYC, Intel Xeon)
//! while SHA-384 has none there. Under emulation the SHA-384 suite cost
//! about 1.9 k more translated instructions in the handshake (*ring*'s
//! portable SHA-512 code).

use std::sync::Arc;

use p256::elliptic_curve::sec1::ToEncodedPoint;
use rand_core::RngCore;
use rustls::crypto::{
    ActiveKeyExchange, CryptoProvider, GetRandomFailed, KeyProvider, SecureRandom, SharedSecret, SupportedKxGroup,
};
use rustls::crypto::{WebPkiSupportedAlgorithms, ring as ring_provider};
use rustls::pki_types::{AlgorithmIdentifier, InvalidSignature, PrivateKeyDer, SignatureVerificationAlgorithm, alg_id};
use rustls::sign::SigningKey;
use rustls::{Error, NamedGroup, PeerMisbehaved, SignatureScheme};
use sha2::{Digest, Sha256, Sha384};

/// The provider used for every KBS connection.
pub fn provider() -> CryptoProvider {
    CryptoProvider {
        cipher_suites: vec![
            ring_provider::cipher_suite::TLS13_AES_128_GCM_SHA256,
            ring_provider::cipher_suite::TLS13_AES_256_GCM_SHA384,
        ],
        kx_groups: vec![&P256_KX, &P384_KX],
        signature_verification_algorithms: SIGNATURE_ALGORITHMS,
        secure_random: &OsRandom,
        key_provider: &NoClientKeys,
    }
}

// ------------------------------------------------------------------ key exchange

#[derive(Debug)]
struct NistKx(NamedGroup);

static P256_KX: NistKx = NistKx(NamedGroup::secp256r1);
static P384_KX: NistKx = NistKx(NamedGroup::secp384r1);

enum Ephemeral {
    P256(p256::ecdh::EphemeralSecret),
    P384(p384::ecdh::EphemeralSecret),
}

struct ActiveNist {
    group: NamedGroup,
    secret: Ephemeral,
    public: Vec<u8>,
}

impl SupportedKxGroup for NistKx {
    fn start(&self) -> Result<Box<dyn ActiveKeyExchange>, Error> {
        let _part = crate::timeline::part("tls-kx-keygen");
        let mut rng = rand_core::OsRng;
        let (secret, public) = match self.0 {
            NamedGroup::secp256r1 => {
                let s = p256::ecdh::EphemeralSecret::random(&mut rng);
                let p = s.public_key().to_encoded_point(false).as_bytes().to_vec();
                (Ephemeral::P256(s), p)
            }
            _ => {
                let s = p384::ecdh::EphemeralSecret::random(&mut rng);
                let p = s.public_key().to_encoded_point(false).as_bytes().to_vec();
                (Ephemeral::P384(s), p)
            }
        };
        Ok(Box::new(ActiveNist { group: self.0, secret, public }))
    }

    fn name(&self) -> NamedGroup {
        self.0
    }
}

impl ActiveKeyExchange for ActiveNist {
    fn complete(self: Box<Self>, peer: &[u8]) -> Result<SharedSecret, Error> {
        let _part = crate::timeline::part("tls-kx-agree");
        // TLS 1.3 key shares are uncompressed points (RFC 8446 §4.2.8.2);
        // from_sec1_bytes rejects the identity and points off the curve.
        if peer.first() != Some(&0x04) {
            return Err(PeerMisbehaved::InvalidKeyShare.into());
        }
        match &self.secret {
            Ephemeral::P256(s) => {
                let peer = p256::PublicKey::from_sec1_bytes(peer).map_err(|_| PeerMisbehaved::InvalidKeyShare)?;
                Ok(SharedSecret::from(&s.diffie_hellman(&peer).raw_secret_bytes()[..]))
            }
            Ephemeral::P384(s) => {
                let peer = p384::PublicKey::from_sec1_bytes(peer).map_err(|_| PeerMisbehaved::InvalidKeyShare)?;
                Ok(SharedSecret::from(&s.diffie_hellman(&peer).raw_secret_bytes()[..]))
            }
        }
    }

    fn pub_key(&self) -> &[u8] {
        &self.public
    }

    fn group(&self) -> NamedGroup {
        self.group
    }
}

// ------------------------------------------------------------------ signatures

/// ECDSA verification with RustCrypto: `curve` key, `hash` digest of the message.
#[derive(Debug)]
struct Ecdsa {
    curve: Curve,
    hash: Hash,
}

#[derive(Debug, Clone, Copy)]
enum Curve {
    P256,
    P384,
}

#[derive(Debug, Clone, Copy)]
enum Hash {
    Sha256,
    Sha384,
}

impl SignatureVerificationAlgorithm for Ecdsa {
    fn verify_signature(&self, public_key: &[u8], message: &[u8], signature: &[u8]) -> Result<(), InvalidSignature> {
        let _part = crate::timeline::part("tls-ecdsa-verify");
        use ecdsa::signature::hazmat::PrehashVerifier;
        let digest: Vec<u8> = match self.hash {
            Hash::Sha256 => Sha256::digest(message).to_vec(),
            Hash::Sha384 => Sha384::digest(message).to_vec(),
        };
        match self.curve {
            Curve::P256 => {
                let key = p256::ecdsa::VerifyingKey::from_sec1_bytes(public_key).map_err(|_| InvalidSignature)?;
                let sig = p256::ecdsa::Signature::from_der(signature).map_err(|_| InvalidSignature)?;
                key.verify_prehash(&digest, &sig).map_err(|_| InvalidSignature)
            }
            Curve::P384 => {
                let key = p384::ecdsa::VerifyingKey::from_sec1_bytes(public_key).map_err(|_| InvalidSignature)?;
                let sig = p384::ecdsa::Signature::from_der(signature).map_err(|_| InvalidSignature)?;
                key.verify_prehash(&digest, &sig).map_err(|_| InvalidSignature)
            }
        }
    }

    fn public_key_alg_id(&self) -> AlgorithmIdentifier {
        match self.curve {
            Curve::P256 => alg_id::ECDSA_P256,
            Curve::P384 => alg_id::ECDSA_P384,
        }
    }

    fn signature_alg_id(&self) -> AlgorithmIdentifier {
        match self.hash {
            Hash::Sha256 => alg_id::ECDSA_SHA256,
            Hash::Sha384 => alg_id::ECDSA_SHA384,
        }
    }
}

static ECDSA_P256_SHA256: Ecdsa = Ecdsa { curve: Curve::P256, hash: Hash::Sha256 };
static ECDSA_P256_SHA384: Ecdsa = Ecdsa { curve: Curve::P256, hash: Hash::Sha384 };
static ECDSA_P384_SHA256: Ecdsa = Ecdsa { curve: Curve::P384, hash: Hash::Sha256 };
static ECDSA_P384_SHA384: Ecdsa = Ecdsa { curve: Curve::P384, hash: Hash::Sha384 };

/// Certificate-chain and handshake signature algorithms.
static SIGNATURE_ALGORITHMS: WebPkiSupportedAlgorithms = WebPkiSupportedAlgorithms {
    all: &[
        &ECDSA_P256_SHA256,
        &ECDSA_P256_SHA384,
        &ECDSA_P384_SHA256,
        &ECDSA_P384_SHA384,
        webpki::ring::RSA_PKCS1_2048_8192_SHA256,
        webpki::ring::RSA_PKCS1_2048_8192_SHA384,
        webpki::ring::RSA_PKCS1_2048_8192_SHA512,
        webpki::ring::RSA_PSS_2048_8192_SHA256_LEGACY_KEY,
        webpki::ring::RSA_PSS_2048_8192_SHA384_LEGACY_KEY,
        webpki::ring::RSA_PSS_2048_8192_SHA512_LEGACY_KEY,
    ],
    mapping: &[
        (SignatureScheme::ECDSA_NISTP384_SHA384, &[&ECDSA_P384_SHA384, &ECDSA_P256_SHA384]),
        (SignatureScheme::ECDSA_NISTP256_SHA256, &[&ECDSA_P256_SHA256, &ECDSA_P384_SHA256]),
        (SignatureScheme::RSA_PSS_SHA512, &[webpki::ring::RSA_PSS_2048_8192_SHA512_LEGACY_KEY]),
        (SignatureScheme::RSA_PSS_SHA384, &[webpki::ring::RSA_PSS_2048_8192_SHA384_LEGACY_KEY]),
        (SignatureScheme::RSA_PSS_SHA256, &[webpki::ring::RSA_PSS_2048_8192_SHA256_LEGACY_KEY]),
        (SignatureScheme::RSA_PKCS1_SHA512, &[webpki::ring::RSA_PKCS1_2048_8192_SHA512]),
        (SignatureScheme::RSA_PKCS1_SHA384, &[webpki::ring::RSA_PKCS1_2048_8192_SHA384]),
        (SignatureScheme::RSA_PKCS1_SHA256, &[webpki::ring::RSA_PKCS1_2048_8192_SHA256]),
    ],
};

/// The kernel's CSPRNG (getrandom). Referencing *ring*'s default provider
/// for this alone would link every algorithm it knows.
#[derive(Debug)]
struct OsRandom;

impl SecureRandom for OsRandom {
    fn fill(&self, buf: &mut [u8]) -> Result<(), GetRandomFailed> {
        rand_core::OsRng.try_fill_bytes(buf).map_err(|_| GetRandomFailed)
    }
}

/// The guest never authenticates itself with a TLS client certificate
/// (attestation does that), so no private key type is supported.
#[derive(Debug)]
struct NoClientKeys;

impl KeyProvider for NoClientKeys {
    fn load_private_key(&self, _key: PrivateKeyDer<'static>) -> Result<Arc<dyn SigningKey>, Error> {
        Err(Error::General("client certificates are not supported".into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use p256::ecdsa::signature::Signer;

    #[test]
    fn key_exchange_agrees_on_both_curves() {
        for group in [&P256_KX, &P384_KX] {
            let a = group.start().unwrap();
            let b = group.start().unwrap();
            let (a_pub, b_pub) = (a.pub_key().to_vec(), b.pub_key().to_vec());
            assert_eq!(a_pub[0], 0x04);
            let s1 = a.complete(&b_pub).unwrap();
            let s2 = b.complete(&a_pub).unwrap();
            assert_eq!(s1.secret_bytes(), s2.secret_bytes());
        }
    }

    #[test]
    fn invalid_key_shares_are_refused() {
        let a = P256_KX.start().unwrap();
        let mut bad = P256_KX.start().unwrap().pub_key().to_vec();
        bad[40] ^= 1; // off the curve
        assert!(a.complete(&bad).is_err());
        let a = P256_KX.start().unwrap();
        assert!(a.complete(&[0x02; 33]).is_err(), "compressed points are not TLS 1.3 key shares");
        let a = P384_KX.start().unwrap();
        let p256_share = P256_KX.start().unwrap().pub_key().to_vec();
        assert!(a.complete(&p256_share).is_err(), "a share of the other curve");
    }

    #[test]
    fn ecdsa_signatures_verify_and_tampering_is_caught() {
        let key = p256::ecdsa::SigningKey::random(&mut rand_core::OsRng);
        let public = key.verifying_key().to_encoded_point(false).as_bytes().to_vec();
        let sig: p256::ecdsa::Signature = key.sign(b"handshake");
        let der = sig.to_der();
        ECDSA_P256_SHA256.verify_signature(&public, b"handshake", der.as_bytes()).unwrap();
        assert!(ECDSA_P256_SHA256.verify_signature(&public, b"handshakf", der.as_bytes()).is_err());
        assert!(ECDSA_P256_SHA384.verify_signature(&public, b"handshake", der.as_bytes()).is_err());
        assert!(ECDSA_P384_SHA256.verify_signature(&public, b"handshake", der.as_bytes()).is_err());

        let key = p384::ecdsa::SigningKey::random(&mut rand_core::OsRng);
        let public = key.verifying_key().to_encoded_point(false).as_bytes().to_vec();
        let sig: p384::ecdsa::Signature = key.sign(b"chain");
        ECDSA_P384_SHA384.verify_signature(&public, b"chain", sig.to_der().as_bytes()).unwrap();
    }

    #[test]
    fn only_tls13_aes_gcm_and_nist_groups_are_offered() {
        let p = provider();
        let suites: Vec<_> = p.cipher_suites.iter().map(|s| s.suite()).collect();
        assert_eq!(
            suites,
            [rustls::CipherSuite::TLS13_AES_128_GCM_SHA256, rustls::CipherSuite::TLS13_AES_256_GCM_SHA384]
        );
        let groups: Vec<_> = p.kx_groups.iter().map(|g| g.name()).collect();
        assert_eq!(groups, [NamedGroup::secp256r1, NamedGroup::secp384r1]);
        assert!(!p.signature_verification_algorithms.supported_schemes().contains(&SignatureScheme::ED25519));
    }
}
