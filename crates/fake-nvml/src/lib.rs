//! TEST ONLY: a fake `libnvidia-ml.so.1` for running `ztinit-gpu` without a
//! GPU. Never part of a production image.
//!
//! It exports the NVML C symbols the helper uses, serves CC settings from a
//! JSON file (`$FAKE_NVML_CONFIG`, else `/etc/fake-nvml.json`, else
//! defaults), and answers attestation-report requests with an SPDM 1.1
//! GET_MEASUREMENTS transcript over the requested nonce, signed by the leaf
//! of the test CA in `testca/` (whose root test images pin). Measurement
//! block i (1..=64) is SHA-384("ztinit fake-nvml measurement i") unless the
//! config overrides it. Every state-changing call is appended as a line
//! `fake-nvml: CALL ARGS` to the record file (config `record`, default
//! `/dev/kmsg`, which puts it on a test VM's console).

use std::collections::BTreeMap;
use std::ffi::{c_char, c_uint};
use std::io::Write;
use std::sync::{Mutex, OnceLock};

use nvml_wrapper_sys::bindings as sys;
use p384::ecdsa::signature::Signer;
use p384::ecdsa::{Signature, SigningKey};
use sha2::{Digest, Sha384};

/// Marks this library TEST ONLY for the image builder (`xtask image`), which
/// refuses any image containing these bytes unless it is declared a test
/// image (`[image] test = true`), whatever the file is called.
#[used]
#[unsafe(no_mangle)]
pub static ZTINIT_FAKE_NVML_MARKER: [u8; 41] = *b"ZTINIT-TEST-ONLY: fake libnvidia-ml.so.1\0";

const CHAIN_PEM: &str = include_str!("../testca/chain.pem");
const LEAF_SCALAR_HEX: &str = include_str!("../testca/leaf.scalar.hex");
const FWID_HEX: &str = include_str!("../testca/fwid.hex");

const SUCCESS: sys::nvmlReturn_t = 0;
const INVALID_ARGUMENT: sys::nvmlReturn_t = 2;
const NOT_SUPPORTED: sys::nvmlReturn_t = 3;
const INSUFFICIENT_SIZE: sys::nvmlReturn_t = 7;
const ARGUMENT_VERSION_MISMATCH: sys::nvmlReturn_t = 25;
const UNKNOWN: sys::nvmlReturn_t = 999;

#[derive(Debug, Clone, serde::Deserialize)]
#[serde(default)]
struct Config {
    driver_version: String,
    gpus: Vec<Gpu>,
    environment: u32,
    cc_feature: u32,
    devtools_mode: u32,
    multi_gpu_mode: u32,
    cpu_caps: u32,
    gpus_caps: u32,
    /// Measurement values replacing the defaults, by 1-based block index (hex).
    measurement_overrides: BTreeMap<u8, String>,
    /// Where calls are recorded.
    record: String,
    /// Where the ready state lives, so that it survives helper restarts.
    ready_file: String,
    /// Fail attestation-report requests (as a driver whose SPDM session broke).
    fail_report: bool,
}

#[derive(Debug, Clone, serde::Deserialize)]
#[serde(default)]
struct Gpu {
    uuid: String,
    vbios_version: String,
    arch: u32,
    pci_bus_id: String,
}

impl Default for Gpu {
    fn default() -> Self {
        Gpu {
            uuid: "GPU-00000000-0000-0000-0000-000000000000".into(),
            vbios_version: "96.00.9F.00.01".into(),
            arch: 9,
            pci_bus_id: "00000000:01:00.0".into(),
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            driver_version: "550.90.07".into(),
            gpus: vec![Gpu::default()],
            environment: 2,
            cc_feature: 1,
            devtools_mode: 0,
            multi_gpu_mode: 0,
            cpu_caps: 3,
            gpus_caps: 1,
            measurement_overrides: BTreeMap::new(),
            record: "/dev/kmsg".into(),
            ready_file: "/run/fake-nvml.ready".into(),
            fail_report: false,
        }
    }
}

fn config() -> &'static Config {
    static CONFIG: OnceLock<Config> = OnceLock::new();
    CONFIG.get_or_init(|| {
        let path = std::env::var("FAKE_NVML_CONFIG").unwrap_or_else(|_| "/etc/fake-nvml.json".into());
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_else(|e| {
                record(&Config::default().record, &format!("bad config {path}: {e}"));
                Config::default()
            }),
            Err(_) => Config::default(),
        }
    })
}

static RECORD_LOCK: Mutex<()> = Mutex::new(());

fn record(path: &str, line: &str) {
    let _guard = RECORD_LOCK.lock();
    if let Ok(mut f) = std::fs::OpenOptions::new().append(true).create(true).open(path) {
        let _ = f.write_all(format!("fake-nvml: {line}\n").as_bytes());
    }
}

fn rec(line: &str) {
    record(&config().record, line);
}

fn gpu_of(device: sys::nvmlDevice_t) -> Option<(u32, &'static Gpu)> {
    let index = (device as usize).checked_sub(0x1000)?;
    let gpu = config().gpus.get(index)?;
    Some((u32::try_from(index).ok()?, gpu))
}

/// Copies `s` NUL-terminated into a caller buffer.
///
/// # Safety
/// `buf` must be valid for `len` bytes.
unsafe fn put_str(s: &str, buf: *mut c_char, len: c_uint) -> sys::nvmlReturn_t {
    if buf.is_null() {
        return INVALID_ARGUMENT;
    }
    if s.len() + 1 > len as usize {
        return INSUFFICIENT_SIZE;
    }
    // SAFETY: the caller guarantees `len` writable bytes; we write s.len()+1 <= len.
    unsafe {
        std::ptr::copy_nonoverlapping(s.as_ptr(), buf.cast::<u8>(), s.len());
        *buf.add(s.len()) = 0;
    }
    SUCCESS
}

fn read_ready() -> u32 {
    std::fs::read_to_string(&config().ready_file).ok().and_then(|s| s.trim().parse().ok()).unwrap_or(0)
}

/// The measurement value of 1-based block `index`.
fn measurement(index: u8) -> Vec<u8> {
    if let Some(v) = config().measurement_overrides.get(&index).and_then(|h| hex::decode(h).ok()) {
        return v;
    }
    Sha384::digest(format!("ztinit fake-nvml measurement {index}")).to_vec()
}

/// NVIDIA's opaque VBIOS encoding of `96.00.9F.00.01`.
fn vbios_bytes(v: &str) -> [u8; 8] {
    let parts: Vec<u8> = v.split('.').filter_map(|p| u8::from_str_radix(p, 16).ok()).collect();
    let mut out = [0u8; 8];
    if parts.len() == 5 {
        out[0] = parts[3];
        out[1] = parts[2];
        out[2] = parts[1];
        out[3] = parts[0];
        out[4] = parts[4];
    }
    out
}

fn opaque(out: &mut Vec<u8>, field: u16, data: &[u8]) -> Option<()> {
    out.extend_from_slice(&field.to_le_bytes());
    out.extend_from_slice(&u16::try_from(data.len()).ok()?.to_le_bytes());
    out.extend_from_slice(data);
    Some(())
}

fn signing_key() -> Option<SigningKey> {
    let mut scalar = hex::decode(LEAF_SCALAR_HEX.trim()).ok()?;
    if scalar.len() == 49 && scalar[0] == 0 {
        scalar.remove(0);
    }
    SigningKey::from_slice(&scalar).ok()
}

/// An SPDM 1.1 GET_MEASUREMENTS request + signed MEASUREMENTS response.
fn build_report(gpu: &Gpu, nonce: &[u8; 32]) -> Option<Vec<u8>> {
    let mut r = vec![0x11, 0xE0, 0x01, 0xFF];
    r.extend_from_slice(nonce);
    r.push(0); // slot
    let mut record = Vec::new();
    for index in 1..=64u8 {
        let value = measurement(index);
        record.push(index);
        record.push(1); // DMTF
        record.extend_from_slice(&u16::try_from(value.len() + 3).ok()?.to_le_bytes());
        record.push(0x01);
        record.extend_from_slice(&u16::try_from(value.len()).ok()?.to_le_bytes());
        record.extend_from_slice(&value);
    }
    r.extend_from_slice(&[0x11, 0x60, 0x00, 0x00, 64]);
    let len = u32::try_from(record.len()).ok()?;
    r.extend_from_slice(&len.to_le_bytes()[..3]);
    r.extend_from_slice(&record);
    r.extend_from_slice(&Sha384::digest(nonce)[..32]); // responder nonce
    let mut od = Vec::new();
    let mut driver = config().driver_version.clone().into_bytes();
    driver.push(0);
    opaque(&mut od, 3, &driver)?;
    opaque(&mut od, 6, &vbios_bytes(&gpu.vbios_version))?;
    opaque(&mut od, 11, &[0xAA])?;
    opaque(&mut od, 15, b"882\0")?;
    opaque(&mut od, 17, b"1010\0")?;
    opaque(&mut od, 18, b"0200\0")?;
    opaque(&mut od, 20, &hex::decode(FWID_HEX.trim()).ok()?)?;
    r.extend_from_slice(&u16::try_from(od.len()).ok()?.to_le_bytes());
    r.extend_from_slice(&od);
    let sig: Signature = signing_key()?.sign(&r);
    r.extend_from_slice(&sig.to_bytes());
    Some(r)
}

#[unsafe(no_mangle)]
pub extern "C" fn nvmlInit_v2() -> sys::nvmlReturn_t {
    rec("nvmlInit_v2");
    SUCCESS
}

#[unsafe(no_mangle)]
pub extern "C" fn nvmlInitWithFlags(_flags: c_uint) -> sys::nvmlReturn_t {
    nvmlInit_v2()
}

#[unsafe(no_mangle)]
pub extern "C" fn nvmlShutdown() -> sys::nvmlReturn_t {
    SUCCESS
}

#[unsafe(no_mangle)]
pub extern "C" fn nvmlErrorString(_r: sys::nvmlReturn_t) -> *const c_char {
    c"fake-nvml error".as_ptr()
}

/// # Safety
/// NVML contract: `version` is valid for `length` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlSystemGetDriverVersion(version: *mut c_char, length: c_uint) -> sys::nvmlReturn_t {
    // SAFETY: forwarded caller contract.
    unsafe { put_str(&config().driver_version, version, length) }
}

/// # Safety
/// NVML contract: valid out-pointer.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlDeviceGetCount_v2(count: *mut c_uint) -> sys::nvmlReturn_t {
    if count.is_null() {
        return INVALID_ARGUMENT;
    }
    // SAFETY: non-null out-pointer per the NVML contract.
    unsafe { *count = c_uint::try_from(config().gpus.len()).unwrap_or(c_uint::MAX) };
    SUCCESS
}

/// # Safety
/// NVML contract: valid out-pointer.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlDeviceGetHandleByIndex_v2(
    index: c_uint,
    device: *mut sys::nvmlDevice_t,
) -> sys::nvmlReturn_t {
    if device.is_null() || index as usize >= config().gpus.len() {
        return INVALID_ARGUMENT;
    }
    // SAFETY: non-null out-pointer; the handle is an opaque token, never dereferenced.
    unsafe { *device = (0x1000 + index as usize) as sys::nvmlDevice_t };
    SUCCESS
}

/// # Safety
/// NVML contract: `uuid` is valid for `length` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlDeviceGetUUID(
    device: sys::nvmlDevice_t,
    uuid: *mut c_char,
    length: c_uint,
) -> sys::nvmlReturn_t {
    match gpu_of(device) {
        // SAFETY: forwarded caller contract.
        Some((_, g)) => unsafe { put_str(&g.uuid, uuid, length) },
        None => INVALID_ARGUMENT,
    }
}

/// # Safety
/// NVML contract: `version` is valid for `length` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlDeviceGetVbiosVersion(
    device: sys::nvmlDevice_t,
    version: *mut c_char,
    length: c_uint,
) -> sys::nvmlReturn_t {
    match gpu_of(device) {
        // SAFETY: forwarded caller contract.
        Some((_, g)) => unsafe { put_str(&g.vbios_version, version, length) },
        None => INVALID_ARGUMENT,
    }
}

/// # Safety
/// NVML contract: valid out-pointer.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlDeviceGetArchitecture(
    device: sys::nvmlDevice_t,
    arch: *mut sys::nvmlDeviceArchitecture_t,
) -> sys::nvmlReturn_t {
    match gpu_of(device) {
        Some((_, g)) if !arch.is_null() => {
            // SAFETY: non-null out-pointer.
            unsafe { *arch = g.arch };
            SUCCESS
        }
        _ => INVALID_ARGUMENT,
    }
}

/// # Safety
/// NVML contract: valid out-pointer.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlDeviceGetPciInfo_v3(
    device: sys::nvmlDevice_t,
    pci: *mut sys::nvmlPciInfo_t,
) -> sys::nvmlReturn_t {
    let Some((_, g)) = gpu_of(device) else {
        return INVALID_ARGUMENT;
    };
    if pci.is_null() {
        return INVALID_ARGUMENT;
    }
    // SAFETY: non-null out-pointer to a plain C struct; all-zero is valid.
    unsafe {
        *pci = std::mem::zeroed();
        put_str(&g.pci_bus_id, (*pci).busId.as_mut_ptr(), 32);
        put_str(&g.pci_bus_id, (*pci).busIdLegacy.as_mut_ptr(), 16);
        (*pci).bus = 1;
    }
    SUCCESS
}

/// # Safety
/// NVML contract: valid, versioned struct.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlSystemGetConfComputeSettings(
    s: *mut sys::nvmlSystemConfComputeSettings_t,
) -> sys::nvmlReturn_t {
    if s.is_null() {
        return INVALID_ARGUMENT;
    }
    // A struct of a few dozen bytes: its size fits the version word.
    #[allow(clippy::cast_possible_truncation)]
    let want = std::mem::size_of::<sys::nvmlSystemConfComputeSettings_t>() as u32 | (1 << 24);
    // SAFETY: non-null pointer to the caller's struct.
    unsafe {
        if (*s).version != want {
            return ARGUMENT_VERSION_MISMATCH;
        }
        let c = config();
        (*s).environment = c.environment;
        (*s).ccFeature = c.cc_feature;
        (*s).devToolsMode = c.devtools_mode;
        (*s).multiGpuMode = c.multi_gpu_mode;
    }
    SUCCESS
}

/// # Safety
/// NVML contract: valid out-pointer.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlSystemGetConfComputeCapabilities(
    caps: *mut sys::nvmlConfComputeSystemCaps_t,
) -> sys::nvmlReturn_t {
    if caps.is_null() {
        return INVALID_ARGUMENT;
    }
    // SAFETY: non-null out-pointer.
    unsafe {
        (*caps).cpuCaps = config().cpu_caps;
        (*caps).gpusCaps = config().gpus_caps;
    }
    SUCCESS
}

/// # Safety
/// NVML contract: valid out-pointer.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlSystemGetConfComputeGpusReadyState(state: *mut c_uint) -> sys::nvmlReturn_t {
    if state.is_null() {
        return INVALID_ARGUMENT;
    }
    // SAFETY: non-null out-pointer.
    unsafe { *state = read_ready() };
    SUCCESS
}

#[unsafe(no_mangle)]
pub extern "C" fn nvmlSystemSetConfComputeGpusReadyState(state: c_uint) -> sys::nvmlReturn_t {
    rec(&format!("nvmlSystemSetConfComputeGpusReadyState({state})"));
    if state > 1 {
        return INVALID_ARGUMENT;
    }
    if state == 0 && read_ready() == 1 {
        // The driver marks the CC system failed for good.
        rec("FATAL: ready state set to 0 after 1");
        return INVALID_ARGUMENT;
    }
    if std::fs::write(&config().ready_file, state.to_string()).is_err() {
        return UNKNOWN;
    }
    SUCCESS
}

/// # Safety
/// NVML contract: valid report struct with the nonce filled in.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlDeviceGetConfComputeGpuAttestationReport(
    device: sys::nvmlDevice_t,
    report: *mut sys::nvmlConfComputeGpuAttestationReport_t,
) -> sys::nvmlReturn_t {
    let Some((index, gpu)) = gpu_of(device) else {
        return INVALID_ARGUMENT;
    };
    if report.is_null() {
        return INVALID_ARGUMENT;
    }
    // SAFETY: non-null pointer to the caller's struct.
    let r = unsafe { &mut *report };
    rec(&format!("nvmlDeviceGetConfComputeGpuAttestationReport(gpu={index}, nonce={})", hex::encode(r.nonce)));
    if config().fail_report {
        return UNKNOWN;
    }
    let Some(bytes) = build_report(gpu, &r.nonce) else {
        return UNKNOWN;
    };
    if bytes.len() > r.attestationReport.len() {
        return INSUFFICIENT_SIZE;
    }
    r.attestationReport[..bytes.len()].copy_from_slice(&bytes);
    r.attestationReportSize = u32::try_from(bytes.len()).unwrap_or(u32::MAX);
    r.isCecAttestationReportPresent = 0;
    r.cecAttestationReportSize = 0;
    SUCCESS
}

/// # Safety
/// NVML contract: valid out-pointer.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlDeviceGetConfComputeGpuCertificate(
    device: sys::nvmlDevice_t,
    cert: *mut sys::nvmlConfComputeGpuCertificate_t,
) -> sys::nvmlReturn_t {
    if gpu_of(device).is_none() || cert.is_null() {
        return INVALID_ARGUMENT;
    }
    // SAFETY: non-null pointer to the caller's struct.
    let c = unsafe { &mut *cert };
    let pem = CHAIN_PEM.as_bytes();
    if pem.len() > c.attestationCertChain.len() {
        return INSUFFICIENT_SIZE;
    }
    c.attestationCertChain[..pem.len()].copy_from_slice(pem);
    c.attestationCertChainSize = u32::try_from(pem.len()).unwrap_or(u32::MAX);
    c.certChainSize = 0;
    SUCCESS
}

#[unsafe(no_mangle)]
pub extern "C" fn nvmlDeviceSetGpuLockedClocks(
    device: sys::nvmlDevice_t,
    min: c_uint,
    max: c_uint,
) -> sys::nvmlReturn_t {
    let Some((index, _)) = gpu_of(device) else {
        return INVALID_ARGUMENT;
    };
    rec(&format!("nvmlDeviceSetGpuLockedClocks(gpu={index}, min={min}, max={max})"));
    if min > max { INVALID_ARGUMENT } else { SUCCESS }
}

#[unsafe(no_mangle)]
pub extern "C" fn nvmlDeviceSetPowerManagementLimit(device: sys::nvmlDevice_t, limit: c_uint) -> sys::nvmlReturn_t {
    let Some((index, _)) = gpu_of(device) else {
        return INVALID_ARGUMENT;
    };
    rec(&format!("nvmlDeviceSetPowerManagementLimit(gpu={index}, limit={limit})"));
    SUCCESS
}

#[unsafe(no_mangle)]
pub extern "C" fn nvmlDeviceGetMemoryInfo(_d: sys::nvmlDevice_t, _m: *mut std::ffi::c_void) -> sys::nvmlReturn_t {
    NOT_SUPPORTED
}
