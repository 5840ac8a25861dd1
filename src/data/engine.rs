//! The library entry points: [`migrate`] and [`validate`]. A playbook module or the CLI fills a
//! [`DataConfig`] and a [`Selection`], passes a [`Progress`] sink, and gets a summary back.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use futures::StreamExt;
use scylla::client::session::Session;
use scylla::statement::prepared::PreparedStatement;
use scylla::value::CqlValue;

use super::autocorrect;
use super::checkpoint::{self, Checkpoint, ValidateCheckpoint};
use super::config::{DataConfig, Selection};
use super::copy::{self, row_writes, Statements, WriteOptions, Writer};
use super::counters::{self, Candidate, CounterRows};
use super::diff::{column_diffs, key_map, DiffOptions, Finding, RangeDiff, RangeEnd};
use super::ranges::{sample, split_ring, TokenRange};
use super::report::{MigrateSummary, Mismatch, TableMigrate, TableValidation, ValidationReport};
use super::scan::{select_cql, RangeScanner, RateLimiter, RetryPolicy};
use super::schema::{self, Table};
use super::sizing::{self, SplitChoice};
use super::value::{key_id, KeyId, ScannedRow};

/// Receives progress as ranges finish (progress bars, playbook output). Must be cheap.
pub trait Progress: Send + Sync {
    fn table_started(&self, _table: &str, _ranges: u32) {}
    /// Ranges an interrupted run had finished (not worked on now; kept out of rates).
    fn ranges_resumed(&self, table: &str, ranges: u32) {
        for _ in 0..ranges {
            self.range_finished(table, 0);
        }
    }
    fn range_finished(&self, _table: &str, _rows: u64) {}
    fn table_finished(&self, _table: &str) {}
}

/// Ignores progress.
pub struct NoProgress;
impl Progress for NoProgress {}

/// Microseconds since the epoch, the unit of CQL writetimes.
pub fn now_micros() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0)
}

/// Both sessions and the tables to work on, checked before anything is written.
struct Prepared {
    origin: Arc<Session>,
    target: Arc<Session>,
    tables: Vec<(Table, Table)>,
}

async fn prepare_run(cfg: &DataConfig, sel: &Selection) -> anyhow::Result<Prepared> {
    let origin = Arc::new(cfg.origin.connect().await?);
    let target = Arc::new(cfg.target.connect().await?);
    schema::check_partitioner(&origin, "origin").await?;
    schema::check_partitioner(&target, "target").await?;
    let origin_tables = schema::load_tables(&origin, "origin", sel).await?;
    let mut tables = Vec::new();
    for t in origin_tables {
        let target_tables = schema::load_keyspace(&target, "target", &t.keyspace).await?;
        let on_target = target_tables.into_iter().find(|x| x.name == t.name);
        schema::check_compatible(&t, on_target.as_ref())?;
        let on_target = on_target.expect("checked above");
        tables.push((t, on_target));
    }
    Ok(Prepared {
        origin,
        target,
        tables,
    })
}

/// The run's split count: the configured one, else the interrupted run's (its range indexes
/// refer to it), else derived from origin's size estimates.
async fn choose_splits(
    cfg: &DataConfig,
    resumed: Option<u32>,
    run: &Prepared,
) -> anyhow::Result<SplitChoice> {
    if let Some(n) = cfg.splits {
        return Ok(SplitChoice {
            splits: n.max(1),
            reason: "as configured".into(),
        });
    }
    if let Some(n) = resumed {
        return Ok(SplitChoice {
            splits: n,
            reason: "kept from the interrupted run's checkpoint".into(),
        });
    }
    let tables: Vec<&Table> = run.tables.iter().map(|(t, _)| t).collect();
    sizing::derive(&run.origin, &tables).await
}

fn retry_policy(cfg: &DataConfig) -> RetryPolicy {
    RetryPolicy {
        attempts: cfg.retries,
        backoff: cfg.backoff,
    }
}

async fn prepare_select(
    session: &Session,
    table: &Table,
    with_times: bool,
    cluster: &str,
) -> anyhow::Result<PreparedStatement> {
    let cql = select_cql(table, with_times);
    let mut p = session.prepare(cql.as_str()).await.with_context(|| {
        format!(
            "preparing the range scan of {} on {cluster}",
            table.display_name()
        )
    })?;
    p.set_is_idempotent(true);
    Ok(p)
}

/// Copies every selected origin table to target, range by range, resuming from the checkpoint.
pub async fn migrate(
    cfg: &DataConfig,
    sel: &Selection,
    progress: &dyn Progress,
) -> anyhow::Result<MigrateSummary> {
    let started = Instant::now();
    let run = prepare_run(cfg, sel).await?;
    let resumed = match (&cfg.checkpoint, cfg.fresh) {
        (Some(path), false) => Checkpoint::load_for_resume(path, cfg.splits)?,
        _ => None,
    };
    let choice = choose_splits(cfg, resumed.as_ref().map(|c| c.splits), &run).await?;
    let checkpoint = resumed.unwrap_or_else(|| Checkpoint::new(choice.splits));
    let checkpoint = Arc::new(Mutex::new(checkpoint));

    let origin_limit = cfg.origin.rate_limit.map(RateLimiter::new);
    let target_limit = cfg.target.rate_limit.map(RateLimiter::new);
    let writer = Writer::new(run.target.clone(), retry_policy(cfg));
    let ranges = split_ring(choice.splits);
    let mut summary = MigrateSummary {
        splits: choice.splits,
        splits_reason: choice.reason.clone(),
        ..Default::default()
    };

    for (table, _) in &run.tables {
        let name = table.display_name();
        let select = prepare_select(&run.origin, table, true, "origin").await?;
        let statements = Statements::new(table);
        // Lists are not idempotent to write, and counters are copied as a difference: both
        // need target's current rows.
        let target_select = if copy::needs_target_read(table) || table.is_counter_table() {
            Some(prepare_select(&run.target, table, true, "target").await?)
        } else {
            None
        };
        let target_select = &target_select;
        let counter_rows = if table.is_counter_table() {
            Some(CounterRows::prepare(&run.origin, &run.target, table).await?)
        } else {
            None
        };
        let counter_rows = &counter_rows;
        let pending: Vec<TokenRange> = {
            let cp = checkpoint.lock().expect("checkpoint lock");
            ranges
                .iter()
                .copied()
                .filter(|r| !cp.is_done(&name, r.index))
                .collect()
        };
        let mut t = TableMigrate {
            table: name.clone(),
            ranges_total: ranges.len() as u32,
            ranges_resumed: (ranges.len() - pending.len()) as u32,
            ..Default::default()
        };
        progress.table_started(&name, ranges.len() as u32);
        progress.ranges_resumed(&name, t.ranges_resumed);

        let results: Vec<(TokenRange, anyhow::Result<(u64, u64)>)> = futures::stream::iter(pending)
            .map(|range| {
                let select = &select;
                let writer = &writer;
                let statements = &statements;
                let origin = &run.origin;
                let origin_limit = origin_limit.clone();
                let target_limit = target_limit.clone();
                let checkpoint = &checkpoint;
                let name = &name;
                let target: &Session = &run.target;
                async move {
                    let result = match (counter_rows, target_select) {
                        (Some(counters), Some(target_select)) => {
                            copy_counter_range(
                                cfg,
                                (origin, target),
                                (select, target_select),
                                counters,
                                table,
                                range,
                                (origin_limit, target_limit),
                            )
                            .await
                        }
                        _ => {
                            copy_range(
                                cfg,
                                origin,
                                select,
                                writer,
                                statements,
                                range,
                                origin_limit,
                                target_limit,
                                target_select.as_ref().map(|s| (target, s)),
                            )
                            .await
                        }
                    };
                    // Record the outcome right away so a kill loses at most in-flight ranges.
                    record_range(cfg, checkpoint, name, range, &result);
                    progress.range_finished(name, *result.as_ref().map(|(r, _)| r).unwrap_or(&0));
                    (range, result)
                }
            })
            .buffer_unordered(cfg.concurrency.max(1))
            .collect()
            .await;

        for (range, result) in results {
            match result {
                Ok((rows, writes)) => {
                    t.ranges_copied += 1;
                    t.rows_read += rows;
                    t.writes += writes;
                }
                Err(e) => {
                    t.ranges_failed += 1;
                    t.failures.insert(range.index, format!("{e:#}"));
                }
            }
        }
        progress.table_finished(&name);
        summary.rows_read += t.rows_read;
        summary.writes += t.writes;
        summary.ranges_resumed += t.ranges_resumed;
        summary.ranges_failed += t.ranges_failed;
        summary.tables.push(t);
    }

    summary.elapsed_secs = started.elapsed().as_secs_f64();
    summary.rows_per_sec = summary.rows_read as f64 / summary.elapsed_secs.max(1e-9);
    if let Some(path) = &cfg.checkpoint {
        let mut cp = checkpoint.lock().expect("checkpoint lock");
        if summary.ok() {
            cp.finished = Some(summary.clone());
        }
        checkpoint::save(path, &cp)?;
    }
    Ok(summary)
}

/// Most statements in one single-partition batch; keeps batches under Cassandra's
/// `batch_size_fail_threshold` for ordinary rows.
const MAX_BATCH: usize = 32;

/// Marks a range done or failed in the checkpoint and saves it.
fn record_range(
    cfg: &DataConfig,
    checkpoint: &Mutex<Checkpoint>,
    table: &str,
    range: TokenRange,
    result: &anyhow::Result<(u64, u64)>,
) {
    let mut cp = checkpoint.lock().expect("checkpoint lock");
    let tp = cp.table(table);
    match result {
        Ok((rows, _)) => {
            tp.failed.remove(&range.index);
            tp.done.insert(range.index, *rows);
        }
        Err(e) => {
            tp.failed.insert(range.index, format!("{e:#}"));
        }
    }
    if let Some(path) = &cfg.checkpoint {
        if let Err(e) = checkpoint::save(path, &cp) {
            tracing::error!("cannot save checkpoint {}: {e:#}", path.display());
        }
    }
}

/// Copies one range; returns (rows read, writes made).
#[allow(clippy::too_many_arguments)]
async fn copy_range(
    cfg: &DataConfig,
    origin: &Session,
    select: &PreparedStatement,
    writer: &Writer,
    statements: &Statements,
    range: TokenRange,
    origin_limit: Option<Arc<RateLimiter>>,
    target_limit: Option<Arc<RateLimiter>>,
    target_select: Option<(&Session, &PreparedStatement)>,
) -> anyhow::Result<(u64, u64)> {
    let table = statements.table();
    let on_target = match target_select {
        Some((target, stmt)) => Some(read_range(cfg, target, stmt, table, range, None).await?),
        None => None,
    };
    let mut scanner = RangeScanner::new(
        origin,
        select,
        range,
        cfg.page_size,
        retry_policy(cfg),
        origin_limit,
    );
    let pk_len = table.partition_key().count();
    let mut last_partition: Option<Vec<Option<CqlValue>>> = None;
    let (mut rows_read, mut writes_made) = (0u64, 0u64);
    // One page's writes run while the next page is read, so origin and target work at the same
    // time (migrate's ceiling is a scan of origin running alongside a bulk write of target);
    // at most one page is buffered ahead per range.
    let write_page = |groups: Vec<Vec<copy::Write>>, page_rows: usize| {
        let target_limit = target_limit.clone();
        async move {
            // The target limit is rows/s like origin's: a row costs one unit however many
            // statements (per-TTL groups, collection elements) it takes.
            if let Some(limit) = &target_limit {
                limit.acquire(page_rows).await;
            }
            writer.apply_groups(groups, cfg.write_concurrency).await
        }
    };
    let mut writing = None;
    loop {
        let page = match writing.take() {
            Some(previous) => {
                let (page, written) = futures::join!(scanner.next_page(), previous);
                written?;
                page?
            }
            None => scanner.next_page().await?,
        };
        let Some(page) = page else { break };
        let read_at = now_micros();
        let page_rows = page.len();
        // Writes grouped by partition (rows of a partition are adjacent in a token scan).
        let mut groups: Vec<Vec<copy::Write>> = Vec::new();
        for row in page {
            let row = ScannedRow::from_row(table, row, true)?;
            rows_read += 1;
            // Static cells repeat on every row of a partition; write them once.
            let partition = &row.key[..pk_len];
            let first = last_partition.as_deref() != Some(partition);
            if first {
                last_partition = Some(partition.to_vec());
            }
            if first || groups.last().is_none_or(|g| g.len() >= MAX_BATCH) {
                groups.push(Vec::new());
            }
            let opts = WriteOptions {
                write_static: first,
                ..WriteOptions::backfill(read_at)
            };
            let target_row = on_target.as_ref().map(|m| m.get(&key_id(&row.key)));
            let group = groups.last_mut().expect("pushed above");
            group.extend(row_writes(statements, &row, &opts, None, target_row));
        }
        groups.retain(|g| !g.is_empty());
        writes_made += groups.iter().map(Vec::len).sum::<usize>() as u64;
        writing = Some(Box::pin(write_page(groups, page_rows)));
    }
    if let Some(last) = writing {
        last.await?;
    }
    Ok((rows_read, writes_made))
}

/// Copies one range of a counter table: each origin row whose counters differ from target's
/// gets the difference added on target, once it held across quiet re-reads (`counters`). Returns
/// (rows read, increments written).
async fn copy_counter_range(
    cfg: &DataConfig,
    (origin, target): (&Session, &Session),
    (select, target_select): (&PreparedStatement, &PreparedStatement),
    counters: &CounterRows,
    table: &Table,
    range: TokenRange,
    (origin_limit, target_limit): Limits,
) -> anyhow::Result<(u64, u64)> {
    let mut on_target = read_range(cfg, target, target_select, table, range, target_limit).await?;
    let on_origin = read_range(cfg, origin, select, table, range, origin_limit).await?;
    let rows_read = on_origin.len() as u64;
    let candidates: Vec<Candidate> = on_origin
        .into_iter()
        .filter_map(|(id, o)| {
            let t = on_target.remove(&id);
            let d = counters::difference(table, Some(&o), t.as_ref());
            (!d.iter().all(|&x| x == 0)).then(|| Candidate {
                key: o.key.clone(),
                origin: Some(o),
                target: t,
            })
        })
        .collect();
    let done = counters
        .reconcile(origin, target, table, candidates, true)
        .await?;
    if !done.apart.is_empty() {
        tracing::warn!(
            "{}: {} counter row(s) kept changing while being copied; the consistency gate \
             re-reads them",
            table.display_name(),
            done.apart.len()
        );
    }
    Ok((rows_read, done.writes))
}

/// Reads every row of one range, keyed by primary key.
async fn read_range(
    cfg: &DataConfig,
    session: &Session,
    stmt: &PreparedStatement,
    table: &Table,
    range: TokenRange,
    limit: Option<Arc<RateLimiter>>,
) -> anyhow::Result<HashMap<KeyId, ScannedRow>> {
    let mut scanner = RangeScanner::new(
        session,
        stmt,
        range,
        cfg.page_size,
        retry_policy(cfg),
        limit,
    );
    let mut rows = HashMap::new();
    while let Some(page) = scanner.next_page().await? {
        for row in page {
            let row = ScannedRow::from_row(table, row, true)?;
            rows.insert(key_id(&row.key), row);
        }
    }
    Ok(rows)
}

/// When cells count as live traffic rather than a difference.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Cutoff {
    /// Rows written after the validation started are not judged (the default).
    StartOfRun,
    At(i64),
    None,
}

#[derive(Clone, Debug)]
pub struct ValidateOptions {
    /// Percentage of token ranges to check (100 = full).
    pub sample_percent: f64,
    pub cutoff: Cutoff,
    pub compare_writetime: bool,
    pub autocorrect_missing: bool,
    pub autocorrect_mismatched: bool,
    /// Delete rows found only on target (not judged as live traffic).
    pub autocorrect_extra: bool,
    /// Example keys kept per kind and table in the report.
    pub max_examples: usize,
}

/// Where a validation keeps its per-range progress (never migrate's file: the two runs resume
/// independently).
#[derive(Clone, Debug)]
pub struct ValidateResume {
    pub checkpoint: std::path::PathBuf,
    /// Ignore an existing checkpoint and check every range again.
    pub fresh: bool,
}

impl Default for ValidateOptions {
    fn default() -> Self {
        ValidateOptions {
            sample_percent: 100.0,
            cutoff: Cutoff::StartOfRun,
            compare_writetime: false,
            autocorrect_missing: false,
            autocorrect_mismatched: false,
            autocorrect_extra: false,
            max_examples: 20,
        }
    }
}

/// What makes two validate runs' range results comparable; a resumed run must match (public
/// so a tool or test can tell which checkpoint a run would resume).
pub fn validate_fingerprint(opts: &ValidateOptions) -> String {
    let cutoff = match opts.cutoff {
        Cutoff::StartOfRun => "start-of-run".to_string(),
        Cutoff::At(t) => format!("at-{t}"),
        Cutoff::None => "none".to_string(),
    };
    format!(
        "sample={} cutoff={cutoff} compare_writetime={} autocorrect={}/{}/{}",
        opts.sample_percent.min(100.0),
        opts.compare_writetime,
        opts.autocorrect_missing,
        opts.autocorrect_mismatched,
        opts.autocorrect_extra
    )
}

/// Compares every selected origin table with target (or a sample of token ranges), optionally
/// correcting what is missing or mismatched. Nothing is checkpointed: see
/// [`validate_resumable`].
pub async fn validate(
    cfg: &DataConfig,
    sel: &Selection,
    opts: &ValidateOptions,
    progress: &dyn Progress,
) -> anyhow::Result<ValidationReport> {
    validate_resumable(cfg, sel, opts, None, progress).await
}

/// [`validate`] with a checkpoint: each finished range's counts are saved, so an interrupted
/// run resumes (same cut-off, finished ranges not read again) unless `resume.fresh`.
pub async fn validate_resumable(
    cfg: &DataConfig,
    sel: &Selection,
    opts: &ValidateOptions,
    resume: Option<&ValidateResume>,
    progress: &dyn Progress,
) -> anyhow::Result<ValidationReport> {
    let started = Instant::now();
    let fingerprint = validate_fingerprint(opts);
    let checkpoint_path = resume.map(|r| r.checkpoint.as_path());
    let resumed = match resume {
        Some(r) if !r.fresh => {
            ValidateCheckpoint::load_for_resume(&r.checkpoint, cfg.splits, &fingerprint)?
        }
        _ => None,
    };
    // Taken before connecting: rows written from now on are live traffic.
    let new_cutoff = match opts.cutoff {
        Cutoff::StartOfRun => Some(now_micros()),
        Cutoff::At(t) => Some(t),
        Cutoff::None => None,
    };
    let run = prepare_run(cfg, sel).await?;
    let choice = choose_splits(cfg, resumed.as_ref().map(|c| c.splits), &run).await?;
    let checkpoint =
        resumed.unwrap_or_else(|| ValidateCheckpoint::new(choice.splits, fingerprint, new_cutoff));
    let cutoff = checkpoint.cutoff;
    let checkpoint = Mutex::new(checkpoint);
    let diff_opts = DiffOptions {
        cutoff,
        compare_writetime: opts.compare_writetime,
        ttl_tolerance_secs: 120,
    };
    let origin_limit = cfg.origin.rate_limit.map(RateLimiter::new);
    let target_limit = cfg.target.rate_limit.map(RateLimiter::new);
    let writer = Writer::new(run.target.clone(), retry_policy(cfg));
    let ranges = sample(&split_ring(choice.splits), opts.sample_percent);

    let mut report = ValidationReport {
        sample_percent: opts.sample_percent.min(100.0),
        cutoff_writetime: cutoff,
        splits: choice.splits,
        splits_reason: choice.reason.clone(),
        ..Default::default()
    };
    for (table, _) in &run.tables {
        let name = table.display_name();
        // Target is read with origin's column list so cells line up even if target has more.
        let with_times = (
            prepare_select(&run.origin, table, true, "origin").await?,
            prepare_select(&run.target, table, true, "target").await?,
        );
        let values_only = if values_first(opts, table) {
            Some((
                prepare_select(&run.origin, table, false, "origin").await?,
                prepare_select(&run.target, table, false, "target").await?,
            ))
        } else {
            None
        };
        let lookups = autocorrect::Lookups::prepare(&run.target, table).await?;
        let counter_rows = if table.is_counter_table() {
            Some(CounterRows::prepare(&run.origin, &run.target, table).await?)
        } else {
            None
        };
        let counter_rows = &counter_rows;
        let (pending, resumed_count): (Vec<TokenRange>, u32) = {
            let cp = checkpoint.lock().expect("checkpoint lock");
            let pending: Vec<TokenRange> = ranges
                .iter()
                .copied()
                .filter(|r| !cp.is_done(&name, r.index))
                .collect();
            let resumed = (ranges.len() - pending.len()) as u32;
            (pending, resumed)
        };
        progress.table_started(&name, ranges.len() as u32);
        progress.ranges_resumed(&name, resumed_count);
        let failures: Vec<(TokenRange, anyhow::Error)> = futures::stream::iter(pending)
            .map(|range| {
                let scans = RangeScans {
                    with_times: (&with_times.0, &with_times.1),
                    values_only: values_only.as_ref().map(|(o, t)| (o, t)),
                };
                let (origin_limit, target_limit) = (origin_limit.clone(), target_limit.clone());
                let (writer, run, name, lookups) = (&writer, &run, &name, &lookups);
                let checkpoint = &checkpoint;
                async move {
                    let result = validate_range(
                        cfg,
                        opts,
                        diff_opts,
                        run,
                        table,
                        scans,
                        (origin_limit, target_limit),
                        writer,
                        lookups,
                        counter_rows.as_ref(),
                        range,
                    )
                    .await;
                    let rows = result.as_ref().map(|p| p.rows_compared).unwrap_or(0);
                    record_validated(opts, checkpoint_path, checkpoint, name, range, &result);
                    progress.range_finished(name, rows);
                    result.err().map(|e| (range, e))
                }
            })
            .buffer_unordered(cfg.concurrency.max(1))
            .filter_map(|f| async move { f })
            .collect()
            .await;
        let mut t = {
            let mut cp = checkpoint.lock().expect("checkpoint lock");
            cp.table(&name).totals.clone()
        };
        t.table = name.clone();
        t.ranges_resumed = resumed_count;
        for (range, e) in failures {
            t.ranges_failed += 1;
            t.failures.insert(range.index, format!("{e:#}"));
        }
        progress.table_finished(&name);
        report.missing += t.missing;
        report.mismatched += t.mismatched;
        report.extra += t.extra;
        report.rows_compared += t.rows_compared;
        report.skipped_recent += t.skipped_recent;
        report.ranges_failed += t.ranges_failed;
        report.corrected_missing += t.corrected_missing;
        report.corrected_mismatched += t.corrected_mismatched;
        report.corrected_extra += t.corrected_extra;
        report.corrected_raised_writetime += t.corrected_raised_writetime;
        report.corrections_failed += t.corrections_failed;
        report.tables.push(t);
    }
    report.elapsed_secs = started.elapsed().as_secs_f64();
    report.rows_per_sec = report.rows_compared as f64 / report.elapsed_secs.max(1e-9);
    if let Some(path) = checkpoint_path {
        let mut cp = checkpoint.lock().expect("checkpoint lock");
        if report.ranges_failed == 0 {
            cp.finished = Some(report.clone());
        }
        checkpoint::save_validate(path, &cp)?;
    }
    Ok(report)
}

/// What re-reading a counter table's differing rows found.
struct CounterFindings {
    /// Apart at the scan, equal at a re-read: increments that were in flight.
    in_flight: u64,
    corrected_missing: u64,
    corrected_mismatched: u64,
}

/// Replaces a counter table's findings with what holds after re-reading each row (and, with
/// autocorrect, adding the difference): rows whose difference vanished are dropped, corrected
/// rows keep their finding (counted as corrected), rows still apart get their latest values.
async fn settle_counter_findings(
    opts: &ValidateOptions,
    run: &Prepared,
    table: &Table,
    counter_rows: &CounterRows,
    findings: &mut Vec<Finding>,
) -> anyhow::Result<CounterFindings> {
    let mut first: HashMap<KeyId, Finding> = HashMap::new();
    let candidates: Vec<Candidate> = findings
        .drain(..)
        .map(|f| {
            let c = match &f {
                Finding::Missing(o) => Candidate {
                    key: o.key.clone(),
                    origin: Some(o.clone()),
                    target: None,
                },
                Finding::Mismatched(o, t, _) => Candidate {
                    key: o.key.clone(),
                    origin: Some(o.clone()),
                    target: Some(t.clone()),
                },
                Finding::Extra(t) => Candidate {
                    key: t.key.clone(),
                    origin: None,
                    target: Some(t.clone()),
                },
            };
            first.insert(key_id(&c.key), f);
            c
        })
        .collect();
    let correct = opts.autocorrect_missing || opts.autocorrect_mismatched;
    let done = counter_rows
        .reconcile(&run.origin, &run.target, table, candidates, correct)
        .await?;
    let mut out = CounterFindings {
        in_flight: done.settled,
        corrected_missing: 0,
        corrected_mismatched: 0,
    };
    for c in done.corrected {
        if let Some(f) = first.remove(&key_id(&c.key)) {
            match f {
                Finding::Missing(_) => out.corrected_missing += 1,
                _ => out.corrected_mismatched += 1,
            }
            findings.push(f);
        }
    }
    for c in done.apart {
        findings.push(match (c.origin, c.target) {
            (Some(o), None) => Finding::Missing(o),
            (None, Some(t)) => Finding::Extra(t),
            (Some(o), Some(t)) => {
                let cols = (0..o.cells.len())
                    .filter(|&i| o.cells[i].value != t.cells[i].value)
                    .collect();
                Finding::Mismatched(o, t, cols)
            }
            (None, None) => continue,
        });
    }
    Ok(out)
}

/// Adds a finished range's result to the checkpoint (or records its failure) and saves it, in
/// one atomic write so counts and the set of done ranges never disagree after a kill.
fn record_validated(
    opts: &ValidateOptions,
    path: Option<&std::path::Path>,
    checkpoint: &Mutex<ValidateCheckpoint>,
    table: &str,
    range: TokenRange,
    result: &anyhow::Result<TableValidation>,
) {
    let mut cp = checkpoint.lock().expect("checkpoint lock");
    let tp = cp.table(table);
    match result {
        Ok(part) => {
            tp.failed.remove(&range.index);
            tp.done.insert(range.index, part.rows_compared);
            tp.totals.absorb(part, opts.max_examples);
        }
        Err(e) => {
            tp.failed.insert(range.index, format!("{e:#}"));
        }
    }
    if let Some(path) = path {
        if let Err(e) = checkpoint::save_validate(path, &cp) {
            tracing::error!("cannot save checkpoint {}: {e:#}", path.display());
        }
    }
}

type Limits = (Option<Arc<RateLimiter>>, Option<Arc<RateLimiter>>);

#[derive(Clone, Copy)]
enum Side {
    Origin,
    Target,
}

/// A range's pages as a stream that ends after the last page or the first error.
fn pages_of(
    scanner: RangeScanner<'_>,
) -> impl futures::Stream<Item = anyhow::Result<Vec<scylla::value::Row>>> + '_ {
    futures::stream::unfold(Some(scanner), |state| async move {
        let mut scanner = state?;
        match scanner.next_page().await {
            Ok(Some(page)) => Some((Ok(page), Some(scanner))),
            Ok(None) => None,
            Err(e) => Some((Err(e), None)),
        }
    })
}

/// Whether a validation reads values only first (see [`RangeScans`]): not when writetimes are
/// compared anyway, nor for a table with no cell that has one (counters), whose two scans would
/// be the same.
fn values_first(opts: &ValidateOptions, table: &Table) -> bool {
    !opts.compare_writetime && table.value_columns().any(|c| c.has_writetime())
}

/// The range scans of one table, origin's then target's.
///
/// With `values_only`, a range is first compared on values alone, and only a range where that
/// finds a difference is read again with every cell's writetime and TTL and judged on that
/// second reading, exactly as if it had been the only one: the live-traffic cut-off, the
/// reports' likely causes and autocorrect need the times, but only of rows that differ. Most
/// ranges of a migrated table have none, and reading times for every cell costs each cluster
/// about half again the CPU of a plain scan. The price is a second scan of the ranges that do
/// differ, and that rows equal in value count as compared even when live traffic rewrote them
/// after the cut-off.
#[derive(Clone, Copy)]
struct RangeScans<'a> {
    with_times: (&'a PreparedStatement, &'a PreparedStatement),
    values_only: Option<(&'a PreparedStatement, &'a PreparedStatement)>,
}

/// Reads one range of both clusters at the same time (validation's ceiling is the two scans
/// running together) and compares each page as it arrives.
async fn compare_range(
    cfg: &DataConfig,
    run: &Prepared,
    table: &Table,
    (selects, with_times): ((&PreparedStatement, &PreparedStatement), bool),
    limits: &Limits,
    diff_opts: DiffOptions,
    range: TokenRange,
) -> anyhow::Result<RangeEnd> {
    let retry = retry_policy(cfg);
    let origin = RangeScanner::new(
        &run.origin,
        selects.0,
        range,
        cfg.page_size,
        retry.clone(),
        limits.0.clone(),
    );
    let target = RangeScanner::new(
        &run.target,
        selects.1,
        range,
        cfg.page_size,
        retry,
        limits.1.clone(),
    );
    // Each side's pages go through a channel holding one page, so a side asks for its next
    // page as soon as one arrives, while that one's rows are compared (all on this task): the
    // clusters keep working instead of waiting for the comparison of every range in flight.
    let (sender, mut received) = futures::channel::mpsc::channel(1);
    let read = |scanner, side: Side| {
        let sender = sender.clone();
        pages_of(scanner)
            .map(move |page| Ok((side, page)))
            .forward(sender)
    };
    let (read_origin, read_target) = (read(origin, Side::Origin), read(target, Side::Target));
    drop(sender);
    let compare = async move {
        let compared = async {
            let mut diff = RangeDiff::new(table, diff_opts);
            let mut findings = Vec::new();
            while let Some((side, page)) = received.next().await {
                for row in page? {
                    let row = ScannedRow::from_row(table, row, with_times)?;
                    findings.extend(match side {
                        Side::Origin => diff.origin_row(row),
                        Side::Target => diff.target_row(row),
                    });
                }
            }
            let end = diff.finish();
            findings.extend(end.findings);
            Ok(RangeEnd { findings, ..end })
        }
        .await;
        // A comparison that failed early stops the readers: their next send fails.
        drop(received);
        compared
    };
    let (_, _, compared) = futures::join!(read_origin, read_target, compare);
    compared
}

#[allow(clippy::too_many_arguments)]
async fn validate_range(
    cfg: &DataConfig,
    opts: &ValidateOptions,
    diff_opts: DiffOptions,
    run: &Prepared,
    table: &Table,
    scans: RangeScans<'_>,
    limits: Limits,
    writer: &Writer,
    lookups: &autocorrect::Lookups,
    counter_rows: Option<&CounterRows>,
    range: TokenRange,
) -> anyhow::Result<TableValidation> {
    let compare = |selects, with_times| {
        compare_range(
            cfg,
            run,
            table,
            (selects, with_times),
            &limits,
            diff_opts,
            range,
        )
    };
    let end = match scans.values_only {
        Some(values_only) => {
            let first = compare(values_only, false).await?;
            if first.findings.is_empty() {
                first
            } else {
                compare(scans.with_times, true).await?
            }
        }
        None => compare(scans.with_times, true).await?,
    };
    let (compared, skipped_recent) = (end.compared, end.skipped_recent);
    let mut findings = end.findings;
    // Counter rows are judged and corrected by their difference (`counters`), not copied.
    let counted = match counter_rows {
        Some(c) => Some(settle_counter_findings(opts, run, table, c, &mut findings).await?),
        None => None,
    };
    let copy_corrections = counted.is_none();
    let corrected = autocorrect::correct(
        writer,
        &run.target,
        lookups,
        table,
        &findings,
        autocorrect::Corrections {
            missing: opts.autocorrect_missing && copy_corrections,
            mismatched: opts.autocorrect_mismatched && copy_corrections,
            extra: opts.autocorrect_extra && copy_corrections,
        },
        diff_opts.cutoff.unwrap_or_else(now_micros),
        cfg.write_concurrency,
    )
    .await?;

    let mut t = TableValidation {
        ranges_checked: 1,
        ..Default::default()
    };
    t.rows_compared += compared;
    t.skipped_recent += skipped_recent;
    t.corrected_missing += corrected.missing;
    t.corrected_mismatched += corrected.mismatched;
    if let Some(c) = counted {
        t.counter_table = true;
        t.counter_rows_in_flight += c.in_flight;
        t.corrected_missing += c.corrected_missing;
        t.corrected_mismatched += c.corrected_mismatched;
    }
    t.corrected_extra += corrected.extra;
    t.corrected_raised_writetime += corrected.raised_writetime;
    t.corrections_failed += corrected.failed;
    for f in &findings {
        match f {
            Finding::Missing(row) => {
                t.missing += 1;
                if t.missing_keys.len() < opts.max_examples {
                    t.missing_keys.push(key_map(table, row));
                }
            }
            Finding::Mismatched(o, tr, cols) => {
                t.mismatched += 1;
                if t.mismatched_rows.len() < opts.max_examples {
                    t.mismatched_rows.push(Mismatch {
                        key: key_map(table, o),
                        columns: column_diffs(table, o, tr, cols),
                        causes: super::diff::column_causes(table, o, tr, cols),
                    });
                }
            }
            Finding::Extra(row) => {
                t.extra += 1;
                if t.extra_keys.len() < opts.max_examples {
                    t.extra_keys.push(key_map(table, row));
                }
            }
        }
    }
    Ok(t)
}
