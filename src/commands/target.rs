//! Where rules go: a running firewalld, direct.xml of a stopped one (plus iptables for
//! now), or raw iptables. Never both firewalld and raw iptables while firewalld runs: its
//! next reload would flush what we wrote behind its back.

use anyhow::{bail, Result};

use std::path::PathBuf;

use crate::backend::firewalld::{self, Firewalld, Presence};
use crate::cli::{BackendChoice, FirewalldArgs};

pub enum Target {
    Firewalld(Box<Firewalld>),
    /// firewalld is installed but stopped: its direct.xml, and iptables until it starts.
    Offline(PathBuf),
    Iptables,
}

/// Picks the target. `uses_file`: whether direct.xml of a stopped firewalld is wanted
/// (install with --store-firewalld, and uninstall).
pub fn choose(args: &FirewalldArgs, uses_file: bool) -> Result<Target> {
    choose_given(args, uses_file, firewalld::find()?)
}

/// Like [`choose`], with firewalld's presence already asked for.
pub fn choose_given(args: &FirewalldArgs, uses_file: bool, presence: Presence) -> Result<Target> {
    if let Presence::NotRunning(state) = &presence {
        if args.backend != BackendChoice::Iptables {
            bail!(not_running(state));
        }
    }
    match args.backend {
        BackendChoice::Firewalld => match presence {
            Presence::Running(firewalld) => Ok(Target::Firewalld(firewalld)),
            _ => bail!(
                "--backend firewalld: firewalld is not on the system bus (is it running? `systemctl start firewalld`); nothing was changed"
            ),
        },
        BackendChoice::Iptables => match presence {
            Presence::Running(_) => bail!(
                "--backend iptables: firewalld is running and would flush rules written behind its back at its next reload; use --backend firewalld (or stop firewalld); nothing was changed"
            ),
            _ => Ok(Target::Iptables),
        },
        BackendChoice::Auto => match presence {
            Presence::Running(firewalld) => Ok(Target::Firewalld(firewalld)),
            _ if uses_file && args.firewalld_config_dir.is_dir() => {
                Ok(Target::Offline(args.firewalld_config_dir.clone()))
            }
            _ => Ok(Target::Iptables),
        },
    }
}

fn not_running(state: &str) -> String {
    match state {
        "FAILED" => "firewalld is in FAILED state (it could not apply its configuration and runs its failsafe rules): check `journalctl -u firewalld` and `firewall-cmd --check-config`, fix the configuration and restart firewalld; nothing was changed".to_string(),
        "INIT" => "firewalld is still starting: run again once `firewall-cmd --state` prints running; nothing was changed".to_string(),
        other => format!("firewalld reports state {other}, not RUNNING; nothing was changed"),
    }
}
