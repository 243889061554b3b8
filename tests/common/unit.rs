//! The systemd units of `packaging/systemd` as tests use them: their directives, and their
//! commands run inside a sandbox the way systemd would start them.
//!
//! [`exec`] runs a unit's `ExecStart=` (or `ExecStop=`, `ExecReload=`) as written, in a
//! mount namespace of its own with systemd's clean environment, under the unit's sandboxing
//! rebuilt with the kernel features systemd itself uses: `PrivateTmp=`, `ProtectHome=`,
//! `ProtectKernelTunables=` and `ProtectSystem=strict` with `ReadWritePaths=` as mounts,
//! `NoNewPrivileges=` and `CapabilityBoundingSet=` through setpriv. What it does not rebuild
//! (system call and address-family filters, `ProtectProc=`, …) only `systemd-analyze
//! security` looks at. The system bus is where systemd's services find it,
//! /run/dbus/system_bus_socket.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use super::{Layer, Sandbox, BIN};

/// The environment systemd gives a system service.
const SYSTEMD_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin";

/// A unit file or drop-in: its directives, in order.
pub struct Unit {
    pub path: PathBuf,
    /// (section, key, value)
    directives: Vec<(String, String, String)>,
}

impl Unit {
    /// `packaging/systemd/<name>` of the checkout.
    pub fn packaged(name: &str) -> Unit {
        Unit::load(
            &Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("packaging/systemd")
                .join(name),
        )
    }

    pub fn load(path: &Path) -> Unit {
        let text =
            std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let mut directives = Vec::new();
        let mut section = String::new();
        for line in text.replace("\\\n", " ").lines().map(str::trim) {
            if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
                continue;
            }
            if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
                section = name.to_string();
                continue;
            }
            let (key, value) = line
                .split_once('=')
                .unwrap_or_else(|| panic!("{}: not a directive: {line}", path.display()));
            directives.push((
                section.clone(),
                key.trim().to_string(),
                value.trim().to_string(),
            ));
        }
        Unit {
            path: path.to_path_buf(),
            directives,
        }
    }

    /// Every value of `key` in `section`, split on white space, in order.
    pub fn list(&self, section: &str, key: &str) -> Vec<String> {
        self.directives
            .iter()
            .filter(|(s, k, _)| s == section && k == key)
            .flat_map(|(_, _, value)| value.split_whitespace().map(str::to_string))
            .collect()
    }

    /// The value of `key` in `section` (the last one given).
    pub fn value(&self, section: &str, key: &str) -> Option<String> {
        self.directives
            .iter()
            .rev()
            .find(|(s, k, _)| s == section && k == key)
            .map(|(_, _, value)| value.clone())
    }

    /// The argv of `ExecStart=`, `ExecStop=` or `ExecReload=`, as systemd splits it.
    pub fn command(&self, key: &str) -> Vec<String> {
        let line = self
            .value("Service", key)
            .unwrap_or_else(|| panic!("{}: no {key}=", self.path.display()));
        // `-`, `@`, `:`, `+`, `!` prefixes change how systemd runs the command; these units
        // use none, and this reading would not honour them.
        assert!(
            !line.starts_with(['-', '@', ':', '+', '!']) && !line.contains(['%', '$', '"', '\'']),
            "{}: {key}={line}: prefixes, specifiers, variables and quotes are not read here",
            self.path.display()
        );
        line.split_whitespace().map(str::to_string).collect()
    }
}

/// The packaged configuration, /etc/tproxy-firewalld/config.yaml of the packages.
pub fn packaged_config() -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("packaging/config.yaml");
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Lays out inside `sandbox` what the packages install and the unit uses: the built binary
/// at /usr/bin/tproxy-firewalld, the packaged configuration at
/// /etc/tproxy-firewalld/config.yaml; with `without_firewalld`, /etc/firewalld is hidden, as
/// on a host without firewalld.
pub fn lay_out_package(sandbox: &Sandbox, without_firewalld: bool) {
    let config = packaged_config();
    sandbox.overlay(
        "/usr/bin",
        &[("tproxy-firewalld", Layer::Bind(Path::new(BIN)))],
    );
    let mut etc = vec![("tproxy-firewalld/config.yaml", Layer::Text(&config))];
    if without_firewalld {
        etc.push(("firewalld", Layer::Hidden));
    }
    sandbox.overlay("/etc", &etc);
}

/// Runs the unit's `key` command inside `sandbox` as systemd would start it (see the module
/// documentation). The program must exist inside the sandbox at the path the unit names
/// (lay it there with [`Sandbox::overlay`]).
pub fn exec(sandbox: &Sandbox, unit: &Unit, key: &str) -> Output {
    let argv = unit.command(key);
    let namespace = Namespace::new(sandbox);
    namespace.protect(sandbox, unit);
    let mut command = Command::new("nsenter");
    command
        .args(["-t", &namespace.pid().to_string(), "-m", "-n", "--"])
        .arg("setpriv")
        .args(privileges(unit))
        .arg("--")
        .args(&argv)
        .env_clear()
        .env("PATH", SYSTEMD_PATH)
        .stdin(Stdio::null());
    command.output().expect("run nsenter")
}

/// [`exec`], failing the test with the command's stderr when it fails.
pub fn exec_ok(sandbox: &Sandbox, unit: &Unit, key: &str) -> Output {
    let output = exec(sandbox, unit, key);
    assert!(
        output.status.success(),
        "{key}={} failed: {}",
        unit.command(key).join(" "),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// setpriv's options for `NoNewPrivileges=` and `CapabilityBoundingSet=`.
fn privileges(unit: &Unit) -> Vec<String> {
    let mut options = Vec::new();
    if unit.value("Service", "NoNewPrivileges").as_deref() == Some("yes") {
        options.push("--no-new-privs".to_string());
    }
    let capabilities = unit.list("Service", "CapabilityBoundingSet");
    if !capabilities.is_empty() {
        let kept: Vec<String> = capabilities
            .iter()
            .map(|name| {
                let name = name.strip_prefix("CAP_").expect("a capability name");
                format!("+{}", name.to_lowercase())
            })
            .collect();
        options.push("--bounding-set".to_string());
        options.push(format!("-all,{}", kept.join(",")));
    }
    options
}

/// A mount namespace inside the sandbox's, for one command, held by a keeper process.
struct Namespace {
    keeper: std::process::Child,
    /// The sandbox's keeper, whose namespace this one copies.
    sandbox: u32,
}

impl Namespace {
    fn new(sandbox: &Sandbox) -> Namespace {
        let keeper = sandbox
            .command(&[
                "unshare",
                "--mount",
                "--propagation",
                "private",
                "sleep",
                "600",
            ])
            .stdin(Stdio::null())
            .spawn()
            .expect("start the unit's namespace");
        let namespace = Namespace {
            keeper,
            sandbox: sandbox.pid(),
        };
        // The keeper starts in the test's own namespace, enters the sandbox's, then makes
        // its own: only that last one is ever changed.
        for _ in 0..400 {
            if namespace.is_private() {
                return namespace;
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        panic!("the unit's mount namespace did not appear");
    }

    fn pid(&self) -> u32 {
        self.keeper.id()
    }

    /// Whether the keeper's mount namespace is neither the test's nor the sandbox's.
    fn is_private(&self) -> bool {
        let namespace = |pid: &str| std::fs::read_link(format!("/proc/{pid}/ns/mnt")).ok();
        let own = namespace(&self.pid().to_string());
        own.is_some() && own != namespace("self") && own != namespace(&self.sandbox.to_string())
    }

    /// Every change goes through here: never one outside the unit's own namespace.
    fn guard(&self) {
        assert!(
            self.is_private(),
            "the unit's namespace is not a private one; nothing is changed"
        );
    }

    fn mount(&self, args: &[&str]) {
        self.guard();
        let output = Command::new("nsenter")
            .args(["-t", &self.pid().to_string(), "-m", "--", "mount"])
            .args(args)
            .output()
            .expect("run mount");
        assert!(
            output.status.success(),
            "mount {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }

    /// Inside the namespace: whether `path` is a directory (or, with `any`, exists).
    fn exists(&self, path: &str, any: bool) -> bool {
        let inside = PathBuf::from(format!("/proc/{}/root{path}", self.pid()));
        if any {
            inside.symlink_metadata().is_ok()
        } else {
            inside.is_dir()
        }
    }

    /// Builds the unit's sandboxing into this namespace.
    fn protect(&self, sandbox: &Sandbox, unit: &Unit) {
        let yes = |key: &str| unit.value("Service", key).as_deref() == Some("yes");
        // The sandbox's bus, where a service finds the system bus; before /tmp is hidden.
        let bus = sandbox.path("bus.sock");
        if bus.exists() {
            self.guard();
            let socket = format!("/proc/{}/root/run/dbus", self.pid());
            std::fs::create_dir_all(&socket).unwrap();
            std::fs::write(format!("{socket}/system_bus_socket"), "").unwrap();
            self.mount(&[
                "--bind",
                bus.to_str().unwrap(),
                "/run/dbus/system_bus_socket",
            ]);
        }
        if yes("PrivateTmp") {
            for dir in ["/tmp", "/var/tmp"] {
                self.mount(&["-t", "tmpfs", "-o", "mode=1777", "tmpfs", dir]);
            }
        }
        if yes("ProtectHome") {
            for dir in ["/home", "/root", "/run/user"] {
                if self.exists(dir, false) {
                    self.mount(&["-t", "tmpfs", "-o", "mode=000,ro", "tmpfs", dir]);
                }
            }
        }
        if yes("ProtectKernelTunables") {
            for dir in ["/proc/sys", "/sys"] {
                self.mount(&["--bind", dir, dir]);
                self.mount(&["-o", "remount,bind,ro", dir]);
            }
        }
        match unit.value("Service", "ProtectSystem").as_deref() {
            None | Some("no") => {}
            Some("strict") => self.read_only_but(&unit.list("Service", "ReadWritePaths")),
            Some(other) => panic!("ProtectSystem={other} is not rebuilt here (strict is)"),
        }
    }

    /// `ProtectSystem=strict`: every mount read-only but the API file systems, the private
    /// /tmp and the `writable` paths (a `-` prefix: only when it exists).
    fn read_only_but(&self, writable: &[String]) {
        let mut kept = vec!["/dev".to_string(), "/proc".to_string(), "/sys".to_string()];
        kept.extend(["/tmp".to_string(), "/var/tmp".to_string()]);
        for path in writable {
            let (optional, path) = match path.strip_prefix('-') {
                Some(path) => (true, path),
                None => (false, path.as_str()),
            };
            if optional && !self.exists(path, true) {
                continue;
            }
            // A mount of its own stays writable when the mount holding it turns read-only.
            self.mount(&["--rbind", path, path]);
            kept.push(path.to_string());
        }
        let under = |path: &str, dir: &str| {
            path == dir || path.starts_with(&format!("{}/", dir.trim_end_matches('/')))
        };
        let mountinfo = std::fs::read_to_string(format!("/proc/{}/mountinfo", self.pid())).unwrap();
        let mut done: Vec<String> = Vec::new();
        for line in mountinfo.lines() {
            let point = line.split(' ').nth(4).expect("a mount point").to_string();
            if kept.iter().any(|dir| under(&point, dir)) || done.contains(&point) {
                continue;
            }
            // Mounts covered by a later one are not reachable by their path; the top one is.
            if self.exists(&point, true) {
                self.mount(&["-o", "remount,bind,ro", &point]);
            }
            done.push(point);
        }
    }
}

impl Drop for Namespace {
    fn drop(&mut self) {
        let _ = self.keeper.kill();
        let _ = self.keeper.wait();
    }
}
