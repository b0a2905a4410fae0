//! A TDX CC event log replayed into RTMRs.
#![no_main]
use libfuzzer_sys::fuzz_target;
use ztinit::tee::verify::eventlog;

fuzz_target!(|data: &[u8]| {
    if let Ok(r) = eventlog::replay(data) {
        assert!(r.events <= data.len(), "every event takes bytes");
    }
});
