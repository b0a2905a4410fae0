//! `cargo xtask image-push`: pushes an OCI layout (`xtask oci-image`) to
//! the test registry with Debian's skopeo, the reference implementation of
//! the ocicrypt JWE layer encryption the guest decrypts (`--encryption-key
//! jwe:`, OCI manifests only), reads the pushed manifest back, checks its
//! digest, signs it, and writes the `[image]` config snippet a scenario
//! bakes in (`config_append`).
//!
//! Signing: Debian 12's skopeo 1.9.3 has sigstore signing compiled out
//! ("Debian-local change: sigstore disabled"), so the signature attachment
//! (tag `sha256-HEX.sig`, as containers/image and cosign write it) is made
//! by `xtask cosign-sign` and pushed by skopeo with `--preserve-digests`.
//! The `registries.d` file with `use-sigstore-attachments: true` is still
//! written, for a skopeo that signs itself.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use base64::Engine;
use sha2::{Digest, Sha256};

use crate::cli;
use crate::oci_image::MEDIA_INDEX;
use crate::util;

const USAGE: &str = "usage: cargo xtask image-push --layout DIR --registry 127.0.0.1:PORT --repo REPO --tag TAG
    [--identity GUEST_REGISTRY/REPO:TAG] [--sign-key DIR] [--encrypt-key PUB.pem] [--encrypt-layer N]...
    [--creds USER:PASS] [--snippet-out F] [--pin-digest] [--trust-key PUB.pem]... [--decryption-resource RES]
    [--credentials-resource RES] [--layer-url-args] [--digest-out F] [--work DIR]
Pushes the layout with skopeo (plain HTTP, OCI manifests; an index with all its images).
--identity: the reference the guest uses (default REGISTRY/REPO:TAG), signed as the identity.
--sign-key: a sigstore signature of the pushed digest from DIR/cosign.key, DIR/cosign.pass
  (`xtask cosign-key --out DIR`), made by `xtask cosign-sign` and pushed as the sha256-HEX.sig attachment.
--encrypt-key: an EC P-256 public key PEM (`xtask cosign-key --out D --ec-pair NAME`: D/NAME.pub):
  every layer (or each --encrypt-layer) JWE-encrypted by skopeo.
--snippet-out: an [image] config snippet (reference, insecure_http, signature_keys, decryption_keys);
  --pin-digest appends @sha256:DIGEST to the reference; signature_keys: each --trust-key, or else the
  --sign-key's DIR/key.pub; --decryption-resource: the KBS resource of the private key (default
  default/image/key when encrypting); --credentials-resource: the KBS resource of the registry credentials;
  --layer-url-args: the snippet's args are the URL of the pushed image's largest layer blob as the guest
  reaches it (http://IDENTITY-REGISTRY/v2/REPO/blobs/DIGEST), for `testkit net-fetch` (the image bench).
--digest-out: the pushed manifest's (or index's) digest, sha256:HEX, one line.
--work: where the registries.d, policy and skopeo's temporary files go (default DIR.push beside the layout).";

/// What `xtask cosign-key --out DIR` writes.
const SIGN_KEY_FILES: [&str; 3] = ["cosign.key", "cosign.pass", "key.pub"];

#[derive(Debug, Default)]
struct Push {
    layout: PathBuf,
    registry: String,
    repo: String,
    tag: String,
    identity: Option<String>,
    sign_key: Option<PathBuf>,
    trust_keys: Vec<PathBuf>,
    encrypt_key: Option<PathBuf>,
    encrypt_layers: Vec<i64>,
    creds: Option<String>,
    snippet_out: Option<PathBuf>,
    pin_digest: bool,
    decryption_resource: Option<String>,
    credentials_resource: Option<String>,
    layer_url_args: bool,
    digest_out: Option<PathBuf>,
    work: Option<PathBuf>,
}

pub fn cmd(args: &[String]) -> Result<()> {
    let mut o = Push::default();
    let (mut layout, mut registry, mut repo, mut tag) = (None, None, None, None);
    let mut p = cli::Args::new(args, USAGE);
    while let Some(arg) = p.next()? {
        match arg {
            cli::Long("layout") => layout = Some(PathBuf::from(p.value()?)),
            cli::Long("registry") => registry = Some(p.string()?),
            cli::Long("repo") => repo = Some(p.string()?),
            cli::Long("tag") => tag = Some(p.string()?),
            cli::Long("identity") => o.identity = Some(p.string()?),
            cli::Long("sign-key") => o.sign_key = Some(PathBuf::from(p.value()?)),
            cli::Long("trust-key") => o.trust_keys.push(PathBuf::from(p.value()?)),
            cli::Long("encrypt-key") => o.encrypt_key = Some(PathBuf::from(p.value()?)),
            cli::Long("encrypt-layer") => o.encrypt_layers.push(p.parse("--encrypt-layer")?),
            cli::Long("creds") => o.creds = Some(p.string()?),
            cli::Long("snippet-out") => o.snippet_out = Some(PathBuf::from(p.value()?)),
            cli::Long("pin-digest") => o.pin_digest = true,
            cli::Long("decryption-resource") => o.decryption_resource = Some(p.string()?),
            cli::Long("credentials-resource") => o.credentials_resource = Some(p.string()?),
            cli::Long("layer-url-args") => o.layer_url_args = true,
            cli::Long("digest-out") => o.digest_out = Some(PathBuf::from(p.value()?)),
            cli::Long("work") => o.work = Some(PathBuf::from(p.value()?)),
            cli::Short('h') | cli::Long("help") => return p.help(),
            other => {
                let e = other.unexpected();
                return Err(p.error(e));
            }
        }
    }
    let (Some(layout), Some(registry), Some(repo), Some(tag)) = (layout, registry, repo, tag) else {
        return Err(p.error("--layout, --registry, --repo and --tag are required"));
    };
    o.layout = layout;
    o.registry = registry;
    o.repo = repo;
    o.tag = tag;
    check(&o)?;
    push(&o)
}

fn check(o: &Push) -> Result<()> {
    ensure!(o.layout.join("index.json").is_file(), "{} is not an OCI layout (no index.json)", o.layout.display());
    ensure!(!o.registry.is_empty() && !o.registry.contains('/'), "--registry {:?}: expected HOST:PORT", o.registry);
    ensure!(!o.repo.is_empty() && !o.repo.starts_with('/'), "--repo {:?}: expected a repository name", o.repo);
    ensure!(!o.tag.is_empty() && !o.tag.contains([':', '@', '/']), "--tag {:?}: expected a tag", o.tag);
    if let Some(i) = &o.identity {
        ensure!(
            i.contains('/') && !i.contains('@') && i.rsplit('/').next().is_some_and(|last| last.contains(':')),
            "--identity {i:?}: expected REGISTRY/REPO:TAG (without a digest)"
        );
    }
    if let Some(dir) = &o.sign_key {
        for f in SIGN_KEY_FILES {
            ensure!(
                dir.join(f).is_file(),
                "--sign-key: {} is missing (made by `xtask cosign-key`)",
                dir.join(f).display()
            );
        }
    }
    for k in &o.trust_keys {
        ensure!(k.is_file(), "--trust-key: {} is not a file", k.display());
    }
    if let Some(k) = &o.encrypt_key {
        ensure!(k.is_file(), "--encrypt-key: {} is not a file", k.display());
    }
    ensure!(o.encrypt_layers.is_empty() || o.encrypt_key.is_some(), "--encrypt-layer needs --encrypt-key");
    ensure!(!o.layer_url_args || o.snippet_out.is_some(), "--layer-url-args needs --snippet-out");
    if let Some(c) = &o.creds {
        ensure!(c.split_once(':').is_some_and(|(u, p)| !u.is_empty() && !p.is_empty()), "--creds: expected USER:PASS");
    }
    Ok(())
}

fn push(o: &Push) -> Result<()> {
    if !util::have_program("skopeo") {
        bail!("skopeo is not installed (apt-get install skopeo)");
    }
    let work = o.work.clone().unwrap_or_else(|| {
        let name = o.layout.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "layout".into());
        o.layout.with_file_name(format!("{name}.push"))
    });
    let registries_d = work.join("registries.d");
    std::fs::create_dir_all(&registries_d)?;
    std::fs::create_dir_all(work.join("tmp"))?;
    util::write_atomic(&registries_d.join("ztinit-test.yaml"), registries_d_yaml(&o.registry).as_bytes())?;
    let policy = work.join("policy.json");
    util::write_atomic(&policy, br#"{"default":[{"type":"insecureAcceptAnything"}]}"#)?;
    let dest = format!("docker://{}/{}:{}", o.registry, o.repo, o.tag);
    let digest_file = work.join("digest");
    let _ = std::fs::remove_file(&digest_file);
    let mut c = skopeo(&work);
    c.arg("copy").args(copy_args(o, is_index(&o.layout)?, &digest_file));
    c.arg(format!("oci:{}", o.layout.display())).arg(&dest);
    util::run(&mut c).context("skopeo copy")?;
    let pushed = std::fs::read_to_string(&digest_file)
        .with_context(|| format!("skopeo wrote no digest to {}", digest_file.display()))?;
    let pushed = pushed.trim().to_string();
    // Read back what the registry serves for the tag: the digest the guest will see.
    let mut inspect = skopeo(&work);
    inspect.args(["inspect", "--raw", "--tls-verify=false"]);
    if let Some(creds) = &o.creds {
        inspect.arg("--creds").arg(creds);
    }
    let raw = crate::procs::tie(inspect.arg(&dest).stdin(std::process::Stdio::null()))
        .output()
        .context("cannot run skopeo inspect")?;
    ensure!(raw.status.success(), "skopeo inspect {dest} failed: {}", String::from_utf8_lossy(&raw.stderr).trim());
    let served = format!("sha256:{}", hex::encode(Sha256::digest(&raw.stdout)));
    ensure!(served == pushed, "the registry serves {served} for {dest}, skopeo pushed {pushed}");
    if let Some(dir) = &o.sign_key {
        sign(o, &work, dir, &served)?;
        let sig = format!("/v2/{}/manifests/sha256-{}.sig", o.repo, &served[7..]);
        let status = http_status(&o.registry, &sig, o.creds.as_deref())?;
        ensure!(status == 200, "the signature attachment GET {sig} answered {status}, not 200");
    }
    println!(
        "image-push: {dest} is {served}{}{}",
        if o.sign_key.is_some() { ", signed (sigstore attachment)" } else { "" },
        if o.encrypt_key.is_some() { ", layers encrypted (JWE)" } else { "" }
    );
    if let Some(f) = &o.digest_out {
        util::write_atomic(f, format!("{served}\n").as_bytes())?;
    }
    if let Some(f) = &o.snippet_out {
        let trusted: Vec<PathBuf> = match (&o.sign_key, o.trust_keys.is_empty()) {
            (Some(dir), true) => vec![dir.join("key.pub")],
            _ => o.trust_keys.clone(),
        };
        let mut keys = Vec::new();
        for k in &trusted {
            keys.push(std::fs::read_to_string(k).with_context(|| format!("cannot read {}", k.display()))?);
        }
        let args = if o.layer_url_args { vec![largest_layer_url(o, &raw.stdout)?] } else { Vec::new() };
        util::write_atomic(f, snippet(o, &served, &keys, &args)?.as_bytes())?;
    }
    Ok(())
}

/// Signs `digest` as `cosign-sign` does and pushes the attachment layout
/// byte for byte (its manifest digest is what a verifier fetches by tag).
fn sign(o: &Push, work: &Path, key_dir: &Path, digest: &str) -> Result<()> {
    let sig_layout = work.join("signature");
    if sig_layout.exists() {
        std::fs::remove_dir_all(&sig_layout)?;
    }
    let mut c = Command::new(util::self_exe());
    c.arg("cosign-sign")
        .arg("--key")
        .arg(key_dir.join("cosign.key"))
        .arg("--passphrase-file")
        .arg(key_dir.join("cosign.pass"))
        .args(["--digest", digest, "--identity", &identity(o), "--out"])
        .arg(&sig_layout);
    util::run(&mut c).context("xtask cosign-sign")?;
    let tag = format!("sha256-{}.sig", &digest[7..]);
    let mut c = skopeo(work);
    c.args(["copy", "--preserve-digests", "--dest-tls-verify=false"]);
    if let Some(creds) = &o.creds {
        c.arg("--dest-creds").arg(creds);
    }
    c.arg(format!("oci:{}:{tag}", sig_layout.display())).arg(format!("docker://{}/{}:{tag}", o.registry, o.repo));
    util::run(&mut c).context("skopeo copy of the signature attachment")
}

/// skopeo with the scenario's own registries.d, policy and temporary files.
fn skopeo(work: &Path) -> Command {
    let mut c = Command::new("skopeo");
    c.arg("--registries.d")
        .arg(work.join("registries.d"))
        .arg("--policy")
        .arg(work.join("policy.json"))
        .arg("--tmpdir")
        .arg(work.join("tmp"));
    c
}

fn copy_args(o: &Push, index: bool, digest_file: &Path) -> Vec<String> {
    let mut a: Vec<String> = vec!["--dest-tls-verify=false".into(), "--format".into(), "oci".into()];
    a.push("--digestfile".into());
    a.push(digest_file.display().to_string());
    if index {
        a.push("--all".into());
    }
    if let Some(creds) = &o.creds {
        a.push("--dest-creds".into());
        a.push(creds.clone());
    }
    if let Some(k) = &o.encrypt_key {
        a.push("--encryption-key".into());
        a.push(format!("jwe:{}", k.display()));
        for n in &o.encrypt_layers {
            a.push("--encrypt-layer".into());
            a.push(n.to_string());
        }
    }
    a
}

fn identity(o: &Push) -> String {
    o.identity.clone().unwrap_or_else(|| format!("{}/{}:{}", o.registry, o.repo, o.tag))
}

/// Whether the layout's image is an index (a multi-platform image).
fn is_index(layout: &Path) -> Result<bool> {
    let path = layout.join("index.json");
    let v: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&path)?).with_context(|| format!("{} is not JSON", path.display()))?;
    let m = v["manifests"].as_array().with_context(|| format!("{}: no manifests", path.display()))?;
    ensure!(m.len() == 1, "{}: {} images; oci-image layouts hold one", path.display(), m.len());
    Ok(m[0]["mediaType"] == MEDIA_INDEX)
}

/// skopeo writes sigstore signatures as registry attachments only for
/// registries configured so.
fn registries_d_yaml(registry: &str) -> String {
    let q = serde_json::to_string(registry).unwrap_or_default();
    format!("docker:\n  {q}:\n    use-sigstore-attachments: true\n")
}

/// The URL of the largest layer of the pushed `manifest` as the guest
/// reaches the registry: its host and repository from the identity.
fn largest_layer_url(o: &Push, manifest: &[u8]) -> Result<String> {
    let v: serde_json::Value = serde_json::from_slice(manifest).context("the pushed manifest is not JSON")?;
    let layers = v["layers"].as_array().context("--layer-url-args: the pushed manifest has no layers (an index?)")?;
    let largest = layers
        .iter()
        .max_by_key(|l| l["size"].as_u64().unwrap_or(0))
        .context("--layer-url-args: the pushed manifest has no layers")?;
    let digest = largest["digest"].as_str().context("a layer without a digest")?;
    let identity = identity(o);
    let (host, rest) = identity.split_once('/').context("the identity names no registry")?;
    let repo = rest.rsplit_once(':').map_or(rest, |(repo, _tag)| repo);
    Ok(format!("http://{host}/v2/{repo}/blobs/{digest}"))
}

/// The `[image]` config snippet for the scenario's baked config (`args`:
/// the workload's arguments, replacing the image's Cmd, when not empty).
fn snippet(o: &Push, digest: &str, signature_keys: &[String], args: &[String]) -> Result<String> {
    let mut image = toml::Table::new();
    let mut reference = identity(o);
    if o.pin_digest {
        reference.push('@');
        reference.push_str(digest);
    }
    image.insert("reference".into(), reference.into());
    image.insert("insecure_http".into(), true.into());
    if !signature_keys.is_empty() {
        let keys = signature_keys.iter().map(|k| toml::Value::from(k.as_str())).collect();
        image.insert("signature_keys".into(), toml::Value::Array(keys));
    }
    let decryption =
        o.decryption_resource.clone().or_else(|| o.encrypt_key.as_ref().map(|_| "default/image/key".to_string()));
    if let Some(res) = decryption {
        image.insert("decryption_keys".into(), toml::Value::Array(vec![res.into()]));
    }
    if let Some(res) = &o.credentials_resource {
        image.insert("credentials".into(), res.clone().into());
    }
    if !args.is_empty() {
        image.insert("args".into(), toml::Value::Array(args.iter().map(|a| a.as_str().into()).collect()));
    }
    let mut doc = toml::Table::new();
    doc.insert("image".into(), image.into());
    Ok(toml::to_string(&doc)?)
}

/// The status of a plain HTTP GET (manifest media types accepted).
fn http_status(registry: &str, path: &str, creds: Option<&str>) -> Result<u16> {
    let mut s = TcpStream::connect(registry).with_context(|| format!("cannot connect to {registry}"))?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut req = format!(
        "GET {path} HTTP/1.1\r\nHost: {registry}\r\nConnection: close\r\nAccept: application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.v2+json\r\n"
    );
    if let Some(c) = creds {
        req.push_str(&format!("Authorization: Basic {}\r\n", base64::engine::general_purpose::STANDARD.encode(c)));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes())?;
    let mut head = Vec::new();
    s.take(64 * 1024).read_to_end(&mut head)?;
    parse_status(&head)
}

fn parse_status(response: &[u8]) -> Result<u16> {
    let line = response.split(|b| *b == b'\n').next().unwrap_or_default();
    let line = String::from_utf8_lossy(line);
    let mut words = line.split_whitespace();
    match (words.next(), words.next().and_then(|c| c.parse().ok())) {
        (Some(v), Some(code)) if v.starts_with("HTTP/1.") => Ok(code),
        _ => bail!("not an HTTP response: {:?}", line.trim()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn push_opts() -> Push {
        Push {
            layout: "/s/layout".into(),
            registry: "127.0.0.1:5555".into(),
            repo: "app".into(),
            tag: "1".into(),
            identity: Some("10.0.2.101:5000/app:1".into()),
            ..Push::default()
        }
    }

    #[test]
    fn copy_arguments_sign_encrypt_and_push_every_image_of_an_index() {
        let mut o = push_opts();
        o.sign_key = Some("/k".into());
        o.encrypt_key = Some("/e/public.pem".into());
        o.creds = Some("u:p".into());
        let a = copy_args(&o, true, Path::new("/w/digest")).join(" ");
        for want in [
            "--dest-tls-verify=false --format oci --digestfile /w/digest --all --dest-creds u:p",
            "--encryption-key jwe:/e/public.pem",
        ] {
            assert!(a.contains(want), "{want} not in {a}");
        }
        let plain = copy_args(&push_opts(), false, Path::new("/d")).join(" ");
        assert!(!plain.contains("--all") && !plain.contains("sigstore") && !plain.contains("encryption"), "{plain}");
    }

    #[test]
    fn snippets_carry_the_reference_keys_and_resources() {
        let mut o = push_opts();
        let digest = format!("sha256:{}", "ab".repeat(32));
        let plain: toml::Table = snippet(&o, &digest, &[], &[]).unwrap().parse().unwrap();
        assert_eq!(plain["image"]["reference"].as_str(), Some("10.0.2.101:5000/app:1"));
        assert_eq!(plain["image"]["insecure_http"].as_bool(), Some(true));
        assert!(plain["image"].get("signature_keys").is_none() && plain["image"].get("decryption_keys").is_none());
        o.pin_digest = true;
        o.encrypt_key = Some("/e".into());
        o.credentials_resource = Some("default/image/creds".into());
        let pem = "-----BEGIN PUBLIC KEY-----\nMFkw\n-----END PUBLIC KEY-----\n";
        let text = snippet(&o, &digest, &[pem.to_string(), "second".into()], &[]).unwrap();
        let t: toml::Table = text.parse().unwrap();
        assert_eq!(t["image"]["reference"].as_str().unwrap(), format!("10.0.2.101:5000/app:1@{digest}"));
        assert_eq!(t["image"]["signature_keys"][0].as_str(), Some(pem));
        assert_eq!(t["image"]["signature_keys"][1].as_str(), Some("second"));
        assert_eq!(t["image"]["decryption_keys"][0].as_str(), Some("default/image/key"));
        assert_eq!(t["image"]["credentials"].as_str(), Some("default/image/creds"));
        o.decryption_resource = Some("default/other/key".into());
        let t: toml::Table = snippet(&o, &digest, &[], &[]).unwrap().parse().unwrap();
        assert_eq!(t["image"]["decryption_keys"][0].as_str(), Some("default/other/key"));
        o.identity = None;
        let t: toml::Table = snippet(&o, &digest, &[], &[]).unwrap().parse().unwrap();
        assert!(t["image"]["reference"].as_str().unwrap().starts_with("127.0.0.1:5555/app:1@sha256:"));
        assert!(t["image"].get("args").is_none());
        let t: toml::Table = snippet(&o, &digest, &[], &["http://x/y".into()]).unwrap().parse().unwrap();
        assert_eq!(t["image"]["args"][0].as_str(), Some("http://x/y"));
    }

    #[test]
    fn the_largest_layer_url_is_the_guests() {
        let o = push_opts();
        let manifest = br#"{"layers":[{"digest":"sha256:aa","size":10},{"digest":"sha256:bb","size":67108864},
            {"digest":"sha256:cc","size":5}]}"#;
        assert_eq!(largest_layer_url(&o, manifest).unwrap(), "http://10.0.2.101:5000/v2/app/blobs/sha256:bb");
        let o = Push { identity: Some("10.0.2.101:5000/team/app:1".into()), ..push_opts() };
        assert_eq!(largest_layer_url(&o, manifest).unwrap(), "http://10.0.2.101:5000/v2/team/app/blobs/sha256:bb");
        assert!(largest_layer_url(&o, br#"{"manifests":[]}"#).is_err());
        assert!(largest_layer_url(&o, br#"{"layers":[]}"#).is_err());
    }

    #[test]
    fn arguments_are_checked_before_skopeo_runs() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("index.json"), "{}").unwrap();
        let mut o = push_opts();
        o.layout = dir.path().to_path_buf();
        check(&o).unwrap();
        let bad = |f: &dyn Fn(&mut Push)| {
            let mut o = push_opts();
            o.layout = dir.path().to_path_buf();
            f(&mut o);
            check(&o).unwrap_err().to_string()
        };
        assert!(bad(&|o| o.identity = Some("app:1".into())).contains("--identity"));
        assert!(bad(&|o| o.identity = Some("r:5000/app@sha256:x".into())).contains("--identity"));
        assert!(bad(&|o| o.sign_key = Some("/nonexistent".into())).contains("cosign-key"));
        assert!(bad(&|o| o.encrypt_layers = vec![0]).contains("needs --encrypt-key"));
        assert!(bad(&|o| o.trust_keys = vec!["/nonexistent.pub".into()]).contains("--trust-key"));
        let keys = dir.path().join("keys");
        std::fs::create_dir(&keys).unwrap();
        for f in SIGN_KEY_FILES {
            std::fs::write(keys.join(f), "x").unwrap();
        }
        o.sign_key = Some(keys);
        check(&o).unwrap();
        assert!(bad(&|o| o.tag = "a:b".into()).contains("--tag"));
        assert!(bad(&|o| o.creds = Some("user".into())).contains("USER:PASS"));
        assert!(bad(&|o| o.layout = "/nonexistent".into()).contains("not an OCI layout"));
    }

    #[test]
    fn registries_d_and_http_status() {
        assert_eq!(
            registries_d_yaml("127.0.0.1:5555"),
            "docker:\n  \"127.0.0.1:5555\":\n    use-sigstore-attachments: true\n"
        );
        assert_eq!(parse_status(b"HTTP/1.1 404 Not Found\r\n\r\n").unwrap(), 404);
        assert!(parse_status(b"SSH-2.0\r\n").is_err());
        let dir = tempfile::tempdir().unwrap();
        let index = |media: &str| {
            std::fs::write(dir.path().join("index.json"), format!(r#"{{"manifests":[{{"mediaType":"{media}"}}]}}"#))
                .unwrap();
            is_index(dir.path()).unwrap()
        };
        assert!(index(MEDIA_INDEX));
        assert!(!index(crate::oci_image::MEDIA_MANIFEST));
    }
}
