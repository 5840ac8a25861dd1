//! Turns one origin row into the target writes that recreate it with every cell's own writetime
//! and remaining TTL.
//!
//! Cells are grouped by (writetime, TTL) and each group becomes one statement, so a row whose
//! columns were written at different times keeps all of them (better than CDM's single
//! max-writetime per row, which can make an old column look newer than a live update it races
//! with). Because every write carries origin's timestamp, a dual write made through the proxy
//! after the row was read always has a newer timestamp and wins. Null cells are never written,
//! so the copy creates no tombstones.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock};

use anyhow::Context;
use futures::{StreamExt, TryStreamExt};
use scylla::client::session::Session;
use scylla::statement::batch::{Batch, BatchType};
use scylla::statement::prepared::PreparedStatement;
use scylla::value::CqlValue;

use super::driver_errors::batch_refused_as_a_whole;
use super::scan::RetryPolicy;
use super::schema::{CellKind, Column, Role, Table};
use super::value::{elements, CellTime, ScannedRow, Times};

/// One statement to run on target, with its bound values (timestamp and TTL last).
#[derive(Clone, Debug, PartialEq)]
pub struct Write {
    pub cql: String,
    pub values: Vec<Option<CqlValue>>,
}

/// How to write a row.
#[derive(Clone, Copy, Debug)]
pub struct WriteOptions {
    /// Also write the partition's static cells (only needed once per partition).
    pub write_static: bool,
    /// Timestamp for cells whose writetime is unknown (a row that has only its primary key):
    /// the time the row was read, so a delete made after the read still wins.
    pub fallback_ts: i64,
    /// Autocorrect only: every timestamp is raised to at least this, so the correction wins over
    /// a stale target cell that carries a newer timestamp.
    pub min_ts: Option<i64>,
    /// Autocorrect only: first delete the copied columns on target at this timestamp, so
    /// stale collection elements or values origin no longer has are removed.
    pub clear_at: Option<i64>,
}

impl WriteOptions {
    pub fn backfill(fallback_ts: i64) -> Self {
        WriteOptions {
            write_static: true,
            fallback_ts,
            min_ts: None,
            clear_at: None,
        }
    }

    fn ts(&self, time: Option<i64>) -> i64 {
        let ts = time.unwrap_or(self.fallback_ts);
        match self.min_ts {
            Some(min) => ts.max(min),
            None => ts,
        }
    }
}

fn using(ts: i64, ttl: Option<i32>) -> [Option<CqlValue>; 2] {
    [
        Some(CqlValue::BigInt(ts)),
        Some(CqlValue::Int(ttl.unwrap_or(0).max(0))),
    ]
}

/// The writes for one row. `columns` restricts the copy to those value columns (by index in
/// [`Table::value_columns`]); `None` copies all.
///
/// `on_target` is what target holds for this row, when it was read (tables with non-frozen
/// lists, see [`needs_target_read`]): `Some(None)` means the row is absent there.
pub fn row_writes(
    table: &Table,
    row: &ScannedRow,
    opts: &WriteOptions,
    columns: Option<&[usize]>,
    on_target: Option<Option<&ScannedRow>>,
) -> Vec<Write> {
    let pk_len = table.partition_key().count();
    let static_only = row.is_static_only(table);
    let key_cols: Vec<&Column> = table.key_columns().collect();
    let value_cols: Vec<&Column> = table.value_columns().collect();
    let qualified = table.qualified();

    let mut writes = Vec::new();
    // Single-cell values grouped by (is_static, time) -> [(column, value)].
    let mut groups: BTreeMap<(bool, CellTime), Vec<(usize, CqlValue)>> = BTreeMap::new();
    let mut min_wt: Option<i64> = None;
    let mut regular_written = false;

    let where_clause = |is_static: bool| -> (String, Vec<Option<CqlValue>>) {
        let n = if is_static { pk_len } else { key_cols.len() };
        let cond: Vec<String> = key_cols[..n]
            .iter()
            .map(|c| format!("{} = ?", c.quoted()))
            .collect();
        (cond.join(" AND "), row.key[..n].to_vec())
    };

    for (i, col) in value_cols.iter().enumerate() {
        if columns.is_some_and(|only| !only.contains(&i)) {
            continue;
        }
        let is_static = col.role == Role::Static;
        if is_static && !opts.write_static {
            continue;
        }
        if !is_static && static_only {
            continue;
        }
        let cell = &row.cells[i];
        if let Some(ts) = opts.clear_at {
            let (cond, mut values) = where_clause(is_static);
            let mut v = vec![Some(CqlValue::BigInt(ts))];
            v.append(&mut values);
            writes.push(Write {
                cql: format!(
                    "DELETE {} FROM {qualified} USING TIMESTAMP ? WHERE {cond}",
                    col.quoted()
                ),
                values: v,
            });
        }
        let Some(value) = &cell.value else { continue };
        if let Some(w) = cell.times.max_writetime() {
            min_wt = Some(min_wt.map_or(w, |m: i64| m.min(w)));
        }
        if !is_static {
            regular_written = true;
        }
        match (col.kind, &cell.times) {
            (CellKind::ElementWise, Times::PerElement(times)) => {
                // One `c = c + ?` per (writetime, TTL) group of elements: idempotent, no
                // tombstone, every element keeps its own time.
                let mut by_time: BTreeMap<CellTime, Vec<CqlValue>> = BTreeMap::new();
                for (j, part) in elements(value).into_iter().enumerate() {
                    let t = times.get(j).copied().unwrap_or(CellTime {
                        writetime: None,
                        ttl: None,
                    });
                    by_time.entry(t).or_default().push(part);
                }
                for (t, parts) in by_time {
                    let (cond, keys) = where_clause(is_static);
                    let mut values = using(opts.ts(t.writetime), t.ttl).to_vec();
                    values.push(super::value::join_elements(&parts));
                    values.extend(keys);
                    writes.push(Write {
                        cql: format!(
                            "UPDATE {qualified} USING TIMESTAMP ? AND TTL ? SET {c} = {c} + ? WHERE {cond}",
                            c = col.quoted()
                        ),
                        values,
                    });
                }
            }
            (CellKind::ElementWise | CellKind::WholeList | CellKind::WholeUdt, times) => {
                // Whole-value write with the newest element's time (CDM's rule): list appends are
                // not idempotent and UDT fields share one value.
                let t = times.newest().unwrap_or(CellTime {
                    writetime: None,
                    ttl: None,
                });
                let (cond, keys) = where_clause(is_static);
                let mut ts = opts.ts(t.writetime);
                if col.kind == CellKind::WholeList && opts.clear_at.is_none() {
                    match list_action(on_target.map(|r| r.map(|r| &r.cells[i])), value, ts) {
                        ListAction::Skip => continue,
                        ListAction::Write => {}
                        ListAction::ClearThenWriteLater => {
                            let mut v = vec![Some(CqlValue::BigInt(ts))];
                            v.extend(keys.iter().cloned());
                            writes.push(Write {
                                cql: format!(
                                    "DELETE {} FROM {qualified} USING TIMESTAMP ? WHERE {cond}",
                                    col.quoted()
                                ),
                                values: v,
                            });
                            ts += 1;
                        }
                    }
                }
                let mut values = using(ts, t.ttl).to_vec();
                values.push(Some(value.clone()));
                values.extend(keys);
                writes.push(Write {
                    cql: format!(
                        "UPDATE {qualified} USING TIMESTAMP ? AND TTL ? SET {} = ? WHERE {cond}",
                        col.quoted()
                    ),
                    values,
                });
            }
            (_, times) => {
                let t = times.newest().unwrap_or(CellTime {
                    writetime: None,
                    ttl: None,
                });
                groups
                    .entry((is_static, t))
                    .or_default()
                    .push((i, value.clone()));
            }
        }
    }

    let mut inserts = Vec::new();
    let mut have_regular_insert = false;
    for ((is_static, t), cells) in groups {
        let n = if is_static { pk_len } else { key_cols.len() };
        have_regular_insert |= !is_static;
        let mut names: Vec<String> = key_cols[..n].iter().map(|c| c.quoted()).collect();
        let mut values: Vec<Option<CqlValue>> = row.key[..n].to_vec();
        for (i, v) in cells {
            names.push(value_cols[i].quoted());
            values.push(Some(v));
        }
        values.extend(using(opts.ts(t.writetime), t.ttl));
        inserts.push(Write {
            cql: insert_cql(&qualified, &names),
            values,
        });
    }

    // A clustering row (or a partition without clustering) must exist on target even when it has
    // no single-cell values: its primary key alone makes it visible to SELECT.
    if !static_only && !have_regular_insert && columns.is_none() {
        let names: Vec<String> = key_cols.iter().map(|c| c.quoted()).collect();
        let mut values: Vec<Option<CqlValue>> = row.key.clone();
        let ts = if regular_written { min_wt } else { None };
        values.extend(using(opts.ts(ts), None));
        inserts.push(Write {
            cql: insert_cql(&qualified, &names),
            values,
        });
    }
    // Inserts first: they create the row, the collection updates then add to it.
    inserts.extend(writes);
    inserts
}

/// Whether copying this table needs target's rows of each range first: a non-frozen list is not
/// idempotent to write (see `list_action`).
pub fn needs_target_read(table: &Table) -> bool {
    table.value_columns().any(|c| c.kind == CellKind::WholeList)
}

#[derive(Debug, PartialEq)]
enum ListAction {
    Skip,
    Write,
    ClearThenWriteLater,
}

/// How to copy a non-frozen list written at `ts` given what target holds.
///
/// Writing a list replaces only cells *older* than the write, and every write gets fresh cell
/// paths, so writing the same list twice at the same timestamp (a re-copy of an interrupted
/// range, or a list a dual write put on target with the same timestamp) keeps both copies of
/// every element. Hence: equal on target, or newer there: leave it; older there: a plain
/// write replaces it; same timestamp but different content: clear at that timestamp and write
/// one microsecond later.
fn list_action(
    target: Option<Option<&super::value::Cell>>,
    value: &CqlValue,
    ts: i64,
) -> ListAction {
    let Some(Some(cell)) = target else {
        return ListAction::Write;
    };
    if cell.value.as_ref() == Some(value) {
        return ListAction::Skip;
    }
    match cell.times.max_writetime() {
        Some(w) if w > ts => ListAction::Skip,
        Some(w) if w == ts => ListAction::ClearThenWriteLater,
        _ => ListAction::Write,
    }
}

fn insert_cql(qualified: &str, names: &[String]) -> String {
    let marks = vec!["?"; names.len()].join(", ");
    format!(
        "INSERT INTO {qualified} ({}) VALUES ({marks}) USING TIMESTAMP ? AND TTL ?",
        names.join(", ")
    )
}

/// Prepares each distinct statement once and runs writes with retries.
#[derive(Clone)]
pub struct Writer {
    session: Arc<Session>,
    cache: Arc<RwLock<HashMap<String, PreparedStatement>>>,
    retry: RetryPolicy,
}

impl Writer {
    pub fn new(session: Arc<Session>, retry: RetryPolicy) -> Writer {
        Writer {
            session,
            cache: Arc::new(RwLock::new(HashMap::new())),
            retry,
        }
    }

    async fn prepared(&self, cql: &str) -> anyhow::Result<PreparedStatement> {
        // A plain lock, never held across an await: every statement of every batch looks its
        // prepared form up here, and an async lock costs more than the lookup itself.
        if let Some(p) = self.cache.read().expect("statement cache lock").get(cql) {
            return Ok(p.clone());
        }
        let mut p = self
            .session
            .prepare(cql)
            .await
            .with_context(|| format!("preparing on target: {cql}"))?;
        // Every write carries an explicit timestamp, so repeating it is harmless.
        p.set_is_idempotent(true);
        self.cache
            .write()
            .expect("statement cache lock")
            .insert(cql.to_string(), p.clone());
        Ok(p)
    }

    /// Runs writes, `concurrency` at a time; the first error stops the batch.
    ///
    /// Takes the writes by value so the futures own them: borrowed closures here make the
    /// future fail `Send` checks when a caller spawns the engine.
    pub async fn apply_all(&self, writes: Vec<Write>, concurrency: usize) -> anyhow::Result<()> {
        futures::stream::iter(writes.into_iter().map(|w| {
            let writer = self.clone();
            async move { writer.apply(&w).await }
        }))
        .buffer_unordered(concurrency.max(1))
        .try_collect::<Vec<()>>()
        .await?;
        Ok(())
    }

    /// Runs groups of writes, each group as one unlogged batch, `concurrency` groups at a time.
    ///
    /// Callers group the writes of one partition: a single-partition unlogged batch is applied
    /// by one replica set as one mutation, which is several times cheaper for Cassandra than the
    /// same statements sent one by one (and unlike a multi-partition batch puts no extra load
    /// on the coordinator).
    pub async fn apply_groups(
        &self,
        groups: Vec<Vec<Write>>,
        concurrency: usize,
    ) -> anyhow::Result<()> {
        futures::stream::iter(groups.into_iter().map(|g| {
            let writer = self.clone();
            async move {
                if g.len() == 1 {
                    writer.apply(&g[0]).await
                } else {
                    writer.apply_batch(&g).await
                }
            }
        }))
        .buffer_unordered(concurrency.max(1))
        .try_collect::<Vec<()>>()
        .await?;
        Ok(())
    }

    /// Runs writes as one unlogged batch, retrying with backoff.
    pub async fn apply_batch(&self, writes: &[Write]) -> anyhow::Result<()> {
        let mut batch = Batch::new(BatchType::Unlogged);
        for w in writes {
            batch.append_statement(self.prepared(&w.cql).await?);
        }
        // Every statement carries an explicit timestamp, so repeating the batch is harmless.
        batch.set_is_idempotent(true);
        let values: Vec<&Vec<Option<CqlValue>>> = writes.iter().map(|w| &w.values).collect();
        let mut attempt = 0;
        loop {
            match self.session.batch(&batch, &values).await {
                Ok(_) => return Ok(()),
                Err(err) if batch_refused_as_a_whole(&err) => {
                    // Wide rows can exceed batch_size_fail_threshold: write them one by one.
                    for w in writes {
                        self.apply(w).await?;
                    }
                    return Ok(());
                }
                Err(err) => {
                    attempt += 1;
                    if attempt > self.retry.attempts {
                        return Err(anyhow::Error::new(err).context(format!(
                            "writing a batch of {} statements to target (first: {})",
                            writes.len(),
                            writes[0].cql
                        )));
                    }
                    tokio::time::sleep(self.retry.delay(attempt)).await;
                }
            }
        }
    }

    /// Runs one write, retrying with backoff.
    pub async fn apply(&self, write: &Write) -> anyhow::Result<()> {
        let prepared = self.prepared(&write.cql).await?;
        let mut attempt = 0;
        loop {
            match self.session.execute_unpaged(&prepared, &write.values).await {
                Ok(_) => return Ok(()),
                Err(err) => {
                    attempt += 1;
                    if attempt > self.retry.attempts {
                        return Err(anyhow::Error::new(err)
                            .context(format!("writing to target: {}", write.cql)));
                    }
                    tokio::time::sleep(self.retry.delay(attempt)).await;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::schema::classify;
    use crate::data::value::Cell;
    use std::collections::BTreeSet;

    fn col(name: &str, t: &str, role: Role, position: i32) -> Column {
        let udts: BTreeSet<String> = BTreeSet::new();
        Column {
            name: name.into(),
            cql_type: t.into(),
            role,
            kind: classify(t, &udts),
            position,
        }
    }

    fn table() -> Table {
        Table {
            keyspace: "ks".into(),
            name: "t".into(),
            columns: vec![
                col("pk", "int", Role::PartitionKey, 0),
                col("ck", "int", Role::Clustering, 0),
                col("s", "text", Role::Static, -1),
                col("a", "text", Role::Regular, -1),
                col("b", "int", Role::Regular, -1),
                col("tags", "set<text>", Role::Regular, -1),
            ],
        }
    }

    fn one(wt: i64, ttl: Option<i32>) -> Times {
        Times::One(CellTime {
            writetime: Some(wt),
            ttl,
        })
    }

    #[test]
    fn groups_cells_by_time_and_skips_nulls() {
        let t = table();
        let row = ScannedRow {
            key: vec![Some(CqlValue::Int(1)), Some(CqlValue::Int(2))],
            cells: vec![
                Cell {
                    value: Some(CqlValue::Text("st".into())),
                    times: one(10, None),
                },
                Cell {
                    value: Some(CqlValue::Text("x".into())),
                    times: one(20, Some(100)),
                },
                Cell {
                    value: None,
                    times: Times::One(CellTime {
                        writetime: None,
                        ttl: None,
                    }),
                },
                Cell {
                    value: Some(CqlValue::Set(vec![
                        CqlValue::Text("p".into()),
                        CqlValue::Text("q".into()),
                    ])),
                    times: Times::PerElement(vec![
                        CellTime {
                            writetime: Some(30),
                            ttl: None,
                        },
                        CellTime {
                            writetime: Some(40),
                            ttl: None,
                        },
                    ]),
                },
            ],
        };
        let w = row_writes(&t, &row, &WriteOptions::backfill(999), None, None);
        let cqls: Vec<&str> = w.iter().map(|w| w.cql.as_str()).collect();
        assert_eq!(
            cqls,
            vec![
                "INSERT INTO \"ks\".\"t\" (\"pk\", \"ck\", \"a\") VALUES (?, ?, ?) USING TIMESTAMP ? AND TTL ?",
                "INSERT INTO \"ks\".\"t\" (\"pk\", \"s\") VALUES (?, ?) USING TIMESTAMP ? AND TTL ?",
                "UPDATE \"ks\".\"t\" USING TIMESTAMP ? AND TTL ? SET \"tags\" = \"tags\" + ? WHERE \"pk\" = ? AND \"ck\" = ?",
                "UPDATE \"ks\".\"t\" USING TIMESTAMP ? AND TTL ? SET \"tags\" = \"tags\" + ? WHERE \"pk\" = ? AND \"ck\" = ?",
            ]
        );
        // Column b is null: never written.
        assert!(w.iter().all(|w| !w.cql.contains("\"b\"")));
        assert_eq!(
            w[0].values[3..],
            [Some(CqlValue::BigInt(20)), Some(CqlValue::Int(100))]
        );
        assert_eq!(w[2].values[0], Some(CqlValue::BigInt(30)));
        assert_eq!(w[3].values[0], Some(CqlValue::BigInt(40)));
    }

    #[test]
    fn static_only_row_writes_only_statics_and_key_only_row_gets_marker() {
        let t = table();
        let nulls = |n| {
            (0..n)
                .map(|_| Cell {
                    value: None,
                    times: Times::One(CellTime {
                        writetime: None,
                        ttl: None,
                    }),
                })
                .collect::<Vec<_>>()
        };
        let mut cells = nulls(4);
        cells[0] = Cell {
            value: Some(CqlValue::Text("st".into())),
            times: one(5, None),
        };
        let row = ScannedRow {
            key: vec![Some(CqlValue::Int(1)), None],
            cells,
        };
        let w = row_writes(&t, &row, &WriteOptions::backfill(999), None, None);
        assert_eq!(w.len(), 1);
        assert!(w[0].cql.contains("(\"pk\", \"s\")"), "{}", w[0].cql);

        let row = ScannedRow {
            key: vec![Some(CqlValue::Int(1)), Some(CqlValue::Int(3))],
            cells: nulls(4),
        };
        let w = row_writes(&t, &row, &WriteOptions::backfill(999), None, None);
        assert_eq!(w.len(), 1);
        assert!(w[0].cql.contains("(\"pk\", \"ck\") VALUES"));
        assert_eq!(w[0].values[2], Some(CqlValue::BigInt(999)));
    }

    #[test]
    fn lists_are_only_rewritten_when_target_differs() {
        let list = CqlValue::List(vec![CqlValue::Int(1)]);
        let cell = |v: Option<CqlValue>, wt: i64| Cell {
            value: v,
            times: Times::PerElement(vec![CellTime {
                writetime: Some(wt),
                ttl: None,
            }]),
        };
        assert_eq!(list_action(None, &list, 10), ListAction::Write);
        assert_eq!(list_action(Some(None), &list, 10), ListAction::Write);
        let same = cell(Some(list.clone()), 10);
        assert_eq!(list_action(Some(Some(&same)), &list, 10), ListAction::Skip);
        let dup = cell(
            Some(CqlValue::List(vec![CqlValue::Int(1), CqlValue::Int(1)])),
            10,
        );
        assert_eq!(
            list_action(Some(Some(&dup)), &list, 10),
            ListAction::ClearThenWriteLater
        );
        let newer = cell(Some(CqlValue::List(vec![CqlValue::Int(2)])), 11);
        assert_eq!(list_action(Some(Some(&newer)), &list, 10), ListAction::Skip);
        let older = cell(Some(CqlValue::List(vec![CqlValue::Int(2)])), 9);
        assert_eq!(
            list_action(Some(Some(&older)), &list, 10),
            ListAction::Write
        );
    }

    #[test]
    fn autocorrect_raises_timestamps() {
        let t = table();
        let mut cells: Vec<Cell> = (0..4)
            .map(|_| Cell {
                value: None,
                times: Times::One(CellTime {
                    writetime: None,
                    ttl: None,
                }),
            })
            .collect();
        cells[1] = Cell {
            value: Some(CqlValue::Text("x".into())),
            times: one(20, None),
        };
        let row = ScannedRow {
            key: vec![Some(CqlValue::Int(1)), Some(CqlValue::Int(2))],
            cells,
        };
        let opts = WriteOptions {
            min_ts: Some(500),
            ..WriteOptions::backfill(999)
        };
        let w = row_writes(&t, &row, &opts, Some(&[1]), None);
        assert_eq!(w.len(), 1);
        assert_eq!(w[0].values[3], Some(CqlValue::BigInt(500)));
    }
}
