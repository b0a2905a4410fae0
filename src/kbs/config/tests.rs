use super::*;
use crate::config::{Config, ConfigError, FileLookup, Files, Issue, NoFiles, Sources};

// A development image: plain HTTP is allowed only where the sample TEE is
// the only one accepted.
const MINIMAL: &str = "[workload]\npath = \"/bin/app\"\n[tee]\naccept = [\"sample\"]\nallow_sample = true\n";
const CA_PEM: &str = include_str!("../../../crates/ztinit-kbs/testdata/ca.pem");

/// An image with one file in it.
struct OneFile(&'static str, &'static str);

impl Files for OneFile {
    fn read(&self, path: &str, limit: u64) -> FileLookup {
        let bytes: &[u8] = match path {
            "/bin/app" => b"\x7fELF",
            p if p == self.0 => self.1.as_bytes(),
            _ => return FileLookup::Missing,
        };
        FileLookup::Found(bytes[..bytes.len().min(usize::try_from(limit).unwrap())].to_vec())
    }
}

fn load_with(text: &str, cmdline: Option<&str>, files: &dyn Files) -> Result<Config, ConfigError> {
    Config::load(Sources { origin: "ztinit.toml", text: &format!("{MINIMAL}{text}"), cmdline, files })
}

fn load(text: &str) -> Config {
    load_with(text, None, &NoFiles).unwrap_or_else(|e| panic!("{:?}", e.issues()))
}

fn issues_with(text: &str, cmdline: Option<&str>, files: &dyn Files) -> Vec<Issue> {
    match load_with(text, cmdline, files) {
        Ok(_) => panic!("expected errors for:\n{text}"),
        Err(ConfigError::Invalid(i)) => i,
        Err(e) => panic!("unexpected error {e}"),
    }
}

fn issues(text: &str) -> Vec<Issue> {
    issues_with(text, None, &NoFiles)
}

/// The single issue of `text`, as (key, message).
fn one_issue(text: &str) -> (String, String) {
    let i = issues(text);
    assert_eq!(i.len(), 1, "{i:?}");
    (i[0].key.clone(), i[0].message.clone())
}

fn inline_ca() -> String {
    format!("ca_cert = \"\"\"\n{CA_PEM}\"\"\"\n")
}

#[test]
fn no_kbs_by_default() {
    let c = load("");
    assert!(!c.kbs.is_enabled());
    assert!(c.secrets.is_empty());
    assert_eq!(c.kbs.deadline_ms, 120_000);
}

#[test]
fn https_with_inline_ca() {
    let c = load(&format!("[kbs]\nurl = \"https://kbs.example:8080\"\n{}", inline_ca()));
    assert!(c.kbs.is_enabled());
    let server = c.kbs.server.unwrap();
    assert_eq!(server.url().to_string(), "https://kbs.example:8080");
    assert_eq!(*server.trust(), KbsTrust::Ca(Pem::Inline(CA_PEM.to_string())));
}

#[test]
fn https_with_a_pinned_cert_file_in_the_image() {
    let files = OneFile("/etc/ztinit/kbs.pem", CA_PEM);
    let text = "[kbs]\nurl = \"https://10.0.2.100:8443\"\npinned_cert_file = \"/etc/ztinit/kbs.pem\"\n";
    load_with(text, None, &files).unwrap();
    let i = issues_with(text, None, &OneFile("/elsewhere", CA_PEM));
    assert_eq!(i[0].key, "kbs.pinned_cert_file");
    assert!(i[0].message.contains("no such file"), "{}", i[0].message);
    let i = issues_with(text, None, &OneFile("/etc/ztinit/kbs.pem", "not a certificate"));
    assert!(i[0].message.contains("no PEM CERTIFICATE"), "{}", i[0].message);
    let (k, m) = one_issue("[kbs]\nurl = \"https://kbs\"\npinned_cert_file = \"etc/kbs.pem\"\n");
    assert_eq!(k, "kbs.pinned_cert_file");
    assert!(m.contains("absolute"), "{m}");
}

#[test]
fn plain_http_needs_insecure_http() {
    load("[kbs]\nurl = \"http://10.0.2.100:8080\"\ninsecure_http = true\n");
    let (k, m) = one_issue("[kbs]\nurl = \"http://10.0.2.100:8080\"\n");
    assert_eq!(k, "kbs.url");
    assert!(m.contains("insecure_http = true"), "{m}");
}

#[test]
fn insecure_http_must_agree_with_the_scheme() {
    let i = issues(&format!("[kbs]\nurl = \"https://kbs\"\ninsecure_http = true\n{}", inline_ca()));
    assert_eq!(i[0].key, "kbs.insecure_http");
    let (k, _) = one_issue(&format!("[kbs]\nurl = \"http://kbs\"\ninsecure_http = true\n{}", inline_ca()));
    assert_eq!(k, "kbs.ca_cert");
}

#[test]
fn https_needs_exactly_one_trust_anchor() {
    let (k, m) = one_issue("[kbs]\nurl = \"https://kbs\"\n");
    assert_eq!(k, "kbs");
    assert!(m.contains("exactly one of"), "{m}");
    let (k, m) = one_issue(&format!("[kbs]\nurl = \"https://kbs\"\n{}pinned_cert_file = \"/x.pem\"\n", inline_ca()));
    assert_eq!(k, "kbs.pinned_cert_file");
    assert!(m.contains("only one of"), "{m}");
    let (k, m) = one_issue("[kbs]\nurl = \"https://kbs\"\nca_cert = \"garbage\"\n");
    assert_eq!(k, "kbs.ca_cert");
    assert!(m.contains("no PEM"), "{m}");
}

#[test]
fn bad_urls() {
    for url in ["kbs.example", "ftp://kbs", "https://user@kbs", "https://kbs:0", "https://kbs/x?y", "https://kb s"] {
        let (k, m) = one_issue(&format!("[kbs]\nurl = \"{url}\"\n{}", inline_ca()));
        assert_eq!(k, "kbs.url", "{url}");
        assert!(m.contains("not a valid KBS url"), "{url}: {m}");
    }
}

#[test]
fn settings_without_a_url_are_refused() {
    let (k, m) = one_issue("[kbs]\ninsecure_http = true\n");
    assert_eq!(k, "kbs.insecure_http");
    assert!(m.contains("without kbs.url"));
    let (k, _) = one_issue(&format!("[kbs]\n{}", inline_ca()));
    assert_eq!(k, "kbs.ca_cert");
}

#[test]
fn ranges() {
    for (key, value) in [
        ("connect_timeout_ms", "0"),
        ("read_timeout_ms", "999999999"),
        ("retries", "101"),
        ("retry_backoff_ms", "60001"),
        ("deadline_ms", "10"),
        ("max_resource_bytes", "0"),
        ("max_resource_bytes", "67108865"),
    ] {
        let (k, m) = one_issue(&format!("[kbs]\n{key} = {value}\n"));
        assert_eq!(k, format!("kbs.{key}"));
        assert!(m.contains("out of range"), "{key}: {m}");
    }
    let (k, m) = one_issue("[kbs]\nretries = -1\n");
    assert_eq!(k, "kbs.retries");
    assert!(m.contains("invalid value"), "{m}");
}

#[test]
fn unknown_keys_are_reported() {
    let (k, m) = one_issue("[kbs]\nurl_typo = \"x\"\n");
    assert_eq!((k.as_str(), m.as_str()), ("kbs.url_typo", "unknown key"));
}

#[test]
fn timeouts_may_come_from_the_kernel_command_line() {
    let c = load_with(
        "[kbs]\nurl = \"http://10.0.2.100:8080\"\ninsecure_http = true\n",
        Some("console=ttyS0 ztinit.kbs.retries=2 ztinit.kbs.deadline_ms=5000 ztinit.kbs.connect_timeout_ms=300"),
        &NoFiles,
    )
    .unwrap();
    assert_eq!((c.kbs.retries, c.kbs.deadline_ms, c.kbs.connect_timeout_ms), (2, 5000, 300));
}

#[test]
fn security_settings_may_not_come_from_the_kernel_command_line() {
    for param in [
        "ztinit.kbs.url=http://evil:80",
        "ztinit.kbs.insecure_http=true",
        "ztinit.kbs.pinned_cert_file=/x",
        "ztinit.kbs.ca_cert=x",
        "ztinit.kbs.max_resource_bytes=5",
        "ztinit.secrets.resource=a/b/c",
    ] {
        let i = issues_with("", Some(param), &NoFiles);
        assert!(i.iter().any(|i| i.message.contains("may not be set on the kernel command line")), "{param}: {i:?}");
    }
}

#[test]
fn secrets_entries() {
    let c = load(
        "[kbs]\nurl = \"http://10.0.2.100:8080\"\ninsecure_http = true\n\
         [[secrets]]\nresource = \"default/key/api\"\nfile = \"api-token\"\n\
         [[secrets]]\nresource = \"default/cert/tls\"\nfile = \"tls.pem\"\nmode = 0o440\n",
    );
    assert_eq!(c.secrets.len(), 2);
    assert_eq!(c.secrets[0].mode, 0o400);
    assert_eq!(c.secrets[1].mode, 0o440);
    assert_eq!(c.secrets[1].resource.tag(), "tls");
}

#[test]
fn bad_secrets_entries() {
    let kbs = "[kbs]\nurl = \"http://10.0.2.100:8080\"\ninsecure_http = true\n";
    for (entry, key, needle) in [
        ("file = \"f\"\n", "secrets[0]", "missing field `resource`"),
        ("resource = \"a/b\"\nfile = \"f\"\n", "secrets[0].resource", "repo/type/tag"),
        ("resource = \"a/../c\"\nfile = \"f\"\n", "secrets[0].resource", "segment"),
        ("resource = \"a/b/c\"\n", "secrets[0]", "missing field `file`"),
        ("resource = \"a/b/c\"\nfile = \"../x\"\n", "secrets[0].file", "plain file name"),
        ("resource = \"a/b/c\"\nfile = \".hidden\"\n", "secrets[0].file", "plain file name"),
        ("resource = \"a/b/c\"\nfile = \"sub/x\"\n", "secrets[0].file", "plain file name"),
        ("resource = \"a/b/c\"\nfile = \"f\"\nmode = 0o644\n", "secrets[0].mode", "0o644"),
        ("resource = \"a/b/c\"\nfile = \"f\"\ncolour = 1\n", "secrets[0].colour", "unknown key"),
    ] {
        let (k, m) = one_issue(&format!("{kbs}[[secrets]]\n{entry}"));
        assert_eq!(k, key, "{entry}");
        assert!(m.contains(needle), "{entry}: {m}");
    }
}

#[test]
fn cross_section_rules() {
    let secret = |file: &str| SecretConfig { resource: "a/b/c".parse().unwrap(), file: file.into(), mode: 0o400 };
    let no_kbs = KbsConfig::default();
    assert_eq!(
        cross_check(&no_kbs, &[secret("x")]),
        vec![("kbs.url".to_string(), "required: [[secrets]] are fetched from the KBS".to_string())]
    );
    let url = "http://10.0.2.100:8080".parse().unwrap();
    let server = Some(KbsServer::new(url, KbsTrust::InsecureHttp).unwrap());
    let kbs = KbsConfig { server, ..KbsConfig::default() };
    assert!(cross_check(&kbs, &[secret("x"), secret("y")]).is_empty());
    let dup = cross_check(&kbs, &[secret("x"), secret("y"), secret("x")]);
    assert_eq!(dup.len(), 1);
    assert_eq!(dup[0].0, "secrets[2].file");
}
