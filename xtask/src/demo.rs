//! `cargo xtask demo`: the project's main job. Installs what is missing,
//! builds the kernel and the demo image, boots it with the console
//! streamed, and ends with a summary: the stage timeline and the outcome.
//!
//! The demo is the scenario `tests/e2e/demo.toml`, so growing it (the dev
//! KBS as a [[service]], a model volume as [[prepare]] + [[disk]], new
//! markers) is an edit of that file; `cargo xtask test` checks it too.

use anyhow::{Result, bail};

use crate::e2e::{self, ImageCache};
use crate::{kernel, prereq};

pub fn cmd(args: &[String]) -> Result<()> {
    if let Some(a) = args.first() {
        if a == "-h" || a == "--help" {
            println!("usage: cargo xtask demo\nBoots the demo image (tests/e2e/demo.toml) and summarises the boot.");
            return Ok(());
        }
        bail!("demo: unknown argument {a:?}");
    }
    println!("demo: checking prerequisites (installs missing packages when run as root)");
    prereq::ensure()?;
    let scenario = e2e::load(&e2e::scenario_dir().join("demo.toml"))?;
    println!(
        "demo: guest kernel ({} profile; the first build takes several minutes)",
        scenario.kernel.as_deref().unwrap_or("test")
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
    print!("{}", summary(&report.console));
    let host_sha = std::fs::read_to_string(e2e::e2e_dir().join(&scenario.name).join("model.sha256")).ok();
    print!("{}", model_summary(&report.console, host_sha.as_deref()));
    println!("outcome:  {} after {} wall time", report.outcome, kernel::fmt_duration(report.wall));
    println!("console:  {}", report.log.display());
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
                Some(h) if h == *guest => "= the host's",
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

/// The stage timeline and the workload's end, from the console.
pub fn summary(console: &str) -> String {
    let mut s = String::from("stage        done at     took\n");
    let mut any = false;
    for line in console.lines() {
        if let Some((name, skipped, at, took)) = ztinit::timeline::parse_line(line) {
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
        assert_eq!(model_summary(console, Some("abc\n")), "model:    /models/model.bin sha256 abc = the host's\n");
        assert!(model_summary(console, Some("abd")).contains("DIFFERS"));
        assert!(model_summary("", Some("abc")).contains("no model digest"));
        assert_eq!(model_summary("", None), "");
    }
}
