//! `validate` with real traffic in the test's namespaces, on raw iptables and on every
//! firewalld cell: it passes after install and fails with the right check and diagnosis
//! when nothing is installed, a chain was flushed behind firewalld's back, IPv6 rules sit
//! under RFC3964_IPv4=yes, a reload dropped runtime-only rules, the inbound port is taken,
//! or the kuma-dp UID is wrong. No probe outlives a run: after each one the namespace holds
//! the same processes and sockets as before it.

mod common;

use std::collections::BTreeSet;
use std::net::TcpListener;
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use common::firewalld::{with_firewalld, Version, BACKENDS};
use common::{json_shape, Sandbox};

const FLAGS: &[&str] = &[
    "--kuma-dp-user",
    "kuma-dp",
    "--redirect-dns",
    "--exclude-inbound-ports",
    "22",
];

/// A broken host must fail in this time (a working one answers in milliseconds).
const FAILS_WITHIN: Duration = Duration::from_secs(2);

struct Run {
    code: i32,
    /// stdout, then stderr (one notice a line).
    stdout: String,
    elapsed: Duration,
}

impl Run {
    /// `(verdict, "IPv4 inbound")` of each check line.
    fn verdicts(&self) -> Vec<(String, String)> {
        self.stdout
            .lines()
            .filter_map(|line| {
                let (verdict, rest) = line.split_once(' ')?;
                ["ok", "FAIL", "skip"].contains(&verdict).then_some(())?;
                let (check, _) = rest.trim_start().split_once(':')?;
                Some((verdict.to_string(), check.to_string()))
            })
            .collect()
    }

    fn verdict(&self, check: &str) -> String {
        self.verdicts()
            .into_iter()
            .find(|(_, c)| c == check)
            .map_or_else(|| format!("no {check} line"), |(v, _)| v)
    }

    /// The diagnosis block's lines.
    fn diagnosis(&self) -> Vec<&str> {
        self.stdout
            .lines()
            .skip_while(|l| *l != "diagnosis:")
            .skip(1)
            .take_while(|l| l.starts_with("  "))
            .map(str::trim)
            .collect()
    }
}

/// Runs validate (or any spelling of it) in the sandbox and checks that it left no process
/// and no socket behind.
fn validate(sandbox: &Sandbox, args: &[&str]) -> Run {
    let before = (sockets(sandbox), processes(sandbox));
    let mut full = vec![common::BIN];
    full.extend_from_slice(args);
    let started = Instant::now();
    let output = sandbox.run(&full);
    let elapsed = started.elapsed();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    let after = (sockets(sandbox), processes(sandbox));
    assert_eq!(after, before, "{args:?} left probes behind:\n{stdout}");
    Run {
        code: output.status.code().unwrap_or(-1),
        stdout: format!("{stdout}{stderr}"),
        elapsed,
    }
}

fn validate_with(sandbox: &Sandbox, flags: &[&str]) -> Run {
    validate(sandbox, &[&["validate"], flags].concat())
}

/// Listening TCP and bound UDP sockets of the sandbox's network namespace.
fn sockets(sandbox: &Sandbox) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    for table in ["tcp", "tcp6", "udp", "udp6"] {
        let text = sandbox.ok(&["cat", &format!("/proc/net/{table}")]);
        for line in text.lines().skip(1) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            // TCP state 0A is LISTEN; any UDP socket is bound.
            if table.starts_with("udp") || fields.get(3) == Some(&"0A") {
                found.insert(format!("{table} {}", fields[1]));
            }
        }
    }
    found
}

/// The processes in the sandbox's network namespace.
fn processes(sandbox: &Sandbox) -> BTreeSet<u32> {
    let ns = std::fs::read_link(format!("/proc/{}/ns/net", sandbox.pid())).unwrap();
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| std::fs::read_link(format!("/proc/{pid}/ns/net")).is_ok_and(|n| n == ns))
        .collect()
}

/// Routes through the sandbox's veth pair (its far end drops what it gets) to the
/// documentation networks the outbound checks connect to, and to the IPv4 name server of
/// the sandbox's resolv.conf (fd00::53 is on the veth's own network), as a host has them.
fn route_out(sandbox: &Sandbox) {
    sandbox.ok(&["ip", "route", "add", "198.51.100.0/24", "dev", "veth0"]);
    sandbox.ok(&["ip", "-6", "route", "add", "2001:db8::/32", "dev", "veth0"]);
    sandbox.ok(&["ip", "route", "add", "10.96.0.10/32", "dev", "veth0"]);
}

/// A TCP listener on `address` inside the sandbox, as Envoy would hold one.
fn listen_inside(sandbox: &Sandbox, address: &'static str) -> TcpListener {
    let ns = std::fs::File::open(format!("/proc/{}/ns/net", sandbox.pid())).unwrap();
    std::thread::spawn(move || {
        // Only this thread enters the namespace; the socket stays in it.
        assert_eq!(
            unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) },
            0
        );
        TcpListener::bind(address).unwrap()
    })
    .join()
    .unwrap()
}

fn assert_all_pass(run: &Run, checks: &[(&str, &str)], when: &str) {
    assert_eq!(run.code, 0, "{when}:\n{}", run.stdout);
    let expected: Vec<(String, String)> = checks
        .iter()
        .map(|(v, c)| (v.to_string(), c.to_string()))
        .collect();
    assert_eq!(run.verdicts(), expected, "{when}:\n{}", run.stdout);
    assert!(run.stdout.contains("\npassed\n"), "{when}:\n{}", run.stdout);
}

const IPV4_WITH_DNS: [(&str, &str); 4] = [
    ("ok", "IPv4 inbound"),
    ("ok", "IPv4 outbound"),
    ("ok", "IPv4 kuma-dp"),
    ("ok", "IPv4 dns"),
];

/// IPv6 DNS goes to fd00::53, a name server a probe could reach: that check is skipped.
const BOTH_WITH_DNS: [(&str, &str); 8] = [
    IPV4_WITH_DNS[0],
    IPV4_WITH_DNS[1],
    IPV4_WITH_DNS[2],
    IPV4_WITH_DNS[3],
    ("ok", "IPv6 inbound"),
    ("ok", "IPv6 outbound"),
    ("ok", "IPv6 kuma-dp"),
    ("skip", "IPv6 dns"),
];

#[test]
fn raw_iptables() {
    let Some(sandbox) = common::sandbox("validate_raw_iptables") else {
        return;
    };
    route_out(&sandbox);

    // Nothing installed: kumactl's check and the outbound one fail, status says why. No
    // probe left the host but to a documentation address, though nothing redirected them
    // (the DNS probe went to the real name server 10.96.0.10).
    let leaving = |program: &str, documentation: &str, delete: bool| {
        for protocol in ["tcp", "udp"] {
            let action = if delete { "-D" } else { "-A" };
            let rule = ["-o", "veth0", "!", "-d", documentation, "-p", protocol];
            sandbox.ok(&[&[program, "-t", "mangle", action, "POSTROUTING"][..], &rule].concat());
        }
    };
    leaving("iptables", "198.51.100.0/24", false);
    leaving("ip6tables", "2001:db8::/32", false);
    let nothing = validate_with(&sandbox, FLAGS);
    for program in ["iptables", "ip6tables"] {
        let counters = sandbox.ok(&[
            program,
            "-t",
            "mangle",
            "-L",
            "POSTROUTING",
            "-v",
            "-n",
            "-x",
        ]);
        let packets: Vec<&str> = counters
            .lines()
            .skip(2)
            .filter_map(|l| l.split_whitespace().next())
            .collect();
        assert_eq!(
            packets,
            ["0", "0"],
            "{program}: probes left the host:\n{counters}"
        );
    }
    leaving("iptables", "198.51.100.0/24", true);
    leaving("ip6tables", "2001:db8::/32", true);
    assert_eq!(nothing.code, 1, "{}", nothing.stdout);
    assert!(nothing.elapsed < FAILS_WITHIN, "{:?}", nothing.elapsed);
    for check in ["IPv4 inbound", "IPv4 outbound", "IPv4 dns", "IPv6 inbound"] {
        assert_eq!(nothing.verdict(check), "FAIL", "{}", nothing.stdout);
    }
    assert!(
        nothing
            .diagnosis()
            .iter()
            .any(|l| l.starts_with("kernel (iptables nf_tables): 46 missing, 0 extra")),
        "{}",
        nothing.stdout
    );
    // kumactl's spelling gives the same result.
    let kumactl = validate(
        &sandbox,
        &[&["install", "transparent-proxy-validator"], FLAGS].concat(),
    );
    assert_eq!(
        (kumactl.code, kumactl.verdicts()),
        (nothing.code, nothing.verdicts())
    );

    // Installed, both families: everything passes, fast.
    sandbox.tproxy_ok(&[&["install"], FLAGS].concat());
    let passed = validate_with(&sandbox, FLAGS);
    assert_all_pass(&passed, &BOTH_WITH_DNS, "installed");
    assert!(
        passed.elapsed < Duration::from_secs(1),
        "{:?}",
        passed.elapsed
    );
    let line = passed
        .stdout
        .lines()
        .find(|l| l.contains("IPv4 outbound"))
        .unwrap();
    assert!(
        line.ends_with("landed on 127.0.0.1:15001, original destination 198.51.100.1:80"),
        "{line}"
    );
    let kumactl = validate(
        &sandbox,
        &[&["install", "transparent-proxy-validator"], FLAGS].concat(),
    );
    assert_all_pass(&kumactl, &BOTH_WITH_DNS, "kumactl's spelling");
    let ipv4 = validate(
        &sandbox,
        &[
            &[
                "install",
                "transparent-proxy-validator",
                "--ip-family-mode",
                "ipv4",
            ],
            FLAGS,
        ]
        .concat(),
    );
    assert_all_pass(&ipv4, &IPV4_WITH_DNS, "--ip-family-mode ipv4");
    let json = sandbox.tproxy(&[&["validate", "--output", "json"], FLAGS].concat());
    let document =
        json_shape::assert_documented("validate", &String::from_utf8_lossy(&json.stdout));
    assert_eq!(document["passed"], true);
    assert_eq!(document["checks"][1]["check"], "outbound");
    assert_eq!(document["checks"][1]["family"], "ipv4");
    assert_eq!(document["checks"][1]["result"], "ok");

    // One chain flushed: the checks that go through it fail.
    sandbox.ok(&["iptables", "-t", "nat", "-F", "KUMA_MESH_OUTBOUND"]);
    let flushed = validate_with(&sandbox, FLAGS);
    assert_eq!(flushed.code, 1, "{}", flushed.stdout);
    assert!(flushed.elapsed < FAILS_WITHIN, "{:?}", flushed.elapsed);
    assert_eq!(flushed.verdict("IPv4 inbound"), "FAIL");
    assert_eq!(flushed.verdict("IPv4 outbound"), "FAIL");
    assert_eq!(
        flushed.verdict("IPv4 dns"),
        "ok",
        "DNS does not use that chain"
    );
    assert_eq!(flushed.verdict("IPv6 outbound"), "ok");
    assert!(flushed.diagnosis().contains(&"missing rule ipv4 nat KUMA_MESH_OUTBOUND \"prevent traffic loops by ensuring traffic from the sidecar proxy (using 127.0.0.6/32) to loopback interface is not redirected again\""), "{}", flushed.stdout);
    sandbox.tproxy_ok(&[&["install"], FLAGS].concat());

    // Envoy already holds the inbound port: that check cannot run, and says why.
    let envoy = listen_inside(&sandbox, "0.0.0.0:15006");
    let taken = validate_with(&sandbox, FLAGS);
    assert_eq!(taken.code, 1, "{}", taken.stdout);
    let line = taken
        .stdout
        .lines()
        .find(|l| l.contains("IPv4 inbound"))
        .unwrap();
    assert!(
        line.starts_with("FAIL")
            && line.contains("could not run: cannot listen on 127.0.0.1:15006"),
        "{line}"
    );
    assert_eq!(taken.verdict("IPv4 outbound"), "ok");
    assert_eq!(
        taken.verdict("IPv6 inbound"),
        "ok",
        "Envoy listens on IPv4 only here"
    );
    assert!(taken.diagnosis().contains(&"TCP 127.0.0.1:15006 is already in use: is Envoy (kuma-dp) running? validate before kuma-dp starts, or pass the ports the rules were installed with"), "{}", taken.stdout);
    drop(envoy);

    // Validating for another user than the rules were installed for.
    let mut other_user = FLAGS.to_vec();
    other_user[1] = "app";
    let wrong = validate_with(&sandbox, &other_user);
    assert_eq!(wrong.code, 1, "{}", wrong.stdout);
    assert_eq!(wrong.verdict("IPv4 inbound"), "FAIL");
    assert_eq!(
        wrong.verdict("IPv4 kuma-dp"),
        "FAIL",
        "app's connections go to Envoy"
    );
    assert!(wrong.diagnosis().contains(&"IPv4: the rules in the kernel treat UID 5678 as kuma-dp's, but kuma-dp runs as UID 4242: install again with the user kuma-dp runs as (--kuma-dp-user), or validate with it"), "{}", wrong.stdout);
}

/// Legacy iptables matches the owner with xt_owner, not nf_tables' socket UID: the probes'
/// sockets belong to their users for both.
#[test]
fn legacy_iptables() {
    let Some(sandbox) = common::sandbox_with("validate_legacy_iptables", &["iptables-legacy"])
    else {
        return;
    };
    route_out(&sandbox);
    // A chain in legacy's tables makes install choose legacy, as kumactl does.
    sandbox.ok(&["iptables-legacy", "-t", "nat", "-N", "FOREIGN"]);
    sandbox.ok(&["ip6tables-legacy", "-t", "nat", "-N", "FOREIGN"]);
    sandbox.tproxy_ok(&[&["install"], FLAGS].concat());
    assert!(sandbox
        .ok(&["iptables-legacy-save", "-t", "nat"])
        .contains("KUMA_MESH_OUTBOUND"));
    assert_all_pass(
        &validate_with(&sandbox, FLAGS),
        &BOTH_WITH_DNS,
        "legacy iptables",
    );
}

/// IPv6 rules as the raw backend installs them, applied behind firewalld's back.
fn install_ipv6_rules_with_ip6tables(host: &Sandbox) {
    let plain = Sandbox::new();
    let dry_run = plain.tproxy_ok(&["install", "--dry-run", "--kuma-dp-user", "kuma-dp"]);
    let ipv6 = dry_run.split("### IPv6 ###").nth(1).unwrap();
    // kumactl's dry run writes `* nat`; iptables-restore reads `*nat`.
    let script = path_with(host, "ipv6.rules", &ipv6.replace("* ", "*"));
    host.ok(&["ip6tables-restore", "--noflush", &script]);
    host.ok(&["ip", "-6", "addr", "add", "::6/128", "dev", "lo"]);
}

fn path_with(sandbox: &Sandbox, name: &str, text: &str) -> String {
    let path = sandbox.path(name);
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_string()
}

#[test]
fn firewalld() {
    // Without --redirect-dns there is no DNS check.
    let ipv4: [(&str, &str); 4] = [
        ("ok", "IPv4 inbound"),
        ("ok", "IPv4 outbound"),
        ("ok", "IPv4 kuma-dp"),
        ("skip", "IPv4 dns"),
    ];
    for backend in BACKENDS {
        let Some(world) = with_firewalld(&format!("validate ({backend})"), backend) else {
            return;
        };
        let cell = world.flavor.label();
        route_out(&world);
        let user = ["--kuma-dp-user", "kuma-dp"];
        let with_dns: Vec<&str> = [&user[..], &["--redirect-dns"]].concat();

        // Runtime only, under RFC3964_IPv4=yes: IPv4 passes. A reload drops the rules.
        world.tproxy_ok(&[&["install"], &with_dns[..]].concat());
        let mut expected = IPV4_WITH_DNS.to_vec();
        assert_all_pass(&validate_with(&world, &with_dns), &expected, &cell);
        world.firewall_cmd_ok(&["--reload"]);
        let dropped = validate_with(&world, &with_dns);
        assert_eq!(dropped.code, 1, "{cell}: {}", dropped.stdout);
        assert!(
            dropped.elapsed < FAILS_WITHIN,
            "{cell}: {:?}",
            dropped.elapsed
        );
        assert_eq!(dropped.verdict("IPv4 outbound"), "FAIL", "{cell}");
        assert!(dropped.diagnosis().contains(&"firewalld holds none of our rules, at runtime or in its permanent configuration: rules installed without --store-firewalld are gone after `firewall-cmd --reload`, a restart or a reboot; install again with --store-firewalld"), "{cell}: {}", dropped.stdout);

        // Stored: without flags, validate expects what the permanent configuration holds.
        world.tproxy_ok(&[&["install", "--store-firewalld"], &user[..]].concat());
        assert_all_pass(&validate_with(&world, &[]), &ipv4, &cell);

        // One of our chains flushed behind firewalld's back.
        world.ok(&["iptables", "-t", "nat", "-F", "KUMA_MESH_OUTBOUND"]);
        let flushed = validate_with(&world, &[]);
        assert_eq!(flushed.code, 1, "{cell}: {}", flushed.stdout);
        assert_eq!(flushed.verdict("IPv4 inbound"), "FAIL", "{cell}");
        assert!(
            flushed
                .diagnosis()
                .iter()
                .any(|l| l.starts_with("kernel (iptables") && l.contains("6 missing, 0 extra")),
            "{cell}: {}",
            flushed.stdout
        );

        // IPv6 rules installed with raw ip6tables under RFC3964_IPv4=yes, whose reject of
        // ::/96 in firewalld's OUTPUT filter takes ::1, where REDIRECT delivers. firewalld 2.x
        // accepts translated (DNAT) packets before that reject; 1.3 does not.
        world.firewall_cmd_ok(&["--reload"]);
        install_ipv6_rules_with_ip6tables(&world);
        let under_rfc3964 = validate_with(&world, &[]);
        // kumactl's check passes anyway: its packet leaves through the loopback, which
        // firewalld accepts. An application's, routed out and redirected, is what is rejected.
        assert_eq!(
            under_rfc3964.verdict("IPv6 inbound"),
            "ok",
            "{cell}: {}",
            under_rfc3964.stdout
        );
        assert_eq!(under_rfc3964.verdict("IPv4 outbound"), "ok", "{cell}");
        if world.flavor.version == Version::V1 {
            assert_eq!(under_rfc3964.code, 1, "{cell}: {}", under_rfc3964.stdout);
            assert_eq!(
                under_rfc3964.verdict("IPv6 outbound"),
                "FAIL",
                "{cell}: {}",
                under_rfc3964.stdout
            );
            assert!(
                under_rfc3964.diagnosis()[0]
                    .starts_with("firewalld's RFC3964_IPv4=yes rejects traffic to ::/96"),
                "{cell}: {}",
                under_rfc3964.stdout
            );
        } else {
            assert_eq!(under_rfc3964.code, 0, "{cell}: {}", under_rfc3964.stdout);
        }

        // RFC3964_IPv4=no: both families pass.
        world.tproxy_ok(
            &[
                &[
                    "install",
                    "--store-firewalld",
                    "--disable-firewalld-rfc3964-ipv4",
                ],
                &user[..],
            ]
            .concat(),
        );
        expected = ipv4.to_vec();
        expected.extend([
            ("ok", "IPv6 inbound"),
            ("ok", "IPv6 outbound"),
            ("ok", "IPv6 kuma-dp"),
            ("skip", "IPv6 dns"),
        ]);
        assert_all_pass(&validate_with(&world, &[]), &expected, &cell);
    }
}

#[test]
fn bad_input_and_no_root() {
    let Some(sandbox) = common::sandbox("validate_bad_input") else {
        return;
    };
    let before = sandbox.saves();
    for (args, names) in [
        (
            &["--target", "127.0.0.1"][..],
            "--target: 127.0.0.1 is an address of this host",
        ),
        (
            &["--target", "192.0.2.1:443"],
            "--target: 192.0.2.1 is an address of this host",
        ),
        (
            &["--target", "203.0.113.7", "--target", "203.0.113.8"],
            "--target",
        ),
        (&["--target", "example.com"], "--target"),
        (&["--kuma-dp-user", "nobody-here"], "--kuma-dp-user"),
        (
            &[
                "--validation-server-port",
                "15010",
                "--redirect-inbound-port",
                "15010",
            ],
            "--validation-server-port",
        ),
    ] {
        let run = validate_with(&sandbox, args);
        assert_eq!(run.code, 2, "{args:?}: {}", run.stdout);
        let lines: Vec<&str> = run
            .stdout
            .lines()
            .filter(|l| !l.trim().is_empty())
            .collect();
        assert!(lines[0].contains(names), "{args:?}: {}", run.stdout);
    }
    // The probes switch users: as anyone else, one line and exit 1.
    let copy = sandbox.copy_for_any_user(std::path::Path::new(common::BIN));
    let output = sandbox
        .command_as(common::APP_UID, &[&copy, "validate"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&output.stderr),
        "tproxy-firewalld: error: validate needs root: it sends its probes as the kuma-dp user and as another user\n"
    );
    assert_eq!(sandbox.saves(), before, "validate changed the tables");
}
