//! NVIDIA evidence as a KBS receives it (Trustee's object or NVAT's
//! array), decoded device by device.
#![no_main]
use libfuzzer_sys::fuzz_target;
use ztinit::gpu::evidence::NvidiaEvidence;

fuzz_target!(|data: &[u8]| {
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(data) else { return };
    let Ok(evidence) = NvidiaEvidence::from_value(&value) else { return };
    for (i, device) in evidence.device_evidence_list.iter().take(8).enumerate() {
        let _ = device.decode(i);
    }
});
