//! Backends make the host hold exactly the desired rules of ours, leaving everything else
//! alone: each observes the current state, plans the difference, applies it as a whole and
//! verifies the result.

pub mod applied;
pub mod direct_file;
pub mod firewalld;
pub mod iptables;
pub mod offline;
pub mod xtables;

use anyhow::Result;

use crate::ruleset::Ruleset;

pub trait Backend {
    /// A short name for messages, e.g. `iptables (nf_tables)`.
    fn name(&self) -> String;

    /// Brings our rules to `desired` (an empty ruleset removes them all) and verifies.
    fn converge(&mut self, desired: &Ruleset) -> Result<Outcome>;
}

#[derive(Debug)]
pub struct Outcome {
    /// False when the host already held exactly the desired rules.
    pub changed: bool,
    /// One line per target, for the operator.
    pub summary: Vec<String>,
}
