//! The import graph of `src/` has no cycle: the config stage's aggregate
//! sits above every stage, stages above the ground floor (`schema`,
//! `files`), so a reader can learn the code bottom-up and a change to one
//! stage cannot reach back into the configuration that feeds it.
//!
//! Nodes are source files (`tee::snp`, `config`...). An edge is a `crate::`,
//! `super::` or child-relative path in non-test code. Two rules:
//! - top level: collapsing every file into its top-level module
//!   (`crate::tee::*` into `tee`), the graph is acyclic;
//! - inside a module: files are acyclic, not counting a child's use of its
//!   ancestors (a parent re-exporting its children's items is Rust's usual
//!   shape, and the child depending on the parent's shared types with it).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

type Module = Vec<String>;
type Graph = BTreeMap<Module, BTreeSet<Module>>;

fn module_of(root: &Path, file: &Path) -> Option<Module> {
    let rel = file.strip_prefix(root).ok()?.with_extension("");
    let mut parts: Vec<String> = rel.iter().map(|p| p.to_string_lossy().into_owned()).collect();
    if matches!(parts.last().map(String::as_str), Some("mod" | "lib" | "main")) {
        parts.pop();
    }
    // Test-only files are not part of the graph.
    if parts.last().is_some_and(|l| l == "tests" || l.ends_with("_tests")) {
        return None;
    }
    Some(parts)
}

fn walk(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            walk(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The source without its `#[cfg(test)] mod NAME { ... }` blocks (braces
/// matched, wherever they are) and without comments.
fn code_of(text: &str) -> String {
    let mut text = text.to_string();
    while let Some(start) = text.find("#[cfg(test)]\nmod ") {
        let Some(open) = text[start..].find(['{', ';']).map(|o| start + o) else { break };
        let mut end = open + 1;
        if text.as_bytes()[open] == b'{' {
            let mut depth = 0usize;
            for (i, c) in text[open..].char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' => depth -= 1,
                    _ => {}
                }
                if depth == 0 {
                    end = open + i + 1;
                    break;
                }
            }
        }
        text.replace_range(start..end, "");
    }
    text.lines().map(|l| l.split("//").next().unwrap_or("")).collect::<Vec<_>>().join("\n")
}

fn is_ident(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// Every path that starts with `crate::`, `super::` or (for `use NAME::`)
/// a child module, as segments relative to the crate root; `{a, b::c}`
/// groups are expanded one level.
fn paths_in(code: &str, module: &Module) -> Vec<Module> {
    let mut out = Vec::new();
    let bytes: Vec<char> = code.chars().collect();
    let mut i = 0;
    while i < bytes.len() {
        let at_word = i == 0 || !is_ident(bytes[i - 1]) && bytes[i - 1] != ':';
        if !at_word || !matches!(bytes[i], 'c' | 's' | 'u') {
            i += 1;
            continue;
        }
        let rest: String = bytes[i..bytes.len().min(i + 300)].iter().collect();
        let (base, skip) = if at_word && rest.starts_with("crate::") {
            (Vec::new(), "crate::".len())
        } else if at_word && rest.starts_with("super::") {
            // Each leading `super` below pops one level.
            (module.clone(), 0)
        } else if at_word && rest.starts_with("use ") {
            let word: String = rest[4..].trim_start().chars().take_while(|c| is_ident(*c)).collect();
            if ["crate", "super", "self", "std", "core", "alloc"].contains(&word.as_str()) || word.is_empty() {
                i += 1;
                continue;
            }
            (module.clone(), rest.len() - rest[4..].trim_start().len())
        } else {
            i += 1;
            continue;
        };
        let tail = &rest[skip..];
        let mut base = base;
        let mut segs = tail.split("::");
        let mut path = Vec::new();
        let mut group = None;
        for seg in segs.by_ref() {
            if seg == "super" && path.is_empty() {
                base.pop();
                continue;
            }
            if let Some(g) = seg.strip_prefix('{') {
                group = Some(g.to_string());
                break;
            }
            let ident: String = seg.chars().take_while(|c| is_ident(*c)).collect();
            if ident.is_empty() {
                break;
            }
            path.push(ident.clone());
            if ident.len() != seg.len() {
                break;
            }
        }
        let mut full = base.clone();
        full.extend(path);
        out.push(full.clone());
        if let Some(g) = group {
            let g = format!("{g}::{}", segs.collect::<Vec<_>>().join("::"));
            let inner = g.split('}').next().unwrap_or("");
            for item in inner.split(',') {
                let mut p = full.clone();
                p.extend(item.trim().split("::").map(|s| s.chars().take_while(|c| is_ident(*c)).collect::<String>()));
                p.retain(|s| !s.is_empty() && s != "self");
                out.push(p);
            }
        }
        i += skip.max(1);
    }
    out
}

fn resolve(modules: &BTreeSet<Module>, path: &Module) -> Option<Module> {
    (1..=path.len()).rev().map(|n| path[..n].to_vec()).find(|p| modules.contains(p))
}

fn graph() -> Graph {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    walk(&root, &mut files);
    let sources: BTreeMap<Module, String> = files
        .iter()
        .filter_map(|f| Some((module_of(&root, f)?, code_of(&std::fs::read_to_string(f).unwrap()))))
        .collect();
    let modules: BTreeSet<Module> = sources.keys().cloned().collect();
    let mut g = Graph::new();
    for (m, code) in &sources {
        let edges = g.entry(m.clone()).or_default();
        for p in paths_in(code, m) {
            if let Some(t) = resolve(&modules, &p)
                && &t != m
            {
                edges.insert(t);
            }
        }
    }
    g
}

/// The strongly connected components with more than one node (Tarjan).
fn cycles(g: &Graph) -> Vec<Vec<Module>> {
    struct T<'a> {
        g: &'a Graph,
        index: BTreeMap<&'a Module, usize>,
        low: BTreeMap<&'a Module, usize>,
        stack: Vec<&'a Module>,
        on: BTreeSet<&'a Module>,
        out: Vec<Vec<Module>>,
    }
    fn visit<'a>(t: &mut T<'a>, v: &'a Module) {
        let n = t.index.len();
        t.index.insert(v, n);
        t.low.insert(v, n);
        t.stack.push(v);
        t.on.insert(v);
        for w in t.g.get(v).into_iter().flatten() {
            if !t.index.contains_key(w) {
                visit(t, w);
                let lw = t.low[w];
                t.low.entry(v).and_modify(|l| *l = (*l).min(lw));
            } else if t.on.contains(w) {
                let iw = t.index[w];
                t.low.entry(v).and_modify(|l| *l = (*l).min(iw));
            }
        }
        if t.low[v] == t.index[v] {
            let mut c = Vec::new();
            while let Some(w) = t.stack.pop() {
                t.on.remove(w);
                c.push(w.clone());
                if w == v {
                    break;
                }
            }
            if c.len() > 1 {
                c.sort();
                t.out.push(c);
            }
        }
    }
    let mut t =
        T { g, index: BTreeMap::new(), low: BTreeMap::new(), stack: Vec::new(), on: BTreeSet::new(), out: Vec::new() };
    for v in g.keys() {
        if !t.index.contains_key(v) {
            visit(&mut t, v);
        }
    }
    t.out
}

fn show(cycles: &[Vec<Module>], g: &Graph) -> String {
    let mut s = String::new();
    for c in cycles {
        for m in c {
            let inside: Vec<String> = g[m].iter().filter(|t| c.contains(t)).map(|t| t.join("::")).collect();
            s.push_str(&format!("  {} -> {}\n", m.join("::"), inside.join(", ")));
        }
        s.push('\n');
    }
    s
}

#[test]
fn top_level_modules_form_no_cycle() {
    let g = graph();
    let mut top = Graph::new();
    for (m, targets) in &g {
        let from = m[..m.len().min(1)].to_vec();
        let entry = top.entry(from.clone()).or_default();
        entry.extend(targets.iter().map(|t| t[..t.len().min(1)].to_vec()).filter(|t| *t != from));
    }
    let c = cycles(&top);
    assert!(c.is_empty(), "import cycles between top-level modules:\n{}", show(&c, &top));
}

#[test]
fn files_form_no_cycle_besides_children_using_their_parents() {
    let mut g = graph();
    for (m, targets) in g.iter_mut() {
        targets.retain(|t| !(t.len() < m.len() && m.starts_with(t)));
    }
    let c = cycles(&g);
    assert!(c.is_empty(), "import cycles between files:\n{}", show(&c, &g));
}

#[test]
fn the_checker_sees_a_cycle() {
    // The rule must be able to fail: two files that name each other.
    let a = vec!["a".to_string()];
    let b = vec!["b".to_string()];
    let modules: BTreeSet<Module> = [a.clone(), b.clone()].into();
    let mut g = Graph::new();
    for (m, code) in [(&a, "use crate::b::Thing;"), (&b, "fn f() { crate::a::g() }")] {
        let targets = paths_in(code, m).iter().filter_map(|p| resolve(&modules, p)).filter(|t| t != m).collect();
        g.insert(m.clone(), targets);
    }
    assert_eq!(cycles(&g), vec![vec![a, b]]);
    // And the real graph has edges to check (the parser reads the source).
    let real = graph();
    assert!(real[&vec!["config".to_string()]].contains(&vec!["schema".to_string()]));
    assert!(real[&vec!["stages".to_string()]].len() > 10);
}
