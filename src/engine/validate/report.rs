//! A validation of this host: what status compares decides what to expect and which
//! families to check; [`super::validate`] sends the probes; each failure gets a diagnosis
//! from the same views status reads.

use std::net::SocketAddr;

use anyhow::{bail, Result};

use super::simulate::NatRules;
use super::{Cause, CheckResult, FamilySetup, Verdict};
use crate::backend::ViewKind;
use crate::config::IpFamilyMode;
use crate::direct::DirectConfig;
use crate::engine::status::{compare, Comparison, Desired};
use crate::error::BadInput;
use crate::family::Family;
use crate::system::host;
use crate::system::probe::Transport;

/// Drift lines shown per view in a diagnosis; `status` lists them all.
const DRIFT_LINES: usize = 3;

/// What a validation found.
pub struct Report {
    pub comparison: Comparison,
    /// One per check and family.
    pub results: Vec<CheckResult>,
    /// No family had rules of ours to validate.
    pub nothing_to_check: bool,
    pub passed: bool,
    /// For the failures: what the host shows.
    pub diagnosis: Vec<String>,
    /// Views that differ from the desired rules, one line each.
    pub drift: Vec<String>,
}

/// Validates this host against the desired rules, sending the outbound probes to `targets`
/// (per family; documentation addresses where none is given).
pub fn validate_host(desired: Desired<'_>, targets: &[SocketAddr]) -> Result<Report> {
    let targets = outbound_targets(targets)?;
    if !host::is_root() {
        bail!("validate needs root: it sends its probes as the kuma-dp user and as another user");
    }
    let comparison = compare(desired, true)?;
    let empty = DirectConfig::default();
    let kernel = kernel_entries(&comparison).unwrap_or(&empty);
    let mut setups = Vec::new();
    for family in families(&comparison, kernel) {
        let ipv = family.ipv();
        let desired = NatRules::of(&comparison.desired, ipv);
        // A family installed against the desired rules (IPv6 under RFC3964_IPv4=yes) is
        // checked against what is installed.
        let rules = if desired.is_empty() {
            NatRules::of(kernel, ipv)
        } else {
            desired
        };
        let kuma_dp = kuma_dp_uid(&comparison, &rules)?;
        setups.push(FamilySetup {
            family,
            rules,
            kuma_dp,
            target: targets[usize::from(family == Family::V6)],
            passthrough_address: family == Family::V4
                || host::has_ipv6_passthrough_address(&host::loopback_interface()),
        });
    }
    let results = super::validate(&setups)?;
    let passed = !setups.is_empty() && results.iter().all(|r| r.verdict != Verdict::Fail);
    let diagnosis = if passed {
        Vec::new()
    } else {
        diagnose(&comparison, kernel, &results, &setups)
    };
    let drift: Vec<String> = comparison
        .views
        .iter()
        .filter_map(|view| match comparison.drift(view) {
            Ok(drift) if !drift.is_empty() => Some(format!("{}: {}", view.name, drift.summary())),
            _ => None,
        })
        .collect();
    Ok(Report {
        comparison,
        results,
        nothing_to_check: setups.is_empty(),
        passed,
        diagnosis,
        drift,
    })
}

/// One outbound destination per family, `--target` where given: never this host's own
/// (its traffic goes through the loopback, which the rules leave alone).
fn outbound_targets(given: &[SocketAddr]) -> Result<[SocketAddr; 2], BadInput> {
    let mut targets = [Family::V4, Family::V6].map(super::default_target);
    let mut seen = [false; 2];
    for target in given {
        let index = usize::from(target.is_ipv6());
        if seen[index] {
            return Err(BadInput(format!(
                "--target: {} given twice for {}",
                targets[index].ip(),
                if target.is_ipv6() { "IPv6" } else { "IPv4" }
            )));
        }
        if super::is_local(target.ip()) {
            return Err(BadInput(format!(
                "--target: {} is an address of this host; the outbound checks need one outside it",
                target.ip()
            )));
        }
        seen[index] = true;
        targets[index] = *target;
    }
    Ok(targets)
}

fn kernel_entries(comparison: &Comparison) -> Option<&DirectConfig> {
    comparison
        .view(ViewKind::Kernel)
        .and_then(|view| view.entries.as_ref().ok())
}

fn has_rules(config: &DirectConfig, ipv: &str) -> bool {
    config.owned().rules.iter().any(|r| r.ipv == ipv)
}

/// The families with rules of ours, desired or in the kernel; IPv6 only in dual-stack mode
/// on a host with an IPv6 address (as kumactl's validator).
fn families(comparison: &Comparison, kernel: &DirectConfig) -> Vec<Family> {
    let ipv4_only = comparison
        .config
        .as_ref()
        .is_some_and(|c| c.ip_family_mode == IpFamilyMode::Ipv4);
    [Family::V4, Family::V6]
        .into_iter()
        .filter(|family| {
            let ipv = family.ipv();
            has_rules(&comparison.desired, ipv) || has_rules(kernel, ipv)
        })
        .filter(|family| *family == Family::V4 || (!ipv4_only && host::has_non_loopback_ipv6()))
        .collect()
}

/// The UID kuma-dp runs as: the user given (flags or configuration), else the one the rules
/// single out.
fn kuma_dp_uid(comparison: &Comparison, rules: &NatRules) -> Result<u32> {
    let given = comparison
        .config
        .as_ref()
        .and_then(|c| c.kuma_dp_user.as_deref());
    if given.is_none() {
        if let Some(uid) = rules.kuma_dp_uids().first() {
            return Ok(*uid);
        }
    }
    Ok(host::resolve_kuma_dp_uid(given).map_err(BadInput)?)
}

/// What the host shows about the failures: most specific first, then drift as status sees it.
fn diagnose(
    comparison: &Comparison,
    kernel: &DirectConfig,
    results: &[CheckResult],
    setups: &[FamilySetup],
) -> Vec<String> {
    let mut lines = Vec::new();
    for result in results {
        if let Some(Cause::PortInUse(address, transport)) = &result.cause {
            let transport = match transport {
                Transport::Tcp => "TCP",
                Transport::Udp => "UDP",
            };
            let line = format!(
                "{transport} {address} is already in use: is Envoy (kuma-dp) running? validate before kuma-dp starts, or pass the ports the rules were installed with"
            );
            if !lines.contains(&line) {
                lines.push(line);
            }
        }
    }
    let ipv6_failed = results
        .iter()
        .any(|r| r.family == Family::V6 && r.verdict == Verdict::Fail);
    if comparison.rfc3964_ipv4 == Some(true) && has_rules(kernel, "ipv6") && ipv6_failed {
        lines.push("firewalld's RFC3964_IPv4=yes rejects traffic to ::/96, which holds ::1 where IPv6 redirection delivers, yet IPv6 rules of ours are in the kernel: install again (IPv4 rules only there), or set RFC3964_IPv4=no with install --disable-firewalld-rfc3964-ipv4".to_string());
    }
    let holds_none = |kind| {
        comparison
            .view(kind)
            .is_some_and(|v| v.entries.as_ref().is_ok_and(|e| e.rules.is_empty()))
    };
    if holds_none(ViewKind::Runtime)
        && holds_none(ViewKind::Permanent)
        && !comparison.desired.rules.is_empty()
    {
        lines.push("firewalld holds none of our rules, at runtime or in its permanent configuration: rules installed without --store-firewalld are gone after `firewall-cmd --reload`, a restart or a reboot; install again with --store-firewalld".to_string());
    }
    for setup in setups {
        let installed = NatRules::of(kernel, setup.family.ipv()).kuma_dp_uids();
        if !installed.is_empty() && !installed.contains(&setup.kuma_dp) {
            lines.push(format!(
                "{}: the rules in the kernel treat UID {} as kuma-dp's, but kuma-dp runs as UID {}: install again with the user kuma-dp runs as (--kuma-dp-user), or validate with it",
                setup.family.label(),
                join(&installed),
                setup.kuma_dp
            ));
        }
        for uid in installed {
            let known = host::account_by_uid(uid).is_some();
            let line = format!("no user on this host has UID {uid}, which the rules in the kernel treat as kuma-dp's");
            if !known && !lines.contains(&line) {
                lines.push(line);
            }
        }
    }
    for view in &comparison.views {
        match comparison.drift(view) {
            Ok(drift) if !drift.is_empty() => {
                lines.push(format!(
                    "{}: {} (as status sees it)",
                    view.name,
                    drift.summary()
                ));
                let details = drift.lines();
                lines.extend(details.iter().take(DRIFT_LINES).map(|l| format!("  {l}")));
                if details.len() > DRIFT_LINES {
                    lines.push(format!(
                        "  … and {} more (tproxy-firewalld status lists them)",
                        details.len() - DRIFT_LINES
                    ));
                }
            }
            Err(why) => lines.push(format!("{}: not checked ({why})", view.name)),
            Ok(_) => {}
        }
    }
    if lines.is_empty() {
        lines.push(format!(
            "the rules are as desired (from {}) everywhere status looks; see the failed checks above",
            comparison.source
        ));
    }
    lines
}

fn join(uids: &[u32]) -> String {
    uids.iter()
        .map(u32::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}
