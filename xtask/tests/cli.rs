//! Every `cargo xtask COMMAND --help` exits 0 with the usage, and an
//! unknown option fails (exit 2) naming the option, with the usage.

use std::process::Command;

/// Commands `cargo xtask --help` does not list.
const HIDDEN: &[&str] = &["relay", "echo-server", "dev-secret", "fixture"];

fn xtask(args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_xtask")).args(args).output().expect("run xtask");
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    (out.status.code().unwrap_or(-1), text)
}

/// The listed commands (two-space indented lines of the top-level usage)
/// plus the hidden ones, so a new command is checked without editing this.
fn commands() -> Vec<String> {
    let (rc, usage) = xtask(&["--help"]);
    assert_eq!(rc, 0, "{usage}");
    let listed = usage.lines().filter(|l| l.starts_with("  ") && !l.starts_with("   "));
    let mut all: Vec<String> = listed.filter_map(|l| l.split_whitespace().next()).map(str::to_string).collect();
    assert!(all.len() >= 10, "too few commands parsed from the usage:\n{usage}");
    for h in HIDDEN {
        if !all.iter().any(|c| c == h) {
            all.push(h.to_string());
        }
    }
    all
}

#[test]
fn every_command_answers_help_with_exit_0() {
    for c in commands() {
        for flag in ["--help", "-h"] {
            let (rc, out) = xtask(&[&c, flag]);
            assert_eq!(rc, 0, "xtask {c} {flag}: {out}");
            assert!(out.contains("usage: cargo xtask"), "xtask {c} {flag}: {out}");
        }
    }
    let (rc, out) = xtask(&["fixture", "random", "--help"]);
    assert_eq!(rc, 0, "{out}");
}

#[test]
fn an_unknown_option_is_named_with_the_usage() {
    for c in commands() {
        let (rc, out) = xtask(&[&c, "--no-such-option"]);
        assert_eq!(rc, 2, "xtask {c} --no-such-option: {out}");
        assert!(out.contains("--no-such-option"), "xtask {c}: {out}");
        assert!(out.contains("usage: cargo xtask"), "xtask {c}: {out}");
    }
    let (rc, out) = xtask(&["fixture", "random", "--out", "x", "--no-such-option", "1"]);
    assert_eq!(rc, 2, "{out}");
    assert!(out.contains("--no-such-option"), "{out}");
    let (rc, out) = xtask(&["no-such-command"]);
    assert_eq!(rc, 2, "{out}");
    assert!(out.contains("\"no-such-command\"") && out.contains("usage: cargo xtask"), "{out}");
}
