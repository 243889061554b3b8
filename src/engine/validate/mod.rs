//! Does the transparent proxy work? Per family, four checks with real traffic:
//!
//! 1. `inbound` (kumactl's check): kuma-dp's connection from 127.0.0.1 to 127.0.0.6 (::1 to
//!    ::6) reaches the inbound port, as Envoy's inbound passthrough does;
//! 2. `outbound`: another user's connection to an address outside the host lands on the
//!    outbound port with that address and port as its original destination;
//! 3. `kuma-dp`: kuma-dp's own connection to the same address is left alone;
//! 4. `dns`: another user's DNS query reaches the DNS port.
//!
//! What each check expects is what the rules it is given do to its packet
//! ([`simulate`]), so exclusions and included ports are honoured; a probe goes out only
//! where it cannot leave the host to anything but a documentation address (198.51.100.0/24,
//! 2001:db8::/32) or a destination the user named.

pub mod report;
pub mod simulate;

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::time::Duration;

use anyhow::{Context as _, Result};
use ipnet::IpNet;

use self::simulate::{Fate, NatRules, Packet, Protocol};
use crate::family::Family;
use crate::system::host;
use crate::system::probe::{self, Listener, Outcome, Probe, Sender, Sent, Transport};

/// A working host answers in well under a millisecond; this is room for a loaded one.
const PATIENCE: Duration = Duration::from_millis(500);
/// How long a probe that should be left alone is watched for: a redirect to a local
/// listener happens while the sender's connect() runs, so this is a margin, not a wait.
const PATIENCE_FOR_NOTHING: Duration = Duration::from_millis(25);
/// The whole run ends by then, whatever the probes do.
const DEADLINE: Duration = Duration::from_millis(1500);

/// The checks' destinations outside the host, unless the user names one (RFC 5737, 3849).
const DOCUMENTATION_V4: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 1);
const DOCUMENTATION_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1);
/// Outbound ports tried in turn (the first the rules redirect) when none is given.
const OUTBOUND_PORTS: [u16; 3] = [80, 443, 8080];
const DNS_PORT: u16 = 53;
/// Where the other users' probes start looking for a UID: `nobody`, then downwards.
const FIRST_OTHER_UID: u32 = 65534;

/// In the order they are run and reported.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum CheckKind {
    Inbound,
    Outbound,
    KumaDp,
    Dns,
}

impl CheckKind {
    pub const ALL: [CheckKind; 4] = [
        CheckKind::Inbound,
        CheckKind::Outbound,
        CheckKind::KumaDp,
        CheckKind::Dns,
    ];

    pub fn name(self) -> &'static str {
        match self {
            CheckKind::Inbound => "inbound",
            CheckKind::Outbound => "outbound",
            CheckKind::KumaDp => "kuma-dp",
            CheckKind::Dns => "dns",
        }
    }
}

/// What one family is checked against.
pub struct FamilySetup {
    pub family: Family,
    pub rules: NatRules,
    /// The UID kuma-dp runs as.
    pub kuma_dp: u32,
    /// The outbound destination (a port of 0 lets the checks pick one).
    pub target: SocketAddr,
    /// Whether ::6 is on the loopback interface (always true for IPv4's 127.0.0.6).
    pub passthrough_address: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Ok,
    Fail,
    Skipped,
}

/// Why a check failed, when validate can name it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Cause {
    /// A listener could not be bound: something (Envoy?) already uses the port.
    PortInUse(SocketAddr, Transport),
}

#[derive(Clone, Debug)]
pub struct CheckResult {
    pub family: Family,
    pub kind: CheckKind,
    pub verdict: Verdict,
    pub expected: String,
    pub happened: String,
    pub cause: Option<Cause>,
}

/// One planned check: what it sends, as whom, and what it expects.
struct Planned {
    family: Family,
    kind: CheckKind,
    uid: u32,
    probe: Probe,
    /// The port it should land on, or None for a probe that should be left alone.
    expected_port: Option<u16>,
    /// For a probe that should be left alone: the port a wrong redirect would take it to.
    watched_port: Option<u16>,
    expected: String,
}

/// Runs every check of every family; every probe and listener is closed on return.
pub fn validate(families: &[FamilySetup]) -> Result<Vec<CheckResult>> {
    let mut results = Vec::new();
    let mut planned = Vec::new();
    for setup in families {
        for kind in CheckKind::ALL {
            match plan(setup, kind) {
                Ok(check) => planned.push(check),
                Err((verdict, expected, happened)) => results.push(CheckResult {
                    family: setup.family,
                    kind,
                    verdict,
                    expected,
                    happened,
                    cause: None,
                }),
            }
        }
    }
    // One listener per (family, transport, port) a probe should land on, or is watched on.
    let mut listeners: Vec<(ListenerKey, std::io::Result<Listener>)> = Vec::new();
    for key in planned.iter().filter_map(Planned::listener) {
        if !listeners.iter().any(|(k, _)| *k == key) {
            listeners.push((key, Listener::bind(key.1, key.address())));
        }
    }
    // A check whose listener could not be bound cannot run; its probe is not sent.
    let mut to_send = Vec::new();
    for check in planned {
        let unbound = check
            .listener()
            .and_then(|key| listeners.iter().find(|(k, _)| *k == key))
            .and_then(|(key, listener)| Some((key, listener.as_ref().err()?)));
        match unbound {
            Some((key, error)) => results.push(CheckResult {
                family: check.family,
                kind: check.kind,
                verdict: Verdict::Fail,
                expected: check.expected,
                happened: format!("could not run: cannot listen on {}: {error}", key.address()),
                cause: (error.kind() == std::io::ErrorKind::AddrInUse)
                    .then_some(Cause::PortInUse(key.address(), key.1)),
            }),
            None => to_send.push(check),
        }
    }
    let sockets: Vec<Listener> = listeners
        .into_iter()
        .filter_map(|(_, listener)| listener.ok())
        .collect();
    let (senders, positions) = senders_of(&to_send);
    let outcomes = probe::run(&sockets, &senders, DEADLINE).context("sending the probes")?;
    for (check, (s, p)) in to_send.iter().zip(positions) {
        let outcome = &outcomes[s][p];
        let landed_on = outcome
            .landed
            .as_ref()
            .and_then(|landing| sockets[landing.listener].address().ok());
        results.push(judge(check, outcome, landed_on));
    }
    results.sort_by_key(|r| (r.family, r.kind));
    Ok(results)
}

/// The listener a check needs: family, transport, port.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct ListenerKey(Family, Transport, u16);

impl ListenerKey {
    fn address(self) -> SocketAddr {
        SocketAddr::new(loopback(self.0), self.2)
    }
}

impl Planned {
    fn listener(&self) -> Option<ListenerKey> {
        let port = self.expected_port.or(self.watched_port)?;
        Some(ListenerKey(self.family, self.probe.transport, port))
    }
}

/// The loopback address of `family`, where REDIRECT delivers locally generated traffic.
fn loopback(family: Family) -> IpAddr {
    match family {
        Family::V4 => Ipv4Addr::LOCALHOST.into(),
        Family::V6 => Ipv6Addr::LOCALHOST.into(),
    }
}

/// One sender per UID, probes in the order of the checks; and where each check's probe is
/// (sender, probe).
fn senders_of(checks: &[Planned]) -> (Vec<Sender>, Vec<(usize, usize)>) {
    let mut senders: Vec<Sender> = Vec::new();
    let mut positions = Vec::new();
    for check in checks {
        let s = match senders.iter().position(|s| s.uid == check.uid) {
            Some(s) => s,
            None => {
                senders.push(Sender {
                    uid: check.uid,
                    gid: primary_gid(check.uid),
                    probes: Vec::new(),
                });
                senders.len() - 1
            }
        };
        senders[s].probes.push(check.probe.clone());
        positions.push((s, senders[s].probes.len() - 1));
    }
    (senders, positions)
}

/// The UID's group in the password database, else the group of the same number.
fn primary_gid(uid: u32) -> u32 {
    host::account_by_uid(uid).map_or(uid, |account| account.gid)
}

fn judge(check: &Planned, outcome: &Outcome, landed_on: Option<SocketAddr>) -> CheckResult {
    let destination = check.probe.destination;
    let happened_to_sender = || match &outcome.sent {
        Sent::NotSent(why) => format!("not sent: {why}"),
        Sent::Failed(_, why) => format!("landed nowhere: {why}"),
        Sent::Connected(_) => "connected elsewhere: no listener of ours saw it".to_string(),
        Sent::Pending(_) => match check.probe.transport {
            Transport::Tcp => format!(
                "landed nowhere: not answered in {} ms",
                check.probe.patience.as_millis()
            ),
            Transport::Udp => format!(
                "landed nowhere: no listener of ours saw it in {} ms",
                check.probe.patience.as_millis()
            ),
        },
    };
    let (verdict, happened) = match (check.expected_port, &outcome.landed, landed_on) {
        (Some(port), Some(landing), Some(at)) if at.port() == port => {
            match (check.probe.transport, landing.original_destination) {
                (Transport::Udp, _) => (Verdict::Ok, format!("landed on {at}")),
                (Transport::Tcp, Some(original)) if original == destination => (
                    Verdict::Ok,
                    format!("landed on {at}, original destination {original}"),
                ),
                (Transport::Tcp, original) => (
                    Verdict::Fail,
                    format!(
                        "landed on {at}, but with original destination {}",
                        original.map_or("none (not translated)".to_string(), |o| o.to_string())
                    ),
                ),
            }
        }
        (_, Some(_), Some(at)) => (Verdict::Fail, format!("landed on {at}")),
        (Some(_), _, _) => (Verdict::Fail, happened_to_sender()),
        (None, _, _) => match &outcome.sent {
            Sent::NotSent(why) => (Verdict::Fail, format!("not sent: {why}")),
            _ => (Verdict::Ok, "no listener of ours saw it".to_string()),
        },
    };
    CheckResult {
        family: check.family,
        kind: check.kind,
        verdict,
        expected: check.expected.clone(),
        happened,
        cause: None,
    }
}

type NotPlanned = (Verdict, String, String);

fn skipped(expected: impl Into<String>, why: impl Into<String>) -> NotPlanned {
    (Verdict::Skipped, expected.into(), why.into())
}

/// Plans one check of one family, or says why it is not run (skipped, or failed outright).
fn plan(setup: &FamilySetup, kind: CheckKind) -> Result<Planned, NotPlanned> {
    let family = setup.family;
    let kuma_dp = setup.kuma_dp;
    let tcp = |uid: u32, source, destination: SocketAddr, out_interface| Packet {
        protocol: Protocol::Tcp,
        source,
        destination: destination.ip(),
        port: destination.port(),
        uid,
        out_interface,
    };
    let probe = |transport, destination, patience| Probe {
        transport,
        destination,
        bind: None,
        loopback_only: false,
        payload: Vec::new(),
        patience,
    };
    let loopback_name = host::loopback_interface();
    let lo = loopback_name.as_str();
    match kind {
        CheckKind::Inbound => {
            let (from, to) = match family {
                Family::V4 => (loopback(family), IpAddr::from(Ipv4Addr::new(127, 0, 0, 6))),
                Family::V6 => (
                    loopback(family),
                    IpAddr::from(Ipv6Addr::new(0, 0, 0, 0, 0, 0, 0, 6)),
                ),
            };
            let description = |port: &str| {
                format!("kuma-dp's (UID {kuma_dp}) connection from {from} to {to}:{port} on the inbound port")
            };
            if !setup.passthrough_address {
                return Err((
                    Verdict::Fail,
                    description("PORT"),
                    format!("not sent: {to} is not on the loopback interface {lo} (install adds it), so the probe could leave the host"),
                ));
            }
            // kumactl's random port, one the rules treat like any other.
            let mut last = Fate::Untouched;
            for port in random_ports(8) {
                let destination = SocketAddr::new(to, port);
                match setup.rules.fate(&tcp(kuma_dp, Some(from), destination, lo)) {
                    Fate::Redirected(inbound) => {
                        return Ok(Planned {
                            family,
                            kind,
                            uid: kuma_dp,
                            probe: Probe {
                                bind: Some(from),
                                ..probe(Transport::Tcp, destination, PATIENCE)
                            },
                            expected_port: Some(inbound),
                            watched_port: None,
                            expected: format!(
                                "kuma-dp's (UID {kuma_dp}) connection from {from} to {destination} on the inbound port {inbound}"
                            ),
                        })
                    }
                    other => last = other,
                }
            }
            Err(not_redirected(
                description("PORT"),
                last,
                "kuma-dp's traffic to the loopback",
            ))
        }
        CheckKind::Outbound => {
            let (uid, destination, port) = outbound_choice(setup)?;
            Ok(Planned {
                family,
                kind,
                uid,
                probe: probe(Transport::Tcp, destination, PATIENCE),
                expected_port: Some(port),
                watched_port: None,
                expected: format!(
                    "UID {uid}'s connection to {destination} on the outbound port {port}, original destination kept"
                ),
            })
        }
        CheckKind::KumaDp => {
            let description = |destination: &dyn std::fmt::Display| {
                format!("kuma-dp's (UID {kuma_dp}) connection to {destination} left alone")
            };
            // The same destination, watched on the port the outbound check lands on.
            let (_, destination, port) = outbound_choice(setup).map_err(|(_, _, why)| {
                skipped(
                    description(&setup.target.ip()),
                    format!("as the outbound check: {why}"),
                )
            })?;
            let expected_port = match setup.rules.fate(&tcp(kuma_dp, None, destination, "")) {
                Fate::Untouched => None,
                Fate::Redirected(port) => Some(port),
                Fate::Unknown(why) => {
                    return Err(skipped(
                        description(&destination),
                        format!("cannot tell what the rules do to it: {why}"),
                    ))
                }
            };
            let (expected, patience) = match expected_port {
                None => (description(&destination), PATIENCE_FOR_NOTHING),
                Some(to) => (
                    format!("kuma-dp's (UID {kuma_dp}) connection to {destination} on port {to}"),
                    PATIENCE,
                ),
            };
            Ok(Planned {
                family,
                kind,
                uid: kuma_dp,
                probe: probe(Transport::Tcp, destination, patience),
                expected_port,
                watched_port: Some(port),
                expected,
            })
        }
        CheckKind::Dns => plan_dns(setup),
    }
}

/// The outbound check's sender, destination and the port the rules send it to.
fn outbound_choice(setup: &FamilySetup) -> Result<(u32, SocketAddr, u16), NotPlanned> {
    let ports: Vec<u16> = if setup.target.port() == 0 {
        OUTBOUND_PORTS.to_vec()
    } else {
        vec![setup.target.port()]
    };
    let mut last = Fate::Untouched;
    for port in &ports {
        let destination = SocketAddr::new(setup.target.ip(), *port);
        for uid in other_uids(setup) {
            let packet = Packet {
                protocol: Protocol::Tcp,
                source: None,
                destination: destination.ip(),
                port: *port,
                uid,
                out_interface: "",
            };
            match setup.rules.fate(&packet) {
                Fate::Redirected(to) => return Ok((uid, destination, to)),
                other => last = other,
            }
        }
    }
    let destination = SocketAddr::new(setup.target.ip(), ports[0]);
    Err(not_redirected(
        format!("a connection to {destination} on the outbound port"),
        last,
        &format!(
            "TCP to {} from any UID tried (--target picks another destination)",
            setup.target.ip()
        ),
    ))
}

/// UIDs for the other users' probes: neither kuma-dp's nor any the rules single out.
fn other_uids(setup: &FamilySetup) -> impl Iterator<Item = u32> + '_ {
    let special = setup.rules.kuma_dp_uids();
    (FIRST_OTHER_UID - 64..=FIRST_OTHER_UID)
        .rev()
        .filter(move |uid| *uid != setup.kuma_dp && !special.contains(uid))
}

fn plan_dns(setup: &FamilySetup) -> Result<Planned, NotPlanned> {
    let family = setup.family;
    let documentation = SocketAddr::new(documentation_address(family), DNS_PORT);
    // Name servers the rules name: on the loopback (IPv4 only: the kernel drops an IPv4
    // packet bound there that no rule redirects), local ones, or documentation ones.
    let servers = setup.rules.redirected_udp_destinations();
    let mut candidates = vec![(documentation, false)];
    let mut unreachable = Vec::new();
    for server in &servers {
        let address = SocketAddr::new(*server, DNS_PORT);
        match server {
            IpAddr::V4(_) => candidates.push((address, true)),
            IpAddr::V6(v6) if v6.is_loopback() || is_documentation(*server) => {
                candidates.push((address, false))
            }
            IpAddr::V6(_) => unreachable.push(server.to_string()),
        }
    }
    let loopback_name = host::loopback_interface();
    let mut last = Fate::Untouched;
    for (destination, loopback_only) in candidates {
        for uid in other_uids(setup) {
            let packet = Packet {
                protocol: Protocol::Udp,
                source: None,
                destination: destination.ip(),
                port: DNS_PORT,
                uid,
                out_interface: if loopback_only || destination.ip().is_loopback() {
                    loopback_name.as_str()
                } else {
                    ""
                },
            };
            match setup.rules.fate(&packet) {
                Fate::Redirected(port) => {
                    return Ok(Planned {
                        family,
                        kind: CheckKind::Dns,
                        uid,
                        probe: Probe {
                            transport: Transport::Udp,
                            destination,
                            bind: None,
                            loopback_only,
                            payload: dns_query(),
                            patience: PATIENCE,
                        },
                        expected_port: Some(port),
                        watched_port: None,
                        expected: format!(
                            "UID {uid}'s DNS query to {destination} on the DNS port {port}"
                        ),
                    })
                }
                other => last = other,
            }
        }
    }
    let expected = "a DNS query on the DNS port";
    if !unreachable.is_empty() {
        return Err(skipped(
            expected,
            format!(
                "DNS is redirected only for the name servers {}, real hosts a probe could reach if the rules were missing",
                unreachable.join(", ")
            ),
        ));
    }
    match last {
        Fate::Unknown(why) => Err(skipped(
            expected,
            format!("cannot tell what the rules do to it: {why}"),
        )),
        _ if servers.is_empty() && !matches!(last, Fate::Redirected(_)) => {
            Err(skipped(expected, "the rules do not redirect DNS"))
        }
        _ => Err(skipped(expected, "the rules redirect DNS of no UID tried")),
    }
}

/// The verdict for a check whose probe the rules would not redirect.
fn not_redirected(expected: String, fate: Fate, what: &str) -> NotPlanned {
    match fate {
        Fate::Unknown(why) => skipped(
            expected,
            format!("cannot tell what the rules do to it: {why}"),
        ),
        _ => skipped(expected, format!("the rules do not redirect {what}")),
    }
}

fn documentation_address(family: Family) -> IpAddr {
    match family {
        Family::V4 => DOCUMENTATION_V4.into(),
        Family::V6 => DOCUMENTATION_V6.into(),
    }
}

/// Whether `address` is reserved for documentation: no host on any network has it.
pub fn is_documentation(address: IpAddr) -> bool {
    const NETS: [&str; 5] = [
        "192.0.2.0/24",
        "198.51.100.0/24",
        "203.0.113.0/24",
        "2001:db8::/32",
        "3fff::/20",
    ];
    NETS.iter()
        .any(|net| net.parse::<IpNet>().is_ok_and(|net| net.contains(&address)))
}

/// The default outbound destination of `family`.
pub fn default_target(family: Family) -> SocketAddr {
    SocketAddr::new(documentation_address(family), 0)
}

/// Whether `address` belongs to this host (a local address routes to the loopback, where
/// the rules leave other users' traffic alone): it can be bound.
pub fn is_local(address: IpAddr) -> bool {
    address.is_loopback() || address.is_unspecified() || UdpSocket::bind((address, 0)).is_ok()
}

/// `count` of kumactl's random ports for its check (20000-29999).
fn random_ports(count: usize) -> Vec<u16> {
    (0..count)
        .map(|_| 20000 + (random() % 10000) as u16)
        .collect()
}

fn random() -> u64 {
    let mut hasher = RandomState::new().build_hasher();
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    hasher.finish()
}

/// A DNS query (type A, recursion desired) for a name that cannot exist (RFC 6761).
fn dns_query() -> Vec<u8> {
    let mut query = Vec::with_capacity(64);
    query.extend_from_slice(&(random() as u16).to_be_bytes());
    query.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
    for label in ["tproxy-firewalld-validate", "invalid"] {
        query.push(label.len() as u8);
        query.extend_from_slice(label.as_bytes());
    }
    query.extend_from_slice(&[0, 0, 1, 0, 1]);
    query
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documentation_addresses_are_recognised() {
        assert!(is_documentation(DOCUMENTATION_V4.into()));
        assert!(is_documentation(DOCUMENTATION_V6.into()));
        assert!(!is_documentation("10.96.0.10".parse().unwrap()));
        assert!(!is_documentation("fd00::53".parse().unwrap()));
    }

    #[test]
    fn the_dns_query_is_well_formed() {
        let query = dns_query();
        // Header (12), name (26 + 8 + 1), type and class (4).
        assert_eq!(query.len(), 12 + 1 + 25 + 1 + 7 + 1 + 4);
        assert_eq!(&query[2..6], &[0x01, 0x00, 0, 1]);
        assert_eq!(&query[query.len() - 4..], &[0, 1, 0, 1]);
    }
}
