//! The JSON documents our commands print, checked against their description in README.md
//! ("JSON output"): each subsection there names commands in its heading and lists every key
//! of their document in a table (`| `targets[].kept` | number | … |`). A document passes when
//! every value sits at a listed key with one of the listed types, and every listed key is
//! there (unless `absent` is among its types; keys inside arrays, for each element).

use std::path::Path;
use std::process::Output;

use serde_json::Value;

use super::Sandbox;

/// One documented key: its path (`backend.kind`, `targets[].added[]`) and its types.
struct Key {
    path: String,
    types: Vec<String>,
}

/// The README section that documents the JSON shapes.
const SECTION: &str = "## JSON output";

fn readme() -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md");
    std::fs::read_to_string(path).unwrap()
}

/// The lines of the README subsection whose heading names `` `command` ``.
fn subsection(command: &str) -> Vec<String> {
    let text = readme();
    let section = text
        .split_once(&format!("\n{SECTION}\n"))
        .unwrap_or_else(|| panic!("README.md has no {SECTION:?} section"))
        .1;
    let section = section.split("\n## ").next().unwrap();
    section
        .split("\n### ")
        .skip(1)
        .find(|sub| {
            sub.lines()
                .next()
                .unwrap()
                .contains(&format!("`{command}`"))
        })
        .unwrap_or_else(|| panic!("README.md's {SECTION:?} has no subsection for `{command}`"))
        .lines()
        .map(str::to_string)
        .collect()
}

/// The first column of each table row of the subsection for `command`, without backticks,
/// with the row's other columns.
fn rows(command: &str) -> Vec<(String, Vec<String>)> {
    subsection(command)
        .iter()
        .filter_map(|line| {
            let cells: Vec<&str> = line.strip_prefix('|')?.split('|').map(str::trim).collect();
            let first = cells.first()?.strip_prefix('`')?.strip_suffix('`')?;
            Some((
                first.to_string(),
                cells[1..].iter().map(|c| c.to_string()).collect(),
            ))
        })
        .collect()
}

fn keys(command: &str) -> Vec<Key> {
    let keys: Vec<Key> = rows(command)
        .into_iter()
        .map(|(path, cells)| Key {
            path,
            types: cells[0].split(" or ").map(str::to_string).collect(),
        })
        .collect();
    assert!(!keys.is_empty(), "no keys documented for `{command}`");
    keys
}

/// The codes listed in the README subsection for `notices`.
pub fn documented_codes() -> Vec<String> {
    rows("notices").into_iter().map(|(code, _)| code).collect()
}

fn type_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// Where `path`'s key sits: (its parent's path, its own name); None for array elements.
fn parent_of(path: &str) -> Option<(&str, &str)> {
    if path.ends_with("[]") {
        return None;
    }
    Some(path.rsplit_once('.').unwrap_or(("", path)))
}

fn check(value: &Value, path: &str, keys: &[Key], problems: &mut Vec<String>) {
    // An object in an array is documented by its keys (`targets[].kept`).
    let documented_by_keys = || {
        let prefix = format!("{path}.");
        value.is_object() && keys.iter().any(|k| k.path.starts_with(&prefix))
    };
    let documented_implicitly = path.is_empty() || path.ends_with("[]") && documented_by_keys();
    if !documented_implicitly {
        match keys.iter().find(|k| k.path == path) {
            None => problems.push(format!("`{path}` is not documented")),
            Some(key) if !key.types.iter().any(|t| t == type_of(value)) => problems.push(format!(
                "`{path}` is {}, documented as {}",
                type_of(value),
                key.types.join(" or ")
            )),
            Some(_) => {}
        }
    }
    match value {
        Value::Object(object) => {
            for key in keys {
                if let Some((parent, name)) = parent_of(&key.path) {
                    let absent_allowed = key.types.iter().any(|t| t == "absent");
                    if parent == path && !object.contains_key(name) && !absent_allowed {
                        problems.push(format!("`{}` is missing", key.path));
                    }
                }
            }
            for (name, inner) in object {
                let inner_path = match path {
                    "" => name.clone(),
                    _ => format!("{path}.{name}"),
                };
                check(inner, &inner_path, keys, problems);
            }
        }
        Value::Array(items) => {
            for item in items {
                check(item, &format!("{path}[]"), keys, problems);
            }
        }
        _ => {}
    }
}

/// Parses `text`, the document `command` printed, and fails unless it has the documented
/// shape; the document.
pub fn assert_documented(command: &str, text: &str) -> Value {
    let document: Value = serde_json::from_str(text)
        .unwrap_or_else(|e| panic!("`{command}` printed no JSON document ({e}):\n{text}"));
    assert!(document.is_object(), "{text}");
    let mut problems = Vec::new();
    check(&document, "", &keys(command), &mut problems);
    assert!(
        problems.is_empty(),
        "`{command}`'s document differs from README.md's {SECTION:?}:\n{}\n{text}",
        problems.join("\n")
    );
    document
}

/// Runs our binary in `sandbox` with `args` and `--output json`, and checks that it exits
/// with `status` and prints one document of the documented shape; the document.
pub fn report(sandbox: &Sandbox, args: &[&str], status: i32) -> Value {
    let output = sandbox.tproxy(&[args, &["--output", "json"]].concat());
    report_of(args[0], &output, status)
}

/// The report in `output` of `command` (`install` or `uninstall`), which must have exited
/// with `status`.
pub fn report_of(command: &str, output: &Output, status: i32) -> Value {
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(
        output.status.code(),
        Some(status),
        "{command}: stdout {stdout}\nstderr {stderr}"
    );
    let document = assert_documented(command, &stdout);
    assert_eq!(document["command"], command, "{stdout}");
    // Every notice on stderr is in the report, with the same text.
    for notice in document["notices"].as_array().unwrap() {
        let line = format!("tproxy-firewalld: {}", notice["text"].as_str().unwrap());
        assert!(stderr.contains(&line), "{line:?} not on stderr:\n{stderr}");
    }
    if let Some(summary) = document["summary"].as_str() {
        let line = format!("tproxy-firewalld: {summary}");
        assert!(stderr.contains(&line), "{line:?} not on stderr:\n{stderr}");
    }
    if let Some(message) = document["error"]["message"].as_str() {
        assert_eq!(document["error"]["exit_status"], status, "{stdout}");
        assert!(
            stderr.contains(message),
            "{message:?} not on stderr:\n{stderr}"
        );
    }
    document
}

/// The entries of `target` in `report`'s list `which` (`added` or `removed`).
pub fn entries<'a>(report: &'a Value, target: &str, which: &str) -> Vec<&'a str> {
    target_of(report, target)[which]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e.as_str().unwrap())
        .collect()
}

/// `target`'s object in `report`.
pub fn target_of<'a>(report: &'a Value, target: &str) -> &'a Value {
    report["targets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["target"] == target)
        .unwrap_or_else(|| panic!("no target {target:?} in {report:#}"))
}

/// Whether `report` lists a notice with `code`.
pub fn has_notice(report: &Value, code: &str) -> bool {
    report["notices"]
        .as_array()
        .unwrap()
        .iter()
        .any(|n| n["code"] == code)
}
