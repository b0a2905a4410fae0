//! Image references and digests: the configured reference PID 1 validates
//! (and the helper parses again), and every digest a registry sends.
#![no_main]
use libfuzzer_sys::fuzz_target;
use ztinit::image::digest::Digest;
use ztinit::image::reference::Reference;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(d) = Digest::parse(text) {
        assert_eq!(d.to_string(), text, "a digest prints as it was written");
        assert_eq!(Digest::from_hash(d.bytes()), d);
    }
    if let Ok(r) = Reference::parse(text) {
        let again = Reference::parse(&r.to_string()).expect("a parsed reference prints as a valid one");
        assert_eq!(again, r, "a reference is a fixed point of parse and print");
        assert!(!r.manifest_reference().is_empty());
        if r.tag.is_some() {
            assert!(Reference::parse(&r.identity()).is_ok(), "the signed identity is a reference");
        }
    }
});
