//! The `zdm-run migrate` and `zdm-run validate` subcommands: flags, connection settings from the
//! inventory, progress bars, report file and exit code.
//!
//! Exit codes: 0 when the run was clean, 2 when differences remain (validate: found and not
//! corrected by `--autocorrect*`, or a range could not be checked, or a correction failed) or
//! ranges failed (migrate), so scripts cannot mistake a dirty run for success; errors in the
//! input or connection return `Err` (the binary exits 1).
//!
//! Checkpoints and reports go to `--state-dir`, by default the directory the playbook modules
//! use (`.zdm-state` beside the inventory's state file) when `-i` is given, so a command-line
//! run resumes a backfill a playbook was interrupted in, and the other way round.

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Args;

use crate::data::checkpoint::{write_atomic, VALIDATE_CHECKPOINT};
use crate::data::config::{ClusterConfig, DataConfig, Selection};
use crate::data::engine::{self, Cutoff, ValidateOptions, ValidateResume};
use crate::data::progress::RunProgress;

/// Exit code of a run that found differences or could not finish every range.
pub const EXIT_DIFFERENCES: i32 = 2;

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

/// The connection variables of one inventory host, and where they came from (for messages).
pub struct InventoryVars {
    vars: crate::vars::Vars,
    /// "inventory PATH, host NAME": named by every error about a variable.
    source: String,
}

impl InventoryVars {
    /// No inventory: every setting must come from flags.
    pub fn empty() -> InventoryVars {
        InventoryVars {
            vars: crate::vars::Vars::new(),
            source: "no inventory".into(),
        }
    }
}

/// Reads the connection variables through the core's inventory, loaded the way the playbook
/// mode loads it (YAML or INI, a file or a directory, `group_vars/` and `host_vars/`, Ansible's
/// precedence): the variables of the `proxies` group's first host, since that is where the proxy
/// settings (`origin_contact_points`, ...) are meant to live; without a `proxies` group, the
/// variables every host gets from `all`.
pub fn read_inventory_vars(path: &Path) -> anyhow::Result<InventoryVars> {
    let inv = crate::inventory::Inventory::load(Some(path)).map_err(|e| anyhow::anyhow!("{e}"))?;
    let host = inv.group_hosts("proxies").into_iter().next();
    let (vars, source) = match host {
        Some(h) => (
            inv.host_vars(&h),
            format!("inventory {}, host {h}", path.display()),
        ),
        // A name no inventory declares gets exactly the `all` layers.
        None => (
            inv.host_vars("\u{0}zdm-no-host"),
            format!("inventory {}, group all", path.display()),
        ),
    };
    Ok(InventoryVars { vars, source })
}

fn scalar(vars: &InventoryVars, name: &str) -> anyhow::Result<Option<String>> {
    use serde_json::Value;
    let Some(v) = vars.vars.get(name) else {
        return Ok(None);
    };
    let src = &vars.source;
    let s = match v {
        Value::Null => return Ok(None),
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Array(items) => items
            .iter()
            .map(|i| match i {
                Value::String(s) => Ok(s.clone()),
                Value::Number(n) => Ok(n.to_string()),
                _ => anyhow::bail!("{src}: variable {name}: list items must be strings"),
            })
            .collect::<anyhow::Result<Vec<_>>>()?
            .join(","),
        _ => anyhow::bail!("{src}: variable {name} must be a string"),
    };
    anyhow::ensure!(
        !s.contains("{{"),
        "{src}: variable {name} is a template; pass --{} instead",
        name.replace('_', "-")
    );
    Ok(Some(s))
}

fn cluster_config(
    name: &str,
    vars: &InventoryVars,
    points: &Option<String>,
    port: Option<u16>,
    user: &Option<String>,
    password: &Option<String>,
    rate: Option<u32>,
) -> anyhow::Result<ClusterConfig> {
    let points = match points {
        Some(p) => Some(p.clone()),
        None => scalar(vars, &format!("{name}_contact_points"))?,
    }
    .with_context(|| {
        format!("no contact points for {name}: set {name}_contact_points in the inventory or pass --{name}-contact-points")
    })?;
    let port = match port {
        Some(p) => p,
        None => match scalar(vars, &format!("{name}_port"))? {
            Some(p) => p.parse().with_context(|| {
                format!(
                    "{}: variable {name}_port: {p:?} is not a port number",
                    vars.source
                )
            })?,
            None => 9042,
        },
    };
    let username = match user {
        Some(u) => Some(u.clone()),
        None => scalar(vars, &format!("{name}_username"))?,
    };
    let password = match password {
        Some(p) => Some(p.clone()),
        None => scalar(vars, &format!("{name}_password"))?,
    };
    Ok(ClusterConfig {
        name: name.into(),
        contact_points: points
            .split(',')
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect(),
        port,
        username,
        password,
        rate_limit: rate,
    })
}

/// Builds the engine configuration from flags and the inventory.
pub fn data_config(common: &CommonArgs) -> anyhow::Result<(DataConfig, Selection)> {
    let vars = match &common.inventory {
        Some(p) => read_inventory_vars(p)?,
        None => InventoryVars::empty(),
    };
    let c = &common.connection;
    // The deprecated ZDM_DATA_* names still work (clap reads only the ZDMRUN_* ones).
    let origin_password = c
        .origin_password
        .clone()
        .or_else(|| crate::own_env::var("DATA_ORIGIN_PASSWORD"));
    let target_password = c
        .target_password
        .clone()
        .or_else(|| crate::own_env::var("DATA_TARGET_PASSWORD"));
    let origin = cluster_config(
        "origin",
        &vars,
        &c.origin_contact_points,
        c.origin_port,
        &c.origin_username,
        &origin_password,
        common.origin_rate,
    )?;
    let target = cluster_config(
        "target",
        &vars,
        &c.target_contact_points,
        c.target_port,
        &c.target_username,
        &target_password,
        common.target_rate,
    )?;
    anyhow::ensure!(common.page_size >= 1, "--page-size must be at least 1");
    mask_passwords_in_logs(&origin, &target);
    let selection = Selection::parse(&common.keyspaces, &common.tables)?;
    Ok((
        DataConfig {
            origin,
            target,
            splits: common.splits,
            concurrency: common.concurrency.max(1),
            page_size: common.page_size,
            write_concurrency: common.write_concurrency.max(1),
            retries: common.retries,
            ..DataConfig::default()
        },
        selection,
    ))
}

/// Log lines of a migrate or validate run (`-v`, `ZDMRUN_LOG`: a driver error may quote what it
/// was given) pass through the same masking as a playbook run's, knowing both passwords.
fn mask_passwords_in_logs(origin: &ClusterConfig, target: &ClusterConfig) {
    let redactor = crate::secrets::Redactor::default();
    for password in [&origin.password, &target.password].into_iter().flatten() {
        redactor.add(password);
    }
    crate::output::redact_logs_with(&redactor);
}

/// Where checkpoints and reports go: `--state-dir`, else the playbook modules' directory beside
/// the inventory, else `./.zdm-state`.
pub fn state_dir(common: &CommonArgs) -> PathBuf {
    match (&common.state_dir, &common.inventory) {
        (Some(dir), _) => dir.clone(),
        (None, Some(inventory)) => crate::migration::run::data_dir_beside(inventory),
        (None, None) => PathBuf::from(crate::migration::run::DATA_DIR),
    }
}

/// With the default state directory beside the inventory, the checkpoint is the one the playbook
/// modules write: hold the migration's run lock (as a playbook with `zdm_migrate` or
/// `zdm_validate` does) so two runs never write it at once. An explicit `--state-dir` is the
/// user's own and takes no lock.
fn shared_state_lock(
    common: &CommonArgs,
    command: &str,
) -> anyhow::Result<Option<crate::migration::state::RunLock>> {
    match (&common.state_dir, &common.inventory) {
        (None, Some(inventory)) => Ok(Some(
            crate::migration::state::StateStore::beside_inventory(inventory).lock(command)?,
        )),
        _ => Ok(None),
    }
}

fn write_report<T: serde::Serialize>(path: &Path, value: &T) -> anyhow::Result<()> {
    let json = serde_json::to_vec_pretty(value)?;
    write_atomic(path, &json).with_context(|| format!("writing report {}", path.display()))
}

/// `zdm-run migrate`: backfill; returns the process exit code.
pub async fn run_migrate(args: MigrateArgs) -> anyhow::Result<i32> {
    let (mut cfg, selection) = data_config(&args.common)?;
    let _lock = shared_state_lock(&args.common, "zdm-run migrate")?;
    let dir = state_dir(&args.common);
    cfg.checkpoint = Some(dir.join("migrate-checkpoint.json"));
    cfg.fresh = args.fresh;
    let progress = RunProgress::for_stderr();
    let summary = engine::migrate(&cfg, &selection, &progress).await?;
    let report = args
        .common
        .report
        .clone()
        .unwrap_or_else(|| dir.join("migrate-report.json"));
    write_report(&report, &summary)?;
    print!("{}", summary.human());
    println!("report: {}", report.display());
    Ok(if summary.ok() { 0 } else { EXIT_DIFFERENCES })
}

/// `zdm-run validate`: diff (and optionally autocorrect); returns the process exit code.
pub async fn run_validate(args: ValidateArgs) -> anyhow::Result<i32> {
    let (cfg, selection) = data_config(&args.common)?;
    anyhow::ensure!(
        args.sample_percent > 0.0 && args.sample_percent <= 100.0,
        "--sample-percent must be in (0, 100], got {}",
        args.sample_percent
    );
    let opts = ValidateOptions {
        sample_percent: args.sample_percent,
        cutoff: if args.no_cutoff {
            Cutoff::None
        } else {
            Cutoff::StartOfRun
        },
        compare_writetime: args.compare_writetime,
        autocorrect_missing: args.autocorrect || args.autocorrect_missing,
        autocorrect_mismatched: args.autocorrect || args.autocorrect_mismatched,
        autocorrect_extra: args.autocorrect_extra,
        max_examples: args.max_examples,
    };
    let _lock = shared_state_lock(&args.common, "zdm-run validate")?;
    let dir = state_dir(&args.common);
    let resume = ValidateResume {
        checkpoint: dir.join(VALIDATE_CHECKPOINT),
        fresh: args.fresh,
    };
    let progress = RunProgress::for_stderr();
    let report =
        engine::validate_resumable(&cfg, &selection, &opts, Some(&resume), &progress).await?;
    let path = args
        .common
        .report
        .clone()
        .unwrap_or_else(|| dir.join("validate-report.json"));
    write_report(&path, &report)?;
    print!("{}", report.human());
    println!("report: {}", path.display());
    // Judged on what remains after autocorrection, like the playbook gate.
    Ok(if report.has_differences() {
        EXIT_DIFFERENCES
    } else {
        0
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inventory_vars_follow_ansible_precedence() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("hosts.yml"),
            "all:\n  vars:\n    origin_port: 9000\n    origin_username: a\n  children:\n    proxies:\n      hosts:\n        h1: {}\n        h2: {}\n      vars:\n        origin_contact_points: [10.0.0.1, 10.0.0.2]\n        origin_username: inv_proxies\n        target_contact_points: 10.0.0.9\n        target_password: secret\n",
        )
        .unwrap();
        std::fs::create_dir(dir.path().join("group_vars")).unwrap();
        std::fs::write(dir.path().join("group_vars/all.yml"), "origin_port: 9100\n").unwrap();
        std::fs::write(
            dir.path().join("group_vars/proxies.yml"),
            "origin_username: gv_proxies\n",
        )
        .unwrap();
        std::fs::create_dir(dir.path().join("host_vars")).unwrap();
        // host_vars of the first proxies host win over every group layer.
        std::fs::write(dir.path().join("host_vars/h1.yml"), "target_port: 9300\n").unwrap();
        std::fs::write(dir.path().join("host_vars/h2.yml"), "target_port: 1111\n").unwrap();
        let vars = read_inventory_vars(dir.path()).unwrap();
        let c = cluster_config("origin", &vars, &None, None, &None, &None, None).unwrap();
        assert_eq!(c.contact_points, vec!["10.0.0.1", "10.0.0.2"]);
        assert_eq!(c.port, 9100);
        assert_eq!(c.username.as_deref(), Some("gv_proxies"));
        let t = cluster_config("target", &vars, &None, None, &None, &None, None).unwrap();
        assert_eq!(t.port, 9300);
        // Flags override the inventory.
        let t = cluster_config(
            "target",
            &vars,
            &None,
            Some(1),
            &Some("u".into()),
            &None,
            None,
        )
        .unwrap();
        assert_eq!(t.port, 1);
        assert_eq!(t.username.as_deref(), Some("u"));
        assert_eq!(t.password.as_deref(), Some("secret"));
        assert!(
            !format!("{t:?}").contains("secret"),
            "password must not appear in Debug"
        );
    }

    #[test]
    fn ini_inventory_and_all_group_without_proxies() {
        let dir = tempfile::tempdir().unwrap();
        let ini = dir.path().join("hosts.ini");
        std::fs::write(
            &ini,
            "[proxies]\nh1 target_port=9400\n\n[proxies:vars]\norigin_contact_points=10.1.1.1\ntarget_contact_points=10.1.1.2\n",
        )
        .unwrap();
        let vars = read_inventory_vars(&ini).unwrap();
        let o = cluster_config("origin", &vars, &None, None, &None, &None, None).unwrap();
        assert_eq!(o.contact_points, vec!["10.1.1.1"]);
        let t = cluster_config("target", &vars, &None, None, &None, &None, None).unwrap();
        assert_eq!(t.port, 9400);

        // No proxies group: the `all` variables.
        let yml = dir.path().join("other.yml");
        std::fs::write(
            &yml,
            "all:\n  hosts:\n    x: {}\n  vars:\n    origin_contact_points: 10.2.2.2\n",
        )
        .unwrap();
        let vars = read_inventory_vars(&yml).unwrap();
        let o = cluster_config("origin", &vars, &None, None, &None, &None, None).unwrap();
        assert_eq!(o.contact_points, vec!["10.2.2.2"]);
    }

    #[test]
    fn bad_port_names_the_inventory_and_host() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("inv.yml");
        std::fs::write(
            &f,
            "all:\n  children:\n    proxies:\n      hosts:\n        h9: {}\n  vars:\n    origin_contact_points: h\n    origin_port: nine\n",
        )
        .unwrap();
        let vars = read_inventory_vars(&f).unwrap();
        let err = cluster_config("origin", &vars, &None, None, &None, &None, None).unwrap_err();
        let msg = format!("{err:#}");
        assert!(
            msg.contains("inv.yml") && msg.contains("h9") && msg.contains("origin_port"),
            "{msg}"
        );
        let err = cluster_config("target", &vars, &None, None, &None, &None, None).unwrap_err();
        assert!(format!("{err:#}").contains("target_contact_points"));
        let Err(err) = read_inventory_vars(&dir.path().join("nope.yml")) else {
            panic!("a missing inventory must be an error");
        };
        assert!(format!("{err:#}").contains("nope.yml"), "{err:#}");
    }
}
