//! zdm-run: the orchestrator library.

pub mod gates;
pub mod state;
