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
//! [nvidia]                   # the `nvidia` device verifier (see `nvidia.rs`)
//! device_root = "root.pem"
//! measurements = { "2" = ["<hex>"] }
//! ```

use serde::Deserialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Fallback {
    #[default]
    Allow,
    Deny,
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    #[serde(default)]
    pub allow_sample: bool,
    #[serde(default)]
    pub deny_all: bool,
    #[serde(default)]
    pub default: Fallback,
    #[serde(default)]
    pub resources: Vec<Rule>,
    /// Reference values and trust anchor of the `nvidia` device verifier.
    #[serde(default)]
    pub nvidia: Option<crate::nvidia::NvidiaSection>,
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
    pub fn parse(text: &str) -> Result<Self, String> {
        let p: Policy = toml::from_str(text).map_err(|e| e.to_string())?;
        for (i, r) in p.resources.iter().enumerate() {
            let segs: Vec<&str> = r.path.split('/').collect();
            let ok = segs.len() == 3 && segs.iter().all(|s| *s == "*" || ztinit::kbs::resource::valid_segment(s));
            if !ok {
                return Err(format!("resources[{i}].path {:?} is not repo/type/tag (with * wildcards)", r.path));
            }
        }
        Ok(p)
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
    fn bad_files_are_refused() {
        assert!(Policy::parse("allow_sampel = true").unwrap_err().contains("allow_sampel"));
        assert!(Policy::parse("[[resources]]\npath = \"a/b\"\nallow = true\n").unwrap_err().contains("repo/type/tag"));
        assert!(Policy::parse("default = \"maybe\"").is_err());
    }
}
