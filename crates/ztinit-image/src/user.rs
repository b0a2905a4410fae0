//! The image's `User` (`""`, `uid`, `uid:gid`, `name`, `name:group`, and
//! the mixed forms) resolved to ids, as runc resolves it: names from the
//! image's own `/etc/passwd` and `/etc/group`, a numeric user absent from
//! passwd runs with gid 0, supplementary groups are the user's memberships
//! in `/etc/group` unless a group is given explicitly.
//!
//! The files are the image's (attacker-shaped): opened beneath the root
//! with `RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS | RESOLVE_NO_XDEV`, so a
//! symlinked `/etc/passwd` is followed only as the workload's own libc will
//! follow it after `pivot_root` (inside the root, never to the helper's
//! files); they must be regular files of at most [`MAX_DB_BYTES`]; lines
//! that do not parse are skipped, as libc skips them. [`parse_passwd`],
//! [`parse_group`] and [`resolve_with`] are pure (fuzz targets).

use std::io::Read;
use std::os::fd::AsFd;

use rustix::fs::{FileType, Mode, OFlags, ResolveFlags};
use rustix::io::Errno;

/// Larger passwd/group files are refused: real ones are kilobytes.
pub const MAX_DB_BYTES: u64 = 4 << 20;
/// runc's bound: ids are non-negative `int32`s (and never -1).
const MAX_ID: u32 = i32::MAX.unsigned_abs();

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub uid: u32,
    pub gid: u32,
    /// Supplementary groups, in `/etc/group` order, without duplicates.
    pub groups: Vec<u32>,
}

#[derive(Debug, thiserror::Error)]
pub enum UserError {
    #[error("user {spec:?}: {why}")]
    Spec { spec: String, why: &'static str },
    #[error("user {spec:?}: no user named {name:?} in the image's /etc/passwd")]
    NoUser { spec: String, name: String },
    #[error("user {spec:?}: no group named {name:?} in the image's /etc/group")]
    NoGroup { spec: String, name: String },
    #[error("user {spec:?}: reading the image's /{file}: {source}")]
    Read {
        spec: String,
        file: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("user {spec:?}: the image's /{file} is not a regular file")]
    NotFile { spec: String, file: &'static str },
    #[error("user {spec:?}: the image's /{file} is larger than {MAX_DB_BYTES} bytes")]
    TooLarge { spec: String, file: &'static str },
}

/// One `/etc/passwd` line: `name:password:uid:gid:gecos:home:shell`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PasswdEntry<'a> {
    pub name: &'a str,
    pub uid: u32,
    pub gid: u32,
}

/// One `/etc/group` line: `name:password:gid:member,member`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupEntry<'a> {
    pub name: &'a str,
    pub gid: u32,
    pub members: Vec<&'a str>,
}

/// A decimal id in runc's range; anything else (signs, spaces, overflow,
/// -1) is not an id.
fn parse_id(text: &str) -> Option<u32> {
    if text.is_empty() || text.len() > 10 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse::<u32>().ok().filter(|&id| id <= MAX_ID)
}

/// The lines of a colon database that are UTF-8 and not comments.
fn lines(data: &[u8]) -> impl Iterator<Item = Vec<&str>> {
    data.split(|&b| b == b'\n').filter_map(|line| {
        let line = std::str::from_utf8(line).ok()?.trim_end_matches('\r');
        if line.is_empty() || line.starts_with('#') || line.contains('\0') {
            return None;
        }
        Some(line.split(':').collect())
    })
}

/// Parses `/etc/passwd`, skipping malformed lines.
pub fn parse_passwd(data: &[u8]) -> Vec<PasswdEntry<'_>> {
    lines(data)
        .filter_map(|fields| {
            let [name, _password, uid, gid, ..] = fields.as_slice() else { return None };
            if name.is_empty() {
                return None;
            }
            Some(PasswdEntry { name, uid: parse_id(uid)?, gid: parse_id(gid)? })
        })
        .collect()
}

/// Parses `/etc/group`, skipping malformed lines.
pub fn parse_group(data: &[u8]) -> Vec<GroupEntry<'_>> {
    lines(data)
        .filter_map(|fields| {
            let [name, _password, gid, rest @ ..] = fields.as_slice() else { return None };
            if name.is_empty() || rest.len() > 1 {
                return None;
            }
            let members = rest.first().map_or_else(Vec::new, |m| m.split(',').filter(|m| !m.is_empty()).collect());
            Some(GroupEntry { name, gid: parse_id(gid)?, members })
        })
        .collect()
}

/// Resolves `spec` against the given database contents (`None`: the file
/// does not exist in the image).
pub fn resolve_with(spec: &str, passwd: Option<&[u8]>, group: Option<&[u8]>) -> Result<User, UserError> {
    let bad = |why| UserError::Spec { spec: spec.to_string(), why };
    let (user_part, group_part) = match spec.split_once(':') {
        Some((_, g)) if g.contains(':') => return Err(bad("more than one ':'")),
        Some((_, "")) => return Err(bad("the group after ':' is empty")),
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let users = passwd.map(parse_passwd).unwrap_or_default();
    let groups = group.map(parse_group).unwrap_or_default();

    // The default user is root; an empty user part means the same.
    let user_part = if user_part.is_empty() { "0" } else { user_part };
    let (uid, mut gid, name) = if user_part.bytes().all(|b| b.is_ascii_digit()) {
        let uid = parse_id(user_part).ok_or_else(|| bad("the uid is out of range"))?;
        match users.iter().find(|u| u.uid == uid) {
            Some(u) => (uid, u.gid, Some(u.name)),
            None => (uid, 0, None),
        }
    } else {
        let u = users
            .iter()
            .find(|u| u.name == user_part)
            .ok_or_else(|| UserError::NoUser { spec: spec.to_string(), name: user_part.to_string() })?;
        (u.uid, u.gid, Some(u.name))
    };

    let mut supplementary = Vec::new();
    match group_part {
        Some(g) if g.bytes().all(|b| b.is_ascii_digit()) => {
            gid = parse_id(g).ok_or_else(|| bad("the gid is out of range"))?;
        }
        Some(g) => {
            gid = groups
                .iter()
                .find(|e| e.name == g)
                .ok_or_else(|| UserError::NoGroup { spec: spec.to_string(), name: g.to_string() })?
                .gid;
        }
        None => {
            if let Some(name) = name {
                for entry in groups.iter().filter(|e| e.members.contains(&name)) {
                    if !supplementary.contains(&entry.gid) {
                        supplementary.push(entry.gid);
                    }
                }
            }
        }
    }
    Ok(User { uid, gid, groups: supplementary })
}

/// Resolves `spec` with the image's `/etc/passwd` and `/etc/group` under
/// `root` (an fd of the unpacked root).
pub fn resolve(root: &impl AsFd, spec: &str) -> Result<User, UserError> {
    let passwd = read_db(root, "etc/passwd", spec)?;
    let group = read_db(root, "etc/group", spec)?;
    resolve_with(spec, passwd.as_deref(), group.as_deref())
}

fn read_db(root: &impl AsFd, file: &'static str, spec: &str) -> Result<Option<Vec<u8>>, UserError> {
    let read_err = |e: std::io::Error| UserError::Read { spec: spec.to_string(), file, source: e };
    // O_NONBLOCK: a FIFO in a lower layer must not hang the open before
    // the type check below refuses it.
    let fd = match rustix::fs::openat2(
        root,
        file,
        OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NOCTTY | OFlags::NONBLOCK,
        Mode::empty(),
        ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS | ResolveFlags::NO_XDEV,
    ) {
        Ok(fd) => fd,
        Err(Errno::NOENT) => return Ok(None),
        Err(e) => return Err(read_err(e.into())),
    };
    let stat = rustix::fs::fstat(&fd).map_err(|e| read_err(e.into()))?;
    if FileType::from_raw_mode(stat.st_mode) != FileType::RegularFile {
        return Err(UserError::NotFile { spec: spec.to_string(), file });
    }
    let mut data = Vec::new();
    std::fs::File::from(fd).take(MAX_DB_BYTES + 1).read_to_end(&mut data).map_err(read_err)?;
    if u64::try_from(data.len()).unwrap_or(u64::MAX) > MAX_DB_BYTES {
        return Err(UserError::TooLarge { spec: spec.to_string(), file });
    }
    Ok(Some(data))
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &[u8] = b"root:x:0:0:root:/root:/bin/sh\n\
        daemon:x:1:1::/:/usr/sbin/nologin\n\
        app:x:1000:1000:App,,,:/home/app:/bin/sh\n\
        nobody:x:65534:65534::/nonexistent:/usr/sbin/nologin\n";
    const GROUP: &[u8] = b"root:x:0:\n\
        daemon:x:1:app\n\
        app:x:1000:\n\
        video:x:44:app,other\n\
        render:x:105:other,app\n\
        nogroup:x:65534:\n";

    fn user(spec: &str) -> Result<User, UserError> {
        resolve_with(spec, Some(PASSWD), Some(GROUP))
    }

    #[test]
    fn names_and_numbers() {
        assert_eq!(user("").unwrap(), User { uid: 0, gid: 0, groups: vec![] });
        assert_eq!(user("app").unwrap(), User { uid: 1000, gid: 1000, groups: vec![1, 44, 105] });
        assert_eq!(user("1000").unwrap(), User { uid: 1000, gid: 1000, groups: vec![1, 44, 105] });
        assert_eq!(user("4242").unwrap(), User { uid: 4242, gid: 0, groups: vec![] }, "numeric, not in passwd");
        assert_eq!(
            user("app:video").unwrap(),
            User { uid: 1000, gid: 44, groups: vec![] },
            "explicit group: no supplementary"
        );
        assert_eq!(user("app:7").unwrap(), User { uid: 1000, gid: 7, groups: vec![] });
        assert_eq!(user("5:nogroup").unwrap(), User { uid: 5, gid: 65534, groups: vec![] });
        assert_eq!(user(":44").unwrap(), User { uid: 0, gid: 44, groups: vec![] });
        assert_eq!(resolve_with("1000:1000", None, None).unwrap(), User { uid: 1000, gid: 1000, groups: vec![] });
    }

    #[test]
    fn missing_and_malformed_specs() {
        assert!(matches!(user("ghost"), Err(UserError::NoUser { .. })));
        assert!(matches!(user("app:ghosts"), Err(UserError::NoGroup { .. })));
        assert!(matches!(resolve_with("app", None, None), Err(UserError::NoUser { .. })), "no passwd in the image");
        assert!(matches!(user("app:"), Err(UserError::Spec { .. })));
        assert!(matches!(user("a:b:c"), Err(UserError::Spec { .. })));
        assert!(matches!(user("4294967295"), Err(UserError::Spec { .. })), "-1");
        assert!(matches!(user("2147483648"), Err(UserError::Spec { .. })));
        assert!(matches!(user("99999999999999999999"), Err(UserError::Spec { .. })));
        assert!(matches!(user("0:4294967295"), Err(UserError::Spec { .. })));
        assert!(user("ghost").unwrap_err().to_string().contains("\"ghost\""));
    }

    #[test]
    fn hostile_lines_are_skipped() {
        let passwd = b"evil\n\
            :x:0:0::/:/bin/sh\n\
            neg:x:-1:0::/:/bin/sh\n\
            big:x:4294967296:0::/:/bin/sh\n\
            space:x: 7:0::/:/bin/sh\n\
            bin\xff:x:9:9::/:/bin/sh\n\
            nul\0:x:9:9::/:/bin/sh\n\
            #comment:x:3:3::/:/bin/sh\n\
            dup:x:10:10::/:/bin/sh\r\n\
            dup:x:11:11::/:/bin/sh\n";
        let names: Vec<_> = parse_passwd(passwd).iter().map(|e| (e.name, e.uid)).collect();
        assert_eq!(names, vec![("dup", 10), ("dup", 11)]);
        assert_eq!(resolve_with("dup", Some(passwd), None).unwrap().uid, 10, "the first entry wins, as in libc");
        for spec in ["evil", "neg", "big", "space", "#comment"] {
            assert!(matches!(resolve_with(spec, Some(passwd), None), Err(UserError::NoUser { .. })), "{spec}");
        }
        let group = b"g:x:5:a,b:extra\nh:x:6:,,a,,\n:x:7:a\nbad:x:x:a\n";
        let parsed = parse_group(group);
        assert_eq!(parsed, vec![GroupEntry { name: "h", gid: 6, members: vec!["a"] }]);
        assert_eq!(resolve_with("a", Some(b"a:x:1:1::/:/bin/sh\n"), Some(group)).unwrap().groups, vec![6]);
    }

    #[test]
    fn reads_the_files_beneath_the_root() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("root");
        std::fs::create_dir_all(root.join("etc")).unwrap();
        std::fs::write(root.join("etc/passwd"), PASSWD).unwrap();
        std::fs::write(root.join("etc/group"), GROUP).unwrap();
        let open = |p: &std::path::Path| {
            rustix::fs::open(p, OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty()).unwrap()
        };
        assert_eq!(resolve(&open(&root), "app").unwrap().uid, 1000);

        // An absolute symlink is resolved inside the root, not on the host.
        let linked = tmp.path().join("linked");
        std::fs::create_dir_all(linked.join("srv")).unwrap();
        std::fs::write(linked.join("srv/passwd"), b"inroot:x:77:77::/:/bin/sh\n").unwrap();
        std::os::unix::fs::symlink("/srv", linked.join("etc")).unwrap();
        assert_eq!(resolve(&open(&linked), "inroot").unwrap().uid, 77);
        assert!(
            matches!(resolve(&open(&linked), "root"), Err(UserError::NoUser { .. })),
            "the host's /etc/passwd is not read"
        );

        // Not a regular file; too large; absent.
        let odd = tmp.path().join("odd");
        std::fs::create_dir_all(odd.join("etc/passwd")).unwrap();
        assert!(matches!(resolve(&open(&odd), "x"), Err(UserError::NotFile { .. })));
        let big = tmp.path().join("big");
        std::fs::create_dir_all(big.join("etc")).unwrap();
        std::fs::write(big.join("etc/passwd"), vec![b'#'; usize::try_from(MAX_DB_BYTES).unwrap() + 1]).unwrap();
        assert!(matches!(resolve(&open(&big), "x"), Err(UserError::TooLarge { .. })));
        let empty = tmp.path().join("empty");
        std::fs::create_dir_all(&empty).unwrap();
        assert_eq!(resolve(&open(&empty), "1:2").unwrap(), User { uid: 1, gid: 2, groups: vec![] });
    }
}
