//! `cargo xtask ec-key --out DIR [--private-out FILE]`: a fresh EC P-256
//! key pair for the image scenarios' layer encryption: `DIR/public.pem`
//! (SPKI `PUBLIC KEY`, what `skopeo copy --encryption-key jwe:` wraps the
//! layer keys to) and `DIR/private.pem` (PKCS#8 `PRIVATE KEY`, what the
//! guest gets from the KBS as the image decryption key). `--private-out`
//! writes the private key there too (a KBS resource path).

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::cli;
use crate::util;

const USAGE: &str = "usage: cargo xtask ec-key --out DIR [--private-out FILE]
Writes a new EC P-256 key pair: DIR/private.pem (PKCS#8) and DIR/public.pem (SPKI);
--private-out: the private key also at FILE (e.g. {scratch}/kbs/default/image/key).";

pub fn cmd(args: &[String]) -> Result<()> {
    let (mut out, mut private_out) = (None, None);
    let mut p = cli::Args::new(args, USAGE);
    while let Some(arg) = p.next()? {
        match arg {
            cli::Long("out") => out = Some(PathBuf::from(p.value()?)),
            cli::Long("private-out") => private_out = Some(PathBuf::from(p.value()?)),
            cli::Short('h') | cli::Long("help") => return p.help(),
            other => {
                let e = other.unexpected();
                return Err(p.error(e));
            }
        }
    }
    let Some(out) = out else { return Err(p.error("--out is required")) };
    let (private, public) = generate()?;
    write_private(&out.join("private.pem"), &private)?;
    util::write_atomic(&out.join("public.pem"), public.as_bytes())?;
    if let Some(f) = private_out {
        write_private(&f, &private)?;
    }
    println!("ec-key: P-256 key pair in {}", out.display());
    Ok(())
}

/// (PKCS#8 private key PEM, SPKI public key PEM).
pub fn generate() -> Result<(String, String)> {
    let kp = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).context("cannot generate a P-256 key")?;
    Ok((kp.serialize_pem(), kp.public_key_pem()))
}

fn write_private(path: &Path, pem: &str) -> Result<()> {
    util::write_atomic(path, pem.as_bytes())?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .with_context(|| format!("cannot restrict {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_a_pkcs8_private_and_an_spki_public_key() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("k");
        let kbs = dir.path().join("kbs/default/image/key");
        let a: Vec<String> = ["--out", out.to_str().unwrap(), "--private-out", kbs.to_str().unwrap()]
            .iter()
            .map(|s| s.to_string())
            .collect();
        cmd(&a).unwrap();
        let private = std::fs::read_to_string(out.join("private.pem")).unwrap();
        let public = std::fs::read_to_string(out.join("public.pem")).unwrap();
        assert!(private.starts_with("-----BEGIN PRIVATE KEY-----"), "{private}");
        assert!(public.starts_with("-----BEGIN PUBLIC KEY-----"), "{public}");
        assert_eq!(std::fs::read_to_string(&kbs).unwrap(), private);
        assert_eq!(std::fs::metadata(&kbs).unwrap().permissions().mode() & 0o777, 0o600);
        // The private key's public half is the public key written beside it.
        let kp = rcgen::KeyPair::from_pem(&private).unwrap();
        assert_eq!(kp.public_key_pem(), public);
        assert_ne!(generate().unwrap().0, private, "every key is fresh");
    }
}
