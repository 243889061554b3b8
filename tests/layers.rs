//! The shape of the code: every module of `src/` belongs to a layer, and no code uses a
//! module of a layer above its own (unit tests, which may check one layer through another,
//! excepted). Data flows one way — flags, config files and the
//! environment become a `Config`, the `Config` a ruleset (a pure value), the ruleset a
//! backend's plan — and formats stay pure text and bytes, all I/O below them in the system
//! layer.

use std::path::{Path, PathBuf};

/// Lowest first. A module is `src/<name>.rs` or `src/<name>/`.
const LAYERS: &[(&str, &[&str])] = &[
    (
        "vocabulary: errors, families, tables, ownership, quoting",
        &["error", "family", "tables", "ownership", "quoting"],
    ),
    (
        "system: bus, netlink, processes, files, the lock, host facts",
        &["system"],
    ),
    ("configuration", &["config"]),
    ("rule models", &["ruleset", "direct"]),
    ("formats", &["format"]),
    ("backends", &["backend"]),
    ("engine", &["engine"]),
    ("command line", &["cli"]),
    ("commands", &["commands"]),
];

fn layer_of(module: &str) -> Option<usize> {
    LAYERS
        .iter()
        .position(|(_, modules)| modules.contains(&module))
}

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The top-level modules `text` names as `crate::<module>`.
fn crate_paths(text: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find("crate::") {
        let after = &rest[at + "crate::".len()..];
        let name: String = after
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        found.push(name);
        rest = after;
    }
    found
}

#[test]
fn no_module_uses_a_layer_above_its_own() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&src, &mut files);
    files.sort();
    let mut violations = Vec::new();
    let mut placed = 0;
    for file in &files {
        let relative = file.strip_prefix(&src).unwrap();
        let top = relative
            .components()
            .next()
            .unwrap()
            .as_os_str()
            .to_string_lossy()
            .trim_end_matches(".rs")
            .to_string();
        if top == "lib" || top == "main" {
            continue;
        }
        let own = layer_of(&top).unwrap_or_else(|| {
            panic!(
                "{}: module `{top}` is in no layer of LAYERS",
                relative.display()
            )
        });
        placed += 1;
        let text = std::fs::read_to_string(file).unwrap();
        let code = text.split("#[cfg(test)]").next().unwrap_or_default();
        for used in crate_paths(code) {
            let Some(layer) = layer_of(&used) else {
                violations.push(format!(
                    "{}: uses unknown crate::{used}",
                    relative.display()
                ));
                continue;
            };
            if layer > own {
                violations.push(format!(
                    "{} ({}) uses crate::{used} ({})",
                    relative.display(),
                    LAYERS[own].0,
                    LAYERS[layer].0
                ));
            }
        }
    }
    assert!(placed > 20, "only {placed} source files found under src/");
    violations.sort();
    violations.dedup();
    assert!(
        violations.is_empty(),
        "imports against the layering:\n{}",
        violations.join("\n")
    );
}

/// The check itself finds an upward use.
#[test]
fn an_upward_use_is_found() {
    assert_eq!(
        crate_paths("use crate::engine::prepare;\nlet x = crate::family::Family::V4;"),
        ["engine", "family"]
    );
    assert!(layer_of("engine") > layer_of("system"));
}
