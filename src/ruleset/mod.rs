//! The rule model: a pure value describing, per address family, the tables, our custom
//! chains and the ordered rules kumactl would create. No I/O happens here; backends and
//! formats consume it.

mod build;

use std::fmt;
use std::net::IpAddr;

pub use build::{build, FamilyFacts, Features};

/// Prefix of every chain we own.
pub const CHAIN_PREFIX: &str = "KUMA_MESH";
/// Prefix of every comment we write; kumactl uses the same, so its rules are ours too.
pub const COMMENT_PREFIX: &str = "kuma/mesh/transparent/proxy";
/// iptables limits comments to 256 bytes including the terminator; kumactl cuts at 254.
const MAX_COMMENT_BYTES: usize = 254;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Family {
    V4,
    V6,
}

impl Family {
    pub fn of(ip: IpAddr) -> Self {
        match ip {
            IpAddr::V4(_) => Family::V4,
            IpAddr::V6(v6) if v6.to_ipv4_mapped().is_some() => Family::V4,
            IpAddr::V6(_) => Family::V6,
        }
    }

    /// `IPv4` / `IPv6`, as in kumactl's `### IPv4 ###` headers.
    pub fn label(self) -> &'static str {
        match self {
            Family::V4 => "IPv4",
            Family::V6 => "IPv6",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TableName {
    Raw,
    Nat,
    Mangle,
}

impl TableName {
    pub const ALL: [TableName; 3] = [TableName::Raw, TableName::Nat, TableName::Mangle];

    pub fn as_str(self) -> &'static str {
        match self {
            TableName::Raw => "raw",
            TableName::Nat => "nat",
            TableName::Mangle => "mangle",
        }
    }

    /// Built-in chains in the order kumactl renders their rules.
    pub fn builtin_chains(self) -> &'static [&'static str] {
        match self {
            TableName::Raw => &["PREROUTING", "OUTPUT"],
            TableName::Nat => &["PREROUTING", "INPUT", "OUTPUT", "POSTROUTING"],
            TableName::Mangle => &["PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"],
        }
    }
}

impl fmt::Display for TableName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An iptables option with its short and long spelling (kumactl's `--verbose` uses long).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Opt {
    Protocol,
    Source,
    Destination,
    InInterface,
    OutInterface,
    Match,
    Jump,
    DestinationPort,
    SourcePort,
    /// Options that have one spelling only (`--uid-owner`, `--to-ports`, …).
    Plain(&'static str),
}

impl Opt {
    pub fn spelling(self, verbose: bool) -> &'static str {
        let (short, long) = match self {
            Opt::Protocol => ("-p", "--protocol"),
            Opt::Source => ("-s", "--source"),
            Opt::Destination => ("-d", "--destination"),
            Opt::InInterface => ("-i", "--in-interface"),
            Opt::OutInterface => ("-o", "--out-interface"),
            Opt::Match => ("-m", "--match"),
            Opt::Jump => ("-j", "--jump"),
            Opt::DestinationPort => ("--dport", "--destination-port"),
            Opt::SourcePort => ("--sport", "--source-port"),
            Opt::Plain(name) => (name, name),
        };
        if verbose {
            long
        } else {
            short
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Arg {
    Opt(Opt),
    Value(String),
    Not,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Position {
    Append,
    /// `-I CHAIN n`: n counts the insert rules of the chain, as kumactl numbers them.
    Insert(u32),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rule {
    pub chain: String,
    pub position: Position,
    /// The full comment (prefix included), when comments are on.
    pub comment: Option<String>,
    pub args: Vec<Arg>,
}

impl Rule {
    /// What the rule jumps to (`-j`): a chain or a target.
    pub fn target(&self) -> Option<&str> {
        self.args.windows(2).find_map(|pair| match pair {
            [Arg::Opt(Opt::Jump), Arg::Value(target)] => Some(target.as_str()),
            _ => None,
        })
    }

    /// Whether a later run can tell this rule, once applied, from foreign ones ([`is_ours`]).
    pub fn is_recognisable(&self) -> bool {
        is_ours(
            &self.chain,
            |text| self.comment.as_deref().is_some_and(|c| c.contains(text)),
            self.target().into_iter(),
        )
    }

    /// The rule specification as argv (no `-A`/`-I`, no chain), comment first as kumactl does.
    pub fn spec(&self, verbose: bool) -> Vec<String> {
        let mut out = Vec::with_capacity(self.args.len() + 4);
        if let Some(comment) = &self.comment {
            out.push(Opt::Match.spelling(verbose).to_string());
            out.push("comment".to_string());
            out.push("--comment".to_string());
            out.push(comment.clone());
        }
        out.extend(self.args.iter().map(|arg| match arg {
            Arg::Opt(opt) => opt.spelling(verbose).to_string(),
            Arg::Value(value) => value.clone(),
            Arg::Not => "!".to_string(),
        }));
        out
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Table {
    pub name: TableName,
    /// Our custom chains, in kumactl's `-N` order.
    pub chains: Vec<String>,
    /// Rules in the order kumactl writes them (built-in chains first, then custom ones).
    pub rules: Vec<Rule>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FamilyRules {
    pub family: Family,
    /// Tables that have rules, in kumactl's order: raw, nat, mangle.
    pub tables: Vec<Table>,
}

#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Ruleset {
    pub families: Vec<FamilyRules>,
}

impl Ruleset {
    pub fn family(&self, family: Family) -> Option<&FamilyRules> {
        self.families.iter().find(|f| f.family == family)
    }

    /// The rules no run could tell from foreign ones once applied, so none could verify,
    /// replace or remove them: without comments, those in built-in chains that do not jump
    /// into ours (the DNS rules, `--drop-invalid-packets`).
    pub fn unrecognisable(&self) -> Vec<(TableName, &Rule)> {
        self.families
            .iter()
            .flat_map(|f| &f.tables)
            .flat_map(|t| t.rules.iter().map(move |r| (t.name, r)))
            .filter(|(_, rule)| !rule.is_recognisable())
            .collect()
    }
}

/// True for a rule we own, in whatever form it was read: inside one of our chains, carrying
/// our comment (`mentions` says whether the rule holds a text), or jumping into one of our
/// chains (it cannot outlive the chain, so it is ours even without a comment; `targets` are
/// what it jumps to).
pub fn is_ours<T: AsRef<str>>(
    chain: &str,
    mentions: impl Fn(&str) -> bool,
    mut targets: impl Iterator<Item = T>,
) -> bool {
    is_owned_chain(chain)
        || mentions(COMMENT_PREFIX)
        || targets.any(|target| is_owned_chain(target.as_ref()))
}

/// True for chains we own: `KUMA_MESH_*` (kumactl's chains included).
pub fn is_owned_chain(name: &str) -> bool {
    name.strip_prefix(CHAIN_PREFIX)
        .is_some_and(|rest| rest.starts_with('_'))
}

fn comment(text: &str) -> String {
    let mut full = format!("{COMMENT_PREFIX}/{text}");
    if full.len() > MAX_COMMENT_BYTES {
        let mut cut = MAX_COMMENT_BYTES;
        while !full.is_char_boundary(cut) {
            cut -= 1;
        }
        full.truncate(cut);
    }
    full
}
