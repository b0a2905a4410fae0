//! The initdata disk the host attaches: gzip (as Kata writes it), the TOML
//! document, and its `ztinit.toml` overlay.
#![no_main]
use libfuzzer_sys::fuzz_target;
use ztinit::tee::{gzip, initdata::Initdata};

fuzz_target!(|data: &[u8]| {
    let bytes = match gzip::decompress(data, 1 << 20) {
        Ok(inflated) => {
            assert!(inflated.len() <= 1 << 20, "the inflate cap holds");
            inflated
        }
        Err(_) => data.to_vec(),
    };
    let Ok(doc) = Initdata::parse(bytes) else { return };
    let _ = (doc.digest(), doc.digest_for_field(48), doc.kbs_init_data());
    let _ = doc.overlay();
});
