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

// ------------------------------------------------ initdata: the trust-anchor rule

const CA_PEM: &str = include_str!("../../crates/ztinit-kbs/testdata/ca.pem");

/// A production-shaped baked file: SNP/TDX, a pinned KBS, initdata opened
/// for `opened` keys.
fn baked(opened: &[&str], kbs_extra: &str) -> String {
    let keys = opened.iter().map(|k| format!("{k:?}")).collect::<Vec<_>>().join(", ");
    format!(
        "[workload]\npath = \"/bin/app\"\n[tee]\naccept = [\"snp\", \"tdx\"]\ninitdata_keys = [{keys}]\n\
         [kbs]\nurl = \"https://kbs.example:8443\"\n{kbs_extra}"
    )
}

fn pinned() -> String {
    format!("pinned_cert = '''\n{CA_PEM}'''\n")
}

/// Applies `overlay` (the `"ztinit.toml"` entry) as the boot does.
fn with_overlay(baked_text: &str, overlay: &str) -> Result<(Config, Vec<String>), Vec<String>> {
    let src = || Sources { origin: "ztinit.toml", text: baked_text, cmdline: None, files: &NoFiles };
    let base = Config::load(src()).map_err(|e| e.issues())?;
    let mut table = parse_table("ztinit.toml", baked_text).unwrap();
    let keys = overlay::apply(&mut table, overlay.parse().unwrap(), &base)
        .map_err(|i| i.iter().map(ToString::to_string).collect::<Vec<_>>())?;
    let c = Config::from_table_with_initdata(src(), table, &keys).map_err(|e| e.issues())?;
    Ok((c, keys))
}

#[test]
fn initdata_cannot_choose_the_kbs_certificate_or_its_transport() {
    // Finding 1: a host-chosen KBS and the certificate that authenticates it.
    let text = baked(&["kbs.url"], &pinned());
    for (overlay, key) in [
        ("[kbs]\npinned_cert = \"-----BEGIN CERTIFICATE-----\"\n", "kbs.pinned_cert"),
        ("[kbs]\npinned_cert_file = \"/dev/vdc\"\n", "kbs.pinned_cert_file"),
        ("[kbs]\nca_cert = \"x\"\n", "kbs.ca_cert"),
        ("[kbs]\nca_cert_file = \"/etc/ssl/ca.pem\"\n", "kbs.ca_cert_file"),
        ("[kbs]\ninsecure_http = true\n", "kbs.insecure_http"),
        ("[kbs]\nmax_resource_bytes = 67108864\n", "kbs.max_resource_bytes"),
        ("[[secrets]]\nresource = \"a/b/c\"\nfile = \"tls.key\"\n", "secrets"),
        ("[workload]\nargs = [\"--insecure\"]\n", "workload.args"),
        ("[tee]\nallow_debug = true\n", "tee.allow_debug"),
        ("[sandbox]\nseccomp = \"none\"\n", "sandbox.seccomp"),
    ] {
        let err = with_overlay(&text, overlay).unwrap_err();
        assert_eq!(err[0], format!("initdata: {key} is baked-only"), "{overlay}");
    }
    // Both at once, as the hostile document does: every key is named.
    let err = with_overlay(&text, "[kbs]\nurl = \"https://proxy:1\"\npinned_cert = \"x\"\n").unwrap_err();
    assert_eq!(err, ["initdata: kbs.pinned_cert is baked-only"]);
}

#[test]
fn initdata_cannot_choose_gpu_programs_roots_or_checks() {
    // Finding 3: the gpu stage runs before the KBS sees the initdata.
    let text = baked(&[], &pinned());
    for (overlay, key) in [
        ("[gpu]\npersistenced = \"/x\"\n", "gpu.persistenced"),
        ("[gpu]\nhelper = \"/x\"\n", "gpu.helper"),
        ("[gpu]\nhelper_read_write = [\"/\"]\n", "gpu.helper_read_write"),
        ("[gpu]\nnvml_library = \"/dev/vdc\"\n", "gpu.nvml_library"),
        ("[gpu]\ndevice_root = \"/dev/vdc\"\n", "gpu.device_root"),
        ("[gpu]\nverify_rim_signatures = false\n", "gpu.verify_rim_signatures"),
        ("[gpu]\nmeasurements = { \"10\" = [\"00\"] }\n", "gpu.measurements"),
    ] {
        let err = with_overlay(&text, overlay).unwrap_err();
        assert_eq!(err[0], format!("initdata: {key} is baked-only"), "{overlay}");
    }
}

#[test]
fn initdata_sets_only_keys_the_baked_file_opens() {
    let text = baked(&["kbs.url", "kbs.deadline_ms"], &pinned());
    let (c, keys) = with_overlay(&text, "[kbs]\nurl = \"https://kbs2.example:8443\"\ndeadline_ms = 9000\n").unwrap();
    assert_eq!(keys, ["kbs.deadline_ms", "kbs.url"]);
    let server = c.kbs.server.as_ref().unwrap();
    assert_eq!(server.url().to_string(), "https://kbs2.example:8443");
    assert_eq!(c.kbs.deadline_ms, 9000);
    let pin = crate::kbs::KbsTrust::Pinned(crate::kbs::Pem::Inline(CA_PEM.to_string()));
    assert_eq!(*server.trust(), pin, "the baked pin is kept");

    let err = with_overlay(&text, "[kbs]\nretries = 1\n").unwrap_err();
    assert_eq!(err, ["initdata: kbs.retries is not opened to initdata by the baked tee.initdata_keys"]);
    let err = with_overlay(&text, "[kbs]\nurll = \"https://x\"\n").unwrap_err();
    assert_eq!(err, ["initdata: kbs.urll is not a configuration key"]);
    // A value initdata sets is validated like any other, and blamed on initdata.
    let err = with_overlay(&text, "[kbs]\ndeadline_ms = 5\n").unwrap_err();
    assert_eq!(err, ["initdata: kbs.deadline_ms: 5 is out of range (1000..=3600000)"]);
}

#[test]
fn initdata_url_needs_https_and_a_baked_trust_anchor() {
    let text = baked(&["kbs.url"], &pinned());
    let err = with_overlay(&text, "[kbs]\nurl = \"http://proxy:8080\"\n").unwrap_err();
    assert_eq!(err, ["initdata: kbs.url \"http://proxy:8080\" from initdata must be https://"]);
    // A development image on plain HTTP has no anchor for a host-chosen url.
    let dev = "[workload]\npath = \"/bin/app\"\n[tee]\naccept = [\"sample\"]\nallow_sample = true\n\
               initdata_keys = [\"kbs.url\"]\n[kbs]\nurl = \"http://10.0.2.100:8080\"\ninsecure_http = true\n";
    let err = with_overlay(dev, "[kbs]\nurl = \"https://proxy:8443\"\n").unwrap_err();
    assert!(err[0].starts_with("initdata: kbs.url may come from initdata only when the baked [kbs] pins"), "{err:?}");
}

#[test]
fn the_old_section_opening_explains_what_it_no_longer_grants() {
    let text = "[workload]\npath = \"/bin/app\"\n[tee]\ninitdata_sections = [\"kbs\", \"gpu\", \"secrets\"]\n";
    let i = issues(text, None);
    assert_eq!(i[0].key, "tee.initdata_sections");
    for lost in ["kbs.pinned_cert_file", "kbs.insecure_http", "gpu.persistenced", "gpu.device_root", "secrets"] {
        assert!(i[0].message.contains(lost), "{lost}: {}", i[0].message);
    }
    let still = i[0].message.split("may still set").nth(1).unwrap();
    assert!(still.contains("kbs.url") && !still.contains("pinned"), "{still}");
    assert!(!i[0].message.split("may still set").next().unwrap().contains("kbs.url,"), "{}", i[0].message);
}

#[test]
fn schema_keys_come_from_the_section_types() {
    assert!(section_keys("kbs").unwrap().contains(&"pinned_cert_file"));
    assert!(section_keys("tee").unwrap().contains(&"initdata_keys"));
    assert_eq!(section_keys("secrets"), None, "an array is one value");
    assert!(is_known_key("gpu.measurements.10") && is_known_key("secrets") && !is_known_key("kbs.nope"));
    for k in overlay::INITDATA_KEYS {
        assert!(is_known_key(k.path), "{} is not a key of the schema", k.path);
    }
}

#[test]
fn kbs_without_tee_still_binds_initdata() {
    // Finding 5: with [kbs] and no [tee], the default policy (initdata
    // "optional", HOSTDATA/MRCONFIGID checked) governs the config stage.
    let c = load(&format!("{MINIMAL}[kbs]\nurl = \"https://k:1\"\n{}", pinned()), None).unwrap();
    assert!(c.tee.is_none());
    let tee = c.initdata_policy().expect("initdata must be looked for");
    assert_eq!(tee.initdata, crate::tee::InitdataMode::Optional);
    assert!(load(MINIMAL, None).unwrap().initdata_policy().is_none());
}

#[test]
fn plain_http_is_for_sample_only_images() {
    // Finding 2: over plain HTTP the host answers for the KBS.
    let kbs = "[kbs]\nurl = \"http://10.0.2.100:8080\"\ninsecure_http = true\n";
    for tee in ["", "[tee]\naccept = [\"snp\"]\n", "[tee]\naccept = [\"snp\", \"sample\"]\nallow_sample = true\n"] {
        let i = issues(&format!("{MINIMAL}{tee}{kbs}"), None);
        assert_eq!(i[0].key, "kbs.insecure_http", "{tee}");
        assert!(i[0].message.contains("plain HTTP gives no authenticity"), "{}", i[0].message);
    }
    assert!(load(&format!("{MINIMAL}[tee]\naccept = [\"sample\"]\nallow_sample = true\n{kbs}"), None).is_ok());
}

#[test]
fn referenced_files_must_be_regular_files_of_the_image() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let files = RootFiles::new(root);
    let check = |text: &str| match Config::load(Sources { origin: "c.toml", text, cmdline: None, files: &files }) {
        Ok(_) => String::new(),
        Err(e) => e.issues().join("\n"),
    };
    std::fs::create_dir_all(root.join("bin")).unwrap();
    std::fs::create_dir_all(root.join("etc")).unwrap();
    std::fs::create_dir_all(root.join("dev")).unwrap();
    std::fs::write(root.join("bin/app"), b"\x7fELF").unwrap();
    std::fs::write(root.join("dev/vdc"), CA_PEM).unwrap();
    std::fs::write(root.join("etc/kbs.pem"), CA_PEM).unwrap();
    let cfg = |path: &str| {
        format!("[workload]\npath = \"/bin/app\"\n[kbs]\nurl = \"https://k:1\"\npinned_cert_file = \"{path}\"\n")
    };
    assert_eq!(check(&cfg("/etc/kbs.pem")), "");
    // Named directly: refused by form, with or without --root.
    for path in ["/dev/vdc", "/sys/x", "/proc/1/mem", "/run/k.pem", "/tmp/k.pem"] {
        assert!(check(&cfg(path)).contains("is not part of the image"), "{path}");
        let no_root = Config::load(Sources { origin: "c.toml", text: &cfg(path), cmdline: None, files: &NoFiles });
        assert!(no_root.is_err(), "{path}");
    }
    // Reached through a symlink in the image: refused once resolved.
    std::os::unix::fs::symlink("/dev/vdc", root.join("etc/abs.pem")).unwrap();
    std::os::unix::fs::symlink("../../../../dev/vdc", root.join("etc/rel.pem")).unwrap();
    for link in ["/etc/abs.pem", "/etc/rel.pem"] {
        let out = check(&cfg(link));
        assert!(out.contains("resolves to /dev/vdc, which is not part of the image"), "{link}: {out}");
    }
    // A symlink cannot leave the root: `..` stops at it.
    std::os::unix::fs::symlink("../../../../../etc/hostname", root.join("etc/up.pem")).unwrap();
    assert!(check(&cfg("/etc/up.pem")).contains("no such file in the image"));
    // Only regular files.
    std::fs::create_dir(root.join("etc/dir.pem")).unwrap();
    assert!(check(&cfg("/etc/dir.pem")).contains("not a regular file"));
    rustix::fs::mknodat(
        rustix::fs::CWD,
        root.join("etc/fifo.pem"),
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_raw_mode(0o600),
        0,
    )
    .unwrap();
    assert!(check(&cfg("/etc/fifo.pem")).contains("not a regular file"));
    // The boot's own readers use the same rule.
    assert!(read_image_file(root, "/etc/abs.pem", 1 << 20).is_err());
    assert_eq!(read_image_file(root, "/etc/kbs.pem", 1 << 20).unwrap(), CA_PEM.as_bytes());
}

#[test]
fn initdata_cannot_set_a_volume_or_its_sector_size() {
    // `[[volumes]] sector_size` decides how the ciphertext is read: baked only.
    let text = baked(&[], &pinned());
    let overlay = "[[volumes]]\nname = \"model\"\nsector_size = 512\n";
    let err = with_overlay(&text, overlay).unwrap_err();
    assert!(err[0].starts_with("initdata: volumes") && err[0].ends_with("is baked-only"), "{err:?}");
}

const PUBLISHER_KEY: &str = "-----BEGIN PUBLIC KEY-----
MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEFCBOZ1HSpJjbafIsu1YOSOxMJ8BE
0n3D+8JJ2zkXPn4dD4YoZ9nUwbNdO6DtWgNsZouZbXdsm+obTtlPFdXf9A==
-----END PUBLIC KEY-----
";
const DIGEST: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

fn image_config(image: &str) -> String {
    format!("[image]\n{image}")
}

#[test]
fn an_image_workload_is_checked() {
    let signed = format!(
        "reference = \"10.0.2.101:5000/app:1\"\ninsecure_http = true\nsignature_keys = ['''{PUBLISHER_KEY}''']\n"
    );
    let c = load(&image_config(&signed), None).unwrap_or_else(|e| panic!("{:?}", e.issues()));
    assert!(c.image.is_enabled());
    assert_eq!(c.image.policy(), crate::image::protocol::SignaturePolicy::Signed);
    let pinned = format!("reference = \"10.0.2.101:5000/app@{DIGEST}\"\ninsecure_http = true\n");
    let c = load(&image_config(&pinned), None).unwrap_or_else(|e| panic!("{:?}", e.issues()));
    assert_eq!(c.image.policy(), crate::image::protocol::SignaturePolicy::Digest);

    for (image, key, needle) in [
        ("reference = \"10.0.2.101:5000/app:1\"\ninsecure_http = true\n", "image.reference", "pinned @sha256: digest"),
        ("reference = \"10.0.2.101:5000/app:1\"\n", "image", "exactly one of ca_cert"),
        (
            "reference = \"10.0.2.101:5000/app:1\"\ninsecure_http = true\nsignature_policy = \"signed\"\n",
            "image.signature_policy",
            "needs signature_keys",
        ),
        (
            "reference = \"10.0.2.101:5000/app:1\"\ninsecure_http = true\nsignature_keys = [\"-----BEGIN CERTIFICATE-----\\nAA==\\n-----END CERTIFICATE-----\\n\"]\n",
            "image.signature_keys[0]",
            "expected \"PUBLIC KEY\"",
        ),
        (
            &format!("reference = \"r.example/app@{DIGEST}\"\ninsecure_http = true\nmax_unpacked_mib = 0\n"),
            "image.max_unpacked_mib",
            "out of range",
        ),
        (
            &format!("reference = \"r.example/app@{DIGEST}\"\ninsecure_http = true\nuser = \"root;x\"\n"),
            "image.user",
            "is not uid[:gid]",
        ),
        (
            &format!(
                "reference = \"r.example/app@{DIGEST}\"\ninsecure_http = true\ndecryption_keys = [\"default/image/key\"]\n"
            ),
            "image",
            "need [kbs]",
        ),
    ] {
        let i = issues(&image_config(image), None);
        assert!(i.iter().any(|i| i.key == key && i.message.contains(needle)), "{image}: {i:?}");
    }
    // The image names the program: [workload] path would be a second one.
    let both = format!("{MINIMAL}{}", image_config(&pinned));
    let i = issues(&both, None);
    assert_eq!(i[0].key, "workload.path", "{i:?}");
    assert!(i[0].message.contains("must be left out with [image]"), "{i:?}");
}

#[test]
fn initdata_may_choose_the_image_only_under_a_baked_signature_policy() {
    let opened = "[tee]\naccept = [\"snp\", \"tdx\"]\ninitdata_keys = [\"image.reference\"]\n";
    let signed = format!(
        "{opened}[image]\nreference = \"10.0.2.101:5000/app:1\"\ninsecure_http = true\nsignature_keys = ['''{PUBLISHER_KEY}''']\n"
    );
    let (c, keys) = with_overlay(&signed, "[image]\nreference = \"10.0.2.101:5000/other:2\"\n").unwrap();
    assert_eq!(keys, ["image.reference"]);
    assert_eq!(c.image.reference.as_deref(), Some("10.0.2.101:5000/other:2"));
    assert!(c.image.verifies_any_reference());

    // A pinned digest vouches for one image only: initdata may not swap it.
    let pinned = format!("{opened}[image]\nreference = \"10.0.2.101:5000/app@{DIGEST}\"\ninsecure_http = true\n");
    let err = with_overlay(&pinned, "[image]\nreference = \"10.0.2.101:5000/evil:1\"\n").unwrap_err();
    assert!(
        err[0].starts_with(
            "initdata: image.reference may come from initdata only when the baked [image] has signature_policy"
        ),
        "{err:?}"
    );
    // Nor may it bring keys, a policy, trust or the KBS resources of keys.
    for (overlay, key) in [
        ("[image]\nsignature_keys = [\"x\"]\n", "image.signature_keys"),
        ("[image]\nsignature_policy = \"digest\"\n", "image.signature_policy"),
        ("[image]\ninsecure_http = true\n", "image.insecure_http"),
        ("[image]\ndecryption_keys = [\"a/b/c\"]\n", "image.decryption_keys"),
        ("[image]\nhelper = \"/x\"\n", "image.helper"),
        ("[image]\nuser = \"0\"\n", "image.user"),
        ("[image]\nentrypoint = [\"/bin/sh\"]\n", "image.entrypoint"),
    ] {
        let err = with_overlay(&signed, overlay).unwrap_err();
        assert_eq!(err[0], format!("initdata: {key} is baked-only"), "{overlay}");
    }
}

#[test]
fn unknown_keys_below_a_section_are_refused_with_their_path() {
    let text = format!("{MINIMAL}[sandbox.rlimits]\nnofile = 10\nno_file = 20\n");
    let i = issues(&text, None);
    assert_eq!(i.len(), 1, "{i:?}");
    assert_eq!(i[0].to_string(), "ztinit.toml:5: sandbox.rlimits.no_file: unknown key");
}

#[test]
fn unknown_keys_of_array_entries_are_all_reported_and_the_rest_still_checked() {
    let text = format!("{MINIMAL}[[secrets]]\nresource = \"a/b/c\"\nfile = \"f\"\ncolour = 1\nshade = 2\n");
    let keys: Vec<String> = issues(&text, None).iter().map(|i| i.key.clone()).collect();
    assert_eq!(keys, ["secrets[0].colour", "secrets[0].shade"]);
}

/// (network address, KBS host:port, workload path) as `first_ready` saw them.
type FirstSeen = (String, String, String);

/// What `first_ready` is handed, if it is called, and the final result.
fn first_sections(text: &str, cmdline: Option<&str>) -> (Option<FirstSeen>, Result<Config, ConfigError>) {
    let mut seen = None;
    let table = parse_table("ztinit.toml", text).unwrap();
    let sources = Sources { origin: "ztinit.toml", text, cmdline, files: &NoFiles };
    let result = Config::from_table_then(sources, table, &mut |first| {
        assert!(seen.is_none(), "called once");
        let address = first.network.address().map(|(a, p)| format!("{a}/{p}")).unwrap_or_default();
        let url = first.kbs.server.as_ref().map(|s| format!("{}:{}", s.url().host, s.url().port)).unwrap_or_default();
        seen = Some((address, url, first.workload.path.clone()));
    });
    (seen, result)
}

const FIRST: &str = "[workload]\npath = \"/bin/app\"\n\n[network]\nmode = \"static\"\ninterface = \"eth0\"\naddress = \"10.0.2.15/24\"\n\n[tee]\naccept = [\"sample\"]\nallow_sample = true\n\n[kbs]\nurl = \"http://10.0.2.100:8080\"\ninsecure_http = true\n";

#[test]
fn the_first_sections_are_handed_on_before_the_rest_is_checked() {
    let (seen, result) = first_sections(FIRST, Some("ztinit.kbs.retries=2"));
    let (address, url, workload) = seen.expect("called");
    assert_eq!((address.as_str(), url.as_str()), ("10.0.2.15/24", "10.0.2.100:8080"));
    assert_eq!(workload, "", "the other sections come after");
    assert_eq!(result.unwrap().kbs.retries, 2);

    // A later section's problem still fails the whole.
    let (seen, result) = first_sections(&FIRST.replace("path = \"/bin/app\"", "path = 5"), None);
    assert!(seen.is_some());
    let Err(ConfigError::Invalid(issues)) = result else { panic!("expected issues") };
    assert_eq!(issues[0].key, "workload.path");
}

#[test]
fn nothing_is_handed_on_when_a_first_section_or_the_command_line_is_refused() {
    for (text, cmdline, key) in [
        (FIRST.replace("10.0.2.15/24", "10.0.2.15/99"), None, "network.address"),
        (FIRST.replace("insecure_http = true", "insecure_http = \"yes\""), None, "kbs.insecure_http"),
        (FIRST.replace("allow_sample = true", "allow_sample = true\nbogus = 1"), None, "tee.bogus"),
        (FIRST.to_string(), Some("ztinit.kbs.url=http://10.0.2.3"), "ztinit.kbs.url"),
    ] {
        let (seen, result) = first_sections(&text, cmdline);
        assert!(seen.is_none(), "{key}");
        let Err(ConfigError::Invalid(issues)) = result else { panic!("{key}: expected issues") };
        assert!(issues.iter().any(|i| i.key == key), "{key}: {issues:?}");
    }
}
