//! `uninstall` (kumactl's `uninstall transparent-proxy`): every rule and chain of ours goes,
//! nothing else.

use anyhow::Result;
use serde_json::json;

use super::placement;
use crate::backend::direct_file::DirectFile;
use crate::cli::{executables_overlay, UninstallArgs};
use crate::direct::DirectConfig;
use crate::engine::{self, Kind, Removal};
use crate::system::notice;

pub fn run(args: &UninstallArgs) -> Result<()> {
    let mut flags = json!({"dryRun": args.dry_run, "verbose": args.verbose});
    executables_overlay(&args.iptables_executables, &mut flags);
    // Holds the lock until the run ends.
    let mut prepared = engine::prepare_removal(Removal {
        flags,
        placement: placement(&args.firewalld, None),
        permanent_too: !args.keep_permanent,
    })?;
    let (config, ruleset, kind) = (&prepared.config, &prepared.ruleset, prepared.kind);
    let backend = &mut prepared.backend;
    let plan = backend.plan(ruleset)?;
    if config.dry_run {
        print!("{plan}");
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
    if outcome.changed {
        notice(format!(
            "removed every transparent-proxy rule and chain ({})",
            backend.name()
        ));
    } else {
        notice("no transparent-proxy rules found; nothing to remove");
    }
    if config.verbose {
        outcome.summary.iter().for_each(notice);
    }
    Ok(())
}

/// Says that `kept` (firewalld's permanent configuration) still holds entries of ours,
/// which firewalld applies `when`.
fn report_kept(kept: &DirectConfig, when: &str) {
    if !kept.is_empty() {
        notice(format!(
            "kept {} entries of ours in firewalld's permanent configuration (--keep-permanent): firewalld applies them {when}; uninstall without --keep-permanent removes them",
            kept.chains.len() + kept.rules.len() + kept.passthroughs.len()
        ));
    }
}
