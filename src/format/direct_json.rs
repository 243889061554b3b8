//! Direct entries as JSON, one shape for every command that prints them:
//! `{"kind": "chain"|"rule"|"passthrough", "ipv", "table", "chain", "priority", "args",
//! "owned"}`, fields that do not apply being null.

use serde::Serialize;

use crate::direct::{DirectChain, DirectConfig, DirectRule, Passthrough};

#[derive(Serialize)]
pub struct JsonEntry<'a> {
    kind: &'static str,
    ipv: &'a str,
    table: Option<&'a str>,
    chain: Option<&'a str>,
    priority: Option<i32>,
    args: Option<&'a [String]>,
    owned: bool,
}

impl<'a> JsonEntry<'a> {
    pub fn chain(chain: &'a DirectChain) -> Self {
        JsonEntry {
            kind: "chain",
            ipv: &chain.ipv,
            table: Some(&chain.table),
            chain: Some(&chain.chain),
            priority: None,
            args: None,
            owned: chain.is_owned(),
        }
    }

    pub fn rule(rule: &'a DirectRule) -> Self {
        JsonEntry {
            kind: "rule",
            ipv: &rule.ipv,
            table: Some(&rule.table),
            chain: Some(&rule.chain),
            priority: Some(rule.priority),
            args: Some(&rule.args),
            owned: rule.is_owned(),
        }
    }

    pub fn passthrough(passthrough: &'a Passthrough) -> Self {
        JsonEntry {
            kind: "passthrough",
            ipv: &passthrough.ipv,
            table: None,
            chain: None,
            priority: None,
            args: Some(&passthrough.args),
            owned: passthrough.is_owned(),
        }
    }
}

/// `config` as `{"entries": [...]}`: chains, then rules grouped by chain (chains in order of
/// their first rule) in priority order, then passthroughs; ends with a newline.
pub fn document(config: &DirectConfig) -> serde_json::Result<String> {
    let mut entries: Vec<JsonEntry> = config.chains.iter().map(JsonEntry::chain).collect();
    let mut rules: Vec<(usize, &DirectRule)> = Vec::new();
    let mut chains: Vec<(&str, &str, &str)> = Vec::new();
    for rule in &config.rules {
        let key = (rule.ipv.as_str(), rule.table.as_str(), rule.chain.as_str());
        let group = chains.iter().position(|k| *k == key).unwrap_or_else(|| {
            chains.push(key);
            chains.len() - 1
        });
        rules.push((group, rule));
    }
    rules.sort_by_key(|(group, rule)| (*group, rule.priority));
    entries.extend(rules.into_iter().map(|(_, r)| JsonEntry::rule(r)));
    entries.extend(config.passthroughs.iter().map(JsonEntry::passthrough));
    #[derive(Serialize)]
    struct Output<'a> {
        entries: Vec<JsonEntry<'a>>,
    }
    let mut text = serde_json::to_string_pretty(&Output { entries })?;
    text.push('\n');
    Ok(text)
}
