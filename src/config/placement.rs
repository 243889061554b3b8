//! What a run needs besides kumactl's settings: where the rules go, and how long to wait
//! for others (another run of ours, the system bus, a starting firewalld).

use std::path::PathBuf;
use std::time::Duration;

/// Where to apply the rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum BackendChoice {
    /// firewalld if it runs, else iptables (and direct.xml when firewalld is installed)
    Auto,
    /// firewalld's direct interface over D-Bus; fails when firewalld is not running
    Firewalld,
    /// Raw iptables-restore; refused while firewalld runs (it would flush the rules)
    Iptables,
}

/// Where rules go and what may happen to firewalld on the way.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Placement {
    pub backend: BackendChoice,
    /// firewalld's configuration directory (direct.xml, firewalld.conf).
    pub firewalld_config_dir: PathBuf,
    /// The operator accepts that firewalld 2.x flushes other tools' iptables rules when our
    /// first direct entry appears.
    pub accept_iptables_flush: bool,
    /// Set firewalld's RFC3964_IPv4=no (and reload it) so that IPv6 redirection works.
    pub disable_rfc3964_ipv4: bool,
}

impl Default for Placement {
    fn default() -> Self {
        Self {
            backend: BackendChoice::Auto,
            firewalld_config_dir: PathBuf::from(DEFAULT_FIREWALLD_CONFIG_DIR),
            accept_iptables_flush: false,
            disable_rfc3964_ipv4: false,
        }
    }
}

pub const DEFAULT_FIREWALLD_CONFIG_DIR: &str = "/etc/firewalld";

/// How long a run waits for others.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timeouts {
    /// For another run of ours to finish (the lock).
    pub lock: Duration,
    /// For the system bus to answer, for a starting firewalld, and for each of its answers.
    pub firewalld_start: Duration,
}

/// The environment variable for [`Timeouts::lock`], in whole seconds (0: fail at once).
pub const LOCK_TIMEOUT_ENV: &str = "TPROXY_FIREWALLD_LOCK_TIMEOUT";
/// The environment variable for [`Timeouts::firewalld_start`], in whole seconds.
pub const START_TIMEOUT_ENV: &str = "TPROXY_FIREWALLD_START_TIMEOUT";
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            lock: DEFAULT_TIMEOUT,
            firewalld_start: DEFAULT_TIMEOUT,
        }
    }
}

impl Timeouts {
    /// The timeouts `environment` sets, the defaults for those it does not; Err names the
    /// variable and what is wrong with it.
    pub fn from_environment(environment: &[(String, String)]) -> Result<Self, String> {
        let seconds = |name: &str| -> Result<Duration, String> {
            match environment.iter().rev().find(|(n, _)| n == name) {
                None => Ok(DEFAULT_TIMEOUT),
                Some((_, value)) => value
                    .trim()
                    .parse::<u64>()
                    .map(Duration::from_secs)
                    .map_err(|_| {
                        format!(
                            "{name}: '{}' is not a whole number of seconds",
                            value.escape_debug()
                        )
                    }),
            }
        };
        Ok(Self {
            lock: seconds(LOCK_TIMEOUT_ENV)?,
            firewalld_start: seconds(START_TIMEOUT_ENV)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeouts_come_from_the_environment_in_whole_seconds() {
        let env = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
            pairs
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect()
        };
        assert_eq!(Timeouts::from_environment(&[]), Ok(Timeouts::default()));
        let set = Timeouts::from_environment(&env(&[
            (LOCK_TIMEOUT_ENV, "0"),
            (START_TIMEOUT_ENV, " 5 "),
        ]));
        assert_eq!(
            set,
            Ok(Timeouts {
                lock: Duration::ZERO,
                firewalld_start: Duration::from_secs(5)
            })
        );
        let bad = Timeouts::from_environment(&env(&[(LOCK_TIMEOUT_ENV, "soon")]));
        assert_eq!(
            bad,
            Err("TPROXY_FIREWALLD_LOCK_TIMEOUT: 'soon' is not a whole number of seconds".into())
        );
    }
}
