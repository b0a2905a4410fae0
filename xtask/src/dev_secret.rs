//! `xtask dev-secret --out DIR --resource REPO/TYPE/TAG [--bytes N]`
//! (hidden): a fresh random secret for a dev-KBS scenario or the demo.
//!
//! Writes
//! - `DIR/resources/REPO/TYPE/TAG`: the secret (the dev KBS's resource
//!   directory is `DIR/resources`),
//! - `DIR/TAG.sha256`: its SHA-256 in lowercase hex (what the workload must
//!   print; a scenario expects it through `{file:TAG.sha256}`),
//! - `DIR/TAG.forms`: one line per form in which the secret must never
//!   appear on a console (for `forbid_files`).

use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use sha2::{Digest, Sha256};

const USAGE: &str = "usage: cargo xtask dev-secret --out DIR --resource REPO/TYPE/TAG [--bytes N]";

use crate::cli;
use crate::fixture::PREFIX;

pub fn cmd(args: &[String]) -> Result<()> {
    let (mut out, mut resource, mut bytes) = (None, None, 32usize);
    let mut p = cli::Args::new(args, USAGE);
    while let Some(arg) = p.next()? {
        match arg {
            cli::Long("out") => out = Some(PathBuf::from(p.value()?)),
            cli::Long("resource") => resource = Some(p.string()?),
            cli::Long("bytes") => bytes = p.parse("--bytes")?,
            cli::Short('h') | cli::Long("help") => return p.help(),
            other => {
                let e = other.unexpected();
                return Err(p.error(e));
            }
        }
    }
    let (Some(out), Some(resource)) = (out, resource) else { return Err(p.error("--out and --resource are required")) };
    if !(PREFIX..=1 << 20).contains(&bytes) {
        return Err(p.error(format!("--bytes must be between {PREFIX} and 1048576")));
    }
    let path = ztinit::kbs::ResourcePath::parse(&resource).map_err(|e| p.error(format!("--resource: {e}")))?;
    let mut secret = vec![0u8; bytes];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut secret))
        .context("cannot read /dev/urandom")?;
    write(&out, &resource, path.tag(), &secret)?;
    println!("dev-secret: {bytes} random bytes as {resource} in {}", out.join("resources").display());
    Ok(())
}

fn write(out: &Path, resource: &str, tag: &str, secret: &[u8]) -> Result<()> {
    let file = out.join("resources").join(resource);
    if let Some(dir) = file.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&file)
        .with_context(|| format!("cannot create {}", file.display()))?;
    std::io::Write::write_all(&mut f, secret)?;
    std::fs::write(out.join(format!("{tag}.sha256")), format!("{}\n", hex::encode(Sha256::digest(secret))))?;
    std::fs::write(out.join(format!("{tag}.forms")), crate::fixture::secret_forms(secret).join("\n") + "\n")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;
    use base64::engine::general_purpose::{STANDARD_NO_PAD, URL_SAFE_NO_PAD};

    #[test]
    fn forms_cover_hex_base64_and_debug_of_the_secret_and_its_prefix() {
        let secret: Vec<u8> = (0xf0..=0xff).chain(0..16).collect();
        let f = crate::fixture::secret_forms(&secret);
        assert!(f.contains(&hex::encode(&secret)));
        assert!(f.contains(&hex::encode_upper(&secret)));
        assert!(f.contains(&hex::encode(&secret[..PREFIX])));
        // Standard base64 has '+' and '/', base64url '-' and '_' for the same bytes.
        let std = STANDARD_NO_PAD.encode(&secret);
        let url = URL_SAFE_NO_PAD.encode(&secret);
        assert_ne!(std, url);
        assert!(f.contains(&std) && f.contains(&url));
        assert!(f.iter().any(|l| l.starts_with("[240, 241, 242")));
        assert!(f.iter().all(|l| !l.is_empty() && !l.contains('\n')));
    }

    #[test]
    fn writes_the_resource_its_hash_and_its_forms() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "default/test/key", "key", b"0123456789abcdef").unwrap();
        assert_eq!(std::fs::read(dir.path().join("resources/default/test/key")).unwrap(), b"0123456789abcdef");
        let sha = std::fs::read_to_string(dir.path().join("key.sha256")).unwrap();
        assert_eq!(sha.trim(), hex::encode(Sha256::digest(b"0123456789abcdef")));
        let forms = std::fs::read_to_string(dir.path().join("key.forms")).unwrap();
        assert!(forms.lines().any(|l| l == "30313233343536373839616263646566"));
        // A second secret never silently replaces the first.
        assert!(write(dir.path(), "default/test/key", "key", b"x").is_err());
    }
}
