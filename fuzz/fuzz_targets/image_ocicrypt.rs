//! An ocicrypt layer: the descriptor's annotations (the public options and
//! the JWE recipients, unwrapped with a fixed key of tests/fixtures) and
//! the encrypted stream, decrypted and authenticated; PEM private keys.
//!
//! Input: the pubopts JSON on the first line, one JWE JSON per following
//! line (each base64-encoded here, as the annotations carry them), a blank
//! line, then the encrypted layer.
#![no_main]
use std::collections::BTreeMap;
use std::io::Read;
use std::sync::LazyLock;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use libfuzzer_sys::fuzz_target;
use ztinit_image::ocicrypt::{self, LayerKey, PrivateKeys};

static KEYS: LazyLock<PrivateKeys> = LazyLock::new(|| {
    PrivateKeys::from_pem(include_bytes!("../../crates/ztinit-image/tests/fixtures/ocicrypt/layer.key"))
        .expect("the fixture key parses")
});

/// The fixture layer's key, for streams whose annotations do not unwrap.
static FIXTURE_KEY: LazyLock<LayerKey> = LazyLock::new(|| {
    let manifest: serde_json::Value = serde_json::from_slice(include_bytes!(
        "../../crates/ztinit-image/tests/fixtures/ocicrypt/one-recipient-manifest.json"
    ))
    .expect("the fixture manifest parses");
    let annotations: BTreeMap<String, String> =
        serde_json::from_value(manifest["layers"][0]["annotations"].clone()).expect("annotations");
    ocicrypt::unwrap_layer(&annotations, &KEYS).expect("the fixture layer unwraps")
});

fuzz_target!(|data: &[u8]| {
    let _ = PrivateKeys::from_pem(data);
    let (head, stream) = match data.windows(2).position(|w| w == b"\n\n") {
        Some(i) => (&data[..i], &data[i + 2..]),
        None => (data, &[][..]),
    };
    let mut lines = head.split(|&b| b == b'\n');
    let mut annotations = BTreeMap::new();
    if let Some(pubopts) = lines.next() {
        annotations.insert(ocicrypt::PUBOPTS_ANNOTATION.to_string(), STANDARD.encode(pubopts));
    }
    let jwes: Vec<String> = lines.map(|l| STANDARD.encode(l)).collect();
    if !jwes.is_empty() {
        annotations.insert(ocicrypt::KEYS_JWE_ANNOTATION.to_string(), jwes.join(","));
    }
    let unwrapped = ocicrypt::unwrap_layer(&annotations, &KEYS);
    let key = unwrapped.as_ref().unwrap_or(&*FIXTURE_KEY);
    let mut decryptor = key.decryptor(stream);
    let mut buf = [0u8; 4096];
    let mut total = 0usize;
    loop {
        match decryptor.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => total += n,
        }
    }
    assert!(total <= stream.len(), "CTR neither adds nor drops bytes");
});
