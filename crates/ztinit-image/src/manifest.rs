//! OCI image index / Docker manifest list, OCI / Docker schema 2 image
//! manifests and image configs: the registry's JSON, parsed strictly from
//! bytes with a cap. Parsing is pure (`&[u8]` in, value or typed error out)
//! so each parser is a fuzz target.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::digest::Digest;

pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";

pub const OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar";
pub const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
pub const OCI_LAYER_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";
pub const DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
/// The suffix ocicrypt appends to an encrypted layer's media type.
pub const ENCRYPTED_SUFFIX: &str = "+encrypted";

/// What the helper asks a registry for, as an `Accept` list.
pub const MANIFEST_ACCEPT: &[&str] = &[OCI_INDEX, OCI_MANIFEST, DOCKER_MANIFEST_LIST, DOCKER_MANIFEST];

/// Caps on the number of entries, far above real images and far below what
/// would let a registry make the helper do unbounded work per manifest.
pub const MAX_MANIFESTS: usize = 1024;
pub const MAX_LAYERS: usize = 1024;
pub const MAX_ENV: usize = 4096;
pub const MAX_ANNOTATIONS: usize = 256;

#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("{what} of {size} bytes is larger than the {cap}-byte cap")]
    TooLarge { what: &'static str, size: usize, cap: usize },
    #[error("{what} is not valid JSON of the expected shape: {source}")]
    Json {
        what: &'static str,
        #[source]
        source: serde_json::Error,
    },
    #[error("{what}: {why}")]
    Invalid { what: &'static str, why: String },
    #[error("no {os}/{architecture} manifest in the index (it has: {available})")]
    NoPlatform { os: String, architecture: String, available: String },
    #[error("unsupported layer media type {0:?}")]
    LayerMediaType(String),
}

fn invalid(what: &'static str, why: impl Into<String>) -> ManifestError {
    ManifestError::Invalid { what, why: why.into() }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Platform {
    pub architecture: String,
    pub os: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
    #[serde(rename = "os.version", default, skip_serializing_if = "Option::is_none")]
    pub os_version: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    pub media_type: String,
    pub digest: Digest,
    pub size: u64,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
}

/// An OCI image index or a Docker manifest list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Index {
    pub schema_version: u32,
    #[serde(default)]
    pub media_type: Option<String>,
    pub manifests: Vec<Descriptor>,
}

/// An OCI image manifest or a Docker schema 2 manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    pub schema_version: u32,
    #[serde(default)]
    pub media_type: Option<String>,
    pub config: Descriptor,
    pub layers: Vec<Descriptor>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// What a manifest endpoint returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed {
    Index(Index),
    Manifest(Manifest),
}

/// The parts of an image config the helper uses.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImageConfig {
    pub architecture: String,
    pub os: String,
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    pub env: Vec<String>,
    pub working_dir: String,
    pub user: String,
    /// sha256 of each uncompressed (decrypted) layer, in layer order.
    pub diff_ids: Vec<Digest>,
}

fn check_cap(what: &'static str, bytes: &[u8], cap: usize) -> Result<(), ManifestError> {
    if bytes.len() > cap {
        return Err(ManifestError::TooLarge { what, size: bytes.len(), cap });
    }
    Ok(())
}

fn json<'a, T: Deserialize<'a>>(what: &'static str, bytes: &'a [u8]) -> Result<T, ManifestError> {
    serde_json::from_slice(bytes).map_err(|source| ManifestError::Json { what, source })
}

fn check_descriptor(what: &'static str, d: &Descriptor) -> Result<(), ManifestError> {
    if d.media_type.is_empty() || d.media_type.len() > 255 || !d.media_type.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(invalid(what, format!("descriptor {} has an invalid media type", d.digest)));
    }
    if d.annotations.len() > MAX_ANNOTATIONS {
        return Err(invalid(what, format!("descriptor {} has more than {MAX_ANNOTATIONS} annotations", d.digest)));
    }
    Ok(())
}

fn check_schema(what: &'static str, schema_version: u32) -> Result<(), ManifestError> {
    if schema_version != 2 {
        return Err(invalid(what, format!("schemaVersion {schema_version}, expected 2")));
    }
    Ok(())
}

/// An OCI image index or Docker manifest list, at most `cap` bytes.
pub fn parse_index(bytes: &[u8], cap: usize) -> Result<Index, ManifestError> {
    const WHAT: &str = "image index";
    check_cap(WHAT, bytes, cap)?;
    let index: Index = json(WHAT, bytes)?;
    check_schema(WHAT, index.schema_version)?;
    if let Some(m) = &index.media_type
        && m != OCI_INDEX
        && m != DOCKER_MANIFEST_LIST
    {
        return Err(invalid(WHAT, format!("mediaType {:?} is not an index", ztinit::kbs::http::truncate(m, 80))));
    }
    if index.manifests.len() > MAX_MANIFESTS {
        return Err(invalid(WHAT, format!("more than {MAX_MANIFESTS} manifests")));
    }
    for d in &index.manifests {
        check_descriptor(WHAT, d)?;
    }
    Ok(index)
}

/// An OCI image manifest or Docker schema 2 manifest, at most `cap` bytes.
pub fn parse_manifest(bytes: &[u8], cap: usize) -> Result<Manifest, ManifestError> {
    const WHAT: &str = "image manifest";
    check_cap(WHAT, bytes, cap)?;
    let manifest: Manifest = json(WHAT, bytes)?;
    check_schema(WHAT, manifest.schema_version)?;
    if let Some(m) = &manifest.media_type
        && m != OCI_MANIFEST
        && m != DOCKER_MANIFEST
    {
        return Err(invalid(
            WHAT,
            format!("mediaType {:?} is not an image manifest", ztinit::kbs::http::truncate(m, 80)),
        ));
    }
    if manifest.layers.len() > MAX_LAYERS {
        return Err(invalid(WHAT, format!("more than {MAX_LAYERS} layers")));
    }
    if manifest.annotations.len() > MAX_ANNOTATIONS {
        return Err(invalid(WHAT, format!("more than {MAX_ANNOTATIONS} annotations")));
    }
    check_descriptor(WHAT, &manifest.config)?;
    for d in &manifest.layers {
        check_descriptor(WHAT, d)?;
    }
    Ok(manifest)
}

/// Only the members that tell an index from a manifest.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Shape {
    #[serde(default)]
    media_type: Option<String>,
    #[serde(default)]
    manifests: Option<serde::de::IgnoredAny>,
    #[serde(default)]
    layers: Option<serde::de::IgnoredAny>,
}

/// An index or a manifest, decided by the body's own `mediaType` (it is
/// covered by the digest, unlike the response's Content-Type), else by the
/// `content_type` the registry sent, else by its members. A document that
/// has both `manifests` and `layers` is refused: it could be read either way.
pub fn parse_any(bytes: &[u8], content_type: Option<&str>, cap: usize) -> Result<Parsed, ManifestError> {
    const WHAT: &str = "manifest";
    check_cap(WHAT, bytes, cap)?;
    let shape: Shape = json(WHAT, bytes)?;
    if shape.manifests.is_some() && shape.layers.is_some() {
        return Err(invalid(WHAT, "has both `manifests` and `layers`"));
    }
    let is_index = |m: &str| m == OCI_INDEX || m == DOCKER_MANIFEST_LIST;
    let is_manifest = |m: &str| m == OCI_MANIFEST || m == DOCKER_MANIFEST;
    let index = match (shape.media_type.as_deref(), content_type) {
        (Some(m), _) if is_index(m) => true,
        (Some(m), _) if is_manifest(m) => false,
        (Some(m), _) => {
            return Err(invalid(WHAT, format!("unsupported mediaType {:?}", ztinit::kbs::http::truncate(m, 80))));
        }
        (None, Some(c)) if is_index(c) => true,
        (None, Some(c)) if is_manifest(c) => false,
        (None, _) if shape.manifests.is_some() => true,
        (None, _) if shape.layers.is_some() => false,
        (None, _) => return Err(invalid(WHAT, "neither an image index nor an image manifest")),
    };
    if index { parse_index(bytes, cap).map(Parsed::Index) } else { parse_manifest(bytes, cap).map(Parsed::Manifest) }
}

/// The first manifest for `os`/`architecture` (the variant is not
/// considered: amd64 has none, and arm64's is always v8). Entries that are
/// not image manifests (nested indexes, attestations) are skipped.
pub fn select_platform<'a>(index: &'a Index, os: &str, architecture: &str) -> Result<&'a Descriptor, ManifestError> {
    let manifest_type = |m: &str| m == OCI_MANIFEST || m == DOCKER_MANIFEST;
    if let Some(d) = index.manifests.iter().find(|d| {
        manifest_type(&d.media_type)
            && d.platform.as_ref().is_some_and(|p| p.os == os && p.architecture == architecture)
    }) {
        return Ok(d);
    }
    let mut available: Vec<String> = index
        .manifests
        .iter()
        .filter_map(|d| d.platform.as_ref())
        .take(16)
        .map(|p| ztinit::kbs::http::truncate(&format!("{}/{}", p.os, p.architecture), 40))
        .collect();
    if available.is_empty() {
        available.push("no platforms".into());
    }
    Err(ManifestError::NoPlatform { os: os.into(), architecture: architecture.into(), available: available.join(", ") })
}

#[derive(Deserialize)]
struct RawConfig {
    #[serde(default)]
    architecture: String,
    #[serde(default)]
    os: String,
    #[serde(default)]
    config: Option<RawRuntime>,
    rootfs: RawRootfs,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RawRuntime {
    // `null` and absent both mean "none" in images built by Docker.
    #[serde(default)]
    entrypoint: Option<Vec<String>>,
    #[serde(default)]
    cmd: Option<Vec<String>>,
    #[serde(default)]
    env: Option<Vec<String>>,
    #[serde(default)]
    working_dir: Option<String>,
    #[serde(default)]
    user: Option<String>,
}

#[derive(Deserialize)]
struct RawRootfs {
    #[serde(rename = "type")]
    kind: String,
    diff_ids: Vec<Digest>,
}

/// An image config (OCI or Docker), at most `cap` bytes.
pub fn parse_config(bytes: &[u8], cap: usize) -> Result<ImageConfig, ManifestError> {
    const WHAT: &str = "image config";
    check_cap(WHAT, bytes, cap)?;
    let raw: RawConfig = json(WHAT, bytes)?;
    if raw.rootfs.kind != "layers" {
        return Err(invalid(WHAT, "rootfs.type is not \"layers\""));
    }
    if raw.rootfs.diff_ids.len() > MAX_LAYERS {
        return Err(invalid(WHAT, format!("more than {MAX_LAYERS} diff_ids")));
    }
    let rt = raw.config.unwrap_or(RawRuntime { entrypoint: None, cmd: None, env: None, working_dir: None, user: None });
    let env = rt.env.unwrap_or_default();
    if env.len() > MAX_ENV {
        return Err(invalid(WHAT, format!("more than {MAX_ENV} Env entries")));
    }
    Ok(ImageConfig {
        architecture: raw.architecture,
        os: raw.os,
        entrypoint: rt.entrypoint.unwrap_or_default(),
        cmd: rt.cmd.unwrap_or_default(),
        env,
        working_dir: rt.working_dir.unwrap_or_default(),
        user: rt.user.unwrap_or_default(),
        diff_ids: raw.rootfs.diff_ids,
    })
}

/// That the config describes this manifest: as many diff_ids as layers,
/// and the platform asked for (when the config names one).
pub fn check_config(
    manifest: &Manifest,
    config: &ImageConfig,
    os: &str,
    architecture: &str,
) -> Result<(), ManifestError> {
    const WHAT: &str = "image config";
    if config.diff_ids.len() != manifest.layers.len() {
        return Err(invalid(
            WHAT,
            format!("{} diff_ids for {} layers in the manifest", config.diff_ids.len(), manifest.layers.len()),
        ));
    }
    if (!config.os.is_empty() && config.os != os)
        || (!config.architecture.is_empty() && config.architecture != architecture)
    {
        return Err(invalid(
            WHAT,
            format!(
                "the image is for {}/{}, not {os}/{architecture}",
                ztinit::kbs::http::truncate(&config.os, 20),
                ztinit::kbs::http::truncate(&config.architecture, 20)
            ),
        ));
    }
    Ok(())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
}

/// How a layer's bytes are to be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LayerMedia {
    pub compression: Compression,
    pub encrypted: bool,
}

impl LayerMedia {
    /// From a layer descriptor's media type. Foreign and non-distributable
    /// layers, Docker schema 1 and anything unknown are refused.
    pub fn parse(media_type: &str) -> Result<Self, ManifestError> {
        let (base, encrypted) = match media_type.strip_suffix(ENCRYPTED_SUFFIX) {
            Some(b) => (b, true),
            None => (media_type, false),
        };
        let compression = match base {
            OCI_LAYER => Compression::None,
            OCI_LAYER_GZIP | DOCKER_LAYER_GZIP => Compression::Gzip,
            OCI_LAYER_ZSTD => Compression::Zstd,
            _ => return Err(ManifestError::LayerMediaType(ztinit::kbs::http::truncate(media_type, 120))),
        };
        Ok(Self { compression, encrypted })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(n: u8) -> String {
        Digest::of(&[n]).to_string()
    }

    fn index_json() -> String {
        format!(
            r#"{{"schemaVersion":2,"mediaType":"{OCI_INDEX}","manifests":[
              {{"mediaType":"{OCI_MANIFEST}","digest":"{}","size":500,
                "platform":{{"architecture":"arm64","os":"linux","variant":"v8"}}}},
              {{"mediaType":"{OCI_MANIFEST}","digest":"{}","size":501,"annotations":{{"a":"b"}},
                "platform":{{"architecture":"amd64","os":"linux"}}}},
              {{"mediaType":"{OCI_MANIFEST}","digest":"{}","size":502,
                "platform":{{"architecture":"amd64","os":"linux"}}}}
            ]}}"#,
            d(1),
            d(2),
            d(3)
        )
    }

    fn manifest_json(media_type: &str, layer_type: &str) -> String {
        format!(
            r#"{{"schemaVersion":2,"mediaType":"{media_type}",
              "config":{{"mediaType":"{OCI_CONFIG}","digest":"{}","size":100}},
              "layers":[{{"mediaType":"{layer_type}","digest":"{}","size":12345,
                "annotations":{{"org.opencontainers.image.enc.keys.jwe":"eyJ9"}}}}],
              "annotations":{{"x":"y"}}}}"#,
            d(4),
            d(5)
        )
    }

    #[test]
    fn index_with_arm64_and_amd64_selects_the_first_amd64() {
        let index = parse_index(index_json().as_bytes(), 1 << 20).unwrap();
        assert_eq!(index.manifests.len(), 3);
        let amd64 = select_platform(&index, "linux", "amd64").unwrap();
        assert_eq!((amd64.digest.to_string(), amd64.size), (d(2), 501));
        assert_eq!(amd64.annotations.get("a").map(String::as_str), Some("b"));
        let arm64 = select_platform(&index, "linux", "arm64").unwrap();
        assert_eq!(arm64.platform.as_ref().unwrap().variant.as_deref(), Some("v8"));
        let e = select_platform(&index, "linux", "s390x").unwrap_err();
        assert_eq!(
            e.to_string(),
            "no linux/s390x manifest in the index (it has: linux/arm64, linux/amd64, linux/amd64)"
        );
        assert!(matches!(parse_any(index_json().as_bytes(), None, 1 << 20).unwrap(), Parsed::Index(_)));
    }

    #[test]
    fn platform_selection_skips_what_is_not_an_image_manifest() {
        let json = format!(
            r#"{{"schemaVersion":2,"manifests":[
              {{"mediaType":"{OCI_INDEX}","digest":"{}","size":1,"platform":{{"architecture":"amd64","os":"linux"}}}},
              {{"mediaType":"{DOCKER_MANIFEST}","digest":"{}","size":2,"platform":{{"architecture":"amd64","os":"linux"}}}}]}}"#,
            d(1),
            d(2)
        );
        let index = parse_index(json.as_bytes(), 4096).unwrap();
        assert_eq!(select_platform(&index, "linux", "amd64").unwrap().digest.to_string(), d(2));
        let empty = parse_index(br#"{"schemaVersion":2,"manifests":[]}"#, 4096).unwrap();
        assert!(select_platform(&empty, "linux", "amd64").unwrap_err().to_string().ends_with("(it has: no platforms)"));
    }

    #[test]
    fn manifests_of_both_flavours() {
        for mt in [OCI_MANIFEST, DOCKER_MANIFEST] {
            let json = manifest_json(mt, OCI_LAYER_GZIP);
            let m = parse_manifest(json.as_bytes(), 1 << 20).unwrap();
            assert_eq!(m.config.digest.to_string(), d(4));
            assert_eq!(m.layers[0].size, 12345);
            assert!(m.layers[0].annotations.contains_key("org.opencontainers.image.enc.keys.jwe"));
            assert_eq!(parse_any(json.as_bytes(), Some(OCI_INDEX), 1 << 20).unwrap(), Parsed::Manifest(m));
        }
        // No mediaType: the Content-Type decides, else the members.
        let json = manifest_json(OCI_MANIFEST, OCI_LAYER).replace(&format!(r#""mediaType":"{OCI_MANIFEST}","#), "");
        assert!(matches!(parse_any(json.as_bytes(), Some(DOCKER_MANIFEST), 4096).unwrap(), Parsed::Manifest(_)));
        assert!(matches!(parse_any(json.as_bytes(), None, 4096).unwrap(), Parsed::Manifest(_)));
        assert!(parse_any(json.as_bytes(), Some(OCI_INDEX), 4096).is_err());
    }

    #[test]
    fn hostile_manifests_are_refused() {
        let good = manifest_json(OCI_MANIFEST, OCI_LAYER);
        assert!(matches!(
            parse_manifest(good.as_bytes(), 100).unwrap_err(),
            ManifestError::TooLarge { what: "image manifest", cap: 100, .. }
        ));
        for bad in [
            good.replace(r#""schemaVersion":2"#, r#""schemaVersion":1"#),
            good.replace(OCI_MANIFEST, OCI_INDEX),
            good.replace(r#""size":12345"#, r#""size":-1"#),
            good.replace(r#""size":12345"#, r#""size":1e3"#),
            good.replace(r#""size":12345"#, r#""size":18446744073709551616"#),
            good.replace(&d(5), "sha256:abc"),
            good.replace(&d(5), &d(5).replace("sha256", "sha512")),
            good.replace(r#""size":100"#, r#""size":100,"size":101"#),
            good.replace(r#""layers":"#, r#""layers":[],"layers":"#),
            good.replace(r#""config":"#, r#""configx":"#),
            good.replace(&format!(r#""mediaType":"{OCI_LAYER}""#), r#""mediaType":"a b""#),
            good[..good.len() - 1].to_string(),
            "[]".into(),
            "".into(),
        ] {
            assert!(parse_manifest(bad.as_bytes(), 1 << 20).is_err(), "{bad}");
        }
        let many = format!(
            r#"{{"schemaVersion":2,"config":{{"mediaType":"{OCI_CONFIG}","digest":"{}","size":1}},"layers":[{}]}}"#,
            d(1),
            vec![format!(r#"{{"mediaType":"{OCI_LAYER}","digest":"{}","size":1}}"#, d(2)); MAX_LAYERS + 1].join(",")
        );
        assert!(parse_manifest(many.as_bytes(), 1 << 20).unwrap_err().to_string().contains("more than 1024 layers"));
        // Ambiguous or unknown documents.
        let both = r#"{"schemaVersion":2,"manifests":[],"layers":[],"config":{}}"#.to_string();
        assert!(parse_any(both.as_bytes(), None, 4096).unwrap_err().to_string().contains("both"));
        assert!(parse_any(br#"{"schemaVersion":2}"#, None, 4096).is_err());
        let v1 = br#"{"schemaVersion":1,"mediaType":"application/vnd.docker.distribution.manifest.v1+prettyjws"}"#;
        assert!(parse_any(v1, None, 4096).unwrap_err().to_string().contains("unsupported mediaType"));
        assert!(parse_index(br#"{"schemaVersion":2,"mediaType":"x","manifests":[]}"#, 4096).is_err());
    }

    #[test]
    fn config_fields_and_checks() {
        let json = format!(
            r#"{{"architecture":"amd64","os":"linux","config":{{"Entrypoint":["/bin/app"],"Cmd":null,
               "Env":["PATH=/usr/bin","A=b"],"WorkingDir":"/srv","User":"app:app","Labels":{{"x":"y"}}}},
               "rootfs":{{"type":"layers","diff_ids":["{}","{}"]}},"history":[]}}"#,
            d(1),
            d(2)
        );
        let c = parse_config(json.as_bytes(), 1 << 20).unwrap();
        assert_eq!(c.entrypoint, ["/bin/app"]);
        assert!(c.cmd.is_empty());
        assert_eq!(c.env, ["PATH=/usr/bin", "A=b"]);
        assert_eq!((c.working_dir.as_str(), c.user.as_str()), ("/srv", "app:app"));
        assert_eq!(c.diff_ids.iter().map(Digest::to_string).collect::<Vec<_>>(), [d(1), d(2)]);

        let m = parse_manifest(manifest_json(OCI_MANIFEST, OCI_LAYER).as_bytes(), 1 << 20).unwrap();
        let e = check_config(&m, &c, "linux", "amd64").unwrap_err();
        assert_eq!(e.to_string(), "image config: 2 diff_ids for 1 layers in the manifest");
        let one = ImageConfig { diff_ids: vec![Digest::of(b"x")], ..c.clone() };
        check_config(&m, &one, "linux", "amd64").unwrap();
        let e = check_config(&m, &one, "linux", "arm64").unwrap_err();
        assert!(e.to_string().contains("the image is for linux/amd64, not linux/arm64"), "{e}");

        let minimal = format!(r#"{{"rootfs":{{"type":"layers","diff_ids":["{}"]}}}}"#, d(1));
        assert_eq!(parse_config(minimal.as_bytes(), 4096).unwrap().diff_ids.len(), 1);
        for bad in [
            minimal.replace("layers", "squash"),
            minimal.replace(&d(1), "sha256:0"),
            r#"{"config":{}}"#.into(),
            r#"{"config":{"Cmd":"sh"},"rootfs":{"type":"layers","diff_ids":[]}}"#.to_string(),
            r#"{"config":{"Env":[1]},"rootfs":{"type":"layers","diff_ids":[]}}"#.to_string(),
        ] {
            assert!(parse_config(bad.as_bytes(), 4096).is_err(), "{bad}");
        }
        assert!(matches!(parse_config(minimal.as_bytes(), 10).unwrap_err(), ManifestError::TooLarge { .. }));
    }

    #[test]
    fn layer_media_types() {
        let none = |encrypted| LayerMedia { compression: Compression::None, encrypted };
        let gzip = |encrypted| LayerMedia { compression: Compression::Gzip, encrypted };
        let zstd = |encrypted| LayerMedia { compression: Compression::Zstd, encrypted };
        for (mt, want) in [
            (OCI_LAYER, none(false)),
            (OCI_LAYER_GZIP, gzip(false)),
            (OCI_LAYER_ZSTD, zstd(false)),
            (DOCKER_LAYER_GZIP, gzip(false)),
            ("application/vnd.oci.image.layer.v1.tar+encrypted", none(true)),
            ("application/vnd.oci.image.layer.v1.tar+gzip+encrypted", gzip(true)),
            ("application/vnd.oci.image.layer.v1.tar+zstd+encrypted", zstd(true)),
            ("application/vnd.docker.image.rootfs.diff.tar.gzip+encrypted", gzip(true)),
        ] {
            assert_eq!(LayerMedia::parse(mt).unwrap(), want, "{mt}");
        }
        for bad in [
            "",
            "+encrypted",
            "application/vnd.oci.image.layer.v1.tar+encrypted+gzip",
            "application/vnd.oci.image.layer.v1.tar+gzip+encrypted+encrypted",
            "application/vnd.oci.image.layer.v1.tar+bzip2",
            "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
            "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
            "application/vnd.oci.image.layer.v1.TAR",
            "application/octet-stream",
        ] {
            let e = LayerMedia::parse(bad).unwrap_err();
            assert!(e.to_string().starts_with("unsupported layer media type"), "{bad}: {e}");
        }
    }
}
