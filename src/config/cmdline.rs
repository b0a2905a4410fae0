//! `ztinit.*` kernel parameters.
//!
//! The kernel command line is not covered by every deployment's launch
//! measurement, so it may only set harmless knobs: log level and timeouts.
//! Any other `ztinit.` key is an error, never ignored: a host that tries to
//! redirect the KBS or relax a policy through the command line gets a
//! refused boot.

/// Prefix of our kernel parameters.
pub use crate::kernel_params::ZTINIT_PREFIX as PREFIX;

/// Configuration paths that the command line may set. `log` is a short alias
/// for `boot.log_level`.
pub const KNOBS: &[&str] = &[
    "boot.log_level",
    "boot.shutdown_timeout_ms",
    "kbs.connect_timeout_ms",
    "kbs.read_timeout_ms",
    "kbs.retries",
    "kbs.retry_backoff_ms",
    "kbs.deadline_ms",
];

const ALIASES: &[(&str, &str)] = &[("log", "boot.log_level")];

/// Splits a kernel command line into words, honouring double quotes as the
/// kernel does (`key="a b"`).
pub fn words(cmdline: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut any = false;
    for c in cmdline.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                any = true;
            }
            c if c.is_whitespace() && !quoted => {
                if any {
                    out.push(std::mem::take(&mut cur));
                    any = false;
                }
            }
            c => {
                cur.push(c);
                any = true;
            }
        }
    }
    if any {
        out.push(cur);
    }
    out
}

/// Our parameters as (config path, raw value), before checking them.
pub fn params(cmdline: &str) -> Vec<(String, String)> {
    words(cmdline)
        .into_iter()
        .filter_map(|w| {
            let rest = w.strip_prefix(PREFIX)?;
            let (k, v) = rest.split_once('=').unwrap_or((rest, ""));
            let k = ALIASES.iter().find(|(a, _)| *a == k).map_or(k, |(_, p)| *p);
            Some((k.to_string(), v.to_string()))
        })
        .collect()
}

/// Why a `ztinit.` parameter is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error("may not be set on the kernel command line; only {} may be set there", allowed())]
    NotAKnob,
    #[error("needs a value (ztinit.KEY=VALUE)")]
    NoValue,
    /// A key on the way to the knob holds a value, not a table.
    #[error("{0} in the baked configuration is not a table")]
    NotATable(String),
}

fn allowed() -> String {
    std::iter::once("log").chain(KNOBS.iter().copied()).collect::<Vec<_>>().join(", ")
}

/// Merges allowed knobs into the parsed configuration table. Returns the key
/// of every parameter that is refused, and why.
pub fn apply(table: &mut toml::Table, cmdline: &str) -> Vec<(String, Refused)> {
    let mut refused = Vec::new();
    for (path, raw) in params(cmdline) {
        if !KNOBS.contains(&path.as_str()) {
            refused.push((path, Refused::NotAKnob));
            continue;
        }
        if raw.is_empty() {
            refused.push((path, Refused::NoValue));
            continue;
        }
        let value = typed(&raw);
        if let Err(e) = insert(table, &path, value) {
            refused.push((path, e));
        }
    }
    refused
}

fn typed(raw: &str) -> toml::Value {
    if let Ok(i) = raw.parse::<i64>() {
        toml::Value::Integer(i)
    } else if let Ok(b) = raw.parse::<bool>() {
        toml::Value::Boolean(b)
    } else {
        toml::Value::String(raw.to_string())
    }
}

/// `path` is one of [`KNOBS`], so it has a last part.
fn insert(table: &mut toml::Table, path: &str, value: toml::Value) -> Result<(), Refused> {
    let (parents, last) = path.rsplit_once('.').map_or(("", path), |(p, l)| (p, l));
    let mut cur = table;
    for p in parents.split('.').filter(|p| !p.is_empty()) {
        let entry = cur.entry(p.to_string()).or_insert_with(|| toml::Value::Table(toml::Table::new()));
        cur = match entry {
            toml::Value::Table(t) => t,
            _ => return Err(Refused::NotATable(p.to_string())),
        };
    }
    cur.insert(last.to_string(), value);
    Ok(())
}
