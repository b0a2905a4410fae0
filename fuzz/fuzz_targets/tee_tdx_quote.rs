//! A TDX quote (from the host's quoting service) with its signature data,
//! and a TDREPORT.
#![no_main]
use libfuzzer_sys::fuzz_target;
use ztinit::tee::tdx::{quote, report};

fuzz_target!(|data: &[u8]| {
    if let Ok(q) = quote::parse(data) {
        assert!(q.signed.len() <= data.len());
        let _ = q.signature_data();
        let _ = (q.body.debug(), q.body.attributes());
    }
    let _ = report::parse(data);
});
