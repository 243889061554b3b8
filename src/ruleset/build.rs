//! Config + facts about the host → the rules kumactl builds (its `builder_table_*.go`),
//! rule for rule, comment for comment, in the same order.

use std::net::IpAddr;

use super::{comment, Arg, Family, FamilyRules, Opt, Position, Rule, Ruleset, Table, TableName};
use crate::config::{Address, Config, Protocol};

/// What the rules depend on besides the config; gathered by the caller (probing the host)
/// so that building stays pure.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FamilyFacts {
    pub family: Family,
    pub uid: u32,
    pub loopback: String,
    /// Name servers of this family from resolv.conf (used without `--redirect-all-dns-traffic`).
    pub dns_servers: Vec<IpAddr>,
    pub features: Features,
}

/// What the iptables installation supports; kumactl adapts its rules to these.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Features {
    pub comment_module: bool,
    /// raw table plus conntrack, udp and owner matches.
    pub conntrack_zone_split: bool,
    pub mangle_table: bool,
    /// A `DOCKER_OUTPUT` chain exists in nat (Docker's embedded DNS): DNS from kuma-dp jumps there.
    pub docker_output_chain: bool,
}

impl Default for Features {
    fn default() -> Self {
        Self {
            comment_module: true,
            conntrack_zone_split: true,
            mangle_table: true,
            docker_output_chain: false,
        }
    }
}

const DNS_PORT: u16 = 53;
const INBOUND: &str = "KUMA_MESH_INBOUND";
const OUTBOUND: &str = "KUMA_MESH_OUTBOUND";
const INBOUND_REDIRECT: &str = "KUMA_MESH_INBOUND_REDIRECT";
const OUTBOUND_REDIRECT: &str = "KUMA_MESH_OUTBOUND_REDIRECT";

pub fn build(config: &Config, families: &[FamilyFacts]) -> Ruleset {
    Ruleset {
        families: families
            .iter()
            .map(|facts| build_family(config, facts))
            .collect(),
    }
}

fn build_family(config: &Config, facts: &FamilyFacts) -> FamilyRules {
    let ctx = Context {
        config,
        facts,
        comments: config.comments && facts.features.comment_module,
    };
    let tables = [ctx.raw(), ctx.nat(), ctx.mangle()]
        .into_iter()
        .filter(|t| !t.rules.is_empty())
        .collect();
    FamilyRules {
        family: facts.family,
        tables,
    }
}

struct Context<'a> {
    config: &'a Config,
    facts: &'a FamilyFacts,
    comments: bool,
}

/// Collects rules chain by chain, numbering insert rules per chain as kumactl does.
struct ChainRules {
    name: String,
    rules: Vec<Rule>,
    inserted: u32,
    comments: bool,
}

impl ChainRules {
    fn new(name: &str, comments: bool) -> Self {
        Self {
            name: name.to_string(),
            rules: Vec::new(),
            inserted: 0,
            comments,
        }
    }

    fn add(&mut self, insert: bool, args: Args, text: impl Into<String>) {
        let position = if insert {
            self.inserted += 1;
            Position::Insert(self.inserted)
        } else {
            Position::Append
        };
        self.rules.push(Rule {
            chain: self.name.clone(),
            position,
            comment: self.comments.then(|| comment(&text.into())),
            args: args.0,
        });
    }

    fn append(&mut self, args: Args, text: impl Into<String>) {
        self.add(false, args, text);
    }

    fn insert(&mut self, args: Args, text: impl Into<String>) {
        self.add(true, args, text);
    }
}

/// A small builder so each rule reads like kumactl's parameter list.
#[derive(Default)]
struct Args(Vec<Arg>);

impl Args {
    fn new() -> Self {
        Self::default()
    }
    fn opt(mut self, opt: Opt, value: impl Into<String>) -> Self {
        self.0.push(Arg::Opt(opt));
        self.0.push(Arg::Value(value.into()));
        self
    }
    fn not_opt(mut self, opt: Opt, value: impl Into<String>) -> Self {
        self.0.push(Arg::Not);
        self.opt(opt, value)
    }
    fn protocol(self, protocol: Protocol) -> Self {
        self.opt(Opt::Protocol, protocol.as_str())
    }
    fn dport(self, port: impl ToString) -> Self {
        self.opt(Opt::DestinationPort, port.to_string())
    }
    fn sport(self, port: impl ToString) -> Self {
        self.opt(Opt::SourcePort, port.to_string())
    }
    fn owner(self, uid: &str) -> Self {
        self.opt(Opt::Match, "owner")
            .opt(Opt::Plain("--uid-owner"), uid)
    }
    fn not_owner(self, uid: &str) -> Self {
        self.opt(Opt::Match, "owner")
            .not_opt(Opt::Plain("--uid-owner"), uid)
    }
    fn jump(self, target: &str) -> Self {
        self.opt(Opt::Jump, target)
    }
    fn redirect(self, port: u16) -> Self {
        self.jump("REDIRECT")
            .opt(Opt::Plain("--to-ports"), port.to_string())
    }
    fn ct_zone(self, zone: u8) -> Self {
        self.jump("CT").opt(Opt::Plain("--zone"), zone.to_string())
    }
}

impl Context<'_> {
    fn uid(&self) -> String {
        self.facts.uid.to_string()
    }

    fn localhost(&self) -> &'static str {
        match self.facts.family {
            Family::V4 => "127.0.0.1/32",
            Family::V6 => "::1/128",
        }
    }

    fn inbound_passthrough(&self) -> &'static str {
        match self.facts.family {
            Family::V4 => "127.0.0.6/32",
            Family::V6 => "::6/128",
        }
    }

    fn of_family<'b>(&self, addresses: &'b [Address]) -> impl Iterator<Item = &'b Address> {
        let family = self.facts.family;
        addresses.iter().filter(move |a| a.family() == family)
    }

    /// DNS servers to redirect: none when resolv.conf has none of this family (kumactl then
    /// turns DNS redirection off for the family).
    fn dns_enabled(&self) -> bool {
        let dns = &self.config.dns;
        dns.enabled && (dns.capture_all || !self.facts.dns_servers.is_empty())
    }

    fn conntrack_zone_split(&self) -> bool {
        let dns = &self.config.dns;
        self.dns_enabled()
            && !dns.skip_conntrack_zone_split
            && self.facts.features.conntrack_zone_split
            && !(self.facts.features.docker_output_chain && dns.capture_all)
    }

    fn raw(&self) -> Table {
        let mut prerouting = ChainRules::new("PREROUTING", self.comments);
        let mut output = ChainRules::new("OUTPUT", self.comments);
        if self.conntrack_zone_split() {
            let uid = self.uid();
            let dns_port = self.config.dns.port;
            output.append(
                Args::new().protocol(Protocol::Udp).dport(DNS_PORT).owner(&uid).ct_zone(1),
                format!("assign connection tracking zone 1 to DNS traffic from the kuma-dp user (UID {uid})"),
            );
            output.append(
                Args::new()
                    .protocol(Protocol::Udp)
                    .sport(dns_port)
                    .owner(&uid)
                    .ct_zone(2),
                "assign connection tracking zone 2 to DNS responses from the kuma-dp DNS proxy",
            );
            if self.config.dns.capture_all {
                output.append(
                    Args::new()
                        .protocol(Protocol::Udp)
                        .dport(DNS_PORT)
                        .ct_zone(2),
                    "assign connection tracking zone 2 to all DNS requests",
                );
                prerouting.append(
                    Args::new()
                        .protocol(Protocol::Udp)
                        .sport(DNS_PORT)
                        .ct_zone(1),
                    "assign connection tracking zone 1 to all DNS responses",
                );
            } else {
                for server in &self.facts.dns_servers {
                    output.append(
                        Args::new()
                            .opt(Opt::Destination, server.to_string())
                            .protocol(Protocol::Udp)
                            .dport(DNS_PORT)
                            .ct_zone(2),
                        format!("assign connection tracking zone 2 to DNS requests destined for {server}"),
                    );
                    if server.is_loopback() {
                        output.append(
                            Args::new()
                                .opt(Opt::Source, server.to_string())
                                .opt(Opt::Destination, self.localhost())
                                .protocol(Protocol::Udp)
                                .ct_zone(1),
                            "assign conntrack zone 1 to DNS responses from the local DNS server to localhost, needed when the DNS query port is altered by a DNAT iptables rule, such as with Docker containers in a custom network",
                        );
                    }
                    prerouting.append(
                        Args::new()
                            .opt(Opt::Source, server.to_string())
                            .protocol(Protocol::Udp)
                            .sport(DNS_PORT)
                            .ct_zone(1),
                        format!("assign connection tracking zone 1 to DNS responses from {server}"),
                    );
                }
            }
        }
        table(TableName::Raw, Vec::new(), [prerouting, output])
    }

    fn mangle(&self) -> Table {
        let mut prerouting = ChainRules::new("PREROUTING", self.comments);
        if self.config.drop_invalid_packets && self.facts.features.mangle_table {
            prerouting.append(
                Args::new()
                    .opt(Opt::Match, "conntrack")
                    .opt(Opt::Plain("--ctstate"), "INVALID")
                    .jump("DROP"),
                "drop packets in the INVALID state to prevent potential issues with malformed or out-of-order packets",
            );
        }
        table(TableName::Mangle, Vec::new(), [prerouting])
    }

    fn nat(&self) -> Table {
        let mut prerouting = ChainRules::new("PREROUTING", self.comments);
        let mut output = ChainRules::new("OUTPUT", self.comments);
        self.nat_output(&mut output);
        self.nat_prerouting(&mut prerouting);
        let custom = [
            self.mesh_inbound(),
            self.mesh_outbound(),
            self.mesh_redirect(INBOUND_REDIRECT, self.config.inbound.port),
            self.mesh_redirect(OUTBOUND_REDIRECT, self.config.outbound.port),
        ];
        let names = custom.iter().map(|c| c.name.clone()).collect();
        let mut chains = vec![prerouting, output];
        chains.extend(custom);
        table(TableName::Nat, names, chains)
    }

    fn nat_output(&self, output: &mut ChainRules) {
        let config = self.config;
        if let Some(level) = config.log_level {
            output.insert(
                Args::new()
                    .jump("LOG")
                    .opt(Opt::Plain("--log-prefix"), "OUTPUT:")
                    .opt(Opt::Plain("--log-level"), level.to_string()),
                "log matching packets using kernel logging",
            );
        }
        for exclusion in &config.outbound_uid_exclusions {
            output.insert(
                Args::new()
                    .opt(Opt::Match, "multiport")
                    .protocol(exclusion.protocol)
                    .dport(&exclusion.ports)
                    .owner(&exclusion.uids)
                    .jump("RETURN"),
                "skip further processing for configured IP addresses, ports and UIDs",
            );
        }
        for address in self.of_family(&config.outbound.exclude_ips) {
            output.insert(
                Args::new()
                    .opt(Opt::Destination, address.as_str())
                    .jump("RETURN"),
                "skip further processing for configured IP addresses, ports and UIDs",
            );
        }
        if self.dns_enabled() {
            let uid = self.uid();
            let docker = self.facts.features.docker_output_chain;
            output.insert(
                Args::new()
                    .protocol(Protocol::Udp)
                    .dport(DNS_PORT)
                    .owner(&uid)
                    .jump(if docker { "DOCKER_OUTPUT" } else { "RETURN" }),
                if docker {
                    "redirect DNS traffic from kuma-dp to the DOCKER_OUTPUT chain"
                } else {
                    "return early for DNS traffic from kuma-dp"
                },
            );
            output.append(
                Args::new().protocol(Protocol::Tcp).dport(DNS_PORT).not_owner(&uid).jump("RETURN"),
                format!("allow applications to perform DNS queries over TCP to port {DNS_PORT} without mesh redirection (only traffic not owned by UID {uid} (kuma-dp user))"),
            );
            let dns_port = config.dns.port;
            if config.dns.capture_all {
                output.insert(
                    Args::new().protocol(Protocol::Udp).dport(DNS_PORT).redirect(dns_port),
                    format!("redirect all DNS requests to the kuma-dp DNS proxy (listening on port {dns_port})"),
                );
            } else {
                for server in &self.facts.dns_servers {
                    output.insert(
                        Args::new()
                            .opt(Opt::Destination, server.to_string())
                            .protocol(Protocol::Udp)
                            .dport(DNS_PORT)
                            .redirect(dns_port),
                        format!("redirect DNS requests to {server} to the kuma-dp DNS proxy (listening on port {dns_port})"),
                    );
                }
            }
        }
        output.add(
            config.outbound.insert_redirect_instead_of_append,
            Args::new().protocol(Protocol::Tcp).jump(OUTBOUND),
            "redirect outbound TCP traffic to our custom chain for processing",
        );
    }

    fn nat_prerouting(&self, prerouting: &mut ChainRules) {
        let config = self.config;
        if let Some(level) = config.log_level {
            prerouting.append(
                Args::new()
                    .jump("LOG")
                    .opt(Opt::Plain("--log-prefix"), "PREROUTING:")
                    .opt(Opt::Plain("--log-level"), level.to_string()),
                "log matching packets using kernel logging",
            );
        }
        let vnets: Vec<_> = config
            .vnets
            .iter()
            .filter(|v| v.family == self.facts.family)
            .collect();
        if vnets.is_empty() && !config.inbound.insert_redirect_instead_of_append {
            prerouting.append(
                Args::new().protocol(Protocol::Tcp).jump(INBOUND),
                "redirect inbound TCP traffic to our custom chain for processing",
            );
            return;
        }
        let (dns_port, outbound_port) = (config.dns.port, config.outbound.port);
        for vnet in vnets {
            let iface = &vnet.interface;
            prerouting.insert(
                Args::new()
                    .opt(Opt::InInterface, iface)
                    .opt(Opt::Match, "udp")
                    .protocol(Protocol::Udp)
                    .dport(DNS_PORT)
                    .redirect(dns_port),
                format!("redirect DNS requests on interface {iface} to the kuma-dp DNS proxy (listening on port {dns_port})"),
            );
            prerouting.insert(
                Args::new()
                    .not_opt(Opt::Destination, &vnet.cidr)
                    .opt(Opt::InInterface, iface)
                    .protocol(Protocol::Tcp)
                    .redirect(outbound_port),
                format!(
                    "redirect TCP traffic on interface {iface}, excluding destination {}, to the envoy's outbound passthrough port {outbound_port}",
                    vnet.cidr
                ),
            );
        }
        prerouting.insert(
            Args::new().protocol(Protocol::Tcp).jump(INBOUND),
            "redirect remaining TCP traffic to our custom chain for processing",
        );
    }

    fn mesh_inbound(&self) -> ChainRules {
        let flow = &self.config.inbound;
        let mut chain = ChainRules::new(INBOUND, self.comments);
        if !flow.enabled {
            chain.append(
                Args::new().protocol(Protocol::Tcp).jump("RETURN"),
                "inbound traffic redirection is disabled",
            );
            return chain;
        }
        for address in self.of_family(&flow.exclude_ips) {
            chain.append(
                Args::new()
                    .opt(Opt::Source, address.as_str())
                    .jump("RETURN"),
                "skip further processing for configured IP address",
            );
        }
        for port in &flow.include_ports {
            chain.append(
                Args::new()
                    .protocol(Protocol::Tcp)
                    .dport(port)
                    .jump(INBOUND_REDIRECT),
                format!(
                    "redirect inbound traffic from port {port} to the custom chain for processing"
                ),
            );
        }
        if flow.include_ports.is_empty() {
            for port in &flow.exclude_ports {
                chain.append(
                    Args::new()
                        .protocol(Protocol::Tcp)
                        .dport(port)
                        .jump("RETURN"),
                    format!("exclude inbound traffic from port {port} from redirection"),
                );
            }
            chain.append(
                Args::new().protocol(Protocol::Tcp).jump(INBOUND_REDIRECT),
                "redirect all inbound traffic to the custom chain for processing",
            );
        }
        chain
    }

    fn mesh_outbound(&self) -> ChainRules {
        let flow = &self.config.outbound;
        let mut chain = ChainRules::new(OUTBOUND, self.comments);
        if !flow.enabled {
            chain.append(
                Args::new().protocol(Protocol::Tcp).jump("RETURN"),
                "outbound traffic redirection is disabled",
            );
            return chain;
        }
        if flow.include_ports.is_empty() {
            for port in &flow.exclude_ports {
                chain.append(
                    Args::new()
                        .protocol(Protocol::Tcp)
                        .dport(port)
                        .jump("RETURN"),
                    format!("exclude outbound traffic from port {port} from redirection"),
                );
            }
        }
        let (uid, lo) = (self.uid(), self.facts.loopback.as_str());
        let (passthrough, localhost) = (self.inbound_passthrough(), self.localhost());
        chain.append(
            Args::new()
                .opt(Opt::Source, passthrough)
                .opt(Opt::OutInterface, lo)
                .jump("RETURN"),
            format!("prevent traffic loops by ensuring traffic from the sidecar proxy (using {passthrough}) to loopback interface is not redirected again"),
        );
        chain.append(
            Args::new()
                .protocol(Protocol::Tcp)
                .opt(Opt::OutInterface, lo)
                .not_opt(Opt::Destination, localhost)
                .owner(&uid)
                .jump(INBOUND_REDIRECT),
            format!("redirect outbound TCP traffic destined for loopback interface, but not targeting address {localhost}, and owned by UID {uid} (kuma-dp user) to {INBOUND_REDIRECT} chain for proper handling"),
        );
        chain.append(
            Args::new()
                .protocol(Protocol::Tcp)
                .opt(Opt::OutInterface, lo)
                .not_owner(&uid)
                .jump("RETURN"),
            format!("return outbound TCP traffic destined for loopback interface, owned by any UID other than {uid} (kuma-dp user)"),
        );
        chain.append(
            Args::new().owner(&uid).jump("RETURN"),
            format!("return outbound traffic owned by UID {uid} (kuma-dp user)"),
        );
        chain.append(
            Args::new().opt(Opt::Destination, localhost).jump("RETURN"),
            format!("return traffic destined for localhost ({localhost}) to avoid redirection"),
        );
        for port in &flow.include_ports {
            chain.append(
                Args::new().protocol(Protocol::Tcp).dport(port).jump(OUTBOUND_REDIRECT),
                format!("redirect outbound TCP traffic to port {port} to our custom chain for further processing"),
            );
        }
        if flow.include_ports.is_empty() {
            chain.append(
                Args::new().jump(OUTBOUND_REDIRECT),
                "redirect all other outbound traffic to our custom chain for further processing",
            );
        }
        chain
    }

    fn mesh_redirect(&self, name: &str, port: u16) -> ChainRules {
        let mut chain = ChainRules::new(name, self.comments);
        chain.append(
            Args::new().protocol(Protocol::Tcp).redirect(port),
            format!("redirect TCP traffic to envoy (port {port})"),
        );
        chain
    }
}

fn table(
    name: TableName,
    chains: Vec<String>,
    rules: impl IntoIterator<Item = ChainRules>,
) -> Table {
    // kumactl renders built-in chains in a fixed order, then custom chains in creation order.
    let mut all: Vec<ChainRules> = rules.into_iter().collect();
    let rank = |c: &ChainRules| {
        name.builtin_chains()
            .iter()
            .position(|b| *b == c.name)
            .unwrap_or(usize::MAX)
    };
    all.sort_by_key(rank);
    Table {
        name,
        chains,
        rules: all.into_iter().flat_map(|c| c.rules).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ruleset::Arg;

    fn facts(family: Family) -> FamilyFacts {
        FamilyFacts {
            family,
            uid: 5678,
            loopback: "lo".to_string(),
            dns_servers: Vec::new(),
            features: Features::default(),
        }
    }

    #[test]
    fn insert_positions_count_per_chain_across_appends() {
        let mut config = Config::default();
        config.dns.enabled = true;
        config.dns.capture_all = true;
        let rules = build(&config, &[facts(Family::V4)]);
        let nat = &rules.families[0].tables[1];
        let output: Vec<_> = nat
            .rules
            .iter()
            .filter(|r| r.chain == "OUTPUT")
            .map(|r| r.position)
            .collect();
        assert_eq!(
            output,
            [
                Position::Insert(1),
                Position::Append,
                Position::Insert(2),
                Position::Append
            ]
        );
    }

    #[test]
    fn vnet_forces_insert_and_skips_other_family() {
        let mut config = Config::default();
        config.vnets = vec![crate::config::values::parse_vnet("docker0:172.17.0.0/16").unwrap()];
        let v4 = build(&config, &[facts(Family::V4), facts(Family::V6)]);
        let prerouting = |f: &FamilyRules| -> Vec<Position> {
            f.tables
                .iter()
                .flat_map(|t| &t.rules)
                .filter(|r| r.chain == "PREROUTING")
                .map(|r| r.position)
                .collect()
        };
        assert_eq!(
            prerouting(&v4.families[0]),
            [
                Position::Insert(1),
                Position::Insert(2),
                Position::Insert(3)
            ]
        );
        assert_eq!(prerouting(&v4.families[1]), [Position::Append]);
    }

    #[test]
    fn without_comments_only_the_dns_rules_cannot_be_recognised() {
        let mut config = Config {
            comments: false,
            ..Config::default()
        };
        // The jumps into our chains and our chains' rules stay recognisable.
        assert!(build(&config, &[facts(Family::V4)])
            .unrecognisable()
            .is_empty());
        config.dns.enabled = true;
        config.dns.capture_all = true;
        let rules = build(&config, &[facts(Family::V4)]);
        let stray: Vec<_> = rules
            .unrecognisable()
            .into_iter()
            .map(|(table, rule)| {
                (
                    table,
                    rule.chain.as_str(),
                    rule.target().unwrap_or_default(),
                )
            })
            .collect();
        assert!(
            stray.contains(&(TableName::Raw, "OUTPUT", "CT".to_string())),
            "{stray:?}"
        );
        assert!(
            stray.contains(&(TableName::Nat, "OUTPUT", "REDIRECT".to_string())),
            "{stray:?}"
        );
        config.comments = true;
        assert!(build(&config, &[facts(Family::V4)])
            .unrecognisable()
            .is_empty());
    }

    #[test]
    fn comments_follow_config_and_module() {
        let mut config = Config::default();
        let mut no_module = facts(Family::V4);
        no_module.features.comment_module = false;
        let without = build(&config, &[no_module]);
        assert!(without.families[0].tables[0]
            .rules
            .iter()
            .all(|r| r.comment.is_none()));
        config.comments = false;
        let disabled = build(&config, &[facts(Family::V4)]);
        assert!(disabled.families[0].tables[0]
            .rules
            .iter()
            .all(|r| r.comment.is_none()));
    }

    #[test]
    fn no_dns_servers_of_a_family_disables_dns_for_it() {
        let mut config = Config::default();
        config.dns.enabled = true;
        let built = build(&config, &[facts(Family::V4)]);
        assert_eq!(built.families[0].tables.len(), 1, "only nat, no raw");
        let mut with_server = facts(Family::V4);
        with_server.dns_servers = vec!["127.0.0.53".parse().unwrap()];
        let built = build(&config, &[with_server]);
        let raw = &built.families[0].tables[0];
        assert_eq!(raw.name, TableName::Raw);
        // loopback server: the extra zone-1 rule for local resolvers is there
        assert!(raw
            .rules
            .iter()
            .any(|r| r.args.contains(&Arg::Value("127.0.0.1/32".into()))));
    }

    #[test]
    fn long_comments_are_cut_like_kumactl() {
        let text = "x".repeat(400);
        assert_eq!(comment(&text).len(), 254);
    }
}
