//! One scanned row split into its key and its cells (value + writetime + TTL), plus rendering of
//! keys for reports.

use scylla::deserialize::row::{ColumnIterator, DeserializeRow};
use scylla::deserialize::value::DeserializeValue;
use scylla::deserialize::{DeserializationError, TypeCheckError};
use scylla::frame::response::result::{CollectionType, ColumnSpec, ColumnType};
use scylla::value::{CqlValue, Row};

use super::schema::{CellKind, Table};

/// Writetime and remaining TTL of a cell, as `writetime()`/`ttl()` return them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CellTime {
    /// Microseconds since the epoch.
    pub writetime: Option<i64>,
    /// Remaining seconds; `None` when the cell does not expire.
    pub ttl: Option<i32>,
}

/// Times of a column: one for a single cell, one per element for a multi-cell collection
/// (Cassandra 5 returns lists from `writetime()`/`ttl()` on those).
#[derive(Clone, Debug, PartialEq)]
pub enum Times {
    /// Not selected (keys, counters, or a diff scan without times).
    None,
    One(CellTime),
    PerElement(Vec<CellTime>),
}

impl Times {
    /// The newest writetime among the cells.
    pub fn max_writetime(&self) -> Option<i64> {
        match self {
            Times::None => None,
            Times::One(t) => t.writetime,
            Times::PerElement(v) => v.iter().filter_map(|t| t.writetime).max(),
        }
    }

    /// The time of the newest cell (its writetime and TTL), the CDM rule for whole writes.
    pub fn newest(&self) -> Option<CellTime> {
        match self {
            Times::None => None,
            Times::One(t) => Some(*t),
            Times::PerElement(v) => v.iter().copied().max_by_key(|t| (t.writetime, t.ttl)),
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Cell {
    pub value: Option<CqlValue>,
    pub times: Times,
}

/// A result row that, unlike the driver's [`Row`], accepts the lists Cassandra 5 returns from
/// `writetime()`/`ttl()` on multi-cell columns, whose elements are null for cells without a TTL
/// (the driver's `CqlValue` cannot hold a null list element). Such nulls become
/// [`CqlValue::Empty`]; everything else is read exactly like [`Row`].
#[derive(Debug)]
pub struct ScanRow(pub Row);

fn is_time_list(spec: &ColumnSpec<'_>) -> bool {
    // The type first: it rules out nearly every column without looking at the name.
    matches!(
        spec.typ(),
        ColumnType::Collection {
            typ: CollectionType::List(_),
            ..
        }
    ) && {
        let name = spec.name();
        name.starts_with("writetime(") || name.starts_with("ttl(")
    }
}

impl<'frame, 'metadata> DeserializeRow<'frame, 'metadata> for ScanRow {
    fn type_check(_specs: &[ColumnSpec]) -> Result<(), TypeCheckError> {
        Ok(())
    }

    fn deserialize(
        mut row: ColumnIterator<'frame, 'metadata>,
    ) -> Result<Self, DeserializationError> {
        let mut columns = Vec::with_capacity(row.size_hint().0);
        while let Some(column) = row.next().transpose()? {
            let value = if is_time_list(column.spec) {
                <Option<Vec<Option<CqlValue>>>>::type_check(column.spec.typ())
                    .map_err(DeserializationError::new)?;
                <Option<Vec<Option<CqlValue>>>>::deserialize(column.spec.typ(), column.slice)?.map(
                    |items| {
                        CqlValue::List(
                            items
                                .into_iter()
                                .map(|v| v.unwrap_or(CqlValue::Empty))
                                .collect(),
                        )
                    },
                )
            } else {
                <Option<CqlValue>>::deserialize(column.spec.typ(), column.slice)?
            };
            columns.push(value);
        }
        Ok(ScanRow(Row { columns }))
    }
}

/// A row as read by [`super::scan::select_cql`].
#[derive(Clone, Debug)]
pub struct ScannedRow {
    /// Partition key then clustering values, in schema order. Clustering values are `None` on a
    /// static-only row (a partition with static cells and no clustering rows).
    pub key: Vec<Option<CqlValue>>,
    /// One per [`Table::value_columns`], in that order.
    pub cells: Vec<Cell>,
}

impl ScannedRow {
    /// Splits a driver row according to the column layout of the select.
    pub fn from_row(table: &Table, row: Row, with_times: bool) -> anyhow::Result<ScannedRow> {
        let mut it = row.columns.into_iter();
        let mut key = Vec::with_capacity(table.key_len());
        for col in table.key_columns() {
            key.push(it.next().ok_or_else(|| short_row(table, &col.name))?);
        }
        let mut cells = Vec::new();
        for col in table.value_columns() {
            let value = it.next().ok_or_else(|| short_row(table, &col.name))?;
            let times = if with_times && col.has_writetime() {
                let wt = it.next().ok_or_else(|| short_row(table, &col.name))?;
                let ttl = it.next().ok_or_else(|| short_row(table, &col.name))?;
                parse_times(wt, ttl)
            } else {
                Times::None
            };
            cells.push(Cell { value, times });
        }
        Ok(ScannedRow { key, cells })
    }

    /// Whether this is the static part of a partition without clustering rows.
    pub fn is_static_only(&self, table: &Table) -> bool {
        let pk_len = table.partition_key().count();
        self.key.len() > pk_len && self.key[pk_len..].iter().all(Option::is_none)
    }

    /// The newest writetime of any cell of the row.
    pub fn max_writetime(&self) -> Option<i64> {
        self.cells
            .iter()
            .filter_map(|c| c.times.max_writetime())
            .max()
    }
}

fn short_row(table: &Table, column: &str) -> anyhow::Error {
    anyhow::anyhow!(
        "row of {} is shorter than expected (missing {column})",
        table.display_name()
    )
}

fn as_i64(v: &CqlValue) -> Option<i64> {
    match v {
        CqlValue::BigInt(x) => Some(*x),
        CqlValue::Int(x) => Some(*x as i64),
        _ => None,
    }
}

/// A cell that `ttl()` reports at 0 seconds is still alive but about to expire; writing it with
/// `TTL 0` would make it permanent, so it is copied with the shortest real TTL instead.
fn live_ttl(t: i32) -> i32 {
    t.max(1)
}

fn parse_times(wt: Option<CqlValue>, ttl: Option<CqlValue>) -> Times {
    match (wt, ttl) {
        (Some(CqlValue::List(wts)), ttls) => {
            let ttls: Vec<Option<i32>> = match ttls {
                Some(CqlValue::List(v)) => v.iter().map(|t| as_i64(t).map(|x| x as i32)).collect(),
                _ => Vec::new(),
            };
            Times::PerElement(
                wts.iter()
                    .enumerate()
                    .map(|(i, w)| CellTime {
                        writetime: as_i64(w),
                        ttl: ttls.get(i).copied().flatten().map(live_ttl),
                    })
                    .collect(),
            )
        }
        (wt, ttl) => Times::One(CellTime {
            writetime: wt.as_ref().and_then(as_i64),
            ttl: ttl.as_ref().and_then(as_i64).map(|x| live_ttl(x as i32)),
        }),
    }
}

/// The elements of a multi-cell collection in storage order, paired with what a single-element
/// collection of the same type looks like (for `c = c + ?`).
pub fn elements(value: &CqlValue) -> Vec<CqlValue> {
    match value {
        CqlValue::Set(v) => v.iter().map(|e| CqlValue::Set(vec![e.clone()])).collect(),
        CqlValue::Map(v) => v.iter().map(|e| CqlValue::Map(vec![e.clone()])).collect(),
        CqlValue::List(v) => v.iter().map(|e| CqlValue::List(vec![e.clone()])).collect(),
        other => vec![other.clone()],
    }
}

/// Joins single-element collections back into one.
pub fn join_elements(parts: &[CqlValue]) -> Option<CqlValue> {
    let first = parts.first()?;
    Some(match first {
        CqlValue::Set(_) => CqlValue::Set(
            parts
                .iter()
                .flat_map(|p| match p {
                    CqlValue::Set(v) => v.clone(),
                    _ => Vec::new(),
                })
                .collect(),
        ),
        CqlValue::Map(_) => CqlValue::Map(
            parts
                .iter()
                .flat_map(|p| match p {
                    CqlValue::Map(v) => v.clone(),
                    _ => Vec::new(),
                })
                .collect(),
        ),
        other => other.clone(),
    })
}

/// Whether a column kind stores one writetime per element.
pub fn is_multi_cell(kind: CellKind) -> bool {
    matches!(
        kind,
        CellKind::ElementWise | CellKind::WholeList | CellKind::WholeUdt
    )
}

/// A stable identity of a key, used to match origin and target rows in a range.
pub type KeyId = Vec<u8>;

/// The [`KeyId`] of a key.
///
/// Computed for every row a validation reads, so the usual key types are written as bytes (a
/// tag byte, then the value; text length-prefixed so no content can fake a boundary) without
/// going through `fmt`; only the rest go through `Debug`, also length-prefixed.
pub fn key_id(key: &[Option<CqlValue>]) -> KeyId {
    let mut id = Vec::with_capacity(16 * key.len());
    let with_len = |id: &mut Vec<u8>, tag: u8, bytes: &[u8]| {
        id.push(tag);
        id.extend_from_slice(&(bytes.len() as u64).to_le_bytes());
        id.extend_from_slice(bytes);
    };
    for v in key {
        match v {
            None => id.push(b'N'),
            Some(CqlValue::Int(x)) => {
                id.push(b'i');
                id.extend_from_slice(&x.to_le_bytes());
            }
            Some(CqlValue::BigInt(x)) => {
                id.push(b'b');
                id.extend_from_slice(&x.to_le_bytes());
            }
            Some(CqlValue::Uuid(x)) => {
                id.push(b'u');
                id.extend_from_slice(x.as_bytes());
            }
            Some(CqlValue::Text(x)) => with_len(&mut id, b't', x.as_bytes()),
            Some(CqlValue::Ascii(x)) => with_len(&mut id, b'a', x.as_bytes()),
            Some(other) => with_len(&mut id, b'd', format!("{other:?}").as_bytes()),
        }
    }
    id
}

/// Renders a value as a CQL literal for reports (`'text'`, `42`, `{1, 2}`), using the driver's
/// own literal printer.
pub fn render(value: &Option<CqlValue>) -> String {
    match value {
        None => "null".into(),
        Some(v) => v.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_ids_are_distinct_for_distinct_keys() {
        let text = |t: &str| Some(CqlValue::Text(t.into()));
        let keys = [
            vec![text("a\u{1f}t1:b"), None],
            vec![text("a"), text("b")],
            vec![text("a"), None],
            vec![Some(CqlValue::Int(1)), text("b")],
            vec![Some(CqlValue::BigInt(1)), text("b")],
            vec![Some(CqlValue::Ascii("a".into())), text("b")],
            vec![Some(CqlValue::SmallInt(1)), text("b")],
            vec![Some(CqlValue::TinyInt(1)), text("b")],
        ];
        let ids: std::collections::HashSet<KeyId> = keys.iter().map(|k| key_id(k)).collect();
        assert_eq!(ids.len(), keys.len(), "{ids:?}");
        assert_eq!(key_id(&keys[1]), key_id(&[text("a"), text("b")]));
    }

    #[test]
    fn parses_single_and_per_element_times() {
        let one = parse_times(Some(CqlValue::BigInt(5)), Some(CqlValue::Int(60)));
        assert_eq!(
            one,
            Times::One(CellTime {
                writetime: Some(5),
                ttl: Some(60)
            })
        );
        let many = parse_times(
            Some(CqlValue::List(vec![
                CqlValue::BigInt(1),
                CqlValue::BigInt(9),
            ])),
            Some(CqlValue::List(vec![CqlValue::Empty, CqlValue::Int(30)])),
        );
        assert_eq!(many.max_writetime(), Some(9));
        assert_eq!(
            many,
            Times::PerElement(vec![
                CellTime {
                    writetime: Some(1),
                    ttl: None
                },
                CellTime {
                    writetime: Some(9),
                    ttl: Some(30)
                }
            ])
        );
        // About to expire is not "never expires".
        let dying = parse_times(Some(CqlValue::BigInt(5)), Some(CqlValue::Int(0)));
        assert_eq!(dying.newest().unwrap().ttl, Some(1));
        assert_eq!(
            many.newest(),
            Some(CellTime {
                writetime: Some(9),
                ttl: Some(30)
            })
        );
    }

    #[test]
    fn splits_and_joins_collections() {
        let set = CqlValue::Set(vec![CqlValue::Int(1), CqlValue::Int(2)]);
        let parts = elements(&set);
        assert_eq!(parts.len(), 2);
        assert_eq!(join_elements(&parts), Some(set));
    }

    #[test]
    fn renders_cql_literals() {
        assert_eq!(render(&Some(CqlValue::Text("it's".into()))), "'it''s'");
        assert_eq!(render(&None), "null");
        assert_eq!(
            render(&Some(CqlValue::Map(vec![(
                CqlValue::Text("a".into()),
                CqlValue::Int(1)
            )]))),
            "{'a':1}"
        );
    }
}
