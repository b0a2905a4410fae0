//! Before NVML can answer: the kernel modules to load and the
//! `nvidia-persistenced` daemon that keeps the driver state (and the CC
//! session with the GPU) alive between clients.
//!
//! ztinit's module loader loads what [`modules`] lists; its supervisor starts
//! [`persistenced_command`] and owns reaping; this module only describes
//! them and waits for readiness.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

/// One kernel module to load, with its parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModuleLoad {
    pub name: &'static str,
    pub params: Vec<String>,
}

/// `nvidia` then `nvidia-uvm`. NVLink is disabled for a single GPU (as
/// NVIDIA's NVRC does): there is no peer, and link training only costs time.
pub fn modules(gpu_count: usize) -> Vec<ModuleLoad> {
    let mut nvidia = ModuleLoad { name: "nvidia", params: Vec::new() };
    if gpu_count == 1 {
        nvidia.params.push("NVreg_NvLinkDisable=1".into());
    }
    vec![nvidia, ModuleLoad { name: "nvidia-uvm", params: Vec::new() }]
}

/// The daemon command: UVM persistence keeps `nvidia-uvm` state too.
pub fn persistenced_command(program: &Path) -> Command {
    let mut c = Command::new(program);
    c.arg("--verbose").arg("--uvm-persistence-mode");
    c.env_clear();
    c
}

/// How long to wait for the daemon: CC attach takes seconds per GPU
/// (3-4 s per B200 measured in public reports, more under TDX), so the
/// deadline grows with the GPU count.
pub fn readiness_deadline(base: Duration, per_gpu: Duration, gpu_count: usize) -> Duration {
    base + per_gpu * u32::try_from(gpu_count).unwrap_or(u32::MAX)
}

#[derive(Debug, thiserror::Error)]
pub enum ReadinessError {
    #[error("nvidia-persistenced exited before it was ready")]
    Exited,
    #[error("nvidia-persistenced not ready after {0} s (no {1})")]
    Timeout(u64, String),
}

/// Waits until the daemon's RPC socket exists (it creates it once its RPC
/// service is initialised, i.e. all GPUs are attached), polling `alive`
/// (the supervisor's view of the process) so a crash is reported at once.
pub fn wait_persistenced_ready(
    socket: &Path,
    deadline: Duration,
    mut alive: impl FnMut() -> bool,
) -> Result<Duration, ReadinessError> {
    let start = Instant::now();
    loop {
        if socket.exists() {
            return Ok(start.elapsed());
        }
        if !alive() {
            return Err(ReadinessError::Exited);
        }
        if start.elapsed() >= deadline {
            return Err(ReadinessError::Timeout(deadline.as_secs(), socket.display().to_string()));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

pub const DEFAULT_PERSISTENCED: &str = "/usr/bin/nvidia-persistenced";
pub const DEFAULT_PERSISTENCED_SOCKET: &str = "/run/nvidia-persistenced/socket";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nvlink_is_disabled_only_for_one_gpu() {
        assert_eq!(modules(1)[0].params, ["NVreg_NvLinkDisable=1"]);
        assert!(modules(8)[0].params.is_empty());
        assert_eq!(modules(2).iter().map(|m| m.name).collect::<Vec<_>>(), ["nvidia", "nvidia-uvm"]);
    }

    #[test]
    fn deadline_scales_with_gpus() {
        let d = readiness_deadline(Duration::from_secs(60), Duration::from_secs(10), 8);
        assert_eq!(d, Duration::from_secs(140));
    }

    #[test]
    fn persistenced_args() {
        let c = persistenced_command(Path::new("/usr/bin/nvidia-persistenced"));
        let args: Vec<_> = c.get_args().map(|a| a.to_string_lossy().into_owned()).collect();
        assert_eq!(args, ["--verbose", "--uvm-persistence-mode"]);
    }

    #[test]
    fn readiness_waits_for_the_socket_and_notices_exit() {
        let t = tempfile::tempdir().unwrap();
        let sock = t.path().join("socket");
        let err = wait_persistenced_ready(&sock, Duration::from_secs(5), || false).unwrap_err();
        assert!(matches!(err, ReadinessError::Exited));
        let err = wait_persistenced_ready(&sock, Duration::from_millis(120), || true).unwrap_err();
        assert!(err.to_string().starts_with("nvidia-persistenced not ready after 0 s"), "{err}");
        let s2 = sock.clone();
        let h = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(100));
            std::fs::write(s2, b"").unwrap();
        });
        wait_persistenced_ready(&sock, Duration::from_secs(5), || true).unwrap();
        h.join().unwrap();
    }
}
