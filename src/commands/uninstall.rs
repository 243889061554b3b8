use anyhow::{bail, Result};
use serde_json::json;

use super::{detect_xtables, notice, restore_options, BadInput};
use crate::backend::iptables::IptablesBackend;
use crate::backend::Backend;
use crate::cli::{executables_overlay, UninstallArgs};
use crate::config::settings::Settings;
use crate::config::sources;
use crate::host;
use crate::ruleset::Ruleset;

pub fn run(args: &UninstallArgs) -> Result<()> {
    let mut tree = json!({});
    executables_overlay(&args.iptables_executables, &mut tree);
    let config = sources::deserialize(&tree)
        .and_then(Settings::into_config)
        .map_err(BadInput)?;
    if !args.dry_run && !host::is_root() {
        bail!("uninstall changes the firewall and needs root (use --dry-run to see what it would remove)");
    }
    let xtables = detect_xtables(&config.executables)?;
    let mut backend = IptablesBackend::new(xtables, restore_options(&config));
    let nothing = Ruleset::default();
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
    if outcome.changed {
        notice(format!(
            "removed every transparent-proxy rule and chain ({})",
            backend.name()
        ));
    } else {
        notice("no transparent-proxy rules found; nothing to remove");
    }
    if args.verbose {
        outcome.summary.iter().for_each(notice);
    }
    Ok(())
}
