//! ztinit's container image helper (docs/image.md): the OCI distribution
//! client, the cosign signature check, ocicrypt layer decryption and the
//! unpacker. Every input here is attacker-shaped (registry answers, layer
//! bytes); each parser has a fuzz target.

pub mod manifest;
pub mod ocicrypt;
pub mod pull;
pub mod registry;
pub mod signature;
pub mod unpack;
pub mod user;

/// Shared with PID 1, which validates the configured reference.
pub use ztinit::image::{digest, reference};
