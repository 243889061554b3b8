//! `translate`: iptables-restore text (kumactl's `--dry-run` output, plain or `--verbose`,
//! or `iptables-save` output) → firewalld direct entries, printed as the `direct.xml`
//! firewalld would write, as JSON, or merged into an existing `direct.xml`.
//!
//! The text is read the way kumactl feeds it to `iptables-restore --noflush`: operations
//! run in the order written, and two blocks of the same family and table continue each
//! other. Each chain's final order (every `-A` and `-I n` replayed) becomes the priorities
//! 0, 10, 20, … of that (ipv, table, chain); chains declared with `-N` or `:NAME -` become
//! `<chain>` entries; built-in chains keep their names (firewalld maps them to `X_direct`
//! on its iptables backend).

use std::io;
use std::path::Path;

use anyhow::Result;

use crate::backend::direct_file::{DirectFile, MAX_SIZE};
use crate::direct::{self, DirectChain, DirectConfig, DirectRule};
use crate::error::BadInput;
use crate::family::Family;
use crate::format::direct_xml::{self, Document};
use crate::format::restore::{self, RestoreParseError, RestoreRule, RestoreTable};
use crate::system::{fs, notice, Code};

/// The direct entries `text` (named `name` in messages) describes; text without section
/// headers is `family`'s.
pub fn translate(name: &str, text: &str, family: Family) -> Result<DirectConfig> {
    if let Some((line, c)) = first_non_xml_char(text) {
        return Err(BadInput(format!(
            "{name}:{line}: character U+{:04X} cannot be written to direct.xml",
            c as u32
        ))
        .into());
    }
    let at_line = |e: RestoreParseError| BadInput(format!("{name}:{}: {}", e.line, e.message));
    let tables = restore::parse_restore(text, family).map_err(at_line)?;
    if tables.is_empty() {
        return Err(BadInput(format!(
            "{name}: no table found (expected iptables-restore text: `*nat` … COMMIT)"
        ))
        .into());
    }
    Ok(entries(&tables).map_err(at_line)?)
}

/// The direct.xml at `path` with `entries` merged in (`merge`); a new file when there is
/// none (said on stderr).
pub fn merged_into(path: &Path, entries: &DirectConfig) -> Result<String> {
    Ok(match load_direct_xml(path)? {
        Some(document) => merge(&document, entries),
        None => {
            notice(
                Code::DirectXmlMissing,
                format!("{} does not exist; showing a new file", path.display()),
            );
            direct_xml::render(entries)
        }
    })
}

/// The input's name for messages (`stdin` or the path) and its text, at most [`MAX_SIZE`]
/// bytes (no direct.xml is larger; an endless input such as `/dev/zero` is refused instead
/// of filling the memory).
pub fn read_input(input: Option<&Path>) -> Result<(String, String)> {
    let (name, bytes) = match input.filter(|p| p.as_os_str() != "-") {
        None => (
            "stdin".to_string(),
            fs::read_at_most(io::stdin().lock(), MAX_SIZE),
        ),
        Some(path) => {
            let name = path.display().to_string();
            let bytes = match std::fs::File::open(path) {
                Ok(file) => fs::read_at_most(file, MAX_SIZE),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    return Err(BadInput(format!("{name}: no such file")).into())
                }
                Err(e) => Err(e),
            };
            (name, bytes)
        }
    };
    let bytes = bytes.map_err(|e| -> anyhow::Error {
        match e.kind() {
            io::ErrorKind::FileTooLarge => BadInput(format!(
                "{name} is larger than {}; refusing to read it",
                fs::size(MAX_SIZE)
            ))
            .into(),
            _ => anyhow::Error::new(e).context(format!("reading {name}")),
        }
    })?;
    let text =
        String::from_utf8(bytes).map_err(|e| not_utf8(&name, e.utf8_error().valid_up_to()))?;
    Ok((name, text))
}

fn not_utf8(name: &str, at: usize) -> anyhow::Error {
    BadInput(format!("{name} is not UTF-8 text (at byte {at})")).into()
}

/// The direct entries for the parsed tables: chains per family and table in order of
/// declaration, then each chain's rules in final order with priorities 0, 10, 20, …
/// (chains in order of their first rule). An `-I CHAIN n` beyond the end of the chain is an
/// error on its line, as iptables-restore reports it ("index of insertion too big").
pub fn entries(tables: &[RestoreTable]) -> Result<DirectConfig, RestoreParseError> {
    /// (ipv, table) → the chains declared, and the rules in the order written.
    type Group<'t> = (&'static str, &'t str, Vec<&'t str>, Vec<&'t RestoreRule>);
    let mut groups: Vec<Group> = Vec::new();
    for table in tables {
        let ipv = table.family.ipv();
        let index = match groups
            .iter()
            .position(|(i, t, _, _)| *i == ipv && *t == table.name)
        {
            Some(index) => index,
            None => {
                groups.push((ipv, &table.name, Vec::new(), Vec::new()));
                groups.len() - 1
            }
        };
        let (_, _, chains, rules) = &mut groups[index];
        for chain in &table.chains {
            if !chains.contains(&chain.as_str()) {
                chains.push(chain);
            }
        }
        rules.extend(&table.rules);
    }

    let mut config = DirectConfig::default();
    for (ipv, table, chains, _) in &groups {
        config.chains.extend(chains.iter().map(|chain| DirectChain {
            ipv: ipv.to_string(),
            table: table.to_string(),
            chain: chain.to_string(),
        }));
    }
    for (ipv, table, _, rules) in &groups {
        let (order, too_far) = direct::replay(
            rules
                .iter()
                .map(|rule| (rule.chain.as_str(), rule.position, *rule)),
        );
        if let Some((rule, n, length)) = too_far {
            return Err(RestoreParseError {
                line: rule.line,
                message: format!(
                    "-I {} {n}: index of insertion too big ({} holds {} at this point)",
                    rule.chain,
                    rule.chain,
                    match length {
                        1 => "1 rule".to_string(),
                        count => format!("{count} rules"),
                    }
                ),
            });
        }
        for (chain, rules) in order {
            let priorities =
                direct::fresh_priorities(rules.len()).ok_or_else(|| RestoreParseError {
                    line: rules.last().map_or(0, |r| r.line),
                    message: format!("chain {chain} has too many rules"),
                })?;
            for (rule, priority) in rules.into_iter().zip(priorities) {
                config.rules.push(DirectRule {
                    ipv: ipv.to_string(),
                    table: table.to_string(),
                    chain: chain.to_string(),
                    priority,
                    args: rule.args.clone(),
                });
            }
        }
    }
    Ok(config)
}

/// The line and character of the first character XML 1.0 cannot hold (a control
/// character): a direct.xml with it could be read back neither by firewalld nor by us.
fn first_non_xml_char(text: &str) -> Option<(usize, char)> {
    text.lines().enumerate().find_map(|(i, line)| {
        line.chars()
            .find(|&c| !direct_xml::is_xml_char(c))
            .map(|c| (i + 1, c))
    })
}

/// `document` with the translated entries merged in, as the offline writer merges
/// ([`Document::with_owned`]): every entry we own in the file (a `KUMA_MESH_*` chain, a
/// rule in one, with our comment or jumping into our chain) is replaced by the translated
/// entries we own; every other byte of the file stays as it is.
///
/// Translated entries that are not ours (other tools' chains and rules, as in
/// `iptables-save` output of a whole host) are added after the file's content, unless the
/// file already holds the same entry: a chain with the same ipv, table and name, or a rule
/// with the same ipv, table, chain and arguments **at any priority** (our priorities are
/// fresh numbers, and the same rule twice in a chain would be applied twice). Such foreign
/// entries, once merged, are foreign content of the file: a later merge or uninstall keeps
/// them.
fn merge(document: &Document, translated: &DirectConfig) -> String {
    // Only translated foreign entries are looked up in the file; kumactl's output has none,
    // and the file's entries (thousands, maybe) are then not copied.
    let lookups = translated.chains.iter().any(|c| !c.is_owned())
        || translated.rules.iter().any(|r| !r.is_owned());
    let existing = if lookups {
        document.config()
    } else {
        DirectConfig::default()
    };
    let chains = translated
        .chains
        .iter()
        .filter(|c| c.is_owned() || !existing.chains.contains(c))
        .cloned()
        .collect();
    let rules = translated
        .rules
        .iter()
        .filter(|r| {
            r.is_owned()
                || !existing.rules.iter().any(|e| {
                    e.ipv == r.ipv && e.table == r.table && e.chain == r.chain && e.args == r.args
                })
        })
        .cloned()
        .collect();
    document.with_owned(&DirectConfig {
        chains,
        rules,
        passthroughs: Vec::new(),
    })
}

/// The file to merge into, refused as the offline writer refuses it (a symbolic link, not
/// a regular file, too large, not UTF-8, malformed with line and column): bad input.
fn load_direct_xml(path: &Path) -> Result<Option<Document>> {
    match DirectFile::at(path).load() {
        Ok(loaded) => Ok(loaded.map(|l| l.document)),
        Err(error) => Err(BadInput(format!("{error:#}")).into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn translate(text: &str) -> Result<DirectConfig, RestoreParseError> {
        entries(&restore::parse_restore(text, Family::V4)?)
    }

    fn order(config: &DirectConfig, chain: &str) -> Vec<(i32, String)> {
        config
            .rules
            .iter()
            .filter(|r| r.chain == chain)
            .map(|r| (r.priority, r.args.join(" ")))
            .collect()
    }

    #[test]
    fn inserts_are_replayed_and_numbered_in_steps() {
        let config = translate(
            "* nat\n-A OUTPUT -j A\n-I OUTPUT 1 -j B\n-A OUTPUT -j C\n-I OUTPUT 3 -j D\n\
             -I OUTPUT -j E\nCOMMIT\n",
        )
        .unwrap();
        assert_eq!(
            order(&config, "OUTPUT"),
            [
                (0, "-j E".to_string()),
                (10, "-j B".to_string()),
                (20, "-j A".to_string()),
                (30, "-j D".to_string()),
                (40, "-j C".to_string()),
            ]
        );
    }

    #[test]
    fn blocks_of_one_table_continue_each_other_and_families_stay_apart() {
        let config = translate(
            "*nat\n-N KUMA_MESH_X\n-A OUTPUT -j KUMA_MESH_X\nCOMMIT\n*nat\n-I OUTPUT 1 -j RETURN\n\
             COMMIT\n### IPv6 ###\n*nat\n-N KUMA_MESH_X\n-A OUTPUT -j KUMA_MESH_X\nCOMMIT\n",
        )
        .unwrap();
        let chains: Vec<(&str, &str)> = config
            .chains
            .iter()
            .map(|c| (c.ipv.as_str(), c.chain.as_str()))
            .collect();
        assert_eq!(chains, [("ipv4", "KUMA_MESH_X"), ("ipv6", "KUMA_MESH_X")]);
        let rules: Vec<(&str, i32, &str)> = config
            .rules
            .iter()
            .map(|r| (r.ipv.as_str(), r.priority, r.args[1].as_str()))
            .collect();
        assert_eq!(
            rules,
            [
                ("ipv4", 0, "RETURN"),
                ("ipv4", 10, "KUMA_MESH_X"),
                ("ipv6", 0, "KUMA_MESH_X")
            ]
        );
    }

    #[test]
    fn an_insert_beyond_the_end_names_its_line() {
        let error = translate("*nat\n-A OUTPUT -j A\n-I OUTPUT 3 -j B\nCOMMIT\n").unwrap_err();
        assert_eq!(error.line, 3);
        assert!(
            error.message.contains("index of insertion too big"),
            "{error}"
        );
        assert!(translate("*nat\n-A OUTPUT -j A\n-I OUTPUT 2 -j B\nCOMMIT\n").is_ok());
    }

    #[test]
    fn merge_replaces_ours_and_adds_only_missing_foreign_entries() {
        let file = "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<direct>\n  \
                    <chain ipv=\"ipv4\" table=\"filter\" chain=\"LOGDROP\"/>\n  \
                    <rule ipv=\"ipv4\" table=\"filter\" chain=\"LOGDROP\" priority=\"7\">-j LOG</rule>\n  \
                    <chain ipv=\"ipv4\" table=\"nat\" chain=\"KUMA_MESH_OLD\"/>\n</direct>\n";
        let document = direct_xml::parse(file).unwrap();
        let translated = translate(
            "*filter\n:INPUT ACCEPT [0:0]\n:LOGDROP - [0:0]\n-A LOGDROP -j LOG\n-A LOGDROP -j DROP\n\
             COMMIT\n*nat\n-N KUMA_MESH_NEW\nCOMMIT\n",
        )
        .unwrap();
        let merged = merge(&document, &translated);
        assert_eq!(
            merged,
            "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<direct>\n  \
             <chain ipv=\"ipv4\" table=\"filter\" chain=\"LOGDROP\"/>\n  \
             <rule ipv=\"ipv4\" table=\"filter\" chain=\"LOGDROP\" priority=\"7\">-j LOG</rule>\n  \
             <chain ipv=\"ipv4\" table=\"nat\" chain=\"KUMA_MESH_NEW\"/>\n  \
             <rule ipv=\"ipv4\" table=\"filter\" chain=\"LOGDROP\" priority=\"10\">-j DROP</rule>\n\
             </direct>\n"
        );
    }

    #[test]
    fn json_has_the_stable_shape() {
        let config = translate("*nat\n-N KUMA_MESH_X\n-A KUMA_MESH_X -j RETURN\nCOMMIT\n").unwrap();
        let value: serde_json::Value =
            serde_json::from_str(&crate::format::direct_json::document(&config).unwrap()).unwrap();
        assert_eq!(
            value,
            serde_json::json!({"entries": [
                {"kind": "chain", "ipv": "ipv4", "table": "nat", "chain": "KUMA_MESH_X",
                 "priority": null, "args": null, "owned": true},
                {"kind": "rule", "ipv": "ipv4", "table": "nat", "chain": "KUMA_MESH_X",
                 "priority": 0, "args": ["-j", "RETURN"], "owned": true},
            ]})
        );
    }
}
