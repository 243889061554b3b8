//! tproxy-firewalld: Kuma's transparent-proxy rules, installed through firewalld's direct
//! interface or raw iptables.
//!
//! Data flows one way: [`config`] (flags, files, environment → a validated `Config`) →
//! [`ruleset`] (a pure value) → a [`backend`] that observes, plans, applies and verifies.

pub mod backend;
pub mod cli;
pub mod commands;
pub mod config;
pub mod direct;
pub mod engine;
pub mod error;
pub mod family;
pub mod format;
pub mod ownership;
pub mod quoting;
pub mod ruleset;
pub mod system;
pub mod tables;
