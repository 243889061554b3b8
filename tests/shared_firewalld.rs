//! firewalld is shared: other clients write to it while we run, and it reloads or restarts at
//! any moment. On every cell of the firewalld matrix:
//!
//! - a concurrent writer adds and removes foreign direct entries with `firewall-cmd`,
//!   permanent and runtime, while `install --store-firewalld` and `uninstall` alternate; and,
//!   with firewalld stopped, with `firewall-offline-cmd` in direct.xml (once per firewalld
//!   version: the FirewallBackend plays no part there). Every foreign entry the writer left
//!   is there at the end, in firewalld and in direct.xml, and none it removed came back;
//! - reloads and restarts at random moments during install (stored and runtime-only) and
//!   uninstall, [`DISRUPTIONS_PER_CELL`] per cell, while another client keeps adding
//!   permanent entries: every run exits 0 and leaves the runtime, the permanent
//!   configuration and the kernel as an undisturbed run leaves them, and at the end every
//!   foreign entry, the fixture's and the writer's, is still in firewalld and direct.xml.
//!
//! `TPROXY_SHARED_SEED=N` replays a sequence of disruption moments (each cell's seed is
//! printed with the cell).

mod common;

use std::collections::BTreeSet;
use std::process::{Child, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::firewalld::{with_firewalld, FirewalldSandbox, Flavor, Version, BACKENDS};
use common::BIN;
use tproxy_firewalld::format::direct_xml;

const FOREIGN: &str = include_str!("../xml-fixtures/foreign-live.xml");

/// Reloads and restarts injected per cell.
const DISRUPTIONS_PER_CELL: usize = 24;

const STORE: &[&str] = &[
    "install",
    "--store-firewalld",
    "--kuma-dp-user",
    "kuma-dp",
    "--redirect-dns",
    "--exclude-inbound-ports",
    "22",
];
const RUNTIME_ONLY: &[&str] = &[
    "install",
    "--kuma-dp-user",
    "kuma-dp",
    "--exclude-outbound-ports",
    "1,22",
];
const UNINSTALL: &[&str] = &["uninstall"];

/// A running firewalld of `flavor` that started with the foreign direct.xml.
fn firewalld_with_foreign_entries(name: &str, flavor: Flavor) -> Option<FirewalldSandbox> {
    let mut world = with_firewalld(&format!("{name} ({})", flavor.label()), flavor)?;
    world.stop();
    std::fs::write(world.direct_xml_path(), FOREIGN).unwrap();
    world.start();
    Some(world)
}

fn run_ok(world: &FirewalldSandbox, args: &[&str]) -> String {
    let output = world.tproxy(args);
    assert!(
        output.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// One direct rule of the writer: `filter INPUT`, told apart by its port.
fn writer_rule(port: u16) -> Vec<String> {
    ["ipv4", "filter", "INPUT", "0", "-p", "tcp", "--dport"]
        .iter()
        .map(|s| s.to_string())
        .chain([port.to_string(), "-j".into(), "ACCEPT".into()])
        .collect()
}

/// The writer's rules firewall-cmd lists (`ipv4 filter INPUT 0 -p tcp --dport N -j ACCEPT`).
fn writer_ports(listing: &str) -> BTreeSet<u16> {
    listing
        .lines()
        .filter(|l| l.starts_with("ipv4 filter INPUT 0 -p tcp --dport "))
        .filter_map(|l| l.split_whitespace().nth(7)?.parse().ok())
        .collect()
}

/// The writer's rules in direct.xml.
fn writer_ports_in_file(world: &FirewalldSandbox) -> BTreeSet<u16> {
    let config = direct_xml::parse(&world.direct_xml()).unwrap().config();
    config
        .rules
        .iter()
        .filter(|r| r.ipv == "ipv4" && r.table == "filter" && r.chain == "INPUT")
        .filter_map(|r| match r.args.as_slice() {
            [p, tcp, dport, port, j, accept]
                if p == "-p"
                    && tcp == "tcp"
                    && dport == "--dport"
                    && j == "-j"
                    && accept == "ACCEPT" =>
            {
                port.parse().ok()
            }
            _ => None,
        })
        .collect()
}

/// What the writer does: adds rules with ports `base..base+count`, removing every third
/// one again two steps later. Returns the ports it left.
fn write_concurrently(
    count: u16,
    base: u16,
    mut call: impl FnMut(&str, &[String]),
) -> BTreeSet<u16> {
    let mut left = BTreeSet::new();
    for i in 0..count {
        let port = base + i;
        call("--add-rule", &writer_rule(port));
        left.insert(port);
        if i >= 2 && (i - 2) % 3 == 0 {
            let gone = port - 2;
            call("--remove-rule", &writer_rule(gone));
            left.remove(&gone);
        }
    }
    left
}

/// Adds permanent rules of the writer, ports from `base` up, one after another until
/// `done`, each call again while firewalld reloads or restarts. Returns the ports added.
fn write_permanent_until(
    firewall_cmd: &(impl Fn(&[&str]) -> Output + Sync),
    base: u16,
    done: &AtomicBool,
) -> BTreeSet<u16> {
    let mut added = BTreeSet::new();
    for port in base.. {
        if done.load(Ordering::Acquire) {
            break;
        }
        let rule = writer_rule(port);
        let mut args = vec!["--permanent", "--direct", "--add-rule"];
        args.extend(rule.iter().map(String::as_str));
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let output = firewall_cmd(&args);
            if output.status.success() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the writer's rule for port {port}: {}",
                String::from_utf8_lossy(&output.stderr)
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        added.insert(port);
        std::thread::sleep(Duration::from_millis(20));
    }
    added
}

/// Sets its flag when dropped, also when a failing assertion unwinds: the thread that
/// waits for the flag then stops, and the test ends instead of hanging.
struct SetOnDrop<'a>(&'a AtomicBool);

impl Drop for SetOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Release);
    }
}

/// Alternates install and uninstall until `done`; every run must succeed.
fn alternate_until(world: &FirewalldSandbox, done: &AtomicBool) -> usize {
    let mut runs = 0;
    while !done.load(Ordering::Acquire) {
        let command = if runs % 2 == 0 { STORE } else { UNINSTALL };
        run_ok(world, command);
        runs += 1;
    }
    runs
}

#[test]
fn a_concurrent_writer_loses_no_entry() {
    for flavor in BACKENDS {
        let Some(world) = firewalld_with_foreign_entries("shared_writer", flavor) else {
            continue;
        };
        let label = flavor.label();
        let foreign_runtime = world.firewall_cmd_ok(&["--direct", "--get-all-rules"]);
        let done = AtomicBool::new(false);
        let world = &world;
        let (permanent_left, runtime_left, runs) = std::thread::scope(|scope| {
            let ours = scope.spawn(|| alternate_until(world, &done));
            let stop_ours = SetOnDrop(&done);
            let call = |permanent: bool| {
                move |action: &str, rule: &[String]| {
                    let mut args = vec!["--direct", action];
                    if permanent {
                        args.insert(0, "--permanent");
                    }
                    args.extend(rule.iter().map(String::as_str));
                    world.firewall_cmd_ok(&args);
                }
            };
            let mut permanent = call(true);
            let mut runtime = call(false);
            let permanent_left = write_concurrently(12, 7000, &mut permanent);
            let runtime_left = write_concurrently(12, 8000, &mut runtime);
            drop(stop_ours);
            (permanent_left, runtime_left, ours.join().unwrap())
        });
        assert!(
            runs >= 2,
            "{label}: only {runs} runs of ours raced the writer"
        );

        let permanent = world.firewall_cmd_ok(&["--permanent", "--direct", "--get-all-rules"]);
        let runtime = world.firewall_cmd_ok(&["--direct", "--get-all-rules"]);
        assert_eq!(
            writer_ports(&permanent),
            permanent_left,
            "{label}: permanent"
        );
        assert_eq!(
            writer_ports_in_file(world),
            permanent_left,
            "{label}: direct.xml"
        );
        assert_eq!(writer_ports(&runtime), runtime_left, "{label}: runtime");
        for line in foreign_runtime.lines() {
            assert!(runtime.contains(line), "{label}: {line} left the runtime");
            assert!(
                permanent.contains(line),
                "{label}: {line} left the permanent configuration"
            );
        }
        eprintln!("{label}: {runs} runs of ours beside the writer");
    }
}

#[test]
fn a_concurrent_offline_writer_loses_no_entry() {
    for flavor in BACKENDS.into_iter().filter(|f| f.backend == "nftables") {
        let Some(mut world) = firewalld_with_foreign_entries("shared_offline_writer", flavor)
        else {
            continue;
        };
        let label = format!("{} stopped", flavor.label());
        world.stop();
        let done = AtomicBool::new(false);
        let (left, runs) = std::thread::scope(|scope| {
            let ours = scope.spawn(|| alternate_until(&world, &done));
            let stop_ours = SetOnDrop(&done);
            let left = write_concurrently(12, 7000, |action, rule| {
                let mut args = vec!["--direct", action];
                args.extend(rule.iter().map(String::as_str));
                let output = world.firewall_offline_cmd(&args);
                assert!(
                    output.status.success(),
                    "{label}: firewall-offline-cmd {args:?}: {}",
                    String::from_utf8_lossy(&output.stderr)
                );
            });
            drop(stop_ours);
            (left, ours.join().unwrap())
        });
        assert!(
            runs >= 2,
            "{label}: only {runs} runs of ours raced the writer"
        );
        assert_eq!(writer_ports_in_file(&world), left, "{label}: direct.xml");
        let foreign = direct_xml::parse(FOREIGN).unwrap().config();
        let now = direct_xml::parse(&world.direct_xml()).unwrap().config();
        for rule in &foreign.rules {
            assert!(
                now.rules.contains(rule),
                "{label}: {rule:?} left direct.xml"
            );
        }
        // firewalld starts from what the writer and we left.
        world.start();
        let permanent = world.firewall_cmd_ok(&["--permanent", "--direct", "--get-all-rules"]);
        assert_eq!(
            writer_ports(&permanent),
            left,
            "{label}: loaded by firewalld"
        );
        eprintln!("{label}: {runs} runs of ours beside the writer");
    }
}

/// xorshift64*: reproducible disruption moments.
struct Rng(u64);

impl Rng {
    fn from_env(label: &str) -> Rng {
        let seed = std::env::var("TPROXY_SHARED_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_nanos() as u64
            })
            | 1;
        eprintln!("shared ({label}): TPROXY_SHARED_SEED={seed}");
        Rng(seed)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % n.max(1)
    }
}

/// Our entries in firewalld's runtime and permanent configuration and in the kernel.
#[derive(Debug, PartialEq, Eq)]
struct Ours {
    runtime: BTreeSet<String>,
    permanent: BTreeSet<String>,
    kernel: BTreeSet<String>,
}

fn ours(world: &FirewalldSandbox) -> Ours {
    let ours_in = |text: String| -> BTreeSet<String> {
        text.lines()
            .filter(|l| l.contains("KUMA_MESH") || l.contains("kuma/mesh"))
            .map(String::from)
            .collect()
    };
    let direct = |permanent: bool| {
        let mut all = String::new();
        for what in ["--get-all-chains", "--get-all-rules"] {
            let mut args = vec!["--direct", what];
            if permanent {
                args.insert(0, "--permanent");
            }
            all.push_str(&world.firewall_cmd_ok(&args));
        }
        ours_in(all)
    };
    let (v4, v6) = world.saves();
    Ours {
        runtime: direct(false),
        permanent: direct(true),
        kernel: ours_in(common::normalise_counters(&format!("{v4}{v6}"))),
    }
}

/// Runs our binary with `args`, its stderr going to `stderr`.
fn spawn(world: &FirewalldSandbox, args: &[&str], stderr: impl Into<Stdio>) -> Child {
    let mut full = vec![BIN];
    full.extend_from_slice(args);
    world
        .command(&full)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(stderr)
        .spawn()
        .unwrap()
}

/// The last line a run prints, once its read-back has found the result.
fn reported(stderr: &str) -> bool {
    [
        "installed through",
        "already installed",
        "removed every",
        "nothing to remove",
    ]
    .iter()
    .any(|said| stderr.contains(said))
}

/// Stops `child` (SIGSTOP); false when it had already finished.
fn freeze(child: &mut Child) -> bool {
    unsafe { libc::kill(child.id() as i32, libc::SIGSTOP) };
    let stat = format!("/proc/{}/stat", child.id());
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if child.try_wait().unwrap().is_some() {
            return false;
        }
        // The state follows the name in parentheses: T when stopped.
        let state = std::fs::read_to_string(&stat).unwrap_or_default();
        if state
            .rsplit_once(") ")
            .is_some_and(|(_, rest)| rest.starts_with('T'))
        {
            return true;
        }
        assert!(Instant::now() < deadline, "the run did not stop");
        std::thread::sleep(Duration::from_millis(1));
    }
}

fn thaw(child: &Child) {
    unsafe { libc::kill(child.id() as i32, libc::SIGCONT) };
}

#[derive(Clone, Copy, Debug)]
enum Disruption {
    Reload,
    Restart,
}

fn disrupt(world: &mut FirewalldSandbox, disruption: Disruption) {
    match disruption {
        // dbus-send starts in a millisecond, firewall-cmd in a few hundred.
        Disruption::Reload => {
            world.ok(&[
                "dbus-send",
                "--system",
                "--print-reply",
                "--dest=org.fedoraproject.FirewallD1",
                "/org/fedoraproject/FirewallD1",
                "org.fedoraproject.FirewallD1.reload",
            ]);
        }
        Disruption::Restart => {
            world.stop();
            world.start();
        }
    }
}

#[test]
fn reloads_and_restarts_during_runs_are_absorbed() {
    for flavor in BACKENDS {
        let Some(mut world) = firewalld_with_foreign_entries("shared_disruptions", flavor) else {
            continue;
        };
        let label = flavor.label();
        let mut rng = Rng::from_env(&label);
        // What undisturbed runs leave, and how long each takes.
        let timed = |command: &[&str]| {
            let started = Instant::now();
            run_ok(&world, command);
            (started.elapsed(), ours(&world))
        };
        let (store_took, stored) = timed(STORE);
        let (uninstall_took, none) = timed(UNINSTALL);
        let (runtime_only_took, runtime_only) = timed(RUNTIME_ONLY);
        run_ok(&world, UNINSTALL);
        assert!(!stored.permanent.is_empty() && runtime_only.permanent.is_empty());
        assert!(
            none.runtime.is_empty() && none.kernel.is_empty(),
            "{label}: {none:?}"
        );

        // Every entry firewalld holds now is foreign: the fixture's.
        let listings = |world: &FirewalldSandbox, permanent: bool| -> Vec<String> {
            let listings = world.direct_listings(permanent).into_iter();
            listings.flat_map(|(_, lines)| lines).collect()
        };
        let foreign = listings(&world, true);
        assert!(
            foreign.iter().any(|l| l.starts_with("ipv4 filter")),
            "{label}: {foreign:?}"
        );
        let firewall_cmd = world.detached_firewall_cmd();
        let done = AtomicBool::new(false);
        let (mut noticed, mut during) = (0, 0);
        let written = std::thread::scope(|scope| {
            // Another client keeps adding permanent entries meanwhile.
            let writer = scope.spawn(|| write_permanent_until(&firewall_cmd, 9000, &done));
            let stop_writer = SetOnDrop(&done);
            for i in 0..DISRUPTIONS_PER_CELL {
                let (command, took) = [
                    (STORE, store_took),
                    (UNINSTALL, uninstall_took),
                    (RUNTIME_ONLY, runtime_only_took),
                    (UNINSTALL, uninstall_took),
                ][i % 4];
                let disruption = if rng.below(2) == 0 {
                    Disruption::Reload
                } else {
                    Disruption::Restart
                };
                // Mostly during the run, sometimes right after it.
                let delay = Duration::from_micros(rng.below(took.as_micros() as u64 * 11 / 10));
                let said = world.path(&format!("disruption-{i}.stderr"));
                let mut child = spawn(&world, command, std::fs::File::create(&said).unwrap());
                std::thread::sleep(delay);
                // The run is frozen while firewalld reloads or restarts, so that the disruption
                // is certainly during the run, or certainly after it: after it also when the
                // run has already reported its result and is only exiting.
                let running =
                    freeze(&mut child) && !reported(&std::fs::read_to_string(&said).unwrap());
                disrupt(&mut world, disruption);
                thaw(&child);
                let status = child.wait().unwrap();
                let stderr = std::fs::read_to_string(&said).unwrap();
                let when = format!(
                    "{label}: run {i} {command:?}, {disruption:?} after {delay:?} ({})",
                    if running {
                        "during the run"
                    } else {
                        "after it"
                    }
                );
                assert!(status.success(), "{when}: exit {status}: {stderr}");
                noticed +=
                    usize::from(stderr.contains("during the run; reading its configuration again"));
                during += usize::from(running);
                assert_eq!(
                    world.firewall_cmd_ok(&["--state"]).trim(),
                    "running",
                    "{when}"
                );
                // A reload or restart after a runtime-only install takes its rules away, by
                // design; during the run, the run puts them back.
                let want = match command {
                    STORE => &stored,
                    RUNTIME_ONLY if running => &runtime_only,
                    _ => &none,
                };
                assert_eq!(&ours(&world), want, "{when}: {stderr}");
            }
            drop(stop_writer);
            writer.join().unwrap()
        });
        // No foreign entry is lost: the fixture's in the runtime, the permanent
        // configuration and direct.xml; each one the writer added in the permanent
        // configuration and direct.xml.
        let (permanent, runtime) = (listings(&world, true), listings(&world, false));
        for entry in &foreign {
            assert!(
                permanent.contains(entry),
                "{label}: {entry} left the permanent configuration"
            );
            assert!(runtime.contains(entry), "{label}: {entry} left the runtime");
        }
        let in_file = direct_xml::parse(&world.direct_xml()).unwrap().config();
        for rule in &direct_xml::parse(FOREIGN).unwrap().config().rules {
            assert!(
                in_file.rules.contains(rule),
                "{label}: {rule:?} left direct.xml"
            );
        }
        assert!(
            written.len() >= 2,
            "{label}: the writer added only {written:?}"
        );
        assert_eq!(
            writer_ports(&permanent.join("\n")),
            written,
            "{label}: permanent"
        );
        assert_eq!(writer_ports_in_file(&world), written, "{label}: direct.xml");
        eprintln!(
            "{label}: {during} of {DISRUPTIONS_PER_CELL} disruptions during a run, {noticed} noticed by it; {} entries of the writer kept",
            written.len()
        );
        assert!(
            during >= DISRUPTIONS_PER_CELL / 3,
            "{label}: only {during} disruptions hit a run: the moments missed the runs"
        );
    }
}

#[test]
fn disabling_rfc3964_never_reloads_away_runtime_only_entries_of_others() {
    let flavor = Flavor::new(Version::V1, "nftables");
    let Some(world) = firewalld_with_foreign_entries("shared_rfc3964", flavor) else {
        return;
    };
    let rule = writer_rule(7777);
    let mut add = vec!["--direct", "--add-rule"];
    add.extend(rule.iter().map(String::as_str));
    world.firewall_cmd_ok(&add);
    let conf = world.firewalld_dir().join("firewalld.conf");
    let conf_before = std::fs::read_to_string(&conf).unwrap();

    let output = world.tproxy(&[
        "install",
        "--store-firewalld",
        "--kuma-dp-user",
        "kuma-dp",
        "--disable-firewalld-rfc3964-ipv4",
    ]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("would drop 1 runtime-only direct entry of other tools")
            && stderr.contains("--dport 7777")
            && stderr.contains("nothing was changed"),
        "{stderr}"
    );
    assert_eq!(std::fs::read_to_string(&conf).unwrap(), conf_before);
    let runtime = world.firewall_cmd_ok(&["--direct", "--get-all-rules"]);
    assert!(writer_ports(&runtime).contains(&7777), "{runtime}");
    assert_eq!(world.count_our_rules(false), 0);

    // Once the entry is permanent too, the reload keeps it.
    let mut permanent = vec!["--permanent"];
    permanent.extend_from_slice(&add);
    world.firewall_cmd_ok(&permanent);
    run_ok(
        &world,
        &[
            "install",
            "--store-firewalld",
            "--kuma-dp-user",
            "kuma-dp",
            "--disable-firewalld-rfc3964-ipv4",
        ],
    );
    let runtime = world.firewall_cmd_ok(&["--direct", "--get-all-rules"]);
    assert!(writer_ports(&runtime).contains(&7777), "{runtime}");
    assert!(std::fs::read_to_string(&conf)
        .unwrap()
        .contains("RFC3964_IPv4=no"));
}
