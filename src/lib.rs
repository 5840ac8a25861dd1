//! zdm-run: the orchestrator library.
pub mod data;
