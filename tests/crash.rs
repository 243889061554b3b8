//! SIGKILL at random moments during `install` and `uninstall`, with firewalld stopped
//! (direct.xml written by us, rules applied with iptables) and with firewalld running
//! (runtime over D-Bus, permanent configuration through firewalld) on every cell of the
//! firewalld matrix (1.3 and 2.x, nftables and iptables backends), starting from a
//! hand-edited direct.xml with foreign entries and comments. After every kill: direct.xml
//! parses; with firewalld stopped it is byte for byte either the file before the run or the
//! file an uninterrupted run makes; with firewalld running (which writes the file itself, one
//! entry of ours at a time) it is the file before the run or firewalld's rendering of some of
//! the run's changes, every foreign entry in place and in order. Re-running the same command
//! succeeds and gives the uninterrupted run's file (its entries, with firewalld running), the
//! same kernel rules (and firewalld direct configuration) as the uninterrupted run, and
//! `status` in sync; no temporary file of ours and no place in the lock's queue is left.
//!
//! The uninterrupted runs happen in a second sandbox that gets the same commands. The kill
//! hits the run's whole process group (as systemd stopping a unit would), so no orphaned
//! `iptables-restore` finishes after the kill. The kill moment is random: for half the runs
//! uniform over 0..1.25× the uninterrupted run's duration, for the other half from 0.9× the
//! moment that run wrote direct.xml to its end (the file, then iptables, or firewalld's
//! permanent changes). The normal test run kills 10 runs with firewalld stopped and
//! 3 on each firewalld cell; `TPROXY_SLOW_TESTS=1` (scripts/crash-loop.sh) kills 100 with
//! firewalld stopped and 40 on each cell (160 with firewalld running). `TPROXY_CRASH_SEED=N`
//! replays a sequence (each cell's seed is printed with the cell).

mod common;

use std::ops::Deref;
use std::os::unix::process::{CommandExt as _, ExitStatusExt as _};
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant, SystemTime};

use common::firewalld::{with_firewalld, FirewalldSandbox, Flavor, BACKENDS};
use common::{Sandbox, BIN, MULTIPLE_FLAGS};
use tproxy_firewalld::direct::DirectConfig;
use tproxy_firewalld::format::direct_xml;
use tproxy_firewalld::system::lock::QUEUE_DIR;

const FOREIGN: &str = include_str!("../xml-fixtures/foreign-live.xml");

fn slow() -> bool {
    std::env::var("TPROXY_SLOW_TESTS").as_deref() == Ok("1")
}

/// Kills with firewalld stopped.
fn offline_kills() -> usize {
    if slow() {
        100
    } else {
        10
    }
}

/// Kills with firewalld running, on each cell of the matrix. A kill and its checks take
/// 1.3 to 2 s there on 2 busy cores; 4 × 40 keep scripts/crash-loop.sh well under 8 minutes.
fn kills_per_cell() -> usize {
    if slow() {
        40
    } else {
        3
    }
}

/// The commands killed and re-run, in random order.
fn commands() -> Vec<Vec<&'static str>> {
    let install = ["install", "--store-firewalld", "--kuma-dp-user", "kuma-dp"];
    vec![
        [
            &install[..],
            &["--redirect-dns", "--exclude-inbound-ports", "22"],
        ]
        .concat(),
        [&install[..], MULTIPLE_FLAGS].concat(),
        [
            &install[..],
            &[
                "--redirect-all-dns-traffic",
                "--exclude-inbound-ports",
                "22,2222",
                "--exclude-outbound-ports",
                "1,22",
            ],
        ]
        .concat(),
        vec!["uninstall"],
    ]
}

/// xorshift64*: enough randomness for kill moments, and reproducible from its seed.
struct Rng(u64);

impl Rng {
    fn from_env(label: &str) -> Rng {
        let seed = std::env::var("TPROXY_CRASH_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_nanos() as u64
            })
            | 1;
        eprintln!("crash ({label}): TPROXY_CRASH_SEED={seed}");
        Rng(seed)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

fn direct_xml_path(sandbox: &Sandbox) -> std::path::PathBuf {
    sandbox.firewalld_dir().join("direct.xml")
}

fn direct_xml(sandbox: &Sandbox) -> Option<Vec<u8>> {
    std::fs::read(direct_xml_path(sandbox)).ok()
}

/// Files in firewalld's configuration directory named as our temporary files.
fn temp_files(sandbox: &Sandbox) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(sandbox.firewalld_dir())
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".direct.xml.") || n.starts_with(".firewalld.conf."))
        .collect();
    names.sort();
    names
}

/// Anything left in the lock's queue (tickets, files tickets are created under).
fn queue_entries(sandbox: &Sandbox) -> Vec<String> {
    let dir = format!("/proc/{}/root{QUEUE_DIR}", sandbox.pid());
    std::fs::read_dir(dir).map_or(Vec::new(), |d| {
        d.filter_map(Result::ok)
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect()
    })
}

/// Our chains and rules in the kernel, both families, in the kernel's order.
fn kernel_rules(sandbox: &Sandbox) -> String {
    let mut out = String::new();
    for program in ["iptables-save", "ip6tables-save"] {
        let mut table = String::new();
        let mut ours = String::new();
        for line in sandbox.save(program).lines().chain(["*"]) {
            if line.starts_with('*') {
                if !ours.is_empty() {
                    out.push_str(&format!("{program} {table}\n{ours}"));
                }
                table = line.to_string();
                ours.clear();
            } else if line.contains("KUMA_MESH") || line.contains("kuma/mesh") {
                ours.push_str(line);
                ours.push('\n');
            }
        }
    }
    out
}

/// firewalld's direct configuration, runtime and permanent, as `inspect` reads it over D-Bus
/// (fast: one call each, no Python), entries sorted.
fn firewalld_direct(sandbox: &Sandbox) -> String {
    let mut out = String::new();
    for source in ["runtime", "permanent"] {
        let json = sandbox.tproxy(&["inspect", "--source", source, "--output", "json"]);
        let document: serde_json::Value = serde_json::from_slice(&json.stdout)
            .unwrap_or_else(|e| panic!("inspect --source {source}: {e}"));
        let mut entries: Vec<String> = document["entries"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e.to_string())
            .collect();
        entries.sort();
        out.push_str(&format!("## {source}\n{}\n", entries.join("\n")));
    }
    out
}

/// The same, as the cell's firewall-cmd lists it, each listing sorted.
fn firewall_cmd_direct(world: &FirewalldSandbox) -> String {
    let mut out = String::new();
    for permanent in [false, true] {
        for (args, mut lines) in world.direct_listings(permanent) {
            lines.sort();
            out.push_str(&format!("## {args}\n{}\n", lines.join("\n")));
        }
    }
    out
}

/// The entries of a direct.xml.
fn entries(file: &[u8]) -> DirectConfig {
    direct_xml::parse(std::str::from_utf8(file).unwrap())
        .unwrap()
        .config()
}

/// direct.xml as firewalld writes it: its rendering of its entries, every foreign entry of
/// [`FOREIGN`] in place and in order. With firewalld running, after a run killed after some
/// of its permanent changes.
fn firewalld_wrote(file: &[u8]) -> bool {
    let config = entries(file);
    file == direct_xml::render(&config).as_bytes()
        && config.foreign() == entries(FOREIGN.as_bytes())
}

fn show(file: &Option<Vec<u8>>) -> String {
    match file {
        Some(bytes) => String::from_utf8_lossy(bytes).into_owned(),
        None => "(no file)".into(),
    }
}

/// `status` is in sync with what `command` asked for: its flags for an install; for an
/// uninstall, the (ours-free) stored configuration.
fn assert_in_sync(sandbox: &Sandbox, command: &[&str], when: &str) {
    let mut args = vec![BIN, "status"];
    if command[0] == "install" {
        args.extend_from_slice(&command[1..]);
    }
    let output = sandbox.run(&args);
    assert!(
        output.status.success(),
        "{when}: status (exit {:?}):\n{}{}",
        output.status.code(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// What the kills left: how many runs finished before the kill, and after the kills how
/// often direct.xml was the old file, the new one, or (firewalld running) part of the
/// change; how many temporary files and queue places were left for the re-run.
#[derive(Default, Debug)]
struct Tally {
    runs: usize,
    finished: usize,
    kills: usize,
    old_file: usize,
    new_file: usize,
    part_of_the_change: usize,
    temp_files_left: usize,
    queue_left: usize,
}

/// Where the runs are killed: a sandbox with firewalld stopped, or one cell's firewalld.
enum Host {
    Offline(Sandbox),
    Firewalld(Box<FirewalldSandbox>),
}

impl Host {
    fn firewalld(&self) -> Option<&FirewalldSandbox> {
        match self {
            Host::Offline(_) => None,
            Host::Firewalld(world) => Some(world),
        }
    }

    /// Names the mode, and with firewalld running the cell, in every failure.
    fn label(&self) -> String {
        match self {
            Host::Offline(_) => "firewalld stopped".to_string(),
            Host::Firewalld(world) => world.flavor.label(),
        }
    }
}

impl Deref for Host {
    type Target = Sandbox;
    fn deref(&self) -> &Sandbox {
        match self {
            Host::Offline(sandbox) => sandbox,
            Host::Firewalld(world) => world,
        }
    }
}

/// Kills `kills` runs in `victim`; `reference` gets the same commands, never killed.
fn kill_loop(victim: &Host, reference: &Host, kills: usize) -> Tally {
    let label = victim.label();
    let firewalld = victim.firewalld().is_some();
    let mut rng = Rng::from_env(&label);
    let commands = commands();
    let mut tally = Tally::default();
    let mut previous = commands.len() - 1;
    while tally.kills < kills {
        assert!(
            tally.runs < kills * 5 + 20,
            "{label}: only {} of {} runs were killed before they finished",
            tally.kills,
            tally.runs
        );
        tally.runs += 1;
        // Another command than the last one, so that most runs change something.
        let index = (previous + 1 + rng.below(commands.len() as u64 - 1) as usize) % commands.len();
        previous = index;
        let command = &commands[index];

        let started = SystemTime::now();
        let output = reference.tproxy(command);
        assert!(
            output.status.success(),
            "{label}: the uninterrupted run {command:?} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let took = started.elapsed().unwrap();
        // When the uninterrupted run wrote direct.xml (the data, just before the rename).
        let wrote = std::fs::metadata(direct_xml_path(reference))
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.duration_since(started).ok())
            .filter(|t| *t <= took)
            .unwrap_or(took / 2);
        let new = direct_xml(reference);
        let old = direct_xml(victim);

        let mut full = vec![BIN];
        full.extend_from_slice(command);
        let mut child = victim
            .command(&full)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .unwrap();
        // Half the kills anywhere in the run, half from a little before the moment the
        // uninterrupted run wrote direct.xml to its end.
        let (took, wrote) = (took.as_micros() as u64, wrote.as_micros() as u64);
        let delay = Duration::from_micros(if rng.below(2) == 0 {
            rng.below(took * 5 / 4)
        } else {
            let from = wrote * 9 / 10;
            from + rng.below(took - from)
        });
        std::thread::sleep(delay);
        unsafe { libc::kill(-(child.id() as i32), libc::SIGKILL) };
        let status = child.wait().unwrap();
        let when = format!(
            "{label}: run {} ({command:?}, killed after {delay:?})",
            tally.runs
        );
        let killed = status.signal() == Some(libc::SIGKILL);
        if killed {
            tally.kills += 1;
        } else {
            assert!(status.success(), "{when}: {status}");
            tally.finished += 1;
        }

        if firewalld {
            // firewalld serves one call at a time: once this returns, a permanent change the
            // killed run made has been handled, direct.xml included (firewalld writes it in
            // place).
            victim.tproxy(&["inspect", "--source", "permanent"]);
        }
        let same = |a: &Option<Vec<u8>>, b: &Option<Vec<u8>>| match (a, b) {
            (Some(a), Some(b)) if firewalld => entries(a).same_entries(&entries(b)),
            _ => a == b,
        };
        let after = direct_xml(victim);
        if let Some(bytes) = &after {
            let text = std::str::from_utf8(bytes).expect("direct.xml is UTF-8");
            if let Err(e) = direct_xml::parse(text) {
                panic!("{when}: direct.xml does not parse: {e}\n{text}");
            }
        }
        if same(&after, &new) {
            tally.new_file += usize::from(killed);
        } else if after == old {
            assert!(killed, "{when}: the run finished but left the old file");
            tally.old_file += 1;
        } else if firewalld && killed && after.as_deref().is_some_and(firewalld_wrote) {
            tally.part_of_the_change += 1;
        } else {
            panic!(
                "{when}: direct.xml is neither the old nor the new file:\n--- old\n{}\n--- new\n{}\n--- now\n{}",
                show(&old),
                show(&new),
                show(&after)
            );
        }
        tally.temp_files_left += temp_files(victim).len();
        tally.queue_left += usize::from(!queue_entries(victim).is_empty());

        let output = victim.tproxy(command);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            output.status.success(),
            "{when}: the re-run failed: {stderr}"
        );
        assert!(
            same(&direct_xml(victim), &new),
            "{when}: direct.xml after the re-run differs from an uninterrupted run's:\n--- want\n{}\n--- have\n{}",
            show(&new),
            show(&direct_xml(victim))
        );
        assert_eq!(temp_files(victim), Vec::<String>::new(), "{when}");
        assert_eq!(queue_entries(victim), Vec::<String>::new(), "{when}");
        assert_in_sync(victim, command, &when);
        assert_eq!(
            kernel_rules(victim),
            kernel_rules(reference),
            "{when}: kernel rules differ from an uninterrupted run's"
        );
        if firewalld {
            assert_eq!(
                firewalld_direct(victim),
                firewalld_direct(reference),
                "{when}: firewalld's direct configuration differs from an uninterrupted run's"
            );
        }
    }
    if let (Some(victim), Some(reference)) = (victim.firewalld(), reference.firewalld()) {
        assert_eq!(
            firewall_cmd_direct(victim),
            firewall_cmd_direct(reference),
            "{label}: firewall-cmd lists other direct entries than after uninterrupted runs"
        );
    }
    tally
}

fn offline_sandbox(name: &str) -> Option<Sandbox> {
    let sandbox = common::sandbox_with(name, &["firewalld"])?;
    assert!(
        Path::new("/etc/firewalld").is_dir(),
        "{name}: firewalld is installed but /etc/firewalld is missing"
    );
    std::fs::write(direct_xml_path(&sandbox), FOREIGN).unwrap();
    Some(sandbox)
}

/// A running firewalld of `flavor` that started with the foreign direct.xml. Its runtime
/// direct configuration is never empty, so firewalld 2.x on nftables flushed iptables at
/// this start, not at one of our runs (which then need no --accept-firewalld-iptables-flush).
fn firewalld_with_foreign_entries(name: &str, flavor: Flavor) -> Option<FirewalldSandbox> {
    let mut world = with_firewalld(&format!("{name} ({})", flavor.label()), flavor)?;
    world.stop();
    std::fs::write(world.direct_xml_path(), FOREIGN).unwrap();
    world.start();
    Some(world)
}

#[test]
fn sigkill_with_firewalld_stopped() {
    let Some(victim) = offline_sandbox("crash_offline") else {
        return;
    };
    let reference = offline_sandbox("crash_offline reference").unwrap();
    let (victim, reference) = (Host::Offline(victim), Host::Offline(reference));
    let started = Instant::now();
    let tally = kill_loop(&victim, &reference, offline_kills());
    eprintln!(
        "crash (firewalld stopped): {tally:?} in {:?}",
        started.elapsed()
    );
}

#[test]
fn sigkill_with_firewalld_running() {
    for flavor in BACKENDS {
        let Some(victim) = firewalld_with_foreign_entries("crash_firewalld", flavor) else {
            continue;
        };
        let reference =
            firewalld_with_foreign_entries("crash_firewalld reference", flavor).unwrap();
        let (victim, reference) = (
            Host::Firewalld(Box::new(victim)),
            Host::Firewalld(Box::new(reference)),
        );
        let started = Instant::now();
        let tally = kill_loop(&victim, &reference, kills_per_cell());
        eprintln!(
            "crash ({}): {tally:?} in {:?}",
            flavor.label(),
            started.elapsed()
        );
    }
}

#[test]
fn a_temporary_file_left_by_a_killed_run_is_removed_by_the_next() {
    let Some(sandbox) = offline_sandbox("crash_temp_file") else {
        return;
    };
    let reference = offline_sandbox("crash_temp_file reference").unwrap();
    let command = &commands()[0];
    reference.tproxy_ok(command);
    // What a run killed mid-write leaves: a half-written file under a temporary name.
    let stale = sandbox.firewalld_dir().join(".direct.xml.Zq81xK");
    std::fs::write(&stale, &FOREIGN[..FOREIGN.len() / 2]).unwrap();
    let output = sandbox.tproxy(command);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(
        stderr.contains("removed temporary files an interrupted run left behind: /etc/firewalld/.direct.xml.Zq81xK"),
        "{stderr}"
    );
    assert!(!stale.exists());
    assert_eq!(direct_xml(&sandbox), direct_xml(&reference));
    assert_in_sync(&sandbox, command, "after the stale file");
}
