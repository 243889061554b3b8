//! What an install or uninstall changes (or, in a dry run, would change), per target, and the
//! report of a run for scripts (`--output json`). The same values give the operator's summary
//! lines, so the two never disagree. README.md ("JSON output") documents the shape.

use serde_json::{json, Value};

use crate::direct::{counts, Change, Diff};
use crate::family::Family;
use crate::system::Notice;

/// Where entries of ours are kept.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// firewalld's runtime direct configuration.
    Runtime,
    /// firewalld's permanent direct configuration (firewalld writes it to direct.xml).
    Permanent,
    /// direct.xml of a stopped firewalld, at this path.
    File(String),
    /// The kernel's tables of one family (raw iptables).
    Kernel(Family),
}

impl Target {
    /// The target's name in reports: `runtime`, `permanent`, `direct.xml`, `kernel ipv4`.
    pub fn name(&self) -> String {
        match self {
            Target::Runtime => "runtime".to_string(),
            Target::Permanent => "permanent".to_string(),
            Target::File(_) => "direct.xml".to_string(),
            Target::Kernel(family) => format!("kernel {}", family.ipv()),
        }
    }
}

/// What a run does to one target. Entries are text: a direct entry as firewalld's terms
/// give it (`rule ipv4 nat OUTPUT 0 -m comment …`, `chain ipv4 nat KUMA_MESH_INBOUND`), or,
/// in the kernel, a rule as an iptables argument list with its table (`-t nat -A OUTPUT …`;
/// our chains come and go with their rules).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TargetChanges {
    pub target: Target,
    pub added: Vec<String>,
    pub removed: Vec<String>,
    /// Entries of ours that were already as wanted.
    pub kept: usize,
}

impl TargetChanges {
    /// A direct configuration's diff.
    pub fn of_diff(target: Target, diff: &Diff) -> Self {
        let entries = |additions: bool| {
            diff.changes
                .iter()
                .filter(|c| c.is_addition() == additions)
                .map(Change::entry)
                .collect()
        };
        TargetChanges {
            target,
            added: entries(true),
            removed: entries(false),
            kept: diff.unchanged,
        }
    }

    /// From the entries of ours before and after, each counted as often as it occurs; the
    /// order of each list is kept.
    pub fn between(target: Target, before: Vec<String>, after: Vec<String>) -> Self {
        let mut unmatched = before;
        let mut added = Vec::new();
        let mut kept = 0;
        for entry in after {
            match unmatched.iter().position(|e| *e == entry) {
                Some(at) => {
                    unmatched.remove(at);
                    kept += 1;
                }
                None => added.push(entry),
            }
        }
        TargetChanges {
            target,
            added,
            removed: unmatched,
            kept,
        }
    }

    /// The operator's line: `runtime: 1 added, 0 removed, 23 unchanged`; in the kernel,
    /// `IPv4: 19 rules` (the rules of ours it holds).
    pub fn summary(&self) -> String {
        let counted = || counts(self.added.len(), self.removed.len(), self.kept);
        match &self.target {
            Target::Kernel(family) => {
                format!("{}: {} rules", family.label(), self.kept + self.added.len())
            }
            Target::File(path) => format!("{path}: {}", counted()),
            other => format!("{}: {}", other.name(), counted()),
        }
    }

    fn json(&self) -> Value {
        json!({
            "target": self.target.name(),
            "added": self.added,
            "removed": self.removed,
            "kept": self.kept,
        })
    }
}

/// Which backend a run went through.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BackendInfo {
    /// `firewalld`, `firewalld-stopped` (direct.xml and iptables) or `iptables`.
    pub kind: &'static str,
    /// As messages name it: `firewalld 1.3.3 (nftables backend)`, `iptables (nf_tables)`.
    pub name: String,
    /// A running firewalld's version.
    pub firewalld_version: Option<String>,
    /// A running firewalld's FirewallBackend: `nftables` or `iptables`.
    pub firewall_backend: Option<String>,
}

/// A run that failed: its one-line error and exit status.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    pub message: String,
    pub exit_status: u8,
}

/// The report of one install or uninstall run (or its dry run).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Report {
    /// `install` or `uninstall`.
    pub command: &'static str,
    pub dry_run: bool,
    /// Whether the run changed anything (a dry run: would change); None when that is not
    /// known: a dry run that could not read the current state, or a failure.
    pub changed: Option<bool>,
    pub backend: Option<BackendInfo>,
    pub targets: Vec<TargetChanges>,
    pub notices: Vec<Notice>,
    /// The result line the operator sees (none for a dry run or a failure).
    pub summary: Option<String>,
    pub error: Option<Failure>,
}

impl Report {
    /// A report of nothing yet.
    pub fn new(command: &'static str, dry_run: bool) -> Self {
        Report {
            command,
            dry_run,
            changed: None,
            backend: None,
            targets: Vec::new(),
            notices: Vec::new(),
            summary: None,
            error: None,
        }
    }

    /// The JSON document, pretty-printed, ending with a newline.
    pub fn document(&self) -> String {
        let backend = self.backend.as_ref().map(|b| {
            json!({
                "kind": b.kind,
                "name": b.name,
                "firewalld_version": b.firewalld_version,
                "firewall_backend": b.firewall_backend,
            })
        });
        let notices: Vec<Value> = self
            .notices
            .iter()
            .map(|n| json!({"code": n.code.as_str(), "text": n.text}))
            .collect();
        let error = self
            .error
            .as_ref()
            .map(|e| json!({"message": e.message, "exit_status": e.exit_status}));
        let document = json!({
            "command": self.command,
            "dry_run": self.dry_run,
            "changed": self.changed,
            "backend": backend,
            "targets": self.targets.iter().map(TargetChanges::json).collect::<Vec<_>>(),
            "notices": notices,
            "summary": self.summary,
            "error": error,
        });
        let mut text = serde_json::to_string_pretty(&document).expect("JSON values serialise");
        text.push('\n');
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::system::Code;

    fn strings(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn entries_on_both_sides_are_kept_as_often_as_both_hold_them() {
        let changes = TargetChanges::between(
            Target::Kernel(Family::V4),
            strings(&["a", "b", "b", "c"]),
            strings(&["b", "d", "a", "b", "b"]),
        );
        assert_eq!(changes.added, ["d", "b"]);
        assert_eq!(changes.removed, ["c"]);
        assert_eq!(changes.kept, 3);
        assert_eq!(changes.summary(), "IPv4: 5 rules");
    }

    #[test]
    fn summaries_name_the_target_as_the_operator_knows_it() {
        let diff = |target| TargetChanges {
            target,
            added: strings(&["x"]),
            removed: vec![],
            kept: 23,
        };
        assert_eq!(
            diff(Target::Runtime).summary(),
            "runtime: 1 added, 0 removed, 23 unchanged"
        );
        assert_eq!(
            diff(Target::File("/etc/firewalld/direct.xml".into())).summary(),
            "/etc/firewalld/direct.xml: 1 added, 0 removed, 23 unchanged"
        );
        assert_eq!(Target::File("/x".into()).name(), "direct.xml");
        assert_eq!(Target::Kernel(Family::V6).name(), "kernel ipv6");
    }

    #[test]
    fn the_document_has_every_key_even_when_nothing_is_known() {
        let mut report = Report::new("uninstall", true);
        report.notices.push(Notice {
            code: Code::NoIpv6Address,
            text: "IPv6: none".into(),
        });
        report.error = Some(Failure {
            message: "bad".into(),
            exit_status: 2,
        });
        let document: Value = serde_json::from_str(&report.document()).unwrap();
        assert_eq!(
            document,
            json!({
                "command": "uninstall", "dry_run": true, "changed": null, "backend": null,
                "targets": [], "notices": [{"code": "no-ipv6-address", "text": "IPv6: none"}],
                "summary": null, "error": {"message": "bad", "exit_status": 2},
            })
        );
    }
}
