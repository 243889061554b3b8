//! `install` (kumactl's `install transparent-proxy`).

use anyhow::{bail, Result};

use super::placement;
use crate::cli::InstallArgs;
use crate::engine::{self, ssh, Kind, Purpose, Request};
use crate::error::BadInput;
use crate::format::restore;
use crate::system::{host, notice};

pub fn run(args: &InstallArgs) -> Result<()> {
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
    })?;
    let (config, ruleset, kind) = (&prepared.config, &prepared.ruleset, prepared.kind);
    let backend = &mut prepared.backend;
    let session = std::env::var(ssh::SSH_CONNECTION).ok();
    if let Some(warning) = ssh::lockout_warning(config, session.as_deref()) {
        notice(warning);
    }
    let plan = match backend.plan(ruleset) {
        Ok(plan) => plan,
        // Without root firewalld usually refuses to show its direct rules; the rules
        // themselves are still worth seeing.
        Err(error) if config.dry_run && kind == Kind::Firewalld && !host::is_root() => {
            notice(format!(
                "{error:#}; showing the rules without firewalld's plan"
            ));
            print!("{}", restore::render_dry_run(ruleset, config.verbose));
            return Ok(());
        }
        Err(error) => return Err(error),
    };
    if config.dry_run {
        print!("{plan}");
        return Ok(());
    }
    match kind {
        Kind::Firewalld if !config.store_firewalld => notice("rules go into firewalld's runtime only: `firewall-cmd --reload`, a restart or a reboot drops them (add --store-firewalld to keep them)"),
        Kind::Iptables => {
            if config.store_firewalld {
                notice(format!(
                    "--store-firewalld: firewalld is not installed here ({} does not exist); nothing will be stored",
                    config.placement.firewalld_config_dir.display()
                ));
            }
            notice(format!(
                "applying with {}; nothing persists across reboots (no firewalld) unless tproxy-firewalld.service applies the rules at boot",
                backend.name()
            ));
        }
        _ => {}
    }
    engine::ready_host(ruleset)?;
    let outcome = backend.apply(plan)?;
    notice(match (kind, outcome.changed) {
        (Kind::Firewalld, true) => format!("installed through {}: {}", backend.name(), outcome.summary.join("; ")),
        (Kind::Firewalld, false) => format!("already installed, nothing to change in {}: {}", backend.name(), outcome.summary.join("; ")),
        (Kind::Offline, _) => format!(
            "firewalld is not running: wrote our rules to {} (firewalld applies them when it starts) and applied them now with iptables; {}",
            config.placement.firewalld_config_dir.join("direct.xml").display(),
            outcome.summary.join("; ")
        ),
        (Kind::Iptables, true) => format!("installed; {}", outcome.summary.join(", ")),
        (Kind::Iptables, false) => format!("already installed, nothing to change; {}", outcome.summary.join(", ")),
    });
    Ok(())
}
