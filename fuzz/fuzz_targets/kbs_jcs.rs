//! JSON canonicalisation (RFC 8785) of what the guest hashes into its
//! evidence: canonical output parses back and is a fixed point.
#![no_main]
use libfuzzer_sys::fuzz_target;
use ztinit::kbs::jcs::{self, JcsError};

fuzz_target!(|data: &[u8]| {
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(data) else { return };
    let Ok(canonical) = jcs::to_vec(&value) else { return };
    let again: serde_json::Value = serde_json::from_slice(&canonical).expect("canonical JSON parses");
    match jcs::to_vec(&again) {
        Ok(twice) => assert_eq!(canonical, twice, "canonicalisation is idempotent"),
        // A large double prints as an integer ("5139325592627445000") that
        // reads back as a u64 no double equals: ztinit refuses inexact
        // integers rather than round them (a hashed value must not change).
        Err(JcsError::InexactNumber(_)) => {}
        Err(e) => panic!("canonical JSON does not canonicalise: {e:?}"),
    }
});
