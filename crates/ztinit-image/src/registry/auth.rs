//! Registry authentication: `WWW-Authenticate` challenges (RFC 7235, as
//! distribution and Docker Hub send them), the bearer token endpoint's
//! answer, and the basic credentials header. The parsers take bytes and do
//! no I/O (fuzz targets).

use base64::Engine as _;
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use ztinit::kbs::http::{is_token_char, truncate};

/// More parameters than any registry sends; the header line itself is
/// already capped by the HTTP reader.
const MAX_PARAMS: usize = 32;
const MAX_CHALLENGES: usize = 8;
/// The token endpoint's answer (a JWT of a few KiB at most).
pub const MAX_TOKEN_RESPONSE: usize = 64 * 1024;
const MAX_TOKEN: usize = 16 * 1024;

/// Registry credentials, from a KBS resource; wiped on drop, never logged.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Credentials(..)")
    }
}

impl Credentials {
    /// Basic auth cannot carry a ':' in the user name, and neither part may
    /// hold control characters (they would end up in a header).
    pub fn check(&self) -> Result<(), &'static str> {
        if self.username.is_empty() || self.username.contains(':') {
            return Err("the registry user name is empty or contains ':'");
        }
        if self.username.chars().chain(self.password.chars()).any(char::is_control) {
            return Err("the registry credentials contain control characters");
        }
        Ok(())
    }

    /// `Basic base64(user:password)`.
    pub fn basic_authorization(&self) -> Zeroizing<String> {
        let plain = Zeroizing::new(format!("{}:{}", self.username, self.password));
        Zeroizing::new(format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(plain.as_bytes())))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid WWW-Authenticate header: {0}")]
pub struct ChallengeError(pub String);

/// One challenge: `Bearer realm="..",service="..",scope=".."`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    /// Lowercase (`bearer`, `basic`).
    pub scheme: String,
    /// Names lowercase, values unquoted; no name twice.
    pub params: Vec<(String, String)>,
    /// The `token68` form (`Negotiate abc==`), when used instead of params.
    pub token68: Option<String>,
}

impl Challenge {
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }
}

struct Cursor<'a> {
    s: &'a [u8],
    i: usize,
}

impl Cursor<'_> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    fn skip_ows(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t')) {
            self.i += 1;
        }
    }

    fn token(&mut self) -> &str {
        let start = self.i;
        while self.peek().is_some_and(is_token_char) {
            self.i += 1;
        }
        // Token characters are ASCII.
        std::str::from_utf8(&self.s[start..self.i]).unwrap_or("")
    }

    /// A quoted-string, the opening quote at the cursor.
    fn quoted(&mut self) -> Result<String, ChallengeError> {
        self.i += 1;
        let mut out = Vec::new();
        loop {
            match self.peek() {
                None => return Err(ChallengeError("unterminated quoted string".into())),
                Some(b'"') => {
                    self.i += 1;
                    return String::from_utf8(out).map_err(|_| ChallengeError("non-UTF-8 quoted string".into()));
                }
                Some(b'\\') => {
                    let escaped = self.s.get(self.i + 1).copied();
                    match escaped {
                        Some(c) if c == b'\t' || !c.is_ascii_control() => out.push(c),
                        _ => return Err(ChallengeError("invalid escape in a quoted string".into())),
                    }
                    self.i += 2;
                }
                Some(c) if c == b'\t' || !c.is_ascii_control() => {
                    out.push(c);
                    self.i += 1;
                }
                Some(_) => return Err(ChallengeError("control character in a quoted string".into())),
            }
        }
    }

    /// `name BWS = BWS (token | quoted-string)` at the cursor, or None
    /// (cursor unmoved) when what follows is not an auth-param.
    fn param(&mut self) -> Result<Option<(String, String)>, ChallengeError> {
        let start = self.i;
        let name = self.token().to_ascii_lowercase();
        self.skip_ows();
        if name.is_empty() || self.peek() != Some(b'=') {
            self.i = start;
            return Ok(None);
        }
        self.i += 1;
        self.skip_ows();
        let value = if self.peek() == Some(b'"') {
            self.quoted()?
        } else {
            let v = self.token().to_string();
            if v.is_empty() {
                // `abc==`: token68, not a parameter.
                self.i = start;
                return Ok(None);
            }
            v
        };
        Ok(Some((name, value)))
    }

    /// `token68` = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="
    fn token68(&mut self) -> Option<String> {
        let start = self.i;
        while self.peek().is_some_and(|c| c.is_ascii_alphanumeric() || b"-._~+/".contains(&c)) {
            self.i += 1;
        }
        if self.i == start {
            return None;
        }
        while self.peek() == Some(b'=') {
            self.i += 1;
        }
        Some(String::from_utf8_lossy(&self.s[start..self.i]).into_owned())
    }

    fn at_list_end(&self) -> bool {
        matches!(self.peek(), None | Some(b','))
    }
}

/// Every challenge in one `WWW-Authenticate` value (a header may carry
/// several, comma-separated; so may a challenge's parameters).
pub fn parse_www_authenticate(value: &[u8]) -> Result<Vec<Challenge>, ChallengeError> {
    let mut c = Cursor { s: value, i: 0 };
    let mut challenges: Vec<Challenge> = Vec::new();
    loop {
        // Empty list elements are allowed (`, ,Basic`).
        while matches!(c.peek(), Some(b' ' | b'\t' | b',')) {
            c.i += 1;
        }
        if c.peek().is_none() {
            break;
        }
        let scheme = c.token().to_ascii_lowercase();
        if scheme.is_empty() {
            return Err(ChallengeError(format!("expected an auth scheme at byte {}", c.i)));
        }
        if challenges.len() == MAX_CHALLENGES {
            return Err(ChallengeError(format!("more than {MAX_CHALLENGES} challenges")));
        }
        let mut challenge = Challenge { scheme, params: Vec::new(), token68: None };
        if matches!(c.peek(), Some(b' ' | b'\t')) {
            c.skip_ows();
            if let Some(p) = c.param()? {
                challenge.params.push(p);
                // More params, until one that is the next challenge's scheme.
                loop {
                    c.skip_ows();
                    if c.peek().is_none() {
                        break;
                    }
                    if c.peek() != Some(b',') {
                        return Err(ChallengeError(format!("expected ',' at byte {}", c.i)));
                    }
                    let comma = c.i;
                    while matches!(c.peek(), Some(b' ' | b'\t' | b',')) {
                        c.i += 1;
                    }
                    match c.param()? {
                        Some((name, value)) => {
                            if challenge.params.iter().any(|(n, _)| *n == name) {
                                return Err(ChallengeError(format!("parameter {:?} given twice", truncate(&name, 40))));
                            }
                            if challenge.params.len() == MAX_PARAMS {
                                return Err(ChallengeError(format!("more than {MAX_PARAMS} parameters")));
                            }
                            challenge.params.push((name, value));
                        }
                        None => {
                            c.i = comma;
                            break;
                        }
                    }
                }
            } else if let Some(t) = c.token68() {
                c.skip_ows();
                if !c.at_list_end() {
                    return Err(ChallengeError(format!("unexpected byte after token68 at byte {}", c.i)));
                }
                challenge.token68 = Some(t);
            } else if !c.at_list_end() {
                return Err(ChallengeError(format!("unexpected byte at {}", c.i)));
            }
        } else if !c.at_list_end() {
            return Err(ChallengeError(format!("unexpected byte after the scheme at byte {}", c.i)));
        }
        challenges.push(challenge);
    }
    if challenges.is_empty() {
        return Err(ChallengeError("no challenge".into()));
    }
    Ok(challenges)
}

/// What to do about a 401.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    Bearer { realm: String, service: Option<String>, scope: Option<String> },
    Basic,
}

/// Bearer when offered (it is what registries expect), else Basic; any
/// other scheme alone is refused.
pub fn plan(challenges: &[Challenge]) -> Result<Plan, ChallengeError> {
    if let Some(b) = challenges.iter().find(|c| c.scheme == "bearer") {
        let realm = b.param("realm").ok_or_else(|| ChallengeError("Bearer challenge without a realm".into()))?;
        return Ok(Plan::Bearer {
            realm: realm.to_string(),
            service: b.param("service").map(str::to_string),
            scope: b.param("scope").map(str::to_string),
        });
    }
    if challenges.iter().any(|c| c.scheme == "basic") {
        return Ok(Plan::Basic);
    }
    let schemes: Vec<String> = challenges.iter().map(|c| truncate(&c.scheme, 20)).collect();
    Err(ChallengeError(format!("no Bearer or Basic challenge (offered: {})", schemes.join(", "))))
}

#[derive(serde::Deserialize)]
struct TokenResponse {
    #[serde(default)]
    token: Option<String>,
    #[serde(default)]
    access_token: Option<String>,
}

/// The token from a token endpoint's JSON answer (`token`, else
/// `access_token`): non-empty, at most 16 KiB, visible ASCII only (it goes
/// into a header).
pub fn parse_token_response(body: &[u8]) -> Result<Zeroizing<String>, String> {
    if body.len() > MAX_TOKEN_RESPONSE {
        return Err(format!("answer larger than {MAX_TOKEN_RESPONSE} bytes"));
    }
    let parsed: TokenResponse = serde_json::from_slice(body).map_err(|e| format!("answer is not token JSON: {e}"))?;
    let token = Zeroizing::new(parsed.token.or(parsed.access_token).ok_or("answer has no token")?);
    if token.is_empty() || token.len() > MAX_TOKEN || !token.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(format!("token is empty, longer than {MAX_TOKEN} bytes or not visible ASCII"));
    }
    Ok(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<Vec<Challenge>, ChallengeError> {
        parse_www_authenticate(s.as_bytes())
    }

    #[test]
    fn distribution_bearer_challenge() {
        let v = r#"Bearer realm="https://auth.example/token",service="registry.example",scope="repository:a/b:pull""#;
        let c = parse(v).unwrap();
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].scheme, "bearer");
        assert_eq!(c[0].param("realm"), Some("https://auth.example/token"));
        assert_eq!(c[0].param("service"), Some("registry.example"));
        assert_eq!(c[0].param("scope"), Some("repository:a/b:pull"));
        assert_eq!(
            plan(&c).unwrap(),
            Plan::Bearer {
                realm: "https://auth.example/token".into(),
                service: Some("registry.example".into()),
                scope: Some("repository:a/b:pull".into())
            }
        );
    }

    #[test]
    fn quoted_strings_commas_and_several_challenges() {
        let v = r#"Basic realm="a, \"quoted\" realm", BEARER Realm = "http://x/t" , scope="repository:a:pull,push",error=invalid_token, Negotiate abc+/=="#;
        let c = parse(v).unwrap();
        assert_eq!(c.iter().map(|c| c.scheme.as_str()).collect::<Vec<_>>(), ["basic", "bearer", "negotiate"]);
        assert_eq!(c[0].param("realm"), Some(r#"a, "quoted" realm"#));
        assert_eq!(c[1].param("realm"), Some("http://x/t"));
        assert_eq!(c[1].param("scope"), Some("repository:a:pull,push"));
        assert_eq!(c[1].param("error"), Some("invalid_token"));
        assert_eq!(c[2].token68.as_deref(), Some("abc+/=="));
        assert!(matches!(plan(&c).unwrap(), Plan::Bearer { .. }));
        let basic = parse("Basic").unwrap();
        assert_eq!(basic[0].params, []);
        assert_eq!(plan(&basic).unwrap(), Plan::Basic);
        assert_eq!(parse(" ,Basic realm=x,, ").unwrap()[0].param("realm"), Some("x"));
    }

    #[test]
    fn hostile_headers_are_refused() {
        for bad in [
            "",
            " , ",
            "=x",
            r#"Bearer realm="unterminated"#,
            "Bearer realm=\"a\u{1}b\"",
            "Bearer realm=\"a\\",
            r#"Bearer realm="a" service="b""#,
            r#"Bearer realm="a",realm="b""#,
            "Bearer realm=a;b",
            "Bearer@ realm=a",
            "Bearer realm=\"\\\u{7f}\"",
            "Bearer abc== x",
        ] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
        let many = format!("Bearer {}", (0..=MAX_PARAMS).map(|i| format!("p{i}=v")).collect::<Vec<_>>().join(","));
        assert!(parse(&many).unwrap_err().0.contains("parameters"));
        let many = ["Basic"; MAX_CHALLENGES + 1].join(", ");
        assert!(parse(&many).unwrap_err().0.contains("challenges"));
        assert!(parse_www_authenticate(b"Bearer realm=\"\xff\"").is_err());
        assert!(plan(&parse("Bearer service=x").unwrap()).is_err());
        assert_eq!(
            plan(&parse("Negotiate abc, Digest realm=x").unwrap()).unwrap_err().to_string(),
            "invalid WWW-Authenticate header: no Bearer or Basic challenge (offered: negotiate, digest)"
        );
        // Never panics or loops on arbitrary bytes.
        let alphabet = b" ,=\"\\aB\t;";
        for n in 0..2000usize {
            let bytes: Vec<u8> = (0..(n % 40)).map(|i| alphabet[(n * 7 + i * 13) % alphabet.len()]).collect();
            let _ = parse_www_authenticate(&bytes);
        }
    }

    #[test]
    fn token_responses() {
        assert_eq!(*parse_token_response(br#"{"token":"abc","expires_in":300}"#).unwrap(), "abc");
        assert_eq!(*parse_token_response(br#"{"access_token":"xyz"}"#).unwrap(), "xyz");
        assert_eq!(*parse_token_response(br#"{"token":"a","access_token":"b"}"#).unwrap(), "a");
        for bad in [
            &br#"{}"#[..],
            br#"{"token":""}"#,
            br#"{"token":"a b"}"#,
            br#"{"token":"a\r\nX: y"}"#,
            br#"{"token":7}"#,
            b"not json",
        ] {
            assert!(parse_token_response(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
        let big = format!(r#"{{"token":"{}"}}"#, "a".repeat(MAX_TOKEN + 1));
        assert!(parse_token_response(big.as_bytes()).is_err());
    }

    #[test]
    fn credentials() {
        let c = Credentials { username: "user".into(), password: "p:w".into() };
        c.check().unwrap();
        assert_eq!(*c.basic_authorization(), "Basic dXNlcjpwOnc=");
        assert_eq!(format!("{c:?}"), "Credentials(..)");
        assert!(Credentials { username: "a:b".into(), password: String::new() }.check().is_err());
        assert!(Credentials { username: "a".into(), password: "x\r\n".into() }.check().is_err());
        assert!(Credentials { username: String::new(), password: "x".into() }.check().is_err());
    }
}
