//! `target_consistency_level`: the consistency level of writes sent to target, overriding the
//! one the client chose.
//!
//! Why: during a migration the target is often smaller or in another region, and the
//! application's LOCAL_QUORUM may be too strict (or too lax) for it; the application cannot be
//! changed for the duration of the migration. Reads never go through this: they keep the
//! client's level.

use bytes::{Bytes, BytesMut};

use crate::protocol::frame::opcode;
use crate::protocol::wire::Reader;

/// The consistency levels a write may be given, with their protocol codes. SERIAL and
/// LOCAL_SERIAL are not among them: they are only valid as a serial consistency.
pub const LEVELS: &[(&str, u16)] = &[
    ("ANY", 0x0000),
    ("ONE", 0x0001),
    ("TWO", 0x0002),
    ("THREE", 0x0003),
    ("QUORUM", 0x0004),
    ("ALL", 0x0005),
    ("LOCAL_QUORUM", 0x0006),
    ("EACH_QUORUM", 0x0007),
    ("LOCAL_ONE", 0x000A),
];

/// The protocol code of a level name (case-insensitive).
pub fn parse(name: &str) -> Option<u16> {
    LEVELS
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name.trim()))
        .map(|(_, c)| *c)
}

pub fn name(code: u16) -> &'static str {
    LEVELS
        .iter()
        .find(|(_, c)| *c == code)
        .map(|(n, _)| *n)
        .unwrap_or("?")
}

/// Offset of the `<consistency>` of a QUERY, EXECUTE or BATCH message that starts at `off`
/// (in v5 an EXECUTE has its result metadata id after the statement id).
fn consistency_offset(op: u8, body: &[u8], off: usize, version: u8) -> Option<usize> {
    let mut r = Reader::at(body, off);
    match op {
        opcode::QUERY => {
            r.long_string().ok()?;
        }
        opcode::EXECUTE => {
            r.short_bytes().ok()?;
            if version >= crate::protocol::frame::V5 {
                r.short_bytes().ok()?;
            }
        }
        opcode::BATCH => {
            r.byte().ok()?;
            let n = r.short().ok()?;
            for _ in 0..n {
                match r.byte().ok()? {
                    0 => {
                        r.long_string().ok()?;
                    }
                    1 => {
                        r.short_bytes().ok()?;
                    }
                    _ => return None,
                }
                let nv = r.short().ok()?;
                for _ in 0..nv {
                    r.bytes().ok()?;
                }
            }
        }
        _ => return None,
    }
    (r.remaining() >= 2).then_some(r.pos())
}

/// `body` with its consistency set to `level`; unchanged if the message cannot be read (the
/// cluster will then refuse it as malformed, as it would have without the proxy).
pub fn override_level(op: u8, body: Bytes, off: usize, level: u16, version: u8) -> Bytes {
    let Some(at) = consistency_offset(op, &body, off, version) else {
        return body;
    };
    if body[at..at + 2] == level.to_be_bytes() {
        return body;
    }
    let mut b = BytesMut::from(&body[..]);
    b[at..at + 2].copy_from_slice(&level.to_be_bytes());
    b.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::wire;
    use bytes::BufMut;

    #[test]
    fn names_parse_case_insensitively_and_serial_is_refused() {
        assert_eq!(parse("local_quorum"), Some(6));
        assert_eq!(parse("THREE"), Some(3));
        assert_eq!(parse("SERIAL"), None);
        assert_eq!(parse("QUORUMS"), None);
        assert_eq!(name(0x000A), "LOCAL_ONE");
    }

    #[test]
    fn overrides_query_execute_and_batch_levels() {
        let mut q = BytesMut::new();
        wire::put_long_string(&mut q, "INSERT INTO t (k) VALUES (1)");
        q.put_u16(0x0001);
        q.put_u8(0);
        let out = override_level(opcode::QUERY, q.clone().freeze(), 0, 5, 4);
        assert_eq!(&out[out.len() - 3..out.len() - 1], &[0, 5]);
        assert_eq!(out.len(), q.len());

        let mut e = BytesMut::new();
        wire::put_short_bytes(&mut e, b"ID");
        e.put_u16(0x0001);
        e.put_u8(0);
        let out = override_level(opcode::EXECUTE, e.freeze(), 0, 3, 4);
        assert_eq!(&out[4..6], &[0, 3]);
        // v5: the result metadata id comes before the consistency, flags are an [int].
        let mut e = BytesMut::new();
        wire::put_short_bytes(&mut e, b"ID");
        wire::put_short_bytes(&mut e, b"META");
        e.put_u16(0x0001);
        e.put_u32(0);
        let out = override_level(opcode::EXECUTE, e.freeze(), 0, 3, 5);
        assert_eq!(&out[10..12], &[0, 3]);

        let mut b = BytesMut::new();
        b.put_u8(0);
        b.put_u16(2);
        b.put_u8(0);
        wire::put_long_string(&mut b, "INSERT INTO t (k) VALUES (?)");
        b.put_u16(1);
        wire::put_bytes(&mut b, Some(&[0, 0, 0, 1]));
        b.put_u8(1);
        wire::put_short_bytes(&mut b, b"ID");
        b.put_u16(0);
        let at = b.len();
        b.put_u16(0x0006);
        b.put_u8(0);
        let out = override_level(opcode::BATCH, b.freeze(), 0, 0, 4);
        assert_eq!(&out[at..at + 2], &[0, 0]);

        // Truncated: left alone.
        let short = Bytes::from_static(&[0, 0, 0, 9, b'x']);
        assert_eq!(override_level(opcode::QUERY, short.clone(), 0, 5, 4), short);
    }
}
