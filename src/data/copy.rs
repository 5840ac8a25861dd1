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

/// One statement to run on target, with its bound values. The text is shared: every row of a
/// table with the same shape uses the same one (see [`Statements`]).
#[derive(Clone, Debug, PartialEq)]
pub struct Write {
    pub cql: Arc<str>,
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

/// The time of a cell whose writetime was not read (a row with only its primary key).
const UNKNOWN_TIME: CellTime = CellTime {
    writetime: None,
    ttl: None,
};

/// What a statement of [`Statements`] does; its text follows from this and the table alone.
/// `key_len` is how many key columns its `WHERE` (or column list) names: the partition key for
/// static cells, the whole primary key otherwise.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Shape {
    /// `INSERT` of the key and these value columns (indexes in [`Table::value_columns`]).
    Insert { key_len: usize, columns: Vec<usize> },
    /// `DELETE` of one value column.
    Delete { key_len: usize, column: usize },
    /// `SET c = ?` of one value column.
    Assign { key_len: usize, column: usize },
    /// `SET c = c + ?` of one collection column.
    Add { key_len: usize, column: usize },
}

/// The write statements of one table, their text built once and shared by every row.
///
/// A backfill writes millions of rows in a handful of shapes; building each row's statement text
/// anew (and hashing a fresh string to find its prepared form) was a measurable share of the
/// tool's CPU, which runs on the same cores as the clusters it copies between.
pub struct Statements {
    table: Table,
    qualified: String,
    key_names: Vec<String>,
    value_names: Vec<String>,
    pk_len: usize,
    texts: RwLock<HashMap<Shape, Arc<str>>>,
}

impl Statements {
    pub fn new(table: &Table) -> Statements {
        Statements {
            table: table.clone(),
            qualified: table.qualified(),
            key_names: table.key_columns().map(Column::quoted).collect(),
            value_names: table.value_columns().map(Column::quoted).collect(),
            pk_len: table.partition_key().count(),
            texts: RwLock::new(HashMap::new()),
        }
    }

    pub fn table(&self) -> &Table {
        &self.table
    }

    /// Key columns that address a cell: the partition key for a static cell, else all of them.
    fn key_len(&self, is_static: bool) -> usize {
        if is_static {
            self.pk_len
        } else {
            self.key_names.len()
        }
    }

    fn text(&self, shape: Shape) -> Arc<str> {
        // A plain lock, never held across an await; after the first rows every lookup hits.
        if let Some(text) = self.texts.read().expect("statement texts lock").get(&shape) {
            return text.clone();
        }
        let text: Arc<str> = self.build(&shape).into();
        self.texts
            .write()
            .expect("statement texts lock")
            .entry(shape)
            .or_insert(text)
            .clone()
    }

    fn build(&self, shape: &Shape) -> String {
        let q = &self.qualified;
        match shape {
            Shape::Insert { key_len, columns } => {
                let names: Vec<&str> = self.key_names[..*key_len]
                    .iter()
                    .chain(columns.iter().map(|&i| &self.value_names[i]))
                    .map(String::as_str)
                    .collect();
                let marks = vec!["?"; names.len()].join(", ");
                format!(
                    "INSERT INTO {q} ({}) VALUES ({marks}) USING TIMESTAMP ? AND TTL ?",
                    names.join(", ")
                )
            }
            Shape::Delete { key_len, column } => format!(
                "DELETE {} FROM {q} USING TIMESTAMP ? WHERE {}",
                self.value_names[*column],
                self.condition(*key_len)
            ),
            Shape::Assign { key_len, column } => format!(
                "UPDATE {q} USING TIMESTAMP ? AND TTL ? SET {} = ? WHERE {}",
                self.value_names[*column],
                self.condition(*key_len)
            ),
            Shape::Add { key_len, column } => format!(
                "UPDATE {q} USING TIMESTAMP ? AND TTL ? SET {c} = {c} + ? WHERE {}",
                self.condition(*key_len),
                c = self.value_names[*column]
            ),
        }
    }

    fn condition(&self, key_len: usize) -> String {
        self.key_names[..key_len]
            .iter()
            .map(|c| format!("{c} = ?"))
            .collect::<Vec<_>>()
            .join(" AND ")
    }

    /// Deletes one column of the row at `ts`.
    fn delete(&self, row: &ScannedRow, key_len: usize, column: usize, ts: i64) -> Write {
        let mut values = Vec::with_capacity(1 + key_len);
        values.push(Some(CqlValue::BigInt(ts)));
        values.extend_from_slice(&row.key[..key_len]);
        Write {
            cql: self.text(Shape::Delete { key_len, column }),
            values,
        }
    }

    /// `SET c = ?` (`add`: `c = c + ?`) of one column at `ts` with `ttl`.
    fn update(
        &self,
        row: &ScannedRow,
        (key_len, column, add): (usize, usize, bool),
        (ts, ttl): (i64, Option<i32>),
        value: Option<CqlValue>,
    ) -> Write {
        let shape = if add {
            Shape::Add { key_len, column }
        } else {
            Shape::Assign { key_len, column }
        };
        let mut values = Vec::with_capacity(3 + key_len);
        values.extend(using(ts, ttl));
        values.push(value);
        values.extend_from_slice(&row.key[..key_len]);
        Write {
            cql: self.text(shape),
            values,
        }
    }

    /// `INSERT` of the key and `cells` (value column index, value) at `ts` with `ttl`.
    fn insert(
        &self,
        row: &ScannedRow,
        key_len: usize,
        cells: Vec<(usize, CqlValue)>,
        (ts, ttl): (i64, Option<i32>),
    ) -> Write {
        let mut values = Vec::with_capacity(key_len + cells.len() + 2);
        values.extend_from_slice(&row.key[..key_len]);
        let mut columns = Vec::with_capacity(cells.len());
        for (i, v) in cells {
            columns.push(i);
            values.push(Some(v));
        }
        values.extend(using(ts, ttl));
        Write {
            cql: self.text(Shape::Insert { key_len, columns }),
            values,
        }
    }
}

/// Single-cell values of a row grouped by (is static, time): each group is one `INSERT`.
type InsertGroups = BTreeMap<(bool, CellTime), Vec<(usize, CqlValue)>>;

/// The writes for one row. `columns` restricts the copy to those value columns (by index in
/// [`Table::value_columns`]); `None` copies all.
///
/// `on_target` is what target holds for this row, when it was read (tables with non-frozen
/// lists, see [`needs_target_read`]): `Some(None)` means the row is absent there.
pub fn row_writes(
    stmts: &Statements,
    row: &ScannedRow,
    opts: &WriteOptions,
    columns: Option<&[usize]>,
    on_target: Option<Option<&ScannedRow>>,
) -> Vec<Write> {
    let table = stmts.table();
    let static_only = row.is_static_only(table);
    // Deletes and collection updates: they run after the inserts that create the row.
    let mut updates = Vec::new();
    let mut groups = InsertGroups::new();
    let mut min_wt: Option<i64> = None;
    let mut regular_written = false;

    for (i, col) in table.value_columns().enumerate() {
        let is_static = col.role == Role::Static;
        let copied = columns.is_none_or(|only| only.contains(&i))
            && if is_static {
                opts.write_static
            } else {
                !static_only
            };
        if !copied {
            continue;
        }
        let key_len = stmts.key_len(is_static);
        if let Some(ts) = opts.clear_at {
            updates.push(stmts.delete(row, key_len, i, ts));
        }
        let cell = &row.cells[i];
        let Some(value) = &cell.value else { continue };
        if let Some(w) = cell.times.max_writetime() {
            min_wt = Some(min_wt.map_or(w, |m: i64| m.min(w)));
        }
        regular_written |= !is_static;
        match (col.kind, &cell.times) {
            (CellKind::ElementWise, Times::PerElement(times)) => {
                element_writes(stmts, row, (key_len, i), value, times, opts, &mut updates);
            }
            (CellKind::ElementWise | CellKind::WholeList | CellKind::WholeUdt, times) => {
                let target = on_target.map(|r| r.map(|r| &r.cells[i]));
                whole_value_writes(
                    stmts,
                    row,
                    (key_len, i, col.kind),
                    value,
                    times,
                    (opts, target),
                    &mut updates,
                );
            }
            (_, times) => {
                let t = times.newest().unwrap_or(UNKNOWN_TIME);
                groups
                    .entry((is_static, t))
                    .or_default()
                    .push((i, value.clone()));
            }
        }
    }

    let mut writes = Vec::with_capacity(groups.len() + 1 + updates.len());
    let have_regular_insert = groups.keys().any(|(is_static, _)| !is_static);
    for ((is_static, t), cells) in groups {
        let key_len = stmts.key_len(is_static);
        writes.push(stmts.insert(row, key_len, cells, (opts.ts(t.writetime), t.ttl)));
    }
    // A clustering row (or a partition without clustering) must exist on target even when it has
    // no single-cell values: its primary key alone makes it visible to SELECT.
    if !static_only && !have_regular_insert && columns.is_none() {
        let ts = if regular_written { min_wt } else { None };
        let key_len = stmts.key_len(false);
        writes.push(stmts.insert(row, key_len, Vec::new(), (opts.ts(ts), None)));
    }
    writes.extend(updates);
    writes
}

/// A multi-cell set or map: one `c = c + ?` per (writetime, TTL) group of elements, idempotent,
/// no tombstone, every element keeping its own time.
fn element_writes(
    stmts: &Statements,
    row: &ScannedRow,
    (key_len, column): (usize, usize),
    value: &CqlValue,
    times: &[CellTime],
    opts: &WriteOptions,
    out: &mut Vec<Write>,
) {
    let mut by_time: BTreeMap<CellTime, Vec<CqlValue>> = BTreeMap::new();
    for (j, part) in elements(value).into_iter().enumerate() {
        let t = times.get(j).copied().unwrap_or(UNKNOWN_TIME);
        by_time.entry(t).or_default().push(part);
    }
    for (t, parts) in by_time {
        out.push(stmts.update(
            row,
            (key_len, column, true),
            (opts.ts(t.writetime), t.ttl),
            super::value::join_elements(&parts),
        ));
    }
}

/// A list or non-frozen UDT (or a collection whose element times were not read): one whole-value
/// write with the newest element's time (CDM's rule), since list appends are not idempotent and
/// UDT fields share one value. A list is first compared with target's (see [`list_action`]).
fn whole_value_writes(
    stmts: &Statements,
    row: &ScannedRow,
    (key_len, column, kind): (usize, usize, CellKind),
    value: &CqlValue,
    times: &Times,
    (opts, on_target): (&WriteOptions, Option<Option<&super::value::Cell>>),
    out: &mut Vec<Write>,
) {
    let t = times.newest().unwrap_or(UNKNOWN_TIME);
    let mut ts = opts.ts(t.writetime);
    if kind == CellKind::WholeList && opts.clear_at.is_none() {
        match list_action(on_target, value, ts) {
            ListAction::Skip => return,
            ListAction::Write => {}
            ListAction::ClearThenWriteLater => {
                out.push(stmts.delete(row, key_len, column, ts));
                ts += 1;
            }
        }
    }
    out.push(stmts.update(
        row,
        (key_len, column, false),
        (ts, t.ttl),
        Some(value.clone()),
    ));
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

/// Prepares each distinct statement once and runs writes with retries.
#[derive(Clone)]
pub struct Writer {
    session: Arc<Session>,
    cache: Arc<RwLock<HashMap<Arc<str>, PreparedStatement>>>,
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

    async fn prepared(&self, cql: &Arc<str>) -> anyhow::Result<PreparedStatement> {
        // A plain lock, never held across an await: every statement of every batch looks its
        // prepared form up here, and an async lock costs more than the lookup itself.
        if let Some(p) = self.cache.read().expect("statement cache lock").get(&**cql) {
            return Ok(p.clone());
        }
        let mut p = self
            .session
            .prepare(&**cql)
            .await
            .with_context(|| format!("preparing on target: {cql}"))?;
        // Every write carries an explicit timestamp, so repeating it is harmless.
        p.set_is_idempotent(true);
        self.cache
            .write()
            .expect("statement cache lock")
            .insert(cql.clone(), p.clone());
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

    /// A backfill's writes for `row`, cells without a writetime written at 999.
    fn backfill(t: &Table, row: &ScannedRow) -> Vec<Write> {
        row_writes(
            &Statements::new(t),
            row,
            &WriteOptions::backfill(999),
            None,
            None,
        )
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
        let w = backfill(&t, &row);
        let cqls: Vec<&str> = w.iter().map(|w| &*w.cql).collect();
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
        let w = backfill(&t, &row);
        assert_eq!(w.len(), 1);
        assert!(w[0].cql.contains("(\"pk\", \"s\")"), "{}", w[0].cql);

        let row = ScannedRow {
            key: vec![Some(CqlValue::Int(1)), Some(CqlValue::Int(3))],
            cells: nulls(4),
        };
        let w = backfill(&t, &row);
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
        let w = row_writes(&Statements::new(&t), &row, &opts, Some(&[1]), None);
        assert_eq!(w.len(), 1);
        assert_eq!(w[0].values[3], Some(CqlValue::BigInt(500)));
    }
}
