//! The layout's rules, checked from the source: a module imports only from its own layer or the
//! ones below it (server > conn > session > route > topology > backend > command > the leaves),
//! and within a folder the files' imports form no cycle (a file may use its folder's `mod.rs`,
//! the folder's interface; what `mod.rs` re-exports counts as an import of the file defining it).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Top-level modules by rank: each may import only modules of a lower rank (rank 0 imports none).
const LAYERS: &[(&str, u8)] = &[
    ("errors", 0),
    ("sync", 0),
    ("slot", 0),
    ("stats", 1),
    ("memory", 1),
    ("localcluster", 1),
    ("resp", 1),
    ("config", 2),
    ("metrics", 1),
    ("command", 2),
    ("keyspace", 3),
    ("backend", 3),
    ("topology", 4),
    ("route", 5),
    ("session", 6),
    ("conn", 7),
    ("server", 8),
];

/// Every module of the crate, by path (`conn::inflight`), with the text of its file.
fn modules() -> BTreeMap<String, String> {
    fn walk(dir: &Path, prefix: &str, out: &mut BTreeMap<String, String>) {
        for entry in std::fs::read_dir(dir).expect("read src") {
            let path = entry.expect("entry").path();
            let name = path.file_stem().and_then(|s| s.to_str()).unwrap_or_default().to_string();
            let join = |n: &str| if prefix.is_empty() { n.to_string() } else { format!("{prefix}::{n}") };
            if path.is_dir() {
                walk(&path, &join(&name), out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let module = match name.as_str() {
                    "mod" => prefix.to_string(),
                    "lib" | "main" => continue,
                    _ => join(&name),
                };
                let text = std::fs::read_to_string(&path).expect("read file");
                // Tests inside a file are not part of the layout, nor are comments (doc links).
                let code = text.split("#[cfg(test)]").next().unwrap_or_default();
                let text = code.lines().filter(|l| !l.trim_start().starts_with("//")).collect::<Vec<_>>().join("\n");
                out.insert(module, text);
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(&PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src"), "", &mut out);
    out
}

fn parent(m: &str) -> &str {
    m.rsplit_once("::").map(|(p, _)| p).unwrap_or("")
}

/// The names a module re-exports (`pub use x::{A, b}` / `pub use x::A as B`), each with the
/// module that defines it.
fn reexports(modules: &BTreeMap<String, String>, m: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let Some(text) = modules.get(m) else { return out };
    for stmt in text.split(';') {
        let stmt = stmt.trim();
        let Some(rest) = stmt.strip_prefix("pub use ") else { continue };
        let Some((path, names)) = rest.split_once("::") else { continue };
        let names = names.trim_start_matches('{').trim_end_matches('}');
        for n in names.split(',') {
            let n = n.trim();
            let shown = n.rsplit(" as ").next().unwrap_or(n).trim();
            let target = if m.is_empty() { path.to_string() } else { format!("{m}::{path}") };
            if !shown.is_empty() {
                out.insert(shown.to_string(), target.clone());
            }
        }
    }
    out
}

/// The modules `m` imports: every `crate::a::b` and `super::x` path in its text, resolved to the
/// deepest module named, and a name re-exported by that module resolved to where it comes from.
fn imports(modules: &BTreeMap<String, String>, m: &str) -> BTreeSet<String> {
    let text = &modules[m];
    let mut out = BTreeSet::new();
    for (prefix, base) in [("crate::", String::new()), ("super::", parent(m).to_string())] {
        for (i, _) in text.match_indices(prefix) {
            // `super::super::` and `self::` are not used in this crate.
            if i > 0 && text[..i].ends_with(|c: char| c.is_alphanumeric() || c == '_' || c == ':') {
                continue;
            }
            let rest = &text[i + prefix.len()..];
            let mut module = base.clone();
            let mut segments = rest.split("::");
            let mut last = None;
            for seg in segments.by_ref() {
                let seg: String = seg.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
                if seg.is_empty() {
                    break;
                }
                let next = if module.is_empty() { seg.clone() } else { format!("{module}::{seg}") };
                if modules.contains_key(&next) {
                    module = next;
                } else {
                    last = Some(seg);
                    break;
                }
            }
            // `use super::{a, B}` names several: each one resolved.
            let group = rest.trim_start_matches(|c: char| c.is_alphanumeric() || c == '_' || c == ':');
            let mut names: Vec<String> = last.into_iter().collect();
            if rest.starts_with('{') || group.starts_with('{') {
                let inner = rest.split('{').nth(1).and_then(|g| g.split('}').next()).unwrap_or_default();
                names.extend(inner.split(',').map(|n| n.trim().split("::").next().unwrap_or("").to_string()));
            }
            let exported = reexports(modules, &module);
            let names: Vec<&String> = names.iter().filter(|n| !n.is_empty()).collect();
            if names.is_empty() && !module.is_empty() {
                out.insert(module.clone());
            }
            for n in names {
                let sub = if module.is_empty() { n.clone() } else { format!("{module}::{n}") };
                if modules.contains_key(&sub) {
                    out.insert(sub);
                } else if let Some(from) = exported.get(n) {
                    out.insert(from.clone());
                } else if !module.is_empty() {
                    // Defined in the module itself (`self` included).
                    out.insert(module.clone());
                }
            }
        }
    }
    out.remove(m);
    out
}

fn top(m: &str) -> &str {
    m.split("::").next().unwrap_or(m)
}

#[test]
fn no_module_imports_one_above_it() {
    let modules = modules();
    let rank: BTreeMap<&str, u8> = LAYERS.iter().copied().collect();
    let mut wrong = Vec::new();
    for m in modules.keys() {
        let r = *rank.get(top(m)).unwrap_or_else(|| panic!("{m} is not in LAYERS"));
        for i in imports(&modules, m) {
            let t = top(&i);
            if t != top(m) && rank.get(t).is_none_or(|&ri| ri >= r) {
                wrong.push(format!("{m} imports {i}"));
            }
        }
    }
    assert!(wrong.is_empty(), "imports against the layering:\n{}", wrong.join("\n"));
}

#[test]
fn no_import_cycle_within_a_folder() {
    let modules = modules();
    // Edges between files of one folder; a file's use of its own folder's interface (`mod.rs`)
    // is the tree's shape, not a cycle.
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for m in modules.keys() {
        let deps = imports(&modules, m)
            .into_iter()
            .filter(|i| top(i) == top(m) && !m.starts_with(&format!("{i}::")))
            .collect();
        edges.insert(m.clone(), deps);
    }
    // Depth-first search for a back edge.
    fn visit(
        m: &str,
        edges: &BTreeMap<String, BTreeSet<String>>,
        state: &mut BTreeMap<String, u8>,
        path: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        match state.get(m) {
            Some(1) => {
                let from = path.iter().position(|p| p == m).unwrap_or(0);
                let mut cycle = path[from..].to_vec();
                cycle.push(m.to_string());
                return Some(cycle);
            }
            Some(_) => return None,
            None => {}
        }
        state.insert(m.to_string(), 1);
        path.push(m.to_string());
        for d in edges.get(m).into_iter().flatten() {
            if let Some(c) = visit(d, edges, state, path) {
                return Some(c);
            }
        }
        path.pop();
        state.insert(m.to_string(), 2);
        None
    }
    let mut state = BTreeMap::new();
    for m in edges.keys() {
        if let Some(cycle) = visit(m, &edges, &mut state, &mut Vec::new()) {
            panic!("import cycle: {}", cycle.join(" -> "));
        }
    }
}

#[test]
fn the_reader_sees_imports() {
    // The checks above are only as good as this reader: it must see each form the crate uses.
    let modules = modules();
    let conn = imports(&modules, "conn");
    assert!(conn.contains("route") && conn.contains("session::transaction"), "{conn:?}");
    let retry = imports(&modules, "route::retry");
    assert!(retry.contains("route::redirect") && retry.contains("backend"), "{retry:?}");
}
