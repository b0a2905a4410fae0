//! The binary run by hand (not PID 1): version and check-config.

use std::process::Command;

fn ztinit(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_ztinit")).args(args).output().expect("run ztinit");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn version_is_printed_without_arguments_and_with_version() {
    for args in [&[][..], &["--version"][..]] {
        let (rc, out, _) = ztinit(args);
        assert_eq!(rc, 0);
        assert!(out.starts_with(&format!("ztinit {} (rev ", env!("CARGO_PKG_VERSION"))), "{out}");
        assert!(out.contains(", inputs "), "{out}");
    }
}

#[test]
fn the_documented_example_passes_check_config() {
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/ztinit.example.toml");
    let (rc, out, _) = ztinit(&["check-config", example]);
    assert_eq!(rc, 0, "{out}");
    let mut lines = out.lines();
    assert_eq!(lines.next(), Some("ok"));
    assert_eq!(lines.next(), Some("initdata may set: kbs.url"));
    let all = lines.next().unwrap();
    assert!(all.starts_with("keys tee.initdata_keys may open: boot.log_level, "), "{all}");
    assert!(!all.contains("cert") && !all.contains("insecure_http"), "{all}");
}

const EXAMPLE: &str = include_str!("../docs/ztinit.example.toml");

fn write(dir: &tempfile::TempDir, name: &str, text: &str) -> String {
    let path = dir.path().join(name);
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_string()
}

#[test]
fn check_config_on_the_old_example_names_what_initdata_may_no_longer_set() {
    let dir = tempfile::tempdir().unwrap();
    let old = EXAMPLE.replace("initdata_keys = [\"kbs.url\"]", "initdata_sections = [\"kbs\"]");
    assert_ne!(old, EXAMPLE);
    let file = write(&dir, "old.toml", &old);
    let (rc, out, _) = ztinit(&["check-config", &file]);
    assert_eq!(rc, 1);
    assert!(
        out.contains(
            "tee.initdata_sections: replaced by initdata_keys (one key at a time); initdata may no longer set: \
             kbs.ca_cert, kbs.ca_cert_file, kbs.pinned_cert, kbs.pinned_cert_file, kbs.insecure_http, kbs.max_resource_bytes;"
        ),
        "{out}"
    );
}

#[test]
fn check_config_refuses_plain_http_on_a_production_image() {
    let dir = tempfile::tempdir().unwrap();
    let text = EXAMPLE
        .replace("url = \"https://10.0.2.100:8443\"", "url = \"http://10.0.2.100:8080\"\ninsecure_http = true")
        .replace("pinned_cert_file = \"/etc/ztinit/kbs.pem\"", "");
    let file = write(&dir, "http.toml", &text);
    let (rc, out, _) = ztinit(&["check-config", &file]);
    assert_eq!(rc, 1, "{out}");
    assert!(out.contains("kbs.insecure_http: plain HTTP gives no authenticity"), "{out}");
    let shipped = concat!(env!("CARGO_MANIFEST_DIR"), "/rootfs/configs/test-hostile-http.toml");
    let (rc, out, _) = ztinit(&["check-config", shipped]);
    assert_eq!(rc, 1, "{out}");
    assert!(out.contains(":25: kbs.insecure_http: plain HTTP gives no authenticity"), "{out}");
}

#[test]
fn check_config_applies_an_initdata_document_as_the_boot_does() {
    let dir = tempfile::tempdir().unwrap();
    let baked = write(&dir, "ztinit.toml", EXAMPLE);
    let doc = |entry: &str| {
        format!("version = \"0.1.0\"\nalgorithm = \"sha384\"\n[data]\n\"ztinit.toml\" = \'\'\'\n{entry}\'\'\'\n")
    };
    let hostile =
        write(&dir, "hostile.toml", &doc("[kbs]\nurl = \"https://proxy:8443\"\npinned_cert_file = \"/dev/vdc\"\n"));
    let (rc, out, _) = ztinit(&["check-config", &baked, "--initdata", &hostile]);
    assert_eq!((rc, out.as_str()), (1, "initdata: kbs.pinned_cert_file is baked-only\n"));
    let fine = write(&dir, "fine.toml", &doc("[kbs]\nurl = \"https://kbs2.example:8443\"\n"));
    let (rc, out, _) = ztinit(&["check-config", "--initdata", &fine, &baked]);
    assert_eq!(rc, 0, "{out}");
    assert!(out.starts_with("initdata sets: kbs.url\nok\n"), "{out}");
    let (rc, _, err) = ztinit(&["check-config", &baked, "--initdata"]);
    assert_eq!(rc, 2);
    assert!(err.starts_with("ztinit: --initdata needs a value\nusage: ztinit check-config"), "{err}");
}

#[test]
fn check_config_reports_every_error_with_file_line_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bad.toml");
    std::fs::write(&file, "[workload]\npath = \"/bin/app\"\nbogus = 1\n\n[boot]\nshutdown_timeout_ms = -5\n").unwrap();
    let (rc, out, _) = ztinit(&["check-config", file.to_str().unwrap()]);
    assert_eq!(rc, 1);
    let f = file.display();
    assert_eq!(
        out,
        format!(
            "{f}:3: workload.bogus: unknown key\n{f}:6: boot.shutdown_timeout_ms: invalid value: integer `-5`, expected u64\n"
        )
    );
}

#[test]
fn check_config_with_a_root_checks_referenced_files() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("c.toml");
    std::fs::write(&file, "[workload]\npath = \"/bin/app\"\n").unwrap();
    let (rc, out, _) = ztinit(&["check-config", file.to_str().unwrap(), "--root", dir.path().to_str().unwrap()]);
    assert_eq!(rc, 1);
    assert!(out.contains("workload.path: /bin/app: no such file in the image"), "{out}");
}

#[test]
fn unusable_arguments_print_usage() {
    let (rc, _, err) = ztinit(&["frobnicate"]);
    assert_eq!(rc, 2);
    assert!(err.starts_with("ztinit: unknown subcommand \"frobnicate\"\nusage: ztinit"), "{err}");
    let (rc, _, err) = ztinit(&["check-config", "/nonexistent.toml"]);
    assert_eq!(rc, 1);
    assert!(err.contains("/nonexistent.toml"), "{err}");
}

#[test]
fn check_config_lists_every_weakening_of_an_agent_profile_after_ok() {
    let config = concat!(env!("CARGO_MANIFEST_DIR"), "/rootfs/configs/test-kata-agent-handoff.toml");
    let (rc, out, _) = ztinit(&["check-config", config]);
    assert_eq!(rc, 0, "{out}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "ok");
    assert!(lines.iter().any(|l| l.starts_with("initdata may set: ")), "{out}");
    let lines: Vec<&str> = lines.into_iter().filter(|l| !l.contains("initdata")).collect();
    let keys: Vec<&str> =
        lines[1..].iter().map(|l| l.strip_prefix("weakening: ").unwrap().split(": ").next().unwrap()).collect();
    assert_eq!(
        keys,
        [
            "sandbox.profile = \"agent\"",
            "workload.mode = \"handoff\"",
            "workload.user = 0",
            "workload.group = 0",
            "sandbox.capabilities",
            "sandbox.seccomp = \"agent\"",
            "sandbox.seccomp_allow = [\"ioperm\"]",
            "sandbox.landlock = \"off\"",
        ]
    );
    assert!(lines[5].contains("CAP_SYS_ADMIN") && lines[5].contains("CAP_SYS_RAWIO"), "{}", lines[5]);
}

/// Every subcommand answers --help with exit 0 and its usage on stdout.
#[test]
fn every_subcommand_has_help() {
    for args in [&["--help"][..], &["-h"], &["check-config", "--help"], &["check-config", "x.toml", "-h"]] {
        let (rc, out, err) = ztinit(args);
        assert_eq!(rc, 0, "{args:?}: {err}");
        assert!(out.contains("usage: ztinit"), "{args:?}: {out}");
    }
    let (_, out, _) = ztinit(&["check-config", "--help"]);
    assert!(out.starts_with("usage: ztinit check-config FILE"), "{out}");
}

/// An unknown option, a missing value or a stray argument: exit 2, the
/// message names it, the usage follows.
#[test]
fn bad_arguments_are_named_with_the_usage() {
    let cases: &[(&[&str], &str)] = &[
        (&["--bogus"], "unknown option \"--bogus\""),
        (&["--version", "x"], "unexpected argument \"x\" after --version"),
        (&["check-config", "x.toml", "--bogus"], "unknown option \"--bogus\""),
        (&["check-config", "x.toml", "--root"], "--root needs a value"),
        (&["check-config", "x.toml", "--root=a", "--root", "b"], "--root given twice"),
        (&["check-config", "a.toml", "b.toml"], "unexpected argument \"b.toml\""),
        (&["check-config"], "FILE is missing"),
    ];
    for (args, want) in cases {
        let (rc, _, err) = ztinit(args);
        assert_eq!(rc, 2, "{args:?}: {err}");
        assert!(err.starts_with(&format!("ztinit: {want}")), "{args:?}: {err}");
        assert!(err.contains("\nusage: ztinit"), "{args:?}: {err}");
    }
    // `--opt=value` and `--` work.
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/ztinit.example.toml");
    let (rc, out, _) = ztinit(&["check-config", "--root=/nonexistent-root-dir", "--", example]);
    assert_eq!(rc, 1, "{out}");
}
