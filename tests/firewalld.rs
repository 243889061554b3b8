//! `install` and `uninstall` against a real firewalld (nftables and iptables backends), each
//! test in its own namespaces with its own D-Bus: asserting on the kernel tables, firewalld's
//! runtime and permanent direct configuration, direct.xml's bytes and the D-Bus calls made.

mod common;

use std::path::Path;

use common::firewalld::{with_firewalld, FirewalldSandbox, BACKENDS};
use common::json_shape::{self, entries, target_of};
use common::{expected, ours, BIN, CONFIG_1, CONFIG_2, CONFIG_STDIN, MULTIPLE_FLAGS};
use serde_json::Value;
use tproxy_firewalld::format::direct_xml;

/// Both families: firewalld's default RFC3964_IPv4=yes would restrict us to IPv4.
const BOTH_FAMILIES: &str = "--disable-firewalld-rfc3964-ipv4";

/// The kernel holds exactly the rules the raw backend produces for `set` (both families).
fn assert_kernel_matches(world: &FirewalldSandbox, set: &str, when: &str) {
    let want = ["iptables", "ip6tables"]
        .map(|suffix| ours(&expected(&format!("install/{set}.{suffix}")), false));
    assert_kernel_equals(world, &want, &format!("{when} ({set})"));
}

fn assert_kernel_equals(world: &FirewalldSandbox, want: &[String; 2], when: &str) {
    for (program, want) in ["iptables-save", "ip6tables-save"].iter().zip(want) {
        let have = ours(&world.ok(&[program]), true);
        assert!(
            *want == have,
            "{when}: {program} differs from the raw backend:\n--- want\n{want}\n--- have\n{have}"
        );
    }
}

/// What the raw backend installs for `args`, in a namespace of its own.
fn raw_backend_rules(args: &[&str]) -> [String; 2] {
    let sandbox = common::Sandbox::new();
    let mut full = vec!["install", "--kuma-dp-user", "kuma-dp"];
    full.extend_from_slice(args);
    sandbox.tproxy_ok(&full);
    ["iptables-save", "ip6tables-save"].map(|program| ours(&sandbox.ok(&[program]), false))
}

/// The reference's three config files, written into the sandbox, as `--config` flags.
fn config_file_flags(world: &FirewalldSandbox) -> Vec<String> {
    let mut flags = Vec::new();
    for (name, text) in [
        ("1.yaml", CONFIG_1),
        ("2.yaml", CONFIG_2),
        ("3.yaml", CONFIG_STDIN),
    ] {
        let path = world.path(name);
        std::fs::write(&path, text).unwrap();
        flags.push("--config".to_string());
        flags.push(path.to_str().unwrap().to_string());
    }
    flags
}

/// Rules of a reference set, counted in its expected files.
fn expected_rule_count(set: &str) -> usize {
    ["iptables", "ip6tables"]
        .iter()
        .map(|s| {
            expected(&format!("install/{set}.{s}"))
                .lines()
                .filter(|l| l.starts_with("-A "))
                .count()
        })
        .sum()
}

fn install(world: &FirewalldSandbox, args: &[&str]) -> String {
    let mut full = vec!["install", "--kuma-dp-user", "kuma-dp"];
    full.extend_from_slice(args);
    let output = world.tproxy(&full);
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(
        output.status.success(),
        "install {args:?}: {stderr}\n{}",
        world.log()
    );
    stderr
}

/// [`install`] with `--output json`: its report, checked against the documented shape.
fn report(world: &FirewalldSandbox, args: &[&str]) -> Value {
    let mut full = vec!["install", "--kuma-dp-user", "kuma-dp"];
    full.extend_from_slice(args);
    json_shape::report(world, &full, 0)
}

/// Runs `body` on every cell of the firewalld matrix ([`BACKENDS`]: firewalld 1.3 and 2.x,
/// each with the nftables and the iptables backend; the 2.x cells once
/// scripts/fetch-firewalld2.sh fetched it). Each cell's time shows with `--nocapture`.
fn each_backend(test: &str, body: impl Fn(&mut FirewalldSandbox)) {
    for flavor in BACKENDS {
        let started = std::time::Instant::now();
        let Some(mut world) = with_firewalld(&format!("{test} ({flavor})"), flavor) else {
            return;
        };
        body(&mut world);
        drop(world);
        eprintln!(
            "{test} [{}]: {:.1} s",
            flavor.label(),
            started.elapsed().as_secs_f64()
        );
    }
}

#[test]
fn stored_rules_match_the_raw_backend_and_survive_reload_and_reboot() {
    each_backend("stored_rules_survive", |world| {
        let config_files = config_file_flags(world);
        let config_files: Vec<&str> = config_files.iter().map(String::as_str).collect();
        for (set, flags) in [
            ("default", &[][..]),
            ("with-multiple-flags", MULTIPLE_FLAGS),
            ("with-multiple-config-flags", &config_files),
        ] {
            let mut args = vec!["--store-firewalld", BOTH_FAMILIES];
            args.extend_from_slice(flags);
            let stderr = install(world, &args);
            assert!(stderr.contains("firewalld"), "{stderr}");
            assert_kernel_matches(world, set, "after install");
            if world.firewall_backend == "iptables" {
                // firewalld's iptables backend keeps direct rules in its X_direct chains.
                let nat = world.ok(&["iptables-save", "-t", "nat"]);
                assert!(
                    nat.lines().any(|l| l.starts_with("-A OUTPUT_direct ")
                        && l.contains("kuma/mesh/transparent/proxy")),
                    "{nat}"
                );
            }
            let rules = expected_rule_count(set);
            assert_eq!(world.count_our_rules(false), rules, "runtime rules");
            assert_eq!(world.count_our_rules(true), rules, "permanent rules");
            assert!(world.direct_xml().contains("KUMA_MESH_OUTBOUND"));

            world.firewall_cmd_ok(&["--reload"]);
            assert_kernel_matches(world, set, "after firewall-cmd --reload");
            world.reboot();
            assert_kernel_matches(world, set, "after a reboot");
            assert_eq!(
                world.count_our_rules(false),
                rules,
                "runtime rules after reboot"
            );
        }
        world.tproxy_ok(&["uninstall"]);
        assert_eq!(world.count_our_rules(false), 0);
        assert_eq!(world.count_our_rules(true), 0);
        assert!(!world.ok(&["iptables-save"]).contains("KUMA_MESH"));
        assert!(!world.ok(&["ip6tables-save"]).contains("KUMA_MESH"));
    });
}

#[test]
fn dns_redirection_with_an_excluded_ssh_port_matches_the_raw_backend() {
    let flags = ["--redirect-dns", "--exclude-inbound-ports", "22"];
    let Some(_) = common::sandbox("dns_redirection_reference") else {
        return;
    };
    let want = raw_backend_rules(&flags);
    each_backend("dns_redirection", |world| {
        let mut args = vec!["--store-firewalld", BOTH_FAMILIES];
        args.extend_from_slice(&flags);
        install(world, &args);
        assert_kernel_equals(world, &want, "after install");
        world.reboot();
        assert_kernel_equals(world, &want, "after a reboot");
        // Docker's DNS chain appears. firewalld removes it with every reload, so a stored
        // jump there would leave firewalld FAILED at the next one: the rules stay as they are.
        for program in ["iptables", "ip6tables"] {
            world.ok(&[program, "-t", "nat", "-N", "DOCKER_OUTPUT"]);
        }
        let stderr = install(world, &args);
        assert!(
            stderr.contains("IPv4: Docker's DOCKER_OUTPUT chain is not firewalld's"),
            "{stderr}"
        );
        assert_kernel_equals(world, &want, "with Docker's chain");
        world.firewall_cmd_ok(&["--reload"]);
        assert_eq!(world.firewall_cmd_ok(&["--state"]).trim(), "running");
        assert_kernel_equals(world, &want, "after a reload");
    });
}

#[test]
fn without_store_the_rules_are_runtime_only_and_the_operator_is_told() {
    each_backend("runtime_only", |world| {
        let stderr = install(world, &[]);
        assert!(stderr.contains("--store-firewalld"), "{stderr}");
        assert!(stderr.contains("RFC3964_IPv4"), "{stderr}");
        assert!(world.count_our_rules(false) > 0);
        assert_eq!(world.count_our_rules(true), 0);
        assert!(
            !world.ok(&["ip6tables-save"]).contains("KUMA_MESH"),
            "IPv4 only"
        );
        assert!(!world.direct_xml_path().exists());

        // Stored rules that differ from a later runtime-only install would return at reload.
        install(
            world,
            &["--store-firewalld", "--exclude-inbound-ports", "22"],
        );
        let stderr = install(world, &[]);
        assert!(stderr.contains("come back at the next reload"), "{stderr}");
        let stderr = install(world, &["--exclude-inbound-ports", "22"]);
        assert!(!stderr.contains("come back"), "{stderr}");
    });
}

const FOREIGN: &str = include_str!("../xml-fixtures/foreign-live.xml");

/// Another tool's entries stay as they were. With firewalld running, firewalld writes
/// direct.xml (in its own layout) and we never do: a write of ours would race its writes
/// for other clients. With firewalld stopped, we write the file, and every byte that is
/// not ours is kept.
#[test]
fn foreign_entries_stay_as_they_were() {
    each_backend("foreign_entries", |world| {
        world.stop();
        std::fs::write(world.direct_xml_path(), FOREIGN).unwrap();
        install(world, &["--store-firewalld", BOTH_FAMILIES]);
        assert!(world.direct_xml().contains("KUMA_MESH"));
        world.tproxy_ok(&["uninstall"]);
        assert_eq!(
            world.direct_xml(),
            FOREIGN,
            "direct.xml after install + uninstall with firewalld stopped"
        );

        world.start();
        let runtime_before = world.firewall_cmd_ok(&["--direct", "--get-all-rules"]);
        let chains_before = world.firewall_cmd_ok(&["--direct", "--get-all-chains"]);
        let passthroughs_before = world.firewall_cmd_ok(&["--direct", "--get-all-passthroughs"]);

        install(world, &["--store-firewalld", BOTH_FAMILIES]);
        assert!(world.direct_xml().contains("KUMA_MESH"));
        world.tproxy_ok(&["uninstall"]);

        let foreign = direct_xml::parse(FOREIGN).unwrap().config();
        assert_eq!(
            world.direct_xml(),
            direct_xml::render(&foreign),
            "direct.xml after install + uninstall with firewalld running"
        );
        for permanent in [false, true] {
            let mut args = vec!["--direct"];
            if permanent {
                args.insert(0, "--permanent");
            }
            for (what, before) in [
                ("--get-all-rules", &runtime_before),
                ("--get-all-chains", &chains_before),
                ("--get-all-passthroughs", &passthroughs_before),
            ] {
                let mut query = args.clone();
                query.push(what);
                assert_eq!(
                    &world.firewall_cmd_ok(&query),
                    before,
                    "{what} (permanent: {permanent})"
                );
            }
        }
    });
}

#[test]
fn a_rerun_makes_no_write_call_and_one_more_port_makes_only_that_change() {
    each_backend("rerun", |world| {
        let base = [
            "--store-firewalld",
            BOTH_FAMILIES,
            "--exclude-inbound-ports",
            "22",
        ];
        let exclusion = |port: &str| {
            format!("rule ipv4 nat KUMA_MESH_INBOUND 0 -m comment --comment 'kuma/mesh/transparent/proxy/exclude inbound traffic from port {port} from redirection' -p tcp --dport {port} -j RETURN")
        };
        // The dry run's report says what the install will do, and changes nothing.
        let preview = report(world, &[&base[..], &["--dry-run"]].concat());
        assert_eq!(world.count_our_rules(false), 0);
        assert_eq!(world.count_our_rules(true), 0);
        let fresh = report(world, &base);
        assert_eq!(preview["targets"], fresh["targets"], "{preview}\n{fresh}");
        assert_eq!(
            (&preview["changed"], &fresh["changed"]),
            (&Value::Bool(true), &Value::Bool(true))
        );
        assert_eq!(fresh["backend"]["kind"], "firewalld", "{fresh}");
        assert_eq!(
            fresh["backend"]["firewall_backend"],
            world.firewall_backend.as_str()
        );
        assert!(fresh["backend"]["firewalld_version"].is_string(), "{fresh}");
        let entries_of_ours = world.count_our_rules(true);
        for target in ["runtime", "permanent"] {
            let added = entries(&fresh, target, "added");
            assert!(added.contains(&exclusion("22").as_str()), "{fresh}");
            // Our rules, and the chains they are in.
            assert!(added.len() > entries_of_ours, "{fresh}");
            assert_eq!(target_of(&fresh, target)["kept"], 0, "{fresh}");
        }
        let installed = entries(&fresh, "runtime", "added").len();
        let mut again = Value::Null;
        let calls = world.write_calls(|| {
            again = report(world, &base);
        });
        assert_eq!(calls, Vec::<String>::new(), "unchanged flags");
        assert_eq!(again["changed"], false, "{again}");
        for target in ["runtime", "permanent"] {
            assert_eq!(target_of(&again, target)["kept"], installed, "{again}");
            assert!(entries(&again, target, "added").is_empty(), "{again}");
        }

        let mut one_more = Value::Null;
        let calls = world.write_calls(|| {
            one_more = report(
                world,
                &[
                    "--store-firewalld",
                    BOTH_FAMILIES,
                    "--exclude-inbound-ports",
                    "22,2222",
                ],
            );
        });
        // One rule per family, in the runtime and in the permanent configuration.
        assert_eq!(
            calls,
            ["addRule", "addRule", "addRule", "addRule"],
            "one more port"
        );
        assert_kernel_has_port_exclusion(world, "2222");
        for target in ["runtime", "permanent"] {
            let added = entries(&one_more, target, "added");
            assert_eq!(added.len(), 2, "{one_more}");
            assert!(added[0].contains("--dport 2222"), "{one_more}");
            assert!(
                entries(&one_more, target, "removed").is_empty(),
                "{one_more}"
            );
            assert_eq!(
                target_of(&one_more, target)["kept"],
                installed,
                "{one_more}"
            );
        }
    });
}

fn assert_kernel_has_port_exclusion(world: &FirewalldSandbox, port: &str) {
    for program in ["iptables-save", "ip6tables-save"] {
        let save = world.ok(&[program]);
        let inbound: Vec<&str> = save
            .lines()
            .filter(|l| l.starts_with("-A KUMA_MESH_INBOUND "))
            .collect();
        assert!(
            inbound[1].contains(&format!("--dport {port} ")),
            "{program}: the new exclusion must follow port 22: {inbound:#?}"
        );
    }
}

#[test]
fn with_firewalld_stopped_direct_xml_is_written_and_rules_apply_now() {
    each_backend("offline", |world| {
        world.stop();
        // The dry run reads direct.xml and the kernel, and says what the run then does.
        let preview = report(world, &["--store-firewalld", BOTH_FAMILIES, "--dry-run"]);
        assert!(
            !world.direct_xml_path().exists(),
            "the dry run wrote direct.xml"
        );
        let stopped = report(world, &["--store-firewalld", BOTH_FAMILIES]);
        assert_eq!(
            preview["targets"], stopped["targets"],
            "{preview}\n{stopped}"
        );
        assert_eq!(stopped["backend"]["kind"], "firewalld-stopped", "{stopped}");
        assert!(
            stopped["summary"].as_str().unwrap().contains("direct.xml"),
            "{stopped}"
        );
        let targets: Vec<&Value> = stopped["targets"].as_array().unwrap().iter().collect();
        let names: Vec<&str> = targets
            .iter()
            .map(|t| t["target"].as_str().unwrap())
            .collect();
        assert_eq!(
            names,
            ["direct.xml", "kernel ipv4", "kernel ipv6"],
            "{stopped}"
        );
        assert!(
            entries(&stopped, "direct.xml", "added").contains(&"chain ipv6 nat KUMA_MESH_OUTBOUND"),
            "{stopped}"
        );
        assert!(
            !entries(&stopped, "kernel ipv6", "added").is_empty(),
            "{stopped}"
        );
        let xml = world.direct_xml();
        assert!(xml.starts_with("<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<direct>\n"));
        assert!(world
            .ok(&["iptables-save"])
            .contains("-j KUMA_MESH_OUTBOUND"));
        assert!(world.firewalld_dir().join("firewalld.conf").exists());
        let conf = std::fs::read_to_string(world.firewalld_dir().join("firewalld.conf")).unwrap();
        assert!(conf.contains("RFC3964_IPv4=no"), "{conf}");

        world.start();
        assert_kernel_matches(world, "default", "after firewalld started");
        // Running again changes nothing: the stored rules are already live.
        let calls = world.write_calls(|| {
            install(world, &["--store-firewalld", BOTH_FAMILIES]);
        });
        assert_eq!(calls, Vec::<String>::new());

        let removal = json_shape::report(world, &["uninstall"], 0);
        assert_eq!(removal["changed"], true, "{removal}");
        for target in ["runtime", "permanent"] {
            assert!(entries(&removal, target, "added").is_empty(), "{removal}");
            assert_eq!(
                entries(&removal, target, "removed").len(),
                entries(&stopped, "direct.xml", "added").len(),
                "{removal}"
            );
        }
        assert!(!world.direct_xml().contains("KUMA_MESH"));
        assert!(!world.ok(&["iptables-save"]).contains("KUMA_MESH"));
    });
}

/// Makes the `iptables-restore` and `ip6tables-restore` firewalld runs reject any input
/// that contains `word`, as iptables rejects a rule the kernel cannot take: the sandbox's
/// /etc/alternatives is replaced with a copy whose two links point to a wrapper.
fn reject_in_firewalds_iptables(world: &FirewalldSandbox, word: &str) {
    let alternatives = world.path("alternatives");
    world.ok(&[
        "cp",
        "-a",
        "/etc/alternatives",
        &alternatives.display().to_string(),
    ]);
    for restore in ["iptables-restore", "ip6tables-restore"] {
        // The alternative's own name (iptables-nft-restore, ...) tells the multi-call binary
        // what to be.
        let real = std::fs::read_link(format!("/etc/alternatives/{restore}")).unwrap();
        let wrapper = world.path(&format!("rejecting-{restore}"));
        std::fs::write(
            &wrapper,
            format!(
                "#!/bin/sh\ninput=$(cat)\ncase \"$input\" in *'{word}'*) echo '{restore}: line 2 failed' >&2; exit 1;; esac\n\
                 printf '%s\\n' \"$input\" | exec {} \"$@\"\n",
                real.display()
            ),
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
        let link = alternatives.join(restore);
        std::fs::remove_file(&link).unwrap();
        std::os::unix::fs::symlink(&wrapper, &link).unwrap();
    }
    world.ok(&[
        "mount",
        "--bind",
        &alternatives.display().to_string(),
        "/etc/alternatives",
    ]);
}

/// The never-brick check: firewalld applies every entry at runtime, with the iptables it
/// starts with, before any entry goes into the permanent configuration it loads at its next
/// start; so a rule iptables rejects ends nowhere.
#[test]
fn a_rule_iptables_rejects_writes_nothing_anywhere() {
    each_backend("rejected_rule", |world| {
        reject_in_firewalds_iptables(world, "--uid-owner");
        let output = world.tproxy(&["install", "--kuma-dp-user", "kuma-dp", "--store-firewalld"]);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{stderr}");
        assert!(
            stderr.contains("line 2 failed") && stderr.contains("nothing is changed"),
            "{stderr}"
        );
        assert_eq!(world.count_our_rules(false), 0);
        assert_eq!(world.count_our_rules(true), 0);
        for target in [&["--direct"][..], &["--permanent", "--direct"]] {
            let chains = world.firewall_cmd_ok(&[target, &["--get-all-chains"]].concat());
            assert_eq!(chains.trim(), "", "{target:?}");
        }
        assert!(!world.direct_xml_path().exists());
        assert!(!world.ok(&["iptables-save"]).contains("KUMA_MESH"));
    });
}

#[test]
fn a_failure_midway_undoes_the_steps_before_it() {
    each_backend("failure_midway", |world| {
        if world.flavor.flushes_iptables_at_first_direct_entry() {
            // firewalld 2.x, nftables backend: the first runtime direct entry flushes
            // iptables once, so our own first addChain would delete the chain made below and
            // nothing would fail. A foreign direct rule makes that flush happen now.
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
                "9",
                "-j",
                "ACCEPT",
            ]);
        }
        // A chain firewalld does not know about makes its addChain fail after others succeeded.
        world.ok(&["iptables", "-t", "nat", "-N", "KUMA_MESH_OUTBOUND_REDIRECT"]);
        let output = world.tproxy(&["install", "--kuma-dp-user", "kuma-dp", "--store-firewalld"]);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{stderr}");
        assert!(stderr.contains("KUMA_MESH_OUTBOUND_REDIRECT"), "{stderr}");
        assert!(stderr.contains("undone"), "{stderr}");
        assert_eq!(
            world
                .firewall_cmd_ok(&["--direct", "--get-all-chains"])
                .trim(),
            ""
        );
        assert_eq!(world.count_our_rules(false), 0);
        assert_eq!(world.count_our_rules(true), 0);
        let chains: Vec<String> = world
            .ok(&["iptables-save", "-t", "nat"])
            .lines()
            .filter(|l| l.starts_with(":KUMA"))
            .map(str::to_string)
            .collect();
        assert_eq!(chains, [":KUMA_MESH_OUTBOUND_REDIRECT - [0:0]"]);
    });
}

/// A firewalld that stops answering in the middle of a run is not waited for forever: the
/// run stops once a call goes unanswered for the timeout, says why and what to do, and a
/// re-run converges once firewalld answers again.
#[test]
fn a_firewalld_that_stops_answering_midway_is_not_waited_for_forever() {
    use std::io::BufRead as _;
    each_backend("silent", |world| {
        let mut monitor = world
            .command(&[
                "dbus-monitor",
                "--address",
                &world.bus_address(),
                "type='method_call',interface='org.fedoraproject.FirewallD1.direct',member='addChain'",
            ])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let mut lines = std::io::BufReader::new(monitor.stdout.take().unwrap()).lines();
        // dbus-monitor says NameLost once it listens.
        assert!(lines.any(|l| l.unwrap().contains("NameLost")));
        std::thread::scope(|scope| {
            // firewalld hangs as our first change reaches it.
            let hang = scope.spawn(|| {
                if lines.any(|l| l.unwrap().contains("member=addChain")) {
                    world.signal_firewalld(libc::SIGSTOP);
                }
            });
            let mut run = world
                .command(&[
                    BIN,
                    "install",
                    "--kuma-dp-user",
                    "kuma-dp",
                    "--store-firewalld",
                ])
                .env("TPROXY_FIREWALLD_START_TIMEOUT", "2")
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap();
            let started = std::time::Instant::now();
            let deadline = started + std::time::Duration::from_secs(60);
            while run.try_wait().unwrap().is_none() {
                if std::time::Instant::now() > deadline {
                    let _ = run.kill();
                    world.signal_firewalld(libc::SIGCONT);
                    panic!("the run still waits for firewalld after 60 s");
                }
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            // One late answer ends the run, not one per call it had sent (13 or more, at 2 s
            // each).
            let took = started.elapsed();
            let output = run.wait_with_output().unwrap();
            let _ = monitor.kill();
            let _ = monitor.wait();
            hang.join().unwrap();
            world.signal_firewalld(libc::SIGCONT);
            let stderr = String::from_utf8_lossy(&output.stderr);
            assert_eq!(output.status.code(), Some(1), "{stderr}");
            assert!(
                stderr.contains("firewalld did not answer `+ chain")
                    && stderr.contains("no answer within 2 s")
                    && stderr.contains("run again"),
                "{stderr}"
            );
            assert!(
                took < std::time::Duration::from_secs(15),
                "{took:?}: {stderr}"
            );
        });
        install(world, &["--store-firewalld"]);
        let stored = world.count_our_rules(true);
        assert!(stored > 0);
        assert_eq!(world.count_our_rules(false), stored);
    });
}

/// firewalld writes direct.xml in place, so a run can read it half written while another
/// client's permanent change is being saved: that is read again, not refused as malformed.
#[test]
fn a_direct_xml_caught_half_written_is_read_again() {
    each_backend("half_written", |world| {
        install(world, &["--store-firewalld"]);
        let path = world.direct_xml_path();
        let whole = std::fs::read(&path).unwrap();
        std::fs::write(&path, &whole[..whole.len() / 2]).unwrap();
        let finishing = {
            let (path, whole) = (path.clone(), whole.clone());
            std::thread::spawn(move || {
                std::thread::sleep(std::time::Duration::from_millis(300));
                std::fs::write(path, whole).unwrap();
            })
        };
        let stderr = install(world, &["--store-firewalld"]);
        finishing.join().unwrap();
        assert!(stderr.contains("already installed"), "{stderr}");
        assert_eq!(std::fs::read(&path).unwrap(), whole);
    });
}

#[test]
fn a_malformed_direct_xml_is_never_rewritten() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("xml-fixtures");
    let mut fixtures: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("malformed-")
        })
        .collect();
    fixtures.sort();
    assert!(fixtures.len() >= 10, "{fixtures:?}");
    each_backend("malformed", |world| {
        // With firewalld running (install and uninstall), then with it stopped.
        for running in [true, false] {
            if !running {
                world.stop();
            }
            for fixture in &fixtures {
                let name = fixture.file_name().unwrap().to_string_lossy();
                let bytes = std::fs::read(fixture).unwrap();
                std::fs::write(world.direct_xml_path(), &bytes).unwrap();
                for command in [
                    &["install", "--kuma-dp-user", "kuma-dp", "--store-firewalld"][..],
                    &["uninstall"],
                ] {
                    let output = world.tproxy(command);
                    let stderr = String::from_utf8_lossy(&output.stderr);
                    assert_eq!(
                        output.status.code(),
                        Some(1),
                        "{name} {command:?}: {stderr}"
                    );
                    assert!(stderr.contains("line "), "{name}: {stderr}");
                    assert_eq!(
                        stderr.lines().filter(|l| l.contains("error:")).count(),
                        1,
                        "{name}: one error line: {stderr}"
                    );
                    assert_eq!(
                        std::fs::read(world.direct_xml_path()).unwrap(),
                        bytes,
                        "{name}"
                    );
                    assert!(
                        !world.ok(&["iptables-save"]).contains("KUMA_MESH"),
                        "{name}"
                    );
                }
            }
        }
        world.start();
    });
}

#[test]
fn a_failed_firewalld_is_named_and_nothing_changes() {
    let fixture =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("xml-fixtures/foreign-fails-double-quote.xml");
    each_backend("failed_state", |world| {
        world.stop();
        let bytes = std::fs::read(&fixture).unwrap();
        std::fs::write(world.direct_xml_path(), &bytes).unwrap();
        world.start_until("failed");
        let output = world.tproxy(&["install", "--kuma-dp-user", "kuma-dp", "--store-firewalld"]);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{stderr}");
        assert!(stderr.contains("FAILED state"), "{stderr}");
        assert!(stderr.lines().count() == 1, "one line: {stderr}");
        assert_eq!(std::fs::read(world.direct_xml_path()).unwrap(), bytes);
        assert!(!world.ok(&["iptables-save"]).contains("KUMA_MESH"));
    });
}

#[test]
fn without_firewalld_the_raw_backend_warns_that_nothing_persists() {
    let Some(sandbox) = common::sandbox("without_firewalld") else {
        return;
    };
    let output = sandbox.tproxy(&["install", "--kuma-dp-user", "kuma-dp"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(
        stderr.contains("nothing persists across reboots"),
        "{stderr}"
    );
    assert!(sandbox
        .ok(&["iptables-save"])
        .contains("KUMA_MESH_OUTBOUND"));
}

#[test]
fn other_tools_iptables_rules_are_never_flushed_silently() {
    each_backend("foreign_iptables", |world| {
        world.ok(&[
            "iptables",
            "-t",
            "nat",
            "-A",
            "POSTROUTING",
            "-o",
            "veth0",
            "-j",
            "MASQUERADE",
        ]);
        world.ok(&[
            "ip6tables",
            "-A",
            "INPUT",
            "-p",
            "tcp",
            "--dport",
            "8443",
            "-j",
            "ACCEPT",
        ]);
        let foreign = |world: &FirewalldSandbox| {
            world.ok(&["iptables-save"]).contains("-j MASQUERADE")
                && world.ok(&["ip6tables-save"]).contains("--dport 8443")
        };
        let output = world.tproxy(&["install", "--kuma-dp-user", "kuma-dp"]);
        let stderr = String::from_utf8_lossy(&output.stderr);
        if world.flavor.flushes_iptables_at_first_direct_entry() {
            // firewalld 2.x would flush them at our first entry: refused, nothing changed.
            assert_eq!(output.status.code(), Some(1), "{stderr}");
            assert!(
                stderr.contains("--accept-firewalld-iptables-flush"),
                "{stderr}"
            );
            assert!(foreign(world), "foreign rules must survive the refusal");
            assert_eq!(world.count_our_rules(false), 0);
            install(world, &["--accept-firewalld-iptables-flush"]);
            assert!(world.count_our_rules(false) > 0);
        } else {
            assert!(output.status.success(), "{stderr}");
            assert!(
                foreign(world),
                "installing must not touch other tools' rules"
            );
        }
    });
}

#[test]
fn lockdown_refusing_us_is_named_and_nothing_changes() {
    each_backend("lockdown", |world| {
        if !world.flavor.has_lockdown() {
            return; // firewalld 2.2 removed lockdown
        }
        world.stop();
        let conf = world.firewalld_dir().join("firewalld.conf");
        let mut text = std::fs::read_to_string(&conf).unwrap();
        text.push_str("Lockdown=yes\n");
        std::fs::write(&conf, text).unwrap();
        world.start();
        let output = world.tproxy(&["install", "--kuma-dp-user", "kuma-dp", "--store-firewalld"]);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{stderr}");
        assert!(stderr.contains("lockdown"), "{stderr}");
        assert_eq!(
            stderr.lines().filter(|l| l.contains("error:")).count(),
            1,
            "{stderr}"
        );
        // The same failure as a report: the error, and the firewalld that refused.
        let refused = json_shape::report(
            world,
            &["install", "--kuma-dp-user", "kuma-dp", "--store-firewalld"],
            1,
        );
        assert!(
            refused["error"]["message"]
                .as_str()
                .unwrap()
                .contains("lockdown"),
            "{refused}"
        );
        assert_eq!(refused["backend"]["kind"], "firewalld", "{refused}");
        assert_eq!(refused["changed"], Value::Null, "{refused}");
        assert_eq!(world.count_our_rules(false), 0);
        assert_eq!(world.count_our_rules(true), 0);
        assert!(!world.direct_xml_path().exists());
        assert!(!world.ok(&["iptables-save"]).contains("KUMA_MESH"));
    });
}

#[test]
fn a_caller_firewalld_does_not_authorise_is_told_what_to_do() {
    each_backend("not_authorised", |world| {
        let bin = &world.copy_for_any_user(Path::new(common::BIN));
        // Without polkit on the bus, firewalld authorises uid 0 only.
        let output = world
            .command_as(common::APP_UID, &[bin, "inspect", "--source", "runtime"])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{stderr}");
        assert!(stderr.contains("not authorized"), "{stderr}");
        assert!(stderr.contains("run as root"), "{stderr}");
        // install says so before it asks firewalld anything.
        let output = world
            .command_as(common::APP_UID, &[bin, "install", "--store-firewalld"])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{stderr}");
        assert!(stderr.contains("needs root"), "{stderr}");
        assert_eq!(world.count_our_rules(false), 0);
    });
}

#[test]
fn backend_firewalld_without_a_running_firewalld_changes_nothing() {
    each_backend("not_running", |world| {
        world.stop();
        let output = world.tproxy(&[
            "install",
            "--kuma-dp-user",
            "kuma-dp",
            "--backend",
            "firewalld",
        ]);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{stderr}");
        assert!(stderr.contains("systemctl start firewalld"), "{stderr}");
        assert!(!world.ok(&["iptables-save"]).contains("KUMA_MESH"));
        assert!(!world.direct_xml_path().exists());
        world.start();
    });
}

/// A direct.xml whose `count` foreign rules firewalld applies one `iptables` call each
/// under `IndividualCalls=yes`: a start that takes seconds, as on a host with a large
/// configuration.
fn slow_start_config(world: &FirewalldSandbox, count: usize) -> Vec<u8> {
    let conf = world.firewalld_dir().join("firewalld.conf");
    let mut text = std::fs::read_to_string(&conf).unwrap();
    text.push_str("IndividualCalls=yes\n");
    std::fs::write(&conf, text).unwrap();
    let mut xml = String::from("<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<direct>\n");
    for port in 10000..10000 + count {
        xml.push_str(&format!(
            "  <rule ipv=\"ipv4\" table=\"filter\" chain=\"INPUT\" priority=\"0\">-p tcp --dport {port} -j ACCEPT</rule>\n"
        ));
    }
    xml.push_str("</direct>\n");
    std::fs::write(world.direct_xml_path(), &xml).unwrap();
    xml.into_bytes()
}

fn install_while_starting(world: &FirewalldSandbox, timeout: &str) -> std::process::Output {
    world
        .command(&[
            common::BIN,
            "install",
            "--kuma-dp-user",
            "kuma-dp",
            "--store-firewalld",
            BOTH_FAMILIES,
        ])
        .env("TPROXY_FIREWALLD_START_TIMEOUT", timeout)
        .output()
        .unwrap()
}

/// firewalld owns its bus name (systemd's "started") before it answers any call: a run in
/// that window waits, saying so, or gives up after the timeout having changed nothing.
#[test]
fn a_starting_firewalld_is_waited_for_and_a_timeout_changes_nothing() {
    each_backend("starting", |world| {
        world.stop();
        let foreign = slow_start_config(world, 500);

        let started = std::time::Instant::now();
        world.start_in_background();
        let output = install_while_starting(world, "1");
        let stderr = String::from_utf8_lossy(&output.stderr);
        world.wait_for_state("running");
        eprintln!(
            "firewalld took {:.1} s to start",
            started.elapsed().as_secs_f64()
        );
        assert_eq!(output.status.code(), Some(1), "{stderr}");
        assert!(stderr.contains("waiting up to 1 s"), "{stderr}");
        assert!(
            stderr.contains("firewalld is still starting after 1 s"),
            "{stderr}"
        );
        assert_eq!(world.count_our_rules(false), 0);
        assert_eq!(world.count_our_rules(true), 0);
        assert_eq!(std::fs::read(world.direct_xml_path()).unwrap(), foreign);

        world.stop();
        world.start_in_background();
        let output = install_while_starting(world, "120");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(output.status.success(), "{stderr}\n{}", world.log());
        assert!(stderr.contains("firewalld is starting"), "{stderr}");
        assert_kernel_matches(world, "default", "after waiting for firewalld to start");
        assert_eq!(world.count_our_rules(true), expected_rule_count("default"));
    });
}
