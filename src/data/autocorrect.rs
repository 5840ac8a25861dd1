//! Writes origin's version of missing and mismatched rows to target.
//!
//! Missing rows are copied exactly like the backfill (origin's writetime and TTL). A mismatched
//! row is different: if target's differing cells carry a timestamp as new as origin's (a stray
//! write straight to target, say), a copy with origin's timestamp would silently lose, which is
//! how CDM's autocorrect can report success and change nothing. So the differing columns are
//! first deleted just above target's newest timestamp and then written one microsecond later;
//! when origin is already newer, origin's own timestamps are kept. Rows only on target are
//! deleted only when asked.

use futures::{StreamExt, TryStreamExt};

use super::copy::{row_writes, Write, WriteOptions, Writer};
use super::diff::Finding;
use super::engine::now_micros;
use super::schema::Table;
use super::value::ScannedRow;

#[derive(Clone, Copy, Debug, Default)]
pub struct Corrected {
    pub missing: u64,
    pub mismatched: u64,
    pub extra: u64,
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
        ),
        values,
    }
}

/// The writes that make target's row equal origin's for the differing `columns`.
pub fn mismatch_writes(
    table: &Table,
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
    row_writes(table, origin, &opts, Some(columns))
}

/// Applies the corrections the flags allow and counts them.
pub async fn correct(
    writer: &Writer,
    table: &Table,
    findings: &[Finding],
    what: Corrections,
    fallback_ts: i64,
    concurrency: usize,
) -> anyhow::Result<Corrected> {
    let mut writes = Vec::new();
    let mut counts = Corrected::default();
    for f in findings {
        match f {
            Finding::Missing(row) if what.missing => {
                counts.missing += 1;
                writes.extend(row_writes(
                    table,
                    row,
                    &WriteOptions::backfill(now_micros()),
                    None,
                ));
            }
            Finding::Mismatched(o, t, cols) if what.mismatched => {
                counts.mismatched += 1;
                writes.extend(mismatch_writes(table, o, t, cols));
            }
            Finding::Extra(row) if what.extra => {
                counts.extra += 1;
                writes.push(extra_delete(table, row, fallback_ts));
            }
            _ => {}
        }
    }
    futures::stream::iter(writes.iter().map(|w| writer.apply(w)))
        .buffer_unordered(concurrency.max(1))
        .try_collect::<Vec<()>>()
        .await?;
    Ok(counts)
}
