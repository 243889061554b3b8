//! Concurrent `install`/`uninstall` runs on one host are serialised by the lock under /run
//! (each sandbox has a private /run, so each has its own lock): several runs with different
//! flags start at once, one more starts once they have all queued, every run exits 0, and the
//! host ends up as the last one asked. On raw iptables 2 to 8 runs race; through a real
//! firewalld, on every cell of the firewalld matrix (1.3 and 2.x, nftables and iptables
//! backends), 2 and 8 runs race on each cell, and 2 to 8 with `TPROXY_SLOW_TESTS=1`
//! (scripts/crash-loop.sh). Also: a run gives up after the timeout naming the lock file, and
//! dry runs, `status` and `inspect` never wait for the lock.

mod common;

use std::fs::File;
use std::ops::Deref;
use std::os::unix::process::CommandExt as _;
use std::path::PathBuf;
use std::process::{Child, Output, Stdio};
use std::time::{Duration, Instant};

use common::firewalld::{with_firewalld, FirewalldSandbox, BACKENDS};
use common::{Sandbox, BIN};
use tproxy_firewalld::config::LOCK_TIMEOUT_ENV as TIMEOUT_ENV;
use tproxy_firewalld::system::lock::{LOCK_FILE, QUEUE_DIR};

const WAITING: &str = "waiting for another tproxy-firewalld run (pid ";

/// Requests with different flags; the installs' flags are also `status`'s.
const REQUESTS: &[&[&str]] = &[
    &["install", "--redirect-dns", "--exclude-inbound-ports", "22"],
    &[
        "install",
        "--exclude-outbound-ports",
        "1,22,333",
        "--redirect-inbound-port",
        "16006",
    ],
    &["uninstall"],
    &[
        "install",
        "--redirect-all-dns-traffic",
        "--exclude-inbound-ports",
        "2222",
    ],
    &[
        "install",
        "--redirect-dns",
        "--skip-dns-conntrack-zone-split",
        "--exclude-outbound-ips",
        "10.0.0.1,192.168.0.0/24",
    ],
    &["install", "--redirect-outbound-port", "15002"],
    &[
        "install",
        "--exclude-outbound-ports-for-uids",
        "53,3000-5000:106-108",
        "--drop-invalid-packets",
    ],
];

/// The argv of a request: installs name kuma-dp's user and, with firewalld, store the rules.
fn argv(request: &[&str], firewalld: bool) -> Vec<String> {
    let mut args: Vec<String> = request.iter().map(|s| s.to_string()).collect();
    if request[0] == "install" {
        args.extend(["--kuma-dp-user", "kuma-dp"].map(String::from));
        if firewalld {
            args.push("--store-firewalld".into());
        }
    }
    args
}

/// Where the runs race: raw iptables, or one cell's firewalld.
#[derive(Clone, Copy)]
enum Host<'a> {
    Raw(&'a Sandbox),
    Firewalld(&'a FirewalldSandbox),
}

impl Host<'_> {
    fn firewalld(&self) -> bool {
        matches!(self, Host::Firewalld(_))
    }

    /// Names the cell in every failure.
    fn label(&self) -> String {
        match self {
            Host::Raw(_) => "raw iptables".to_string(),
            Host::Firewalld(world) => world.flavor.label(),
        }
    }
}

impl Deref for Host<'_> {
    type Target = Sandbox;
    fn deref(&self) -> &Sandbox {
        match self {
            Host::Raw(sandbox) => sandbox,
            Host::Firewalld(world) => world,
        }
    }
}

/// A path of the sandbox's private mount namespace, seen from outside it.
fn inside(sandbox: &Sandbox, path: &str) -> PathBuf {
    PathBuf::from(format!("/proc/{}/root{path}", sandbox.pid()))
}

/// Tickets in the lock's queue (each names a run that is waiting or holds the lock).
fn queued(sandbox: &Sandbox) -> usize {
    std::fs::read_dir(inside(sandbox, QUEUE_DIR)).map_or(0, |dir| {
        dir.filter_map(Result::ok)
            .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
            .count()
    })
}

struct Run {
    args: Vec<String>,
    child: Child,
    stderr: PathBuf,
}

fn start(sandbox: &Sandbox, args: Vec<String>, name: &str) -> Run {
    let stderr = sandbox.path(name);
    let mut full = vec![BIN];
    full.extend(args.iter().map(String::as_str));
    let child = sandbox
        .command(&full)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(File::create(&stderr).unwrap())
        .spawn()
        .expect("start tproxy-firewalld");
    Run {
        args,
        child,
        stderr,
    }
}

fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// The host is as `request` asks: `status` with its flags is in sync; after an uninstall,
/// nothing of ours is left anywhere.
fn assert_state(host: Host, request: &[&str], when: &str) {
    let firewalld = host.firewalld();
    let status = |args: &[String]| -> Output {
        let mut full = vec![BIN, "status"];
        full.extend(args.iter().map(String::as_str));
        host.run(&full)
    };
    let output = if request[0] == "install" {
        status(&argv(request, firewalld)[1..])
    } else {
        for program in ["iptables-save", "ip6tables-save"] {
            let save = host.ok(&[program]);
            assert!(
                !save.contains("KUMA_MESH") && !save.contains("kuma/mesh"),
                "{when}: {program} after {request:?}:\n{save}"
            );
        }
        let Host::Firewalld(world) = host else {
            return;
        };
        let rules = world.firewall_cmd_ok(&["--permanent", "--direct", "--get-all-rules"]);
        assert!(!rules.contains("kuma/mesh"), "{when}: {rules}");
        // Without flags, status compares everything with the (now empty) stored rules.
        status(&[])
    };
    assert!(
        output.status.success(),
        "{when}: status after {request:?} (exit {:?}):\n{}{}",
        output.status.code(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// How many runs race through firewalld (each race takes a second or two): in the normal
/// test run 2 (the last request is an uninstall) and 8 (the most waiting) on each cell; with
/// `TPROXY_SLOW_TESTS=1`, every number from 2 to 8.
fn firewalld_race_sizes() -> Vec<usize> {
    if std::env::var("TPROXY_SLOW_TESTS").as_deref() == Ok("1") {
        (2..=8).collect()
    } else {
        vec![2, 8]
    }
}

/// For each number of runs in `sizes`: all but the last start at once; the last starts once
/// each of them holds a place in the queue (or is done), so it is the last request. Some run
/// must have waited for another.
fn race(host: Host, sizes: impl IntoIterator<Item = usize>) {
    let label = host.label();
    let firewalld = host.firewalld();
    let mut waited = 0;
    for total in sizes {
        let last = REQUESTS[total % REQUESTS.len()];
        let early: Vec<&[&str]> = (1..total)
            .map(|i| REQUESTS[(total + i) % REQUESTS.len()])
            .collect();
        let mut runs: Vec<Run> = early
            .iter()
            .enumerate()
            .map(|(i, request)| start(&host, argv(request, firewalld), &format!("{total}-{i}.err")))
            .collect();
        wait_until("the early runs have queued", || {
            let mut finished = 0;
            for run in runs.iter_mut() {
                finished += usize::from(run.child.try_wait().unwrap().is_some());
            }
            finished + queued(&host) >= runs.len()
        });
        runs.push(start(
            &host,
            argv(last, firewalld),
            &format!("{total}-last.err"),
        ));
        let pids: Vec<u32> = runs.iter().map(|r| r.child.id()).collect();
        for run in &mut runs {
            let status = run.child.wait().unwrap();
            let stderr = std::fs::read_to_string(&run.stderr).unwrap();
            assert!(
                status.success(),
                "{label}, {total} runs: {:?} failed ({status}):\n{stderr}",
                run.args
            );
            for line in stderr.lines().filter(|l| l.contains(WAITING)) {
                waited += 1;
                let pid: u32 = line
                    .split(WAITING)
                    .nth(1)
                    .and_then(|rest| rest.split(')').next())
                    .and_then(|pid| pid.parse().ok())
                    .unwrap_or_else(|| panic!("{label}: no pid in {line:?}"));
                assert!(
                    pids.contains(&pid),
                    "{label}: {line:?} names none of {pids:?}"
                );
                assert!(line.contains(LOCK_FILE), "{label}: {line:?}");
            }
        }
        assert_state(host, last, &format!("{label}, {total} runs"));
        assert_eq!(queued(&host), 0, "{label}: tickets left in {QUEUE_DIR}");
    }
    assert!(waited > 0, "{label}: no run ever waited for another");
}

#[test]
fn concurrent_runs_on_raw_iptables_end_as_the_last_request() {
    let Some(sandbox) = common::sandbox("concurrency_raw") else {
        return;
    };
    race(Host::Raw(&sandbox), 2..=8);
}

#[test]
fn concurrent_runs_through_firewalld_end_as_the_last_request() {
    for flavor in BACKENDS {
        let name = format!("concurrency_firewalld ({})", flavor.label());
        let Some(world) = with_firewalld(&name, flavor) else {
            continue;
        };
        let started = Instant::now();
        race(Host::Firewalld(&world), firewalld_race_sizes());
        eprintln!("{name}: {:?}", started.elapsed());
    }
}

/// A process of the test's holding the lock, in its own process group; killed when dropped.
struct Holder(Child);

impl Holder {
    fn pid(&self) -> u32 {
        self.0.id()
    }
}

impl Drop for Holder {
    fn drop(&mut self) {
        unsafe { libc::kill(-(self.0.id() as i32), libc::SIGKILL) };
        let _ = self.0.wait();
    }
}

#[test]
fn a_run_gives_up_after_the_timeout_and_dry_runs_never_wait() {
    let Some(sandbox) = common::sandbox_with("concurrency_timeout", &["flock"]) else {
        return;
    };
    // Another holder of the lock that records its pid, as our runs do.
    let holder = Holder(
        sandbox
            .command(&[
                "sh",
                "-c",
                &format!("echo $$ > {LOCK_FILE} && exec flock {LOCK_FILE} sleep 60"),
            ])
            .stdin(Stdio::null())
            .process_group(0)
            .spawn()
            .unwrap(),
    );
    wait_until("the lock is held", || {
        !sandbox
            .run(&["flock", "-n", LOCK_FILE, "true"])
            .status
            .success()
    });

    let install = argv(REQUESTS[0], false);
    let install: Vec<&str> = install.iter().map(String::as_str).collect();
    let mut full = vec![BIN];
    full.extend_from_slice(&install);
    let started = Instant::now();
    let output = sandbox
        .command(&full)
        .env(TIMEOUT_ENV, "1")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(started.elapsed() >= Duration::from_secs(1));
    assert!(
        stderr.contains(&format!("{WAITING}{}) to finish", holder.pid())),
        "{stderr}"
    );
    let error = stderr.lines().last().unwrap();
    assert!(
        error.starts_with(&format!(
            "tproxy-firewalld: error: timed out after 1 s waiting for the lock {LOCK_FILE}"
        )) && error.contains(&format!("(pid {})", holder.pid()))
            && error.ends_with("nothing was changed"),
        "{stderr}"
    );
    assert!(!sandbox.ok(&["iptables-save"]).contains("KUMA_MESH"));

    // A bad timeout is bad input.
    let output = sandbox
        .command(&full)
        .env(TIMEOUT_ENV, "soon")
        .output()
        .unwrap();
    assert_eq!(
        output.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );

    // Dry runs, status and inspect go ahead while the lock is held.
    for args in [
        &[&install[..], &["--dry-run"]].concat()[..],
        &["uninstall", "--dry-run"],
        &["status"],
        &["inspect"],
    ] {
        let mut full = vec![BIN];
        full.extend_from_slice(args);
        let output = sandbox
            .command(&full)
            .env(TIMEOUT_ENV, "0")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            !stderr.contains("waiting for") && !stderr.contains("timed out"),
            "{args:?}: {stderr}"
        );
    }

    // With the default timeout a run waits for the holder, then goes ahead.
    let mut run = start(&sandbox, argv(REQUESTS[0], false), "after-holder.err");
    wait_until("the run says it waits", || {
        std::fs::read_to_string(&run.stderr).is_ok_and(|t| t.contains(WAITING))
    });
    drop(holder);
    let status = run.child.wait().unwrap();
    let stderr = std::fs::read_to_string(&run.stderr).unwrap();
    assert!(status.success(), "{stderr}");
    assert_eq!(stderr.matches(WAITING).count(), 1, "{stderr}");
    assert_state(Host::Raw(&sandbox), REQUESTS[0], "after the holder is gone");
}
