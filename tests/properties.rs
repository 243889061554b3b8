//! Property tests: the direct.xml reader, writer and byte-preserving editor, and
//! the planner, checked on generated inputs rather than examples.
//!
//! - arguments → `render` → `parse` → the same arguments (firewalld's shell-style quoting),
//!   for any printable text: quotes, `&<>`, `]]>`, backslashes, tabs, unicode, empty
//!   strings. Newlines and carriage returns are left out of that one: firewalld turns every
//!   newline of a rule's text into a space before splitting it (and XML turns `\r` into a
//!   newline), so they cannot survive a file round trip — a separate property pins exactly
//!   what becomes of them. Control characters are left out everywhere: XML cannot hold
//!   them at all (`translate` refuses them in its input, see `tests/hostile_input.rs`);
//! - `render(c)` always parses back to `c` as firewalld groups and deduplicates it;
//! - `Document::with_owned` on generated foreign files (any layout: comments, blank lines,
//!   tabs, CRLF, both attribute quotes, CDATA, character references) gives the foreign
//!   file back byte for byte once our entries are removed again;
//! - `direct::diff` applied to the current configuration yields the desired entries of
//!   ours, leaves foreign entries alone, orders its steps safely, and plans nothing more
//!   afterwards; `direct::translate` numbers each chain with strictly increasing
//!   priorities, keeps them on a re-run and moves nothing when one rule is added.
//!
//! Each property runs a few hundred cases and the whole file takes seconds. A failure
//! prints the minimal input proptest found.

use std::collections::HashSet;

use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::select;

use tproxy_firewalld::direct::{self, Change, DirectChain, DirectConfig, DirectRule, Passthrough};
use tproxy_firewalld::family::Family;
use tproxy_firewalld::format::direct_xml::{self, parse, render};
use tproxy_firewalld::ownership::{is_owned_chain, COMMENT_PREFIX};
use tproxy_firewalld::quoting::{join_args, split_args};
use tproxy_firewalld::ruleset::{Arg, FamilyRules, Position, Rule, Ruleset, Table};
use tproxy_firewalld::tables::TableName;

/// `cases` per property; `PROPTEST_CASES` overrides it for a longer run.
fn config(cases: u32) -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(cases);
    ProptestConfig {
        cases,
        // Generated inputs are valid by construction; nothing is rejected on purpose.
        max_global_rejects: 10_000,
        // No regression files in the tree: a failure prints its minimal input instead.
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

// ---------------------------------------------------------------------------------------
// Generators

/// Fragments the quoting has to get right.
const TRICKY: &[&str] = &[
    "'",
    "\"",
    "&",
    "<",
    ">",
    "]]>",
    "&amp;",
    "&#10;",
    "'\"'\"'",
    "\\",
    "\\\\",
    "\\'",
    "#",
    " ",
    "  ",
    "\t",
    "$HOME",
    "`id`",
    "$(id)",
    ";",
    "|",
    "*",
    "?",
    "~",
    "!",
    "=",
    "--comment",
    "-j",
    "é",
    "日本",
    "🎉",
    "\u{2028}",
    "\u{a0}",
    "\u{200b}",
];

/// One argument: printable text (no newline, no carriage return), possibly empty.
fn printable_arg() -> impl Strategy<Value = String> {
    let part = prop_oneof![
        3 => "[ -~]{0,10}",
        2 => "[\\PC\t]{0,6}",
        3 => select(TRICKY).prop_map(String::from),
        1 => Just(String::new()),
    ];
    vec(part, 1..4).prop_map(|parts| parts.concat())
}

/// An attribute value: anything XML can carry, newlines and carriage returns included
/// (the writer turns them into character references).
fn attribute_value() -> impl Strategy<Value = String> {
    let part = prop_oneof![
        3 => "[ -~]{0,8}",
        1 => "[\\PC\t\n\r]{0,5}",
        2 => select(TRICKY).prop_map(String::from),
        1 => select(&["\n", "\r", "\r\n", "\t"][..]).prop_map(String::from),
    ];
    vec(part, 1..3).prop_map(|parts| parts.concat())
}

/// A valid (ipv, table) pair: firewalld's loader refuses every other combination.
fn ipv_table() -> impl Strategy<Value = (String, String)> {
    prop_oneof![
        4 => (
            select(&["ipv4", "ipv6"][..]),
            select(&["security", "raw", "mangle", "nat", "filter"][..]),
        ),
        1 => (Just("eb"), select(&["broute", "nat", "filter"][..])),
    ]
    .prop_map(|(ipv, table)| (ipv.to_string(), table.to_string()))
}

fn priority() -> impl Strategy<Value = i32> {
    prop_oneof![
        4 => -50i32..50,
        1 => select(&[i32::MIN, i32::MIN + 1, -1, 0, 1, i32::MAX - 1, i32::MAX][..]),
        1 => any::<i32>(),
    ]
}

fn any_rule() -> impl Strategy<Value = DirectRule> {
    (
        ipv_table(),
        attribute_value(),
        priority(),
        vec(printable_arg(), 1..6),
    )
        .prop_map(|((ipv, table), chain, priority, args)| DirectRule {
            ipv,
            table,
            chain,
            priority,
            args,
        })
}

/// Chain names from a small pool, so that entries share chains and groups.
fn pooled_chain() -> impl Strategy<Value = String> {
    prop_oneof![
        2 => select(
            &[
                "INPUT",
                "OUTPUT",
                "PREROUTING",
                "LOGDROP",
                "KUMA_MESHY",
                "KUMA_MESH_OUTBOUND",
                "KUMA_MESH_INBOUND",
                "say\"hi",
                "it's",
                "a&b<c>",
                "tab\there",
                "",
            ][..]
        )
        .prop_map(String::from),
        1 => attribute_value(),
    ]
}

/// Arguments from a small pool plus free text, so that equal rules and ours show up.
fn pooled_args() -> impl Strategy<Value = Vec<String>> {
    let arg = prop_oneof![
        2 => select(
            &[
                "-j",
                "RETURN",
                "ACCEPT",
                "KUMA_MESH_OUTBOUND",
                "-p",
                "tcp",
                "--dport",
                "22",
                "-m",
                "comment",
                "--comment",
                "kuma/mesh/transparent/proxy/x",
                "kuma/mesh/transparent/proxy/it's & <odd>",
                "",
            ][..]
        )
        .prop_map(String::from),
        1 => printable_arg(),
    ];
    vec(arg, 0..5)
}

fn pooled_config() -> impl Strategy<Value = DirectConfig> {
    let chain = (ipv_table(), pooled_chain()).prop_map(|((ipv, table), chain)| DirectChain {
        ipv,
        table,
        chain,
    });
    let rule = (ipv_table(), pooled_chain(), -3i32..3, pooled_args()).prop_map(
        |((ipv, table), chain, priority, args)| DirectRule {
            ipv,
            table,
            chain,
            priority,
            args,
        },
    );
    let passthrough = (
        select(&["ipv4", "ipv6", "eb"][..]).prop_map(String::from),
        pooled_args(),
    )
        .prop_map(|(ipv, args)| Passthrough { ipv, args });
    (vec(chain, 0..6), vec(rule, 0..10), vec(passthrough, 0..4)).prop_map(
        |(chains, rules, passthroughs)| DirectConfig {
            chains,
            rules,
            passthroughs,
        },
    )
}

/// Keeps the first of equal items.
fn dedup<T: Clone + Eq + std::hash::Hash>(items: &[T]) -> Vec<T> {
    let mut seen = HashSet::new();
    items
        .iter()
        .filter(|item| seen.insert(*item))
        .cloned()
        .collect()
}

/// A configuration without repeated entries and without rules or passthroughs that have no
/// arguments: what firewalld keeps of a file.
fn effective(config: &DirectConfig) -> DirectConfig {
    DirectConfig {
        chains: dedup(&config.chains),
        rules: dedup(&config.rules)
            .into_iter()
            .filter(|r| !r.args.is_empty())
            .collect(),
        passthroughs: dedup(&config.passthroughs)
            .into_iter()
            .filter(|p| !p.args.is_empty())
            .collect(),
    }
}

/// Stable grouping by key, groups in order of first appearance.
fn grouped<T: Clone, K: PartialEq>(items: &[T], key: impl Fn(&T) -> K) -> Vec<T> {
    let mut groups: Vec<(K, Vec<T>)> = Vec::new();
    for item in items {
        let k = key(item);
        match groups.iter_mut().find(|(g, _)| *g == k) {
            Some((_, group)) => group.push(item.clone()),
            None => groups.push((k, vec![item.clone()])),
        }
    }
    groups.into_iter().flat_map(|(_, group)| group).collect()
}

/// The configuration in the order firewalld's writer puts it: chains grouped by
/// (ipv, table), rules by (ipv, table, chain), passthroughs by ipv, groups in order of
/// first appearance (an entry without arguments opens its group too, as in firewalld's
/// dictionaries), then repeats and entries without arguments left out.
fn firewalld_order(config: &DirectConfig) -> DirectConfig {
    effective(&DirectConfig {
        chains: grouped(&config.chains, |c| (c.ipv.clone(), c.table.clone())),
        rules: grouped(&config.rules, |r| {
            (r.ipv.clone(), r.table.clone(), r.chain.clone())
        }),
        passthroughs: grouped(&config.passthroughs, |p| p.ipv.clone()),
    })
}

// ---------------------------------------------------------------------------------------
// (a) arguments survive direct.xml

proptest! {
    #![proptest_config(config(400))]

    /// firewalld's `joinArgs` and `splitArgs` are inverse for any arguments (newlines
    /// included: inside single quotes they are plain characters).
    #[test]
    fn shell_quoting_round_trips(args in vec(attribute_value(), 0..6)) {
        prop_assert_eq!(split_args(&join_args(&args)), Ok(args));
    }

    /// Text without quotes or backslashes is split by a shortcut; the same text followed
    /// by an empty quoted argument goes through the full state machine, which must agree.
    #[test]
    fn unquoted_text_splits_like_quoted_text(text in "[a-z#$;\u{a0}\u{b}\u{c}ü日 \t\r\n-]{0,20}") {
        let mut want = split_args(&text).unwrap();
        want.push(String::new());
        prop_assert_eq!(split_args(&format!("{text} ''")), Ok(want));
    }

    /// A rule's chain, priority and arguments come back from a written file unchanged.
    #[test]
    fn a_rule_survives_render_and_parse(rule in any_rule()) {
        let config = DirectConfig { rules: vec![rule.clone()], ..DirectConfig::default() };
        let text = render(&config);
        let document = parse(&text).map_err(|e| TestCaseError::fail(format!("{e}\n{text}")))?;
        prop_assert_eq!(document.entries().len(), 1);
        prop_assert_eq!(document.config().rules, vec![rule]);
    }

    /// The same for a passthrough, and for a chain (only attributes, all characters).
    #[test]
    fn passthroughs_and_chains_survive_render_and_parse(
        (ipv, table) in ipv_table(),
        chain in attribute_value(),
        args in vec(printable_arg(), 1..6),
    ) {
        let config = DirectConfig {
            chains: vec![DirectChain { ipv: ipv.clone(), table, chain }],
            rules: Vec::new(),
            passthroughs: vec![Passthrough { ipv, args }],
        };
        let text = render(&config);
        let document = parse(&text).map_err(|e| TestCaseError::fail(format!("{e}\n{text}")))?;
        prop_assert_eq!(document.config(), config);
    }

    /// What a file does to newlines: each newline (and carriage return, alone or before a
    /// newline) inside an argument comes back as one space, as firewalld reads it.
    #[test]
    fn newlines_in_arguments_come_back_as_spaces(
        args in vec(
            vec(prop_oneof![printable_arg(), select(&["\n", "\r", "\r\n"][..]).prop_map(String::from)], 1..4)
                .prop_map(|parts| parts.concat()),
            1..4,
        ),
    ) {
        let rule = DirectRule {
            ipv: "ipv4".into(),
            table: "filter".into(),
            chain: "INPUT".into(),
            priority: 0,
            args: args.clone(),
        };
        let text = render(&DirectConfig { rules: vec![rule], ..DirectConfig::default() });
        let document = parse(&text).map_err(|e| TestCaseError::fail(format!("{e}\n{text}")))?;
        let want: Vec<String> = args
            .iter()
            .map(|a| a.replace("\r\n", " ").replace(['\r', '\n'], " "))
            .collect();
        prop_assert_eq!(&document.config().rules[0].args, &want);
    }
}

// ---------------------------------------------------------------------------------------
// (b) whatever the writer writes, the reader reads back

proptest! {
    #![proptest_config(config(300))]

    #[test]
    fn render_output_always_parses_back_to_its_config(config in pooled_config()) {
        let text = render(&config);
        let document = parse(&text).map_err(|e| TestCaseError::fail(format!("{e}\n{text}")))?;
        let read = document.config();
        prop_assert_eq!(&read, &firewalld_order(&config));
        // Without repeats and already grouped, the configuration comes back as it was.
        let canonical = firewalld_order(&config);
        prop_assert_eq!(parse(&render(&canonical)).unwrap().config(), canonical.clone());
        // Writing what was read gives the same bytes: firewalld's writer is a fixpoint.
        prop_assert_eq!(render(&read), text);
        // The lenient reader agrees with the strict one on a valid file.
        let lenient = direct_xml::parse_lenient(&render(&canonical));
        prop_assert!(lenient.problems.is_empty() && lenient.complete);
        prop_assert_eq!(lenient.entries.len(), document.entries().len());
    }
}

// ---------------------------------------------------------------------------------------
// (c) with_owned keeps every foreign byte

/// How one file is laid out: its newline, blanks and comments.
#[derive(Clone, Debug)]
struct Layout {
    /// 0: `\n`, 1: `\r\n`, 2: both, alternating (a file edited on two systems).
    newlines: u8,
    bom: bool,
    declaration: bool,
    /// Between the children (and around them); each is whitespace, possibly a comment.
    gaps: Vec<String>,
    /// Per element: the attribute separators and which quote each attribute uses.
    separators: Vec<String>,
    double_quotes: Vec<bool>,
    cdata: Vec<bool>,
    /// Rotation of the attribute order, per element.
    rotation: Vec<usize>,
}

fn layout() -> impl Strategy<Value = Layout> {
    let gap = vec(
        prop_oneof![
            4 => select(&["\n  ", "\n", "\n\n    ", " ", "\t", "\n\t", "  \n  ", ""][..])
                .prop_map(String::from),
            1 => "[a-zA-Z0-9 ,.:;'\"<>&/=]{0,12}".prop_map(|c| format!("<!--{c}-->")),
            1 => Just("<!-- <rule ipv=\"ipv4\">-j KUMA_MESH_X</rule> -->".to_string()),
        ],
        1..3,
    )
    .prop_map(|parts| parts.concat());
    (
        0u8..3,
        prop::bool::weighted(0.1),
        any::<bool>(),
        vec(gap, 16),
        vec(
            select(&[" ", "  ", "\n    ", "\t", " \n "][..]).prop_map(String::from),
            16,
        ),
        vec(any::<bool>(), 16),
        vec(any::<bool>(), 16),
        vec(0usize..4, 16),
    )
        .prop_map(
            |(newlines, bom, declaration, gaps, separators, double_quotes, cdata, rotation)| {
                Layout {
                    newlines,
                    bom,
                    declaration,
                    gaps,
                    separators,
                    double_quotes,
                    cdata,
                    rotation,
                }
            },
        )
}

/// An attribute value escaped for `quote`: `&`, `<` and the quote as references, tabs,
/// newlines and carriage returns as character references (literal ones would be read as
/// spaces).
fn escape_attribute(value: &str, quote: char) -> String {
    let mut out = String::new();
    for c in value.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '\t' => out.push_str("&#9;"),
            '\n' => out.push_str("&#10;"),
            '\r' => out.push_str("&#xD;"),
            '"' if quote == '"' => out.push_str("&quot;"),
            '\'' if quote == '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}

/// The text of a rule or passthrough as a person might write it: arguments quoted one by
/// one, separated by runs of blanks, as escaped text or as CDATA.
fn element_text(args: &[String], separator: &str, cdata: bool) -> String {
    let words: Vec<String> = args
        .iter()
        .map(|a| join_args(std::slice::from_ref(a)))
        .collect();
    // Blanks only: a newline inside the text is fine for firewalld, a separator it is.
    let blank = if separator.contains('\n') {
        " \n   "
    } else {
        separator
    };
    let text = words.join(blank);
    if cdata && !text.contains("]]>") {
        format!("<![CDATA[{text}]]>")
    } else {
        text.replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
    }
}

/// Writes `entries` as a hand-made file in `layout` (never with a self-closing root, which
/// `with_owned` expands on purpose).
fn hand_written(entries: &[ForeignEntry], layout: &Layout) -> String {
    let mut out = String::new();
    if layout.bom {
        out.push('\u{feff}');
    }
    if layout.declaration {
        out.push_str("<?xml version=\"1.0\" encoding=\"utf-8\"?>\n");
    }
    out.push_str(&layout.gaps[0].replace('\n', ""));
    out.push_str("<direct>");
    for (i, entry) in entries.iter().enumerate() {
        let k = i % 16;
        out.push_str(&layout.gaps[(i + 1) % 16]);
        let quote = if layout.double_quotes[k] { '"' } else { '\'' };
        let mut attributes: Vec<(&str, String)> = match entry {
            ForeignEntry::Chain(c) => vec![
                ("ipv", c.ipv.clone()),
                ("table", c.table.clone()),
                ("chain", c.chain.clone()),
            ],
            ForeignEntry::Rule(r) => vec![
                ("ipv", r.ipv.clone()),
                ("table", r.table.clone()),
                ("chain", r.chain.clone()),
                ("priority", r.priority.to_string()),
            ],
            ForeignEntry::Passthrough(p) => vec![("ipv", p.ipv.clone())],
        };
        let rotation = layout.rotation[k] % attributes.len();
        attributes.rotate_left(rotation);
        let attributes: String = attributes
            .iter()
            .map(|(name, value)| {
                format!(
                    "{}{name}={quote}{}{quote}",
                    layout.separators[k],
                    escape_attribute(value, quote)
                )
            })
            .collect();
        match entry {
            ForeignEntry::Chain(_) if layout.cdata[k] => {
                out.push_str(&format!("<chain{attributes}></chain>"))
            }
            ForeignEntry::Chain(_) => out.push_str(&format!("<chain{attributes}/>")),
            ForeignEntry::Rule(r) => out.push_str(&format!(
                "<rule{attributes}>{}</rule>",
                element_text(&r.args, &layout.separators[k], layout.cdata[k])
            )),
            ForeignEntry::Passthrough(p) => out.push_str(&format!(
                "<passthrough{attributes}>{}</passthrough>",
                element_text(&p.args, &layout.separators[k], layout.cdata[k])
            )),
        }
    }
    out.push_str(&layout.gaps[(entries.len() + 1) % 16]);
    out.push_str("</direct>");
    out.push_str(&layout.gaps[(entries.len() + 2) % 16]);
    out.push('\n');
    match layout.newlines {
        1 => out.replace('\n', "\r\n"),
        2 => out
            .split('\n')
            .enumerate()
            .map(|(i, line)| {
                if i % 2 == 1 {
                    format!("\r\n{line}")
                } else if i > 0 {
                    format!("\n{line}")
                } else {
                    line.to_string()
                }
            })
            .collect(),
        _ => out,
    }
}

#[derive(Clone, Debug)]
enum ForeignEntry {
    Chain(DirectChain),
    Rule(DirectRule),
    Passthrough(Passthrough),
}

impl ForeignEntry {
    fn is_owned(&self) -> bool {
        match self {
            ForeignEntry::Chain(c) => c.is_owned(),
            ForeignEntry::Rule(r) => r.is_owned(),
            ForeignEntry::Passthrough(p) => p.is_owned(),
        }
    }
}

fn foreign_entries() -> impl Strategy<Value = Vec<ForeignEntry>> {
    pooled_config().prop_map(|config| {
        let mut entries: Vec<ForeignEntry> = Vec::new();
        let mut chains = config.chains.into_iter();
        let mut rules = config.rules.into_iter();
        let mut passthroughs = config.passthroughs.into_iter();
        // Interleave the kinds, as hand-edited files do.
        loop {
            let before = entries.len();
            entries.extend(chains.next().map(ForeignEntry::Chain));
            entries.extend(rules.next().map(ForeignEntry::Rule));
            entries.extend(rules.next().map(ForeignEntry::Rule));
            entries.extend(passthroughs.next().map(ForeignEntry::Passthrough));
            if entries.len() == before {
                break;
            }
        }
        entries.retain(|e| !e.is_owned());
        entries
    })
}

/// Entries of ours: chains, rules in our chains or with our comment, passthroughs with
/// our comment.
fn owned_config() -> impl Strategy<Value = DirectConfig> {
    let ours_chain = prop_oneof![
        select(
            &[
                "KUMA_MESH_INBOUND",
                "KUMA_MESH_OUTBOUND",
                "KUMA_MESH_INBOUND_REDIRECT"
            ][..]
        )
        .prop_map(String::from),
        "KUMA_MESH_[A-Z_]{1,6}",
    ]
    .boxed();
    let ipv = select(&["ipv4", "ipv6"][..]).prop_map(String::from).boxed();
    let table = select(&["raw", "mangle", "nat"][..])
        .prop_map(String::from)
        .boxed();
    let comment = printable_arg()
        .prop_map(|c| format!("{COMMENT_PREFIX}/{c}"))
        .boxed();
    let chain = (ipv.clone(), table.clone(), ours_chain.clone())
        .prop_map(|(ipv, table, chain)| DirectChain { ipv, table, chain });
    let rule = (
        ipv.clone(),
        table,
        prop_oneof![ours_chain.clone(), Just("OUTPUT".to_string())],
        priority(),
        vec(printable_arg(), 0..3),
        comment.clone(),
        ours_chain,
    )
        .prop_map(|(ipv, table, chain, priority, mut args, comment, target)| {
            if !is_owned_chain(&chain) {
                // In a built-in chain: ours by comment or by jumping to our chain.
                if args.len() % 2 == 0 {
                    args.extend(["-m".into(), "comment".into(), "--comment".into(), comment]);
                } else {
                    args.extend(["-j".into(), target]);
                }
            }
            DirectRule {
                ipv,
                table: table.clone(),
                chain,
                priority,
                args,
            }
        });
    let passthrough =
        (ipv, vec(printable_arg(), 0..3), comment).prop_map(|(ipv, mut args, comment)| {
            args.extend(["--comment".to_string(), comment]);
            Passthrough { ipv, args }
        });
    (vec(chain, 0..4), vec(rule, 0..6), vec(passthrough, 0..2)).prop_map(
        |(chains, rules, passthroughs)| DirectConfig {
            chains,
            rules,
            passthroughs,
        },
    )
}

proptest! {
    #![proptest_config(config(300))]

    #[test]
    fn with_owned_keeps_every_foreign_byte(
        entries in foreign_entries(),
        layout in layout(),
        desired in owned_config(),
    ) {
        let file = hand_written(&entries, &layout);
        let document = parse(&file)
            .map_err(|e| TestCaseError::fail(format!("generated file does not parse: {e}\n{file}")))?;
        let foreign = document.config();
        prop_assert!(foreign.owned().is_empty());
        let empty = DirectConfig::default();
        prop_assert_eq!(document.with_owned(&empty), file.clone());

        let with_ours = document.with_owned(&desired);
        let reparsed = parse(&with_ours)
            .map_err(|e| TestCaseError::fail(format!("{e}\n{with_ours}")))?;
        prop_assert_eq!(reparsed.config().owned(), effective(&desired));
        prop_assert_eq!(reparsed.owned_config(), effective(&desired));
        prop_assert_eq!(reparsed.config().foreign(), foreign);
        // Removing ours again gives the file back byte for byte; writing the same entries
        // again changes nothing.
        prop_assert_eq!(reparsed.with_owned(&empty), file.clone());
        prop_assert_eq!(reparsed.with_owned(&desired), with_ours.clone());
        // Other entries of ours replace these ones, and the file still comes back.
        let other = DirectConfig { chains: desired.chains.iter().rev().cloned().collect(), ..DirectConfig::default() };
        let replaced = parse(&reparsed.with_owned(&other)).unwrap();
        prop_assert_eq!(replaced.with_owned(&empty), file);
    }
}

/// Edits that break a direct.xml in different ways (or not at all): what
/// `check_successor_agrees_with_parse` puts somewhere into a file.
const EDITS: &[&str] = &[
    "",
    " ",
    "\n",
    "x",
    "ü",
    "\u{1}",
    "<",
    ">",
    "&",
    "&amp;",
    "&nope;",
    "]]>",
    "'",
    "\"",
    "<!--",
    "-->",
    "<!-- c -->",
    "<![CDATA[ ]]>",
    "<?xml version=\"1.0\"?>",
    "<!DOCTYPE direct>",
    "<direct>",
    "</direct>",
    "</rule>",
    "<chain ipv=\"ipv4\" table=\"filter\" chain=\"X\"/>",
    "<chain ipv=\"ipv4\" table=\"broute\" chain=\"X\"/>",
    "<rule ipv=\"ipv4\" table=\"filter\" chain=\"X\" priority=\"1\">-j ACCEPT</rule>",
    "<rule ipv=\"ipv4\" table=\"filter\" chain=\"X\" priority=\"1\">'open</rule>",
    "<passthrough ipv=\"eb\">-L</passthrough>",
];

proptest! {
    #![proptest_config(config(300))]

    /// `check_successor` reads only the end of a text it can: its verdict (and error) on
    /// any text, whatever was changed where, is parse's.
    #[test]
    fn check_successor_agrees_with_parse(
        entries in foreign_entries(),
        layout in layout(),
        desired in owned_config(),
        at in any::<prop::sample::Index>(),
        removed in 0usize..3,
        edit in select(EDITS),
    ) {
        let file = hand_written(&entries, &layout);
        let document = parse(&file).unwrap();
        let mut text = document.with_owned(&desired);
        // `removed` characters at a random place replaced by `edit`.
        let boundaries: Vec<usize> = text.char_indices().map(|(i, _)| i).chain([text.len()]).collect();
        let start = boundaries[at.index(boundaries.len())];
        let end = boundaries[(at.index(boundaries.len()) + removed).min(boundaries.len() - 1)];
        text.replace_range(start..end, edit);
        prop_assert_eq!(document.check_successor(&text), parse(&text).map(|_| ()), "{}", text);
    }
}

// ---------------------------------------------------------------------------------------
// (d) plans

/// Applies `changes` to `config` as firewalld does, one at a time; an addition of what is
/// there or a removal of what is not is an error (firewalld answers ALREADY_ENABLED or
/// NOT_ENABLED: a correct plan never asks for either).
fn apply(config: &DirectConfig, changes: &[Change]) -> Result<DirectConfig, String> {
    fn add<T: PartialEq + Clone + std::fmt::Debug>(
        list: &mut Vec<T>,
        item: &T,
    ) -> Result<(), String> {
        if list.contains(item) {
            return Err(format!("adds {item:?}, which is there already"));
        }
        list.push(item.clone());
        Ok(())
    }
    fn remove<T: PartialEq + std::fmt::Debug>(list: &mut Vec<T>, item: &T) -> Result<(), String> {
        match list.iter().position(|x| x == item) {
            Some(i) => {
                list.remove(i);
                Ok(())
            }
            None => Err(format!("removes {item:?}, which is not there")),
        }
    }
    let mut out = config.clone();
    for change in changes {
        match change {
            Change::AddChain(c) => add(&mut out.chains, c)?,
            Change::RemoveChain(c) => remove(&mut out.chains, c)?,
            Change::AddRule(r) => add(&mut out.rules, r)?,
            Change::RemoveRule(r) => remove(&mut out.rules, r)?,
            Change::AddPassthrough(p) => add(&mut out.passthroughs, p)?,
            Change::RemovePassthrough(p) => remove(&mut out.passthroughs, p)?,
        }
    }
    Ok(out)
}

/// Like [`apply`], with firewalld's answers counted as done (as the backends count
/// `ALREADY_ENABLED` and `NOT_ENABLED`).
fn apply_tolerantly(config: &DirectConfig, changes: &[Change]) -> DirectConfig {
    let mut out = config.clone();
    for change in changes {
        let _ = apply(&out, std::slice::from_ref(change)).map(|next| out = next);
    }
    out
}

fn as_set<T: Clone + Eq + std::hash::Hash>(items: &[T]) -> HashSet<T> {
    items.iter().cloned().collect()
}

/// The ordering rules of a plan, checked on its steps: a chain exists before rules go into
/// it and goes away after them; jumps out of built-in chains are removed first and added
/// last.
fn check_order(changes: &[Change]) -> Result<(), String> {
    let position = |wanted: &dyn Fn(&Change) -> bool| changes.iter().position(wanted);
    for (i, change) in changes.iter().enumerate() {
        match change {
            Change::AddRule(rule) if is_owned_chain(&rule.chain) => {
                let chain_added = position(
                    &|c| matches!(c, Change::AddChain(ch) if ch.ipv == rule.ipv && ch.table == rule.table && ch.chain == rule.chain),
                );
                if chain_added.is_some_and(|at| at > i) {
                    return Err(format!("{change} comes before its chain is added"));
                }
            }
            Change::AddRule(_) => {
                let later = changes[i + 1..].iter().find(|c| match c {
                    Change::AddChain(_) => true,
                    Change::AddRule(r) => is_owned_chain(&r.chain),
                    _ => false,
                });
                if let Some(later) = later {
                    return Err(format!("jump {change} is added before {later}"));
                }
            }
            Change::RemoveRule(rule) if !is_owned_chain(&rule.chain) => {
                let earlier = changes[..i].iter().find(|c| match c {
                    Change::RemoveChain(_) => true,
                    Change::RemoveRule(r) => is_owned_chain(&r.chain),
                    _ => false,
                });
                if let Some(earlier) = earlier {
                    return Err(format!("jump {change} is removed after {earlier}"));
                }
            }
            Change::RemoveChain(chain) => {
                let later = changes[i + 1..].iter().find(|c| {
                    matches!(c, Change::RemoveRule(r) if r.ipv == chain.ipv && r.table == chain.table && r.chain == chain.chain)
                });
                if let Some(later) = later {
                    return Err(format!("{change} comes before {later}"));
                }
            }
            _ => {}
        }
    }
    Ok(())
}

/// Current: foreign and owned entries mixed, each entry once (firewalld keeps no repeats).
fn current_config() -> impl Strategy<Value = DirectConfig> {
    (pooled_config(), owned_config(), any::<u64>()).prop_map(|(foreign, owned, seed)| {
        let foreign = effective(&foreign);
        let owned = effective(&owned);
        // Interleave deterministically from the seed.
        fn mix<T: Clone>(a: &[T], b: &[T], mut seed: u64) -> Vec<T> {
            let (mut i, mut j, mut out) = (0, 0, Vec::new());
            while i < a.len() || j < b.len() {
                seed = seed
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                if j == b.len() || (i < a.len() && seed >> 63 == 1) {
                    out.push(a[i].clone());
                    i += 1;
                } else {
                    out.push(b[j].clone());
                    j += 1;
                }
            }
            out
        }
        let config = DirectConfig {
            chains: mix(&foreign.chains, &owned.chains, seed),
            rules: mix(&foreign.rules, &owned.rules, seed ^ 1),
            passthroughs: mix(&foreign.passthroughs, &owned.passthroughs, seed ^ 2),
        };
        effective(&config)
    })
}

proptest! {
    #![proptest_config(config(400))]

    #[test]
    fn a_plan_reaches_the_desired_entries_and_then_plans_nothing(
        current in current_config(),
        desired in owned_config(),
        // Sometimes desire exactly what is there, or nothing (uninstall).
        pick in 0u8..6,
    ) {
        let desired = match pick {
            0 => current.owned(),
            1 => DirectConfig::default(),
            _ => effective(&desired),
        };
        let plan = direct::diff(&current, &desired);
        check_order(&plan.changes).map_err(TestCaseError::fail)?;
        let after = apply(&current, &plan.changes).map_err(TestCaseError::fail)?;

        let ours = after.owned();
        prop_assert_eq!(as_set(&ours.chains), as_set(&desired.chains));
        prop_assert_eq!(as_set(&ours.rules), as_set(&desired.rules));
        prop_assert_eq!(as_set(&ours.passthroughs), as_set(&desired.passthroughs));
        prop_assert_eq!(after.foreign(), current.foreign());

        let again = direct::diff(&after, &desired);
        prop_assert!(again.is_empty(), "second plan: {:?}", again.changes);
        prop_assert_eq!(
            again.unchanged,
            desired.chains.len() + desired.rules.len() + desired.passthroughs.len()
        );
        // Applying the plan a second time (firewalld answering ALREADY_ENABLED and
        // NOT_ENABLED) changes nothing more.
        let once = apply_tolerantly(&current, &plan.changes);
        prop_assert_eq!(apply_tolerantly(&once, &plan.changes), once.clone());
        prop_assert_eq!(&once, &after);
        // Every change undone in reverse gives the current configuration back, as a set.
        let undo: Vec<Change> = plan.changes.iter().rev().map(Change::inverse).collect();
        let undone = apply(&after, &undo).map_err(TestCaseError::fail)?;
        prop_assert_eq!(as_set(&undone.chains), as_set(&current.chains));
        prop_assert_eq!(as_set(&undone.rules), as_set(&current.rules));
        prop_assert_eq!(as_set(&undone.passthroughs), as_set(&current.passthroughs));
    }
}

// ---------------------------------------------------------------------------------------
// translate: priorities

/// Rules for a few chains of one table, with arguments from a small pool so that equal
/// rules, and rules equal to ones in place, occur.
fn rules_strategy(with_comments: bool) -> impl Strategy<Value = Vec<Rule>> {
    let rule = (
        select(
            &[
                "OUTPUT",
                "PREROUTING",
                "KUMA_MESH_OUTBOUND",
                "KUMA_MESH_INBOUND",
            ][..],
        ),
        prop_oneof![3 => Just(Position::Append), 1 => (1u32..5).prop_map(Position::Insert)],
        select(&["a", "b", "c", "d", "e"][..]),
        vec(
            select(&["-p", "tcp", "--dport", "22", "-j", "RETURN"][..]),
            0..3,
        ),
        any::<bool>(),
    )
        .prop_map(move |(chain, position, comment, args, has_comment)| Rule {
            chain: chain.to_string(),
            position,
            comment: (with_comments || has_comment).then(|| format!("{COMMENT_PREFIX}/{comment}")),
            args: args
                .into_iter()
                .map(|a| Arg::Value(a.to_string()))
                .collect(),
        });
    vec(rule, 0..14)
}

fn ruleset_strategy(with_comments: bool) -> impl Strategy<Value = Ruleset> {
    (
        rules_strategy(with_comments),
        rules_strategy(with_comments),
        any::<bool>(),
    )
        .prop_map(|(nat, mangle, dual)| {
            let tables = vec![
                Table {
                    name: TableName::Nat,
                    chains: vec!["KUMA_MESH_OUTBOUND".into(), "KUMA_MESH_INBOUND".into()],
                    rules: nat,
                },
                Table {
                    name: TableName::Mangle,
                    chains: vec!["KUMA_MESH_OUTBOUND".into()],
                    rules: mangle,
                },
            ];
            let mut families = vec![FamilyRules {
                family: Family::V4,
                tables: tables.clone(),
            }];
            if dual {
                families.push(FamilyRules {
                    family: Family::V6,
                    tables,
                });
            }
            Ruleset { families }
        })
}

/// Each chain's rules in the order the kernel ends up with (every `-A` and `-I n`
/// replayed), computed independently of the library.
fn final_order(rules: &[Rule]) -> Vec<(String, Vec<Vec<String>>)> {
    let mut chains: Vec<(String, Vec<Vec<String>>)> = Vec::new();
    for rule in rules {
        let index = match chains.iter().position(|(c, _)| *c == rule.chain) {
            Some(i) => i,
            None => {
                chains.push((rule.chain.clone(), Vec::new()));
                chains.len() - 1
            }
        };
        let list = &mut chains[index].1;
        let spec = rule.spec(false);
        match rule.position {
            Position::Append => list.push(spec),
            Position::Insert(n) => list.insert((n as usize - 1).min(list.len()), spec),
        }
    }
    chains
}

/// Rules in place: some of the wanted rules at arbitrary priorities, plus others.
fn current_rules(ruleset: &Ruleset, priorities: &[i32], picks: &[bool]) -> DirectConfig {
    let mut config = DirectConfig::default();
    let mut k = 0;
    for family in &ruleset.families {
        for table in &family.tables {
            for (chain, specs) in final_order(&table.rules) {
                for spec in specs {
                    k += 1;
                    if !picks[k % picks.len()] {
                        continue;
                    }
                    config.rules.push(DirectRule {
                        ipv: family.family.ipv().to_string(),
                        table: table.name.as_str().to_string(),
                        chain: chain.clone(),
                        priority: priorities[k % priorities.len()],
                        args: spec,
                    });
                }
            }
        }
    }
    config
}

/// (ipv, table, chain) → (priority, args) in the order translate gave them.
/// (ipv, table, chain).
type ChainKey = (String, String, String);
/// A chain's rules as (priority, args).
type ChainRules = Vec<(i32, Vec<String>)>;

fn by_chain(config: &DirectConfig) -> Vec<(ChainKey, ChainRules)> {
    let mut chains: Vec<(ChainKey, ChainRules)> = Vec::new();
    for rule in &config.rules {
        let key = (rule.ipv.clone(), rule.table.clone(), rule.chain.clone());
        match chains.iter_mut().find(|(k, _)| *k == key) {
            Some((_, list)) => list.push((rule.priority, rule.args.clone())),
            None => chains.push((key, vec![(rule.priority, rule.args.clone())])),
        }
    }
    chains
}

proptest! {
    #![proptest_config(config(300))]

    #[test]
    fn translate_numbers_each_chain_in_its_final_order(
        ruleset in ruleset_strategy(false),
        priorities in vec(priority(), 1..8),
        picks in vec(any::<bool>(), 1..8),
    ) {
        let current = current_rules(&ruleset, &priorities, &picks);
        let out = direct::translate(&ruleset, &current);
        let chains = by_chain(&out);
        for (key, rules) in &chains {
            let numbers: Vec<i32> = rules.iter().map(|(p, _)| *p).collect();
            prop_assert!(
                numbers.windows(2).all(|w| w[0] < w[1]),
                "{:?}: priorities {:?} are not strictly increasing", key, numbers
            );
        }
        // The rules of each chain, in priority order, are the chain's final order.
        for family in &ruleset.families {
            let ipv = family.family.ipv();
            for table in &family.tables {
                for (chain, specs) in final_order(&table.rules) {
                    let key = (ipv.to_string(), table.name.as_str().to_string(), chain.clone());
                    let got: Vec<Vec<String>> = chains
                        .iter()
                        .find(|(k, _)| *k == key)
                        .map(|(_, rules)| rules.iter().map(|(_, a)| a.clone()).collect())
                        .unwrap_or_default();
                    prop_assert_eq!(got, specs, "{:?}", key);
                }
                for chain in &table.chains {
                    let declared = DirectChain {
                        ipv: ipv.to_string(),
                        table: table.name.as_str().to_string(),
                        chain: chain.clone(),
                    };
                    let present = out.chains.contains(&declared);
                    prop_assert!(present, "{:?} is missing", declared);
                }
            }
        }
    }

    /// With every rule ours (comments on, as by default): a re-run keeps every priority,
    /// and one more rule adds exactly that rule and moves nothing else.
    #[test]
    fn translate_is_stable_across_runs_and_one_more_rule_moves_nothing(
        ruleset in ruleset_strategy(true),
        priorities in vec(priority(), 1..8),
        picks in vec(any::<bool>(), 1..8),
        table_index in 0usize..2,
        position in prop_oneof![Just(Position::Append), (1u32..6).prop_map(Position::Insert)],
        chain in select(&["OUTPUT", "KUMA_MESH_OUTBOUND"][..]),
    ) {
        let current = current_rules(&ruleset, &priorities, &picks);
        let first = direct::translate(&ruleset, &current);
        let second = direct::translate(&ruleset, &first);
        prop_assert_eq!(&second, &first);
        prop_assert!(direct::diff(&first, &second).is_empty());

        // Fresh numbers leave room between neighbours (kept arbitrary ones may not).
        let first = direct::translate(&ruleset, &DirectConfig::default());

        let mut more = ruleset.clone();
        for family in &mut more.families {
            family.tables[table_index].rules.push(Rule {
                chain: chain.to_string(),
                position,
                comment: Some(format!("{COMMENT_PREFIX}/the new one")),
                args: vec![Arg::Value("--new".into())],
            });
        }
        let grown = direct::translate(&more, &first);
        let added: Vec<&DirectRule> = grown.rules.iter().filter(|r| !first.rules.contains(r)).collect();
        prop_assert_eq!(added.len(), more.families.len(), "{:#?}", added);
        prop_assert!(first.rules.iter().all(|r| grown.rules.contains(r)));
        let plan = direct::diff(&first, &grown);
        prop_assert_eq!(plan.added(), more.families.len());
        prop_assert_eq!(plan.removed(), 0);
    }
}
