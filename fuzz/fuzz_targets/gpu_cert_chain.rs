//! The GPU's PEM certificate chain from the helper (the driver), and the
//! leaf fields the verifier reads.
#![no_main]
use libfuzzer_sys::fuzz_target;
use ztinit::gpu::certs;

fuzz_target!(|data: &[u8]| {
    let Ok(chain) = certs::parse_pem_chain(data) else { return };
    assert!(!chain.is_empty(), "a parsed chain has a certificate");
    for (i, c) in chain.iter().enumerate() {
        let _ = (certs::subject(c), certs::is_ca(c), certs::leaf_fwid(c), certs::p384_key(i, c));
    }
    let _ = certs::verify_chain(&chain, &certs::nvidia_device_root(), certs::unix(1_750_000_000));
});
