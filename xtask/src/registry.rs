//! The image scenarios' registry: Debian's `docker-registry` (CNCF
//! distribution 2.8) on a loopback port, with its own config and storage
//! in the scenario's scratch directory.
//!
//! - `registry --listen 127.0.0.1:PORT --root DIR [--htpasswd USER:PASS]`
//!   writes `DIR/config.yml` (filesystem storage under DIR, no redirects,
//!   optional htpasswd basic auth) and becomes `docker-registry serve` (an
//!   e2e `[[service]]`: the harness waits for the port and stops the
//!   process group);
//! - `registry-tamper --root DIR (--digest sha256:HEX | --layer-of
//!   sha256:MANIFEST N) [--digest-out FILE]` replaces a stored blob with
//!   other bytes of the same size, as a hostile registry would serve them.

use std::io::Read;
use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail, ensure};
use serde_json::Value;

use crate::cli;
use crate::util;

const USAGE: &str = "usage: cargo xtask registry --listen 127.0.0.1:PORT --root DIR [--htpasswd USER:PASS]
Writes DIR/config.yml (storage under DIR) and runs `docker-registry serve` on it (plain HTTP).";

const TAMPER_USAGE: &str = "usage: cargo xtask registry-tamper --root DIR (--digest sha256:HEX | --layer-of sha256:MANIFEST N) [--digest-out FILE]
Replaces a blob in the registry's storage under DIR with other bytes of the same size
(every byte inverted). --layer-of: layer N (from 0) of that manifest (of an index: its linux/amd64 manifest).
--digest-out: the replaced blob's digest (sha256:HEX), one line.";

const PROGRAM: &str = "docker-registry";
/// bcrypt cost of the test credentials: the registry checks the hash on
/// every request, and at the default cost (12) each costs ~0.25 s.
const HTPASSWD_COST: u32 = 4;

pub fn cmd(args: &[String]) -> Result<()> {
    let (mut listen, mut root, mut htpasswd) = (None, None, None);
    let mut p = cli::Args::new(args, USAGE);
    while let Some(arg) = p.next()? {
        match arg {
            cli::Long("listen") => listen = Some(p.parse::<SocketAddr>("--listen")?),
            cli::Long("root") => root = Some(PathBuf::from(p.value()?)),
            cli::Long("htpasswd") => htpasswd = Some(p.string()?),
            cli::Short('h') | cli::Long("help") => return p.help(),
            other => {
                let e = other.unexpected();
                return Err(p.error(e));
            }
        }
    }
    let (Some(listen), Some(root)) = (listen, root) else {
        return Err(p.error("--listen and --root are required"));
    };
    ensure!(listen.ip().is_loopback(), "--listen {listen}: the test registry listens on loopback only");
    if !util::have_program(PROGRAM) {
        bail!("{PROGRAM} is not installed (apt-get install docker-registry)");
    }
    std::fs::create_dir_all(&root).with_context(|| format!("cannot create {}", root.display()))?;
    let root = root.canonicalize()?;
    let auth = match &htpasswd {
        Some(creds) => {
            let path = root.join("htpasswd");
            util::write_atomic(&path, htpasswd_line(creds)?.as_bytes())?;
            Some(path)
        }
        None => None,
    };
    let config = root.join("config.yml");
    util::write_atomic(&config, config_yaml(&root, listen, auth.as_deref(), &random_hex(16)?)?.as_bytes())?;
    println!(
        "xtask registry: serving {} on http://{listen}{} (config {})",
        root.display(),
        if auth.is_some() { " with basic auth" } else { "" },
        config.display()
    );
    let mut c = Command::new(PROGRAM);
    c.arg("serve").arg(&config);
    // REGISTRY_* variables override the config file: the host's must not.
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("REGISTRY_") {
            c.env_remove(k);
        }
    }
    // exec: the harness's process group and signals reach the registry itself.
    let e = c.exec();
    Err(e).with_context(|| format!("cannot exec {PROGRAM}"))
}

/// `USER:bcrypt-hash` for docker-registry's htpasswd auth.
fn htpasswd_line(creds: &str) -> Result<String> {
    let (user, pass) = creds.split_once(':').context("--htpasswd: expected USER:PASS")?;
    ensure!(
        !user.is_empty() && !pass.is_empty() && !user.contains(['\n', ' ']) && !pass.contains('\n'),
        "--htpasswd: USER and PASS must be non-empty, USER without spaces"
    );
    let hash = bcrypt::hash(pass, HTPASSWD_COST).context("bcrypt")?;
    Ok(format!("{user}:{hash}\n"))
}

/// The registry's config. Strings are JSON-quoted, which YAML reads as is.
fn config_yaml(root: &Path, listen: SocketAddr, htpasswd: Option<&Path>, secret: &str) -> Result<String> {
    let q = |s: &str| serde_json::to_string(s).unwrap_or_default();
    let root_s = root.to_str().context("the registry root is not UTF-8")?;
    let mut y = format!(
        "version: 0.1
log:
  level: info
  formatter: text
  accesslog:
    disabled: false
storage:
  filesystem:
    rootdirectory: {root}
  delete:
    enabled: true
  redirect:
    disable: true
  maintenance:
    uploadpurging:
      enabled: false
http:
  addr: {addr}
  secret: {secret}
health:
  storagedriver:
    enabled: false
",
        root = q(root_s),
        addr = q(&listen.to_string()),
        secret = q(secret),
    );
    if let Some(path) = htpasswd {
        let path = path.to_str().context("the htpasswd path is not UTF-8")?;
        y.push_str(&format!("auth:\n  htpasswd:\n    realm: {}\n    path: {}\n", q("ztinit-test-registry"), q(path)));
    }
    Ok(y)
}

fn random_hex(bytes: usize) -> Result<String> {
    let mut b = vec![0u8; bytes];
    std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut b)).context("cannot read /dev/urandom")?;
    Ok(hex::encode(b))
}

/// `registry-tamper`.
pub fn tamper_cmd(args: &[String]) -> Result<()> {
    let (mut root, mut digest, mut layer_of, mut digest_out) = (None, None, None, None);
    let mut p = cli::Args::new(args, TAMPER_USAGE);
    while let Some(arg) = p.next()? {
        match arg {
            cli::Long("root") => root = Some(PathBuf::from(p.value()?)),
            cli::Long("digest") => digest = Some(p.string()?),
            cli::Long("layer-of") => {
                let manifest = p.string()?;
                let n = match p.next()? {
                    Some(cli::Value(v)) => cli::string(v, TAMPER_USAGE)?,
                    _ => return Err(p.error("--layer-of takes a manifest digest and a layer number")),
                };
                let n: usize = n.parse().map_err(|_| p.error(format!("--layer-of: {n:?} is not a layer number")))?;
                layer_of = Some((manifest, n));
            }
            cli::Long("digest-out") => digest_out = Some(PathBuf::from(p.value()?)),
            cli::Short('h') | cli::Long("help") => return p.help(),
            other => {
                let e = other.unexpected();
                return Err(p.error(e));
            }
        }
    }
    let Some(root) = root else { return Err(p.error("--root is required")) };
    let target = match (digest, layer_of) {
        (Some(d), None) => hex_of(&d)?.to_string(),
        (None, Some((m, n))) => layer_digest(&root, hex_of(&m)?, n)?,
        _ => return Err(p.error("give --digest or --layer-of")),
    };
    let path = blob_path(&root, &target);
    let size = tamper(&path)?;
    println!(
        "registry-tamper: sha256:{target} ({size} bytes) now holds other bytes of the same size ({})",
        path.display()
    );
    if let Some(out) = digest_out {
        util::write_atomic(&out, format!("sha256:{target}\n").as_bytes())?;
    }
    Ok(())
}

fn hex_of(digest: &str) -> Result<&str> {
    let hex = digest.strip_prefix("sha256:").unwrap_or(digest);
    ensure!(
        hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)),
        "{digest:?} is not a sha256 digest"
    );
    Ok(hex)
}

/// Where distribution's filesystem driver keeps a blob.
pub fn blob_path(root: &Path, hex: &str) -> PathBuf {
    root.join("docker/registry/v2/blobs/sha256").join(&hex[..2]).join(hex).join("data")
}

/// The digest (hex) of layer `n` of a stored manifest; of an index, of its
/// linux/amd64 manifest.
fn layer_digest(root: &Path, manifest_hex: &str, n: usize) -> Result<String> {
    let read = |hex: &str| -> Result<Value> {
        let path = blob_path(root, hex);
        let bytes = std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
        serde_json::from_slice(&bytes).with_context(|| format!("{} is not JSON", path.display()))
    };
    let mut m = read(manifest_hex)?;
    if let Some(list) = m.get("manifests").and_then(Value::as_array) {
        let amd64 = list
            .iter()
            .find(|d| d["platform"]["os"] == "linux" && d["platform"]["architecture"] == "amd64")
            .context("the index has no linux/amd64 manifest")?;
        let d = amd64["digest"].as_str().context("manifest descriptor without a digest")?;
        m = read(hex_of(d)?)?;
    }
    let layers = m.get("layers").and_then(Value::as_array).context("the manifest has no layers")?;
    let layer = layers.get(n).with_context(|| format!("the manifest has {} layers, no layer {n}", layers.len()))?;
    let d = layer["digest"].as_str().context("layer descriptor without a digest")?;
    Ok(hex_of(d)?.to_string())
}

/// Inverts every byte of the file in place (through a rename); its size.
fn tamper(path: &Path) -> Result<usize> {
    let mut bytes = std::fs::read(path).with_context(|| format!("cannot read blob {}", path.display()))?;
    ensure!(!bytes.is_empty(), "blob {} is empty: nothing to change", path.display());
    for b in &mut bytes {
        *b = !*b;
    }
    util::write_atomic(path, &bytes)?;
    Ok(bytes.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_has_storage_address_and_optional_auth() {
        let root = Path::new("/s/registry");
        let y = config_yaml(root, "127.0.0.1:5000".parse().unwrap(), None, "ab").unwrap();
        for want in [
            "rootdirectory: \"/s/registry\"",
            "addr: \"127.0.0.1:5000\"",
            "redirect:\n    disable: true",
            "secret: \"ab\"",
        ] {
            assert!(y.contains(want), "{want} not in\n{y}");
        }
        assert!(!y.contains("auth:"));
        let y = config_yaml(root, "127.0.0.1:5000".parse().unwrap(), Some(Path::new("/s/registry/htpasswd")), "ab")
            .unwrap();
        assert!(y.ends_with(
            "auth:\n  htpasswd:\n    realm: \"ztinit-test-registry\"\n    path: \"/s/registry/htpasswd\"\n"
        ));
    }

    #[test]
    fn htpasswd_lines_verify_with_bcrypt() {
        let line = htpasswd_line("user:s3cret").unwrap();
        let (user, hash) = line.trim_end().split_once(':').unwrap();
        assert_eq!(user, "user");
        assert!(hash.starts_with("$2"), "{hash}");
        assert!(bcrypt::verify("s3cret", hash).unwrap());
        assert!(!bcrypt::verify("other", hash).unwrap());
        for bad in ["user", ":p", "u:", "a b:p"] {
            assert!(htpasswd_line(bad).is_err(), "{bad}");
        }
    }

    /// The real registry with the config written here: anonymous, then
    /// with basic auth (401 without credentials, 200 with them).
    #[test]
    fn docker_registry_serves_with_this_config() {
        if !util::have_program(PROGRAM) {
            eprintln!("SKIP: {PROGRAM} is not installed (apt-get install docker-registry)");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        for auth in [false, true] {
            let root = dir.path().join(format!("r{auth}"));
            std::fs::create_dir_all(&root).unwrap();
            let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
            let htpasswd = auth.then(|| {
                let p = root.join("htpasswd");
                std::fs::write(&p, htpasswd_line("tester:s3cret").unwrap()).unwrap();
                p
            });
            let config = root.join("config.yml");
            let listen = SocketAddr::from(([127, 0, 0, 1], port));
            std::fs::write(&config, config_yaml(&root, listen, htpasswd.as_deref(), "ab").unwrap()).unwrap();
            let mut child = Command::new(PROGRAM)
                .arg("serve")
                .arg(&config)
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .unwrap();
            let get = |creds: Option<&str>| -> Option<String> {
                use std::io::Write;
                let mut s = std::net::TcpStream::connect(listen).ok()?;
                let mut req = format!("GET /v2/ HTTP/1.1\r\nHost: {listen}\r\nConnection: close\r\n");
                if let Some(c) = creds {
                    use base64::Engine;
                    let b = base64::engine::general_purpose::STANDARD.encode(c);
                    req.push_str(&format!("Authorization: Basic {b}\r\n"));
                }
                s.write_all(format!("{req}\r\n").as_bytes()).ok()?;
                let mut out = String::new();
                s.read_to_string(&mut out).ok()?;
                Some(out)
            };
            let mut first = None;
            for _ in 0..100 {
                first = get(None);
                if first.is_some() {
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
            let first = first.expect("the registry did not start");
            if auth {
                assert!(first.starts_with("HTTP/1.1 401"), "{first}");
                assert!(first.contains("Basic realm=\"ztinit-test-registry\""), "{first}");
                assert!(get(Some("tester:s3cret")).unwrap().starts_with("HTTP/1.1 200"));
                assert!(get(Some("tester:wrong")).unwrap().starts_with("HTTP/1.1 401"));
            } else {
                assert!(first.starts_with("HTTP/1.1 200"), "{first}");
            }
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }

    #[test]
    fn tamper_finds_layers_and_keeps_the_size() {
        let dir = tempfile::tempdir().unwrap();
        let store = |bytes: &[u8]| -> String {
            let hex = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(bytes));
            let p = blob_path(dir.path(), &hex);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(&p, bytes).unwrap();
            hex
        };
        let layer = store(b"layer bytes");
        let manifest = store(
            format!(r#"{{"layers":[{{"digest":"sha256:{}"}},{{"digest":"sha256:{layer}"}}]}}"#, "0".repeat(64))
                .as_bytes(),
        );
        let index = store(
            format!(
                r#"{{"manifests":[{{"digest":"sha256:{}","platform":{{"os":"linux","architecture":"arm64"}}}},{{"digest":"sha256:{manifest}","platform":{{"os":"linux","architecture":"amd64"}}}}]}}"#,
                "1".repeat(64)
            )
            .as_bytes(),
        );
        assert_eq!(layer_digest(dir.path(), &manifest, 1).unwrap(), layer);
        assert_eq!(layer_digest(dir.path(), &index, 1).unwrap(), layer);
        assert!(layer_digest(dir.path(), &manifest, 2).unwrap_err().to_string().contains("no layer 2"));
        let out = dir.path().join("d");
        let root = dir.path().to_str().unwrap();
        let args: Vec<String> = ["--root", root, "--layer-of", &format!("sha256:{index}"), "1", "--digest-out"]
            .iter()
            .map(|s| s.to_string())
            .chain([out.display().to_string()])
            .collect();
        tamper_cmd(&args).unwrap();
        let now = std::fs::read(blob_path(dir.path(), &layer)).unwrap();
        assert_eq!(now.len(), b"layer bytes".len());
        assert_ne!(now, b"layer bytes");
        assert_eq!(std::fs::read_to_string(out).unwrap(), format!("sha256:{layer}\n"));
        assert!(hex_of("sha256:ABC").is_err());
        assert!(tamper_cmd(&["--root".into(), root.into()]).is_err());
    }
}
