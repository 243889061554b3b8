//! The command line, defined once: parsing, `--help`, man pages and completions all come
//! from these definitions. Flag names and meanings are kumactl's; the flags of install's
//! settings are built from their table, `config::definitions`.

use std::ffi::OsString;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use clap::{value_parser, Arg, ArgAction, ArgMatches, Args, FromArgMatches, Parser, Subcommand};
use serde_json::{json, Value};

use crate::config::definitions::{self, Kind, Setting, SETTINGS};
use crate::config::sources::{merge, set_path};
use crate::config::values;
use crate::config::BackendChoice;

#[derive(Debug, Parser)]
#[command(
    name = "tproxy-firewalld",
    version,
    about = "Install Kuma's transparent-proxy rules (kumactl-compatible) so that they work on hosts whose firewall is managed by firewalld",
    after_help = "Exit status: 0 success, 1 failure while inspecting or changing the host, 2 bad input (nothing changed)."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Install the transparent-proxy rules (same flags and rules as `kumactl install transparent-proxy`)
    ///
    /// Where the rules go: with firewalld running, into its runtime direct configuration over D-Bus
    /// (and, with --store-firewalld, its permanent configuration, which firewalld writes to
    /// direct.xml); with firewalld installed but stopped and --store-firewalld, into direct.xml
    /// (applied when firewalld starts) and into iptables now; without firewalld, into iptables only.
    /// With firewalld only the differences are written; a re-run with the same flags writes nothing.
    Install(Box<InstallCommand>),
    /// Remove every rule and chain this tool or kumactl installed, and nothing else
    ///
    /// Removes them from firewalld's runtime and permanent direct configuration when firewalld runs,
    /// from direct.xml and iptables when it is installed but stopped, and from iptables otherwise.
    /// With --keep-permanent, firewalld's permanent configuration (direct.xml) is left as it is.
    Uninstall(UninstallArgs),
    /// Show and check a direct configuration: a direct.xml file, or firewalld's permanent or runtime one
    ///
    /// Entries are listed per ipv/table/chain in the order the kernel will hold them, each marked
    /// ours or foreign, after every problem firewalld would report when loading or applying them.
    Inspect(InspectArgs),
    /// Compare the desired rules with firewalld's permanent and runtime configuration and the kernel
    Status(Box<StatusArgs>),
    /// Turn iptables-restore text (kumactl's dry run, or iptables-save) into firewalld direct rules
    Translate(TranslateArgs),
    /// Prove with real traffic that the rules redirect as they should (kumactl's `install transparent-proxy-validator`)
    ///
    /// Per installed family: kuma-dp's connection to 127.0.0.6 (::6) reaches the inbound port, as
    /// kumactl's validator checks; another user's connection to an address outside the host lands on
    /// the outbound port with its original destination; kuma-dp's own connection to it is left alone;
    /// with DNS redirection, another user's DNS query reaches the DNS port. Each probe is sent as the
    /// user it needs, and only to documentation addresses (198.51.100.0/24, 2001:db8::/32), the
    /// --target given, or where it cannot leave the host. Run it before kuma-dp starts: Envoy holds the
    /// ports the checks listen on. A failure comes with a diagnosis from what the host shows. Needs root.
    Validate(Box<ValidateArgs>),
}

/// How a command prints its result.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    /// For people
    Text,
    /// A stable JSON document, for scripts
    Json,
}

#[derive(Debug, Args)]
pub struct InspectArgs {
    #[arg(
        long,
        value_name = "PATH",
        conflicts_with = "source",
        help = "The direct.xml to read [default: <firewalld-config-dir>/direct.xml]"
    )]
    pub file: Option<PathBuf>,

    /// Read a running firewalld's configuration over D-Bus instead of a file
    #[arg(long, value_enum)]
    pub source: Option<InspectSource>,

    /// Also check every rule with iptables-restore --test / ip6tables-restore --test
    #[arg(long)]
    pub check_iptables: bool,

    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,

    /// firewalld's configuration directory
    #[arg(long, value_name = "DIR", default_value = "/etc/firewalld")]
    pub firewalld_config_dir: PathBuf,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum InspectSource {
    /// firewalld's permanent configuration (what it loads at start)
    Permanent,
    /// firewalld's runtime configuration (what it applied)
    Runtime,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// The desired rules: the same flags and config as install; with none, the rules of ours in the permanent configuration
    #[command(flatten)]
    pub rules: InstallArgs,

    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,
}

#[derive(Debug, Args)]
pub struct ValidateArgs {
    /// What to expect: the same flags and config as install; with none, what status takes as desired
    #[command(flatten)]
    pub rules: InstallArgs,

    #[arg(long, value_name = "PORT", value_parser = values::parse_port, conflicts_with = "redirect-inbound-port", help = validation_server_port_help())]
    pub validation_server_port: Option<u16>,

    #[arg(long = "target", value_name = "ADDRESS[:PORT]", value_parser = parse_target, help = "Destination outside this host for the outbound checks, as ADDRESS, ADDRESS:PORT or [ADDRESS]:PORT; one per family [default: 198.51.100.1 and 2001:db8::1, port 80 unless the rules exclude it]")]
    pub outbound_target: Vec<SocketAddr>,

    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,
}

/// kumactl's validator calls the inbound port its validation server port.
const INBOUND_PORT_KEY: &str = "redirect.inbound.port";

fn validation_server_port_help() -> String {
    let inbound_port = definitions::by_key(INBOUND_PORT_KEY).expect("in the settings table");
    format!(
        "The port the inbound check listens on: kumactl's name for --{} {}",
        inbound_port.flag.unwrap_or_default(),
        inbound_port.shown_default().unwrap_or_default()
    )
}

/// `--target`: an address with an optional port (0 when none is given).
fn parse_target(text: &str) -> Result<SocketAddr, String> {
    let address = text
        .parse::<SocketAddr>()
        .or_else(|_| text.parse::<IpAddr>().map(|ip| SocketAddr::new(ip, 0)))
        .map_err(|_| {
            format!(
                "'{text}' is not ADDRESS, ADDRESS:PORT or [ADDRESS]:PORT (e.g. 203.0.113.7:443)"
            )
        })?;
    if text.ends_with(":0") {
        return Err(format!("'{text}': port 0 is not a port to connect to"));
    }
    Ok(address)
}

/// kumactl's `install transparent-proxy-validator` is `validate`: the arguments with that
/// spelling replaced, everything else as given.
pub fn with_kumactl_spelling(args: impl IntoIterator<Item = OsString>) -> Vec<OsString> {
    let mut args: Vec<OsString> = args.into_iter().collect();
    if args.get(1).is_some_and(|a| a == "install")
        && args
            .get(2)
            .is_some_and(|a| a == "transparent-proxy-validator")
    {
        args.splice(1..3, [OsString::from("validate")]);
    }
    args
}

#[derive(Debug, Args)]
pub struct TranslateArgs {
    /// iptables-restore text to read: kumactl's --dry-run output (### IPv4 ### / ### IPv6 ### sections) or iptables-save output; `-` or nothing reads stdin
    #[arg(value_name = "FILE")]
    pub input: Option<PathBuf>,

    /// Family of input without ### IPv4 ### / ### IPv6 ### headers (iptables-save output)
    #[arg(long, value_enum, default_value_t = TranslateIpv::Ipv4)]
    pub ipv: TranslateIpv,

    /// Merge the entries into this direct.xml (its other content kept byte for byte) and print the result; the file is not changed
    #[arg(long, value_name = "PATH")]
    pub merge: Option<PathBuf>,

    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum TranslateIpv {
    Ipv4,
    Ipv6,
}

/// Lets scripts keep kumactl's `install transparent-proxy` spelling.
#[derive(Debug, Clone, Args)]
pub struct Target {
    #[arg(value_parser = ["transparent-proxy"], hide = true)]
    pub target: Option<String>,
}

#[derive(Debug, Args)]
pub struct InstallCommand {
    #[command(flatten)]
    pub rules: InstallArgs,

    #[arg(long, value_enum, default_value_t = OutputFormat::Text, help = REPORT_HELP)]
    pub output: OutputFormat,
}

/// `--output` of install and uninstall.
const REPORT_HELP: &str = "json: also print one JSON report on stdout (what changed per target, the backend, the notices, the error and its exit status), instead of a dry run's plan";

#[derive(Debug, Clone, Args)]
pub struct InstallArgs {
    #[command(flatten)]
    pub target: Target,

    /// Configuration file (YAML or JSON, kumactl's keys); repeatable, comma lists allowed, `-` reads stdin. Later files override earlier ones
    #[arg(long, value_name = "FILE")]
    pub config: Vec<String>,

    #[command(flatten)]
    pub settings: SettingFlags,

    #[command(flatten)]
    pub firewalld: FirewalldArgs,

    /// On firewalld 2.x (nftables backend), go ahead although adding the first direct rule makes firewalld flush other tools' iptables rules
    #[arg(long)]
    pub accept_firewalld_iptables_flush: bool,

    /// Set firewalld's RFC3964_IPv4=no (permanently) and reload it, so IPv6 redirection works; without it, firewalld hosts with RFC3964_IPv4=yes get IPv4 rules only
    #[arg(long)]
    pub disable_firewalld_rfc3964_ipv4: bool,
}

/// The flags of [`SETTINGS`], and those given as a partial configuration tree in kumactl's
/// shape.
#[derive(Debug, Clone)]
pub struct SettingFlags {
    given: Value,
}

impl Args for SettingFlags {
    fn augment_args(command: clap::Command) -> clap::Command {
        SETTINGS
            .iter()
            .filter_map(flag_of)
            .fold(command, clap::Command::arg)
    }

    fn augment_args_for_update(command: clap::Command) -> clap::Command {
        Self::augment_args(command)
    }
}

impl FromArgMatches for SettingFlags {
    fn from_arg_matches(matches: &ArgMatches) -> Result<Self, clap::Error> {
        let mut given = json!({});
        for setting in SETTINGS {
            if let Some(value) = value_of_flag(setting, matches) {
                set_path(&mut given, setting.key, value);
            }
        }
        Ok(Self { given })
    }

    fn update_from_arg_matches(&mut self, matches: &ArgMatches) -> Result<(), clap::Error> {
        merge(&mut self.given, Self::from_arg_matches(matches)?.given);
        Ok(())
    }
}

/// The flag that sets `setting`, when kumactl has one.
fn flag_of(setting: &'static Setting) -> Option<Arg> {
    let flag = setting.flag?;
    let arg = Arg::new(flag)
        .long(flag)
        .value_name(setting.value_name)
        .help(setting.help_with_default())
        .action(ArgAction::Set);
    Some(match setting.kind {
        Kind::Switch => arg
            .value_parser(value_parser!(bool))
            .num_args(0..=1)
            .require_equals(true)
            .default_missing_value("true"),
        Kind::Port => arg.value_parser(values::parse_port),
        Kind::Number => arg.value_parser(value_parser!(u32)),
        Kind::Text => arg.value_parser(value_parser!(String)),
        Kind::Checked(check) => arg.value_parser(checked(check)),
        Kind::Ports => arg
            .value_parser(checked(values::parse_port_list))
            .action(ArgAction::Append),
        Kind::List(check) => arg.value_parser(checked(check)).action(ArgAction::Append),
        Kind::Executables => arg
            .value_parser(checked(parse_executables))
            .action(ArgAction::Append),
    })
}

/// What the flag of `setting` puts in the configuration tree, when it was given.
fn value_of_flag(setting: &Setting, matches: &ArgMatches) -> Option<Value> {
    let flag = setting.flag?;
    let texts = || {
        matches
            .get_many::<String>(flag)
            .map(|v| v.cloned().collect::<Vec<_>>())
    };
    match setting.kind {
        Kind::Switch => matches.get_one::<bool>(flag).map(|v| json!(v)),
        Kind::Port => matches.get_one::<u16>(flag).map(|v| json!(v)),
        Kind::Number => matches.get_one::<u32>(flag).map(|v| json!(v)),
        Kind::Text | Kind::Checked(_) => matches.get_one::<String>(flag).map(|v| json!(v)),
        // Repeated flags add to one comma list, as kumactl's do.
        Kind::Ports => texts().map(|v| json!(v.join(","))),
        Kind::List(_) => texts().map(|v| json!(v)),
        Kind::Executables => texts().map(|v| executable_paths(&v)),
    }
}

#[derive(Debug, Args)]
pub struct UninstallArgs {
    #[command(flatten)]
    pub target: Target,

    /// Print what would be removed where, and change nothing
    #[arg(long)]
    pub dry_run: bool,

    /// Remove the rules from the running firewall only: firewalld's permanent configuration (direct.xml) keeps ours, and firewalld applies them again at its next start. What stopping tproxy-firewalld.service does, so that a boot through firewalld finds the rules in place
    #[arg(long)]
    pub keep_permanent: bool,

    #[command(flatten)]
    pub firewalld: FirewalldArgs,

    /// More detail on stderr
    #[arg(long)]
    pub verbose: bool,

    /// Custom executables, as for install
    #[arg(long, value_name = "NAME:PATH,...", value_parser = checked(parse_executables))]
    pub iptables_executables: Vec<String>,

    #[arg(long, value_enum, default_value_t = OutputFormat::Text, help = REPORT_HELP)]
    pub output: OutputFormat,
}

/// The command and dry run of an install or uninstall that asks for a JSON report
/// (`--output json`), read from its arguments as given: for a report of arguments that do
/// not parse.
pub fn report_requested(args: &[OsString]) -> Option<(&'static str, bool)> {
    let command = match args.get(1)?.to_str()? {
        "install" => "install",
        "uninstall" => "uninstall",
        _ => return None,
    };
    let rest: Vec<&str> = args[2..]
        .iter()
        .map(|a| a.to_str().unwrap_or_default())
        .take_while(|a| *a != "--")
        .collect();
    let json = rest
        .windows(2)
        .any(|w| w[0] == "--output" && w[1] == "json")
        || rest.contains(&"--output=json");
    let dry_run = rest.contains(&"--dry-run") || rest.contains(&"--dry-run=true");
    json.then_some((command, dry_run))
}

/// Where rules go, shared by install and uninstall.
#[derive(Debug, Clone, Args)]
pub struct FirewalldArgs {
    /// Where to apply the rules: `auto` uses firewalld when it runs, direct.xml plus iptables when firewalld is installed but stopped (with --store-firewalld), iptables otherwise
    #[arg(long, value_enum, default_value_t = BackendChoice::Auto)]
    pub backend: BackendChoice,

    /// firewalld's configuration directory (holds direct.xml and firewalld.conf)
    #[arg(long, value_name = "DIR", default_value = "/etc/firewalld")]
    pub firewalld_config_dir: PathBuf,
}

/// Wraps a parser so clap reports its error under the flag's name but keeps the text.
fn checked<T>(
    parse: fn(&str) -> Result<T, String>,
) -> impl Fn(&str) -> Result<String, String> + Clone {
    move |text: &str| parse(text).map(|_| text.to_string())
}

const EXECUTABLE_NAMES: [&str; 6] = [
    "iptables",
    "iptables-save",
    "iptables-restore",
    "ip6tables",
    "ip6tables-save",
    "ip6tables-restore",
];

fn parse_executables(text: &str) -> Result<Vec<(String, String)>, String> {
    text.split(',')
        .filter(|p| !p.trim().is_empty())
        .map(|pair| match pair.split_once(':') {
            Some((name, path))
                if EXECUTABLE_NAMES.contains(&name.trim()) && !path.trim().is_empty() =>
            {
                Ok((name.trim().to_string(), path.trim().to_string()))
            }
            _ => Err(format!(
                "'{pair}' is not name:path with a name among {}",
                EXECUTABLE_NAMES.join(", ")
            )),
        })
        .collect()
}

/// `--iptables-executables` values as `iptablesExecutables` holds them: name → path.
fn executable_paths(values: &[String]) -> Value {
    let mut paths = json!({});
    for value in values {
        for (name, path) in parse_executables(value).expect("validated by clap") {
            paths[name] = json!(path);
        }
    }
    paths
}

/// Uninstall's `--iptables-executables`, as a partial configuration tree in kumactl's shape.
pub fn executables_overlay(values: &[String], tree: &mut Value) {
    if !values.is_empty() {
        merge(
            tree,
            json!({ "iptablesExecutables": executable_paths(values) }),
        );
    }
}

impl InstallArgs {
    /// The flags given, as a partial configuration tree in kumactl's shape.
    pub fn overlay(&self) -> Value {
        self.settings.given.clone()
    }

    /// kumactl rejects the two DNS flags together (config files may set both).
    pub fn conflicting_dns_flags(&self) -> bool {
        self.flag_is_true("redirect.dns.enabled") && self.flag_is_true("redirect.dns.captureAll")
    }

    /// Whether `--dry-run` was given (files and variables may ask for one too).
    pub fn dry_run(&self) -> bool {
        self.flag_is_true("dryRun")
    }

    fn flag_is_true(&self, key: &str) -> bool {
        key.split('.')
            .try_fold(&self.settings.given, |node, name| node.get(name))
            .is_some_and(|value| value == true)
    }
}

impl ValidateArgs {
    /// What to expect: the rules install's flags give, with the inbound port
    /// `--validation-server-port` names.
    pub fn expected_rules(&self) -> InstallArgs {
        let mut rules = self.rules.clone();
        if let Some(port) = self.validation_server_port {
            set_path(&mut rules.settings.given, INBOUND_PORT_KEY, json!(port));
        }
        rules
    }
}

/// Sections the man page of a command ends with, kept beside the flags they describe.
pub struct ManualSections {
    /// (command line, what it does)
    pub examples: &'static [(&'static str, &'static str)],
    /// (path, what it is)
    pub files: &'static [(&'static str, &'static str)],
    /// (status, meaning)
    pub exit_status: &'static [(&'static str, &'static str)],
    /// (variable, what it changes)
    pub environment: &'static [(&'static str, &'static str)],
}

const FILES: &[(&str, &str)] = &[
    (
        "/etc/tproxy-firewalld/config.yaml",
        "the configuration tproxy-firewalld.service installs (kumactl's keys); without flags, status and validate build the desired rules from it when it exists. A root run that changes the firewall refuses a --config file, or a directory on its path, that a user other than root could write",
    ),
    (
        "/etc/firewalld/direct.xml",
        "firewalld's permanent direct configuration; our entries are the KUMA_MESH_* chains, the rules in them and rules carrying a kuma/mesh/transparent/proxy comment",
    ),
    (
        "/etc/firewalld/direct.xml.old",
        "the file as it was before the last change (kept as firewalld keeps it)",
    ),
    (
        "/etc/firewalld/firewalld.conf",
        "read for RFC3964_IPv4 when firewalld is stopped",
    ),
    (
        "/usr/lib/systemd/system/tproxy-firewalld.service",
        "installs the rules at boot (after firewalld, before kuma-dp); stopping it runs uninstall --keep-permanent",
    ),
];

const ENVIRONMENT: &[(&str, &str)] = &[
    (
        "DBUS_SYSTEM_BUS_ADDRESS",
        "the system bus to find firewalld on (default: unix:path=/run/dbus/system_bus_socket)",
    ),
    (
        "TPROXY_FIREWALLD_LOCK_TIMEOUT",
        "seconds install and uninstall wait for another run to finish (default 60; 0 fails at once)",
    ),
    (
        "TPROXY_FIREWALLD_START_TIMEOUT",
        "seconds to wait for the system bus to answer, for a firewalld that owns its bus name but is still loading its configuration, and for each of firewalld's answers during a run (default 60)",
    ),
];

const CHANGE_STATUS: &[(&str, &str)] = &[
    ("0", "done, or nothing to do"),
    (
        "1",
        "failure while inspecting or changing the host; what was changed is undone",
    ),
    (
        "2",
        "bad input (flag, config key, environment variable, file); nothing changed",
    ),
];

/// The man page sections of `command` (`""` for the top-level page).
pub fn manual_sections(command: &str) -> ManualSections {
    match command {
        "install" => ManualSections {
            examples: &[
                (
                    "tproxy-firewalld install --kuma-dp-user kuma-dp --redirect-dns --exclude-inbound-ports 22 --store-firewalld",
                    "Install through firewalld, runtime and permanent, so the rules survive reloads and reboots.",
                ),
                (
                    "tproxy-firewalld install --config /etc/tproxy-firewalld/config.yaml",
                    "Install what the packaged configuration file asks for, as tproxy-firewalld.service does at boot.",
                ),
                (
                    "tproxy-firewalld install --dry-run --store-firewalld --exclude-inbound-ports 22",
                    "Show every entry that would be added or removed, per target, and the resulting direct.xml.",
                ),
                (
                    "tproxy-firewalld install --store-firewalld --disable-firewalld-rfc3964-ipv4",
                    "Also redirect IPv6 on a firewalld host (sets RFC3964_IPv4=no and reloads firewalld).",
                ),
                (
                    "tproxy-firewalld install --config /etc/tproxy-firewalld/config.yaml --dry-run --output json",
                    "One JSON report of what would change per target (README.md, JSON output, describes it); without --dry-run, of what changed.",
                ),
            ],
            files: FILES,
            environment: ENVIRONMENT,
            exit_status: CHANGE_STATUS,
        },
        "uninstall" => ManualSections {
            examples: &[
                ("tproxy-firewalld uninstall", "Remove our rules from firewalld's runtime and permanent configuration (or direct.xml and iptables when firewalld is stopped)."),
                ("tproxy-firewalld uninstall --dry-run", "Show what would be removed where."),
                ("tproxy-firewalld uninstall --output json", "Remove them and print one JSON report of what was removed where."),
                ("tproxy-firewalld uninstall --keep-permanent", "Take the rules out of the running firewall; firewalld's permanent configuration keeps them for its next start (what stopping tproxy-firewalld.service does)."),
            ],
            files: FILES,
            environment: ENVIRONMENT,
            exit_status: CHANGE_STATUS,
        },
        "inspect" => ManualSections {
            examples: &[
                ("tproxy-firewalld inspect", "Check /etc/firewalld/direct.xml and list its entries in kernel order."),
                ("tproxy-firewalld inspect --source runtime --output json", "The running firewalld's direct configuration as JSON."),
            ],
            files: FILES,
            environment: ENVIRONMENT,
            exit_status: &[
                ("0", "the configuration is valid"),
                ("1", "problems were found (or it could not be read)"),
                ("2", "usage error"),
            ],
        },
        "status" => ManualSections {
            examples: &[
                ("tproxy-firewalld status", "Compare our stored rules with firewalld's runtime configuration and the kernel."),
                ("tproxy-firewalld status --kuma-dp-user kuma-dp --exclude-inbound-ports 22 --output json", "Compare with the rules these flags ask for."),
            ],
            files: FILES,
            environment: ENVIRONMENT,
            exit_status: &[
                ("0", "every view holds the desired rules"),
                ("1", "failure while reading a view"),
                ("2", "bad input"),
                ("3", "drift: some view misses rules or has extra ones"),
            ],
        },
        "validate" => ManualSections {
            examples: &[
                ("tproxy-firewalld validate", "Check the installed rules with real traffic, both families; a failure comes with its diagnosis."),
                ("tproxy-firewalld install transparent-proxy-validator --ip-family-mode ipv4", "kumactl's spelling: the IPv4 checks only."),
                ("tproxy-firewalld validate --kuma-dp-user kuma-dp --redirect-dns --target 203.0.113.7:443 --output json", "Expect what these flags install, probe 203.0.113.7:443, print JSON."),
            ],
            files: FILES,
            environment: ENVIRONMENT,
            exit_status: &[
                ("0", "every check passed"),
                ("1", "a check failed or could not run (or validate could not read the host); not root"),
                ("2", "bad input"),
            ],
        },
        "translate" => ManualSections {
            examples: &[
                ("kumactl install transparent-proxy --dry-run | tproxy-firewalld translate", "kumactl's rules as direct.xml entries, insert rules and IPv6 included."),
                ("tproxy-firewalld translate --merge /etc/firewalld/direct.xml rules.txt", "Print direct.xml with the translated entries merged in; the file is not changed."),
            ],
            files: FILES,
            environment: &[],
            exit_status: &[("0", "translated"), ("1", "failure reading a file"), ("2", "the input is not iptables-restore text")],
        },
        _ => ManualSections {
            examples: &[
                ("tproxy-firewalld install --kuma-dp-user kuma-dp --exclude-inbound-ports 22 --store-firewalld", "Install and keep the rules across reloads and reboots."),
                ("tproxy-firewalld status", "Is everything still in place?"),
                ("tproxy-firewalld validate", "Does it work? Real traffic through the rules."),
                ("tproxy-firewalld uninstall", "Remove every rule of ours, and nothing else."),
            ],
            files: FILES,
            environment: ENVIRONMENT,
            exit_status: &[
                ("0", "success"),
                ("1", "failure while inspecting or changing the host (inspect: problems found)"),
                ("2", "bad input; nothing changed"),
                ("3", "status found drift"),
            ],
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn kumactl_spelling_and_bool_forms_parse() {
        let cli = Cli::try_parse_from([
            "tproxy-firewalld",
            "install",
            "transparent-proxy",
            "--redirect-dns",
            "--redirect-inbound=false",
            "--exclude-inbound-ports",
            "22,80",
            "--exclude-inbound-ports",
            "443",
        ])
        .unwrap();
        let Command::Install(install) = cli.command else {
            panic!("install expected")
        };
        let tree = install.rules.overlay();
        assert_eq!(tree["redirect"]["dns"]["enabled"], json!(true));
        assert_eq!(tree["redirect"]["inbound"]["enabled"], json!(false));
        assert_eq!(
            tree["redirect"]["inbound"]["excludePorts"],
            json!("22,80,443")
        );
    }

    #[test]
    fn kumactls_validator_spelling_is_validate() {
        let args = |words: &[&str]| words.iter().map(OsString::from).collect::<Vec<_>>();
        let spelled = with_kumactl_spelling(args(&[
            "tproxy-firewalld",
            "install",
            "transparent-proxy-validator",
            "--validation-server-port",
            "15010",
        ]));
        assert_eq!(
            spelled,
            args(&[
                "tproxy-firewalld",
                "validate",
                "--validation-server-port",
                "15010"
            ])
        );
        let Command::Validate(validate) = Cli::try_parse_from(spelled).unwrap().command else {
            panic!("validate expected")
        };
        assert_eq!(validate.validation_server_port, Some(15010));
        for kept in [
            &["tproxy-firewalld", "install", "transparent-proxy"][..],
            &[
                "tproxy-firewalld",
                "validate",
                "transparent-proxy-validator",
            ],
            &[
                "tproxy-firewalld",
                "install",
                "--dry-run",
                "transparent-proxy-validator",
            ],
        ] {
            assert_eq!(with_kumactl_spelling(args(kept)), args(kept));
        }
    }

    #[test]
    fn manual_sections_name_each_term_once() {
        let root = Cli::command();
        let commands = root.get_subcommands().map(clap::Command::get_name);
        for command in commands.chain([""]) {
            let sections = manual_sections(command);
            for items in [
                sections.examples,
                sections.files,
                sections.exit_status,
                sections.environment,
            ] {
                let mut terms: Vec<&str> = items.iter().map(|(term, _)| *term).collect();
                terms.sort_unstable();
                let count = terms.len();
                terms.dedup();
                assert_eq!(terms.len(), count, "{command:?}: {terms:?}");
            }
        }
    }

    #[test]
    fn a_report_is_requested_by_install_or_uninstall_with_output_json() {
        let args = |words: &[&str]| words.iter().map(OsString::from).collect::<Vec<_>>();
        let requested = |words: &[&str]| report_requested(&args(words));
        assert_eq!(
            requested(&["t", "install", "--output", "json", "--bad"]),
            Some(("install", false))
        );
        assert_eq!(
            requested(&["t", "uninstall", "--dry-run", "--output=json"]),
            Some(("uninstall", true))
        );
        assert_eq!(requested(&["t", "install", "--output", "text"]), None);
        assert_eq!(requested(&["t", "status", "--output", "json"]), None);
        assert_eq!(requested(&["t", "install", "--", "--output=json"]), None);
        assert_eq!(requested(&["t"]), None);
    }

    #[test]
    fn targets_take_an_optional_port() {
        assert_eq!(
            parse_target("203.0.113.7"),
            Ok("203.0.113.7:0".parse().unwrap())
        );
        assert_eq!(
            parse_target("203.0.113.7:443"),
            Ok("203.0.113.7:443".parse().unwrap())
        );
        assert_eq!(
            parse_target("2001:db8::7"),
            Ok("[2001:db8::7]:0".parse().unwrap())
        );
        assert_eq!(
            parse_target("[2001:db8::7]:443"),
            Ok("[2001:db8::7]:443".parse().unwrap())
        );
        for bad in ["example.com", "203.0.113.7:0", "203.0.113.7:70000", ""] {
            assert!(parse_target(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn bad_flag_values_are_usage_errors_naming_the_flag() {
        for args in [
            ["--redirect-inbound-port", "0"],
            ["--exclude-inbound-ports", "22,70000"],
            ["--exclude-outbound-ips", "10.0.0.1 -j ACCEPT"],
            ["--exclude-outbound-ports-for-uids", "http:3000-5000:1"],
            ["--vnet", "docker0"],
            ["--ip-family-mode", "ipv6"],
            ["--iptables-executables", "iptables"],
        ] {
            let err =
                Cli::try_parse_from(["tproxy-firewalld", "install", args[0], args[1]]).unwrap_err();
            assert_eq!(err.exit_code(), i32::from(crate::error::EXIT_BAD_INPUT));
            assert!(err.to_string().contains(args[0]), "{}", err);
        }
    }
}
