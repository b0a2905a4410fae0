//! Test peers: programs built outside this workspace that some scenarios
//! boot, such as the real kata-agent. Each is looked for at
//! `../shared/peers/NAME/NAME` relative to the workspace (where CI has it),
//! or at the path in its environment variable. A scenario that `requires`
//! a peer that is not there is reported as skipped, never as passed; an
//! image manifest that names one (`[[file]] peer = "NAME"`) cannot be built
//! without it.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use anyhow::{Result, bail};

use crate::util;

/// (name, environment variable overriding its path).
pub const KNOWN: &[(&str, &str)] = &[("kata-agent", "ZTINIT_KATA_AGENT")];

/// Where a peer is: `Ok(Some)` found, `Ok(None)` absent (the reason is in
/// `describe`), `Err` an unknown name or a variable naming a missing file.
pub fn find(name: &str) -> Result<Option<PathBuf>> {
    let var = KNOWN.iter().find(|(n, _)| *n == name).map(|(_, v)| std::env::var_os(v));
    find_in(name, &util::workspace_root(), var.flatten())
}

/// `find` for a given workspace and value of the peer's variable.
fn find_in(name: &str, workspace: &Path, var_value: Option<OsString>) -> Result<Option<PathBuf>> {
    let Some((_, var)) = KNOWN.iter().find(|(n, _)| *n == name) else {
        bail!("unknown test peer {name:?} (known: {})", KNOWN.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", "));
    };
    if let Some(path) = var_value.filter(|v| !v.is_empty()) {
        let path = PathBuf::from(path);
        if !path.is_file() {
            bail!("${var} is {} but that is not a file", path.display());
        }
        return Ok(Some(path));
    }
    let default = default_path_in(name, workspace);
    Ok(default.is_file().then_some(default))
}

/// `../shared/peers/NAME/NAME` relative to the workspace.
pub fn default_path(name: &str) -> PathBuf {
    default_path_in(name, &util::workspace_root())
}

fn default_path_in(name: &str, workspace: &Path) -> PathBuf {
    workspace.parent().unwrap_or(workspace).join("shared/peers").join(name).join(name)
}

/// Where a missing peer was looked for, for the skip message.
pub fn describe(name: &str) -> String {
    let var = KNOWN.iter().find(|(n, _)| *n == name).map_or("", |(_, v)| v);
    format!("{name} not found at {} and ${var} is not set", default_path(name).display())
}

/// The peer's path, or an error that says where it was looked for.
pub fn require(name: &str) -> Result<PathBuf> {
    match find(name)? {
        Some(p) => Ok(p),
        None => bail!("test peer {}", describe(name)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_peers_are_refused_and_the_default_is_beside_the_workspace() {
        assert!(find("nope").unwrap_err().to_string().contains("unknown test peer \"nope\""));
        let p = default_path("kata-agent");
        assert!(p.ends_with("shared/peers/kata-agent/kata-agent"), "{}", p.display());
        assert_eq!(p.parent().unwrap().parent().unwrap().parent().unwrap().parent().unwrap(), {
            let root = util::workspace_root();
            root.parent().unwrap().to_path_buf()
        });
        assert!(describe("kata-agent").contains("$ZTINIT_KATA_AGENT is not set"));
    }

    #[test]
    fn a_peer_is_found_beside_the_workspace_or_through_its_variable() {
        let dir = tempfile::tempdir().unwrap();
        let ws = dir.path().join("ws");
        std::fs::create_dir(&ws).unwrap();
        // Absent: None, so the scenario is skipped.
        assert_eq!(find_in("kata-agent", &ws, None).unwrap(), None);
        assert_eq!(find_in("kata-agent", &ws, Some(OsString::new())).unwrap(), None);
        let peer = dir.path().join("shared/peers/kata-agent/kata-agent");
        std::fs::create_dir_all(peer.parent().unwrap()).unwrap();
        std::fs::write(&peer, b"\x7fELF").unwrap();
        assert_eq!(find_in("kata-agent", &ws, None).unwrap(), Some(peer.clone()));
        // The variable wins, and must name a file (a typo fails, never skips).
        let other = dir.path().join("agent");
        std::fs::write(&other, b"\x7fELF").unwrap();
        assert_eq!(find_in("kata-agent", &ws, Some(other.clone().into())).unwrap(), Some(other));
        let e = find_in("kata-agent", &ws, Some(dir.path().join("nope").into())).unwrap_err().to_string();
        assert!(e.starts_with("$ZTINIT_KATA_AGENT is ") && e.ends_with("but that is not a file"), "{e}");
    }
}
