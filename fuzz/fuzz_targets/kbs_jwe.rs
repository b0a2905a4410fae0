//! A JWE resource answer decrypted with the guest's key: the JSON, the
//! protected header, the ephemeral key, the key wrap and AES-GCM.
#![no_main]
use libfuzzer_sys::fuzz_target;
use ztinit::kbs::jwe::TeeKey;
use ztinit::kbs::protocol::JweResponse;

fuzz_target!(|data: &[u8]| {
    let Ok(jwe) = serde_json::from_slice::<JweResponse>(data) else { return };
    // A fixed P-256 secret: the point is the parsing around the crypto.
    let mut secret = [0u8; 32];
    secret[31] = 7;
    let Ok(key) = TeeKey::from_secret_bytes(&secret) else { return };
    let _ = key.decrypt(&jwe);
});
