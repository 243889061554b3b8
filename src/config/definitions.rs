//! Every install setting, defined once: kumactl's config key, its flag and environment
//! variable (where kumactl has them), the kind of value with its parser, the default and
//! the help text. The install flags (`cli`), the environment layer (`sources`), the
//! defaults every configuration starts from and the "[default: …]" of help and man pages
//! all come from [`SETTINGS`].

use serde_json::{json, Value};

use super::sources::set_path;
use super::values::{self, IpFamilyMode};

/// kumactl's environment variables are this prefix and a setting's `env`.
pub const ENV_PREFIX: &str = "KUMA_TRANSPARENT_PROXY_";

/// Whether a text is a valid value: a parser of [`values`] with its result dropped.
pub type Check = fn(&str) -> Result<(), String>;

/// What a setting holds, and so how each layer writes it.
#[derive(Clone, Copy, Debug)]
pub enum Kind {
    /// `true` or `false`; the flag alone means true (`--redirect-dns`, `--redirect-dns=false`).
    Switch,
    /// One port, 1..65535.
    Port,
    /// Ports as a comma list; a repeated flag adds to it.
    Ports,
    /// A whole number.
    Number,
    /// Text, taken as given.
    Text,
    /// Text the check accepts.
    Checked(Check),
    /// Items the check accepts one by one; the flag repeats, the environment separates them
    /// with commas.
    List(Check),
    /// Paths of the iptables executables, one key per executable; the flag takes
    /// `name:path` pairs.
    Executables,
}

/// A setting's value when no file, variable or flag gives one.
#[derive(Clone, Copy, Debug)]
pub enum DefaultValue {
    Bool(bool),
    Number(u32),
    Text(&'static str),
    /// No items (for [`Kind::Executables`]: no paths).
    Empty,
}

#[derive(Debug)]
pub struct Setting {
    /// kumactl's key in the configuration document, dotted: `redirect.inbound.port`.
    pub key: &'static str,
    /// kumactl's flag without the dashes; `None` for keys only files and variables set.
    pub flag: Option<&'static str>,
    /// kumactl's environment variable after [`ENV_PREFIX`]; `None` where kumactl has none.
    pub env: Option<&'static str>,
    pub kind: Kind,
    /// The value when no layer sets it; help shows it where it says something.
    pub default: DefaultValue,
    /// What help calls the value: `PORT`.
    pub value_name: &'static str,
    /// What the setting does, as `--help` says it (for keys without a flag: documentation).
    pub help: &'static str,
}

/// The settings, in the order `install --help` lists their flags.
pub const SETTINGS: &[Setting] = &[
    Setting {
        key: "kumaDPUser",
        flag: Some("kuma-dp-user"),
        env: Some("KUMA_DP_USER"),
        kind: Kind::Text,
        default: DefaultValue::Text(""),
        value_name: "USER",
        help: "User name or UID that runs kuma-dp; default: UID 5678, else user `kuma-dp`",
    },
    Setting {
        key: "redirect.inbound.enabled",
        flag: Some("redirect-inbound"),
        env: Some("REDIRECT_INBOUND_ENABLED"),
        kind: Kind::Switch,
        default: DefaultValue::Bool(true),
        value_name: "BOOL",
        help: "Redirect inbound traffic to Envoy (disable for gateways)",
    },
    Setting {
        key: "redirect.inbound.port",
        flag: Some("redirect-inbound-port"),
        env: Some("REDIRECT_INBOUND_PORT"),
        kind: Kind::Port,
        default: DefaultValue::Number(15006),
        value_name: "PORT",
        help: "Port Envoy receives inbound traffic on",
    },
    Setting {
        key: "redirect.outbound.enabled",
        flag: None,
        env: Some("REDIRECT_OUTBOUND_ENABLED"),
        kind: Kind::Switch,
        default: DefaultValue::Bool(true),
        value_name: "BOOL",
        help: "Redirect outbound traffic to Envoy",
    },
    Setting {
        key: "redirect.outbound.port",
        flag: Some("redirect-outbound-port"),
        env: Some("REDIRECT_OUTBOUND_PORT"),
        kind: Kind::Port,
        default: DefaultValue::Number(15001),
        value_name: "PORT",
        help: "Port Envoy receives outbound traffic on",
    },
    Setting {
        key: "redirect.inbound.includePorts",
        flag: None,
        env: Some("REDIRECT_INBOUND_INCLUDE_PORTS"),
        kind: Kind::Ports,
        default: DefaultValue::Empty,
        value_name: "PORTS",
        help: "The only inbound ports redirected; when given, excludePorts is ignored",
    },
    Setting {
        key: "redirect.inbound.excludePorts",
        flag: Some("exclude-inbound-ports"),
        env: Some("REDIRECT_INBOUND_EXCLUDE_PORTS"),
        kind: Kind::Ports,
        default: DefaultValue::Empty,
        value_name: "PORTS",
        help: "Inbound ports not redirected (comma list; repeatable), e.g. 22 to keep SSH reachable",
    },
    Setting {
        key: "redirect.outbound.includePorts",
        flag: None,
        env: Some("REDIRECT_OUTBOUND_INCLUDE_PORTS"),
        kind: Kind::Ports,
        default: DefaultValue::Empty,
        value_name: "PORTS",
        help: "The only outbound ports redirected; when given, excludePorts is ignored",
    },
    Setting {
        key: "redirect.outbound.excludePorts",
        flag: Some("exclude-outbound-ports"),
        env: Some("REDIRECT_OUTBOUND_EXCLUDE_PORTS"),
        kind: Kind::Ports,
        default: DefaultValue::Empty,
        value_name: "PORTS",
        help: "Outbound ports not redirected (comma list; repeatable)",
    },
    Setting {
        key: "redirect.inbound.excludePortsForIPs",
        flag: Some("exclude-inbound-ips"),
        env: Some("REDIRECT_INBOUND_EXCLUDE_PORTS_FOR_IPS"),
        kind: Kind::List(|text| values::parse_address_list(text).map(drop)),
        default: DefaultValue::Empty,
        value_name: "IPS",
        help: "Source addresses (IPv4/IPv6, with or without prefix; comma list; repeatable) whose inbound traffic is not redirected",
    },
    Setting {
        key: "redirect.outbound.excludePortsForIPs",
        flag: Some("exclude-outbound-ips"),
        env: Some("REDIRECT_OUTBOUND_EXCLUDE_PORTS_FOR_IPS"),
        kind: Kind::List(|text| values::parse_address_list(text).map(drop)),
        default: DefaultValue::Empty,
        value_name: "IPS",
        help: "Destination addresses (IPv4/IPv6, with or without prefix; comma list; repeatable) not redirected",
    },
    Setting {
        key: "redirect.inbound.excludePortsForUIDs",
        flag: None,
        env: Some("REDIRECT_INBOUND_EXCLUDE_PORTS_FOR_UIDS"),
        kind: Kind::List(|text| values::parse_uid_exclusion(text).map(drop)),
        default: DefaultValue::Empty,
        value_name: "SPEC",
        help: "Refused: kumactl reads it, but UID exclusions apply to outbound traffic only",
    },
    Setting {
        key: "redirect.outbound.excludePortsForUIDs",
        flag: Some("exclude-outbound-ports-for-uids"),
        env: Some("REDIRECT_OUTBOUND_EXCLUDE_PORTS_FOR_UIDS"),
        kind: Kind::List(|text| values::parse_uid_exclusion(text).map(drop)),
        default: DefaultValue::Empty,
        value_name: "SPEC",
        help: "Outbound traffic of UIDs not redirected, as [proto:][ports:]uids, e.g. tcp:53,3000-5000:106-108 (repeatable)",
    },
    Setting {
        key: "redirect.dns.enabled",
        flag: Some("redirect-dns"),
        env: Some("REDIRECT_DNS_ENABLED"),
        kind: Kind::Switch,
        default: DefaultValue::Bool(false),
        value_name: "BOOL",
        help: "Redirect DNS requests to the name servers in /etc/resolv.conf to the kuma-dp DNS proxy",
    },
    Setting {
        key: "redirect.dns.captureAll",
        flag: Some("redirect-all-dns-traffic"),
        env: Some("REDIRECT_DNS_CAPTURE_ALL"),
        kind: Kind::Switch,
        default: DefaultValue::Bool(false),
        value_name: "BOOL",
        help: "Redirect all DNS traffic (UDP port 53) to the kuma-dp DNS proxy; excludes --redirect-dns",
    },
    Setting {
        key: "redirect.dns.port",
        flag: Some("redirect-dns-port"),
        env: Some("REDIRECT_DNS_PORT"),
        kind: Kind::Port,
        default: DefaultValue::Number(15053),
        value_name: "PORT",
        help: "Port the kuma-dp DNS proxy listens on",
    },
    Setting {
        key: "redirect.dns.resolvConfigPath",
        flag: None,
        env: Some("REDIRECT_DNS_RESOLV_CONFIG_PATH"),
        kind: Kind::Text,
        default: DefaultValue::Text("/etc/resolv.conf"),
        value_name: "PATH",
        help: "The resolv.conf whose name servers DNS redirection redirects",
    },
    Setting {
        key: "redirect.dns.skipConntrackZoneSplit",
        flag: Some("skip-dns-conntrack-zone-split"),
        env: Some("REDIRECT_DNS_SKIP_CONNTRACK_ZONE_SPLIT"),
        kind: Kind::Switch,
        default: DefaultValue::Bool(false),
        value_name: "BOOL",
        help: "Do not split DNS traffic into conntrack zones (no raw-table rules)",
    },
    Setting {
        key: "dropInvalidPackets",
        flag: Some("drop-invalid-packets"),
        env: Some("DROP_INVALID_PACKETS"),
        kind: Kind::Switch,
        default: DefaultValue::Bool(false),
        value_name: "BOOL",
        help: "Drop packets in conntrack state INVALID (mangle table)",
    },
    Setting {
        key: "redirect.vnet.networks",
        flag: Some("vnet"),
        env: Some("REDIRECT_VNET_NETWORKS"),
        kind: Kind::List(|text| values::parse_vnet(text).map(drop)),
        default: DefaultValue::Empty,
        value_name: "IFACE:CIDR",
        help: "Virtual network to redirect, as IFACE:CIDR (iptables `+` wildcard allowed), e.g. docker0:172.17.0.0/16 (repeatable)",
    },
    Setting {
        key: "redirect.inbound.insertRedirectInsteadOfAppend",
        flag: Some("redirect-inbound-insert-instead-of-append"),
        env: Some("REDIRECT_INBOUND_INSERT_REDIRECT_INSTEAD_OF_APPEND"),
        kind: Kind::Switch,
        default: DefaultValue::Bool(false),
        value_name: "BOOL",
        help: "Insert the PREROUTING jump to KUMA_MESH_INBOUND at the top instead of appending it",
    },
    Setting {
        key: "redirect.outbound.insertRedirectInsteadOfAppend",
        flag: Some("redirect-outbound-insert-instead-of-append"),
        env: Some("REDIRECT_OUTBOUND_INSERT_REDIRECT_INSTEAD_OF_APPEND"),
        kind: Kind::Switch,
        default: DefaultValue::Bool(false),
        value_name: "BOOL",
        help: "Insert the OUTPUT jump to KUMA_MESH_OUTBOUND at the top instead of appending it",
    },
    Setting {
        key: "log.enabled",
        flag: Some("iptables-logs"),
        env: Some("LOG_ENABLED"),
        kind: Kind::Switch,
        default: DefaultValue::Bool(false),
        value_name: "BOOL",
        help: "Add LOG rules to nat OUTPUT and PREROUTING (kernel log level 7)",
    },
    Setting {
        key: "log.level",
        flag: None,
        env: Some("LOG_LEVEL"),
        kind: Kind::Number,
        default: DefaultValue::Number(7),
        value_name: "LEVEL",
        help: "Kernel log level (0..7) of the LOG rules",
    },
    Setting {
        key: "comments.disabled",
        flag: Some("disable-comments"),
        env: Some("COMMENTS_DISABLED"),
        kind: Kind::Switch,
        default: DefaultValue::Bool(false),
        value_name: "BOOL",
        help: "Do not tag rules with `kuma/mesh/transparent/proxy/…` comments (refused with rules in built-in chains that do not jump to ours: DNS redirection, --drop-invalid-packets)",
    },
    Setting {
        key: "ipFamilyMode",
        flag: Some("ip-family-mode"),
        env: Some("IP_FAMILY_MODE"),
        kind: Kind::Checked(|text| IpFamilyMode::parse(text).map(drop)),
        default: DefaultValue::Text("dualstack"),
        value_name: "MODE",
        help: "`dualstack` (IPv6 rules too, when the host has a non-loopback IPv6 address) or `ipv4`",
    },
    Setting {
        key: "wait",
        flag: Some("wait"),
        env: Some("WAIT"),
        kind: Kind::Number,
        default: DefaultValue::Number(5),
        value_name: "SECONDS",
        help: "Seconds to wait for the xtables lock (legacy iptables)",
    },
    Setting {
        key: "waitInterval",
        flag: Some("wait-interval"),
        env: Some("WAIT_INTERVAL"),
        kind: Kind::Number,
        default: DefaultValue::Number(0),
        value_name: "MICROSECONDS",
        help: "Microseconds between attempts to take the xtables lock (legacy iptables)",
    },
    Setting {
        key: "retry.maxRetries",
        flag: Some("max-retries"),
        env: Some("RETRY_MAX_RETRIES"),
        kind: Kind::Number,
        default: DefaultValue::Number(4),
        value_name: "N",
        help: "Retries of a failed iptables-restore",
    },
    Setting {
        key: "retry.sleepBetweenRetries",
        flag: Some("sleep-between-retries"),
        env: Some("RETRY_SLEEP_BETWEEN_RETRIES"),
        kind: Kind::Checked(|text| values::parse_duration(text).map(drop)),
        default: DefaultValue::Text("2s"),
        value_name: "DURATION",
        help: "Pause between retries, e.g. 2s or 500ms",
    },
    Setting {
        key: "iptablesExecutables",
        flag: Some("iptables-executables"),
        env: None,
        kind: Kind::Executables,
        default: DefaultValue::Empty,
        value_name: "NAME:PATH,...",
        help: "Custom executables as name:path[,name:path…]; names: iptables, iptables-save, iptables-restore, ip6tables, ip6tables-save, ip6tables-restore (all three of a family)",
    },
    Setting {
        key: "storeFirewalld",
        flag: Some("store-firewalld"),
        env: Some("STORE_FIREWALLD"),
        kind: Kind::Switch,
        default: DefaultValue::Bool(false),
        value_name: "BOOL",
        help: "Also store the rules in firewalld's permanent configuration (direct.xml), so they survive reloads, restarts and reboots; with firewalld stopped, write direct.xml directly",
    },
    Setting {
        key: "dryRun",
        flag: Some("dry-run"),
        env: Some("DRY_RUN"),
        kind: Kind::Switch,
        default: DefaultValue::Bool(false),
        value_name: "BOOL",
        help: "Print the rules (kumactl's dry-run format) and change nothing; needs no root",
    },
    Setting {
        key: "verbose",
        flag: Some("verbose"),
        env: Some("VERBOSE"),
        kind: Kind::Switch,
        default: DefaultValue::Bool(false),
        value_name: "BOOL",
        help: "Long option names in printed rules, and more detail on stderr",
    },
    Setting {
        key: "cniMode",
        flag: None,
        env: Some("CNI_MODE"),
        kind: Kind::Switch,
        default: DefaultValue::Bool(false),
        value_name: "BOOL",
        help: "Refused: kumactl's CNI mode is not supported by this tool",
    },
];

impl Setting {
    /// The help text, ending in "[default: …]" when the flag takes a value that has one.
    pub fn help_with_default(&self) -> String {
        match self.shown_default() {
            Some(default) => format!("{} {default}", self.help),
            None => self.help.to_string(),
        }
    }

    /// "[default: 15006]", for settings of one value whose default is something; switches
    /// say what they do instead, and lists start empty.
    pub fn shown_default(&self) -> Option<String> {
        let value = match (self.kind, self.default) {
            (Kind::Switch | Kind::Ports | Kind::List(_) | Kind::Executables, _) => return None,
            (_, DefaultValue::Number(number)) => number.to_string(),
            (_, DefaultValue::Text(text)) if !text.is_empty() => text.to_string(),
            _ => return None,
        };
        Some(format!("[default: {value}]"))
    }

    /// The default as the configuration document writes it.
    fn default_in_document(&self) -> Value {
        match (self.default, self.kind) {
            (DefaultValue::Bool(on), _) => json!(on),
            (DefaultValue::Number(number), _) => json!(number),
            (DefaultValue::Text(text), _) => json!(text),
            (DefaultValue::Empty, Kind::Executables) => json!({}),
            (DefaultValue::Empty, _) => json!([]),
        }
    }
}

/// The setting whose key is `key`.
pub fn by_key(key: &str) -> Option<&'static Setting> {
    SETTINGS.iter().find(|setting| setting.key == key)
}

/// The setting an environment variable without its [`ENV_PREFIX`] names.
pub fn by_env(suffix: &str) -> Option<&'static Setting> {
    SETTINGS.iter().find(|setting| setting.env == Some(suffix))
}

/// The tree every configuration starts from: each key at its default.
pub fn defaults() -> Value {
    let mut tree = json!({});
    for setting in SETTINGS {
        set_path(&mut tree, setting.key, setting.default_in_document());
    }
    tree
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use clap::Parser;

    use super::*;
    use crate::cli::{Cli, Command};
    use crate::config::{load, Config, Sources};

    #[test]
    fn each_key_flag_and_variable_is_defined_once() {
        let (mut keys, mut flags, mut variables) = (HashSet::new(), HashSet::new(), HashSet::new());
        for setting in SETTINGS {
            assert!(keys.insert(setting.key), "{} twice", setting.key);
            assert!(flags.insert(setting.flag) || setting.flag.is_none());
            assert!(variables.insert(setting.env) || setting.env.is_none());
            assert!(
                setting.flag.is_some() || setting.env.is_some(),
                "{}: only files can set it",
                setting.key
            );
        }
    }

    /// The configuration document has exactly the table's keys: it rejects unknown keys,
    /// and requires every one of its own, which only the defaults provide.
    #[test]
    fn the_defaults_are_a_complete_document() {
        let defaults = super::super::sources::deserialize(&json!({}));
        assert!(defaults.is_ok(), "{:?}", defaults.err());
        assert_eq!(
            defaults.unwrap().into_config(),
            Ok(Config::default()),
            "Config::default() is the table's"
        );
    }

    /// A value other than the default, as text.
    fn example(setting: &Setting) -> &'static str {
        match (setting.kind, setting.default) {
            (Kind::Switch, DefaultValue::Bool(true)) => "false",
            (Kind::Switch, _) => "true",
            (Kind::Port, _) => "1234",
            (Kind::Number, _) => "3",
            (Kind::Ports, _) => "22,80",
            _ => match setting.key {
                "kumaDPUser" => "kuma",
                "ipFamilyMode" => "ipv4",
                "redirect.dns.resolvConfigPath" => "/run/resolv.conf",
                "retry.sleepBetweenRetries" => "500ms",
                "redirect.inbound.excludePortsForIPs" | "redirect.outbound.excludePortsForIPs" => {
                    "10.0.0.1"
                }
                "redirect.inbound.excludePortsForUIDs"
                | "redirect.outbound.excludePortsForUIDs" => "tcp:22:1000",
                "redirect.vnet.networks" => "docker0:172.17.0.0/16",
                "iptablesExecutables" => "iptables:/a,iptables-save:/b,iptables-restore:/c",
                key => panic!("no example for {key}"),
            },
        }
    }

    /// The example as a configuration file writes it.
    fn in_document(setting: &Setting, example: &str) -> Value {
        match setting.kind {
            Kind::Switch => json!(example == "true"),
            Kind::Port | Kind::Number => json!(example.parse::<u32>().unwrap()),
            Kind::Ports | Kind::Text | Kind::Checked(_) => json!(example),
            Kind::List(_) => json!([example]),
            Kind::Executables => example
                .split(',')
                .map(|pair| pair.split_once(':').unwrap())
                .map(|(name, path)| (name.to_string(), json!(path)))
                .collect(),
        }
    }

    /// What a setting needs from others to have an effect.
    fn context(setting: &Setting) -> Value {
        match setting.key {
            "log.level" => json!({"log": {"enabled": true}}),
            _ => json!({}),
        }
    }

    fn loaded(
        environment: Vec<(String, String)>,
        flags: Value,
        file: &Value,
    ) -> Result<Config, String> {
        let files = ["-".to_string()];
        let file = file.to_string();
        load(Sources {
            files: &files,
            environment,
            flags,
            stdin: &mut file.as_bytes(),
            changes_firewall: false,
            placement: crate::config::Placement::default(),
        })
        .map(|loaded| loaded.config)
        .map_err(|e| e.to_string())
    }

    #[test]
    fn flag_variable_and_key_give_the_same_config() {
        for setting in SETTINGS {
            let example = example(setting);
            let context = context(setting);
            let mut document = context.clone();
            set_path(&mut document, setting.key, in_document(setting, example));
            let from_key = loaded(Vec::new(), json!({}), &document);
            assert_ne!(
                from_key,
                loaded(Vec::new(), json!({}), &context),
                "{}: {example} changes nothing",
                setting.key
            );
            if let Some(flag) = setting.flag {
                let parsed = Cli::try_parse_from([
                    "tproxy-firewalld",
                    "install",
                    &format!("--{flag}={example}"),
                ]);
                let Ok(Cli {
                    command: Command::Install(install),
                }) = parsed
                else {
                    panic!("--{flag}={example}: {parsed:?}")
                };
                let from_flag = loaded(Vec::new(), install.rules.overlay(), &context);
                assert_eq!(from_flag, from_key, "--{flag} and {}", setting.key);
            }
            if let Some(env) = setting.env {
                let variable = format!("{ENV_PREFIX}{env}");
                let from_variable = loaded(
                    vec![(variable.clone(), example.to_string())],
                    json!({}),
                    &context,
                );
                assert_eq!(from_variable, from_key, "{variable} and {}", setting.key);
            }
        }
    }

    /// Help texts naming another setting's default name the table's.
    #[test]
    fn help_quotes_the_defaults_it_names() {
        let help_of = |flag: &str| {
            SETTINGS
                .iter()
                .find(|setting| setting.flag == Some(flag))
                .map(|setting| setting.help)
                .unwrap()
        };
        let default_of = |key: &str| by_key(key).map(|setting| setting.default);
        let Some(DefaultValue::Number(level)) = default_of("log.level") else {
            panic!("log.level")
        };
        assert!(help_of("iptables-logs").contains(&format!("log level {level}")));
        let Some(DefaultValue::Text(resolv_conf)) = default_of("redirect.dns.resolvConfigPath")
        else {
            panic!("redirect.dns.resolvConfigPath")
        };
        assert!(help_of("redirect-dns").contains(resolv_conf));
        // kumaDPUser's default, "", means this lookup.
        let user = help_of("kuma-dp-user");
        assert!(user.contains(&format!("UID {}", crate::system::host::DEFAULT_UID)));
        assert!(user.contains(&format!("user `{}`", crate::system::host::DEFAULT_USER)));
    }
}
