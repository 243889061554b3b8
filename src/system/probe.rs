//! Real traffic, sent as another user, and listeners that see where it lands.
//!
//! Each sender is a child process forked for one UID: it opens its sockets as that UID (the
//! owner match of the rules sees who opened a socket), drops to it for good, connects or
//! sends, reports each step over a pipe and then holds its sockets open until the parent has
//! seen where they went. The parent was possibly multi-threaded when it forked (the D-Bus connection has a
//! thread), so the child only makes system calls on memory prepared before the fork: no
//! allocation, no locks, no panics. The parent kills and reaps every child before [`run`]
//! returns, on every path; a child whose parent dies is killed by the kernel.

use std::ffi::CString;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, UdpSocket};
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

use nix::fcntl::OFlag;
use nix::libc;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{kill, Signal};
use nix::sys::socket::{getsockopt, sockopt, SockaddrLike, SockaddrStorage};
use nix::sys::wait::waitpid;
use nix::unistd::{fork, ForkResult, Pid};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    Tcp,
    Udp,
}

/// One TCP connection attempt or one UDP datagram.
#[derive(Clone, Debug)]
pub struct Probe {
    pub transport: Transport,
    pub destination: SocketAddr,
    /// A local address to send from (kumactl's check sends from 127.0.0.1 / ::1).
    pub bind: Option<IpAddr>,
    /// Bound to the loopback interface (SO_BINDTODEVICE): unless a rule redirects it, the
    /// packet is dropped on this host, whatever its destination.
    pub loopback_only: bool,
    /// The UDP payload.
    pub payload: Vec<u8>,
    /// How long after sending it may take to land on a listener.
    pub patience: Duration,
}

/// Probes sent by one user.
#[derive(Clone, Debug)]
pub struct Sender {
    pub uid: u32,
    pub gid: u32,
    pub probes: Vec<Probe>,
}

/// A socket where redirected traffic may land.
pub enum Listener {
    Tcp(TcpListener),
    Udp(UdpSocket),
}

/// What the sender saw of one probe.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Sent {
    /// Nothing left the socket (the calls before sending failed), and why.
    NotSent(String),
    /// Sent from this local port; for TCP, not answered when the run ended.
    Pending(u16),
    /// A TCP connection made from this local port (to a listener, or elsewhere).
    Connected(u16),
    /// A TCP connection refused or unreachable, and why.
    Failed(u16, String),
}

/// Where a probe landed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Landing {
    /// Index into the listeners given to [`run`].
    pub listener: usize,
    /// For TCP, the destination the connection was made to, as the kernel's NAT remembers
    /// it (`SO_ORIGINAL_DST`); None when it was not translated.
    pub original_destination: Option<SocketAddr>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outcome {
    pub sent: Sent,
    pub landed: Option<Landing>,
}

/// The most probes one sender may hold (its poll set is a fixed array: the child does not
/// allocate).
pub const MAX_PROBES_PER_SENDER: usize = 16;

/// How long a sender holds its sockets open at most (its parent kills it sooner).
const SENDER_LIFETIME: Duration = Duration::from_secs(5);

impl Listener {
    pub fn bind(transport: Transport, address: SocketAddr) -> io::Result<Listener> {
        let listener = match transport {
            Transport::Tcp => Listener::Tcp(TcpListener::bind(address)?),
            Transport::Udp => Listener::Udp(UdpSocket::bind(address)?),
        };
        match &listener {
            Listener::Tcp(socket) => socket.set_nonblocking(true)?,
            Listener::Udp(socket) => socket.set_nonblocking(true)?,
        }
        Ok(listener)
    }

    pub fn address(&self) -> io::Result<SocketAddr> {
        match self {
            Listener::Tcp(socket) => socket.local_addr(),
            Listener::Udp(socket) => socket.local_addr(),
        }
    }

    fn transport(&self) -> Transport {
        match self {
            Listener::Tcp(_) => Transport::Tcp,
            Listener::Udp(_) => Transport::Udp,
        }
    }

    fn fd(&self) -> std::os::fd::BorrowedFd<'_> {
        match self {
            Listener::Tcp(socket) => socket.as_fd(),
            Listener::Udp(socket) => socket.as_fd(),
        }
    }

    /// Everything that arrived since the last call.
    fn arrivals(&self, index: usize, into: &mut Vec<Arrival>) {
        match self {
            Listener::Tcp(socket) => {
                while let Ok((stream, peer)) = socket.accept() {
                    into.push(Arrival {
                        listener: index,
                        peer,
                        original_destination: original_destination(&stream, peer.is_ipv6()),
                        payload: Vec::new(),
                    });
                }
            }
            Listener::Udp(socket) => {
                let mut buffer = [0u8; 512];
                while let Ok((length, peer)) = socket.recv_from(&mut buffer) {
                    into.push(Arrival {
                        listener: index,
                        peer,
                        original_destination: None,
                        payload: buffer[..length].to_vec(),
                    });
                }
            }
        }
    }
}

/// A connection or datagram a listener received.
struct Arrival {
    listener: usize,
    peer: SocketAddr,
    original_destination: Option<SocketAddr>,
    payload: Vec<u8>,
}

/// The destination a redirected connection was made to; None when it was not translated.
fn original_destination(stream: &std::net::TcpStream, ipv6: bool) -> Option<SocketAddr> {
    if ipv6 {
        let raw = getsockopt(stream, sockopt::Ip6tOriginalDst).ok()?;
        Some(SocketAddr::new(
            Ipv6Addr::from(raw.sin6_addr.s6_addr).into(),
            u16::from_be(raw.sin6_port),
        ))
    } else {
        let raw = getsockopt(stream, sockopt::OriginalDst).ok()?;
        Some(SocketAddr::new(
            Ipv4Addr::from(u32::from_be(raw.sin_addr.s_addr)).into(),
            u16::from_be(raw.sin_port),
        ))
    }
}

/// Sends every sender's probes at once and watches `listeners` until each probe has landed,
/// failed, or run out of patience, or until `deadline`. Every child is killed and reaped
/// before this returns. The outcomes are per sender, per probe.
pub fn run(
    listeners: &[Listener],
    senders: &[Sender],
    deadline: Duration,
) -> io::Result<Vec<Vec<Outcome>>> {
    let started = Instant::now();
    let interface = CString::new(crate::system::host::loopback_interface())
        .map_err(|_| io::Error::other("the loopback interface name holds a NUL byte"))?;
    let mut children = Vec::new();
    for sender in senders {
        children.push(Child::start(sender, &interface)?);
    }
    let mut watch = Watch {
        senders,
        transports: listeners.iter().map(Listener::transport).collect(),
        reports: senders
            .iter()
            .map(|s| vec![Report::default(); s.probes.len()])
            .collect(),
        arrivals: Vec::new(),
    };
    loop {
        let now = Instant::now();
        let Some(wait) = watch.time_to_wait(now, &children) else {
            break;
        };
        let left = (started + deadline).saturating_duration_since(now);
        if left.is_zero() {
            break;
        }
        let wait = wait.min(left);
        let mut fds: Vec<PollFd> = listeners
            .iter()
            .map(|l| PollFd::new(l.fd(), PollFlags::POLLIN))
            .chain(
                children
                    .iter()
                    .filter(|c| !c.finished)
                    .map(|c| PollFd::new(c.reports.as_fd(), PollFlags::POLLIN)),
            )
            .collect();
        let timeout =
            PollTimeout::try_from(wait.max(Duration::from_millis(1))).unwrap_or(PollTimeout::MAX);
        match poll(&mut fds, timeout) {
            Ok(_) | Err(nix::errno::Errno::EINTR) => {}
            Err(error) => return Err(error.into()),
        }
        drop(fds);
        for (index, listener) in listeners.iter().enumerate() {
            listener.arrivals(index, &mut watch.arrivals);
        }
        for (index, child) in children.iter_mut().enumerate() {
            child.read_reports(&mut watch.reports[index], Instant::now());
        }
    }
    for (index, listener) in listeners.iter().enumerate() {
        listener.arrivals(index, &mut watch.arrivals);
    }
    drop(children);
    Ok(watch.outcomes())
}

/// What the parent knows of one probe.
#[derive(Clone, Debug, Default)]
struct Report {
    sent: Option<Sent>,
    /// When the sender reported it sent.
    at: Option<Instant>,
}

struct Watch<'a> {
    senders: &'a [Sender],
    /// Of each listener.
    transports: Vec<Transport>,
    reports: Vec<Vec<Report>>,
    arrivals: Vec<Arrival>,
}

impl Watch<'_> {
    /// How long to wait for more, or None when every probe is settled.
    fn time_to_wait(&self, now: Instant, children: &[Child]) -> Option<Duration> {
        let mut wait: Option<Duration> = None;
        for (s, sender) in self.senders.iter().enumerate() {
            for (p, probe) in sender.probes.iter().enumerate() {
                let report = &self.reports[s][p];
                let until = match (&report.sent, report.at) {
                    (Some(Sent::NotSent(_) | Sent::Failed(..)), _) => continue,
                    _ if self.landing(s, p).is_some() => continue,
                    (Some(_), Some(at)) => (at + probe.patience).saturating_duration_since(now),
                    // Not reported yet: wait for the sender, unless it has ended.
                    _ if children[s].finished => continue,
                    _ => probe.patience,
                };
                if until.is_zero() {
                    continue;
                }
                wait = Some(wait.map_or(until, |w| w.min(until)));
            }
        }
        wait
    }

    /// The arrival that is probe `p` of sender `s`: same transport and family, from the
    /// local port its sender reported (and, for UDP, with its payload).
    fn landing(&self, s: usize, p: usize) -> Option<&Arrival> {
        let probe = &self.senders[s].probes[p];
        let port = match self.reports[s][p].sent {
            Some(Sent::Pending(port) | Sent::Connected(port) | Sent::Failed(port, _)) => port,
            _ => return None,
        };
        self.arrivals.iter().find(|arrival| {
            arrival.peer.port() == port
                && arrival.peer.is_ipv6() == probe.destination.is_ipv6()
                && self.transports[arrival.listener] == probe.transport
                && (probe.transport == Transport::Tcp || arrival.payload == probe.payload)
        })
    }

    fn outcomes(&self) -> Vec<Vec<Outcome>> {
        self.senders
            .iter()
            .enumerate()
            .map(|(s, sender)| {
                (0..sender.probes.len())
                    .map(|p| Outcome {
                        sent: self.reports[s][p].sent.clone().unwrap_or_else(|| {
                            Sent::NotSent("the sender ended without sending".to_string())
                        }),
                        landed: self.landing(s, p).map(|a| Landing {
                            listener: a.listener,
                            original_destination: a.original_destination,
                        }),
                    })
                    .collect()
            })
            .collect()
    }
}

/// A sender's process; killed and reaped when dropped.
struct Child {
    pid: Pid,
    reports: OwnedFd,
    /// Bytes of a report not complete yet.
    partial: Vec<u8>,
    /// Its end of the pipe is closed: it will report nothing more.
    finished: bool,
}

/// One report: probe index, event, local port (big-endian), errno (big-endian).
const REPORT_LEN: usize = 8;
const EVENT_PENDING: u8 = 1;
const EVENT_CONNECTED: u8 = 2;
const EVENT_FAILED: u8 = 3;
const EVENT_NOT_SENT: u8 = 4;

/// A probe ready for the child: its addresses in the form the system calls take.
struct Prepared<'a> {
    domain: libc::c_int,
    kind: libc::c_int,
    destination: SockaddrStorage,
    bind: Option<SockaddrStorage>,
    loopback_only: bool,
    payload: &'a [u8],
}

impl Child {
    fn start(sender: &Sender, interface: &CString) -> io::Result<Child> {
        if sender.probes.len() > MAX_PROBES_PER_SENDER {
            return Err(io::Error::other("too many probes for one sender"));
        }
        let prepared: Vec<Prepared> = sender
            .probes
            .iter()
            .map(|probe| Prepared {
                domain: if probe.destination.is_ipv6() {
                    libc::AF_INET6
                } else {
                    libc::AF_INET
                },
                kind: match probe.transport {
                    Transport::Tcp => libc::SOCK_STREAM,
                    Transport::Udp => libc::SOCK_DGRAM,
                },
                destination: SockaddrStorage::from(probe.destination),
                bind: probe
                    .bind
                    .map(|ip| SockaddrStorage::from(SocketAddr::new(ip, 0))),
                loopback_only: probe.loopback_only,
                payload: &probe.payload,
            })
            .collect();
        let (read, write) = nix::unistd::pipe2(OFlag::O_CLOEXEC)?;
        nix::fcntl::fcntl(&read, nix::fcntl::FcntlArg::F_SETFL(OFlag::O_NONBLOCK))?;
        let parent = nix::unistd::getpid();
        // SAFETY: the child runs `send_as`, which only makes system calls on memory
        // prepared above and ends with _exit.
        match unsafe { fork() }? {
            ForkResult::Child => unsafe {
                send_as(
                    sender.uid,
                    sender.gid,
                    &prepared,
                    interface,
                    write.as_raw_fd(),
                    parent.as_raw(),
                )
            },
            ForkResult::Parent { child } => {
                drop(write);
                Ok(Child {
                    pid: child,
                    reports: read,
                    partial: Vec::new(),
                    finished: false,
                })
            }
        }
    }

    fn read_reports(&mut self, into: &mut [Report], now: Instant) {
        let mut buffer = [0u8; 256];
        loop {
            match nix::unistd::read(&self.reports, &mut buffer) {
                Ok(0) => {
                    self.finished = true;
                    break;
                }
                Ok(n) => self.partial.extend_from_slice(&buffer[..n]),
                Err(nix::errno::Errno::EINTR) => continue,
                Err(nix::errno::Errno::EAGAIN) => break,
                Err(_) => {
                    self.finished = true;
                    break;
                }
            }
        }
        let complete = self.partial.len() / REPORT_LEN * REPORT_LEN;
        for report in self.partial[..complete].chunks_exact(REPORT_LEN) {
            let Some(slot) = into.get_mut(usize::from(report[0])) else {
                continue;
            };
            let port = u16::from_be_bytes([report[2], report[3]]);
            let errno = i32::from_be_bytes([report[4], report[5], report[6], report[7]]);
            let why = || nix::errno::Errno::from_raw(errno).desc().to_lowercase();
            let sent = match report[1] {
                EVENT_PENDING => Sent::Pending(port),
                EVENT_CONNECTED => Sent::Connected(port),
                EVENT_FAILED => Sent::Failed(port, why()),
                _ => Sent::NotSent(why()),
            };
            slot.at.get_or_insert(now);
            slot.sent = Some(sent);
        }
        self.partial.drain(..complete);
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        let _ = kill(self.pid, Signal::SIGKILL);
        let _ = waitpid(self.pid, None);
    }
}

/// The child: opens each probe's socket as `uid`, becomes `uid`/`gid`, sends each probe,
/// reports every step on `report`, then holds its sockets open until it is killed (or
/// [`SENDER_LIFETIME`] passes).
///
/// # Safety
/// Runs in a child forked from a possibly multi-threaded process: it touches only what
/// was prepared before the fork and calls only async-signal-safe functions.
unsafe fn send_as(
    uid: u32,
    gid: u32,
    probes: &[Prepared],
    interface: &CString,
    report: RawFd,
    parent: libc::pid_t,
) -> ! {
    let tell = |probe: usize, event: u8, port: u16, errno: i32| {
        let mut bytes = [0u8; REPORT_LEN];
        bytes[0] = probe as u8;
        bytes[1] = event;
        bytes[2..4].copy_from_slice(&port.to_be_bytes());
        bytes[4..8].copy_from_slice(&errno.to_be_bytes());
        libc::write(report, bytes.as_ptr().cast(), REPORT_LEN);
    };
    let errno = || nix::errno::Errno::last_raw();
    let give_up = |error: i32| -> ! {
        (0..probes.len()).for_each(|i| tell(i, EVENT_NOT_SENT, 0, error));
        libc::_exit(1)
    };
    if libc::setgroups(0, std::ptr::null()) != 0 || libc::setgid(gid) != 0 {
        give_up(errno());
    }
    // A socket belongs to the file-system UID that opens it: the owner the rules match.
    // The sockets are opened and set up before the UID changes for good, because binding
    // one to a device needs CAP_NET_RAW before Linux 5.7 (RHEL 8's kernel among them).
    libc::setfsuid(uid);
    if libc::setfsuid(uid) as u32 != uid {
        give_up(libc::EPERM);
    }
    let mut sockets = [-1; MAX_PROBES_PER_SENDER];
    for (i, probe) in probes.iter().enumerate() {
        let fd = libc::socket(
            probe.domain,
            probe.kind | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            0,
        );
        if fd < 0 {
            tell(i, EVENT_NOT_SENT, 0, errno());
            continue;
        }
        let name = interface.as_bytes_with_nul();
        let prepared = (!probe.loopback_only
            || libc::setsockopt(
                fd,
                libc::SOL_SOCKET,
                libc::SO_BINDTODEVICE,
                name.as_ptr().cast(),
                name.len() as libc::socklen_t,
            ) == 0)
            && probe
                .bind
                .as_ref()
                .is_none_or(|address| libc::bind(fd, address.as_ptr(), address.len()) == 0);
        if prepared {
            sockets[i] = fd;
        } else {
            tell(i, EVENT_NOT_SENT, 0, errno());
        }
    }
    if libc::setuid(uid) != 0 {
        give_up(errno());
    }
    // Changing credentials clears the parent-death signal, so it is set only now.
    libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong);
    if libc::getppid() != parent {
        libc::_exit(1);
    }
    let started = monotonic_millis();
    let mut pending = [libc::pollfd {
        fd: -1,
        events: libc::POLLOUT,
        revents: 0,
    }; MAX_PROBES_PER_SENDER];
    for (i, probe) in probes.iter().enumerate() {
        let fd = sockets[i];
        if fd < 0 {
            continue;
        }
        let destination = &probe.destination;
        let (sent, error) = if probe.kind == libc::SOCK_STREAM {
            let rc = libc::connect(fd, destination.as_ptr(), destination.len());
            match (rc, errno()) {
                (0, _) => (EVENT_CONNECTED, 0),
                (_, libc::EINPROGRESS) => (EVENT_PENDING, 0),
                (_, error) => (EVENT_FAILED, error),
            }
        } else {
            let rc = libc::sendto(
                fd,
                probe.payload.as_ptr().cast(),
                probe.payload.len(),
                0,
                destination.as_ptr(),
                destination.len(),
            );
            if rc < 0 {
                (EVENT_NOT_SENT, errno())
            } else {
                (EVENT_PENDING, 0)
            }
        };
        tell(i, sent, local_port(fd), error);
        if sent == EVENT_PENDING && probe.kind == libc::SOCK_STREAM {
            pending[i].fd = fd;
        }
    }
    // The outcome of each connection still being made.
    loop {
        let left = SENDER_LIFETIME.as_millis() as i64 - (monotonic_millis() - started);
        if left <= 0 || pending.iter().all(|p| p.fd < 0) {
            break;
        }
        if libc::poll(
            pending.as_mut_ptr(),
            pending.len() as libc::nfds_t,
            left as i32,
        ) <= 0
        {
            continue;
        }
        for (i, slot) in pending.iter_mut().enumerate() {
            if slot.fd < 0 || slot.revents == 0 {
                continue;
            }
            let mut error: libc::c_int = 0;
            let mut length = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
            libc::getsockopt(
                slot.fd,
                libc::SOL_SOCKET,
                libc::SO_ERROR,
                (&mut error as *mut libc::c_int).cast(),
                &mut length,
            );
            let event = if error == 0 {
                EVENT_CONNECTED
            } else {
                EVENT_FAILED
            };
            tell(i, event, local_port(slot.fd), error);
            slot.fd = -1;
        }
    }
    // Every socket stays open: a probe that landed is still there to be looked at.
    let left = SENDER_LIFETIME.as_millis() as i64 - (monotonic_millis() - started);
    if left > 0 {
        libc::poll(std::ptr::null_mut(), 0, left as i32);
    }
    libc::_exit(0)
}

/// The local port of a socket (0 when it has none).
unsafe fn local_port(fd: RawFd) -> u16 {
    let mut address: libc::sockaddr_storage = std::mem::zeroed();
    let mut length = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    if libc::getsockname(
        fd,
        (&mut address as *mut libc::sockaddr_storage).cast(),
        &mut length,
    ) != 0
    {
        return 0;
    }
    match i32::from(address.ss_family) {
        libc::AF_INET => {
            let v4 = &*(&address as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>();
            u16::from_be(v4.sin_port)
        }
        libc::AF_INET6 => {
            let v6 = &*(&address as *const libc::sockaddr_storage).cast::<libc::sockaddr_in6>();
            u16::from_be(v6.sin6_port)
        }
        _ => 0,
    }
}

/// Milliseconds on the monotonic clock (clock_gettime is async-signal-safe).
unsafe fn monotonic_millis() -> i64 {
    let mut now: libc::timespec = std::mem::zeroed();
    libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut now);
    now.tv_sec * 1000 + now.tv_nsec / 1_000_000
}
