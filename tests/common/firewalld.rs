//! A real firewalld for a test, inside the test's sandbox: its own dbus-daemon on a socket
//! in the sandbox directory, firewalld with `--system-config` pointing at the sandbox's
//! configuration directory. Both are killed when the value is dropped, also on failure.
//!
//! Tests run on a matrix of [`Flavor`]s ([`BACKENDS`]): the system's firewalld 1.3 and
//! Debian trixie's firewalld 2.x unpacked by `scripts/fetch-firewalld2.sh` (found through
//! `TPROXY_FIREWALLD2_ROOT`, else in `target/firewalld2/root`), each with FirewallBackend
//! nftables and iptables. The 2.x tree runs under the system's Python with its own
//! `dist-packages` first on `PYTHONPATH` and its own `--default-config`; everything else
//! (python3-nftables, libnftables, python3-dbus, iptables) is the system's.

use std::ffi::OsString;
use std::fmt;
use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use super::{sandbox_with, Sandbox};

/// A firewalld release line of the matrix.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Version {
    /// The system package (Debian bookworm: 1.3.3).
    V1,
    /// Debian trixie's firewalld 2.x, unpacked (see the module documentation).
    V2,
}

/// One cell of the firewalld matrix: a firewalld version and its FirewallBackend.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Flavor {
    pub version: Version,
    /// `nftables` or `iptables`: firewalld's FirewallBackend.
    pub backend: &'static str,
}

impl Flavor {
    pub const fn new(version: Version, backend: &'static str) -> Flavor {
        Flavor { version, backend }
    }

    /// firewalld 2.x with the nftables backend leaves iptables alone until its direct
    /// configuration stops being empty: the first runtime direct chain, rule or tracked
    /// passthrough (or a start or reload with permanent direct entries) flushes every
    /// iptables and ip6tables table once (firewalld commit b7faa74d, notes §3.5). 1.3, and
    /// 2.x with the iptables backend, flush them at every start and reload instead.
    pub fn flushes_iptables_at_first_direct_entry(&self) -> bool {
        self.version == Version::V2 && self.backend == "nftables"
    }

    /// Lockdown exists in 1.x only (a no-op since 2.2.0, notes §2.5).
    pub fn has_lockdown(&self) -> bool {
        self.version == Version::V1
    }

    /// The whole cell, `firewalld 2.x nftables`.
    pub fn label(&self) -> String {
        let version = match self.version {
            Version::V1 => "1.3",
            Version::V2 => "2.x",
        };
        format!("firewalld {version} {}", self.backend)
    }
}

/// The FirewallBackend alone, as firewalld and our messages name it (`nftables`); the
/// harness prints [`Flavor::label`] when it starts a cell, so a failure names the version.
impl fmt::Display for Flavor {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(self.backend)
    }
}

/// A FirewallBackend name alone means the system's firewalld (1.3).
impl From<&str> for Flavor {
    fn from(backend: &str) -> Flavor {
        match backend {
            "nftables" => Flavor::new(Version::V1, "nftables"),
            "iptables" => Flavor::new(Version::V1, "iptables"),
            other => panic!("unknown FirewallBackend {other:?}"),
        }
    }
}

/// Every cell of the firewalld matrix, the system's firewalld first. A 2.x cell is skipped
/// (`with_firewalld` gives `None`) when no firewalld 2.x tree was fetched; under CI=true
/// that fails the test instead.
pub const BACKENDS: [Flavor; 4] = [
    Flavor::new(Version::V1, "nftables"),
    Flavor::new(Version::V1, "iptables"),
    Flavor::new(Version::V2, "nftables"),
    Flavor::new(Version::V2, "iptables"),
];

/// The environment variable naming the unpacked firewalld 2.x tree.
pub const FIREWALLD2_ROOT_VAR: &str = "TPROXY_FIREWALLD2_ROOT";

/// The unpacked firewalld 2.x tree: `$TPROXY_FIREWALLD2_ROOT` (which must then hold one),
/// else `target/firewalld2/root` once `scripts/fetch-firewalld2.sh` completed it.
pub fn firewalld2_root() -> Option<PathBuf> {
    let usable = |root: &Path| {
        root.join("usr/sbin/firewalld").is_file()
            && root.join("usr/bin/firewall-cmd").is_file()
            && root.join("usr/lib/firewalld").is_dir()
            && root.join("usr/lib/python3/dist-packages/firewall").is_dir()
    };
    if let Some(root) = std::env::var_os(FIREWALLD2_ROOT_VAR).filter(|v| !v.is_empty()) {
        let root = PathBuf::from(root);
        assert!(
            usable(&root),
            "{FIREWALLD2_ROOT_VAR}={} holds no unpacked firewalld 2.x (scripts/fetch-firewalld2.sh makes one)",
            root.display()
        );
        return Some(root);
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/firewalld2/root");
    (root.join(".complete").is_file() && usable(&root)).then_some(root)
}

/// How to run one flavor's programs.
#[derive(Clone, Debug)]
struct Programs {
    firewalld: String,
    firewall_cmd: String,
    firewall_offline_cmd: String,
    /// `--default-config` for firewalld 2.x (its own zones, services, ...).
    default_config: Option<PathBuf>,
    python_path: Option<PathBuf>,
}

impl Programs {
    fn of(flavor: Flavor, root: Option<&Path>) -> Programs {
        match (flavor.version, root) {
            (Version::V2, Some(root)) => Programs {
                firewalld: root.join("usr/sbin/firewalld").display().to_string(),
                firewall_cmd: root.join("usr/bin/firewall-cmd").display().to_string(),
                firewall_offline_cmd: root
                    .join("usr/bin/firewall-offline-cmd")
                    .display()
                    .to_string(),
                default_config: Some(root.join("usr/lib/firewalld")),
                python_path: Some(root.join("usr/lib/python3/dist-packages")),
            },
            _ => Programs {
                firewalld: "firewalld".to_string(),
                firewall_cmd: "firewall-cmd".to_string(),
                firewall_offline_cmd: "firewall-offline-cmd".to_string(),
                default_config: None,
                python_path: None,
            },
        }
    }
}

pub struct FirewalldSandbox {
    sandbox: Sandbox,
    /// The matrix cell this firewalld is.
    pub flavor: Flavor,
    /// `nftables` or `iptables`.
    pub firewall_backend: String,
    programs: Programs,
    dbus: Child,
    daemon: Option<Child>,
}

impl Deref for FirewalldSandbox {
    type Target = Sandbox;
    fn deref(&self) -> &Sandbox {
        &self.sandbox
    }
}

/// A sandbox running firewalld of `flavor` (a [`Flavor`], or a FirewallBackend name for the
/// system's firewalld), or `None` when the test cannot run here (under CI=true that is a
/// failure instead).
pub fn with_firewalld(test: &str, flavor: impl Into<Flavor>) -> Option<FirewalldSandbox> {
    let flavor = flavor.into();
    let root = match flavor.version {
        Version::V1 => None,
        Version::V2 => match firewalld2_root() {
            Some(root) => Some(root),
            None if std::env::var("CI").as_deref() == Ok("true") => panic!(
                "{test} ({}): needs firewalld 2.x: run scripts/fetch-firewalld2.sh (or set \
                 {FIREWALLD2_ROOT_VAR}); CI must not skip it",
                flavor.label()
            ),
            None => {
                eprintln!(
                    "SKIPPED {test} ({}): no firewalld 2.x here (scripts/fetch-firewalld2.sh fetches it)",
                    flavor.label()
                );
                return None;
            }
        },
    };
    let tools: &[&str] = match flavor.version {
        Version::V1 => &["firewalld", "dbus-daemon", "firewall-cmd"],
        Version::V2 => &["dbus-daemon"],
    };
    let sandbox = sandbox_with(test, tools)?;
    // Shown with the output of a failing test.
    eprintln!("{test}: {}", flavor.label());
    let backend = flavor.backend;
    // bookworm's libnftables cannot give a table an owner, which 2.x asks for by default.
    let owner = match flavor.version {
        Version::V1 => "",
        Version::V2 => "NftablesTableOwner=no\n",
    };
    std::fs::write(
        sandbox.firewalld_dir().join("firewalld.conf"),
        format!("DefaultZone=public\nFirewallBackend={backend}\n{owner}"),
    )
    .unwrap();
    let dbus = start_bus(&sandbox, None);
    let mut world = FirewalldSandbox {
        sandbox,
        flavor,
        firewall_backend: backend.to_string(),
        programs: Programs::of(flavor, root.as_deref()),
        dbus,
        daemon: None,
    };
    world.start();
    Some(world)
}

/// Starts the sandbox's private bus (its socket is [`Sandbox::bus_address`]) and waits for
/// its socket. A system bus, or with `services`, a session-type bus that starts the services
/// of that directory itself (D-Bus activation, as systemd does for a system bus).
pub fn start_bus(sandbox: &Sandbox, services: Option<&Path>) -> Child {
    let config = sandbox.path("bus.conf");
    let socket = sandbox.path("bus.sock");
    std::fs::write(&config, bus_config_text(&socket, services)).unwrap();
    let mut bus = sandbox
        .command(&[
            "dbus-daemon",
            &format!("--config-file={}", config.display()),
            "--nofork",
            "--nopidfile",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start dbus-daemon");
    let deadline = Instant::now() + Duration::from_secs(60);
    while !socket.exists() {
        if Instant::now() > deadline {
            let _ = bus.kill();
            let _ = bus.wait();
            panic!("timed out waiting for the private D-Bus socket");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    bus
}

fn bus_config_text(socket: &Path, services: Option<&Path>) -> String {
    let (kind, service_dir) = match services {
        Some(dir) => (
            "session",
            format!("\n  <servicedir>{}</servicedir>", dir.display()),
        ),
        None => ("system", String::new()),
    };
    format!(
        r#"<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>{kind}</type>
  <listen>unix:path={}</listen>
  <auth>EXTERNAL</auth>{service_dir}
  <policy context="default">
    <allow user="*"/>
    <allow own="*"/>
    <allow send_type="method_call"/>
    <allow send_type="signal"/>
    <allow send_requested_reply="true" send_type="method_return"/>
    <allow send_requested_reply="true" send_type="error"/>
    <allow receive_type="method_call"/>
    <allow receive_type="method_return"/>
    <allow receive_type="error"/>
    <allow receive_type="signal"/>
  </policy>
</busconfig>
"#,
        socket.display()
    )
}

fn wait_for(what: &str, mut ready: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !ready() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

impl FirewalldSandbox {
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.path("firewalld.log")).unwrap_or_default()
    }

    /// Starts firewalld and waits until it reports `running`.
    pub fn start(&mut self) {
        self.start_until("running");
    }

    /// Starts firewalld and waits until `firewall-cmd --state` prints `state`
    /// (`running`, or `failed` for a configuration firewalld cannot apply).
    pub fn start_until(&mut self, wanted: &str) {
        self.spawn_daemon();
        self.wait_for_state(wanted);
    }

    /// Starts firewalld and returns as soon as it owns its bus name, which it takes before
    /// it loads its configuration (state INIT) — the moment systemd counts it as started.
    pub fn start_in_background(&mut self) {
        self.spawn_daemon();
        wait_for("firewalld's bus name", || {
            let owner = self
                .command(&[
                    "dbus-send",
                    "--system",
                    "--print-reply",
                    "--dest=org.freedesktop.DBus",
                    "/org/freedesktop/DBus",
                    "org.freedesktop.DBus.NameHasOwner",
                    "string:org.fedoraproject.FirewallD1",
                ])
                .output()
                .expect("run dbus-send");
            String::from_utf8_lossy(&owner.stdout).contains("boolean true")
        });
    }

    fn spawn_daemon(&mut self) {
        assert!(self.daemon.is_none(), "firewalld already runs");
        let config = self.firewalld_dir();
        let log = self.path("firewalld.log");
        let default_config = self
            .programs
            .default_config
            .as_ref()
            .map(|dir| dir.display().to_string());
        let mut args = vec![self.programs.firewalld.as_str(), "--nofork", "--nopid"];
        if let Some(dir) = &default_config {
            args.extend(["--default-config", dir]);
        }
        args.extend([
            "--system-config",
            config.to_str().unwrap(),
            "--log-file",
            log.to_str().unwrap(),
        ]);
        let child = self
            .firewalld_command(&args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start firewalld");
        self.daemon = Some(child);
    }

    /// Sends `signal` to firewalld (SIGSTOP makes it a daemon that answers nothing).
    pub fn signal_firewalld(&self, signal: i32) {
        let daemon = self.daemon.as_ref().expect("firewalld runs");
        assert_eq!(unsafe { libc::kill(daemon.id() as i32, signal) }, 0);
    }

    /// Waits until `firewall-cmd --state` prints `wanted`.
    pub fn wait_for_state(&self, wanted: &str) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let state = self.firewall_cmd(&["--state"]);
            let text = format!(
                "{}{}",
                String::from_utf8_lossy(&state.stdout).trim(),
                String::from_utf8_lossy(&state.stderr).trim()
            );
            if text == wanted {
                return;
            }
            if text == "failed" || text == "running" || Instant::now() > deadline {
                panic!("firewalld did not start ({text}):\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Stops firewalld the way systemd does (SIGTERM) and waits for it.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.daemon.take() {
            unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
            let deadline = Instant::now() + Duration::from_secs(30);
            while child.try_wait().unwrap().is_none() {
                if Instant::now() > deadline {
                    let _ = child.kill();
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }

    /// A reboot as far as the firewall can tell: firewalld stops, every table of both
    /// families is emptied and /run too ([`Sandbox::reboot_state`]), firewalld starts
    /// again from its permanent configuration.
    pub fn reboot(&mut self) {
        self.stop();
        self.reboot_state();
        self.start();
    }

    pub fn firewall_cmd(&self, args: &[&str]) -> Output {
        let mut full = vec![self.programs.firewall_cmd.as_str()];
        full.extend_from_slice(args);
        self.firewalld_command(&full)
            .output()
            .expect("run firewall-cmd")
    }

    /// This flavor's `firewall-cmd`, runnable from another thread while the sandbox is
    /// borrowed mutably (to reload or restart firewalld meanwhile).
    pub fn detached_firewall_cmd(&self) -> impl Fn(&[&str]) -> Output + Send + Sync + 'static {
        let template = self.firewalld_command(&[self.programs.firewall_cmd.as_str()]);
        let program = template.get_program().to_owned();
        let args: Vec<OsString> = template.get_args().map(ToOwned::to_owned).collect();
        let envs: Vec<(OsString, OsString)> = template
            .get_envs()
            .filter_map(|(name, value)| Some((name.to_owned(), value?.to_owned())))
            .collect();
        move |extra| {
            Command::new(&program)
                .args(&args)
                .args(extra)
                .envs(envs.iter().map(|(name, value)| (name, value)))
                .output()
                .expect("run firewall-cmd")
        }
    }

    /// A command inside the namespaces with this flavor's Python modules first on
    /// `PYTHONPATH` (firewalld 2.x runs from its unpacked tree).
    pub fn firewalld_command(&self, args: &[&str]) -> Command {
        let mut command = self.command(args);
        if let Some(path) = &self.programs.python_path {
            command.env("PYTHONPATH", path);
        }
        command
    }

    /// This flavor's `firewall-offline-cmd` (for a stopped firewalld) with `args`.
    pub fn firewall_offline_cmd(&self, args: &[&str]) -> Output {
        let default_config = self
            .programs
            .default_config
            .as_ref()
            .map(|dir| dir.display().to_string());
        let mut full = vec![self.programs.firewall_offline_cmd.as_str()];
        if let Some(dir) = &default_config {
            full.extend(["--default-config", dir]);
        }
        full.extend_from_slice(args);
        self.firewalld_command(&full)
            .output()
            .expect("run firewall-offline-cmd")
    }

    /// Whether firewalld runs (started by the harness and not stopped since).
    pub fn is_running(&self) -> bool {
        self.daemon.is_some()
    }

    /// The `firewall-cmd` of this flavor (a path for firewalld 2.x).
    pub fn firewall_cmd_program(&self) -> &str {
        &self.programs.firewall_cmd
    }

    pub fn firewall_cmd_ok(&self, args: &[&str]) -> String {
        let output = self.firewall_cmd(args);
        assert!(
            output.status.success(),
            "firewall-cmd {args:?} failed: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).unwrap()
    }

    /// How many direct rules of ours firewalld lists, runtime or permanent.
    /// firewall-cmd's three direct listings (chains, rules, passthroughs) of the runtime or
    /// the permanent configuration: each one's arguments, and its lines.
    pub fn direct_listings(&self, permanent: bool) -> Vec<(String, Vec<String>)> {
        [
            "--get-all-chains",
            "--get-all-rules",
            "--get-all-passthroughs",
        ]
        .into_iter()
        .map(|what| {
            let mut args = vec!["--direct", what];
            if permanent {
                args.insert(0, "--permanent");
            }
            let lines = self
                .firewall_cmd_ok(&args)
                .lines()
                .map(String::from)
                .collect();
            (args.join(" "), lines)
        })
        .collect()
    }

    pub fn count_our_rules(&self, permanent: bool) -> usize {
        let mut args = vec!["--direct", "--get-all-rules"];
        if permanent {
            args.insert(0, "--permanent");
        }
        self.firewall_cmd_ok(&args)
            .lines()
            .filter(|l| l.contains("kuma/mesh/transparent/proxy") || l.contains("KUMA_MESH_"))
            .count()
    }

    /// The sandbox's direct.xml, or "" when there is none.
    pub fn direct_xml(&self) -> String {
        std::fs::read_to_string(self.direct_xml_path()).unwrap_or_default()
    }

    pub fn direct_xml_path(&self) -> PathBuf {
        self.firewalld_dir().join("direct.xml")
    }

    /// Records the D-Bus calls that change firewalld's direct configuration while `f` runs.
    pub fn write_calls(&self, f: impl FnOnce()) -> Vec<String> {
        let out = self.path("monitor.txt");
        let file = std::fs::File::create(&out).unwrap();
        let mut monitor = self
            .command(&[
                "dbus-monitor",
                "--address",
                &self.bus_address(),
                "type='method_call',interface='org.fedoraproject.FirewallD1.direct'",
                "type='method_call',interface='org.fedoraproject.FirewallD1.config.direct'",
                "type='method_call',interface='org.fedoraproject.FirewallD1'",
            ])
            .stdout(file)
            .stderr(Stdio::null())
            .spawn()
            .expect("start dbus-monitor");
        // dbus-monitor prints NameAcquired/NameLost once it is listening.
        wait_for("dbus-monitor", || {
            std::fs::read_to_string(&out).is_ok_and(|t| t.contains("NameLost"))
        });
        f();
        std::thread::sleep(Duration::from_millis(200));
        let _ = monitor.kill();
        let _ = monitor.wait();
        const WRITES: [&str; 8] = [
            "addChain",
            "removeChain",
            "addRule",
            "removeRule",
            "addPassthrough",
            "removePassthrough",
            "update",
            "reload",
        ];
        std::fs::read_to_string(&out)
            .unwrap()
            .lines()
            .filter(|l| l.starts_with("method call"))
            .filter_map(|l| l.split("member=").nth(1))
            .filter(|member| WRITES.contains(member))
            .map(str::to_string)
            .collect()
    }
}

impl Drop for FirewalldSandbox {
    fn drop(&mut self) {
        if let Some(mut child) = self.daemon.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = self.dbus.kill();
        let _ = self.dbus.wait();
    }
}
