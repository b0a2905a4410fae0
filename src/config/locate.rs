//! Map a dotted key path (`kbs.url`, `volumes[1].cipher`) to its line in the
//! TOML source, so every configuration error can name file, line and key.
//!
//! This is a small line scanner rather than a span-preserving parser: the
//! baked configuration is plain TOML (tables, arrays of tables, `key = value`),
//! and when the scanner cannot place a key it reports the closest enclosing
//! table instead, which is still useful to the operator.

/// Returns the 1-based line of `path` in `src`, or of the closest ancestor
/// that can be found.
pub fn line_of(src: &str, path: &str) -> Option<usize> {
    let segments = split_path(path);
    let mut best: Option<(usize, usize)> = None; // (matched segments, line)
    let mut table: Vec<Seg> = Vec::new();
    let mut aot_counts: Vec<(Vec<Seg>, usize)> = Vec::new();

    for (idx, raw) in src.lines().enumerate() {
        let line_no = idx + 1;
        let line = strip_comment(raw).trim();
        if line.is_empty() {
            continue;
        }
        if let Some(inner) = line.strip_prefix("[[").and_then(|l| l.strip_suffix("]]")) {
            let keys = header_keys(inner);
            let Some((last, parents)) = keys.split_last() else { continue };
            let mut header = resolve_header(parents, &aot_counts);
            header.push(Seg::Key(last.clone()));
            let count = match aot_counts.iter_mut().find(|(h, _)| *h == header) {
                Some((_, c)) => {
                    *c += 1;
                    *c - 1
                }
                None => {
                    aot_counts.push((header.clone(), 1));
                    0
                }
            };
            header.push(Seg::Index(count));
            table = header;
            consider(&segments, &table, line_no, &mut best);
            continue;
        }
        if let Some(inner) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            table = resolve_header(&header_keys(inner), &aot_counts);
            consider(&segments, &table, line_no, &mut best);
            continue;
        }
        if let Some((key, _)) = line.split_once('=') {
            let mut full = table.clone();
            full.extend(key.split('.').map(|s| Seg::Key(unquote(s.trim()))));
            consider(&segments, &full, line_no, &mut best);
        }
    }
    best.map(|(_, line)| line)
}

fn header_keys(inner: &str) -> Vec<String> {
    inner.split('.').map(|s| unquote(s.trim())).collect()
}

/// A table header's keys as a path: as in TOML, a key that names an array of
/// tables refers to its latest element (`[volumes.verity]` after the second
/// `[[volumes]]` is `volumes[1].verity`).
fn resolve_header(keys: &[String], aot_counts: &[(Vec<Seg>, usize)]) -> Vec<Seg> {
    let mut path = Vec::with_capacity(keys.len() * 2);
    for key in keys {
        path.push(Seg::Key(key.clone()));
        if let Some((_, count)) = aot_counts.iter().find(|(h, _)| *h == path) {
            path.push(Seg::Index(count - 1));
        }
    }
    path
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Seg {
    Key(String),
    Index(usize),
}

fn consider(want: &[Seg], have: &[Seg], line: usize, best: &mut Option<(usize, usize)>) {
    if have.len() > want.len() || want[..have.len()] != *have {
        return;
    }
    if best.is_none_or(|(n, _)| have.len() > n) {
        *best = Some((have.len(), line));
    }
}

fn split_path(path: &str) -> Vec<Seg> {
    let mut out = Vec::new();
    for part in path.split('.') {
        let mut rest = part;
        if let Some(open) = rest.find('[') {
            out.push(Seg::Key(rest[..open].to_string()));
            rest = &rest[open..];
            while let Some(stripped) = rest.strip_prefix('[') {
                let Some(close) = stripped.find(']') else { break };
                if let Ok(i) = stripped[..close].parse() {
                    out.push(Seg::Index(i));
                }
                rest = &stripped[close + 1..];
            }
        } else if !rest.is_empty() {
            out.push(Seg::Key(rest.to_string()));
        }
    }
    out
}

fn unquote(s: &str) -> String {
    s.trim_matches(|c| c == '"' || c == '\'').to_string()
}

/// Drops a trailing `# comment`, ignoring `#` inside quoted strings.
fn strip_comment(line: &str) -> &str {
    let mut quote: Option<char> = None;
    for (i, c) in line.char_indices() {
        match (quote, c) {
            (None, '"' | '\'') => quote = Some(c),
            (Some(q), c) if c == q => quote = None,
            (None, '#') => return &line[..i],
            _ => {}
        }
    }
    line
}

/// 1-based line of a byte offset.
pub fn line_of_offset(src: &str, offset: usize) -> usize {
    src.as_bytes()[..offset.min(src.len())].iter().filter(|&&b| b == b'\n').count() + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC: &str = r#"# header
[boot]
log_level = "info" # trailing
on_exit = "poweroff"

[workload]
path = "/bin/app"
env = { A = "1" }

[[volumes]]
name = "a"

[[volumes]]
name = "b"
cipher = "x"
"#;

    #[test]
    fn finds_plain_keys() {
        assert_eq!(line_of(DOC, "boot.log_level"), Some(3));
        assert_eq!(line_of(DOC, "boot.on_exit"), Some(4));
        assert_eq!(line_of(DOC, "workload.path"), Some(7));
    }

    #[test]
    fn finds_array_of_tables_entries() {
        assert_eq!(line_of(DOC, "volumes[0].name"), Some(11));
        assert_eq!(line_of(DOC, "volumes[1].cipher"), Some(15));
        assert_eq!(line_of(DOC, "volumes[1]"), Some(13));
    }

    #[test]
    fn falls_back_to_enclosing_table() {
        assert_eq!(line_of(DOC, "workload.env.A"), Some(8));
        assert_eq!(line_of(DOC, "boot.missing"), Some(2));
        assert_eq!(line_of(DOC, "nowhere.at.all"), None);
    }

    const NESTED: &str = r#"[[volumes]]
name = "a"
[volumes.verity]
root_hash = "x"

[[volumes]]
name = "b"

[volumes.verity]
salt = "y"
data_blocks = 3
[[volumes.extra]]
k = 1
[[volumes.extra]]
k = 2
"#;

    #[test]
    fn finds_sub_tables_of_array_of_tables_entries() {
        assert_eq!(line_of(NESTED, "volumes[0].verity.root_hash"), Some(4));
        assert_eq!(line_of(NESTED, "volumes[0].verity"), Some(3));
        // A key missing from the sub-table points at its header, not at `[[volumes]]`.
        assert_eq!(line_of(NESTED, "volumes[0].verity.salt"), Some(3));
        assert_eq!(line_of(NESTED, "volumes[1].verity.salt"), Some(10));
        assert_eq!(line_of(NESTED, "volumes[1].verity.data_blocks"), Some(11));
        assert_eq!(line_of(NESTED, "volumes[1].verity.hash_offset"), Some(9));
        assert_eq!(line_of(NESTED, "volumes[1].name"), Some(7));
    }

    #[test]
    fn finds_arrays_of_tables_nested_in_array_entries() {
        assert_eq!(line_of(NESTED, "volumes[1].extra[0].k"), Some(13));
        assert_eq!(line_of(NESTED, "volumes[1].extra[1].k"), Some(15));
        assert_eq!(line_of(NESTED, "volumes[1].extra[1]"), Some(14));
        // volumes[0] has no `extra`: its own header is the closest line.
        assert_eq!(line_of(NESTED, "volumes[0].extra[0].k"), Some(1));
    }

    #[test]
    fn offsets_map_to_lines() {
        assert_eq!(line_of_offset("a\nb\nc", 0), 1);
        assert_eq!(line_of_offset("a\nb\nc", 2), 2);
        assert_eq!(line_of_offset("a\nb\nc", 99), 3);
    }
}
