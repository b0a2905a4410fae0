//! An OCI (Docker/containerd/Podman) seccomp profile imported into
//! ztinit's profile and compiled to BPF.
#![no_main]
use libfuzzer_sys::fuzz_target;
use ztinit::sandbox::seccomp::oci::{self, ImportContext};

fuzz_target!(|data: &[u8]| {
    let ctx = ImportContext { capabilities: 0, kernel: Some((6, 12)) };
    let _ = oci::import_reporting("fuzz.json", data, ctx);
});
