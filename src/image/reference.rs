//! PLACEHOLDER: replaced by the registry helper's reference.rs at integration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    pub registry: String,
    pub repository: String,
    pub tag: Option<String>,
    pub digest: Option<String>,
}
#[derive(Debug, thiserror::Error)]
#[error("bad reference {0:?}")]
pub struct ReferenceError(String);
impl Reference {
    pub fn parse(s: &str) -> Result<Self, ReferenceError> {
        let (rest, digest) = match s.split_once('@') {
            Some((r, d)) => (r, Some(d.to_string())),
            None => (s, None),
        };
        let (registry, path) = rest.split_once('/').ok_or_else(|| ReferenceError(s.into()))?;
        let (repository, tag) = match path.rsplit_once(':') {
            Some((r, t)) => (r.to_string(), Some(t.to_string())),
            None => (path.to_string(), None),
        };
        Ok(Self { registry: registry.into(), repository, tag, digest })
    }
}
