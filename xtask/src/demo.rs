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
    println!("demo: building the image {}", scenario.manifest);
    let mut images = ImageCache::default();
    images.get(&scenario.manifest)?;
    println!("demo: booting under QEMU; the guest console follows\n");
    let report = e2e::run_scenario(&scenario, &mut images, true, Some("demo"))?;
    println!("\n== demo summary");
    print!("{}", summary(&report.console));
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
