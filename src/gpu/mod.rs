//! Confidential NVIDIA GPUs: detection, bring-up, evidence and its offline
//! verification, and the ready state that only attestation may set.
//!
//! Verification (`spdm`, `certs`, `verify`, `rim`, `evidence`) is pure Rust
//! and used by three callers: the boot flow, `cargo xtask verify-gpu` and the
//! dev KBS. Talking to the driver is the job of the glibc helper
//! `ztinit-gpu` (NVML cannot be loaded into a static musl PID 1), spoken to
//! over a pipe by [`helper`].

pub mod certs;
pub mod evidence;
pub mod protocol;
pub mod rim;
pub mod spdm;
pub mod verify;
pub mod xml;

#[cfg(test)]
mod tests;
