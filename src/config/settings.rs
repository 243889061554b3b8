//! The configuration document in kumactl's shape (`kumaDPUser`, `redirect.inbound.port`, …).
//! Every layer (files, environment, flags) is a partial JSON tree of this shape; the merged
//! tree, laid over the defaults of [`super::definitions`], is deserialised here, so an
//! unknown key or a wrong type is reported by its path. Every key is required: the defaults
//! hold them all, so a key missing from the definitions fails every load.

use serde::de::{self, Deserializer};
use serde::Deserialize;

use super::values::parse_port;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Settings {
    #[serde(rename = "kumaDPUser", deserialize_with = "string_or_number")]
    pub kuma_dp_user: String,
    pub ip_family_mode: String,
    pub redirect: Redirect,
    pub drop_invalid_packets: bool,
    pub verbose: bool,
    pub dry_run: bool,
    pub log: Log,
    pub wait: u32,
    pub wait_interval: u32,
    pub retry: Retry,
    pub store_firewalld: bool,
    pub iptables_executables: Executables,
    pub comments: Comments,
    pub cni_mode: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Redirect {
    pub inbound: Flow,
    pub outbound: Flow,
    pub dns: Dns,
    pub vnet: Vnet,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Flow {
    pub enabled: bool,
    #[serde(deserialize_with = "port")]
    pub port: u16,
    #[serde(deserialize_with = "port_list")]
    pub include_ports: Vec<u16>,
    #[serde(deserialize_with = "port_list")]
    pub exclude_ports: Vec<u16>,
    #[serde(rename = "excludePortsForUIDs", deserialize_with = "text_list")]
    pub exclude_ports_for_uids: Vec<String>,
    #[serde(rename = "excludePortsForIPs", deserialize_with = "text_list")]
    pub exclude_ports_for_ips: Vec<String>,
    pub insert_redirect_instead_of_append: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Dns {
    pub enabled: bool,
    #[serde(deserialize_with = "port")]
    pub port: u16,
    pub capture_all: bool,
    pub skip_conntrack_zone_split: bool,
    pub resolv_config_path: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Vnet {
    #[serde(deserialize_with = "text_list")]
    pub networks: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Log {
    pub enabled: bool,
    pub level: u8,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Retry {
    pub max_retries: u32,
    pub sleep_between_retries: String,
}

/// Paths given for some executables; the others are absent.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Executables {
    pub iptables: Option<String>,
    #[serde(rename = "iptables-save")]
    pub iptables_save: Option<String>,
    #[serde(rename = "iptables-restore")]
    pub iptables_restore: Option<String>,
    pub ip6tables: Option<String>,
    #[serde(rename = "ip6tables-save")]
    pub ip6tables_save: Option<String>,
    #[serde(rename = "ip6tables-restore")]
    pub ip6tables_restore: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Comments {
    pub disabled: bool,
}

/// Port fields accept a number or a string, as kumactl's `Port` does.
fn port<'de, D: Deserializer<'de>>(deserializer: D) -> Result<u16, D::Error> {
    let value = ScalarOrList::deserialize(deserializer)?;
    match value {
        ScalarOrList::Scalar(text) => parse_port(&text).map_err(de::Error::custom),
        ScalarOrList::List(_) => Err(de::Error::custom("expected one port, found a list")),
    }
}

/// Port lists accept a number, a comma-separated string or a list of either.
fn port_list<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<u16>, D::Error> {
    let items = match ScalarOrList::deserialize(deserializer)? {
        ScalarOrList::Scalar(text) => vec![text],
        ScalarOrList::List(items) => items,
    };
    let mut ports = Vec::new();
    for item in items {
        ports.extend(super::values::parse_port_list(&item).map_err(de::Error::custom)?);
    }
    Ok(ports)
}

/// Lists of specs whose items may be written as bare numbers (`- 1` for a UID).
fn text_list<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<String>, D::Error> {
    match ScalarOrList::deserialize(deserializer)? {
        ScalarOrList::List(items) => Ok(items),
        ScalarOrList::Scalar(_) => Err(de::Error::custom("expected a list")),
    }
}

fn string_or_number<'de, D: Deserializer<'de>>(deserializer: D) -> Result<String, D::Error> {
    match ScalarOrList::deserialize(deserializer)? {
        ScalarOrList::Scalar(text) => Ok(text),
        ScalarOrList::List(_) => Err(de::Error::custom(
            "expected a user name or UID, found a list",
        )),
    }
}

/// A scalar (string or integer) or a list of scalars, normalised to text.
enum ScalarOrList {
    Scalar(String),
    List(Vec<String>),
}

impl<'de> Deserialize<'de> for ScalarOrList {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Scalar {
            Text(String),
            Number(u64),
        }
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            One(Scalar),
            Many(Vec<Scalar>),
        }
        let text = |s: Scalar| match s {
            Scalar::Text(t) => t,
            Scalar::Number(n) => n.to_string(),
        };
        match Raw::deserialize(deserializer)
            .map_err(|_| de::Error::custom("expected a number, a string or a list of them"))?
        {
            Raw::One(s) => Ok(Self::Scalar(text(s))),
            Raw::Many(items) => Ok(Self::List(items.into_iter().map(text).collect())),
        }
    }
}
