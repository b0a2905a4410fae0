//! The resource policy: a small TOML file instead of Trustee's Rego.
//!
//! ```toml
//! allow_sample = true        # accept tokens from `sample` (no TEE) guests
//! deny_all = false           # refuse every resource
//! default = "allow"          # for resources no rule matches: "allow" | "deny"
//!
//! [[resources]]
//! path = "default/key/*"     # repo/type/tag, `*` matches one whole segment
//! allow = false
//! tees = ["snp", "tdx"]      # optional: the rule applies only to these TEEs
//! reason = "model keys need real hardware"
//!
//! [snp]                      # reference values for SEV-SNP evidence
//! measurements = ["7a1e…"]   # accepted launch measurements (hex, 48 bytes); none: any
//! allow_debug = false
//! min_report_version = 2
//! min_tcb = { bootloader = 3, tee = 0, snp = 8, microcode = 115 }
//! vcek = ["vcek.der"]        # VCEK/VLEK DER files for reports sent without one
//!
//! [tdx]                      # reference values for TDX evidence
//! mrtd = ["705e…"]           # accepted MRTDs (hex, 48 bytes); none: any
//! rtmr1 = "559c…"            # rtmr0..rtmr3, mr_config_id: exact values where given
//! allow_debug = false
//! replay_eventlog = true
//!
//! [nvidia]                   # the `nvidia` device verifier (see `nvidia.rs`)
//! device_root = "root.pem"
//! measurements = { "2" = ["<hex>"] }
//! ```
//!
//! Paths (`vcek`) are relative to the policy file.

use std::path::Path;

use serde::Deserialize;
use ztinit::tee::verify::{self, SnpPolicy, TdxPolicy, parse_hex};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Fallback {
    #[default]
    Allow,
    Deny,
}

#[derive(Debug, Clone, Default)]
pub struct Policy {
    pub allow_sample: bool,
    pub deny_all: bool,
    pub default: Fallback,
    pub resources: Vec<Rule>,
    /// What SNP and TDX evidence must show (reference values, debug,
    /// endorsement keys), for the verifiers of `ztinit::tee::verify`.
    pub tee: verify::Policy,
    /// Reference values and trust anchor of the `nvidia` device verifier.
    pub nvidia: Option<crate::nvidia::NvidiaSection>,
}

/// The file as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyFile {
    #[serde(default)]
    allow_sample: bool,
    #[serde(default)]
    deny_all: bool,
    #[serde(default)]
    default: Fallback,
    #[serde(default)]
    resources: Vec<Rule>,
    #[serde(default)]
    snp: SnpSection,
    #[serde(default)]
    tdx: TdxSection,
    #[serde(default)]
    nvidia: Option<crate::nvidia::NvidiaSection>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct SnpSection {
    #[serde(default)]
    measurements: Vec<String>,
    #[serde(default)]
    allow_debug: bool,
    min_report_version: Option<u32>,
    min_tcb: Option<TcbSection>,
    #[serde(default)]
    vcek: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TcbSection {
    bootloader: u8,
    tee: u8,
    snp: u8,
    microcode: u8,
    fmc: Option<u8>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TdxSection {
    #[serde(default)]
    mrtd: Vec<String>,
    rtmr0: Option<String>,
    rtmr1: Option<String>,
    rtmr2: Option<String>,
    rtmr3: Option<String>,
    mr_config_id: Option<String>,
    #[serde(default)]
    allow_debug: bool,
    #[serde(default = "yes")]
    replay_eventlog: bool,
}

impl Default for TdxSection {
    fn default() -> Self {
        Self {
            mrtd: Vec::new(),
            rtmr0: None,
            rtmr1: None,
            rtmr2: None,
            rtmr3: None,
            mr_config_id: None,
            allow_debug: false,
            replay_eventlog: true,
        }
    }
}

fn yes() -> bool {
    true
}

fn hex48(key: &str, text: &str) -> Result<[u8; 48], String> {
    parse_hex::<48>(text).map_err(|e| format!("{key}: {e}"))
}

impl SnpSection {
    fn to_policy(&self, base: &Path) -> Result<SnpPolicy, String> {
        let measurements = self
            .measurements
            .iter()
            .enumerate()
            .map(|(i, m)| hex48(&format!("snp.measurements[{i}]"), m))
            .collect::<Result<_, _>>()?;
        let endorsement_keys = self
            .vcek
            .iter()
            .map(|f| {
                let path = base.join(f);
                std::fs::read(&path).map_err(|e| format!("snp.vcek: {}: {e}", path.display()))
            })
            .collect::<Result<_, _>>()?;
        let defaults = SnpPolicy::default();
        Ok(SnpPolicy {
            measurements,
            allow_debug: self.allow_debug,
            min_report_version: self.min_report_version.unwrap_or(defaults.min_report_version),
            min_tcb: self.min_tcb.as_ref().map(|t| verify::snp::Tcb {
                bootloader: t.bootloader,
                tee: t.tee,
                snp: t.snp,
                microcode: t.microcode,
                fmc: t.fmc,
            }),
            endorsement_keys,
        })
    }
}

impl TdxSection {
    fn to_policy(&self) -> Result<TdxPolicy, String> {
        let mrtd =
            self.mrtd.iter().enumerate().map(|(i, m)| hex48(&format!("tdx.mrtd[{i}]"), m)).collect::<Result<_, _>>()?;
        let opt = |key: &str, v: &Option<String>| v.as_deref().map(|t| hex48(key, t)).transpose();
        Ok(TdxPolicy {
            mrtd,
            rtmr: [
                opt("tdx.rtmr0", &self.rtmr0)?,
                opt("tdx.rtmr1", &self.rtmr1)?,
                opt("tdx.rtmr2", &self.rtmr2)?,
                opt("tdx.rtmr3", &self.rtmr3)?,
            ],
            mr_config_id: opt("tdx.mr_config_id", &self.mr_config_id)?,
            allow_debug: self.allow_debug,
            replay_eventlog: self.replay_eventlog,
            ..TdxPolicy::default()
        })
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    pub path: String,
    pub allow: bool,
    #[serde(default)]
    pub tees: Option<Vec<String>>,
    #[serde(default)]
    pub reason: Option<String>,
}

impl Policy {
    /// A policy file's text; files it names are relative to the current
    /// directory.
    pub fn parse(text: &str) -> Result<Self, String> {
        Self::parse_relative_to(text, Path::new("."))
    }

    /// The policy file `path`.
    pub fn load(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path).map_err(|e| e.to_string())?;
        Self::parse_relative_to(&text, path.parent().unwrap_or(Path::new(".")))
    }

    /// A policy file's text; files it names are relative to `base`.
    pub fn parse_relative_to(text: &str, base: &Path) -> Result<Self, String> {
        let f: PolicyFile = toml::from_str(text).map_err(|e| e.to_string())?;
        for (i, r) in f.resources.iter().enumerate() {
            let segs: Vec<&str> = r.path.split('/').collect();
            let ok = segs.len() == 3 && segs.iter().all(|s| *s == "*" || ztinit::kbs::resource::valid_segment(s));
            if !ok {
                return Err(format!("resources[{i}].path {:?} is not repo/type/tag (with * wildcards)", r.path));
            }
        }
        let tee = verify::Policy { snp: f.snp.to_policy(base)?, tdx: f.tdx.to_policy()?, allow_sample: f.allow_sample };
        Ok(Policy {
            allow_sample: f.allow_sample,
            deny_all: f.deny_all,
            default: f.default,
            resources: f.resources,
            tee,
            nvidia: f.nvidia,
        })
    }

    /// `Err(reason)` when the guest (attested as `tee`) may not have `path`.
    pub fn check(&self, tee: &str, path: &ztinit::kbs::ResourcePath) -> Result<(), String> {
        if self.deny_all {
            return Err("deny_all is set".into());
        }
        if tee == "sample" && !self.allow_sample {
            return Err("sample evidence is not allowed".into());
        }
        let segs = [path.repo(), path.kind(), path.tag()];
        let rule = self.resources.iter().find(|r| {
            let matches_path = r.path.split('/').zip(segs).all(|(p, s)| p == "*" || p == s);
            let matches_tee = r.tees.as_ref().is_none_or(|t| t.iter().any(|t| t == tee));
            matches_path && matches_tee
        });
        match rule {
            Some(r) if r.allow => Ok(()),
            Some(r) => Err(r.reason.clone().unwrap_or_else(|| format!("rule {:?} denies it", r.path))),
            None if self.default == Fallback::Allow => Ok(()),
            None => Err("no rule allows it".into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(s: &str) -> ztinit::kbs::ResourcePath {
        s.parse().unwrap()
    }

    #[test]
    fn defaults_refuse_sample_and_allow_the_rest() {
        let p = Policy::parse("").unwrap();
        assert_eq!(p.check("sample", &path("a/b/c")), Err("sample evidence is not allowed".into()));
        assert_eq!(p.check("snp", &path("a/b/c")), Ok(()));
    }

    #[test]
    fn rules_match_in_order_with_wildcards_and_tees() {
        let p = Policy::parse(
            "allow_sample = true\ndefault = \"deny\"\n\
             [[resources]]\npath = \"default/key/model\"\nallow = false\ntees = [\"sample\"]\nreason = \"needs hardware\"\n\
             [[resources]]\npath = \"default/*/*\"\nallow = true\n",
        )
        .unwrap();
        assert_eq!(p.check("sample", &path("default/key/model")), Err("needs hardware".into()));
        assert_eq!(p.check("snp", &path("default/key/model")), Ok(()));
        assert_eq!(p.check("sample", &path("default/key/other")), Ok(()));
        assert_eq!(p.check("sample", &path("other/key/x")), Err("no rule allows it".into()));
    }

    #[test]
    fn deny_all_wins() {
        let p = Policy::parse("allow_sample = true\ndeny_all = true\n").unwrap();
        assert_eq!(p.check("snp", &path("a/b/c")), Err("deny_all is set".into()));
    }

    #[test]
    fn reference_values_become_the_tee_policy() {
        let m = "7a1e5c266c0108dbc9bb94fa926951320940915d0aafb42464bd88b579ea158d3e1a0dc39b2c60bd95b9c480cd81841f";
        let p = Policy::parse(&format!(
            "[snp]\nmeasurements = [\"{m}\"]\nmin_tcb = {{ bootloader = 3, tee = 0, snp = 8, microcode = 115 }}\n\
             [tdx]\nmrtd = [\"{m}\"]\nrtmr2 = \"{m}\"\nallow_debug = true\n"
        ))
        .unwrap();
        assert_eq!(hex::encode(p.tee.snp.measurements[0]), m);
        assert!(!p.tee.snp.allow_debug && p.tee.snp.min_report_version == 2);
        assert_eq!(p.tee.snp.min_tcb.unwrap().microcode, 115);
        assert_eq!(p.tee.tdx.mrtd.len(), 1);
        assert_eq!(p.tee.tdx.rtmr.map(|r| r.is_some()), [false, false, true, false]);
        assert!(p.tee.tdx.allow_debug && p.tee.tdx.replay_eventlog && p.tee.tdx.verify_signature);
        // Without sections: any measurement, debug refused, signatures checked.
        let d = Policy::parse("").unwrap().tee;
        assert!(d.snp.measurements.is_empty() && !d.snp.allow_debug && !d.tdx.allow_debug && d.tdx.verify_signature);
    }

    #[test]
    fn bad_reference_values_are_refused() {
        assert!(Policy::parse("[snp]\nmeasurements = [\"abcd\"]\n").unwrap_err().contains("snp.measurements[0]"));
        assert!(Policy::parse("[tdx]\nrtmr4 = \"00\"\n").unwrap_err().contains("rtmr4"));
        assert!(Policy::parse("[tdx]\nmrtd = [\"zz\"]\n").unwrap_err().contains("tdx.mrtd[0]"));
        let dir = tempfile::tempdir().unwrap();
        let e = Policy::parse_relative_to("[snp]\nvcek = [\"absent.der\"]\n", dir.path()).unwrap_err();
        assert!(e.starts_with("snp.vcek: ") && e.contains("absent.der"), "{e}");
    }

    #[test]
    fn bad_files_are_refused() {
        assert!(Policy::parse("allow_sampel = true").unwrap_err().contains("allow_sampel"));
        assert!(Policy::parse("[[resources]]\npath = \"a/b\"\nallow = true\n").unwrap_err().contains("repo/type/tag"));
        assert!(Policy::parse("default = \"maybe\"").is_err());
    }
}
