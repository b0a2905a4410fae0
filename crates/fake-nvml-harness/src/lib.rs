//! TEST ONLY: the harness around `crates/fake-nvml` (a fake
//! `libnvidia-ml.so.1` signing with a test CA) shared by the helper's tests
//! (`crates/ztinit-gpu/tests/fake_nvml.rs`) and the dev KBS's
//! (`crates/ztinit-kbs/tests/nvidia.rs`): building the fake and the helper,
//! the fake's configuration directory, its measurements and test root.
//! Panics on any setup failure, as test code does.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use sha2::{Digest, Sha384};
use ztinit::gpu::helper::{Confinement, Helper, HelperCommand};

/// The workspace root.
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The helper binary and the fake library, built once per test process
/// (the fake is a cdylib no test target depends on) next to the running
/// test: `target/debug/deps/TEST-HASH` -> `target/debug`.
pub fn built() -> &'static (PathBuf, PathBuf) {
    static BUILT: OnceLock<(PathBuf, PathBuf)> = OnceLock::new();
    BUILT.get_or_init(|| {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = Command::new(cargo)
            .args(["build", "--quiet", "-p", "fake-nvml", "-p", "ztinit-gpu"])
            .current_dir(repo())
            .status()
            .expect("cargo build -p fake-nvml -p ztinit-gpu");
        assert!(status.success());
        let exe = std::env::current_exe().unwrap();
        let dir = exe.parent().and_then(Path::parent).unwrap().to_path_buf();
        let (helper, lib) = (dir.join("ztinit-gpu"), dir.join("libfake_nvml.so"));
        assert!(helper.is_file() && lib.is_file(), "{} {}", helper.display(), lib.display());
        (helper, lib)
    })
}

pub fn is_root() -> bool {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status.lines().any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(2) == Some("0"))
}

/// The fake's test CA root (PEM), which no production trust anchor knows.
pub fn test_root_path() -> PathBuf {
    repo().join("crates/fake-nvml/testca/root.pem")
}

pub fn test_root_pem() -> String {
    std::fs::read_to_string(test_root_path()).unwrap()
}

/// The measurement the fake reports at index `i` (hex SHA-384).
pub fn fake_measurement(i: u8) -> String {
    hex::encode(Sha384::digest(format!("ztinit fake-nvml measurement {i}")))
}

/// One fake library configuration in a temporary directory: where it
/// records the NVML calls and the ready state, plus `extra` settings.
pub struct Fake {
    pub dir: tempfile::TempDir,
}

impl Fake {
    pub fn new(extra: serde_json::Value) -> Fake {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = serde_json::json!({
            "record": dir.path().join("calls").to_str().unwrap(),
            "ready_file": dir.path().join("ready").to_str().unwrap(),
        });
        for (k, v) in extra.as_object().unwrap() {
            cfg[k] = v.clone();
        }
        std::fs::write(dir.path().join("fake.json"), cfg.to_string()).unwrap();
        Fake { dir }
    }

    /// The environment that points the fake at this configuration.
    pub fn env(&self) -> Vec<(OsString, OsString)> {
        vec![("FAKE_NVML_CONFIG".into(), self.dir.path().join("fake.json").into())]
    }

    /// The NVML calls recorded so far, one per line.
    pub fn calls(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("calls")).unwrap_or_default()
    }

    /// The helper with the fake library under `confinement`.
    pub fn command_with(&self, confinement: Confinement) -> HelperCommand {
        let (helper, lib) = built();
        HelperCommand {
            program: helper.clone(),
            nvml_library: Some(lib.to_str().unwrap().into()),
            env: self.env(),
            timeout: Duration::from_secs(20),
            confinement,
        }
    }

    pub fn helper_with(&self, confinement: Confinement) -> Helper {
        Helper::spawn(&self.command_with(confinement)).unwrap()
    }

    /// The fake's record and ready files: a confined helper's only
    /// writable paths.
    pub fn writable(&self) -> Vec<String> {
        vec![self.dir.path().to_str().unwrap().to_string()]
    }
}
