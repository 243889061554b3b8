//! Bad input: one line on stderr naming the flag or key, exit status 2, nothing changed.

mod common;

use std::process::Output;

use common::{json_shape, Sandbox};

/// Runs `args` with `stdin` and checks it is rejected with exit status 2, the first line on
/// stderr naming `names`, and nothing changed; again with `--output json`, whose report must
/// carry the same error.
fn assert_rejected(sandbox: &Sandbox, args: &[&str], stdin: Option<&[u8]>, names: &str) {
    let before = (
        sandbox.save("iptables-save"),
        sandbox.save("ip6tables-save"),
    );
    let output = run_with_stdin(sandbox, args, stdin);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(
        output.status.code(),
        Some(2),
        "{args:?} should exit 2, stderr: {stderr}"
    );
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    // clap adds a usage hint after its one-line error; the error itself is the first line.
    assert!(
        lines[0].contains(names),
        "{args:?}: first line should name {names}: {stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
    let json = run_with_stdin(sandbox, &[args, &["--output", "json"]].concat(), stdin);
    let report = json_shape::report_of(args[0], &json, 2);
    let message = report["error"]["message"].as_str().unwrap();
    assert!(
        message.contains(names),
        "{args:?}: {message:?} should name {names}"
    );
    assert_eq!(report["changed"], serde_json::Value::Null, "{report}");
    assert_eq!(
        (
            sandbox.save("iptables-save"),
            sandbox.save("ip6tables-save")
        ),
        before,
        "{args:?} changed the tables"
    );
}

fn run_with_stdin(sandbox: &Sandbox, args: &[&str], stdin: Option<&[u8]>) -> Output {
    let mut full = vec![common::BIN];
    full.extend_from_slice(args);
    let mut child = sandbox
        .command(&full)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write as _;
        let mut pipe = child.stdin.take().unwrap();
        if let Some(bytes) = stdin {
            pipe.write_all(bytes).unwrap();
        }
    }
    child.wait_with_output().unwrap()
}

#[test]
fn bad_flags_configs_and_users_change_nothing() {
    let Some(sandbox) = common::sandbox("bad_flags_configs_and_users_change_nothing") else {
        return;
    };
    sandbox.tproxy_ok(&[
        "install",
        "--kuma-dp-user",
        "kuma-dp",
        "--exclude-inbound-ports",
        "22",
    ]);
    let bad_yaml = sandbox.path("bad.yaml");
    std::fs::write(&bad_yaml, "redirect: {inbound: [unclosed\n").unwrap();
    let unknown_key = sandbox.path("unknown.yaml");
    std::fs::write(
        &unknown_key,
        "redirect:\n  inbound:\n    excludePort: [22]\n",
    )
    .unwrap();
    let wrong_type = sandbox.path("wrong.json");
    std::fs::write(
        &wrong_type,
        r#"{"redirect": {"dns": {"enabled": "yes please"}}}"#,
    )
    .unwrap();
    let (bad_yaml, unknown_key, wrong_type) = (
        bad_yaml.to_str().unwrap(),
        unknown_key.to_str().unwrap(),
        wrong_type.to_str().unwrap(),
    );
    // Each bad flag value must be reported under the flag's own name.
    let bad_flags: &[(&str, &str)] = &[
        ("--redirect-inbound-port", "0"),
        ("--redirect-outbound-port", "65536"),
        ("--exclude-inbound-ports", "22 -j ACCEPT"),
        ("--exclude-outbound-ips", "10.0.0.1/33"),
        ("--exclude-inbound-ips", "example.com"),
        ("--vnet", "docker0:172.17.0.0"),
        ("--exclude-outbound-ports-for-uids", "a3000-5000:1"),
        ("--exclude-outbound-ports-for-uids", "http:3000-5000:1"),
        ("--exclude-outbound-ports-for-uids", "3000-5000:1:*"),
        ("--exclude-outbound-ports-for-uids", "3000-5000:1:1,2,3"),
        ("--exclude-outbound-ports-for-uids", "tcp,http:1:1"),
        ("--exclude-outbound-ports-for-uids", "22:4294967295"),
        ("--kuma-dp-user", "0 -j ACCEPT"),
        ("--ip-family-mode", "ipv6"),
        ("--sleep-between-retries", "soon"),
    ];
    let mut cases: Vec<(Vec<&str>, &str)> = bad_flags
        .iter()
        .map(|(flag, value)| (vec![*flag, *value], *flag))
        .collect();
    cases.extend([
        (
            vec!["--redirect-dns", "--redirect-all-dns-traffic"],
            "--redirect-all-dns-traffic",
        ),
        (vec!["--kuma-dp-user", "nobody-here"], "nobody-here"),
        // The DNS rules would carry nothing that marks them ours.
        (
            vec!["--disable-comments", "--redirect-dns"],
            "--disable-comments",
        ),
        (vec!["--config", bad_yaml], bad_yaml),
        (vec!["--config", unknown_key], "excludePort"),
        (vec!["--config", wrong_type], "redirect.dns.enabled"),
        (
            vec!["--config", "/nonexistent/tproxy.yaml"],
            "/nonexistent/tproxy.yaml",
        ),
        (vec!["--no-such-flag"], "--no-such-flag"),
    ]);
    for (mut args, names) in cases {
        args.insert(0, "install");
        if !args.contains(&"--kuma-dp-user") {
            args.extend(["--kuma-dp-user", "kuma-dp"]);
        }
        assert_rejected(&sandbox, &args, None, names);
    }
    assert_rejected(
        &sandbox,
        &["uninstall", "--iptables-executables", "iptables"],
        None,
        "--iptables-executables",
    );
    assert_rejected(
        &sandbox,
        &["install", "--kuma-dp-user", "kuma-dp", "--config", "-"],
        Some(b"wait: [\xff\xfe]\n"),
        "config -",
    );
    let env_case = sandbox
        .command(&[common::BIN, "install", "--kuma-dp-user", "kuma-dp"])
        .env("KUMA_TRANSPARENT_PROXY_REDIRECT_DNS_PORT", "99999")
        .output()
        .unwrap();
    assert_eq!(env_case.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&env_case.stderr)
        .contains("KUMA_TRANSPARENT_PROXY_REDIRECT_DNS_PORT"));
}

/// The config decides whose traffic bypasses the proxy, so a root run that changes the
/// firewall refuses a file another user could write or replace; dry runs and stdin are not
/// affected, and neither is a root-owned file in a sticky directory such as /tmp.
#[test]
fn config_files_other_users_could_change_are_refused_as_root() {
    use std::os::unix::fs::{chown, lchown, symlink, PermissionsExt as _};
    let Some(sandbox) =
        common::sandbox("config_files_other_users_could_change_are_refused_as_root")
    else {
        return;
    };
    sandbox.tproxy_ok(&["install", "--kuma-dp-user", "kuma-dp"]);
    let other = Some(common::APP_UID);
    let mode = |path: &std::path::Path, mode: u32| {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap()
    };
    let config = "redirect:\n  inbound:\n    excludePorts: [22]\n";
    // A root-owned 0644 file in directory `dir` (made with `dir_mode`, owned by `owner`).
    let file_in = |dir: &str, dir_mode: u32, owner: Option<u32>| {
        let dir = sandbox.path(dir);
        std::fs::create_dir(&dir).unwrap();
        mode(&dir, dir_mode);
        chown(&dir, owner, owner).unwrap();
        let file = dir.join("config.yaml");
        std::fs::write(&file, config).unwrap();
        mode(&file, 0o644);
        (dir.display().to_string(), file.display().to_string())
    };
    let (_, group_writable) = file_in("group-writable-file", 0o755, None);
    mode(group_writable.as_ref(), 0o664);
    let (_, world_writable) = file_in("world-writable-file", 0o755, None);
    mode(world_writable.as_ref(), 0o646);
    let (_, foreign_file) = file_in("foreign-file", 0o755, None);
    chown(&foreign_file, other, other).unwrap();
    let (open_dir, in_open_dir) = file_in("open-dir", 0o777, None);
    let (group_dir, in_group_dir) = file_in("group-dir", 0o775, None);
    let (foreign_dir, in_foreign_dir) = file_in("foreign-dir", 0o755, other);
    let (sticky_dir, in_sticky_dir) = file_in("sticky-dir", 0o1777, None);
    // A link another user owns in a sticky directory: that user can point it elsewhere.
    let foreign_link = format!("{sticky_dir}/foreign-link.yaml");
    symlink(&in_sticky_dir, &foreign_link).unwrap();
    lchown(&foreign_link, other, other).unwrap();
    let (_, trusted) = file_in("trusted", 0o755, None);
    // Root's own link in a sticky directory, to a path through `..`: only root can change it.
    let root_link = format!("{sticky_dir}/root-link.yaml");
    symlink(format!("{sticky_dir}/../trusted/config.yaml"), &root_link).unwrap();

    for (path, names) in [
        (&group_writable, format!("chmod go-w {group_writable}")),
        (&world_writable, format!("chmod go-w {world_writable}")),
        (&foreign_file, format!("chown root {foreign_file}")),
        (&in_open_dir, format!("chmod go-w {open_dir}")),
        (&in_group_dir, format!("chmod go-w {group_dir}")),
        (
            &in_foreign_dir,
            format!("directory {foreign_dir} is owned by UID"),
        ),
        (
            &foreign_link,
            format!("link {foreign_link} is owned by UID"),
        ),
    ] {
        assert_rejected(
            &sandbox,
            &["install", "--kuma-dp-user", "kuma-dp", "--config", path],
            None,
            &names,
        );
    }

    let accepted = |args: &[&str], uid: u32| {
        let mut full = vec![common::BIN, "install", "--kuma-dp-user", "kuma-dp"];
        full.extend_from_slice(args);
        let output = sandbox
            .command_as(uid, &full)
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(output.status.success(), "{args:?} as {uid}: {stderr}");
        String::from_utf8(output.stdout).unwrap()
    };
    // Root runs that change nothing read any file, and so does everyone else's dry run.
    let dry_run = accepted(&["--dry-run", "--config", &in_open_dir], 0);
    assert!(dry_run.contains("--dport 22 -j RETURN"), "{dry_run}");
    mode(sandbox.dir.path(), 0o755);
    let as_user = accepted(&["--dry-run", "--config", &group_writable], common::APP_UID);
    assert!(as_user.contains("--dport 22 -j RETURN"), "{as_user}");
    for path in [&in_sticky_dir, &root_link, &trusted] {
        accepted(&["--config", path], 0);
        assert!(
            sandbox
                .save("iptables-save")
                .contains("--dport 22 -j RETURN"),
            "{path}: the file's rules were not installed"
        );
        sandbox.tproxy_ok(&["install", "--kuma-dp-user", "kuma-dp"]);
    }
    let mut stdin = sandbox
        .command(&[
            common::BIN,
            "install",
            "--kuma-dp-user",
            "kuma-dp",
            "--config",
            "-",
        ])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write as _;
        stdin
            .stdin
            .take()
            .unwrap()
            .write_all(config.as_bytes())
            .unwrap();
    }
    assert!(stdin.wait().unwrap().success(), "a config on stdin");
}
