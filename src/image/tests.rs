use std::os::unix::fs::PermissionsExt;

use super::*;

fn answer() -> Answer {
    Answer {
        version: protocol::VERSION,
        manifest_digest: format!("sha256:{}", "ab".repeat(32)),
        verified_by: "pinned digest".into(),
        layers: 1,
        unpacked_bytes: 10,
        entrypoint: vec!["app".into()],
        cmd: vec!["--serve".into()],
        env: vec!["PATH=/opt/bin:/usr/bin".into(), "MODE=image".into(), "CREDENTIALS_DIRECTORY=/evil".into()],
        working_dir: "/srv".into(),
        uid: 1000,
        gid: 1001,
        groups: vec![1002],
        labels: BTreeMap::new(),
    }
}

fn root_with(files: &[&str]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for f in files {
        let p = dir.path().join(f.trim_start_matches('/'));
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, b"\x7fELF").unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    dir
}

#[test]
fn the_image_config_becomes_the_workload() {
    let root = root_with(&["/usr/bin/app", "/opt/bin/app"]);
    let cfg = ImageConfig { reference: Some("r.example/app:1".into()), ..ImageConfig::default() };
    let w = workload(&cfg, &answer(), root.path()).unwrap();
    assert_eq!(w.path, "/opt/bin/app", "PATH order, looked up inside the root");
    assert_eq!(w.args, ["--serve"]);
    assert_eq!(w.workdir, "/srv");
    assert_eq!((w.uid, w.gid, w.groups.as_slice()), (1000, 1001, &[1002][..]));
    assert_eq!(w.env.get("MODE").map(String::as_str), Some("image"));
    assert!(!w.env.contains_key("CREDENTIALS_DIRECTORY"), "the secrets path is ztinit's to set");

    // Overrides: args replace Cmd; a new entrypoint drops the image's Cmd;
    // the config's env wins; workdir replaced.
    let cfg = ImageConfig {
        args: Some(vec!["--once".into()]),
        env: BTreeMap::from([("MODE".into(), "config".into())]),
        workdir: Some("/".into()),
        ..cfg
    };
    let w = workload(&cfg, &answer(), root.path()).unwrap();
    assert_eq!((w.args.as_slice(), w.workdir.as_str()), (&["--once".to_string()][..], "/"));
    assert_eq!(w.env["MODE"], "config");
    let cfg = ImageConfig { entrypoint: Some(vec!["/usr/bin/app".into()]), args: None, ..cfg };
    let w = workload(&cfg, &answer(), root.path()).unwrap();
    assert_eq!((w.path.as_str(), w.args.len()), ("/usr/bin/app", 0));
}

#[test]
fn a_program_must_be_found_inside_the_root() {
    let root = root_with(&["/usr/bin/other"]);
    // A symlink in the image pointing at a host program is resolved in the
    // root, where it finds nothing.
    std::fs::create_dir_all(root.path().join("opt/bin")).unwrap();
    std::os::unix::fs::symlink("/bin/sh", root.path().join("opt/bin/app")).unwrap();
    let cfg = ImageConfig::default();
    let err = workload(&cfg, &answer(), root.path()).unwrap_err();
    assert_eq!(err.to_string(), "program \"app\" not found in the image (searched PATH=/opt/bin:/usr/bin)");
    let none = Answer { entrypoint: vec![], cmd: vec![], ..answer() };
    assert!(matches!(workload(&cfg, &none, root.path()), Err(ImageError::NoProgram)));
    let relative = Answer { entrypoint: vec!["bin/app".into()], ..answer() };
    assert!(matches!(workload(&cfg, &relative, root.path()), Err(ImageError::ProgramNotFound(..))));
    let bad_env = Answer { env: vec!["NOEQUALS".into()], ..answer() };
    assert!(matches!(workload(&cfg, &bad_env, root.path()), Err(ImageError::Env(_))));
    let bad_dir = Answer { working_dir: "srv".into(), entrypoint: vec!["/usr/bin/other".into()], ..answer() };
    assert!(matches!(workload(&cfg, &bad_dir, root.path()), Err(ImageError::Workdir(_))));
}

/// A stand-in helper: a shell script that answers as `ztinit-image` would.
fn script_helper(dir: &Path, body: &str) -> String {
    let path = dir.join("helper.sh");
    std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path.display().to_string()
}

fn request_for(root: &Path) -> Request {
    let cfg = ImageConfig { reference: Some("r.example/app:1".into()), insecure_http: true, ..ImageConfig::default() };
    let dirs = root::UnpackDirs { base: root.into(), root: root.join("rootfs"), work: root.join("work") };
    let secrets = ImageSecrets {
        credentials: Some(Zeroizing::new(br#"{"username":"u","password":"s3cret-pw"}"#.to_vec())),
        decryption_keys: vec![],
    };
    let cfg = ImageConfig { credentials: Some(crate::kbs::ResourcePath::parse("a/b/c").unwrap()), ..cfg };
    request(&cfg, secrets, &dirs, Path::new("/")).unwrap()
}

#[test]
fn the_helper_answers_on_stdout_and_logs_on_stderr() {
    let dir = tempfile::tempdir().unwrap();
    let a = serde_json::to_string(&answer()).unwrap();
    let helper = script_helper(
        dir.path(),
        &format!(
            "read req; echo \"$req\" > {0}/req; echo pulling >&2; echo '{a}'; echo done >&2",
            dir.path().display()
        ),
    );
    let lines = std::sync::Mutex::new(Vec::new());
    let log = |l: &str| lines.lock().unwrap().push(l.to_string());
    let got = helper::run(&helper, &helper::Confinement::Unconfined, &request_for(dir.path()), &log).unwrap();
    assert_eq!(got, answer());
    assert_eq!(*lines.lock().unwrap(), ["pulling", "done"]);
    let req: Request = serde_json::from_str(&std::fs::read_to_string(dir.path().join("req")).unwrap()).unwrap();
    assert_eq!(req.credentials.as_ref().map(|c| c.password.as_str()), Some("s3cret-pw"));
    assert!(!format!("{req:?}").contains("s3cret-pw"), "Debug never shows the password");
}

#[test]
fn a_failing_helper_is_reported_with_its_last_line() {
    let dir = tempfile::tempdir().unwrap();
    let log = |_: &str| {};
    let helper = script_helper(dir.path(), "read req; echo 'manifest: digest mismatch' >&2; exit 3");
    let err = helper::run(&helper, &helper::Confinement::Unconfined, &request_for(dir.path()), &log).unwrap_err();
    assert_eq!(err.to_string(), "the image helper failed (exit status 3): manifest: digest mismatch");
    let helper = script_helper(dir.path(), "read req; echo '{\"version\": 1}'");
    let err = helper::run(&helper, &helper::Confinement::Unconfined, &request_for(dir.path()), &log).unwrap_err();
    assert!(err.to_string().starts_with("the image helper's answer is not valid"), "{err}");
    let helper = script_helper(dir.path(), "read req; head -c 2000000 /dev/zero");
    let err = helper::run(&helper, &helper::Confinement::Unconfined, &request_for(dir.path()), &log).unwrap_err();
    assert!(matches!(err, helper::HelperError::AnswerTooLarge), "{err}");
    let mut req = request_for(dir.path());
    req.deadline_ms = 0;
    let helper = script_helper(dir.path(), "read req; sleep 30");
    let started = std::time::Instant::now();
    let err = helper::run(&helper, &helper::Confinement::Unconfined, &req, &log).unwrap_err();
    assert!(matches!(err, helper::HelperError::Timeout(_)), "{err}");
    assert!(started.elapsed() < std::time::Duration::from_secs(15));
}

#[test]
fn released_credentials_must_be_username_and_password() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = ImageConfig {
        reference: Some("r.example/app:1".into()),
        insecure_http: true,
        credentials: Some(crate::kbs::ResourcePath::parse("a/b/c").unwrap()),
        ..ImageConfig::default()
    };
    let dirs = root::UnpackDirs { base: dir.path().into(), root: dir.path().into(), work: dir.path().into() };
    let secrets = ImageSecrets { credentials: Some(Zeroizing::new(b"user:pass".to_vec())), decryption_keys: vec![] };
    let err = request(&cfg, secrets, &dirs, Path::new("/")).unwrap_err();
    assert_eq!(
        err.to_string(),
        "registry credentials (KBS resource a/b/c) must be JSON {\"username\": .., \"password\": ..}"
    );
    assert!(!err.to_string().contains("pass\""));
}

#[test]
fn the_helper_is_confined_as_docs_image_md_says() {
    // docs/image.md, "The helper's confinement": strict seccomp plus the
    // network and tree calls (no mount, no namespaces, no ptrace), Landlock
    // reading everywhere but writing only the image tmpfs, four capabilities.
    use crate::sandbox::{LandlockMode, SeccompChoice};
    let s = helper::sandbox(&[root::IMAGE_BASE.to_string()]);
    assert_eq!(s.seccomp, SeccompChoice::Strict);
    assert_eq!(s.landlock, LandlockMode::Required);
    assert_eq!(s.read_only, ["/"]);
    assert_eq!(s.read_write, [root::IMAGE_BASE]);
    assert!(s.executable.is_empty() && s.devices.is_empty());
    assert_eq!(s.capabilities, ["CAP_CHOWN", "CAP_FOWNER", "CAP_DAC_OVERRIDE", "CAP_FSETID"]);
    assert!(s.no_new_privs);
    for call in ["socket", "connect", "openat2", "mkdirat", "symlinkat", "linkat", "fchownat", "utimensat"] {
        assert!(s.seccomp_allow.iter().any(|c| c == call), "{call} allowed");
    }
    for call in ["mount", "umount2", "pivot_root", "unshare", "setns", "ptrace", "chroot", "init_module"] {
        assert!(!s.seccomp_allow.iter().any(|c| c == call), "{call} not allowed");
    }
    // And the strict profile kills what it does not list.
    let program =
        crate::sandbox::seccomp::compile(&crate::sandbox::seccomp::builtin::strict(&s.seccomp_allow)).unwrap();
    assert!(program.has_fatal_actions());
}
