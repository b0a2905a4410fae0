//! The KBS's JSON answers: the challenge (and its hash selection), the
//! token, the error document.
#![no_main]
use libfuzzer_sys::fuzz_target;
use ztinit::kbs::protocol::{self, AttestationToken, Challenge, ErrorInformation};

fuzz_target!(|data: &[u8]| {
    if let Ok(c) = serde_json::from_slice::<Challenge>(data) {
        let _ = protocol::selected_hash(&c.extra_params);
    }
    let _ = serde_json::from_slice::<AttestationToken>(data);
    if let Ok(e) = serde_json::from_slice::<ErrorInformation>(data) {
        let _ = e.variant();
    }
});
