//! A real firewalld for a test, inside the test's sandbox: its own dbus-daemon on a socket
//! in the sandbox directory, firewalld with `--system-config` pointing at the sandbox's
//! configuration directory. Both are killed when the value is dropped, also on failure.

use std::ops::Deref;
use std::path::PathBuf;
use std::process::{Child, Output, Stdio};
use std::time::{Duration, Instant};

use super::{sandbox_with, Sandbox};

/// `nftables` or `iptables`: firewalld's FirewallBackend.
pub const BACKENDS: [&str; 2] = ["nftables", "iptables"];

pub struct FirewalldSandbox {
    sandbox: Sandbox,
    /// `nftables` or `iptables`.
    pub firewall_backend: String,
    dbus: Child,
    daemon: Option<Child>,
}

impl Deref for FirewalldSandbox {
    type Target = Sandbox;
    fn deref(&self) -> &Sandbox {
        &self.sandbox
    }
}

/// A sandbox running firewalld with `backend`, or `None` when the test cannot run here
/// (under CI=true that is a failure instead).
pub fn with_firewalld(test: &str, backend: &str) -> Option<FirewalldSandbox> {
    let sandbox = sandbox_with(test, &["firewalld", "dbus-daemon", "firewall-cmd"])?;
    std::fs::write(
        sandbox.firewalld_dir().join("firewalld.conf"),
        format!("DefaultZone=public\nFirewallBackend={backend}\n"),
    )
    .unwrap();
    let bus_config = sandbox.path("bus.conf");
    std::fs::write(&bus_config, bus_config_text(&sandbox.path("bus.sock"))).unwrap();
    let dbus = sandbox
        .command(&[
            "dbus-daemon",
            &format!("--config-file={}", bus_config.display()),
            "--nofork",
            "--nopidfile",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start dbus-daemon");
    let mut world = FirewalldSandbox {
        sandbox,
        firewall_backend: backend.to_string(),
        dbus,
        daemon: None,
    };
    wait_for("the private D-Bus socket", || {
        world.path("bus.sock").exists()
    });
    world.start();
    Some(world)
}

fn bus_config_text(socket: &std::path::Path) -> String {
    format!(
        r#"<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <listen>unix:path={}</listen>
  <auth>EXTERNAL</auth>
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
        assert!(self.daemon.is_none(), "firewalld already runs");
        let config = self.firewalld_dir();
        let log = self.path("firewalld.log");
        let child = self
            .command(&[
                "firewalld",
                "--nofork",
                "--nopid",
                "--system-config",
                config.to_str().unwrap(),
                "--log-file",
                log.to_str().unwrap(),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start firewalld");
        self.daemon = Some(child);
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
    /// families is emptied, firewalld starts again from its permanent configuration.
    pub fn reboot(&mut self) {
        self.stop();
        for program in ["iptables", "ip6tables"] {
            for table in ["raw", "mangle", "nat", "filter", "security"] {
                self.run(&[program, "-t", table, "-F"]);
                self.run(&[program, "-t", table, "-X"]);
            }
        }
        self.ok(&["nft", "flush", "ruleset"]);
        self.start();
    }

    pub fn firewall_cmd(&self, args: &[&str]) -> Output {
        let mut full = vec!["firewall-cmd"];
        full.extend_from_slice(args);
        self.run(&full)
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
