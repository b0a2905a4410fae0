//! Just enough XML for NVIDIA RIM files: a strict parser into a small tree
//! and Canonical XML 1.1 (inclusive, without comments) of a subtree, which
//! XMLDSig needs for the enveloped signature NVIDIA puts on its RIMs.
//!
//! Refused rather than half-supported: DOCTYPE (and with it any entity but
//! the five predefined ones), processing instructions inside the document,
//! `xml:` attributes (whose C14N 1.1 inheritance rules we do not need), and
//! anything malformed. Limits bound depth and size.

use std::collections::BTreeMap;

pub const MAX_XML_BYTES: usize = 1 << 20;
const MAX_DEPTH: usize = 32;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("XML at byte {offset}: {message}")]
pub struct XmlError {
    pub offset: usize,
    pub message: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Node {
    Element(Element),
    Text(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Element {
    /// Qualified name as written (`ds:Signature`).
    pub name: String,
    /// Attributes as written, values normalised; `xmlns` declarations included.
    pub attrs: Vec<(String, String)>,
    pub children: Vec<Node>,
}

impl Element {
    pub fn local_name(&self) -> &str {
        local(&self.name)
    }

    pub fn prefix(&self) -> &str {
        self.name.split_once(':').map_or("", |(p, _)| p)
    }

    /// An attribute by its local name (whatever its prefix).
    pub fn attr(&self, local_name: &str) -> Option<&str> {
        self.attrs.iter().find(|(n, _)| !is_ns_decl(n) && local(n) == local_name).map(|(_, v)| v.as_str())
    }

    pub fn elements(&self) -> impl Iterator<Item = &Element> {
        self.children.iter().filter_map(|n| match n {
            Node::Element(e) => Some(e),
            Node::Text(_) => None,
        })
    }

    /// First child element with this local name.
    pub fn child(&self, local_name: &str) -> Option<&Element> {
        self.elements().find(|e| e.local_name() == local_name)
    }

    /// Concatenated text content of direct text children.
    pub fn text(&self) -> String {
        self.children
            .iter()
            .filter_map(|n| match n {
                Node::Text(t) => Some(t.as_str()),
                Node::Element(_) => None,
            })
            .collect()
    }

    /// Namespace declarations made on this element (prefix "" = default).
    fn ns_decls(&self) -> impl Iterator<Item = (&str, &str)> {
        self.attrs.iter().filter_map(|(n, v)| {
            if n == "xmlns" { Some(("", v.as_str())) } else { n.strip_prefix("xmlns:").map(|p| (p, v.as_str())) }
        })
    }
}

fn local(qname: &str) -> &str {
    qname.split_once(':').map_or(qname, |(_, l)| l)
}

fn is_ns_decl(name: &str) -> bool {
    name == "xmlns" || name.starts_with("xmlns:")
}

/// Parses a document and returns its root element.
pub fn parse(input: &[u8]) -> Result<Element, XmlError> {
    if input.len() > MAX_XML_BYTES {
        return Err(XmlError { offset: 0, message: format!("larger than {MAX_XML_BYTES} bytes") });
    }
    let text =
        std::str::from_utf8(input).map_err(|e| XmlError { offset: e.valid_up_to(), message: "not UTF-8".into() })?;
    // XML end-of-line handling before anything else.
    let text = text.replace("\r\n", "\n").replace('\r', "\n");
    let mut p = Parser { s: &text, pos: 0 };
    p.skip_bom();
    p.prolog()?;
    let root = p.element(0)?;
    p.misc()?;
    if p.pos != p.s.len() {
        return p.err("content after the root element");
    }
    Ok(root)
}

struct Parser<'a> {
    s: &'a str,
    pos: usize,
}

impl<'a> Parser<'a> {
    fn err<T>(&self, message: &str) -> Result<T, XmlError> {
        Err(XmlError { offset: self.pos, message: message.to_string() })
    }
    fn rest(&self) -> &'a str {
        &self.s[self.pos..]
    }
    fn starts(&self, p: &str) -> bool {
        self.rest().starts_with(p)
    }
    fn skip_bom(&mut self) {
        if self.starts("\u{feff}") {
            self.pos += 3;
        }
    }
    fn skip_ws(&mut self) {
        let n = self.rest().len() - self.rest().trim_start_matches([' ', '\t', '\n']).len();
        self.pos += n;
    }
    fn expect(&mut self, p: &str) -> Result<(), XmlError> {
        if self.starts(p) {
            self.pos += p.len();
            Ok(())
        } else {
            self.err(&format!("expected {p:?}"))
        }
    }
    fn until(&mut self, end: &str) -> Result<&'a str, XmlError> {
        match self.rest().find(end) {
            Some(i) => {
                let s = &self.rest()[..i];
                self.pos += i + end.len();
                Ok(s)
            }
            None => self.err(&format!("unterminated, missing {end:?}")),
        }
    }

    fn prolog(&mut self) -> Result<(), XmlError> {
        if self.starts("<?xml") {
            self.until("?>")?;
        }
        self.misc()?;
        if self.starts("<!DOCTYPE") {
            return self.err("DOCTYPE is not accepted");
        }
        Ok(())
    }

    /// Whitespace and comments outside the root element.
    fn misc(&mut self) -> Result<(), XmlError> {
        loop {
            self.skip_ws();
            if self.starts("<!--") {
                self.pos += 4;
                self.until("-->")?;
            } else if self.starts("<?") {
                return self.err("processing instructions are not accepted");
            } else {
                return Ok(());
            }
        }
    }

    fn name(&mut self) -> Result<String, XmlError> {
        let r = self.rest();
        let n = r
            .char_indices()
            .find(|&(_, c)| !(c.is_alphanumeric() || matches!(c, ':' | '_' | '-' | '.')))
            .map_or(r.len(), |(i, _)| i);
        if n == 0 || r.starts_with(|c: char| c.is_ascii_digit() || c == '-' || c == '.') {
            return self.err("expected a name");
        }
        let name = &r[..n];
        if name.matches(':').count() > 1 || name.starts_with(':') || name.ends_with(':') {
            return self.err("malformed qualified name");
        }
        self.pos += n;
        Ok(name.to_string())
    }

    fn element(&mut self, depth: usize) -> Result<Element, XmlError> {
        if depth > MAX_DEPTH {
            return self.err("nested too deeply");
        }
        self.expect("<")?;
        let name = self.name()?;
        let mut attrs: Vec<(String, String)> = Vec::new();
        loop {
            let before = self.pos;
            self.skip_ws();
            if self.starts("/>") {
                self.pos += 2;
                return Ok(Element { name, attrs, children: Vec::new() });
            }
            if self.starts(">") {
                self.pos += 1;
                break;
            }
            if self.pos == before {
                return self.err("expected whitespace before an attribute");
            }
            let an = self.name()?;
            if an.starts_with("xml:") {
                return self.err("xml: attributes are not accepted");
            }
            self.skip_ws();
            self.expect("=")?;
            self.skip_ws();
            let quote = match self.rest().chars().next() {
                Some(q @ ('"' | '\'')) => q,
                _ => return self.err("expected a quoted attribute value"),
            };
            self.pos += 1;
            let raw = self.until(&quote.to_string())?;
            if raw.contains('<') {
                return self.err("'<' in an attribute value");
            }
            // Attribute-value normalisation for CDATA attributes: literal
            // whitespace becomes a space before references are expanded.
            let raw = raw.replace(['\t', '\n'], " ");
            let value = self.unescape(&raw)?;
            if attrs.iter().any(|(n, _)| n == &an) {
                return self.err("duplicate attribute");
            }
            attrs.push((an, value));
        }
        let mut children = Vec::new();
        let mut text = String::new();
        loop {
            if self.starts("</") {
                self.pos += 2;
                let end = self.name()?;
                if end != name {
                    return self.err("mismatched end tag");
                }
                self.skip_ws();
                self.expect(">")?;
                if !text.is_empty() {
                    children.push(Node::Text(std::mem::take(&mut text)));
                }
                return Ok(Element { name, attrs, children });
            } else if self.starts("<!--") {
                self.pos += 4;
                self.until("-->")?;
            } else if self.starts("<![CDATA[") {
                self.pos += 9;
                text.push_str(self.until("]]>")?);
            } else if self.starts("<?") || self.starts("<!") {
                return self.err("processing instructions and declarations are not accepted");
            } else if self.starts("<") {
                if !text.is_empty() {
                    children.push(Node::Text(std::mem::take(&mut text)));
                }
                children.push(Node::Element(self.element(depth + 1)?));
            } else if self.rest().is_empty() {
                return self.err("unexpected end of document");
            } else {
                let r = self.rest();
                let n = r.find('<').unwrap_or(r.len());
                let raw = &r[..n];
                self.pos += n;
                text.push_str(&self.unescape(raw)?);
            }
        }
    }

    fn unescape(&self, raw: &str) -> Result<String, XmlError> {
        let mut out = String::with_capacity(raw.len());
        let mut rest = raw;
        while let Some(i) = rest.find('&') {
            out.push_str(&rest[..i]);
            let after = &rest[i + 1..];
            let Some(semi) = after.find(';') else {
                return self.err("unterminated reference");
            };
            let ent = &after[..semi];
            let c = match ent {
                "lt" => '<',
                "gt" => '>',
                "amp" => '&',
                "quot" => '"',
                "apos" => '\'',
                _ => {
                    let code = if let Some(h) = ent.strip_prefix("#x") {
                        u32::from_str_radix(h, 16).ok()
                    } else if let Some(d) = ent.strip_prefix('#') {
                        d.parse().ok()
                    } else {
                        None
                    };
                    match code.and_then(char::from_u32) {
                        Some(c) if c != '\0' => c,
                        _ => return self.err("unknown entity or bad character reference"),
                    }
                }
            };
            out.push(c);
            rest = &after[semi + 1..];
        }
        out.push_str(rest);
        Ok(out)
    }
}

type NsMap = BTreeMap<String, String>;

/// An element or attribute prefix with no namespace declaration in scope:
/// such a document has no canonical form.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("undeclared prefix {0:?}")]
pub struct UndeclaredPrefix(pub String);

/// Canonical XML 1.1 (inclusive, no comments) of `apex`, whose ancestors
/// are `ancestors` (outermost first). Elements for which `exclude` returns
/// true are left out with their subtree (the enveloped-signature transform).
pub fn canonicalize(
    apex: &Element,
    ancestors: &[&Element],
    exclude: &dyn Fn(&Element) -> bool,
) -> Result<String, UndeclaredPrefix> {
    let mut inherited = NsMap::new();
    for a in ancestors {
        apply_decls(&mut inherited, a);
    }
    let mut out = String::new();
    // The apex's output parent is outside the node set: it renders every
    // namespace in scope.
    write_element(apex, &inherited, &NsMap::new(), exclude, &mut out)?;
    Ok(out)
}

fn apply_decls(scope: &mut NsMap, e: &Element) {
    for (p, u) in e.ns_decls() {
        scope.insert(p.to_string(), u.to_string());
    }
}

fn write_element(
    e: &Element,
    scope_above: &NsMap,
    rendered_above: &NsMap,
    exclude: &dyn Fn(&Element) -> bool,
    out: &mut String,
) -> Result<(), UndeclaredPrefix> {
    let mut scope = scope_above.clone();
    apply_decls(&mut scope, e);
    // Namespace nodes to render: those whose value differs from what the
    // nearest output ancestor rendered.
    let mut ns: Vec<(&str, &str)> = Vec::new();
    for (p, u) in &scope {
        if p.is_empty() && u.is_empty() {
            if rendered_above.get("").is_some_and(|d| !d.is_empty()) {
                ns.push(("", ""));
            }
            continue;
        }
        if rendered_above.get(p) != Some(u) {
            ns.push((p, u));
        }
    }
    // The element's own prefix must resolve.
    if !e.prefix().is_empty() && !scope.contains_key(e.prefix()) {
        return Err(UndeclaredPrefix(e.prefix().to_string()));
    }
    let mut attrs: Vec<(String, &str, &str, &str)> = Vec::new(); // (ns uri, local, qname, value)
    for (n, v) in &e.attrs {
        if is_ns_decl(n) {
            continue;
        }
        let uri = match n.split_once(':') {
            None => String::new(),
            Some((p, _)) => scope.get(p).cloned().ok_or_else(|| UndeclaredPrefix(p.to_string()))?,
        };
        attrs.push((uri, local(n), n, v));
    }
    attrs.sort_by(|a, b| (a.0.as_str(), a.1).cmp(&(b.0.as_str(), b.1)));

    out.push('<');
    out.push_str(&e.name);
    for (p, u) in &ns {
        if p.is_empty() {
            out.push_str(" xmlns=\"");
        } else {
            out.push_str(" xmlns:");
            out.push_str(p);
            out.push_str("=\"");
        }
        escape_attr(u, out);
        out.push('"');
    }
    for (_, _, qname, value) in &attrs {
        out.push(' ');
        out.push_str(qname);
        out.push_str("=\"");
        escape_attr(value, out);
        out.push('"');
    }
    out.push('>');
    let mut rendered = rendered_above.clone();
    for (p, u) in &ns {
        rendered.insert(p.to_string(), u.to_string());
    }
    for child in &e.children {
        match child {
            Node::Text(t) => escape_text(t, out),
            Node::Element(c) if exclude(c) => {}
            Node::Element(c) => write_element(c, &scope, &rendered, exclude, out)?,
        }
    }
    out.push_str("</");
    out.push_str(&e.name);
    out.push('>');
    Ok(())
}

fn escape_text(t: &str, out: &mut String) {
    for c in t.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '\r' => out.push_str("&#xD;"),
            c => out.push(c),
        }
    }
}

fn escape_attr(t: &str, out: &mut String) {
    for c in t.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '"' => out.push_str("&quot;"),
            '\t' => out.push_str("&#x9;"),
            '\n' => out.push_str("&#xA;"),
            '\r' => out.push_str("&#xD;"),
            c => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c14n(doc: &str) -> String {
        let root = parse(doc.as_bytes()).unwrap();
        canonicalize(&root, &[], &|_| false).unwrap()
    }

    #[test]
    fn canonical_form_sorts_and_escapes() {
        assert_eq!(
            c14n(
                "<?xml version=\"1.0\"?>\n<!-- c --><a xmlns:z=\"u:z\" b='1' xmlns=\"u:d\" z:a=\"x&amp;&#9;\" a=\"\n\"><e/><f>t&gt;&#13;</f></a>\n"
            ),
            "<a xmlns=\"u:d\" xmlns:z=\"u:z\" a=\" \" b=\"1\" z:a=\"x&amp;&#x9;\"><e></e><f>t&gt;&#xD;</f></a>"
        );
    }

    #[test]
    fn redundant_declarations_are_dropped_and_subtrees_inherit() {
        let doc = "<r xmlns:p=\"u:p\"><p:s xmlns:p=\"u:p\"><p:t/></p:s></r>";
        assert_eq!(c14n(doc), "<r xmlns:p=\"u:p\"><p:s><p:t></p:t></p:s></r>");
        let root = parse(doc.as_bytes()).unwrap();
        let s = root.child("s").unwrap();
        assert_eq!(canonicalize(s, &[&root], &|_| false).unwrap(), "<p:s xmlns:p=\"u:p\"><p:t></p:t></p:s>");
    }

    #[test]
    fn hostile_constructs_are_refused() {
        for doc in [
            "<!DOCTYPE a [<!ENTITY x \"y\">]><a>&x;</a>",
            "<a>&x;</a>",
            "<a><b></a>",
            "<a a=\"1\" a=\"2\"/>",
            "<a><?pi x?></a>",
            "<a xml:id=\"1\"/>",
            "<a/><b/>",
            "<a>",
        ] {
            assert!(parse(doc.as_bytes()).is_err(), "{doc}");
        }
        let deep = "<a>".repeat(40) + &"</a>".repeat(40);
        assert!(parse(deep.as_bytes()).is_err());
    }
}
