//! A file as firewalld's writer (`Direct.write()`) makes it.

use std::fmt::Write as _;

use crate::direct::{DirectChain, DirectConfig, DirectRule, Passthrough};
use crate::quoting::join_args;

/// The desired entries as firewalld would write each element, in the given order.
pub(super) fn desired_elements(desired: &DirectConfig) -> Vec<String> {
    let mut elements = Vec::new();
    for chain in &desired.chains {
        elements.push(chain_element(chain));
    }
    for rule in desired.rules.iter().filter(|r| !r.args.is_empty()) {
        elements.push(rule_element(rule));
    }
    for passthrough in desired.passthroughs.iter().filter(|p| !p.args.is_empty()) {
        elements.push(passthrough_element(passthrough));
    }
    elements
}

fn chain_element(chain: &DirectChain) -> String {
    format!(
        "<chain ipv={} table={} chain={}/>",
        quote_attr(&chain.ipv),
        quote_attr(&chain.table),
        quote_attr(&chain.chain)
    )
}

fn rule_element(rule: &DirectRule) -> String {
    format!(
        "<rule ipv={} table={} chain={} priority=\"{}\">{}</rule>",
        quote_attr(&rule.ipv),
        quote_attr(&rule.table),
        quote_attr(&rule.chain),
        rule.priority,
        escape_text(&join_args(&rule.args))
    )
}

fn passthrough_element(passthrough: &Passthrough) -> String {
    format!(
        "<passthrough ipv={}>{}</passthrough>",
        quote_attr(&passthrough.ipv),
        escape_text(&join_args(&passthrough.args))
    )
}

/// A new file exactly as firewalld 1.3's `Direct.write()` writes `config`: firewalld keeps
/// chains grouped by (ipv, table), rules by (ipv, table, chain) and passthroughs by ipv, each
/// group in order of first appearance, drops repeated entries and skips rules and
/// passthroughs without arguments. An empty config gives `<direct>\n</direct>\n`.
pub fn render(config: &DirectConfig) -> String {
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<direct>\n");

    let mut chains: Groups<(&str, &str), &DirectChain> = Vec::new();
    for chain in &config.chains {
        let key = (chain.ipv.as_str(), chain.table.as_str());
        let group = group_of(&mut chains, key);
        if !group.contains(&chain) {
            group.push(chain);
        }
    }
    let mut rules: Groups<(&str, &str, &str), &DirectRule> = Vec::new();
    for rule in &config.rules {
        let key = (rule.ipv.as_str(), rule.table.as_str(), rule.chain.as_str());
        let group = group_of(&mut rules, key);
        if !group.contains(&rule) {
            group.push(rule);
        }
    }
    let mut passthroughs: Groups<&str, &Passthrough> = Vec::new();
    for passthrough in &config.passthroughs {
        let group = group_of(&mut passthroughs, passthrough.ipv.as_str());
        if !group.contains(&passthrough) {
            group.push(passthrough);
        }
    }

    for chain in chains.iter().flat_map(|(_, group)| group) {
        let _ = writeln!(out, "  {}", chain_element(chain));
    }
    for rule in rules.iter().flat_map(|(_, group)| group) {
        if !rule.args.is_empty() {
            let _ = writeln!(out, "  {}", rule_element(rule));
        }
    }
    for passthrough in passthroughs.iter().flat_map(|(_, group)| group) {
        if !passthrough.args.is_empty() {
            let _ = writeln!(out, "  {}", passthrough_element(passthrough));
        }
    }
    out.push_str("</direct>\n");
    out
}

/// Entries grouped by a key, groups in order of first appearance.
type Groups<K, V> = Vec<(K, Vec<V>)>;

fn group_of<K: PartialEq, V>(groups: &mut Groups<K, V>, key: K) -> &mut Vec<V> {
    let index = match groups.iter().position(|(k, _)| *k == key) {
        Some(index) => index,
        None => {
            groups.push((key, Vec::new()));
            groups.len() - 1
        }
    };
    &mut groups[index].1
}

/// `xml.sax.saxutils.escape`: `&`, `<` and `>`.
fn escape_text(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('>', "&gt;")
        .replace('<', "&lt;")
}

/// `xml.sax.saxutils.quoteattr`: escapes like [`escape_text`] plus newline, carriage return
/// and tab as character references, then quotes with `"` unless the value contains `"` and
/// no `'` (then `'`); with both, `"` becomes `&quot;`.
fn quote_attr(s: &str) -> String {
    let escaped = escape_text(s)
        .replace('\n', "&#10;")
        .replace('\r', "&#13;")
        .replace('\t', "&#9;");
    if escaped.contains('"') {
        if escaped.contains('\'') {
            format!("\"{}\"", escaped.replace('"', "&quot;"))
        } else {
            format!("'{escaped}'")
        }
    } else {
        format!("\"{escaped}\"")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attributes_are_quoted_like_saxutils_quoteattr() {
        // Values from Python's xml.sax.saxutils.quoteattr.
        assert_eq!(quote_attr("KUMA"), "\"KUMA\"");
        assert_eq!(quote_attr("a\"b"), "'a\"b'");
        assert_eq!(quote_attr("a\"b'c"), "\"a&quot;b'c\"");
        assert_eq!(quote_attr("it's"), "\"it's\"");
        assert_eq!(quote_attr("x&y<z>"), "\"x&amp;y&lt;z&gt;\"");
        assert_eq!(quote_attr("a\tb\nc\rd"), "\"a&#9;b&#10;c&#13;d\"");
        assert_eq!(escape_text("a&b<c>d\"e'"), "a&amp;b&lt;c&gt;d\"e'");
    }
}
