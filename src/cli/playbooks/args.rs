//! The flags of the default (playbook) mode, ansible-playbook's names and meanings.

use std::path::PathBuf;

use clap::Args;

use crate::output::Format;

/// Arguments of the default (playbook) mode.
#[derive(Args, Debug)]
pub struct PlaybookArgs {
    /// Playbook(s) to run, in order.
    #[arg(value_name = "PLAYBOOK")]
    pub playbooks: Vec<PathBuf>,

    /// Inventory file or directory, or a host list `h1,h2,` (repeatable) [default:
    /// $ZDMRUN_INVENTORY, else ./inventory].
    #[arg(short = 'i', long = "inventory", value_name = "PATH")]
    pub inventory: Vec<PathBuf>,

    /// Further limit the selected hosts with a pattern (`zdm-h1:zdm-h2`, `proxies:!zdm-h3`,
    /// `~zdm-h[12]`, `proxies[0:1]`, `@file` with one pattern a line). Matching no host is
    /// an error.
    #[arg(short = 'l', long = "limit", value_name = "SUBSET")]
    pub limit: Option<String>,

    /// Connect as this user (`ansible_user` below every inventory variable).
    #[arg(short = 'u', long = "user", value_name = "REMOTE_USER")]
    pub user: Option<String>,

    /// Connection type, `ssh` or `local` (`ansible_connection` below every inventory
    /// variable).
    #[arg(short = 'c', long = "connection", value_name = "CONNECTION")]
    pub connection: Option<String>,

    /// SSH private key file (`ansible_ssh_private_key_file` below every inventory variable).
    #[arg(long = "private-key", visible_alias = "key-file", value_name = "FILE")]
    pub private_key: Option<PathBuf>,

    /// Run tasks with privilege escalation (`become: true`, below every play and task
    /// keyword).
    #[arg(short = 'b', long = "become")]
    pub r#become: bool,

    /// The user to become (`become_user`, below every play and task keyword).
    #[arg(long = "become-user", value_name = "USER")]
    pub become_user: Option<String>,

    /// Start at the first task whose name is this (or matches it as a `*` glob).
    #[arg(long = "start-at-task", value_name = "NAME")]
    pub start_at_task: Option<String>,

    /// Only run tasks tagged with these (comma-separated, repeatable).
    #[arg(short = 't', long = "tags", value_delimiter = ',')]
    pub tags: Vec<String>,

    /// Skip tasks tagged with these (comma-separated, repeatable).
    #[arg(long = "skip-tags", value_delimiter = ',')]
    pub skip_tags: Vec<String>,

    /// Extra variables: `key=value ...`, a JSON/YAML mapping, or `@file` (repeatable; wins
    /// over every other variable).
    #[arg(short = 'e', long = "extra-vars", value_name = "VARS")]
    pub extra_vars: Vec<String>,

    /// Change nothing; show what would change (the plan).
    #[arg(short = 'C', long = "check", visible_alias = "dry-run")]
    pub check: bool,

    /// Show unified diffs of files that change (or would change).
    #[arg(short = 'D', long = "diff")]
    pub diff: bool,

    /// How many hosts to work on at once within a batch.
    #[arg(short = 'f', long = "forks", default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..))]
    pub forks: u32,

    /// More output (repeat for more).
    #[arg(short = 'v', long = "verbose", action = clap::ArgAction::Count)]
    pub verbose: u8,

    /// Output format.
    #[arg(long = "output", value_enum, default_value = "human")]
    pub output: Format,

    /// List the hosts each play would run on, then exit.
    #[arg(long = "list-hosts")]
    pub list_hosts: bool,

    /// List the tasks each play would run, then exit.
    #[arg(long = "list-tasks")]
    pub list_tasks: bool,

    /// Only check the playbook(s) and inventory, then exit.
    #[arg(long = "syntax-check")]
    pub syntax_check: bool,

    /// Let a phase start although the previous one has not completed with its gate passed
    /// (same as `-e zdm_force_phase=true`). Loudly warned about and recorded in the history.
    #[arg(long = "force-phase")]
    pub force_phase: bool,
}
