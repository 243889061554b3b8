use anyhow::{bail, Result};
use serde_json::json;

use super::target::{self, Target};
use super::{detect_xtables, notice, print_changes, print_file_plan, restore_options};
use crate::backend::direct_file::DirectFile;
use crate::backend::firewalld::FirewalldBackend;
use crate::backend::iptables::IptablesBackend;
use crate::backend::offline::OfflineBackend;
use crate::backend::{Backend, Outcome};
use crate::cli::{executables_overlay, UninstallArgs};
use crate::config::settings::Settings;
use crate::config::sources;
use crate::direct::DirectConfig;
use crate::error::BadInput;
use crate::ruleset::Ruleset;
use crate::system::host;

pub fn run(args: &UninstallArgs) -> Result<()> {
    let mut tree = json!({});
    executables_overlay(&args.iptables_executables, &mut tree);
    let config = sources::deserialize(&tree)
        .and_then(Settings::into_config)
        .map_err(BadInput)?;
    if !args.dry_run && !host::is_root() {
        bail!("uninstall changes the firewall and needs root (use --dry-run to see what it would remove)");
    }
    // One run that changes the firewall at a time (crate::system::lock).
    let _lock =
        crate::system::lock::for_changes(args.dry_run, &args.firewalld.firewalld_config_dir)?;
    let nothing = Ruleset::default();
    let permanent_too = !args.keep_permanent;
    let target = target::choose(&args.firewalld, permanent_too)?;
    let (name, outcome) = match target {
        Target::Firewalld(firewalld) => {
            // The iptables binaries only check added rules; removing needs none.
            let mut backend = FirewalldBackend::new(
                firewalld,
                permanent_too,
                DirectFile::in_dir(&args.firewalld.firewalld_config_dir),
                Vec::new(),
                restore_options(&config),
            );
            if args.dry_run {
                let plan = backend.plan(&nothing)?;
                println!("### {}: runtime ###", backend.name());
                print_changes(&plan.runtime);
                if let Some((permanent, _)) = &plan.permanent {
                    println!(
                        "\n### {}: permanent configuration (direct.xml) ###",
                        backend.name()
                    );
                    print_changes(permanent);
                }
                return Ok(());
            }
            let outcome = backend.converge(&nothing)?;
            // The removal is done; a permanent configuration that cannot be read now only
            // goes without its notice.
            if let (true, Ok(permanent)) =
                (args.keep_permanent, backend.firewalld().permanent_config())
            {
                report_kept(&permanent, "at its next start or reload");
            }
            (backend.name(), outcome)
        }
        Target::Offline(dir) => {
            let xtables = detect_xtables(&config.executables)?;
            let mut backend = OfflineBackend::new(&dir, xtables, restore_options(&config));
            if args.dry_run {
                return print_file_plan(&backend, &nothing, args.verbose);
            }
            (backend.name(), backend.converge(&nothing)?)
        }
        Target::Iptables => {
            let xtables = detect_xtables(&config.executables)?;
            let mut backend = IptablesBackend::new(xtables, restore_options(&config));
            if args.dry_run {
                for (xtables, script) in backend.plan(&nothing)? {
                    println!(
                        "### {} ###\n\n{}",
                        xtables.family.label(),
                        script.trim_end()
                    );
                }
                return Ok(());
            }
            let outcome = backend.converge(&nothing)?;
            if args.keep_permanent {
                let file = DirectFile::in_dir(&args.firewalld.firewalld_config_dir);
                if let Ok(Some(loaded)) = file.load() {
                    report_kept(&loaded.document.config(), "when it starts");
                }
            }
            (backend.name(), outcome)
        }
    };
    report(&name, &outcome, args.verbose);
    Ok(())
}

/// Says that `permanent` (firewalld's permanent configuration) still holds entries of ours,
/// which firewalld applies `when`.
fn report_kept(permanent: &DirectConfig, when: &str) {
    let kept = permanent.owned();
    if !kept.is_empty() {
        notice(format!(
            "kept {} entries of ours in firewalld's permanent configuration (--keep-permanent): firewalld applies them {when}; uninstall without --keep-permanent removes them",
            kept.chains.len() + kept.rules.len() + kept.passthroughs.len()
        ));
    }
}

fn report(name: &str, outcome: &Outcome, verbose: bool) {
    if outcome.changed {
        notice(format!(
            "removed every transparent-proxy rule and chain ({name})"
        ));
    } else {
        notice("no transparent-proxy rules found; nothing to remove");
    }
    if verbose {
        outcome.summary.iter().for_each(notice);
    }
}
