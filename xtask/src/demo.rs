//! `cargo xtask demo`: the project's main job. Installs what is missing,
//! builds the kernel and the demo image, starts the dev KBS with a fresh
//! demo secret, boots the image with the console streamed, and ends with a
//! summary: the stage timeline, the attestation, each secret's SHA-256 as
//! the workload printed it against the host's, and the outcome.
//!
//! The demo is the scenario `tests/e2e/demo.toml` (the KBS is its
//! [[service]], the secret its [[prepare]] step), so growing it (a model
//! volume as [[prepare]] + [[disk]], new markers) is an edit of that file;
//! `cargo xtask test` checks it too.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Result, bail};

use crate::e2e::{self, ImageCache};
use crate::{cli, kernel, prereq};

pub fn cmd(args: &[String]) -> Result<()> {
    let mut p = cli::Args::new(
        args,
        "usage: cargo xtask demo\nBoots the demo image (tests/e2e/demo.toml) and summarises the boot.",
    );
    if let Some(arg) = p.next()? {
        return match arg {
            cli::Short('h') | cli::Long("help") => p.help(),
            other => {
                let e = other.unexpected();
                Err(p.error(e))
            }
        };
    }
    println!("demo: checking prerequisites (installs missing packages when run as root)");
    prereq::ensure()?;
    let scenario = e2e::load(&e2e::scenario_dir().join("demo.toml"))?;
    println!(
        "demo: guest kernel ({} profile; the first build takes several minutes)",
        scenario.kernel.as_deref().unwrap_or(kernel::DEFAULT_PROFILE)
    );
    kernel::ensure(scenario.kernel.as_deref().unwrap_or("test"))?;
    let mut images = ImageCache::default();
    if scenario.config_append.is_empty() {
        println!("demo: building the image {}", scenario.manifest);
        images.get(&scenario.manifest)?;
    } else {
        println!("demo: the image {} is built after the model volume", scenario.manifest);
    }
    println!("demo: booting under QEMU; the guest console follows\n");
    let report = e2e::run_scenario(&scenario, &mut images, true, Some("demo"))?;
    println!("\n== demo summary");
    let hosts = host_hashes(&report.scratch);
    print!("{}", summary(&report.console, &hosts));
    print!("{}", model_summary(&report.console, hosts.get("model").map(String::as_str)));
    println!("outcome:  {} after {} wall time", report.outcome, kernel::fmt_duration(report.wall));
    println!("console:  {}", report.log.display());
    for sv in &scenario.service {
        println!("{:<9} {}", format!("{}:", sv.name), e2e::e2e_dir().join(format!("demo.{}.log", sv.name)).display());
    }
    if report.failures.is_empty() {
        println!("result:   OK");
        Ok(())
    } else {
        for f in &report.failures {
            println!("problem:  {f}");
        }
        bail!("the demo did not end as expected")
    }
}

/// The model the workload hashed, against the host's digest of the file the
/// volume was built from.
pub fn model_summary(console: &str, host_sha256: Option<&str>) -> String {
    const MARK: &str = "demo: model ";
    let host = host_sha256.map(str::trim).filter(|h| !h.is_empty());
    let mut s = String::new();
    for line in console.lines() {
        let Some(i) = line.find(MARK) else { continue };
        let rest = &line[i + MARK.len()..];
        let words: Vec<&str> = rest.split_whitespace().collect();
        if let [path, "sha256", guest, ..] = words.as_slice() {
            let verdict = match host {
                Some(h) if h == *guest => "matches the host's",
                Some(_) => "DIFFERS from the host's",
                None => "(no host digest)",
            };
            s.push_str(&format!("model:    {path} sha256 {guest} {verdict}\n"));
        }
    }
    if s.is_empty() && host.is_some() {
        s.push_str("model:    the workload printed no model digest\n");
    }
    s
}

/// SHA-256 (hex) of each secret the prepare steps made, by name: the
/// `NAME.sha256` files of the scratch directory (`xtask dev-secret`).
pub fn host_hashes(scratch: &Path) -> BTreeMap<String, String> {
    let Ok(entries) = std::fs::read_dir(scratch) else { return BTreeMap::new() };
    entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter_map(|p| {
            let name = p.file_name()?.to_str()?.strip_suffix(".sha256")?.to_string();
            Some((name, std::fs::read_to_string(&p).ok()?.trim().to_string()))
        })
        .collect()
}

/// What the guest's `demo: secret NAME: N bytes, sha256=HEX` line says,
/// compared with the host's hash of the secret it released.
fn secret_line(line: &str, host: &BTreeMap<String, String>) -> Option<String> {
    let rest = &line[line.find("demo: secret ")? + "demo: secret ".len()..];
    let (name, rest) = rest.split_once(": ")?;
    let guest = rest.split("sha256=").nth(1)?.trim();
    let verdict = match host.get(name) {
        Some(h) if h == guest => "matches the host's".to_string(),
        Some(h) => format!("DIFFERS from the host's {h}"),
        None => "no host hash to compare with".to_string(),
    };
    Some(format!("{name}: sha256 {guest} {verdict}"))
}

/// The stage timeline, the attestation, the secrets' hashes against the
/// host's, and the workload's end, from the console.
pub fn summary(console: &str, host_hashes: &BTreeMap<String, String>) -> String {
    let mut s = String::from("stage        done at     took\n");
    let mut any = false;
    for line in console.lines() {
        if let Some((stage, skipped, at, took)) = ztinit::timeline::parse_line(line) {
            let name = stage.name();
            any = true;
            if skipped {
                s.push_str(&format!("{name:<12} {:>7}          skipped\n", format!("{at} ms")));
            } else {
                s.push_str(&format!("{name:<12} {:>7} {:>8}\n", format!("{at} ms"), format!("{took} ms")));
            }
        }
    }
    if !any {
        s.push_str("(no stage lines on the console)\n");
    }
    for line in console.lines() {
        // main's line names the KBS by its URL.
        if let Some(i) = line.find("ztinit: KBS ").filter(|_| line.contains("://") && line.contains(" accepted the ")) {
            s.push_str(&format!("attest:   {}\n", line[i + "ztinit: ".len()..].trim()));
        }
        // The image stage's line: digest, how it was vouched for, layers.
        if let Some(i) = line.find("ztinit: image sha256:") {
            s.push_str(&format!("image:    {}\n", line[i + "ztinit: image ".len()..].trim()));
        }
        if let Some(shown) = secret_line(line, host_hashes) {
            s.push_str(&format!("secret:   {shown}\n"));
        }
        if let Some(i) = line.find("ztinit: workload exited") {
            s.push_str(&format!("workload: {}\n", line[i + "ztinit: ".len()..].trim()));
        }
        if let Some(i) = line.find("ztinit: FATAL:") {
            s.push_str(&format!("fatal:    {}\n", line[i..].trim()));
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_digest_is_compared_with_the_hosts() {
        let console = "workload: demo: model /models/model.bin sha256 abc (3 bytes)\n";
        assert_eq!(
            model_summary(console, Some("abc\n")),
            "model:    /models/model.bin sha256 abc matches the host's\n"
        );
        assert!(model_summary(console, Some("abd")).contains("DIFFERS"));
        assert!(model_summary("", Some("abc")).contains("no model digest"));
        assert_eq!(model_summary("", None), "");
    }

    const CONSOLE: &str = "ztinit: stage attest done at 5544 ms (took 396 ms)
ztinit: KBS accepted the sample evidence (hash sha384)
ztinit: KBS http://10.0.2.100:8080 accepted the sample evidence
ztinit: image sha256:ab12 verified (cosign signature), 2 layer(s), 1 MiB unpacked
workload: demo: secret demo-secret: 32 bytes, sha256=aa11
workload: demo: secret other: 3 bytes, sha256=bb22
ztinit: workload exited status=0
";

    #[test]
    fn the_summary_shows_attestation_secrets_against_the_host_and_the_exit() {
        let host = BTreeMap::from([("demo-secret".to_string(), "aa11".to_string())]);
        let s = summary(CONSOLE, &host);
        assert!(s.contains("attest       5544 ms   396 ms\n"), "{s}");
        assert!(s.contains("attest:   KBS http://10.0.2.100:8080 accepted the sample evidence\n"), "{s}");
        assert_eq!(s.matches("attest:").count(), 1, "{s}");
        assert!(s.contains("image:    sha256:ab12 verified (cosign signature), 2 layer(s), 1 MiB unpacked\n"), "{s}");
        assert!(s.contains("secret:   demo-secret: sha256 aa11 matches the host's\n"), "{s}");
        assert!(s.contains("secret:   other: sha256 bb22 no host hash to compare with\n"), "{s}");
        assert!(s.contains("workload: workload exited status=0\n"), "{s}");
        let wrong = BTreeMap::from([("demo-secret".to_string(), "cc33".to_string())]);
        assert!(summary(CONSOLE, &wrong).contains("sha256 aa11 DIFFERS from the host's cc33"));
    }

    #[test]
    fn host_hashes_are_the_sha256_files_of_the_scratch_directory() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("demo-secret.sha256"), "aa11\n").unwrap();
        std::fs::write(dir.path().join("demo-secret.forms"), "x\n").unwrap();
        let h = host_hashes(dir.path());
        assert_eq!(h, BTreeMap::from([("demo-secret".to_string(), "aa11".to_string())]));
        assert!(host_hashes(&dir.path().join("absent")).is_empty());
    }
}
