//! Bad input: one line on stderr naming the flag or key, exit status 2, nothing changed.

mod common;

use common::Sandbox;

fn assert_rejected(sandbox: &Sandbox, args: &[&str], stdin: Option<&[u8]>, names: &str) {
    let before = (
        sandbox.save("iptables-save"),
        sandbox.save("ip6tables-save"),
    );
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
    let output = child.wait_with_output().unwrap();
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
    assert_eq!(
        (
            sandbox.save("iptables-save"),
            sandbox.save("ip6tables-save")
        ),
        before,
        "{args:?} changed the tables"
    );
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
