//! Compares one token sub-range of origin with the same sub-range of target.
//!
//! Target's rows of the range are held in a map keyed by primary key, origin's rows are then
//! streamed past it: a key absent from the map is *missing*, a key whose columns differ is
//! *mismatched*, and whatever is left in the map at the end is *extra* (on target only). Matching
//! by key rather than merging sorted streams avoids re-implementing Cassandra's clustering
//! order for every type; sub-ranges keep the map small.

use std::collections::{BTreeMap, HashMap};

use super::schema::{CellKind, Table};
use super::value::{key_id, render, ScannedRow, Times};

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
    target: HashMap<String, ScannedRow>,
    pub compared: u64,
    pub skipped_recent: u64,
}

impl RangeDiff {
    pub fn new(table: &Table, opts: DiffOptions, target_rows: Vec<ScannedRow>) -> Self {
        let target = target_rows
            .into_iter()
            .map(|r| (key_id(&r.key), r))
            .collect();
        RangeDiff {
            opts,
            kinds: table.value_columns().map(|c| c.kind).collect(),
            target,
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

    /// Checks one origin row against target.
    pub fn check(&mut self, origin: ScannedRow) -> Option<Finding> {
        let target = self.target.remove(&key_id(&origin.key));
        if self.is_recent(&origin) || target.as_ref().is_some_and(|t| self.is_recent(t)) {
            self.skipped_recent += 1;
            return None;
        }
        self.compared += 1;
        let Some(target) = target else {
            return Some(Finding::Missing(origin));
        };
        let differing = self.differing_columns(&origin, &target);
        if differing.is_empty() {
            None
        } else {
            Some(Finding::Mismatched(origin, target, differing))
        }
    }

    /// Rows left on target that origin does not have (excluding live traffic).
    pub fn finish(self) -> (Vec<Finding>, u64) {
        let mut recent = 0;
        let mut extra = Vec::new();
        for (_, row) in self.target {
            if self
                .opts
                .cutoff
                .is_some_and(|cut| row.max_writetime().is_some_and(|w| w > cut))
            {
                recent += 1;
            } else {
                extra.push(Finding::Extra(row));
            }
        }
        (extra, recent)
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
mod tests {
    use super::*;
    use crate::data::schema::{classify, Column, Role};
    use crate::data::value::{Cell, CellTime};
    use scylla::value::CqlValue;

    fn table() -> Table {
        let c = |n: &str, t: &str, role| Column {
            name: n.into(),
            cql_type: t.into(),
            role,
            kind: classify(t, &Default::default()),
            position: 0,
        };
        Table {
            keyspace: "ks".into(),
            name: "t".into(),
            columns: vec![
                c("k", "int", Role::PartitionKey),
                c("v", "text", Role::Regular),
            ],
        }
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
        let target = vec![
            row(1, "a", 1),
            row(2, "B", 2),
            row(4, "x", 4),
            row(5, "live", 2000),
        ];
        let mut d = RangeDiff::new(&table(), opts, target);
        assert!(d.check(row(1, "a", 1)).is_none());
        assert!(
            matches!(d.check(row(2, "b", 2)), Some(Finding::Mismatched(_, _, c)) if c == vec![0])
        );
        assert!(matches!(d.check(row(3, "c", 3)), Some(Finding::Missing(_))));
        assert!(d.check(row(6, "new", 5000)).is_none());
        assert_eq!(d.compared, 3);
        assert_eq!(d.skipped_recent, 1);
        let (extra, recent) = d.finish();
        assert_eq!(extra.len(), 1);
        assert!(matches!(&extra[0], Finding::Extra(r) if r.key == vec![Some(CqlValue::Int(4))]));
        assert_eq!(recent, 1);
    }

    #[test]
    fn writetime_comparison_is_optional() {
        let mut opts = DiffOptions {
            cutoff: None,
            compare_writetime: false,
            ttl_tolerance_secs: 0,
        };
        let mut d = RangeDiff::new(&table(), opts, vec![row(1, "a", 7)]);
        assert!(d.check(row(1, "a", 1)).is_none());
        opts.compare_writetime = true;
        let mut d = RangeDiff::new(&table(), opts, vec![row(1, "a", 7)]);
        assert!(d.check(row(1, "a", 1)).is_some());
    }
}
