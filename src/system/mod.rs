//! The system layer: everything that talks to the world outside the process (the system bus,
//! netlink, other programs, files). The layers above decide; this one carries it out.

pub mod bus;
pub mod fs;
pub mod host;
pub mod lock;
pub mod netlink;
pub mod probe;
pub mod process;

use std::fmt;

/// A notice for the operator: one line on stderr, so that stdout carries only data (rules,
/// plans, reports).
pub fn notice(message: impl fmt::Display) {
    eprintln!("tproxy-firewalld: {message}");
}
