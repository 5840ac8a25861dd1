//! zdm-run: the orchestrator library.
//!
//! Ansible's model (inventory, playbooks, modules, check mode) applied to migrating a live
//! application between Cassandra clusters. `cli` is the entry point; each other module holds
//! one concern.

pub mod cli;
pub mod data;
pub mod diff;
pub mod facts;
pub mod gates;
pub mod inventory;
pub mod migration_run;
pub mod modules;
pub mod output;
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
