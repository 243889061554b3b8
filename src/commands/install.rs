use std::io;

use anyhow::{anyhow, bail, Result};

use super::target::{self, Target};
use super::{
    detect_xtables_preferring, notice, print_changes, print_file_plan, restore_options, ssh,
};
use crate::backend::applied;
use crate::backend::direct_file::DirectFile;
use crate::backend::firewalld::{self, Asked, Bus, Firewalld, FirewalldBackend, Presence, Reading};
use crate::backend::iptables::IptablesBackend;
use crate::backend::offline::{self, OfflineBackend};
use crate::backend::xtables::{self, Xtables};
use crate::backend::Backend;
use crate::cli::InstallArgs;
use crate::config::{self, Config, IpFamilyMode, Sources};
use crate::error::BadInput;
use crate::family::Family;
use crate::format::{direct_xml, restore};
use crate::host;
use crate::lock::Lock;
use crate::ruleset::{self, FamilyFacts, Features, Ruleset};

/// The rules `args` ask for and where they would go.
pub(super) struct Desired {
    /// Held until the run ends when it changes the firewall (crate::lock).
    pub lock: Option<Lock>,
    pub config: Config,
    pub target: Target,
    pub ruleset: Ruleset,
    pub xtables: Vec<Xtables>,
    /// firewalld's configurations, being read while the rules were built (install only).
    pub reading: Option<Reading>,
    /// The tables were not read: a raw install with no record of earlier rules of ours
    /// tries [`IptablesBackend::install_fresh`] first. The rules then assume no Docker
    /// `DOCKER_OUTPUT` chain; `facts` rebuild them from the tables otherwise.
    pub fresh: bool,
    /// What `ruleset` was built from.
    pub facts: Vec<FamilyFacts>,
}

/// Loads the configuration and builds the rules as install does. `read_only` (status, and
/// any dry run) changes nothing on the host, not even firewalld's RFC3964_IPv4 setting.
pub(super) fn prepare(args: &InstallArgs, read_only: bool) -> Result<Desired> {
    if args.conflicting_dns_flags() {
        bail!(BadInput(
            "only one of '--redirect-dns' or '--redirect-all-dns-traffic' may be given".into()
        ));
    }
    // The bus handshake (two round trips) runs beside loading the configuration and taking
    // the lock; nothing is asked of firewalld before the lock is held.
    let bus = std::thread::spawn(firewalld::connect);
    let loaded = config::load(Sources {
        files: &args.config,
        environment: environment()?,
        flags: args.overlay(),
        stdin: &mut io::stdin().lock(),
        changes_firewall: !read_only && !args.dry_run(),
    })
    .map_err(|e| BadInput(e.to_string()))?;
    loaded.warnings.iter().for_each(notice);
    let config = loaded.config;
    // Status only compares; install, dry run or not, plans against firewalld's state.
    let plans = !read_only;
    let read_only = read_only || config.dry_run;
    let uid = host::resolve_kuma_dp_uid(config.kuma_dp_user.as_deref()).map_err(BadInput)?;
    if !read_only {
        // Before anything is read or changed: the rules this configuration gives anywhere.
        refuse_unrecognisable(&config, &ruleset::build(&config, &[typical_facts(uid)]))?;
    }
    if !read_only && !host::is_root() {
        bail!(
            "install changes the firewall and needs root (use --dry-run to only print the rules)"
        );
    }
    // One run that changes the firewall at a time; taken before anything is read, so the
    // plan is made from the state this run will change.
    let lock = crate::lock::for_changes(read_only, &args.firewalld.firewalld_config_dir)?;
    // Without changes to make, root and iptables are optional: probe what can be probed,
    // assume the rest.
    let detect = |mode, read_tables| -> Result<Vec<Xtables>> {
        if !read_only {
            detect_xtables_preferring(&config.executables, mode, read_tables)
        } else if host::is_root() {
            Ok(
                detect_xtables_preferring(&config.executables, mode, read_tables)
                    .unwrap_or_default(),
            )
        } else {
            Ok(Vec::new())
        }
    };
    let bus = bus
        .join()
        .map_err(|_| anyhow!("connecting to the system bus failed"))??;
    let asked = bus.map(Bus::ask).transpose()?;
    // With firewalld on the bus, and nothing going to reload it before the plan (only turning
    // RFC3964_IPv4 off does), its configurations are asked for now, queued behind its state
    // and settings: firewalld answers one call at a time.
    let early_reading = match &asked {
        Some(asked) if !args.disable_firewalld_rfc3964_ipv4 => {
            plans.then(|| asked.read_in_background()).transpose()?
        }
        _ => None,
    };
    let presence = asked.map_or(Ok(Presence::Absent), Asked::presence)?;
    let target = target::choose_given(&args.firewalld, config.store_firewalld, presence)?;
    let ipv6_allowed = ipv6_allowed(&target, args, &config, read_only)?;
    let families = families(&config, ipv6_allowed);
    let fresh = matches!(target, Target::Iptables)
        && !read_only
        && !families.iter().any(|f| applied::is_recorded(*f));
    let (reading, xtables) = match &target {
        // The tables are read only if a change needs them: Docker's chain, which the rules
        // depend on, is asked of nf_tables directly, and a save would compete with
        // firewalld for the CPU while it answers.
        Target::Firewalld(firewalld) => (
            // Read after any reload above.
            match early_reading {
                Some(reading) => Some(reading),
                None => plans.then(|| firewalld.read_in_background()).transpose()?,
            },
            detect(xtables::firewalld_mode(), false)?,
        ),
        _ => (None, detect(None, !fresh)?),
    };
    let mut facts = gather_facts(&config, uid, &families, &xtables, read_only, fresh)?;
    if matches!(target, Target::Firewalld(_) | Target::Offline(_)) {
        without_docker_chain(&mut facts);
    }
    let ruleset = ruleset::build(&config, &facts);
    if !read_only {
        // Comments also go when iptables lacks the comment match.
        refuse_unrecognisable(&config, &ruleset)?;
    }
    Ok(Desired {
        lock,
        config,
        target,
        ruleset,
        xtables,
        reading,
        fresh,
        facts,
    })
}

/// The environment as text. `std::env::vars()` panics on a variable that is not UTF-8;
/// such a variable is skipped unless it is one of ours (`KUMA_TRANSPARENT_PROXY_*`), which
/// is bad input.
fn environment() -> Result<Vec<(String, String)>, BadInput> {
    let mut vars = Vec::new();
    for (name, value) in std::env::vars_os() {
        match (name.into_string(), value.into_string()) {
            (Ok(name), Ok(value)) => vars.push((name, value)),
            (name, _) => {
                let name = name.unwrap_or_else(|n| n.to_string_lossy().into_owned());
                if name.starts_with(config::sources::ENV_PREFIX) {
                    return Err(BadInput(format!(
                        "environment variable {}: not valid UTF-8",
                        name.escape_debug()
                    )));
                }
            }
        }
    }
    Ok(vars)
}

pub fn run(args: &InstallArgs) -> Result<()> {
    let Desired {
        lock: _lock,
        config,
        target,
        ruleset: desired,
        xtables,
        reading,
        fresh,
        facts,
    } = prepare(args, false)?;
    let session = std::env::var(ssh::SSH_CONNECTION).ok();
    if let Some(warning) = ssh::lockout_warning(&config, session.as_deref()) {
        notice(warning);
    }
    match target {
        Target::Firewalld(firewalld) => {
            with_firewalld(firewalld, reading, args, &config, xtables, &desired)
        }
        Target::Offline(dir) => {
            let mut backend = OfflineBackend::new(&dir, xtables, restore_options(&config));
            if config.dry_run {
                return print_file_plan(&backend, &desired, config.verbose);
            }
            prepare_ipv6(&desired)?;
            let outcome = backend.converge(&desired)?;
            notice(format!(
                "firewalld is not running: wrote our rules to {} (firewalld applies them when it starts) and applied them now with iptables; {}",
                backend.file().path().display(),
                outcome.summary.join("; ")
            ));
            Ok(())
        }
        Target::Iptables => {
            if config.dry_run {
                print!("{}", restore::render_dry_run(&desired, config.verbose));
                return Ok(());
            }
            prepare_ipv6(&desired)?;
            // The clones share what was read of the tables.
            let mut backend = IptablesBackend::new(xtables.clone(), restore_options(&config));
            if config.store_firewalld {
                notice(format!(
                    "--store-firewalld: firewalld is not installed here ({} does not exist); nothing will be stored",
                    args.firewalld.firewalld_config_dir.display()
                ));
            }
            notice(format!(
                "applying with {}; nothing persists across reboots (no firewalld)",
                backend.name()
            ));
            let installed = if fresh {
                let docker_chain_matters =
                    ruleset::build(&config, &with_docker_chain(&facts)) != desired;
                backend.install_fresh(&desired, docker_chain_matters)?
            } else {
                None
            };
            let outcome = match installed {
                Some(outcome) => outcome,
                // The tables were not as assumed (Docker's chain changes the rules).
                None if fresh => {
                    let facts = with_features_from_tables(facts, &xtables)?;
                    backend.converge(&ruleset::build(&config, &facts))?
                }
                None => backend.converge(&desired)?,
            };
            let done = if outcome.changed {
                "installed"
            } else {
                "already installed, nothing to change"
            };
            notice(format!("{done}; {}", outcome.summary.join(", ")));
            Ok(())
        }
    }
}

fn with_firewalld(
    firewalld: Box<Firewalld>,
    reading: Option<Reading>,
    args: &InstallArgs,
    config: &Config,
    xtables: Vec<Xtables>,
    desired: &Ruleset,
) -> Result<()> {
    let store = config.store_firewalld;
    let mut backend = FirewalldBackend::new(
        firewalld,
        store,
        DirectFile::in_dir(&args.firewalld.firewalld_config_dir),
        xtables,
        restore_options(config),
    )
    .accept_iptables_flush(args.accept_firewalld_iptables_flush)
    .with_reading(reading);
    if config.dry_run {
        let plan = match backend.plan(desired) {
            Ok(plan) => plan,
            // Without root firewalld usually refuses to show its direct rules; the rules
            // themselves are still worth seeing.
            Err(error) if !host::is_root() => {
                notice(format!(
                    "{error:#}; showing the rules without firewalld's plan"
                ));
                print!("{}", restore::render_dry_run(desired, config.verbose));
                return Ok(());
            }
            Err(error) => return Err(error),
        };
        println!("### {}: runtime ###", backend.name());
        print_changes(&plan.runtime);
        if let Some((permanent, settings)) = &plan.permanent {
            println!(
                "\n### {}: permanent configuration (direct.xml) ###",
                backend.name()
            );
            print_changes(permanent);
            println!("\n### resulting direct.xml, as firewalld writes it ###");
            print!("{}", direct_xml::render(settings));
        }
        return Ok(());
    }
    if !store {
        notice("rules go into firewalld's runtime only: `firewall-cmd --reload`, a restart or a reboot drops them (add --store-firewalld to keep them)");
    }
    prepare_ipv6(desired)?;
    let outcome = backend.converge(desired)?;
    let done = if outcome.changed {
        "installed through"
    } else {
        "already installed, nothing to change in"
    };
    notice(format!(
        "{done} {}: {}",
        backend.name(),
        outcome.summary.join("; ")
    ));
    Ok(())
}

fn prepare_ipv6(desired: &Ruleset) -> Result<()> {
    if desired.family(Family::V6).is_some() {
        host::ensure_ipv6_passthrough_address(&host::loopback_interface())?;
    }
    Ok(())
}

/// IPv4 on a host with every iptables feature and one name server.
fn typical_facts(uid: u32) -> FamilyFacts {
    FamilyFacts {
        family: Family::V4,
        uid,
        loopback: "lo".into(),
        dns_servers: vec![std::net::Ipv4Addr::new(192, 0, 2, 53).into()],
        features: Features::default(),
    }
}

/// Refuses rules that no later run could tell from foreign ones once applied
/// ([`Ruleset::unrecognisable`]): they could be neither verified, nor replaced, nor removed.
fn refuse_unrecognisable(config: &Config, ruleset: &Ruleset) -> Result<()> {
    let Some((table, rule)) = ruleset.unrecognisable().into_iter().next() else {
        return Ok(());
    };
    let what = format!(
        "rules such as {table} {} -j {} would sit in built-in chains with no comment and no jump into our chains, so no later run could tell them from foreign rules to verify, replace or remove them",
        rule.chain,
        rule.target().as_deref().unwrap_or("…")
    );
    if config.comments {
        bail!("iptables here has no comment match (libxt_comment): {what}; install it, or leave out what adds them (DNS redirection, --drop-invalid-packets); nothing was changed");
    }
    bail!(BadInput(format!(
        "--disable-comments (comments.disabled): {what}; install with comments"
    )))
}

/// With firewalld in charge, IPv6 redirection needs `RFC3964_IPv4=no`: firewalld's own
/// filter rejects packets to `::/96`, and REDIRECT sends local IPv6 traffic to `::1`.
fn ipv6_allowed(
    target: &Target,
    args: &InstallArgs,
    config: &Config,
    read_only: bool,
) -> Result<bool> {
    if config.ip_family_mode != IpFamilyMode::DualStack {
        return Ok(true);
    }
    let enabled = match target {
        Target::Firewalld(firewalld) => firewalld.rfc3964_ipv4(),
        Target::Offline(dir) => offline::rfc3964_ipv4(dir)?,
        Target::Iptables => return Ok(true),
    };
    if !enabled {
        return Ok(true);
    }
    if !args.disable_firewalld_rfc3964_ipv4 {
        notice("IPv6: firewalld's RFC3964_IPv4=yes rejects traffic to ::/96, which holds ::1 where IPv6 redirection delivers local traffic; installing IPv4 rules only (--disable-firewalld-rfc3964-ipv4 sets RFC3964_IPv4=no and redirects IPv6 too)");
        return Ok(false);
    }
    if read_only {
        notice(
            "IPv6: would set firewalld's RFC3964_IPv4=no (and reload firewalld) before installing",
        );
        return Ok(true);
    }
    match target {
        Target::Firewalld(firewalld) => {
            firewalld.disable_rfc3964_ipv4()?;
            notice("IPv6: set firewalld's RFC3964_IPv4=no and reloaded firewalld");
        }
        Target::Offline(dir) => {
            offline::disable_rfc3964_ipv4(dir)?;
            notice(
                "IPv6: set RFC3964_IPv4=no in firewalld.conf; firewalld reads it when it starts",
            );
        }
        Target::Iptables => {}
    }
    Ok(true)
}

/// IPv4 always; IPv6 in dual-stack mode when the host has a non-loopback IPv6 address.
fn families(config: &Config, ipv6_allowed: bool) -> Vec<Family> {
    let mut families = vec![Family::V4];
    if config.ip_family_mode == IpFamilyMode::DualStack && ipv6_allowed {
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
/// (dry run) it gets every feature instead, as do failed probes. `without_tables` probes
/// all but what needs the tables read (see [`Desired::fresh`]).
fn gather_facts(
    config: &Config,
    uid: u32,
    families: &[Family],
    xtables: &[Xtables],
    assume_features: bool,
    without_tables: bool,
) -> Result<Vec<FamilyFacts>> {
    let mut facts = Vec::new();
    for family in families {
        let features = match xtables.iter().find(|x| x.family == *family) {
            Some(x) if assume_features => x.features().unwrap_or_default(),
            Some(x) if without_tables => x.features_without_tables()?,
            Some(x) => x.features()?,
            None if assume_features => Features::default(),
            None => continue,
        };
        facts.push(family_facts(config, uid, *family, features)?);
    }
    Ok(facts)
}

/// firewalld empties every iptables table when it reloads or starts, Docker's
/// `DOCKER_OUTPUT` chain with them, and a direct rule jumping to a chain that is gone makes
/// it fail (state FAILED, no rules at all). Under firewalld, kuma-dp's DNS therefore returns
/// early, as without Docker: it goes on through the built-in chain, where Docker's own jump
/// to its chain still takes it, as long as that chain is there.
fn without_docker_chain(facts: &mut [FamilyFacts]) {
    for fact in facts.iter_mut().filter(|f| f.features.docker_output_chain) {
        notice(format!(
            "{}: Docker's DOCKER_OUTPUT chain is not firewalld's and is gone after firewalld reloads or starts, so kuma-dp's DNS is not sent there (a direct rule jumping to it would make firewalld fail)",
            fact.family.label()
        ));
        fact.features.docker_output_chain = false;
    }
}

/// `facts` as if every family had Docker's `DOCKER_OUTPUT` chain.
fn with_docker_chain(facts: &[FamilyFacts]) -> Vec<FamilyFacts> {
    let mut facts = facts.to_vec();
    for fact in &mut facts {
        fact.features.docker_output_chain = true;
    }
    facts
}

/// `facts` with each family's features probed again, the tables read this time.
fn with_features_from_tables(
    mut facts: Vec<FamilyFacts>,
    xtables: &[Xtables],
) -> Result<Vec<FamilyFacts>> {
    for fact in &mut facts {
        if let Some(x) = xtables.iter().find(|x| x.family == fact.family) {
            fact.features = x.features()?;
        }
    }
    Ok(facts)
}
