//! The kernel command line the host chooses: the allowlist check and the
//! `ztinit.*` knobs merged into a configuration.
#![no_main]
use libfuzzer_sys::fuzz_target;
use ztinit::config::cmdline;
use ztinit::kernel_params::{self, Context};

fuzz_target!(|data: &[u8]| {
    let Ok(line) = std::str::from_utf8(data) else { return };
    let resolve = |p: &str| Some(std::path::PathBuf::from(p));
    let extension = ["console=ttyS0".to_string()];
    let ctx = Context {
        extension: &extension,
        self_exe: Some(std::path::Path::new("/init")),
        resolve: &resolve,
        kernel_ip: false,
    };
    let _ = kernel_params::check(line, &ctx);
    let mut table = toml::Table::new();
    let _ = cmdline::apply(&mut table, line);
});
