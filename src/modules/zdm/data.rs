//! `zdm_migrate` (the phase 2 backfill) and `zdm_validate` (the consistency gate), thin wrappers
//! around [`crate::data::migrate`] and [`crate::data::validate`] run from the control machine.
//!
//! Connection settings are the host's `origin_*`/`target_*` variables; the keyspaces default to
//! `zdm_keyspaces`, else every non-system keyspace. Both keep a checkpoint beside the migration
//! state (the directory `zdm-run migrate|validate -i INVENTORY` uses too), so a failed or
//! interrupted phase 2 resumes where it stopped; `fresh: true` starts over.
//!
//! Arguments of both: `keyspaces`, `tables`, `splits`, `concurrency`, `page_size`,
//! `origin_rate`, `target_rate` (rows/s), `state_dir`, `fresh`. `zdm_validate` also takes
//! `max_missing`, `max_mismatched`, `max_extra` (default 0), `sample_percent`, `autocorrect`,
//! `autocorrect_extra`, `compare_writetime`, `max_examples` and `report`.

use std::path::{Path, PathBuf};

use futures::FutureExt;
use serde_json::{Map, Value};

use super::common::{cluster_from_vars, describe_selection, gate_result, number, selection};
use crate::data::likely_cause::TO_DO;
use crate::data::report::TableValidation;
use crate::data::{
    Cutoff, DataConfig, NoProgress, ValidateOptions, ValidateResume, ValidationReport,
};
use crate::gates::Check;
use crate::modules::spec::{Kind, ModuleSpec};
use crate::modules::{
    arg_bool, arg_str, ModFuture, ModResult, Module, ModuleCtx, ModuleError, Planned, Query,
};

/// Selection and tuning shared by `zdm_migrate` and `zdm_validate`.
const DATA_ARGS: [(&str, Kind); 8] = [
    ("keyspaces", Kind::ScalarList),
    ("tables", Kind::ScalarList),
    ("splits", Kind::Int),
    ("concurrency", Kind::Int),
    ("page_size", Kind::Int),
    ("origin_rate", Kind::Int),
    ("target_rate", Kind::Int),
    ("state_dir", Kind::Scalar),
];

pub static MIGRATE_SPEC: ModuleSpec = ModuleSpec {
    name: "zdm_migrate",
    free_form: false,
    any_args: false,
    args: &[
        DATA_ARGS[0],
        DATA_ARGS[1],
        DATA_ARGS[2],
        DATA_ARGS[3],
        DATA_ARGS[4],
        DATA_ARGS[5],
        DATA_ARGS[6],
        DATA_ARGS[7],
        ("fresh", Kind::Bool),
    ],
    one_of_required: &[],
    required: &[],
};

pub static VALIDATE_SPEC: ModuleSpec = ModuleSpec {
    name: "zdm_validate",
    free_form: false,
    any_args: false,
    args: &[
        DATA_ARGS[0],
        DATA_ARGS[1],
        DATA_ARGS[2],
        DATA_ARGS[3],
        DATA_ARGS[4],
        DATA_ARGS[5],
        DATA_ARGS[6],
        DATA_ARGS[7],
        ("max_missing", Kind::Int),
        ("max_mismatched", Kind::Int),
        ("max_extra", Kind::Int),
        ("autocorrect", Kind::Bool),
        ("autocorrect_extra", Kind::Bool),
        ("compare_writetime", Kind::Bool),
        ("sample_percent", Kind::Number),
        ("max_examples", Kind::Int),
        ("report", Kind::Scalar),
        ("fresh", Kind::Bool),
    ],
    one_of_required: &[],
    required: &[],
};

pub struct ZdmMigrate;
pub struct ZdmValidate;

fn failed(e: anyhow::Error) -> ModuleError {
    ModuleError::Failed(format!("{e:#}"))
}

fn int(ctx: &ModuleCtx<'_>, arg: &str, default: f64) -> Result<f64, ModuleError> {
    let n = number(ctx.args, ctx.vars, arg, &format!("zdm_{arg}"), default)?;
    if n < 0.0 || n.fract() != 0.0 {
        return Err(ModuleError::Failed(format!(
            "{arg} must be a whole number >= 0, got {n}"
        )));
    }
    Ok(n)
}

/// Engine settings from the host's variables and the task's tuning arguments.
fn data_config(ctx: &ModuleCtx<'_>) -> Result<DataConfig, ModuleError> {
    let mut origin = cluster_from_vars(ctx.vars, "origin")?;
    let mut target = cluster_from_vars(ctx.vars, "target")?;
    let rate = |arg: &str| -> Result<Option<u32>, ModuleError> {
        Ok(crate::modules::arg_f64(ctx.args, arg)?.map(|n| n.max(1.0) as u32))
    };
    origin.rate_limit = rate("origin_rate")?;
    target.rate_limit = rate("target_rate")?;
    let d = DataConfig::default();
    // Unset: the engine derives the count from origin's size estimates (or resumes with the
    // interrupted run's).
    let splits = if ctx.args.contains_key("splits") || ctx.vars.contains_key("zdm_splits") {
        Some(int(ctx, "splits", 0.0)?.max(1.0) as u32)
    } else {
        None
    };
    Ok(DataConfig {
        origin,
        target,
        splits,
        concurrency: int(ctx, "concurrency", d.concurrency as f64)?.max(1.0) as usize,
        page_size: int(ctx, "page_size", d.page_size as f64)?.max(1.0) as i32,
        ..d
    })
}

fn describe_splits(splits: Option<u32>) -> String {
    match splits {
        Some(n) => format!("{n} token ranges per table"),
        None => "token ranges per table as origin's size estimates call for (at least 256)".into(),
    }
}

/// The consistency gate's checkpoint. Named by the phase being entered when there is one, so a
/// later phase's final check never resumes an earlier phase's interrupted run (its cut-off and
/// per-range results would be stale).
fn validate_checkpoint(dir: &Path) -> PathBuf {
    let phase = crate::migration::run::current()
        .and_then(|r| r.transition())
        .map(|t| t.phase.to_string());
    match phase {
        Some(p) => dir.join(format!("validate-{p}-checkpoint.json")),
        None => dir.join(crate::data::checkpoint::VALIDATE_CHECKPOINT),
    }
}

/// Where reports and the checkpoint go: `state_dir`, else beside the migration state.
fn state_dir(args: &Map<String, Value>) -> PathBuf {
    arg_str(args, "state_dir")
        .map(PathBuf::from)
        .or_else(|| crate::migration::run::current().map(|r| r.data_dir()))
        .unwrap_or_else(|| PathBuf::from(crate::migration::run::DATA_DIR))
}

fn write_report<T: serde::Serialize>(path: &Path, value: &T) -> Result<(), ModuleError> {
    let json = serde_json::to_vec_pretty(value).map_err(|e| ModuleError::Failed(e.to_string()))?;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)
            .map_err(|e| ModuleError::Failed(format!("{}: {e}", dir.display())))?;
    }
    crate::data::checkpoint::write_atomic(path, &json)
        .map_err(|e| ModuleError::Failed(format!("writing report {}: {e}", path.display())))
}

impl Module for ZdmMigrate {
    fn query<'a>(&'a self, ctx: &'a ModuleCtx<'a>) -> ModFuture<'a, Query> {
        async move {
            let cfg = data_config(ctx)?;
            let sel = selection(ctx.args, ctx.vars)?;
            Ok(Query::Run(Planned {
                summary: format!(
                    "copy {} from origin ({}) to target ({}) keeping writetime and TTL, {}, {} at \
                     a time{}; resumes from {}",
                    describe_selection(&sel),
                    cfg.origin.contact_points.join(","),
                    cfg.target.contact_points.join(","),
                    describe_splits(cfg.splits),
                    cfg.concurrency,
                    match (cfg.origin.rate_limit, cfg.target.rate_limit) {
                        (None, None) => String::new(),
                        (o, t) => format!(
                            ", rate limits origin {} / target {} rows/s",
                            o.map_or("none".into(), |n| n.to_string()),
                            t.map_or("none".into(), |n| n.to_string())
                        ),
                    },
                    state_dir(ctx.args)
                        .join(crate::data::checkpoint::MIGRATE_CHECKPOINT)
                        .display()
                ),
                ..Default::default()
            }))
        }
        .boxed()
    }

    fn apply<'a>(&'a self, ctx: &'a ModuleCtx<'a>, _: &'a Planned) -> ModFuture<'a, ModResult> {
        async move {
            let mut cfg = data_config(ctx)?;
            let sel = selection(ctx.args, ctx.vars)?;
            let dir = state_dir(ctx.args);
            std::fs::create_dir_all(&dir)
                .map_err(|e| ModuleError::Failed(format!("{}: {e}", dir.display())))?;
            cfg.checkpoint = Some(dir.join(crate::data::checkpoint::MIGRATE_CHECKPOINT));
            cfg.fresh = arg_bool(ctx.args, "fresh", false);
            let summary = crate::data::migrate(&cfg, &sel, &NoProgress)
                .await
                .map_err(failed)?;
            let report = dir.join("migrate-report.json");
            write_report(&report, &summary)?;
            let mut data = Map::new();
            data.insert(
                "summary".into(),
                serde_json::to_value(&summary).unwrap_or(Value::Null),
            );
            data.insert("report".into(), Value::from(report.display().to_string()));
            Ok(ModResult {
                changed: summary.writes > 0,
                failed: !summary.ok(),
                msg: Some(format!("{}report: {}", summary.human(), report.display())),
                data,
                ..Default::default()
            })
        }
        .boxed()
    }
}

/// The consistency gate's limits: `max_missing`, `max_mismatched`, `max_extra` (default 0).
#[derive(Debug, Clone, Copy, PartialEq)]
struct Limits {
    missing: u64,
    mismatched: u64,
    extra: u64,
}

fn limits(ctx: &ModuleCtx<'_>) -> Result<Limits, ModuleError> {
    Ok(Limits {
        missing: int(ctx, "max_missing", 0.0)? as u64,
        mismatched: int(ctx, "max_mismatched", 0.0)? as u64,
        extra: int(ctx, "max_extra", 0.0)? as u64,
    })
}

fn key_text(k: &std::collections::BTreeMap<String, String>) -> String {
    k.iter()
        .map(|(c, v)| format!("{c}={v}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Up to `max` example keys of one kind across tables, as `ks.table (k=v, ...)`.
fn examples(
    tables: &[TableValidation],
    pick: impl Fn(&TableValidation) -> Vec<String>,
    max: usize,
) -> Vec<String> {
    tables
        .iter()
        .flat_map(|t| {
            pick(t)
                .into_iter()
                .map(move |k| format!("{} ({k})", t.table))
        })
        .take(max)
        .collect()
}

/// One check per kind, judged on what remains after autocorrection (found minus corrected),
/// plus one check that every token range could be read (an unread range proves nothing).
fn consistency_checks(r: &ValidationReport, l: &Limits, max_examples: usize) -> Vec<Check> {
    // The same arithmetic as the CLI's exit code (ValidationReport::remaining).
    let left = r.remaining();
    let kind =
        |name: &str, found: u64, corrected: u64, left: u64, limit: u64, keys: Vec<String>| {
            let mut measured = format!("{left} {name} of {} rows compared", r.rows_compared);
            if corrected > 0 {
                measured.push_str(&format!(
                    " ({found} found, {corrected} corrected on target)"
                ));
            }
            if !keys.is_empty() {
                measured.push_str(&format!(
                    "; {}: {}",
                    if corrected > 0 { "found" } else { "e.g." },
                    keys.join("; ")
                ));
            }
            Check {
                name: format!("{name} rows"),
                passed: left <= limit,
                measured,
                threshold: format!("<= {limit}"),
            }
        };
    let mut checks = vec![
        kind(
            "missing",
            r.missing,
            r.corrected_missing,
            left.missing,
            l.missing,
            examples(
                &r.tables,
                |t| t.missing_keys.iter().map(key_text).collect(),
                max_examples,
            ),
        ),
        kind(
            "mismatched",
            r.mismatched,
            r.corrected_mismatched,
            left.mismatched,
            l.mismatched,
            examples(
                &r.tables,
                |t| {
                    t.mismatched_rows
                        .iter()
                        .map(|m| {
                            let cols: Vec<String> = m
                                .columns
                                .keys()
                                .map(|c| match m.causes.get(c) {
                                    Some(cause) => {
                                        let why = cause.split(TO_DO).next().unwrap_or(cause);
                                        format!("{c} (likely cause: {why})")
                                    }
                                    None => c.clone(),
                                })
                                .collect();
                            format!("{} differs in {}", key_text(&m.key), cols.join(", "))
                        })
                        .collect()
                },
                max_examples,
            ),
        ),
        kind(
            "extra",
            r.extra,
            r.corrected_extra,
            left.extra,
            l.extra,
            examples(
                &r.tables,
                |t| t.extra_keys.iter().map(key_text).collect(),
                max_examples,
            ),
        ),
    ];
    // What to do about the causes above, said once rather than beside every column.
    let to_do: std::collections::BTreeSet<&str> = r
        .tables
        .iter()
        .flat_map(|t| &t.mismatched_rows)
        .flat_map(|m| m.causes.values())
        .filter_map(|cause| cause.split_once(TO_DO).map(|(_, to_do)| to_do))
        .collect();
    if !to_do.is_empty() && left.mismatched > 0 {
        checks[1].measured.push_str(&format!(
            ". To do: {}",
            to_do.into_iter().collect::<Vec<_>>().join("; ")
        ));
    }
    let failures: Vec<String> = r
        .tables
        .iter()
        .flat_map(|t| {
            t.failures
                .iter()
                .map(move |(i, e)| format!("{} range {i}: {e}", t.table))
        })
        .take(max_examples)
        .collect();
    checks.push(Check {
        name: "token ranges read".into(),
        passed: r.ranges_failed == 0 && r.corrections_failed == 0,
        measured: if r.ranges_failed == 0 && r.corrections_failed == 0 {
            {
                let resumed: u32 = r.tables.iter().map(|t| t.ranges_resumed).sum();
                format!(
                    "all ranges of {} table(s) read ({}% sample){}",
                    r.tables.len(),
                    r.sample_percent,
                    if resumed > 0 {
                        format!(
                            ", {resumed} of them by an interrupted earlier run (fresh: true \
                             checks them again)"
                        )
                    } else {
                        String::new()
                    }
                )
            }
        } else {
            format!(
                "{} range(s) unreadable, {} correction(s) failed{}",
                r.ranges_failed,
                r.corrections_failed,
                if failures.is_empty() {
                    String::new()
                } else {
                    format!(": {}", failures.join("; "))
                }
            )
        },
        threshold: "0 unreadable ranges, 0 failed corrections".into(),
    });
    if let Some(check) = counter_tables_check(r) {
        checks.push(check);
    }
    checks
}

/// Says how counter tables were judged, since it is not the way other tables are: by value
/// after a re-read (no writetime tells live increments apart) and corrected by adding the
/// difference. Informative: their differences are already in the counts above.
fn counter_tables_check(r: &ValidationReport) -> Option<Check> {
    let tables: Vec<String> = r
        .tables
        .iter()
        .filter(|t| t.counter_table)
        .map(|t| {
            format!(
                "{} ({} rows apart at the scan were equal when read again {} ms later: \
                 increments in flight)",
                t.table,
                t.counter_rows_in_flight,
                crate::data::counters::SETTLE.as_millis()
            )
        })
        .collect();
    (!tables.is_empty()).then(|| Check {
        name: "counter tables".into(),
        passed: true,
        measured: format!(
            "{}; counters are compared by value after a re-read and corrected by adding \
             origin - target to target (an increment still in flight longer than that can \
             leave one row off, which the next run corrects)",
            tables.join("; ")
        ),
        threshold: "reported only".into(),
    })
}

impl Module for ZdmValidate {
    fn query<'a>(&'a self, ctx: &'a ModuleCtx<'a>) -> ModFuture<'a, Query> {
        async move {
            let cfg = data_config(ctx)?;
            let sel = selection(ctx.args, ctx.vars)?;
            let l = limits(ctx)?;
            let sample = number(
                ctx.args,
                ctx.vars,
                "sample_percent",
                "zdm_sample_percent",
                100.0,
            )?;
            Ok(Query::Run(Planned {
                summary: format!(
                    "compare {} on origin ({}) with target ({}) over {sample}% of the token \
                     ranges: missing <= {}, mismatched <= {}, extra <= {}{}; {}",
                    describe_selection(&sel),
                    cfg.origin.contact_points.join(","),
                    cfg.target.contact_points.join(","),
                    l.missing,
                    l.mismatched,
                    l.extra,
                    if arg_bool(ctx.args, "autocorrect", false) {
                        "; write missing and mismatched rows to target"
                    } else {
                        ""
                    },
                    if arg_bool(ctx.args, "fresh", false) {
                        "checks every range afresh".to_string()
                    } else {
                        format!(
                            "resumes an interrupted check from {}",
                            validate_checkpoint(&state_dir(ctx.args)).display()
                        )
                    }
                ),
                ..Default::default()
            }))
        }
        .boxed()
    }

    fn apply<'a>(&'a self, ctx: &'a ModuleCtx<'a>, _: &'a Planned) -> ModFuture<'a, ModResult> {
        async move {
            let cfg = data_config(ctx)?;
            let sel = selection(ctx.args, ctx.vars)?;
            let l = limits(ctx)?;
            let sample = number(
                ctx.args,
                ctx.vars,
                "sample_percent",
                "zdm_sample_percent",
                100.0,
            )?;
            if !(sample > 0.0 && sample <= 100.0) {
                return Err(ModuleError::Failed(format!(
                    "sample_percent must be in (0, 100], got {sample}"
                )));
            }
            let autocorrect = arg_bool(ctx.args, "autocorrect", false);
            let max_examples = int(ctx, "max_examples", 5.0)? as usize;
            let opts = ValidateOptions {
                sample_percent: sample,
                cutoff: Cutoff::StartOfRun,
                compare_writetime: arg_bool(ctx.args, "compare_writetime", false),
                autocorrect_missing: autocorrect,
                autocorrect_mismatched: autocorrect,
                autocorrect_extra: arg_bool(ctx.args, "autocorrect_extra", false),
                max_examples,
            };
            let dir = state_dir(ctx.args);
            let resume = ValidateResume {
                checkpoint: validate_checkpoint(&dir),
                fresh: arg_bool(ctx.args, "fresh", false),
            };
            let report =
                crate::data::validate_resumable(&cfg, &sel, &opts, Some(&resume), &NoProgress)
                    .await
                    .map_err(failed)?;
            let path = arg_str(ctx.args, "report")
                .map(PathBuf::from)
                .unwrap_or_else(|| dir.join("validate-report.json"));
            write_report(&path, &report)?;
            let checks = consistency_checks(&report, &l, max_examples);
            let mut r = gate_result("consistency", &checks);
            r.changed =
                report.corrected_missing + report.corrected_mismatched + report.corrected_extra > 0;
            r.msg = r.msg.map(|m| format!("{m}\nreport: {}", path.display()));
            r.data.insert(
                "report".into(),
                serde_json::to_value(&report).unwrap_or(Value::Null),
            );
            r.data.insert(
                "report_file".into(),
                Value::from(path.display().to_string()),
            );
            Ok(r)
        }
        .boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn key(k: &str) -> BTreeMap<String, String> {
        BTreeMap::from([("id".to_string(), k.to_string())])
    }

    #[test]
    fn the_gate_names_keys_and_judges_what_autocorrect_left() {
        let mut r = ValidationReport {
            missing: 2,
            rows_compared: 100,
            sample_percent: 100.0,
            tables: vec![TableValidation {
                table: "shop.orders".into(),
                missing: 2,
                missing_keys: vec![key("7"), key("9")],
                ..Default::default()
            }],
            ..Default::default()
        };
        let l = Limits {
            missing: 0,
            mismatched: 0,
            extra: 0,
        };
        let checks = consistency_checks(&r, &l, 5);
        assert!(!checks[0].passed);
        assert_eq!(
            checks[0].measured,
            "2 missing of 100 rows compared; e.g.: shop.orders (id=7); shop.orders (id=9)"
        );
        assert!(checks[1..].iter().all(|c| c.passed), "{checks:?}");
        assert!(consistency_checks(&r, &Limits { missing: 2, ..l }, 5)[0].passed);

        r.corrected_missing = 2;
        let checks = consistency_checks(&r, &l, 1);
        assert!(checks[0].passed, "{:?}", checks[0]);
        assert!(checks[0].measured.contains("2 found, 2 corrected"));
        // A correction that did not take effect fails the gate.
        r.corrections_failed = 1;
        let checks = consistency_checks(&r, &l, 1);
        assert!(!checks[0].passed && !checks[3].passed, "{checks:?}");
    }
}
