//! `translate`: kumactl's dry-run text (plain and `--verbose`, IPv4 and IPv6 sections, `-I`)
//! and `iptables-save` output become direct entries whose per-chain order is the order
//! iptables-restore gives; `--merge` keeps every foreign byte of a direct.xml; bad input is
//! one line with its line number and exit status 2; and a translated dry run, loaded by a
//! real firewalld, puts exactly the raw backend's rules into the kernel.

mod common;

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use common::firewalld::{with_firewalld, BACKENDS};
use common::{expected, ours, Sandbox, BIN, DRY_RUN_SETS as SETS};
use tproxy_firewalld::format::direct_xml;
use tproxy_firewalld::quoting::restore_quote;

/// The flags of tests/expected/dry-run/dualstack-redirect-dns.txt (both families, `-I`).
const DUALSTACK: &[&str] = &[
    "--kuma-dp-user",
    "kuma-dp",
    "--redirect-dns",
    "--exclude-inbound-ports",
    "22",
];

/// One entry of `translate --output json`.
#[derive(serde::Deserialize, Debug, Clone, PartialEq)]
#[serde(deny_unknown_fields)]
struct Entry {
    kind: String,
    ipv: String,
    table: Option<String>,
    chain: Option<String>,
    priority: Option<i32>,
    args: Option<Vec<String>>,
    /// The same shape as `inspect --output json`.
    owned: bool,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Entries {
    entries: Vec<Entry>,
}

/// Runs `tproxy-firewalld translate <args>` (no root, no namespace: it reads and prints).
fn translate(args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new(BIN)
        .arg("translate")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run tproxy-firewalld");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

fn translate_ok(args: &[&str], stdin: &str) -> String {
    let output = translate(args, stdin);
    assert!(
        output.status.success(),
        "translate {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

fn translate_json(args: &[&str], stdin: &str) -> Vec<Entry> {
    let mut full = vec!["--output", "json"];
    full.extend_from_slice(args);
    let text = translate_ok(&full, stdin);
    common::json_shape::assert_documented("translate", &text);
    let entries = serde_json::from_str::<Entries>(&text)
        .unwrap_or_else(|e| panic!("{e}: {text}"))
        .entries;
    for entry in &entries {
        // Ours: not eb, and a KUMA_MESH_* chain, a rule in or jumping to one, or our comment.
        let in_our_chain = entry
            .chain
            .as_deref()
            .is_some_and(|c| c.starts_with("KUMA_MESH_"));
        let our_args =
            entry.args.iter().flatten().any(|a| {
                a.starts_with("kuma/mesh/transparent/proxy") || a.starts_with("KUMA_MESH_")
            });
        let ours = entry.ipv != "eb" && (in_our_chain || our_args);
        assert_eq!(entry.owned, ours, "{entry:?}");
    }
    entries
}

/// The text of a `--comment` argument in an iptables-save rule line (ours have no quotes).
fn saved_comment(line: &str) -> String {
    let (_, rest) = line
        .split_once("--comment ")
        .unwrap_or_else(|| panic!("no comment in {line}"));
    match rest.strip_prefix('"') {
        Some(quoted) => quoted.split('"').next().unwrap().to_string(),
        None => rest.split(' ').next().unwrap().to_string(),
    }
}

/// (table, chain) → comments of its rules in kernel order; and (table) → user chains.
type Order = BTreeMap<(String, String), Vec<String>>;
type Chains = BTreeMap<String, Vec<String>>;

fn kernel_order(save: &str) -> (Order, Chains) {
    let (mut order, mut chains) = (Order::new(), Chains::new());
    let mut table = String::new();
    for line in save.lines() {
        if let Some(name) = line.strip_prefix('*') {
            table = name.trim().to_string();
        } else if let Some(declaration) = line.strip_prefix(':') {
            let mut words = declaration.split(' ');
            let (name, policy) = (words.next().unwrap(), words.next().unwrap());
            if policy == "-" {
                chains
                    .entry(table.clone())
                    .or_default()
                    .push(name.to_string());
            }
        } else if let Some(rule) = line.strip_prefix("-A ") {
            let chain = rule.split(' ').next().unwrap();
            order
                .entry((table.clone(), chain.to_string()))
                .or_default()
                .push(saved_comment(rule));
        }
    }
    for list in chains.values_mut() {
        list.sort();
    }
    (order, chains)
}

/// The same view of translated entries of one ipv: rules by priority, chains sorted.
fn translated_order(entries: &[Entry], ipv: &str) -> (Order, Chains) {
    let (mut order, mut chains) = (Order::new(), Chains::new());
    let mut rules: Vec<&Entry> = Vec::new();
    for entry in entries.iter().filter(|e| e.ipv == ipv) {
        let table = entry.table.clone().unwrap();
        match entry.kind.as_str() {
            "chain" => chains
                .entry(table)
                .or_default()
                .push(entry.chain.clone().unwrap()),
            "rule" => rules.push(entry),
            other => panic!("unexpected kind {other}"),
        }
    }
    rules.sort_by_key(|r| r.priority.unwrap());
    for rule in rules {
        let args = rule.args.as_ref().unwrap();
        let at = args.iter().position(|a| a == "--comment").unwrap();
        order
            .entry((rule.table.clone().unwrap(), rule.chain.clone().unwrap()))
            .or_default()
            .push(args[at + 1].clone());
    }
    for list in chains.values_mut() {
        list.sort();
    }
    (order, chains)
}

/// Splits dry-run text into (ipv, section text) by its `### IPvN ###` headers.
fn sections(text: &str) -> Vec<(&'static str, String)> {
    let mut out: Vec<(&'static str, String)> = Vec::new();
    for line in text.lines() {
        match line.trim() {
            "### IPv4 ###" => out.push(("ipv4", String::new())),
            "### IPv6 ###" => out.push(("ipv6", String::new())),
            _ => {
                let (_, section) = out.last_mut().expect("text before the first header");
                section.push_str(line);
                section.push('\n');
            }
        }
    }
    out
}

fn program(ipv: &str, tool: &str) -> String {
    match ipv {
        "ipv4" => format!("iptables{tool}"),
        _ => format!("ip6tables{tool}"),
    }
}

/// Feeds `text` to `iptables-restore --noflush` (or ip6tables-restore) in the sandbox.
fn restore(sandbox: &Sandbox, ipv: &str, text: &str) {
    let restore = program(ipv, "-restore");
    let mut child = sandbox
        .command(&[&restore, "--noflush"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "{restore} failed: {}\n{text}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Empties the tables our rules use, in both families.
fn reset(sandbox: &Sandbox) {
    for ipv in ["ipv4", "ipv6"] {
        let tool = program(ipv, "");
        for table in ["raw", "nat", "mangle", "filter"] {
            sandbox.ok(&[&tool, "-t", table, "-F"]);
            sandbox.ok(&[&tool, "-t", table, "-X"]);
        }
    }
}

/// The per-chain order translate gives for `text` equals the kernel's after
/// iptables-restore ran the same text, in every family section.
fn assert_translation_matches_restore(sandbox: &Sandbox, what: &str, text: &str) {
    let entries = translate_json(&[], text);
    reset(sandbox);
    let sections = sections(text);
    assert!(!sections.is_empty(), "{what}: no section");
    for (ipv, section) in &sections {
        restore(sandbox, ipv, section);
    }
    for ipv in ["ipv4", "ipv6"] {
        let kernel = kernel_order(&sandbox.save(&program(ipv, "-save")));
        let translated = translated_order(&entries, ipv);
        assert_eq!(
            translated, kernel,
            "{what}: {ipv} differs from iptables-restore"
        );
        if sections.iter().any(|(s, _)| s == &ipv) {
            assert!(!translated.0.is_empty(), "{what}: no {ipv} rules");
        }
    }
    // Priorities count in steps of ten from 0 in every chain.
    let mut chains: BTreeMap<(&str, &str, &str), Vec<i32>> = BTreeMap::new();
    for rule in entries.iter().filter(|e| e.kind == "rule") {
        chains
            .entry((
                &rule.ipv,
                rule.table.as_deref().unwrap(),
                rule.chain.as_deref().unwrap(),
            ))
            .or_default()
            .push(rule.priority.unwrap());
    }
    for (chain, mut priorities) in chains {
        priorities.sort();
        let fresh: Vec<i32> = (0..priorities.len() as i32).map(|i| i * 10).collect();
        assert_eq!(priorities, fresh, "{what}: {chain:?}");
    }
}

#[test]
fn dry_runs_translate_to_the_order_iptables_restore_gives() {
    let Some(sandbox) = common::sandbox("dry_runs_translate_to_the_order_iptables_restore_gives")
    else {
        return;
    };
    let mut cases: Vec<(String, Vec<&str>, &str)> = SETS
        .iter()
        .map(|(name, flags)| {
            let mut args = vec!["--ip-family-mode", "ipv4"];
            args.extend_from_slice(flags);
            (name.to_string(), args, *name)
        })
        .collect();
    cases.push((
        "dualstack-redirect-dns".to_string(),
        DUALSTACK.to_vec(),
        "dualstack-redirect-dns",
    ));
    for (name, flags, file) in cases {
        let plain = expected(&format!("dry-run/{file}.txt"));
        assert_translation_matches_restore(&sandbox, &name, &plain);

        let mut args = vec!["install", "--dry-run", "--verbose"];
        args.extend_from_slice(&flags);
        let verbose = sandbox.tproxy_ok(&args);
        assert!(verbose.contains("--append "), "{name}: {verbose}");
        assert_translation_matches_restore(&sandbox, &format!("{name} --verbose"), &verbose);
    }
}

#[test]
fn inserts_and_the_ipv6_section_follow_the_final_order() {
    // No root needed: the known answer for the DNS set's OUTPUT chain.
    let entries = translate_json(&[], &expected("dry-run/dns.txt"));
    let (order, chains) = translated_order(&entries, "ipv4");
    let output: Vec<&str> = order[&("nat".to_string(), "OUTPUT".to_string())]
        .iter()
        .map(|c| c.trim_start_matches("kuma/mesh/transparent/proxy/"))
        .collect();
    assert_eq!(
        output,
        [
            "return early for DNS traffic from kuma-dp",
            "redirect all DNS requests to the kuma-dp DNS proxy (listening on port 12345)",
            "allow applications to perform DNS queries over TCP to port 53 without mesh redirection (only traffic not owned by UID 0 (kuma-dp user))",
            "redirect outbound TCP traffic to our custom chain for processing",
        ]
    );
    assert_eq!(
        chains["nat"],
        [
            "KUMA_MESH_INBOUND",
            "KUMA_MESH_INBOUND_REDIRECT",
            "KUMA_MESH_OUTBOUND",
            "KUMA_MESH_OUTBOUND_REDIRECT"
        ]
    );
    assert!(translated_order(&entries, "ipv6").0.is_empty());

    let dualstack = translate_ok(&[], &expected("dry-run/dualstack-redirect-dns.txt"));
    assert!(dualstack.contains("<chain ipv=\"ipv6\" table=\"nat\" chain=\"KUMA_MESH_OUTBOUND\"/>"));
    assert!(dualstack.contains(
        "<rule ipv=\"ipv6\" table=\"nat\" chain=\"OUTPUT\" priority=\"10\">-m comment --comment 'kuma/mesh/transparent/proxy/redirect DNS requests to fd00::53"
    ));
    // The file reads the same from a path as from stdin, and --ipv does not override headers.
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/expected/dry-run/dualstack-redirect-dns.txt");
    assert_eq!(translate_ok(&[path.to_str().unwrap()], ""), dualstack);
    assert_eq!(
        translate_ok(
            &["--ipv", "ipv6", "-"],
            &expected("dry-run/dualstack-redirect-dns.txt")
        ),
        dualstack
    );
}

/// Tables (by name) with their user chains and rule lines as iptables-save lists them;
/// tables with neither are left out.
fn saved_tables(save: &str) -> String {
    let mut tables: Vec<(String, Vec<String>)> = Vec::new();
    for line in common::normalise_counters(save).lines() {
        if let Some(name) = line.strip_prefix('*') {
            tables.push((name.to_string(), Vec::new()));
        } else if line.starts_with("-A ") || (line.starts_with(':') && line.ends_with(" -")) {
            tables.last_mut().unwrap().1.push(line.to_string());
        }
    }
    tables.retain(|(_, lines)| !lines.is_empty());
    tables.sort();
    tables
        .iter()
        .map(|(name, lines)| format!("*{name}\n{}\n", lines.join("\n")))
        .collect()
}

/// Restore text for the translated entries of `ipv`: each table's chains, then its rules
/// chain by chain in priority order.
fn restore_text(entries: &[Entry], ipv: &str) -> String {
    let mut tables: Vec<(String, Vec<String>, Vec<&Entry>)> = Vec::new();
    for entry in entries.iter().filter(|e| e.ipv == ipv) {
        let table = entry.table.clone().unwrap();
        let index = match tables.iter().position(|(t, _, _)| *t == table) {
            Some(index) => index,
            None => {
                tables.push((table, Vec::new(), Vec::new()));
                tables.len() - 1
            }
        };
        match entry.kind.as_str() {
            "chain" => tables[index].1.push(entry.chain.clone().unwrap()),
            _ => tables[index].2.push(entry),
        }
    }
    let mut text = String::new();
    for (table, chains, rules) in tables {
        text.push_str(&format!("*{table}\n"));
        for chain in chains {
            text.push_str(&format!(":{chain} - [0:0]\n"));
        }
        for rule in rules {
            let args: Vec<String> = rule
                .args
                .as_ref()
                .unwrap()
                .iter()
                .map(|a| restore_quote(a))
                .collect();
            text.push_str(&format!(
                "-A {} {}\n",
                rule.chain.as_ref().unwrap(),
                args.join(" ")
            ));
        }
        text.push_str("COMMIT\n");
    }
    text
}

#[test]
fn iptables_save_output_round_trips_through_the_kernel() {
    let Some(host) = common::sandbox("iptables_save_output_round_trips_through_the_kernel") else {
        return;
    };
    let mut args = vec!["install"];
    args.extend_from_slice(DUALSTACK);
    host.tproxy_ok(&args);
    // Foreign content: a user chain in filter, a quoted comment with quotes and a backslash.
    for tool in ["iptables", "ip6tables"] {
        host.ok(&[tool, "-t", "filter", "-N", "LOGDROP"]);
        host.ok(&[
            tool,
            "-t",
            "filter",
            "-A",
            "LOGDROP",
            "-m",
            "comment",
            "--comment",
            "say \"hi\" \\ there",
            "-j",
            "DROP",
        ]);
        host.ok(&[
            tool, "-t", "filter", "-I", "INPUT", "1", "-p", "tcp", "--dport", "2222", "-j",
            "LOGDROP",
        ]);
        host.ok(&[
            tool, "-t", "nat", "-I", "OUTPUT", "1", "-p", "tcp", "--dport", "9", "-j", "RETURN",
        ]);
    }
    let copy = Sandbox::new();
    for (ipv, flag) in [("ipv4", "ipv4"), ("ipv6", "ipv6")] {
        let save = host.ok(&[&program(ipv, "-save")]);
        let entries = translate_json(&["--ipv", flag], &save);
        assert!(entries.iter().all(|e| e.ipv == ipv), "{entries:?}");
        // Built-in chains are not declared; user chains, ours and foreign, are.
        let chains: Vec<&str> = entries
            .iter()
            .filter(|e| e.kind == "chain")
            .map(|e| e.chain.as_deref().unwrap())
            .collect();
        assert!(chains.contains(&"LOGDROP") && chains.contains(&"KUMA_MESH_OUTBOUND"));
        assert!(!chains
            .iter()
            .any(|c| ["INPUT", "OUTPUT", "PREROUTING"].contains(c)));
        let logdrop = entries
            .iter()
            .find(|e| e.kind == "rule" && e.chain.as_deref() == Some("LOGDROP"))
            .unwrap();
        assert!(
            logdrop
                .args
                .as_ref()
                .unwrap()
                .contains(&"say \"hi\" \\ there".to_string()),
            "{logdrop:?}"
        );
        // Loading the entries in priority order gives the same tables back.
        restore(&copy, ipv, &restore_text(&entries, ipv));
        let again = copy.ok(&[&program(ipv, "-save")]);
        assert_eq!(saved_tables(&again), saved_tables(&save), "{ipv}");
    }
}

const FOREIGN_MIXED: &str = include_str!("../xml-fixtures/foreign-mixed.xml");

fn fixture(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("xml-fixtures")
        .join(name)
        .to_str()
        .unwrap()
        .to_string()
}

#[test]
fn merge_keeps_every_foreign_byte_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("direct.xml");
    std::fs::write(&path, FOREIGN_MIXED).unwrap();
    let path = path.to_str().unwrap();
    let dry_run = expected("dry-run/dualstack-redirect-dns.txt");

    let merged = translate_ok(&["--merge", path], &dry_run);
    assert_eq!(
        std::fs::read_to_string(path).unwrap(),
        FOREIGN_MIXED,
        "the file changed"
    );
    assert!(merged.contains("<chain ipv=\"ipv6\" table=\"nat\" chain=\"KUMA_MESH_INBOUND\"/>"));
    let document = direct_xml::parse(&merged).expect("the merged file parses");
    assert_eq!(document.with_owned(&Default::default()), FOREIGN_MIXED);
    // Ours are exactly the plain translation's entries; the file's are all still there.
    let plain = direct_xml::parse(&translate_ok(&[], &dry_run))
        .unwrap()
        .config();
    assert_eq!(document.config().owned(), plain);
    assert_eq!(
        document.config().foreign(),
        direct_xml::parse(FOREIGN_MIXED).unwrap().config().foreign()
    );
    // Merging again into the merged file gives the same bytes.
    std::fs::write(path, &merged).unwrap();
    assert_eq!(translate_ok(&["--merge", path], &dry_run), merged);

    // JSON: what firewalld would load from the merged file, foreign entries included.
    std::fs::write(path, FOREIGN_MIXED).unwrap();
    let entries = translate_json(&["--merge", path], &dry_run);
    assert!(entries
        .iter()
        .any(|e| e.chain.as_deref() == Some("LOGDROP")));
    assert!(entries
        .iter()
        .any(|e| e.kind == "passthrough" && e.ipv == "eb"));
    assert!(entries
        .iter()
        .any(|e| e.ipv == "ipv6" && e.chain.as_deref() == Some("KUMA_MESH_OUTBOUND")));

    // Foreign entries of iptables-save input are added only when the file lacks them
    // (a rule counts as present with the same arguments at any priority).
    let save = "*filter\n:INPUT ACCEPT [0:0]\n:LOGDROP - [0:0]\n:NEW - [0:0]\n\
                -A LOGDROP -j LOG --log-prefix \"dropped: \"\n-A NEW -j ACCEPT\nCOMMIT\n";
    let merged = translate_ok(&["--merge", path], save);
    let added = &merged[..merged.rfind("</direct>").unwrap()];
    assert_eq!(merged.matches("chain=\"LOGDROP\"/>").count(), 1, "{merged}");
    assert_eq!(merged.matches("--log-prefix").count(), 1, "{merged}");
    assert!(
        added.ends_with(
            "  <chain ipv=\"ipv4\" table=\"filter\" chain=\"NEW\"/>\n  \
         <rule ipv=\"ipv4\" table=\"filter\" chain=\"NEW\" priority=\"0\">-j ACCEPT</rule>\n"
        ),
        "{merged}"
    );

    // A malformed file: an error with line and column, exit 2, nothing printed.
    for name in ["malformed-truncated.xml", "malformed-bad-priority.xml"] {
        let output = translate(&["--merge", &fixture(name)], &dry_run);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{name}: {stderr}");
        assert!(output.stdout.is_empty(), "{name} printed something");
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(
            stderr.contains("line ") && stderr.contains("column "),
            "{stderr}"
        );
    }
}

#[test]
fn bad_input_is_one_line_with_its_line_number_and_exit_2() {
    let cases: &[(&str, &str)] = &[
        (
            "*nat\n-A OUTPUT -j RETURN\n-D OUTPUT 1\nCOMMIT\n",
            "stdin:3: -D (delete)",
        ),
        (
            "### IPv4 ###\n\n* nat\n-F OUTPUT\nCOMMIT\n",
            "stdin:4: -F (flush)",
        ),
        ("*nat\n-P OUTPUT DROP\nCOMMIT\n", "stdin:2: -P (policy)"),
        (
            "*nat\n:OUTPUT ACCEPT [0:0]\niptables -t nat -A OUTPUT -j RETURN\nCOMMIT\n",
            "stdin:3: unexpected `iptables`",
        ),
        (
            "*nat\n-A OUTPUT -m comment --comment \"open -j RETURN\nCOMMIT\n",
            "stdin:2: unterminated double quote",
        ),
        (
            "*nat\n-A OUTPUT -j A\n-I OUTPUT 3 -j B\nCOMMIT\n",
            "stdin:3: -I OUTPUT 3: index of insertion too big",
        ),
        (
            "*nat\n-A KUMA_MESH_OUTBOUND -j RETURN\nCOMMIT\n",
            "stdin:2: -A KUMA_MESH_OUTBOUND: chain KUMA_MESH_OUTBOUND is neither built-in",
        ),
        (
            "*nat\n-N KUMA_MESH_OUTBOUND\n",
            "stdin:1: table nat has no COMMIT",
        ),
        (
            "-A OUTPUT -j RETURN\n",
            "stdin:1: `-A OUTPUT -j RETURN` outside a table",
        ),
        ("*broute\nCOMMIT\n", "stdin:1: unknown table `broute`"),
        ("", "stdin: no table found"),
    ];
    for (text, message) in cases {
        let output = translate(&[], text);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{text:?}: {stderr}");
        assert!(output.stdout.is_empty(), "{text:?}");
        assert_eq!(stderr.lines().count(), 1, "{text:?}: {stderr}");
        assert!(
            stderr.starts_with(&format!("tproxy-firewalld: error: {message}")),
            "{text:?}: {stderr}"
        );
    }
    // A file's errors name the file.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rules.txt");
    std::fs::write(&path, "*nat\n\n-Z\nCOMMIT\n").unwrap();
    let output = translate(&[path.to_str().unwrap()], "");
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr)
        .contains(&format!("{}:3: -Z (zero counters)", path.display())));
    let output = translate(&[dir.path().join("missing.txt").to_str().unwrap()], "");
    assert_eq!(output.status.code(), Some(2));
}

#[test]
fn a_translated_dry_run_loaded_by_firewalld_gives_the_raw_backend_rules() {
    let test = "a_translated_dry_run_loaded_by_firewalld";
    let Some(reference) = common::sandbox_with(test, &["firewalld", "dbus-daemon", "firewall-cmd"])
    else {
        return;
    };
    // The dry run as root in a namespace (features probed, IPv6 present), then the raw
    // backend's kernel rules for the same flags.
    let mut args = vec!["install", "--dry-run"];
    args.extend_from_slice(DUALSTACK);
    let dry_run = reference.tproxy_ok(&args);
    assert!(
        dry_run.contains("### IPv6 ###") && dry_run.contains("-I OUTPUT 2 "),
        "{dry_run}"
    );
    let mut args = vec!["install"];
    args.extend_from_slice(DUALSTACK);
    reference.tproxy_ok(&args);
    let want = ["iptables-save", "ip6tables-save"].map(|p| ours(&reference.ok(&[p]), false));
    drop(reference);
    assert!(want[1].contains("-A OUTPUT "), "no IPv6 rules: {}", want[1]);

    let xml = translate_ok(&[], &dry_run);
    let rules = xml.matches("<rule ").count();
    for backend in BACKENDS {
        let Some(mut world) = with_firewalld(&format!("{test} ({backend})"), backend) else {
            return;
        };
        world.stop();
        std::fs::write(world.direct_xml_path(), &xml).unwrap();
        world.start();
        for (program, want) in ["iptables-save", "ip6tables-save"].iter().zip(&want) {
            let have = ours(&world.ok(&[program]), true);
            assert!(
                *want == have,
                "{backend}: {program} differs from the raw backend:\n--- want\n{want}\n--- have\n{have}\n{}",
                world.log()
            );
        }
        let runtime = world.firewall_cmd_ok(&["--direct", "--get-all-rules"]);
        assert_eq!(runtime.lines().count(), rules, "{backend}: {runtime}");
        assert_eq!(
            world.direct_xml(),
            xml,
            "{backend}: firewalld rewrote direct.xml"
        );
    }
}
