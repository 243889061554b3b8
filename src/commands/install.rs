//! `install` (kumactl's `install transparent-proxy`).

use anyhow::{bail, Result};

use super::{placement, record};
use crate::cli::InstallArgs;
use crate::engine::{self, ssh, Kind, Purpose, Request};
use crate::error::BadInput;
use crate::format::report::Report;
use crate::format::restore;
use crate::system::{host, notice, say, Code};

/// Installs, filling in `report`; with `prints_plan`, a dry run prints its plan on stdout.
pub fn run(args: &InstallArgs, prints_plan: bool, report: &mut Report) -> Result<()> {
    if args.conflicting_dns_flags() {
        bail!(BadInput(
            "only one of '--redirect-dns' or '--redirect-all-dns-traffic' may be given".into()
        ));
    }
    // Holds the lock until the run ends.
    let mut prepared = engine::prepare(Request {
        files: &args.config,
        flags: args.overlay(),
        placement: placement(&args.firewalld, Some(args)),
        stdin: &mut std::io::stdin().lock(),
        purpose: Purpose::Install,
        reports_changes: !prints_plan,
    })?;
    let (config, ruleset, kind) = (&prepared.config, &prepared.ruleset, prepared.kind);
    let backend = &mut prepared.backend;
    report.dry_run = config.dry_run;
    report.backend = Some(backend.info());
    let session = std::env::var(ssh::SSH_CONNECTION).ok();
    if let Some(warning) = ssh::lockout_warning(config, session.as_deref()) {
        notice(Code::SshLockout, warning);
    }
    let plan = match backend.plan(ruleset) {
        Ok(plan) => plan,
        // Without root firewalld usually refuses to show its direct rules; the rules
        // themselves are still worth seeing.
        Err(error) if config.dry_run && kind == Kind::Firewalld && !host::is_root() => {
            notice(
                Code::PlanUnavailable,
                format!("{error:#}; showing the rules without firewalld's plan"),
            );
            if prints_plan {
                print!("{}", restore::render_dry_run(ruleset, config.verbose));
            }
            return Ok(());
        }
        Err(error) => return Err(error),
    };
    if config.dry_run {
        if prints_plan {
            print!("{plan}");
        }
        record(report, plan.expected());
        return Ok(());
    }
    match kind {
        Kind::Firewalld if !config.store_firewalld => notice(Code::RuntimeOnly, "rules go into firewalld's runtime only: `firewall-cmd --reload`, a restart or a reboot drops them (add --store-firewalld to keep them)"),
        Kind::Iptables => {
            if config.store_firewalld {
                notice(Code::NothingStored, format!(
                    "--store-firewalld: firewalld is not installed here ({} does not exist); nothing will be stored",
                    config.placement.firewalld_config_dir.display()
                ));
            }
            notice(Code::NothingPersists, format!(
                "applying with {}; nothing persists across reboots (no firewalld) unless tproxy-firewalld.service applies the rules at boot",
                backend.name()
            ));
        }
        _ => {}
    }
    engine::ready_host(ruleset)?;
    let outcome = backend.apply(plan)?;
    let summary = outcome.summary();
    let result = match (kind, outcome.changed) {
        (Kind::Firewalld, true) => format!("installed through {}: {}", backend.name(), summary.join("; ")),
        (Kind::Firewalld, false) => format!("already installed, nothing to change in {}: {}", backend.name(), summary.join("; ")),
        (Kind::Offline, _) => format!(
            "firewalld is not running: wrote our rules to {} (firewalld applies them when it starts) and applied them now with iptables; {}",
            config.placement.firewalld_config_dir.join("direct.xml").display(),
            summary.join("; ")
        ),
        (Kind::Iptables, true) => format!("installed; {}", summary.join(", ")),
        (Kind::Iptables, false) => format!("already installed, nothing to change; {}", summary.join(", ")),
    };
    say(&result);
    record(report, Some(outcome));
    report.summary = Some(result);
    Ok(())
}
