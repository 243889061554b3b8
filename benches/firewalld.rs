//! The benchmark: `install` against what operators would otherwise run, on a
//! real firewalld in the test harness's namespaces, medians of several runs. Writes
//! BENCHMARKS.md. Run with `scripts/bench.sh` (root; installs what it needs).

#[path = "../tests/common/mod.rs"]
mod common;

use std::fmt::Write as _;
use std::path::Path;
use std::process::{Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use common::firewalld::{with_firewalld, FirewalldSandbox};
use common::Sandbox;
use tproxy_firewalld::quoting::join_args;

const REPS: usize = 11;
/// Rows 6a and 6b are short and close: more runs.
const RAW_REPS: usize = 21;
const INSTALL: &[&str] = &[
    "install",
    "--kuma-dp-user",
    "kuma-dp",
    "--store-firewalld",
    "--redirect-dns",
];
const FLOOR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/benches/floor.py");

struct Row {
    what: String,
    median: Duration,
    runs: usize,
    note: String,
}

/// `<this benchmark> --time-into FILE COMMAND...`, run inside the namespaces, runs COMMAND
/// and writes how long it took (ns) to FILE: the harness's cost of entering the namespaces
/// (nsenter: 1–2 ms) is then not counted, and every row measures only its own command.
const TIME_INTO: &str = "--time-into";

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some(TIME_INTO) {
        std::process::exit(run_timed(&args[2], &args[3..]));
    }
    // `cargo bench` passes --bench; `cargo test --all-targets` runs this binary without it,
    // and a benchmark is not a test.
    if !std::env::args().any(|a| a == "--bench") {
        println!("benchmark skipped: run it with scripts/bench.sh");
        return;
    }
    let Some(mut world) = with_firewalld("benchmark", "nftables") else {
        eprintln!("the benchmark needs root, namespaces, iptables and firewalld");
        std::process::exit(1);
    };
    let mut rows = Vec::new();
    // Once: RFC3964_IPv4=no (firewalld reloads), so both families are installed below.
    run_ok(
        &world,
        &[INSTALL, &["--disable-firewalld-rfc3964-ipv4"]].concat(),
    );
    let entries = world.path("entries.json");
    run_ok_raw(
        &world,
        &["/usr/bin/python3", FLOOR, "dump", entries.to_str().unwrap()],
    );
    let (chains, rules) = count_entries(&entries);

    let ours = median(REPS, || {
        run_ok(&world, &["uninstall"]);
        time(&world, INSTALL)
    });
    rows.push(row(
        "1. `install --store-firewalld --redirect-dns`, both families, empty firewalld",
        ours,
        REPS,
        &format!("{chains} chains + {rules} rules, runtime and permanent"),
    ));

    let script = world.path("firewall-cmd.sh");
    std::fs::write(&script, firewall_cmd_script(&entries)).unwrap();
    let script_runs = 3;
    let by_hand = median(script_runs, || {
        run_ok(&world, &["uninstall"]);
        time_cmd(&world, &["bash", script.to_str().unwrap()])
    });
    rows.push(row(
        "2. the same with a `firewall-cmd` script (runtime + `--permanent`, one call per entry)",
        by_hand,
        script_runs,
        &format!("{} firewall-cmd calls", 2 * (chains + rules)),
    ));

    let python_floor = |mode: &str| {
        median(REPS, || {
            run_ok(&world, &["uninstall"]);
            time_cmd(
                &world,
                &["/usr/bin/python3", FLOOR, mode, entries.to_str().unwrap()],
            )
        })
    };
    let floor = python_floor("apply");
    rows.push(row(
        "3a. floor: python3-dbus client, one connection, one runtime and one permanent call per entry",
        floor,
        REPS,
        &format!("{} D-Bus calls", 2 * (chains + rules)),
    ));
    let unsafe_floor = python_floor("apply-update");
    rows.push(row(
        "3b. the same with the permanent part as one getSettings/update (loses other clients' entries written meanwhile)",
        unsafe_floor,
        REPS,
        &format!(
            "{} D-Bus calls; the safe permanent write costs {}",
            chains + rules + 2,
            ms(floor.saturating_sub(unsafe_floor))
        ),
    ));

    run_ok(&world, &["uninstall"]);
    run_ok(&world, INSTALL);
    let noop = median(REPS, || time(&world, INSTALL));
    let noop_calls = world.write_calls(|| run_ok(&world, INSTALL));
    rows.push(row(
        "4a. re-run with unchanged flags",
        noop,
        REPS,
        &format!("{} D-Bus write calls", noop_calls.len()),
    ));
    let one_more = [INSTALL, &["--exclude-inbound-ports", "2222"]].concat();
    let port = median(REPS, || {
        run_ok(&world, INSTALL);
        time(&world, &one_more)
    });
    run_ok(&world, INSTALL);
    let port_calls = world.write_calls(|| run_ok(&world, &one_more));
    rows.push(row(
        "4b. re-run adding one excluded inbound port",
        port,
        REPS,
        &format!(
            "{} D-Bus write calls: {}",
            port_calls.len(),
            port_calls.join(", ")
        ),
    ));

    // 4c. The checks of validate on this working host, both families, expecting what the
    // permanent configuration holds (no flags); its probes go to documentation addresses.
    run_ok(&world, INSTALL);
    world.ok(&["ip", "route", "add", "198.51.100.0/24", "dev", "veth0"]);
    world.ok(&["ip", "-6", "route", "add", "2001:db8::/32", "dev", "veth0"]);
    let checks = world.tproxy_ok(&["validate"]);
    let passed = checks.lines().filter(|l| l.starts_with("ok ")).count();
    let validate = median(REPS, || time(&world, &["validate"]));
    rows.push(row(
        "4c. `validate` after install: real traffic through the rules, both families",
        validate,
        REPS,
        &format!("{passed} checks pass (IPv6 DNS is skipped: its name server is a real host)"),
    ));

    let (offline, [offline_install, _, offline_cmd]) = offline_rows(&mut world);
    rows.extend(offline);
    let firewalld_version = world.firewall_cmd_ok(&["--version"]).trim().to_string();
    drop(world);
    let (raw, [raw_install, plain_restore]) = raw_rows();
    rows.extend(raw);
    let (process, rss_kib, size) = process_rows();
    rows.extend(process);

    let ratio = |a: Duration, b: Duration| a.as_secs_f64() / b.as_secs_f64();
    let mib = |bytes: f64| bytes / 1048576.0;
    let targets = vec![
        target(
            "install ≤ 1.2× the floor (1 / 3a)",
            format!("{:.2}×", ratio(ours, floor)),
            ratio(ours, floor) <= 1.2,
        ),
        target(
            "install ≥ 50× faster than the firewall-cmd script (2 / 1)",
            format!("{:.0}×", ratio(by_hand, ours)),
            ratio(by_hand, ours) >= 50.0,
        ),
        target(
            "no-op re-run: 0 write calls, ≤ 20 ms (4a)",
            format!("{} calls, {}", noop_calls.len(), ms(noop)),
            noop_calls.is_empty() && noop <= Duration::from_millis(20),
        ),
        target(
            "one more port: the minimum of write calls, one addRule per family, runtime and permanent (4b)",
            format!("{} calls", port_calls.len()),
            port_calls == ["addRule"; 4],
        ),
        target(
            "validate on a working host, both families, ≤ 100 ms (4c)",
            ms(validate),
            validate <= Duration::from_millis(100),
        ),
        target(
            "10,000-rule direct.xml update ≤ 50 ms (5a)",
            ms(offline_install),
            offline_install <= Duration::from_millis(50),
        ),
        target(
            "… and ≥ 20× faster than firewall-offline-cmd (one of its calls / 5a)",
            format!("{:.0}×", ratio(offline_cmd, offline_install)),
            ratio(offline_cmd, offline_install) >= 20.0,
        ),
        target(
            "raw install ≤ 1.3× plain restore (6a / 6b)",
            format!("{:.2}×", ratio(raw_install, plain_restore)),
            ratio(raw_install, plain_restore) <= 1.3,
        ),
        target(
            "peak RSS ≤ 15 MB (7b)",
            format!("{:.1} MiB", mib(rss_kib as f64 * 1024.0)),
            mib(rss_kib as f64 * 1024.0) <= 15.0,
        ),
        target(
            "release binary ≤ 6 MB (7c)",
            format!("{:.1} MiB", mib(size as f64)),
            mib(size as f64) <= 6.0,
        ),
    ];
    write_report(&rows, &targets, &firewalld_version);
}

struct Target {
    what: &'static str,
    measured: String,
    met: bool,
}

fn target(what: &'static str, measured: String, met: bool) -> Target {
    Target {
        what,
        measured,
        met,
    }
}

/// 5. direct.xml with 10,000 foreign rules, firewalld stopped.
fn offline_rows(world: &mut FirewalldSandbox) -> (Vec<Row>, [Duration; 3]) {
    run_ok(world, &["uninstall"]);
    world.stop();
    let mut xml = String::from("<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<direct>\n");
    xml.push_str("  <chain ipv=\"ipv4\" table=\"filter\" chain=\"FOREIGN\"/>\n");
    for i in 0..10_000 {
        let _ = writeln!(
            xml,
            "  <rule ipv=\"ipv4\" table=\"filter\" chain=\"FOREIGN\" priority=\"{i}\">-p tcp --dport {} -j ACCEPT</rule>",
            1 + i % 65535
        );
    }
    xml.push_str("</direct>\n");
    let path = world.direct_xml_path();
    // Our rules in kumactl's text form, for translate.
    let rules_text = world.path("rules.txt");
    let dry_run = world.tproxy_ok(&[
        "install",
        "--dry-run",
        "--kuma-dp-user",
        "kuma-dp",
        "--redirect-dns",
        "--backend",
        "iptables",
    ]);
    std::fs::write(&rules_text, dry_run).unwrap();
    let ours = median(REPS, || {
        std::fs::write(&path, &xml).unwrap();
        run_ok(world, &["uninstall", "--backend", "iptables"]);
        time(world, INSTALL)
    });
    let ours_file = median(REPS, || {
        std::fs::write(&path, &xml).unwrap();
        time(
            world,
            &[
                "translate",
                "--merge",
                path.to_str().unwrap(),
                rules_text.to_str().unwrap(),
            ],
        )
    });
    // firewall-offline-cmd changes one entry per call, so the same change takes one call per
    // entry. Each call re-reads the 10,000 rules; all of them would take minutes, so a few
    // are timed and the comparison uses a single call, which flatters firewall-offline-cmd.
    std::fs::write(&path, &xml).unwrap();
    let calls = offline_cmd_calls(world);
    let sample = 3;
    let mut one_call = Vec::new();
    for call in calls.iter().take(sample) {
        let args: Vec<&str> = call.iter().map(String::as_str).collect();
        one_call.push(time_cmd(world, &args));
    }
    one_call.sort();
    let offline_cmd = one_call[sample / 2];
    world.start();
    let rows = vec![
        row(
            "5a. stopped firewalld, direct.xml with 10,000 foreign rules: `install --store-firewalld` (file + iptables now)",
            ours,
            REPS,
            "",
        ),
        row(
            "5b. the same direct.xml: `translate --merge` of our entries (parse, merge, print)",
            ours_file,
            REPS,
            "",
        ),
        row(
            "5c. `firewall-offline-cmd --direct --add-rule` on the same direct.xml: one call",
            offline_cmd,
            sample,
            &format!(
                "the same change needs {} such calls (≈ {:.0} s)",
                calls.len(),
                offline_cmd.as_secs_f64() * calls.len() as f64
            ),
        ),
    ];
    (rows, [ours, ours_file, offline_cmd])
}

/// 6. The raw backend against plain iptables-restore of the same rules.
fn raw_rows() -> (Vec<Row>, [Duration; 2]) {
    let sandbox = Sandbox::new();
    let flags = &INSTALL[..INSTALL.len() - 2];
    let flags = [flags, &["--redirect-dns"]].concat();
    sandbox.tproxy_ok(&flags);
    let v4 = sandbox.path("v4.rules");
    let v6 = sandbox.path("v6.rules");
    std::fs::write(&v4, our_restore_text(&sandbox.ok(&["iptables-save"]))).unwrap();
    std::fs::write(&v6, our_restore_text(&sandbox.ok(&["ip6tables-save"]))).unwrap();
    // The two are compared by their ratio, and this VM's speed drifts: they take turns.
    let (ours, plain) = medians_taking_turns(
        RAW_REPS,
        || {
            sandbox.tproxy_ok(&["uninstall"]);
            time(&sandbox, &flags)
        },
        || {
            sandbox.tproxy_ok(&["uninstall"]);
            time_cmd(
                &sandbox,
                &["iptables-restore", "--noflush", v4.to_str().unwrap()],
            ) + time_cmd(
                &sandbox,
                &["ip6tables-restore", "--noflush", v6.to_str().unwrap()],
            )
        },
    );
    sandbox.tproxy_ok(&flags);
    let rerun = median(REPS, || time(&sandbox, &flags));
    let rows = vec![
        row(
            "6a. raw backend `install --redirect-dns`, both families",
            ours,
            RAW_REPS,
            "",
        ),
        row(
            "6b. plain `iptables-restore --noflush` + `ip6tables-restore --noflush` of the same chains and rules",
            plain,
            RAW_REPS,
            "taking turns with 6a",
        ),
        row(
            "6c. raw backend re-run with unchanged flags",
            rerun,
            REPS,
            "no process: nf_tables shows the tables hold what the last run left",
        ),
    ];
    (rows, [ours, plain])
}

/// Only our chains and rules of an iptables-save text, as a restore file: what a plain
/// `iptables-restore --noflush` needs to create the same rules.
fn our_restore_text(save: &str) -> String {
    save.lines()
        .filter(|l| {
            l.starts_with('*')
                || l.starts_with(":KUMA_MESH_")
                || (l.starts_with("-A ") && (l.contains("kuma/mesh") || l.contains("KUMA_MESH_")))
                || *l == "COMMIT"
        })
        .map(|l| match l.strip_prefix(':') {
            Some(chain) => format!(":{} - [0:0]\n", chain.split(' ').next().unwrap()),
            None => format!("{l}\n"),
        })
        .collect()
}

/// 7. Startup and peak memory.
fn process_rows() -> (Vec<Row>, i64, u64) {
    let sandbox = Sandbox::new();
    let version = median(REPS, || time(&sandbox, &["--version"]));
    let rss = peak_rss_kib(
        &sandbox,
        &["install", "--kuma-dp-user", "kuma-dp", "--redirect-dns"],
    );
    let size = std::fs::metadata(measured()).map(|m| m.len()).unwrap_or(0);
    let rows = vec![
        row("7a. startup: `--version`", version, REPS, ""),
        Row {
            what: "7b. peak RSS of `install` (raw backend)".into(),
            median: Duration::ZERO,
            runs: 1,
            note: format!("{:.1} MiB", rss as f64 / 1024.0),
        },
        Row {
            what: "7c. binary size".into(),
            median: Duration::ZERO,
            runs: 1,
            note: format!("{:.1} MiB ({})", size as f64 / 1048576.0, measured()),
        },
    ];
    (rows, rss, size)
}

fn row(what: &str, median: Duration, runs: usize, note: &str) -> Row {
    Row {
        what: what.into(),
        median,
        runs,
        note: note.into(),
    }
}

fn median(runs: usize, mut once: impl FnMut() -> Duration) -> Duration {
    middle((0..runs).map(|_| once()).collect())
}

/// The medians of `a` and `b`, run one after the other `runs` times each.
fn medians_taking_turns(
    runs: usize,
    mut a: impl FnMut() -> Duration,
    mut b: impl FnMut() -> Duration,
) -> (Duration, Duration) {
    let (times_a, times_b) = (0..runs).map(|_| (a(), b())).unzip();
    (middle(times_a), middle(times_b))
}

fn middle(mut times: Vec<Duration>) -> Duration {
    times.sort();
    times[times.len() / 2]
}

/// The binary measured: `$TPROXY_BENCH_BINARY` (scripts/bench.sh sets it to the build the
/// packages ship), else this benchmark's own build of it.
fn measured() -> &'static str {
    static BINARY: OnceLock<String> = OnceLock::new();
    BINARY.get_or_init(|| {
        std::env::var("TPROXY_BENCH_BINARY").unwrap_or_else(|_| common::BIN.to_string())
    })
}

/// `args` for the measured binary.
fn tproxy<'a>(args: &[&'a str]) -> Vec<&'a str> {
    [&[measured()], args].concat()
}

fn time(sandbox: &Sandbox, args: &[&str]) -> Duration {
    time_cmd(sandbox, &tproxy(args))
}

/// How long `args` takes inside the sandbox's namespaces (see [`TIME_INTO`]).
fn time_cmd(sandbox: &Sandbox, args: &[&str]) -> Duration {
    let record = sandbox.path("elapsed-ns");
    let me = std::env::current_exe().unwrap();
    let mut timed = vec![me.to_str().unwrap(), TIME_INTO, record.to_str().unwrap()];
    timed.extend_from_slice(args);
    check(args, &sandbox.run(&timed));
    let nanos = std::fs::read_to_string(&record).unwrap();
    Duration::from_nanos(nanos.trim().parse().unwrap())
}

/// The [`TIME_INTO`] side: runs `command` with this process's stdio and returns its exit code.
fn run_timed(record: &str, command: &[String]) -> i32 {
    let started = Instant::now();
    let status = std::process::Command::new(&command[0])
        .args(&command[1..])
        .status()
        .expect("run the timed command");
    let elapsed = started.elapsed();
    std::fs::write(record, elapsed.as_nanos().to_string()).unwrap();
    status.code().unwrap_or(1)
}

fn run_ok(sandbox: &Sandbox, args: &[&str]) {
    run_ok_raw(sandbox, &tproxy(args));
}

fn run_ok_raw(sandbox: &Sandbox, args: &[&str]) {
    check(args, &sandbox.run(args));
}

fn check(args: &[&str], output: &Output) {
    assert!(
        output.status.success(),
        "{args:?}: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Peak resident memory of one run, from wait4's rusage (nsenter execs the command).
#[expect(
    clippy::zombie_processes,
    reason = "reaped by wait4, which also reports its peak memory"
)]
fn peak_rss_kib(sandbox: &Sandbox, args: &[&str]) -> i64 {
    let child = sandbox
        .command(&tproxy(args))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut status = 0;
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::wait4(child.id() as i32, &mut status, 0, &mut usage) };
    usage.ru_maxrss
}

type Entries = (
    Vec<Vec<String>>,
    Vec<(String, String, String, i32, Vec<String>)>,
);

fn read_entries(path: &Path) -> Entries {
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let strings = |v: &serde_json::Value| -> Vec<String> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|s| s.as_str().unwrap().to_string())
            .collect()
    };
    let chains = json["chains"]
        .as_array()
        .unwrap()
        .iter()
        .map(strings)
        .collect();
    let rules = json["rules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r[0].as_str().unwrap().to_string(),
                r[1].as_str().unwrap().to_string(),
                r[2].as_str().unwrap().to_string(),
                r[3].as_i64().unwrap() as i32,
                strings(&r[4]),
            )
        })
        .collect();
    (chains, rules)
}

fn count_entries(path: &Path) -> (usize, usize) {
    let (chains, rules) = read_entries(path);
    (chains.len(), rules.len())
}

/// What an operator would write by hand: one firewall-cmd call per entry, runtime and
/// permanent.
fn firewall_cmd_script(path: &Path) -> String {
    let (chains, rules) = read_entries(path);
    let mut script = String::from("set -e\n");
    for permanent in ["", "--permanent "] {
        for chain in &chains {
            let _ = writeln!(
                script,
                "firewall-cmd -q {permanent}--direct --add-chain {}",
                chain.join(" ")
            );
        }
        for (ipv, table, chain, priority, args) in &rules {
            let _ = writeln!(
                script,
                "firewall-cmd -q {permanent}--direct --add-rule {ipv} {table} {chain} {priority} {}",
                join_args(args)
            );
        }
    }
    script
}

/// The firewall-offline-cmd calls that add our entries to direct.xml.
fn offline_cmd_calls(world: &FirewalldSandbox) -> Vec<Vec<String>> {
    let (chains, rules) = read_entries(&world.path("entries.json"));
    let config = world.firewalld_dir();
    let base = || {
        vec![
            "firewall-offline-cmd".to_string(),
            "-q".to_string(),
            "--system-config".to_string(),
            config.to_str().unwrap().to_string(),
            "--direct".to_string(),
        ]
    };
    let mut calls = Vec::new();
    for chain in chains {
        let mut call = base();
        call.push("--add-chain".into());
        call.extend(chain);
        calls.push(call);
    }
    for (ipv, table, chain, priority, args) in rules {
        let mut call = base();
        call.extend(["--add-rule".into(), ipv, table, chain, priority.to_string()]);
        call.extend(args);
        calls.push(call);
    }
    calls
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

/// BENCHMARKS.md: the generated tables replace the part between the markers; the
/// analysis written by hand around them stays.
fn write_report(rows: &[Row], targets: &[Target], firewalld_version: &str) {
    let mut out = String::from(BEGIN);
    out.push('\n');
    let _ = writeln!(out, "Machine: {}\n", machine(firewalld_version));
    out.push_str("| what | median | runs | notes |\n|---|---|---|---|\n");
    for row in rows {
        let median = if row.median.is_zero() {
            "—".to_string()
        } else {
            ms(row.median)
        };
        let _ = writeln!(
            out,
            "| {} | {median} | {} | {} |",
            row.what, row.runs, row.note
        );
    }
    out.push_str("\n| target | measured | met |\n|---|---|---|\n");
    for target in targets {
        let met = if target.met { "yes" } else { "**no**" };
        let _ = writeln!(out, "| {} | {} | {met} |", target.what, target.measured);
    }
    out.push_str(END);
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("BENCHMARKS.md");
    let old = std::fs::read_to_string(&path).unwrap_or_default();
    let text = match (old.find(BEGIN), old.find(END)) {
        (Some(begin), Some(end)) => format!("{}{out}{}", &old[..begin], &old[end + END.len()..]),
        _ => format!("# Benchmarks\n\n{out}\n"),
    };
    std::fs::write(&path, text).unwrap();
    println!("{out}");
}

const BEGIN: &str = "<!-- generated by scripts/bench.sh: do not edit between these markers -->";
const END: &str = "<!-- end of generated part -->";

fn machine(firewalld_version: &str) -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split(':').nth(1))
        .map(|s| s.trim().to_string())
        .unwrap_or_default();
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    format!(
        "{cpu}, {cores} cores, Linux {}, firewalld {firewalld_version} (nftables backend), {} runs per median unless noted",
        kernel.trim(),
        REPS
    )
}
