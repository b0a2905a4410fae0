//! Kernel modules from the configuration, loaded with `finit_module(2)`
//! (no modprobe binary). Dependencies come from
//! `/lib/modules/$(uname -r)/modules.dep` and load first; built-in modules
//! (`modules.builtin`) and loaded ones (`/proc/modules`) are skipped;
//! compressed modules (`.ko.xz`, `.ko.zst`, `.ko.gz`) are handed to the
//! kernel with MODULE_INIT_COMPRESSED_FILE, so the file the kernel reads is
//! the one on the (measured, LoadPin-pinnable) image. Names match with `-`
//! and `_` treated alike, as modprobe does.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::ffi::CString;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::schema::{Section, Validator};

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ModulesConfig {
    /// Modules to load, in this order (each after its dependencies).
    pub load: Vec<String>,
    /// Module parameters: `nvidia = "NVreg_OpenRmEnableUnsupportedGpus=1 NVreg_X=2"`.
    pub parameters: BTreeMap<String, String>,
}

fn valid_name(n: &str) -> bool {
    !n.is_empty() && n.len() < 56 && n.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

impl Section for ModulesConfig {
    fn validate(&self, v: &mut Validator<'_>) {
        for (i, name) in self.load.iter().enumerate() {
            if !valid_name(name) {
                v.error(&format!("load[{i}]"), format!("{name:?} is not a module name"));
            }
        }
        for (name, params) in &self.parameters {
            if !valid_name(name) {
                v.error(&format!("parameters.{name}"), "is not a module name");
            } else if params.contains('\0') || params.contains('\n') {
                v.error(&format!("parameters.{name}"), "contains a NUL or newline");
            } else if !self.load.iter().any(|l| normalize(l) == normalize(name)) {
                v.error(&format!("parameters.{name}"), "names a module that is not in modules.load");
            }
        }
    }
}

/// `MODULE_INIT_COMPRESSED_FILE` (include/uapi/linux/module.h).
pub const MODULE_INIT_COMPRESSED_FILE: u32 = 4;

/// The `finit_module(2)` system call, behind a trait so resolution and
/// ordering are tested without privileges.
pub trait ModuleLoader {
    /// Returns the errno on failure.
    fn finit_module(&mut self, fd: BorrowedFd<'_>, params: &CString, flags: u32) -> Result<(), i32>;
}

/// The kernel.
pub struct KernelLoader;

impl ModuleLoader for KernelLoader {
    fn finit_module(&mut self, fd: BorrowedFd<'_>, params: &CString, flags: u32) -> Result<(), i32> {
        // SAFETY: a valid fd and NUL-terminated string that outlive the call.
        let r = unsafe { libc::syscall(libc::SYS_finit_module, fd.as_raw_fd(), params.as_ptr(), flags) };
        if r < 0 { Err(std::io::Error::last_os_error().raw_os_error().unwrap_or(libc::EIO)) } else { Ok(()) }
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ModulesError {
    #[error("cannot read {path}: {reason}")]
    Read { path: String, reason: String },
    #[error("{path}:{line}: malformed modules.dep line")]
    Malformed { path: String, line: usize },
    #[error("module {module}: not found in {dep_file}")]
    NotFound { module: String, dep_file: String },
    #[error("module {module}: dependency cycle through {through}")]
    Cycle { module: String, through: String },
    #[error("module {module}: cannot open {path}: {reason}")]
    Open { module: String, path: String, reason: String },
    #[error("module {module}: parameters contain a NUL byte")]
    BadParams { module: String },
    #[error("module {module}: finit_module failed: {}", crate::names::errno_name(*.errno))]
    Load { module: String, errno: i32 },
}

/// Where modules and the lists of loaded ones are.
#[derive(Debug, Clone)]
pub struct ModulesEnv {
    /// `/lib/modules`.
    pub modules_root: PathBuf,
    /// The kernel release; `None`: uname.
    pub release: Option<String>,
    /// `/proc/modules`.
    pub proc_modules: PathBuf,
}

impl Default for ModulesEnv {
    fn default() -> Self {
        Self { modules_root: "/lib/modules".into(), release: None, proc_modules: "/proc/modules".into() }
    }
}

/// `foo-bar.ko.xz` → `foo_bar`.
pub fn normalize(name: &str) -> String {
    let base = name.rsplit('/').next().unwrap_or(name);
    let base = [".ko.xz", ".ko.zst", ".ko.gz", ".ko"].iter().find_map(|s| base.strip_suffix(s)).unwrap_or(base);
    base.replace('-', "_")
}

fn is_compressed(path: &str) -> bool {
    path.ends_with(".ko.xz") || path.ends_with(".ko.zst") || path.ends_with(".ko.gz")
}

/// Parsed `modules.dep`: module name → (path relative to the release dir, dependencies' paths).
#[derive(Debug, Default)]
pub struct DepTable {
    entries: HashMap<String, (String, Vec<String>)>,
}

impl DepTable {
    pub fn parse(path: &str, text: &str) -> Result<Self, ModulesError> {
        let mut entries = HashMap::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let Some((module, deps)) = line.split_once(':') else {
                return Err(ModulesError::Malformed { path: path.to_string(), line: i + 1 });
            };
            let module = module.trim();
            if module.is_empty() || !module.contains(".ko") {
                return Err(ModulesError::Malformed { path: path.to_string(), line: i + 1 });
            }
            let deps = deps.split_whitespace().map(str::to_string).collect();
            entries.insert(normalize(module), (module.to_string(), deps));
        }
        Ok(Self { entries })
    }

    /// The modules to load for `wanted`, dependencies first, each once.
    pub fn order(&self, wanted: &[String], dep_file: &str) -> Result<Vec<(String, String)>, ModulesError> {
        let mut out = Vec::new();
        let mut done = HashSet::new();
        for w in wanted {
            let mut stack = Vec::new();
            self.visit(&normalize(w), &mut stack, &mut done, &mut out, dep_file)?;
        }
        Ok(out)
    }

    fn visit(
        &self,
        name: &str,
        stack: &mut Vec<String>,
        done: &mut HashSet<String>,
        out: &mut Vec<(String, String)>,
        dep_file: &str,
    ) -> Result<(), ModulesError> {
        if done.contains(name) {
            return Ok(());
        }
        if stack.iter().any(|s| s == name) {
            return Err(ModulesError::Cycle { module: stack[0].clone(), through: name.to_string() });
        }
        let Some((path, deps)) = self.entries.get(name) else {
            return Err(ModulesError::NotFound { module: name.to_string(), dep_file: dep_file.to_string() });
        };
        stack.push(name.to_string());
        for d in deps {
            self.visit(&normalize(d), stack, done, out, dep_file)?;
        }
        stack.pop();
        done.insert(name.to_string());
        out.push((name.to_string(), path.clone()));
        Ok(())
    }
}

fn read_text(path: &Path) -> Result<String, ModulesError> {
    crate::files::read_capped(path, 16 << 20)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .map_err(|e| ModulesError::Read { path: path.display().to_string(), reason: e.to_string() })
}

/// Loads the configured modules. Returns the names actually loaded.
pub fn load_configured(
    cfg: &ModulesConfig,
    env: &ModulesEnv,
    loader: &mut dyn ModuleLoader,
) -> Result<Vec<String>, ModulesError> {
    if cfg.load.is_empty() {
        return Ok(Vec::new());
    }
    let release =
        env.release.clone().unwrap_or_else(|| rustix::system::uname().release().to_string_lossy().into_owned());
    let dir = env.modules_root.join(&release);
    let dep_path = dir.join("modules.dep");
    let dep_file = dep_path.display().to_string();
    let table = DepTable::parse(&dep_file, &read_text(&dep_path)?)?;
    let builtin: HashSet<String> = match read_text(&dir.join("modules.builtin")) {
        Ok(text) => text.lines().map(normalize).collect(),
        Err(_) => HashSet::new(),
    };
    let loaded: HashSet<String> = match read_text(&env.proc_modules) {
        Ok(text) => text.lines().filter_map(|l| l.split_whitespace().next()).map(normalize).collect(),
        Err(_) => HashSet::new(),
    };
    let params: HashMap<String, &String> = cfg.parameters.iter().map(|(k, v)| (normalize(k), v)).collect();

    let wanted: Vec<String> = cfg
        .load
        .iter()
        .filter(|m| {
            let n = normalize(m);
            if builtin.contains(&n) {
                log::info!("modules: {n} is built into the kernel");
                return false;
            }
            true
        })
        .cloned()
        .collect();
    let mut done = Vec::new();
    for (name, rel) in table.order(&wanted, &dep_file)? {
        if loaded.contains(&name) {
            log::debug!("modules: {name} is already loaded");
            continue;
        }
        let path = dir.join(&rel);
        let file = std::fs::File::open(&path).map_err(|e| ModulesError::Open {
            module: name.clone(),
            path: path.display().to_string(),
            reason: e.to_string(),
        })?;
        let p = CString::new(params.get(&name).map(|s| s.as_str()).unwrap_or(""))
            .map_err(|_| ModulesError::BadParams { module: name.clone() })?;
        let flags = if is_compressed(&rel) { MODULE_INIT_COMPRESSED_FILE } else { 0 };
        use std::os::fd::AsFd;
        match loader.finit_module(file.as_fd(), &p, flags) {
            Ok(()) => {
                log::debug!("modules: loaded {name}");
                done.push(name);
            }
            Err(libc::EEXIST) => log::debug!("modules: {name} was already loaded"),
            Err(errno) => {
                return Err(ModulesError::Load { module: name, errno });
            }
        }
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use super::*;

    #[derive(Default)]
    struct Recorder {
        calls: Vec<(String, String, u32)>,
        answers: HashMap<String, i32>,
    }

    impl ModuleLoader for Recorder {
        fn finit_module(&mut self, fd: BorrowedFd<'_>, params: &CString, flags: u32) -> Result<(), i32> {
            // The fake modules contain their own name.
            let mut name = String::new();
            std::fs::File::from(fd.try_clone_to_owned().unwrap()).read_to_string(&mut name).unwrap();
            self.calls.push((name.clone(), params.to_string_lossy().into_owned(), flags));
            match self.answers.get(&name) {
                Some(e) => Err(*e),
                None => Ok(()),
            }
        }
    }

    fn tree() -> (tempfile::TempDir, ModulesEnv) {
        let dir = tempfile::tempdir().unwrap();
        let rel = dir.path().join("lib/modules/6.12.0-test");
        let files = [
            "kernel/drivers/gpu/nvidia.ko.xz",
            "kernel/drivers/gpu/nvidia-uvm.ko.zst",
            "kernel/drivers/video/drm.ko",
            "kernel/lib/crc32.ko.gz",
            "kernel/drivers/net/dummy.ko",
            "kernel/drivers/net/loaded-already.ko",
        ];
        for f in files {
            let p = rel.join(f);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(&p, normalize(f)).unwrap();
        }
        std::fs::write(
            rel.join("modules.dep"),
            "kernel/drivers/gpu/nvidia-uvm.ko.zst: kernel/drivers/gpu/nvidia.ko.xz kernel/drivers/video/drm.ko kernel/lib/crc32.ko.gz\n\
             kernel/drivers/gpu/nvidia.ko.xz: kernel/drivers/video/drm.ko kernel/lib/crc32.ko.gz\n\
             kernel/drivers/video/drm.ko: kernel/lib/crc32.ko.gz\n\
             kernel/lib/crc32.ko.gz:\n\
             kernel/drivers/net/dummy.ko:\n\
             kernel/drivers/net/loaded-already.ko:\n\
             kernel/drivers/net/missing-file.ko:\n",
        )
        .unwrap();
        std::fs::write(rel.join("modules.builtin"), "kernel/drivers/block/virtio_blk.ko\n").unwrap();
        std::fs::write(dir.path().join("modules"), "loaded_already 16384 0 - Live 0x0000000000000000\n").unwrap();
        let env = ModulesEnv {
            modules_root: dir.path().join("lib/modules"),
            release: Some("6.12.0-test".into()),
            proc_modules: dir.path().join("modules"),
        };
        (dir, env)
    }

    fn cfg(load: &[&str]) -> ModulesConfig {
        ModulesConfig { load: load.iter().map(|s| s.to_string()).collect(), parameters: BTreeMap::new() }
    }

    #[test]
    fn dependencies_first_each_once_with_flags_and_params() {
        let (_dir, env) = tree();
        let mut c = cfg(&["nvidia-uvm", "virtio_blk", "loaded-already", "dummy"]);
        c.parameters.insert("nvidia_uvm".into(), "uvm_perf_prefetch_enable=0".into());
        let mut rec = Recorder::default();
        let loaded = load_configured(&c, &env, &mut rec).unwrap();
        assert_eq!(loaded, ["crc32", "drm", "nvidia", "nvidia_uvm", "dummy"]);
        let calls: Vec<(&str, &str, u32)> = rec.calls.iter().map(|(n, p, f)| (n.as_str(), p.as_str(), *f)).collect();
        assert_eq!(
            calls,
            [
                ("crc32", "", MODULE_INIT_COMPRESSED_FILE),
                ("drm", "", 0),
                ("nvidia", "", MODULE_INIT_COMPRESSED_FILE),
                ("nvidia_uvm", "uvm_perf_prefetch_enable=0", MODULE_INIT_COMPRESSED_FILE),
                ("dummy", "", 0),
            ]
        );
    }

    #[test]
    fn eexist_is_tolerated_other_errors_name_module_and_errno() {
        let (_dir, env) = tree();
        let mut rec = Recorder::default();
        rec.answers.insert("crc32".into(), libc::EEXIST);
        rec.answers.insert("nvidia".into(), libc::ENOEXEC);
        let err = load_configured(&cfg(&["nvidia"]), &env, &mut rec).unwrap_err();
        assert_eq!(err.to_string(), "module nvidia: finit_module failed: ENOEXEC (Exec format error)");
        assert_eq!(rec.calls.len(), 3);
    }

    #[test]
    fn missing_modules_are_errors() {
        let (_dir, env) = tree();
        let err = load_configured(&cfg(&["no-such-mod"]), &env, &mut Recorder::default()).unwrap_err();
        assert!(err.to_string().starts_with("module no_such_mod: not found in "), "{err}");
        let err = load_configured(&cfg(&["missing-file"]), &env, &mut Recorder::default()).unwrap_err();
        assert!(err.to_string().contains("module missing_file: cannot open "), "{err}");
        let empty = ModulesEnv { release: Some("0.0".into()), ..env };
        let err = load_configured(&cfg(&["dummy"]), &empty, &mut Recorder::default()).unwrap_err();
        assert!(err.to_string().contains("modules.dep"), "{err}");
    }

    #[test]
    fn cycles_and_malformed_lines() {
        let t = DepTable::parse("m.dep", "a.ko: b.ko\nb.ko: a.ko\n").unwrap();
        assert_eq!(
            t.order(&["a".into()], "m.dep").unwrap_err(),
            ModulesError::Cycle { module: "a".into(), through: "a".into() }
        );
        assert_eq!(
            DepTable::parse("m.dep", "ok.ko:\ngarbage\n").unwrap_err().to_string(),
            "m.dep:2: malformed modules.dep line"
        );
    }

    #[test]
    fn names_normalize() {
        assert_eq!(normalize("kernel/drivers/net/virtio-net.ko.zst"), "virtio_net");
        assert_eq!(normalize("nvidia-uvm"), "nvidia_uvm");
    }

    #[test]
    fn config_section() {
        use crate::config::{Config, NoFiles, Sources};
        let text = "[workload]\npath = \"/bin/w\"\n[modules]\nload = [\"nvidia\", \"bad name\"]\n[modules.parameters]\nnvidia = \"a=1\"\nother = \"b=2\"\n";
        let issues =
            Config::load(Sources { origin: "c.toml", text, cmdline: None, files: &NoFiles }).unwrap_err().issues();
        assert!(issues.iter().any(|i| i.contains("modules.load[1]: \"bad name\" is not a module name")), "{issues:?}");
        assert!(
            issues
                .iter()
                .any(|i| { i.contains("modules.parameters.other: names a module that is not in modules.load") })
        );
    }
}
