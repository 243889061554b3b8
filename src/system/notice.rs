//! Notices for the operator: one line each on stderr, so that stdout carries only data
//! (rules, plans, reports). Each has a stable code, and the run keeps them, so that a report
//! for scripts (`--output json`) can list them beside the text.

use std::fmt;
use std::sync::Mutex;

/// Declares [`Code`], its kebab-case names and [`Code::ALL`] from one list.
macro_rules! codes {
    ($($(#[$doc:meta])* $code:ident => $name:literal,)*) => {
        /// What a notice is about; the code is part of the JSON reports' stable shape.
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        pub enum Code {
            $($(#[$doc])* $code,)*
        }

        impl Code {
            /// Every code, in the order declared.
            pub const ALL: &[Code] = &[$(Code::$code),*];

            pub fn as_str(self) -> &'static str {
                match self {
                    $(Code::$code => $name,)*
                }
            }
        }
    };
}

codes! {
    /// firewalld's `RFC3964_IPv4=yes`: IPv4 rules only.
    Rfc3964Ipv4Only => "rfc3964-ipv4-only",
    /// A dry run with `--disable-firewalld-rfc3964-ipv4`: the switch it would make.
    Rfc3964WouldDisable => "rfc3964-would-disable",
    /// `RFC3964_IPv4=no` was set (and firewalld reloaded, when running).
    Rfc3964Disabled => "rfc3964-disabled",
    /// No non-loopback IPv6 address: IPv4 rules only.
    NoIpv6Address => "no-ipv6-address",
    /// No usable ip6tables: IPv6 rules are left alone.
    NoIp6tables => "no-ip6tables",
    /// resolv.conf names no name server of a family: no DNS redirection for it.
    NoDnsServers => "no-dns-servers",
    /// Docker's `DOCKER_OUTPUT` chain is not used under firewalld.
    DockerChain => "docker-chain",
    /// Raw iptables: nothing persists across reboots.
    NothingPersists => "nothing-persists",
    /// `--store-firewalld` without firewalld installed: nothing is stored.
    NothingStored => "nothing-stored",
    /// Rules go into firewalld's runtime only.
    RuntimeOnly => "runtime-only",
    /// firewalld's permanent configuration holds rules of an earlier stored install.
    PermanentHoldsEarlierInstall => "permanent-holds-earlier-install",
    /// `uninstall --keep-permanent` left our entries in the permanent configuration.
    PermanentKept => "permanent-kept",
    /// The SSH session's port is redirected to Envoy.
    SshLockout => "ssh-lockout",
    /// A dry run could not read the current state (not root): only the rules are shown.
    PlanUnavailable => "plan-unavailable",
    /// firewalld owns its bus name but answers no call yet: waiting for it.
    FirewalldStarting => "firewalld-starting",
    /// firewalld left the bus during the run: waiting for it to come back.
    FirewalldRestarting => "firewalld-restarting",
    /// firewalld reloaded or restarted, or another client changed our entries, during the
    /// run: read, planned and applied again.
    FirewalldDisrupted => "firewalld-disrupted",
    /// direct.xml was edited and firewalld has not read it yet: waiting for it.
    DirectXmlUnread => "direct-xml-unread",
    /// Another process wrote direct.xml while we planned: read and planned again.
    DirectXmlWrittenMeanwhile => "direct-xml-written-meanwhile",
    /// `translate --merge` of a direct.xml that does not exist.
    DirectXmlMissing => "direct-xml-missing",
    /// An iptables-restore attempt failed and is retried.
    RestoreRetry => "restore-retry",
    /// Another run holds the lock: waiting for it.
    LockWait => "lock-wait",
    /// Temporary files of an interrupted run were removed, or could not be looked for.
    StaleTemporaryFiles => "stale-temporary-files",
    /// An environment variable with our prefix that no setting has.
    UnknownEnvironmentVariable => "unknown-environment-variable",
}

/// A notice as the operator saw it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Notice {
    pub code: Code,
    pub text: String,
}

/// Every notice of this run so far; notices come from several threads.
static NOTICES: Mutex<Vec<Notice>> = Mutex::new(Vec::new());

/// A notice: one line on stderr, kept for the run's report.
pub fn notice(code: Code, message: impl fmt::Display) {
    let text = message.to_string();
    say(&text);
    NOTICES
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .push(Notice { code, text });
}

/// A line for the operator that is not a notice (a run's result): stderr only.
pub fn say(message: impl fmt::Display) {
    eprintln!("tproxy-firewalld: {message}");
}

/// The notices of this run so far, in the order they were given.
pub fn notices() -> Vec<Notice> {
    NOTICES
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .clone()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_distinct_and_kebab_case() {
        let mut codes: Vec<&str> = Code::ALL.iter().map(|c| c.as_str()).collect();
        assert!(codes.iter().all(|c| c
            .chars()
            .all(|ch| ch.is_ascii_lowercase() || ch.is_ascii_digit() || ch == '-')));
        codes.sort_unstable();
        codes.dedup();
        assert_eq!(codes.len(), Code::ALL.len());
    }

    #[test]
    fn a_notice_is_kept_with_its_code() {
        notice(Code::LockWait, format_args!("waiting {}", 1));
        assert!(notices().contains(&Notice {
            code: Code::LockWait,
            text: "waiting 1".into()
        }));
    }
}
