//! The migration itself, as opposed to the playbooks that drive it: where it stands (the
//! state file and its run lock), what the running `zdm-run` process is doing to it, and the
//! views of it an operator reads (`zdm-run status`, `zdm-run metrics`, the summary that ends
//! a phase playbook).
//!
//! Nothing here runs tasks: the `zdm_*` modules (`crate::modules::zdm`) act on the migration
//! through this layer, and the command line opens and closes the process-wide run.

pub mod metrics;
pub mod phase_summary;
pub mod run;
pub mod state;
pub mod status;
