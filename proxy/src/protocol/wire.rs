//! Reading and writing the protocol's notations ([short], [string], [bytes], ...) and building
//! the few messages the proxy originates itself (errors, READY, SUPPORTED, ROWS).

use bytes::{BufMut, Bytes, BytesMut};

use crate::protocol::frame::FrameError;

/// Error codes of protocol v4 that the proxy emits or inspects.
pub mod error_code {
    pub const SERVER_ERROR: i32 = 0x0000;
    pub const PROTOCOL_ERROR: i32 = 0x000A;
    pub const BAD_CREDENTIALS: i32 = 0x0100;
    pub const UNAVAILABLE: i32 = 0x1000;
    pub const OVERLOADED: i32 = 0x1001;
    pub const WRITE_TIMEOUT: i32 = 0x1100;
    pub const READ_TIMEOUT: i32 = 0x1200;
    pub const READ_FAILURE: i32 = 0x1300;
    pub const WRITE_FAILURE: i32 = 0x1500;
    /// v5: a CAS (LWT) write whose outcome is unknown (its body is relayed as is).
    pub const CAS_WRITE_UNKNOWN: i32 = 0x1700;
    pub const SYNTAX_ERROR: i32 = 0x2000;
    pub const INVALID: i32 = 0x2200;
    pub const UNPREPARED: i32 = 0x2500;
}

/// RESULT kinds.
pub mod result_kind {
    pub const VOID: i32 = 0x0001;
    pub const ROWS: i32 = 0x0002;
    pub const SET_KEYSPACE: i32 = 0x0003;
    pub const PREPARED: i32 = 0x0004;
}

/// Reads the query-parameter flags of QUERY, EXECUTE and BATCH: a [byte] in v4, an [int] in v5.
pub fn query_flags(r: &mut Reader<'_>, version: u8) -> Result<u32, FrameError> {
    if version >= crate::protocol::frame::V5 {
        Ok(r.int()? as u32)
    } else {
        Ok(r.byte()? as u32)
    }
}

/// Writes query-parameter flags in `version`'s width (see `query_flags`).
pub fn put_query_flags(buf: &mut BytesMut, version: u8, flags: u32) {
    if version >= crate::protocol::frame::V5 {
        buf.put_u32(flags);
    } else {
        buf.put_u8(flags as u8);
    }
}

/// Query-parameter flags (the low byte, the same in v4 and v5), as QUERY and EXECUTE carry
/// them.
pub mod query_flags {
    pub const VALUES: u8 = 0x01;
    pub const SKIP_METADATA: u8 = 0x02;
    pub const NAMES_FOR_VALUES: u8 = 0x40;
}

/// A bounds-checked cursor over a message body.
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

fn short_input(what: &str) -> FrameError {
    FrameError::Malformed(format!("body too short for {what}"))
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Reader<'a> {
        Reader { buf, pos: 0 }
    }

    pub fn at(buf: &'a [u8], pos: usize) -> Reader<'a> {
        Reader { buf, pos }
    }

    pub fn pos(&self) -> usize {
        self.pos
    }

    pub fn remaining(&self) -> usize {
        self.buf.len().saturating_sub(self.pos)
    }

    pub fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], FrameError> {
        if self.remaining() < n {
            return Err(short_input(what));
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    pub fn byte(&mut self) -> Result<u8, FrameError> {
        Ok(self.take(1, "byte")?[0])
    }

    pub fn short(&mut self) -> Result<u16, FrameError> {
        let s = self.take(2, "short")?;
        Ok(u16::from_be_bytes([s[0], s[1]]))
    }

    pub fn int(&mut self) -> Result<i32, FrameError> {
        let s = self.take(4, "int")?;
        Ok(i32::from_be_bytes([s[0], s[1], s[2], s[3]]))
    }

    pub fn string(&mut self) -> Result<&'a str, FrameError> {
        let n = self.short()? as usize;
        std::str::from_utf8(self.take(n, "string")?)
            .map_err(|_| FrameError::Malformed("string is not UTF-8".into()))
    }

    pub fn long_string(&mut self) -> Result<&'a str, FrameError> {
        let n = self.int()?;
        if n < 0 {
            return Err(FrameError::Malformed("negative long string length".into()));
        }
        std::str::from_utf8(self.take(n as usize, "long string")?)
            .map_err(|_| FrameError::Malformed("long string is not UTF-8".into()))
    }

    /// [bytes]: None for null.
    pub fn bytes(&mut self) -> Result<Option<&'a [u8]>, FrameError> {
        let n = self.int()?;
        if n < 0 {
            return Ok(None);
        }
        Ok(Some(self.take(n as usize, "bytes")?))
    }

    pub fn short_bytes(&mut self) -> Result<&'a [u8], FrameError> {
        let n = self.short()? as usize;
        self.take(n, "short bytes")
    }

    pub fn string_map(&mut self) -> Result<Vec<(String, String)>, FrameError> {
        let n = self.short()?;
        let mut out = Vec::with_capacity(n as usize);
        for _ in 0..n {
            let k = self.string()?.to_string();
            let v = self.string()?.to_string();
            out.push((k, v));
        }
        Ok(out)
    }
}

pub fn put_string(buf: &mut BytesMut, s: &str) {
    buf.put_u16(s.len() as u16);
    buf.put_slice(s.as_bytes());
}

pub fn put_long_string(buf: &mut BytesMut, s: &str) {
    buf.put_i32(s.len() as i32);
    buf.put_slice(s.as_bytes());
}

pub fn put_bytes(buf: &mut BytesMut, b: Option<&[u8]>) {
    match b {
        Some(b) => {
            buf.put_i32(b.len() as i32);
            buf.put_slice(b);
        }
        None => buf.put_i32(-1),
    }
}

pub fn put_short_bytes(buf: &mut BytesMut, b: &[u8]) {
    buf.put_u16(b.len() as u16);
    buf.put_slice(b);
}

pub fn string_map(pairs: &[(&str, &str)]) -> Bytes {
    let mut buf = BytesMut::new();
    buf.put_u16(pairs.len() as u16);
    for (k, v) in pairs {
        put_string(&mut buf, k);
        put_string(&mut buf, v);
    }
    buf.freeze()
}

/// Body of an ERROR message without extra fields (valid for codes that carry none).
pub fn error_body(code: i32, message: &str) -> Bytes {
    let mut buf = BytesMut::with_capacity(6 + message.len());
    buf.put_i32(code);
    put_string(&mut buf, message);
    buf.freeze()
}

/// UNPREPARED error naming the statement id the client must re-prepare.
pub fn unprepared_body(id: &[u8]) -> Bytes {
    let mut buf = BytesMut::new();
    buf.put_i32(error_code::UNPREPARED);
    put_string(
        &mut buf,
        "Prepared statement unknown to the proxy or a cluster; re-prepare",
    );
    put_short_bytes(&mut buf, id);
    buf.freeze()
}

/// Reads the error code and message of an ERROR body.
pub fn parse_error(body: &[u8]) -> Option<(i32, String)> {
    let mut r = Reader::new(body);
    let code = r.int().ok()?;
    let msg = r.string().ok()?.to_string();
    Some((code, msg))
}

/// SUPPORTED answer the proxy gives to OPTIONS itself. `PROTOCOL_VERSIONS` lists what it
/// speaks now (`max`: v5 only while both clusters do), as Cassandra lists its own: drivers
/// and tools read it to pick a version.
pub fn supported_body(max: u8) -> Bytes {
    let versions: Vec<&str> = crate::protocol::frame::supported_versions(max)
        .split(", ")
        .collect();
    let mut buf = BytesMut::new();
    buf.put_u16(3);
    for (k, vs) in [
        ("CQL_VERSION", &["3.4.7"][..]),
        ("COMPRESSION", &["lz4", "snappy"][..]),
        ("PROTOCOL_VERSIONS", &versions[..]),
    ] {
        put_string(&mut buf, k);
        buf.put_u16(vs.len() as u16);
        for v in vs {
            put_string(&mut buf, v);
        }
    }
    buf.freeze()
}

/// Skips one [option] type description (recursively for collections/UDTs/tuples).
pub fn skip_type(r: &mut Reader<'_>) -> Result<u16, FrameError> {
    let id = r.short()?;
    match id {
        0x0000 => {
            r.string()?;
        }
        0x0020 | 0x0022 => {
            skip_type(r)?;
        }
        0x0021 => {
            skip_type(r)?;
            skip_type(r)?;
        }
        0x0030 => {
            r.string()?;
            r.string()?;
            let n = r.short()?;
            for _ in 0..n {
                r.string()?;
                skip_type(r)?;
            }
        }
        0x0031 => {
            let n = r.short()?;
            for _ in 0..n {
                skip_type(r)?;
            }
        }
        _ => {}
    }
    Ok(id)
}

/// One decoded row: (column name, raw cell value or null).
pub type Row = Vec<(String, Option<Vec<u8>>)>;

/// Parses a RESULT ROWS body into rows of raw cell values, by column name. Used only by the
/// proxy's own control connection (system.local), never on the client path.
pub fn parse_rows(body: &[u8]) -> Result<Vec<Row>, FrameError> {
    let mut r = Reader::new(body);
    if r.int()? != result_kind::ROWS {
        return Err(FrameError::Malformed("not a ROWS result".into()));
    }
    let flags = r.int()?;
    let ncols = r.int()?.max(0) as usize;
    if flags & 0x0002 != 0 {
        r.bytes()?; // paging state
    }
    if flags & 0x0004 != 0 {
        return Err(FrameError::Malformed("ROWS without metadata".into()));
    }
    let global = flags & 0x0001 != 0;
    if global {
        r.string()?;
        r.string()?;
    }
    let mut names = Vec::with_capacity(ncols);
    for _ in 0..ncols {
        if !global {
            r.string()?;
            r.string()?;
        }
        names.push(r.string()?.to_string());
        skip_type(&mut r)?;
    }
    let nrows = r.int()?.max(0) as usize;
    let mut rows = Vec::with_capacity(nrows);
    for _ in 0..nrows {
        let mut row = Vec::with_capacity(ncols);
        for name in &names {
            row.push((name.clone(), r.bytes()?.map(|b| b.to_vec())));
        }
        rows.push(row);
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `PROTOCOL_VERSIONS` of the proxy's SUPPORTED answer.
    fn listed_versions(body: &[u8]) -> Vec<String> {
        let mut r = Reader::new(body);
        let n = r.short().unwrap();
        for _ in 0..n {
            let key = r.string().unwrap().to_string();
            let values: Vec<String> = (0..r.short().unwrap())
                .map(|_| r.string().unwrap().to_string())
                .collect();
            if key == "PROTOCOL_VERSIONS" {
                return values;
            }
        }
        panic!("no PROTOCOL_VERSIONS");
    }

    #[test]
    fn supported_lists_v5_only_when_the_proxy_speaks_it() {
        assert_eq!(listed_versions(&supported_body(5)), ["4/v4", "5/v5"]);
        assert_eq!(listed_versions(&supported_body(4)), ["4/v4"]);
    }
}
