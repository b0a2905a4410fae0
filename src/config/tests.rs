use super::*;

fn load(text: &str, cmdline: Option<&str>) -> Result<Config, ConfigError> {
    Config::load(Sources { origin: "ztinit.toml", text, cmdline, files: &NoFiles })
}

fn issues(text: &str, cmdline: Option<&str>) -> Vec<Issue> {
    match load(text, cmdline) {
        Ok(_) => panic!("expected errors for:\n{text}"),
        Err(ConfigError::Invalid(i)) => i,
        Err(e) => panic!("unexpected error {e}"),
    }
}

const MINIMAL: &str = "[workload]\npath = \"/bin/app\"\n";

#[test]
fn minimal_config_loads_with_defaults() {
    let c = load(MINIMAL, None).unwrap();
    assert_eq!(c.workload.path, "/bin/app");
    assert_eq!(c.workload.user, 65534);
    assert_eq!(c.boot.log_level, LogLevel::Info);
    assert_eq!(c.boot.on_exit, OnExit::Poweroff);
    assert_eq!(c.network.mode, NetworkMode::None);
}

#[test]
fn the_documented_example_is_valid() {
    let text = include_str!("../../docs/ztinit.example.toml");
    let c = load(text, None).unwrap_or_else(|e| panic!("{:?}", e.issues()));
    assert_eq!(c.network.address(), Some(("10.0.2.15".parse().unwrap(), 24)));
}

#[test]
fn workload_path_is_required() {
    let i = issues("[boot]\nlog_level = \"debug\"\n", None);
    assert_eq!(i.len(), 1);
    assert_eq!(i[0].key, "workload.path");
}

#[test]
fn unknown_keys_are_all_reported_with_lines() {
    let text = "[workload]\npath = \"/bin/app\"\nbogus = 1\n\n[boot]\nlog_level = \"info\"\nalso_bogus = true\n";
    let i = issues(text, None);
    let keys: Vec<_> = i.iter().map(|i| (i.key.as_str(), i.line)).collect();
    assert!(keys.contains(&("workload.bogus", Some(3))), "{keys:?}");
    assert!(keys.contains(&("boot.also_bogus", Some(7))), "{keys:?}");
    assert!(i.iter().all(|i| i.message == "unknown key"));
}

#[test]
fn unknown_sections_are_reported() {
    let i = issues(&format!("{MINIMAL}[nonsense]\na = 1\n"), None);
    assert_eq!(i[0].key, "nonsense");
    assert_eq!(i[0].line, Some(3));
    assert!(i[0].message.contains("unknown section"));
}

#[test]
fn wrong_types_name_the_key() {
    let i = issues(&format!("{MINIMAL}[boot]\nshutdown_timeout_ms = \"soon\"\n"), None);
    assert_eq!(i[0].key, "boot.shutdown_timeout_ms");
    assert_eq!(i[0].line, Some(4));
    assert!(i[0].message.contains("invalid type"), "{}", i[0].message);
}

#[test]
fn bad_enum_values_name_the_key() {
    let i = issues(&format!("{MINIMAL}[boot]\non_exit = \"explode\"\n"), None);
    assert_eq!(i[0].key, "boot.on_exit");
    assert!(i[0].message.contains("explode"));
}

#[test]
fn out_of_range_values_are_refused() {
    let i = issues(&format!("{MINIMAL}[boot]\nshutdown_timeout_ms = 9999999\n"), None);
    assert_eq!(i[0].key, "boot.shutdown_timeout_ms");
    assert!(i[0].message.contains("out of range"));
}

#[test]
fn negative_numbers_for_unsigned_fields_are_refused() {
    let i = issues("[workload]\npath = \"/bin/app\"\nuser = -1\n", None);
    assert_eq!(i[0].key, "workload.user");
}

#[test]
fn errors_in_several_sections_are_all_reported() {
    let text = "[workload]\npath = \"relative\"\n[boot]\non_exit = 3\n[network]\nmode = \"static\"\n";
    let i = issues(text, None);
    let keys: Vec<_> = i.iter().map(|i| i.key.as_str()).collect();
    assert!(keys.contains(&"workload.path"));
    assert!(keys.contains(&"boot.on_exit"));
    assert!(keys.contains(&"network.interface"));
    assert!(keys.contains(&"network.address"));
}

#[test]
fn syntax_errors_carry_a_line() {
    let i = issues("[workload]\npath = \"/bin/app\n", None);
    assert_eq!(i.len(), 1);
    assert!(i[0].message.starts_with("TOML syntax error"));
    assert_eq!(i[0].line, Some(2));
}

#[test]
fn unimplemented_sections_are_refused_not_ignored() {
    // Every section of DESIGN.md is implemented now; the mechanism stays for
    // the next one, so check it on its own.
    let mut pending = Vec::new();
    let present: NotSupported = toml::Value::Table(toml::Table::new()).try_into().unwrap();
    assert!(present.is_present());
    present.validate(&mut Validator::new("future".into(), &mut pending, &NoFiles));
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].path, "future");
    assert!(pending[0].message.contains("not supported yet"));
    let mut pending = Vec::new();
    NotSupported::default().validate(&mut Validator::new("future".into(), &mut pending, &NoFiles));
    assert!(pending.is_empty());
}

#[test]
fn environment_names_are_checked() {
    let i = issues("[workload]\npath = \"/bin/app\"\nenv = { \"A=B\" = \"x\" }\n", None);
    assert_eq!(i[0].key, "workload.env.A=B");
    let i = issues("[workload]\npath = \"/bin/app\"\nenv = { CREDENTIALS_DIRECTORY = \"/x\" }\n", None);
    assert!(i[0].message.contains("set by ztinit"));
}

#[test]
fn static_network_is_checked() {
    let base = "[workload]\npath = \"/a\"\n[network]\nmode = \"static\"\ninterface = \"eth0\"\n";
    let i = issues(&format!("{base}address = \"10.0.2.15\"\n"), None);
    assert_eq!(i[0].key, "network.address");
    let i = issues(&format!("{base}address = \"10.0.2.15/24\"\ngateway = \"10.0.3.1\"\n"), None);
    assert_eq!(i[0].key, "network.gateway");
    assert!(load(&format!("{base}address = \"10.0.2.15/24\"\ngateway = \"10.0.2.2\"\n"), None).is_ok());
    let i = issues("[workload]\npath = \"/a\"\n[network]\ninterface = \"eth0\"\n", None);
    assert!(i[0].message.contains("no effect"));
}

#[test]
fn cmdline_may_set_harmless_knobs() {
    let c = load(MINIMAL, Some("console=ttyS0 ztinit.log=debug ztinit.boot.shutdown_timeout_ms=100 quiet")).unwrap();
    assert_eq!(c.boot.log_level, LogLevel::Debug);
    assert_eq!(c.boot.shutdown_timeout_ms, 100);
}

#[test]
fn cmdline_may_not_set_security_relevant_keys() {
    let i = issues(MINIMAL, Some("ztinit.workload.path=/bin/sh ztinit.kbs.url=http://evil"));
    assert_eq!(i.len(), 2);
    assert_eq!(i[0].origin, Origin::Cmdline);
    assert_eq!(i[0].key, "ztinit.workload.path");
    assert!(i[0].message.contains("may not be set on the kernel command line"));
    assert_eq!(i[1].key, "ztinit.kbs.url");
}

#[test]
fn cmdline_values_are_validated_like_the_file() {
    let i = issues(MINIMAL, Some("ztinit.log=loud"));
    assert_eq!(i[0].key, "boot.log_level");
    let i = issues(MINIMAL, Some("ztinit.boot.shutdown_timeout_ms=99999999"));
    assert!(i[0].message.contains("out of range"));
    let i = issues(MINIMAL, Some("ztinit.log"));
    assert!(i[0].message.contains("needs a value"));
}

#[test]
fn cmdline_words_honour_quotes() {
    assert_eq!(cmdline::words("a=\"b c\" d  e"), vec!["a=b c", "d", "e"]);
    assert_eq!(
        cmdline::params("x ztinit.log=info -- ztinit.log=debug"),
        vec![("boot.log_level".to_string(), "info".to_string()), ("boot.log_level".to_string(), "debug".to_string())]
    );
}

#[test]
fn referenced_files_are_checked_when_available() {
    let dir = tempfile::tempdir().unwrap();
    let files = RootFiles::new(dir.path());
    let text = "[workload]\npath = \"/bin/app\"\n";
    let err = Config::load(Sources { origin: "c.toml", text, cmdline: None, files: &files }).unwrap_err();
    assert!(err.to_string().contains("no such file in the image"), "{err}");
    std::fs::create_dir_all(dir.path().join("bin")).unwrap();
    std::fs::write(dir.path().join("bin/app"), b"#!/bin/sh\n").unwrap();
    let err = Config::load(Sources { origin: "c.toml", text, cmdline: None, files: &files }).unwrap_err();
    assert!(err.to_string().contains("not an ELF"), "{err}");
    std::fs::write(dir.path().join("bin/app"), b"\x7fELF....").unwrap();
    assert!(Config::load(Sources { origin: "c.toml", text, cmdline: None, files: &files }).is_ok());
}

#[test]
fn a_workload_larger_than_any_config_file_is_accepted_but_a_large_profile_is_not() {
    let dir = tempfile::tempdir().unwrap();
    let files = RootFiles::new(dir.path());
    std::fs::create_dir_all(dir.path().join("bin")).unwrap();
    // Inference servers are hundreds of MiB; only the ELF magic is read.
    let app = std::fs::File::create(dir.path().join("bin/app")).unwrap();
    std::io::Write::write_all(&mut &app, b"\x7fELF").unwrap();
    app.set_len(MAX_REFERENCED_FILE_BYTES * 4).unwrap();
    let text = "[workload]\npath = \"/bin/app\"\n";
    assert!(Config::load(Sources { origin: "c.toml", text, cmdline: None, files: &files }).is_ok());

    let profile = std::fs::File::create(dir.path().join("p.json")).unwrap();
    profile.set_len(MAX_REFERENCED_FILE_BYTES).unwrap();
    let text = "[workload]\npath = \"/bin/app\"\n[sandbox]\nseccomp = \"/p.json\"\n";
    let err = Config::load(Sources { origin: "c.toml", text, cmdline: None, files: &files }).unwrap_err();
    assert!(err.to_string().contains("sandbox.seccomp: /p.json: larger than"), "{err}");
}

#[test]
fn issue_display_names_file_line_and_key() {
    let i = issues("[workload]\npath = \"/bin/app\"\nbogus = 1\n", None);
    assert_eq!(i[0].to_string(), "ztinit.toml:3: workload.bogus: unknown key");
}

#[test]
fn the_debug_exit_flag_survives_an_invalid_config() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("c.toml");
    std::fs::write(&p, "[boot]\nisa_debug_exit = true\nbogus = 1\n").unwrap();
    assert!(peek_isa_debug_exit(&p));
    std::fs::write(&p, "[boot]\nisa_debug_exit = \"yes\"\n").unwrap();
    assert!(!peek_isa_debug_exit(&p));
    std::fs::write(&p, "[boot\n").unwrap();
    assert!(!peek_isa_debug_exit(&p));
    assert!(!peek_isa_debug_exit(&dir.path().join("missing")));
}

#[test]
fn type_errors_in_arrays_of_tables_name_the_entry() {
    let text = "[workload]\npath = \"/bin/app\"\n[kbs]\nurl = \"http://k:8080\"\ninsecure_http = true\n\
                [[secrets]]\nresource = \"a/b/c\"\nfile = \"one\"\n[[secrets]]\nresource = \"a/b/d\"\nfile = \"two\"\nmode = \"x\"\n";
    let i = issues(text, None);
    assert_eq!(i.len(), 1, "{i:?}");
    assert_eq!(i[0].key, "secrets[1].mode");
    assert_eq!(i[0].line, Some(12));
}
