//! `cargo xtask verify-gpu`: the library's GPU evidence verification, offline.
//!
//! ```text
//! cargo xtask verify-gpu --report FILE --chain FILE [--nonce HEX] [--rim FILE]...
//! cargo xtask verify-gpu --evidence FILE [--digest HEX | --nonce HEX] [--rim FILE]...
//!   common: [--root PEM] [--rim-root PEM] [--time UNIX_SECONDS] [--driver VER] [--vbios VER]
//! ```
//! Prints one line per check and a verdict. Exit 0: valid; 1: invalid (a
//! check failed); 2: unusable input (unreadable or undecodable files, bad
//! arguments).

use std::path::Path;
use std::time::SystemTime;

use lexopt::ValueExt;

use ztinit::gpu::certs;
use ztinit::gpu::evidence::{self, NvidiaPolicy};
use ztinit::gpu::rim::Rim;
use ztinit::gpu::spdm;
use ztinit::gpu::verify::{self, Evidence, Expected, Outcome, ReferenceValues, Trust};

pub const VALID: i32 = 0;
pub const INVALID: i32 = 1;
pub const UNUSABLE: i32 = 2;

const USAGE: &str = "usage: cargo xtask verify-gpu (--report FILE --chain FILE | --evidence FILE) \
[--nonce HEX | --digest HEX] [--rim FILE]... [--root PEM] [--rim-root PEM] [--time UNIX_SECONDS] \
[--driver VER] [--vbios VER]";

#[derive(Default)]
struct Args {
    report: Option<String>,
    chain: Option<String>,
    evidence: Option<String>,
    nonce: Option<String>,
    digest: Option<String>,
    rims: Vec<String>,
    root: Option<String>,
    rim_root: Option<String>,
    time: Option<u64>,
    driver: Vec<String>,
    vbios: Vec<String>,
}

/// `Ok(None)`: `--help` was asked for.
fn parse_args(args: &[String]) -> Result<Option<Args>, String> {
    let mut a = Args::default();
    let mut p = lexopt::Parser::from_args(args.iter().cloned());
    let usage = |e: lexopt::Error| format!("{e}\n{USAGE}");
    while let Some(arg) = p.next().map_err(usage)? {
        let slot = match arg {
            lexopt::Arg::Long("report") => &mut a.report,
            lexopt::Arg::Long("chain") => &mut a.chain,
            lexopt::Arg::Long("evidence") => &mut a.evidence,
            lexopt::Arg::Long("nonce") => &mut a.nonce,
            lexopt::Arg::Long("digest") => &mut a.digest,
            lexopt::Arg::Long("root") => &mut a.root,
            lexopt::Arg::Long("rim-root") => &mut a.rim_root,
            lexopt::Arg::Long(list @ ("rim" | "driver" | "vbios")) => {
                let list = match list {
                    "rim" => &mut a.rims,
                    "driver" => &mut a.driver,
                    _ => &mut a.vbios,
                };
                list.push(p.value().map_err(usage)?.string().map_err(usage)?);
                continue;
            }
            lexopt::Arg::Long("time") => {
                a.time = Some(p.value().map_err(usage)?.parse().map_err(|_| "--time takes seconds since the epoch")?);
                continue;
            }
            lexopt::Arg::Short('h') | lexopt::Arg::Long("help") => return Ok(None),
            other => return Err(usage(other.unexpected())),
        };
        *slot = Some(p.value().map_err(usage)?.string().map_err(usage)?);
    }
    match (&a.report, &a.chain, &a.evidence) {
        (Some(_), Some(_), None) | (None, None, Some(_)) => Ok(Some(a)),
        _ => Err(format!("give --report and --chain, or --evidence\n{USAGE}")),
    }
}

fn read(path: &str) -> Result<Vec<u8>, String> {
    std::fs::read(Path::new(path)).map_err(|e| format!("{path}: {e}"))
}

fn hex_arg(name: &str, s: &str) -> Result<Vec<u8>, String> {
    hex::decode(s.trim()).map_err(|_| format!("{name} is not hex"))
}

/// Runs the verification and returns the exit code and the printed lines.
pub fn run(args: &[String]) -> (i32, Vec<String>) {
    if let Ok(None) = parse_args(args) {
        return (VALID, vec![USAGE.to_string()]);
    }
    let mut lines = Vec::new();
    let code = match run_inner(args, &mut lines) {
        Ok(code) => code,
        Err(msg) => {
            lines.push(format!("unusable input: {msg}"));
            UNUSABLE
        }
    };
    lines.push(match code {
        VALID => "verdict: VALID".to_string(),
        INVALID => "verdict: INVALID".to_string(),
        _ => "verdict: UNUSABLE INPUT".to_string(),
    });
    (code, lines)
}

fn run_inner(args: &[String], lines: &mut Vec<String>) -> Result<i32, String> {
    let Some(a) = parse_args(args)? else { return Ok(VALID) };
    let now = a.time.map(certs::unix).unwrap_or_else(SystemTime::now);
    let pem_or = |path: &Option<String>, builtin: fn() -> _| match path {
        Some(p) => certs::parse_pem_cert(&String::from_utf8_lossy(&read(p)?)).map_err(|e| format!("{p}: {e}")),
        None => Ok(builtin()),
    };
    let root = pem_or(&a.root, certs::nvidia_device_root)?;
    let rim_root = pem_or(&a.rim_root, certs::nvidia_rim_root)?;
    let trust = Trust { root, now };
    lines.push(format!("time: {}", certs::format_time(now)));

    // RIMs: each signature is a check of its own; their measurements become
    // the reference values.
    let mut failed = false;
    let mut reference = ReferenceValues::default();
    for path in &a.rims {
        let rim = Rim::parse(&read(path)?).map_err(|e| format!("{path}: {e}"))?;
        match rim.verify_signature(&rim_root, now) {
            Ok(signer) => lines.push(format!(
                "rim-signature {path}: ok: {} RIM {} signed by {signer}",
                rim.kind.as_str(),
                rim.version
            )),
            Err(e) => {
                failed = true;
                lines.push(format!("rim-signature {path}: FAIL: {e}"));
            }
        }
        if let Err(e) = reference.merge(rim.reference_values()) {
            failed = true;
            lines.push(format!("rim-reference {path}: FAIL: {e}"));
        }
    }

    let nonce: Option<[u8; 32]> = match (&a.nonce, &a.digest) {
        (Some(_), Some(_)) => return Err("give --nonce or --digest, not both".into()),
        (Some(n), None) => Some(hex_arg("--nonce", n)?.try_into().map_err(|_| "--nonce must be 32 bytes")?),
        (None, Some(d)) => Some(verify::nonce_from_digest(&hex_arg("--digest", d)?)),
        (None, None) => None,
    };

    if let Some(path) = &a.evidence {
        let value: serde_json::Value = serde_json::from_slice(&read(path)?).map_err(|e| format!("{path}: {e}"))?;
        // A composite `{"nvidia": ...}` as the KBS receives it is accepted too.
        let value = value.get("nvidia").cloned().unwrap_or(value);
        let policy =
            NvidiaPolicy { reference, driver_versions: a.driver, vbios_versions: a.vbios, refuse_switches: false };
        let digest_for_policy = nonce.map(|n| n.to_vec());
        let verdict = evidence::verify_nvidia_evidence(&value, digest_for_policy.as_deref(), &policy, &trust)
            .map_err(|e| format!("{path}: {e}"))?;
        for (label, v) in &verdict.devices {
            for c in &v.checks {
                lines.push(format!("{label}: {c}"));
            }
        }
        failed |= !verdict.passed();
    } else {
        let (rp, cp) = (a.report.unwrap_or_default(), a.chain.unwrap_or_default());
        let raw = spdm::decode_report_text(&read(&rp)?).ok_or_else(|| format!("{rp}: neither hex nor base64"))?;
        let chain = read(&cp)?;
        if !chain.windows(10).any(|w| w == b"-----BEGIN") {
            return Err(format!("{cp}: not a PEM certificate chain"));
        }
        let expected = Expected {
            nonce: nonce.as_ref(),
            driver_versions: &a.driver,
            vbios_versions: &a.vbios,
            reference: Some(&reference),
        };
        let v = verify::verify_device(&Evidence { report: &raw, chain_pem: &chain, arch: None }, &expected, &trust);
        for c in &v.checks {
            lines.push(c.to_string());
        }
        failed |= !v.passed();
        failed |= v.checks.iter().any(|c| matches!(c.outcome, Outcome::Fail(_)));
    }
    Ok(if failed { INVALID } else { VALID })
}

pub fn main(args: &[String]) -> i32 {
    let (code, lines) = run(args);
    for l in lines {
        println!("{l}");
    }
    code
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(rel: &str) -> String {
        format!("{}/../tests/data/gpu/{rel}", env!("CARGO_MANIFEST_DIR"))
    }

    fn run_with(args: &[&str]) -> (i32, Vec<String>) {
        let args: Vec<String> =
            args.iter().map(|a| if a.contains('/') && !a.starts_with('-') { data(a) } else { a.to_string() }).collect();
        run(&args)
    }

    fn expect(code: i32, args: &[&str], needle: &str) {
        let (got, lines) = run_with(args);
        assert_eq!(got, code, "{args:?}:\n{}", lines.join("\n"));
        assert!(lines.iter().any(|l| l.contains(needle)), "{args:?}: no line with {needle:?}:\n{}", lines.join("\n"));
    }

    const T: &str = "1780000000";

    #[test]
    fn manifest_verdicts_for_reports() {
        let gpu = "nvat/sample_attestation_data/gpu";
        expect(
            VALID,
            &[
                "--report",
                "trustee/hopperAttestationReport.txt",
                "--chain",
                "trustee/hopper_cert_chain_case1.txt",
                "--nonce",
                "931d8dd0add203ac3d8b4fbde75e115278eefcdceac5b87671a748f32364dfcb",
                "--driver",
                "550.90.07",
                "--vbios",
                "96.00.9F.00.01",
            ],
            "fwid: ok",
        );
        expect(
            VALID,
            &["--report", "trustee/hopperAttestationReport.txt", "--chain", "nvtrust/hopperCertChain.txt"],
            "signature: ok",
        );
        expect(
            VALID,
            &[
                "--report",
                &format!("{gpu}/hopperAttestationReport.txt"),
                "--chain",
                &format!("{gpu}/hopperCertChain.txt"),
            ],
            "fwid: skipped: report has no FWID",
        );
        expect(
            VALID,
            &[
                "--report",
                &format!("{gpu}/blackwellAttestationReport.txt"),
                "--chain",
                &format!("{gpu}/blackwellCertChain.txt"),
            ],
            "arch: ok: BLACKWELL",
        );
        expect(
            INVALID,
            &[
                "--report",
                &format!("{gpu}/hopperAttestationReportInvalidSignature.txt"),
                "--chain",
                &format!("{gpu}/hopperCertChain.txt"),
            ],
            "signature: FAIL",
        );
        expect(
            VALID,
            &[
                "--report",
                &format!("{gpu}/hopperAttestationReportExpired.txt"),
                "--chain",
                &format!("{gpu}/hopperCertChainExpired.txt"),
            ],
            "chain: ok",
        );
        expect(
            INVALID,
            &["--report", "trustee/hopperAttestationReport.txt", "--chain", "trustee/hopper_cert_chain_case2.txt"],
            "chain: FAIL: certificate chain holds only the root",
        );
        expect(
            INVALID,
            &["--report", "trustee/hopperAttestationReport.txt", "--chain", "trustee/hopper_cert_chain_case4.txt"],
            "fwid: FAIL",
        );
        expect(
            INVALID,
            &[
                "--report",
                "trustee/hopperAttestationReport.txt",
                "--chain",
                "trustee/hopper_cert_chain_case1.txt",
                "--nonce",
                &"00".repeat(32),
            ],
            "nonce: FAIL",
        );
        expect(
            INVALID,
            &["--report", "trustee/hopperAttestationReport.txt", "--chain", "trustee/hopper_signing_cert.pem"],
            "chain: FAIL",
        );
    }

    #[test]
    fn manifest_verdicts_for_evidence_json() {
        for f in [
            "nvat/common-test-data/hopper_evidence.json",
            "nvat/common-test-data/multi_gpu_hopper.json",
            "nvat/common-test-data/hopper_evidence_cert_hold.json",
            "nvat/testdata/evidence_hopper_590_12.json",
            "nvat/common-test-data/switch_evidence_ls10.json",
        ] {
            expect(VALID, &["--evidence", f], "signature: ok");
        }
        expect(VALID, &["--evidence", "nvat/common-test-data/multi_gpu_hopper.json"], "device 3 (HOPPER");
        expect(
            INVALID,
            &["--evidence", "nvat/common-test-data/hopper_evidence.json", "--nonce", &"11".repeat(32)],
            "nonce: FAIL",
        );
    }

    #[test]
    fn manifest_verdicts_for_rims() {
        let rep = "nvat/sample_attestation_data/gpu/hopperAttestationReport.txt";
        let chain = "nvat/sample_attestation_data/gpu/hopperCertChain.txt";
        // Inside the signer's validity: signature and all 12 measurements match.
        expect(
            VALID,
            &[
                "--report",
                rep,
                "--chain",
                chain,
                "--rim",
                "nvtrust/1010_0200_882_96005E0001_PROD.swidtag",
                "--time",
                "1740787200",
            ],
            "12 reference measurements match",
        );
        // After it: the expired signer makes the verdict invalid.
        expect(
            INVALID,
            &["--report", rep, "--chain", chain, "--rim", "nvtrust/1010_0200_882_96005E0001_PROD.swidtag", "--time", T],
            "HCC RIM L4 Signer",
        );
        expect(
            INVALID,
            &[
                "--report",
                rep,
                "--chain",
                chain,
                "--rim",
                "nvat/testdata/sample_rims/NV_GPU_VBIOS_1010_0200_882_96005E0001_measurement_mismatch.xml",
                "--time",
                "1740787200",
            ],
            "RIM index 9",
        );
        expect(
            INVALID,
            &[
                "--report",
                "nvat/sample_attestation_data/gpu/hopperAttestationReportExpired.txt",
                "--chain",
                "nvat/sample_attestation_data/gpu/hopperCertChainExpired.txt",
                "--rim",
                "nvat/testdata/sample_rims/NV_GPU_DRIVER_GH100_570.124.03_expired.xml",
                "--time",
                T,
            ],
            "rim-signature",
        );
        expect(
            INVALID,
            &[
                "--report",
                rep,
                "--chain",
                chain,
                "--rim",
                "nvat/testdata/incorrect_cert_chain_driver_rim.xml",
                "--time",
                "1740787200",
            ],
            "rim-signature",
        );
        expect(
            INVALID,
            &[
                "--report",
                rep,
                "--chain",
                chain,
                "--rim",
                "nvtrust/1010_0200_882_96005E0001_PROD.swidtag",
                "--rim-root",
                "nvat/testdata/incorrect_rim_root.crt",
                "--time",
                "1740787200",
            ],
            "pinned root",
        );
    }

    #[test]
    fn unusable_input_exits_2() {
        expect(
            UNUSABLE,
            &["--report", "trustee/missing.txt", "--chain", "trustee/hopper_cert_chain_case1.txt"],
            "unusable input",
        );
        expect(
            UNUSABLE,
            &["--report", "trustee/hopper_cert_chain_case1.txt", "--chain", "trustee/hopper_cert_chain_case1.txt"],
            "neither hex nor base64",
        );
        expect(UNUSABLE, &["--evidence", "nvtrust/verifier_RIM_root.pem"], "unusable input");
        expect(UNUSABLE, &["--report", "trustee/hopperAttestationReport.txt"], "give --report and --chain");
        expect(UNUSABLE, &["--evidence", "nvat/common-test-data/hopper_evidence.json", "--nonce", "zz"], "not hex");
    }
}
