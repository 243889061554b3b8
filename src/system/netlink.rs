//! A netlink socket to the kernel's netfilter subsystem (nf_tables): messages out, messages
//! in. What they say is `format::nfnetlink`'s business.

use std::io;
use std::os::fd::{AsRawFd as _, OwnedFd};

use nix::sys::socket::{
    recv, send, socket, AddressFamily, MsgFlags, SockFlag, SockProtocol, SockType,
};

/// Large enough for any message the kernel sends in one go (it fills up to 32 KiB).
const RECEIVE_BUFFER: usize = 64 * 1024;

pub struct NetfilterSocket {
    socket: OwnedFd,
    buffer: Vec<u8>,
}

impl NetfilterSocket {
    pub fn open() -> io::Result<Self> {
        let socket = socket(
            AddressFamily::Netlink,
            SockType::Raw,
            SockFlag::SOCK_CLOEXEC,
            SockProtocol::NetlinkNetFilter,
        )?;
        Ok(Self {
            socket,
            buffer: vec![0; RECEIVE_BUFFER],
        })
    }

    /// Sends one message, whole.
    pub fn send(&self, message: &[u8]) -> io::Result<()> {
        let sent = send(self.socket.as_raw_fd(), message, MsgFlags::empty())?;
        if sent != message.len() {
            return Err(io::Error::other("netlink message sent in part"));
        }
        Ok(())
    }

    /// The next datagram the kernel sent; an error when it did not fit.
    pub fn receive(&mut self) -> io::Result<&[u8]> {
        // MSG_TRUNC: the length of the whole datagram, even when it did not fit.
        let length = recv(
            self.socket.as_raw_fd(),
            &mut self.buffer,
            MsgFlags::MSG_TRUNC,
        )?;
        self.buffer
            .get(..length)
            .ok_or_else(|| io::Error::other("netlink message larger than the buffer"))
    }
}
