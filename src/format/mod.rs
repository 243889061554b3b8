//! Formats (text, and the few binary messages we exchange), each knowing nothing of the CLI
//! or of how it is applied.

pub mod direct_json;
pub mod direct_xml;
pub mod firewalld_conf;
pub mod nfnetlink;
pub mod report;
pub mod restore;
