//! The GPU test workload: reads the fake NVML's ready-state file (what CUDA
//! would ask the driver) and exits 0 only when the GPUs accept work (`1`).

use ztinit_testkit::say;

fn main() {
    let path = std::env::args().nth(1).unwrap_or_else(|| "/run/fake-nvml.ready".into());
    match std::fs::read_to_string(&path) {
        Ok(s) if s.trim() == "1" => {
            say("testkit: gpu-ready: GPUs accept work (ready state 1)");
            std::process::exit(0)
        }
        Ok(s) => say(&format!("testkit: gpu-ready: FAILED: ready state {:?}", s.trim())),
        Err(e) => say(&format!("testkit: gpu-ready: FAILED: {path}: {e}")),
    }
    std::process::exit(1);
}
