//! Writes origin's version of missing and mismatched rows to target.
//!
//! Missing rows are copied exactly like the backfill (origin's writetime and TTL). A mismatched
//! row is different: if target's differing cells carry a timestamp as new as origin's (a stray
//! write straight to target, say), a copy with origin's timestamp would silently lose, which is
//! how CDM's autocorrect can report success and change nothing. So the differing columns are
//! first deleted just above target's newest timestamp and then written one microsecond later;
//! when origin is already newer, origin's own timestamps are kept. Rows only on target are
//! deleted only when asked.

use anyhow::Context;
use scylla::client::session::Session;
use scylla::statement::prepared::PreparedStatement;

use super::copy::{row_writes, Statements, Write, WriteOptions, Writer};
use super::diff::Finding;
use super::engine::now_micros;
use super::scan::select_by_key_cql;
use super::schema::Table;
use super::value::{ScanRow, ScannedRow};

#[derive(Clone, Copy, Debug, Default)]
pub struct Corrected {
    /// Missing rows now present and equal on target.
    pub missing: u64,
    /// Mismatched rows now equal on target.
    pub mismatched: u64,
    pub extra: u64,
    /// Of the corrected rows, those that needed timestamps raised to the validation start.
    pub raised_writetime: u64,
    /// Corrections that did not take effect.
    pub failed: u64,
}

/// What to correct.
#[derive(Clone, Copy, Debug, Default)]
pub struct Corrections {
    pub missing: bool,
    pub mismatched: bool,
    /// Delete rows that exist only on target. Off unless asked: such rows may be legitimate
    /// writes that only reached target.
    pub extra: bool,
}

/// Deletes a target-only row with a timestamp equal to its newest cell (or `fallback` when it
/// has none), so a write made after the validation read it still wins.
pub fn extra_delete(table: &Table, row: &ScannedRow, fallback: i64) -> Write {
    let static_only = row.is_static_only(table);
    let n = if static_only {
        table.partition_key().count()
    } else {
        table.key_len()
    };
    let cond: Vec<String> = table
        .key_columns()
        .take(n)
        .map(|c| format!("{} = ?", c.quoted()))
        .collect();
    let ts = row.max_writetime().unwrap_or(fallback);
    let mut values = vec![Some(scylla::value::CqlValue::BigInt(ts))];
    values.extend(row.key[..n].iter().cloned());
    Write {
        cql: format!(
            "DELETE FROM {} USING TIMESTAMP ? WHERE {}",
            table.qualified(),
            cond.join(" AND ")
        )
        .into(),
        values,
    }
}

/// The writes that make target's row equal origin's for the differing `columns`.
pub fn mismatch_writes(
    stmts: &Statements,
    origin: &ScannedRow,
    target: &ScannedRow,
    columns: &[usize],
) -> Vec<Write> {
    let newest = |row: &ScannedRow| {
        columns
            .iter()
            .filter_map(|&i| row.cells[i].times.max_writetime())
            .max()
    };
    let oldest_origin = columns
        .iter()
        .filter_map(|&i| origin.cells[i].times.max_writetime())
        .min();
    let now = now_micros();
    let (min_ts, clear_at) = match (newest(target), oldest_origin) {
        // Target's stale cells are as new as origin's: raise the correction above them.
        (Some(t), None) => (Some(t + 1), t),
        (Some(t), Some(o)) if t >= o => (Some(t + 1), t),
        // Origin is strictly newer: keep its timestamps, clear just below them.
        (_, Some(o)) => (None, o - 1),
        (None, None) => (None, now),
    };
    let opts = WriteOptions {
        write_static: true,
        fallback_ts: now,
        min_ts,
        clear_at: Some(clear_at),
    };
    row_writes(stmts, origin, &opts, Some(columns), None)
}

/// Point lookups of one row on target, to check a correction took effect.
pub struct Lookups {
    /// `WHERE` every primary-key column.
    by_key: PreparedStatement,
    /// `WHERE` the partition key only, for static-only rows.
    by_partition: PreparedStatement,
}

impl Lookups {
    pub async fn prepare(target: &Session, table: &Table) -> anyhow::Result<Lookups> {
        let prep = |cql: String| async move {
            let mut p = target
                .prepare(cql.as_str())
                .await
                .with_context(|| format!("preparing on target: {cql}"))?;
            p.set_is_idempotent(true);
            anyhow::Ok(p)
        };
        Ok(Lookups {
            by_key: prep(select_by_key_cql(table, table.key_len())).await?,
            by_partition: prep(select_by_key_cql(table, table.partition_key().count())).await?,
        })
    }

    /// Target's version of `origin`'s row, read with the same column layout.
    async fn read(
        &self,
        target: &Session,
        table: &Table,
        origin: &ScannedRow,
    ) -> anyhow::Result<Option<ScannedRow>> {
        let static_only = origin.is_static_only(table);
        let (stmt, n) = if static_only {
            (&self.by_partition, table.partition_key().count())
        } else {
            (&self.by_key, table.key_len())
        };
        let result = target
            .execute_unpaged(stmt, &origin.key[..n])
            .await
            .context("reading a corrected row back from target")?
            .into_rows_result()?;
        let Some(row) = result.rows::<ScanRow>()?.next().transpose()? else {
            return Ok(None);
        };
        let mut row = ScannedRow::from_row(table, row.0, true)?;
        if static_only {
            row.key = origin.key.clone();
        }
        Ok(Some(row))
    }
}

/// Whether target's row now holds origin's values.
fn fixed(origin: &ScannedRow, target: &Option<ScannedRow>) -> bool {
    target.as_ref().is_some_and(|t| {
        origin
            .cells
            .iter()
            .zip(&t.cells)
            .all(|(o, t)| o.value == t.value)
    })
}

/// Applies the corrections the flags allow, checks each one by reading the row back, and
/// counts them.
///
/// A tombstone on target is invisible to a read, yet it shadows any write with an older
/// timestamp: a row deleted on target after it was copied cannot be restored with origin's
/// writetime. So a correction that did not take effect is written a second time with every
/// timestamp raised to `cutoff` (the start of the validation): above such stale deletes, but
/// still below any live write or delete made after the validation began.
#[allow(clippy::too_many_arguments)]
pub async fn correct(
    writer: &Writer,
    target: &Session,
    lookups: &Lookups,
    table: &Table,
    findings: &[Finding],
    what: Corrections,
    cutoff: i64,
    concurrency: usize,
) -> anyhow::Result<Corrected> {
    let stmts = Statements::new(table);
    let mut writes = Vec::new();
    let mut to_check: Vec<(&ScannedRow, bool)> = Vec::new();
    let mut counts = Corrected::default();
    for f in findings {
        match f {
            Finding::Missing(row) if what.missing => {
                writes.extend(row_writes(
                    &stmts,
                    row,
                    &WriteOptions::backfill(cutoff),
                    None,
                    Some(None),
                ));
                to_check.push((row, true));
            }
            Finding::Mismatched(o, t, cols) if what.mismatched => {
                writes.extend(mismatch_writes(&stmts, o, t, cols));
                to_check.push((o, false));
            }
            Finding::Extra(row) if what.extra => {
                counts.extra += 1;
                writes.push(extra_delete(table, row, cutoff));
            }
            _ => {}
        }
    }
    writer.apply_all(writes, concurrency).await?;

    let mut second = Vec::new();
    let mut recheck = Vec::new();
    for (row, missing) in to_check {
        if fixed(row, &lookups.read(target, table, row).await?) {
            if missing {
                counts.missing += 1;
            } else {
                counts.mismatched += 1;
            }
        } else {
            let columns: Vec<usize> = (0..row.cells.len()).collect();
            let opts = WriteOptions {
                write_static: true,
                fallback_ts: cutoff,
                min_ts: Some(cutoff),
                clear_at: if missing { None } else { Some(cutoff - 1) },
            };
            second.extend(row_writes(
                &stmts,
                row,
                &opts,
                if missing { None } else { Some(&columns) },
                None,
            ));
            recheck.push((row, missing));
        }
    }
    writer.apply_all(second, concurrency).await?;
    for (row, missing) in recheck {
        if fixed(row, &lookups.read(target, table, row).await?) {
            counts.raised_writetime += 1;
            if missing {
                counts.missing += 1;
            } else {
                counts.mismatched += 1;
            }
        } else {
            counts.failed += 1;
            tracing::warn!(
                "{}: a corrected row still differs on target (a newer write or delete there?)",
                table.display_name()
            );
        }
    }
    Ok(counts)
}
