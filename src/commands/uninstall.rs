//! `uninstall` (kumactl's `uninstall transparent-proxy`): every rule and chain of ours goes,
//! nothing else.

use anyhow::Result;
use serde_json::json;

use super::{placement, record};
use crate::backend::direct_file::DirectFile;
use crate::cli::{executables_overlay, UninstallArgs};
use crate::direct::DirectConfig;
use crate::engine::{self, Kind, Removal};
use crate::format::report::Report;
use crate::system::{notice, say, Code};

/// Uninstalls, filling in `report`; with `prints_plan`, a dry run prints its plan on stdout.
pub fn run(args: &UninstallArgs, prints_plan: bool, report: &mut Report) -> Result<()> {
    let mut flags = json!({"dryRun": args.dry_run, "verbose": args.verbose});
    executables_overlay(&args.iptables_executables, &mut flags);
    // Holds the lock until the run ends.
    let mut prepared = engine::prepare_removal(Removal {
        flags,
        placement: placement(&args.firewalld, None),
        permanent_too: !args.keep_permanent,
        reports_changes: !prints_plan,
    })?;
    let (config, ruleset, kind) = (&prepared.config, &prepared.ruleset, prepared.kind);
    let backend = &mut prepared.backend;
    report.backend = Some(backend.info());
    let plan = backend.plan(ruleset)?;
    if config.dry_run {
        if prints_plan {
            print!("{plan}");
        }
        record(report, plan.expected());
        return Ok(());
    }
    let outcome = backend.apply(plan)?;
    if args.keep_permanent {
        // The removal is done; a configuration that cannot be read now only goes without
        // its notice.
        let kept = match kind {
            Kind::Firewalld => backend.observe().ok().and_then(|o| {
                let permanent = o.views.into_iter().next()?;
                permanent
                    .entries
                    .ok()
                    .map(|e| (e, "at its next start or reload"))
            }),
            _ => DirectFile::in_dir(&config.placement.firewalld_config_dir)
                .load()
                .ok()
                .flatten()
                .map(|l| (l.document.config().owned(), "when it starts")),
        };
        if let Some((kept, when)) = kept {
            report_kept(&kept, when);
        }
    }
    let result = if outcome.changed {
        format!(
            "removed every transparent-proxy rule and chain ({})",
            backend.name()
        )
    } else {
        "no transparent-proxy rules found; nothing to remove".to_string()
    };
    say(&result);
    if config.verbose {
        outcome.summary().iter().for_each(say);
    }
    record(report, Some(outcome));
    report.summary = Some(result);
    Ok(())
}

/// Says that `kept` (firewalld's permanent configuration) still holds entries of ours,
/// which firewalld applies `when`.
fn report_kept(kept: &DirectConfig, when: &str) {
    if !kept.is_empty() {
        notice(Code::PermanentKept, format!(
            "kept {} entries of ours in firewalld's permanent configuration (--keep-permanent): firewalld applies them {when}; uninstall without --keep-permanent removes them",
            kept.chains.len() + kept.rules.len() + kept.passthroughs.len()
        ));
    }
}
