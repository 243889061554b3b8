//! Hostile and bad input: flags, environment variables, config files and
//! `direct.xml` files built to break things. Each must give one clear error line (ours,
//! `tproxy-firewalld: error: …`, or clap's `error: …`), the documented exit status (2 for bad
//! input, 1 for a direct.xml the tool refuses to touch), never a panic, never a hang, and
//! change nothing: the kernel tables (`iptables-save`, `ip6tables-save`) and every file of
//! the sandbox — direct.xml's bytes, the directory listing, symbolic links and their
//! targets — read the same before and after.
//!
//! `install` and `uninstall` run inside the harness's namespaces with firewalld stopped
//! (absent from the sandbox's bus), so `--store-firewalld` edits the sandbox's
//! `/etc/firewalld/direct.xml` (the sandbox's own directory, mounted over it); `inspect
//! --file` and `translate --merge` only read, and run on the host against files in a
//! temporary directory.
//!
//! Also here: planted symbolic links next to direct.xml (where the atomic writer puts its
//! temporary file and `direct.xml.old`) are never followed, and no shell is ever started
//! (a fake `sh`/`bash` first in `PATH` and bind-mounted over the real ones inside the
//! sandbox records any call; it never fires).

mod common;

use std::ffi::OsString;
use std::io::Write as _;
use std::os::unix::ffi::{OsStrExt as _, OsStringExt as _};
use std::os::unix::fs::{symlink, MetadataExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::run::{output_of, shown, tproxy_in, tproxy_on_host};
use common::world::{assert_same_world, tree, world};
use common::{Sandbox, BIN};

const BIG: usize = 50 * 1024 * 1024;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("xml-fixtures")
        .join(name)
}

// ---------------------------------------------------------------------------------------
// Running and judging

fn os(args: &[&str]) -> Vec<OsString> {
    args.iter().map(OsString::from).collect()
}

/// Checks a refused run: the exit status, no panic, and exactly one error line that names
/// each of `names` (clap's errors are followed by a usage hint; ours may follow notices).
/// Returns the error line.
fn assert_refused(what: &str, output: &Output, code: i32, names: &[&str]) -> String {
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !stderr.contains("panicked") && !stderr.contains("RUST_BACKTRACE"),
        "{what}: panicked:\n{stderr}"
    );
    assert_ne!(
        output.status.code(),
        Some(101),
        "{what}: panicked:\n{stderr}"
    );
    assert_eq!(
        output.status.code(),
        Some(code),
        "{what}: exit status\n{stderr}"
    );
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(!lines.is_empty(), "{what}: no error message");
    let is_error = |l: &str| l.starts_with("error:") || l.starts_with("tproxy-firewalld: error:");
    let error = if lines[0].starts_with("error:") {
        // clap: its error line first, then usage and tips.
        lines[0]
    } else {
        for line in &lines {
            assert!(
                line.starts_with("tproxy-firewalld: "),
                "{what}: a line that is neither a notice nor the error (a message broken \
                 over lines?): {line:?}\n{stderr}"
            );
        }
        let last = lines[lines.len() - 1];
        assert!(
            last.starts_with("tproxy-firewalld: error: "),
            "{what}: the error must be the last line\n{stderr}"
        );
        last
    };
    assert_eq!(
        lines.iter().filter(|l| is_error(l)).count(),
        1,
        "{what}: exactly one error line\n{stderr}"
    );
    for name in names {
        assert!(
            error.contains(name),
            "{what}: the error line should name {name:?}: {error}"
        );
    }
    error.to_string()
}

fn assert_succeeded(what: &str, output: &Output) {
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!stderr.contains("panicked"), "{what}: panicked:\n{stderr}");
    assert!(output.status.success(), "{what}: failed:\n{stderr}");
}

// ---------------------------------------------------------------------------------------
// What "nothing changed" compares

// ---------------------------------------------------------------------------------------
// The sandbox with our rules installed

/// `--firewalld-config-dir` when the host has no /etc/firewalld for the sandbox to mount
/// over; with one, the default (the sandbox's directory, mounted over it) is used.
fn config_dir_flag(sandbox: &Sandbox) -> Vec<String> {
    if Path::new("/etc/firewalld").is_dir() {
        Vec::new()
    } else {
        vec![
            "--firewalld-config-dir".into(),
            sandbox.firewalld_dir().display().to_string(),
        ]
    }
}

/// The flags of the installed state: firewalld stopped, so direct.xml and iptables.
fn install_args(sandbox: &Sandbox, extra: &[&str]) -> Vec<OsString> {
    let mut args = os(&[
        "install",
        "--store-firewalld",
        "--kuma-dp-user",
        "kuma-dp",
        "--exclude-inbound-ports",
        "22",
    ]);
    args.extend(config_dir_flag(sandbox).into_iter().map(OsString::from));
    args.extend(extra.iter().map(OsString::from));
    args
}

/// A sandbox holding a foreign direct.xml plus our entries in it and our rules in the
/// kernel, so that "nothing changed" means something.
fn installed(test: &str) -> Option<Sandbox> {
    let sandbox = common::sandbox(test)?;
    let direct_xml = sandbox.firewalld_dir().join("direct.xml");
    std::fs::copy(fixture("foreign-mixed.xml"), &direct_xml).unwrap();
    let output = tproxy_in(&sandbox, &install_args(&sandbox, &[]), &[], None);
    assert_succeeded("the installed state", &output);
    let text = std::fs::read_to_string(&direct_xml).unwrap();
    assert!(
        text.contains("KUMA_MESH_INBOUND"),
        "install did not write the sandbox's direct.xml:\n{text}"
    );
    assert!(sandbox.save("iptables-save").contains("KUMA_MESH_INBOUND"));
    Some(sandbox)
}

// ---------------------------------------------------------------------------------------
// Flags and the environment

#[test]
fn bad_flags_are_refused_in_one_line_and_change_nothing() {
    let Some(sandbox) = installed("bad_flags_are_refused_in_one_line_and_change_nothing") else {
        return;
    };
    let long_name = "u".repeat(100_000);
    let long_iface = format!("{}:10.0.0.0/8", "i".repeat(1000));
    // (flags, the names the error line must contain)
    let cases: Vec<(Vec<&str>, &[&str])> = vec![
        (
            vec!["--redirect-inbound-port", "99999999999999999999"],
            &["--redirect-inbound-port"],
        ),
        (
            vec!["--redirect-inbound-port", "18446744073709551616"],
            &["--redirect-inbound-port"],
        ),
        (
            vec!["--redirect-inbound-port=-1"],
            &["--redirect-inbound-port", "-1"],
        ),
        (vec!["--redirect-inbound-port", "-1"], &["'-1'"]),
        (
            vec!["--redirect-outbound-port", "65536"],
            &["--redirect-outbound-port"],
        ),
        (
            vec!["--redirect-outbound-port", "0x50"],
            &["--redirect-outbound-port"],
        ),
        (vec!["--redirect-dns-port", ""], &["--redirect-dns-port"]),
        (
            vec!["--exclude-inbound-ports", "1-99999999999999999999"],
            &["--exclude-inbound-ports"],
        ),
        (
            vec!["--exclude-inbound-ports", "65535-65536"],
            &["--exclude-inbound-ports"],
        ),
        (
            vec!["--exclude-outbound-ports=-5"],
            &["--exclude-outbound-ports"],
        ),
        (
            vec!["--exclude-outbound-ports-for-uids", "1:4294967296"],
            &["--exclude-outbound-ports-for-uids", "4294967296"],
        ),
        (
            vec!["--exclude-outbound-ports-for-uids", "tcp:1:-1"],
            &["--exclude-outbound-ports-for-uids"],
        ),
        (
            vec!["--exclude-outbound-ports-for-uids", "udp:1-99999999999:5"],
            &["--exclude-outbound-ports-for-uids"],
        ),
        (
            vec!["--exclude-outbound-ports-for-uids", ""],
            &["--exclude-outbound-ports-for-uids"],
        ),
        (
            vec!["--exclude-inbound-ips", "10.0.0.1/4294967296"],
            &["--exclude-inbound-ips"],
        ),
        (
            vec!["--exclude-outbound-ips", "::ffff:1.2.3.4/129"],
            &["--exclude-outbound-ips"],
        ),
        (
            vec!["--exclude-outbound-ips", ""],
            &["--exclude-outbound-ips"],
        ),
        (
            vec!["--exclude-outbound-ips", "10.0.0.1;reboot"],
            &["--exclude-outbound-ips"],
        ),
        (vec!["--vnet", ""], &["--vnet"]),
        (
            vec!["--vnet", "eth0:10.0.0.0/99999999999999999999"],
            &["--vnet"],
        ),
        (vec!["--vnet", &long_iface], &["--vnet"]),
        (vec!["--vnet", "eth0 -j ACCEPT:10.0.0.0/8"], &["--vnet"]),
        (vec!["--wait", "4294967296"], &["--wait"]),
        (vec!["--wait=-1"], &["--wait"]),
        (
            vec!["--wait-interval", "99999999999999999999"],
            &["--wait-interval"],
        ),
        (
            vec!["--max-retries", "18446744073709551616"],
            &["--max-retries"],
        ),
        (
            vec!["--sleep-between-retries", "99999999999999999999999h"],
            &["--sleep-between-retries"],
        ),
        (
            vec!["--sleep-between-retries", "18446744073709551615s"],
            &["--sleep-between-retries"],
        ),
        (
            vec!["--sleep-between-retries", ""],
            &["--sleep-between-retries"],
        ),
        (vec!["--backend", ""], &["--backend"]),
        (vec!["--redirect-dns=maybe"], &["--redirect-dns"]),
        (
            vec!["--firewalld-config-dir", ""],
            &["--firewalld-config-dir"],
        ),
        (
            vec!["--iptables-executables", "iptables:"],
            &["--iptables-executables"],
        ),
        (
            vec![
                "--iptables-executables",
                "iptables:/bin/sh -c 'touch /tmp/owned'",
            ],
            &["iptablesExecutables"],
        ),
        (
            vec!["--kuma-dp-user", "4294967296"],
            &["--kuma-dp-user", "4294967296"],
        ),
        (vec!["--kuma-dp-user=-1"], &["--kuma-dp-user", "-1"]),
        (
            vec!["--kuma-dp-user", "root;reboot"],
            &["--kuma-dp-user", "root;reboot"],
        ),
        (vec!["--kuma-dp-user", &long_name], &["--kuma-dp-user"]),
        // A newline in a value must not forge a second line.
        (
            vec!["--kuma-dp-user", "x\ntproxy-firewalld: installed"],
            &["--kuma-dp-user", "x\\ntproxy-firewalld: installed"],
        ),
        (
            vec!["--config", "/nonexistent/a\nb.yaml"],
            &["/nonexistent/a\\nb.yaml"],
        ),
        (
            vec!["transparent-proxy-please"],
            &["transparent-proxy-please"],
        ),
    ];
    let before = world(&sandbox);
    for (flags, names) in &cases {
        let mut args = os(&["install", "--store-firewalld"]);
        args.extend(config_dir_flag(&sandbox).into_iter().map(OsString::from));
        if !flags.iter().any(|f| f.starts_with("--kuma-dp-user")) {
            args.extend(os(&["--kuma-dp-user", "kuma-dp"]));
        }
        args.extend(flags.iter().map(OsString::from));
        let what = shown(&args);
        let output = tproxy_in(&sandbox, &args, &[], None);
        assert_refused(&what, &output, 2, names);
        assert_same_world(&what, &before, &world(&sandbox));
    }

    // Arguments that are not UTF-8 (a NUL cannot be in argv at all).
    let bytes = |b: &[u8]| OsString::from_vec(b.to_vec());
    let invalid: Vec<(Vec<OsString>, &str)> = vec![
        (
            vec!["--kuma-dp-user".into(), bytes(b"\xff\xfe")],
            "invalid UTF-8",
        ),
        (
            vec!["--exclude-inbound-ports".into(), bytes(b"22\xff")],
            "invalid UTF-8",
        ),
        (
            vec!["--config".into(), bytes(b"/tmp/\xff.yaml")],
            "invalid UTF-8",
        ),
        (vec![bytes(b"--\xff")], "unexpected argument"),
    ];
    for (flags, name) in invalid {
        let mut args = os(&["install", "--store-firewalld"]);
        args.extend(config_dir_flag(&sandbox).into_iter().map(OsString::from));
        if flags[0] != "--kuma-dp-user" {
            args.extend(os(&["--kuma-dp-user", "kuma-dp"]));
        }
        args.extend(flags);
        let what = shown(&args);
        let output = tproxy_in(&sandbox, &args, &[], None);
        assert_refused(&what, &output, 2, &[name]);
        assert_same_world(&what, &before, &world(&sandbox));
    }
    for args in [
        vec![bytes(b"\xff")],
        vec!["uninstall".into(), "--backend".into(), "nope".into()],
        vec![
            "uninstall".into(),
            "--iptables-executables".into(),
            bytes(b"\xff"),
        ],
        vec!["uninstall".into(), "--firewalld-config-dir".into()],
    ] {
        let what = shown(&args);
        let output = tproxy_in(&sandbox, &args, &[], None);
        assert_refused(&what, &output, 2, &[]);
        assert_same_world(&what, &before, &world(&sandbox));
    }
}

#[test]
fn bad_environment_is_refused_in_one_line_and_change_nothing() {
    let Some(sandbox) = installed("bad_environment_is_refused_in_one_line_and_change_nothing")
    else {
        return;
    };
    let before = world(&sandbox);
    let var = |name: &str| OsString::from(format!("KUMA_TRANSPARENT_PROXY_{name}"));
    let bytes = |b: &[u8]| OsString::from_vec(b.to_vec());
    let cases: Vec<(OsString, OsString, &str)> = vec![
        (
            var("REDIRECT_INBOUND_PORT"),
            "99999999999999999999".into(),
            "KUMA_TRANSPARENT_PROXY_REDIRECT_INBOUND_PORT",
        ),
        (
            var("REDIRECT_INBOUND_PORT"),
            "-1".into(),
            "KUMA_TRANSPARENT_PROXY_REDIRECT_INBOUND_PORT",
        ),
        (var("WAIT"), "-1".into(), "KUMA_TRANSPARENT_PROXY_WAIT"),
        (
            var("WAIT"),
            "99999999999999999999999".into(),
            "KUMA_TRANSPARENT_PROXY_WAIT",
        ),
        (
            var("RETRY_MAX_RETRIES"),
            "18446744073709551616".into(),
            "KUMA_TRANSPARENT_PROXY_RETRY_MAX_RETRIES",
        ),
        (
            var("REDIRECT_DNS_ENABLED"),
            "maybe".into(),
            "KUMA_TRANSPARENT_PROXY_REDIRECT_DNS_ENABLED",
        ),
        // Values checked once all layers are merged are named by key, not by variable.
        (
            var("REDIRECT_VNET_NETWORKS"),
            "x".into(),
            "redirect.vnet.networks",
        ),
        (
            var("REDIRECT_OUTBOUND_EXCLUDE_PORTS_FOR_UIDS"),
            "1:4294967296".into(),
            "redirect.outbound.excludePortsForUIDs",
        ),
        // Not UTF-8: std::env::vars() would panic on these.
        (
            var("KUMA_DP_USER"),
            bytes(b"kuma\xff"),
            "KUMA_TRANSPARENT_PROXY_KUMA_DP_USER",
        ),
        (
            bytes(b"KUMA_TRANSPARENT_PROXY_\xff"),
            "1".into(),
            "KUMA_TRANSPARENT_PROXY_",
        ),
    ];
    let args = install_args(&sandbox, &["--exclude-inbound-ports", "2222"]);
    for (name, value, names) in cases {
        let what = format!("{} with {name:?}={value:?}", shown(&args));
        let output = tproxy_in(&sandbox, &args, &[(name, value)], None);
        assert_refused(&what, &output, 2, &[names]);
        assert_same_world(&what, &before, &world(&sandbox));
    }

    // A variable that is not ours may hold anything: it is ignored, not a crash.
    let args = install_args(&sandbox, &[]);
    for (name, value) in [
        (OsString::from("UNRELATED"), bytes(b"\xff\xfe")),
        (bytes(b"UNRELATED_\xff"), OsString::from("1")),
    ] {
        let what = format!("{} with {name:?}={value:?}", shown(&args));
        let output = tproxy_in(&sandbox, &args, &[(name, value)], None);
        assert_succeeded(&what, &output);
        assert_same_world(&what, &before, &world(&sandbox));
    }
}

// ---------------------------------------------------------------------------------------
// Config files

#[test]
fn bad_config_files_are_refused_in_one_line_and_change_nothing() {
    let Some(sandbox) = installed("bad_config_files_are_refused_in_one_line_and_change_nothing")
    else {
        return;
    };
    let dir = sandbox.path("configs");
    std::fs::create_dir(&dir).unwrap();

    let mut alias_bomb = String::from("a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n");
    for (name, previous) in "bcdefghi".chars().zip("abcdefgh".chars()) {
        let refs = vec![format!("*{previous}"); 9].join(", ");
        alias_bomb.push_str(&format!("{name}: &{name} [{refs}]\n"));
    }
    let block_nesting: String = (0..1000)
        .map(|depth| format!("{}redirect:\n", " ".repeat(depth)))
        .collect();
    // (file name, contents, the names the error line must contain besides the path)
    let cases: Vec<(&str, Vec<u8>, &[&str])> = vec![
        (
            "wrong-type.yaml",
            b"redirect:\n  inbound:\n    port: abc\n".to_vec(),
            &["redirect.inbound.port"],
        ),
        (
            "scalar-section.yaml",
            b"redirect: 5\n".to_vec(),
            &["redirect"],
        ),
        ("list-document.yaml", b"[1, 2]\n".to_vec(), &["mapping"]),
        ("number-document.json", b"42".to_vec(), &["mapping"]),
        (
            "user-list.yaml",
            b"kumaDPUser: [kuma-dp]\n".to_vec(),
            &["kumaDPUser"],
        ),
        (
            "ports-map.yaml",
            b"redirect: {inbound: {excludePorts: {a: 1}}}\n".to_vec(),
            &["excludePorts"],
        ),
        (
            "bool-port.yaml",
            b"redirect: {dns: {port: true}}\n".to_vec(),
            &["redirect.dns.port"],
        ),
        (
            "binary-tag.yaml",
            b"wait: !!binary aGVsbG8=\n".to_vec(),
            &["wait"],
        ),
        ("custom-tag.yaml", b"wait: !custom 5\n".to_vec(), &["wait"]),
        (
            "huge-port.yaml",
            b"redirect:\n  inbound:\n    port: 99999999999999999999999999999\n".to_vec(),
            &["redirect.inbound.port"],
        ),
        (
            "float-port.yaml",
            b"redirect: {dns: {port: 1e309}}\n".to_vec(),
            &["redirect.dns.port"],
        ),
        (
            "inf-port.yaml",
            b"redirect: {dns: {port: .inf}}\n".to_vec(),
            &["redirect.dns.port"],
        ),
        (
            "negative-port.yaml",
            b"redirect: {dns: {port: -1}}\n".to_vec(),
            &["redirect.dns.port"],
        ),
        (
            "string-port.json",
            br#"{"redirect": {"inbound": {"port": "99999"}}}"#.to_vec(),
            &["redirect.inbound.port"],
        ),
        ("huge-wait.yaml", b"wait: 4294967296\n".to_vec(), &["wait"]),
        (
            "huge-retries.yaml",
            b"retry: {maxRetries: 18446744073709551616}\n".to_vec(),
            &["retry.maxRetries"],
        ),
        (
            "huge-list-port.yaml",
            b"redirect: {inbound: {excludePorts: [1, 99999999999999999999]}}\n".to_vec(),
            &["excludePorts"],
        ),
        (
            "huge-uid.yaml",
            b"redirect: {outbound: {excludePortsForUIDs: ['1:4294967296']}}\n".to_vec(),
            &["redirect.outbound.excludePortsForUIDs", "4294967296"],
        ),
        (
            "huge-duration.yaml",
            b"retry: {sleepBetweenRetries: 99999999999999999999h}\n".to_vec(),
            &["retry.sleepBetweenRetries", "99999999999999999999h"],
        ),
        ("unknown-key.yaml", b"nope: 1\n".to_vec(), &["nope"]),
        (
            "unknown-nested-key.yaml",
            b"redirect: {dns: {nope: true}}\n".to_vec(),
            &["nope"],
        ),
        (
            "wrong-case-key.yaml",
            b"Redirect: {}\n".to_vec(),
            &["Redirect"],
        ),
        (
            "merge-key.yaml",
            b"base: &b {wait: 1}\n<<: *b\n".to_vec(),
            &["config "],
        ),
        (
            "complex-key.yaml",
            b"? [a, b]\n: 1\n".to_vec(),
            &["config "],
        ),
        (
            "two-documents.yaml",
            b"---\nwait: 1\n---\nwait: 2\n".to_vec(),
            &["document"],
        ),
        (
            "tab-indent.yaml",
            b"redirect:\n\tinbound: {}\n".to_vec(),
            &["config "],
        ),
        ("nul.yaml", b"kumaDPUser: a\0b\n".to_vec(), &["config "]),
        ("latin1.yaml", b"kumaDPUser: caf\xe9\n".to_vec(), &["UTF-8"]),
        ("utf16.yaml", b"\xff\xfek\0u\0m\0a\0".to_vec(), &["UTF-8"]),
        (
            "deep-flow.yaml",
            format!("{}{}", "[".repeat(10_000), "]".repeat(10_000)).into_bytes(),
            &["recursion limit"],
        ),
        (
            "deep-json.json",
            format!("{}1{}", "{\"a\":".repeat(10_000), "}".repeat(10_000)).into_bytes(),
            &["recursion limit"],
        ),
        (
            "deep-keys.yaml",
            format!(
                "redirect: {}{{}}{}",
                "{inbound: ".repeat(10_000),
                "}".repeat(10_000)
            )
            .into_bytes(),
            &["recursion limit"],
        ),
        ("deep-block.yaml", block_nesting.into_bytes(), &["config "]),
        ("alias-bomb.yaml", alias_bomb.into_bytes(), &["config "]),
        (
            "newline-value.yaml",
            b"kumaDPUser: \"x\\ntproxy-firewalld: installed\"\n".to_vec(),
            &["x\\ntproxy-firewalld: installed"],
        ),
    ];
    let mut written = Vec::new();
    for (name, contents, names) in &cases {
        let path = dir.join(name);
        std::fs::write(&path, contents).unwrap();
        written.push((path, *names));
    }
    let big = dir.join("big.yaml");
    let mut file = std::fs::File::create(&big).unwrap();
    file.write_all(b"# ").unwrap();
    file.write_all(&vec![b'x'; BIG]).unwrap();
    file.write_all(b"\nwait: 1\n").unwrap();
    drop(file);
    let good = dir.join("good.yaml");
    std::fs::write(&good, "wait: 5\n").unwrap();
    let before = world(&sandbox);
    written.push((big.clone(), &["larger than"]));
    written.push((dir.clone(), &["cannot read"]));
    // World-writable: refused before a byte is read (tests/bad_input.rs has the other cases).
    written.push((PathBuf::from("/dev/zero"), &["world-writable"]));
    written.push((PathBuf::from("/nonexistent/tproxy.yaml"), &["cannot read"]));

    for (path, names) in &written {
        let shown_path = path.display().to_string();
        // The newline case is read as the kuma-dp user: flags would override it.
        let mut args = os(&["install", "--store-firewalld"]);
        args.extend(config_dir_flag(&sandbox).into_iter().map(OsString::from));
        if !shown_path.ends_with("newline-value.yaml") {
            args.extend(os(&["--kuma-dp-user", "kuma-dp"]));
        }
        args.extend(["--config".into(), path.clone().into_os_string()]);
        let what = shown(&args);
        let output = tproxy_in(&sandbox, &args, &[], None);
        let line = assert_refused(&what, &output, 2, names);
        // Values checked once all layers are merged are named by key and value only.
        let named_by_key = ["newline-value.yaml", "huge-uid.yaml", "huge-duration.yaml"];
        if !named_by_key.iter().any(|n| shown_path.ends_with(n)) {
            assert!(line.contains(&shown_path), "{what}: names the file: {line}");
        }
        assert_same_world(&what, &before, &world(&sandbox));
    }

    // The same through stdin: 50 MB, and a good file followed by a missing one.
    let args: Vec<OsString> = install_args(&sandbox, &["--config", "-"]);
    let output = tproxy_in(&sandbox, &args, &[], Some(vec![b'#'; BIG]));
    assert_refused("50 MB on stdin", &output, 2, &["config -", "larger than"]);
    assert_same_world("50 MB on stdin", &before, &world(&sandbox));
    let list = format!("{},/nonexistent/second.yaml", good.display());
    let output = tproxy_in(
        &sandbox,
        &install_args(&sandbox, &["--config", &list]),
        &[],
        None,
    );
    assert_refused("a comma list", &output, 2, &["/nonexistent/second.yaml"]);
    assert_same_world("a comma list", &before, &world(&sandbox));
}

// ---------------------------------------------------------------------------------------
// direct.xml

/// A hostile direct.xml: its bytes (or how to make the path hostile) and what the error
/// must say.
struct XmlCase {
    name: String,
    setup: Setup,
    /// Part of the error message of install, uninstall and `translate --merge`.
    error: &'static str,
    /// Part of `inspect --file`'s report (None: inspect reads it fine or fails to read).
    inspect: Inspect,
}

enum Setup {
    Bytes(Vec<u8>),
    /// A symbolic link to a file with these bytes, outside the directory.
    LinkTo(Vec<u8>),
    /// A symbolic link to nothing.
    DanglingLink,
    Directory,
    Fifo,
}

enum Inspect {
    /// Exit 1, the report on stdout names the problem.
    Problem(&'static str),
    /// This exit status, one error line on stderr.
    Error(i32, &'static str),
    /// Read like firewalld reads it (a link is followed): exit 0.
    Valid,
}

fn xml_cases() -> Vec<XmlCase> {
    let read = |name: &str| std::fs::read(fixture(name)).unwrap();
    let case = |name: &str, error: &'static str, inspect: Inspect| XmlCase {
        name: name.to_string(),
        setup: Setup::Bytes(read(name)),
        error,
        inspect,
    };
    let generated = |name: &str, bytes: Vec<u8>, error: &'static str, inspect: Inspect| XmlCase {
        name: name.to_string(),
        setup: Setup::Bytes(bytes),
        error,
        inspect,
    };
    let head = "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<direct>\n";
    let mut big = Vec::with_capacity(BIG + 100);
    big.extend_from_slice(head.as_bytes());
    big.extend_from_slice(b"<!-- ");
    big.resize(big.len() + BIG, b'x');
    big.extend_from_slice(b" -->\n</direct>\n");
    let deep = format!(
        "{head}  <rule ipv=\"ipv4\" table=\"filter\" chain=\"INPUT\" priority=\"0\">{}{}</rule>\n</direct>\n",
        "<a>".repeat(10_000),
        "</a>".repeat(10_000)
    );
    let deep_root = format!(
        "{head}{}{}</direct>\n",
        "<x>".repeat(10_000),
        "</x>".repeat(10_000)
    );
    let priority = |p: &str| {
        format!("{head}  <rule ipv=\"ipv4\" table=\"filter\" chain=\"INPUT\" priority=\"{p}\">-j ACCEPT</rule>\n</direct>\n")
            .into_bytes()
    };
    let long_attribute = format!(
        "{head}  <chain ipv=\"ipv4\" table=\"{}\" chain=\"X\"/>\n</direct>\n",
        "n".repeat(1 << 20)
    );
    vec![
        case(
            "malformed-truncated.xml",
            "is not closed",
            Inspect::Problem("is not closed"),
        ),
        case(
            "malformed-wrong-root.xml",
            "root element must be <direct>",
            Inspect::Problem("root element must be <direct>"),
        ),
        case(
            "malformed-doctype.xml",
            "DOCTYPE",
            Inspect::Problem("DOCTYPE"),
        ),
        case(
            "hostile/external-entity.xml",
            "DOCTYPE",
            Inspect::Problem("DOCTYPE"),
        ),
        case(
            "hostile/billion-laughs.xml",
            "DOCTYPE",
            Inspect::Problem("DOCTYPE"),
        ),
        case(
            "hostile/parameter-entity.xml",
            "DOCTYPE",
            Inspect::Problem("DOCTYPE"),
        ),
        case(
            "hostile/xinclude.xml",
            "unexpected attribute xmlns:xi",
            Inspect::Problem("unexpected attribute xmlns:xi"),
        ),
        case(
            "hostile/undefined-entity.xml",
            "undefined entity &nbsp;",
            Inspect::Problem("undefined entity &nbsp;"),
        ),
        case(
            "hostile/control-character-reference.xml",
            "&#1; is not a valid character reference",
            Inspect::Problem("&#1; is not a valid character reference"),
        ),
        case(
            "hostile/newline-in-attribute.xml",
            "invalid ipv 'ipv4\\ntproxy-firewalld: installed'",
            Inspect::Problem("invalid ipv 'ipv4"),
        ),
        case(
            "hostile/truncated-in-tag.xml",
            "not well-formed XML",
            Inspect::Problem("not well-formed XML"),
        ),
        case("hostile/nul-byte.xml", "U+0000", Inspect::Problem("U+0000")),
        case(
            "hostile/latin1.xml",
            "not valid UTF-8",
            Inspect::Problem("not valid UTF-8"),
        ),
        case(
            "hostile/utf16.xml",
            "not valid UTF-8",
            Inspect::Problem("not valid UTF-8"),
        ),
        generated(
            "50 MB",
            big,
            "larger than 16 MiB",
            Inspect::Error(1, "larger than 16 MiB"),
        ),
        generated(
            "10000 nested elements in a rule",
            deep.into_bytes(),
            "not allowed inside <rule>",
            Inspect::Problem("not allowed inside <rule>"),
        ),
        generated(
            "10000 nested unknown elements",
            deep_root.into_bytes(),
            "unexpected element <x>",
            Inspect::Problem("unexpected element <x>"),
        ),
        generated(
            "priority beyond i32",
            priority("99999999999999999999"),
            "invalid priority",
            Inspect::Problem("invalid priority"),
        ),
        generated(
            "priority below i32",
            priority("-2147483649"),
            "invalid priority",
            Inspect::Problem("invalid priority"),
        ),
        generated(
            "a 1 MiB attribute",
            long_attribute.into_bytes(),
            "invalid table",
            Inspect::Problem("invalid table"),
        ),
        generated(
            "empty",
            Vec::new(),
            "no <direct> element",
            Inspect::Problem("no <direct> element"),
        ),
        XmlCase {
            name: "a symbolic link to a valid file".into(),
            setup: Setup::LinkTo(read("foreign-live.xml")),
            error: "symbolic link",
            inspect: Inspect::Valid,
        },
        XmlCase {
            name: "a dangling symbolic link".into(),
            setup: Setup::DanglingLink,
            error: "symbolic link",
            // Followed like firewalld follows it, to nothing.
            inspect: Inspect::Error(2, "no such file"),
        },
        XmlCase {
            name: "a directory".into(),
            setup: Setup::Directory,
            error: "not a regular file",
            inspect: Inspect::Error(1, "not a regular file"),
        },
        XmlCase {
            name: "a FIFO".into(),
            setup: Setup::Fifo,
            error: "not a regular file",
            inspect: Inspect::Error(1, "not a regular file"),
        },
    ]
}

/// Makes `path` what `setup` says; `outside` is a directory for link targets.
fn plant(path: &Path, setup: &Setup, outside: &Path) {
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.is_dir() => std::fs::remove_dir_all(path).unwrap(),
        Ok(_) => std::fs::remove_file(path).unwrap(),
        Err(_) => {}
    }
    match setup {
        Setup::Bytes(bytes) => std::fs::write(path, bytes).unwrap(),
        Setup::LinkTo(bytes) => {
            let target = outside.join("link-target.xml");
            std::fs::write(&target, bytes).unwrap();
            symlink(&target, path).unwrap();
        }
        Setup::DanglingLink => symlink(outside.join("nothing-here.xml"), path).unwrap(),
        Setup::Directory => {
            std::fs::create_dir(path).unwrap();
            std::fs::write(path.join("inside"), "x").unwrap();
        }
        Setup::Fifo => {
            let name = std::ffi::CString::new(path.as_os_str().as_bytes()).unwrap();
            assert_eq!(unsafe { libc::mkfifo(name.as_ptr(), 0o644) }, 0, "mkfifo");
        }
    }
}

#[test]
fn hostile_direct_xml_is_refused_by_install_and_uninstall_and_never_touched() {
    let Some(sandbox) =
        installed("hostile_direct_xml_is_refused_by_install_and_uninstall_and_never_touched")
    else {
        return;
    };
    let direct_xml = sandbox.firewalld_dir().join("direct.xml");
    let outside = sandbox.path("outside");
    std::fs::create_dir(&outside).unwrap();
    let shown_path = if config_dir_flag(&sandbox).is_empty() {
        "/etc/firewalld/direct.xml".to_string()
    } else {
        direct_xml.display().to_string()
    };
    let mut uninstall = os(&["uninstall"]);
    uninstall.extend(config_dir_flag(&sandbox).into_iter().map(OsString::from));
    for case in xml_cases() {
        plant(&direct_xml, &case.setup, &outside);
        let before = world(&sandbox);
        for args in [
            // Other flags than installed, so that a run that went on would change things.
            install_args(&sandbox, &["--exclude-inbound-ports", "2222"]),
            uninstall.clone(),
        ] {
            let what = format!("{}: {}", case.name, shown(&args));
            let output = tproxy_in(&sandbox, &args, &[], None);
            assert_refused(&what, &output, 1, &[&shown_path, case.error]);
            assert_same_world(&what, &before, &world(&sandbox));
        }
    }
}

#[test]
fn hostile_direct_xml_is_refused_by_inspect_and_translate_merge() {
    let dir = tempfile::tempdir().unwrap();
    let direct_xml = dir.path().join("direct.xml");
    let outside = tempfile::tempdir().unwrap();
    let rules = outside.path().join("rules.txt");
    std::fs::write(
        &rules,
        "*nat\n-N KUMA_MESH_OUTBOUND\n-A OUTPUT -p tcp -j KUMA_MESH_OUTBOUND\nCOMMIT\n",
    )
    .unwrap();
    let cases = xml_cases();
    // Every file in xml-fixtures/hostile/ is one of the cases.
    for entry in std::fs::read_dir(fixture("hostile")).unwrap() {
        let name = format!("hostile/{}", entry.unwrap().file_name().to_string_lossy());
        assert!(
            cases.iter().any(|c| c.name == name),
            "{name} is not used by a case"
        );
    }
    for case in cases {
        plant(&direct_xml, &case.setup, outside.path());
        let before = (tree(dir.path()), tree(outside.path()));
        let path = direct_xml.clone().into_os_string();

        let args = vec![
            "translate".into(),
            "--merge".into(),
            path.clone(),
            rules.clone().into(),
        ];
        let what = format!("{}: {}", case.name, shown(&args));
        let output = tproxy_on_host(&args);
        assert_refused(
            &what,
            &output,
            2,
            &[&direct_xml.display().to_string(), case.error],
        );
        assert_eq!((tree(dir.path()), tree(outside.path())), before, "{what}");

        let args = vec!["inspect".into(), "--file".into(), path];
        let what = format!("{}: {}", case.name, shown(&args));
        let output = tproxy_on_host(&args);
        match case.inspect {
            Inspect::Valid => assert_succeeded(&what, &output),
            Inspect::Error(code, message) => {
                assert_refused(&what, &output, code, &[message]);
            }
            Inspect::Problem(message) => {
                let stderr = String::from_utf8_lossy(&output.stderr);
                assert!(!stderr.contains("panicked"), "{what}: {stderr}");
                assert_eq!(output.status.code(), Some(1), "{what}: {stderr}");
                assert!(
                    stderr.trim().is_empty(),
                    "{what}: the report is the output: {stderr}"
                );
                let report = String::from_utf8_lossy(&output.stdout);
                assert!(report.contains(message), "{what}: {report}");
                assert!(report.contains("problems:"), "{what}: {report}");
            }
        }
        assert_eq!((tree(dir.path()), tree(outside.path())), before, "{what}");
    }
}

#[test]
fn translate_refuses_endless_huge_and_binary_input() {
    let dir = tempfile::tempdir().unwrap();
    let big = dir.path().join("big.txt");
    let mut file = std::fs::File::create(&big).unwrap();
    file.write_all(b"*nat\n").unwrap();
    for _ in 0..(BIG / 32) {
        file.write_all(b"-A OUTPUT -p tcp -j RETURN     \n")
            .unwrap();
    }
    file.write_all(b"COMMIT\n").unwrap();
    drop(file);
    let nul = dir.path().join("nul.txt");
    std::fs::write(
        &nul,
        b"*nat\n-A OUTPUT -m comment --comment a\0b -j RETURN\nCOMMIT\n",
    )
    .unwrap();
    let escape = dir.path().join("escape.txt");
    std::fs::write(
        &escape,
        b"*nat\n-N KUMA\x1b[2J\n-A OUTPUT -j RETURN\nCOMMIT\n",
    )
    .unwrap();
    let latin1 = dir.path().join("latin1.txt");
    std::fs::write(
        &latin1,
        b"*nat\n-A OUTPUT -m comment --comment caf\xe9 -j RETURN\nCOMMIT\n",
    )
    .unwrap();
    let before = tree(dir.path());
    // Control characters would make a direct.xml nobody can read back.
    for (input, code, names) in [
        (
            PathBuf::from("/dev/zero"),
            2,
            &["/dev/zero", "larger than"][..],
        ),
        (big.clone(), 2, &["larger than"]),
        (nul.clone(), 2, &["nul.txt:2:", "U+0000"]),
        (escape.clone(), 2, &["escape.txt:2:", "U+001B"]),
        (latin1.clone(), 2, &["latin1.txt", "not UTF-8"]),
        (dir.path().to_path_buf(), 1, &["Is a directory"]),
    ] {
        let args = vec!["translate".into(), input.into_os_string()];
        let what = shown(&args);
        let output = tproxy_on_host(&args);
        assert_refused(&what, &output, code, names);
    }
    let mut command = Command::new(BIN);
    command.arg("translate");
    let output = output_of(command, Some(vec![b'#'; BIG]), "translate from stdin");
    assert_refused("50 MB on stdin", &output, 2, &["stdin", "larger than"]);
    assert_eq!(tree(dir.path()), before);
}

// ---------------------------------------------------------------------------------------
// Planted links

/// Six letters or digits, like `tempfile`'s random names, from a fixed sequence.
fn names(count: usize) -> Vec<String> {
    const CHARS: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    let mut state: u64 = 0x2545_f491_4f6c_dd1d;
    (0..count)
        .map(|_| {
            (0..6)
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    CHARS[(state % CHARS.len() as u64) as usize] as char
                })
                .collect()
        })
        .collect()
}

#[test]
fn planted_symlinks_next_to_direct_xml_are_never_followed() {
    const TEST: &str = "planted_symlinks_next_to_direct_xml_are_never_followed";
    let Some(sandbox) = common::sandbox(TEST) else {
        return;
    };
    let strace = common::tool_for_part(
        TEST,
        "strace",
        "the check of the temporary file's open flags (O_EXCL|O_NOFOLLOW)",
    );
    let config_dir = sandbox.firewalld_dir();
    let direct_xml = config_dir.join("direct.xml");
    let foreign = std::fs::read(fixture("foreign-mixed.xml")).unwrap();
    std::fs::write(&direct_xml, &foreign).unwrap();
    let victim = sandbox.path("victim");
    std::fs::write(&victim, "precious\n").unwrap();
    std::fs::set_permissions(&victim, std::fs::Permissions::from_mode(0o600)).unwrap();

    // Where the writer puts its temporary files (`.direct.xml.` plus six random letters or
    // digits, created with O_CREAT|O_EXCL|O_NOFOLLOW), its backup, and the names other
    // writers use: every one a link to the victim.
    let mut planted: Vec<String> = names(500)
        .into_iter()
        .flat_map(|n| [format!(".direct.xml.{n}"), format!(".firewalld.conf.{n}")])
        .collect();
    planted.extend(
        [
            "direct.xml.old",
            "direct.xml.tmp",
            ".direct.xml.tmp",
            "direct.xml~",
            "direct.xml.new",
            ".direct.xml.swp",
            ".direct.xml",
        ]
        .map(String::from),
    );
    for name in &planted {
        symlink(&victim, config_dir.join(name)).unwrap();
    }
    let victim_state = |path: &Path| {
        let meta = std::fs::metadata(path).unwrap();
        (
            std::fs::read(path).unwrap(),
            meta.mode(),
            meta.ino(),
            (meta.mtime(), meta.mtime_nsec()),
            (meta.ctime(), meta.ctime_nsec()),
        )
    };
    let victim_then = victim_state(&victim);

    let mut uninstall = os(&["uninstall"]);
    uninstall.extend(config_dir_flag(&sandbox).into_iter().map(OsString::from));
    let mut strace_log = None;
    for (step, args) in [
        install_args(&sandbox, &[]),
        install_args(&sandbox, &["--exclude-inbound-ports", "2222"]),
        uninstall,
        install_args(&sandbox, &["--redirect-dns"]),
    ]
    .into_iter()
    .enumerate()
    {
        let what = shown(&args);
        let output = if step == 3 && strace {
            // The open flags of the temporary file, as the kernel saw them.
            let log = sandbox.path("strace.log");
            let mut full = vec![
                OsString::from("strace"),
                "-f".into(),
                "-qq".into(),
                "-e".into(),
                "trace=open,openat,creat".into(),
                "-o".into(),
                log.clone().into_os_string(),
                BIN.into(),
            ];
            full.extend(args);
            let mut command = sandbox.command(&[]);
            command.args(&full);
            strace_log = Some(log);
            output_of(command, None, &what)
        } else {
            tproxy_in(&sandbox, &args, &[], None)
        };
        assert_succeeded(&what, &output);
        assert_eq!(
            victim_state(&victim),
            victim_then,
            "{what}: the victim changed"
        );
        for name in &planted {
            let path = config_dir.join(name);
            let meta = std::fs::symlink_metadata(&path)
                .unwrap_or_else(|e| panic!("{what}: {name} is gone: {e}"));
            if name == "direct.xml.old" {
                // The backup replaces the link itself (rename), never writes through it.
                assert!(
                    meta.is_file(),
                    "{what}: direct.xml.old is not a regular file"
                );
                continue;
            }
            assert!(meta.file_type().is_symlink(), "{what}: {name} was replaced");
            assert_eq!(std::fs::read_link(&path).unwrap(), victim, "{what}: {name}");
        }
        let text = std::fs::read_to_string(&direct_xml).unwrap();
        assert!(
            std::fs::symlink_metadata(&direct_xml).unwrap().is_file(),
            "{what}: direct.xml is not a regular file"
        );
        tproxy_firewalld::format::direct_xml::parse(&text)
            .unwrap_or_else(|e| panic!("{what}: direct.xml does not parse: {e}"));
        // No temporary file is left behind.
        let unexpected: Vec<String> = std::fs::read_dir(&config_dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| {
                !planted.contains(n)
                    && n != "direct.xml"
                    && n != "direct.xml.old"
                    && n != "firewalld.conf"
            })
            .collect();
        assert!(unexpected.is_empty(), "{what}: left behind: {unexpected:?}");
    }
    assert_eq!(
        std::fs::read(config_dir.join("direct.xml.old")).unwrap(),
        foreign
    );

    if let Some(log) = strace_log {
        let log = std::fs::read_to_string(log).unwrap();
        let creates: Vec<&str> = log
            .lines()
            .filter(|l| l.contains("/.direct.xml.") && l.contains("O_CREAT"))
            .collect();
        assert!(!creates.is_empty(), "no temporary file was created:\n{log}");
        for line in &creates {
            assert!(
                line.contains("O_EXCL") && line.contains("O_NOFOLLOW"),
                "a temporary file opened without O_EXCL|O_NOFOLLOW: {line}"
            );
        }
        let victim = victim.display().to_string();
        assert!(
            !log.lines().any(|l| l.contains(&victim)),
            "the victim was opened:\n{log}"
        );
        for name in &planted {
            let quoted = format!("/{name}\"");
            assert!(
                !log.lines()
                    .any(|l| l.contains(&quoted) && l.contains("open")),
                "the planted link {name} was opened"
            );
        }
    }
}

// ---------------------------------------------------------------------------------------
// No shell

#[test]
fn no_shell_is_ever_started() {
    let Some(sandbox) = installed("no_shell_is_ever_started") else {
        return;
    };
    let marker = sandbox.path("a-shell-ran");
    // A copy of the real shell runs the fake ones (the real ones get covered below).
    let real_shell = sandbox.path("real-shell");
    std::fs::copy(std::fs::canonicalize("/bin/sh").unwrap(), &real_shell).unwrap();
    std::fs::set_permissions(&real_shell, std::fs::Permissions::from_mode(0o755)).unwrap();
    let fake = format!(
        "#!{}\necho \"$0 $*\" >> {}\nexit 127\n",
        real_shell.display(),
        marker.display()
    );
    let fake_bin = sandbox.path("fake-bin");
    std::fs::create_dir(&fake_bin).unwrap();
    let shells = ["sh", "bash", "dash", "ash", "zsh", "ksh", "busybox"];
    for shell in shells {
        let path = fake_bin.join(shell);
        std::fs::write(&path, &fake).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    // Inside the sandbox's mount namespace only: the real shells become the fake one, so
    // an absolute /bin/sh (system(3), popen(3)) is caught too.
    let mut covered = Vec::new();
    for dir in ["/bin", "/usr/bin", "/sbin", "/usr/sbin"] {
        for shell in shells {
            let Ok(target) = std::fs::canonicalize(Path::new(dir).join(shell)) else {
                continue;
            };
            if !covered.contains(&target) {
                sandbox.ok(&[
                    "mount",
                    "--bind",
                    fake_bin.join("sh").to_str().unwrap(),
                    target.to_str().unwrap(),
                ]);
                covered.push(target);
            }
        }
    }
    let path = format!(
        "{}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        fake_bin.display()
    );
    let fake_sh = fake_bin.join("sh").display().to_string();
    let run = |args: Vec<OsString>, stdin: Option<Vec<u8>>| {
        let mut command = sandbox.command(&[BIN]);
        command
            .args(&args)
            .env("PATH", &path)
            .env("SHELL", &fake_sh);
        output_of(command, stdin, &shown(&args))
    };

    // The trap works: through PATH and through the absolute path.
    for shell in ["sh", "/bin/sh"] {
        let mut command = sandbox.command(&[shell, "-c", "true"]);
        command.env("PATH", &path);
        let output = output_of(command, None, shell);
        assert_eq!(
            output.status.code(),
            Some(127),
            "{shell}: the fake did not run"
        );
        assert!(marker.exists(), "{shell}: the fake shell wrote no marker");
        std::fs::remove_file(&marker).unwrap();
    }

    let config_dir = config_dir_flag(&sandbox);
    let with_dir = |args: &[&str]| {
        let mut all = os(args);
        all.extend(config_dir.iter().map(OsString::from));
        all
    };
    let direct_xml = sandbox.firewalld_dir().join("direct.xml");
    let good = std::fs::read(&direct_xml).unwrap();
    // Success, no-op, change, dry run, reads, failures, raw iptables, uninstall.
    let steps: Vec<(Vec<OsString>, Option<i32>)> = vec![
        (install_args(&sandbox, &[]), Some(0)),
        (
            install_args(&sandbox, &["--exclude-inbound-ports", "22,2222"]),
            Some(0),
        ),
        (install_args(&sandbox, &["--dry-run", "--verbose"]), Some(0)),
        (
            install_args(&sandbox, &["--redirect-inbound-port", "0"]),
            Some(2),
        ),
        (
            install_args(&sandbox, &["--kuma-dp-user", "x;touch /tmp/pwned"]),
            Some(2),
        ),
        (
            install_args(&sandbox, &["--config", "$(touch /tmp/pwned)"]),
            Some(2),
        ),
        (with_dir(&["status", "--kuma-dp-user", "kuma-dp"]), None),
        (with_dir(&["validate", "--kuma-dp-user", "kuma-dp"]), None),
        (
            os(&[
                "inspect",
                "--file",
                direct_xml.to_str().unwrap(),
                "--check-iptables",
            ]),
            None,
        ),
        (with_dir(&["uninstall", "--dry-run"]), Some(0)),
        (with_dir(&["uninstall"]), Some(0)),
        (
            os(&[
                "install",
                "--backend",
                "iptables",
                "--kuma-dp-user",
                "kuma-dp",
                "--redirect-dns",
            ]),
            Some(0),
        ),
        (os(&["uninstall", "--backend", "iptables"]), Some(0)),
    ];
    for (args, code) in steps {
        let what = shown(&args);
        let output = run(args, None);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!stderr.contains("panicked"), "{what}: {stderr}");
        if let Some(code) = code {
            assert_eq!(output.status.code(), Some(code), "{what}: {stderr}");
        }
        assert!(
            !marker.exists(),
            "{what} started a shell: {}",
            std::fs::read_to_string(&marker).unwrap_or_default()
        );
    }
    // A malformed direct.xml, and translate from stdin.
    std::fs::write(&direct_xml, "<direct><rule").unwrap();
    let output = run(install_args(&sandbox, &[]), None);
    assert_eq!(output.status.code(), Some(1));
    std::fs::write(&direct_xml, &good).unwrap();
    let output = run(
        os(&["translate"]),
        Some(
            b"*nat\n-A OUTPUT -m comment --comment \"$(touch /tmp/pwned)\" -j RETURN\nCOMMIT\n"
                .to_vec(),
        ),
    );
    assert_succeeded("translate", &output);
    assert!(
        !marker.exists(),
        "a shell was started: {}",
        std::fs::read_to_string(&marker).unwrap_or_default()
    );
    assert!(!Path::new("/tmp/pwned").exists());
}
