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
    assert_eq!((rc, out.as_str()), (0, "ok\n"));
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
    assert!(err.starts_with("usage: ztinit"));
    let (rc, _, err) = ztinit(&["check-config", "/nonexistent.toml"]);
    assert_eq!(rc, 1);
    assert!(err.contains("/nonexistent.toml"), "{err}");
}
