//! Image manifests (`rootfs/*.toml`): what goes into an initramfs.
//!
//! ```toml
//! include = ["common/test-base.toml"]     # merged first (paths relative to this file)
//!
//! [image]
//! debug = false          # true allows a shell or busybox in the image
//! test = false           # true allows TEST-ONLY files (the fake NVML library)
//! compression = "none"   # "none" | "zstd"
//! kernel = "test"        # kernel profile that [[module]] entries come from
//!
//! [ztinit]
//! install = true         # the ztinit musl release binary at /init
//!
//! [config]
//! source = "configs/demo.toml"   # baked as /etc/ztinit.toml
//! check = true                   # validate it with ztinit's own loader
//!
//! [[file]]
//! path = "/usr/bin/demo"
//! build = { package = "ztinit-testkit", bin = "demo" }   # target: musl by default
//! # or: source = "host/or/relative/path", sysroot = "/path" (for ELF deps)
//! # or: peer = "kata-agent"   (a test peer, see xtask/src/peers.rs)
//!
//! [[dir]]     path = "/data", mode = 0o700
//! [[symlink]] path = "/sbin/init", target = "/init"
//! [[device]]  path = "/dev/console", type = "char", major = 5, minor = 1
//! [[module]]  name = "sm4_generic"    # with its modules.dep dependencies
//! ```

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde::Deserialize;

pub const MUSL_TARGET: &str = "x86_64-unknown-linux-musl";

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    #[serde(default)]
    pub include: Vec<String>,
    #[serde(default)]
    pub image: ImageOptions,
    pub ztinit: Option<ZtinitEntry>,
    pub config: Option<ConfigEntry>,
    #[serde(default)]
    pub file: Vec<FileEntry>,
    #[serde(default)]
    pub dir: Vec<DirEntry>,
    #[serde(default)]
    pub symlink: Vec<SymlinkEntry>,
    #[serde(default)]
    pub device: Vec<DeviceEntry>,
    #[serde(default)]
    pub module: Vec<ModuleEntry>,
}

#[derive(Debug, Default, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct ImageOptions {
    pub debug: Option<bool>,
    /// A test image: files marked TEST ONLY (`image::TEST_ONLY_MARKER`) are
    /// allowed; any other image containing one is refused.
    pub test: Option<bool>,
    pub compression: Option<Compression>,
    pub kernel: Option<String>,
}

#[derive(Debug, Default, Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    #[default]
    None,
    Zstd,
}

#[derive(Debug, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct ZtinitEntry {
    #[serde(default = "yes")]
    pub install: bool,
    /// Where the binary goes (default `/init`).
    pub path: Option<String>,
}

#[derive(Debug, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct ConfigEntry {
    /// Host file, relative to the manifest's directory.
    pub source: String,
    /// Guest path (default `/etc/ztinit.toml`).
    pub path: Option<String>,
    /// Validate with ztinit's loader while building (default true). Only test
    /// scenarios that bake a deliberately bad config turn this off.
    #[serde(default = "yes")]
    pub check: bool,
}

fn yes() -> bool {
    true
}

/// A workspace binary to build and install.
#[derive(Debug, Deserialize, Clone, PartialEq, Eq, PartialOrd, Ord)]
#[serde(deny_unknown_fields)]
pub struct BuildRef {
    pub package: String,
    pub bin: String,
    /// Rust target triple; static musl unless stated.
    #[serde(default = "musl")]
    pub target: String,
}

fn musl() -> String {
    MUSL_TARGET.to_string()
}

#[derive(Debug, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct FileEntry {
    pub path: String,
    /// Host file (absolute, or relative to the manifest's directory).
    pub source: Option<String>,
    /// Or a workspace binary.
    pub build: Option<BuildRef>,
    /// Or a test peer built elsewhere (`kata-agent`, see `peers.rs`).
    pub peer: Option<String>,
    /// Or literal contents.
    pub text: Option<String>,
    pub mode: Option<u32>,
    #[serde(default)]
    pub uid: u32,
    #[serde(default)]
    pub gid: u32,
    /// Where to look for a dynamically linked file's interpreter and
    /// libraries (default `/`, the host).
    pub sysroot: Option<String>,
}

#[derive(Debug, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct DirEntry {
    pub path: String,
    pub mode: Option<u32>,
    #[serde(default)]
    pub uid: u32,
    #[serde(default)]
    pub gid: u32,
}

#[derive(Debug, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct SymlinkEntry {
    pub path: String,
    pub target: String,
}

#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum DeviceType {
    Char,
    Block,
}

#[derive(Debug, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct DeviceEntry {
    pub path: String,
    #[serde(rename = "type")]
    pub kind: DeviceType,
    pub major: u32,
    pub minor: u32,
    pub mode: Option<u32>,
    #[serde(default)]
    pub uid: u32,
    #[serde(default)]
    pub gid: u32,
}

#[derive(Debug, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct ModuleEntry {
    pub name: String,
}

/// A manifest with its includes merged; relative host paths are made
/// absolute against the directory of the file that named them.
#[derive(Debug, Default)]
pub struct Loaded {
    pub path: PathBuf,
    pub debug: bool,
    pub test: bool,
    pub compression: Compression,
    pub kernel: Option<String>,
    pub ztinit: Option<ZtinitEntry>,
    pub config: Option<(ConfigEntry, PathBuf)>,
    /// Host files merged into the config (set by the caller, never by a
    /// manifest: see `image::build_with_config`).
    pub config_append: Vec<PathBuf>,
    pub files: Vec<FileEntry>,
    pub dirs: Vec<DirEntry>,
    pub symlinks: Vec<SymlinkEntry>,
    pub devices: Vec<DeviceEntry>,
    pub modules: Vec<ModuleEntry>,
}

pub fn load(path: &Path) -> Result<Loaded> {
    let mut out = Loaded { path: path.to_path_buf(), ..Default::default() };
    let mut stack = Vec::new();
    merge(path, &mut out, &mut stack)?;
    Ok(out)
}

fn merge(path: &Path, out: &mut Loaded, stack: &mut Vec<PathBuf>) -> Result<()> {
    let canon = path.canonicalize().with_context(|| format!("cannot open manifest {}", path.display()))?;
    if stack.contains(&canon) {
        bail!("manifest include cycle through {}", path.display());
    }
    stack.push(canon);
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read manifest {}", path.display()))?;
    let m: Manifest = toml::from_str(&text).with_context(|| format!("{}: invalid manifest", path.display()))?;
    let dir = path.parent().unwrap_or(Path::new(".")).to_path_buf();
    for inc in &m.include {
        merge(&dir.join(inc), out, stack)?;
    }
    let abs =
        |s: &str| -> String { if s.starts_with('/') { s.to_string() } else { dir.join(s).display().to_string() } };
    // Later files (the including manifest) override scalar options.
    if let Some(d) = m.image.debug {
        out.debug = d;
    }
    if let Some(t) = m.image.test {
        out.test = t;
    }
    if let Some(c) = m.image.compression {
        out.compression = c;
    }
    if m.image.kernel.is_some() {
        out.kernel = m.image.kernel.clone();
    }
    if m.ztinit.is_some() {
        out.ztinit = m.ztinit.clone();
    }
    if let Some(c) = m.config {
        let source = PathBuf::from(abs(&c.source));
        out.config = Some((c, source));
    }
    for mut f in m.file {
        f.source = f.source.as_deref().map(abs);
        f.sysroot = f.sysroot.as_deref().map(abs);
        out.files.push(f);
    }
    out.dirs.extend(m.dir);
    out.symlinks.extend(m.symlink);
    out.devices.extend(m.device);
    out.modules.extend(m.module);
    stack.pop();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn includes_merge_and_paths_resolve_against_their_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("common")).unwrap();
        std::fs::write(
            dir.path().join("common/base.toml"),
            "[image]\ncompression = \"zstd\"\n[[dir]]\npath = \"/proc\"\n[[file]]\npath = \"/etc/x\"\nsource = \"x\"\n",
        )
        .unwrap();
        std::fs::write(
            dir.path().join("top.toml"),
            "include = [\"common/base.toml\"]\n[image]\ndebug = true\n[config]\nsource = \"c.toml\"\n[[module]]\nname = \"m\"\n",
        )
        .unwrap();
        let l = load(&dir.path().join("top.toml")).unwrap();
        assert!(l.debug);
        assert_eq!(l.compression, Compression::Zstd);
        assert_eq!(l.dirs.len(), 1);
        assert_eq!(l.files[0].source.as_deref(), Some(dir.path().join("common/x").to_str().unwrap()));
        assert_eq!(l.config.unwrap().1, dir.path().join("c.toml"));
        assert_eq!(l.modules[0].name, "m");
    }

    #[test]
    fn unknown_keys_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("m.toml"), "[[file]]\npath = \"/a\"\nsorce = \"x\"\n").unwrap();
        let e = format!("{:#}", load(&dir.path().join("m.toml")).unwrap_err());
        assert!(e.contains("sorce"), "{e}");
    }

    #[test]
    fn include_cycles_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.toml"), "include = [\"b.toml\"]\n").unwrap();
        std::fs::write(dir.path().join("b.toml"), "include = [\"a.toml\"]\n").unwrap();
        let e = format!("{:#}", load(&dir.path().join("a.toml")).unwrap_err());
        assert!(e.contains("cycle"), "{e}");
    }
}
