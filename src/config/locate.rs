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
            let mut header: Vec<Seg> = inner.split('.').map(|s| Seg::Key(unquote(s.trim()))).collect();
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
            table = inner.split('.').map(|s| Seg::Key(unquote(s.trim()))).collect();
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

    #[test]
    fn offsets_map_to_lines() {
        assert_eq!(line_of_offset("a\nb\nc", 0), 1);
        assert_eq!(line_of_offset("a\nb\nc", 2), 2);
        assert_eq!(line_of_offset("a\nb\nc", 99), 3);
    }
}
