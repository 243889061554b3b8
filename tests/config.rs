//! Configuration sources and precedence, observed through `install --dry-run` (no root,
//! nothing changed): defaults < --config files in order < environment < flags.

mod common;

use std::io::Write as _;
use std::process::{Command, Stdio};

use tempfile::TempDir;

/// A dry run as user 0, IPv4 only, so the output does not depend on the host.
fn dry_run(args: &[&str], env: &[(&str, &str)], stdin: &str) -> (i32, String, String) {
    let mut full = vec![
        "install",
        "--dry-run",
        "--kuma-dp-user",
        "0",
        "--ip-family-mode",
        "ipv4",
    ];
    full.extend_from_slice(args);
    run(&full, env, stdin)
}

/// Runs the binary with only PATH and `env` in its environment.
fn run(args: &[&str], env: &[(&str, &str)], stdin: &str) -> (i32, String, String) {
    let mut command = Command::new(common::BIN);
    command
        .args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        // Never the host's firewalld, even for a dry run.
        .env("DBUS_SYSTEM_BUS_ADDRESS", "unix:path=/nonexistent/bus")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (key, value) in env {
        command.env(key, value);
    }
    let mut child = command.spawn().unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

fn file(dir: &TempDir, name: &str, text: &str) -> String {
    let path = dir.path().join(name);
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_string()
}

#[test]
fn files_then_environment_then_flags() {
    let dir = TempDir::new().unwrap();
    let config = file(
        &dir,
        "a.yaml",
        "redirect:\n  inbound:\n    port: 1111\n  outbound:\n    port: 4444\n",
    );
    let (_, out, _) = dry_run(&["--config", &config], &[], "");
    assert!(
        out.contains("--to-ports 1111") && out.contains("--to-ports 4444"),
        "{out}"
    );
    let env = [("KUMA_TRANSPARENT_PROXY_REDIRECT_INBOUND_PORT", "2222")];
    let (_, out, _) = dry_run(&["--config", &config], &env, "");
    assert!(
        out.contains("--to-ports 2222") && out.contains("--to-ports 4444"),
        "{out}"
    );
    let (_, out, _) = dry_run(
        &["--config", &config, "--redirect-inbound-port", "3333"],
        &env,
        "",
    );
    assert!(
        out.contains("--to-ports 3333") && !out.contains("2222"),
        "{out}"
    );
}

#[test]
fn later_files_override_field_by_field_and_replace_lists() {
    let dir = TempDir::new().unwrap();
    let first = file(
        &dir,
        "1.yaml",
        "redirect:\n  inbound:\n    excludePorts: [1000, 1001]\n    port: 1111\n",
    );
    let second = file(
        &dir,
        "2.json",
        r#"{"redirect": {"inbound": {"excludePorts": "2000"}}}"#,
    );
    let (code, out, err) = dry_run(&["--config", &format!("{first},{second}")], &[], "");
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("--dport 2000") && !out.contains("--dport 1000"),
        "{out}"
    );
    assert!(
        out.contains("--to-ports 1111"),
        "port from the first file kept: {out}"
    );
}

#[test]
fn stdin_is_a_config_source() {
    let (code, out, err) = dry_run(
        &["--config", "-"],
        &[],
        "redirect:\n  dns:\n    enabled: true\n    captureAll: true\n    port: 9999\n",
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("REDIRECT --to-ports 9999"), "{out}");
}

#[test]
fn config_only_keys_work() {
    let dir = TempDir::new().unwrap();
    let resolv = file(
        &dir,
        "resolv.conf",
        "nameserver 10.1.2.3\nnameserver fd00::53\n",
    );
    let config = file(
        &dir,
        "c.yaml",
        &format!(
            "redirect:\n  inbound:\n    includePorts: [8080]\n  outbound:\n    includePorts: [443]\n  dns:\n    enabled: true\n    resolvConfigPath: {resolv}\ncomments:\n  disabled: true\n"
        ),
    );
    let (code, out, err) = dry_run(&["--config", &config], &[], "");
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("-A KUMA_MESH_INBOUND -p tcp --dport 8080 -j KUMA_MESH_INBOUND_REDIRECT"),
        "{out}"
    );
    assert!(
        out.contains("-A KUMA_MESH_OUTBOUND -p tcp --dport 443 -j KUMA_MESH_OUTBOUND_REDIRECT"),
        "{out}"
    );
    assert!(
        out.contains("-d 10.1.2.3 -p udp --dport 53 -j REDIRECT --to-ports 15053"),
        "{out}"
    );
    assert!(
        !out.contains("fd00::53"),
        "IPv6 server in IPv4 rules: {out}"
    );
    assert!(!out.contains("comment"), "{out}");
}

#[test]
fn environment_variables_cover_kumactl_names() {
    let env = [
        ("KUMA_TRANSPARENT_PROXY_REDIRECT_DNS_ENABLED", "true"),
        ("KUMA_TRANSPARENT_PROXY_REDIRECT_DNS_CAPTURE_ALL", "true"),
        (
            "KUMA_TRANSPARENT_PROXY_REDIRECT_DNS_SKIP_CONNTRACK_ZONE_SPLIT",
            "true",
        ),
        ("KUMA_TRANSPARENT_PROXY_COMMENTS_DISABLED", "true"),
        (
            "KUMA_TRANSPARENT_PROXY_REDIRECT_OUTBOUND_EXCLUDE_PORTS",
            "25,26",
        ),
        ("KUMA_TRANSPARENT_PROXY_DROP_INVALID_PACKETS", "true"),
        ("KUMA_TRANSPARENT_PROXY_LOG_ENABLED", "true"),
    ];
    let (code, out, err) = dry_run(&[], &env, "");
    assert_eq!(code, 0, "{err}");
    for wanted in [
        "--dport 25 -j RETURN",
        "--dport 26 -j RETURN",
        "--ctstate INVALID -j DROP",
        "--log-prefix OUTPUT:",
        "REDIRECT --to-ports 15053",
    ] {
        assert!(out.contains(wanted), "{wanted} missing: {out}");
    }
    assert!(!out.contains("* raw") && !out.contains("comment"), "{out}");
}

#[test]
fn verbose_uses_long_option_names() {
    let (_, out, _) = dry_run(&["--verbose"], &[], "");
    assert!(
        out.contains("--append KUMA_MESH_OUTBOUND_REDIRECT --match comment"),
        "{out}"
    );
    assert!(
        out.contains("# Custom Chains:\n--new-chain KUMA_MESH_INBOUND"),
        "{out}"
    );
}

#[test]
fn inbound_redirection_can_be_disabled() {
    let (_, out, _) = dry_run(&["--redirect-inbound=false", "--disable-comments"], &[], "");
    assert!(
        out.contains("-A KUMA_MESH_INBOUND -p tcp -j RETURN\n"),
        "{out}"
    );
    assert!(
        !out.contains("-A KUMA_MESH_INBOUND -p tcp -j KUMA_MESH_INBOUND_REDIRECT"),
        "{out}"
    );
}

#[test]
fn insert_instead_of_append_flags() {
    let (_, out, _) = dry_run(
        &[
            "--redirect-inbound-insert-instead-of-append",
            "--redirect-outbound-insert-instead-of-append",
            "--disable-comments",
        ],
        &[],
        "",
    );
    assert!(
        out.contains("-I PREROUTING 1 -p tcp -j KUMA_MESH_INBOUND"),
        "{out}"
    );
    assert!(
        out.contains("-I OUTPUT 1 -p tcp -j KUMA_MESH_OUTBOUND"),
        "{out}"
    );
}

#[test]
fn top_level_keys_from_a_file() {
    let dir = TempDir::new().unwrap();
    let config = file(
        &dir,
        "top.yaml",
        "kumaDPUser: 0\nipFamilyMode: ipv4\nstoreFirewalld: true\nverbose: true\ndryRun: true\n\
         log:\n  enabled: true\n  level: 4\ndropInvalidPackets: true\nwait: 9\nwaitInterval: 10\n\
         retry:\n  maxRetries: 0\n  sleepBetweenRetries: 1s\n",
    );
    // No --kuma-dp-user or --ip-family-mode on the command line: both come from the file.
    let (code, stdout, stderr) = run(&["install", "--config", &config], &[], "");
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("--uid-owner 0"), "kumaDPUser: {stdout}");
    assert!(!stdout.contains("### IPv6 ###"), "ipFamilyMode: {stdout}");
    assert!(stdout.contains("--append OUTPUT"), "verbose: {stdout}");
    assert!(stdout.contains("--log-level 4"), "log.level: {stdout}");
    assert!(
        stdout.contains("--ctstate INVALID"),
        "dropInvalidPackets: {stdout}"
    );
}
