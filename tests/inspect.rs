//! `inspect`: every fixture in `xml-fixtures/` read as a file (exit status, each problem's
//! line and column, the entries in kernel order), the JSON shape field by field,
//! `--check-iptables` in a sandbox, and `--source runtime|permanent` against a real
//! firewalld after `install --store-firewalld` plus foreign rules added with firewall-cmd.
//! The apply-time fixtures are also loaded into a real firewalld, to check that it fails
//! or runs as inspect says.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::firewalld::{with_firewalld, BACKENDS};
use common::BIN;
use serde_json::Value;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("xml-fixtures")
}

/// Fixture file names, sorted, malformed ones or the others.
fn fixture_names(malformed: bool) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(fixtures())
        .unwrap()
        .map(|entry| entry.unwrap().file_name().into_string().unwrap())
        .filter(|name| name.ends_with(".xml") && name.starts_with("malformed-") == malformed)
        .collect();
    names.sort();
    names
}

/// `inspect` on the host: reading files touches neither netfilter nor firewalld. Runs in
/// the fixtures directory so that paths in the output are the bare file names.
fn inspect(args: &[&str]) -> Output {
    Command::new(BIN)
        .arg("inspect")
        .args(args)
        .current_dir(fixtures())
        .env("DBUS_SYSTEM_BUS_ADDRESS", "unix:path=/nonexistent/bus")
        .output()
        .expect("run tproxy-firewalld")
}

fn stdout(output: &Output) -> String {
    String::from_utf8(output.stdout.clone()).unwrap()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// The JSON document in `output`, checked against README.md's description.
fn json(output: &Output) -> Value {
    common::json_shape::assert_documented("inspect", &stdout(output))
}

/// (line, column, part of the message) of each problem of a JSON report.
fn problems(report: &Value) -> Vec<(u64, u64, String)> {
    report["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["line"].as_u64().unwrap(),
                p["column"].as_u64().unwrap(),
                p["message"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// Checks `report`'s problems against `want` (line, column, part of the message), in order.
fn assert_problems(name: &str, report: &Value, want: &[(u64, u64, &str)]) {
    let got = problems(report);
    let matches = got.len() == want.len()
        && got
            .iter()
            .zip(want)
            .all(|((l, c, m), (wl, wc, wm))| l == wl && c == wc && m.contains(wm));
    assert!(matches, "{name}: got {got:#?}\nwant {want:#?}");
}

/// The line and column of each malformed fixture's one problem, and part of its message.
const MALFORMED: &[(&str, u64, u64, &str)] = &[
    (
        "malformed-bad-ipv.xml",
        4,
        21,
        "passthrough: invalid ipv 'ipv5'",
    ),
    (
        "malformed-bad-priority.xml",
        4,
        61,
        "rule: invalid priority 'first'",
    ),
    (
        "malformed-bad-table.xml",
        4,
        28,
        "chain: invalid table 'broute' for ipv4",
    ),
    ("malformed-doctype.xml", 2, 1, "DOCTYPE is not allowed"),
    ("malformed-empty.xml", 1, 1, "no <direct> element"),
    ("malformed-mismatched-tag.xml", 4, 71, "not well-formed XML"),
    (
        "malformed-missing-attribute.xml",
        5,
        3,
        "rule: missing attribute priority",
    ),
    (
        "malformed-truncated.xml",
        5,
        1,
        "<rule> (line 4) is not closed",
    ),
    ("malformed-two-roots.xml", 5, 1, "second root element"),
    (
        "malformed-unbalanced-quote.xml",
        4,
        3,
        "No closing quotation",
    ),
    (
        "malformed-unknown-attribute.xml",
        4,
        64,
        "rule: unexpected attribute family",
    ),
    (
        "malformed-unknown-element.xml",
        4,
        3,
        "unexpected element <service>",
    ),
    (
        "malformed-wrong-root.xml",
        3,
        1,
        "root element must be <direct>, not <zone>",
    ),
];

#[test]
fn every_malformed_fixture_is_reported_at_its_line_and_column() {
    let listed: Vec<&str> = MALFORMED.iter().map(|m| m.0).collect();
    assert_eq!(
        fixture_names(true),
        listed,
        "every malformed-*.xml needs its place in MALFORMED"
    );
    for &(name, line, column, message) in MALFORMED {
        let output = inspect(&["--file", name]);
        assert_eq!(output.status.code(), Some(1), "{name}: {}", stderr(&output));
        let text = stdout(&output);
        assert!(
            text.contains(&format!("\n  {name}:{line}:{column}: ")),
            "{name}:\n{text}"
        );
        assert!(text.contains(message), "{name}:\n{text}");

        let output = inspect(&["--file", name, "--output", "json"]);
        assert_eq!(output.status.code(), Some(1), "{name}");
        let report = json(&output);
        assert_eq!(report["valid"], false, "{name}");
        assert_problems(name, &report, &[(line, column, message)]);
        // The chain before the problem is still read (except where nothing is).
        let entries = report["entries"].as_array().unwrap();
        let readable = !matches!(
            name,
            "malformed-doctype.xml" | "malformed-empty.xml" | "malformed-wrong-root.xml"
        );
        assert_eq!(entries.len(), usize::from(readable), "{name}: {entries:?}");
    }
}

#[test]
fn a_file_with_many_problems_gets_them_all() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("direct.xml");
    std::fs::write(
        &path,
        r#"<?xml version="1.0" encoding="utf-8"?>
<direct>
  <chain ipv="ipv4" table="filter" chain="audit_in"/>
  <rule ipv="ipv4" table="filter" chain="audit_in" priority="first">-j DROP</rule>
  <rule ipv="ipv4" table="filter" chain="audit_in" priority="0" family="ipv4">-j DROP</rule>
  <passthrough ipv="ipv5">-t nat -L</passthrough>
  <rule ipv="ipv4" table="broute" chain="BROUTING" priority="0">-j DROP</rule>
  <service name="ssh"/>
  <rule ipv="ipv4" table="filter" chain="audit_in">-j DROP</rule>
  <rule ipv="ipv4" table="filter" chain="audit_in" priority="1">-m comment --comment 'it's broken' -j DROP</rule>
  <rule ipv="ipv4" table="filter" chain="INPUT" priority="0">-j audit_in</rule>
  <rule ipv="ipv4" table="filter" chain="INPUT" priority="0">-j audit_out</rule>
</direct>
"#,
    )
    .unwrap();
    let output = inspect(&["--file", path.to_str().unwrap(), "--output", "json"]);
    assert_eq!(output.status.code(), Some(1));
    let report = json(&output);
    assert_problems(
        "many",
        &report,
        &[
            (4, 62, "rule: invalid priority 'first'"),
            (5, 65, "rule: unexpected attribute family"),
            (6, 21, "passthrough: invalid ipv 'ipv5'"),
            (7, 27, "rule: invalid table 'broute' for ipv4"),
            (8, 3, "unexpected element <service>"),
            (9, 3, "rule: missing attribute priority"),
            (10, 3, "rule: cannot split the arguments: No closing quotation"),
            (
                12,
                3,
                "rule ipv4 filter INPUT 0: jumps to undeclared chain or unknown target audit_out",
            ),
            (
                12,
                3,
                "rule ipv4 filter INPUT 0: has the same priority (0) as another rule in ipv4 filter INPUT: firewalld does not guarantee their order; see line 11",
            ),
        ],
    );
    // What could be read: the chain and the two INPUT rules, in kernel order.
    let entries: Vec<String> = report["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| format!("{} {} {}", e["kind"], e["chain"], e["args"]))
        .collect();
    assert_eq!(
        entries,
        [
            r#""rule" "INPUT" ["-j","audit_in"]"#,
            r#""rule" "INPUT" ["-j","audit_out"]"#,
            r#""chain" "audit_in" null"#,
        ]
    );
}

/// A problem as expected: line, column, part of the message.
type Expected = (u64, u64, &'static str);

/// The problems of every other fixture (line, column, part of the message); none means
/// firewalld loads and applies it as written.
const OTHERS: &[(&str, &[Expected])] = &[
    (
        "apply-fails-builtin-chain.xml",
        &[(
            3,
            3,
            "chain ipv4 filter INPUT: declares INPUT, a built-in chain of ipv4 filter: firewalld refuses it (BUILTIN_CHAIN) and fails to start",
        )],
    ),
    // Valid for the loader; only iptables-restore --test rejects it (see below).
    ("apply-fails-iptables-rejects.xml", &[]),
    (
        "apply-fails-undeclared-chain.xml",
        &[(
            4,
            3,
            "rule ipv4 filter audit_in 0: chain audit_in is neither built-in in ipv4 filter nor declared: firewalld fails to start",
        )],
    ),
    (
        "apply-fails-undeclared-jump.xml",
        &[(
            5,
            3,
            "rule ipv4 filter audit_in 0: jumps to undeclared chain or unknown target audit_log",
        )],
    ),
    (
        "apply-skips-refused-passthrough.xml",
        &[(
            4,
            3,
            "passthrough ipv4: firewalld refuses `-F` in a passthrough (INVALID_PASSTHROUGH)",
        )],
    ),
    (
        "apply-unordered-equal-priorities.xml",
        &[(
            5,
            3,
            "rule ipv4 filter INPUT 0: has the same priority (0) as another rule in ipv4 filter INPUT: firewalld does not guarantee their order; see line 3",
        )],
    ),
    ("firewalld-empty.xml", &[]),
    (
        "firewalld-grouped.xml",
        &[
            (10, 3, "contains a double quote"),
            (15, 3, "passthrough ipv4: firewalld refuses `-L`"),
            (16, 3, "passthrough eb: firewalld refuses `-L`"),
        ],
    ),
    (
        "firewalld-quoting.xml",
        &[
            (3, 3, "chain name `say\"hi` contains a double quote"),
            (4, 3, "contains a double quote"),
            (5, 3, "chain name \"tab\\there\" contains a blank"),
            (6, 3, "chain name `say\"hi` contains a double quote"),
            (7, 3, "chain name `say\"hi` contains a double quote"),
        ],
    ),
    (
        "firewalld-rewrote-foreign-mixed.xml",
        &[(12, 3, "passthrough eb: firewalld refuses `-L`")],
    ),
    (
        "firewalld-written.xml",
        &[
            (
                8,
                3,
                "rule ipv4 filter INPUT -5: argument `it's <test> & \"more\"` contains a double quote",
            ),
            (13, 3, "passthrough eb: firewalld refuses `-L`"),
        ],
    ),
    (
        "foreign-fails-double-quote.xml",
        &[(
            3,
            3,
            "rule ipv4 filter INPUT 0: argument `say \"hi\"` contains a double quote: firewalld 1.3 writes it unescaped into its iptables-restore input",
        )],
    ),
    ("foreign-live.xml", &[]),
    (
        "foreign-mixed.xml",
        &[
            (17, 3, "passthrough eb: firewalld refuses `-L`"),
            (
                21,
                3,
                "rule ipv4 nat OUTPUT 1: has no arguments: firewalld ignores it",
            ),
        ],
    ),
    (
        "ignored-repeats-and-empty.xml",
        &[
            (
                5,
                3,
                "chain ipv4 filter audit_in: repeats an earlier chain: firewalld ignores the repeat; see line 3",
            ),
            (
                6,
                3,
                "rule ipv4 filter INPUT 0: repeats an earlier rule: firewalld ignores the repeat; see line 4",
            ),
            (
                7,
                3,
                "rule ipv4 filter audit_in 0: has no arguments: firewalld ignores it",
            ),
            (
                9,
                3,
                "passthrough ipv6: repeats an earlier passthrough: firewalld ignores the repeat; see line 8",
            ),
        ],
    ),
];

#[test]
fn every_other_fixture_gets_exactly_its_problems() {
    let listed: Vec<&str> = OTHERS.iter().map(|o| o.0).collect();
    assert_eq!(
        fixture_names(false),
        listed,
        "every fixture needs its problems in OTHERS"
    );
    for &(name, want) in OTHERS {
        let output = inspect(&["--file", name, "--output", "json"]);
        let report = json(&output);
        assert_problems(name, &report, want);
        assert_eq!(report["valid"], want.is_empty(), "{name}");
        assert_eq!(report["source"], name);
        let code = if want.is_empty() { 0 } else { 1 };
        assert_eq!(
            output.status.code(),
            Some(code),
            "{name}: {}",
            stderr(&output)
        );

        // The text output has the same problems, each as `file:line:column: message`.
        let output = inspect(&["--file", name]);
        assert_eq!(output.status.code(), Some(code), "{name}");
        let text = stdout(&output);
        for (line, column, message) in want {
            let place = format!("  {name}:{line}:{column}: ");
            assert!(
                text.lines()
                    .any(|l| l.starts_with(&place) && l.contains(message)),
                "{name}: no {place}{message}:\n{text}"
            );
        }
        let summary = text.lines().last().unwrap();
        assert!(summary.starts_with("ours: 0 chains, 0 rules, 0 passthroughs; foreign: "));
        let verdict = match want.len() {
            0 => "no problems".to_string(),
            1 => "1 problem".to_string(),
            n => format!("{n} problems"),
        };
        assert!(
            summary.ends_with(&format!("; {verdict}")),
            "{name}: {summary}"
        );
    }
}

#[test]
fn a_good_file_is_shown_in_kernel_order() {
    let output = inspect(&["--file", "foreign-live.xml"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert_eq!(
        stdout(&output),
        r#"source: foreign-live.xml
ipv4 nat OUTPUT (built-in)
  foreign  rule 0: -p udp --dport 5353 -j RETURN  (line 11)
ipv4 filter INPUT (built-in)
  foreign  rule 0: -j audit_in  (line 10)
ipv4 filter audit_in
  foreign  chain  (line 4)
  foreign  rule -5: -p tcp --dport 8443 -m comment --comment 'it'"'"'s & <odd>' -j ACCEPT  (line 8)
ipv6 mangle PREROUTING (built-in)
  foreign  rule 1: -j MARKS  (line 13)
ipv6 mangle MARKS
  foreign  chain  (line 5)
  foreign  rule 3: -j MARK --set-mark 7  (line 12)
eb filter INPUT (built-in)
  foreign  rule 0: -p ARP -j ACCEPT  (line 14)
passthroughs
  foreign  ipv4: -t raw -A PREROUTING -p udp --dport 9999 -j NOTRACK  (line 15)
  foreign  eb: -t filter -A FORWARD -p IPv4 -j ACCEPT  (line 16)
  foreign  ipv6: -t filter -A INPUT -p tcp --dport 2222 -j ACCEPT  (line 17)

ours: 0 chains, 0 rules, 0 passthroughs; foreign: 2 chains, 6 rules, 3 passthroughs; no problems
"#
    );
    let output = inspect(&["--file", "firewalld-empty.xml"]);
    assert_eq!(output.status.code(), Some(0));
    assert_eq!(
        stdout(&output),
        "source: firewalld-empty.xml\nno entries\n\nours: 0 chains, 0 rules, 0 passthroughs; foreign: 0 chains, 0 rules, 0 passthroughs; no problems\n"
    );
}

/// Ours and foreign entries, rules given out of order, one problem.
const MIXED: &str = r#"<?xml version="1.0" encoding="utf-8"?>
<direct>
  <chain ipv="ipv4" table="nat" chain="KUMA_MESH_OUTBOUND"/>
  <rule ipv="ipv4" table="nat" chain="OUTPUT" priority="10">-p tcp -m comment --comment 'kuma/mesh/transparent/proxy/redirect outbound TCP traffic' -j KUMA_MESH_OUTBOUND</rule>
  <rule ipv="ipv4" table="nat" chain="KUMA_MESH_OUTBOUND" priority="0">-p tcp -j REDIRECT --to-ports 15001</rule>
  <rule ipv="ipv4" table="nat" chain="OUTPUT" priority="0">-p udp --dport 53 -j DNS_LOG</rule>
  <passthrough ipv="ipv6">-t raw -A OUTPUT -m comment --comment kuma/mesh/transparent/proxy/notrack -j CT --notrack</passthrough>
</direct>
"#;

#[test]
fn json_has_the_documented_shape() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("direct.xml");
    std::fs::write(&path, MIXED).unwrap();
    let shown = path.to_str().unwrap();
    let output = inspect(&["--file", shown, "--output", "json"]);
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    let report = json(&output);

    let keys = |v: &Value| -> Vec<String> {
        let mut keys: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
        keys.sort();
        keys
    };
    assert_eq!(keys(&report), ["entries", "problems", "source", "valid"]);
    assert_eq!(report["source"], shown);
    assert_eq!(report["valid"], false);

    let problems = report["problems"].as_array().unwrap();
    assert_eq!(problems.len(), 1);
    assert_eq!(keys(&problems[0]), ["column", "line", "message"]);
    assert_eq!(problems[0]["line"], 6);
    assert_eq!(problems[0]["column"], 3);
    assert_eq!(
        problems[0]["message"],
        "rule ipv4 nat OUTPUT 0: jumps to undeclared chain or unknown target DNS_LOG"
    );

    let entries = report["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 5);
    for entry in entries {
        assert_eq!(
            keys(entry),
            ["args", "chain", "ipv", "kind", "owned", "priority", "table"]
        );
    }
    // OUTPUT by priority (the foreign rule first), then our chain and its rule, then the
    // passthrough.
    assert_eq!(entries[0]["kind"], "rule");
    assert_eq!(entries[0]["ipv"], "ipv4");
    assert_eq!(entries[0]["table"], "nat");
    assert_eq!(entries[0]["chain"], "OUTPUT");
    assert_eq!(entries[0]["priority"], 0);
    assert_eq!(
        entries[0]["args"],
        serde_json::json!(["-p", "udp", "--dport", "53", "-j", "DNS_LOG"])
    );
    assert_eq!(entries[0]["owned"], false);

    assert_eq!(entries[1]["kind"], "rule");
    assert_eq!(entries[1]["chain"], "OUTPUT");
    assert_eq!(entries[1]["priority"], 10);
    assert_eq!(
        entries[1]["args"][5],
        "kuma/mesh/transparent/proxy/redirect outbound TCP traffic"
    );
    assert_eq!(entries[1]["owned"], true);

    assert_eq!(entries[2]["kind"], "chain");
    assert_eq!(entries[2]["ipv"], "ipv4");
    assert_eq!(entries[2]["table"], "nat");
    assert_eq!(entries[2]["chain"], "KUMA_MESH_OUTBOUND");
    assert!(entries[2]["priority"].is_null());
    assert!(entries[2]["args"].is_null());
    assert_eq!(entries[2]["owned"], true);

    assert_eq!(entries[3]["kind"], "rule");
    assert_eq!(entries[3]["chain"], "KUMA_MESH_OUTBOUND");
    assert_eq!(entries[3]["priority"], 0);
    assert_eq!(entries[3]["owned"], true);

    assert_eq!(entries[4]["kind"], "passthrough");
    assert_eq!(entries[4]["ipv"], "ipv6");
    assert!(entries[4]["table"].is_null());
    assert!(entries[4]["chain"].is_null());
    assert!(entries[4]["priority"].is_null());
    assert_eq!(entries[4]["args"][0], "-t");
    assert_eq!(entries[4]["args"].as_array().unwrap().len(), 11);
    assert_eq!(entries[4]["owned"], true);

    // The same as text.
    let output = inspect(&["--file", shown]);
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(
        stdout(&output),
        format!(
            r#"source: {shown}
ipv4 nat OUTPUT (built-in)
  foreign  rule 0: -p udp --dport 53 -j DNS_LOG  (line 6)
  ours     rule 10: -p tcp -m comment --comment 'kuma/mesh/transparent/proxy/redirect outbound TCP traffic' -j KUMA_MESH_OUTBOUND  (line 4)
ipv4 nat KUMA_MESH_OUTBOUND
  ours     chain  (line 3)
  ours     rule 0: -p tcp -j REDIRECT --to-ports 15001  (line 5)
passthroughs
  ours     ipv6: -t raw -A OUTPUT -m comment --comment kuma/mesh/transparent/proxy/notrack -j CT --notrack  (line 7)

problems:
  {shown}:6:3: rule ipv4 nat OUTPUT 0: jumps to undeclared chain or unknown target DNS_LOG

ours: 1 chain, 2 rules, 1 passthrough; foreign: 0 chains, 1 rule, 0 passthroughs; 1 problem
"#
        )
    );
}

#[test]
fn missing_unreadable_and_non_utf8_files() {
    // An explicit file that does not exist is a usage error.
    let output = inspect(&["--file", "no-such-file.xml"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr(&output).contains("--file no-such-file.xml: no such file"));
    assert!(stdout(&output).is_empty());

    // No direct.xml in the configuration directory: firewalld has no direct configuration.
    let dir = tempfile::tempdir().unwrap();
    let config_dir = dir.path().to_str().unwrap();
    let output = inspect(&["--firewalld-config-dir", config_dir, "--output", "json"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let report = json(&output);
    assert_eq!(report["valid"], true);
    assert_eq!(report["entries"], serde_json::json!([]));
    assert_eq!(
        report["source"],
        format!("{config_dir}/direct.xml").as_str()
    );
    let output = inspect(&["--firewalld-config-dir", config_dir]);
    assert!(stdout(&output).contains("absent: firewalld has no permanent direct configuration"));

    // The default file is direct.xml in that directory.
    std::fs::write(dir.path().join("direct.xml"), MIXED).unwrap();
    let output = inspect(&["--firewalld-config-dir", config_dir, "--output", "json"]);
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(json(&output)["entries"].as_array().unwrap().len(), 5);

    // Not UTF-8: a problem at the first bad byte.
    let latin1 = dir.path().join("latin1.xml");
    std::fs::write(
        &latin1,
        b"<direct>\n  <passthrough ipv=\"ipv4\">-A INPUT -m comment --comment caf\xe9 -j ACCEPT</passthrough>\n</direct>\n",
    )
    .unwrap();
    let output = inspect(&["--file", latin1.to_str().unwrap(), "--output", "json"]);
    assert_eq!(output.status.code(), Some(1));
    assert_problems(
        "latin1",
        &json(&output),
        &[(2, 60, "not valid UTF-8 (byte 0xE9)")],
    );

    // A directory cannot be read: an error, not a report.
    let output = inspect(&["--file", config_dir]);
    assert_eq!(output.status.code(), Some(1));
    assert!(stdout(&output).is_empty());
    assert!(
        stderr(&output).contains("not a regular file"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn check_iptables_names_the_rule_iptables_rejects() {
    let Some(sandbox) = common::sandbox("check_iptables") else {
        return;
    };
    let before = [
        sandbox.save("iptables-save"),
        sandbox.save("ip6tables-save"),
    ];
    let fixture = fixtures().join("apply-fails-iptables-rejects.xml");
    let fixture = fixture.to_str().unwrap();
    let output = sandbox.tproxy(&["inspect", "--check-iptables", "--file", fixture]);
    let text = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(1), "{text}{}", stderr(&output));
    let problems: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with(&format!("  {fixture}:")))
        .collect();
    assert_eq!(problems.len(), 1, "{text}");
    assert!(
        problems[0].starts_with(&format!(
            "  {fixture}:4:3: rule ipv4 filter OUTPUT 1: iptables"
        )),
        "{text}"
    );
    assert!(
        problems[0].contains("-restore --test rejects it: "),
        "{text}"
    );
    assert!(problems[0].contains("4294967295"), "{text}");

    // Without the flag the file is valid; valid files pass the check, ipv6 and eb included.
    let output = sandbox.tproxy(&["inspect", "--file", fixture]);
    assert_eq!(output.status.code(), Some(0));
    for name in ["foreign-live.xml", "firewalld-empty.xml"] {
        let path = fixtures().join(name);
        let output = sandbox.tproxy(&[
            "inspect",
            "--check-iptables",
            "--file",
            path.to_str().unwrap(),
        ]);
        assert_eq!(
            output.status.code(),
            Some(0),
            "{name}: {}{}",
            String::from_utf8_lossy(&output.stdout),
            stderr(&output)
        );
    }
    // A rule that already has a problem is not checked again.
    let path = fixtures().join("apply-fails-undeclared-jump.xml");
    let output = sandbox.tproxy(&[
        "inspect",
        "--check-iptables",
        "--output",
        "json",
        "--file",
        path.to_str().unwrap(),
    ]);
    assert_eq!(json(&output)["problems"].as_array().unwrap().len(), 1);

    // Without root iptables cannot check anything: an error, not a problem of the file.
    let bin = sandbox.copy_for_any_user(Path::new(BIN));
    let readable = sandbox.copy_for_any_user(Path::new(fixture));
    let output = sandbox
        .command_as(
            common::APP_UID,
            &[&bin, "inspect", "--check-iptables", "--file", &readable],
        )
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert!(output.stdout.is_empty());
    assert!(
        stderr(&output).contains("--check-iptables: ") && stderr(&output).contains("are you root?"),
        "{}",
        stderr(&output)
    );

    // --test changes nothing.
    let after = [
        sandbox.save("iptables-save"),
        sandbox.save("ip6tables-save"),
    ];
    assert_eq!(before, after);
}

#[test]
fn sources_need_a_running_firewalld() {
    let Some(sandbox) = common::sandbox("source_without_firewalld") else {
        return;
    };
    for source in ["runtime", "permanent"] {
        let output = sandbox.tproxy(&["inspect", "--source", source]);
        assert_eq!(output.status.code(), Some(1));
        let stderr = stderr(&output);
        assert!(
            stderr.contains(&format!("--source {source}: firewalld is not running")),
            "{stderr}"
        );
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(output.stdout.is_empty());
    }
    // --file and --source exclude each other.
    let output = sandbox.tproxy(&["inspect", "--source", "runtime", "--file", "x.xml"]);
    assert_eq!(output.status.code(), Some(2));
}

/// The entries of a JSON report that are (not) ours, as `kind chain args`.
fn entries_owned(report: &Value, owned: bool) -> Vec<String> {
    report["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["owned"] == owned)
        .map(|e| format!("{} {} {}", e["kind"], e["chain"], e["args"]))
        .collect()
}

#[test]
fn sources_show_our_entries_as_ours_and_others_as_foreign() {
    for backend in BACKENDS {
        let Some(world) = with_firewalld(&format!("inspect_sources ({backend})"), backend) else {
            return;
        };
        world.tproxy_ok(&[
            "install",
            "--kuma-dp-user",
            "kuma-dp",
            "--store-firewalld",
            "--redirect-dns",
        ]);
        world.firewall_cmd_ok(&[
            "--direct",
            "--add-rule",
            "ipv4",
            "filter",
            "INPUT",
            "0",
            "-p",
            "tcp",
            "--dport",
            "8443",
            "-j",
            "ACCEPT",
        ]);
        world.firewall_cmd_ok(&[
            "--permanent",
            "--direct",
            "--add-rule",
            "ipv4",
            "filter",
            "INPUT",
            "0",
            "-p",
            "tcp",
            "--dport",
            "8444",
            "-j",
            "ACCEPT",
        ]);

        for (source, foreign_port, other_port) in
            [("runtime", "8443", "8444"), ("permanent", "8444", "8443")]
        {
            let output = world.tproxy(&["inspect", "--source", source, "--output", "json"]);
            let what = format!("{backend} {source}");
            assert_eq!(output.status.code(), Some(0), "{what}: {}", stderr(&output));
            let report = json(&output);
            assert_eq!(report["source"], format!("firewalld:{source}").as_str());
            assert_eq!(report["valid"], true, "{what}: {report}");
            let ours = entries_owned(&report, true);
            let rules = ours.iter().filter(|e| e.starts_with("\"rule\"")).count();
            assert_eq!(
                rules,
                world.count_our_rules(source == "permanent"),
                "{what}: {ours:#?}"
            );
            assert!(
                ours.iter()
                    .any(|e| e.starts_with("\"chain\" \"KUMA_MESH_OUTBOUND\"")),
                "{what}: {ours:#?}"
            );
            let foreign = entries_owned(&report, false);
            assert_eq!(
                foreign,
                [format!(
                    r#""rule" "INPUT" ["-p","tcp","--dport","{foreign_port}","-j","ACCEPT"]"#
                )],
                "{what}"
            );
            assert!(!report.to_string().contains(other_port), "{what}");

            // The text output: D-Bus sources have no lines; the summary counts both.
            let output = world.tproxy(&["inspect", "--source", source, "--check-iptables"]);
            let text = stdout(&output);
            assert_eq!(
                output.status.code(),
                Some(0),
                "{what}: {text}{}",
                stderr(&output)
            );
            assert!(text.starts_with("source: firewalld "), "{what}: {text}");
            assert!(
                text.lines()
                    .next()
                    .unwrap()
                    .ends_with(&format!("({backend} backend), {source} configuration")),
                "{what}: {text}"
            );
            assert!(!text.contains("(line "), "{what}: {text}");
            assert!(
                text.contains(&format!(
                    "ipv4 filter INPUT (built-in)\n  foreign  rule 0: -p tcp --dport {foreign_port} -j ACCEPT\n"
                )),
                "{what}: {text}"
            );
            let summary = text.lines().last().unwrap();
            assert!(
                summary.ends_with("; foreign: 0 chains, 1 rule, 0 passthroughs; no problems"),
                "{what}: {summary}"
            );
        }

        // The permanent configuration and its file say the same.
        let from_dbus =
            json(&world.tproxy(&["inspect", "--source", "permanent", "--output", "json"]));
        let from_file = json(&world.tproxy(&["inspect", "--output", "json"]));
        assert_eq!(from_dbus["entries"], from_file["entries"], "{backend}");
        assert_eq!(from_file["source"], "/etc/firewalld/direct.xml");

        // Problems of a D-Bus source have no place; the message names the entries.
        world.firewall_cmd_ok(&[
            "--direct",
            "--add-rule",
            "ipv4",
            "filter",
            "INPUT",
            "0",
            "-p",
            "tcp",
            "--dport",
            "8445",
            "-j",
            "ACCEPT",
        ]);
        world.firewall_cmd_ok(&[
            "--permanent",
            "--direct",
            "--add-chain",
            "ipv4",
            "filter",
            "INPUT",
        ]);
        for (source, message) in [
            (
                "runtime",
                "rule ipv4 filter INPUT 0 -p tcp --dport 8445 -j ACCEPT: has the same priority (0) as another rule in ipv4 filter INPUT: firewalld does not guarantee their order; see rule ipv4 filter INPUT 0 -p tcp --dport 8443 -j ACCEPT",
            ),
            (
                "permanent",
                "chain ipv4 filter INPUT: declares INPUT, a built-in chain of ipv4 filter: firewalld refuses it (BUILTIN_CHAIN) and fails to start",
            ),
        ] {
            let output = world.tproxy(&["inspect", "--source", source, "--output", "json"]);
            assert_eq!(output.status.code(), Some(1), "{backend} {source}");
            let report = json(&output);
            assert_eq!(report["valid"], false);
            assert_eq!(
                report["problems"],
                serde_json::json!([{"line": null, "column": null, "message": message}]),
                "{backend} {source}"
            );
            let text = stdout(&world.tproxy(&["inspect", "--source", source]));
            assert!(
                text.contains(&format!("\nproblems:\n  {message}\n")),
                "{backend} {source}: {text}"
            );
        }
    }
}

#[test]
fn firewalld_agrees_with_the_apply_fixtures() {
    let names: Vec<String> = fixture_names(false)
        .into_iter()
        .filter(|name| name.starts_with("apply-"))
        .collect();
    assert!(names.len() >= 6, "{names:?}");
    for backend in BACKENDS {
        let Some(mut world) = with_firewalld(&format!("apply_fixtures ({backend})"), backend)
        else {
            return;
        };
        for name in &names {
            world.stop();
            std::fs::copy(fixtures().join(name), world.direct_xml_path()).unwrap();
            // `apply-fails-*` make firewalld fail at start; the others are applied, with
            // a warning for what firewalld skips.
            let wanted = if name.starts_with("apply-fails-") {
                "failed"
            } else {
                "running"
            };
            world.start_until(wanted);
            // inspect finds a problem in each, given the iptables check.
            let output = world.tproxy(&["inspect", "--check-iptables"]);
            assert_eq!(
                output.status.code(),
                Some(1),
                "{backend} {name}: {}",
                stdout(&output)
            );
        }
        world.stop();
        std::fs::remove_file(world.direct_xml_path()).unwrap();
        world.start();
    }
}
