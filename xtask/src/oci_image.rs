//! `cargo xtask oci-image --out DIR ...`: an OCI image layout (`oci-layout`,
//! `index.json`, `blobs/sha256/...`) built from host files, workspace
//! binaries (static musl, as `xtask image` builds them) and random data,
//! for the image scenarios to push with skopeo (`xtask image-push`).
//!
//! Layers are tar streams written here byte by byte (mtimes 0, entries
//! sorted, owner root unless given), so the same arguments give the same
//! digests, and so hostile layers (`--hostile`) can hold what no archiver
//! would write: `../` names, a write through an absolute symlink, hard
//! links out of the root, device nodes.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail, ensure};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::cli;
use crate::manifest::MUSL_TARGET;
use crate::util;

const USAGE: &str = "usage: cargo xtask oci-image --out DIR [--tag T] [LAYER CONTENT...] [--new-layer LAYER CONTENT...]...
    [--passwd NAME:UID:GID]... [--entrypoint ARG]... [--cmd ARG]... [--env K=V]... [--user U] [--workdir D]
    [--compression none|gzip|zstd] [--platforms linux/amd64,linux/arm64] [--hostile KIND]... [--digest-out GUEST=FILE]...
Layer content (into the current layer; --new-layer starts the next one):
  --file GUEST=HOST[:MODE[:UID:GID]]      a host file
  --bin GUEST=PACKAGE:BIN[:MODE[:UID:GID]]  a workspace binary, built static for x86_64-unknown-linux-musl
  --random GUEST=BYTES[:MODE[:UID:GID]]   random (incompressible) content
  --text GUEST=TEXT                       a small file (mode 0644)
  --dir GUEST[:MODE[:UID:GID]]            a directory (parents are added as 0755 root)
  --symlink GUEST=TARGET                  a symlink (target stored verbatim)
  --hardlink GUEST=TARGET                 a hard link to an earlier entry (absolute guest path)
  --whiteout GUEST                        `.wh.NAME`: removes GUEST of a lower layer
  --opaque GUEST                          `GUEST/.wh..wh..opq`: hides the lower layers' content of a directory
--passwd: /etc/passwd and /etc/group lines in the first layer (home /, shell /sbin/nologin).
--env: PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin unless given.
--platforms: an image index; every platform but linux/amd64 gets a config whose entrypoint,
  /ztinit-wrong-platform/OS-ARCH, does not exist (running it fails, naming it). List order is kept.
--hostile: one more layer, last, handcrafted: path-escape (`../escaped`, then `etc-link -> /etc`
  and a file `etc-link/ztinit-escaped`), dotdot, symlink-escape, hardlink-escape, device-node.
--digest-out: the hex SHA-256 of a regular file of the image, one line (for `{file:NAME}`).";

pub const MEDIA_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const MEDIA_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const MEDIA_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
const MEDIA_LAYER: &str = "application/vnd.oci.image.layer.v1.tar";
const REF_NAME: &str = "org.opencontainers.image.ref.name";
const DEFAULT_PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
/// The largest `--random` file (the bench's image is 64 MiB).
const MAX_RANDOM_BYTES: u64 = 1 << 30;
/// What the guest's decoding helpers see as an image's creation time.
const EPOCH: &str = "1970-01-01T00:00:00Z";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
}

impl Compression {
    fn parse(v: &str) -> Result<Self> {
        Ok(match v {
            "none" => Compression::None,
            "gzip" => Compression::Gzip,
            "zstd" => Compression::Zstd,
            other => bail!("--compression {other:?}: use none, gzip or zstd"),
        })
    }

    fn media_type(self) -> String {
        match self {
            Compression::None => MEDIA_LAYER.to_string(),
            Compression::Gzip => format!("{MEDIA_LAYER}+gzip"),
            Compression::Zstd => format!("{MEDIA_LAYER}+zstd"),
        }
    }

    fn compress(self, raw: &[u8]) -> Result<Vec<u8>> {
        match self {
            Compression::None => Ok(raw.to_vec()),
            Compression::Gzip => Ok(gzip(raw)),
            Compression::Zstd => zstd(raw),
        }
    }
}

/// One tar entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Relative to the image root, no leading `/` (hostile layers: anything).
    pub path: String,
    pub kind: Kind,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    File(Vec<u8>),
    Dir,
    Symlink(String),
    Hardlink(String),
    CharDevice(u32, u32),
}

impl Entry {
    fn new(path: &str, kind: Kind, mode: u32) -> Self {
        Entry { path: path.to_string(), kind, mode, uid: 0, gid: 0 }
    }
}

/// `--file`-like values before the files are read or built.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Source {
    Host(PathBuf),
    Bin { package: String, bin: String },
    Random(u64),
    Text(String),
    Dir,
    Symlink(String),
    Hardlink(String),
    Whiteout,
    Opaque,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Item {
    /// Normalized guest path, relative.
    path: String,
    source: Source,
    mode: Option<u32>,
    owner: (u32, u32),
}

/// Everything the command line asked for.
#[derive(Debug, Default)]
struct Request {
    out: Option<PathBuf>,
    tag: Option<String>,
    layers: Vec<Vec<Item>>,
    passwd: Vec<(String, u32, u32)>,
    entrypoint: Vec<String>,
    cmd: Vec<String>,
    env: Vec<String>,
    user: Option<String>,
    workdir: Option<String>,
    compression: Option<Compression>,
    platforms: Vec<(String, String)>,
    hostile: Vec<String>,
    digest_out: Vec<(String, PathBuf)>,
}

pub fn cmd(args: &[String]) -> Result<()> {
    let Some(req) = parse_args(args)? else { return Ok(()) };
    let out = req.out.clone().context("--out is required")?;
    let built = build(&req, &out)?;
    println!(
        "oci-image: {}: {} {} ({} layer{}, {})",
        out.display(),
        if req.platforms.is_empty() { "manifest" } else { "index" },
        built.top_digest,
        built.layers,
        if built.layers == 1 { "" } else { "s" },
        util::human_size(built.layer_bytes)
    );
    Ok(())
}

fn parse_args(args: &[String]) -> Result<Option<Request>> {
    let mut r = Request { layers: vec![Vec::new()], ..Request::default() };
    let mut p = cli::Args::new(args, USAGE);
    while let Some(arg) = p.next()? {
        let layer_item = match arg {
            cli::Long("out") => {
                r.out = Some(PathBuf::from(p.value()?));
                None
            }
            cli::Long("tag") => {
                r.tag = Some(p.string()?);
                None
            }
            cli::Long("new-layer") => {
                r.layers.push(Vec::new());
                None
            }
            cli::Long("file") => Some(parse_item(&p.string()?, "--file")?),
            cli::Long("bin") => Some(parse_item(&p.string()?, "--bin")?),
            cli::Long("random") => Some(parse_item(&p.string()?, "--random")?),
            cli::Long("text") => Some(parse_item(&p.string()?, "--text")?),
            cli::Long("dir") => Some(parse_item(&p.string()?, "--dir")?),
            cli::Long("symlink") => Some(parse_item(&p.string()?, "--symlink")?),
            cli::Long("hardlink") => Some(parse_item(&p.string()?, "--hardlink")?),
            cli::Long("whiteout") => Some(parse_item(&p.string()?, "--whiteout")?),
            cli::Long("opaque") => Some(parse_item(&p.string()?, "--opaque")?),
            cli::Long("passwd") => {
                r.passwd.push(parse_passwd(&p.string()?)?);
                None
            }
            cli::Long("entrypoint") => {
                r.entrypoint.push(p.string()?);
                None
            }
            cli::Long("cmd") => {
                r.cmd.push(p.string()?);
                None
            }
            cli::Long("env") => {
                let v = p.string()?;
                ensure!(v.split_once('=').is_some_and(|(k, _)| !k.is_empty()), "--env {v:?}: expected K=V");
                r.env.push(v);
                None
            }
            cli::Long("user") => {
                r.user = Some(p.string()?);
                None
            }
            cli::Long("workdir") => {
                r.workdir = Some(p.string()?);
                None
            }
            cli::Long("compression") => {
                r.compression = Some(Compression::parse(&p.string()?)?);
                None
            }
            cli::Long("platforms") => {
                r.platforms = parse_platforms(&p.string()?)?;
                None
            }
            cli::Long("hostile") => {
                let kind = p.string()?;
                hostile_layer(&kind)?;
                r.hostile.push(kind);
                None
            }
            cli::Long("digest-out") => {
                let v = p.string()?;
                let (guest, file) =
                    v.split_once('=').with_context(|| format!("--digest-out {v:?}: expected GUEST=FILE"))?;
                r.digest_out.push((guest_path(guest)?, PathBuf::from(file)));
                None
            }
            cli::Short('h') | cli::Long("help") => {
                p.help()?;
                return Ok(None);
            }
            other => {
                let e = other.unexpected();
                return Err(p.error(e));
            }
        };
        if let Some(i) = layer_item {
            r.layers.last_mut().context("no layer")?.push(i);
        }
    }
    if r.out.is_none() {
        return Err(cli::usage_error("--out is required", USAGE));
    }
    Ok(Some(r))
}

/// `GUEST=VALUE[:MODE[:UID:GID]]` (the suffix where the option takes one).
fn parse_item(v: &str, option: &str) -> Result<Item> {
    let with_value = !matches!(option, "--dir" | "--whiteout" | "--opaque");
    let (guest, value) = if with_value {
        v.split_once('=').with_context(|| format!("{option} {v:?}: expected GUEST=VALUE"))?
    } else {
        (v, "")
    };
    let takes_mode = matches!(option, "--file" | "--bin" | "--random" | "--dir");
    let (value, mode, owner) = if takes_mode {
        let (rest, mode, owner) = split_mode_owner(if option == "--dir" { guest } else { value })
            .with_context(|| format!("{option} {v:?}"))?;
        (rest, mode, owner)
    } else {
        (value, None, (0, 0))
    };
    let guest = if option == "--dir" { value } else { guest };
    let path = guest_path(guest).with_context(|| format!("{option} {v:?}"))?;
    let source = match option {
        "--file" => Source::Host(PathBuf::from(value)),
        "--bin" => {
            let (package, bin) =
                value.split_once(':').with_context(|| format!("--bin {v:?}: expected GUEST=PACKAGE:BIN"))?;
            ensure!(!package.is_empty() && !bin.is_empty(), "--bin {v:?}: expected GUEST=PACKAGE:BIN");
            Source::Bin { package: package.to_string(), bin: bin.to_string() }
        }
        "--random" => {
            let bytes: u64 = value.parse().with_context(|| format!("--random {v:?}: BYTES is not a number"))?;
            ensure!(bytes <= MAX_RANDOM_BYTES, "--random {v:?}: at most {MAX_RANDOM_BYTES} bytes");
            Source::Random(bytes)
        }
        "--text" => Source::Text(value.to_string()),
        "--dir" => Source::Dir,
        "--symlink" => {
            ensure!(!value.is_empty(), "--symlink {v:?}: empty target");
            Source::Symlink(value.to_string())
        }
        "--hardlink" => Source::Hardlink(guest_path(value).with_context(|| format!("--hardlink {v:?}"))?),
        "--whiteout" => Source::Whiteout,
        "--opaque" => Source::Opaque,
        other => bail!("unknown item option {other}"),
    };
    if matches!(source, Source::Whiteout) {
        let name = path.rsplit('/').next().unwrap_or("");
        ensure!(!name.starts_with(".wh."), "--whiteout {v:?}: give the path to remove, not its whiteout");
    }
    Ok(Item { path, source, mode, owner })
}

/// `VALUE`, `VALUE:MODE` or `VALUE:MODE:UID:GID` (MODE octal).
fn split_mode_owner(v: &str) -> Result<(&str, Option<u32>, (u32, u32))> {
    let parts: Vec<&str> = v.rsplitn(4, ':').collect();
    let numeric = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let mode = |s: &str| -> Result<u32> {
        let m = u32::from_str_radix(s, 8).with_context(|| format!("mode {s:?} is not octal"))?;
        ensure!(m <= 0o7777, "mode {s:?} is more than 07777");
        Ok(m)
    };
    if parts.len() == 4 && parts[..3].iter().all(|p| numeric(p)) {
        return Ok((parts[3], Some(mode(parts[2])?), (parts[1].parse()?, parts[0].parse()?)));
    }
    if let Some((rest, m)) = v.rsplit_once(':')
        && numeric(m)
    {
        return Ok((rest, Some(mode(m)?), (0, 0)));
    }
    Ok((v, None, (0, 0)))
}

/// An absolute guest path without `.`/`..`, as a relative tar name.
fn guest_path(v: &str) -> Result<String> {
    ensure!(v.starts_with('/'), "guest path {v:?} must be absolute");
    ensure!(!v.contains('\0'), "guest path {v:?} contains NUL");
    let parts: Vec<&str> = v.split('/').filter(|c| !c.is_empty()).collect();
    ensure!(!parts.is_empty(), "guest path {v:?} names the root");
    ensure!(parts.iter().all(|c| *c != "." && *c != ".."), "guest path {v:?} has . or .. components");
    Ok(parts.join("/"))
}

fn parse_passwd(v: &str) -> Result<(String, u32, u32)> {
    let f: Vec<&str> = v.split(':').collect();
    let ok_name = |n: &str| {
        !n.is_empty() && n.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
    };
    ensure!(f.len() == 3 && ok_name(f[0]), "--passwd {v:?}: expected NAME:UID:GID (name [a-z0-9_-]+)");
    let uid = f[1].parse().with_context(|| format!("--passwd {v:?}: bad uid"))?;
    let gid = f[2].parse().with_context(|| format!("--passwd {v:?}: bad gid"))?;
    Ok((f[0].to_string(), uid, gid))
}

fn parse_platforms(v: &str) -> Result<Vec<(String, String)>> {
    let mut out = Vec::new();
    for p in v.split(',') {
        let (os, arch) = p.split_once('/').with_context(|| format!("--platforms: {p:?} is not OS/ARCH"))?;
        ensure!(!os.is_empty() && !arch.is_empty() && !arch.contains('/'), "--platforms: {p:?} is not OS/ARCH");
        ensure!(!out.iter().any(|(o, a)| o == os && a == arch), "--platforms: {p} twice");
        out.push((os.to_string(), arch.to_string()));
    }
    ensure!(
        out.iter().any(|(o, a)| o == "linux" && a == "amd64"),
        "--platforms must include linux/amd64 (the platform that runs)"
    );
    Ok(out)
}

/// What was written.
#[derive(Debug)]
pub struct Built {
    /// The digest of the top manifest (or index, with platforms).
    pub top_digest: String,
    pub layers: usize,
    pub layer_bytes: u64,
}

fn build(req: &Request, out: &Path) -> Result<Built> {
    let bins = build_bins(req)?;
    let mut layers: Vec<Vec<Entry>> = Vec::new();
    let mut files: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    for (i, items) in req.layers.iter().enumerate() {
        let mut entries = Vec::new();
        for item in items {
            entries.push(materialize(item, &bins)?);
        }
        if i == 0 && !req.passwd.is_empty() {
            let (passwd, group) = passwd_files(&req.passwd);
            entries.push(Entry::new("etc/passwd", Kind::File(passwd.into_bytes()), 0o644));
            entries.push(Entry::new("etc/group", Kind::File(group.into_bytes()), 0o644));
        }
        let entries = with_parents(entries)?;
        for e in &entries {
            if let Kind::File(data) = &e.kind {
                files.insert(e.path.clone(), data.clone());
            }
        }
        layers.push(entries);
    }
    // An empty trailing layer from `--new-layer` with nothing after it is a mistake.
    ensure!(layers.iter().all(|l| !l.is_empty()), "a layer has no content (--new-layer followed by nothing?)");
    for kind in &req.hostile {
        layers.push(hostile_layer(kind)?);
    }
    for (guest, file) in &req.digest_out {
        let data =
            files.get(guest).with_context(|| format!("--digest-out: /{guest} is not a regular file of the image"))?;
        util::write_atomic(file, format!("{}\n", hex::encode(Sha256::digest(data))).as_bytes())?;
    }
    let layout = Layout::create(out)?;
    let compression = req.compression.unwrap_or(Compression::Gzip);
    let mut layer_descs = Vec::new();
    let mut diff_ids = Vec::new();
    let mut layer_bytes = 0u64;
    for entries in &layers {
        let raw = tar(entries)?;
        diff_ids.push(format!("sha256:{}", hex::encode(Sha256::digest(&raw))));
        let blob = compression.compress(&raw)?;
        layer_bytes += blob.len() as u64;
        layer_descs.push(layout.blob(&compression.media_type(), &blob)?);
    }
    let config = image_config(req, "linux", "amd64", &diff_ids);
    let amd64 = layout.manifest(&config, &layer_descs)?;
    let tag = req.tag.clone().unwrap_or_else(|| "latest".into());
    let top = if req.platforms.is_empty() {
        amd64
    } else {
        let mut manifests = Vec::new();
        for (os, arch) in &req.platforms {
            let desc = if os == "linux" && arch == "amd64" {
                amd64.clone()
            } else {
                layout.manifest(&wrong_platform_config(req, os, arch, &diff_ids), &layer_descs)?
            };
            let mut desc = desc;
            desc["platform"] = json!({"os": os, "architecture": arch});
            manifests.push(desc);
        }
        let index = json!({"schemaVersion": 2, "mediaType": MEDIA_INDEX, "manifests": manifests});
        layout.blob(MEDIA_INDEX, &serde_json::to_vec(&index)?)?
    };
    let top_digest = top["digest"].as_str().unwrap_or_default().to_string();
    let mut top_ref = top;
    top_ref["annotations"] = json!({ REF_NAME: tag });
    let index = json!({"schemaVersion": 2, "mediaType": MEDIA_INDEX, "manifests": [top_ref]});
    util::write_atomic(&out.join("index.json"), &serde_json::to_vec(&index)?)?;
    util::write_atomic(&out.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#)?;
    Ok(Built { top_digest, layers: layers.len(), layer_bytes })
}

/// Builds the `--bin` binaries (one cargo call) and returns where each is.
fn build_bins(req: &Request) -> Result<BTreeMap<String, PathBuf>> {
    let mut packages = BTreeSet::new();
    let mut bins = BTreeSet::new();
    for item in req.layers.iter().flatten() {
        if let Source::Bin { package, bin } = &item.source {
            packages.insert(package.clone());
            bins.insert(bin.clone());
        }
    }
    if packages.is_empty() {
        return Ok(BTreeMap::new());
    }
    crate::image::cargo_build_release(MUSL_TARGET, &packages)?;
    let mut out = BTreeMap::new();
    for bin in bins {
        let path = util::target_dir().join(MUSL_TARGET).join("release").join(&bin);
        ensure!(path.is_file(), "--bin: no binary {bin} after the build (looked for {})", path.display());
        out.insert(bin, path);
    }
    Ok(out)
}

fn materialize(item: &Item, bins: &BTreeMap<String, PathBuf>) -> Result<Entry> {
    let read = |p: &Path| std::fs::read(p).with_context(|| format!("cannot read {}", p.display()));
    let (path, kind, default_mode) = match &item.source {
        Source::Host(p) => (item.path.clone(), Kind::File(read(p)?), 0o644),
        Source::Bin { bin, .. } => {
            let p = bins.get(bin).with_context(|| format!("binary {bin} was not built"))?;
            (item.path.clone(), Kind::File(read(p)?), 0o755)
        }
        Source::Random(n) => (item.path.clone(), Kind::File(random_bytes(*n)?), 0o644),
        Source::Text(t) => (item.path.clone(), Kind::File(t.clone().into_bytes()), 0o644),
        Source::Dir => (item.path.clone(), Kind::Dir, 0o755),
        Source::Symlink(t) => (item.path.clone(), Kind::Symlink(t.clone()), 0o777),
        Source::Hardlink(t) => (item.path.clone(), Kind::Hardlink(t.clone()), 0o644),
        Source::Whiteout => {
            let (dir, name) = split_parent(&item.path);
            (join(dir, &format!(".wh.{name}")), Kind::File(Vec::new()), 0o644)
        }
        Source::Opaque => (join(&item.path, ".wh..wh..opq"), Kind::File(Vec::new()), 0o644),
    };
    Ok(Entry { path, kind, mode: item.mode.unwrap_or(default_mode), uid: item.owner.0, gid: item.owner.1 })
}

fn split_parent(path: &str) -> (&str, &str) {
    path.rsplit_once('/').unwrap_or(("", path))
}

fn join(dir: &str, name: &str) -> String {
    if dir.is_empty() { name.to_string() } else { format!("{dir}/{name}") }
}

fn random_bytes(n: u64) -> Result<Vec<u8>> {
    let mut data = vec![0u8; usize::try_from(n)?];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut data))
        .context("cannot read /dev/urandom")?;
    Ok(data)
}

fn passwd_files(users: &[(String, u32, u32)]) -> (String, String) {
    let mut passwd = String::new();
    let mut group = String::new();
    let mut groups = BTreeSet::new();
    for (name, uid, gid) in users {
        passwd.push_str(&format!("{name}:x:{uid}:{gid}:{name}:/:/sbin/nologin\n"));
        if groups.insert(*gid) {
            group.push_str(&format!("{name}:x:{gid}:\n"));
        }
    }
    (passwd, group)
}

/// The entries sorted by path with their missing parent directories
/// (0755 root) added, so every directory comes before what it holds.
fn with_parents(entries: Vec<Entry>) -> Result<Vec<Entry>> {
    let mut by_path: BTreeMap<String, Entry> = BTreeMap::new();
    for e in entries {
        if let Some(old) = by_path.get(&e.path) {
            bail!("/{} is given twice in one layer ({:?} and {:?})", e.path, kind_name(&old.kind), kind_name(&e.kind));
        }
        by_path.insert(e.path.clone(), e);
    }
    let paths: Vec<String> = by_path.keys().cloned().collect();
    for p in paths {
        let mut dir = p.as_str();
        while let Some((parent, _)) = dir.rsplit_once('/') {
            match by_path.get(parent) {
                Some(e) if e.kind != Kind::Dir => bail!("/{parent} is not a directory but /{p} is below it"),
                Some(_) => {}
                None => {
                    by_path.insert(parent.to_string(), Entry::new(parent, Kind::Dir, 0o755));
                }
            }
            dir = parent;
        }
    }
    // "a-b" sorts between "a" and "a/b": a parent still comes before its children.
    Ok(by_path.into_values().collect())
}

fn kind_name(k: &Kind) -> &'static str {
    match k {
        Kind::File(_) => "file",
        Kind::Dir => "directory",
        Kind::Symlink(_) => "symlink",
        Kind::Hardlink(_) => "hard link",
        Kind::CharDevice(..) => "device",
    }
}

/// A handcrafted layer, entries in the order an attack needs them.
pub fn hostile_layer(kind: &str) -> Result<Vec<Entry>> {
    let file = |p: &str| Entry::new(p, Kind::File(b"ztinit-escaped\n".to_vec()), 0o644);
    let symlink = Entry::new("etc-link", Kind::Symlink("/etc".into()), 0o777);
    Ok(match kind {
        "path-escape" => vec![file("../escaped"), symlink, file("etc-link/ztinit-escaped")],
        "dotdot" => vec![file("../escaped")],
        "symlink-escape" => vec![symlink, file("etc-link/ztinit-escaped")],
        "hardlink-escape" => vec![Entry::new("passwd-link", Kind::Hardlink("../../../etc/passwd".into()), 0o644)],
        "device-node" => vec![Entry::new("dev-mem", Kind::CharDevice(1, 1), 0o600)],
        other => bail!("--hostile {other:?}: use path-escape, dotdot, symlink-escape, hardlink-escape or device-node"),
    })
}

fn image_config(req: &Request, os: &str, arch: &str, diff_ids: &[String]) -> Value {
    let mut env = req.env.clone();
    if !env.iter().any(|e| e.starts_with("PATH=")) {
        env.insert(0, DEFAULT_PATH.to_string());
    }
    let mut config = serde_json::Map::new();
    config.insert("Env".into(), json!(env));
    if !req.entrypoint.is_empty() {
        config.insert("Entrypoint".into(), json!(req.entrypoint));
    }
    if !req.cmd.is_empty() {
        config.insert("Cmd".into(), json!(req.cmd));
    }
    if let Some(u) = &req.user {
        config.insert("User".into(), json!(u));
    }
    if let Some(w) = &req.workdir {
        config.insert("WorkingDir".into(), json!(w));
    }
    let history: Vec<Value> =
        diff_ids.iter().map(|_| json!({"created": EPOCH, "created_by": "cargo xtask oci-image"})).collect();
    json!({
        "created": EPOCH,
        "architecture": arch,
        "os": os,
        "config": config,
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": history,
    })
}

/// The config of a platform that must never be chosen: running it fails
/// and names it.
fn wrong_platform_config(req: &Request, os: &str, arch: &str, diff_ids: &[String]) -> Value {
    let mut c = image_config(req, os, arch, diff_ids);
    c["config"]["Entrypoint"] = json!([format!("/ztinit-wrong-platform/{os}-{arch}")]);
    c["config"]["Cmd"] = json!([]);
    c["config"]["Env"] = json!([DEFAULT_PATH, format!("ZTINIT_WRONG_PLATFORM={os}/{arch}")]);
    c
}

/// An OCI layout directory being written.
struct Layout {
    dir: PathBuf,
}

impl Layout {
    /// Empties `dir` when it is an earlier layout; refuses other non-empty directories.
    fn create(dir: &Path) -> Result<Self> {
        if dir.exists() {
            let empty = std::fs::read_dir(dir)?.next().is_none();
            if !empty {
                ensure!(
                    dir.join("oci-layout").is_file(),
                    "{} exists and is not an OCI layout: not overwriting it",
                    dir.display()
                );
                std::fs::remove_dir_all(dir).with_context(|| format!("cannot clean {}", dir.display()))?;
            }
        }
        std::fs::create_dir_all(dir.join("blobs/sha256"))
            .with_context(|| format!("cannot create {}", dir.display()))?;
        Ok(Layout { dir: dir.to_path_buf() })
    }

    /// Stores a blob; its descriptor.
    fn blob(&self, media_type: &str, bytes: &[u8]) -> Result<Value> {
        let hex = hex::encode(Sha256::digest(bytes));
        let path = self.dir.join("blobs/sha256").join(&hex);
        if !path.exists() {
            util::write_atomic(&path, bytes)?;
        }
        Ok(json!({"mediaType": media_type, "digest": format!("sha256:{hex}"), "size": bytes.len()}))
    }

    fn manifest(&self, config: &Value, layers: &[Value]) -> Result<Value> {
        let config = self.blob(MEDIA_CONFIG, &serde_json::to_vec(config)?)?;
        let m = json!({"schemaVersion": 2, "mediaType": MEDIA_MANIFEST, "config": config, "layers": layers});
        self.blob(MEDIA_MANIFEST, &serde_json::to_vec(&m)?)
    }
}

// ---- tar ----

const BLOCK: usize = 512;

/// A tar stream (ustar headers, PAX records for names or link targets
/// over 100 bytes), entries in the given order, then two zero blocks.
pub fn tar(entries: &[Entry]) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    for e in entries {
        let name = if e.kind == Kind::Dir { format!("{}/", e.path) } else { e.path.clone() };
        let link = match &e.kind {
            Kind::Symlink(t) | Kind::Hardlink(t) => t.as_str(),
            _ => "",
        };
        let mut pax = String::new();
        if name.len() > 100 {
            pax.push_str(&pax_record("path", &name));
        }
        if link.len() > 100 {
            pax.push_str(&pax_record("linkpath", link));
        }
        if !pax.is_empty() {
            let pax_entry =
                Header { name: "PaxHeaders/entry", mode: 0o644, size: pax.len() as u64, ..Header::default() };
            out.extend_from_slice(&pax_entry.encode(b'x')?);
            push_padded(&mut out, pax.as_bytes());
        }
        let (typeflag, size, devs) = match &e.kind {
            Kind::File(data) => (b'0', data.len() as u64, (0, 0)),
            Kind::Dir => (b'5', 0, (0, 0)),
            Kind::Symlink(_) => (b'2', 0, (0, 0)),
            Kind::Hardlink(_) => (b'1', 0, (0, 0)),
            Kind::CharDevice(ma, mi) => (b'3', 0, (*ma, *mi)),
        };
        let h = Header {
            name: truncate(&name, 100),
            link: truncate(link, 100),
            mode: e.mode,
            uid: e.uid,
            gid: e.gid,
            size,
            dev: devs,
        };
        out.extend_from_slice(&h.encode(typeflag)?);
        if let Kind::File(data) = &e.kind {
            push_padded(&mut out, data);
        }
    }
    out.extend_from_slice(&[0u8; 2 * BLOCK]);
    Ok(out)
}

/// The longest prefix of `s` of at most `n` bytes on a char boundary.
fn truncate(s: &str, n: usize) -> &str {
    let mut end = s.len().min(n);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// `"LEN key=value\n"`, LEN counting the whole record, its own digits included.
fn pax_record(key: &str, value: &str) -> String {
    let body = key.len() + value.len() + 3; // ' ', '=', '\n'
    let mut len = body + body.to_string().len();
    if len.to_string().len() != body.to_string().len() {
        len = body + len.to_string().len();
    }
    format!("{len} {key}={value}\n")
}

fn push_padded(out: &mut Vec<u8>, data: &[u8]) {
    out.extend_from_slice(data);
    let pad = (BLOCK - data.len() % BLOCK) % BLOCK;
    out.extend(std::iter::repeat_n(0u8, pad));
}

#[derive(Default)]
struct Header<'a> {
    name: &'a str,
    link: &'a str,
    mode: u32,
    uid: u32,
    gid: u32,
    size: u64,
    dev: (u32, u32),
}

impl Header<'_> {
    fn encode(&self, typeflag: u8) -> Result<[u8; BLOCK]> {
        let mut h = [0u8; BLOCK];
        h[..self.name.len()].copy_from_slice(self.name.as_bytes());
        octal(&mut h[100..108], u64::from(self.mode))?;
        octal(&mut h[108..116], u64::from(self.uid))?;
        octal(&mut h[116..124], u64::from(self.gid))?;
        octal(&mut h[124..136], self.size)?;
        octal(&mut h[136..148], 0)?; // mtime: 0, for stable digests
        h[148..156].fill(b' ');
        h[156] = typeflag;
        h[157..157 + self.link.len()].copy_from_slice(self.link.as_bytes());
        h[257..263].copy_from_slice(b"ustar\0");
        h[263..265].copy_from_slice(b"00");
        h[265..269].copy_from_slice(b"root");
        h[297..301].copy_from_slice(b"root");
        octal(&mut h[329..337], u64::from(self.dev.0))?;
        octal(&mut h[337..345], u64::from(self.dev.1))?;
        let sum: u64 = h.iter().map(|b| u64::from(*b)).sum();
        // Six octal digits, NUL, space (the historical layout every reader takes).
        let digits = format!("{sum:06o}");
        h[148..154].copy_from_slice(digits.as_bytes());
        h[154] = 0;
        h[155] = b' ';
        Ok(h)
    }
}

/// Zero-padded octal filling the field but its last byte (NUL).
fn octal(field: &mut [u8], value: u64) -> Result<()> {
    let width = field.len() - 1;
    let digits = format!("{value:0width$o}");
    ensure!(digits.len() == width, "{value} does not fit a {width}-digit tar field");
    field[..width].copy_from_slice(digits.as_bytes());
    field[width] = 0;
    Ok(())
}

// ---- compression ----

/// gzip (RFC 1952) with mtime 0, no name and OS "unknown", so the bytes
/// depend on the input only.
pub fn gzip(raw: &[u8]) -> Vec<u8> {
    let mut out = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff];
    out.extend_from_slice(&miniz_oxide::deflate::compress_to_vec(raw, 6));
    out.extend_from_slice(&crc32(raw).to_le_bytes());
    // ISIZE is the length modulo 2^32 by definition.
    out.extend_from_slice(&(raw.len() as u64).to_le_bytes()[..4]);
    out
}

/// CRC-32 (IEEE, reflected), as gzip's trailer has it.
pub fn crc32(data: &[u8]) -> u32 {
    let mut table = [0u32; 256];
    for (i, slot) in (0u32..).zip(table.iter_mut()) {
        let mut c = i;
        for _ in 0..8 {
            c = if c & 1 == 1 { 0xedb8_8320 ^ (c >> 1) } else { c >> 1 };
        }
        *slot = c;
    }
    let mut crc = !0u32;
    for b in data {
        crc = table[usize::from(crc.to_le_bytes()[0] ^ b)] ^ (crc >> 8);
    }
    !crc
}

/// zstd through the host tool (no pure-Rust encoder is cheap enough) with
/// fixed settings, so the bytes depend on the input only; level 3: the
/// bench's 64 MiB random layer would take minutes at -19.
fn zstd(raw: &[u8]) -> Result<Vec<u8>> {
    if !util::have_program("zstd") {
        bail!("--compression zstd needs the zstd program (apt-get install zstd)");
    }
    let mut child = Command::new("zstd")
        .args(["-q", "-3", "-T1", "--no-check", "-c", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .context("cannot run zstd")?;
    let mut stdin = child.stdin.take().context("no zstd stdin")?;
    let raw = raw.to_vec();
    let feeder = std::thread::spawn(move || stdin.write_all(&raw));
    let out = child.wait_with_output()?;
    feeder.join().map_err(|_| anyhow::anyhow!("zstd feeder panicked"))??;
    ensure!(out.status.success(), "zstd failed ({})", out.status);
    Ok(out.stdout)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    /// The tar stream as GNU tar lists it, runs of spaces squeezed to one.
    fn tar_listing(raw: &[u8]) -> String {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("l.tar");
        std::fs::write(&f, raw).unwrap();
        let out = Command::new("tar").env("TZ", "UTC").args(["--numeric-owner", "-tvf"]).arg(&f).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let text = String::from_utf8(out.stdout).unwrap();
        text.lines().map(|l| l.split_whitespace().collect::<Vec<_>>().join(" ") + "\n").collect()
    }

    #[test]
    fn crc32_and_gzip_match_the_reference() {
        assert_eq!(crc32(b"123456789"), 0xcbf4_3926);
        let raw: Vec<u8> = (0..100_000u32).map(|i| u8::try_from(i % 251).unwrap()).collect();
        let gz = gzip(&raw);
        assert_eq!(gz, gzip(&raw), "not deterministic");
        let mut child =
            Command::new("gzip").args(["-dc"]).stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().unwrap();
        let mut stdin = child.stdin.take().unwrap();
        let feed = gz.clone();
        let t = std::thread::spawn(move || stdin.write_all(&feed).unwrap());
        let out = child.wait_with_output().unwrap();
        t.join().unwrap();
        assert!(out.status.success());
        assert_eq!(out.stdout, raw);
    }

    #[test]
    fn tar_streams_are_read_by_gnu_tar_with_our_fields() {
        let long = format!("d/{}", "n".repeat(120));
        let mut file = Entry::new("d/file", Kind::File(b"hello".to_vec()), 0o4755);
        file.uid = 1000;
        file.gid = 1001;
        let entries = vec![
            Entry::new("d", Kind::Dir, 0o755),
            file,
            Entry::new("d/link", Kind::Symlink("/etc".into()), 0o777),
            Entry::new("d/hard", Kind::Hardlink("d/file".into()), 0o644),
            Entry::new(&long, Kind::File(vec![7; 600]), 0o600),
            Entry::new("null", Kind::CharDevice(1, 3), 0o666),
        ];
        let raw = tar(&entries).unwrap();
        assert_eq!(raw.len() % BLOCK, 0);
        assert_eq!(raw, tar(&entries).unwrap());
        let listing = tar_listing(&raw);
        for want in [
            "drwxr-xr-x 0/0 0 1970-01-01 00:00 d/\n",
            "-rwsr-xr-x 1000/1001 5 1970-01-01 00:00 d/file\n",
            "lrwxrwxrwx 0/0 0 1970-01-01 00:00 d/link -> /etc\n",
            "hrw-r--r-- 0/0 0 1970-01-01 00:00 d/hard link to d/file\n",
            &format!("-rw------- 0/0 600 1970-01-01 00:00 {long}\n"),
            "crw-rw-rw- 0/0 1,3 1970-01-01 00:00 null\n",
        ] {
            assert!(listing.contains(want), "{want:?} not in\n{listing}");
        }
    }

    #[test]
    fn pax_records_count_their_own_length() {
        for n in [1, 80, 89, 90, 95, 96, 97, 98, 99, 100, 995, 996, 997, 999, 1000] {
            let r = pax_record("path", &"x".repeat(n));
            let (len, _) = r.split_once(' ').unwrap();
            assert_eq!(len.parse::<usize>().unwrap(), r.len(), "{r}");
        }
    }

    #[test]
    fn hostile_layers_keep_their_escaping_names_in_order() {
        let listing = tar_listing(&tar(&hostile_layer("path-escape").unwrap()).unwrap());
        let names: Vec<&str> = listing.lines().map(|l| l.split_whitespace().nth(5).unwrap()).collect();
        assert_eq!(names, ["../escaped", "etc-link", "etc-link/ztinit-escaped"]);
        assert!(listing.contains("etc-link -> /etc"), "{listing}");
        assert!(hostile_layer("nope").is_err());
        for k in ["dotdot", "symlink-escape", "hardlink-escape", "device-node"] {
            assert!(!tar(&hostile_layer(k).unwrap()).unwrap().is_empty());
        }
    }

    #[test]
    fn items_parse_with_modes_owners_and_clear_errors() {
        let i = parse_item("/bin/app=/host/x:0750:1000:1000", "--file").unwrap();
        assert_eq!(
            (i.path.as_str(), i.source, i.mode, i.owner),
            ("bin/app", Source::Host("/host/x".into()), Some(0o750), (1000, 1000))
        );
        let i = parse_item("/bin/app=ztinit-testkit:testkit:0755", "--bin").unwrap();
        assert_eq!(i.source, Source::Bin { package: "ztinit-testkit".into(), bin: "testkit".into() });
        assert_eq!(i.mode, Some(0o755));
        let i = parse_item("/data/r.bin=4096", "--random").unwrap();
        assert_eq!((i.source, i.mode), (Source::Random(4096), None));
        let i = parse_item("/home/app:0700:1000:1000", "--dir").unwrap();
        assert_eq!((i.path.as_str(), i.mode, i.owner), ("home/app", Some(0o700), (1000, 1000)));
        let i = parse_item("/etc/motd", "--whiteout").unwrap();
        assert_eq!(materialize(&i, &BTreeMap::new()).unwrap().path, "etc/.wh.motd");
        let i = parse_item("/srv", "--opaque").unwrap();
        assert_eq!(materialize(&i, &BTreeMap::new()).unwrap().path, "srv/.wh..wh..opq");
        for (v, opt) in [
            ("bin/app=/x", "--file"),
            ("/a/../b=/x", "--file"),
            ("/=/x", "--file"),
            ("/bin/app", "--file"),
            ("/x=/h:9", "--file"),
            ("/x=/h:17777", "--file"),
            ("/x=pkg", "--bin"),
            ("/x=lots", "--random"),
            ("/x=2000000000", "--random"),
            ("/etc/.wh.motd", "--whiteout"),
            ("/x=", "--symlink"),
            ("/x=rel", "--hardlink"),
        ] {
            assert!(parse_item(v, opt).is_err(), "{opt} {v}");
        }
    }

    #[test]
    fn parents_come_first_and_clashes_are_refused() {
        let e = with_parents(vec![
            Entry::new("a/b/c", Kind::File(vec![]), 0o644),
            Entry::new("a-b", Kind::File(vec![]), 0o644),
            Entry::new("a", Kind::Dir, 0o700),
        ])
        .unwrap();
        let names: Vec<(&str, u32)> = e.iter().map(|e| (e.path.as_str(), e.mode)).collect();
        assert_eq!(names, [("a", 0o700), ("a-b", 0o644), ("a/b", 0o755), ("a/b/c", 0o644)]);
        let twice = with_parents(vec![Entry::new("x", Kind::Dir, 0), Entry::new("x", Kind::File(vec![]), 0)]);
        assert!(twice.unwrap_err().to_string().contains("given twice"));
        let under_file = with_parents(vec![Entry::new("x", Kind::File(vec![]), 0), Entry::new("x/y", Kind::Dir, 0)]);
        assert!(under_file.unwrap_err().to_string().contains("not a directory"));
    }

    #[test]
    fn layouts_are_deterministic_and_complete() {
        let dir = tempfile::tempdir().unwrap();
        let host = dir.path().join("hello.txt");
        std::fs::write(&host, "hello\n").unwrap();
        let build_into = |name: &str, extra: &[&str]| {
            let out = dir.path().join(name);
            let mut a = args(&[
                "--out",
                out.to_str().unwrap(),
                "--file",
                &format!("/srv/hello.txt={}:0640:1000:1000", host.display()),
                "--text",
                "/etc/motd=hi",
                "--passwd",
                "root:0:0",
                "--passwd",
                "app:1000:1000",
                "--new-layer",
                "--whiteout",
                "/etc/motd",
                "--entrypoint",
                "/bin/app",
                "--cmd",
                "serve",
                "--env",
                "A=1",
                "--user",
                "app",
                "--workdir",
                "/srv",
                "--tag",
                "1",
            ]);
            a.extend(args(extra));
            let req = parse_args(&a).unwrap().unwrap();
            (build(&req, &out).unwrap(), out)
        };
        let (a, out) = build_into("a", &["--digest-out", &format!("/srv/hello.txt={}/h.sha", dir.path().display())]);
        let (b, _) = build_into("b", &[]);
        assert_eq!(a.top_digest, b.top_digest, "same arguments, same digest");
        assert_eq!(a.layers, 2);
        assert_eq!(
            std::fs::read_to_string(dir.path().join("h.sha")).unwrap().trim(),
            hex::encode(Sha256::digest(b"hello\n"))
        );
        let read_json = |p: PathBuf| -> Value { serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap() };
        let blob = |d: &str| out.join("blobs/sha256").join(d.strip_prefix("sha256:").unwrap());
        let index = read_json(out.join("index.json"));
        assert_eq!(index["manifests"][0]["annotations"][REF_NAME], "1");
        assert_eq!(index["manifests"][0]["digest"], a.top_digest.as_str());
        let manifest = read_json(blob(&a.top_digest));
        assert_eq!(manifest["mediaType"], MEDIA_MANIFEST);
        let config = read_json(blob(manifest["config"]["digest"].as_str().unwrap()));
        assert_eq!(config["config"]["User"], "app");
        assert_eq!(config["config"]["Entrypoint"], json!(["/bin/app"]));
        assert_eq!(config["config"]["Env"], json!([DEFAULT_PATH, "A=1"]));
        let layers = manifest["layers"].as_array().unwrap();
        for (i, l) in layers.iter().enumerate() {
            assert_eq!(l["mediaType"], format!("{MEDIA_LAYER}+gzip"));
            let gz = std::fs::read(blob(l["digest"].as_str().unwrap())).unwrap();
            assert_eq!(l["size"], gz.len());
            let out = Command::new("sh")
                .arg("-c")
                .arg(format!("gzip -dc < {} | sha256sum", blob(l["digest"].as_str().unwrap()).display()))
                .output()
                .unwrap();
            let diff_id = String::from_utf8(out.stdout).unwrap();
            assert_eq!(
                format!("sha256:{}", diff_id.split_whitespace().next().unwrap()),
                config["rootfs"]["diff_ids"][i].as_str().unwrap()
            );
        }
        let first = std::fs::read(blob(layers[0]["digest"].as_str().unwrap())).unwrap();
        let mut gunzip = Command::new("gzip").arg("-dc").stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().unwrap();
        gunzip.stdin.take().unwrap().write_all(&first).unwrap();
        let listing = tar_listing(&gunzip.wait_with_output().unwrap().stdout);
        assert!(listing.contains("-rw-r----- 1000/1000 6 1970-01-01 00:00 srv/hello.txt"), "{listing}");
        assert!(listing.contains("etc/passwd") && listing.contains("etc/group"), "{listing}");
        // Rebuilding over an earlier layout is fine; over anything else it is refused.
        build_into("a", &[]);
        let other = dir.path().join("other");
        std::fs::create_dir(&other).unwrap();
        std::fs::write(other.join("x"), "x").unwrap();
        let req = parse_args(&args(&["--out", other.to_str().unwrap(), "--text", "/a=b"])).unwrap().unwrap();
        assert!(build(&req, &other).unwrap_err().to_string().contains("not an OCI layout"));
    }

    #[test]
    fn platforms_make_an_index_whose_other_entries_fail_loudly() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("multi");
        let a = args(&[
            "--out",
            out.to_str().unwrap(),
            "--text",
            "/a=b",
            "--entrypoint",
            "/bin/app",
            "--platforms",
            "linux/arm64,linux/amd64",
            "--compression",
            "none",
        ]);
        let req = parse_args(&a).unwrap().unwrap();
        let built = build(&req, &out).unwrap();
        let read = |d: &str| -> Value {
            serde_json::from_slice(&std::fs::read(out.join("blobs/sha256").join(&d[7..])).unwrap()).unwrap()
        };
        let index = read(&built.top_digest);
        assert_eq!(index["mediaType"], MEDIA_INDEX);
        let m = index["manifests"].as_array().unwrap();
        assert_eq!(m[0]["platform"]["architecture"], "arm64");
        assert_eq!(m[1]["platform"]["architecture"], "amd64");
        let config_of = |i: usize| read(read(m[i]["digest"].as_str().unwrap())["config"]["digest"].as_str().unwrap());
        assert_eq!(config_of(0)["config"]["Entrypoint"], json!(["/ztinit-wrong-platform/linux-arm64"]));
        assert_eq!(config_of(1)["config"]["Entrypoint"], json!(["/bin/app"]));
        assert_eq!(config_of(1)["architecture"], "amd64");
        let layer = &read(m[1]["digest"].as_str().unwrap())["layers"][0];
        assert_eq!(layer["mediaType"], MEDIA_LAYER);
        assert!(parse_platforms("linux/arm64").is_err());
        assert!(parse_platforms("linux/amd64,linux/amd64").is_err());
        assert!(parse_platforms("linux").is_err());
    }

    #[test]
    fn passwd_lines_and_bad_arguments() {
        let (p, g) = passwd_files(&[("root".into(), 0, 0), ("app".into(), 1000, 1000), ("web".into(), 1001, 1000)]);
        assert_eq!(
            p,
            "root:x:0:0:root:/:/sbin/nologin\napp:x:1000:1000:app:/:/sbin/nologin\nweb:x:1001:1000:web:/:/sbin/nologin\n"
        );
        assert_eq!(g, "root:x:0:\napp:x:1000:\n");
        assert!(parse_passwd("App:1:1").is_err());
        assert!(parse_passwd("app:1").is_err());
        assert!(parse_args(&args(&["--text", "/a=b"])).is_err(), "--out is required");
        assert!(parse_args(&args(&["--out", "x", "--compression", "lz4"])).is_err());
        assert!(parse_args(&args(&["--out", "x", "--env", "=1"])).is_err());
        assert!(parse_args(&args(&["--out", "x", "--hostile", "nope"])).is_err());
    }

    #[test]
    fn zstd_layers_decompress_to_the_tar() {
        if !util::have_program("zstd") {
            assert!(zstd(b"x").unwrap_err().to_string().contains("apt-get install zstd"));
            return;
        }
        let raw = tar(&[Entry::new("a", Kind::File(vec![1; 5000]), 0o644)]).unwrap();
        let z = zstd(&raw).unwrap();
        assert_eq!(z, zstd(&raw).unwrap());
        assert_eq!(&z[..4], &[0x28, 0xb5, 0x2f, 0xfd]);
        let mut child =
            Command::new("zstd").args(["-dc"]).stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().unwrap();
        child.stdin.take().unwrap().write_all(&z).unwrap();
        assert_eq!(child.wait_with_output().unwrap().stdout, raw);
    }
}
