//! The image's `/etc/passwd` and `/etc/group`, and the `User` resolved in
//! them (runc's rules).
//!
//! Input: the user spec on the first line, then passwd; after a blank
//! line, group.
#![no_main]
use libfuzzer_sys::fuzz_target;
use ztinit_image::user;

const MAX_ID: u32 = i32::MAX.unsigned_abs();

fuzz_target!(|data: &[u8]| {
    for e in user::parse_passwd(data) {
        assert!(!e.name.is_empty() && e.uid <= MAX_ID && e.gid <= MAX_ID);
    }
    for e in user::parse_group(data) {
        assert!(!e.name.is_empty() && e.gid <= MAX_ID && e.members.iter().all(|m| !m.is_empty()));
    }
    let (spec, rest) = match data.iter().position(|&b| b == b'\n') {
        Some(i) => (&data[..i], Some(&data[i + 1..])),
        None => (data, None),
    };
    let Ok(spec) = std::str::from_utf8(spec) else { return };
    let (passwd, group) = match rest {
        Some(r) => match r.windows(2).position(|w| w == b"\n\n") {
            Some(i) => (Some(&r[..i]), Some(&r[i + 2..])),
            None => (Some(r), None),
        },
        None => (None, None),
    };
    if let Ok(u) = user::resolve_with(spec, passwd, group) {
        assert!(u.uid <= MAX_ID && u.gid <= MAX_ID);
        for (i, g) in u.groups.iter().enumerate() {
            assert!(*g <= MAX_ID && !u.groups[..i].contains(g), "{:?}", u.groups);
        }
    }
});
