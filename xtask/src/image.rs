//! `cargo xtask image`: a reproducible newc initramfs from a manifest.
//!
//! Entries are written in path order (component-wise, so parents come
//! first), with uid/gid 0 unless the manifest says otherwise, every mtime
//! set to `SOURCE_DATE_EPOCH` (default 0), inode numbers counting from 1
//! and nlink 1 (no hard links). Two builds from the same inputs are
//! byte-identical.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::cli;
use crate::cpio;
use crate::elf;
use crate::kernel;
use crate::manifest::{self, BuildRef, Compression, DeviceType, Loaded, MUSL_TARGET};
use crate::repro;
use crate::util;

/// Programs that make an image interactive; refused unless `debug = true`.
const SHELLS: &[&str] =
    &["sh", "bash", "ash", "dash", "busybox", "zsh", "ksh", "mksh", "csh", "tcsh", "fish", "toybox"];
/// Symlink hops followed when the config check reads a file.
const MAX_LINK_HOPS: usize = 16;
/// Bytes that mark a file as TEST ONLY (the fake libnvidia-ml.so.1 embeds
/// them): only images with `[image] test = true` may contain such a file,
/// whichever way it got in (build, source, copy under another name).
pub const TEST_ONLY_MARKER: &[u8] = b"ZTINIT-TEST-ONLY";
/// Files larger than this are not scanned for markers (no test double is).
const MAX_SCAN: u64 = 64 << 20;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Data {
    Host(PathBuf),
    Bytes(Vec<u8>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Node {
    Dir,
    File(Data),
    Symlink(String),
    Device { kind: DeviceType, major: u32, minor: u32 },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub node: Node,
    /// Permission bits only.
    pub perm: u32,
    pub uid: u32,
    pub gid: u32,
    /// What put it there, for messages.
    pub origin: String,
}

/// The image contents keyed by guest path without the leading `/`.
#[derive(Debug, Default)]
pub struct Tree {
    entries: BTreeMap<String, Entry>,
}

/// A written image.
pub struct Built {
    pub path: PathBuf,
    pub size: u64,
    pub entries: usize,
}

pub fn cmd(args: &[String]) -> Result<()> {
    if let Some(rest) = crate::disk_image::format_disk(args)? {
        return crate::disk_image::cmd(&rest);
    }
    let mut manifest = None;
    let mut out = None;
    let mut list = false;
    let mut inspect = None;
    const USAGE: &str = "usage: cargo xtask image --manifest rootfs/NAME.toml [--out PATH] [--list]
       cargo xtask image --inspect IMAGE.cpio   (lists an uncompressed image)
       cargo xtask image --format disk --help   (a dm-verity root disk for Kata)";
    let mut p = cli::Args::new(args, USAGE);
    while let Some(arg) = p.next()? {
        match arg {
            cli::Long("manifest") => manifest = Some(PathBuf::from(p.value()?)),
            cli::Long("out") => out = Some(PathBuf::from(p.value()?)),
            cli::Long("list") => list = true,
            cli::Long("inspect") => inspect = Some(PathBuf::from(p.value()?)),
            cli::Short('h') | cli::Long("help") => return p.help(),
            other => {
                let e = other.unexpected();
                return Err(p.error(e));
            }
        }
    }
    if let Some(path) = inspect {
        let bytes = std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
        let members = cpio::parse(&bytes)
            .map_err(|e| anyhow::anyhow!("{}: {e} (compressed images cannot be inspected)", path.display()))?;
        for m in members {
            println!("{:06o} {:>5}:{:<5} {:>10} /{}", m.mode, m.uid, m.gid, m.data.len(), m.name);
        }
        return Ok(());
    }
    let manifest = manifest.context("image: --manifest is required")?;
    if out.is_none() && !list {
        bail!("image: give --out PATH, --list, or both");
    }
    let loaded = manifest::load(&manifest)?;
    let tree = resolve(&loaded)?;
    if list {
        print!("{}", tree.listing()?);
    }
    if let Some(out) = out {
        let built = write(&tree, loaded.compression, &out)?;
        println!("image: {} entries, {} -> {}", built.entries, util::human_size(built.size), built.path.display());
    }
    Ok(())
}

/// Builds the image of a manifest into `out` (what the harness, demo and
/// bench call).
pub fn build(manifest: &Path, out: &Path) -> Result<Built> {
    build_with_config(manifest, &[], out)
}

/// [`build`] with `config_append` files merged, in order, into the baked
/// config ([`merge_config`]; the harness's `config_append`: e.g. a
/// `[[volumes]]` entry whose root hash is known only once a prepare step
/// has built the disk, or this run's pinned KBS certificate in `[kbs]`).
pub fn build_with_config(manifest: &Path, config_append: &[PathBuf], out: &Path) -> Result<Built> {
    let (loaded, tree) = load_and_resolve(manifest, config_append)?;
    write(&tree, loaded.compression, out)
}

/// The manifest with `config_append` and its checked entries (what both
/// image formats are written from).
pub fn load_and_resolve(manifest: &Path, config_append: &[PathBuf]) -> Result<(Loaded, Tree)> {
    let mut loaded = manifest::load(manifest)?;
    if !config_append.is_empty() && loaded.config.is_none() {
        bail!("{}: config_append needs a [config] in the manifest", manifest.display());
    }
    loaded.config_append = config_append.to_vec();
    let tree = resolve(&loaded)?;
    Ok((loaded, tree))
}

/// Where the manifest installs ztinit, if it does.
pub fn ztinit_path(m: &Loaded) -> Option<String> {
    m.ztinit.as_ref().filter(|z| z.install).map(|z| z.path.clone().unwrap_or_else(|| "/init".into()))
}

/// Turns a manifest into the full, checked list of entries.
pub fn resolve(m: &Loaded) -> Result<Tree> {
    let shown = m.path.display().to_string();
    let mut tree = Tree::default();
    let binaries = build_binaries(m)?;

    if let Some(path) = ztinit_path(m) {
        let bin = &binaries[&ztinit_ref()];
        tree.add(&path, Node::File(Data::Host(bin.clone())), 0o755, 0, 0, "ztinit")?;
    }
    if let Some((c, source)) = &m.config {
        let mut text =
            std::fs::read(source).with_context(|| format!("{shown}: cannot read config {}", source.display()))?;
        if !m.config_append.is_empty() {
            let mut additions = Vec::new();
            for extra in &m.config_append {
                let more = std::fs::read_to_string(extra)
                    .with_context(|| format!("{shown}: cannot read config addition {}", extra.display()))?;
                additions.push((extra.display().to_string(), more));
            }
            let base = String::from_utf8(text)
                .map_err(|_| anyhow::anyhow!("{shown}: config {} is not UTF-8", source.display()))?;
            text = merge_config(&base, &additions)
                .with_context(|| format!("{shown}: config {} with its additions", source.display()))?
                .into_bytes();
        }
        let path = c.path.clone().unwrap_or_else(|| ztinit::config::DEFAULT_PATH.into());
        tree.add(&path, Node::File(Data::Bytes(text)), 0o400, 0, 0, &format!("config {}", source.display()))?;
    }
    let mut elf_copies: BTreeMap<PathBuf, String> = BTreeMap::new();
    for f in &m.files {
        let origin = format!("[[file]] {}", f.path);
        let (host, data) = match (&f.source, &f.build, &f.text, &f.peer) {
            (Some(s), None, None, None) => (Some(PathBuf::from(s)), Data::Host(PathBuf::from(s))),
            (None, Some(b), None, None) => (Some(binaries[b].clone()), Data::Host(binaries[b].clone())),
            (None, None, Some(t), None) => (None, Data::Bytes(t.clone().into_bytes())),
            (None, None, None, Some(p)) => {
                let path = crate::peers::require(p).with_context(|| format!("{shown}: {origin}"))?;
                (Some(path.clone()), Data::Host(path))
            }
            _ => bail!("{shown}: {origin}: give exactly one of source, build, text, peer"),
        };
        let mut perm = f.mode;
        if let Some(host) = &host {
            let head = read_head(host).with_context(|| format!("{shown}: {origin}"))?;
            if elf::is_elf(&head) {
                perm.get_or_insert(0o755);
                let sysroot = PathBuf::from(f.sysroot.as_deref().unwrap_or("/"));
                for dep in elf::closure(host, &f.path, &sysroot).with_context(|| format!("{shown}: {origin}"))? {
                    let from = format!("ELF dependency of {}", f.path);
                    // One copy per host file: a second name for it (ld.so is
                    // both PT_INTERP in /lib64 and libc's DT_NEEDED) is a link.
                    let canonical = dep.host_path.canonicalize().unwrap_or_else(|_| dep.host_path.clone());
                    let node = match elf_copies.get(&canonical) {
                        Some(first) if first != &dep.guest_path => Node::Symlink(first.clone()),
                        _ => {
                            elf_copies.insert(canonical, dep.guest_path.clone());
                            Node::File(Data::Host(dep.host_path))
                        }
                    };
                    let perm = if matches!(node, Node::Symlink(_)) { 0o777 } else { 0o755 };
                    tree.add_or_same(&dep.guest_path, node, perm, 0, 0, &from)?;
                }
            }
        }
        tree.add(&f.path, Node::File(data), perm.unwrap_or(0o644), f.uid, f.gid, &origin)?;
    }
    for d in &m.dirs {
        tree.add_or_same(&d.path, Node::Dir, d.mode.unwrap_or(0o755), d.uid, d.gid, &format!("[[dir]] {}", d.path))?;
    }
    for s in &m.symlinks {
        tree.add(&s.path, Node::Symlink(s.target.clone()), 0o777, 0, 0, &format!("[[symlink]] {}", s.path))?;
    }
    for d in &m.devices {
        let node = Node::Device { kind: d.kind, major: d.major, minor: d.minor };
        tree.add(&d.path, node, d.mode.unwrap_or(0o600), d.uid, d.gid, &format!("[[device]] {}", d.path))?;
    }
    if !m.modules.is_empty() {
        add_modules(m, &mut tree)?;
    }
    tree.add_parents();
    if !m.debug {
        tree.refuse_shells().with_context(|| format!("{shown}: refused"))?;
    }
    let test_only = tree.test_only_files();
    if !test_only.is_empty() {
        if !m.test {
            bail!(
                "{shown}: refused: TEST-ONLY files would be in the image (only a test image, [image] test = true, \
                 may contain them): {}",
                test_only.join(", ")
            );
        }
        println!("image: test image with TEST-ONLY files: {}", test_only.join(", "));
    }
    if let Some((c, source)) = &m.config {
        let guest = c.path.clone().unwrap_or_else(|| ztinit::config::DEFAULT_PATH.into());
        if c.check {
            let precompiled = check_config(&tree, &guest)
                .with_context(|| format!("{shown}: baked config {} is invalid", source.display()))?;
            // ztinit reads only the default path, so only that file's
            // program is of use.
            if let Some(bytes) = precompiled.filter(|_| guest == ztinit::config::DEFAULT_PATH) {
                let origin = format!("seccomp program of {}", source.display());
                tree.add(ztinit::sandbox::precompiled::PATH, Node::File(Data::Bytes(bytes)), 0o400, 0, 0, &origin)?;
            }
        } else {
            println!("image: not checking {} (config check = false)", source.display());
        }
    }
    Ok(tree)
}

fn ztinit_ref() -> BuildRef {
    BuildRef { package: "ztinit".into(), bin: "ztinit".into(), target: MUSL_TARGET.into() }
}

fn read_head(path: &Path) -> Result<Vec<u8>> {
    use std::io::Read;
    let mut f = std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let mut head = vec![0u8; 64];
    let n = f.read(&mut head)?;
    head.truncate(n);
    Ok(head)
}

/// Builds every workspace binary the manifest names (one cargo call per
/// target) and returns where each one is.
fn build_binaries(m: &Loaded) -> Result<BTreeMap<BuildRef, PathBuf>> {
    let mut refs: BTreeSet<BuildRef> = m.files.iter().filter_map(|f| f.build.clone()).collect();
    if m.ztinit.as_ref().is_some_and(|z| z.install) {
        refs.insert(ztinit_ref());
    }
    let mut by_target: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for r in &refs {
        by_target.entry(r.target.clone()).or_default().insert(r.package.clone());
    }
    for (target, packages) in &by_target {
        cargo_build_release(target, packages)?;
    }
    let mut out = BTreeMap::new();
    for r in refs {
        let path = util::target_dir().join(&r.target).join("release").join(&r.bin);
        if !path.is_file() {
            bail!(
                "{}: package {} has no binary {} (looked for {})",
                m.path.display(),
                r.package,
                r.bin,
                path.display()
            );
        }
        out.insert(r, path);
    }
    Ok(out)
}

pub fn cargo_build_release(target: &str, packages: &BTreeSet<String>) -> Result<()> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    // The same flags as `cargo xtask repro`, so the image holds the binary it checks.
    repro::release_build(&mut cmd, &util::workspace_root(), target);
    for p in packages {
        cmd.args(["-p", p]);
    }
    util::run(&mut cmd)
        .with_context(|| format!("building {} for {target}", packages.iter().cloned().collect::<Vec<_>>().join(", ")))
}

fn add_modules(m: &Loaded, tree: &mut Tree) -> Result<()> {
    let profile = m.kernel.clone().unwrap_or_else(|| kernel::DEFAULT_PROFILE.to_string());
    let k = kernel::ensure(&profile)?;
    let moddir = k.modules_dir();
    let dep_text = std::fs::read_to_string(moddir.join("modules.dep"))
        .with_context(|| format!("cannot read {}", moddir.join("modules.dep").display()))?;
    let deps = parse_modules_dep(&dep_text);
    let mut by_name: BTreeMap<String, String> = BTreeMap::new();
    for path in deps.keys() {
        by_name.insert(module_name(path), path.clone());
    }
    let mut wanted = BTreeSet::new();
    for entry in &m.modules {
        let name = entry.name.replace('-', "_");
        let Some(path) = by_name.get(&name) else {
            bail!(
                "{}: module {} is not built in the {profile} kernel (modules: {})",
                m.path.display(),
                entry.name,
                by_name.keys().cloned().collect::<Vec<_>>().join(", ")
            );
        };
        // modules.dep lists the full transitive closure on each line.
        wanted.insert(path.clone());
        wanted.extend(deps[path].iter().cloned());
    }
    let guest_dir = format!("/lib/modules/{}", k.release);
    let mut dep_out = String::new();
    for path in &wanted {
        let host = moddir.join(path);
        if !host.is_file() {
            bail!("{} listed in modules.dep but missing", host.display());
        }
        tree.add(
            &format!("{guest_dir}/{path}"),
            Node::File(Data::Host(host)),
            0o644,
            0,
            0,
            &format!("module {}", module_name(path)),
        )?;
        let list = deps.get(path).map(|d| d.join(" ")).unwrap_or_default();
        dep_out.push_str(&format!("{path}:{}{list}\n", if list.is_empty() { "" } else { " " }));
    }
    tree.add(
        &format!("{guest_dir}/modules.dep"),
        Node::File(Data::Bytes(dep_out.into_bytes())),
        0o644,
        0,
        0,
        "generated modules.dep",
    )?;
    let builtin = moddir.join("modules.builtin");
    if builtin.is_file() {
        tree.add(
            &format!("{guest_dir}/modules.builtin"),
            Node::File(Data::Host(builtin)),
            0o644,
            0,
            0,
            "modules.builtin",
        )?;
    }
    Ok(())
}

/// `modules.dep`: `path: dep1 dep2` per line, ordered map by module path.
pub fn parse_modules_dep(text: &str) -> BTreeMap<String, Vec<String>> {
    text.lines()
        .filter_map(|l| l.split_once(':'))
        .map(|(m, d)| (m.trim().to_string(), d.split_whitespace().map(str::to_string).collect()))
        .collect()
}

/// `kernel/crypto/sm4_generic.ko.zst` -> `sm4_generic`.
pub fn module_name(path: &str) -> String {
    let file = path.rsplit('/').next().unwrap_or(path);
    let stem = file.split(".ko").next().unwrap_or(file);
    stem.replace('-', "_")
}

/// The baked config with `config_append` files merged in, in order: a
/// table the base already has gets the addition's keys (a key it names
/// replaces the base's value), an array of tables is extended, anything
/// else is added. The base keeps its text and comments. This is how a
/// scenario bakes something known only at run time into a section the
/// base already has (the KBS's per-run certificate into `[kbs]`), which
/// appending text cannot do (TOML forbids a second `[kbs]`).
pub fn merge_config(base: &str, additions: &[(String, String)]) -> Result<String> {
    let mut doc: toml_edit::DocumentMut = base.parse().context("invalid TOML")?;
    for (origin, text) in additions {
        let add: toml_edit::DocumentMut = text.parse().with_context(|| format!("{origin}: invalid TOML"))?;
        for (key, item) in add.as_table().iter() {
            merge_item(doc.as_table_mut(), key, item.clone());
        }
    }
    Ok(doc.to_string())
}

fn merge_item(into: &mut toml_edit::Table, key: &str, mut item: toml_edit::Item) {
    use toml_edit::Item;
    match (into.get_mut(key), &mut item) {
        (Some(Item::Table(have)), Item::Table(add)) => {
            for (k, v) in add.iter() {
                merge_item(have, k, v.clone());
            }
        }
        (Some(Item::ArrayOfTables(have)), Item::ArrayOfTables(add)) => {
            for t in add.iter_mut() {
                unposition(t);
                have.push(t.clone());
            }
        }
        _ => {
            if let Item::Table(t) = &mut item {
                unposition(t);
            }
            if let Item::ArrayOfTables(a) = &mut item {
                a.iter_mut().for_each(unposition);
            }
            into.insert(key, item);
        }
    }
}

/// Forgets where a table and its sub-tables stood in their own file: a
/// table renders at its position among all of the document's, so a
/// `[volumes.verity]` keeping its fragment position could land before its
/// `[[volumes]]`. Without one they follow the base's tables, parents first.
fn unposition(t: &mut toml_edit::Table) {
    t.set_position(None);
    for (_, item) in t.iter_mut() {
        match item {
            toml_edit::Item::Table(sub) => unposition(sub),
            toml_edit::Item::ArrayOfTables(a) => a.iter_mut().for_each(unposition),
            _ => {}
        }
    }
}

/// Validates the baked configuration as ztinit will at boot, and compiles
/// its workload's seccomp program when that depends on the configuration
/// alone (`ztinit::sandbox::precompiled`): the file's bytes.
fn check_config(tree: &Tree, guest: &str) -> Result<Option<Vec<u8>>> {
    let key = guest.trim_start_matches('/');
    let Some(Entry { node: Node::File(data), .. }) = tree.entries.get(key) else {
        bail!("{guest} is not a file in the image");
    };
    let bytes = read_data(data)?;
    let text = String::from_utf8(bytes).map_err(|_| anyhow::anyhow!("{guest} is not UTF-8"))?;
    let files = ImageFiles { tree };
    let src = ztinit::config::Sources { origin: guest, text: &text, cmdline: None, files: &files };
    match ztinit::config::Config::load(src) {
        Ok(config) => ztinit::sandbox::precompiled::build(&text, &config.workload, &config.sandbox)
            .map_err(|e| anyhow::anyhow!("its seccomp program does not compile: {e}")),
        Err(e) => bail!("{}", e.issues().join("\n    ")),
    }
}

fn read_data(data: &Data) -> Result<Vec<u8>> {
    match data {
        Data::Bytes(b) => Ok(b.clone()),
        Data::Host(p) => std::fs::read(p).with_context(|| format!("cannot read {}", p.display())),
    }
}

/// The first `limit` bytes of a file's contents.
fn read_data_prefix(data: &Data, limit: u64) -> Result<Vec<u8>> {
    use std::io::Read;
    match data {
        Data::Bytes(b) => Ok(b[..usize::try_from(limit).map_or(b.len(), |l| l.min(b.len()))].to_vec()),
        Data::Host(p) => {
            let mut bytes = Vec::new();
            std::fs::File::open(p)
                .and_then(|f| f.take(limit).read_to_end(&mut bytes))
                .with_context(|| format!("cannot read {}", p.display()))?;
            Ok(bytes)
        }
    }
}

/// Lets ztinit's config validation read files as they will be in the image.
struct ImageFiles<'a> {
    tree: &'a Tree,
}

impl ztinit::config::Files for ImageFiles<'_> {
    fn read(&self, path: &str, limit: u64) -> ztinit::config::FileLookup {
        use ztinit::config::FileLookup;
        let mut current = util::normalize_path(path);
        for _ in 0..MAX_LINK_HOPS {
            match self.tree.entries.get(&current) {
                None => return FileLookup::Missing,
                Some(Entry { node: Node::Symlink(target), .. }) => {
                    current = if target.starts_with('/') {
                        util::normalize_path(target)
                    } else {
                        let parent = current.rsplit_once('/').map(|(p, _)| p).unwrap_or("");
                        util::normalize_path(&format!("{parent}/{target}"))
                    };
                }
                Some(Entry { node: Node::File(data), .. }) => {
                    return match read_data_prefix(data, limit) {
                        Ok(b) => FileLookup::Found(b),
                        Err(e) => FileLookup::Error(format!("{e:#}")),
                    };
                }
                Some(_) => return FileLookup::Error("not a regular file".into()),
            }
        }
        FileLookup::Error("too many levels of symbolic links".into())
    }
}

fn validate_guest_path(path: &str) -> Result<String> {
    if !path.starts_with('/') || path.contains('\0') || path.split('/').any(|c| c == "." || c == "..") {
        bail!("{path:?}: image paths must be absolute, without . or .. components");
    }
    let key = util::normalize_path(path);
    if key.is_empty() {
        bail!("{path:?}: the root directory cannot be an entry");
    }
    Ok(key)
}

impl Tree {
    fn add(&mut self, path: &str, node: Node, perm: u32, uid: u32, gid: u32, origin: &str) -> Result<()> {
        let key = validate_guest_path(path)?;
        if perm & !0o7777 != 0 {
            bail!("{origin}: mode {perm:o} has bits beyond 0o7777");
        }
        let entry = Entry { node, perm, uid, gid, origin: origin.to_string() };
        if let Some(old) = self.entries.get(&key) {
            bail!("{path} is given twice: by {} and by {origin}", old.origin);
        }
        self.entries.insert(key, entry);
        Ok(())
    }

    /// Like `add`, but an identical existing entry is fine (shared libraries,
    /// directories named by more than one manifest).
    fn add_or_same(&mut self, path: &str, node: Node, perm: u32, uid: u32, gid: u32, origin: &str) -> Result<()> {
        let key = validate_guest_path(path)?;
        if let Some(old) = self.entries.get(&key)
            && old.node == node
            && old.perm == perm
            && old.uid == uid
            && old.gid == gid
        {
            return Ok(());
        }
        self.add(path, node, perm, uid, gid, origin)
    }

    fn add_parents(&mut self) {
        let keys: Vec<String> = self.entries.keys().cloned().collect();
        for key in keys {
            let mut parent = key.as_str();
            while let Some((p, _)) = parent.rsplit_once('/') {
                self.entries.entry(p.to_string()).or_insert_with(|| Entry {
                    node: Node::Dir,
                    perm: 0o755,
                    uid: 0,
                    gid: 0,
                    origin: "parent directory".into(),
                });
                parent = p;
            }
        }
    }

    fn refuse_shells(&self) -> Result<()> {
        let mut found = Vec::new();
        for (key, e) in &self.entries {
            let base = key.rsplit('/').next().unwrap_or(key);
            let mut why = None;
            if SHELLS.contains(&base) {
                why = Some(format!("/{key} ({})", e.origin));
            }
            if let Node::Symlink(t) = &e.node {
                let tb = t.rsplit('/').next().unwrap_or(t);
                if SHELLS.contains(&tb) {
                    why = Some(format!("/{key} -> {t}"));
                }
            }
            if let Node::File(Data::Host(p)) = &e.node {
                let hb = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
                if SHELLS.contains(&hb) {
                    why = Some(format!("/{key} (from {})", p.display()));
                } else if is_busybox(p) {
                    why = Some(format!("/{key} (a BusyBox binary, from {})", p.display()));
                }
            }
            if let Some(w) = why {
                found.push(w);
            }
        }
        if !found.is_empty() {
            bail!(
                "a shell or busybox would be in the image (set [image] debug = true to allow it in a debug image): {}",
                found.join(", ")
            );
        }
        Ok(())
    }

    /// Files that carry `TEST_ONLY_MARKER`, as "/path (origin)".
    fn test_only_files(&self) -> Vec<String> {
        let mut found = Vec::new();
        for (key, e) in &self.entries {
            let marked = match &e.node {
                Node::File(Data::Bytes(b)) => contains(b, TEST_ONLY_MARKER),
                Node::File(Data::Host(p)) => {
                    std::fs::metadata(p).is_ok_and(|m| m.len() <= MAX_SCAN)
                        && std::fs::read(p).is_ok_and(|b| contains(&b, TEST_ONLY_MARKER))
                }
                _ => false,
            };
            if marked {
                found.push(format!("/{key} ({})", e.origin));
            }
        }
        found
    }

    /// The entry at an absolute guest path.
    pub fn get(&self, path: &str) -> Option<&Entry> {
        self.entries.get(&util::normalize_path(path))
    }

    /// Entries in archive order: component-wise path order, parents first.
    pub fn ordered(&self) -> Vec<(&String, &Entry)> {
        let mut v: Vec<(&String, &Entry)> = self.entries.iter().collect();
        v.sort_by(|a, b| a.0.split('/').cmp(b.0.split('/')));
        v
    }

    pub fn listing(&self) -> Result<String> {
        let mut s = String::new();
        for (key, e) in self.ordered() {
            let (t, size, extra) = match &e.node {
                Node::Dir => ('d', 0, String::new()),
                Node::File(d) => ('-', data_len(d)?, String::new()),
                Node::Symlink(target) => ('l', target.len() as u64, format!(" -> {target}")),
                Node::Device { kind, major, minor } => {
                    (if *kind == DeviceType::Char { 'c' } else { 'b' }, 0, format!(" ({major},{minor})"))
                }
            };
            s.push_str(&format!("{t}{} {:>5}:{:<5} {size:>10} /{key}{extra}\n", perm_string(e.perm), e.uid, e.gid));
        }
        Ok(s)
    }
}

fn data_len(d: &Data) -> Result<u64> {
    Ok(match d {
        Data::Bytes(b) => b.len() as u64,
        Data::Host(p) => std::fs::metadata(p).with_context(|| format!("cannot stat {}", p.display()))?.len(),
    })
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

fn is_busybox(path: &Path) -> bool {
    let Ok(meta) = std::fs::metadata(path) else { return false };
    if meta.len() > MAX_SCAN {
        return false;
    }
    let Ok(bytes) = std::fs::read(path) else { return false };
    elf::is_elf(&bytes) && bytes.windows(9).any(|w| w == b"BusyBox v")
}

fn perm_string(perm: u32) -> String {
    let mut s: Vec<char> = Vec::new();
    for (i, c) in "rwxrwxrwx".chars().enumerate() {
        s.push(if perm & (1 << (8 - i)) != 0 { c } else { '-' });
    }
    // setuid, setgid, sticky replace the x of their triple, as ls shows them.
    for (bit, idx, set, unset) in [(0o4000, 2, 's', 'S'), (0o2000, 5, 's', 'S'), (0o1000, 8, 't', 'T')] {
        if perm & bit != 0 {
            s[idx] = if s[idx] == 'x' { set } else { unset };
        }
    }
    s.into_iter().collect()
}

/// Encodes the tree as newc (optionally zstd-compressed) into `out`.
pub fn write(tree: &Tree, compression: Compression, out: &Path) -> Result<Built> {
    let mtime = util::source_date_epoch()?;
    let mut w = cpio::Writer::new(Vec::new());
    let mut ino = 0u32;
    for (key, e) in tree.ordered() {
        ino += 1;
        let (kind, data, nlink, rdev) = match &e.node {
            Node::Dir => (cpio::S_IFDIR, Vec::new(), 2, (0, 0)),
            Node::File(d) => (cpio::S_IFREG, read_data(d)?, 1, (0, 0)),
            Node::Symlink(t) => (cpio::S_IFLNK, t.clone().into_bytes(), 1, (0, 0)),
            Node::Device { kind, major, minor } => {
                (if *kind == DeviceType::Char { cpio::S_IFCHR } else { cpio::S_IFBLK }, Vec::new(), 1, (*major, *minor))
            }
        };
        let h = cpio::Header {
            name: key,
            ino,
            mode: kind | e.perm,
            uid: e.uid,
            gid: e.gid,
            nlink,
            mtime,
            rdev_major: rdev.0,
            rdev_minor: rdev.1,
        };
        w.member(&h, &data).with_context(|| format!("writing /{key}"))?;
    }
    let raw = w.finish()?;
    let bytes = match compression {
        Compression::None => raw,
        Compression::Zstd => zstd(&raw)?,
    };
    util::write_atomic(out, &bytes)?;
    Ok(Built { path: out.to_path_buf(), size: bytes.len() as u64, entries: ino as usize })
}

/// zstd through the host tool with fixed settings (level, one thread, no
/// file name or time in the frame), so the output is reproducible.
fn zstd(raw: &[u8]) -> Result<Vec<u8>> {
    use std::io::Write;
    use std::process::Stdio;
    let mut child = Command::new("zstd")
        .args(["-q", "-19", "-T1", "-c", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .context("cannot run zstd (apt-get install zstd)")?;
    let mut stdin = child.stdin.take().context("no zstd stdin")?;
    let raw = raw.to_vec();
    let feeder = std::thread::spawn(move || stdin.write_all(&raw));
    let out = child.wait_with_output()?;
    feeder.join().map_err(|_| anyhow::anyhow!("zstd feeder panicked"))??;
    if !out.status.success() {
        bail!("zstd failed ({})", out.status);
    }
    Ok(out.stdout)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree_of(entries: &[(&str, Node)]) -> Tree {
        let mut t = Tree::default();
        for (p, n) in entries {
            t.add(p, n.clone(), 0o644, 0, 0, "test").unwrap();
        }
        t.add_parents();
        t
    }

    #[test]
    fn parents_are_added_and_come_first() {
        let t = tree_of(&[("/usr/bin/x", Node::File(Data::Bytes(b"x".to_vec()))), ("/usr-b", Node::Dir)]);
        let order: Vec<&str> = t.ordered().iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(order, ["usr", "usr/bin", "usr/bin/x", "usr-b"]);
    }

    #[test]
    fn duplicates_are_refused_naming_both() {
        let mut t = Tree::default();
        t.add("/a", Node::Dir, 0o755, 0, 0, "first").unwrap();
        let e = t.add("/a", Node::Dir, 0o700, 0, 0, "second").unwrap_err().to_string();
        assert!(e.contains("first") && e.contains("second"), "{e}");
        t.add_or_same("/a", Node::Dir, 0o755, 0, 0, "same").unwrap();
    }

    #[test]
    fn relative_and_dotted_paths_are_refused() {
        let mut t = Tree::default();
        assert!(t.add("etc/x", Node::Dir, 0o755, 0, 0, "t").is_err());
        assert!(t.add("/etc/../x", Node::Dir, 0o755, 0, 0, "t").is_err());
    }

    #[test]
    fn shells_are_refused_unless_debug() {
        let t = tree_of(&[("/bin/sh", Node::Symlink("busybox".into()))]);
        let e = t.refuse_shells().unwrap_err().to_string();
        assert!(e.contains("/bin/sh") && e.contains("debug = true"), "{e}");
        let t = tree_of(&[("/usr/bin/tool", Node::Symlink("/bin/dash".into()))]);
        assert!(t.refuse_shells().is_err());
        let t = tree_of(&[("/usr/bin/shasum", Node::Dir)]);
        t.refuse_shells().unwrap();
    }

    #[test]
    fn test_only_files_are_found_by_content() {
        let mut marked = b"\x7fELF...".to_vec();
        marked.extend_from_slice(TEST_ONLY_MARKER);
        marked.extend_from_slice(b": fake libnvidia-ml.so.1");
        let dir = tempfile::tempdir().unwrap();
        let renamed = dir.path().join("libc.so.6");
        std::fs::write(&renamed, &marked).unwrap();
        let t = tree_of(&[
            ("/usr/lib/libnvidia-ml.so.1", Node::File(Data::Bytes(marked))),
            ("/usr/lib/innocent", Node::File(Data::Host(renamed))),
            ("/usr/lib/real", Node::File(Data::Bytes(b"ZTINIT-TEST".to_vec()))),
        ]);
        assert_eq!(t.test_only_files(), ["/usr/lib/innocent (test)", "/usr/lib/libnvidia-ml.so.1 (test)"]);
    }

    #[test]
    fn test_only_files_need_a_test_image() {
        let dir = tempfile::tempdir().unwrap();
        let mut marked = TEST_ONLY_MARKER.to_vec();
        marked.extend_from_slice(b" fake");
        std::fs::write(dir.path().join("fake.so"), marked).unwrap();
        let manifest = |test: bool| {
            let text = format!(
                "[image]\ntest = {test}\n[[file]]\npath = \"/usr/lib/libnvidia-ml.so.1\"\nsource = \"fake.so\"\n"
            );
            std::fs::write(dir.path().join("m.toml"), text).unwrap();
            manifest::load(&dir.path().join("m.toml")).unwrap()
        };
        let e = format!("{:#}", resolve(&manifest(false)).unwrap_err());
        assert!(e.contains("TEST-ONLY files would be in the image") && e.contains("/usr/lib/libnvidia-ml.so.1"), "{e}");
        resolve(&manifest(true)).unwrap();
    }

    #[test]
    fn image_files_follow_symlinks_inside_the_image() {
        use ztinit::config::{FileLookup, Files};
        let t = tree_of(&[
            ("/usr/bin/real", Node::File(Data::Bytes(b"\x7fELF".to_vec()))),
            ("/bin/link", Node::Symlink("../usr/bin/real".into())),
            ("/bin/loop", Node::Symlink("/bin/loop".into())),
        ]);
        let f = ImageFiles { tree: &t };
        assert!(matches!(f.read("/bin/link", 64), FileLookup::Found(b) if b == b"\x7fELF"));
        assert!(matches!(f.read("/nope", 64), FileLookup::Missing));
        assert!(matches!(f.read("/bin/loop", 64), FileLookup::Error(e) if e.contains("symbolic links")));
        assert!(matches!(f.read("/usr", 64), FileLookup::Error(_)));
    }

    #[test]
    fn writes_reproducibly_with_fixed_fields() {
        let t = tree_of(&[
            ("/init", Node::File(Data::Bytes(b"bin".to_vec()))),
            ("/dev/console", Node::Device { kind: DeviceType::Char, major: 5, minor: 1 }),
        ]);
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        write(&t, Compression::None, &a).unwrap();
        write(&t, Compression::None, &b).unwrap();
        let bytes = std::fs::read(&a).unwrap();
        assert_eq!(bytes, std::fs::read(&b).unwrap());
        let members = cpio::parse(&bytes).unwrap();
        let names: Vec<&str> = members.iter().map(|m| m.name.as_str()).collect();
        assert_eq!(names, ["dev", "dev/console", "init"]);
        assert_eq!(members.iter().map(|m| m.ino).collect::<Vec<_>>(), [1, 2, 3]);
        assert!(members.iter().all(|m| m.uid == 0 && m.gid == 0));
        assert_eq!(members[1].rdev, (5, 1));
        assert_eq!(members[1].mode, cpio::S_IFCHR | 0o644);
    }

    #[test]
    fn config_additions_are_appended_and_checked() {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().join("base.toml");
        std::fs::write(&base, "[boot]\nisa_debug_exit = true\n[workload]\npath = \"/init\"").unwrap();
        let extra = dir.path().join("extra.toml");
        std::fs::write(&extra, "[network]\nmode = \"static\"\n").unwrap();
        let entry = manifest::ConfigEntry { source: "base.toml".into(), path: None, check: true };
        let mut m = Loaded { path: dir.path().join("m.toml"), ..Default::default() };
        m.files.push(manifest::FileEntry {
            path: "/init".into(),
            source: None,
            build: None,
            peer: None,
            text: Some("x".into()),
            mode: None,
            uid: 0,
            gid: 0,
            sysroot: None,
        });
        m.config = Some((entry, base));
        m.config_append = vec![extra.clone()];
        // `mode = "static"` without an address is invalid: the addition is validated with the base.
        let e = format!("{:#}", resolve(&m).unwrap_err());
        assert!(e.contains("/etc/ztinit.toml:5: network.address"), "{e}");
        std::fs::write(
            &extra,
            "[network]\nmode = \"static\"\ninterface = \"eth0\"\naddress = \"10.0.2.15/24\"\ngateway = \"10.0.2.2\"\n",
        )
        .unwrap();
        // (`/init` is no ELF file: only the bytes are compared from here on.)
        m.config.as_mut().unwrap().0.check = false;
        let t = resolve(&m).unwrap();
        let Some(Entry { node: Node::File(data), .. }) = t.entries.get("etc/ztinit.toml") else { panic!("no config") };
        let text = String::from_utf8(read_data(data).unwrap()).unwrap();
        assert!(text.starts_with("[boot]\nisa_debug_exit = true\n[workload]\npath = \"/init\"\n[network]\n"), "{text}");
        assert!(text.ends_with("gateway = \"10.0.2.2\"\n"), "{text}");
    }

    #[test]
    fn a_built_in_seccomp_profile_is_compiled_into_the_image() {
        let dir = tempfile::tempdir().unwrap();
        let image = |sandbox: &str| {
            let base = dir.path().join("base.toml");
            let text = format!("[boot]\nisa_debug_exit = true\n[workload]\npath = \"/init\"\n{sandbox}");
            std::fs::write(&base, &text).unwrap();
            let entry = manifest::ConfigEntry { source: "base.toml".into(), path: None, check: true };
            let mut m = Loaded { path: dir.path().join("m.toml"), ..Default::default() };
            // The workload only has to start like an ELF file.
            for (path, text) in [("/init", "\x7fELF"), ("/etc/seccomp.json", "{\"defaultAction\": \"SCMP_ACT_ALLOW\"}")]
            {
                m.files.push(manifest::FileEntry {
                    path: path.into(),
                    source: None,
                    build: None,
                    peer: None,
                    text: Some(text.into()),
                    mode: None,
                    uid: 0,
                    gid: 0,
                    sysroot: None,
                });
            }
            m.config = Some((entry, base));
            let t = resolve(&m).unwrap();
            let program = t.entries.get("etc/ztinit.seccomp").map(|e| match &e.node {
                Node::File(data) => (read_data(data).unwrap(), e.perm),
                other => panic!("not a file: {other:?}"),
            });
            (text, program)
        };
        let (text, program) = image("[sandbox]\nseccomp = \"strict\"\n");
        let (bytes, perm) = program.expect("a program for a built-in profile");
        assert_eq!(perm, 0o400);
        let digest = ztinit::sandbox::precompiled::config_digest(&text);
        let read = ztinit::sandbox::precompiled::decode(&bytes, &digest).unwrap();
        assert_eq!(read.program.name, "strict");
        assert!(
            image("[sandbox]\nseccomp = \"/etc/seccomp.json\"\n").1.is_none(),
            "a file profile is compiled at boot"
        );
        assert!(image("[sandbox]\nseccomp = \"none\"\n").1.is_none());
    }

    #[test]
    fn config_additions_merge_into_the_tables_the_base_has() {
        let base = "# the base\n[boot]\n[network]\n[tee]\n[kbs]\nurl = \"https://10.0.2.100:8080\"\nretries = 3 # few\n\n[[secrets]]\nresource = \"a/b/c\"\nfile = \"c\"\n";
        let pin = ("pin".to_string(), "[kbs]\npinned_cert = \"\"\"\nPEM\n\"\"\"\nretries = 5\n".to_string());
        let vol = (
            "vol".to_string(),
            "# a comment\n[[volumes]]\nname = \"m\"\n\n[volumes.verity]\nroot_hash = \"ab\"\n[[secrets]]\nresource = \"d/e/f\"\nfile = \"f\"\n"
                .to_string(),
        );
        let text = merge_config(base, &[pin, vol]).unwrap();
        assert!(
            text.starts_with("# the base\n[boot]\n[network]\n[tee]\n[kbs]\nurl = \"https://10.0.2.100:8080\"\n"),
            "{text}"
        );
        let v: toml::Table = toml::from_str(&text).unwrap();
        assert_eq!(v["kbs"]["pinned_cert"].as_str(), Some("PEM\n"));
        assert_eq!(v["kbs"]["retries"].as_integer(), Some(5), "a later value replaces the base's");
        let files: Vec<_> = v["secrets"].as_array().unwrap().iter().map(|s| s["file"].as_str().unwrap()).collect();
        assert_eq!(files, ["c", "f"]);
        assert_eq!(v["volumes"][0]["name"].as_str(), Some("m"));
        assert_eq!(v["volumes"][0]["verity"]["root_hash"].as_str(), Some("ab"), "{text}");
        // The new table comes after the base's, so line numbers of the base stay.
        assert!(text.find("[[volumes]]").unwrap() > text.find("resource = \"a/b/c\"").unwrap(), "{text}");
        assert!(merge_config(base, &[("bad".into(), "[kbs\n".into())]).unwrap_err().to_string().contains("bad"));
    }

    #[test]
    fn modules_dep_names_and_parsing() {
        let d = parse_modules_dep("kernel/crypto/sm4_generic.ko.zst: kernel/lib/crypto/libsm4.ko.zst\nkernel/x.ko:\n");
        assert_eq!(d["kernel/crypto/sm4_generic.ko.zst"], ["kernel/lib/crypto/libsm4.ko.zst"]);
        assert!(d["kernel/x.ko"].is_empty());
        assert_eq!(module_name("kernel/drivers/a-b.ko.xz"), "a_b");
    }
}
