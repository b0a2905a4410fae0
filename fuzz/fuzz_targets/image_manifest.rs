//! A registry's manifest answers: an image index or manifest list (and the
//! platform chosen from it), an image manifest and its layers' media
//! types, an image config checked against the manifest.
#![no_main]
use libfuzzer_sys::fuzz_target;
use ztinit_image::manifest::{self, LayerMedia, Parsed};

const CAP: usize = 1 << 20;

fuzz_target!(|data: &[u8]| {
    // Without a Content-Type (the members decide) and with one.
    for content_type in [None, Some(manifest::OCI_INDEX)] {
        match manifest::parse_any(data, content_type, CAP) {
            Ok(Parsed::Index(i)) => assert!(i.manifests.len() <= manifest::MAX_MANIFESTS),
            Ok(Parsed::Manifest(m)) => assert!(m.layers.len() <= manifest::MAX_LAYERS),
            Err(_) => {}
        }
    }
    if let Ok(index) = manifest::parse_index(data, CAP) {
        for (os, arch) in [("linux", "amd64"), ("linux", "arm64")] {
            if let Ok(d) = manifest::select_platform(&index, os, arch) {
                assert!(d.platform.as_ref().is_some_and(|p| p.os == os && p.architecture == arch));
            }
        }
    }
    let parsed = manifest::parse_manifest(data, CAP);
    if let Ok(m) = &parsed {
        for layer in &m.layers {
            let _ = LayerMedia::parse(&layer.media_type);
        }
    }
    if let Ok(config) = manifest::parse_config(data, CAP) {
        assert!(config.diff_ids.len() <= manifest::MAX_LAYERS && config.env.len() <= manifest::MAX_ENV);
        if let Ok(m) = &parsed {
            let _ = manifest::check_config(m, &config, "linux", "amd64");
        }
    }
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = LayerMedia::parse(text);
    }
});
