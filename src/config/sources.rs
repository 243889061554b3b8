//! Where configuration comes from: files (YAML or JSON, `-` for stdin), the
//! `KUMA_TRANSPARENT_PROXY_*` environment and flags. Each becomes a partial JSON tree;
//! trees are merged in precedence order (a later object overrides field by field, any
//! other value — lists included — replaces the earlier one).

use std::io::Read;
use std::path::Path;

use serde_json::{Map, Value};
use serde_norway::Value as Yaml;

use super::definitions::{self, Kind};
use super::settings::Settings;
use super::{trusted_file, ConfigError};
use crate::system::fs;

pub use super::definitions::ENV_PREFIX;

/// Refuse absurd inputs early: a real config is a few hundred bytes.
const MAX_CONFIG_BYTES: u64 = 1 << 20;

/// Reads one `--config` source (a path or `-` for stdin) into a checked partial tree. With
/// `only_root_writable`, a file another user could write or replace is refused
/// (`trusted_file`).
pub fn read_config_file(
    source: &str,
    stdin: &mut dyn Read,
    only_root_writable: bool,
) -> Result<Value, ConfigError> {
    let fail = |message: String| ConfigError::File {
        path: source.to_string(),
        message,
    };
    let read = if source == "-" {
        fs::read_at_most(stdin, MAX_CONFIG_BYTES)
    } else {
        let file = if only_root_writable {
            trusted_file::open(Path::new(source)).map_err(fail)?
        } else {
            std::fs::File::open(Path::new(source)).map_err(|e| fail(format!("cannot read: {e}")))?
        };
        fs::read_at_most(file, MAX_CONFIG_BYTES)
    };
    let bytes = read.map_err(|e| match e.kind() {
        std::io::ErrorKind::FileTooLarge => fail(e.to_string()),
        _ => fail(format!("cannot read: {e}")),
    })?;
    let text = String::from_utf8(bytes).map_err(|_| fail("not valid UTF-8".to_string()))?;
    let document: Yaml = if text.trim().is_empty() {
        Yaml::Null
    } else {
        serde_norway::from_str(&text).map_err(|e| fail(e.to_string()))?
    };
    let value = match to_json(document, "").map_err(fail)? {
        Value::Null => Value::Object(Map::new()),
        value @ Value::Object(_) => value,
        _ => return Err(fail("the document must be a mapping of keys".to_string())),
    };
    check(&value).map_err(fail)?;
    Ok(value)
}

/// The document at `key` as a JSON tree, without the keys whose value is null: as in
/// kumactl, a key given no value keeps the value of the layers below it. A number JSON
/// cannot hold (`.inf`, `.nan`) is refused by its key rather than read as null.
fn to_json(value: Yaml, key: &str) -> Result<Value, String> {
    let inner = |name: &str| match key {
        "" => name.to_string(),
        _ => format!("{key}.{name}"),
    };
    match value {
        Yaml::Mapping(map) => {
            let mut object = Map::new();
            for (name, value) in map {
                if value.is_null() {
                    continue;
                }
                let name = match name {
                    Yaml::String(name) => name,
                    other => serde_json::to_value(&other)
                        .map_err(|e| format!("{}: {e}", inner("?")))?
                        .to_string(),
                };
                let value = to_json(value, &inner(&name))?;
                object.insert(name, value);
            }
            Ok(Value::Object(object))
        }
        Yaml::Sequence(items) => items
            .into_iter()
            .enumerate()
            .map(|(i, item)| to_json(item, &format!("{key}[{i}]")))
            .collect(),
        Yaml::Number(number) if number.as_f64().is_some_and(|n| !n.is_finite()) => {
            Err(format!("{key}: {number} is not a finite number"))
        }
        other => serde_json::to_value(&other).map_err(|e| format!("{key}: {e}")),
    }
}

/// Builds the partial tree from `KUMA_TRANSPARENT_PROXY_*` variables; unknown names are
/// returned so the caller can warn about them.
pub fn environment_layer(
    vars: impl IntoIterator<Item = (String, String)>,
) -> Result<(Value, Vec<String>), ConfigError> {
    let mut tree = Value::Object(Map::new());
    let mut unknown = Vec::new();
    for (name, raw) in vars {
        let Some(suffix) = name.strip_prefix(ENV_PREFIX) else {
            continue;
        };
        let Some(setting) = definitions::by_env(suffix) else {
            unknown.push(name);
            continue;
        };
        let bad = |what: &str| ConfigError::Environment {
            name: name.clone(),
            message: format!("'{raw}' is not {what}"),
        };
        // Anything else goes in as text, for the document's own parsers to check.
        let value = match setting.kind {
            Kind::Switch => Value::Bool(parse_bool(&raw).ok_or_else(|| bad("a boolean"))?),
            Kind::Number => Value::Number(
                raw.trim()
                    .parse::<u64>()
                    .map_err(|_| bad("a number"))?
                    .into(),
            ),
            Kind::List(_) => Value::Array(
                raw.split(',')
                    .filter(|s| !s.trim().is_empty())
                    .map(|s| Value::String(s.to_string()))
                    .collect(),
            ),
            Kind::Port | Kind::Ports | Kind::Text | Kind::Checked(_) | Kind::Executables => {
                Value::String(raw.clone())
            }
        };
        set_path(&mut tree, setting.key, value);
        check(&tree).map_err(|message| ConfigError::Environment {
            name: name.clone(),
            message,
        })?;
    }
    Ok((tree, unknown))
}

fn parse_bool(text: &str) -> Option<bool> {
    match text.trim().to_ascii_lowercase().as_str() {
        "1" | "t" | "true" => Some(true),
        "0" | "f" | "false" => Some(false),
        _ => None,
    }
}

/// Sets `a.b.c` in a JSON tree, creating objects on the way.
pub fn set_path(tree: &mut Value, dotted: &str, value: Value) {
    let mut node = tree;
    let mut keys = dotted.split('.').peekable();
    while let Some(key) = keys.next() {
        if !node.is_object() {
            *node = Value::Object(Map::new());
        }
        let map = node.as_object_mut().expect("made an object above");
        if keys.peek().is_none() {
            map.insert(key.to_string(), value);
            return;
        }
        node = map
            .entry(key.to_string())
            .or_insert_with(|| Value::Object(Map::new()));
    }
}

/// Overlays `top` on `base`: objects merge key by key, anything else replaces.
pub fn merge(base: &mut Value, top: Value) {
    match (base, top) {
        (Value::Object(base), Value::Object(top)) => {
            for (key, value) in top {
                match base.get_mut(&key) {
                    Some(existing) => merge(existing, value),
                    None => {
                        base.insert(key, value);
                    }
                }
            }
        }
        (base, top) => *base = top,
    }
}

/// Deserialises a tree laid over the defaults, naming the path of the first problem
/// (`redirect.inbound.port: …`).
pub fn deserialize(value: &Value) -> Result<Settings, String> {
    let mut tree = definitions::defaults();
    merge(&mut tree, value.clone());
    serde_path_to_error::deserialize(&tree).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner().to_string();
        if path == "." {
            inner
        } else {
            format!("{path}: {inner}")
        }
    })
}

fn check(value: &Value) -> Result<(), String> {
    deserialize(value).map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_key_given_no_value_keeps_the_value_below() {
        let text = "wait: null\nredirect:\n  inbound:\n    port: ~\n  dns: {enabled: true}\n";
        let value = read_config_file("-", &mut text.as_bytes(), false).unwrap();
        assert_eq!(
            value,
            json!({"redirect": {"inbound": {}, "dns": {"enabled": true}}})
        );
    }

    #[test]
    fn numbers_json_cannot_hold_are_refused_by_key() {
        for (text, key) in [
            ("redirect: {dns: {port: .inf}}", "redirect.dns.port"),
            (
                "redirect: {inbound: {excludePorts: [80, .nan]}}",
                "redirect.inbound.excludePorts[1]",
            ),
        ] {
            let err = read_config_file("-", &mut text.as_bytes(), false)
                .unwrap_err()
                .to_string();
            assert!(err.contains(&format!("{key}: ")), "{text}: {err}");
        }
    }

    #[test]
    fn later_objects_override_field_by_field_and_lists_replace() {
        let mut base = json!({"redirect": {"dns": {"enabled": false, "port": 7777},
                                           "inbound": {"excludePorts": [1, 2]}}});
        merge(
            &mut base,
            json!({"redirect": {"dns": {"enabled": true}, "inbound": {"excludePorts": [3]}}}),
        );
        assert_eq!(
            base,
            json!({"redirect": {"dns": {"enabled": true, "port": 7777},
                                "inbound": {"excludePorts": [3]}}})
        );
    }

    #[test]
    fn unknown_keys_are_named() {
        let err = read_config_file(
            "-",
            &mut "redirect:\n  inbound:\n    bogus: 1\n".as_bytes(),
            false,
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("redirect.inbound"), "{err}");
        assert!(err.contains("bogus"), "{err}");
    }

    #[test]
    fn wrong_types_are_named() {
        let err = read_config_file("-", &mut "redirect: {dns: {port: 70000}}".as_bytes(), false)
            .unwrap_err()
            .to_string();
        assert!(err.contains("redirect.dns.port"), "{err}");
        assert!(err.contains("70000"), "{err}");
        assert!(read_config_file("-", &mut "[1, 2]".as_bytes(), false).is_err());
        assert!(read_config_file("-", &mut "{\"wait\": \"x\"}".as_bytes(), false).is_err());
    }

    #[test]
    fn json_and_yaml_both_load() {
        let json = read_config_file(
            "-",
            &mut r#"{"redirect":{"inbound":{"port":"1234"}}}"#.as_bytes(),
            false,
        )
        .unwrap();
        assert_eq!(deserialize(&json).unwrap().redirect.inbound.port, 1234);
        let yaml = read_config_file("-", &mut "kumaDPUser: 5678\n".as_bytes(), false).unwrap();
        assert_eq!(deserialize(&yaml).unwrap().kuma_dp_user, "5678");
    }

    #[test]
    fn environment_maps_to_keys() {
        let (tree, unknown) = environment_layer([
            (
                "KUMA_TRANSPARENT_PROXY_REDIRECT_INBOUND_PORT".to_string(),
                "1234".to_string(),
            ),
            (
                "KUMA_TRANSPARENT_PROXY_STORE_FIREWALLD".to_string(),
                "true".to_string(),
            ),
            (
                "KUMA_TRANSPARENT_PROXY_REDIRECT_VNET_NETWORKS".to_string(),
                "a:10.0.0.0/8,b:10.1.0.0/16".to_string(),
            ),
            ("KUMA_TRANSPARENT_PROXY_NOPE".to_string(), "1".to_string()),
            ("PATH".to_string(), "/bin".to_string()),
        ])
        .unwrap();
        let settings = deserialize(&tree).unwrap();
        assert_eq!(settings.redirect.inbound.port, 1234);
        assert!(settings.store_firewalld);
        assert_eq!(settings.redirect.vnet.networks.len(), 2);
        assert_eq!(unknown, vec!["KUMA_TRANSPARENT_PROXY_NOPE".to_string()]);
        let err = environment_layer([(
            "KUMA_TRANSPARENT_PROXY_REDIRECT_DNS_ENABLED".to_string(),
            "maybe".to_string(),
        )])
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("KUMA_TRANSPARENT_PROXY_REDIRECT_DNS_ENABLED"),
            "{err}"
        );
    }
}
