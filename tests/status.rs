//! `status` against a real firewalld and against raw iptables, in the test's namespaces:
//! in sync after install, drift made by hand reported with exit status 3.

mod common;

use common::firewalld::{with_firewalld, BACKENDS};

const FLAGS: &[&str] = &[
    "--kuma-dp-user",
    "kuma-dp",
    "--redirect-dns",
    "--exclude-inbound-ports",
    "22",
];

fn status(sandbox: &common::Sandbox, extra: &[&str]) -> (i32, String) {
    let mut args = vec!["status"];
    args.extend_from_slice(extra);
    let output = sandbox.tproxy(&args);
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr);
    (
        output.status.code().unwrap_or(-1),
        format!("{stdout}{stderr}"),
    )
}

#[test]
fn firewalld_views_are_in_sync_until_someone_flushes_or_edits() {
    for backend in BACKENDS {
        let Some(world) = with_firewalld(&format!("status ({backend})"), backend) else {
            return;
        };
        let mut install = vec!["install", "--store-firewalld"];
        install.extend_from_slice(FLAGS);
        world.tproxy_ok(&install);

        let (code, out) = status(&world, &[]);
        assert_eq!(code, 0, "{out}");
        assert!(out.contains("from the permanent configuration"), "{out}");
        let (code, out) = status(&world, FLAGS);
        assert_eq!(code, 0, "with the install flags: {out}");
        assert!(
            out.contains("runtime (firewalld") && out.contains("in sync"),
            "{out}"
        );

        // Someone flushes one of our chains behind firewalld's back.
        world.ok(&["iptables", "-t", "nat", "-F", "KUMA_MESH_OUTBOUND"]);
        let (code, out) = status(&world, &[]);
        assert_eq!(code, 3, "{out}");
        let kernel = out.lines().find(|l| l.starts_with("kernel")).unwrap();
        assert!(kernel.contains("6 missing, 0 extra"), "{out}");
        assert!(out.contains("missing rule ipv4 nat KUMA_MESH_OUTBOUND \"return outbound traffic owned by UID 5678 (kuma-dp user)\""), "{out}");
        assert!(
            out.lines()
                .any(|l| l.starts_with("runtime") && l.ends_with("in sync")),
            "firewalld still believes it has them: {out}"
        );

        // A reload puts them back; then a permanent rule is removed by hand.
        world.firewall_cmd_ok(&["--reload"]);
        assert_eq!(status(&world, FLAGS).0, 0);
        world.firewall_cmd_ok(&[
            "--permanent",
            "--direct",
            "--remove-rules",
            "ipv4",
            "nat",
            "KUMA_MESH_INBOUND_REDIRECT",
        ]);
        let output = world.tproxy(&[&["status"], FLAGS, &["--output", "json"]].concat());
        assert_eq!(output.status.code(), Some(3));
        let json: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
        assert_eq!(json["in_sync"], false);
        let views = json["views"].as_array().unwrap();
        let permanent = views
            .iter()
            .find(|v| v["name"].as_str().unwrap().starts_with("permanent"))
            .unwrap();
        assert_eq!(
            permanent["missing"],
            serde_json::json!([
                "rule ipv4 nat KUMA_MESH_INBOUND_REDIRECT \"redirect TCP traffic to envoy (port 15006)\""
            ])
        );
        assert_eq!(permanent["extra"], serde_json::json!([]));
    }
}

#[test]
fn raw_iptables_desired_against_the_kernel() {
    let Some(sandbox) = common::sandbox("status_raw") else {
        return;
    };
    let mut install = vec!["install"];
    install.extend_from_slice(FLAGS);
    sandbox.tproxy_ok(&install);
    let (code, out) = status(&sandbox, FLAGS);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("from the flags"), "{out}");

    sandbox.ok(&["iptables", "-t", "nat", "-F", "KUMA_MESH_INBOUND"]);
    sandbox.ok(&[
        "iptables",
        "-t",
        "nat",
        "-A",
        "KUMA_MESH_INBOUND",
        "-j",
        "RETURN",
    ]);
    let (code, out) = status(&sandbox, FLAGS);
    assert_eq!(code, 3, "{out}");
    assert!(out.contains("2 missing, 1 extra"), "{out}");
    assert!(
        out.contains("extra   rule ipv4 nat KUMA_MESH_INBOUND -j RETURN"),
        "{out}"
    );
}
