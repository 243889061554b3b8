//! The engine prepares a run: it loads the configuration, takes the lock when the run
//! changes the firewall, finds out what the host offers (firewalld on the bus, iptables and
//! its features, the kuma-dp user, IPv6, name servers), builds the rules from that, and
//! selects and sets up the backend that plans and applies them. Queries come first; the one
//! change it makes itself (firewalld's RFC3964_IPv4 switch, when asked for) comes after the
//! rules are known to be acceptable.

pub mod inspect;
pub mod ssh;
pub mod status;
pub mod translate;
pub mod validate;

use std::io::Read;

use anyhow::{anyhow, bail, Result};
use serde_json::Value;

use crate::backend::applied;
use crate::backend::direct_file::DirectFile;
use crate::backend::firewalld::{self, Bus, FirewalldBackend, PendingPresence, Presence};
use crate::backend::iptables::IptablesBackend;
use crate::backend::offline::{self, OfflineBackend};
use crate::backend::xtables::{self, Mode, RestoreOptions, Xtables};
use crate::backend::{select, Backend, Selected};
use crate::config::{self, Config, ExecutablePaths, IpFamilyMode, Placement, Sources, Timeouts};
use crate::error::BadInput;
use crate::family::Family;
use crate::ruleset::{self, FamilyFacts, Features, Ruleset};
use crate::system::host;
use crate::system::lock::{self, Lock};
use crate::system::{notice, Code};

/// What a run is asked for, as the command line gave it.
pub struct Request<'a> {
    /// `--config` values (paths, comma lists, `-` for stdin).
    pub files: &'a [String],
    /// The flags given, as a partial tree of kumactl's configuration keys.
    pub flags: Value,
    pub placement: Placement,
    pub stdin: &'a mut dyn Read,
    pub purpose: Purpose,
    /// The caller reports what changes: a dry run then reads the current state where it can
    /// (as root), rather than only showing the rules.
    pub reports_changes: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Purpose {
    /// Install (or its dry run): plans against the host as it is.
    Install,
    /// Status and validate: only the desired rules are wanted, and nothing changes.
    Compare,
}

/// A run, ready to plan.
pub struct Prepared {
    pub config: Config,
    pub ruleset: Ruleset,
    pub backend: Box<dyn Backend>,
    /// Which backend was selected.
    pub kind: Kind,
    /// Held until the run ends when it changes the firewall ([`crate::system::lock`]).
    _lock: Option<Lock>,
}

/// The backend a run got.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Firewalld,
    /// firewalld installed but stopped: direct.xml, and iptables now.
    Offline,
    Iptables,
}

/// Loads the configuration, builds the rules and sets up the backend for `request`.
pub fn prepare(request: Request<'_>) -> Result<Prepared> {
    let environment = environment()?;
    let timeouts = Timeouts::from_environment(&environment).map_err(BadInput)?;
    // The bus handshake (two round trips) runs beside loading the configuration and taking
    // the lock; nothing is asked of firewalld before the lock is held.
    let bus = std::thread::spawn(move || firewalld::connect(timeouts.firewalld_start));
    // A dry run asked for on the command line changes nothing, whatever the files say.
    let dry_run_flag = request.flags.pointer("/dryRun") == Some(&Value::Bool(true));
    let loaded = config::load(Sources {
        files: request.files,
        environment,
        flags: request.flags,
        stdin: request.stdin,
        changes_firewall: request.purpose == Purpose::Install && !dry_run_flag,
        placement: request.placement,
    })
    .map_err(|e| BadInput(e.to_string()))?;
    for warning in loaded.warnings {
        notice(warning.code, warning.text);
    }
    let config = loaded.config;
    // Status and validate only compare; install, dry run or not, plans against the host.
    let plans = request.purpose == Purpose::Install;
    let read_only = !plans || config.dry_run;
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
    let lock = lock::for_changes(
        read_only,
        config.timeouts.lock,
        &config.placement.firewalld_config_dir,
    )?;
    let bus = bus
        .join()
        .map_err(|_| anyhow!("connecting to the system bus failed"))??;
    let asked = bus.map(Bus::ask).transpose()?;
    // With firewalld on the bus, and nothing going to reload it before the plan (only turning
    // RFC3964_IPv4 off does), its configurations are asked for now, queued behind its state
    // and settings: firewalld answers one call at a time.
    let early_reading = match &asked {
        Some(asked) if plans && !config.placement.disable_rfc3964_ipv4 => {
            Some(asked.read_in_background()?)
        }
        _ => None,
    };
    let presence = asked.map_or(Ok(Presence::Absent), PendingPresence::presence)?;
    let selected = select(&config.placement, config.store_firewalld, presence)?;
    let ipv6 = ipv6_under(&selected, &config)?;
    let families = families(&config, ipv6 != Ipv6::Refused);
    // A raw install with no record of earlier rules of ours applies before it reads
    // (IptablesPlan::Fresh).
    let fresh = matches!(selected, Selected::Iptables)
        && !read_only
        && !families.iter().any(|f| applied::is_recorded(*f));
    // Without changes to make, root and iptables are optional: probe what can be probed,
    // assume the rest. The tables are read only if a change needs them: Docker's chain, which
    // the rules depend on, is asked of nf_tables directly, and a save would compete with
    // firewalld for the CPU while it answers.
    let xtables = match &selected {
        Selected::Firewalld(_) => detect_for(
            &config.executables,
            read_only,
            xtables::firewalld_mode(),
            false,
        )?,
        _ => detect_for(&config.executables, read_only, None, !fresh)?,
    };
    let mut facts = gather_facts(&config, uid, &families, &xtables, read_only, fresh)?;
    if matches!(selected, Selected::Firewalld(_) | Selected::Offline(_)) {
        without_docker_chain(&mut facts);
    }
    let ruleset = ruleset::build(&config, &facts);
    if !read_only {
        // Comments also go when iptables lacks the comment match.
        refuse_unrecognisable(&config, &ruleset)?;
    }
    let mut reading = early_reading;
    if ipv6 == Ipv6::AfterSwitchingRfc3964Off {
        if read_only {
            notice(Code::Rfc3964WouldDisable, "IPv6: would set firewalld's RFC3964_IPv4=no (and reload firewalld) before installing");
        } else {
            switch_rfc3964_off(&selected)?;
        }
    }
    if let (Selected::Firewalld(firewalld), None, true) = (&selected, &reading, plans) {
        // Read after any reload above.
        reading = Some(firewalld.read_in_background()?);
    }
    let options = restore_options(&config);
    let kind = kind_of(&selected);
    let backend: Box<dyn Backend> = match selected {
        Selected::Firewalld(firewalld) => Box::new(
            FirewalldBackend::new(
                firewalld,
                config.store_firewalld,
                DirectFile::in_dir(&config.placement.firewalld_config_dir),
                xtables,
            )
            .accept_iptables_flush(config.placement.accept_iptables_flush)
            .with_reading(reading),
        ),
        Selected::Offline(dir) => Box::new(offline_backend(
            &dir,
            xtables,
            &config,
            request.reports_changes,
        )),
        Selected::Iptables => {
            let mut backend = IptablesBackend::new(xtables, options);
            if config.dry_run {
                if !(request.reports_changes && host::is_root()) {
                    backend = backend.showing_rules(config.verbose);
                }
            } else if fresh {
                let with_docker = ruleset::build(&config, &with_docker_chain(&facts));
                backend =
                    backend.first_install_unread((with_docker != ruleset).then_some(with_docker));
            }
            Box::new(backend)
        }
    };
    Ok(Prepared {
        config,
        ruleset,
        backend,
        kind,
        _lock: lock,
    })
}

/// What uninstall is asked for.
pub struct Removal {
    /// The flags given (custom iptables executables), as a partial tree of kumactl's keys.
    pub flags: Value,
    pub placement: Placement,
    /// Also from firewalld's permanent configuration (direct.xml).
    pub permanent_too: bool,
    /// As [`Request::reports_changes`].
    pub reports_changes: bool,
}

/// The configuration and backend for removing every rule of ours.
pub fn prepare_removal(request: Removal) -> Result<Prepared> {
    let timeouts = timeouts()?;
    let loaded = config::load(Sources {
        files: &[],
        // kumactl's uninstall reads no configuration from the environment.
        environment: Vec::new(),
        flags: request.flags,
        stdin: &mut std::io::empty(),
        changes_firewall: false,
        placement: request.placement,
    })
    .map_err(|e| BadInput(e.to_string()))?;
    let config = Config {
        timeouts,
        ..loaded.config
    };
    if !config.dry_run && !host::is_root() {
        bail!("uninstall changes the firewall and needs root (use --dry-run to see what it would remove)");
    }
    let lock = lock::for_changes(
        config.dry_run,
        config.timeouts.lock,
        &config.placement.firewalld_config_dir,
    )?;
    let presence = firewalld::find(config.timeouts.firewalld_start)?;
    let selected = select(&config.placement, request.permanent_too, presence)?;
    let options = restore_options(&config);
    let kind = kind_of(&selected);
    let backend: Box<dyn Backend> = match selected {
        // iptables is read only before adding firewalld 2.x's first entry; removing adds none.
        Selected::Firewalld(firewalld) => Box::new(FirewalldBackend::new(
            firewalld,
            request.permanent_too,
            DirectFile::in_dir(&config.placement.firewalld_config_dir),
            Vec::new(),
        )),
        Selected::Offline(dir) => {
            let xtables = detect_xtables(&config.executables, None, true)?;
            Box::new(offline_backend(
                &dir,
                xtables,
                &config,
                request.reports_changes,
            ))
        }
        Selected::Iptables => Box::new(IptablesBackend::new(
            detect_xtables(&config.executables, None, true)?,
            options,
        )),
    };
    Ok(Prepared {
        config,
        ruleset: Ruleset::default(),
        backend,
        kind,
        _lock: lock,
    })
}

/// The backend that holds what `status` compares against, set up to observe only.
pub fn observer(placement: &Placement) -> Result<Box<dyn Backend>> {
    let presence = firewalld::find(timeouts()?.firewalld_start)?;
    let options = restore_options(&Config::default());
    Ok(match select(placement, true, presence)? {
        Selected::Firewalld(firewalld) => Box::new(FirewalldBackend::new(
            firewalld,
            true,
            DirectFile::in_dir(&placement.firewalld_config_dir),
            Vec::new(),
        )),
        Selected::Offline(dir) => Box::new(OfflineBackend::new(&dir, Vec::new(), options)),
        Selected::Iptables => Box::new(IptablesBackend::new(Vec::new(), options)),
    })
}

/// The backend for a stopped firewalld's `dir`. A dry run only shows its plan; one that
/// `reports_changes` reads the kernel too, where it can (as root).
fn offline_backend(
    dir: &std::path::Path,
    xtables: Vec<Xtables>,
    config: &Config,
    reports_changes: bool,
) -> OfflineBackend {
    let backend = OfflineBackend::new(dir, xtables, restore_options(config));
    match (config.dry_run, reports_changes && host::is_root()) {
        (false, _) => backend,
        (true, false) => backend.showing(config.verbose),
        (true, true) => backend.showing(config.verbose).planning_kernel(),
    }
}

/// Readies the host for the rules before they are applied: IPv6 redirection needs the
/// passthrough address `::6` on the loopback interface.
pub fn ready_host(ruleset: &Ruleset) -> Result<()> {
    if ruleset.family(Family::V6).is_some() {
        host::ensure_ipv6_passthrough_address(&host::loopback_interface())?;
    }
    Ok(())
}

/// How long to wait for others, from the environment.
pub fn timeouts() -> Result<Timeouts> {
    Ok(Timeouts::from_environment(&environment()?).map_err(BadInput)?)
}

fn kind_of(selected: &Selected) -> Kind {
    match selected {
        Selected::Firewalld(_) => Kind::Firewalld,
        Selected::Offline(_) => Kind::Offline,
        Selected::Iptables => Kind::Iptables,
    }
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

pub fn restore_options(config: &Config) -> RestoreOptions {
    RestoreOptions {
        wait_seconds: config.wait_seconds,
        wait_interval_micros: config.wait_interval_micros,
        max_retries: config.max_retries,
        sleep_between_retries: config.sleep_between_retries,
    }
}

/// [`detect_xtables`], when the run changes the firewall; without changes to make, root and
/// iptables are optional: what can be found is, the rest assumed.
fn detect_for(
    paths: &ExecutablePaths,
    read_only: bool,
    mode: Option<Mode>,
    read_tables: bool,
) -> Result<Vec<Xtables>> {
    if !read_only {
        detect_xtables(paths, mode, read_tables)
    } else if host::is_root() {
        Ok(detect_xtables(paths, mode, read_tables).unwrap_or_default())
    } else {
        Ok(Vec::new())
    }
}

/// The iptables executables of each family: IPv4 must exist; IPv6 follows its mode and is
/// skipped when missing. `mode`: the nft/legacy choice made beforehand (a running firewalld
/// uses the iptables its own path resolves to).
///
/// With `read_tables`, every family's tables are read at once (each `iptables-save` is a
/// process): IPv6's in the mode IPv4 most likely takes, started before IPv4's mode is
/// settled. Not an nf_tables family with a record of our rules: whether they are still in
/// place is asked of nf_tables first, and a save would only take the CPU.
pub fn detect_xtables(
    paths: &ExecutablePaths,
    mode: Option<Mode>,
    read_tables: bool,
) -> Result<Vec<Xtables>> {
    let likely_ipv6 = Xtables::detect(
        Family::V6,
        paths.ipv6.as_ref(),
        Some(mode.unwrap_or(Mode::Nft)),
    )
    .ok();
    let prefetch = |xtables: &Xtables| {
        if read_tables && !(xtables.mode == Mode::Nft && applied::is_recorded(xtables.family)) {
            xtables.prefetch();
        }
    };
    if let Some(ipv6) = &likely_ipv6 {
        prefetch(ipv6);
    }
    let ipv4 = Xtables::detect(Family::V4, paths.ipv4.as_ref(), mode)?;
    prefetch(&ipv4);
    let ipv6 = match likely_ipv6 {
        Some(ipv6) if ipv6.mode == ipv4.mode => Ok(ipv6),
        _ => Xtables::detect(Family::V6, paths.ipv6.as_ref(), Some(ipv4.mode)),
    };
    let mut families = vec![ipv4];
    match ipv6 {
        Ok(ipv6) => families.push(ipv6),
        Err(error) => notice(
            Code::NoIp6tables,
            format!("IPv6: {error:#}; IPv6 rules are left alone"),
        ),
    }
    Ok(families)
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

/// What firewalld's `RFC3964_IPv4` means for IPv6 redirection here.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Ipv6 {
    /// Nothing stands in its way.
    Allowed,
    /// `RFC3964_IPv4=yes` stays: IPv4 rules only.
    Refused,
    /// `--disable-firewalld-rfc3964-ipv4`: allowed once it is set to no.
    AfterSwitchingRfc3964Off,
}

/// With firewalld in charge, IPv6 redirection needs `RFC3964_IPv4=no`: firewalld's own
/// filter rejects packets to `::/96`, and REDIRECT sends local IPv6 traffic to `::1`. A
/// question only: [`switch_rfc3964_off`] makes the change.
fn ipv6_under(selected: &Selected, config: &Config) -> Result<Ipv6> {
    if config.ip_family_mode != IpFamilyMode::DualStack {
        return Ok(Ipv6::Allowed);
    }
    let enabled = match selected {
        Selected::Firewalld(firewalld) => firewalld.rfc3964_ipv4(),
        Selected::Offline(dir) => offline::rfc3964_ipv4(dir)?,
        Selected::Iptables => return Ok(Ipv6::Allowed),
    };
    if !enabled {
        Ok(Ipv6::Allowed)
    } else if config.placement.disable_rfc3964_ipv4 {
        Ok(Ipv6::AfterSwitchingRfc3964Off)
    } else {
        notice(Code::Rfc3964Ipv4Only, "IPv6: firewalld's RFC3964_IPv4=yes rejects traffic to ::/96, which holds ::1 where IPv6 redirection delivers local traffic; installing IPv4 rules only (--disable-firewalld-rfc3964-ipv4 sets RFC3964_IPv4=no and redirects IPv6 too)");
        Ok(Ipv6::Refused)
    }
}

/// Sets `RFC3964_IPv4=no`: through firewalld (which then reloads), or in firewalld.conf of
/// a stopped firewalld.
fn switch_rfc3964_off(selected: &Selected) -> Result<()> {
    match selected {
        Selected::Firewalld(firewalld) => {
            firewalld.disable_rfc3964_ipv4()?;
            notice(
                Code::Rfc3964Disabled,
                "IPv6: set firewalld's RFC3964_IPv4=no and reloaded firewalld",
            );
        }
        Selected::Offline(dir) => {
            offline::disable_rfc3964_ipv4(dir)?;
            notice(
                Code::Rfc3964Disabled,
                "IPv6: set RFC3964_IPv4=no in firewalld.conf; firewalld reads it when it starts",
            );
        }
        Selected::Iptables => {}
    }
    Ok(())
}

/// IPv4 always; IPv6 in dual-stack mode when the host has a non-loopback IPv6 address.
fn families(config: &Config, ipv6_allowed: bool) -> Vec<Family> {
    let mut families = vec![Family::V4];
    if config.ip_family_mode == IpFamilyMode::DualStack && ipv6_allowed {
        if host::has_non_loopback_ipv6() {
            families.push(Family::V6);
        } else {
            notice(
                Code::NoIpv6Address,
                "IPv6: no non-loopback IPv6 address on this host; installing IPv4 rules only",
            );
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
            notice(
                Code::NoDnsServers,
                format!(
                    "{}: no {0} DNS servers in {}; DNS redirection is off for {0}",
                    family.label(),
                    config.dns.resolv_conf.display()
                ),
            );
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
/// all but what needs the tables read (a first raw install).
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
        notice(Code::DockerChain, format!(
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
