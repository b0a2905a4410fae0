//! Standard descriptors of PID 1.
//!
//! The kernel opens /dev/console as fds 0/1/2 for init when the image has a
//! /dev/console node; if it had none, those fds are closed and the first
//! files we open would silently take their place. After /dev is mounted we
//! therefore always point 0/1/2 at /dev/console.

use std::os::fd::AsRawFd;
use std::path::Path;

#[derive(Debug, thiserror::Error)]
#[error("open {path}: {source}")]
pub struct ConsoleError {
    path: String,
    #[source]
    source: std::io::Error,
}

pub fn attach(dev_root: &Path) -> Result<(), ConsoleError> {
    use std::os::unix::fs::OpenOptionsExt;
    let path = dev_root.join("console");
    let console = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NOCTTY)
        .open(&path)
        .map_err(|source| ConsoleError { path: path.display().to_string(), source })?;
    for fd in 0..3 {
        if console.as_raw_fd() != fd {
            // SAFETY: dup2 onto the standard descriptors, which PID 1 owns.
            unsafe { libc::dup2(console.as_raw_fd(), fd) };
        }
    }
    if console.as_raw_fd() <= 2 {
        // It landed on a standard descriptor itself: keep it open there.
        std::mem::forget(console);
    }
    Ok(())
}
