//! `install` and `uninstall` with the raw iptables backend, each test in its own network
//! namespace, asserting on what iptables-save reads back from the kernel.

mod common;

use common::{
    assert_expected, json_shape, namespaces_available, normalise_like_reference, Sandbox, CONFIG_1,
    CONFIG_2, CONFIG_STDIN, MULTIPLE_FLAGS,
};

fn install_and_compare(sandbox: &Sandbox, set: &str, args: &[&str]) {
    let mut full = vec!["install", "--kuma-dp-user", "kuma-dp"];
    full.extend_from_slice(args);
    sandbox.tproxy_ok(&full);
    assert_expected(
        &format!("install/{set}.iptables"),
        &normalise_like_reference(&sandbox.ok(&["iptables-save"])),
    );
    assert_expected(
        &format!("install/{set}.ip6tables"),
        &normalise_like_reference(&sandbox.ok(&["ip6tables-save"])),
    );
}

#[test]
fn default_flags_give_the_reference_rules() {
    if !namespaces_available("default_flags_give_the_reference_rules") {
        return;
    }
    install_and_compare(&Sandbox::new(), "default", &[]);
}

#[test]
fn without_ipv6_addresses_only_ipv4_rules_are_installed() {
    let Some(sandbox) = common::sandbox("without_ipv6_addresses_only_ipv4_rules_are_installed")
    else {
        return;
    };
    sandbox.ok(&["ip", "link", "del", "veth0"]);
    let output = sandbox.tproxy(&["install", "--kuma-dp-user", "kuma-dp"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(stderr.contains("installing IPv4 rules only"), "{stderr}");
    assert!(sandbox
        .ok(&["iptables-save"])
        .contains("KUMA_MESH_OUTBOUND"));
    assert!(!sandbox.ok(&["ip6tables-save"]).contains("KUMA_MESH"));
}

#[test]
fn multiple_flags_give_the_reference_rules() {
    if !namespaces_available("multiple_flags_give_the_reference_rules") {
        return;
    }
    install_and_compare(&Sandbox::new(), "with-multiple-flags", MULTIPLE_FLAGS);
}

#[test]
fn multiple_config_files_give_the_reference_rules() {
    let Some(sandbox) = common::sandbox("multiple_config_files_give_the_reference_rules") else {
        return;
    };
    let (one, two) = (sandbox.path("1.yaml"), sandbox.path("2.yaml"));
    std::fs::write(&one, CONFIG_1).unwrap();
    std::fs::write(&two, CONFIG_2).unwrap();
    let mut child = sandbox
        .command(&[
            common::BIN,
            "install",
            "--kuma-dp-user",
            "kuma-dp",
            "--config",
            one.to_str().unwrap(),
            "--config",
            two.to_str().unwrap(),
            "--config",
            "-",
        ])
        .stdin(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write as _;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(CONFIG_STDIN.as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_expected(
        "install/with-multiple-config-flags.iptables",
        &normalise_like_reference(&sandbox.ok(&["iptables-save"])),
    );
    assert_expected(
        "install/with-multiple-config-flags.ip6tables",
        &normalise_like_reference(&sandbox.ok(&["ip6tables-save"])),
    );
}

/// Foreign chains and rules in every table we touch, both families.
fn add_foreign_rules(sandbox: &Sandbox) {
    for program in ["iptables", "ip6tables"] {
        for args in [
            "-t nat -N FOREIGN_NAT",
            "-t nat -A FOREIGN_NAT -p tcp --dport 8080 -j RETURN",
            "-t nat -A PREROUTING -p tcp --dport 9999 -j FOREIGN_NAT",
            "-t nat -A OUTPUT -p udp --dport 5353 -m comment --comment foreign-output -j RETURN",
            "-t nat -A POSTROUTING -o veth0 -j MASQUERADE",
            "-t raw -N FOREIGN_RAW",
            "-t raw -A OUTPUT -p udp --dport 123 -j CT --notrack",
            "-t raw -A PREROUTING -j FOREIGN_RAW",
            "-t mangle -N FOREIGN_MANGLE",
            "-t mangle -A PREROUTING -p tcp --dport 7000 -j FOREIGN_MANGLE",
            "-t mangle -A FOREIGN_MANGLE -j MARK --set-mark 7",
            "-t filter -A INPUT -p tcp --dport 22 -j ACCEPT",
        ] {
            let mut full = vec![program];
            full.extend(args.split(' '));
            sandbox.ok(&full);
        }
    }
}

#[test]
fn uninstall_restores_foreign_tables_byte_for_byte() {
    let Some(sandbox) = common::sandbox("uninstall_restores_foreign_tables_byte_for_byte") else {
        return;
    };
    add_foreign_rules(&sandbox);
    let before = sandbox.saves();
    let mut args = vec![
        "install",
        "--kuma-dp-user",
        "kuma-dp",
        "--redirect-dns",
        "--drop-invalid-packets",
        "--iptables-logs",
    ];
    args.extend_from_slice(MULTIPLE_FLAGS);
    args.retain(|a| *a != "--redirect-all-dns-traffic");
    sandbox.tproxy_ok(&args);
    let installed = sandbox.save("iptables-save");
    assert!(installed.contains("KUMA_MESH_OUTBOUND") && installed.contains("FOREIGN_NAT"));
    assert!(installed
        .contains("-A PREROUTING -m comment --comment \"kuma/mesh/transparent/proxy/drop packets"));
    sandbox.tproxy_ok(&["uninstall", "transparent-proxy"]);
    assert_eq!(sandbox.save("iptables-save"), before.0);
    assert_eq!(sandbox.save("ip6tables-save"), before.1);
}

#[test]
fn reinstall_is_idempotent_and_other_flags_replace_only_ours() {
    let Some(sandbox) =
        common::sandbox("reinstall_is_idempotent_and_other_flags_replace_only_ours")
    else {
        return;
    };
    add_foreign_rules(&sandbox);
    let flags = [
        "install",
        "--kuma-dp-user",
        "kuma-dp",
        "--redirect-dns",
        "--exclude-inbound-ports",
        "22",
    ];
    sandbox.tproxy_ok(&flags);
    let first = sandbox.saves();
    sandbox.tproxy_ok(&flags);
    assert_eq!(sandbox.saves(), first);

    sandbox.tproxy_ok(&[
        "install",
        "--kuma-dp-user",
        "kuma-dp",
        "--exclude-inbound-ports",
        "2222",
    ]);
    let replaced = sandbox.save("iptables-save");
    assert!(replaced.contains("--dport 2222"));
    let ours: Vec<&str> = replaced
        .lines()
        .filter(|l| l.contains("kuma/mesh"))
        .collect();
    assert!(
        !ours.iter().any(|l| l.contains("--dport 22 ")),
        "old exclusion left behind:\n{replaced}"
    );
    assert!(
        !ours.iter().any(|l| l.contains("CT --zone")),
        "DNS conntrack rules left behind:\n{replaced}"
    );
    for foreign in [
        "FOREIGN_NAT",
        "foreign-output",
        "MASQUERADE",
        "CT --notrack",
        "FOREIGN_MANGLE",
        "--dport 22 -j ACCEPT",
    ] {
        assert!(replaced.contains(foreign), "{foreign} lost:\n{replaced}");
    }

    // Uninstall's reports: the dry run's, the run's, and a run with nothing left to remove.
    let installed = sandbox.saves();
    let preview = json_shape::report(&sandbox, &["uninstall", "--dry-run"], 0);
    assert_eq!(sandbox.saves(), installed, "the dry run changed the tables");
    let removal = json_shape::report(&sandbox, &["uninstall"], 0);
    assert_eq!(
        preview["targets"], removal["targets"],
        "{preview}\n{removal}"
    );
    assert_eq!(removal["changed"], true, "{removal}");
    let removed = json_shape::entries(&removal, "kernel ipv4", "removed");
    assert!(
        removed
            .iter()
            .any(|e| e.starts_with("-t nat -A KUMA_MESH_INBOUND ") && e.contains("--dport 2222")),
        "{removal}"
    );
    let nothing = json_shape::report(&sandbox, &["uninstall"], 0);
    assert_eq!(nothing["changed"], false, "{nothing}");
    assert_eq!(
        nothing["summary"],
        "no transparent-proxy rules found; nothing to remove"
    );
}

/// The stderr of a run that must succeed.
fn tproxy_stderr(sandbox: &Sandbox, args: &[&str]) -> String {
    let output = sandbox.tproxy(args);
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(output.status.success(), "{args:?} failed: {stderr}");
    stderr
}

#[test]
fn a_re_run_asking_for_the_same_rules_rewrites_nothing() {
    let Some(sandbox) = common::sandbox("a_re_run_asking_for_the_same_rules_rewrites_nothing")
    else {
        return;
    };
    add_foreign_rules(&sandbox);
    let flags = ["install", "--kuma-dp-user", "kuma-dp", "--redirect-dns"];
    let fresh = json_shape::report(&sandbox, &flags, 0);
    assert_eq!(fresh["changed"], true, "{fresh}");
    assert_eq!(fresh["backend"]["kind"], "iptables", "{fresh}");
    assert!(
        json_shape::has_notice(&fresh, "nothing-persists"),
        "{fresh}"
    );
    let rules = |report: &serde_json::Value, family: &str| -> Vec<String> {
        let added = json_shape::entries(report, &format!("kernel {family}"), "added");
        added.iter().map(|e| e.to_string()).collect()
    };
    for family in ["ipv4", "ipv6"] {
        let target = json_shape::target_of(&fresh, &format!("kernel {family}"));
        assert_eq!(target["kept"], 0, "{fresh}");
        assert!(target["removed"].as_array().unwrap().is_empty(), "{fresh}");
        assert!(
            rules(&fresh, family).contains(&"-t nat -A OUTPUT -m comment --comment \"kuma/mesh/transparent/proxy/redirect outbound TCP traffic to our custom chain for processing\" -p tcp -j KUMA_MESH_OUTBOUND".to_string()),
            "{fresh}"
        );
    }
    let installed_rules = rules(&fresh, "ipv4").len();
    // nft numbers every rule it holds; rules rewritten, even identical ones, get new handles.
    // Its packet counters move with the namespace's own IPv6 traffic, so they are left out.
    let handles = || {
        let ruleset = sandbox.ok(&["nft", "-a", "list", "ruleset"]);
        let mut out = String::new();
        for line in ruleset.lines() {
            let mut words = line.split_whitespace();
            while let Some(word) = words.next() {
                out.push_str(word);
                out.push(' ');
                if word == "counter" {
                    // packets N bytes N
                    words.by_ref().take(4).for_each(drop);
                }
            }
            out.push('\n');
        }
        out
    };
    let installed = handles();
    assert!(installed.contains("KUMA_MESH_OUTBOUND"), "{installed}");
    let again = json_shape::report(&sandbox, &flags, 0);
    let summary = again["summary"].as_str().unwrap();
    assert!(
        summary.starts_with("already installed, nothing to change"),
        "{again}"
    );
    assert_eq!(again["changed"], false, "{again}");
    for family in ["ipv4", "ipv6"] {
        let target = json_shape::target_of(&again, &format!("kernel {family}"));
        assert_eq!(target["kept"], installed_rules, "{again}");
        assert!(rules(&again, family).is_empty(), "{again}");
    }
    assert_eq!(handles(), installed);

    // A foreign rule now after our jump in nat OUTPUT: the re-run moves ours to the end again,
    // as an install onto these tables would.
    sandbox.ok(&[
        "iptables", "-t", "nat", "-A", "OUTPUT", "-p", "tcp", "--dport", "4444", "-j", "RETURN",
    ]);
    let moved = json_shape::report(&sandbox, &flags, 0);
    assert!(
        moved["summary"].as_str().unwrap().starts_with("installed;"),
        "{moved}"
    );
    // The tables no longer hold what the last run left: the rules in place are compared as
    // iptables prints them, which matches how we write them only for some. IPv6 is as the
    // last run left it.
    let kept = json_shape::target_of(&moved, "kernel ipv4")["kept"]
        .as_u64()
        .unwrap() as usize;
    let removed = json_shape::entries(&moved, "kernel ipv4", "removed");
    assert_eq!(removed.len() + kept, installed_rules, "{moved}");
    assert_eq!(
        rules(&moved, "ipv4").len() + kept,
        installed_rules,
        "{moved}"
    );
    assert!(
        removed.contains(&"-t nat -A OUTPUT -p tcp -m comment --comment \"kuma/mesh/transparent/proxy/redirect outbound TCP traffic to our custom chain for processing\" -j KUMA_MESH_OUTBOUND"),
        "{moved}"
    );
    assert_eq!(
        json_shape::target_of(&moved, "kernel ipv6")["kept"],
        installed_rules
    );
    let output_chain = sandbox.ok(&["iptables", "-t", "nat", "-S", "OUTPUT"]);
    let last = output_chain.lines().last().unwrap();
    assert!(last.contains("KUMA_MESH_OUTBOUND"), "{output_chain}");
    assert!(
        output_chain.contains("--dport 4444 -j RETURN"),
        "{output_chain}"
    );

    // One of our chains emptied behind our back: the re-run fills it again.
    let complete = sandbox.saves();
    sandbox.ok(&["ip6tables", "-t", "nat", "-F", "KUMA_MESH_OUTBOUND"]);
    sandbox.tproxy_ok(&flags);
    assert_eq!(sandbox.saves(), complete);

    // Other flags are other rules: the one rule they add, in the dry run's report as in the
    // run's.
    let other_flags = [&flags[..], &["--exclude-inbound-ports", "2222"]].concat();
    let preview = json_shape::report(&sandbox, &[&other_flags[..], &["--dry-run"]].concat(), 0);
    assert_eq!(sandbox.saves(), complete, "the dry run changed the tables");
    let applied = json_shape::report(&sandbox, &other_flags, 0);
    assert!(sandbox.save("iptables-save").contains("--dport 2222"));
    assert_eq!(
        (&preview["changed"], &preview["dry_run"]),
        (&serde_json::json!(true), &serde_json::json!(true))
    );
    assert_eq!(
        preview["targets"], applied["targets"],
        "{preview}\n{applied}"
    );
    for family in ["ipv4", "ipv6"] {
        assert_eq!(
            json_shape::target_of(&applied, &format!("kernel {family}"))["kept"],
            installed_rules,
            "{applied}"
        );
        let added = rules(&applied, family);
        assert_eq!(added.len(), 1, "{applied}");
        assert!(
            added[0].starts_with("-t nat -A KUMA_MESH_INBOUND ")
                && added[0].contains("--dport 2222"),
            "{applied}"
        );
    }
}

/// `text` as an executable file `name` in the sandbox directory; its path.
fn executable_script(sandbox: &Sandbox, name: &str, text: &str) -> String {
    let path = sandbox.path(name);
    std::fs::write(&path, text).unwrap();
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path.to_str().unwrap().to_string()
}

/// A script standing in for `real` that appends its arguments to `log` (except `--version`,
/// which mode detection asks), then runs `real`.
fn logging_wrapper(sandbox: &Sandbox, real: &str, log: &str) -> String {
    executable_script(
        sandbox,
        &format!("logging-{real}"),
        &format!(
            "#!/bin/sh\n[ \"$1\" = --version ] || echo \"{real} $*\" >> {log}\nexec /usr/sbin/{real} \"$@\"\n"
        ),
    )
}

#[test]
fn iptables_save_runs_only_to_plan_a_change() {
    let Some(sandbox) = common::sandbox("iptables_save_runs_only_to_plan_a_change") else {
        return;
    };
    let log = sandbox.path("calls.log");
    let log = log.to_str().unwrap();
    let mut executables = Vec::new();
    for (name, base) in [
        ("iptables", "iptables-nft"),
        ("iptables-save", "iptables-nft-save"),
        ("iptables-restore", "iptables-nft-restore"),
        ("ip6tables", "ip6tables-nft"),
        ("ip6tables-save", "ip6tables-nft-save"),
        ("ip6tables-restore", "ip6tables-nft-restore"),
    ] {
        executables.push(format!("{name}:{}", logging_wrapper(&sandbox, base, log)));
    }
    let executables = executables.join(",");
    let flags = [
        "install",
        "--kuma-dp-user",
        "kuma-dp",
        "--redirect-dns",
        "--iptables-executables",
        &executables,
    ];
    add_foreign_rules(&sandbox);
    let calls = |args: &[&str]| {
        let _ = std::fs::remove_file(log);
        sandbox.tproxy_ok(args);
        let mut calls: Vec<String> = std::fs::read_to_string(log)
            .unwrap_or_default()
            .lines()
            .map(String::from)
            .collect();
        calls.sort();
        calls
    };
    // Nothing of ours yet: each family is restored, and read back from nf_tables directly.
    assert_eq!(
        calls(&flags),
        [
            "ip6tables-nft-restore --noflush",
            "iptables-nft-restore --noflush",
        ]
    );
    let installed = sandbox.saves();
    // The same rules as an install that finds one of our chains and plans from the tables.
    sandbox.tproxy_ok(&["uninstall"]);
    sandbox.ok(&["iptables", "-t", "nat", "-N", "KUMA_MESH_OUTBOUND"]);
    sandbox.tproxy_ok(&flags);
    assert_eq!(sandbox.saves(), installed);
    // Recorded: a re-run sees in nf_tables that the rules are in place, and starts nothing.
    assert!(calls(&flags).is_empty());
    // Other rules: the tables are saved to plan the change.
    let other = [&flags[..], &["--exclude-inbound-ports", "2222"]].concat();
    assert_eq!(
        calls(&other),
        [
            "ip6tables-nft-restore --noflush",
            "ip6tables-nft-save ",
            "iptables-nft-restore --noflush",
            "iptables-nft-save ",
        ]
    );

    // IPv4 only, first install: IPv6 holds nothing of ours (nf_tables shows it at once).
    sandbox.tproxy_ok(&["uninstall"]);
    let ipv4_only = [&flags[..], &["--ip-family-mode", "ipv4"]].concat();
    assert_eq!(calls(&ipv4_only), ["iptables-nft-restore --noflush"]);
    assert!(!sandbox.save("ip6tables-save").contains("KUMA_MESH"));
    // IPv6 rules of ours that no run of ours recorded (kumactl's, say): only a plan, which
    // reads the tables, removes them.
    sandbox.tproxy_ok(&["uninstall"]);
    sandbox.tproxy_ok(&flags);
    sandbox.ok(&[
        "sh",
        "-c",
        "rm /run/tproxy-firewalld.ipv4.applied /run/tproxy-firewalld.ipv6.applied",
    ]);
    assert!(calls(&ipv4_only).contains(&"ip6tables-nft-save ".to_string()));
    assert!(!sandbox.save("ip6tables-save").contains("KUMA_MESH"));
    assert!(sandbox.save("iptables-save").contains("KUMA_MESH"));
}

#[test]
fn a_first_install_meets_tables_it_did_not_expect() {
    let Some(sandbox) = common::sandbox("a_first_install_meets_tables_it_did_not_expect") else {
        return;
    };
    let flags = ["install", "--kuma-dp-user", "kuma-dp", "--redirect-dns"];
    add_foreign_rules(&sandbox);
    sandbox.tproxy_ok(&flags);
    let clean = sandbox.saves();
    sandbox.tproxy_ok(&["uninstall"]);

    // A rule of ours left outside our chains: it does not stop the install, the read back
    // finds it, and the rules are replaced as planned.
    sandbox.ok(&[
        "iptables",
        "-t",
        "raw",
        "-A",
        "OUTPUT",
        "-p",
        "udp",
        "-m",
        "comment",
        "--comment",
        "kuma/mesh/transparent/proxy/left over",
        "-j",
        "CT",
        "--zone",
        "1",
    ]);
    sandbox.tproxy_ok(&flags);
    assert_eq!(sandbox.saves(), clean);
    sandbox.tproxy_ok(&["uninstall"]);

    // Docker's DNS chain: the rules change for it.
    for program in ["iptables", "ip6tables"] {
        sandbox.ok(&[program, "-t", "nat", "-N", "DOCKER_OUTPUT"]);
    }
    sandbox.tproxy_ok(&flags);
    for program in ["iptables-save", "ip6tables-save"] {
        let saved = sandbox.save(program);
        assert_eq!(
            saved
                .matches("redirect DNS traffic from kuma-dp to the DOCKER_OUTPUT chain")
                .count(),
            1,
            "{saved}"
        );
        assert!(
            !saved.contains("return early for DNS traffic from kuma-dp"),
            "{saved}"
        );
    }
    sandbox.tproxy_ok(&["uninstall"]);
    assert!(!sandbox.save("iptables-save").contains("kuma/mesh"));
}

#[test]
fn a_transaction_failing_after_its_first_table_changes_nothing() {
    let Some(sandbox) =
        common::sandbox("a_transaction_failing_after_its_first_table_changes_nothing")
    else {
        return;
    };
    add_foreign_rules(&sandbox);
    let before = sandbox.saves();
    // An install adds nat before raw when it has not read the tables, raw before nat when it
    // has: a rule rejected in the second table finds the first committed either way.
    for rejected in ["CT --zone", "REDIRECT"] {
        let restore = rejecting_restore(&sandbox, rejected);
        let executables = format!(
            "iptables:/usr/sbin/iptables-nft,iptables-save:/usr/sbin/iptables-nft-save,iptables-restore:{restore}"
        );
        assert_rejected_changing_nothing(&sandbox, &executables, "IPv4", &before);
    }
}

/// `install --redirect-dns` with `executables` fails, saying `family`'s rules were rejected
/// and nothing was changed, and both families' tables are still `before`.
fn assert_rejected_changing_nothing(
    sandbox: &Sandbox,
    executables: &str,
    family: &str,
    before: &(String, String),
) {
    let output = sandbox.tproxy(&[
        "install",
        "--kuma-dp-user",
        "kuma-dp",
        "--redirect-dns",
        "--iptables-executables",
        executables,
        "--max-retries",
        "0",
    ]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{executables}: {stderr}");
    assert!(
        stderr.contains(&format!(
            "{family} rules were rejected; nothing was changed"
        )),
        "{executables}: {stderr}"
    );
    assert_eq!(&sandbox.saves(), before, "{executables}");
}

/// An iptables-restore that rejects the table holding `text`, as iptables does a rule it
/// cannot take: the tables before it are committed, the rest are not.
fn rejecting_restore(sandbox: &Sandbox, text: &str) -> String {
    executable_script(
        sandbox,
        &format!("restore-rejecting-{}", text.replace(' ', "-")),
        &format!(
            "#!/bin/sh\n[ \"$1\" = --version ] && exec iptables-nft-restore --version\n\
             script=$(cat)\n\
             case \"$script\" in *'{text}'*) ;; *) printf '%s\\n' \"$script\" | iptables-nft-restore \"$@\"; exit ;; esac\n\
             printf '%s\\n' \"$script\" | awk '/^\\*/ {{ table = \"\" }} {{ table = table $0 \"\\n\" }} \
             /^COMMIT$/ {{ if (index(table, \"{text}\")) exit; printf \"%s\", table }}' | iptables-nft-restore \"$@\" || exit 1\n\
             echo 'iptables-restore: line 999 failed' >&2\nexit 1\n"
        ),
    )
}

#[test]
fn rules_left_by_kumactl_are_ours() {
    let Some(sandbox) = common::sandbox("rules_left_by_kumactl_are_ours") else {
        return;
    };
    // A fresh namespace has no nat table yet; compare the tables that hold rules.
    let before = normalise_like_reference(&sandbox.ok(&["iptables-save"]));
    // What kumactl leaves: its chain, a commented jump and a commented DNS rule.
    for args in [
        vec!["-t", "nat", "-N", "KUMA_MESH_OUTBOUND"],
        vec!["-t", "nat", "-N", "KUMA_MESH_OLD_CHAIN"],
        vec![
            "-t",
            "nat",
            "-A",
            "OUTPUT",
            "-p",
            "tcp",
            "-m",
            "comment",
            "--comment",
            "kuma/mesh/transparent/proxy/old",
            "-j",
            "KUMA_MESH_OUTBOUND",
        ],
        vec![
            "-t",
            "nat",
            "-A",
            "OUTPUT",
            "-p",
            "udp",
            "--dport",
            "53",
            "-m",
            "comment",
            "--comment",
            "kuma/mesh/transparent/proxy/dns",
            "-j",
            "REDIRECT",
            "--to-ports",
            "15053",
        ],
        vec![
            "-t",
            "nat",
            "-A",
            "KUMA_MESH_OUTBOUND",
            "-j",
            "KUMA_MESH_OLD_CHAIN",
        ],
    ] {
        let mut full = vec!["iptables"];
        full.extend(args);
        sandbox.ok(&full);
    }
    sandbox.tproxy_ok(&[
        "install",
        "--kuma-dp-user",
        "kuma-dp",
        "--ip-family-mode",
        "ipv4",
    ]);
    let installed = normalise_like_reference(&sandbox.ok(&["iptables-save"]));
    assert_eq!(installed, common::expected("install/default.iptables"));
    sandbox.tproxy_ok(&["uninstall"]);
    assert_eq!(
        normalise_like_reference(&sandbox.ok(&["iptables-save"])),
        before
    );
}

#[test]
fn legacy_iptables_is_used_when_it_holds_the_rules() {
    let Some(sandbox) = common::sandbox_with(
        "legacy_iptables_is_used_when_it_holds_the_rules",
        &["iptables-legacy"],
    ) else {
        return;
    };
    sandbox.ok(&[
        "iptables-legacy",
        "-t",
        "nat",
        "-A",
        "POSTROUTING",
        "-j",
        "MASQUERADE",
    ]);
    sandbox.tproxy_ok(&[
        "install",
        "--kuma-dp-user",
        "kuma-dp",
        "--ip-family-mode",
        "ipv4",
    ]);
    let legacy = normalise_like_reference(&sandbox.ok(&["iptables-legacy-save", "-t", "nat"]));
    assert!(legacy.contains("KUMA_MESH_OUTBOUND"), "{legacy}");
    let nft = sandbox.ok(&["iptables-nft-save"]);
    assert!(!nft.contains("KUMA_MESH"), "rules went to nft too:\n{nft}");
    sandbox.tproxy_ok(&["uninstall"]);
    assert!(!sandbox.ok(&["iptables-legacy-save"]).contains("KUMA_MESH"));
}

#[test]
fn dry_run_changes_nothing() {
    let Some(sandbox) = common::sandbox("dry_run_changes_nothing") else {
        return;
    };
    let before = sandbox.save("iptables-save");
    let dry_run = ["install", "--kuma-dp-user", "kuma-dp", "--dry-run"];
    let out = sandbox.tproxy_ok(&dry_run);
    assert!(out.starts_with("### IPv4 ###\n\n* nat\n"), "{out}");
    assert!(out.contains("### IPv6 ###"), "{out}");
    // The report reads the tables: every rule would be added.
    let report = json_shape::report(&sandbox, &dry_run, 0);
    assert_eq!(report["changed"], true, "{report}");
    assert_eq!(report["summary"], serde_json::Value::Null, "{report}");
    for family in ["ipv4", "ipv6"] {
        let added = json_shape::entries(&report, &format!("kernel {family}"), "added");
        assert_eq!(added.len(), out.matches("\n-A ").count() / 2, "{report}");
    }
    assert_eq!(sandbox.save("iptables-save"), before);
    // Without root the tables cannot be read: what would change is not known.
    let binary = sandbox.copy_for_any_user(std::path::Path::new(common::BIN));
    let as_user = sandbox
        .command_as(
            common::APP_UID,
            &[&[binary.as_str()], &dry_run[..], &["--output", "json"]].concat(),
        )
        .output()
        .unwrap();
    let report = json_shape::report_of("install", &as_user, 0);
    assert_eq!(report["changed"], serde_json::Value::Null, "{report}");
    assert_eq!(report["targets"], serde_json::json!([]), "{report}");
}

#[test]
fn a_local_user_is_found_in_etc_passwd_whatever_the_name_service_says() {
    let Some(sandbox) =
        common::sandbox("a_local_user_is_found_in_etc_passwd_whatever_the_name_service_says")
    else {
        return;
    };
    // A name service that does not read /etc/passwd: the packaged, statically linked binary
    // must not depend on loading one to find a local user such as kuma-dp.
    let nsswitch = sandbox.path("nsswitch.conf");
    std::fs::write(&nsswitch, "passwd: systemd\ngroup: systemd\n").unwrap();
    sandbox.ok(&[
        "mount",
        "--bind",
        nsswitch.to_str().unwrap(),
        "/etc/nsswitch.conf",
    ]);
    let out = sandbox.tproxy_ok(&["install", "--kuma-dp-user", "app", "--dry-run"]);
    let owner = format!("--uid-owner {}", common::APP_UID);
    assert!(out.contains(&owner), "{out}");
}

/// A host where firewalld is installed but stopped: a call to its name would make the bus
/// start it (D-Bus activation), and the operator stopped it for a reason. install must find
/// it absent, apply the rules with iptables, and start nothing.
#[test]
fn a_stopped_firewalld_is_not_started_by_asking_for_it() {
    let test = "a_stopped_firewalld_is_not_started_by_asking_for_it";
    let Some(sandbox) = common::sandbox_with(test, &["dbus-daemon"]) else {
        return;
    };
    let started = sandbox.path("firewalld-was-started");
    let firewalld = executable_script(
        &sandbox,
        "stand-in-firewalld",
        &format!("#!/bin/sh\ntouch {}\n", started.display()),
    );
    let services = sandbox.path("services");
    std::fs::create_dir(&services).unwrap();
    std::fs::write(
        services.join("org.fedoraproject.FirewallD1.service"),
        format!("[D-BUS Service]\nName=org.fedoraproject.FirewallD1\nExec={firewalld}\n"),
    )
    .unwrap();
    let _bus = KillOnDrop(common::firewalld::start_bus(&sandbox, Some(&services)));

    let stderr = tproxy_stderr(&sandbox, &["install", "--kuma-dp-user", "kuma-dp"]);
    assert!(stderr.contains("applying with"), "{stderr}");
    assert!(
        sandbox.save("iptables-save").contains("KUMA_MESH_INBOUND"),
        "the rules were not applied"
    );
    // Activation runs the service's Exec asynchronously: give it time to show.
    std::thread::sleep(std::time::Duration::from_millis(500));
    assert!(!started.exists(), "install made the bus start firewalld");
}

/// A system bus that takes the connection and never answers (a stuck dbus-daemon): the run
/// stops with a message after the wait it was given instead of hanging, and changes nothing.
#[test]
fn a_bus_that_never_answers_stops_the_run() {
    let Some(sandbox) = common::sandbox("a_bus_that_never_answers_stops_the_run") else {
        return;
    };
    // Connections queue in the backlog; nothing ever reads them.
    let _silent_bus = std::os::unix::net::UnixListener::bind(sandbox.path("bus.sock")).unwrap();
    let before = sandbox.saves();
    let mut run = sandbox
        .command(&[common::BIN, "install", "--kuma-dp-user", "kuma-dp"])
        .env("TPROXY_FIREWALLD_START_TIMEOUT", "1")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // A hang fails the test instead of stopping the suite.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while run.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            let _ = run.kill();
            let _ = run.wait();
            panic!("install still waits for the bus after 20 s");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let output = run.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("did not answer within 1 s") && stderr.contains("nothing was changed"),
        "{stderr}"
    );
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert_eq!(sandbox.saves(), before);
}

/// A process killed when the test ends, passed or not.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn custom_executables_lock_wait_and_store_firewalld_flags() {
    let Some(sandbox) = common::sandbox_with(
        "custom_executables_lock_wait_and_store_firewalld_flags",
        &["iptables-legacy"],
    ) else {
        return;
    };
    let executables = "iptables:/usr/sbin/iptables-legacy,iptables-save:/usr/sbin/iptables-legacy-save,\
                       iptables-restore:/usr/sbin/iptables-legacy-restore,ip6tables:/usr/sbin/ip6tables-legacy,\
                       ip6tables-save:/usr/sbin/ip6tables-legacy-save,ip6tables-restore:/usr/sbin/ip6tables-legacy-restore";
    let output = sandbox.tproxy(&[
        "install",
        "--kuma-dp-user",
        "kuma-dp",
        "--iptables-executables",
        executables,
        "--wait",
        "3",
        "--wait-interval",
        "1000",
        "--store-firewalld",
        "--firewalld-config-dir",
        sandbox.path("no-firewalld").to_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(
        stderr.contains("--store-firewalld"),
        "the operator must learn what --store-firewalld did: {stderr}"
    );
    assert!(stderr.contains("iptables (legacy)"), "{stderr}");
    assert!(sandbox
        .ok(&["iptables-legacy-save"])
        .contains("KUMA_MESH_OUTBOUND"));
    assert!(sandbox
        .ok(&["ip6tables-legacy-save"])
        .contains("KUMA_MESH_OUTBOUND"));
    assert!(!sandbox.ok(&["iptables-nft-save"]).contains("KUMA_MESH"));
}

#[test]
fn failed_restores_are_retried_then_reported_with_nothing_changed() {
    let Some(sandbox) =
        common::sandbox("failed_restores_are_retried_then_reported_with_nothing_changed")
    else {
        return;
    };
    // An iptables-restore that accepts --test but fails to apply, as under a held lock.
    let flaky = executable_script(
        &sandbox,
        "flaky-restore",
        "#!/bin/sh\nfor a in \"$@\"; do [ \"$a\" = --test ] && exec iptables-nft-restore \"$@\"; done\n\
         [ \"$1\" = --version ] && exec iptables-nft-restore --version\n\
         echo 'Another app is currently holding the xtables lock.' >&2\nexit 4\n",
    );
    let executables = format!(
        "iptables:/usr/sbin/iptables-nft,iptables-save:/usr/sbin/iptables-nft-save,iptables-restore:{flaky}"
    );
    let before = sandbox.save("iptables-save");
    let output = sandbox.tproxy(&[
        "install",
        "--kuma-dp-user",
        "kuma-dp",
        "--ip-family-mode",
        "ipv4",
        "--iptables-executables",
        &executables,
        "--max-retries",
        "2",
        "--sleep-between-retries",
        "10ms",
    ]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert_eq!(stderr.matches("failed, retrying").count(), 2, "{stderr}");
    assert!(
        stderr.contains("after 3 attempt(s)") && stderr.contains("xtables lock"),
        "{stderr}"
    );
    assert_eq!(sandbox.save("iptables-save"), before);
}

#[test]
fn ipv6_failing_after_ipv4_applied_puts_ipv4_back() {
    let Some(sandbox) = common::sandbox("ipv6_failing_after_ipv4_applied_puts_ipv4_back") else {
        return;
    };
    // An ip6tables-restore that reports its version but refuses every transaction.
    let failing = executable_script(
        &sandbox,
        "failing-ip6tables-restore",
        "#!/bin/sh\n[ \"$1\" = --version ] && exec ip6tables-nft-restore --version\n\
         echo 'ip6tables-restore: line 3 failed' >&2\nexit 1\n",
    );
    let executables = format!(
        "iptables:/usr/sbin/iptables-nft,iptables-save:/usr/sbin/iptables-nft-save,\
         iptables-restore:/usr/sbin/iptables-nft-restore,ip6tables:/usr/sbin/ip6tables-nft,\
         ip6tables-save:/usr/sbin/ip6tables-nft-save,ip6tables-restore:{failing}"
    );
    add_foreign_rules(&sandbox);
    let before = sandbox.saves();
    // IPv4 must be put back.
    assert_rejected_changing_nothing(&sandbox, &executables, "IPv6", &before);
}

/// The raw backend's matrix: the system's iptables (iptables-nft here) and a host that has
/// only iptables-legacy.
#[derive(Clone, Copy, Debug)]
enum Xtables {
    Nft,
    LegacyOnly,
}

const XTABLES: [Xtables; 2] = [Xtables::Nft, Xtables::LegacyOnly];

/// A sandbox for `cell`. For `LegacyOnly`, inside the sandbox's mount namespace only:
/// /etc/alternatives points iptables, ip6tables and their -save/-restore at the legacy
/// binaries, and xtables-nft-multi (behind every iptables-nft name) is not executable, as
/// on a host without iptables-nft. `iptables-save` in a test then reads the legacy tables.
fn xtables_sandbox(test: &str, cell: Xtables) -> Option<Sandbox> {
    match cell {
        Xtables::Nft => common::sandbox(test),
        Xtables::LegacyOnly => {
            let sandbox = common::sandbox_with(test, &["iptables-legacy", "ip6tables-legacy"])?;
            let alternatives = sandbox.path("alternatives");
            let copied = std::process::Command::new("cp")
                .args(["-a", "/etc/alternatives/."])
                .arg(&alternatives)
                .status()
                .unwrap();
            assert!(copied.success());
            for base in ["iptables", "ip6tables"] {
                for suffix in ["", "-save", "-restore"] {
                    let link = alternatives.join(format!("{base}{suffix}"));
                    let _ = std::fs::remove_file(&link);
                    std::os::unix::fs::symlink(format!("/usr/sbin/{base}-legacy{suffix}"), &link)
                        .unwrap();
                }
            }
            let nft_multi = std::fs::canonicalize("/usr/sbin/iptables-nft").ok();
            let hidden = sandbox.path("not-executable");
            std::fs::write(&hidden, "").unwrap();
            sandbox.ok(&[
                "mount",
                "--bind",
                alternatives.to_str().unwrap(),
                "/etc/alternatives",
            ]);
            if let Some(nft_multi) = &nft_multi {
                sandbox.ok(&[
                    "mount",
                    "--bind",
                    hidden.to_str().unwrap(),
                    nft_multi.to_str().unwrap(),
                ]);
            }
            let version = sandbox.ok(&["iptables", "--version"]);
            assert!(version.contains("legacy"), "{version}");
            assert!(!sandbox.run(&["iptables-nft", "--version"]).status.success());
            Some(sandbox)
        }
    }
}

/// What `install` says about the iptables it used, and that it used only that one.
fn assert_used(sandbox: &Sandbox, cell: Xtables, stderr: &str) {
    match cell {
        Xtables::Nft => assert!(
            !common::which("iptables-legacy-save")
                || !sandbox.ok(&["iptables-legacy-save"]).contains("KUMA_MESH"),
            "rules went to legacy too"
        ),
        Xtables::LegacyOnly => {
            assert!(stderr.contains("iptables (legacy)"), "{stderr}");
            let nft = sandbox.ok(&["nft", "list", "ruleset"]);
            assert!(!nft.contains("KUMA_MESH"), "rules went to nft too:\n{nft}");
        }
    }
}

#[test]
fn reference_sets_on_each_iptables() {
    for cell in XTABLES {
        for (set, flags) in [
            ("default", &[][..]),
            ("with-multiple-flags", MULTIPLE_FLAGS),
        ] {
            let Some(sandbox) = xtables_sandbox(&format!("reference_sets ({cell:?}, {set})"), cell)
            else {
                return;
            };
            let mut args = vec!["install", "--kuma-dp-user", "kuma-dp"];
            args.extend_from_slice(flags);
            let output = sandbox.tproxy(&args);
            let stderr = String::from_utf8_lossy(&output.stderr);
            assert!(output.status.success(), "{cell:?} {set}: {stderr}");
            assert_used(&sandbox, cell, &stderr);
            for (program, suffix) in [
                ("iptables-save", "iptables"),
                ("ip6tables-save", "ip6tables"),
            ] {
                assert_eq!(
                    normalise_like_reference(&sandbox.ok(&[program])),
                    common::expected(&format!("install/{set}.{suffix}")),
                    "{cell:?} {set} {program}"
                );
            }
        }
    }
}

#[test]
fn foreign_rules_stay_and_reinstall_is_idempotent_on_each_iptables() {
    for cell in XTABLES {
        let Some(sandbox) = xtables_sandbox(&format!("foreign_rules ({cell:?})"), cell) else {
            return;
        };
        add_foreign_rules(&sandbox);
        let save = || {
            [
                sandbox.save("iptables-save"),
                sandbox.save("ip6tables-save"),
            ]
        };
        let before = save();
        let flags = [
            "install",
            "--kuma-dp-user",
            "kuma-dp",
            "--redirect-dns",
            "--exclude-inbound-ports",
            "22",
        ];
        let output = sandbox.tproxy(&flags);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(output.status.success(), "{cell:?}: {stderr}");
        assert_used(&sandbox, cell, &stderr);
        let first = save();
        assert!(first[0].contains("KUMA_MESH_OUTBOUND") && first[0].contains("FOREIGN_NAT"));
        sandbox.tproxy_ok(&flags);
        assert_eq!(save(), first, "{cell:?}: a rerun changed the tables");
        sandbox.tproxy_ok(&["uninstall"]);
        assert_eq!(save(), before, "{cell:?}: uninstall");
    }
}

#[test]
fn an_install_over_ssh_warns_when_the_session_port_is_redirected() {
    let Some(sandbox) = common::sandbox("an_install_over_ssh_warns") else {
        return;
    };
    // sshd's form: client address and port, server address and port.
    let run = |session: &str, args: &[&str]| {
        let mut full = vec![common::BIN, "install", "--kuma-dp-user", "kuma-dp"];
        full.extend_from_slice(args);
        let output = sandbox
            .command(&full)
            .env("SSH_CONNECTION", session)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        assert!(output.status.success(), "{args:?}: {stderr}");
        stderr
    };
    let warnings = |stderr: &str| {
        stderr
            .lines()
            .filter(|l| l.contains("warning: this SSH session"))
            .map(str::to_string)
            .collect::<Vec<_>>()
    };
    let session = "203.0.113.9 51234 192.0.2.1 22";
    let dry = run(session, &["--dry-run"]);
    assert_eq!(
        warnings(&dry),
        ["tproxy-firewalld: warning: this SSH session came in on port 22 of 192.0.2.1, which these rules redirect to Envoy (port 15006): new SSH connections will reach Envoy, not sshd; add --exclude-inbound-ports 22 to keep SSH reachable"],
        "{dry}"
    );
    // The install itself goes on, as kumactl's would.
    let installed = run(session, &[]);
    assert_eq!(warnings(&installed).len(), 1, "{installed}");
    assert!(sandbox.save("iptables-save").contains("KUMA_MESH_INBOUND"));
    let excluded = run(session, &["--exclude-inbound-ports", "22"]);
    assert!(warnings(&excluded).is_empty(), "{excluded}");
    let other_port = run(
        "203.0.113.9 51234 192.0.2.1 2222",
        &["--exclude-inbound-ports", "22"],
    );
    assert!(
        warnings(&other_port)[0].contains("add --exclude-inbound-ports 2222"),
        "{other_port}"
    );
}
