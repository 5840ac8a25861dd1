//! zdm-run's own modules, the `zdm_*` names: the proxy binary on the fleet, its live settings
//! and peers, the gates (preflight, health, clients, data consistency), the data copy (the
//! built-in engine and CDM on Spark) and the phase record.
//!
//! WHY under `modules/` rather than `migration/`: they are task modules like any other (same
//! trait, same registry, run by the same engine); they act on the migration through
//! `crate::migration`, which knows nothing of tasks.

pub(super) mod cdm;
pub(super) mod client_gate;
mod common;
pub(super) mod config_change;
pub(super) mod data;
pub(super) mod health_gate;
pub(super) mod peers_ready;
pub(super) mod phase;
pub(super) mod preflight;
pub(super) mod proxy_binary;

pub use common::is_gate_result;
