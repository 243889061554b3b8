//! End to end: after `install` in a namespace, a TCP connection from an application's UID
//! to a remote address lands on Envoy's outbound port (read back with SO_ORIGINAL_DST),
//! while kuma-dp's own connection reaches the remote host. IPv4 and IPv6.
//!
//! This binary is its own helper: with TPROXY_ROLE set it acts as a listener or a client
//! inside a namespace (started through nsenter, under another UID).

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use common::firewalld::{with_firewalld, BACKENDS};
use common::unit::{exec_ok, lay_out_package, Unit};
use common::{namespaces_available, Sandbox, APP_UID, KUMA_DP_UID};

const ROLE: &str = "TPROXY_ROLE";

fn main() {
    if let Ok(role) = std::env::var(ROLE) {
        let address: SocketAddr = std::env::args()
            .nth(1)
            .expect("address")
            .parse()
            .expect("socket address");
        std::process::exit(match role.as_str() {
            "listen" => listen(address),
            "connect" => connect(address),
            other => panic!("unknown role {other}"),
        });
    }
    let tests: [(&str, fn()); 4] = [
        (
            "redirects_applications_but_not_kuma_dp",
            redirects_applications_but_not_kuma_dp,
        ),
        (
            "unit_redirects_again_after_a_reboot_without_firewalld",
            unit_redirects_again_after_a_reboot_without_firewalld,
        ),
        (
            "firewalld_redirects_after_install_reload_and_reboot",
            firewalld_redirects_after_install_reload_and_reboot,
        ),
        (
            "firewalld_with_rfc3964_redirects_ipv4_and_leaves_ipv6_working",
            firewalld_with_rfc3964_redirects_ipv4_and_leaves_ipv6_working,
        ),
    ];
    let mut failed = 0;
    for (name, test) in tests {
        match std::panic::catch_unwind(test) {
            Ok(()) => println!("test {name} ... ok"),
            Err(_) => {
                println!("test {name} ... FAILED");
                failed += 1;
            }
        }
    }
    println!("{} passed, {failed} failed", tests.len() - failed);
    if failed > 0 {
        std::process::exit(1);
    }
}

/// Accepts one connection within 5 s and prints `original <addr>` (the destination the
/// client asked for, as the kernel remembers it across the REDIRECT).
fn listen(address: SocketAddr) -> i32 {
    let listener = TcpListener::bind(address).expect("bind");
    listener.set_nonblocking(true).unwrap();
    println!("ready");
    std::io::stdout().flush().unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        match listener.accept() {
            Ok((mut stream, _)) => {
                let original = original_destination(&stream, address.is_ipv6())
                    .map_or("none".to_string(), |a| a.to_string());
                let mut hello = String::new();
                let _ = stream.read_to_string(&mut hello);
                println!("original {original} said {hello}");
                return 0;
            }
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
    println!("nothing");
    1
}

fn connect(address: SocketAddr) -> i32 {
    match TcpStream::connect_timeout(&address, Duration::from_secs(3)) {
        Ok(mut stream) => {
            let _ = stream.write_all(b"hello");
            0
        }
        Err(error) => {
            eprintln!("connect {address}: {error}");
            1
        }
    }
}

/// `None` for a connection that was not NATed.
fn original_destination(stream: &TcpStream, ipv6: bool) -> Option<SocketAddr> {
    const SO_ORIGINAL_DST: libc::c_int = 80;
    let fd = stream.as_raw_fd();
    unsafe {
        if ipv6 {
            let mut addr: libc::sockaddr_in6 = std::mem::zeroed();
            let mut len = std::mem::size_of::<libc::sockaddr_in6>() as libc::socklen_t;
            let rc = libc::getsockopt(
                fd,
                libc::SOL_IPV6,
                SO_ORIGINAL_DST,
                &mut addr as *mut _ as *mut _,
                &mut len,
            );
            (rc == 0).then(|| {
                SocketAddr::new(
                    std::net::Ipv6Addr::from(addr.sin6_addr.s6_addr).into(),
                    u16::from_be(addr.sin6_port),
                )
            })
        } else {
            let mut addr: libc::sockaddr_in = std::mem::zeroed();
            let mut len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
            let rc = libc::getsockopt(
                fd,
                libc::SOL_IP,
                SO_ORIGINAL_DST,
                &mut addr as *mut _ as *mut _,
                &mut len,
            );
            (rc == 0).then(|| {
                SocketAddr::new(
                    std::net::Ipv4Addr::from(u32::from_be(addr.sin_addr.s_addr)).into(),
                    u16::from_be(addr.sin_port),
                )
            })
        }
    }
}

/// Starts this binary in a role inside `sandbox` under `uid`; waits for a listener's "ready".
fn spawn_role(sandbox: &Sandbox, helper: &Path, uid: u32, role: &str, address: &str) -> Child {
    let mut child = sandbox
        .command_as(uid, &[helper.to_str().unwrap(), address])
        .env(ROLE, role)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn role");
    if role == "listen" {
        let mut line = String::new();
        BufReader::new(child.stdout.as_mut().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(line.trim(), "ready", "listener on {address} did not start");
    }
    child
}

fn output(child: Child) -> (bool, String) {
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

/// A second namespace holding the far end of the host's veth pair (192.0.2.2, fd00::2),
/// and a copy of this binary the unprivileged UIDs can run.
fn remote_for(host: &Sandbox) -> (Sandbox, std::path::PathBuf) {
    let remote = Sandbox::new();
    remote.ok(&["ip", "link", "del", "veth0"]);
    host.ok(&[
        "ip",
        "link",
        "set",
        "veth1",
        "netns",
        &remote.pid().to_string(),
    ]);
    for args in [
        vec!["ip", "addr", "add", "192.0.2.2/24", "dev", "veth1"],
        vec![
            "ip",
            "-6",
            "addr",
            "add",
            "fd00::2/64",
            "dev",
            "veth1",
            "nodad",
        ],
        vec!["ip", "link", "set", "veth1", "up"],
    ] {
        remote.ok(&args);
    }
    let helper = host.path("role-helper");
    std::fs::copy(std::env::current_exe().unwrap(), &helper).unwrap();
    std::fs::set_permissions(host.dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(&helper, std::fs::Permissions::from_mode(0o755)).unwrap();
    (remote, helper)
}

/// An application's connection lands on Envoy with its original destination; kuma-dp's
/// reaches the remote host untouched. With `ipv6_redirected` false, an application's IPv6
/// connection must reach the remote host directly (IPv6 left alone, not broken).
fn check_traffic(
    host: &Sandbox,
    remote: &Sandbox,
    helper: &Path,
    ipv6_redirected: bool,
    when: &str,
) {
    for (envoy, target, bind_remote) in [
        ("127.0.0.1:15001", "192.0.2.2:8080", "0.0.0.0:8080"),
        ("[::1]:15001", "[fd00::2]:8080", "[::]:8080"),
    ] {
        if envoy.starts_with('[') && !ipv6_redirected {
            let remote_listener = spawn_role(remote, helper, 0, "listen", bind_remote);
            let client = spawn_role(host, helper, APP_UID, "connect", target);
            let (connected, _) = output(client);
            let (accepted, said) = output(remote_listener);
            assert!(
                connected && accepted && said.trim() == "original none said hello",
                "{when}: IPv6 without redirection must reach {target} directly: {said}"
            );
            continue;
        }
        // An application's connection is redirected to Envoy's outbound port.
        let envoy_listener = spawn_role(host, helper, KUMA_DP_UID, "listen", envoy);
        let client = spawn_role(host, helper, APP_UID, "connect", target);
        let (connected, _) = output(client);
        let (accepted, said) = output(envoy_listener);
        assert!(
            connected && accepted,
            "{when}: application connection to {target} was not redirected: {said}"
        );
        let wanted = format!("original {target} said hello");
        assert_eq!(said.trim(), wanted, "{when}: SO_ORIGINAL_DST");

        // kuma-dp's own connection goes straight to the remote host.
        let remote_listener = spawn_role(remote, helper, 0, "listen", bind_remote);
        let client = spawn_role(host, helper, KUMA_DP_UID, "connect", target);
        let (connected, _) = output(client);
        let (accepted, said) = output(remote_listener);
        assert!(
            connected && accepted,
            "{when}: kuma-dp connection to {target} did not reach the remote host: {said}"
        );
        assert_eq!(
            said.trim(),
            "original none said hello",
            "{when}: kuma-dp traffic must not be NATed"
        );
    }
}

fn redirects_applications_but_not_kuma_dp() {
    if !namespaces_available("redirects_applications_but_not_kuma_dp") {
        return;
    }
    let host = Sandbox::new();
    let (remote, helper) = remote_for(&host);
    host.tproxy_ok(&["install", "--kuma-dp-user", "kuma-dp"]);
    check_traffic(&host, &remote, &helper, true, "raw iptables");
}

/// A host without firewalld, through tproxy-firewalld.service's own commands under its own
/// sandboxing (tests/common/unit.rs) and the packaged configuration: ExecStart redirects, a
/// reboot (tables and /run emptied) loses the rules, ExecStart at boot brings them back,
/// and ExecStop removes them.
fn unit_redirects_again_after_a_reboot_without_firewalld() {
    if !namespaces_available("unit_redirects_again_after_a_reboot_without_firewalld") {
        return;
    }
    let host = Sandbox::new();
    let (remote, helper) = remote_for(&host);
    let unit = Unit::packaged("tproxy-firewalld.service");
    lay_out_package(&host, true);
    let ours = |host: &Sandbox| {
        let (ipv4, ipv6) = host.saves();
        (ipv4.contains("KUMA_MESH"), ipv6.contains("KUMA_MESH"))
    };

    let first = exec_ok(&host, &unit, "ExecStart");
    let said = String::from_utf8_lossy(&first.stderr);
    assert!(
        said.contains("(no firewalld)"),
        "not a host without firewalld: {said}"
    );
    check_traffic(&host, &remote, &helper, true, "unit: ExecStart");
    host.reboot_state();
    assert_eq!(ours(&host), (false, false), "the reboot left rules");
    exec_ok(&host, &unit, "ExecStart");
    check_traffic(
        &host,
        &remote,
        &helper,
        true,
        "unit: ExecStart after the reboot",
    );
    exec_ok(&host, &unit, "ExecStop");
    assert_eq!(ours(&host), (false, false), "ExecStop left rules");
}

fn firewalld_redirects_after_install_reload_and_reboot() {
    for backend in BACKENDS {
        let Some(mut host) = with_firewalld("firewalld_traffic", backend) else {
            return;
        };
        let (remote, helper) = remote_for(&host);
        host.tproxy_ok(&[
            "install",
            "--kuma-dp-user",
            "kuma-dp",
            "--store-firewalld",
            "--disable-firewalld-rfc3964-ipv4",
        ]);
        check_traffic(
            &host,
            &remote,
            &helper,
            true,
            &format!("{backend}: install"),
        );
        host.firewall_cmd_ok(&["--reload"]);
        check_traffic(&host, &remote, &helper, true, &format!("{backend}: reload"));
        host.reboot();
        check_traffic(&host, &remote, &helper, true, &format!("{backend}: reboot"));
    }
}

fn firewalld_with_rfc3964_redirects_ipv4_and_leaves_ipv6_working() {
    for backend in BACKENDS {
        let Some(host) = with_firewalld("firewalld_rfc3964_traffic", backend) else {
            return;
        };
        let (remote, helper) = remote_for(&host);
        host.tproxy_ok(&["install", "--kuma-dp-user", "kuma-dp", "--store-firewalld"]);
        check_traffic(
            &host,
            &remote,
            &helper,
            false,
            &format!("{backend}: RFC3964_IPv4=yes"),
        );
    }
}
