//! `Config`: the validated, typed form of everything the user asked for. Built from the
//! layered sources (defaults < `--config` files in order < environment < flags); after
//! this point no string from the user is interpreted again.

pub mod definitions;
mod placement;
pub mod settings;
pub mod sources;
mod trusted_file;
pub mod values;

use std::io::Read;
use std::path::PathBuf;
use std::time::Duration;

use serde_json::Value;

pub use self::placement::{
    BackendChoice, Placement, Timeouts, DEFAULT_FIREWALLD_CONFIG_DIR, LOCK_TIMEOUT_ENV,
    START_TIMEOUT_ENV,
};
use self::settings::Settings;
pub use self::values::{Address, IpFamilyMode, Protocol, UidExclusion, VirtualNetwork};
use crate::system::{Code, Notice};

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("config {path}: {message}")]
    File { path: String, message: String },
    #[error("environment variable {name}: {message}")]
    Environment { name: String, message: String },
    #[error("{0}")]
    Invalid(String),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrafficFlow {
    pub enabled: bool,
    pub port: u16,
    pub include_ports: Vec<u16>,
    pub exclude_ports: Vec<u16>,
    pub exclude_ips: Vec<Address>,
    pub insert_redirect_instead_of_append: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Dns {
    pub enabled: bool,
    pub port: u16,
    pub capture_all: bool,
    pub skip_conntrack_zone_split: bool,
    pub resolv_conf: PathBuf,
}

/// Paths given with `--iptables-executables`, complete for each family that has any.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ExecutablePaths {
    pub ipv4: Option<[PathBuf; 3]>,
    pub ipv6: Option<[PathBuf; 3]>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// User name or UID of kuma-dp; `None` means: UID 5678, else user `kuma-dp`.
    pub kuma_dp_user: Option<String>,
    pub ip_family_mode: IpFamilyMode,
    pub inbound: TrafficFlow,
    pub outbound: TrafficFlow,
    pub outbound_uid_exclusions: Vec<UidExclusion>,
    pub dns: Dns,
    /// Sorted by interface name (one CIDR per interface, the last one given wins).
    pub vnets: Vec<VirtualNetwork>,
    pub drop_invalid_packets: bool,
    /// Kernel log level of the LOG rules, when `--iptables-logs` is on.
    pub log_level: Option<u8>,
    pub comments: bool,
    pub wait_seconds: u32,
    pub wait_interval_micros: u32,
    pub max_retries: u32,
    pub sleep_between_retries: Duration,
    pub store_firewalld: bool,
    pub executables: ExecutablePaths,
    pub verbose: bool,
    pub dry_run: bool,
    /// Where the rules go (not one of kumactl's settings).
    pub placement: Placement,
    /// How long to wait for others (from the environment).
    pub timeouts: Timeouts,
}

impl Default for Config {
    fn default() -> Self {
        sources::deserialize(&Value::Object(Default::default()))
            .and_then(Settings::into_config)
            .expect("the defaults are valid")
    }
}

/// What the caller collected; `load` does the merging and validation.
pub struct Sources<'a> {
    pub files: &'a [String],
    pub environment: Vec<(String, String)>,
    pub flags: Value,
    pub stdin: &'a mut dyn Read,
    /// Whether this run changes the firewall: then, as root, a `--config` file another user
    /// could write or replace is refused, since the config decides whose traffic bypasses
    /// the proxy.
    pub changes_firewall: bool,
    pub placement: Placement,
}

/// The result of loading: the config and notices worth one line each on stderr.
pub struct Loaded {
    pub config: Config,
    pub warnings: Vec<Notice>,
}

pub fn load(sources: Sources<'_>) -> Result<Loaded, ConfigError> {
    let mut merged = Value::Object(Default::default());
    let mut warnings = Vec::new();
    let only_root_writable = sources.changes_firewall && crate::system::host::is_root();
    for file in expand_file_list(sources.files) {
        let layer = sources::read_config_file(&file, sources.stdin, only_root_writable)?;
        sources::merge(&mut merged, layer);
    }
    let timeouts =
        Timeouts::from_environment(&sources.environment).map_err(ConfigError::Invalid)?;
    let (environment, unknown) = sources::environment_layer(sources.environment)?;
    warnings.extend(unknown.into_iter().map(|name| Notice {
        code: Code::UnknownEnvironmentVariable,
        text: format!("ignoring unknown environment variable {name}"),
    }));
    sources::merge(&mut merged, environment);
    sources::merge(&mut merged, sources.flags);
    let settings = sources::deserialize(&merged).map_err(ConfigError::Invalid)?;
    let config = Config {
        placement: sources.placement,
        timeouts,
        ..settings.into_config().map_err(ConfigError::Invalid)?
    };
    Ok(Loaded { config, warnings })
}

/// kumactl accepts comma-separated paths in one `--config` value.
fn expand_file_list(values: &[String]) -> Vec<String> {
    values
        .iter()
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(str::to_string)
        .collect()
}

impl Settings {
    pub fn into_config(self) -> Result<Config, String> {
        fn at(key: &'static str) -> impl Fn(String) -> String {
            move |message| format!("{key}: {message}")
        }
        if self.cni_mode {
            return Err("cniMode: CNI mode is not supported by this tool".to_string());
        }
        if !self.redirect.inbound.exclude_ports_for_uids.is_empty() {
            return Err("redirect.inbound.excludePortsForUIDs: UID exclusions apply to outbound traffic only; use redirect.outbound.excludePortsForUIDs".to_string());
        }
        let mut outbound_uid_exclusions = Vec::new();
        for item in &self.redirect.outbound.exclude_ports_for_uids {
            outbound_uid_exclusions.extend(
                values::parse_uid_exclusion(item)
                    .map_err(at("redirect.outbound.excludePortsForUIDs"))?,
            );
        }
        let mut vnets: Vec<VirtualNetwork> = Vec::new();
        for item in &self.redirect.vnet.networks {
            let vnet = values::parse_vnet(item).map_err(at("redirect.vnet.networks"))?;
            vnets.retain(|v| v.interface != vnet.interface);
            vnets.push(vnet);
        }
        vnets.sort_by(|a, b| a.interface.cmp(&b.interface));
        if self.log.level > 7 {
            return Err(format!(
                "log.level: '{}' is not a syslog level (0..7)",
                self.log.level
            ));
        }
        let dns = &self.redirect.dns;
        Ok(Config {
            kuma_dp_user: Some(self.kuma_dp_user.trim().to_string()).filter(|u| !u.is_empty()),
            ip_family_mode: IpFamilyMode::parse(&self.ip_family_mode)
                .map_err(at("ipFamilyMode"))?,
            inbound: flow(&self.redirect.inbound, "inbound")?,
            outbound: flow(&self.redirect.outbound, "outbound")?,
            outbound_uid_exclusions,
            dns: Dns {
                // kumactl: capturing all DNS traffic implies DNS redirection.
                enabled: dns.enabled || dns.capture_all,
                port: dns.port,
                capture_all: dns.capture_all,
                skip_conntrack_zone_split: dns.skip_conntrack_zone_split,
                resolv_conf: PathBuf::from(&dns.resolv_config_path),
            },
            vnets,
            drop_invalid_packets: self.drop_invalid_packets,
            log_level: self.log.enabled.then_some(self.log.level),
            comments: !self.comments.disabled,
            wait_seconds: self.wait,
            wait_interval_micros: self.wait_interval,
            max_retries: self.retry.max_retries,
            sleep_between_retries: values::parse_duration(&self.retry.sleep_between_retries)
                .map_err(at("retry.sleepBetweenRetries"))?,
            store_firewalld: self.store_firewalld,
            executables: executables(&self.iptables_executables)?,
            verbose: self.verbose,
            dry_run: self.dry_run,
            placement: Placement::default(),
            timeouts: Timeouts::default(),
        })
    }
}

fn flow(settings: &settings::Flow, name: &str) -> Result<TrafficFlow, String> {
    let mut exclude_ips = Vec::new();
    for item in &settings.exclude_ports_for_ips {
        exclude_ips.extend(
            values::parse_address_list(item)
                .map_err(|e| format!("redirect.{name}.excludePortsForIPs: {e}"))?,
        );
    }
    Ok(TrafficFlow {
        enabled: settings.enabled,
        port: settings.port,
        include_ports: settings.include_ports.clone(),
        exclude_ports: settings.exclude_ports.clone(),
        exclude_ips,
        insert_redirect_instead_of_append: settings.insert_redirect_instead_of_append,
    })
}

fn executables(paths: &settings::Executables) -> Result<ExecutablePaths, String> {
    let family = |names: [&str; 3], given: [&Option<String>; 3]| {
        let set: Vec<&String> = given.iter().filter_map(|p| p.as_ref()).collect();
        match set.len() {
            0 => Ok(None),
            3 => {
                Ok(Some(given.map(|p| {
                    PathBuf::from(p.as_ref().expect("all three set"))
                })))
            }
            _ => Err(format!(
                "iptablesExecutables: give all of {} or none of them",
                names.join(", ")
            )),
        }
    };
    Ok(ExecutablePaths {
        ipv4: family(
            ["iptables", "iptables-save", "iptables-restore"],
            [
                &paths.iptables,
                &paths.iptables_save,
                &paths.iptables_restore,
            ],
        )?,
        ipv6: family(
            ["ip6tables", "ip6tables-save", "ip6tables-restore"],
            [
                &paths.ip6tables,
                &paths.ip6tables_save,
                &paths.ip6tables_restore,
            ],
        )?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load_yaml(documents: &[&str]) -> Result<Config, ConfigError> {
        let files: Vec<String> = documents.iter().map(|_| "-".to_string()).collect();
        let joined = documents.concat();
        // Each "-" reads stdin to the end, so feed one document per load in tests.
        assert!(documents.len() <= 1);
        load(Sources {
            files: &files,
            environment: Vec::new(),
            flags: Value::Object(Default::default()),
            stdin: &mut joined.as_bytes(),
            changes_firewall: true,
            placement: Placement::default(),
        })
        .map(|l| l.config)
    }

    #[test]
    fn defaults_match_kumactl() {
        let config = Config::default();
        assert_eq!(config.inbound.port, 15006);
        assert_eq!(config.outbound.port, 15001);
        assert_eq!(config.dns.port, 15053);
        assert!(config.inbound.enabled && config.outbound.enabled);
        assert_eq!(config.wait_seconds, 5);
        assert_eq!(config.max_retries, 4);
        assert_eq!(config.sleep_between_retries, Duration::from_secs(2));
        assert!(config.comments);
        assert_eq!(config.ip_family_mode, IpFamilyMode::DualStack);
        assert_eq!(config.dns.resolv_conf, PathBuf::from("/etc/resolv.conf"));
    }

    #[test]
    fn capture_all_implies_dns_redirection() {
        let config = load_yaml(&["redirect: {dns: {captureAll: true}}"]).unwrap();
        assert!(config.dns.enabled && config.dns.capture_all);
    }

    #[test]
    fn vnets_are_sorted_and_deduplicated_by_interface() {
        let config = load_yaml(&[
            "redirect: {vnet: {networks: [z:10.0.0.0/8, a:10.1.0.0/16, z:10.2.0.0/16]}}",
        ])
        .unwrap();
        let names: Vec<_> = config
            .vnets
            .iter()
            .map(|v| (v.interface.as_str(), v.cidr.as_str()))
            .collect();
        assert_eq!(names, [("a", "10.1.0.0/16"), ("z", "10.2.0.0/16")]);
    }

    #[test]
    fn invalid_values_name_their_key() {
        for (doc, key) in [
            ("ipFamilyMode: ipv5", "ipFamilyMode"),
            (
                "redirect: {outbound: {excludePortsForUIDs: ['1:2:3:4']}}",
                "redirect.outbound.excludePortsForUIDs",
            ),
            (
                "redirect: {inbound: {excludePortsForIPs: ['10.0.0.256']}}",
                "redirect.inbound.excludePortsForIPs",
            ),
            (
                "retry: {sleepBetweenRetries: soon}",
                "retry.sleepBetweenRetries",
            ),
            ("iptablesExecutables: {iptables: /x}", "iptablesExecutables"),
            ("log: {level: 9}", "log.level"),
        ] {
            let err = load_yaml(&[doc]).unwrap_err().to_string();
            assert!(err.contains(key), "{doc}: {err}");
        }
    }
}
