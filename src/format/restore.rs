//! iptables-restore text: rendering a ruleset the way `kumactl --dry-run` prints it,
//! reading `iptables-save` output back into tables, chains and rules, and reading any
//! restore text (kumactl's dry run, plain or `--verbose`, or `iptables-save` output) into
//! per-family tables of chain declarations and ordered rule operations ([`parse_restore`]).

use crate::family::Family;
use crate::ownership::is_jump_option;
use crate::quoting::restore_quote;
use crate::ruleset::{FamilyRules, Position, Rule, Ruleset, Table};
use crate::tables::builtin_chains;

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
        line.push_str(&restore_quote(&arg));
    }
    line
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
            if is_jump_option(token) {
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

/// Where a rule goes in its chain, and where it was written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RestoreRule {
    /// 1-based line of the `-A`/`-I` line in the text.
    pub line: usize,
    pub chain: String,
    /// `Append`, or `Insert(n)`: before the rule now at position n (1-based), as
    /// iptables-restore executes `-I CHAIN n` (`-I CHAIN` alone is `Insert(1)`).
    pub position: Position,
    /// The rule specification: everything after the chain (and the rule number), unquoted.
    pub args: Vec<String>,
}

/// One `*table` … `COMMIT` block of restore text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RestoreTable {
    /// The `### IPv4 ###` / `### IPv6 ###` section it is in, else the caller's default.
    pub family: Family,
    /// `nat`, `raw`, `mangle`, `filter` or `security`.
    pub name: String,
    /// 1-based line of its `*table` line.
    pub line: usize,
    /// User-defined chains it declares (`-N`, `--new-chain`, `:NAME - […]`), in order of
    /// first declaration; built-in chains are never listed.
    pub chains: Vec<String>,
    /// `-A`/`-I` operations in the order they are written (the order iptables-restore runs
    /// them).
    pub rules: Vec<RestoreRule>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("line {line}: {message}")]
pub struct RestoreParseError {
    pub line: usize,
    pub message: String,
}

/// Reads restore text: kumactl's dry run (`### IPv4 ###` / `### IPv6 ###` sections,
/// `* nat`, `-N`, `-A`, `-I CHAIN n`, plain or `--verbose` with `--new-chain`, `--append`,
/// `--insert`, long option names and `# …` comment lines) or `iptables-save` output
/// (`*nat`, `:CHAIN POLICY [p:b]`, `-A`, optional `[p:b]` counters before a rule). Text
/// before any section header belongs to `default_family`.
///
/// Only what becomes a direct entry is accepted: anything else — `-D`, `-F`, `-P`, `-X`,
/// `-R`, `-E`, `-Z`, a table firewalld does not know, a rule outside a table, in an
/// undeclared chain or without arguments, a missing `COMMIT`, an unterminated quote —
/// is an error naming its line. Blocks for the same family and table are not merged here.
pub fn parse_restore(
    text: &str,
    default_family: Family,
) -> Result<Vec<RestoreTable>, RestoreParseError> {
    let mut family = default_family;
    let mut tables: Vec<RestoreTable> = Vec::new();
    let mut current: Option<RestoreTable> = None;
    for (index, raw) in text.lines().enumerate() {
        let number = index + 1;
        let fail = |message: String| RestoreParseError {
            line: number,
            message,
        };
        let line = raw.trim();
        if line.is_empty() {
            continue;
        }
        if let Some(section) = section_header(line) {
            if let Some(open) = &current {
                return Err(fail(format!(
                    "`{line}` inside table {} (line {}): COMMIT is missing",
                    open.name, open.line
                )));
            }
            family = section;
            continue;
        }
        if line.starts_with('#') {
            continue;
        }
        if let Some(name) = line.strip_prefix('*') {
            if let Some(open) = &current {
                return Err(fail(format!(
                    "table {} (line {}) has no COMMIT before the next table",
                    open.name, open.line
                )));
            }
            let name = name.trim();
            if builtin_chains("ipv4", name).is_empty() {
                return Err(fail(format!(
                    "unknown table `{name}` (firewalld takes raw, mangle, nat, filter, security)"
                )));
            }
            current = Some(RestoreTable {
                family,
                name: name.to_string(),
                line: number,
                chains: Vec::new(),
                rules: Vec::new(),
            });
            continue;
        }
        let Some(table) = current.as_mut() else {
            return Err(fail(format!(
                "`{}` outside a table (no `*table` line before it)",
                shorten(line)
            )));
        };
        if line == "COMMIT" {
            tables.extend(current.take());
            continue;
        }
        if let Some(declaration) = line.strip_prefix(':') {
            declare_saved_chain(table, declaration).map_err(fail)?;
            continue;
        }
        let args = split_restore_args(strip_counters(line)).map_err(fail)?;
        command(table, &tables, args, number).map_err(fail)?;
    }
    if let Some(open) = current {
        return Err(RestoreParseError {
            line: open.line,
            message: format!("table {} has no COMMIT", open.name),
        });
    }
    Ok(tables)
}

/// `### IPv4 ###` or `### IPv6 ###` (any spacing, any case of the label).
fn section_header(line: &str) -> Option<Family> {
    let label = line.strip_prefix("###")?.strip_suffix("###")?.trim();
    if label.eq_ignore_ascii_case("IPv4") {
        Some(Family::V4)
    } else if label.eq_ignore_ascii_case("IPv6") {
        Some(Family::V6)
    } else {
        None
    }
}

/// A line cut to a readable length for an error message.
fn shorten(line: &str) -> String {
    const MAX: usize = 60;
    match line.char_indices().nth(MAX) {
        Some((cut, _)) => format!("{}…", &line[..cut]),
        None => line.to_string(),
    }
}

/// `iptables-save -c` puts `[packets:bytes]` before a rule.
fn strip_counters(line: &str) -> &str {
    if let Some(rest) = line.strip_prefix('[') {
        if let Some((counters, rule)) = rest.split_once(']') {
            let numeric = counters
                .split_once(':')
                .is_some_and(|(p, b)| is_number(p) && is_number(b));
            if numeric {
                return rule.trim_start();
            }
        }
    }
    line
}

fn is_number(text: &str) -> bool {
    !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit())
}

/// `:NAME POLICY [packets:bytes]`: built-in chains (any policy) are skipped, user-defined
/// ones (policy `-`) declared.
fn declare_saved_chain(table: &mut RestoreTable, declaration: &str) -> Result<(), String> {
    let mut words = declaration.split_ascii_whitespace();
    let Some(name) = words.next() else {
        return Err("`:` without a chain name".to_string());
    };
    let Some(policy) = words.next() else {
        return Err(format!("chain {name} has no policy (`:{name} - [0:0]`)"));
    };
    if is_builtin(&table.name, name) {
        return Ok(());
    }
    if policy != "-" {
        return Err(format!(
            "policy {policy} for user-defined chain {name} (only built-in chains have one)"
        ));
    }
    declare(table, name);
    Ok(())
}

fn is_builtin(table: &str, chain: &str) -> bool {
    builtin_chains("ipv4", table).contains(&chain)
}

fn declare(table: &mut RestoreTable, chain: &str) {
    if !table.chains.iter().any(|c| c == chain) {
        table.chains.push(chain.to_string());
    }
}

/// One command line (`-N`, `-A`, `-I`) of `table`; `earlier` holds the blocks already
/// closed, whose chains stay declared for a later block of the same family and table.
fn command(
    table: &mut RestoreTable,
    earlier: &[RestoreTable],
    args: Vec<String>,
    line: usize,
) -> Result<(), String> {
    let mut args = args.into_iter();
    let Some(command) = args.next() else {
        return Err("empty command".to_string());
    };
    let what = match command.as_str() {
        "-N" | "--new-chain" => None,
        "-A" | "--append" => Some(false),
        "-I" | "--insert" => Some(true),
        other => return Err(unsupported(other)),
    };
    let chain = match args.next() {
        Some(chain) if !chain.is_empty() && !chain.starts_with('-') => chain,
        _ => return Err(format!("{command} without a chain name")),
    };
    let mut rest: Vec<String> = args.collect();
    let Some(insert) = what else {
        if let Some(extra) = rest.first() {
            return Err(format!("unexpected `{extra}` after {command} {chain}"));
        }
        if is_builtin(&table.name, &chain) {
            return Err(format!(
                "{command} {chain}: {chain} is a built-in chain of table {}",
                table.name
            ));
        }
        declare(table, &chain);
        return Ok(());
    };
    let position = if insert {
        let number = match rest.first() {
            Some(first) if !first.starts_with('-') && first != "!" => {
                let number = first
                    .parse::<u32>()
                    .ok()
                    .filter(|n| *n >= 1 && is_number(first))
                    .ok_or_else(|| {
                        format!("{command} {chain} {first}: not a rule number (1, 2, …)")
                    })?;
                rest.remove(0);
                number
            }
            _ => 1,
        };
        Position::Insert(number)
    } else {
        Position::Append
    };
    let declared = |t: &RestoreTable| t.chains.contains(&chain);
    let known = is_builtin(&table.name, &chain)
        || declared(table)
        || earlier
            .iter()
            .any(|t| t.family == table.family && t.name == table.name && declared(t));
    if !known {
        return Err(format!(
            "{command} {chain}: chain {chain} is neither built-in in table {} nor declared before (-N {chain})",
            table.name
        ));
    }
    if rest.is_empty() {
        return Err(format!(
            "{command} {chain}: a rule without arguments cannot be a direct rule"
        ));
    }
    if let Some(option) = rest.iter().find(|a| *a == "-t" || *a == "--table") {
        return Err(format!(
            "{option} inside a table block (the table comes from the `*table` line)"
        ));
    }
    table.rules.push(RestoreRule {
        line,
        chain,
        position,
        args: rest,
    });
    Ok(())
}

/// The message for a command translate cannot express as a direct entry.
fn unsupported(command: &str) -> String {
    let name = match command {
        "-D" | "--delete" => "delete",
        "-R" | "--replace" => "replace",
        "-F" | "--flush" => "flush",
        "-X" | "--delete-chain" => "delete chain",
        "-P" | "--policy" => "policy",
        "-E" | "--rename-chain" => "rename chain",
        "-Z" | "--zero" => "zero counters",
        "-L" | "--list" | "-S" | "--list-rules" => "list",
        "-C" | "--check" => "check",
        _ => {
            return format!(
                "unexpected `{}` (expected -N, -A, -I, :CHAIN, COMMIT, a comment or a blank line)",
                shorten(command)
            )
        }
    };
    format!("{command} ({name}) is not supported: only -N, -A and -I become direct entries")
}

/// Splits one restore line into arguments the way iptables-restore does: blanks separate
/// arguments; `"` opens a quoted part that a closing `"` ends (together with the
/// argument), inside which a backslash takes the next character literally (`\"`, `\\`);
/// outside quotes a backslash is an ordinary character. This reads iptables-save's quoting
/// and kumactl's (Go's `%q`) alike; Go escapes such as `\n` or `\u00e9` are read as
/// iptables-restore reads them (`n`, `u00e9`), since that is what the kernel would get.
/// `""` is an empty argument. An unterminated quote is an error.
pub fn split_restore_args(line: &str) -> Result<Vec<String>, String> {
    let mut args = Vec::new();
    let mut current = String::new();
    let mut in_quotes = false;
    let mut escaped = false;
    for c in line.chars() {
        if in_quotes {
            if escaped {
                current.push(c);
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_quotes = false;
                args.push(std::mem::take(&mut current));
            } else {
                current.push(c);
            }
            continue;
        }
        match c {
            '"' => in_quotes = true,
            ' ' | '\t' | '\n' | '\r' => {
                if !current.is_empty() {
                    args.push(std::mem::take(&mut current));
                }
            }
            c => current.push(c),
        }
    }
    if in_quotes {
        return Err("unterminated double quote".to_string());
    }
    if !current.is_empty() {
        args.push(current);
    }
    Ok(args)
}

#[cfg(test)]
mod tests {
    use super::*;

    type Op = (String, Position, Vec<String>);
    /// (family, table, declared chains, operations) of one block.
    type Summary<'a> = (Family, &'a str, Vec<String>, Vec<Op>);

    fn ops(table: &RestoreTable) -> Vec<Op> {
        table
            .rules
            .iter()
            .map(|r| (r.chain.clone(), r.position, r.args.clone()))
            .collect()
    }

    fn strings(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn restore_args_split_like_iptables_restore() {
        let split = |line: &str| split_restore_args(line).unwrap();
        assert_eq!(
            split("-A  OUTPUT\t-j RETURN "),
            ["-A", "OUTPUT", "-j", "RETURN"]
        );
        assert_eq!(
            split(r#"--comment "say \"hi\" \\ now" -j X"#),
            ["--comment", r#"say "hi" \ now"#, "-j", "X"]
        );
        // A closing quote ends the argument; an opening one continues it.
        assert_eq!(split(r#"a"b c"d"#), ["ab c", "d"]);
        assert_eq!(split(r#"--comment "" -j X"#), ["--comment", "", "-j", "X"]);
        // Outside quotes a backslash is a character; Go's escapes read as iptables does.
        assert_eq!(split(r#"a\b "x\ny""#), [r"a\b", "xny"]);
        assert_eq!(
            split("--comment \"envoy's port\""),
            ["--comment", "envoy's port"]
        );
        assert!(split_restore_args(r#"-m comment --comment "open"#).is_err());
        assert!(split_restore_args(r#""open\""#).is_err());
    }

    #[test]
    fn quoting_round_trips_through_the_reader() {
        for arg in [
            "RETURN",
            "a b",
            "say \"hi\"",
            "back\\slash",
            "",
            "#x",
            "it's",
        ] {
            assert_eq!(
                split_restore_args(&restore_quote(arg)).unwrap(),
                [arg],
                "{arg:?}"
            );
        }
    }

    #[test]
    fn kumactl_dry_run_with_sections_inserts_and_verbose_names() {
        let text = "### IPv4 ###\n\n* raw\n-A OUTPUT -p udp --dport 53 -j CT --zone 2\nCOMMIT\n\
                    * nat\n-N KUMA_MESH_OUTBOUND\n-A OUTPUT -p tcp -j KUMA_MESH_OUTBOUND\n\
                    -I OUTPUT 1 -m comment --comment \"kuma/mesh/transparent/proxy/x y\" -p udp -j RETURN\n\
                    -A KUMA_MESH_OUTBOUND -j RETURN\nCOMMIT\n\n### IPv6 ###\n\n* nat\n\n\
                    # Custom Chains:\n--new-chain KUMA_MESH_OUTBOUND\n\n# Rules:\n\
                    --append OUTPUT --protocol tcp --jump KUMA_MESH_OUTBOUND\n\
                    --insert OUTPUT --protocol udp --jump RETURN\n\nCOMMIT\n";
        let tables = parse_restore(text, Family::V4).unwrap();
        let summary: Vec<(Family, &str, usize)> = tables
            .iter()
            .map(|t| (t.family, t.name.as_str(), t.line))
            .collect();
        assert_eq!(
            summary,
            [
                (Family::V4, "raw", 3),
                (Family::V4, "nat", 6),
                (Family::V6, "nat", 15)
            ]
        );
        assert!(tables[0].chains.is_empty());
        assert_eq!(tables[1].chains, ["KUMA_MESH_OUTBOUND"]);
        assert_eq!(
            ops(&tables[1])[1],
            (
                "OUTPUT".to_string(),
                Position::Insert(1),
                strings(&[
                    "-m",
                    "comment",
                    "--comment",
                    "kuma/mesh/transparent/proxy/x y",
                    "-p",
                    "udp",
                    "-j",
                    "RETURN"
                ])
            )
        );
        assert_eq!(tables[1].rules[1].line, 9);
        assert_eq!(tables[2].chains, ["KUMA_MESH_OUTBOUND"]);
        assert_eq!(
            ops(&tables[2]),
            [
                (
                    "OUTPUT".to_string(),
                    Position::Append,
                    strings(&["--protocol", "tcp", "--jump", "KUMA_MESH_OUTBOUND"])
                ),
                (
                    "OUTPUT".to_string(),
                    Position::Insert(1),
                    strings(&["--protocol", "udp", "--jump", "RETURN"])
                ),
            ]
        );
    }

    #[test]
    fn iptables_save_output_declares_only_user_chains() {
        let text = "# Generated by iptables-save v1.8.10\n*nat\n:PREROUTING ACCEPT [0:0]\n\
                    :OUTPUT ACCEPT [3:180]\n:DOCKER - [0:0]\n\
                    [5:300] -A OUTPUT -m comment --comment \"a \\\"b\\\"\" -j DOCKER\n\
                    -A DOCKER -i docker0 -j RETURN\nCOMMIT\n# Completed\n";
        let tables = parse_restore(text, Family::V6).unwrap();
        assert_eq!(tables.len(), 1);
        assert_eq!(tables[0].family, Family::V6);
        assert_eq!(tables[0].chains, ["DOCKER"]);
        assert_eq!(
            tables[0].rules[0].args,
            ["-m", "comment", "--comment", "a \"b\"", "-j", "DOCKER"]
        );
        assert_eq!(tables[0].rules[1].position, Position::Append);
    }

    #[test]
    fn a_later_block_of_the_same_table_sees_earlier_chains() {
        let text = "*nat\n-N KUMA_MESH_X\nCOMMIT\n*nat\n-A KUMA_MESH_X -j RETURN\nCOMMIT\n";
        let tables = parse_restore(text, Family::V4).unwrap();
        assert_eq!(tables[1].rules[0].chain, "KUMA_MESH_X");
        let other_family = "*nat\n-N X\nCOMMIT\n### IPv6 ###\n*nat\n-A X -j RETURN\nCOMMIT\n";
        assert_eq!(parse_restore(other_family, Family::V4).unwrap_err().line, 6);
    }

    #[test]
    fn anything_else_is_refused_with_its_line() {
        let cases: &[(&str, usize, &str)] = &[
            (
                "*nat\n-D OUTPUT 1\nCOMMIT\n",
                2,
                "-D (delete) is not supported",
            ),
            ("*nat\n-F\nCOMMIT\n", 2, "-F (flush)"),
            ("*nat\n-P OUTPUT DROP\nCOMMIT\n", 2, "-P (policy)"),
            ("*nat\n-X KUMA_MESH_X\nCOMMIT\n", 2, "-X (delete chain)"),
            ("*nat\nhello world\nCOMMIT\n", 2, "unexpected `hello`"),
            ("-A OUTPUT -j RETURN\n", 1, "outside a table"),
            ("*nat\n-A OUTPUT -j RETURN\n", 1, "table nat has no COMMIT"),
            ("*nat\n*raw\nCOMMIT\n", 2, "no COMMIT before the next table"),
            ("*nat\n### IPv6 ###\nCOMMIT\n", 2, "COMMIT is missing"),
            ("* foo\nCOMMIT\n", 1, "unknown table `foo`"),
            ("*nat\n-A NOPE -j RETURN\nCOMMIT\n", 2, "neither built-in"),
            ("*nat\n-A OUTPUT\nCOMMIT\n", 2, "without arguments"),
            ("*nat\n-A\nCOMMIT\n", 2, "-A without a chain name"),
            (
                "*nat\n-I OUTPUT 0 -j RETURN\nCOMMIT\n",
                2,
                "not a rule number",
            ),
            (
                "*nat\n-I OUTPUT x -j RETURN\nCOMMIT\n",
                2,
                "not a rule number",
            ),
            ("*nat\n-N OUTPUT\nCOMMIT\n", 2, "built-in chain"),
            ("*nat\n-N X Y\nCOMMIT\n", 2, "unexpected `Y`"),
            ("*nat\n:X ACCEPT [0:0]\nCOMMIT\n", 2, "policy ACCEPT"),
            ("*nat\n:X\nCOMMIT\n", 2, "no policy"),
            ("*nat\n-A OUTPUT -t raw -j RETURN\nCOMMIT\n", 2, "-t inside"),
            (
                "*nat\n-A OUTPUT -m comment --comment \"x\nCOMMIT\n",
                2,
                "unterminated",
            ),
        ];
        for (text, line, message) in cases {
            let error = parse_restore(text, Family::V4).unwrap_err();
            assert_eq!(error.line, *line, "{text:?}: {error}");
            assert!(error.message.contains(message), "{text:?}: {error}");
        }
    }

    #[test]
    fn what_we_render_reads_back_in_order() {
        use crate::config::Config;
        use crate::ruleset::{build, FamilyFacts, Features};
        let mut config = Config::default();
        config.dns.enabled = true;
        config.inbound.exclude_ports = vec![22];
        let facts: Vec<FamilyFacts> = [Family::V4, Family::V6]
            .into_iter()
            .map(|family| FamilyFacts {
                family,
                uid: 5678,
                loopback: "lo".into(),
                dns_servers: vec!["10.96.0.10".parse().unwrap()],
                features: Features::default(),
            })
            .collect();
        let ruleset = build(&config, &facts);
        for verbose in [false, true] {
            let tables = parse_restore(&render_dry_run(&ruleset, verbose), Family::V4).unwrap();
            let expected: Vec<Summary> = ruleset
                .families
                .iter()
                .flat_map(|f| {
                    f.tables.iter().map(move |t| {
                        let rules = t
                            .rules
                            .iter()
                            .map(|r| (r.chain.clone(), r.position, r.spec(verbose)))
                            .collect();
                        (f.family, t.name.as_str(), t.chains.clone(), rules)
                    })
                })
                .collect();
            let actual: Vec<_> = tables
                .iter()
                .map(|t| (t.family, t.name.as_str(), t.chains.clone(), ops(t)))
                .collect();
            assert_eq!(actual, expected, "verbose: {verbose}");
        }
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
