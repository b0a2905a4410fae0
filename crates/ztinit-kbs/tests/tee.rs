//! The dev KBS's SEV-SNP and TDX verifiers, fed with the public reports and
//! quotes of `tests/data/tee/` (values from the samples' MANIFEST.md): at
//! the `Verifier` seam, where the runtime-data digest is a parameter, and
//! through the server, where the guest's runtime data cannot match a
//! recorded report.
//!
//! The samples' report data are fixed, so the valid ones are accepted with
//! their own report data as the runtime-data digest, and refused, naming
//! the reason, with any other.

mod common;

use std::path::PathBuf;

use common::*;
use serde_json::{Value, json};
use ztinit::kbs::InitData;
use ztinit::tee::{snp, tdx};
use ztinit_kbs::{Policy, Verifiers};

const MILAN_MEASUREMENT: &str =
    "7a1e5c266c0108dbc9bb94fa926951320940915d0aafb42464bd88b579ea158d3e1a0dc39b2c60bd95b9c480cd81841f";
const MILAN_REPORT_DATA: &str = "d447b55d197491bfe15cf298f9de9986b7a7c4be2468b4f6e2d53b71d7c645810b0f2cdfca0040433be063fc1a8293f0f3f8dae7b79fecb3d1cd82bd6a93ebfd";
const GENOA_REPORT_DATA: &str = "7e7320889600c7ac133aea7b896c51f41026002982292a7369559796999c1bf929eef3ff23c46e858f0b1982f9a92b17c51b578d958cde6b0c92978f150cf9b0";

struct Quote {
    file: &'static str,
    mr_td: &'static str,
    rtmr1: &'static str,
    report_data: &'static str,
    debug: bool,
}

const QUOTES: [Quote; 3] = [
    Quote {
        file: "tdx_quote_4.dat",
        mr_td: "705ee9381b8633a9fbe532b52345e8433343d2868959f57889d84ca377c395b689cac1599ccea1b7d420483a9ce5f031",
        rtmr1: "559cfcf42716ed6c40a48a73d5acb7da255435012f0a9f00fbe8c1c57612ede486a5684c4c9ff3ddf52315fcdca3a596",
        report_data: "7c71fe2c86eff65a7cf8dbc22b3275689fd0464a267baced1bf94fc1324656aeb755da3d44d098c0c87382f3a5f85b45c8a28fee1d3bdb38342bf96671501429",
        debug: true,
    },
    Quote {
        file: "tdx_quote_5.dat",
        mr_td: "dfba221b48a22af8511542ee796603f37382800840dcd978703909bf8e64d4c8a1e9de86e7c9638bfcba422f3886400a",
        rtmr1: "ca5a979317ffe8a527a3b7aadab03976d7cb6eef1041fb9bd9d69e6fafa7252cdc10e4c2a55e7ecbd2ddb5cacc867430",
        report_data: "6d6ab13b046cff606ac0074be13981b07b6325dba10b5facc96febf551c0c3be2b75f92fe1f88f4bb996969ad0174b4b7a70261b7b85c844f4b33a4674fd049f",
        debug: false,
    },
    Quote {
        file: "tdx_quote_4_azure.dat",
        mr_td: "024a32b070383331181619fa387cb4d55d1e38879f989933055ccad5bc2db795d1737b66205949d15469dc8c1ba7ab7b",
        rtmr1: "000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000",
        report_data: "9734504f161d104c74e3165c15f779b06a9bb40dfa71937817d7eee68e5938390000000000000000000000000000000000000000000000000000000000000000",
        debug: false,
    },
];

fn samples() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/data/tee")
}

fn sample(name: &str) -> Vec<u8> {
    let path = samples().join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The Milan report as Trustee `snp` evidence, without a certificate
/// table: its VCEK must come from the policy (offline SNP).
fn milan_evidence() -> Value {
    let raw = hex::decode(String::from_utf8(sample("report_milan.hex")).unwrap().trim()).unwrap();
    snp::evidence_json(&snp::parse_report(&raw).unwrap(), None)
}

/// Trustee's Genoa evidence, which carries its VCEK.
fn genoa_evidence() -> Value {
    serde_json::from_slice(&sample("snp_evidence_genoa.json")).unwrap()
}

fn tdx_evidence(file: &str) -> Value {
    tdx::evidence_json(&sample(file), None)
}

/// The verifiers the binary builds from a policy file in tests/data/tee/.
fn verifiers(policy: &str) -> Verifiers {
    Verifiers::with_tee(Policy::parse_relative_to(policy, &samples()).unwrap().tee)
}

fn h(s: &str) -> Vec<u8> {
    hex::decode(s).unwrap()
}

const OFFLINE_MILAN: &str = "[snp]\nvcek = [\"vcek_milan.der\"]\n";

#[test]
fn the_valid_snp_samples_are_accepted_with_their_report_data() {
    let v = verifiers(OFFLINE_MILAN);
    let snp = v.cpu("snp").unwrap();
    let claims = snp.verify(&milan_evidence(), &h(MILAN_REPORT_DATA), None).unwrap();
    assert_eq!(claims["measurement"], MILAN_MEASUREMENT);
    assert_eq!(claims["product"], "Milan");
    assert_eq!(claims["debug"], false);
    let claims = snp.verify(&genoa_evidence(), &h(GENOA_REPORT_DATA), None).unwrap();
    assert_eq!(claims["product"], "Genoa");
}

#[test]
fn snp_report_data_other_than_the_runtime_data_is_refused_with_that_reason() {
    let v = verifiers(OFFLINE_MILAN);
    let err = v.cpu("snp").unwrap().verify(&milan_evidence(), &[0x42; 48], None).unwrap_err();
    assert!(err.starts_with("report data mismatch: the evidence binds d447b55d"), "{err}");
    let err = v.cpu("snp").unwrap().verify(&genoa_evidence(), &h(MILAN_REPORT_DATA), None).unwrap_err();
    assert!(err.starts_with("report data mismatch: the evidence binds 7e732088"), "{err}");
}

#[test]
fn snp_reference_values_come_from_the_policy_file() {
    let rd = h(MILAN_REPORT_DATA);
    let right = verifiers(&format!("[snp]\nvcek = [\"vcek_milan.der\"]\nmeasurements = [\"{MILAN_MEASUREMENT}\"]\n"));
    assert!(right.cpu("snp").unwrap().verify(&milan_evidence(), &rd, None).is_ok());
    let other = "11".repeat(48);
    let wrong = verifiers(&format!("[snp]\nvcek = [\"vcek_milan.der\"]\nmeasurements = [\"{other}\"]\n"));
    let err = wrong.cpu("snp").unwrap().verify(&milan_evidence(), &rd, None).unwrap_err();
    assert_eq!(err, format!("measurement {MILAN_MEASUREMENT} is not an accepted reference value"));
    let newer = verifiers(
        "[snp]\nvcek = [\"vcek_milan.der\"]\nmin_tcb = { bootloader = 3, tee = 0, snp = 9, microcode = 115 }\n",
    );
    let err = newer.cpu("snp").unwrap().verify(&milan_evidence(), &rd, None).unwrap_err();
    assert!(err.starts_with("SNP TCB ") && err.contains("below the minimum"), "{err}");
    // The Milan report carries no certificate table: without the policy's
    // VCEK it cannot be checked offline.
    let err = verifiers("").cpu("snp").unwrap().verify(&milan_evidence(), &rd, None).unwrap_err();
    assert_eq!(err, "no VCEK or VLEK: the evidence carries none and none is configured");
    // A genuine AMD VCEK of another chip does not sign it.
    let turin = verifiers("[snp]\nvcek = [\"vcek_turin.der\"]\n");
    let err = turin.cpu("snp").unwrap().verify(&milan_evidence(), &rd, None).unwrap_err();
    assert!(err.contains("does not sign this report") || err.contains("does not chain"), "{err}");
}

#[test]
fn snp_init_data_is_bound_to_host_data() {
    // The samples' HOSTDATA is zero; the init-data digest (SHA-384 of the
    // document, 07c02fa6…) is not: refused, naming the field.
    let body = String::from_utf8(sample("initdata.toml")).unwrap();
    let v = verifiers(OFFLINE_MILAN);
    let err = v
        .cpu("snp")
        .unwrap()
        .verify(&milan_evidence(), &h(MILAN_REPORT_DATA), Some(&InitData::toml(body)))
        .unwrap_err();
    assert!(err.starts_with("init-data mismatch: HOSTDATA is 00000000"), "{err}");
    assert!(err.contains("the init-data digest is 07c02fa6ea535379"), "{err}");
    let err = v
        .cpu("snp")
        .unwrap()
        .verify(
            &milan_evidence(),
            &h(MILAN_REPORT_DATA),
            Some(&InitData::toml("version = \"9\"\nalgorithm = \"sha384\"\n[data]\n")),
        )
        .unwrap_err();
    assert!(err.starts_with("init-data: "), "{err}");
}

#[test]
fn the_valid_tdx_samples_are_accepted_with_their_report_data() {
    for q in &QUOTES {
        // Debug TDs need the policy's consent; the others pass the default.
        let v = verifiers(if q.debug { "[tdx]\nallow_debug = true\n" } else { "" });
        let claims = v
            .cpu("tdx")
            .unwrap()
            .verify(&tdx_evidence(q.file), &h(q.report_data), None)
            .unwrap_or_else(|e| panic!("{}: {e}", q.file));
        assert_eq!(claims["mr_td"], q.mr_td, "{}", q.file);
        assert_eq!(claims["signature_verified"], true, "{}", q.file);
    }
}

#[test]
fn tdx_report_data_other_than_the_runtime_data_is_refused_with_that_reason() {
    let v = verifiers("");
    for q in QUOTES.iter().filter(|q| !q.debug) {
        let err = v.cpu("tdx").unwrap().verify(&tdx_evidence(q.file), &[0x42; 48], None).unwrap_err();
        let shown = &q.report_data[..8];
        assert!(err.starts_with(&format!("report data mismatch: the evidence binds {shown}")), "{}: {err}", q.file);
    }
}

#[test]
fn tdx_debug_and_reference_values_come_from_the_policy_file() {
    let debug = &QUOTES[0];
    let err =
        verifiers("").cpu("tdx").unwrap().verify(&tdx_evidence(debug.file), &h(debug.report_data), None).unwrap_err();
    assert_eq!(err, "debug is allowed (TD attributes 0x10000001 have DEBUG set): refused by policy");

    let q = &QUOTES[1];
    let (ev, rd) = (tdx_evidence(q.file), h(q.report_data));
    let right = verifiers(&format!("[tdx]\nmrtd = [\"{}\"]\nrtmr1 = \"{}\"\n", q.mr_td, q.rtmr1));
    assert!(right.cpu("tdx").unwrap().verify(&ev, &rd, None).is_ok());
    let wrong_mrtd = verifiers(&format!("[tdx]\nmrtd = [\"{}\"]\n", QUOTES[2].mr_td));
    let err = wrong_mrtd.cpu("tdx").unwrap().verify(&ev, &rd, None).unwrap_err();
    assert_eq!(err, format!("MRTD {} is not an accepted reference value", q.mr_td));
    let wrong_rtmr = verifiers(&format!("[tdx]\nrtmr1 = \"{}\"\n", QUOTES[0].rtmr1));
    let err = wrong_rtmr.cpu("tdx").unwrap().verify(&ev, &rd, None).unwrap_err();
    assert_eq!(err, format!("RTMR1 {} is not an accepted reference value", q.rtmr1));
}

// ------------------------------------------------------------ through the server

/// An SNP guest that presents the recorded Milan report: the server
/// accepts `snp` at /auth, verifies the report genuine, and refuses it
/// because it cannot bind this session's nonce and key.
#[test]
fn the_server_refuses_a_recorded_report_for_its_report_data() {
    let dir = tempfile::tempdir().unwrap();
    let opts = {
        let mut o = ztinit_kbs::Options::new(dir.path());
        o.verifiers = verifiers(OFFLINE_MILAN);
        o
    };
    let handle = ztinit_kbs::Server::bind(opts).unwrap().spawn();
    let r = raw(handle.addr, "POST", "/kbs/v0/auth", &[], br#"{"version":"0.4.0","tee":"snp","extra-params":""}"#);
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let cookie = r.cookie().unwrap();
    let nonce = r.json()["nonce"].as_str().unwrap().to_string();
    let key = ztinit::kbs::jwe::TeeKey::generate().unwrap();
    let body = serde_json::to_vec(&json!({
        "init-data": null,
        "runtime-data": {"nonce": nonce, "tee-pubkey": key.public_jwk()},
        "tee-evidence": {"primary_evidence": milan_evidence(), "additional_evidence": ""}
    }))
    .unwrap();
    let r = raw(handle.addr, "POST", "/kbs/v0/attest", &[("Cookie", &cookie)], &body);
    assert_eq!(r.status, 401);
    let detail = r.json()["detail"].as_str().unwrap().to_string();
    assert!(
        detail.starts_with(
            "Attestation error: RCAR handshake Attest failed: report data mismatch: the evidence binds d447b55d"
        ),
        "{detail}"
    );
    // The sample TEE is still known to the same server.
    let r = raw(handle.addr, "POST", "/kbs/v0/auth", &[], br#"{"version":"0.4.0","tee":"sample","extra-params":""}"#);
    assert_eq!(r.status, 200);
}
