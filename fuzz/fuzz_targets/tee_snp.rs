//! An SEV-SNP attestation report and the certificate table the host's
//! firmware (extended report) appends.
#![no_main]
use libfuzzer_sys::fuzz_target;
use ztinit::tee::snp;

fuzz_target!(|data: &[u8]| {
    let _ = snp::parse_report(data);
    let _ = snp::parse_cert_table(data);
});
