//! Counter tables: copied and corrected by adding the difference, as CDM does.
//!
//! A counter cell cannot be written with a value or a timestamp, only incremented, so origin's
//! cells cannot be copied like other cells. Instead target's counter is raised (or lowered) by
//! `origin - target`, read per row. Re-running that is harmless: the difference of a row
//! already equal is zero, so a resumed or repeated backfill never adds twice.
//!
//! The race: from phase 1 on the proxies add every increment to both clusters, a few
//! milliseconds apart, so a read between the two sees a difference that is gone a moment
//! later. A difference is therefore acted on (and, in validation, reported) only when it is
//! the same at two readings [`SETTLE`] apart, each of them quiet (each side read twice and
//! unchanged in between: no increment landing while the row was read). A single re-read is
//! not enough for a hot counter: an increment every 100 ms is caught half-applied by a
//! fair share of reads, and two such readings can agree by chance. The race we accept: an increment that takes longer
//! than that to reach one of the clusters (a client retry, a write timing out on one) while
//! the row is read makes the correction off by that increment. Such an update is counted by the
//! proxies (`counter_failed_on_one`, which fails phase 1's gate), and the consistency gate
//! re-reads every counter row, so the row shows up as mismatched and the next
//! `phase2.yml -e zdm_autocorrect=true` adds what is left.
//!
//! Counter writes are never retried here: an increment whose outcome is unknown could apply
//! twice. The next read decides instead.
//!
//! Rows that exist on target only are left alone (deleting a counter is final in Cassandra: a
//! deleted counter cannot be incremented again reliably).

use std::time::Duration;

use anyhow::Context;
use futures::StreamExt;
use scylla::client::session::Session;
use scylla::statement::prepared::PreparedStatement;
use scylla::value::{Counter, CqlValue};

use super::scan::select_by_key_cql;
use super::schema::Table;
use super::value::{ScanRow, ScannedRow};

/// How long a difference must hold before it is believed: far longer than the proxies take to
/// apply one increment on both clusters, short enough for a range's few candidates.
pub const SETTLE: Duration = Duration::from_millis(250);

/// Settle-and-read rounds per row before a difference is left for the report: two quiet
/// readings that agree, the correction, its check, and one round of slack.
const ROUNDS: usize = 4;

/// Rows looked at concurrently.
const CONCURRENCY: usize = 16;

/// A value column's counter, null read as 0 (an absent counter and a zero one are the same to
/// an application).
fn count(row: Option<&ScannedRow>, i: usize) -> i64 {
    match row
        .and_then(|r| r.cells.get(i))
        .and_then(|c| c.value.as_ref())
    {
        Some(CqlValue::Counter(Counter(n))) => *n,
        Some(CqlValue::BigInt(n)) => *n,
        _ => 0,
    }
}

/// `origin - target` for each value column of a counter table.
pub fn difference(
    table: &Table,
    origin: Option<&ScannedRow>,
    target: Option<&ScannedRow>,
) -> Vec<i64> {
    (0..table.value_columns().count())
        .map(|i| count(origin, i).wrapping_sub(count(target, i)))
        .collect()
}

fn is_zero(d: &[i64]) -> bool {
    d.iter().all(|&x| x == 0)
}

/// A row that differed at the first read, with what the latest reads found.
#[derive(Clone, Debug)]
pub struct Candidate {
    pub key: Vec<Option<CqlValue>>,
    pub origin: Option<ScannedRow>,
    pub target: Option<ScannedRow>,
}

/// A candidate between reads.
struct Watched {
    candidate: Candidate,
    /// Its difference at the previous read (what a stable difference must equal).
    before: Vec<i64>,
    /// Whether that read was quiet ([`CounterRows::read_both`]).
    quiet_before: bool,
    /// Whether we added a difference to it.
    wrote: bool,
}

/// What became of the candidates.
#[derive(Debug, Default)]
pub struct Reconciled {
    /// Equal at a later read without any write of ours: increments that were in flight.
    pub settled: u64,
    /// Made equal by adding the difference (checked by reading both rows again).
    pub corrected: Vec<Candidate>,
    /// Still apart after every round, with the last rows read.
    pub apart: Vec<Candidate>,
    /// Increments written.
    pub writes: u64,
}

async fn prepare_read(s: &Session, cluster: &str, cql: &str) -> anyhow::Result<PreparedStatement> {
    let mut p = s
        .prepare(cql)
        .await
        .with_context(|| format!("preparing on {cluster}: {cql}"))?;
    p.set_is_idempotent(true);
    Ok(p)
}

/// Point reads of one row on both clusters and the increment statement.
pub struct CounterRows {
    origin_by_key: PreparedStatement,
    target_by_key: PreparedStatement,
    /// `UPDATE t SET c1 = c1 + ?, ... WHERE key = ? ...`, every counter column.
    increment: PreparedStatement,
}

impl CounterRows {
    pub async fn prepare(
        origin: &Session,
        target: &Session,
        table: &Table,
    ) -> anyhow::Result<Self> {
        let by_key = select_by_key_cql(table, table.key_len());
        let sets: Vec<String> = table
            .value_columns()
            .map(|c| format!("{0} = {0} + ?", c.quoted()))
            .collect();
        let cond: Vec<String> = table
            .key_columns()
            .map(|c| format!("{} = ?", c.quoted()))
            .collect();
        let cql = format!(
            "UPDATE {} SET {} WHERE {}",
            table.qualified(),
            sets.join(", "),
            cond.join(" AND ")
        );
        let mut increment = target
            .prepare(cql.as_str())
            .await
            .with_context(|| format!("preparing on target: {cql}"))?;
        // Not idempotent: the driver must not repeat an increment on its own.
        increment.set_is_idempotent(false);
        Ok(CounterRows {
            origin_by_key: prepare_read(origin, "origin", &by_key).await?,
            target_by_key: prepare_read(target, "target", &by_key).await?,
            increment,
        })
    }

    async fn read(
        session: &Session,
        stmt: &PreparedStatement,
        table: &Table,
        key: &[Option<CqlValue>],
    ) -> anyhow::Result<Option<ScannedRow>> {
        let result = session
            .execute_unpaged(stmt, key)
            .await
            .with_context(|| format!("reading a row of counter table {}", table.display_name()))?
            .into_rows_result()?;
        match result.rows::<ScanRow>()?.next().transpose()? {
            Some(row) => Ok(Some(ScannedRow::from_row(table, row.0, true)?)),
            None => Ok(None),
        }
    }

    /// Both sides of one row, read twice in a row (origin, target, origin, target); true when
    /// neither side changed between its two reads (a quiet reading: no increment was landing
    /// while the row was read, so the difference is not one caught half-applied).
    async fn read_both(
        &self,
        origin: &Session,
        target: &Session,
        table: &Table,
        c: &mut Candidate,
    ) -> anyhow::Result<bool> {
        let o1 = Self::read(origin, &self.origin_by_key, table, &c.key).await?;
        let t1 = Self::read(target, &self.target_by_key, table, &c.key).await?;
        c.origin = Self::read(origin, &self.origin_by_key, table, &c.key).await?;
        c.target = Self::read(target, &self.target_by_key, table, &c.key).await?;
        let quiet = is_zero(&difference(table, o1.as_ref(), c.origin.as_ref()))
            && is_zero(&difference(table, t1.as_ref(), c.target.as_ref()));
        Ok(quiet)
    }

    /// Re-reads each candidate after [`SETTLE`]; a difference the same as at the read before
    /// is added to target when `correct` (and when origin has the row at all), then read again.
    pub async fn reconcile(
        &self,
        origin: &Session,
        target: &Session,
        table: &Table,
        candidates: Vec<Candidate>,
        correct: bool,
    ) -> anyhow::Result<Reconciled> {
        let mut out = Reconciled::default();
        let mut pending: Vec<Watched> = candidates
            .into_iter()
            .map(|c| Watched {
                before: difference(table, c.origin.as_ref(), c.target.as_ref()),
                candidate: c,
                // A range scan is no quiet reading: a difference needs two of its own.
                quiet_before: false,
                wrote: false,
            })
            .collect();
        for _ in 0..ROUNDS {
            if pending.is_empty() {
                break;
            }
            tokio::time::sleep(SETTLE).await;
            let results: Vec<anyhow::Result<(Watched, bool)>> =
                futures::stream::iter(pending.into_iter().map(|mut w| async move {
                    let quiet = self
                        .read_both(origin, target, table, &mut w.candidate)
                        .await?;
                    let c = &w.candidate;
                    let now = difference(table, c.origin.as_ref(), c.target.as_ref());
                    let stable = quiet && w.quiet_before && now == w.before;
                    w.before = now;
                    w.quiet_before = quiet;
                    let write = correct && !is_zero(&w.before) && stable && c.origin.is_some();
                    if write {
                        self.add(target, &c.key, &w.before).await?;
                        w.wrote = true;
                    }
                    Ok((w, write))
                }))
                .buffer_unordered(CONCURRENCY)
                .collect()
                .await;
            pending = Vec::new();
            for r in results {
                let (mut w, wrote_now) = r?;
                if wrote_now {
                    out.writes += 1;
                    // Judged at the next read, which should find no difference.
                    w.before = vec![0; w.before.len()];
                    w.quiet_before = false;
                    pending.push(w);
                } else if is_zero(&w.before) {
                    if w.wrote {
                        out.corrected.push(w.candidate);
                    } else {
                        out.settled += 1;
                    }
                } else {
                    pending.push(w);
                }
            }
        }
        if !pending.is_empty() {
            // The last round's writes still need their read.
            tokio::time::sleep(SETTLE).await;
            for Watched {
                mut candidate,
                wrote,
                ..
            } in pending
            {
                self.read_both(origin, target, table, &mut candidate)
                    .await?;
                let c = &candidate;
                let now = difference(table, c.origin.as_ref(), c.target.as_ref());
                match (is_zero(&now), wrote) {
                    (true, true) => out.corrected.push(candidate),
                    (true, false) => out.settled += 1,
                    (false, _) => out.apart.push(candidate),
                }
            }
        }
        Ok(out)
    }

    /// One increment of every counter column by `delta`, sent once.
    async fn add(
        &self,
        target: &Session,
        key: &[Option<CqlValue>],
        delta: &[i64],
    ) -> anyhow::Result<()> {
        let mut values: Vec<Option<CqlValue>> = delta
            .iter()
            .map(|&d| Some(CqlValue::Counter(Counter(d))))
            .collect();
        values.extend(key.iter().cloned());
        target
            .execute_unpaged(&self.increment, &values)
            .await
            .context("adding the counter difference on target")?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::diff::tests::table_of;
    use crate::data::schema::Role;
    use crate::data::value::{Cell, Times};

    fn table() -> Table {
        table_of(
            "hits",
            &[
                ("k", "int", Role::PartitionKey),
                ("a", "counter", Role::Regular),
                ("b", "counter", Role::Regular),
            ],
        )
    }

    fn row(a: Option<i64>, b: Option<i64>) -> ScannedRow {
        let cell = |v: Option<i64>| Cell {
            value: v.map(|n| CqlValue::Counter(Counter(n))),
            times: Times::None,
        };
        ScannedRow {
            key: vec![Some(CqlValue::Int(1))],
            cells: vec![cell(a), cell(b)],
        }
    }

    #[test]
    fn the_difference_reads_absent_rows_and_null_counters_as_zero() {
        let t = table();
        let origin = row(Some(7), None);
        assert_eq!(difference(&t, Some(&origin), None), vec![7, 0]);
        assert_eq!(
            difference(&t, Some(&origin), Some(&row(Some(9), Some(2)))),
            vec![-2, -2]
        );
        assert!(is_zero(&difference(
            &t,
            Some(&row(Some(0), None)),
            Some(&row(None, Some(0)))
        )));
        assert_eq!(difference(&t, None, Some(&row(Some(3), None))), vec![-3, 0]);
    }
}
