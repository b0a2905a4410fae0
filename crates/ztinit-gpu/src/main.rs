//! `ztinit-gpu`: the only process that loads `libnvidia-ml.so.1`.
//!
//! ztinit (a static musl PID 1, which cannot dlopen a glibc library) starts
//! this helper with a clean environment and speaks the versioned JSON-lines
//! protocol of the `ztinit-gpu-protocol` crate on its stdin/stdout. A crash, a hang or
//! a malformed line is fatal on ztinit's side, so this helper stays simple:
//! one request, one response line, until stdin closes.
//!
//! nvml-wrapper serves the plain queries; the confidential-computing calls go
//! through the raw nvml-wrapper-sys symbols, because the wrapper fails on
//! SEV-SNP capability values, hides the environment field, reports PPCIe as
//! "CC off", and slices report/certificate buffers with driver-supplied
//! sizes without checking them.

use ztinit_gpu_protocol as protocol;

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::io::{BufRead, Read, Write};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use nvml_wrapper::Nvml;
use nvml_wrapper::enums::device::GpuLockedClocksSetting;
use nvml_wrapper_sys::bindings as sys;
use protocol::{CcSettings, EvidenceReply, GpuInfo, Inventory, Op, ReadyReply, Request, Response, TuneReply};

const DEFAULT_LIB: &str = "libnvidia-ml.so.1";

fn main() {
    let mut lib = OsString::from(DEFAULT_LIB);
    let mut args = std::env::args_os().skip(1);
    while let Some(a) = args.next() {
        match a.to_str() {
            Some("--nvml") => match args.next() {
                Some(p) => lib = p,
                None => die("--nvml needs a path"),
            },
            Some("--version") => {
                println!("ztinit-gpu protocol {}", protocol::VERSION);
                return;
            }
            _ => die("usage: ztinit-gpu [--nvml PATH]"),
        }
    }
    let nvml = Nvml::builder().lib_path(&lib).init();
    let stdin = std::io::stdin();
    let mut stdout = std::io::stdout().lock();
    let mut server = Server {
        nvml: nvml.map_err(|e| format!("NVML init ({}): {e}", lib.to_string_lossy())),
        attested: BTreeSet::new(),
    };
    let mut line = String::new();
    let mut input = stdin.lock();
    loop {
        line.clear();
        match (&mut input).take(protocol::MAX_LINE as u64 + 1).read_line(&mut line) {
            Ok(0) => return,
            Ok(n) if n > protocol::MAX_LINE => die("request line too long"),
            Ok(_) => {}
            Err(e) => die(&format!("reading stdin: {e}")),
        }
        let response = match serde_json::from_str::<Request>(line.trim_end()) {
            Ok(req) if req.v != protocol::VERSION => Response::error(format!("unsupported protocol version {}", req.v)),
            Ok(req) => server.handle(req.op),
            Err(e) => Response::error(format!("malformed request: {e}")),
        };
        let mut text =
            serde_json::to_string(&response).unwrap_or_else(|_| r#"{"v":1,"error":"unserialisable response"}"#.into());
        text.push('\n');
        if stdout.write_all(text.as_bytes()).and_then(|()| stdout.flush()).is_err() {
            return;
        }
    }
}

fn die(msg: &str) -> ! {
    eprintln!("ztinit-gpu: {msg}");
    std::process::exit(2);
}

struct Server {
    nvml: Result<Nvml, String>,
    /// GPUs whose evidence was requested: one attempt each, as a failed SPDM
    /// exchange tears the GPU's CC state down.
    attested: BTreeSet<u32>,
}

fn to_value<T: serde::Serialize>(v: &T) -> Response {
    match serde_json::to_value(v) {
        Ok(v) => Response::ok(v),
        Err(e) => Response::error(e.to_string()),
    }
}

fn check(call: &str, ret: sys::nvmlReturn_t) -> Result<(), String> {
    if ret == sys::nvmlReturn_enum_NVML_SUCCESS {
        Ok(())
    } else {
        Err(format!("{call} failed with NVML return code {ret}"))
    }
}

macro_rules! sym {
    ($nvml:expr, $name:ident) => {
        $nvml.lib().$name.as_ref().map_err(|e| format!("{}: {e}", stringify!($name)))?
    };
}

impl Server {
    fn handle(&mut self, op: Op) -> Response {
        let nvml = match &self.nvml {
            Ok(n) => n,
            Err(e) => return Response::error(e.clone()),
        };
        let result = match op {
            Op::Inventory => inventory(nvml).map(|v| to_value(&v)),
            Op::CcSettings => cc_settings(nvml).map(|v| to_value(&v)),
            Op::Evidence { gpu, nonce } => {
                if !self.attested.insert(gpu) {
                    Err(format!("evidence of GPU {gpu} was already requested once"))
                } else {
                    evidence(nvml, gpu, &nonce).map(|v| to_value(&v))
                }
            }
            Op::Tune { gpu, locked_clocks_mhz, power_limit_mw } => {
                tune(nvml, gpu, locked_clocks_mhz, power_limit_mw).map(|v| to_value(&v))
            }
            Op::SetReady => set_ready(nvml).map(|v| to_value(&v)),
            Op::GetReady => get_ready(nvml).map(|v| to_value(&v)),
        };
        result.unwrap_or_else(Response::error)
    }
}

fn inventory(nvml: &Nvml) -> Result<Inventory, String> {
    let driver_version = nvml.sys_driver_version().map_err(|e| format!("driver version: {e}"))?;
    let count = nvml.device_count().map_err(|e| format!("device count: {e}"))?;
    let mut gpus = Vec::new();
    for index in 0..count {
        let dev = nvml.device_by_index(index).map_err(|e| format!("GPU {index}: {e}"))?;
        let get_arch = sym!(nvml, nvmlDeviceGetArchitecture);
        let mut arch: sys::nvmlDeviceArchitecture_t = 0;
        // SAFETY: the handle comes from NVML for this index and `arch` is a
        // valid out-pointer for the duration of the call.
        check("nvmlDeviceGetArchitecture", unsafe { get_arch(dev.handle(), &mut arch) })?;
        gpus.push(GpuInfo {
            index,
            uuid: dev.uuid().map_err(|e| format!("GPU {index} UUID: {e}"))?,
            arch,
            vbios_version: dev.vbios_version().map_err(|e| format!("GPU {index} VBIOS version: {e}"))?,
            pci_bus_id: dev.pci_info().map(|p| p.bus_id).map_err(|e| format!("GPU {index} PCI info: {e}"))?,
        });
    }
    Ok(Inventory { driver_version, gpus })
}

fn cc_settings(nvml: &Nvml) -> Result<CcSettings, String> {
    let get_settings = sym!(nvml, nvmlSystemGetConfComputeSettings);
    // A struct of a few dozen bytes: its size fits NVML's version word.
    #[allow(clippy::cast_possible_truncation)]
    let size = std::mem::size_of::<sys::nvmlSystemConfComputeSettings_t>() as u32;
    let mut s = sys::nvmlSystemConfComputeSettings_t {
        version: size | (1 << 24),
        environment: 0,
        ccFeature: 0,
        devToolsMode: 0,
        multiGpuMode: 0,
    };
    // SAFETY: `s` is a correctly sized, versioned v1 settings struct.
    check("nvmlSystemGetConfComputeSettings", unsafe { get_settings(&mut s) })?;
    let get_caps = sym!(nvml, nvmlSystemGetConfComputeCapabilities);
    let mut caps = sys::nvmlConfComputeSystemCaps_t { cpuCaps: 0, gpusCaps: 0 };
    // SAFETY: `caps` is a valid out-pointer of the expected struct.
    check("nvmlSystemGetConfComputeCapabilities", unsafe { get_caps(&mut caps) })?;
    Ok(CcSettings {
        environment: s.environment,
        cc_feature: s.ccFeature,
        devtools_mode: s.devToolsMode,
        multi_gpu_mode: s.multiGpuMode,
        cpu_caps: caps.cpuCaps,
        gpus_caps: caps.gpusCaps,
    })
}

fn evidence(nvml: &Nvml, gpu: u32, nonce_hex: &str) -> Result<EvidenceReply, String> {
    let nonce: [u8; 32] =
        hex::decode(nonce_hex).ok().and_then(|n| n.try_into().ok()).ok_or("nonce must be 64 hex digits")?;
    let dev = nvml.device_by_index(gpu).map_err(|e| format!("GPU {gpu}: {e}"))?;
    let get_report = sym!(nvml, nvmlDeviceGetConfComputeGpuAttestationReport);
    // Boxed: the struct is ~12 KiB.
    // SAFETY: an all-zero report struct is a valid value (integers and byte arrays).
    let mut report: Box<sys::nvmlConfComputeGpuAttestationReport_t> = Box::new(unsafe { std::mem::zeroed() });
    report.nonce = nonce;
    // SAFETY: valid device handle and a valid, writable report struct.
    check("nvmlDeviceGetConfComputeGpuAttestationReport", unsafe { get_report(dev.handle(), &mut *report) })?;
    let len = report.attestationReportSize as usize;
    let report_bytes = report.attestationReport.get(..len).ok_or(format!("driver claims a {len}-byte report"))?;

    let get_cert = sym!(nvml, nvmlDeviceGetConfComputeGpuCertificate);
    // SAFETY: as above, all-zero is a valid certificate struct.
    let mut cert: Box<sys::nvmlConfComputeGpuCertificate_t> = Box::new(unsafe { std::mem::zeroed() });
    // SAFETY: valid device handle and a valid, writable certificate struct.
    check("nvmlDeviceGetConfComputeGpuCertificate", unsafe { get_cert(dev.handle(), &mut *cert) })?;
    let clen = cert.attestationCertChainSize as usize;
    let chain =
        cert.attestationCertChain.get(..clen).ok_or(format!("driver claims a {clen}-byte certificate chain"))?;
    Ok(EvidenceReply { gpu, report: B64.encode(report_bytes), cert_chain: B64.encode(chain) })
}

fn tune(nvml: &Nvml, gpu: u32, clocks: Option<(u32, u32)>, power_mw: Option<u32>) -> Result<TuneReply, String> {
    let mut dev = nvml.device_by_index(gpu).map_err(|e| format!("GPU {gpu}: {e}"))?;
    if let Some((min, max)) = clocks {
        dev.set_gpu_locked_clocks(GpuLockedClocksSetting::Numeric { min_clock_mhz: min, max_clock_mhz: max })
            .map_err(|e| format!("GPU {gpu} locked clocks {min}-{max} MHz: {e}"))?;
    }
    if let Some(mw) = power_mw {
        dev.set_power_management_limit(mw).map_err(|e| format!("GPU {gpu} power limit {mw} mW: {e}"))?;
    }
    Ok(TuneReply { gpu })
}

fn get_ready(nvml: &Nvml) -> Result<ReadyReply, String> {
    let get = sym!(nvml, nvmlSystemGetConfComputeGpusReadyState);
    let mut state: u32 = 0;
    // SAFETY: `state` is a valid out-pointer.
    check("nvmlSystemGetConfComputeGpusReadyState", unsafe { get(&mut state) })?;
    Ok(ReadyReply { ready: state == 1 })
}

fn set_ready(nvml: &Nvml) -> Result<ReadyReply, String> {
    let set = sym!(nvml, nvmlSystemSetConfComputeGpusReadyState);
    // Only ever 1: writing 0 after 1 marks the CC system failed for good.
    // SAFETY: plain value argument.
    check("nvmlSystemSetConfComputeGpusReadyState", unsafe { set(1) })?;
    get_ready(nvml)
}
