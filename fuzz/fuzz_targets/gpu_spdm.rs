//! A GPU's SPDM measurement report (from the helper, i.e. the driver), as
//! text (hex or base64) and as bytes, with every accessor the verifier uses.
#![no_main]
use libfuzzer_sys::fuzz_target;
use ztinit::gpu::spdm::{self, Report};

fuzz_target!(|data: &[u8]| {
    let bytes = spdm::decode_report_text(data).unwrap_or_else(|| data.to_vec());
    let Ok(r) = Report::parse(&bytes) else { return };
    assert!(r.signed_len <= bytes.len());
    let _ = (r.driver_version(), r.vbios_version(), r.fwid(), r.project(), r.project_sku(), r.chip_sku());
    let _ = (r.nvdec0_enabled(), r.measurement(1));
});
