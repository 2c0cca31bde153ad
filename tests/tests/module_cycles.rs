//! No two files of one crate import each other, directly or round a loop: a module that two others need
//! lives in a third. Import cycles between files hide which module owns a fact and make a crate hard to
//! read from the bottom up; `docs/architecture.md` states the rule, this test holds every crate to it.
//!
//! A file's imports are its `crate::` and `super::` paths outside comments and its unit-test module; a
//! child naming its parent module is not an edge (the parent declares the child).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

type Module = Vec<String>;

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the tests package sits inside the workspace")
        .to_path_buf()
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let entries =
        std::fs::read_dir(dir).unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()));
    for entry in entries {
        let path = entry.expect("directory entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|ext| ext == "rs") {
            out.push(path);
        }
    }
}

/// `src/a/b.rs` and `src/a/b/mod.rs` are module `a::b`; `lib.rs` and `main.rs` are the root.
fn module_of(src: &Path, file: &Path) -> Module {
    let relative = file.strip_prefix(src).expect("file under src");
    let mut parts: Module = relative
        .with_extension("")
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    if matches!(
        parts.last().map(String::as_str),
        Some("mod" | "lib" | "main")
    ) {
        parts.pop();
    }
    parts
}

/// The source without comment lines and without a trailing `#[cfg(test)] mod tests { .. }`.
fn code_of(text: &str) -> String {
    let text = match text.find("#[cfg(test)]\nmod tests") {
        Some(at) => &text[..at],
        None => text,
    };
    text.lines()
        .filter(|line| !line.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Every path that starts with `prefix` (`crate::` or `super::`), with brace groups expanded one level.
fn paths_after(code: &str, prefix: &str) -> Vec<Vec<String>> {
    let mut found = Vec::new();
    let bytes = code.as_bytes();
    let mut from = 0;
    while let Some(at) = code[from..].find(prefix) {
        let start = from + at;
        from = start + prefix.len();
        if start > 0 && (bytes[start - 1].is_ascii_alphanumeric() || bytes[start - 1] == b'_') {
            continue;
        }
        let rest = &code[from..];
        let end = rest
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':' || c == '{'))
            .unwrap_or(rest.len());
        let head = &rest[..end];
        if let Some(brace) = head.find('{') {
            let base: Vec<String> = split(&head[..brace]);
            let close = rest[brace..].find('}').map_or(rest.len(), |c| brace + c);
            for item in rest[brace + 1..close].split(',') {
                let mut path = base.clone();
                path.extend(split(item.trim()));
                found.push(path);
            }
        } else {
            found.push(split(head));
        }
    }
    found
}

fn split(path: &str) -> Vec<String> {
    path.split("::")
        .map(str::trim)
        .filter(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
        .map(str::to_owned)
        .collect()
}

fn import_graph(src: &Path) -> BTreeMap<Module, BTreeSet<Module>> {
    let mut files = Vec::new();
    rust_files(src, &mut files);
    let modules: BTreeMap<Module, PathBuf> =
        files.into_iter().map(|f| (module_of(src, &f), f)).collect();
    let mut graph: BTreeMap<Module, BTreeSet<Module>> = BTreeMap::new();
    for (module, file) in &modules {
        let text = std::fs::read_to_string(file).expect("readable source");
        let code = code_of(&text);
        let is_dir_module = file.ends_with("mod.rs");
        let parent: Module = if is_dir_module || module.is_empty() {
            module[..module.len().saturating_sub(1)].to_vec()
        } else {
            module[..module.len() - 1].to_vec()
        };
        let mut targets: Vec<Module> = paths_after(&code, "crate::");
        for path in paths_after(&code, "super::") {
            let mut absolute = parent.clone();
            absolute.extend(path);
            targets.push(absolute);
        }
        let edges = graph.entry(module.clone()).or_default();
        for target in targets {
            // The longest prefix of the path that is a file of the crate.
            let Some(file_module) = (1..=target.len())
                .rev()
                .map(|k| target[..k].to_vec())
                .find(|prefix| modules.contains_key(prefix))
            else {
                continue;
            };
            let names_an_ancestor = module.starts_with(&file_module);
            if file_module != *module && !names_an_ancestor {
                edges.insert(file_module);
            }
        }
    }
    graph
}

/// Strongly connected components with more than one module (Tarjan).
fn cycles(graph: &BTreeMap<Module, BTreeSet<Module>>) -> Vec<Vec<Module>> {
    struct Search<'g> {
        graph: &'g BTreeMap<Module, BTreeSet<Module>>,
        index: BTreeMap<&'g Module, usize>,
        low: BTreeMap<&'g Module, usize>,
        stack: Vec<&'g Module>,
        next: usize,
        found: Vec<Vec<Module>>,
    }
    impl<'g> Search<'g> {
        fn visit(&mut self, v: &'g Module) {
            self.index.insert(v, self.next);
            self.low.insert(v, self.next);
            self.next += 1;
            self.stack.push(v);
            for w in self.graph.get(v).into_iter().flatten() {
                if !self.index.contains_key(w) {
                    self.visit(w);
                    let low = self.low[v].min(self.low[w]);
                    self.low.insert(v, low);
                } else if self.stack.contains(&w) {
                    let low = self.low[v].min(self.index[w]);
                    self.low.insert(v, low);
                }
            }
            if self.low[v] == self.index[v] {
                let mut component = Vec::new();
                while let Some(w) = self.stack.pop() {
                    component.push(w.clone());
                    if w == v {
                        break;
                    }
                }
                if component.len() > 1 {
                    component.sort();
                    self.found.push(component);
                }
            }
        }
    }
    let mut search = Search {
        graph,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        next: 0,
        found: Vec::new(),
    };
    for v in graph.keys() {
        if !search.index.contains_key(v) {
            search.visit(v);
        }
    }
    search.found
}

fn crate_sources() -> Vec<PathBuf> {
    let root = workspace_root();
    let mut sources: Vec<PathBuf> = std::fs::read_dir(root.join("crates"))
        .expect("crates directory")
        .map(|e| e.expect("entry").path().join("src"))
        .filter(|p| p.is_dir())
        .collect();
    sources.push(root.join("xtask/src"));
    sources.sort();
    sources
}

#[test]
fn no_crate_has_an_import_cycle_between_its_files() {
    let mut report = Vec::new();
    for src in crate_sources() {
        for component in cycles(&import_graph(&src)) {
            let names: Vec<String> = component
                .iter()
                .map(|m| {
                    if m.is_empty() {
                        "<root>".to_owned()
                    } else {
                        m.join("::")
                    }
                })
                .collect();
            report.push(format!("{}: {}", src.display(), names.join(" <-> ")));
        }
    }
    assert!(report.is_empty(), "import cycles:\n{}", report.join("\n"));
}

#[test]
fn the_checker_sees_a_cycle_and_ignores_a_child_naming_its_parent() {
    let dir = tempfile::tempdir().expect("temp dir");
    let src = dir.path();
    std::fs::create_dir_all(src.join("server")).expect("mkdir");
    std::fs::write(src.join("lib.rs"), "mod a;\nmod b;\nmod server;\n").expect("write");
    std::fs::write(src.join("a.rs"), "use crate::b::Thing;\n").expect("write");
    std::fs::write(
        src.join("b.rs"),
        "use crate::{a::Other, server};\n// use crate::x\n",
    )
    .expect("write");
    std::fs::write(src.join("server/mod.rs"), "mod conn;\nuse conn::C;\n").expect("write");
    std::fs::write(
        src.join("server/conn.rs"),
        "use super::Shared;\nuse crate::server::X;\n",
    )
    .expect("write");
    let found = cycles(&import_graph(src));
    assert_eq!(
        found,
        vec![vec![vec!["a".to_owned()], vec!["b".to_owned()]]]
    );
}
