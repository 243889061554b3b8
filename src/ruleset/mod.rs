//! The rule model: a pure value describing, per address family, the tables, our custom
//! chains and the ordered rules kumactl would create. No I/O happens here; backends and
//! formats consume it.

mod build;

pub use build::{build, FamilyFacts, Features};

use crate::family::Family;
use crate::ownership::{is_ours, jump_target, COMMENT_PREFIX};
use crate::tables::TableName;

/// iptables limits comments to 256 bytes including the terminator; kumactl cuts at 254.
const MAX_COMMENT_BYTES: usize = 254;

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
    pub fn target(&self) -> Option<String> {
        jump_target(&self.spec(false)).map(str::to_string)
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
