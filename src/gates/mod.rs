//! The checks that stand between one migration phase and the next.
//!
//! Each gate measures something real (the clusters' schemas, the proxies' health and metrics,
//! the data itself) and compares it with a threshold; the playbook modules that wrap them print
//! both, so an operator sees why a transition was allowed or refused.

pub mod clients;
pub mod health;
pub mod preflight;
pub mod prometheus;

/// The reference proxy's metrics (and health) port.
pub const DEFAULT_METRICS_PORT: u16 = 14001;

/// One measured check of a gate.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Check {
    pub name: String,
    pub passed: bool,
    /// What was measured, in words an operator reads ("3 of 1200 in 60 s (0.250%)").
    pub measured: String,
    /// What it was held against.
    pub threshold: String,
}
