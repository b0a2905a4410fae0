//! The `[tee]` section: which TEEs this image accepts and what evidence it
//! is prepared to send. Only the baked (measured) file may set it; initdata
//! never can (no `tee.*` key is in `config::overlay::INITDATA_KEYS`).

use serde::Deserialize;

use super::TeeKind;
use crate::schema::{Section, Validator};

/// What to do with a Kata initdata device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum InitdataMode {
    /// Use it when present (it must match HOSTDATA / MRCONFIGID). When it is
    /// absent, HOSTDATA / MRCONFIGID must be all zero: a launch that bound
    /// initdata but withholds the document stops the boot.
    #[default]
    Optional,
    /// The boot stops without a matching initdata document.
    Required,
    /// Never look for one; HOSTDATA / MRCONFIGID are not checked here (the
    /// KBS still sees them in the evidence).
    Off,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TeeConfig {
    /// Accepted TEE kinds. Hardware kinds always win over `sample`.
    pub accept: Vec<TeeKind>,
    /// Development images only: permit the `sample` TEE, which proves nothing.
    pub allow_sample: bool,
    /// Accept a guest whose SNP policy or TDX attributes allow debugging
    /// (the host can then read guest memory).
    pub allow_debug: bool,
    /// Kata initdata handling.
    pub initdata: InitdataMode,
    /// Keys that the initdata entry `ztinit.toml` may set: each must be one
    /// of `config::overlay::INITDATA_KEYS`, the keys no value of which widens trust.
    pub initdata_keys: Vec<String>,
    /// Replaced by `initdata_keys`; only read to explain what it no longer
    /// grants.
    pub initdata_sections: Option<Vec<String>>,
}

impl Default for TeeConfig {
    fn default() -> Self {
        Self {
            accept: vec![TeeKind::Snp, TeeKind::Tdx],
            allow_sample: false,
            allow_debug: false,
            initdata: InitdataMode::Optional,
            initdata_keys: Vec::new(),
            initdata_sections: None,
        }
    }
}

impl TeeConfig {
    pub fn accepts(&self, kind: TeeKind) -> bool {
        self.accept.contains(&kind) && (kind != TeeKind::Sample || self.allow_sample)
    }

    /// "snp", "snp or tdx", "snp, tdx or sample": for messages.
    pub fn accepted_list(&self) -> String {
        let names: Vec<&str> = self.accept.iter().map(|k| k.as_str()).collect();
        match names.as_slice() {
            [] => "nothing".to_string(),
            [one] => (*one).to_string(),
            [init @ .., last] => format!("{} or {last}", init.join(", ")),
        }
    }
}

impl Section for TeeConfig {
    fn validate(&self, v: &mut Validator<'_>) {
        if self.accept.is_empty() {
            v.error("accept", "must name at least one TEE kind (snp, tdx, sample)");
        }
        for (i, kind) in self.accept.iter().enumerate() {
            if self.accept[..i].contains(kind) {
                v.error("accept", format!("{kind} is listed twice"));
            }
        }
        let lists_sample = self.accept.contains(&TeeKind::Sample);
        if lists_sample && !self.allow_sample {
            v.error("accept", "\"sample\" proves nothing and needs allow_sample = true (development images only)");
        }
        if self.allow_sample && !lists_sample {
            v.error("allow_sample", "has no effect unless accept lists \"sample\"");
        }
        // Whether each key may come from initdata at all is checked against
        // the whole schema, by `config::overlay::check_tee_keys`.
        for (i, key) in self.initdata_keys.iter().enumerate() {
            if self.initdata_keys[..i].contains(key) {
                v.error(&format!("initdata_keys[{i}]"), format!("{key} is listed twice"));
            }
        }
        if !self.initdata_keys.is_empty() && self.initdata == InitdataMode::Off {
            v.error("initdata_keys", "initdata = \"off\" ignores initdata, so no key can come from it");
        }
    }
}
