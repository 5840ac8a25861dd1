//! The bodies of a write as origin and as target receive it: target's prepared ids in place of
//! origin's, `now()` replaced by proxy-generated timeuuids (same values for both), and the
//! tables written, for the write metrics.

use bytes::{BufMut, Bytes, BytesMut};

use crate::protocol::frame::FrameError;
use crate::protocol::wire::{self, Reader};
use crate::statements::cql_functions::{new_timeuuid, replace_with_literals};
use crate::statements::prepared::Prepared;
use crate::statements::prepared_now::{fresh_values, put_batch_child_values, read_entries};
use crate::statements::write_metrics::{tables_of, TableRef};

/// A QUERY body with the `now()` calls of its statement replaced by timeuuid literals;
/// `None` when there is nothing to replace.
pub fn query_with_now_replaced(body: &[u8], off: usize) -> Result<Option<Bytes>, FrameError> {
    let mut r = Reader::at(body, off);
    let query = r.long_string()?;
    let Some(text) = replace_with_literals(query, new_timeuuid) else {
        return Ok(None);
    };
    Ok(Some(with_statement(body, off, r.pos(), &text)))
}

/// `body` with the [long string] between `off` and `end` replaced by `text`.
pub fn with_statement(body: &[u8], off: usize, end: usize, text: &str) -> Bytes {
    let mut b = BytesMut::with_capacity(body.len() + text.len());
    b.put_slice(&body[..off]);
    wire::put_long_string(&mut b, text);
    b.put_slice(&body[end..]);
    b.freeze()
}

/// A prepared child of a BATCH: the id the client sent and the ids each cluster knows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChildIds {
    pub client: Bytes,
    pub origin: Bytes,
    pub target: Bytes,
}

/// A BATCH as each cluster gets it.
pub struct BatchBodies {
    pub origin: Bytes,
    pub target: Bytes,
    /// Each prepared child's ids, to translate an UNPREPARED answer.
    pub ids: Vec<ChildIds>,
    /// One entry per child statement that writes a table.
    pub writes: Vec<TableRef>,
    /// What makes the children's writes unsafe, per table (see `unsafe_writes`).
    pub risks: Vec<(TableRef, &'static str)>,
}

#[derive(Debug)]
pub enum BatchError {
    /// A child's prepared id is unknown to the proxy: the client must re-prepare it.
    Unprepared(Bytes),
    Frame(FrameError),
}

impl From<FrameError> for BatchError {
    fn from(e: FrameError) -> Self {
        BatchError::Frame(e)
    }
}

/// Builds both bodies of the BATCH message that starts at `off` in `body`.
pub fn rewrite_batch(
    body: &Bytes,
    off: usize,
    keyspace: Option<&str>,
    replace_now: bool,
    lookup: impl Fn(&[u8]) -> Option<Prepared>,
) -> Result<BatchBodies, BatchError> {
    let mut r = Reader::at(body, off);
    r.byte()?; // batch type
    let n = r.short()?;
    let mut origin = BytesMut::with_capacity(body.len());
    let mut target = BytesMut::with_capacity(body.len());
    origin.put_slice(&body[..r.pos()]);
    target.put_slice(&body[..r.pos()]);
    let mut origin_changed = false;
    let mut ids = Vec::new();
    let mut writes = Vec::new();
    let mut risks = Vec::new();
    for _ in 0..n {
        let start = r.pos();
        let mut now = None;
        match r.byte()? {
            0 => {
                let text = r.long_string()?;
                let tables = tables_of(text, keyspace);
                risks.extend(crate::statements::unsafe_writes::risks(
                    &tables,
                    text,
                    replace_now,
                ));
                writes.extend(tables);
                match replace_now
                    .then(|| replace_with_literals(text, new_timeuuid))
                    .flatten()
                {
                    Some(new) => {
                        origin_changed = true;
                        for b in [&mut origin, &mut target] {
                            b.put_u8(0);
                            wire::put_long_string(b, &new);
                        }
                    }
                    None => {
                        origin.put_slice(&body[start..r.pos()]);
                        target.put_slice(&body[start..r.pos()]);
                    }
                }
            }
            1 => {
                let id = Bytes::copy_from_slice(r.short_bytes()?);
                let entry = lookup(&id).ok_or_else(|| BatchError::Unprepared(id.clone()))?;
                match &entry.origin_id {
                    Some(origin_id) => {
                        origin.put_u8(1);
                        wire::put_short_bytes(&mut origin, origin_id);
                        origin_changed = true;
                    }
                    None => origin.put_slice(&body[start..r.pos()]),
                }
                target.put_u8(1);
                wire::put_short_bytes(&mut target, &entry.target_id);
                writes.extend(entry.writes.iter().cloned());
                risks.extend(entry.risks.iter().cloned());
                now = entry.now.clone();
                ids.push(ChildIds {
                    origin: entry.origin_id.clone().unwrap_or_else(|| id.clone()),
                    client: id,
                    target: entry.target_id,
                });
            }
            k => return Err(FrameError::Malformed(format!("batch child kind {k}")).into()),
        }
        let values_start = r.pos();
        match now {
            Some(markers) => {
                let client = read_entries(body, &mut r, false)?;
                let uuids = fresh_values(&markers);
                origin_changed = true;
                put_batch_child_values(&mut origin, &client, &markers, &uuids);
                put_batch_child_values(&mut target, &client, &markers, &uuids);
            }
            None => {
                read_entries(body, &mut r, false)?;
                origin.put_slice(&body[values_start..r.pos()]);
                target.put_slice(&body[values_start..r.pos()]);
            }
        }
    }
    origin.put_slice(&body[r.pos()..]);
    target.put_slice(&body[r.pos()..]);
    Ok(BatchBodies {
        origin: if origin_changed {
            origin.freeze()
        } else {
            body.clone()
        },
        target: target.freeze(),
        ids,
        writes,
        risks,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::statements::prepared_now::NowMarkers;
    use crate::statements::routing::Route;
    use std::sync::Arc;

    /// (kind, statement text or id, values)
    type Child<'a> = (u8, &'a [u8], &'a [&'a [u8]]);

    fn batch(children: &[Child<'_>]) -> Bytes {
        let mut b = BytesMut::new();
        b.put_u8(0);
        b.put_u16(children.len() as u16);
        for (kind, q, values) in children {
            b.put_u8(*kind);
            if *kind == 0 {
                wire::put_long_string(&mut b, std::str::from_utf8(q).unwrap());
            } else {
                wire::put_short_bytes(&mut b, q);
            }
            b.put_u16(values.len() as u16);
            for v in *values {
                wire::put_bytes(&mut b, Some(v));
            }
        }
        b.put_u16(0x0001);
        b.put_u8(0);
        b.freeze()
    }

    #[test]
    fn batch_children_get_identical_timeuuids_and_each_cluster_s_own_id() {
        let body = batch(&[
            (0, b"INSERT INTO ks.a (k, ts) VALUES (1, now())", &[]),
            (1, b"CID", &[b"kk"]),
        ]);
        // The client knows the statement by the id of its own text; the clusters prepared the
        // rewrite and know it by theirs.
        let entry = Prepared {
            origin_id: Some(Bytes::from_static(b"ORIGINID")),
            target_id: Bytes::from_static(b"TARGETID"),
            route: Route::Both,
            query: None,
            writes: vec![TableRef {
                keyspace: "ks".into(),
                table: "b".into(),
            }]
            .into(),
            now: Some(Arc::new(NowMarkers {
                positions: vec![1],
                names: vec!["ts".into()],
                kinds: vec![crate::statements::cql_functions::Func::TimeUuid],
            })),
            risks: Default::default(),
        };
        let out = rewrite_batch(&body, 0, None, true, |id| {
            (id == b"CID").then(|| entry.clone())
        })
        .unwrap();
        assert_eq!(out.writes.len(), 2);
        assert_eq!(
            out.ids,
            vec![ChildIds {
                client: Bytes::from_static(b"CID"),
                origin: Bytes::from_static(b"ORIGINID"),
                target: entry.target_id.clone(),
            }]
        );
        // Same statement text and values on both sides; only the id differs.
        let strip = |b: &Bytes, id: &[u8]| {
            let s = b.to_vec();
            let pos = s.windows(id.len()).position(|w| w == id).unwrap();
            // The id and its [short bytes] length.
            [&s[..pos - 2], &s[pos + id.len()..]].concat()
        };
        assert_eq!(
            strip(&out.origin, b"ORIGINID"),
            strip(&out.target, b"TARGETID")
        );
        let text = String::from_utf8_lossy(&out.origin);
        assert!(!text.contains("now()"), "{text}");
        // The prepared child now has two values, the timeuuid second.
        let mut r = Reader::at(&out.origin, out.origin.len() - 3 - 2 - 4 - 16 - 4 - 2);
        assert_eq!(r.short().unwrap(), 2);
        assert_eq!(r.bytes().unwrap().unwrap(), b"kk");
        assert_eq!(r.bytes().unwrap().unwrap().len(), 16);

        let e = rewrite_batch(&body, 0, None, true, |_| None);
        assert!(matches!(e, Err(BatchError::Unprepared(id)) if id.as_ref() == b"CID"));
        let plain = rewrite_batch(&body, 0, None, false, |_| {
            Some(Prepared {
                origin_id: None,
                now: None,
                risks: Default::default(),
                ..entry.clone()
            })
        })
        .unwrap();
        assert_eq!(
            plain.origin, body,
            "nothing to change: origin body forwarded as is"
        );
    }
}
