//! A registry's 401: the `WWW-Authenticate` challenges, the plan chosen
//! from them and the token realm's URL (with the query the token request
//! adds); the token endpoint's answer; a redirect's `Location` resolved
//! against a blob URL.
#![no_main]
use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use ztinit_image::registry::auth::{self, Plan};
use ztinit_image::registry::url::Url;

static BASE: LazyLock<Url> = LazyLock::new(|| {
    Url::parse("https://registry.example:5000/v2/app/blobs/sha256:0123?x=1").expect("the base URL parses")
});

/// A URL as it goes on the wire parses back to itself.
fn round_trips(url: &Url) {
    let text = format!("{}{}", url.origin, url.target);
    if text.len() <= 4096 {
        assert_eq!(Url::parse(&text).as_ref(), Ok(url), "{text}");
    }
}

fuzz_target!(|data: &[u8]| {
    if let Ok(challenges) = auth::parse_www_authenticate(data) {
        assert!(!challenges.is_empty());
        if let Ok(Plan::Bearer { realm, service, scope }) = auth::plan(&challenges)
            && let Ok(url) = Url::parse(&realm)
        {
            round_trips(&url);
            let mut query = Vec::new();
            if let Some(s) = &service {
                query.push(("service", s.as_str()));
            }
            if let Some(s) = &scope {
                query.push(("scope", s.as_str()));
            }
            round_trips(&url.with_query(&query));
        }
    }
    if let Ok(token) = auth::parse_token_response(data) {
        assert!(!token.is_empty() && token.bytes().all(|b| b.is_ascii_graphic()));
    }
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(url) = Url::parse(text) {
        round_trips(&url);
    }
    if let Ok(url) = BASE.join(text) {
        round_trips(&url);
    }
});
