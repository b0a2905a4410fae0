//! Loads a kernel module and its dependencies from the image the way the
//! module loader will: read `/lib/modules/RELEASE/modules.dep`, load the
//! dependencies first, each with `finit_module(MODULE_INIT_COMPRESSED_FILE)`
//! so the kernel decompresses the `.ko.zst` itself. Checks that the test
//! kernel's module support (zstd, in-kernel decompression) works.
//! Usage: load-module NAME (must run as root with CAP_SYS_MODULE).

use std::ffi::CString;
use std::os::fd::AsRawFd;

use ztinit_testkit::say;

const MODULE_INIT_COMPRESSED_FILE: libc::c_int = 4;

fn main() {
    let name = std::env::args().nth(1).unwrap_or_else(|| "sm4_generic".into());
    match run(&name) {
        Ok(loaded) => {
            say(&format!("testkit: load-module: loaded {}", loaded.join(" ")));
            let modules = std::fs::read_to_string("/proc/modules").unwrap_or_default();
            let listed: Vec<&str> = modules.lines().filter_map(|l| l.split_whitespace().next()).collect();
            say(&format!("testkit: load-module: /proc/modules: {}", listed.join(" ")));
            let all = loaded.iter().all(|m| listed.contains(&m.as_str()));
            std::process::exit(if all { 0 } else { 1 });
        }
        Err(e) => {
            say(&format!("testkit: load-module: FAILED: {e}"));
            std::process::exit(2);
        }
    }
}

fn run(name: &str) -> Result<Vec<String>, String> {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").map_err(|e| format!("osrelease: {e}"))?;
    let dir = format!("/lib/modules/{}", release.trim());
    let dep = std::fs::read_to_string(format!("{dir}/modules.dep")).map_err(|e| format!("modules.dep: {e}"))?;
    let module_name =
        |path: &str| path.rsplit('/').next().unwrap_or(path).split(".ko").next().unwrap_or(path).replace('-', "_");
    let (path, deps) = dep
        .lines()
        .filter_map(|l| l.split_once(':'))
        .find(|(p, _)| module_name(p) == name)
        .ok_or_else(|| format!("{name} is not in {dir}/modules.dep"))?;
    // modules.dep lists the closure with the deepest dependency last.
    let mut order: Vec<&str> = deps.split_whitespace().rev().collect();
    order.push(path);
    let mut loaded = Vec::new();
    for p in order {
        let file = std::fs::File::open(format!("{dir}/{p}")).map_err(|e| format!("{p}: {e}"))?;
        let params = CString::default();
        // SAFETY: a valid fd and a NUL-terminated (empty) parameter string.
        let rc = unsafe {
            libc::syscall(libc::SYS_finit_module, file.as_raw_fd(), params.as_ptr(), MODULE_INIT_COMPRESSED_FILE)
        };
        if rc != 0 {
            return Err(format!("finit_module({p}): {}", std::io::Error::last_os_error()));
        }
        loaded.push(module_name(p));
    }
    Ok(loaded)
}
