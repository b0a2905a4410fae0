//! The few URLs a registry conversation needs: the registry's own origin,
//! a bearer token realm and redirect `Location`s. Parsed strictly: no user
//! info, no fragments sent, only the characters RFC 3986 allows in a path
//! and query, so nothing a registry sends can split our request line.

use std::fmt;

use ztinit::kbs::http::truncate;
use ztinit::kbs::transport::Scheme;

/// Longest URL followed (a presigned object-store URL is 1-2 KiB).
const MAX_URL: usize = 4096;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid URL {url:?}: {why}")]
pub struct UrlError {
    /// The URL without its query, shortened.
    pub url: String,
    pub why: &'static str,
}

/// Scheme, host and port: what a connection (and an `Authorization`
/// header) belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    pub scheme: Scheme,
    /// DNS name or IP address, IPv6 without brackets, lowercase.
    pub host: String,
    pub port: u16,
}

impl Origin {
    /// `host[:port]` or `[v6][:port]`.
    pub fn parse(scheme: Scheme, authority: &str) -> Result<Self, &'static str> {
        if authority.contains('@') {
            return Err("user info in a URL is not accepted");
        }
        let (host, port) = if let Some(rest) = authority.strip_prefix('[') {
            let (v6, after) = rest.split_once(']').ok_or("unterminated [IPv6] address")?;
            v6.parse::<std::net::Ipv6Addr>().map_err(|_| "invalid IPv6 address")?;
            let port = match after {
                "" => None,
                p => Some(p.strip_prefix(':').ok_or("junk after the IPv6 address")?),
            };
            (v6, port)
        } else {
            let (h, p) = match authority.split_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (authority, None),
            };
            let label_ok = |l: &str| {
                !l.is_empty() && l.len() <= 63 && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            };
            if h.is_empty() || h.len() > 253 || !h.split('.').all(label_ok) {
                return Err("invalid host");
            }
            (h, p)
        };
        let port = match port {
            None => match scheme {
                Scheme::Http => 80,
                Scheme::Https => 443,
            },
            Some(p) => {
                if p.is_empty() || p.len() > 5 || !p.bytes().all(|b| b.is_ascii_digit()) {
                    return Err("invalid port");
                }
                match p.parse::<u16>() {
                    Ok(n) if n > 0 => n,
                    _ => return Err("invalid port"),
                }
            }
        };
        Ok(Self { scheme, host: host.to_ascii_lowercase(), port })
    }

    /// The `Host` header: the port only when it is not the default.
    pub fn host_header(&self) -> String {
        let host = if self.host.contains(':') { format!("[{}]", self.host) } else { self.host.clone() };
        let default = match self.scheme {
            Scheme::Http => 80,
            Scheme::Https => 443,
        };
        if self.port == default { host } else { format!("{host}:{}", self.port) }
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = match self.scheme {
            Scheme::Http => "http",
            Scheme::Https => "https",
        };
        write!(f, "{scheme}://{}", self.host_header())
    }
}

/// An absolute http(s) URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Url {
    pub origin: Origin,
    /// Path and query, starting with `/`; checked for the request line.
    pub target: String,
}

fn target_ok(target: &str) -> bool {
    let b = target.as_bytes();
    if b.first() != Some(&b'/') {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c == b'%' {
            if !(b.get(i + 1).is_some_and(u8::is_ascii_hexdigit) && b.get(i + 2).is_some_and(u8::is_ascii_hexdigit)) {
                return false;
            }
            i += 3;
            continue;
        }
        if !(c.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@/?".contains(&c)) {
            return false;
        }
        i += 1;
    }
    true
}

impl Url {
    /// An absolute `http://` or `https://` URL. A fragment is dropped (it
    /// is never sent).
    pub fn parse(url: &str) -> Result<Self, UrlError> {
        let bad = |why| UrlError { url: redact(url), why };
        if url.len() > MAX_URL {
            return Err(bad("too long"));
        }
        let url_nofrag = url.split('#').next().unwrap_or("");
        let (scheme, rest) = split_scheme(url_nofrag).ok_or_else(|| bad("not an http:// or https:// URL"))?;
        let end = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, target) = rest.split_at(end);
        let origin = Origin::parse(scheme, authority).map_err(bad)?;
        let target = match target {
            "" => "/".to_string(),
            t if t.starts_with('?') => format!("/{t}"),
            t => t.to_string(),
        };
        if !target_ok(&target) {
            return Err(bad("characters outside RFC 3986 in the path or query"));
        }
        Ok(Self { origin, target })
    }

    /// `location` (absolute, scheme-relative, absolute-path or relative)
    /// resolved against this URL, as a `Location` header is.
    pub fn join(&self, location: &str) -> Result<Self, UrlError> {
        let bad = |why| UrlError { url: redact(location), why };
        if location.len() > MAX_URL {
            return Err(bad("too long"));
        }
        let location = location.split('#').next().unwrap_or("");
        if split_scheme(location).is_some() {
            return Self::parse(location);
        }
        // A relative path's first segment has no ':' (RFC 3986 4.2): one
        // that does is another scheme.
        if location.split(['/', '?']).next().is_some_and(|first| first.contains(':')) {
            return Err(bad("not an http:// or https:// URL"));
        }
        if let Some(rest) = location.strip_prefix("//") {
            let scheme = match self.origin.scheme {
                Scheme::Http => "http://",
                Scheme::Https => "https://",
            };
            return Self::parse(&format!("{scheme}{rest}"));
        }
        let path = self.target.split('?').next().unwrap_or("/");
        let target = if location.starts_with('/') {
            location.to_string()
        } else if location.starts_with('?') {
            format!("{path}{location}")
        } else if location.is_empty() {
            return Err(bad("empty"));
        } else {
            let dir = path.rfind('/').map_or("/", |i| &path[..=i]);
            format!("{dir}{location}")
        };
        if target.len() > MAX_URL || !target_ok(&target) {
            return Err(bad("characters outside RFC 3986 in the path or query"));
        }
        Ok(Self { origin: self.origin.clone(), target })
    }

    /// This URL with `params` appended to its query, percent-encoded.
    pub fn with_query(&self, params: &[(&str, &str)]) -> Self {
        let mut target = self.target.clone();
        for (name, value) in params {
            target.push(if target.contains('?') { '&' } else { '?' });
            target.push_str(&percent_encode(name));
            target.push('=');
            target.push_str(&percent_encode(value));
        }
        Self { origin: self.origin.clone(), target }
    }
}

/// For messages: without the query, which may hold a presigned
/// object-store signature.
impl fmt::Display for Url {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let path = self.target.split('?').next().unwrap_or("");
        write!(f, "{}{}", self.origin, truncate(path, 200))
    }
}

fn redact(url: &str) -> String {
    truncate(url.split('?').next().unwrap_or(""), 120)
}

fn split_scheme(url: &str) -> Option<(Scheme, &str)> {
    let lower = |p: &str| url.get(..p.len()).is_some_and(|s| s.eq_ignore_ascii_case(p));
    if lower("https://") {
        Some((Scheme::Https, &url[8..]))
    } else if lower("http://") {
        Some((Scheme::Http, &url[7..]))
    } else {
        None
    }
}

/// RFC 3986 percent-encoding of everything but the unreserved characters.
pub fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn absolute_urls() {
        let u = Url::parse("https://Auth.Example/token?x=1#frag").unwrap();
        assert_eq!((u.origin.scheme, u.origin.host.as_str(), u.origin.port), (Scheme::Https, "auth.example", 443));
        assert_eq!(u.target, "/token?x=1");
        assert_eq!(u.to_string(), "https://auth.example/token");
        let u = Url::parse("http://[::1]:5000").unwrap();
        assert_eq!((u.origin.host.as_str(), u.origin.port, u.target.as_str()), ("::1", 5000, "/"));
        assert_eq!(u.origin.host_header(), "[::1]:5000");
        assert_eq!(Url::parse("http://h?q").unwrap().target, "/?q");
        for bad in [
            "",
            "ftp://h/",
            "//h/",
            "http://",
            "http://user:pw@h/",
            "http://h:0/",
            "http://h:65536/",
            "http://h:/",
            "http://h/a b",
            "http://h/a\r\nX: y",
            "http://h/%zz",
            "http://h/%4",
            "http://h/\u{e9}",
            "http://[::1/",
            "http://h..x/",
        ] {
            assert!(Url::parse(bad).is_err(), "{bad:?}");
        }
        assert!(Url::parse(&format!("http://h/{}", "a".repeat(MAX_URL))).is_err());
    }

    #[test]
    fn locations_resolve_like_a_browser() {
        let base = Url::parse("https://reg.example:5000/v2/app/blobs/sha256:ab?x=1").unwrap();
        let j = |l: &str| base.join(l).unwrap();
        assert_eq!(j("/other").target, "/other");
        assert_eq!(j("/other").origin, base.origin);
        assert_eq!(j("next").target, "/v2/app/blobs/next");
        assert_eq!(j("?y=2").target, "/v2/app/blobs/sha256:ab?y=2");
        let cdn = j("//cdn.example/data?sig=abc");
        assert_eq!((cdn.origin.scheme, cdn.origin.host.as_str(), cdn.origin.port), (Scheme::Https, "cdn.example", 443));
        let plain = j("HTTP://cdn.example:8080/d");
        assert_eq!((plain.origin.scheme, plain.origin.port), (Scheme::Http, 8080));
        assert!(base.join("").is_err());
        assert!(base.join("/a b").is_err());
        assert!(base.join("ftp://x/").is_err());
    }

    #[test]
    fn queries_are_percent_encoded() {
        let u = Url::parse("http://h/token?a=1").unwrap();
        let q = u.with_query(&[("service", "reg istry"), ("scope", "repository:a/b:pull")]);
        assert_eq!(q.target, "/token?a=1&service=reg%20istry&scope=repository%3Aa%2Fb%3Apull");
        assert_eq!(Url::parse("http://h/t").unwrap().with_query(&[("s", "\r\n")]).target, "/t?s=%0D%0A");
    }
}
