//! Image references, `REGISTRY/REPO[:TAG][@sha256:DIGEST]`, parsed strictly.
//! The registry is always explicit: there is no implied Docker Hub, so the
//! configuration says exactly which host the guest talks to, and the
//! string the signature's identity is compared with is the one configured.

use std::fmt;

use super::digest::{Digest, DigestError};

/// Longest accepted reference (distribution limits the name to 255).
const MAX_REFERENCE: usize = 512;
const MAX_NAME: usize = 255;
const MAX_TAG: usize = 128;

#[derive(Debug, thiserror::Error)]
#[error("invalid image reference {reference:?}: {why}")]
pub struct ReferenceError {
    /// The reference, shortened for messages.
    pub reference: String,
    pub why: String,
}

#[derive(Clone, PartialEq, Eq)]
pub struct Reference {
    /// `host[:port]`, as written.
    pub registry: String,
    /// Path components joined by `/`, e.g. `library/busybox`.
    pub repository: String,
    pub tag: Option<String>,
    pub digest: Option<Digest>,
}

impl Reference {
    pub fn parse(reference: &str) -> Result<Self, ReferenceError> {
        let bad = |why: String| ReferenceError { reference: crate::kbs::http::truncate(reference, 120), why };
        if reference.len() > MAX_REFERENCE {
            return Err(bad(format!("longer than {MAX_REFERENCE} bytes")));
        }
        let (name_tag, digest) = match reference.split_once('@') {
            Some((n, d)) => (n, Some(Digest::parse(d).map_err(|e: DigestError| bad(e.to_string()))?)),
            None => (reference, None),
        };
        let Some((registry, path)) = name_tag.split_once('/') else {
            return Err(bad("no registry (expected REGISTRY/REPOSITORY[:TAG][@sha256:DIGEST])".into()));
        };
        if !(registry.contains('.') || registry.contains(':') || registry == "localhost") {
            return Err(bad(format!(
                "{registry:?} is not a registry host (it must contain '.' or ':' or be localhost)"
            )));
        }
        check_registry(registry).map_err(|why| bad(format!("registry {registry:?}: {why}")))?;
        // The registry is split off, so a ':' left is the tag's.
        let (repository, tag) = match path.rsplit_once(':') {
            Some((r, t)) => (r, Some(t)),
            None => (path, None),
        };
        if !is_valid_repository(repository) {
            return Err(bad(format!(
                "repository {:?}: components must be lowercase [a-z0-9] joined by '.', '_', '__' or '-', separated by '/'",
                crate::kbs::http::truncate(repository, 80)
            )));
        }
        if registry.len() + 1 + repository.len() > MAX_NAME {
            return Err(bad(format!("the name is longer than {MAX_NAME} bytes")));
        }
        if let Some(t) = tag
            && !is_valid_tag(t)
        {
            return Err(bad(format!(
                "tag {:?}: expected [A-Za-z0-9_][A-Za-z0-9_.-]{{0,127}}",
                crate::kbs::http::truncate(t, 80)
            )));
        }
        if tag.is_none() && digest.is_none() {
            return Err(bad("neither a tag nor a digest".into()));
        }
        Ok(Self {
            registry: registry.to_string(),
            repository: repository.to_string(),
            tag: tag.map(str::to_string),
            digest,
        })
    }

    /// `registry/repository[:tag]`: what a cosign signature's
    /// `critical.identity.docker-reference` must equal.
    pub fn identity(&self) -> String {
        match &self.tag {
            Some(t) => format!("{}/{}:{t}", self.registry, self.repository),
            None => format!("{}/{}", self.registry, self.repository),
        }
    }

    /// What to ask the registry's manifest endpoint for: the digest when
    /// there is one (the tag is then only informative), else the tag.
    pub fn manifest_reference(&self) -> String {
        match (&self.digest, &self.tag) {
            (Some(d), _) => d.to_string(),
            (None, Some(t)) => t.clone(),
            // `parse` requires one of them; a hand-built value without
            // either asks for a tag that cannot exist rather than panicking.
            (None, None) => String::new(),
        }
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.identity())?;
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Reference({self})")
    }
}

impl std::str::FromStr for Reference {
    type Err = ReferenceError;
    fn from_str(s: &str) -> Result<Self, ReferenceError> {
        Self::parse(s)
    }
}

impl<'de> serde::Deserialize<'de> for Reference {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Reference::parse(&s).map_err(serde::de::Error::custom)
    }
}

impl serde::Serialize for Reference {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// `host[:port]` with a DNS name, an IPv4 address or a bracketed IPv6
/// address; the port 1-65535.
pub fn check_registry(registry: &str) -> Result<(), &'static str> {
    let (host, port) = if let Some(rest) = registry.strip_prefix('[') {
        let (v6, after) = rest.split_once(']').ok_or("unterminated [IPv6] address")?;
        v6.parse::<std::net::Ipv6Addr>().map_err(|_| "invalid IPv6 address")?;
        match after {
            "" => (None, None),
            p => (None, Some(p.strip_prefix(':').ok_or("junk after the IPv6 address")?)),
        }
    } else {
        match registry.split_once(':') {
            Some((h, p)) => (Some(h), Some(p)),
            None => (Some(registry), None),
        }
    };
    if let Some(host) = host {
        let label_ok = |l: &str| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        };
        if host.is_empty() || host.len() > 253 || !host.split('.').all(label_ok) {
            return Err("invalid host name");
        }
    }
    if let Some(port) = port
        && (port.is_empty()
            || port.len() > 5
            || !port.bytes().all(|b| b.is_ascii_digit())
            || !matches!(port.parse::<u32>(), Ok(1..=65535)))
    {
        return Err("invalid port");
    }
    Ok(())
}

/// Distribution's path grammar: components `[a-z0-9]+(SEP[a-z0-9]+)*` with
/// SEP one of `.`, `_`, `__`, `-+`, joined by `/`.
pub fn is_valid_repository(repository: &str) -> bool {
    !repository.is_empty() && repository.len() <= MAX_NAME && repository.split('/').all(is_valid_component)
}

fn is_valid_component(component: &str) -> bool {
    let b = component.as_bytes();
    let alnum = |c: u8| c.is_ascii_lowercase() || c.is_ascii_digit();
    let mut i = 0;
    loop {
        let start = i;
        while i < b.len() && alnum(b[i]) {
            i += 1;
        }
        if i == start {
            return false;
        }
        if i == b.len() {
            return true;
        }
        match (b[i], b.get(i + 1)) {
            (b'_', Some(b'_')) => i += 2,
            (b'.' | b'_', _) => i += 1,
            (b'-', _) => {
                while i < b.len() && b[i] == b'-' {
                    i += 1;
                }
            }
            _ => return false,
        }
    }
}

/// `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`.
pub fn is_valid_tag(tag: &str) -> bool {
    let ok = |c: u8| c.is_ascii_alphanumeric() || c == b'_';
    match tag.as_bytes() {
        [first, rest @ ..] => {
            tag.len() <= MAX_TAG && ok(*first) && rest.iter().all(|&c| ok(c) || c == b'.' || c == b'-')
        }
        [] => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn good_references() {
        let r = Reference::parse("registry.example/team/app:v1.2").unwrap();
        assert_eq!(
            (r.registry.as_str(), r.repository.as_str(), r.tag.as_deref(), r.digest.is_none()),
            ("registry.example", "team/app", Some("v1.2"), true)
        );
        assert_eq!(r.identity(), "registry.example/team/app:v1.2");
        assert_eq!(r.to_string(), "registry.example/team/app:v1.2");
        assert_eq!(r.manifest_reference(), "v1.2");

        let s = format!("127.0.0.1:5000/app:latest@{D}");
        let r = Reference::parse(&s).unwrap();
        assert_eq!(
            (r.registry.as_str(), r.repository.as_str(), r.tag.as_deref()),
            ("127.0.0.1:5000", "app", Some("latest"))
        );
        assert_eq!(r.digest.as_ref().unwrap().to_string(), D);
        assert_eq!(r.to_string(), s);
        assert_eq!(r.identity(), "127.0.0.1:5000/app:latest");
        assert_eq!(r.manifest_reference(), D);

        let r = Reference::parse(&format!("localhost/a.b_c__d---e/f@{D}")).unwrap();
        assert_eq!(
            (r.registry.as_str(), r.repository.as_str(), r.tag.as_deref()),
            ("localhost", "a.b_c__d---e/f", None)
        );
        assert_eq!(r.identity(), "localhost/a.b_c__d---e/f");

        let r = Reference::parse("[fd00::1]:5000/x:Tag_1").unwrap();
        assert_eq!((r.registry.as_str(), r.tag.as_deref()), ("[fd00::1]:5000", Some("Tag_1")));
        let r = Reference::parse(&format!("Reg-1.Example:443/x:{}", "a".repeat(128))).unwrap();
        assert_eq!(r.registry, "Reg-1.Example:443");

        let json = serde_json::to_string(&r).unwrap();
        assert_eq!(serde_json::from_str::<Reference>(&json).unwrap(), r);
    }

    #[test]
    fn bad_references() {
        for bad in [
            "",
            "app:latest",
            "busybox",
            "library/busybox:latest",
            "registry.example/app",
            "registry.example/:v1",
            "registry.example/App:v1",
            "registry.example/app/:v1",
            "registry.example//app:v1",
            "registry.example/app.:v1",
            "registry.example/-app:v1",
            "registry.example/a..b:v1",
            "registry.example/a___b:v1",
            "registry.example/app:",
            "registry.example/app:.v1",
            "registry.example/app:-v1",
            "registry.example/app:v/1",
            "registry.example/app:v 1",
            "registry.example/app@sha256:abc",
            "registry.example/app@sha512:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            "registry.example/app:v1@",
            "registry.example/app:v1@@sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            "registry.example:0/app:v1",
            "registry.example:65536/app:v1",
            "registry.example:+80/app:v1",
            "registry.example:/app:v1",
            "registry..example/app:v1",
            "-registry.example/app:v1",
            "reg_istry.example/app:v1",
            "[fd00::1/app:v1",
            "[nope]:5000/app:v1",
            "[fd00::1]x/app:v1",
            "registry.example/app:v1\r\nX: y",
            "registry.example/app\u{e9}:v1",
        ] {
            assert!(Reference::parse(bad).is_err(), "{bad:?}");
        }
        let long_tag = format!("registry.example/app:{}", "a".repeat(129));
        assert!(Reference::parse(&long_tag).is_err());
        let long_name = format!("registry.example/{}:v1", "a".repeat(250));
        assert!(Reference::parse(&long_name).is_err());
        assert!(Reference::parse(&"a".repeat(100_000)).is_err());
        let e = Reference::parse("busybox:latest").unwrap_err().to_string();
        assert!(e.contains("no registry"), "{e}");
        let e = Reference::parse("registry.example/app").unwrap_err().to_string();
        assert_eq!(e, "invalid image reference \"registry.example/app\": neither a tag nor a digest");
    }
}
