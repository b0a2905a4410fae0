//! Initdata's `"ztinit.toml"` entry over the baked configuration, key by key.
//!
//! The host chooses the initdata document; the TEE only proves which one it
//! chose (HOSTDATA / MRCONFIGID). So initdata may set a key only when no
//! value of it can widen whom the guest trusts or what it runs with
//! privilege. That is decided here, per key, in [`INITDATA_KEYS`]: a key not
//! listed is baked-only, so a key added to any section stays out of the
//! host's reach until someone argues it in. The baked file then opens a
//! subset of these to initdata with `tee.initdata_keys`.

use std::fmt;

use serde::de::{self, Deserialize, Deserializer, Visitor};

use super::{Config, Issue, Origin};

/// A key initdata may set, and why no value of it widens trust.
pub struct InitdataKey {
    pub path: &'static str,
    pub why: &'static str,
}

/// Every key initdata may ever set. Everything else is baked-only.
pub const INITDATA_KEYS: &[InitdataKey] = &[
    InitdataKey { path: "boot.log_level", why: "how much is logged; no level logs a secret" },
    InitdataKey { path: "boot.shutdown_timeout_ms", why: "timing only; the host can stop the VM anyway" },
    InitdataKey { path: "boot.hostname", why: "a name, not an identity anything checks" },
    InitdataKey {
        path: "kbs.url",
        why: "only https:// and only when the baked [kbs] pins the certificate or names the CA: the KBS must still prove itself with a baked trust anchor",
    },
    InitdataKey { path: "kbs.connect_timeout_ms", why: "timing only; the host can delay or drop packets anyway" },
    InitdataKey { path: "kbs.read_timeout_ms", why: "timing only" },
    InitdataKey { path: "kbs.retries", why: "bounded; the host can refuse connections anyway" },
    InitdataKey { path: "kbs.retry_backoff_ms", why: "timing only" },
    InitdataKey { path: "kbs.deadline_ms", why: "timing only" },
    InitdataKey { path: "network.mode", why: "the host owns the network; nothing on it is trusted" },
    InitdataKey { path: "network.interface", why: "the host owns the network" },
    InitdataKey { path: "network.address", why: "the host owns the network" },
    InitdataKey { path: "network.gateway", why: "the host owns the network" },
    InitdataKey { path: "gpu.helper_timeout_ms", why: "timing only" },
    InitdataKey { path: "gpu.ready_timeout_ms", why: "timing only" },
    InitdataKey { path: "gpu.ready_timeout_per_gpu_ms", why: "timing only" },
    InitdataKey {
        path: "image.reference",
        why: "only when the baked [image] requires a signature by a baked publisher key: the host may choose which signed image runs, never an unsigned one",
    },
];

/// True when `path` is a key initdata may set at all.
pub fn is_settable(path: &str) -> bool {
    INITDATA_KEYS.iter().any(|k| k.path == path)
}

/// The settable keys, comma-separated, for messages and `check-config`.
pub fn settable_list() -> String {
    INITDATA_KEYS.iter().map(|k| k.path).collect::<Vec<_>>().join(", ")
}

/// What the old per-section opening (`tee.initdata_sections`) gave the host
/// that it no longer gets: for each section, its baked-only keys.
pub fn lost_by_sections(sections: &[String]) -> Vec<String> {
    let mut lost = Vec::new();
    for s in sections {
        match super::section_keys(s) {
            Some(keys) => {
                lost.extend(keys.iter().map(|k| format!("{s}.{k}")).filter(|p| !is_settable(p)));
            }
            None => lost.push(s.clone()),
        }
    }
    lost
}

/// The keys a table sets, as `section.key` paths. A section that is not a
/// table, an array (of tables too) and a map-valued key are one value each:
/// `secrets`, not `secrets[0].file`; `gpu.measurements`, not `gpu.measurements.10`.
pub fn leaf_paths(table: &toml::Table) -> Vec<String> {
    let mut out = Vec::new();
    for (section, value) in table {
        match value {
            toml::Value::Table(keys) => out.extend(keys.keys().map(|k| format!("{section}.{k}"))),
            _ => out.push(section.clone()),
        }
    }
    out
}

/// Checks the overlay against the schema's allowlist, the baked opening
/// (`tee.initdata_keys` of `baked`) and the conditional rule of `kbs.url`,
/// then merges it into `table`. Returns the keys set. Every refused key is
/// one issue, the baked-only ones first.
pub fn apply(table: &mut toml::Table, overlay: toml::Table, baked: &Config) -> Result<Vec<String>, Vec<Issue>> {
    let opened: &[String] = baked.tee.as_ref().map_or(&[], |t| t.initdata_keys.as_slice());
    let keys = leaf_paths(&overlay);
    let issue = |message: String| Issue { origin: Origin::Initdata, line: None, key: String::new(), message };
    let mut baked_only = Vec::new();
    let mut refused = Vec::new();
    for key in &keys {
        if !is_settable(key) {
            let message = if super::is_known_key(key) {
                format!("{key} is baked-only")
            } else {
                format!("{key} is not a configuration key")
            };
            baked_only.push(issue(message));
        } else if !opened.iter().any(|o| o == key) {
            refused.push(issue(format!("{key} is not opened to initdata by the baked tee.initdata_keys")));
        } else if key == "kbs.url"
            && let Some(problem) = url_problem(&overlay, baked)
        {
            refused.push(issue(format!("kbs.url {problem}")));
        } else if key == "image.reference" && !baked.image.verifies_any_reference() {
            refused.push(issue(
                "image.reference may come from initdata only when the baked [image] has signature_policy = \"signed\" and publisher keys (signature_keys or signature_key_files)".to_string(),
            ));
        }
    }
    baked_only.extend(refused);
    if !baked_only.is_empty() {
        return Err(baked_only);
    }
    merge(table, overlay);
    Ok(keys)
}

/// Why initdata's `kbs.url` cannot be taken, if it cannot: the baked file
/// must authenticate whatever server the url names.
fn url_problem(overlay: &toml::Table, baked: &Config) -> Option<String> {
    let url = overlay.get("kbs").and_then(|k| k.get("url")).and_then(toml::Value::as_str).unwrap_or("");
    if !url.starts_with("https://") {
        return Some(format!("{url:?} from initdata must be https://"));
    }
    if !baked.kbs.server.as_ref().is_some_and(|s| s.trust().is_anchored()) {
        return Some(
            "may come from initdata only when the baked [kbs] pins the certificate or names the CA (pinned_cert, pinned_cert_file, ca_cert or ca_cert_file)"
                .to_string(),
        );
    }
    None
}

fn merge(base: &mut toml::Table, over: toml::Table) {
    for (key, value) in over {
        match (base.get_mut(&key), value) {
            (Some(toml::Value::Table(b)), toml::Value::Table(o)) => merge(b, o),
            (_, value) => {
                base.insert(key, value);
            }
        }
    }
}

/// The field names of a section type, read from its `Deserialize` impl (the
/// derive passes them to `deserialize_struct`), so the schema has one
/// source. `None` for sections that are not one struct (arrays).
pub fn struct_fields<'de, T: Deserialize<'de>>() -> Option<&'static [&'static str]> {
    let mut probe = FieldProbe { fields: None, through_seq: false };
    let _ = T::deserialize(&mut probe);
    probe.fields
}

/// As [`struct_fields`], but for an array section (`[[secrets]]`,
/// `[[volumes]]`) the fields of its entries.
pub fn entry_fields<'de, T: Deserialize<'de>>() -> Option<&'static [&'static str]> {
    let mut probe = FieldProbe { fields: None, through_seq: true };
    let _ = T::deserialize(&mut probe);
    probe.fields
}

struct FieldProbe {
    fields: Option<&'static [&'static str]>,
    /// Whether a sequence is looked through to its element type.
    through_seq: bool,
}

struct ProbeSeq<'a>(&'a mut FieldProbe);

impl<'de> de::SeqAccess<'de> for ProbeSeq<'_> {
    type Error = Probed;

    fn next_element_seed<S: de::DeserializeSeed<'de>>(&mut self, seed: S) -> Result<Option<S::Value>, Probed> {
        seed.deserialize(&mut *self.0).map(Some)
    }
}

#[derive(Debug)]
struct Probed;

impl fmt::Display for Probed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("field probe")
    }
}

impl std::error::Error for Probed {}

impl de::Error for Probed {
    fn custom<T: fmt::Display>(_msg: T) -> Self {
        Probed
    }
}

impl<'de> Deserializer<'de> for &mut FieldProbe {
    type Error = Probed;

    fn deserialize_any<V: Visitor<'de>>(self, _visitor: V) -> Result<V::Value, Probed> {
        Err(Probed)
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Probed> {
        visitor.visit_some(self)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(self, _name: &'static str, visitor: V) -> Result<V::Value, Probed> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Probed> {
        if !self.through_seq {
            return Err(Probed);
        }
        visitor.visit_seq(ProbeSeq(self))
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        _visitor: V,
    ) -> Result<V::Value, Probed> {
        self.fields = Some(fields);
        Err(Probed)
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf unit unit_struct tuple
        tuple_struct map enum identifier ignored_any
    }
}

/// The baked `[tee]` keys about initdata that need the whole schema:
/// each `initdata_keys` entry must be on [`INITDATA_KEYS`], and the old
/// `initdata_sections` is refused with what it no longer grants.
pub fn check_tee_keys(tee: &crate::tee::TeeConfig) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (i, key) in tee.initdata_keys.iter().enumerate() {
        if !is_settable(key) {
            let what = if super::is_known_key(key) { "is baked-only" } else { "is not a configuration key" };
            out.push((
                format!("tee.initdata_keys[{i}]"),
                format!("{key} {what}: initdata may set only {}", settable_list()),
            ));
        }
    }
    if let Some(sections) = &tee.initdata_sections {
        let lost = lost_by_sections(sections);
        let lost = if lost.is_empty() { "nothing".to_string() } else { lost.join(", ") };
        out.push((
            "tee.initdata_sections".to_string(),
            format!(
                "replaced by initdata_keys (one key at a time); initdata may no longer set: {lost}; keys it may still set when listed in initdata_keys: {}",
                settable_list()
            ),
        ));
    }
    out
}
