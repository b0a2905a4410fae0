//! The baked configuration file (and what initdata merges into it): TOML,
//! every section's schema and the cross-section rules.
#![no_main]
use libfuzzer_sys::fuzz_target;
use ztinit::config::{Config, NoFiles, Sources};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let _ = Config::load(Sources { origin: "fuzz.toml", text, cmdline: None, files: &NoFiles });
});
