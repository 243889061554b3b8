//! `status` against a real firewalld and against raw iptables, in the test's namespaces:
//! in sync after install, drift made by hand (rules flushed, removed or reordered) reported
//! with exit status 3.

mod common;

use common::firewalld::{with_firewalld, BACKENDS};
use common::json_shape;

const FLAGS: &[&str] = &[
    "--kuma-dp-user",
    "kuma-dp",
    "--redirect-dns",
    "--exclude-inbound-ports",
    "22",
];

/// The rule that sends inbound traffic on to Envoy, and the one before it that keeps port 22
/// (SSH) out: moved behind the redirect, the exclusion no longer excludes anything.
const INBOUND_REDIRECT: &str =
    "kuma/mesh/transparent/proxy/redirect all inbound traffic to the custom chain for processing";
const REORDERED: &str = "order   ipv4 nat KUMA_MESH_INBOUND: \"redirect all inbound traffic to the custom chain for processing\" comes before \"exclude inbound traffic from port 22 from redirection\"";

/// The installed configuration asking for what FLAGS ask for.
const INSTALLED: &str = "kumaDPUser: kuma-dp\nredirect:\n  inbound:\n    excludePorts: [22]\n  dns:\n    enabled: true\n";

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
        let json =
            json_shape::assert_documented("status", &String::from_utf8_lossy(&output.stdout));
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
        assert_eq!(permanent["out_of_order"], serde_json::json!([]));

        // The SSH exclusion moved behind the inbound redirect in the permanent configuration,
        // then a reload: every entry is still there, in an order that sends port 22 to Envoy.
        world.tproxy_ok(&install);
        let args = [
            "-m",
            "comment",
            "--comment",
            INBOUND_REDIRECT,
            "-p",
            "tcp",
            "-j",
            "KUMA_MESH_INBOUND_REDIRECT",
        ];
        let rule = [
            "--permanent",
            "--direct",
            "ipv4",
            "nat",
            "KUMA_MESH_INBOUND",
        ];
        world.firewall_cmd_ok(
            &[&rule[..2], &["--remove-rule"], &rule[2..], &["10"], &args].concat(),
        );
        world
            .firewall_cmd_ok(&[&rule[..2], &["--add-rule"], &rule[2..], &["-100"], &args].concat());
        world.firewall_cmd_ok(&["--reload"]);
        let (code, out) = status(&world, FLAGS);
        assert_eq!(code, 3, "{out}");
        for view in ["permanent", "runtime", "kernel"] {
            let line = out.lines().find(|l| l.starts_with(view)).unwrap();
            assert!(
                line.ends_with("0 missing, 0 extra, 1 out of order"),
                "{out}"
            );
        }
        assert_eq!(out.matches(REORDERED).count(), 3, "{out}");
        // Without flags the permanent configuration is all there is to go by; the installed
        // configuration, once there is one, is not the configuration being checked.
        assert_eq!(status(&world, &[]).0, 0);
        world.put_etc_file("tproxy-firewalld/config.yaml", INSTALLED);
        let (code, out) = status(&world, &[]);
        assert_eq!(code, 3, "{out}");
        assert!(
            out.contains("from the installed configuration /etc/tproxy-firewalld/config.yaml"),
            "{out}"
        );
        assert_eq!(out.matches(REORDERED).count(), 3, "{out}");

        world.tproxy_ok(&install);
        let (code, out) = status(&world, &[]);
        assert_eq!(code, 0, "install puts the order right: {out}");
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

#[test]
fn raw_iptables_order_is_part_of_the_rules() {
    let Some(sandbox) = common::sandbox("status_raw_order") else {
        return;
    };
    let mut install = vec!["install"];
    install.extend_from_slice(FLAGS);
    sandbox.tproxy_ok(&install);
    // Rule 1 of KUMA_MESH_INBOUND excludes port 22, rule 2 redirects the rest.
    sandbox.ok(&["iptables", "-t", "nat", "-D", "KUMA_MESH_INBOUND", "2"]);
    sandbox.ok(&[
        "iptables",
        "-t",
        "nat",
        "-I",
        "KUMA_MESH_INBOUND",
        "1",
        "-p",
        "tcp",
        "-m",
        "comment",
        "--comment",
        INBOUND_REDIRECT,
        "-j",
        "KUMA_MESH_INBOUND_REDIRECT",
    ]);
    let (code, out) = status(&sandbox, FLAGS);
    assert_eq!(code, 3, "{out}");
    assert!(
        out.contains("kernel (iptables nf_tables): 0 missing, 0 extra, 1 out of order"),
        "{out}"
    );
    assert!(out.contains(REORDERED), "{out}");
    let output = sandbox.tproxy(&[&["status"], FLAGS, &["--output", "json"]].concat());
    let json = json_shape::assert_documented("status", &String::from_utf8_lossy(&output.stdout));
    assert_eq!(
        json["views"][0]["out_of_order"],
        serde_json::json!([{
            "chain": "ipv4 nat KUMA_MESH_INBOUND",
            "rule": "\"redirect all inbound traffic to the custom chain for processing\"",
            "before": "\"exclude inbound traffic from port 22 from redirection\"",
        }])
    );

    sandbox.tproxy_ok(&install);
    let (code, out) = status(&sandbox, FLAGS);
    assert_eq!(code, 0, "install puts the order right: {out}");
}
