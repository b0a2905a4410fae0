//! Container images as the workload (docs/image.md): the `[image]`
//! section, the confined `ztinit-image` helper that pulls, verifies,
//! decrypts and unpacks, and the root the workload is pivoted into.

pub mod config;
pub mod digest;
pub mod helper;
pub mod protocol;
pub mod reference;
pub mod root;

use std::collections::BTreeMap;
use std::path::Path;

use zeroize::Zeroizing;

pub use config::ImageConfig;
use protocol::{Answer, Credentials, DecryptionKey, RegistryTrust, Request};

#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error(transparent)]
    Root(#[from] root::RootError),
    #[error("{reference}: {source}")]
    Helper {
        reference: String,
        #[source]
        source: Box<helper::HelperError>,
    },
    #[error("registry credentials (KBS resource {0}) must be JSON {{\"username\": .., \"password\": ..}}")]
    Credentials(String),
    #[error("decryption key (KBS resource {0}) is not PEM text")]
    DecryptionKey(String),
    #[error("cannot read {path}: {source}")]
    ReadKey {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the image names no program (no Entrypoint or Cmd; set [image] entrypoint)")]
    NoProgram,
    #[error("program {0:?} not found in the image (searched PATH={1})")]
    ProgramNotFound(String, String),
    #[error("the image's working directory {0:?} is not an absolute path")]
    Workdir(String),
    #[error("the image's environment entry {0:?} is not NAME=VALUE")]
    Env(String),
}

/// What attestation released for the image: wiped when dropped.
#[derive(Default)]
pub struct ImageSecrets {
    pub credentials: Option<Zeroizing<Vec<u8>>>,
    pub decryption_keys: Vec<Zeroizing<Vec<u8>>>,
}

/// A verified image, unpacked, with its runtime mounts.
#[derive(Debug)]
pub struct Pulled {
    pub dirs: root::UnpackDirs,
    pub answer: Answer,
}

/// Where the host's files are for a pull (boot: "/").
pub struct PullEnv<'a> {
    pub host_root: &'a Path,
    pub base: &'a Path,
    pub confinement: helper::Confinement,
    pub mounter: &'a mut dyn root::RootMounter,
}

/// Builds the helper's request from the baked configuration and the
/// released secrets.
pub fn request(
    cfg: &ImageConfig,
    secrets: ImageSecrets,
    dirs: &root::UnpackDirs,
    host_root: &Path,
) -> Result<Request, ImageError> {
    let read = |path: &str| -> Result<String, ImageError> {
        let bytes = crate::files::read_image_file(host_root, path, 64 << 10)
            .map_err(|source| ImageError::ReadKey { path: path.into(), source })?;
        String::from_utf8(bytes)
            .map_err(|_| ImageError::ReadKey { path: path.into(), source: std::io::Error::other("not UTF-8") })
    };
    let trust = match (cfg.insecure_http, &cfg.ca_cert, &cfg.ca_cert_file, &cfg.pinned_cert, &cfg.pinned_cert_file) {
        (true, ..) => RegistryTrust::InsecureHttp,
        (_, Some(pem), ..) => RegistryTrust::Ca(pem.clone()),
        (_, _, Some(path), ..) => RegistryTrust::Ca(read(path)?),
        (_, _, _, Some(pem), _) => RegistryTrust::Pinned(pem.clone()),
        (_, _, _, _, Some(path)) => RegistryTrust::Pinned(read(path)?),
        // Refused by validation.
        _ => RegistryTrust::InsecureHttp,
    };
    let mut signature_keys = cfg.signature_keys.clone();
    for path in &cfg.signature_key_files {
        signature_keys.push(read(path)?);
    }
    let credentials = match (&cfg.credentials, secrets.credentials) {
        (Some(resource), Some(bytes)) => Some(
            serde_json::from_slice::<Credentials>(&bytes).map_err(|_| ImageError::Credentials(resource.to_string()))?,
        ),
        _ => None,
    };
    let mut decryption_keys = Vec::new();
    for (resource, bytes) in cfg.decryption_keys.iter().zip(secrets.decryption_keys) {
        let text = std::str::from_utf8(&bytes).map_err(|_| ImageError::DecryptionKey(resource.to_string()))?;
        decryption_keys.push(DecryptionKey(text.to_string()));
    }
    Ok(Request {
        version: protocol::VERSION,
        reference: cfg.reference.clone().unwrap_or_default(),
        trust,
        policy: cfg.policy(),
        signature_keys,
        credentials,
        decryption_keys,
        root: dirs.root.display().to_string(),
        work: dirs.work.display().to_string(),
        max_unpacked_bytes: cfg.max_unpacked_mib.saturating_mul(1 << 20),
        max_entries: cfg.max_entries,
        retries: cfg.retries,
        deadline_ms: cfg.deadline_ms,
        connect_timeout_ms: cfg.connect_timeout_ms,
        read_timeout_ms: cfg.read_timeout_ms,
        user: cfg.user.clone(),
    })
}

/// Mounts the image tmpfs, runs the helper, and returns the verified image.
pub fn pull(cfg: &ImageConfig, secrets: ImageSecrets, env: PullEnv<'_>) -> Result<Pulled, ImageError> {
    let dirs = root::prepare(env.base, cfg.max_unpacked_mib, env.mounter)?;
    let request = request(cfg, secrets, &dirs, env.host_root)?;
    let reference = request.reference.clone();
    let log_line = |line: &str| log::info!("image: {line}");
    let answer = helper::run(&cfg.helper, &env.confinement, &request, &log_line)
        .map_err(|source| ImageError::Helper { reference, source: Box::new(source) })?;
    drop(request);
    // Blobs were only kept until they were unpacked; nothing else stays.
    if let Err(e) = std::fs::remove_dir_all(&dirs.work) {
        log::warn!("image: cannot remove {}: {e}", dirs.work.display());
    }
    Ok(Pulled { dirs, answer })
}

/// The workload as the image describes it, with `[image]`'s overrides.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageWorkload {
    /// Absolute path inside the root.
    pub path: String,
    /// argv[1..].
    pub args: Vec<String>,
    pub env: BTreeMap<String, String>,
    pub workdir: String,
    pub uid: u32,
    pub gid: u32,
    pub groups: Vec<u32>,
}

/// Used when neither the image nor the configuration sets PATH.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Entrypoint + Cmd (overridable), Env merged with the config's, WorkingDir
/// and User; a program without a `/` is looked up in PATH inside `root`.
pub fn workload(cfg: &ImageConfig, answer: &Answer, root: &Path) -> Result<ImageWorkload, ImageError> {
    let entrypoint = cfg.entrypoint.clone().unwrap_or_else(|| answer.entrypoint.clone());
    let cmd = match (&cfg.args, &cfg.entrypoint) {
        (Some(args), _) => args.clone(),
        // Docker's rule: a new entrypoint drops the image's Cmd.
        (None, Some(_)) => Vec::new(),
        (None, None) => answer.cmd.clone(),
    };
    let mut argv = entrypoint.into_iter().chain(cmd);
    let program = argv.next().ok_or(ImageError::NoProgram)?;
    let args: Vec<String> = argv.collect();
    let mut env = BTreeMap::new();
    for entry in &answer.env {
        let (k, v) = entry.split_once('=').ok_or_else(|| ImageError::Env(entry.clone()))?;
        if k.is_empty() || k.contains('\0') || v.contains('\0') {
            return Err(ImageError::Env(entry.clone()));
        }
        env.insert(k.to_string(), v.to_string());
    }
    // A secrets directory path comes from ztinit, never from the image.
    env.remove(crate::secrets::CREDENTIALS_ENV);
    env.extend(cfg.env.clone());
    let path_var = env.get("PATH").cloned().unwrap_or_else(|| DEFAULT_PATH.to_string());
    let path = if program.contains('/') {
        if !program.starts_with('/') {
            return Err(ImageError::ProgramNotFound(program, path_var));
        }
        program
    } else {
        find_in_path(root, &program, &path_var)
            .ok_or_else(|| ImageError::ProgramNotFound(program.clone(), path_var.clone()))?
    };
    let workdir = cfg
        .workdir
        .clone()
        .unwrap_or_else(|| if answer.working_dir.is_empty() { "/".to_string() } else { answer.working_dir.clone() });
    if !workdir.starts_with('/') {
        return Err(ImageError::Workdir(workdir));
    }
    Ok(ImageWorkload { path, args, env, workdir, uid: answer.uid, gid: answer.gid, groups: answer.groups.clone() })
}

/// The first `DIR/name` in `path_var` that is an executable regular file
/// inside `root` (resolved there, as the workload's exec will).
fn find_in_path(root: &Path, name: &str, path_var: &str) -> Option<String> {
    use rustix::fs::{Mode, OFlags, ResolveFlags};
    let dir = rustix::fs::open(root, OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty()).ok()?;
    for d in path_var.split(':').filter(|d| d.starts_with('/')) {
        let candidate = format!("{}/{name}", d.trim_end_matches('/'));
        let how = ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS;
        let Ok(fd) = rustix::fs::openat2(&dir, candidate.as_str(), OFlags::PATH | OFlags::CLOEXEC, Mode::empty(), how)
        else {
            continue;
        };
        if let Ok(st) = rustix::fs::fstat(&fd)
            && st.st_mode & libc::S_IFMT == libc::S_IFREG
            && st.st_mode & 0o111 != 0
        {
            return Some(candidate);
        }
    }
    None
}

/// `1.4 MiB`, `188 KiB`: sizes in the image stage's log lines.
pub fn human_size(bytes: u64) -> String {
    if bytes >= 1 << 20 {
        format!("{}.{} MiB", bytes >> 20, ((bytes & ((1 << 20) - 1)) * 10) >> 20)
    } else {
        format!("{} KiB", bytes.div_ceil(1 << 10))
    }
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod size_tests {
    #[test]
    fn sizes_read_naturally() {
        assert_eq!(super::human_size(0), "0 KiB");
        assert_eq!(super::human_size(1000), "1 KiB");
        assert_eq!(super::human_size(1_438_354), "1.3 MiB");
        assert_eq!(super::human_size(64 << 20), "64.0 MiB");
    }
}
