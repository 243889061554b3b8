//! The system layer: everything that talks to the world outside the process (the system bus,
//! netlink, other programs, files). The layers above decide; this one carries it out.

pub mod bus;
pub mod fs;
pub mod host;
pub mod lock;
pub mod netlink;
mod notice;
pub mod probe;
pub mod process;

pub use notice::{notice, notices, say, Code, Notice};
