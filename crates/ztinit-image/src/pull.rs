//! The helper's one job, in order: the manifest, its signature (before
//! anything else is fetched), the config, then each layer downloaded to the
//! work directory, checked against its digest, decrypted, decompressed and
//! unpacked into the root, its diff_id checked against the config. Every
//! error names the step; the first one ends the pull (PID 1 then powers
//! off, so a half-written root is never used).

use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, SyncSender};
use std::time::{Duration, Instant};

use rustix::fs::{Mode, OFlags};
use zeroize::Zeroizing;
use ztinit::image::protocol::{self, Answer, RegistryTrust, Request, SignaturePolicy};

use crate::digest::Digest;
use crate::manifest::{self, Descriptor, LayerMedia, Parsed};
use crate::reference::Reference;
use crate::registry::{Registry, RegistryOptions, Scheme, Trust};
use crate::{ocicrypt, signature, unpack, user};

/// Caps on what is read into memory.
const MAX_MANIFEST: usize = 4 << 20;
const MAX_CONFIG: usize = 4 << 20;
const OS: &str = "linux";
const ARCH: &str = "amd64";

#[derive(Debug, thiserror::Error)]
pub enum PullError {
    #[error("request: protocol version {0}, this helper speaks {v}", v = protocol::VERSION)]
    Version(u32),
    #[error("request: {0}")]
    Request(String),
    #[error("{0}")]
    Registry(Box<crate::registry::RegistryError>),
    #[error("{what}: {source}")]
    Manifest {
        what: String,
        #[source]
        source: manifest::ManifestError,
    },
    #[error("signature: {0}")]
    Signature(#[source] signature::SignatureError),
    #[error("signature: no signature at {tag} ({source})")]
    Unsigned {
        tag: String,
        #[source]
        source: Box<crate::registry::RegistryError>,
    },
    #[error("layer {index} ({digest}): {why}")]
    Layer { index: usize, digest: Digest, why: String },
    #[error("layer {index} ({digest}): {source}")]
    Unpack {
        index: usize,
        digest: Digest,
        #[source]
        source: unpack::UnpackError,
    },
    #[error("layer {index} ({digest}): decrypt: {source}")]
    Decrypt {
        index: usize,
        digest: Digest,
        #[source]
        source: ocicrypt::OcicryptError,
    },
    #[error("layer {index}: diff_id {got} is not the config's {want}")]
    DiffId { index: usize, got: String, want: Digest },
    #[error("user: {0}")]
    User(#[from] user::UserError),
    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: String,
        #[source]
        source: std::io::Error,
    },
}

impl From<crate::registry::RegistryError> for PullError {
    fn from(e: crate::registry::RegistryError) -> Self {
        PullError::Registry(Box::new(e))
    }
}

fn io_err<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> PullError + 'a {
    move |source| PullError::Io { what, path: path.display().to_string(), source }
}

/// Pulls, verifies, decrypts and unpacks `req`'s image into its root.
pub fn run(req: &Request) -> Result<Answer, PullError> {
    if req.version != protocol::VERSION {
        return Err(PullError::Version(req.version));
    }
    let started = Instant::now();
    let reference = Reference::parse(&req.reference).map_err(|e| PullError::Request(e.to_string()))?;
    let registry = Registry::new(options(req, &reference)?)?;
    let repo = reference.repository.as_str();
    let keys = match req.policy {
        SignaturePolicy::Signed => Some(
            signature::PublicKeys::from_pem(req.signature_keys.join("\n").as_bytes()).map_err(PullError::Signature)?,
        ),
        SignaturePolicy::Digest => {
            if reference.digest.is_none() {
                return Err(PullError::Request("policy \"digest\" without a pinned digest".into()));
            }
            None
        }
    };
    let private_keys = if req.decryption_keys.is_empty() {
        None
    } else {
        let pem =
            zeroize::Zeroizing::new(req.decryption_keys.iter().map(|k| k.0.as_str()).collect::<Vec<_>>().join("\n"));
        Some(ocicrypt::PrivateKeys::from_pem(pem.as_bytes()).map_err(|e| PullError::Request(e.to_string()))?)
    };

    // The top-level manifest (an index, or the image manifest itself): the
    // signature and a pinned digest both vouch for this one.
    let top = registry.get_manifest(repo, &reference.manifest_reference(), manifest::MANIFEST_ACCEPT, MAX_MANIFEST)?;
    let what = format!("manifest {}", top.digest);
    let parsed = manifest::parse_any(&top.bytes, Some(&top.media_type), MAX_MANIFEST)
        .map_err(|source| PullError::Manifest { what: what.clone(), source })?;
    match &keys {
        Some(keys) => {
            let index = verify_signature(&registry, repo, &reference, &top.digest, keys)?;
            log::info!("signature verified: {} signed by the configured key(s) (signature {index})", top.digest);
        }
        None => log::info!("manifest {} matches the pinned digest", top.digest),
    }
    let verified_by = match keys {
        Some(_) => "cosign signature".to_string(),
        None => "pinned digest".to_string(),
    };

    let (manifest, manifest_digest) = match parsed {
        Parsed::Manifest(m) => (m, top.digest.clone()),
        Parsed::Index(index) => {
            let d = manifest::select_platform(&index, OS, ARCH)
                .map_err(|source| PullError::Manifest { what: what.clone(), source })?;
            // Fetched by the digest the (verified) index names.
            let m = registry.get_manifest(repo, &d.digest.to_string(), manifest::MANIFEST_ACCEPT, MAX_MANIFEST)?;
            let what = format!("manifest {} ({OS}/{ARCH})", m.digest);
            match manifest::parse_any(&m.bytes, Some(&m.media_type), MAX_MANIFEST) {
                Ok(Parsed::Manifest(parsed)) => {
                    log::info!("index {}: {OS}/{ARCH} is {}", top.digest, m.digest);
                    (parsed, m.digest)
                }
                Ok(Parsed::Index(_)) => {
                    return Err(PullError::Manifest {
                        what,
                        source: manifest::ManifestError::Invalid { what: "manifest", why: "a nested index".into() },
                    });
                }
                Err(source) => return Err(PullError::Manifest { what, source }),
            }
        }
    };
    let config_bytes = registry.get_blob(repo, &manifest.config, MAX_CONFIG)?;
    let what = format!("config {}", manifest.config.digest);
    let config = manifest::parse_config(&config_bytes, MAX_CONFIG)
        .map_err(|source| PullError::Manifest { what: what.clone(), source })?;
    manifest::check_config(&manifest, &config, OS, ARCH).map_err(|source| PullError::Manifest { what, source })?;

    let root = open_dir(Path::new(&req.root))?;
    let work = PathBuf::from(&req.work);
    let mut budget = unpack::Budget::new(req.max_unpacked_bytes, req.max_entries);
    let mut fetched_bytes = 0u64;
    for (index, (layer, want)) in manifest.layers.iter().zip(&config.diff_ids).enumerate() {
        fetched_bytes = fetched_bytes.saturating_add(layer.size);
        pull_layer(&registry, repo, index, layer, want, &work, &root, &mut budget, private_keys.as_ref())?;
    }
    let spec = req.user.clone().unwrap_or_else(|| config.user.clone());
    let user = user::resolve(&root, &spec)?;
    let unpacked = req.max_unpacked_bytes.saturating_sub(budget.bytes_left);
    let ms = started.elapsed().as_millis();
    log::info!(
        "pulled {} layer(s), {} MiB fetched, {} MiB unpacked in {ms} ms",
        manifest.layers.len(),
        fetched_bytes >> 20,
        unpacked >> 20
    );
    Ok(Answer {
        version: protocol::VERSION,
        manifest_digest: manifest_digest.to_string(),
        verified_by,
        layers: u32::try_from(manifest.layers.len()).unwrap_or(u32::MAX),
        unpacked_bytes: unpacked,
        entrypoint: config.entrypoint,
        cmd: config.cmd,
        env: config.env,
        working_dir: config.working_dir,
        uid: user.uid,
        gid: user.gid,
        groups: user.groups,
        labels: Default::default(),
    })
}

fn options(req: &Request, reference: &Reference) -> Result<RegistryOptions, PullError> {
    let certs = |pem: &str| {
        ztinit::kbs::transport::parse_pem_certs(pem.as_bytes())
            .map_err(|e| PullError::Request(format!("registry certificate: {e}")))
    };
    let (scheme, trust) = match &req.trust {
        RegistryTrust::InsecureHttp => (Scheme::Http, Trust::None),
        RegistryTrust::Ca(pem) => (Scheme::Https, Trust::Ca(certs(pem)?)),
        RegistryTrust::Pinned(pem) => (Scheme::Https, Trust::Pinned(certs(pem)?)),
    };
    let deadline = Instant::now() + Duration::from_millis(req.deadline_ms);
    let mut opts = RegistryOptions::new(reference.registry.clone(), scheme, trust, deadline);
    opts.retries = req.retries;
    opts.connect_timeout = Duration::from_millis(req.connect_timeout_ms);
    opts.read_timeout = Duration::from_millis(req.read_timeout_ms);
    opts.credentials = req
        .credentials
        .as_ref()
        .map(|c| crate::registry::Credentials { username: c.username.clone(), password: c.password.clone() });
    Ok(opts)
}

/// The cosign signature of `digest` (the `sha256-HEX.sig` tag of the same
/// repository), checked before anything of the image beyond its top-level
/// manifest is fetched. Returns which signature verified.
fn verify_signature(
    registry: &Registry,
    repo: &str,
    reference: &Reference,
    digest: &Digest,
    keys: &signature::PublicKeys,
) -> Result<usize, PullError> {
    let tag = format!("sha256-{}.sig", digest.hex());
    let accept = [manifest::OCI_MANIFEST, manifest::DOCKER_MANIFEST];
    let sig = registry
        .get_manifest(repo, &tag, &accept, signature::MAX_SIG_MANIFEST_LEN)
        .map_err(|source| PullError::Unsigned { tag: tag.clone(), source: Box::new(source) })?;
    let layers = signature::signature_layers(&sig.bytes).map_err(PullError::Signature)?;
    let fetch = |l: &signature::SignatureLayer| -> Result<Vec<u8>, String> {
        let d = Descriptor {
            media_type: l.media_type.clone(),
            digest: Digest::parse(&l.digest).map_err(|e| e.to_string())?,
            size: l.size,
            annotations: Default::default(),
            platform: None,
        };
        registry.get_blob(repo, &d, signature::MAX_PAYLOAD_LEN).map_err(|e| e.to_string())
    };
    signature::verify_any(&layers, fetch, keys, &digest.to_string(), &reference.identity())
        .map_err(PullError::Signature)
}

#[allow(clippy::too_many_arguments)]
fn pull_layer(
    registry: &Registry,
    repo: &str,
    index: usize,
    layer: &Descriptor,
    want: &Digest,
    work: &Path,
    root: &OwnedFd,
    budget: &mut unpack::Budget,
    keys: Option<&ocicrypt::PrivateKeys>,
) -> Result<(), PullError> {
    let digest = layer.digest.clone();
    let media = LayerMedia::parse(&layer.media_type).map_err(|e| PullError::Layer {
        index,
        digest: digest.clone(),
        why: e.to_string(),
    })?;
    let started = Instant::now();
    // Downloaded whole and checked against its digest before a byte of it
    // is decrypted or parsed: the parsers only ever see what the signed
    // manifest vouches for.
    let path = work.join(format!("layer-{index}"));
    {
        let file = File::create(&path).map_err(io_err("create", &path))?;
        let mut out = BufWriter::with_capacity(256 << 10, file);
        registry.copy_blob(repo, layer, &mut out)?;
        out.flush().map_err(io_err("write", &path))?;
    }
    let fetched_ms = started.elapsed().as_millis();
    let file = File::open(&path).map_err(io_err("open", &path))?;
    // The blob's pages are freed as soon as it is unpacked.
    std::fs::remove_file(&path).map_err(io_err("remove", &path))?;
    let input = BufReader::with_capacity(256 << 10, file);
    let compression = match media.compression {
        manifest::Compression::None => unpack::Compression::None,
        manifest::Compression::Gzip => unpack::Compression::Gzip,
        manifest::Compression::Zstd => unpack::Compression::Zstd,
    };
    let unpacked = |r: &mut dyn Read, budget: &mut unpack::Budget| {
        unpack::unpack_layer(r, compression, root, budget).map_err(|source| PullError::Unpack {
            index,
            digest: digest.clone(),
            source,
        })
    };
    let diff_id = if media.encrypted {
        let keys = keys.ok_or_else(|| PullError::Layer {
            index,
            digest: digest.clone(),
            why: "encrypted, and no [image] decryption_keys are configured".into(),
        })?;
        let key = ocicrypt::unwrap_layer(&layer.annotations, keys).map_err(|source| PullError::Decrypt {
            index,
            digest: digest.clone(),
            source,
        })?;
        // Decryption (AES-CTR and the HMAC) runs on a thread of its own
        // while this one decompresses, hashes and writes: both sides are
        // bound by the CPU, and a guest has more than one.
        let (id, rest) = std::thread::scope(|s| {
            let (tx, rx) = std::sync::mpsc::sync_channel(DECRYPT_AHEAD);
            let mut plain = key.decryptor(input);
            s.spawn(move || decrypt_into(&mut plain, &tx));
            let mut plain = Decrypted { rx, chunk: Zeroizing::new(Vec::new()), at: 0, verified: false };
            let id = unpacked(&mut plain, budget)?;
            // The HMAC over the ciphertext is checked at its end: read it all.
            let rest = std::io::copy(&mut plain, &mut std::io::sink()).map_err(|e| PullError::Layer {
                index,
                digest: digest.clone(),
                why: format!("decrypt: {e}"),
            })?;
            Ok::<_, PullError>((id, rest))
        })?;
        if rest != 0 {
            return Err(PullError::Layer { index, digest, why: format!("{rest} bytes after the layer's end") });
        }
        id
    } else {
        let mut input = input;
        unpacked(&mut input, budget)?
    };
    let got = unpack::diff_id_string(&diff_id);
    if got != want.to_string() {
        return Err(PullError::DiffId { index, got, want: want.clone() });
    }
    log::info!(
        "layer {index}: {digest} ({} KiB{}{}) fetched in {fetched_ms} ms, unpacked in {} ms",
        layer.size >> 10,
        match media.compression {
            manifest::Compression::None => "",
            manifest::Compression::Gzip => ", gzip",
            manifest::Compression::Zstd => ", zstd",
        },
        if media.encrypted { ", encrypted" } else { "" },
        started.elapsed().as_millis().saturating_sub(fetched_ms)
    );
    Ok(())
}

/// Plaintext chunks in flight between the decrypting thread and the
/// unpacking one.
const DECRYPT_AHEAD: usize = 4;
const DECRYPT_CHUNK: usize = 256 << 10;

type Chunk = std::io::Result<Zeroizing<Vec<u8>>>;

/// The decrypting thread: chunks until the decryptor's end (an empty chunk:
/// the HMAC verified) or its error, or until the unpacking side hangs up.
fn decrypt_into(plain: &mut impl Read, tx: &SyncSender<Chunk>) {
    loop {
        let mut chunk = Zeroizing::new(vec![0u8; DECRYPT_CHUNK]);
        let (more, item) = match plain.read(&mut chunk) {
            Ok(n) => {
                chunk.truncate(n);
                (n > 0, Ok(chunk))
            }
            Err(e) => (false, Err(e)),
        };
        if tx.send(item).is_err() || !more {
            return;
        }
    }
}

/// The unpacking side of [`decrypt_into`]: reads as the decryptor would.
/// `Ok(0)` only after the decryptor's own end, so only once the HMAC
/// verified; a decryption error is passed on, and a thread that stopped
/// without either is an error too.
struct Decrypted {
    rx: Receiver<Chunk>,
    chunk: Zeroizing<Vec<u8>>,
    at: usize,
    verified: bool,
}

impl Read for Decrypted {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        loop {
            if let Some(left) = self.chunk.get(self.at..)
                && !left.is_empty()
            {
                let n = left.len().min(buf.len());
                buf[..n].copy_from_slice(&left[..n]);
                self.at += n;
                return Ok(n);
            }
            if self.verified || buf.is_empty() {
                return Ok(0);
            }
            match self.rx.recv() {
                Ok(Ok(chunk)) if chunk.is_empty() => self.verified = true,
                Ok(Ok(chunk)) => (self.chunk, self.at) = (chunk, 0),
                Ok(Err(e)) => return Err(e),
                Err(_) => return Err(std::io::Error::other("the decrypting thread stopped before the layer's end")),
            }
        }
    }
}

fn open_dir(path: &Path) -> Result<OwnedFd, PullError> {
    rustix::fs::open(path, OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())
        .map_err(|e| io_err("open", path)(e.into()))
}

#[cfg(test)]
mod decrypt_thread_tests {
    use super::*;

    /// Yields `data` in odd-sized pieces, then `end`.
    struct Source {
        data: Vec<u8>,
        at: usize,
        end: Option<std::io::ErrorKind>,
    }

    impl Read for Source {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            let n = (self.data.len() - self.at).min(buf.len()).min(70_001);
            if n == 0 {
                return match self.end {
                    Some(kind) => Err(std::io::Error::new(kind, "hmac mismatch")),
                    None => Ok(0),
                };
            }
            buf[..n].copy_from_slice(&self.data[self.at..self.at + n]);
            self.at += n;
            Ok(n)
        }
    }

    fn through_thread(source: Source, read_all: bool) -> (Vec<u8>, std::io::Result<u64>) {
        std::thread::scope(|s| {
            let (tx, rx) = std::sync::mpsc::sync_channel(DECRYPT_AHEAD);
            let mut source = source;
            s.spawn(move || decrypt_into(&mut source, &tx));
            let mut plain = Decrypted { rx, chunk: Zeroizing::new(Vec::new()), at: 0, verified: false };
            let mut first = vec![0u8; 1000];
            plain.read_exact(&mut first).unwrap();
            if !read_all {
                // The unpacking side gives up: the thread must end anyway.
                return (first, Ok(0));
            }
            let mut rest = Vec::new();
            let r = plain.read_to_end(&mut rest).map(|n| n as u64);
            first.extend(rest);
            (first, r)
        })
    }

    fn data() -> Vec<u8> {
        (0..3_000_000u32).map(|i| (i.wrapping_mul(7) ^ (i / 251)).to_le_bytes()[0]).collect()
    }

    #[test]
    fn everything_arrives_in_order_and_the_end_only_after_the_decryptor_ended() {
        let (got, r) = through_thread(Source { data: data(), at: 0, end: None }, true);
        assert!(r.is_ok());
        assert_eq!(got, data());
    }

    #[test]
    fn a_decryption_error_at_the_end_reaches_the_unpacking_side() {
        let (got, r) = through_thread(Source { data: data(), at: 0, end: Some(std::io::ErrorKind::InvalidData) }, true);
        assert_eq!(r.unwrap_err().kind(), std::io::ErrorKind::InvalidData);
        assert_eq!(got.len(), data().len());
    }

    #[test]
    fn the_thread_ends_when_the_unpacking_side_stops_early() {
        let (got, _) = through_thread(Source { data: data(), at: 0, end: None }, false);
        assert_eq!(got, data()[..1000]);
    }
}
