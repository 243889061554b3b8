use std::io;

use anyhow::{bail, Result};

use super::{detect_xtables, notice, restore_options, BadInput};
use crate::backend::iptables::IptablesBackend;
use crate::backend::xtables::Xtables;
use crate::backend::Backend;
use crate::cli::InstallArgs;
use crate::config::{self, Config, IpFamilyMode, Sources};
use crate::format::restore;
use crate::host;
use crate::ruleset::{self, Family, FamilyFacts, Features};

pub fn run(args: &InstallArgs) -> Result<()> {
    if args.conflicting_dns_flags() {
        bail!(BadInput(
            "only one of '--redirect-dns' or '--redirect-all-dns-traffic' may be given".into()
        ));
    }
    let loaded = config::load(Sources {
        files: &args.config,
        environment: std::env::vars().collect(),
        flags: args.overlay(),
        stdin: &mut io::stdin().lock(),
    })
    .map_err(|e| BadInput(e.to_string()))?;
    loaded.warnings.iter().for_each(notice);
    let config = loaded.config;
    let uid = host::resolve_kuma_dp_uid(config.kuma_dp_user.as_deref()).map_err(BadInput)?;
    let families = families(&config);

    if config.dry_run {
        // A dry run needs no root and no iptables: probe what can be probed, assume the rest.
        let xtables = if host::is_root() {
            detect_xtables(&config.executables).unwrap_or_default()
        } else {
            Vec::new()
        };
        let facts = gather_facts(&config, uid, &families, &xtables, true)?;
        print!(
            "{}",
            restore::render_dry_run(&ruleset::build(&config, &facts), config.verbose)
        );
        return Ok(());
    }
    if !host::is_root() {
        bail!(
            "install changes the firewall and needs root (use --dry-run to only print the rules)"
        );
    }
    if config.store_firewalld {
        notice("--store-firewalld: the firewalld backend is not available in this build; applying with iptables, rules will not survive a reboot");
    }
    let xtables = detect_xtables(&config.executables)?;
    let facts = gather_facts(&config, uid, &families, &xtables, false)?;
    let desired = ruleset::build(&config, &facts);
    if desired.family(Family::V6).is_some() {
        host::ensure_ipv6_passthrough_address(&host::loopback_interface())?;
    }
    let mut backend = IptablesBackend::new(xtables, restore_options(&config));
    notice(format!(
        "applying with {} (nothing persists across reboots without firewalld)",
        backend.name()
    ));
    let outcome = backend.converge(&desired)?;
    notice(format!("installed; {}", outcome.summary.join(", ")));
    Ok(())
}

/// IPv4 always; IPv6 in dual-stack mode when the host has a non-loopback IPv6 address.
fn families(config: &Config) -> Vec<Family> {
    let mut families = vec![Family::V4];
    if config.ip_family_mode == IpFamilyMode::DualStack {
        if host::has_non_loopback_ipv6() {
            families.push(Family::V6);
        } else {
            notice("IPv6: no non-loopback IPv6 address on this host; installing IPv4 rules only");
        }
    }
    families
}

fn family_facts(
    config: &Config,
    uid: u32,
    family: Family,
    features: Features,
) -> Result<FamilyFacts> {
    let dns_servers = if config.dns.enabled && !config.dns.capture_all {
        let servers: Vec<_> = host::read_dns_servers(&config.dns.resolv_conf)?
            .into_iter()
            .filter(|ip| Family::of(*ip) == family)
            .collect();
        if servers.is_empty() {
            notice(format!(
                "{}: no {0} DNS servers in {}; DNS redirection is off for {0}",
                family.label(),
                config.dns.resolv_conf.display()
            ));
        }
        servers
    } else {
        Vec::new()
    };
    Ok(FamilyFacts {
        family,
        uid,
        loopback: host::loopback_interface(),
        dns_servers,
        features,
    })
}

/// Facts for each family. A family without iptables is skipped; with `assume_features`
/// (dry run) it gets every feature instead, as do failed probes.
fn gather_facts(
    config: &Config,
    uid: u32,
    families: &[Family],
    xtables: &[Xtables],
    assume_features: bool,
) -> Result<Vec<FamilyFacts>> {
    let mut facts = Vec::new();
    for family in families {
        let features = match xtables.iter().find(|x| x.family == *family) {
            Some(x) if assume_features => x.features().unwrap_or_default(),
            Some(x) => x.features()?,
            None if assume_features => Features::default(),
            None => continue,
        };
        facts.push(family_facts(config, uid, *family, features)?);
    }
    Ok(facts)
}
