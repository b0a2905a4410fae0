//! The request/response protocol between ztinit and its glibc NVML helper
//! `ztinit-gpu`: one JSON object per line on the helper's stdin/stdout,
//! strictly alternating. Documented in `docs/gpu.md`.
//!
//! Both sides depend on this crate, so a change to the protocol is one
//! change; it depends on serde and serde_json only.

use serde::{Deserialize, Serialize};

/// Protocol version; a response with another version is refused.
pub const VERSION: u32 = 1;
/// Longest line either side accepts (an evidence response is ~20 KiB).
pub const MAX_LINE: usize = 256 * 1024;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "kebab-case")]
pub enum Op {
    /// Driver version and every GPU.
    Inventory,
    /// The system-wide confidential-computing settings, raw.
    CcSettings,
    /// SPDM report over `nonce` (64 hex digits) and certificate chain of GPU `gpu`.
    Evidence { gpu: u32, nonce: String },
    /// Locked clocks and/or power limit of GPU `gpu`.
    Tune {
        gpu: u32,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        locked_clocks_mhz: Option<(u32, u32)>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        power_limit_mw: Option<u32>,
    },
    /// Sets the system-wide GPUs ready state to 1 (accepting work) and reads it back.
    SetReady,
    /// Reads the system-wide GPUs ready state.
    GetReady,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request {
    pub v: u32,
    #[serde(flatten)]
    pub op: Op,
}

impl Request {
    pub fn new(op: Op) -> Request {
        Request { v: VERSION, op }
    }
}

/// `{"v":1,"ok":{...}}` or `{"v":1,"error":"..."}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Response {
    pub v: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ok: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Response {
    pub fn ok(value: serde_json::Value) -> Response {
        Response { v: VERSION, ok: Some(value), error: None }
    }
    pub fn error(message: impl Into<String>) -> Response {
        Response { v: VERSION, ok: None, error: Some(message.into()) }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GpuInfo {
    pub index: u32,
    pub uuid: String,
    /// NVML architecture number (9 Hopper, 10 Blackwell).
    pub arch: u32,
    pub vbios_version: String,
    /// PCI bus id as NVML prints it (`00000000:01:00.0`).
    pub pci_bus_id: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Inventory {
    pub driver_version: String,
    pub gpus: Vec<GpuInfo>,
}

/// Raw NVML values (`nvmlSystemGetConfComputeSettings` v1 and
/// `nvmlSystemGetConfComputeCapabilities`); ztinit interprets them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct CcSettings {
    /// 0 unavailable, 1 simulation (devtools), 2 production.
    pub environment: u32,
    /// 0 disabled, 1 enabled.
    pub cc_feature: u32,
    /// 0 off, 1 on.
    pub devtools_mode: u32,
    /// 0 none, 1 protected PCIe, 2 NVLink encryption.
    pub multi_gpu_mode: u32,
    /// 0 none, 1 AMD SEV, 2 Intel TDX, 3 AMD SEV-SNP, 4 AMD SNP vTOM.
    pub cpu_caps: u32,
    /// 0 no CC-capable GPU, 1 capable.
    pub gpus_caps: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EvidenceReply {
    pub gpu: u32,
    /// Standard base64 of the SPDM transcript.
    pub report: String,
    /// Standard base64 of the PEM attestation certificate chain.
    pub cert_chain: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReadyReply {
    pub ready: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TuneReply {
    pub gpu: u32,
}
