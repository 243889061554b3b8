//! firewalld's D-Bus interface as far as we use it: the connection to the system bus, the
//! proxies, calls sent ahead of their answers, the signals that say firewalld's state was
//! replaced, the wire shape of direct settings, and firewalld's errors. It knows nothing of
//! plans or the CLI.
//!
//! zbus 5 with its blocking API: the calls that change firewalld go one at a time, each
//! answer deciding the next, and the tool has no other use for an async runtime. Only the
//! reads a run sends all at once ([`Pending`]) use zbus's async calls underneath. zbus 6
//! dropped the blocking API and would need us to carry `block_on` around every call for
//! no gain.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Mutex, PoisonError};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use futures_lite::future;
use zbus::blocking::Connection;
use zbus::proxy::MethodFlags;
use zbus::zvariant;

pub const SERVICE: &str = "org.fedoraproject.FirewallD1";
const EXCEPTION: &str = "org.fedoraproject.FirewallD1.Exception";
const NOT_AUTHORIZED: &str = "org.fedoraproject.FirewallD1.NotAuthorizedException";

/// A chain `(ipv, table, chain)`.
pub type WireChain = (String, String, String);
/// A rule `(ipv, table, chain, priority, args)`.
pub type WireRule = (String, String, String, i32, Vec<String>);
/// A passthrough `(ipv, args)`.
pub type WirePassthrough = (String, Vec<String>);
/// `(chains a(sss), rules a(sssias), passthroughs a(sas))`, as `getSettings`/`update` carry it.
pub type WireSettings = (Vec<WireChain>, Vec<WireRule>, Vec<WirePassthrough>);

#[zbus::proxy(
    interface = "org.fedoraproject.FirewallD1",
    default_service = "org.fedoraproject.FirewallD1",
    default_path = "/org/fedoraproject/FirewallD1",
    gen_async = false,
    blocking_name = "FirewallD"
)]
pub trait FirewallD1 {
    #[zbus(name = "reload", no_autostart)]
    fn reload(&self) -> zbus::Result<()>;
}

#[zbus::proxy(
    interface = "org.fedoraproject.FirewallD1.direct",
    default_service = "org.fedoraproject.FirewallD1",
    default_path = "/org/fedoraproject/FirewallD1",
    gen_async = false,
    blocking_name = "RuntimeDirect"
)]
pub trait RuntimeDirect {
    // Its calls (getAllRules, addRule, …) are sent by name ahead of their answers:
    // `Pending::call`.
}

#[zbus::proxy(
    interface = "org.fedoraproject.FirewallD1.config.direct",
    default_service = "org.fedoraproject.FirewallD1",
    default_path = "/org/fedoraproject/FirewallD1/config",
    gen_async = false,
    blocking_name = "PermanentDirect"
)]
pub trait PermanentDirect {
    // Its calls are sent by name too. Changes go through its per-entry methods (addRule,
    // …), each a read-modify-write inside firewalld, which handles one call at a time:
    // unlike a client's getSettings/update round trip, they cannot lose an entry another
    // client writes meanwhile.
}

#[zbus::proxy(
    interface = "org.fedoraproject.FirewallD1.config",
    default_service = "org.fedoraproject.FirewallD1",
    default_path = "/org/fedoraproject/FirewallD1/config",
    gen_async = false,
    blocking_name = "Settings"
)]
pub trait Config {
    #[zbus(property, name = "RFC3964_IPv4")]
    fn set_rfc3964_ipv4(&self, value: &str) -> zbus::Result<()>;
}

/// Where firewalld's main interface lives.
pub const PATH: &str = "/org/fedoraproject/FirewallD1";
/// Where its configuration interfaces live.
pub const CONFIG_PATH: &str = "/org/fedoraproject/FirewallD1/config";

/// A proxy whose every property read asks firewalld: its answers change under us.
pub fn uncached<'a, T>(connection: &Connection) -> zbus::Result<T>
where
    T: zbus::proxy::Defaults + From<zbus::Proxy<'a>>,
{
    zbus::blocking::proxy::Builder::new(connection)
        .cache_properties(zbus::proxy::CacheProperties::No)
        .build()
}

/// A method call to firewalld, already sent, whose answer is collected later.
///
/// firewalld answers one call at a time, in the order the calls arrive, each from Python. A
/// run sends every call it knows it needs at once, in the order it needs the answers, from
/// one thread: firewalld is never idle waiting for our next call, and the first answers are
/// worked on while firewalld prepares the others.
///
/// The call goes on the wire at the first poll of zbus's call future, which writes the
/// message before it waits for the reply. That is how zbus 5 works rather than something it
/// promises; were it to change, each call would go out when its answer is waited for:
/// slower, but the same answers.
pub struct Pending<T> {
    // In a Mutex only to be Sync (the future is not), so that what holds it can be shared
    // between threads; it is only ever used through `&mut self` or `self`.
    answer: Mutex<Answer<T>>,
    /// The connection's method timeout, which zbus applies to its other calls only.
    patience: Option<Duration>,
}

type Answer<T> = Pin<Box<dyn Future<Output = zbus::Result<T>> + Send>>;

impl<T: Send + 'static> Pending<T> {
    /// Sends `method` through `proxy` now. With NoAutoStart: the bus must not start a stopped
    /// firewalld for us, and answers for it that nobody owns its name (NameHasNoOwner).
    pub fn call<B>(proxy: &zbus::blocking::Proxy<'static>, method: &'static str, body: B) -> Self
    where
        B: serde::Serialize + zvariant::DynamicType + Send + Sync + 'static,
        T: for<'d> zvariant::DynamicDeserialize<'d>,
    {
        let proxy = proxy.inner().clone();
        let patience = proxy.connection().method_timeout();
        let mut answer: Answer<T> = Box::pin(async move {
            let flags = MethodFlags::NoAutoStart.into();
            proxy
                .call_with_flags(method, flags, &body)
                .await?
                .ok_or_else(|| zbus::Error::Failure(format!("{method}: no answer")))
        });
        // The first poll writes the call to the socket, zbus having noted its serial for the
        // answer: nothing waits here.
        if let Poll::Ready(done) = answer
            .as_mut()
            .poll(&mut Context::from_waker(Waker::noop()))
        {
            answer = Box::pin(std::future::ready(done));
        }
        Pending {
            answer: Mutex::new(answer),
            patience,
        }
    }

    /// Waits for the answer, for at most the connection's method timeout from now: the calls
    /// sent at once are answered one after the other, so each waits from the previous answer.
    pub fn answer(self) -> zbus::Result<T> {
        let answer = self
            .answer
            .into_inner()
            .unwrap_or_else(PoisonError::into_inner);
        let Some(patience) = self.patience else {
            return async_io::block_on(answer);
        };
        async_io::block_on(future::or(answer, async move {
            async_io::Timer::after(patience).await;
            Err(zbus::Error::from(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("no answer within {} s", patience.as_secs()),
            )))
        }))
    }

    /// The answer, or None when it takes longer than `patience` (it can still be waited for).
    pub fn answer_within(&mut self, patience: Duration) -> Option<zbus::Result<T>> {
        let answer = self
            .answer
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner);
        async_io::block_on(future::or(async { Some(answer.await) }, async {
            async_io::Timer::after(patience).await;
            None
        }))
    }
}

/// `GetAll` of `interface` through a Properties proxy at firewalld's `path`, sent now.
pub fn get_all(
    connection: &Connection,
    path: &'static str,
    interface: &'static str,
) -> zbus::Result<Pending<HashMap<String, zvariant::OwnedValue>>> {
    let properties = zbus::blocking::fdo::PropertiesProxy::builder(connection)
        .destination(SERVICE)?
        .path(path)?
        .cache_properties(zbus::proxy::CacheProperties::No)
        .build()?;
    Ok(Pending::call(properties.inner(), "GetAll", interface))
}

/// The string properties among `all`.
pub fn strings(all: HashMap<String, zvariant::OwnedValue>) -> HashMap<String, String> {
    all.into_iter()
        .filter_map(|(name, value)| String::try_from(value).ok().map(|v| (name, v)))
        .collect()
}

/// How firewalld's whole configuration was replaced under a client.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Disruption {
    /// `Reloaded`: the runtime is the permanent configuration again (runtime-only entries
    /// gone, unless FlushAllOnReload=no).
    Reloaded,
    /// Its bus name changed owner: firewalld stopped, and maybe started again from its
    /// permanent configuration.
    Restarted,
}

/// Signals that tell a client its view of firewalld is stale: `Reloaded`, and firewalld's
/// bus name changing owner. zbus hands a stream every message that arrived before the reply
/// to a later call, so once that reply is in, [`Disruptions::seen`] knows whether either
/// happened before firewalld answered it.
pub struct Disruptions {
    reloads: zbus::MessageStream,
    owners: zbus::MessageStream,
}

impl Disruptions {
    /// Subscribes (one round trip to the bus, not to firewalld).
    pub fn watch(connection: &Connection) -> zbus::Result<Disruptions> {
        let reloaded = zbus::MatchRule::builder()
            .msg_type(zbus::message::Type::Signal)
            .sender(SERVICE)?
            .interface(SERVICE)?
            .member("Reloaded")?
            .build();
        let owner = zbus::MatchRule::builder()
            .msg_type(zbus::message::Type::Signal)
            .sender("org.freedesktop.DBus")?
            .interface("org.freedesktop.DBus")?
            .member("NameOwnerChanged")?
            .arg(0, SERVICE)?
            .build();
        let connection = connection.inner();
        let (reloads, owners) = async_io::block_on(future::zip(
            zbus::MessageStream::for_match_rule(reloaded, connection, Some(QUEUED_SIGNALS)),
            zbus::MessageStream::for_match_rule(owner, connection, Some(QUEUED_SIGNALS)),
        ));
        Ok(Disruptions {
            reloads: reloads?,
            owners: owners?,
        })
    }

    /// What happened since the last look, without waiting; a restart outweighs a reload.
    pub fn seen(&mut self) -> Option<Disruption> {
        let restarted = drained(&mut self.owners) > 0;
        let reloaded = drained(&mut self.reloads) > 0;
        if restarted {
            Some(Disruption::Restarted)
        } else {
            reloaded.then_some(Disruption::Reloaded)
        }
    }
}

/// Signals a stream may hold before zbus waits for us to take them: far more than a run
/// ever sees.
const QUEUED_SIGNALS: usize = 64;

/// Takes every message a stream already holds; how many there were.
fn drained(stream: &mut zbus::MessageStream) -> usize {
    use futures_lite::StreamExt as _;
    let mut count = 0;
    while let Some(Some(_)) = async_io::block_on(future::poll_once(stream.next())) {
        count += 1;
    }
    count
}

/// A runtime direct entry another client added or removed, from firewalld's signals.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RuntimeChange {
    Added(Entry),
    Removed(Entry),
}

/// A runtime direct entry, as firewalld's signals carry it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Entry {
    Chain(WireChain),
    Rule(WireRule),
    Passthrough(WirePassthrough),
}

/// firewalld's signals for changes of its runtime direct configuration, each followed by
/// `Reloaded` when firewalld reloads: what others changed between a read and a reload.
pub struct RuntimeChanges {
    stream: zbus::MessageStream,
}

impl RuntimeChanges {
    pub fn watch(connection: &Connection) -> zbus::Result<RuntimeChanges> {
        let rule = zbus::MatchRule::builder()
            .msg_type(zbus::message::Type::Signal)
            .sender(SERVICE)?
            .path(PATH)?
            .build();
        let stream = async_io::block_on(zbus::MessageStream::for_match_rule(
            rule,
            connection.inner(),
            Some(QUEUED_SIGNALS),
        ))?;
        Ok(RuntimeChanges { stream })
    }

    /// The changes of runtime direct entries signalled so far, up to the first `Reloaded`
    /// (the later ones happened after it), without waiting.
    pub fn before_reload(&mut self) -> Vec<RuntimeChange> {
        use futures_lite::StreamExt as _;
        let mut changes = Vec::new();
        while let Some(Some(Ok(message))) =
            async_io::block_on(future::poll_once(self.stream.next()))
        {
            let header = message.header();
            let member = header.member().map(|m| m.as_str()).unwrap_or_default();
            if member == "Reloaded" {
                break;
            }
            if let Some(change) = runtime_change(member, &message) {
                changes.push(change);
            }
        }
        changes
    }
}

fn runtime_change(member: &str, message: &zbus::Message) -> Option<RuntimeChange> {
    let body = message.body();
    let entry = match member {
        "ChainAdded" | "ChainRemoved" => Entry::Chain(body.deserialize().ok()?),
        "RuleAdded" | "RuleRemoved" => Entry::Rule(body.deserialize().ok()?),
        "PassthroughAdded" | "PassthroughRemoved" => Entry::Passthrough(body.deserialize().ok()?),
        _ => return None,
    };
    Some(if member.ends_with("Added") {
        RuntimeChange::Added(entry)
    } else {
        RuntimeChange::Removed(entry)
    })
}

/// Where the system bus is when `DBUS_SYSTEM_BUS_ADDRESS` is not set.
const DEFAULT_SYSTEM_BUS: &str = "/var/run/dbus/system_bus_socket";

/// The system bus did not finish the handshake in time.
#[derive(Debug, thiserror::Error)]
#[error("the system bus ({address}) took the connection but did not answer within {} s", .patience.as_secs())]
pub struct SilentBus {
    address: String,
    patience: Duration,
}

/// The system bus (`DBUS_SYSTEM_BUS_ADDRESS` is honoured), or None when there is none; an
/// error when it does not finish the handshake within `patience` (zbus would wait forever).
/// A method call on it fails (`Failure::Silent`) when its answer takes longer than that.
/// zbus connects from a thread it starts for that; when the address is a plain socket
/// path, the socket is connected here instead, and a missing one means no bus without
/// starting zbus at all. Any other address is left to zbus.
pub fn system_bus(patience: Duration) -> Result<Option<Connection>, SilentBus> {
    let address = std::env::var("DBUS_SYSTEM_BUS_ADDRESS").ok();
    let socket = match address.as_deref() {
        None => Some(DEFAULT_SYSTEM_BUS),
        Some(address) => plain_socket_path(address),
    };
    let builder = match socket {
        Some(path) => match std::os::unix::net::UnixStream::connect(path) {
            Ok(stream) => zbus::connection::Builder::async_io_unix_stream(stream),
            Err(_) => return Ok(None),
        },
        None => match zbus::connection::Builder::system() {
            Ok(builder) => builder,
            Err(_) => return Ok(None),
        },
    };
    let builder = builder.method_timeout(patience);
    let built = async_io::block_on(future::or(async { Some(builder.build().await) }, async {
        async_io::Timer::after(patience).await;
        None
    }));
    match built {
        Some(connection) => Ok(connection.ok().map(Connection::from)),
        None => Err(SilentBus {
            address: address.unwrap_or_else(|| format!("unix:path={DEFAULT_SYSTEM_BUS}")),
            patience,
        }),
    }
}

/// The path of a `unix:path=` address that needs no unescaping and names one socket.
fn plain_socket_path(address: &str) -> Option<&str> {
    address
        .strip_prefix("unix:path=")
        .filter(|path| !path.is_empty() && !path.contains([',', ';', '%']))
}

/// True for the bus's answer that nobody owns the name called (NoAutoStart calls).
pub fn is_unowned_name(error: &zbus::Error) -> bool {
    matches!(error, zbus::Error::MethodError(name, _, _)
        if name.as_str() == "org.freedesktop.DBus.Error.NameHasNoOwner"
            || name.as_str() == "org.freedesktop.DBus.Error.ServiceUnknown")
}

/// An error reply from firewalld or the bus, classified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// firewalld's own error: its code (`ALREADY_ENABLED`, `COMMAND_FAILED`, …) and detail.
    Firewalld {
        code: String,
        detail: String,
    },
    /// polkit or the uid check said no.
    NotAuthorized(String),
    /// The bus policy refused the call.
    AccessDenied(String),
    /// firewalld went away before it answered.
    Gone(String),
    /// No answer within the connection's method timeout: firewalld (or the bus) is hung, or
    /// busy for longer than we wait.
    Silent(String),
    Other(String),
}

impl Failure {
    pub fn code(&self) -> Option<&str> {
        match self {
            Failure::Firewalld { code, .. } => Some(code),
            _ => None,
        }
    }

    pub fn is_silent(&self) -> bool {
        matches!(self, Failure::Silent(_))
    }
}

impl From<&zbus::Error> for Failure {
    fn from(error: &zbus::Error) -> Self {
        match error {
            zbus::Error::MethodError(name, message, _) => {
                let message = message.clone().unwrap_or_default();
                match name.as_str() {
                    EXCEPTION => match message.split_once(':') {
                        Some((code, detail)) => Failure::Firewalld {
                            code: code.trim().to_string(),
                            detail: detail.trim().to_string(),
                        },
                        None => Failure::Firewalld {
                            code: message.trim().to_string(),
                            detail: String::new(),
                        },
                    },
                    NOT_AUTHORIZED => Failure::NotAuthorized(message),
                    "org.freedesktop.DBus.Error.AccessDenied" => Failure::AccessDenied(message),
                    "org.freedesktop.DBus.Error.ServiceUnknown"
                    | "org.freedesktop.DBus.Error.NoReply"
                    | "org.freedesktop.DBus.Error.NameHasNoOwner" => Failure::Gone(message),
                    other => Failure::Other(format!("{other}: {message}")),
                }
            }
            zbus::Error::InputOutput(e) if e.kind() == std::io::ErrorKind::TimedOut => {
                Failure::Silent(e.to_string())
            }
            zbus::Error::InputOutput(e) => Failure::Gone(e.to_string()),
            other => Failure::Other(other.to_string()),
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Firewalld { code, detail } if detail.is_empty() => f.write_str(code),
            Failure::Firewalld { code, detail } => write!(f, "{code}: {detail}"),
            Failure::NotAuthorized(m) => write!(f, "not authorized: {m}"),
            Failure::AccessDenied(m) => write!(f, "access denied by the D-Bus policy: {m}"),
            Failure::Gone(m) => write!(f, "firewalld did not answer: {m}"),
            Failure::Silent(m) => f.write_str(m),
            Failure::Other(m) => f.write_str(m),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_late_answer_is_silence_and_a_broken_connection_is_gone() {
        let io = |kind| zbus::Error::from(std::io::Error::new(kind, "x"));
        let late = Failure::from(&io(std::io::ErrorKind::TimedOut));
        assert_eq!(late, Failure::Silent("x".to_string()));
        let broken = Failure::from(&io(std::io::ErrorKind::BrokenPipe));
        assert_eq!(broken, Failure::Gone("x".to_string()));
    }

    #[test]
    fn only_a_plain_unix_path_is_connected_without_zbus() {
        assert_eq!(
            plain_socket_path("unix:path=/run/dbus/system_bus_socket"),
            Some("/run/dbus/system_bus_socket")
        );
        for other in [
            "unix:path=/run/bus,guid=0123",
            "unix:path=/run/a;unix:path=/run/b",
            "unix:path=/run/with%20space",
            "unix:abstract=/tmp/dbus-x",
            "tcp:host=localhost,port=1",
            "unix:path=",
        ] {
            assert_eq!(plain_socket_path(other), None, "{other}");
        }
    }
}
