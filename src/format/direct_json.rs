//! Direct entries as JSON, one shape for every command that prints them:
//! `{"kind": "chain"|"rule"|"passthrough", "ipv", "table", "chain", "priority", "args",
//! "owned"}`, fields that do not apply being null.

use serde::Serialize;

use crate::direct::{DirectChain, DirectRule, Passthrough};

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
