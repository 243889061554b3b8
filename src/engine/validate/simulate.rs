//! What a family's nat rules do to one locally generated packet, followed through the nat
//! table's OUTPUT chain as the kernel follows it: redirected to a port, or left alone. This
//! is what validate expects of a probe, whatever flags, exclusions or hand edits produced
//! the rules. An option this evaluation does not know makes the answer unknown instead of a
//! guess; rules that cannot match the packet anyway never do.

use std::collections::HashMap;
use std::net::IpAddr;

use ipnet::IpNet;

use crate::direct::{self, DirectConfig};

/// The nat rules of one family: each chain's rules (arguments) in the order they apply.
#[derive(Debug, Default)]
pub struct NatRules {
    chains: HashMap<String, Vec<Vec<String>>>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    Tcp,
    Udp,
}

/// A packet leaving a local socket, as nat OUTPUT sees its first one.
#[derive(Clone, Debug)]
pub struct Packet<'a> {
    pub protocol: Protocol,
    /// None when the route picks it (a rule matching on it then cannot be judged).
    pub source: Option<IpAddr>,
    pub destination: IpAddr,
    pub port: u16,
    /// The owner of the socket.
    pub uid: u32,
    pub out_interface: &'a str,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fate {
    Redirected(u16),
    Untouched,
    /// The rules' effect cannot be told, and why.
    Unknown(String),
}

/// What a matching rule does.
enum Verdict<'a> {
    Continue,
    Return,
    Accept,
    Redirect(Option<u16>),
    Jump(&'a str),
    Goto(&'a str),
}

/// Each evaluation stops after this many rules: rules that jump in circles are refused by
/// iptables, so only a hand-made configuration could get here.
const MAX_STEPS: usize = 100_000;

impl NatRules {
    /// The nat entries of `ipv` in `config`, chains declared without rules included
    /// (firewalld's `X_direct` chains read as the built-in `X`).
    pub fn of(config: &DirectConfig, ipv: &str) -> NatRules {
        let mut chains: HashMap<String, Vec<Vec<String>>> = HashMap::new();
        for chain in direct::kernel_order(config) {
            if chain.ipv != ipv || chain.table != "nat" {
                continue;
            }
            let rules = chain
                .rules
                .iter()
                .map(|&i| config.rules[i].args.clone())
                .collect();
            chains.insert(chain.chain, rules);
        }
        NatRules { chains }
    }

    pub fn is_empty(&self) -> bool {
        self.chains.values().all(Vec::is_empty)
    }

    /// What the rules do to `packet`.
    pub fn fate(&self, packet: &Packet) -> Fate {
        // (chain, index of its next rule); the bottom frame is the built-in OUTPUT, whose
        // end (or RETURN) is its ACCEPT policy.
        let mut stack: Vec<(&str, usize)> = vec![("OUTPUT", 0)];
        let mut steps = 0;
        while let Some((chain, index)) = stack.pop() {
            let Some(rule) = self.chains.get(chain).and_then(|rules| rules.get(index)) else {
                continue;
            };
            stack.push((chain, index + 1));
            steps += 1;
            if steps > MAX_STEPS {
                return Fate::Unknown("the rules jump in circles".to_string());
            }
            let verdict = match evaluate(rule, packet) {
                Ok(Some(verdict)) => verdict,
                Ok(None) => continue,
                Err(why) => return Fate::Unknown(why),
            };
            match verdict {
                Verdict::Continue => {}
                Verdict::Return => {
                    stack.pop();
                }
                Verdict::Accept => return Fate::Untouched,
                Verdict::Redirect(port) => return Fate::Redirected(port.unwrap_or(packet.port)),
                Verdict::Jump(target) | Verdict::Goto(target) => {
                    if !self.chains.contains_key(target) {
                        return Fate::Unknown(format!(
                            "the rules send it to {target}, neither a chain they hold nor a target validate knows"
                        ));
                    }
                    if matches!(verdict, Verdict::Goto(_)) {
                        stack.pop();
                    }
                    stack.push((target, 0));
                }
            }
        }
        Fate::Untouched
    }

    /// The UIDs whose traffic KUMA_MESH_OUTBOUND singles out as kuma-dp's (`--uid-owner`
    /// not negated), in order, each once.
    pub fn kuma_dp_uids(&self) -> Vec<u32> {
        let mut uids = Vec::new();
        for args in self.chains.get("KUMA_MESH_OUTBOUND").into_iter().flatten() {
            for (i, pair) in args.windows(2).enumerate() {
                let negated = i > 0 && args[i - 1] == "!";
                if pair[0] == "--uid-owner" && !negated {
                    if let Ok(uid) = pair[1].parse::<u32>() {
                        if !uids.contains(&uid) {
                            uids.push(uid);
                        }
                    }
                }
            }
        }
        uids
    }

    /// The destinations (`-d`) of the rules in OUTPUT that redirect UDP, in order; their
    /// DNS redirection rules, which name the name servers unless all DNS is captured.
    pub fn redirected_udp_destinations(&self) -> Vec<IpAddr> {
        self.chains
            .get("OUTPUT")
            .into_iter()
            .flatten()
            .filter(|args| {
                let has = |option: &str, value: &str| {
                    args.windows(2).any(|w| w[0] == option && w[1] == value)
                };
                has("-p", "udp") && has("-j", "REDIRECT")
            })
            .filter_map(|args| {
                let at = args
                    .iter()
                    .position(|a| a == "-d" || a == "--destination")?;
                let negated = at > 0 && args[at - 1] == "!";
                let net: IpNet = parse_net(args.get(at + 1)?).ok()?;
                (!negated && net.prefix_len() == net.max_prefix_len()).then(|| net.addr())
            })
            .collect()
    }
}

/// Whether one rule matches `packet`, and what it then does; Err when it would match as far
/// as can be told but holds an option this evaluation does not know.
fn evaluate<'a>(args: &'a [String], packet: &Packet) -> Result<Option<Verdict<'a>>, String> {
    let mut matches = true;
    let mut unknown: Option<String> = None;
    let mut target: Option<&str> = None;
    let mut to_port = None;
    let mut negate = false;
    let mut i = 0;
    while i < args.len() {
        let option = args[i].as_str();
        let value = args.get(i + 1).map(String::as_str).unwrap_or("");
        i += 2;
        let test = match option {
            "!" => {
                negate = true;
                i -= 1;
                continue;
            }
            "-p" | "--protocol" => Some(protocol_is(value, packet.protocol)),
            "-s" | "--source" => Some(match packet.source {
                Some(source) => address_in(source, value),
                None => Err("a source address the route picks".to_string()),
            }),
            "-d" | "--destination" => Some(address_in(packet.destination, value)),
            "-o" | "--out-interface" => Some(Ok(interface_is(value, packet.out_interface))),
            "--uid-owner" => Some(number_in(value, packet.uid)),
            "--dport" | "--dports" | "--destination-port" | "--destination-ports" => {
                Some(number_in(value, u32::from(packet.port)))
            }
            "-m" | "--match"
                if ["comment", "owner", "multiport", "tcp", "udp"].contains(&value) =>
            {
                None
            }
            "--comment" | "--log-prefix" | "--log-level" => None,
            "-j" | "--jump" | "-g" | "--goto" => {
                target = Some(value);
                None
            }
            "--to-ports" => {
                to_port = value.split('-').next().and_then(|p| p.parse::<u16>().ok());
                if to_port.is_none() {
                    unknown = Some(format!("--to-ports {value}"));
                }
                None
            }
            _ => {
                unknown = Some(format!("{option} {value}"));
                None
            }
        };
        match test {
            Some(Ok(matched)) => matches &= matched != negate,
            Some(Err(why)) => unknown = Some(why),
            None => {}
        }
        negate = false;
    }
    if !matches {
        return Ok(None);
    }
    if let Some(what) = unknown {
        return Err(format!("cannot tell what `{what}` in a rule does"));
    }
    let goto = args.iter().any(|a| a == "-g" || a == "--goto");
    Ok(Some(match target {
        None | Some("LOG") => Verdict::Continue,
        Some("RETURN") => Verdict::Return,
        Some("ACCEPT") => Verdict::Accept,
        Some("REDIRECT") => Verdict::Redirect(to_port),
        Some(chain) if goto => Verdict::Goto(chain),
        Some(chain) => Verdict::Jump(chain),
    }))
}

fn protocol_is(value: &str, protocol: Protocol) -> Result<bool, String> {
    match value {
        "all" | "0" => Ok(true),
        "tcp" | "6" => Ok(protocol == Protocol::Tcp),
        "udp" | "17" => Ok(protocol == Protocol::Udp),
        _ => Ok(false),
    }
}

fn parse_net(text: &str) -> Result<IpNet, String> {
    text.parse::<IpNet>()
        .or_else(|_| text.parse::<IpAddr>().map(IpNet::from))
        .map_err(|_| format!("address {text}"))
}

fn address_in(address: IpAddr, value: &str) -> Result<bool, String> {
    Ok(parse_net(value)?.contains(&address))
}

/// iptables' `+` at the end of an interface name matches every name it begins.
fn interface_is(pattern: &str, interface: &str) -> bool {
    match pattern.strip_suffix('+') {
        Some(prefix) => interface.starts_with(prefix),
        None => pattern == interface,
    }
}

/// Whether `number` is in a list such as `53,3000:5000` (ports) or `106-108` (UIDs).
fn number_in(list: &str, number: u32) -> Result<bool, String> {
    for item in list.split(',') {
        let (low, high) = item.split_once([':', '-']).unwrap_or((item, item));
        let bound = |text: &str| text.parse::<u32>().map_err(|_| format!("the value {list}"));
        if (bound(low)?..=bound(high)?).contains(&number) {
            return Ok(true);
        }
    }
    Ok(false)
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;
    use crate::config::{Address, Config, UidExclusion};
    use crate::direct::DirectRule;
    use crate::family::Family;
    use crate::format::restore;
    use crate::ruleset::{self, FamilyFacts, Features};

    const KUMA_DP: u32 = 5678;
    const APP: u32 = 4242;
    const NAME_SERVER: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 96, 0, 10));
    const OUTSIDE: IpAddr = IpAddr::V4(Ipv4Addr::new(198, 51, 100, 1));

    fn rules(config: &Config) -> NatRules {
        let facts = FamilyFacts {
            family: Family::V4,
            uid: KUMA_DP,
            loopback: "lo".into(),
            dns_servers: vec![NAME_SERVER],
            features: Features::default(),
        };
        let ruleset = ruleset::build(config, &[facts]);
        NatRules::of(
            &direct::translate(&ruleset, &DirectConfig::default()),
            "ipv4",
        )
    }

    fn tcp(uid: u32, destination: IpAddr, port: u16, out_interface: &str) -> Packet<'_> {
        Packet {
            protocol: Protocol::Tcp,
            source: None,
            destination,
            port,
            uid,
            out_interface,
        }
    }

    fn udp(uid: u32, destination: IpAddr, out_interface: &str) -> Packet<'_> {
        Packet {
            protocol: Protocol::Udp,
            ..tcp(uid, destination, 53, out_interface)
        }
    }

    /// kumactl's check: kuma-dp, from 127.0.0.1 to 127.0.0.6 over the loopback.
    fn passthrough(uid: u32) -> Packet<'static> {
        Packet {
            source: Some(Ipv4Addr::LOCALHOST.into()),
            ..tcp(uid, Ipv4Addr::new(127, 0, 0, 6).into(), 24301, "lo")
        }
    }

    #[test]
    fn applications_go_to_envoy_and_kuma_dp_goes_out() {
        let rules = rules(&Config::default());
        assert_eq!(
            rules.fate(&tcp(APP, OUTSIDE, 80, "eth0")),
            Fate::Redirected(15001)
        );
        assert_eq!(
            rules.fate(&tcp(KUMA_DP, OUTSIDE, 80, "eth0")),
            Fate::Untouched
        );
        assert_eq!(rules.fate(&passthrough(KUMA_DP)), Fate::Redirected(15006));
        assert_eq!(rules.fate(&passthrough(APP)), Fate::Untouched);
        // From the passthrough address itself: Envoy's own inbound traffic.
        let from_passthrough = Packet {
            source: Some(Ipv4Addr::new(127, 0, 0, 6).into()),
            ..passthrough(KUMA_DP)
        };
        assert_eq!(rules.fate(&from_passthrough), Fate::Untouched);
        assert_eq!(rules.fate(&udp(APP, NAME_SERVER, "lo")), Fate::Untouched);
        assert_eq!(rules.kuma_dp_uids(), [KUMA_DP]);
    }

    #[test]
    fn exclusions_and_included_ports_are_followed() {
        let mut config = Config::default();
        config.outbound.exclude_ports = vec![80];
        assert_eq!(
            rules(&config).fate(&tcp(APP, OUTSIDE, 80, "eth0")),
            Fate::Untouched
        );
        assert_eq!(
            rules(&config).fate(&tcp(APP, OUTSIDE, 81, "eth0")),
            Fate::Redirected(15001)
        );
        // An excluded port is checked before kuma-dp's loopback redirect, too.
        config.outbound.exclude_ports = vec![24301];
        assert_eq!(rules(&config).fate(&passthrough(KUMA_DP)), Fate::Untouched);

        let mut config = Config::default();
        config.outbound.exclude_ips = vec![Address::parse("198.51.100.0/24").unwrap()];
        assert_eq!(
            rules(&config).fate(&tcp(APP, OUTSIDE, 80, "eth0")),
            Fate::Untouched
        );

        let mut config = Config::default();
        config.outbound.include_ports = vec![443];
        assert_eq!(
            rules(&config).fate(&tcp(APP, OUTSIDE, 80, "eth0")),
            Fate::Untouched
        );
        assert_eq!(
            rules(&config).fate(&tcp(APP, OUTSIDE, 443, "eth0")),
            Fate::Redirected(15001)
        );

        let mut config = Config::default();
        config.outbound_uid_exclusions = vec![UidExclusion {
            protocol: crate::config::Protocol::Tcp,
            ports: "1:100".into(),
            uids: "4000:4300".into(),
        }];
        assert_eq!(
            rules(&config).fate(&tcp(APP, OUTSIDE, 80, "eth0")),
            Fate::Untouched
        );
        assert_eq!(
            rules(&config).fate(&tcp(APP, OUTSIDE, 101, "eth0")),
            Fate::Redirected(15001)
        );
        assert_eq!(
            rules(&config).fate(&tcp(4301, OUTSIDE, 80, "eth0")),
            Fate::Redirected(15001)
        );

        let mut config = Config::default();
        config.outbound.enabled = false;
        assert_eq!(
            rules(&config).fate(&tcp(APP, OUTSIDE, 80, "eth0")),
            Fate::Untouched
        );
    }

    #[test]
    fn dns_goes_to_the_dns_proxy_for_the_name_servers_or_everywhere() {
        let mut config = Config::default();
        config.dns.enabled = true;
        config.dns.port = 15053;
        let rules_for_servers = rules(&config);
        assert_eq!(
            rules_for_servers.fate(&udp(APP, NAME_SERVER, "lo")),
            Fate::Redirected(15053)
        );
        assert_eq!(
            rules_for_servers.fate(&udp(APP, OUTSIDE, "eth0")),
            Fate::Untouched
        );
        assert_eq!(
            rules_for_servers.fate(&udp(KUMA_DP, NAME_SERVER, "lo")),
            Fate::Untouched
        );
        assert_eq!(
            rules_for_servers.redirected_udp_destinations(),
            [NAME_SERVER]
        );
        config.dns.capture_all = true;
        let capturing = rules(&config);
        assert_eq!(
            capturing.fate(&udp(APP, OUTSIDE, "eth0")),
            Fate::Redirected(15053)
        );
        assert!(capturing.redirected_udp_destinations().is_empty());
    }

    #[test]
    fn the_kernels_own_form_reads_the_same() {
        // iptables-save's spelling: -m tcp, --dports lists, UID ranges with a dash.
        let save = include_str!("../../../tests/expected/install/with-multiple-flags.iptables");
        let mut config = DirectConfig::default();
        for table in restore::parse_save(save).unwrap() {
            for (priority, rule) in table.rules.iter().enumerate() {
                config.rules.push(DirectRule {
                    ipv: "ipv4".into(),
                    table: table.name.clone(),
                    chain: rule.chain.clone(),
                    priority: priority as i32,
                    args: restore::split_restore_args(&rule.line).unwrap()[2..].to_vec(),
                });
            }
        }
        let rules = NatRules::of(&config, "ipv4");
        assert_eq!(
            rules.fate(&tcp(APP, OUTSIDE, 80, "eth0")),
            Fate::Redirected(15001)
        );
        // Ports 53 and 3000-5000 of UIDs 106-108 are excluded, as are 10.0.0.1 and port 22.
        assert_eq!(
            rules.fate(&tcp(107, OUTSIDE, 4000, "eth0")),
            Fate::Untouched
        );
        assert_eq!(
            rules.fate(&tcp(109, OUTSIDE, 4000, "eth0")),
            Fate::Redirected(15001)
        );
        assert_eq!(
            rules.fate(&tcp(APP, "10.0.0.1".parse().unwrap(), 80, "eth0")),
            Fate::Untouched
        );
        assert_eq!(rules.fate(&tcp(APP, OUTSIDE, 22, "eth0")), Fate::Untouched);
        assert_eq!(
            rules.fate(&udp(APP, OUTSIDE, "eth0")),
            Fate::Redirected(15053)
        );
        // The expected file names the loopback interface ifPlaceholder, as kumactl's do.
        let passthrough = Packet {
            out_interface: "ifPlaceholder",
            ..passthrough(KUMA_DP)
        };
        assert_eq!(rules.fate(&passthrough), Fate::Redirected(15006));
    }

    #[test]
    fn what_cannot_be_told_is_unknown_and_what_cannot_match_is_not() {
        let rule = |args: &[&str]| DirectRule {
            ipv: "ipv4".into(),
            table: "nat".into(),
            chain: "OUTPUT".into(),
            priority: 0,
            args: args.iter().map(|s| s.to_string()).collect(),
        };
        let with = |args: &[&str]| {
            NatRules::of(
                &DirectConfig {
                    rules: vec![rule(args)],
                    ..DirectConfig::default()
                },
                "ipv4",
            )
        };
        let probe = tcp(APP, OUTSIDE, 80, "eth0");
        let conntrack = with(&["-m", "conntrack", "--ctstate", "NEW", "-j", "RETURN"]);
        assert!(matches!(conntrack.fate(&probe), Fate::Unknown(_)));
        let elsewhere = with(&[
            "-p",
            "udp",
            "-m",
            "conntrack",
            "--ctstate",
            "NEW",
            "-j",
            "RETURN",
        ]);
        assert_eq!(elsewhere.fate(&probe), Fate::Untouched);
        let missing_chain = with(&["-p", "tcp", "-j", "DOCKER_OUTPUT"]);
        assert!(
            matches!(missing_chain.fate(&probe), Fate::Unknown(why) if why.contains("DOCKER_OUTPUT"))
        );
        let negated = with(&[
            "!",
            "-d",
            "198.51.100.0/24",
            "-j",
            "REDIRECT",
            "--to-ports",
            "1",
        ]);
        assert_eq!(negated.fate(&probe), Fate::Untouched);
        assert_eq!(
            negated.fate(&tcp(APP, NAME_SERVER, 80, "eth0")),
            Fate::Redirected(1)
        );
    }
}
