//! ztinit: a zero-trust PID 1 for confidential AI virtual machines.
//!
//! Each module owns one duty of the boot sequence: `main.rs` reads as that
//! sequence and `stages` is the glue of each step. Every path a module
//! touches on the real system is a parameter with the real path as its
//! default, so unit tests run against a temporary tree.

pub mod background;
pub mod bytes;
pub mod cli;
pub mod config;
pub mod console;
pub mod files;
pub mod gpu;
pub mod image;
pub mod kbs;
pub mod kernel_params;
pub mod kmsg;
pub mod lockdown;
pub mod modules;
pub mod mount;
pub mod names;
pub mod net;
pub mod pem;
pub mod power;
pub mod prefault;
pub mod sandbox;
pub mod schema;
pub mod secrets;
pub mod stages;
pub mod supervise;
pub mod tee;
pub mod timeline;
pub mod version;
pub mod volume;
