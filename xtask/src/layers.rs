//! `cargo xtask layers`: tracer's stages import one way only, and no files import each other
//! in a circle.
//!
//! The stages are the library's top-level modules, in the order data flows (tracer/src/lib.rs
//! says the same in words). A file may use its own stage and the stages before it, never a
//! later one. Imports are read from the source text: `use` trees and `crate::`/`super::`/
//! `self::` paths in code (comments are skipped), resolved to the files that define them.
use std::{
    collections::{BTreeMap, BTreeSet},
    path::{Path, PathBuf},
};

use anyhow::{bail, Context, Result};

/// (module, rank): a module may use modules of its rank or lower. Peers (same rank) may use
/// each other as long as no files form a circle.
pub const STAGES: &[(&str, u32)] = &[
    ("model", 0),
    ("exit", 0),
    ("runtime", 1),
    ("plan", 2),
    ("probe", 3),
    ("ledger", 4),
    ("recording", 5),
    ("report", 6),
    ("live", 6),
    ("session", 7),
    ("doctor", 7),
];

/// One source file: its module path (`["session", "attach", "all"]`) and its text.
struct File {
    module: Vec<String>,
    path: PathBuf,
    text: String,
}

fn rank(stage: &str) -> Option<u32> {
    STAGES.iter().find(|(s, _)| *s == stage).map(|(_, r)| *r)
}

fn read_tree(src: &Path) -> Result<Vec<File>> {
    let mut out = Vec::new();
    let mut stack = vec![src.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).with_context(|| format!("{}", dir.display()))? {
            let path = entry?.path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let rel = path.strip_prefix(src)?;
            let mut module: Vec<String> = rel
                .with_extension("")
                .iter()
                .map(|c| c.to_string_lossy().into_owned())
                .collect();
            if module
                .last()
                .is_some_and(|m| m == "mod" || m == "lib" || m == "main")
            {
                module.pop();
            }
            let text = std::fs::read_to_string(&path)?;
            out.push(File { module, path, text });
        }
    }
    out.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(out)
}

/// The text without comments and string literals (paths in doc links or messages are not
/// imports).
fn code_only(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let b = text.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'/' && b.get(i + 1) == Some(&b'/') {
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
        } else if b[i] == b'/' && b.get(i + 1) == Some(&b'*') {
            i += 2;
            while i + 1 < b.len() && !(b[i] == b'*' && b[i + 1] == b'/') {
                i += 1;
            }
            i += 2;
        } else if b[i] == b'"' {
            i += 1;
            while i < b.len() && b[i] != b'"' {
                if b[i] == b'\\' {
                    i += 1;
                }
                i += 1;
            }
            i += 1;
            out.push_str("\"\"");
        } else if b[i] == b'\'' && b.get(i + 2) == Some(&b'\'') {
            // A char literal such as '"' or '{'.
            i += 3;
        } else {
            out.push(b[i] as char);
            i += 1;
        }
    }
    out
}

/// Expands a use tree (`crate::{a::b, c::{d, e}}`) into paths.
fn expand(tree: &str) -> Vec<Vec<String>> {
    fn split_top(s: &str) -> Vec<&str> {
        let (mut depth, mut start, mut parts) = (0, 0, Vec::new());
        for (i, c) in s.char_indices() {
            match c {
                '{' => depth += 1,
                '}' => depth -= 1,
                ',' if depth == 0 => {
                    parts.push(&s[start..i]);
                    start = i + 1;
                }
                _ => {}
            }
        }
        parts.push(&s[start..]);
        parts
    }
    fn go(prefix: &[String], s: &str, out: &mut Vec<Vec<String>>) {
        let s = s.trim();
        if s.is_empty() {
            return;
        }
        if let Some(open) = s.find('{') {
            let head: Vec<String> = s[..open]
                .split("::")
                .map(str::trim)
                .filter(|p| !p.is_empty())
                .map(String::from)
                .collect();
            let close = s.rfind('}').unwrap_or(s.len());
            let mut p = prefix.to_vec();
            p.extend(head);
            for part in split_top(&s[open + 1..close]) {
                go(&p, part, out);
            }
            return;
        }
        let s = s.split(" as ").next().unwrap_or(s);
        let mut p = prefix.to_vec();
        p.extend(
            s.split("::")
                .map(str::trim)
                .filter(|x| !x.is_empty())
                .map(String::from),
        );
        out.push(p);
    }
    let mut out = Vec::new();
    go(&[], tree, &mut out);
    out
}

/// Every path a file names that starts at `crate`, `super` or `self`.
fn paths(code: &str) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    // `use` statements, which may hold trees.
    let mut rest = code;
    while let Some(i) = rest.find("use ") {
        let before = rest[..i].chars().last();
        let after = &rest[i + 4..];
        rest = after;
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
            continue;
        }
        let Some(end) = after.find(';') else { break };
        let tree = &after[..end];
        if ["crate", "super", "self"]
            .iter()
            .any(|r| tree.trim_start().starts_with(r))
        {
            out.extend(expand(tree));
        }
    }
    // Paths written in code.
    let bytes = code.as_bytes();
    for root in ["crate::", "super::", "self::"] {
        let mut from = 0;
        while let Some(i) = code[from..].find(root) {
            let at = from + i;
            from = at + root.len();
            if at > 0 && (bytes[at - 1].is_ascii_alphanumeric() || bytes[at - 1] == b'_') {
                continue;
            }
            let mut end = at;
            while end < bytes.len()
                && (bytes[end].is_ascii_alphanumeric() || bytes[end] == b'_' || bytes[end] == b':')
            {
                end += 1;
            }
            let p: Vec<String> = code[at..end]
                .split("::")
                .filter(|s| !s.is_empty())
                .map(String::from)
                .collect();
            out.push(p);
        }
    }
    out
}

/// The file a path leads to from `module`: the deepest module on it that has a file.
fn resolve(
    module: &[String],
    is_mod_rs: bool,
    path: &[String],
    files: &BTreeMap<Vec<String>, usize>,
) -> Option<usize> {
    let mut base: Vec<String> = module.to_vec();
    let mut segs = path.iter().peekable();
    match segs.peek().map(|s| s.as_str()) {
        Some("crate") => {
            base.clear();
            segs.next();
        }
        Some("self") => {
            segs.next();
        }
        Some("super") => {
            while segs.peek().map(|s| s.as_str()) == Some("super") {
                segs.next();
                base.pop();
            }
        }
        _ => return None,
    }
    // `super` in a non-mod.rs file names the module above it; in mod.rs too (the folder's
    // module is the file's module), so no difference is needed here.
    let _ = is_mod_rs;
    let mut best = files.get(&base).copied();
    for s in segs {
        base.push(s.clone());
        match files.get(&base) {
            Some(f) => best = Some(*f),
            None => break,
        }
    }
    best
}

/// Strongly connected components of more than one node (Tarjan).
fn circles(edges: &BTreeMap<usize, BTreeSet<usize>>, n: usize) -> Vec<Vec<usize>> {
    struct T<'a> {
        edges: &'a BTreeMap<usize, BTreeSet<usize>>,
        index: Vec<Option<usize>>,
        low: Vec<usize>,
        on: Vec<bool>,
        stack: Vec<usize>,
        next: usize,
        out: Vec<Vec<usize>>,
    }
    fn visit(t: &mut T, v: usize) {
        t.index[v] = Some(t.next);
        t.low[v] = t.next;
        t.next += 1;
        t.stack.push(v);
        t.on[v] = true;
        let next: Vec<usize> = t.edges.get(&v).into_iter().flatten().copied().collect();
        for w in next {
            match t.index[w] {
                None => {
                    visit(t, w);
                    t.low[v] = t.low[v].min(t.low[w]);
                }
                Some(i) if t.on[w] => t.low[v] = t.low[v].min(i),
                _ => {}
            }
        }
        if Some(t.low[v]) == t.index[v] {
            let mut c = Vec::new();
            while let Some(w) = t.stack.pop() {
                t.on[w] = false;
                c.push(w);
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
    let mut t = T {
        edges,
        index: vec![None; n],
        low: vec![0; n],
        on: vec![false; n],
        stack: Vec::new(),
        next: 0,
        out: Vec::new(),
    };
    for v in 0..n {
        if t.index[v].is_none() {
            visit(&mut t, v);
        }
    }
    t.out
}

/// The problems found in the library under `src` (empty: the layers hold).
pub fn problems(src: &Path) -> Result<Vec<String>> {
    let files = read_tree(src)?;
    let by_module: BTreeMap<Vec<String>, usize> = files
        .iter()
        .enumerate()
        .filter(|(_, f)| !f.path.ends_with("main.rs"))
        .map(|(i, f)| (f.module.clone(), i))
        .collect();
    let mut problems = Vec::new();
    let mut edges: BTreeMap<usize, BTreeSet<usize>> = BTreeMap::new();
    for (i, f) in files.iter().enumerate() {
        // The binary (main.rs, cli/) sits above every stage and uses the library by name.
        if f.module.first().is_some_and(|m| m == "cli") || f.path.ends_with("main.rs") {
            continue;
        }
        let Some(from_stage) = f.module.first() else {
            continue; // lib.rs declares the stages.
        };
        let Some(from_rank) = rank(from_stage) else {
            problems.push(format!(
                "{}: the module `{from_stage}` is not a known stage (add it to STAGES in \
                 xtask/src/layers.rs, in its place in the data flow)",
                shown(src, &f.path)
            ));
            continue;
        };
        let is_mod_rs = f.path.ends_with("mod.rs");
        for p in paths(&code_only(&f.text)) {
            let Some(to) = resolve(&f.module, is_mod_rs, &p, &by_module) else {
                continue;
            };
            if to == i {
                continue;
            }
            let Some(to_stage) = files[to].module.first() else {
                continue;
            };
            let first_use = edges.entry(i).or_default().insert(to);
            if let Some(to_rank) = rank(to_stage) {
                if to_rank > from_rank && first_use {
                    problems.push(format!(
                        "{} uses `{}` from a later stage ({to_stage} comes after {from_stage})",
                        shown(src, &f.path),
                        p.join("::")
                    ));
                }
            }
        }
    }
    for c in circles(&edges, files.len()) {
        let names: Vec<String> = c.iter().map(|i| shown(src, &files[*i].path)).collect();
        problems.push(format!(
            "files import each other in a circle: {}",
            names.join(", ")
        ));
    }
    problems.sort();
    problems.dedup();
    Ok(problems)
}

/// A file as the report names it: relative to the library's source folder.
fn shown(src: &Path, path: &Path) -> String {
    path.strip_prefix(src).unwrap_or(path).display().to_string()
}

pub fn check(src: &Path) -> Result<()> {
    let found = problems(src)?;
    if found.is_empty() {
        eprintln!(
            "ok: {} stages import one way only, no files in a circle",
            STAGES.len()
        );
        return Ok(());
    }
    for p in &found {
        eprintln!("layers: {p}");
    }
    bail!("{} layering problem(s) in {}", found.len(), src.display())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree(files: &[(&str, &str)]) -> tempdir::Dir {
        let d = tempdir::Dir::new();
        for (p, text) in files {
            let path = d.0.join(p);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, text).unwrap();
        }
        d
    }

    mod tempdir {
        pub struct Dir(pub std::path::PathBuf);
        impl Dir {
            pub fn new() -> Self {
                let p = std::env::temp_dir().join(format!(
                    "layers-test-{}-{:?}",
                    std::process::id(),
                    std::thread::current().id()
                ));
                let _ = std::fs::remove_dir_all(&p);
                std::fs::create_dir_all(&p).unwrap();
                Dir(p)
            }
        }
        impl Drop for Dir {
            fn drop(&mut self) {
                let _ = std::fs::remove_dir_all(&self.0);
            }
        }
    }

    #[test]
    fn use_trees_expand() {
        let p = expand("crate::{a::b, c::{d, e as f}, g}");
        assert_eq!(
            p,
            vec![
                vec!["crate", "a", "b"],
                vec!["crate", "c", "d"],
                vec!["crate", "c", "e"],
                vec!["crate", "g"],
            ]
        );
    }

    #[test]
    fn a_back_edge_is_found_and_comments_are_not_imports() {
        let d = tree(&[
            ("lib.rs", "pub mod runtime; pub mod ledger;"),
            ("runtime/mod.rs", "pub mod calibrate;"),
            (
                "runtime/calibrate.rs",
                "// crate::session::x in a comment\nuse crate::ledger::{BufferType};\nfn f() { let s = \"crate::report::y\"; }",
            ),
            ("ledger/mod.rs", "use crate::runtime::calibrate;"),
        ]);
        let p = problems(&d.0).unwrap();
        assert_eq!(p.len(), 2, "{p:?}");
        assert!(p[0].contains("circle"), "{p:?}");
        assert!(
            p[1].contains("runtime/calibrate.rs uses `crate::ledger::BufferType`"),
            "{p:?}"
        );
    }

    #[test]
    fn a_circle_inside_a_stage_is_found_through_super() {
        let d = tree(&[
            ("lib.rs", "pub mod plan;"),
            ("plan/mod.rs", "mod a; mod b;"),
            ("plan/a.rs", "use super::b::X;"),
            ("plan/b.rs", "fn f() { super::a::y(); }"),
        ]);
        let p = problems(&d.0).unwrap();
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(
            p[0].contains("plan/a.rs") && p[0].contains("plan/b.rs"),
            "{p:?}"
        );
    }

    #[test]
    fn the_real_tree_holds() {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tracer/src");
        let p = problems(&src).unwrap();
        assert!(p.is_empty(), "{}", p.join("\n"));
    }
}
