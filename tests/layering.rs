//! The layers of DESIGN.md, checked on the source: every top-level module
//! of `src/` has a layer, imports only modules of lower layers (plus a few
//! named edges inside the domain layer), never reaches a module the design
//! keeps it away from, and no two modules depend on each other through any
//! path (no cycle).
//!
//! The scan reads `use crate::…` statements (grouped ones too) and inline
//! `crate::x::` paths, with comments stripped: a dependency written in code
//! is found whether or not it is in a `use` line.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Layers, lowest first. A module may import modules of lower layers.
const LAYERS: &[(&str, u8)] = &[
    ("util", 0),
    ("disk", 1),
    ("vm", 2),
    ("target", 2),
    ("ami", 3),
    ("toe", 3),
    ("recipe", 3),
    ("catalog", 3),
    ("export", 3),
    ("aws", 3),
    ("build", 4),
    ("pipeline", 5),
    ("serve", 6),
    ("cli", 7),
];

/// Edges allowed between two domain modules (same layer).
const SAME_LAYER: &[(&str, &str)] = &[
    ("toe", "aws"),        // S3Download/S3Upload use the one S3 client builder
    ("aws", "export"),     // the upload format is kiln's native VMDK
    ("aws", "ami"),        // what to import
    ("recipe", "ami"),     // `distribution.ami`
    ("recipe", "toe"),     // components are AWSTOE documents
    ("recipe", "export"),  // `distribution.formats`
    ("catalog", "recipe"), // versions and filters
];

/// Downward edges the design forbids: the engine and the domain modules
/// know no VMs, and only the engine talks to a target.
const FORBIDDEN_BELOW: &[(&str, &str)] = &[
    ("toe", "vm"),
    ("recipe", "vm"),
    ("catalog", "vm"),
    ("export", "vm"),
    ("aws", "vm"),
    ("ami", "vm"),
    ("recipe", "target"),
    ("catalog", "target"),
    ("export", "target"),
    ("aws", "target"),
    ("ami", "target"),
    ("target", "vm"),
    ("vm", "target"),
];

/// `src` without comments and without the contents of string, raw string
/// and char literals (a path in a message is not a dependency).
fn strip_comments(src: &str) -> String {
    let chars: Vec<char> = src.chars().collect();
    let mut out = String::with_capacity(src.len());
    let mut i = 0;
    let ident = |c: char| c.is_alphanumeric() || c == '_';
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        if c == '/' && next == Some('/') {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            i += 2;
            while i + 1 < chars.len() && !(chars[i] == '*' && chars[i + 1] == '/') {
                i += 1;
            }
            i += 2;
        } else if c == 'r'
            && (i == 0 || !ident(chars[i - 1]))
            && matches!(next, Some('"') | Some('#'))
        {
            // r"…" or r#"…"#
            let mut j = i + 1;
            let mut hashes = 0;
            while chars.get(j) == Some(&'#') {
                hashes += 1;
                j += 1;
            }
            if chars.get(j) != Some(&'"') {
                out.push(c);
                i += 1;
                continue;
            }
            j += 1;
            loop {
                if j >= chars.len() {
                    break;
                }
                if chars[j] == '"' && (0..hashes).all(|k| chars.get(j + 1 + k) == Some(&'#')) {
                    j += 1 + hashes;
                    break;
                }
                j += 1;
            }
            out.push_str("\"\"");
            i = j;
        } else if c == '"' {
            i += 1;
            while i < chars.len() && chars[i] != '"' {
                if chars[i] == '\\' {
                    i += 1;
                }
                i += 1;
            }
            i += 1;
            out.push_str("\"\"");
        } else if c == '\'' && (next == Some('"') || next == Some('\\')) {
            // '"' or '\x' char literals
            i += 2;
            while i < chars.len() && chars[i] != '\'' {
                i += 1;
            }
            i += 1;
            out.push_str("' '");
        } else {
            out.push(c);
            i += 1;
        }
    }
    out
}

/// The top-level modules `src` (one file's text, comments kept) refers to.
fn references(src: &str, modules: &BTreeSet<String>) -> BTreeSet<String> {
    let code = strip_comments(src);
    let mut found = BTreeSet::new();
    let mut add = |name: &str| {
        if modules.contains(name) {
            found.insert(name.to_string());
        }
    };
    // `use crate::{a::x, b}`: the first path segment of each group member
    let mut rest = code.as_str();
    while let Some(i) = rest.find("crate::{") {
        let after = &rest[i + "crate::{".len()..];
        let mut depth = 1;
        let mut end = after.len();
        for (j, c) in after.char_indices() {
            match c {
                '{' => depth += 1,
                '}' => {
                    depth -= 1;
                    if depth == 0 {
                        end = j;
                        break;
                    }
                }
                _ => {}
            }
        }
        let group = &after[..end];
        let mut depth = 0;
        let mut start = 0;
        for (j, c) in group.char_indices().chain([(group.len(), ',')]) {
            match c {
                '{' => depth += 1,
                '}' => depth -= 1,
                ',' if depth == 0 => {
                    let member = group[start..j].trim();
                    let head = member
                        .split(|c: char| !(c.is_alphanumeric() || c == '_'))
                        .next()
                        .unwrap_or("");
                    add(head);
                    start = j + 1;
                }
                _ => {}
            }
        }
        rest = &after[end..];
    }
    // `crate::name::…` and `use crate::name;`
    let bytes = code.as_bytes();
    let mut at = 0;
    while let Some(i) = code[at..].find("crate::") {
        let start = at + i;
        let before_ok = start == 0 || {
            let b = bytes[start - 1];
            !(b.is_ascii_alphanumeric() || b == b'_' || b == b':')
        };
        let name: String = code[start + "crate::".len()..]
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect();
        if before_ok {
            add(&name);
        }
        at = start + "crate::".len();
    }
    found
}

/// module → the modules it refers to, for every `.rs` file under `src`.
fn scan(src: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let mut modules = BTreeSet::new();
    for e in std::fs::read_dir(src).unwrap() {
        let e = e.unwrap();
        let name = e.file_name().to_string_lossy().into_owned();
        if e.file_type().unwrap().is_dir() {
            modules.insert(name);
        } else if let Some(stem) = name.strip_suffix(".rs") {
            if stem != "lib" && stem != "main" {
                modules.insert(stem.to_string());
            }
        }
    }
    let mut graph: BTreeMap<String, BTreeSet<String>> = modules
        .iter()
        .map(|m| (m.clone(), BTreeSet::new()))
        .collect();
    let mut stack = vec![src.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let path = e.unwrap().path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            if path.extension().is_none_or(|x| x != "rs") {
                continue;
            }
            let rel = path.strip_prefix(src).unwrap();
            let first = rel.components().next().unwrap().as_os_str();
            let first = first.to_string_lossy();
            let module = first.strip_suffix(".rs").unwrap_or(&first).to_string();
            if module == "lib" || module == "main" {
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap();
            let refs = references(&text, &modules);
            graph
                .get_mut(&module)
                .unwrap()
                .extend(refs.into_iter().filter(|r| *r != module));
        }
    }
    graph
}

/// Every edge that breaks the layering, as `a -> b: why`.
fn violations(graph: &BTreeMap<String, BTreeSet<String>>) -> Vec<String> {
    let layer: BTreeMap<&str, u8> = LAYERS.iter().copied().collect();
    let mut out = Vec::new();
    for (from, tos) in graph {
        let Some(&lf) = layer.get(from.as_str()) else {
            out.push(format!(
                "{from}: not in any layer (add it to LAYERS in tests/layering.rs and DESIGN.md)"
            ));
            continue;
        };
        for to in tos {
            let Some(&lt) = layer.get(to.as_str()) else {
                continue; // reported as its own module
            };
            let pair = (from.as_str(), to.as_str());
            if FORBIDDEN_BELOW.contains(&pair) {
                out.push(format!(
                    "{from} -> {to}: the design keeps {from} away from {to}"
                ));
            } else if lt > lf {
                out.push(format!("{from} -> {to}: imports a higher layer"));
            } else if lt == lf && !SAME_LAYER.contains(&pair) {
                out.push(format!(
                    "{from} -> {to}: an edge inside layer {lf} not in SAME_LAYER"
                ));
            }
        }
    }
    out
}

/// Strongly connected components with more than one module (Tarjan).
fn cycles(graph: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    struct State<'a> {
        graph: &'a BTreeMap<String, BTreeSet<String>>,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        on_stack: BTreeSet<&'a str>,
        stack: Vec<&'a str>,
        next: usize,
        out: Vec<Vec<String>>,
    }
    fn visit<'a>(s: &mut State<'a>, v: &'a str) {
        s.index.insert(v, s.next);
        s.low.insert(v, s.next);
        s.next += 1;
        s.stack.push(v);
        s.on_stack.insert(v);
        let graph = s.graph;
        for w in graph.get(v).into_iter().flatten() {
            let w = w.as_str();
            if !graph.contains_key(w) {
                continue;
            }
            if !s.index.contains_key(w) {
                visit(s, w);
                let lw = s.low[w];
                let lv = s.low.get_mut(v).unwrap();
                *lv = (*lv).min(lw);
            } else if s.on_stack.contains(w) {
                let iw = s.index[w];
                let lv = s.low.get_mut(v).unwrap();
                *lv = (*lv).min(iw);
            }
        }
        if s.low[v] == s.index[v] {
            let mut comp = Vec::new();
            while let Some(w) = s.stack.pop() {
                s.on_stack.remove(w);
                comp.push(w.to_string());
                if w == v {
                    break;
                }
            }
            if comp.len() > 1 {
                comp.sort();
                s.out.push(comp);
            }
        }
    }
    let mut s = State {
        graph,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        on_stack: BTreeSet::new(),
        stack: Vec::new(),
        next: 0,
        out: Vec::new(),
    };
    for v in graph.keys() {
        if !s.index.contains_key(v.as_str()) {
            visit(&mut s, v);
        }
    }
    s.out
}

#[test]
fn modules_keep_their_layers_and_form_no_cycle() {
    let graph = scan(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src"));
    assert!(graph.contains_key("util") && graph.contains_key("build"));
    let bad = violations(&graph);
    assert!(bad.is_empty(), "layering violations:\n{}", bad.join("\n"));
    let cyc = cycles(&graph);
    assert!(cyc.is_empty(), "dependency cycles: {cyc:?}");
    // the leaf imports nothing of the crate
    assert!(graph["util"].is_empty(), "util imports {:?}", graph["util"]);
}

#[test]
fn the_scan_finds_the_edges_the_review_named() {
    let modules: BTreeSet<String> = LAYERS.iter().map(|(m, _)| m.to_string()).collect();
    // the edges of the architecture review, written the ways code writes them
    let cases = [
        ("aws", "use crate::build::IoError;", "build"),
        (
            "export",
            "use crate::{build::{IoError, ProgressFn}, util};",
            "build",
        ),
        (
            "catalog",
            "fn f(m: &crate::build::manifest::Manifest) {}",
            "build",
        ),
        (
            "build",
            "use crate::pipeline::digest::{self, Inputs};",
            "pipeline",
        ),
        ("recipe", "use crate::vm::accel::AccelChoice;", "vm"),
        ("recipe", "use crate::aws::flow::AmiSpec;", "aws"),
        ("target", "use crate::vm::seed::HostKeyPair;", "vm"),
    ];
    for (from, line, to) in cases {
        let refs = references(line, &modules);
        assert!(refs.contains(to), "{line}: found {refs:?}");
        let mut graph: BTreeMap<String, BTreeSet<String>> = modules
            .iter()
            .map(|m| (m.clone(), BTreeSet::new()))
            .collect();
        graph.get_mut(from).unwrap().insert(to.to_string());
        assert!(
            !violations(&graph).is_empty(),
            "{from} -> {to} is not reported"
        );
    }
    // comments and literals do not count; code after them does
    let text = "// use crate::vm::x;\nlet s = \"crate::vm::y \\\" crate::aws::\";\n\
                let r = r#\"crate::toe:: \"x\" \"#; let q = '\"'; /* crate::disk:: */\n\
                use crate::export::format;";
    let refs = references(text, &modules);
    assert_eq!(refs, BTreeSet::from(["export".to_string()]), "{text}");
    // a cycle is found
    let mut graph: BTreeMap<String, BTreeSet<String>> = modules
        .iter()
        .map(|m| (m.clone(), BTreeSet::new()))
        .collect();
    graph.get_mut("toe").unwrap().insert("aws".into());
    graph.get_mut("aws").unwrap().insert("toe".into());
    assert_eq!(
        cycles(&graph),
        vec![vec!["aws".to_string(), "toe".to_string()]]
    );
}
