//! Compares one token sub-range of origin with the same sub-range of target.
//!
//! Both sides are read at the same time and their rows fed in as they arrive, in whatever
//! order: a row whose key the other side has already shown is judged at once (equal, or
//! *mismatched*) and dropped; otherwise it waits in its side's map. At the end, origin rows
//! still waiting are *missing* and target rows still waiting are *extra*. Matching by key rather
//! than merging sorted streams avoids re-implementing Cassandra's clustering order for every
//! type; since both clusters return a range in the same token order, the waiting maps stay about
//! as small as the distance between the two scans, and never exceed the range itself.

use std::collections::{BTreeMap, HashMap};

use super::schema::{CellKind, Table};
use super::value::{key_id, render, KeyId, ScannedRow, Times};

/// How strictly rows are compared.
#[derive(Clone, Copy, Debug)]
pub struct DiffOptions {
    /// Rows with any cell written after this writetime (µs), on either side, are live traffic
    /// that raced the validation: counted as `skipped_recent`, not judged.
    pub cutoff: Option<i64>,
    /// Also require equal writetimes (and TTLs within `ttl_tolerance_secs`).
    pub compare_writetime: bool,
    pub ttl_tolerance_secs: i32,
}

#[derive(Clone, Debug)]
pub enum Finding {
    Missing(ScannedRow),
    /// Origin's row, target's row, and the indexes of differing value columns.
    Mismatched(ScannedRow, ScannedRow, Vec<usize>),
    Extra(ScannedRow),
}

/// The state of one range comparison.
pub struct RangeDiff {
    opts: DiffOptions,
    /// Cell kind of each value column, which decides how writetimes are expected to match.
    kinds: Vec<CellKind>,
    /// Rows read from one side whose key the other side has not shown yet.
    origin_waiting: HashMap<KeyId, ScannedRow>,
    target_waiting: HashMap<KeyId, ScannedRow>,
    pub compared: u64,
    pub skipped_recent: u64,
}

/// What a finished range comparison found besides the pairs judged on the way.
pub struct RangeEnd {
    /// Origin rows target lacks, then target rows origin lacks (live traffic excluded).
    pub findings: Vec<Finding>,
    /// Rows compared over the whole range, missing ones included.
    pub compared: u64,
    /// Rows not judged because they were written after the cut-off.
    pub skipped_recent: u64,
}

impl RangeDiff {
    pub fn new(table: &Table, opts: DiffOptions) -> Self {
        RangeDiff {
            opts,
            kinds: table.value_columns().map(|c| c.kind).collect(),
            origin_waiting: HashMap::new(),
            target_waiting: HashMap::new(),
            compared: 0,
            skipped_recent: 0,
        }
    }

    fn is_recent(&self, row: &ScannedRow) -> bool {
        match (self.opts.cutoff, row.max_writetime()) {
            (Some(cut), Some(wt)) => wt > cut,
            _ => false,
        }
    }

    /// Takes one origin row: judged now if target's row was seen, else kept until it is.
    pub fn origin_row(&mut self, origin: ScannedRow) -> Option<Finding> {
        let key = key_id(&origin.key);
        match self.target_waiting.remove(&key) {
            Some(target) => self.judge(origin, target),
            None => {
                self.origin_waiting.insert(key, origin);
                None
            }
        }
    }

    /// Takes one target row: judged now if origin's row was seen, else kept until it is.
    pub fn target_row(&mut self, target: ScannedRow) -> Option<Finding> {
        let key = key_id(&target.key);
        match self.origin_waiting.remove(&key) {
            Some(origin) => self.judge(origin, target),
            None => {
                self.target_waiting.insert(key, target);
                None
            }
        }
    }

    /// Compares the two copies of one row.
    fn judge(&mut self, origin: ScannedRow, target: ScannedRow) -> Option<Finding> {
        if self.is_recent(&origin) || self.is_recent(&target) {
            self.skipped_recent += 1;
            return None;
        }
        self.compared += 1;
        let differing = self.differing_columns(&origin, &target);
        if differing.is_empty() {
            None
        } else {
            Some(Finding::Mismatched(origin, target, differing))
        }
    }

    /// Call once both sides are fully read: rows only one side has are missing or extra
    /// (unless written after the cut-off).
    pub fn finish(mut self) -> RangeEnd {
        let mut findings = Vec::new();
        for (_, row) in std::mem::take(&mut self.origin_waiting) {
            if self.is_recent(&row) {
                self.skipped_recent += 1;
            } else {
                self.compared += 1;
                findings.push(Finding::Missing(row));
            }
        }
        for (_, row) in std::mem::take(&mut self.target_waiting) {
            if self.is_recent(&row) {
                self.skipped_recent += 1;
            } else {
                findings.push(Finding::Extra(row));
            }
        }
        RangeEnd {
            findings,
            compared: self.compared,
            skipped_recent: self.skipped_recent,
        }
    }

    fn differing_columns(&self, origin: &ScannedRow, target: &ScannedRow) -> Vec<usize> {
        let mut out = Vec::new();
        for (i, (o, t)) in origin.cells.iter().zip(&target.cells).enumerate() {
            let differs = o.value != t.value
                || (self.opts.compare_writetime
                    && !times_match(
                        self.kinds[i],
                        &o.times,
                        &t.times,
                        self.opts.ttl_tolerance_secs,
                    ));
            if differs {
                out.push(i);
            }
        }
        out
    }
}

/// Whether target's cell times are what a copy of origin's produce: equal, except that lists and
/// non-frozen UDTs are copied whole with their newest element's time (a list possibly one
/// microsecond later, see `copy::list_action`).
fn times_match(kind: CellKind, a: &Times, b: &Times, tolerance: i32) -> bool {
    if matches!(kind, CellKind::WholeList | CellKind::WholeUdt) {
        let (Some(newest), Times::PerElement(target)) = (a.newest(), b) else {
            return a == b;
        };
        // A list rewritten over a same-timestamp copy lands one microsecond later.
        let shift = i64::from(kind == CellKind::WholeList);
        return target.iter().all(|t| {
            (t.writetime == newest.writetime || t.writetime == newest.writetime.map(|w| w + shift))
                && ttl_close(newest.ttl, t.ttl, tolerance)
        });
    }
    let pairs: Vec<_> = match (a, b) {
        (Times::One(x), Times::One(y)) => vec![(*x, *y)],
        (Times::PerElement(x), Times::PerElement(y)) if x.len() == y.len() => {
            x.iter().copied().zip(y.iter().copied()).collect()
        }
        (Times::None, Times::None) => Vec::new(),
        _ => return false,
    };
    pairs
        .iter()
        .all(|(x, y)| x.writetime == y.writetime && ttl_close(x.ttl, y.ttl, tolerance))
}

fn ttl_close(a: Option<i32>, b: Option<i32>, tolerance: i32) -> bool {
    match (a, b) {
        (None, None) => true,
        (Some(p), Some(q)) => (p - q).abs() <= tolerance,
        _ => false,
    }
}

/// The key of a row as `column -> CQL literal`, for reports.
pub fn key_map(table: &Table, row: &ScannedRow) -> BTreeMap<String, String> {
    table
        .key_columns()
        .zip(&row.key)
        .map(|(c, v)| (c.name.clone(), render(v)))
        .collect()
}

/// The differing columns as `column -> (origin, target)`, for reports.
pub fn column_diffs(
    table: &Table,
    origin: &ScannedRow,
    target: &ScannedRow,
    columns: &[usize],
) -> BTreeMap<String, (String, String)> {
    let cols: Vec<_> = table.value_columns().collect();
    columns
        .iter()
        .map(|&i| {
            let o = &origin.cells[i];
            let t = &target.cells[i];
            let describe = |c: &super::value::Cell| {
                let v = render(&c.value);
                match c.times.max_writetime() {
                    Some(w) if o.value == t.value => format!("{v} (writetime {w})"),
                    _ => v,
                }
            };
            (cols[i].name.clone(), (describe(o), describe(t)))
        })
        .collect()
}

/// The likely cause of each differing column, where the values tell (`likely_cause`).
pub fn column_causes(
    table: &Table,
    origin: &ScannedRow,
    target: &ScannedRow,
    columns: &[usize],
) -> BTreeMap<String, String> {
    let cols: Vec<_> = table.value_columns().collect();
    columns
        .iter()
        .filter_map(|&i| {
            super::likely_cause::likely_cause(&cols[i].cql_type, &origin.cells[i], &target.cells[i])
                .map(|why| (cols[i].name.clone(), why))
        })
        .collect()
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::data::schema::{classify, Column, Role};
    use crate::data::value::{Cell, CellTime};
    use scylla::value::CqlValue;

    /// `ks.<name>` with `columns` as (name, CQL type, role), in table order: the tables the
    /// comparison's unit tests read rows of (the counter tests' too, in `counters`).
    pub(in crate::data) fn table_of(name: &str, columns: &[(&str, &str, Role)]) -> Table {
        Table {
            keyspace: "ks".into(),
            name: name.into(),
            columns: columns
                .iter()
                .map(|&(column, cql_type, role)| Column {
                    name: column.into(),
                    cql_type: cql_type.into(),
                    role,
                    kind: classify(cql_type, &Default::default()),
                    position: 0,
                })
                .collect(),
        }
    }

    fn table() -> Table {
        table_of(
            "t",
            &[
                ("k", "int", Role::PartitionKey),
                ("v", "text", Role::Regular),
            ],
        )
    }

    fn row(k: i32, v: &str, wt: i64) -> ScannedRow {
        ScannedRow {
            key: vec![Some(CqlValue::Int(k))],
            cells: vec![Cell {
                value: Some(CqlValue::Text(v.into())),
                times: Times::One(CellTime {
                    writetime: Some(wt),
                    ttl: None,
                }),
            }],
        }
    }

    #[test]
    fn finds_missing_mismatched_extra_and_skips_recent() {
        let opts = DiffOptions {
            cutoff: Some(1000),
            compare_writetime: false,
            ttl_tolerance_secs: 0,
        };
        let mut d = RangeDiff::new(&table(), opts);
        // Target ahead of origin for some keys, behind for others: the order must not matter.
        assert!(d.target_row(row(1, "a", 1)).is_none());
        assert!(d.target_row(row(2, "B", 2)).is_none());
        assert!(d.origin_row(row(1, "a", 1)).is_none());
        assert!(matches!(
            d.origin_row(row(2, "b", 2)),
            Some(Finding::Mismatched(_, _, c)) if c == vec![0]
        ));
        assert!(d.origin_row(row(3, "c", 3)).is_none());
        assert!(d.origin_row(row(6, "new", 5000)).is_none());
        assert!(d.origin_row(row(7, "late", 7)).is_none());
        assert!(d.target_row(row(7, "LATE", 7)).is_some());
        assert!(d.target_row(row(4, "x", 4)).is_none());
        assert!(d.target_row(row(5, "live", 2000)).is_none());
        let end = d.finish();
        // 1, 2, 7 judged on the way; 3 missing; 6 (origin) and 5 (target) are live traffic.
        assert_eq!(end.compared, 4);
        assert_eq!(end.skipped_recent, 2);
        assert_eq!(end.findings.len(), 2);
        assert!(end
            .findings
            .iter()
            .any(|f| matches!(f, Finding::Missing(r) if r.key == vec![Some(CqlValue::Int(3))])));
        assert!(end
            .findings
            .iter()
            .any(|f| matches!(f, Finding::Extra(r) if r.key == vec![Some(CqlValue::Int(4))])));
    }

    #[test]
    fn writetime_comparison_is_optional() {
        let mut opts = DiffOptions {
            cutoff: None,
            compare_writetime: false,
            ttl_tolerance_secs: 0,
        };
        let mut d = RangeDiff::new(&table(), opts);
        d.target_row(row(1, "a", 7));
        assert!(d.origin_row(row(1, "a", 1)).is_none());
        opts.compare_writetime = true;
        let mut d = RangeDiff::new(&table(), opts);
        d.origin_row(row(1, "a", 1));
        assert!(d.target_row(row(1, "a", 7)).is_some());
    }
}
