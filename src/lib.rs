//! zdm-run: the orchestrator library.
//!
//! Ansible's model (inventory, playbooks, modules, check mode) applied to migrating a live
//! application between Cassandra clusters. `cli` is the entry point; each other module holds
//! one concern.
//!
//! # Layout
//!
//! ```text
//! cli/          the command line: flags, subcommands (`migrate`/`validate` included), exit
//!               codes, completions and man page
//! run/          the run engine: plays, batches, forks, handlers, one task on one host
//! playbook/     the playbook model, checked on load with file, line and column
//! inventory/    hosts, groups, host patterns, group_vars/host_vars
//! modules/      the task modules behind one trait (mod.rs), the registry of their names
//!   zdm/        zdm-run's own modules: proxy binary, live settings, gates, data, phase record
//! template/     the minijinja environment, Ansible's filters, the `resolve` filter
//! transport/    how a task reaches a host: local or SSH, and shell quoting
//! migration/    where the migration stands (state file, run lock), this process's run,
//!               and the views of it: status, metrics, the summary that ends a phase
//! gates/        the checks behind the gate modules: preflight, health, clients
//! data/         the data engine: token-range scan, diff, copy, checkpoints and reports
//! output.rs     everything the run prints; plan.rs the per-host records it prints from
//! the rest      helpers every layer may use: vars, secrets (masking), diff, yaml11,
//!               own_env, proxy_settings, and `edit_distance` (from `zdm_proxy_settings`)
//! ```
//!
//! The runner's layers depend downwards only: `cli` → `run` → `playbook` → `modules` →
//! `template` → `secrets` → `transport` → `vars`. The migration domain sits beside them and is
//! layered the same way, `migration` → `gates` → `data`: `cli` and the `zdm_*` modules reach
//! into it, and it never reaches the run engine, playbooks, modules or templates. Both stand
//! on `inventory`, `output` and `plan`, which import neither: the inventory owns the state
//! file's name (it skips that file), the per-host change record the phase summary is written
//! from is `plan`'s, and a gate's `Check` becomes a `GateResult` in `migration::state`.
//! The data engine stands on none of them: its command line (`migrate`, `validate`) is `cli/data/`.
//! `layering.rs` (a test) fails when one of these lower modules names a higher one.

pub mod cli;
pub mod data;
pub mod diff;
pub use zdm_proxy_settings::edit_distance;
pub mod gates;
pub mod inventory;
#[cfg(test)]
mod layering;
pub mod migration;
pub mod modules;
pub mod output;
pub mod own_env;
pub mod plan;
pub mod playbook;
pub mod proxy_settings;
pub mod run;
pub mod secrets;
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
