//! Facts about this host that the rules depend on: the kuma-dp UID, the loopback interface,
//! IPv6 availability and the DNS servers. Read here so the rule model stays pure.

use std::net::IpAddr;
use std::path::Path;

use super::process;
use anyhow::{bail, Context as _, Result};
use nix::unistd::{Uid, User};

/// kumactl's defaults when no user is given.
pub const DEFAULT_UID: u32 = 5678;
pub const DEFAULT_USER: &str = "kuma-dp";

/// A user of the password database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Account {
    pub uid: u32,
    /// The primary group.
    pub gid: u32,
}

/// Which user to look up.
enum UserKey<'a> {
    Name(&'a str),
    Uid(u32),
}

/// The user with UID `uid`: see `account`.
pub fn account_by_uid(uid: u32) -> Option<Account> {
    account(UserKey::Uid(uid))
}

/// The user named `name`: see `account`.
pub fn account_by_name(name: &str) -> Option<Account> {
    account(UserKey::Name(name))
}

/// Looks in /etc/passwd first, then asks the host's name service (NSS) for users only a
/// directory such as sssd knows. The packaged binary is linked statically, and glibc can
/// load NSS modules into such a binary only when they come from the glibc it was built
/// with; reading the file first keeps local users such as kuma-dp clear of that.
fn account(key: UserKey) -> Option<Account> {
    let local = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    find_in_passwd(&local, &key).or_else(|| {
        let user = match key {
            UserKey::Name(name) => User::from_name(name),
            UserKey::Uid(uid) => User::from_uid(Uid::from_raw(uid)),
        };
        let user = user.ok().flatten()?;
        Some(Account {
            uid: user.uid.as_raw(),
            gid: user.gid.as_raw(),
        })
    })
}

/// The first line of a passwd(5) text that `key` names; lines that are not
/// `name:password:uid:gid:...` with numbers for uid and gid are passed over.
fn find_in_passwd(text: &str, key: &UserKey) -> Option<Account> {
    text.lines().find_map(|line| {
        let mut fields = line.split(':');
        let name = fields.next()?;
        let uid = fields.nth(1)?.parse().ok()?;
        let gid = fields.next()?.parse().ok()?;
        let named = match key {
            UserKey::Name(wanted) => !name.is_empty() && name == *wanted,
            UserKey::Uid(wanted) => uid == *wanted,
        };
        named.then_some(Account { uid, gid })
    })
}

/// Resolves `--kuma-dp-user` (a name or a UID) as kumactl does: a UID that exists, else a
/// user name; with nothing given, UID 5678, else user `kuma-dp`.
pub fn resolve_kuma_dp_uid(given: Option<&str>) -> Result<u32, String> {
    let lookup = |text: &str| -> Option<u32> {
        text.parse::<u32>()
            .ok()
            .and_then(account_by_uid)
            .or_else(|| account_by_name(text))
            .map(|account| account.uid)
    };
    match given {
        Some(text) => lookup(text).ok_or_else(|| {
            format!("--kuma-dp-user: '{text}' is neither a UID nor a user name on this host")
        }),
        None => lookup(&DEFAULT_UID.to_string())
            .or_else(|| lookup(DEFAULT_USER))
            .ok_or_else(|| {
                format!("--kuma-dp-user: not given, and neither UID {DEFAULT_UID} nor user '{DEFAULT_USER}' exists; create the user or pass --kuma-dp-user")
            }),
    }
}

/// The name of the loopback interface, `lo` on every Linux we know of. Since Linux 3.7 the
/// loopback device has index 1 in every network namespace (LOOPBACK_IFINDEX): one ioctl
/// instead of reading every interface's flags from sysfs.
pub fn loopback_interface() -> String {
    const LOOPBACK_IFINDEX: u32 = 1;
    nix::net::if_::if_indextoname(LOOPBACK_IFINDEX)
        .ok()
        .and_then(|name| name.into_string().ok())
        .unwrap_or_else(|| "lo".to_string())
}

/// The kernel's list of IPv6 addresses, one per line (empty without IPv6).
fn read_if_inet6() -> String {
    std::fs::read_to_string("/proc/net/if_inet6").unwrap_or_default()
}

/// Whether `/proc/net/if_inet6` lists `address` (32 hex digits) on `interface`.
fn has_address_on(if_inet6: &str, address: &str, interface: &str) -> bool {
    if_inet6.lines().any(|line| {
        let fields: Vec<&str> = line.split_ascii_whitespace().collect();
        fields.first() == Some(&address) && fields.last() == Some(&interface)
    })
}

/// True when some interface has an IPv6 address other than loopback (kumactl's test for
/// enabling IPv6 rules).
pub fn has_non_loopback_ipv6() -> bool {
    read_if_inet6().lines().any(|line| {
        line.split_ascii_whitespace()
            .next()
            .is_some_and(|addr| addr != "00000000000000000000000000000001")
    })
}

/// `nameserver` entries of a resolv.conf, zone suffixes (`%eth0`) dropped.
pub fn parse_resolv_conf(text: &str) -> Vec<IpAddr> {
    text.lines()
        .filter_map(|line| {
            let mut words = line.split_ascii_whitespace();
            (words.next() == Some("nameserver"))
                .then(|| words.next())
                .flatten()
                .and_then(|addr| addr.split('%').next()?.parse().ok())
        })
        .collect()
}

pub fn read_dns_servers(path: &Path) -> Result<Vec<IpAddr>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read DNS servers from {}", path.display()))?;
    Ok(parse_resolv_conf(&text))
}

pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// Whether `::6`, the source of Envoy's IPv6 inbound passthrough, is on the loopback
/// interface `loopback` (install adds it).
pub fn has_ipv6_passthrough_address(loopback: &str) -> bool {
    has_address_on(
        &read_if_inet6(),
        "00000000000000000000000000000006",
        loopback,
    )
}

/// Adds `::6/128` to the loopback interface: Envoy's inbound passthrough cluster uses it as
/// source address for IPv6, and kumactl adds it too.
pub fn ensure_ipv6_passthrough_address(loopback: &str) -> Result<()> {
    if has_ipv6_passthrough_address(loopback) {
        return Ok(());
    }
    let ip = Path::new("ip");
    let output = process::run(ip, &["-6", "addr", "add", "::6/128", "dev", loopback], None)
        .context("cannot run `ip` to add ::6/128 to the loopback interface (install iproute2)")?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    let already_there = stderr.contains("File exists") || stderr.contains("already assigned");
    if output.status.success() || already_there {
        return Ok(());
    }
    bail!("cannot add ::6/128 to {loopback}: {}", stderr.trim())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_program_that_stops_reading_its_input_is_reported_by_its_exit() {
        // More than a pipe holds, so the write meets a closed pipe.
        let input = "x".repeat(1 << 20);
        let output = process::run(
            Path::new("/bin/sh"),
            &["-c", "echo 'line 3 failed' >&2; exit 3"],
            Some(&input),
        )
        .unwrap();
        assert_eq!(output.status.code(), Some(3));
        assert_eq!(String::from_utf8_lossy(&output.stderr), "line 3 failed\n");
    }

    #[test]
    fn if_inet6_lines_name_address_and_interface() {
        let text = "00000000000000000000000000000001 01 80 10 80       lo\n\
                    00000000000000000000000000000006 01 80 10 80       lo\n";
        assert!(has_address_on(
            text,
            "00000000000000000000000000000006",
            "lo"
        ));
        assert!(!has_address_on(
            text,
            "00000000000000000000000000000006",
            "eth0"
        ));
        assert!(!has_address_on(
            text,
            "00000000000000000000000000000002",
            "lo"
        ));
    }

    #[test]
    fn resolv_conf_nameservers() {
        let text = "# c\nsearch x\nnameserver 10.0.0.2\nnameserver fe80::1%eth0\nnameserver bogus\n  nameserver 1.1.1.1\n";
        let servers: Vec<String> = parse_resolv_conf(text)
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(servers, ["10.0.0.2", "fe80::1", "1.1.1.1"]);
    }

    #[test]
    fn the_loopback_interface_is_the_one_flagged_loopback() {
        const IFF_LOOPBACK: u32 = 0x8;
        let name = loopback_interface();
        let flags = std::fs::read_to_string(format!("/sys/class/net/{name}/flags")).unwrap();
        let flags = u32::from_str_radix(flags.trim().trim_start_matches("0x"), 16).unwrap();
        assert_ne!(flags & IFF_LOOPBACK, 0, "{name}: flags {flags:#x}");
    }

    #[test]
    fn passwd_lines_are_found_by_name_or_uid() {
        let text = "# local users\n+nis-user::::::\nbroken:x:uid:1\n:x:7:7::/:/bin/sh\n\
                    kuma-dp:x:5678:5679::/nonexistent:/usr/sbin/nologin\n\
                    twin:x:5678:1::/:/bin/sh\n";
        let kuma_dp = Some(Account {
            uid: 5678,
            gid: 5679,
        });
        assert_eq!(find_in_passwd(text, &UserKey::Name("kuma-dp")), kuma_dp);
        // The first line with the UID wins, as getpwuid's search of the file does.
        assert_eq!(find_in_passwd(text, &UserKey::Uid(5678)), kuma_dp);
        assert_eq!(find_in_passwd(text, &UserKey::Name("")), None);
        assert_eq!(find_in_passwd(text, &UserKey::Name("broken")), None);
        assert_eq!(find_in_passwd(text, &UserKey::Name("+nis-user")), None);
        assert_eq!(find_in_passwd(text, &UserKey::Name("nobody")), None);
    }

    #[test]
    fn root_user_resolves_by_name_and_uid() {
        assert_eq!(resolve_kuma_dp_uid(Some("root")), Ok(0));
        assert_eq!(resolve_kuma_dp_uid(Some("0")), Ok(0));
        let err = resolve_kuma_dp_uid(Some("no-such-user-here")).unwrap_err();
        assert!(err.contains("no-such-user-here"), "{err}");
    }
}
