//! iptables-restore text: rendering a ruleset the way `kumactl --dry-run` prints it, and
//! reading `iptables-save` output back into tables, chains and rules.

use std::fmt::Write as _;

use crate::ruleset::{FamilyRules, Position, Rule, Ruleset, Table};

/// The whole ruleset as kumactl's dry run prints it: `### IPv4 ###`, a blank line, the
/// restore text of that family; families separated by a blank line.
pub fn render_dry_run(ruleset: &Ruleset, verbose: bool) -> String {
    let mut sections = Vec::new();
    for family in &ruleset.families {
        sections.push(format!("### {} ###", family.family.label()));
        sections.push(render_family(family, verbose).trim_end().to_string());
    }
    let mut out = sections.join("\n\n");
    out.push('\n');
    out
}

/// One family in restore-file form (`* nat`, `-N …`, `-A …`/`-I … n`, `COMMIT`).
pub fn render_family(family: &FamilyRules, verbose: bool) -> String {
    let separator = if verbose { "\n\n" } else { "\n" };
    let tables: Vec<String> = family
        .tables
        .iter()
        .map(|table| render_table(table, verbose))
        .collect();
    let mut out = tables.join(separator);
    out.push('\n');
    out
}

fn render_table(table: &Table, verbose: bool) -> String {
    let new_chain = if verbose { "--new-chain" } else { "-N" };
    let mut parts = vec![format!("* {}", table.name)];
    let mut chains: Vec<String> = table
        .chains
        .iter()
        .map(|c| format!("{new_chain} {c}"))
        .collect();
    let mut rules: Vec<String> = table.rules.iter().map(|r| rule_line(r, verbose)).collect();
    if verbose {
        if !chains.is_empty() {
            chains.insert(0, "# Custom Chains:".to_string());
        }
        rules.insert(0, "# Rules:".to_string());
    }
    if !chains.is_empty() {
        parts.push(chains.join("\n"));
    }
    parts.push(rules.join("\n"));
    parts.push("COMMIT".to_string());
    parts.join(if verbose { "\n\n" } else { "\n" })
}

/// `-A CHAIN spec…` or `-I CHAIN n spec…`, each argument quoted when it needs it.
pub fn rule_line(rule: &Rule, verbose: bool) -> String {
    let mut line = match rule.position {
        Position::Append => format!("{} {}", if verbose { "--append" } else { "-A" }, rule.chain),
        Position::Insert(n) => {
            format!(
                "{} {} {n}",
                if verbose { "--insert" } else { "-I" },
                rule.chain
            )
        }
    };
    for arg in rule.spec(verbose) {
        line.push(' ');
        line.push_str(&quote(&arg));
    }
    line
}

/// Quotes an argument for iptables-restore's tokenizer the way kumactl does (Go's `%q`)
/// when it holds anything but plain characters.
pub fn quote(arg: &str) -> String {
    let plain = !arg.is_empty()
        && arg
            .chars()
            .all(|c| c.is_ascii_graphic() && !matches!(c, '"' | '\'' | '\\' | '#'));
    if plain {
        return arg.to_string();
    }
    let mut out = String::with_capacity(arg.len() + 2);
    out.push('"');
    for c in arg.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{{{:04x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// One table of `iptables-save` output.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SavedTable {
    pub name: String,
    /// `:NAME POLICY [counters]` lines, in order.
    pub chains: Vec<String>,
    /// `-A CHAIN …` lines, in order; `SavedRule::line` keeps the text exactly.
    pub rules: Vec<SavedRule>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SavedRule {
    pub chain: String,
    /// The whole line, e.g. `-A OUTPUT -p tcp -j KUMA_MESH_OUTBOUND`.
    pub line: String,
}

impl SavedRule {
    /// The jump (`-j`) or goto (`-g`) target, if any.
    pub fn target(&self) -> Option<&str> {
        let mut tokens = self.line.split_ascii_whitespace();
        while let Some(token) = tokens.next() {
            if token == "-j" || token == "-g" {
                return tokens.next();
            }
        }
        None
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("cannot read iptables-save output, line {line}: {message}")]
pub struct SaveParseError {
    pub line: usize,
    pub message: String,
}

/// Parses `iptables-save` output (comments and counters allowed).
pub fn parse_save(text: &str) -> Result<Vec<SavedTable>, SaveParseError> {
    let mut tables = Vec::new();
    let mut current: Option<SavedTable> = None;
    for (index, line) in text.lines().enumerate() {
        let fail = |message: &str| SaveParseError {
            line: index + 1,
            message: message.to_string(),
        };
        let line = line.trim_end();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some(name) = line.strip_prefix('*') {
            if current.is_some() {
                return Err(fail("table started before COMMIT"));
            }
            current = Some(SavedTable {
                name: name.trim().to_string(),
                ..SavedTable::default()
            });
            continue;
        }
        let table = current
            .as_mut()
            .ok_or_else(|| fail("line outside a table"))?;
        if line == "COMMIT" {
            tables.push(current.take().expect("checked above"));
        } else if let Some(decl) = line.strip_prefix(':') {
            let name = decl
                .split_ascii_whitespace()
                .next()
                .ok_or_else(|| fail("empty chain"))?;
            table.chains.push(name.to_string());
        } else if let Some(rest) = line.strip_prefix("-A ") {
            let chain = rest
                .split_ascii_whitespace()
                .next()
                .ok_or_else(|| fail("rule without chain"))?;
            table.rules.push(SavedRule {
                chain: chain.to_string(),
                line: line.to_string(),
            });
        } else {
            return Err(fail("unexpected line"));
        }
    }
    if current.is_some() {
        return Err(SaveParseError {
            line: text.lines().count(),
            message: "missing COMMIT".to_string(),
        });
    }
    Ok(tables)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_matches_go_percent_q_for_our_comments() {
        assert_eq!(quote("RETURN"), "RETURN");
        assert_eq!(quote("a b"), "\"a b\"");
        assert_eq!(quote("envoy's port"), "\"envoy's port\"");
        assert_eq!(quote("say \"hi\""), "\"say \\\"hi\\\"\"");
        assert_eq!(quote(""), "\"\"");
    }

    #[test]
    fn save_output_parses_with_counters_and_comments() {
        let text = "# Generated\n*nat\n:PREROUTING ACCEPT [0:0]\n:KUMA_MESH_INBOUND - [0:0]\n\
                    -A PREROUTING -p tcp -m comment --comment \"x y\" -j KUMA_MESH_INBOUND\nCOMMIT\n";
        let tables = parse_save(text).unwrap();
        assert_eq!(tables[0].name, "nat");
        assert_eq!(tables[0].chains, ["PREROUTING", "KUMA_MESH_INBOUND"]);
        assert_eq!(tables[0].rules[0].chain, "PREROUTING");
        assert_eq!(tables[0].rules[0].target(), Some("KUMA_MESH_INBOUND"));
        assert!(parse_save("*nat\n-A X\n").is_err());
        assert!(parse_save("-A X\n").is_err());
    }
}
