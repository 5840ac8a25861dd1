//! zdm-run: the orchestrator library.
//!
//! Ansible's model (inventory, playbooks, modules, check mode) applied to migrating a live
//! application between Cassandra clusters. `cli` is the entry point; each other module holds
//! one concern.

pub mod cli;
pub mod cli_docs;
pub mod data;
pub mod diff;
pub use zdm_proxy_settings::edit_distance;
pub mod facts;
pub mod gates;
pub mod inventory;
pub mod migration_metrics;
pub mod migration_run;
pub mod modules;
pub mod output;
pub mod own_env;
pub mod phase_summary;
pub mod plan;
pub mod playbook;
pub mod proxy_settings;
pub mod run;
pub mod secrets;
pub mod state;
pub mod status;
pub mod template;
pub mod transport;
pub mod vars;

/// What `--version` prints after the program name: the package version, the commit it was
/// built from and the build date (set by the build script).
pub const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("ZDMRUN_BUILD_COMMIT"),
    ", built ",
    env!("ZDMRUN_BUILD_DATE"),
    ")"
);
pub mod yaml11;
