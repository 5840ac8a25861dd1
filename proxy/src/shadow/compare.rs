//! Compares the secondary's answer to a shadow read with the primary's.
//!
//! The rule, page by page: each request the client sends (first page, or a later page with the
//! primary's paging state, which both clusters accept since it encodes a position in the data,
//! not a node) is answered by both clusters, and the two ROWS results are equal when they have
//! the same number of columns and the same rows, cell by cell (raw bytes, so a type's encoding
//! is compared exactly). What is ignored: the result flags, the paging state, the column
//! metadata (names and types come from the same schema; a schema difference shows up in the
//! cells) and the response prefixes (tracing id, warnings, custom payload). Rows are compared
//! in order first; when that fails they are compared as multisets, so two clusters returning a
//! multi-partition page in a different order (another partitioner) still match. A mismatch
//! names the first differing row by its leading column values.

use crate::protocol::frame::{opcode, Frame, FrameError};
use crate::protocol::wire::{result_kind, skip_type, Reader};

#[cfg(test)]
use crate::protocol::frame::FLAG_WARNING;

/// How many leading columns a mismatch report shows.
const KEY_COLUMNS: usize = 2;
/// A cell shown in a report is cut to this many bytes (as hex) or characters (as text).
const MAX_CELL_SHOWN: usize = 32;

/// One column of a ROWS result's metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    pub name: String,
    pub type_id: u16,
}

/// A decoded ROWS result; cells borrow from the frame body.
#[derive(Debug)]
pub struct Rows<'a> {
    /// (keyspace, table) of the first column, when the result carried metadata.
    pub table: Option<(String, String)>,
    /// Empty when the request asked to skip metadata.
    pub columns: Vec<Column>,
    pub column_count: usize,
    pub rows: Vec<Vec<Option<&'a [u8]>>>,
}

/// Decodes a ROWS result; `None` when the frame is a RESULT of another kind.
pub fn decode_rows(frame: &Frame) -> Result<Option<Rows<'_>>, FrameError> {
    let mut r = Reader::at(&frame.body, frame.response_message_offset()?);
    if r.int()? != result_kind::ROWS {
        return Ok(None);
    }
    let flags = r.int()?;
    let column_count = usize::try_from(r.int()?)
        .map_err(|_| FrameError::Malformed("negative column count".into()))?;
    if flags & 0x0002 != 0 {
        r.bytes()?; // paging state
    }
    if flags & 0x0008 != 0 {
        r.short_bytes()?; // new metadata id (v5; harmless to accept)
    }
    let mut table = None;
    let mut columns = Vec::new();
    if flags & 0x0004 == 0 {
        let global = flags & 0x0001 != 0;
        if global {
            table = Some((r.string()?.to_string(), r.string()?.to_string()));
        }
        for _ in 0..column_count {
            if !global {
                let spec = (r.string()?.to_string(), r.string()?.to_string());
                table.get_or_insert(spec);
            }
            let name = r.string()?.to_string();
            let type_id = skip_type(&mut r)?;
            columns.push(Column { name, type_id });
        }
    }
    let row_count = usize::try_from(r.int()?)
        .map_err(|_| FrameError::Malformed("negative row count".into()))?;
    // Each cell takes at least 4 bytes: a lying count cannot make us allocate beyond the body.
    if column_count > 0 && row_count > r.remaining() / (4 * column_count) {
        return Err(FrameError::Malformed("row count exceeds the body".into()));
    }
    let mut rows = Vec::with_capacity(row_count);
    for _ in 0..row_count {
        let mut row = Vec::with_capacity(column_count);
        for _ in 0..column_count {
            row.push(r.bytes()?);
        }
        rows.push(row);
    }
    Ok(Some(Rows {
        table,
        columns,
        column_count,
        rows,
    }))
}

/// The verdict on one shadow read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Match,
    Mismatch(Mismatch),
    /// The primary answered with an error: the client got no rows, there is nothing to compare.
    NotComparable,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mismatch {
    /// What differs, e.g. "row 3 of 10 (secondary: 10 rows)".
    pub what: String,
    /// Leading column values of the first differing row, e.g. `k=42, c='a'`.
    pub key: String,
}

/// Compares two successful answers (the caller handles a secondary ERROR as a failure).
pub fn compare(primary: &Frame, secondary: &Frame) -> Verdict {
    if primary.opcode != opcode::RESULT {
        return Verdict::NotComparable;
    }
    if secondary.opcode != opcode::RESULT {
        return mismatch(format!(
            "secondary answered opcode {:#04x}",
            secondary.opcode
        ));
    }
    let (p, s) = match (decode_rows(primary), decode_rows(secondary)) {
        (Ok(Some(p)), Ok(Some(s))) => (p, s),
        (Ok(None), Ok(None)) => {
            // Two non-ROWS results (VOID, SET_KEYSPACE): equal messages match.
            let same = match (
                primary.response_message_offset(),
                secondary.response_message_offset(),
            ) {
                (Ok(a), Ok(b)) => primary.body[a..] == secondary.body[b..],
                _ => false,
            };
            return if same {
                Verdict::Match
            } else {
                mismatch("different non-ROWS results".into())
            };
        }
        (Ok(_), Ok(_)) => return mismatch("one answer is ROWS, the other is not".into()),
        (Err(e), _) => return mismatch(format!("primary ROWS undecodable: {e}")),
        (_, Err(e)) => return mismatch(format!("secondary ROWS undecodable: {e}")),
    };
    if p.column_count != s.column_count {
        return mismatch(format!(
            "{} columns on the primary, {} on the secondary",
            p.column_count, s.column_count
        ));
    }
    if p.rows == s.rows {
        return Verdict::Match;
    }
    if p.rows.len() == s.rows.len() {
        let mut a = p.rows.clone();
        let mut b = s.rows.clone();
        a.sort();
        b.sort();
        if a == b {
            return Verdict::Match;
        }
    }
    let i = p
        .rows
        .iter()
        .zip(&s.rows)
        .position(|(a, b)| a != b)
        .unwrap_or(p.rows.len().min(s.rows.len()));
    // The row to name: the primary's (what the client saw) or, past its end, the secondary's.
    let (row, columns) = match p.rows.get(i) {
        Some(r) => (
            r,
            if p.columns.is_empty() {
                &s.columns
            } else {
                &p.columns
            },
        ),
        None => (
            &s.rows[i],
            if s.columns.is_empty() {
                &p.columns
            } else {
                &s.columns
            },
        ),
    };
    Verdict::Mismatch(Mismatch {
        what: format!(
            "row {} of {} (secondary: {} rows)",
            i + 1,
            p.rows.len(),
            s.rows.len()
        ),
        key: describe_key(row, columns),
    })
}

fn mismatch(what: String) -> Verdict {
    Verdict::Mismatch(Mismatch {
        what,
        key: String::new(),
    })
}

/// `name=value` for the leading columns of a row, values shown by type where simple.
pub fn describe_key(row: &[Option<&[u8]>], columns: &[Column]) -> String {
    row.iter()
        .take(KEY_COLUMNS)
        .enumerate()
        .map(|(i, cell)| {
            let (name, type_id) = columns
                .get(i)
                .map(|c| (c.name.clone(), Some(c.type_id)))
                .unwrap_or_else(|| (format!("col{i}"), None));
            format!("{name}={}", show_cell(*cell, type_id))
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn show_cell(cell: Option<&[u8]>, type_id: Option<u16>) -> String {
    let Some(b) = cell else {
        return "null".into();
    };
    let int = |b: &[u8]| -> Option<i64> {
        match b.len() {
            1 => Some(b[0] as i8 as i64),
            2 => Some(i16::from_be_bytes([b[0], b[1]]) as i64),
            4 => Some(i32::from_be_bytes(b.try_into().ok()?) as i64),
            8 => Some(i64::from_be_bytes(b.try_into().ok()?)),
            _ => None,
        }
    };
    match type_id {
        // bigint, counter, int, smallint, tinyint, timestamp
        Some(0x0002 | 0x0005 | 0x0009 | 0x0013 | 0x0014 | 0x000B) => {
            int(b).map(|v| v.to_string()).unwrap_or_else(|| hex(b))
        }
        Some(0x0004) if b.len() == 1 => (b[0] != 0).to_string(),
        // ascii, varchar
        Some(0x0001 | 0x000D) => match std::str::from_utf8(b) {
            Ok(s) => {
                let cut: String = s.chars().take(MAX_CELL_SHOWN).collect();
                let more = if cut.len() < s.len() { "…" } else { "" };
                format!("'{}{more}'", cut.replace('\'', "''"))
            }
            Err(_) => hex(b),
        },
        // uuid, timeuuid
        Some(0x000C | 0x000F) if b.len() == 16 => uuid::Uuid::from_slice(b)
            .map(|u| u.to_string())
            .unwrap_or_else(|_| hex(b)),
        _ => hex(b),
    }
}

fn hex(b: &[u8]) -> String {
    let mut s = String::from("0x");
    for byte in b.iter().take(MAX_CELL_SHOWN) {
        s.push_str(&format!("{byte:02x}"));
    }
    if b.len() > MAX_CELL_SHOWN {
        s.push('…');
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::wire::{put_bytes, put_string};
    use bytes::{BufMut, BytesMut};

    /// A ROWS frame of table ks.kv (k int, v text) with an optional paging state.
    fn rows(data: &[(i32, Option<&str>)], paging: Option<&[u8]>, flags: u8) -> Frame {
        let mut b = BytesMut::new();
        if flags & FLAG_WARNING != 0 {
            b.put_u16(1);
            put_string(&mut b, "a warning");
        }
        b.put_i32(result_kind::ROWS);
        b.put_i32(0x0001 | if paging.is_some() { 0x0002 } else { 0 });
        b.put_i32(2);
        if let Some(p) = paging {
            put_bytes(&mut b, Some(p));
        }
        put_string(&mut b, "ks");
        put_string(&mut b, "kv");
        put_string(&mut b, "k");
        b.put_u16(0x0009);
        put_string(&mut b, "v");
        b.put_u16(0x000D);
        b.put_i32(data.len() as i32);
        for (k, v) in data {
            put_bytes(&mut b, Some(&k.to_be_bytes()));
            put_bytes(&mut b, v.map(str::as_bytes));
        }
        let mut f = Frame::response(0, opcode::RESULT, b.freeze());
        f.flags = flags;
        f
    }

    #[test]
    fn decodes_table_columns_and_cells() {
        let f = rows(&[(1, Some("a")), (2, None)], Some(b"state"), FLAG_WARNING);
        let r = decode_rows(&f).unwrap().unwrap();
        assert_eq!(r.table, Some(("ks".into(), "kv".into())));
        assert_eq!(r.columns[1].name, "v");
        assert_eq!(r.rows.len(), 2);
        assert_eq!(r.rows[0][1], Some(&b"a"[..]));
        assert_eq!(r.rows[1][1], None);
    }

    #[test]
    fn equal_rows_match_whatever_the_paging_state_and_order() {
        let a = rows(&[(1, Some("a")), (2, Some("b"))], Some(b"p1"), 0);
        let b = rows(
            &[(2, Some("b")), (1, Some("a"))],
            Some(b"other"),
            FLAG_WARNING,
        );
        assert_eq!(compare(&a, &b), Verdict::Match);
    }

    #[test]
    fn a_changed_cell_names_the_first_differing_row() {
        let a = rows(&[(1, Some("a")), (42, Some("origin"))], None, 0);
        let b = rows(&[(1, Some("a")), (42, Some("target"))], None, 0);
        match compare(&a, &b) {
            Verdict::Mismatch(m) => {
                assert_eq!(m.key, "k=42, v='origin'");
                assert!(m.what.starts_with("row 2 of 2"), "{}", m.what);
            }
            v => panic!("expected a mismatch, got {v:?}"),
        }
    }

    #[test]
    fn a_missing_row_is_a_mismatch_named_by_the_extra_row() {
        let a = rows(&[(1, Some("a"))], None, 0);
        let b = rows(&[], None, 0);
        match compare(&a, &b) {
            Verdict::Mismatch(m) => assert_eq!(m.key, "k=1, v='a'"),
            v => panic!("expected a mismatch, got {v:?}"),
        }
        let c = rows(&[(1, Some("a")), (7, None)], None, 0);
        match compare(&a, &c) {
            Verdict::Mismatch(m) => assert_eq!(m.key, "k=7, v=null"),
            v => panic!("expected a mismatch, got {v:?}"),
        }
    }

    #[test]
    fn a_primary_error_is_not_compared() {
        let err = Frame::response(
            0,
            opcode::ERROR,
            crate::protocol::wire::error_body(0x2200, "bad"),
        );
        let ok = rows(&[(1, Some("a"))], None, 0);
        assert_eq!(compare(&err, &ok), Verdict::NotComparable);
    }

    #[test]
    fn a_lying_row_count_is_an_error_not_an_allocation() {
        let mut b = BytesMut::new();
        b.put_i32(result_kind::ROWS);
        b.put_i32(0x0004); // no metadata
        b.put_i32(1);
        b.put_i32(i32::MAX);
        let f = Frame::response(0, opcode::RESULT, b.freeze());
        assert!(decode_rows(&f).is_err());
    }
}
