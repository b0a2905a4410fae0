//! A reference integrity manifest: the XML parser, exclusive
//! canonicalisation, and the RIM reader on top.
#![no_main]
use libfuzzer_sys::fuzz_target;
use ztinit::gpu::rim::Rim;
use ztinit::gpu::xml;

fuzz_target!(|data: &[u8]| {
    if let Ok(root) = xml::parse(data) {
        let _ = xml::canonicalize(&root, &[], &|e| e.local_name() == "Signature");
        let _ = root.text();
    }
    if let Ok(rim) = Rim::parse(data) {
        let _ = rim.reference_values();
        let _ = rim.signer_chain();
    }
});
