//! Build identity, embedded by `build.rs`.

pub const VERSION: &str = env!("CARGO_PKG_VERSION");
pub const GIT_REV: &str = env!("ZTINIT_GIT_REV");
pub const INPUT_HASH: &str = env!("ZTINIT_INPUT_HASH");

/// `ztinit 0.1.0 (rev 0123456789ab, inputs 0011223344556677)`
pub fn line() -> String {
    format!("ztinit {VERSION} (rev {GIT_REV}, inputs {INPUT_HASH})")
}
