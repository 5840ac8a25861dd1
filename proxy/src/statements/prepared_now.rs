//! The prepared-statement half of `replace_cql_functions`: the bind markers the proxy put in
//! place of `now()` (see `cql_functions`) are invisible to the client.
//!
//! At PREPARE the clusters describe every variable, injected ones included; the PREPARED answer
//! the client gets lists only its own variables (and partition-key indexes renumbered
//! accordingly), so the driver binds exactly what the application wrote. At every EXECUTE (and
//! for every prepared child of a BATCH) the proxy slides a fresh timeuuid into the values at
//! the injected positions, the same bytes for origin and target.

use bytes::{BufMut, Bytes, BytesMut};

use crate::protocol::frame::FrameError;
use crate::protocol::wire::query_flags::{NAMES_FOR_VALUES, VALUES};
use crate::protocol::wire::{self, result_kind, Reader};
use crate::statements::cql_functions::{Func, Generated};

use crate::protocol::frame::response_message_offset;
#[cfg(test)]
use crate::protocol::frame::{FLAG_TRACING, FLAG_WARNING};

/// The injected markers of one prepared statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NowMarkers {
    /// Positions in the full variable list, ascending.
    pub positions: Vec<usize>,
    /// The variable names the clusters gave them, for EXECUTEs that send named values.
    pub names: Vec<String>,
    /// The function each marker stands for: what value to generate.
    pub kinds: Vec<Func>,
}

/// One variable's spec: byte span, name and `(keyspace, table)`.
type Column = ((usize, usize), String, (String, String));

/// The variables section of a RESULT Prepared message, located in its body.
#[derive(Debug)]
struct Variables {
    /// Offset of `<flags><columns_count>`.
    flags_at: usize,
    flags: i32,
    pk_indexes: Vec<u16>,
    /// `(keyspace, table)` of the global table spec, if there is one.
    global: Option<(String, String)>,
    /// Byte span of the global table spec (empty when absent).
    global_span: (usize, usize),
    columns: Vec<Column>,
    /// Offset where the result metadata starts.
    end: usize,
}

/// `version` 5: a result metadata id follows the statement id.
fn read_variables(body: &[u8], at: usize, version: u8) -> Result<Variables, FrameError> {
    let mut r = Reader::at(body, at);
    if r.int()? != result_kind::PREPARED {
        return Err(FrameError::Malformed("not a PREPARED result".into()));
    }
    r.short_bytes()?;
    if version >= crate::protocol::frame::V5 {
        r.short_bytes()?;
    }
    let flags_at = r.pos();
    let flags = r.int()?;
    let count = r.int()?.max(0) as usize;
    let pk_count = r.int()?.max(0) as usize;
    let mut pk_indexes = Vec::with_capacity(pk_count.min(64));
    for _ in 0..pk_count {
        pk_indexes.push(r.short()?);
    }
    let global_start = r.pos();
    let global = if flags & 0x0001 != 0 {
        Some((r.string()?.to_string(), r.string()?.to_string()))
    } else {
        None
    };
    let global_span = (global_start, r.pos());
    let mut columns = Vec::with_capacity(count.min(1024));
    for _ in 0..count {
        let start = r.pos();
        let table = match &global {
            Some(g) => g.clone(),
            None => (r.string()?.to_string(), r.string()?.to_string()),
        };
        let name = r.string()?.to_string();
        wire::skip_type(&mut r)?;
        columns.push(((start, r.pos()), name, table));
    }
    Ok(Variables {
        flags_at,
        flags,
        pk_indexes,
        global,
        global_span,
        columns,
        end: r.pos(),
    })
}

/// `(keyspace, table)` a PREPARED answer's variables belong to (None without variables).
pub fn prepared_table(flags: u8, body: &[u8], version: u8) -> Option<(String, String)> {
    let at = response_message_offset(flags, body).ok()?;
    let v = read_variables(body, at, version).ok()?;
    v.global.or_else(|| v.columns.first().map(|c| c.2.clone()))
}

/// Removes the injected variables from a PREPARED answer (`total` is how many variables the
/// rewritten statement must have). Fails, leaving the caller to fall back, if the answer does
/// not have the expected shape: hiding the wrong variable would bind values to wrong columns.
pub fn hide_injected(
    flags: u8,
    body: &[u8],
    injected: &[usize],
    kinds: &[Func],
    total: usize,
    version: u8,
) -> Result<(Bytes, NowMarkers), String> {
    let at = response_message_offset(flags, body).map_err(|e| e.to_string())?;
    let v = read_variables(body, at, version).map_err(|e| e.to_string())?;
    if v.columns.len() != total {
        return Err(format!(
            "the cluster reports {} variables, the proxy counted {total}",
            v.columns.len()
        ));
    }
    if injected.iter().any(|&p| p >= total) || kinds.len() != injected.len() {
        return Err("injected marker position out of range".into());
    }
    let mut out = BytesMut::with_capacity(body.len());
    out.put_slice(&body[..v.flags_at]);
    out.put_i32(v.flags);
    out.put_i32((total - injected.len()) as i32);
    let shifted: Vec<u16> = v
        .pk_indexes
        .iter()
        .filter(|i| !injected.contains(&(**i as usize)))
        .map(|&i| i - injected.iter().filter(|&&p| p < i as usize).count() as u16)
        .collect();
    out.put_i32(shifted.len() as i32);
    for i in shifted {
        out.put_u16(i);
    }
    out.put_slice(&body[v.global_span.0..v.global_span.1]);
    let mut names = Vec::with_capacity(injected.len());
    for (i, ((s, e), name, _)) in v.columns.iter().enumerate() {
        if injected.contains(&i) {
            names.push(name.clone());
        } else {
            out.put_slice(&body[*s..*e]);
        }
    }
    out.put_slice(&body[v.end..]);
    Ok((
        out.freeze(),
        NowMarkers {
            positions: injected.to_vec(),
            names,
            kinds: kinds.to_vec(),
        },
    ))
}

/// Writes the values list with the injected timeuuids in place: positionally at their
/// positions, or appended as named values.
fn put_values(
    out: &mut BytesMut,
    client: &[&[u8]],
    named: bool,
    markers: &NowMarkers,
    uuids: &[Generated],
) {
    out.put_u16((client.len() + markers.positions.len()) as u16);
    if named {
        for v in client {
            out.put_slice(v);
        }
        for (name, u) in markers.names.iter().zip(uuids) {
            wire::put_string(out, name);
            wire::put_bytes(out, Some(u.bytes()));
        }
        return;
    }
    let mut client = client.iter();
    let mut injected = markers.positions.iter().zip(uuids).peekable();
    let total = client.len() + markers.positions.len();
    for i in 0..total {
        match injected.peek() {
            Some((&p, u)) if p == i => {
                wire::put_bytes(out, Some(u.bytes()));
                injected.next();
            }
            _ => match client.next() {
                Some(v) => out.put_slice(v),
                // The client sent fewer values than the statement has: put the remaining
                // timeuuids last, the cluster will refuse the count anyway.
                None => {
                    if let Some((_, u)) = injected.next() {
                        wire::put_bytes(out, Some(u.bytes()));
                    }
                }
            },
        }
    }
}

/// Fresh values, one per injected marker, each of its function's type.
pub fn fresh_values(markers: &NowMarkers) -> Vec<Generated> {
    markers.kinds.iter().map(|f| f.generate()).collect()
}

/// Rewrites `<consistency><flags>[values]...` (query parameters of an EXECUTE, starting at
/// `at`) with the injected values; everything after the values is copied as it is.
pub fn inject_execute(
    body: &[u8],
    at: usize,
    markers: &NowMarkers,
    uuids: &[Generated],
    version: u8,
) -> Result<Bytes, FrameError> {
    let mut r = Reader::at(body, at);
    let consistency = r.short()?;
    let flags = wire::query_flags(&mut r, version)?;
    let named = flags as u8 & NAMES_FOR_VALUES != 0;
    let client = if flags as u8 & VALUES != 0 {
        read_entries(body, &mut r, named)?
    } else {
        Vec::new()
    };
    let mut out = BytesMut::with_capacity(body.len() + 24 * uuids.len());
    out.put_slice(&body[..at]);
    out.put_u16(consistency);
    wire::put_query_flags(&mut out, version, flags | VALUES as u32);
    put_values(&mut out, &client, named, markers, uuids);
    out.put_slice(&body[r.pos()..]);
    Ok(out.freeze())
}

/// Reads a values list (`<n>` values, or `<n>` name/value pairs) of `body` at the reader's
/// position and returns each entry's raw bytes, name included.
pub fn read_entries<'a>(
    body: &'a [u8],
    r: &mut Reader<'a>,
    named: bool,
) -> Result<Vec<&'a [u8]>, FrameError> {
    let n = r.short()?;
    let mut out = Vec::with_capacity(n as usize);
    for _ in 0..n {
        let start = r.pos();
        if named {
            r.string()?;
        }
        let len = r.int()?;
        if len > 0 {
            r.take(len as usize, "value")?;
        }
        out.push(&body[start..r.pos()]);
    }
    Ok(out)
}

/// Writes a BATCH child's `<n><value_1>...<value_n>` (positional: batches carry no names)
/// with the injected values in place.
pub fn put_batch_child_values(
    out: &mut BytesMut,
    client: &[&[u8]],
    markers: &NowMarkers,
    uuids: &[Generated],
) {
    put_values(out, client, false, markers, uuids);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A PREPARED body: id "ID", variables `k int` (pk), `ts timeuuid` (injected), `v text`,
    /// global spec ks.t, then a result-metadata tail.
    fn prepared_body() -> Vec<u8> {
        let mut b = BytesMut::new();
        b.put_i32(result_kind::PREPARED);
        wire::put_short_bytes(&mut b, b"ID");
        b.put_i32(1);
        b.put_i32(3);
        b.put_i32(2);
        b.put_u16(0);
        b.put_u16(2);
        wire::put_string(&mut b, "ks");
        wire::put_string(&mut b, "t");
        for (name, ty) in [("k", 0x0009u16), ("ts", 0x000F), ("v", 0x000D)] {
            wire::put_string(&mut b, name);
            b.put_u16(ty);
        }
        b.put_slice(b"TAIL");
        b.to_vec()
    }

    #[test]
    fn hides_injected_variables_and_renumbers_partition_key_indexes() {
        let body = prepared_body();
        assert_eq!(prepared_table(0, &body, 4), Some(("ks".into(), "t".into())));
        let (out, m) = hide_injected(0, &body, &[1], &[Func::TimeUuid], 3, 4).unwrap();
        assert_eq!(m.names, vec!["ts".to_string()]);
        let v = read_variables(&out, 0, 4).unwrap();
        let names: Vec<_> = v.columns.iter().map(|c| c.1.as_str()).collect();
        assert_eq!(names, ["k", "v"]);
        assert_eq!(v.pk_indexes, vec![0, 1], "index 2 (v) shifts to 1");
        assert_eq!(&out[out.len() - 4..], b"TAIL");
        assert!(
            hide_injected(0, &body, &[1], &[Func::TimeUuid], 4, 4).is_err(),
            "count mismatch"
        );
    }

    #[test]
    fn skips_tracing_and_warnings_before_the_message() {
        let mut b = BytesMut::new();
        b.put_slice(&[7u8; 16]);
        b.put_u16(1);
        wire::put_string(&mut b, "a warning");
        b.put_slice(&prepared_body());
        let (out, _) = hide_injected(
            FLAG_TRACING | FLAG_WARNING,
            &b,
            &[1],
            &[Func::TimeUuid],
            3,
            4,
        )
        .unwrap();
        assert_eq!(&out[..16], &[7u8; 16]);
    }

    fn exec_body(flags: u8, values: &[(&str, &[u8])]) -> Vec<u8> {
        let mut b = BytesMut::new();
        wire::put_short_bytes(&mut b, b"ID");
        b.put_u16(0x0001);
        b.put_u8(flags);
        if flags & VALUES != 0 {
            b.put_u16(values.len() as u16);
            for (n, v) in values {
                if flags & NAMES_FOR_VALUES != 0 {
                    wire::put_string(&mut b, n);
                }
                wire::put_bytes(&mut b, Some(v));
            }
        }
        b.put_i32(5000); // page size (flag not set, stands in for "the rest")
        b.to_vec()
    }

    /// A v5 EXECUTE: the result metadata id after the statement id, and 4-byte flags.
    #[test]
    fn v5_execute_values_get_the_timeuuid_with_four_byte_flags() {
        let m = NowMarkers {
            positions: vec![1],
            names: vec!["ts".into()],
            kinds: vec![Func::TimeUuid],
        };
        let u = [Generated::from_uuid(uuid::Uuid::from_bytes([7u8; 16]))];
        let mut b = BytesMut::new();
        wire::put_short_bytes(&mut b, b"ID");
        wire::put_short_bytes(&mut b, b"RM");
        let params = b.len();
        b.put_u16(0x0001);
        b.put_u32(VALUES as u32);
        b.put_u16(2);
        wire::put_bytes(&mut b, Some(b"k"));
        wire::put_bytes(&mut b, Some(b"v"));
        b.put_i32(5000);
        let out = inject_execute(&b, params, &m, &u, 5).unwrap();
        assert_eq!(&out[..params], &b[..params], "ids kept");
        let mut r = Reader::at(&out, params);
        assert_eq!(r.short().unwrap(), 1);
        assert_eq!(r.int().unwrap() as u32 & VALUES as u32, VALUES as u32);
        let n = r.short().unwrap();
        let vals: Vec<_> = (0..n)
            .map(|_| r.bytes().unwrap().unwrap().to_vec())
            .collect();
        assert_eq!(vals, vec![b"k".to_vec(), vec![7u8; 16], b"v".to_vec()]);
        assert_eq!(&out[out.len() - 4..], &5000i32.to_be_bytes());
    }

    fn decode(body: &[u8], named: bool) -> Vec<(Option<String>, Vec<u8>)> {
        let mut r = Reader::at(body, 4 + 3);
        let n = r.short().unwrap();
        (0..n)
            .map(|_| {
                let name = named.then(|| r.string().unwrap().to_string());
                (name, r.bytes().unwrap().unwrap().to_vec())
            })
            .collect()
    }

    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

        /// Cluster answers and client EXECUTEs are untrusted bytes: errors, never panics.
        #[test]
        fn random_bytes_never_panic(
            body in proptest::collection::vec(any::<u8>(), 0..300),
            flags in any::<u8>(),
            at in 0usize..40,
            pos in proptest::collection::vec(0usize..6, 0..3),
        ) {
            let _ = prepared_table(flags, &body, 5);
            let kinds: Vec<Func> = pos.iter().map(|_| Func::Date).collect();
            let _ = hide_injected(flags, &body, &pos, &kinds, 5, 4);
            let _ = hide_injected(flags, &body, &pos, &kinds, 5, 5);
            let m = NowMarkers { names: pos.iter().map(|p| p.to_string()).collect(), positions: pos, kinds };
            let _ = inject_execute(&body, at.min(body.len()), &m, &fresh_values(&m), 4);
            let _ = inject_execute(&body, at.min(body.len()), &m, &fresh_values(&m), 5);
            let bytes = Bytes::from(body);
            let _ = crate::statements::write_rewrite::rewrite_batch(&bytes, 0, None, true, |_| None);
            for op in [crate::protocol::frame::opcode::QUERY, crate::protocol::frame::opcode::EXECUTE, crate::protocol::frame::opcode::BATCH] {
                let _ = crate::statements::consistency::override_level(op, bytes.clone(), 0, 5, 4);
            }
        }
    }

    #[test]
    fn execute_values_get_the_timeuuid_at_the_injected_position() {
        let m = NowMarkers {
            positions: vec![1],
            names: vec!["ts".into()],
            kinds: vec![Func::TimeUuid],
        };
        let u = [Generated::from_uuid(uuid::Uuid::from_bytes([9u8; 16]))];
        let out =
            inject_execute(&exec_body(VALUES, &[("", b"k"), ("", b"v")]), 4, &m, &u, 4).unwrap();
        let vals: Vec<_> = decode(&out, false).into_iter().map(|x| x.1).collect();
        assert_eq!(vals, vec![b"k".to_vec(), vec![9u8; 16], b"v".to_vec()]);
        assert_eq!(&out[out.len() - 4..], &5000i32.to_be_bytes());

        // No client values at all: the values flag is switched on.
        let m0 = NowMarkers {
            positions: vec![0],
            names: vec!["ts".into()],
            kinds: vec![Func::TimeUuid],
        };
        let out = inject_execute(&exec_body(0, &[]), 4, &m0, &u, 4).unwrap();
        assert_eq!(out[6] & VALUES, VALUES);
        assert_eq!(decode(&out, false).len(), 1);

        // Named values: appended under the name the cluster gave the variable.
        let out = inject_execute(
            &exec_body(VALUES | NAMES_FOR_VALUES, &[("k", b"k")]),
            4,
            &m,
            &u,
            4,
        )
        .unwrap();
        assert_eq!(
            decode(&out, true),
            vec![
                (Some("k".into()), b"k".to_vec()),
                (Some("ts".into()), vec![9u8; 16])
            ]
        );
    }
}
