//! KBS resource paths: `repo/type/tag`.

use std::fmt;

/// A validated resource path. Each of the three segments matches Trustee's
/// `^[a-zA-Z0-9_-][a-zA-Z0-9_.-]*$` (no leading dot, so no `.` or `..`),
/// and is at most [`MAX_SEGMENT_LEN`] bytes.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ResourcePath {
    repo: String,
    kind: String,
    tag: String,
}

pub const MAX_SEGMENT_LEN: usize = 128;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResourcePathError {
    #[error("{0:?} is not a resource path of the form repo/type/tag")]
    Shape(String),
    #[error(
        "{path:?} is not a resource path: segment {segment:?} must match [a-zA-Z0-9_-][a-zA-Z0-9_.-]* (at most {MAX_SEGMENT_LEN} bytes)"
    )]
    Segment { path: String, segment: String },
}

impl ResourcePath {
    pub fn parse(s: &str) -> Result<Self, ResourcePathError> {
        let parts: Vec<&str> = s.split('/').collect();
        let [repo, kind, tag] = parts.as_slice() else {
            return Err(ResourcePathError::Shape(shown(s)));
        };
        for seg in [repo, kind, tag] {
            if !valid_segment(seg) {
                return Err(ResourcePathError::Segment { path: shown(s), segment: shown(seg) });
            }
        }
        Ok(Self { repo: repo.to_string(), kind: kind.to_string(), tag: tag.to_string() })
    }

    pub fn repo(&self) -> &str {
        &self.repo
    }

    pub fn kind(&self) -> &str {
        &self.kind
    }

    pub fn tag(&self) -> &str {
        &self.tag
    }

    /// The URL path below `/kbs/v0/`; segments need no escaping.
    pub fn url_path(&self) -> String {
        format!("resource/{self}")
    }
}

/// Paths come from the configuration or from a hostile peer: keep messages
/// short and printable.
fn shown(s: &str) -> String {
    super::http::truncate(s, 64)
}

pub fn valid_segment(seg: &str) -> bool {
    let b = seg.as_bytes();
    let ok = |c: u8| c.is_ascii_alphanumeric() || c == b'_' || c == b'-';
    !b.is_empty() && b.len() <= MAX_SEGMENT_LEN && ok(b[0]) && b[1..].iter().all(|&c| ok(c) || c == b'.')
}

impl fmt::Display for ResourcePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}/{}", self.repo, self.kind, self.tag)
    }
}

impl fmt::Debug for ResourcePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ResourcePath({self})")
    }
}

impl std::str::FromStr for ResourcePath {
    type Err = ResourcePathError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl TryFrom<String> for ResourcePath {
    type Error = ResourcePathError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::parse(&s)
    }
}

impl<'de> serde::Deserialize<'de> for ResourcePath {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_paths() {
        let p = ResourcePath::parse("default/key/model-1.key").unwrap();
        assert_eq!((p.repo(), p.kind(), p.tag()), ("default", "key", "model-1.key"));
        assert_eq!(p.url_path(), "resource/default/key/model-1.key");
        assert_eq!(p.to_string(), "default/key/model-1.key");
        ResourcePath::parse("_a/-b/c_.-").unwrap();
        ResourcePath::parse(&format!("{}/b/c", "r".repeat(MAX_SEGMENT_LEN))).unwrap();
    }

    #[test]
    fn wrong_shapes() {
        for bad in ["", "a", "a/b", "a/b/c/d", "/a/b", "a/b/", "a//c"] {
            let e = ResourcePath::parse(bad).unwrap_err();
            assert!(matches!(e, ResourcePathError::Shape(_) | ResourcePathError::Segment { .. }), "{bad:?}: {e}");
        }
        assert!(matches!(ResourcePath::parse("a/b").unwrap_err(), ResourcePathError::Shape(_)));
    }

    #[test]
    fn bad_segments() {
        for (bad, seg) in [
            ("../b/c", ".."),
            ("a/./c", "."),
            ("a/b/.hidden", ".hidden"),
            ("a/b c/d", "b c"),
            ("a/b/c?x=1", "c?x=1"),
            ("a/b/c%2F", "c%2F"),
            ("a/b/é", "é"),
            ("a/b/c\n", "c?"),
        ] {
            assert_eq!(
                ResourcePath::parse(bad).unwrap_err(),
                ResourcePathError::Segment { path: shown(bad), segment: seg.to_string() },
                "{bad:?}"
            );
        }
        let long = format!("a/b/{}", "t".repeat(MAX_SEGMENT_LEN + 1));
        assert!(matches!(ResourcePath::parse(&long), Err(ResourcePathError::Segment { .. })));
    }
}
