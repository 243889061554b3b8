//! The systemd units of packaging/systemd: `systemd-analyze verify` and
//! `security` pass on them in a scratch root laid out as the packages install them (nothing
//! is booted); they declare the order the README promises; and a boot through firewalld,
//! with the unit's own commands under its own sandboxing (tests/common/unit.rs), makes no
//! write call when firewalld's permanent configuration holds the rules. The boot without
//! firewalld, with real traffic, is in tests/traffic.rs.

mod common;

use std::path::Path;
use std::process::Command;

use common::firewalld::{with_firewalld, BACKENDS};
use common::unit::{exec_ok, lay_out_package, packaged_config, Unit};
use common::{tool_for_part, BIN};

const UNIT: &str = "tproxy-firewalld.service";
const DROP_IN: &str = "kuma-dp.service.d/tproxy-firewalld.conf";
const HOST_UNITS: &str = "/usr/lib/systemd/system";

fn checkout(path: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

fn run(command: &mut Command) -> (bool, String) {
    let output = command.output().expect("run");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

#[test]
fn units_pass_systemd_analyze_verify_and_security() {
    let test = "units_pass_systemd_analyze_verify_and_security";
    if !tool_for_part(test, "systemd-analyze", "checking the units")
        || !tool_for_part(test, "man", "checking the units' Documentation=")
    {
        return;
    }
    assert!(
        Path::new(HOST_UNITS).is_dir(),
        "{HOST_UNITS} is missing: scripts/install-packages.sh installs systemd"
    );
    // A root holding the system's units, ours and a stand-in kuma-dp.service with the
    // drop-in, the binary and the man pages, where the packages put them.
    let root = tempfile::tempdir().unwrap();
    let at = |path: &str| root.path().join(path.trim_start_matches('/'));
    for dir in [
        "usr/lib/systemd",
        "usr/bin",
        "usr/share/man/man8",
        "etc/systemd/system",
    ] {
        std::fs::create_dir_all(at(dir)).unwrap();
    }
    let copied = Command::new("cp")
        .args(["-a", HOST_UNITS])
        .arg(at("usr/lib/systemd/system"))
        .status()
        .unwrap();
    assert!(copied.success(), "copying {HOST_UNITS}");
    std::fs::copy(
        checkout(&format!("packaging/systemd/{UNIT}")),
        at(&format!("{HOST_UNITS}/{UNIT}")),
    )
    .unwrap();
    std::fs::copy(BIN, at("usr/bin/tproxy-firewalld")).unwrap();
    for page in std::fs::read_dir(checkout("man")).unwrap() {
        let page = page.unwrap().path();
        std::fs::copy(
            &page,
            at("usr/share/man/man8").join(page.file_name().unwrap()),
        )
        .unwrap();
    }
    std::fs::copy("/usr/bin/true", at("usr/bin/kuma-dp")).unwrap();
    std::fs::write(
        at("etc/systemd/system/kuma-dp.service"),
        "[Unit]\nDescription=kuma-dp stand-in\n\n[Service]\nExecStart=/usr/bin/kuma-dp run\n\n\
         [Install]\nWantedBy=multi-user.target\n",
    )
    .unwrap();
    let drop_in = at(&format!("etc/systemd/system/{DROP_IN}"));
    std::fs::create_dir_all(drop_in.parent().unwrap()).unwrap();
    std::fs::copy(checkout(&format!("packaging/systemd/{DROP_IN}")), &drop_in).unwrap();

    let analyze = |args: &[&str]| {
        let mut command = Command::new("systemd-analyze");
        command
            .args(args)
            .arg(format!("--root={}", root.path().display()))
            // The Documentation= pages are looked up with man, in the root's pages.
            .env("MANPATH", at("usr/share/man"));
        run(&mut command)
    };
    for unit in [UNIT, "kuma-dp.service"] {
        let (ok, text) = analyze(&["verify", unit]);
        assert!(
            ok && text.trim().is_empty(),
            "systemd-analyze verify {unit}:\n{text}"
        );
    }
    // The hardening keeps the exposure at 4.0 or below ("OK"); it was 3.8 when written.
    let (ok, text) = analyze(&["security", "--offline=yes", "--threshold=40", UNIT]);
    assert!(ok, "systemd-analyze security {UNIT} is over 4.0:\n{text}");
}

#[test]
fn units_declare_the_order_they_promise() {
    let unit = Unit::packaged(UNIT);
    let after = unit.list("Unit", "After");
    for wanted in ["firewalld.service", "network-online.target"] {
        assert!(
            after.contains(&wanted.to_string()),
            "After= lacks {wanted}: {after:?}"
        );
    }
    assert!(
        unit.list("Unit", "Before")
            .contains(&"kuma-dp.service".to_string()),
        "Before= lacks kuma-dp.service"
    );
    // Ordered after firewalld, but never pulling it in where it is disabled.
    for pulls in [
        "Wants",
        "Requires",
        "Requisite",
        "BindsTo",
        "PartOf",
        "Upholds",
    ] {
        assert!(
            !unit
                .list("Unit", pulls)
                .contains(&"firewalld.service".to_string()),
            "{pulls}= must not name firewalld.service"
        );
    }
    assert_eq!(unit.value("Service", "Type").as_deref(), Some("oneshot"));
    assert_eq!(
        unit.value("Service", "RemainAfterExit").as_deref(),
        Some("yes")
    );
    assert_eq!(
        unit.command("ExecStart")[1..],
        ["install", "--config", "/etc/tproxy-firewalld/config.yaml"]
    );
    assert_eq!(
        unit.command("ExecStop")[1..],
        ["uninstall", "--keep-permanent"]
    );

    // kuma-dp starts after the rules, stops with them, and runs as the user they let through.
    let drop_in = Unit::packaged(DROP_IN);
    for key in ["Requires", "After"] {
        assert_eq!(drop_in.list("Unit", key), [UNIT], "{DROP_IN}: {key}=");
    }
    let config_user = packaged_config()
        .lines()
        .find_map(|line| line.strip_prefix("kumaDPUser:"))
        .map(|user| user.trim().to_string());
    assert_eq!(
        drop_in.value("Service", "User"),
        config_user,
        "{DROP_IN}: User="
    );
}

/// A shutdown and a boot of a firewalld host, through the unit: its ExecStart installs
/// (the packaged config stores the rules in firewalld), its ExecStop at shutdown takes
/// them out of the running firewall only, and at the next boot firewalld, started first
/// (the unit is ordered after it), applies them from its permanent configuration, so the
/// unit's ExecStart makes no write call. Every firewalld cell.
#[test]
fn boot_through_firewalld_makes_no_write_call() {
    for flavor in BACKENDS {
        let Some(mut host) = with_firewalld("boot_through_firewalld_makes_no_write_call", flavor)
        else {
            return;
        };
        let unit = Unit::packaged(UNIT);
        lay_out_package(&host, false);

        let installed = exec_ok(&host, &unit, "ExecStart");
        let stored = host.count_our_rules(true);
        assert!(
            stored > 0,
            "{flavor}: nothing stored: {}",
            String::from_utf8_lossy(&installed.stderr)
        );
        assert_eq!(host.count_our_rules(false), stored, "{flavor}: runtime");

        // Shutdown: the rules leave the running firewall, the permanent ones stay.
        exec_ok(&host, &unit, "ExecStop");
        assert_eq!(
            host.count_our_rules(false),
            0,
            "{flavor}: runtime after ExecStop"
        );
        assert_eq!(
            host.count_our_rules(true),
            stored,
            "{flavor}: permanent after ExecStop"
        );
        assert!(
            !host.save("iptables-save").contains("KUMA_MESH"),
            "{flavor}: the kernel still holds rules after ExecStop"
        );

        host.reboot();
        let mut output = None;
        let calls = host.write_calls(|| output = Some(exec_ok(&host, &unit, "ExecStart")));
        assert_eq!(calls, Vec::<String>::new(), "{flavor}: write calls at boot");
        let stderr = String::from_utf8_lossy(&output.unwrap().stderr).into_owned();
        assert!(stderr.contains("already installed"), "{flavor}: {stderr}");
        assert!(
            host.save("iptables-save").contains("-j KUMA_MESH_OUTBOUND"),
            "{flavor}: the kernel lacks the rules after the boot"
        );
    }
}

/// A shutdown with firewalld installed but stopped: ExecStart wrote direct.xml and applied
/// the rules with iptables; ExecStop takes them out of iptables and leaves direct.xml, from
/// which firewalld applies them when it starts.
#[test]
fn stop_with_firewalld_stopped_keeps_direct_xml() {
    let Some(host) = common::sandbox_with(
        "stop_with_firewalld_stopped_keeps_direct_xml",
        &["firewalld"],
    ) else {
        return;
    };
    let unit = Unit::packaged(UNIT);
    lay_out_package(&host, false);
    exec_ok(&host, &unit, "ExecStart");
    let direct_xml = host.firewalld_dir().join("direct.xml");
    let written = std::fs::read(&direct_xml).expect("ExecStart wrote direct.xml");
    assert!(host.save("iptables-save").contains("KUMA_MESH"));

    let stopped = exec_ok(&host, &unit, "ExecStop");
    let said = String::from_utf8_lossy(&stopped.stderr);
    assert!(
        said.contains("entries of ours in firewalld's permanent"),
        "{said}"
    );
    assert!(
        !host.save("iptables-save").contains("KUMA_MESH"),
        "ExecStop left rules"
    );
    assert_eq!(
        std::fs::read(&direct_xml).unwrap(),
        written,
        "ExecStop changed direct.xml"
    );
}
