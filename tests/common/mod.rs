//! Test harness: a throwaway network + mount namespace per test, so nothing a test does
//! reaches the host's firewall. A keeper process holds the namespaces; commands enter them
//! with nsenter; dropping the sandbox kills the keeper and the namespaces vanish.
#![allow(dead_code)] // each test binary uses a different part of the harness

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

use tempfile::TempDir;

pub mod firewalld;
pub mod json_shape;
pub mod run;
pub mod unit;
pub mod world;

/// The reference's "with-multiple-flags" set.
pub const MULTIPLE_FLAGS: &[&str] = &[
    "--redirect-all-dns-traffic",
    "--vnet",
    "docker0:172.17.0.0/16",
    "--vnet",
    "br+:172.18.0.0/16",
    "--vnet",
    "iface:::1/64",
    "--exclude-outbound-ports-for-uids",
    "53,3000-5000:106-108",
    "--exclude-outbound-ips",
    "10.0.0.1,192.168.0.0/24,fe80::1",
    "--exclude-outbound-ips",
    "fd00::/8",
    "--exclude-outbound-ports",
    "1,22,333",
    "--exclude-inbound-ports",
    "4444,55555",
    "--exclude-inbound-ips",
    "192.168.0.1,172.32.16.8/16,fe80::/10",
    "--exclude-inbound-ips",
    "a81b:a033:6399:73c7:72b6:aa8c:6f22:7098",
];

/// The reference's "with-multiple-config-flags" set: two files, then stdin.
pub const CONFIG_1: &str = "redirect:\n  dns:\n    enabled: false\n    port: 7777\n";
pub const CONFIG_2: &str = "redirect:\n  dns:\n    enabled: true\n    port: 8888\n  outbound:\n    excludePortsForIPs:\n    - 10.11.12.13\n    - 172.14.15.16/32\n  inbound:\n    excludePorts:\n    - 10000\n    - 20000\n";
pub const CONFIG_STDIN: &str = "redirect:
  vnet:
    networks:
    - docker2:10.0.0.0/8
    - docker0:172.17.0.0/16
    - br+:172.18.0.0/16
    - iface:::1/64
  dns:
    enabled: true
    captureAll: true
  inbound:
    enabled: true
    excludePorts:
    - 4444
    - 55555
    excludePortsForIPs:
    - 192.168.0.1,172.32.16.8/16,fe80::/10
    - a81b:a033:6399:73c7:72b6:aa8c:6f22:7098
  outbound:
    enabled: true
    excludePortsForUIDs:
    - 1
    - 2-3:4-5
    excludePorts:
    - 6
    - 77
    - 888
    excludePortsForIPs:
    - 10.0.0.1,192.168.0.0/24,fe80::1
    - fd00::/8
";

pub const BIN: &str = env!("CARGO_BIN_EXE_tproxy-firewalld");
pub const KUMA_DP_UID: u32 = 5678;
pub const APP_UID: u32 = 4242;

/// Returns false when namespaces are unavailable; under CI=true that fails the test instead,
/// so CI can never pass by skipping.
pub fn namespaces_available(test: &str) -> bool {
    let root = nix_is_root();
    let ok = root
        && Command::new("unshare")
            .args(["-m", "-n", "true"])
            .status()
            .is_ok_and(|s| s.success())
        && which("iptables-save");
    if !ok {
        let why = if root {
            "unshare -m -n or iptables is unavailable"
        } else {
            "not root"
        };
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("{test}: needs root, namespaces and iptables ({why}); CI must not skip it");
        }
        eprintln!("SKIPPED {test}: {why}");
    }
    ok
}

/// Whether `tool`, which `part` of `test` needs, is installed. Without it the part is skipped
/// with a note, except under CI=true, where that fails the test instead.
pub fn tool_for_part(test: &str, tool: &str, part: &str) -> bool {
    if which(tool) {
        return true;
    }
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("{test}: {part} needs {tool}; CI must not skip it");
    }
    eprintln!("NOTE {test}: {tool} is not installed, so {part} is skipped");
    false
}

/// A fresh sandbox, or `None` (after saying why) when namespaces are unavailable.
pub fn sandbox(test: &str) -> Option<Sandbox> {
    sandbox_with(test, &[])
}

/// Like [`sandbox`], for a test that also needs `tools`; under CI=true a missing tool fails.
pub fn sandbox_with(test: &str, tools: &[&str]) -> Option<Sandbox> {
    if !namespaces_available(test) {
        return None;
    }
    if let Some(missing) = tools.iter().find(|tool| !which(tool)) {
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("{test}: needs {missing}; CI must not skip it");
        }
        eprintln!("SKIPPED {test}: {missing} is not installed");
        return None;
    }
    Some(Sandbox::new())
}

fn nix_is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

pub fn which(program: &str) -> bool {
    std::env::var_os("PATH").is_some_and(|paths| {
        std::env::split_paths(&paths)
            .chain(["/usr/sbin".into(), "/sbin".into()])
            .any(|dir| dir.join(program).is_file())
    })
}

pub struct Sandbox {
    keeper: Child,
    pub dir: TempDir,
}

impl Sandbox {
    /// A namespace with loopback up, a veth pair carrying IPv4 and IPv6 addresses (so the
    /// host counts as dual-stack) and a passwd that knows kuma-dp (5678) and app (4242).
    pub fn new() -> Sandbox {
        let dir = tempfile::Builder::new()
            .prefix("tproxy-test-")
            .tempdir()
            .expect("temp dir");
        let keeper = Command::new("unshare")
            .args([
                "--mount",
                "--net",
                "--propagation",
                "private",
                "sleep",
                "3600",
            ])
            .stdin(Stdio::null())
            .spawn()
            .expect("start namespace keeper");
        let sandbox = Sandbox { keeper, dir };
        // unshare execs sleep once the namespaces exist; wait until its mount ns differs.
        let own = std::fs::read_link("/proc/self/ns/net").unwrap();
        for _ in 0..200 {
            if std::fs::read_link(format!("/proc/{}/ns/net", sandbox.pid()))
                .ok()
                .as_ref()
                != Some(&own)
            {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        let passwd = sandbox.dir.path().join("passwd");
        std::fs::write(
            &passwd,
            format!(
                "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534::/nonexistent:/usr/sbin/nologin\n\
                 kuma-dp:x:{KUMA_DP_UID}:{KUMA_DP_UID}::/nonexistent:/usr/sbin/nologin\n\
                 app:x:{APP_UID}:{APP_UID}::/nonexistent:/usr/sbin/nologin\n"
            ),
        )
        .unwrap();
        let resolv = sandbox.dir.path().join("resolv.conf");
        std::fs::write(&resolv, "nameserver 10.96.0.10\nnameserver fd00::53\n").unwrap();
        // firewalld's configuration directory, empty until a test starts firewalld.
        std::fs::create_dir(sandbox.firewalld_dir()).unwrap();
        sandbox.bind_own_etc_files(Path::new("/etc/firewalld").is_dir());
        for args in [
            // firewalld keeps state in /run/firewalld; a private /run keeps it off the host's.
            vec!["mount", "-t", "tmpfs", "tmpfs", "/run"],
            vec!["ip", "link", "set", "lo", "up"],
            vec![
                "ip", "link", "add", "veth0", "type", "veth", "peer", "name", "veth1",
            ],
            vec!["ip", "addr", "add", "192.0.2.1/24", "dev", "veth0"],
            vec![
                "ip",
                "-6",
                "addr",
                "add",
                "fd00::1/64",
                "dev",
                "veth0",
                "nodad",
            ],
            vec!["ip", "link", "set", "veth0", "up"],
            vec!["ip", "link", "set", "veth1", "up"],
        ] {
            sandbox.ok(&args);
        }
        sandbox
    }

    /// Mounts the sandbox's passwd and resolv.conf over /etc's, and with `firewalld_dir` its
    /// firewalld configuration directory over /etc/firewalld.
    fn bind_own_etc_files(&self, firewalld_dir: bool) {
        let passwd = self.path("passwd");
        let resolv = self.path("resolv.conf");
        let firewalld = self.firewalld_dir();
        let mut binds = vec![(&passwd, "/etc/passwd"), (&resolv, "/etc/resolv.conf")];
        if firewalld_dir {
            binds.push((&firewalld, "/etc/firewalld"));
        }
        for (source, target) in binds {
            self.ok(&["mount", "--bind", source.to_str().unwrap(), target]);
        }
    }

    /// Lays a private layer over the directory `dir` inside the namespace, holding `entries`
    /// (paths relative to `dir`); the host's `dir` is never written. The layer's files live
    /// on a tmpfs of the namespace (an overlay's upper directory cannot be on an overlay
    /// itself, as a container's root may be). Over /etc, the sandbox's own passwd,
    /// resolv.conf and firewalld directory are mounted again on top, the last unless hidden.
    pub fn overlay(&self, dir: &str, entries: &[(&str, Layer)]) {
        let layers = self.path(&format!("layer{}", dir.replace('/', "-")));
        std::fs::create_dir(&layers).unwrap();
        let layers = layers.to_str().unwrap();
        self.ok(&["mount", "-t", "tmpfs", "-o", "mode=0755", "tmpfs", layers]);
        // The tmpfs exists inside the namespace only: reach it through the keeper's root.
        let inside = |path: &str| PathBuf::from(format!("/proc/{}/root{path}", self.pid()));
        let (upper, work) = (format!("{layers}/upper"), format!("{layers}/work"));
        for made in [&upper, &work] {
            std::fs::create_dir(inside(made)).unwrap();
        }
        for (name, layer) in entries {
            let path = inside(&format!("{upper}/{name}"));
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            match layer {
                Layer::Text(text) => std::fs::write(&path, text).unwrap(),
                // The mount point of the bind mount made below.
                Layer::Bind(_) => std::fs::write(&path, "").unwrap(),
                // An overlay whiteout: a character device 0:0 hides the lower entry.
                Layer::Hidden => {
                    self.ok(&["mknod", &format!("{upper}/{name}"), "c", "0", "0"]);
                }
            }
        }
        let options = format!("lowerdir={dir},upperdir={upper},workdir={work}");
        self.ok(&["mount", "-t", "overlay", "overlay", "-o", &options, dir]);
        for (name, layer) in entries {
            if let Layer::Bind(source) = layer {
                let source = source.to_str().unwrap();
                self.ok(&["mount", "--bind", source, &format!("{dir}/{name}")]);
            }
        }
        if dir == "/etc" {
            let hidden = entries
                .iter()
                .any(|(name, layer)| *name == "firewalld" && matches!(layer, Layer::Hidden));
            self.bind_own_etc_files(!hidden && Path::new("/etc/firewalld").is_dir());
        }
    }

    /// What a reboot leaves of the kernel's and /run's state: every table of both families
    /// empty, nftables' ruleset flushed, a fresh /run.
    pub fn reboot_state(&self) {
        for program in ["iptables", "ip6tables"] {
            for table in ["raw", "mangle", "nat", "filter", "security"] {
                self.run(&[program, "-t", table, "-F"]);
                self.run(&[program, "-t", table, "-X"]);
            }
        }
        self.ok(&["nft", "flush", "ruleset"]);
        self.ok(&["mount", "-t", "tmpfs", "tmpfs", "/run"]);
    }

    /// The sandbox's private system bus (it exists once [`Firewalld::start`] ran).
    pub fn bus_address(&self) -> String {
        format!("unix:path={}", self.path("bus.sock").display())
    }

    /// The sandbox's firewalld configuration directory, mounted over /etc/firewalld
    /// inside the namespace so the host's is never read or written.
    pub fn firewalld_dir(&self) -> PathBuf {
        self.path("etc-firewalld")
    }

    pub fn pid(&self) -> u32 {
        self.keeper.id()
    }

    /// Runs a command inside the namespaces.
    pub fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().expect("run nsenter")
    }

    /// A command inside the namespaces, to add stdin or env before running it.
    pub fn command(&self, args: &[&str]) -> Command {
        self.command_as(0, args)
    }

    /// A command inside the namespaces, run under `uid` (group of the same number).
    pub fn command_as(&self, uid: u32, args: &[&str]) -> Command {
        let mut command = Command::new("nsenter");
        command.args(["-t", &self.pid().to_string(), "-m", "-n"]);
        if uid != 0 {
            command.args(["-S", &uid.to_string(), "-G", &uid.to_string()]);
        }
        // Only ever the sandbox's own bus: never the host's firewalld.
        command.env("DBUS_SYSTEM_BUS_ADDRESS", self.bus_address());
        command.arg("--").args(args);
        command
    }

    /// Runs a command and fails the test with its stderr when it fails.
    pub fn ok(&self, args: &[&str]) -> String {
        let output = self.run(args);
        assert!(
            output.status.success(),
            "{args:?} failed: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).unwrap()
    }

    /// Runs our binary inside the namespaces.
    pub fn tproxy(&self, args: &[&str]) -> Output {
        let mut full = vec![BIN];
        full.extend_from_slice(args);
        self.run(&full)
    }

    pub fn tproxy_ok(&self, args: &[&str]) -> String {
        let output = self.tproxy(args);
        assert!(
            output.status.success(),
            "tproxy-firewalld {args:?} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).unwrap()
    }

    /// `iptables-save` (or ip6tables-save) of the sandbox, without counters or comments.
    pub fn save(&self, program: &str) -> String {
        normalise_counters(&self.ok(&[program]))
    }

    /// [`Self::save`] of both families: `(IPv4, IPv6)`.
    pub fn saves(&self) -> (String, String) {
        (self.save("iptables-save"), self.save("ip6tables-save"))
    }

    /// A copy of `file` in the sandbox directory that every user can read and run: the
    /// build tree may sit under a directory only root can enter.
    pub fn copy_for_any_user(&self, file: &Path) -> String {
        use std::os::unix::fs::PermissionsExt as _;
        let copy = self.path(&file.file_name().unwrap().to_string_lossy());
        std::fs::copy(file, &copy).unwrap();
        std::fs::set_permissions(self.dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(0o755)).unwrap();
        copy.to_str().unwrap().to_string()
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Puts `contents` at `/etc/<name>` inside the sandbox. The first call lays an overlay
    /// over /etc whose changes live in a tmpfs of the sandbox, and binds the sandbox's
    /// passwd, resolv.conf and firewalld directory over it again: the host's /etc is
    /// never written.
    pub fn put_etc_file(&self, name: &str, contents: &str) {
        let layer = self.path("etc-layer");
        if !layer.exists() {
            std::fs::create_dir(&layer).unwrap();
            let layer = layer.to_str().unwrap();
            let (upper, work) = (format!("{layer}/upper"), format!("{layer}/work"));
            self.ok(&["mount", "-t", "tmpfs", "tmpfs", layer]);
            self.ok(&["mkdir", &upper, &work]);
            let options = format!("lowerdir=/etc,upperdir={upper},workdir={work}");
            self.ok(&["mount", "-t", "overlay", "overlay", "-o", &options, "/etc"]);
            let passwd = self.path("passwd");
            let resolv = self.path("resolv.conf");
            let firewalld = self.firewalld_dir();
            for (from, to) in [
                (passwd.as_path(), "/etc/passwd"),
                (resolv.as_path(), "/etc/resolv.conf"),
                (firewalld.as_path(), "/etc/firewalld"),
            ] {
                if Path::new(to).exists() {
                    self.ok(&["mount", "--bind", from.to_str().unwrap(), to]);
                }
            }
        }
        let staged = self.path("etc-file");
        std::fs::write(&staged, contents).unwrap();
        let target = Path::new("/etc").join(name);
        self.ok(&["mkdir", "-p", target.parent().unwrap().to_str().unwrap()]);
        self.ok(&["cp", staged.to_str().unwrap(), target.to_str().unwrap()]);
    }
}

/// An entry of a layer laid over a directory of the sandbox ([`Sandbox::overlay`]).
pub enum Layer<'a> {
    /// A file with this text.
    Text(&'a str),
    /// This host file, bind-mounted (a binary the tests built, say).
    Bind(&'a Path),
    /// The lower directory's entry of that name is hidden.
    Hidden,
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        let _ = self.keeper.kill();
        let _ = self.keeper.wait();
    }
}

/// Drops `#` lines and chain counters, so two saves compare equal byte for byte.
pub fn normalise_counters(save: &str) -> String {
    save.lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| match l.strip_prefix(':') {
            Some(_) => l.rsplit_once(" [").map_or(l, |(head, _)| head).to_string(),
            None => l.to_string(),
        })
        .map(|l| l + "\n")
        .collect()
}

/// The reference's normalisation: counters and comments dropped, `-o <iface>` replaced
/// with `-o ifPlaceholder`, tables without rules dropped.
pub fn normalise_like_reference(save: &str) -> String {
    let text = normalise_counters(save);
    let mut out = String::new();
    let mut table: Vec<String> = Vec::new();
    for line in text.lines() {
        let line = replace_out_interface(line);
        let done = line == "COMMIT";
        table.push(line);
        if done {
            if table.iter().any(|l| l.starts_with("-A ")) {
                for l in &table {
                    out.push_str(l);
                    out.push('\n');
                }
            }
            table.clear();
        }
    }
    out
}

fn replace_out_interface(line: &str) -> String {
    let mut words: Vec<&str> = line.split(' ').collect();
    for i in 0..words.len().saturating_sub(1) {
        if words[i] == "-o" {
            words[i + 1] = "ifPlaceholder";
        }
    }
    words.join(" ")
}

/// The project's expected outputs live beside the tests.
pub fn expected(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/expected")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Compares with an expected file; with UPDATE_EXPECTED=1 rewrites it instead (review the diff).
pub fn assert_expected(name: &str, actual: &str) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/expected")
        .join(name);
    if std::env::var("UPDATE_EXPECTED").as_deref() == Ok("1") {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let want = expected(name);
    assert!(
        want == actual,
        "{name} differs:\n--- expected\n{want}\n--- actual\n{actual}"
    );
}

/// The flag sets of kumactl's dry-run tests; our outputs are tests/expected/dry-run/<name>.txt.
pub const DRY_RUN_SETS: &[(&str, &[&str])] = &[
    ("defaults", &["--kuma-dp-user", "root"]),
    (
        "dns",
        &[
            "--kuma-dp-user",
            "0",
            "--redirect-all-dns-traffic",
            "--redirect-dns-port",
            "12345",
        ],
    ),
    (
        "dns.no-conntrack",
        &[
            "--kuma-dp-user",
            "0",
            "--redirect-all-dns-traffic",
            "--redirect-dns-port",
            "12345",
            "--skip-dns-conntrack-zone-split",
        ],
    ),
    (
        "overrides",
        &[
            "--kuma-dp-user",
            "root",
            "--redirect-outbound-port",
            "12345",
            "--redirect-inbound-port",
            "12346",
            "--exclude-outbound-ports",
            "2000,2001",
            "--exclude-inbound-ports",
            "1000,1001",
        ],
    ),
    (
        "excludedports",
        &[
            "--kuma-dp-user",
            "root",
            "--exclude-outbound-ports-for-uids",
            "tcp:1900,1902,1000-2000:106-108",
            "--exclude-outbound-ports-for-uids",
            "tcp:2900,2902,3000-5000:203",
            "--exclude-outbound-ports-for-uids",
            "udp:3900,3902,4000-6000:303",
        ],
    ),
    (
        "excludedports_wildcards",
        &[
            "--kuma-dp-user",
            "root",
            "--exclude-outbound-ports-for-uids",
            "*:*:0",
        ],
    ),
    (
        "excludedports_allprotos",
        &[
            "--kuma-dp-user",
            "root",
            "--exclude-outbound-ports-for-uids",
            "tcp:*:0",
        ],
    ),
    (
        "excludedports_onlyuid",
        &[
            "--kuma-dp-user",
            "root",
            "--exclude-outbound-ports-for-uids",
            "123",
        ],
    ),
];

/// Our part of an iptables-save text, comparable across backends: tables sorted, our chains
/// declared, rules grouped by chain (order within a chain kept), firewalld's `X_direct`
/// chains read as `X`, output interfaces replaced as the reference files do.
pub fn ours(save: &str, owned_only: bool) -> String {
    // (table, our chains, (chain, rule spec) in save order)
    type Table = (String, Vec<String>, Vec<(String, String)>);
    let mut tables: Vec<Table> = Vec::new();
    for line in save.lines() {
        if let Some(name) = line.strip_prefix('*') {
            tables.push((name.trim().to_string(), Vec::new(), Vec::new()));
            continue;
        }
        let Some((_, chains, rules)) = tables.last_mut() else {
            continue;
        };
        if let Some(chain) = line.strip_prefix(':') {
            let name = chain.split(' ').next().unwrap();
            if name.starts_with("KUMA_MESH_") {
                chains.push(name.to_string());
            }
        } else if let Some(rule) = line.strip_prefix("-A ") {
            let (chain, spec) = rule.split_once(' ').unwrap();
            let owned = chain.starts_with("KUMA_MESH_")
                || spec.contains("kuma/mesh/transparent/proxy")
                || spec.contains("-j KUMA_MESH_");
            if owned || !owned_only {
                let chain = chain.strip_suffix("_direct").unwrap_or(chain);
                rules.push((chain.to_string(), replace_out_interface(spec)));
            }
        }
    }
    tables.retain(|(_, _, rules)| !rules.is_empty());
    tables.sort_by(|a, b| a.0.cmp(&b.0));
    let mut out = String::new();
    for (name, mut chains, rules) in tables {
        chains.sort();
        out.push_str(&format!("*{name}\n"));
        for chain in chains {
            out.push_str(&format!(":{chain}\n"));
        }
        let mut names: Vec<&String> = rules.iter().map(|(c, _)| c).collect();
        names.sort();
        names.dedup();
        for chain in names {
            for (_, spec) in rules.iter().filter(|(c, _)| c == chain) {
                out.push_str(&format!("-A {chain} {spec}\n"));
            }
        }
    }
    out
}
