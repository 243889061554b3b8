//! What is wrong with a direct configuration that firewalld only finds when it applies it:
//! at start or reload it creates every chain, then inserts every rule, then runs every
//! passthrough, all in one `iptables-restore` (and `ip6tables-restore`, `ebtables-restore`)
//! transaction per family. A line iptables rejects makes the whole transaction fail and
//! firewalld falls back to its failsafe configuration (state `FAILED`); entries its own
//! checks refuse are skipped with a warning in its log. Pure: no I/O here.
//!
//! [`check`] reports both kinds, plus what firewalld's loader ignores (repeats, entries
//! without arguments) and what makes the order of rules unpredictable. [`kernel_order`]
//! says where each rule ends up, and [`restore_check`] builds the `iptables-restore
//! --test` input that finds the rules iptables itself rejects.

use std::collections::{hash_map, HashMap, HashSet};
use std::fmt::Write as _;
use std::hash::Hash;

use super::{DirectConfig, DirectRule, Passthrough};
use crate::ownership::jump_targets;
use crate::quoting::restore_quote;
use crate::tables::{builtin_chains, tables_of};

/// An entry of a [`DirectConfig`]: its list and index there.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Subject {
    Chain(usize),
    Rule(usize),
    Passthrough(usize),
}

/// One problem with one entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    pub subject: Subject,
    pub message: String,
    /// The other entry the problem is about (the first of two equal ones, the rule with the
    /// same priority), for callers that can say where it is.
    pub other: Option<Subject>,
}

/// Whether a chain of [`crate::tables::builtin_chains`] is in firewalld's `BUILT_IN_CHAINS`
/// (core/ipXtables.py, core/ebtables.py): the names it refuses as `<chain>` and, on its
/// iptables backend, redirects to `X_direct`. Only nat INPUT is missing there.
fn firewalld_builtin(ipv: &str, table: &str, chain: &str) -> bool {
    chain != "INPUT" || !(matches!(ipv, "ipv4" | "ipv6") && table == "nat")
}

/// True for a built-in chain of the table, and for firewalld's `X_direct` name of one
/// (its iptables backend has that chain; its nftables backend strips the suffix).
pub fn is_builtin(ipv: &str, table: &str, chain: &str) -> bool {
    let builtins = builtin_chains(ipv, table);
    builtins.contains(&chain)
        || chain.strip_suffix("_direct").is_some_and(|base| {
            matches!(ipv, "ipv4" | "ipv6")
                && builtins.contains(&base)
                && firewalld_builtin(ipv, table, base)
        })
}

/// Targets of iptables and ip6tables (the standard verdicts and the target extensions
/// iptables 1.8 ships).
const IP_TARGETS: &[&str] = &[
    "ACCEPT",
    "DROP",
    "RETURN",
    "QUEUE",
    "AUDIT",
    "CHECKSUM",
    "CLASSIFY",
    "CONNMARK",
    "CONNSECMARK",
    "CT",
    "DNAT",
    "DSCP",
    "HMARK",
    "IDLETIMER",
    "LED",
    "LOG",
    "MARK",
    "MASQUERADE",
    "NETMAP",
    "NFLOG",
    "NFQUEUE",
    "NOTRACK",
    "RATEEST",
    "REDIRECT",
    "REJECT",
    "SECMARK",
    "SET",
    "SNAT",
    "SYNPROXY",
    "TCPMSS",
    "TCPOPTSTRIP",
    "TEE",
    "TOS",
    "TPROXY",
    "TRACE",
];
const IPV4_TARGETS: &[&str] = &["CLUSTERIP", "ECN", "TTL", "ULOG"];
const IPV6_TARGETS: &[&str] = &["DNPT", "HL", "SNPT"];
/// Targets of ebtables: its verdicts and target extensions (lower case).
const EB_TARGETS: &[&str] = &[
    "ACCEPT", "DROP", "CONTINUE", "RETURN", "arpreply", "dnat", "mark", "redirect", "snat",
];

/// True when `name` is a target (not a chain) for `ipv`.
pub fn is_target(ipv: &str, name: &str) -> bool {
    match ipv {
        "ipv4" => IP_TARGETS.contains(&name) || IPV4_TARGETS.contains(&name),
        "ipv6" => IP_TARGETS.contains(&name) || IPV6_TARGETS.contains(&name),
        "eb" => EB_TARGETS.contains(&name),
        _ => false,
    }
}

/// Why iptables refuses `name` as the name of a new chain (xtables' `assert_valid_chain_name`
/// and its 28-character limit), if it does.
fn invalid_chain_name(ipv: &str, name: &str) -> Option<String> {
    if ipv == "eb" {
        return None;
    }
    if name.is_empty() {
        Some("an empty chain name".to_string())
    } else if name.len() > 28 {
        Some(format!(
            "chain name {name} is longer than iptables' 28 characters"
        ))
    } else if name.starts_with('-') || name.starts_with('!') {
        Some(format!(
            "chain name {name} starts with `{}`, which iptables refuses",
            &name[..1]
        ))
    } else if name.chars().any(char::is_whitespace) {
        Some(format!(
            "chain name {name:?} contains a blank, which iptables refuses"
        ))
    } else if is_target(ipv, name) {
        Some(format!(
            "chain name {name} is the name of an iptables target, which iptables refuses"
        ))
    } else {
        None
    }
}

/// What firewalld's start-up transaction does with one passthrough's arguments.
struct PassthroughCommand<'a> {
    /// From `-t`/`--table` (the first one; firewalld removes it), else `filter`.
    table: &'a str,
    /// `-A`/`-I` (append or insert into the chain) or `-N` (create it).
    creates: bool,
    chain: Option<&'a str>,
}

fn passthrough_command(args: &[String]) -> PassthroughCommand<'_> {
    let mut table = "filter";
    let mut command = PassthroughCommand {
        table,
        creates: false,
        chain: None,
    };
    let mut i = 0;
    let mut table_seen = false;
    while i < args.len() {
        let arg = args[i].as_str();
        let value = args.get(i + 1).map(String::as_str);
        match arg {
            "-t" | "--table" if !table_seen => {
                table_seen = true;
                if let Some(value) = value {
                    table = value;
                }
                i += 1;
            }
            "-A" | "--append" | "-I" | "--insert" | "-N" | "--new-chain"
                if command.chain.is_none() =>
            {
                command.creates = matches!(arg, "-N" | "--new-chain");
                command.chain = value;
                i += 1;
            }
            _ => {}
        }
        i += 1;
    }
    command.table = table;
    command
}

/// Why firewalld refuses a passthrough (core/ipXtables.py `common_check_passthrough`), if
/// it does.
fn refused_passthrough(args: &[String]) -> Option<String> {
    const NOT_ALLOWED: &[&str] = &[
        "-C",
        "--check",
        "-D",
        "--delete",
        "-R",
        "--replace",
        "-L",
        "--list",
        "-S",
        "--list-rules",
        "-F",
        "--flush",
        "-Z",
        "--zero",
        "-X",
        "--delete-chain",
        "-P",
        "--policy",
        "-E",
        "--rename-chain",
    ];
    const NEEDED: &[&str] = &["-A", "--append", "-I", "--insert", "-N", "--new-chain"];
    if let Some(arg) = args.iter().find(|a| NOT_ALLOWED.contains(&a.as_str())) {
        Some(format!(
            "firewalld refuses `{arg}` in a passthrough (INVALID_PASSTHROUGH) and ignores it"
        ))
    } else if !args.iter().any(|a| NEEDED.contains(&a.as_str())) {
        Some(
            "a passthrough without -A, -I or -N: firewalld refuses it (INVALID_PASSTHROUGH) \
             and ignores it"
                .to_string(),
        )
    } else {
        None
    }
}

/// The message for a double quote in what firewalld writes into its restore input.
fn double_quote(what: &str, value: &str) -> String {
    format!(
        "{what} `{value}` contains a double quote: firewalld 1.3 writes it unescaped into \
         its iptables-restore input, which then fails (firewalld starts in FAILED state) or \
         reads another argument"
    )
}

impl DirectConfig {
    /// What firewalld keeps of these entries (what it loads from a file): the first of equal
    /// ones, rules and passthroughs with arguments only, in order.
    pub fn kept(&self) -> DirectConfig {
        let kept = effective(self, None);
        DirectConfig {
            chains: kept
                .chains
                .iter()
                .map(|&i| self.chains[i].clone())
                .collect(),
            rules: kept.rules.iter().map(|&i| self.rules[i].clone()).collect(),
            passthroughs: kept
                .passthroughs
                .iter()
                .map(|&i| self.passthroughs[i].clone())
                .collect(),
        }
    }
}

/// The entries firewalld keeps: the first of equal ones, rules and passthroughs with
/// arguments only. Indexes into `config`'s lists.
struct Effective {
    chains: Vec<usize>,
    rules: Vec<usize>,
    passthroughs: Vec<usize>,
}

fn effective(config: &DirectConfig, problems: Option<&mut Vec<Problem>>) -> Effective {
    let mut found = Vec::new();
    let chains = first_of(
        &config.chains,
        |_| false,
        Subject::Chain,
        "chain",
        &mut found,
    );
    let rules = first_of(
        &config.rules,
        |r| r.args.is_empty(),
        Subject::Rule,
        "rule",
        &mut found,
    );
    let passthroughs = first_of(
        &config.passthroughs,
        |p| p.args.is_empty(),
        Subject::Passthrough,
        "passthrough",
        &mut found,
    );
    if let Some(problems) = problems {
        problems.extend(found);
    }
    Effective {
        chains,
        rules,
        passthroughs,
    }
}

/// The indexes of the items firewalld keeps: not `empty`, and the first of equal ones.
/// Each item left out is a problem in `found`.
fn first_of<T: Eq + Hash>(
    items: &[T],
    empty: impl Fn(&T) -> bool,
    subject: fn(usize) -> Subject,
    what: &str,
    found: &mut Vec<Problem>,
) -> Vec<usize> {
    // Keyed by the items themselves (a file may hold thousands).
    let mut first: HashMap<&T, usize> = HashMap::with_capacity(items.len());
    let mut kept = Vec::new();
    for (i, item) in items.iter().enumerate() {
        if empty(item) {
            found.push(Problem {
                subject: subject(i),
                message: "has no arguments: firewalld ignores it".to_string(),
                other: None,
            });
            continue;
        }
        match first.entry(item) {
            hash_map::Entry::Occupied(earlier) => found.push(Problem {
                subject: subject(i),
                message: format!("repeats an earlier {what}: firewalld ignores the repeat"),
                other: Some(subject(*earlier.get())),
            }),
            hash_map::Entry::Vacant(slot) => {
                slot.insert(i);
                kept.push(i);
            }
        }
    }
    kept
}

/// One chain as firewalld sets it up.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChainOrder {
    pub ipv: String,
    pub table: String,
    pub chain: String,
    pub builtin: bool,
    /// The `<chain>` that declares it.
    pub declared: Option<usize>,
    /// Its rules (indexes into `rules`) in the order the kernel holds them: by priority,
    /// equal priorities in the order given (firewalld inserts each rule after those with a
    /// lower or equal priority).
    pub rules: Vec<usize>,
}

/// Every chain with a declaration or rules, grouped by ipv (ipv4, ipv6, eb) and table
/// (in packet order: raw, mangle, nat, filter, security; broute, nat, filter); in a table,
/// the built-in chains in packet order first, then the others in order of first
/// appearance. Repeated entries and rules without arguments are left out, as firewalld
/// leaves them out; `rule X` and `rule X_direct` are one chain.
pub fn kernel_order(config: &DirectConfig) -> Vec<ChainOrder> {
    let kept = effective(config, None);
    let mut chains: Vec<ChainOrder> = Vec::new();
    let mut find = |ipv: &str, table: &str, chain: &str| -> usize {
        let chain = canonical(ipv, table, chain);
        match chains
            .iter()
            .position(|c| c.ipv == ipv && c.table == table && c.chain == chain)
        {
            Some(i) => i,
            None => {
                chains.push(ChainOrder {
                    ipv: ipv.to_string(),
                    table: table.to_string(),
                    chain: chain.to_string(),
                    builtin: is_builtin(ipv, table, chain),
                    declared: None,
                    rules: Vec::new(),
                });
                chains.len() - 1
            }
        }
    };
    let mut order = Vec::new();
    for &i in &kept.chains {
        let c = &config.chains[i];
        order.push((find(&c.ipv, &c.table, &c.chain), Subject::Chain(i)));
    }
    for &i in &kept.rules {
        let r = &config.rules[i];
        order.push((find(&r.ipv, &r.table, &r.chain), Subject::Rule(i)));
    }
    for (at, subject) in order {
        match subject {
            Subject::Chain(i) => {
                chains[at].declared.get_or_insert(i);
            }
            Subject::Rule(i) => chains[at].rules.push(i),
            Subject::Passthrough(_) => {}
        }
    }
    for chain in &mut chains {
        // Stable: equal priorities keep their order.
        chain.rules.sort_by_key(|&i| config.rules[i].priority);
    }
    let rank = |c: &ChainOrder| {
        let ipv = ["ipv4", "ipv6", "eb"]
            .iter()
            .position(|&v| v == c.ipv)
            .unwrap_or(3);
        let tables: &[&str] = if c.ipv == "eb" {
            &["broute", "nat", "filter"]
        } else {
            &["raw", "mangle", "nat", "filter", "security"]
        };
        let table = tables.iter().position(|&t| t == c.table).unwrap_or(5);
        const PACKET_ORDER: [&str; 6] = [
            "BROUTING",
            "PREROUTING",
            "INPUT",
            "FORWARD",
            "OUTPUT",
            "POSTROUTING",
        ];
        let builtin = PACKET_ORDER
            .iter()
            .position(|&b| c.builtin && b == c.chain)
            .unwrap_or(PACKET_ORDER.len());
        (ipv, table, builtin)
    };
    // Stable: the other chains keep their order of first appearance.
    chains.sort_by_key(rank);
    chains
}

/// A built-in chain's own name for its `X_direct` alias.
fn canonical<'a>(ipv: &str, table: &str, chain: &'a str) -> &'a str {
    match chain.strip_suffix("_direct") {
        Some(base) if is_builtin(ipv, table, chain) => base,
        _ => chain,
    }
}

/// Every problem firewalld would run into loading and applying `config`, in the order of
/// the entries (chains, then rules, then passthroughs; problems of one entry together).
pub fn check(config: &DirectConfig) -> Vec<Problem> {
    let mut problems = Vec::new();
    let kept = effective(config, Some(&mut problems));

    // Chains a rule may use: those declared, per (ipv, table).
    let mut declared: HashSet<(&str, &str, &str)> = HashSet::new();
    for &i in &kept.chains {
        let c = &config.chains[i];
        let mut report = |message: String| {
            problems.push(Problem {
                subject: Subject::Chain(i),
                message,
                other: None,
            })
        };
        // firewalld checks the name while loading the chains (`query_chain`), outside the
        // error handling that skips a bad entry: the whole start fails.
        if builtin_chains(&c.ipv, &c.table).contains(&c.chain.as_str()) {
            report(if firewalld_builtin(&c.ipv, &c.table, &c.chain) {
                format!(
                    "declares {}, a built-in chain of {} {}: firewalld refuses it \
                     (BUILTIN_CHAIN) and fails to start",
                    c.chain, c.ipv, c.table
                )
            } else {
                format!(
                    "declares {}, a built-in chain of {} {}: iptables-restore cannot create it \
                     and firewalld fails to start",
                    c.chain, c.ipv, c.table
                )
            });
            continue;
        }
        if is_builtin(&c.ipv, &c.table, &c.chain) {
            report(format!(
                "declares {}, the chain firewalld's iptables backend creates for its direct \
                 rules: with that backend firewalld fails to start",
                c.chain
            ));
            continue;
        }
        if let Some(why) = invalid_chain_name(&c.ipv, &c.chain) {
            report(format!("{why}: firewalld fails to start"));
        }
        if c.chain.contains('"') {
            report(double_quote("chain name", &c.chain));
        }
        declared.insert((&c.ipv, &c.table, &c.chain));
    }
    // Chains passthroughs create, which exist only after every rule was inserted.
    let mut created_later: HashSet<(&str, &str, &str)> = HashSet::new();
    for &i in &kept.passthroughs {
        let p = &config.passthroughs[i];
        let command = passthrough_command(&p.args);
        if let (true, Some(chain)) = (command.creates, command.chain) {
            created_later.insert((&p.ipv, command.table, chain));
        }
    }

    let unknown_jump = |ipv: &str, table: &str, target: &str, with_passthroughs: bool| {
        let known = declared.contains(&(ipv, table, target))
            || is_builtin(ipv, table, target)
            || is_target(ipv, target);
        if known {
            return None;
        }
        let mut message = format!("jumps to undeclared chain or unknown target {target}");
        if !with_passthroughs && created_later.contains(&(ipv, table, target)) {
            message.push_str(
                " (a passthrough creates it, but firewalld runs passthroughs after the rules)",
            );
        }
        Some(message)
    };

    let mut first_of_priority: HashMap<(&str, &str, &str, i32), usize> = HashMap::new();
    for &i in &kept.rules {
        let rule: &DirectRule = &config.rules[i];
        let mut report = |message: String, other: Option<Subject>| {
            problems.push(Problem {
                subject: Subject::Rule(i),
                message,
                other,
            })
        };
        let (ipv, table) = (rule.ipv.as_str(), rule.table.as_str());
        if !is_builtin(ipv, table, &rule.chain) && !declared.contains(&(ipv, table, &rule.chain)) {
            let mut message = format!(
                "chain {} is neither built-in in {ipv} {table} nor declared: firewalld fails \
                 to start",
                rule.chain
            );
            if created_later.contains(&(ipv, table, &rule.chain)) {
                message.push_str(
                    " (a passthrough creates it, but firewalld runs passthroughs after the rules)",
                );
            }
            report(message, None);
        }
        for target in jump_targets(&rule.args) {
            match target {
                None => report(
                    "ends with a jump option without a target: firewalld fails to start"
                        .to_string(),
                    None,
                ),
                Some(target) => {
                    if let Some(message) = unknown_jump(ipv, table, target, false) {
                        report(message, None);
                    }
                }
            }
        }
        if rule.chain.contains('"') {
            report(double_quote("chain name", &rule.chain), None);
        }
        for arg in rule.args.iter().filter(|a| a.contains('"')) {
            report(double_quote("argument", arg), None);
        }
        let key = (
            ipv,
            table,
            canonical(ipv, table, &rule.chain),
            rule.priority,
        );
        match first_of_priority.get(&key) {
            Some(&first) => report(
                format!(
                    "has the same priority ({}) as another rule in {ipv} {table} {}: firewalld \
                     does not guarantee their order",
                    rule.priority, key.2
                ),
                Some(Subject::Rule(first)),
            ),
            None => {
                first_of_priority.insert(key, i);
            }
        }
    }

    // Passthroughs run in order after the rules: a chain one creates exists for the next.
    let mut created: HashSet<(&str, &str, &str)> = HashSet::new();
    for &i in &kept.passthroughs {
        let p: &Passthrough = &config.passthroughs[i];
        let mut report = |message: String| {
            problems.push(Problem {
                subject: Subject::Passthrough(i),
                message,
                other: None,
            })
        };
        if let Some(why) = refused_passthrough(&p.args) {
            report(why);
            continue;
        }
        for arg in p.args.iter().filter(|a| a.contains('"')) {
            report(double_quote("argument", arg));
        }
        let command = passthrough_command(&p.args);
        let ipv = p.ipv.as_str();
        let table = command.table;
        if !tables_of(ipv).is_some_and(|tables| tables.contains(&table)) {
            report(format!("table {table} does not exist for {ipv}"));
            continue;
        }
        let exists = |chain: &str, created: &HashSet<(&str, &str, &str)>| {
            is_builtin(ipv, table, chain)
                || declared.contains(&(ipv, table, chain))
                || created.contains(&(ipv, table, chain))
        };
        match command.chain {
            None => report("names no chain: firewalld fails to start".to_string()),
            Some(chain) if command.creates => {
                if exists(chain, &created) {
                    report(format!(
                        "creates chain {chain}, which already exists in {ipv} {table}: \
                         firewalld fails to start"
                    ));
                } else if let Some(why) = invalid_chain_name(ipv, chain) {
                    report(format!("{why}: firewalld fails to start"));
                }
                created.insert((ipv, table, chain));
            }
            Some(chain) => {
                if !exists(chain, &created) {
                    report(format!(
                        "adds to chain {chain}, which is neither built-in in {ipv} {table} nor \
                         declared: firewalld fails to start"
                    ));
                }
            }
        }
        for target in jump_targets(&p.args).flatten() {
            let known = created.contains(&(ipv, table, target));
            if !known {
                if let Some(message) = unknown_jump(ipv, table, target, true) {
                    report(message);
                }
            }
        }
    }
    problems
}

/// `iptables-restore --test` input that checks the ipv4 or ipv6 entries of a configuration
/// the way firewalld applies them: declared chains as `:NAME - [0:0]`, rules appended in
/// kernel order (to the built-in chain for `X_direct`), passthroughs as written (their
/// `-t` turned into the table section, `-N` into a declaration).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RestoreCheck {
    /// Only the tables and chain declarations: when iptables rejects this, it cannot check
    /// anything here (not root, a table missing).
    pub base: String,
    /// Everything at once.
    pub all: String,
    /// Each rule and passthrough alone, with the declarations: to name the ones iptables
    /// rejects when `all` fails.
    pub each: Vec<(Subject, String)>,
}

/// The [`RestoreCheck`] of `ipv` (`ipv4` or `ipv6`), or None when `config` has nothing of
/// that family. Entries in `skip` (those with problems already) are left out, and so are
/// rules in chains that are neither built-in nor declared by a chain left in.
pub fn restore_check(
    config: &DirectConfig,
    ipv: &str,
    skip: &HashSet<Subject>,
) -> Option<RestoreCheck> {
    let kept = effective(config, None);
    // (table, declarations, lines with their subject), tables in order of appearance.
    type Table = (String, Vec<String>, Vec<(Subject, String)>);
    let mut tables: Vec<Table> = Vec::new();
    fn table_of<'t>(tables: &'t mut Vec<Table>, name: &str) -> &'t mut Table {
        let at = match tables.iter().position(|t| t.0 == name) {
            Some(at) => at,
            None => {
                tables.push((name.to_string(), Vec::new(), Vec::new()));
                tables.len() - 1
            }
        };
        &mut tables[at]
    }
    let mut any = false;
    let mut declared: HashSet<(String, String)> = HashSet::new();
    for &i in &kept.chains {
        let c = &config.chains[i];
        if c.ipv != ipv {
            continue;
        }
        any = true;
        if skip.contains(&Subject::Chain(i)) {
            continue;
        }
        table_of(&mut tables, &c.table)
            .1
            .push(format!(":{} - [0:0]", restore_quote(&c.chain)));
        declared.insert((c.table.clone(), c.chain.clone()));
    }
    for chain in kernel_order(config) {
        if chain.ipv != ipv {
            continue;
        }
        any = true;
        let usable =
            chain.builtin || declared.contains(&(chain.table.clone(), chain.chain.clone()));
        for &i in &chain.rules {
            if !usable || skip.contains(&Subject::Rule(i)) {
                continue;
            }
            let mut line = format!("-A {}", restore_quote(&chain.chain));
            for arg in &config.rules[i].args {
                line.push(' ');
                line.push_str(&restore_quote(arg));
            }
            table_of(&mut tables, &chain.table)
                .2
                .push((Subject::Rule(i), line));
        }
    }
    for &i in &kept.passthroughs {
        let p = &config.passthroughs[i];
        if p.ipv != ipv {
            continue;
        }
        any = true;
        if skip.contains(&Subject::Passthrough(i)) {
            continue;
        }
        let command = passthrough_command(&p.args);
        let mut args: Vec<&str> = p.args.iter().map(String::as_str).collect();
        if let Some(at) = args.iter().position(|a| matches!(*a, "-t" | "--table")) {
            args.drain(at..(at + 2).min(args.len()));
        }
        let table = table_of(&mut tables, command.table);
        match (command.creates, command.chain, args.len()) {
            (true, Some(chain), 2) => table.1.push(format!(":{} - [0:0]", restore_quote(chain))),
            _ => {
                let line: Vec<String> = args.iter().map(|a| restore_quote(a)).collect();
                table.2.push((Subject::Passthrough(i), line.join(" ")));
            }
        }
    }
    if !any {
        return None;
    }

    let section = |out: &mut String, table: &Table, lines: &mut dyn Iterator<Item = &str>| {
        let _ = writeln!(out, "*{}", table.0);
        for declaration in &table.1 {
            let _ = writeln!(out, "{declaration}");
        }
        for line in lines {
            let _ = writeln!(out, "{line}");
        }
        out.push_str("COMMIT\n");
    };
    let mut base = String::new();
    let mut all = String::new();
    let mut each = Vec::new();
    for table in &tables {
        section(&mut base, table, &mut std::iter::empty());
        section(
            &mut all,
            table,
            &mut table.2.iter().map(|(_, line)| line.as_str()),
        );
        for (subject, line) in &table.2 {
            let mut one = String::new();
            section(&mut one, table, &mut std::iter::once(line.as_str()));
            each.push((*subject, one));
        }
    }
    Some(RestoreCheck { base, all, each })
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::direct::test_entries::{chain, passthrough, rule};

    fn messages(config: &DirectConfig) -> Vec<(Subject, String)> {
        check(config)
            .into_iter()
            .map(|p| (p.subject, p.message))
            .collect()
    }

    #[test]
    fn a_clean_configuration_has_no_problems() {
        let config = DirectConfig {
            chains: vec![
                chain("ipv4", "nat", "KUMA_MESH_OUTBOUND"),
                chain("ipv4", "filter", "audit_in"),
                chain("eb", "filter", "E"),
            ],
            rules: vec![
                rule(
                    "ipv4",
                    "nat",
                    "OUTPUT",
                    0,
                    &["-p", "tcp", "-j", "KUMA_MESH_OUTBOUND"],
                ),
                rule("ipv4", "nat", "OUTPUT_direct", 1, &["-j", "RETURN"]),
                rule(
                    "ipv4",
                    "nat",
                    "KUMA_MESH_OUTBOUND",
                    0,
                    &["-j", "REDIRECT", "--to-ports", "15001"],
                ),
                rule("ipv4", "filter", "INPUT", 0, &["--goto", "audit_in"]),
                rule("ipv6", "raw", "OUTPUT", 0, &["-j", "CT", "--notrack"]),
                rule(
                    "ipv6",
                    "mangle",
                    "PREROUTING",
                    0,
                    &["-j", "HL", "--hl-set", "9"],
                ),
                rule("eb", "filter", "INPUT", 0, &["-j", "E"]),
                rule(
                    "eb",
                    "nat",
                    "PREROUTING",
                    0,
                    &["-j", "dnat", "--to-dst", "00:11:22:33:44:55"],
                ),
            ],
            passthroughs: vec![
                passthrough("ipv4", &["-t", "raw", "-N", "MINE"]),
                passthrough("ipv4", &["-t", "raw", "-A", "MINE", "-j", "ACCEPT"]),
                passthrough(
                    "ipv4",
                    &["-t", "raw", "-I", "PREROUTING", "1", "-j", "MINE"],
                ),
                passthrough("eb", &["-t", "filter", "-A", "FORWARD", "-j", "ACCEPT"]),
            ],
        };
        assert_eq!(messages(&config), []);
    }

    #[test]
    fn apply_time_problems_are_found() {
        let config = DirectConfig {
            chains: vec![
                chain("ipv4", "nat", "OUTPUT"),
                chain("ipv4", "nat", "INPUT"),
                chain("ipv4", "filter", "A"),
                chain("ipv4", "filter", "A"),
                chain("ipv6", "filter", "an-awfully-long-chain-name-indeed"),
                chain("ipv4", "filter", "LOG"),
                chain("ipv4", "mangle", "OUTPUT_direct"),
            ],
            rules: vec![
                rule("ipv4", "filter", "B", 0, &["-j", "ACCEPT"]),
                rule("ipv4", "filter", "INPUT", 0, &["-j", "A"]),
                rule("ipv4", "filter", "INPUT", 0, &["-j", "NOWHERE"]),
                rule(
                    "ipv4",
                    "filter",
                    "INPUT",
                    5,
                    &["-j", "ACCEPT", "-m", "comment", "--comment", "say \"hi\""],
                ),
                rule("ipv4", "filter", "INPUT", 6, &[]),
                rule(
                    "ipv4",
                    "filter",
                    "INPUT",
                    5,
                    &["-j", "ACCEPT", "-m", "comment", "--comment", "say \"hi\""],
                ),
                rule("ipv6", "filter", "INPUT", 0, &["-j", "TTL"]),
                rule("ipv4", "filter", "INPUT", 7, &["-g", "LATER"]),
                rule("ipv4", "filter", "INPUT", 8, &["-j"]),
            ],
            passthroughs: vec![
                passthrough("eb", &["-t", "nat", "-L"]),
                passthrough("ipv4", &["-t", "filter", "-N", "LATER"]),
                passthrough("ipv4", &["-F"]),
                passthrough("ipv4", &["-A", "NONE", "-j", "ACCEPT"]),
                passthrough("ipv6", &["-t", "broute", "-A", "X"]),
                passthrough("ipv4", &["-A", "INPUT", "-j", "LATER"]),
            ],
        };
        let got = messages(&config);
        let want: Vec<(Subject, &str)> = vec![
            (Subject::Chain(3), "repeats an earlier chain: firewalld ignores the repeat"),
            (Subject::Rule(4), "has no arguments: firewalld ignores it"),
            (Subject::Rule(5), "repeats an earlier rule: firewalld ignores the repeat"),
            (Subject::Chain(0), "declares OUTPUT, a built-in chain of ipv4 nat: firewalld refuses it (BUILTIN_CHAIN) and fails to start"),
            (Subject::Chain(1), "declares INPUT, a built-in chain of ipv4 nat: iptables-restore cannot create it and firewalld fails to start"),
            (Subject::Chain(4), "chain name an-awfully-long-chain-name-indeed is longer than iptables' 28 characters: firewalld fails to start"),
            (Subject::Chain(5), "chain name LOG is the name of an iptables target, which iptables refuses: firewalld fails to start"),
            (Subject::Chain(6), "declares OUTPUT_direct, the chain firewalld's iptables backend creates for its direct rules: with that backend firewalld fails to start"),
            (Subject::Rule(0), "chain B is neither built-in in ipv4 filter nor declared: firewalld fails to start"),
            (Subject::Rule(2), "jumps to undeclared chain or unknown target NOWHERE"),
            (Subject::Rule(2), "has the same priority (0) as another rule in ipv4 filter INPUT: firewalld does not guarantee their order"),
            (Subject::Rule(3), "argument `say \"hi\"` contains a double quote: firewalld 1.3 writes it unescaped into its iptables-restore input, which then fails (firewalld starts in FAILED state) or reads another argument"),
            (Subject::Rule(6), "jumps to undeclared chain or unknown target TTL"),
            (Subject::Rule(7), "jumps to undeclared chain or unknown target LATER (a passthrough creates it, but firewalld runs passthroughs after the rules)"),
            (Subject::Rule(8), "ends with a jump option without a target: firewalld fails to start"),
            (Subject::Passthrough(0), "firewalld refuses `-L` in a passthrough (INVALID_PASSTHROUGH) and ignores it"),
            (Subject::Passthrough(2), "firewalld refuses `-F` in a passthrough (INVALID_PASSTHROUGH) and ignores it"),
            (Subject::Passthrough(3), "adds to chain NONE, which is neither built-in in ipv4 filter nor declared: firewalld fails to start"),
            (Subject::Passthrough(4), "table broute does not exist for ipv6"),
        ];
        let want: Vec<(Subject, String)> =
            want.into_iter().map(|(s, m)| (s, m.to_string())).collect();
        assert_eq!(got, want);
        // The same priority names the first rule with it; a repeat names the first copy.
        let problems = check(&config);
        let other = |subject: Subject, part: &str| {
            problems
                .iter()
                .find(|p| p.subject == subject && p.message.contains(part))
                .and_then(|p| p.other)
        };
        assert_eq!(other(Subject::Rule(2), "priority"), Some(Subject::Rule(1)));
        assert_eq!(other(Subject::Rule(5), "repeats"), Some(Subject::Rule(3)));
        assert_eq!(other(Subject::Chain(3), "repeats"), Some(Subject::Chain(2)));
    }

    #[test]
    fn the_kernel_order_follows_priorities_then_the_given_order() {
        let config = DirectConfig {
            chains: vec![
                chain("ipv4", "nat", "MINE"),
                chain("eb", "filter", "E"),
                chain("ipv4", "nat", "MINE"),
            ],
            rules: vec![
                rule("ipv4", "nat", "OUTPUT", 0, &["-p", "tcp", "-j", "MINE"]),
                rule("ipv4", "nat", "OUTPUT", 10, &["-j", "LATE"]),
                rule(
                    "ipv4",
                    "nat",
                    "OUTPUT_direct",
                    0,
                    &["-p", "udp", "-j", "MINE"],
                ),
                rule("ipv4", "nat", "OUTPUT", -1, &["-j", "FIRST"]),
                rule("ipv4", "nat", "OUTPUT", 5, &[]),
                rule("ipv4", "raw", "OTHER", 0, &["-j", "ACCEPT"]),
                rule("ipv4", "raw", "PREROUTING", 0, &["-j", "ACCEPT"]),
                rule("ipv4", "nat", "OUTPUT", -1, &["-j", "FIRST"]),
            ],
            passthroughs: vec![],
        };
        let order: Vec<(String, bool, Option<usize>, Vec<usize>)> = kernel_order(&config)
            .into_iter()
            .map(|c| {
                (
                    format!("{} {} {}", c.ipv, c.table, c.chain),
                    c.builtin,
                    c.declared,
                    c.rules,
                )
            })
            .collect();
        assert_eq!(
            order,
            [
                ("ipv4 raw PREROUTING".to_string(), true, None, vec![6]),
                ("ipv4 raw OTHER".to_string(), false, None, vec![5]),
                ("ipv4 nat OUTPUT".to_string(), true, None, vec![3, 0, 2, 1]),
                ("ipv4 nat MINE".to_string(), false, Some(0), vec![]),
                ("eb filter E".to_string(), false, Some(1), vec![]),
            ]
        );
    }

    #[test]
    fn restore_checks_declare_chains_and_test_each_line() {
        let config = DirectConfig {
            chains: vec![
                chain("ipv4", "nat", "MINE"),
                chain("ipv4", "nat", "OUTPUT"),
                chain("ipv6", "raw", "SIX"),
            ],
            rules: vec![
                rule(
                    "ipv4",
                    "nat",
                    "MINE",
                    0,
                    &["-m", "comment", "--comment", "a b", "-j", "RETURN"],
                ),
                rule("ipv4", "nat", "OUTPUT_direct", 0, &["-j", "MINE"]),
                rule("ipv4", "nat", "NOWHERE", 0, &["-j", "ACCEPT"]),
                rule("ipv4", "nat", "OUTPUT", -1, &["-j", "NOPE"]),
                rule("eb", "filter", "INPUT", 0, &["-j", "ACCEPT"]),
            ],
            passthroughs: vec![
                passthrough("ipv4", &["-t", "raw", "-N", "PT"]),
                passthrough("ipv4", &["-A", "INPUT", "-j", "ACCEPT"]),
            ],
        };
        let skip: HashSet<Subject> = [Subject::Chain(1), Subject::Rule(3)].into();
        let ipv4 = restore_check(&config, "ipv4", &skip).unwrap();
        assert_eq!(
            ipv4.base,
            "*nat\n:MINE - [0:0]\nCOMMIT\n*raw\n:PT - [0:0]\nCOMMIT\n*filter\nCOMMIT\n"
        );
        assert_eq!(
            ipv4.all,
            "*nat\n:MINE - [0:0]\n-A OUTPUT -j MINE\n-A MINE -m comment --comment \"a b\" -j RETURN\nCOMMIT\n*raw\n:PT - [0:0]\nCOMMIT\n*filter\n-A INPUT -j ACCEPT\nCOMMIT\n"
        );
        let each: Vec<Subject> = ipv4.each.iter().map(|(s, _)| *s).collect();
        assert_eq!(
            each,
            [Subject::Rule(1), Subject::Rule(0), Subject::Passthrough(1)]
        );
        assert_eq!(
            ipv4.each[1].1,
            "*nat\n:MINE - [0:0]\n-A MINE -m comment --comment \"a b\" -j RETURN\nCOMMIT\n"
        );
        let ipv6 = restore_check(&config, "ipv6", &skip).unwrap();
        assert_eq!(ipv6.all, "*raw\n:SIX - [0:0]\nCOMMIT\n");
        assert!(ipv6.each.is_empty());
        let nothing = DirectConfig {
            rules: vec![rule("eb", "filter", "INPUT", 0, &["-j", "ACCEPT"])],
            ..Default::default()
        };
        assert_eq!(restore_check(&nothing, "ipv4", &HashSet::new()), None);
    }
}
