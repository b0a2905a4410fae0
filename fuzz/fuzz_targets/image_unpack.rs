//! A layer unpacked for real into a fresh scratch root (plain tar; the
//! decompressors have their own target): names, parents beneath the root,
//! symlinks, hard links, whiteouts and opaque directories, modes, the
//! budget. Checked to leave nothing beside the root, then removed.
#![no_main]
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;
use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use ztinit_image::unpack::{self, Budget, Compression};

/// `SCRATCH/a/b/root`: a `..` that got out lands in `b`, `a` or `SCRATCH`,
/// which must hold only the way down. Removed when the fuzzer exits.
static SCRATCH: LazyLock<tempfile::TempDir> = LazyLock::new(|| {
    let dir = tempfile::tempdir().expect("a scratch directory");
    std::fs::create_dir_all(dir.path().join("a/b")).expect("a/b");
    // SAFETY: registers a plain `extern "C" fn` with no arguments.
    unsafe { libc::atexit(remove_scratch) };
    dir
});

extern "C" fn remove_scratch() {
    let _ = std::fs::remove_dir_all(SCRATCH.path());
}

fn only(dir: &Path, name: &str) {
    let names: Vec<_> = std::fs::read_dir(dir).expect("readable").filter_map(|e| Some(e.ok()?.file_name())).collect();
    assert!(
        names.len() == 1 && names[0] == name,
        "{} holds {names:?}: the layer wrote outside its root",
        dir.display()
    );
}

/// Makes every directory under `dir` writable again (a layer may set 0555),
/// so that it can be removed when not running as root.
fn unlock(dir: &Path) {
    let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700));
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                unlock(&e.path());
            }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let b = SCRATCH.path().join("a/b");
    let root = b.join("root");
    std::fs::create_dir(&root).expect("a fresh root");
    let fd = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC)
        .open(&root)
        .expect("the root opens");
    let mut budget = Budget::new(1 << 20, 256);
    let _ = unpack::unpack_layer(data, Compression::None, &fd, &mut budget);
    drop(fd);
    only(SCRATCH.path(), "a");
    only(&SCRATCH.path().join("a"), "b");
    only(&b, "root");
    if std::fs::remove_dir_all(&root).is_err() {
        unlock(&root);
        std::fs::remove_dir_all(&root).expect("the root is removed");
    }
});
