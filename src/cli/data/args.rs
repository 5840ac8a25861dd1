//! The flags of `zdm-run migrate` and `zdm-run validate`: what to copy or check, how hard to
//! push the clusters, and connection overrides for the inventory's settings.

use std::path::PathBuf;

use clap::Args;

/// Connection overrides for one cluster; unset flags fall back to the inventory.
#[derive(Args, Clone, Debug, Default)]
pub struct ConnectionArgs {
    /// Origin contact points, comma separated (default: inventory `origin_contact_points`).
    #[arg(long)]
    pub origin_contact_points: Option<String>,
    /// Origin CQL port (default: inventory `origin_port`, else 9042).
    #[arg(long)]
    pub origin_port: Option<u16>,
    /// Origin username (default: inventory `origin_username`).
    #[arg(long)]
    pub origin_username: Option<String>,
    /// Origin password (default: inventory `origin_password`).
    #[arg(long, env = "ZDMRUN_DATA_ORIGIN_PASSWORD", hide_env_values = true)]
    pub origin_password: Option<String>,
    /// Target contact points, comma separated (default: inventory `target_contact_points`).
    #[arg(long)]
    pub target_contact_points: Option<String>,
    /// Target CQL port (default: inventory `target_port`, else 9042).
    #[arg(long)]
    pub target_port: Option<u16>,
    /// Target username (default: inventory `target_username`).
    #[arg(long)]
    pub target_username: Option<String>,
    /// Target password (default: inventory `target_password`).
    #[arg(long, env = "ZDMRUN_DATA_TARGET_PASSWORD", hide_env_values = true)]
    pub target_password: Option<String>,
}

/// Flags shared by migrate and validate.
#[derive(Args, Clone, Debug)]
pub struct CommonArgs {
    /// Inventory file or directory (hosts.yml + group_vars/) holding the connection variables.
    #[arg(short = 'i', long)]
    pub inventory: Option<PathBuf>,
    /// Keyspace to include (repeatable). Default: every non-system keyspace.
    #[arg(long = "keyspace")]
    pub keyspaces: Vec<String>,
    /// Table to include as KEYSPACE.TABLE (repeatable).
    #[arg(long = "table")]
    pub tables: Vec<String>,
    #[command(flatten)]
    pub connection: ConnectionArgs,
    /// Token sub-ranges per table [default: an interrupted run's count when resuming, else
    /// derived from origin's size estimates: about 100k partitions and 64 MiB per range, at
    /// least 256, at most 16384].
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    pub splits: Option<u32>,
    /// Sub-ranges processed in parallel.
    #[arg(long, default_value_t = 8)]
    pub concurrency: usize,
    /// Rows per page.
    #[arg(long, default_value_t = 1000)]
    pub page_size: i32,
    /// Writes in flight per sub-range.
    #[arg(long, default_value_t = 32)]
    pub write_concurrency: usize,
    /// Maximum rows/s read from origin.
    #[arg(long)]
    pub origin_rate: Option<u32>,
    /// Maximum rows/s on target: rows written (migrate; a row counts once however many
    /// statements it takes) or rows read (validate).
    #[arg(long)]
    pub target_rate: Option<u32>,
    /// Attempts per page or write before a range is marked failed.
    #[arg(long, default_value_t = 5)]
    pub retries: u32,
    /// Directory for the checkpoint and reports [default: with -i, `.zdm-state` beside the
    /// inventory (where the playbook modules keep theirs), else ./.zdm-state].
    #[arg(long)]
    pub state_dir: Option<PathBuf>,
    /// Where to write the JSON report (default: STATE_DIR/COMMAND-report.json).
    #[arg(long)]
    pub report: Option<PathBuf>,
}

#[derive(Args, Clone, Debug)]
pub struct MigrateArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// Ignore the checkpoint of an interrupted run and copy everything again.
    #[arg(long)]
    pub fresh: bool,
}

#[derive(Args, Clone, Debug)]
pub struct ValidateArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// Ignore the checkpoint of an interrupted validation and check every range again. A
    /// resumed validation keeps the results of the ranges it had finished: after correcting
    /// data, validate with --fresh.
    #[arg(long)]
    pub fresh: bool,
    /// Percentage of token ranges to check.
    #[arg(long, default_value_t = 100.0)]
    pub sample_percent: f64,
    /// Judge every row, even ones written after the validation started.
    #[arg(long)]
    pub no_cutoff: bool,
    /// Also require equal writetimes (and TTLs within two minutes).
    #[arg(long)]
    pub compare_writetime: bool,
    /// Write missing and mismatched rows to target (same as both flags below).
    #[arg(long)]
    pub autocorrect: bool,
    /// Write rows missing on target.
    #[arg(long)]
    pub autocorrect_missing: bool,
    /// Rewrite rows that differ on target.
    #[arg(long)]
    pub autocorrect_mismatched: bool,
    /// Delete rows that exist only on target (never implied by --autocorrect).
    #[arg(long)]
    pub autocorrect_extra: bool,
    /// Example keys per kind and table in the report.
    #[arg(long, default_value_t = 20)]
    pub max_examples: usize,
}
