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
//!
//! `args` holds the flags, `config` turns them and the inventory into the engine's
//! configuration; this file runs the two commands: state directory, run lock, report.

mod args;
mod config;

use std::path::{Path, PathBuf};

use anyhow::Context;

use crate::data::checkpoint::{write_atomic, MIGRATE_CHECKPOINT, VALIDATE_CHECKPOINT};
use crate::data::engine::{self, Cutoff, ValidateOptions, ValidateResume};
use crate::data::progress::RunProgress;
pub use args::{CommonArgs, ConnectionArgs, MigrateArgs, ValidateArgs};
pub use config::{data_config, read_inventory_vars, InventoryVars};

/// Exit code of a run that found differences or could not finish every range.
pub const EXIT_DIFFERENCES: i32 = 2;

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
    cfg.checkpoint = Some(dir.join(MIGRATE_CHECKPOINT));
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
