//! CQL native protocol v4 frame codec.
//!
//! Written by hand on `tokio_util::codec` because no maintained crate offers a *server-side*
//! raw passthrough: driver crates (scylla-cql, cdrs) parse every message into typed structs,
//! which would force a decode/re-encode on the hot path. Here a frame is its 9-byte header plus
//! the body as `Bytes`; bodies are only looked into by the modules that must (routing,
//! prepared-id rewriting) and are otherwise forwarded unchanged.
//!
//! Compression (LZ4 / Snappy) is applied only on the client side of the proxy, after the
//! client's STARTUP asked for it; connections to the clusters are uncompressed.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use tokio_util::codec::{Decoder, Encoder};

/// The only protocol version the proxy speaks.
pub const VERSION: u8 = 4;
/// Direction bit of the version byte: set on responses.
pub const RESPONSE: u8 = 0x80;
/// Header flag: the body is compressed.
pub const FLAG_COMPRESSION: u8 = 0x01;
/// Header flag: a response body starts with the tracing session id.
pub const FLAG_TRACING: u8 = 0x02;
/// Header flag: the body starts with a custom payload (bytes map).
pub const FLAG_CUSTOM_PAYLOAD: u8 = 0x04;
/// Header flag: a response body carries warnings (a string list) before the message.
pub const FLAG_WARNING: u8 = 0x08;
/// The protocol limits a frame body to 256 MB.
pub const MAX_BODY: usize = 256 * 1024 * 1024;
const HEADER_LEN: usize = 9;

/// Opcodes of protocol v4.
pub mod opcode {
    pub const ERROR: u8 = 0x00;
    pub const STARTUP: u8 = 0x01;
    pub const READY: u8 = 0x02;
    pub const AUTHENTICATE: u8 = 0x03;
    pub const OPTIONS: u8 = 0x05;
    pub const SUPPORTED: u8 = 0x06;
    pub const QUERY: u8 = 0x07;
    pub const RESULT: u8 = 0x08;
    pub const PREPARE: u8 = 0x09;
    pub const EXECUTE: u8 = 0x0A;
    pub const REGISTER: u8 = 0x0B;
    pub const EVENT: u8 = 0x0C;
    pub const BATCH: u8 = 0x0D;
    pub const AUTH_CHALLENGE: u8 = 0x0E;
    pub const AUTH_RESPONSE: u8 = 0x0F;
    pub const AUTH_SUCCESS: u8 = 0x10;
}

/// One protocol frame: header fields and the (uncompressed) body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// Raw version byte, direction bit included.
    pub version: u8,
    pub flags: u8,
    pub stream: i16,
    pub opcode: u8,
    pub body: Bytes,
}

impl Frame {
    /// Where this response's message starts in its body (the free [`response_message_offset`]
    /// on the frame's own flags and body). Requests: [`Frame::message_offset`].
    pub fn response_message_offset(&self) -> Result<usize, FrameError> {
        response_message_offset(self.flags, &self.body)
    }

    pub fn request(stream: i16, opcode: u8, body: Bytes) -> Frame {
        Frame {
            version: VERSION,
            flags: 0,
            stream,
            opcode,
            body,
        }
    }

    pub fn response(stream: i16, opcode: u8, body: Bytes) -> Frame {
        Frame {
            version: VERSION | RESPONSE,
            flags: 0,
            stream,
            opcode,
            body,
        }
    }

    /// Offset in a request `body` where the message proper starts, after an optional custom
    /// payload. (Responses: `response_message_offset`.)
    pub fn message_offset(&self) -> Result<usize, FrameError> {
        if self.flags & FLAG_CUSTOM_PAYLOAD == 0 {
            return Ok(0);
        }
        let mut r = crate::wire::Reader::new(&self.body);
        let n = r.short()?;
        for _ in 0..n {
            r.string()?;
            r.bytes()?;
        }
        Ok(r.pos())
    }
}

/// Offset of the message proper in a response body: after the tracing id, the warnings and
/// the custom payload, in that order, when the header `flags` say they are there.
pub fn response_message_offset(flags: u8, body: &[u8]) -> Result<usize, FrameError> {
    let mut r = crate::wire::Reader::new(body);
    if flags & FLAG_TRACING != 0 {
        r.take(16, "tracing id")?;
    }
    if flags & FLAG_WARNING != 0 {
        let n = r.short()?;
        for _ in 0..n {
            r.string()?;
        }
    }
    if flags & FLAG_CUSTOM_PAYLOAD != 0 {
        let n = r.short()?;
        for _ in 0..n {
            r.string()?;
            r.bytes()?;
        }
    }
    Ok(r.pos())
}

/// Compression negotiated by the client's STARTUP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    Lz4,
    Snappy,
}

impl Compression {
    pub fn from_name(name: &str) -> Option<Compression> {
        match name.to_ascii_lowercase().as_str() {
            "lz4" => Some(Compression::Lz4),
            "snappy" => Some(Compression::Snappy),
            _ => None,
        }
    }

    fn compress(self, body: &[u8]) -> Result<Vec<u8>, FrameError> {
        match self {
            Compression::Lz4 => {
                // v4 LZ4 bodies carry the uncompressed length as a big-endian int first.
                let mut out = Vec::with_capacity(body.len() / 2 + 16);
                out.extend_from_slice(&(body.len() as u32).to_be_bytes());
                out.extend_from_slice(&lz4_flex::block::compress(body));
                Ok(out)
            }
            Compression::Snappy => snap::raw::Encoder::new()
                .compress_vec(body)
                .map_err(|e| FrameError::Compression(e.to_string())),
        }
    }

    fn decompress(self, body: &[u8]) -> Result<Vec<u8>, FrameError> {
        match self {
            Compression::Lz4 => {
                if body.len() < 4 {
                    return Err(FrameError::Compression(
                        "lz4 body shorter than 4 bytes".into(),
                    ));
                }
                let len = u32::from_be_bytes([body[0], body[1], body[2], body[3]]) as usize;
                // LZ4 cannot expand more than 255:1; a larger claim would only make us
                // allocate for a decompression bomb.
                if len > MAX_BODY || len > (body.len() - 4).saturating_mul(255) + 16 {
                    return Err(FrameError::Compression(format!(
                        "lz4 length {len} impossible for {} compressed bytes",
                        body.len() - 4
                    )));
                }
                lz4_flex::block::decompress(&body[4..], len)
                    .map_err(|e| FrameError::Compression(e.to_string()))
            }
            Compression::Snappy => {
                // Same bomb check: the claimed length is allocated up front, and Snappy does
                // not expand more than ~22:1.
                let len = snap::raw::decompress_len(body)
                    .map_err(|e| FrameError::Compression(e.to_string()))?;
                if len > MAX_BODY || len > body.len().saturating_mul(64) + 16 {
                    return Err(FrameError::Compression(format!(
                        "snappy length {len} impossible for {} compressed bytes",
                        body.len()
                    )));
                }
                snap::raw::Decoder::new()
                    .decompress_vec(body)
                    .map_err(|e| FrameError::Compression(e.to_string()))
            }
        }
    }
}

/// Why a byte stream could not be read as frames.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
    /// The peer speaks a protocol version we do not; `stream` is where to answer.
    #[error("Invalid or unsupported protocol version ({version}); supported versions are (4/v4)")]
    UnsupportedVersion { version: u8, stream: i16 },
    #[error("frame body length {0} is over the 256MB limit or negative")]
    TooLong(i64),
    #[error("compression: {0}")]
    Compression(String),
    #[error("malformed message: {0}")]
    Malformed(String),
}

/// Codec for one side of the proxy. `expect_response` says which direction bit incoming frames
/// must carry (clusters send responses, clients send requests).
#[derive(Debug, Clone)]
pub struct FrameCodec {
    compression: Option<Compression>,
    expect_response: bool,
}

impl FrameCodec {
    pub fn client_side() -> FrameCodec {
        FrameCodec {
            compression: None,
            expect_response: false,
        }
    }

    pub fn cluster_side() -> FrameCodec {
        FrameCodec {
            compression: None,
            expect_response: true,
        }
    }

    pub fn set_compression(&mut self, compression: Option<Compression>) {
        self.compression = compression;
    }
}

impl Decoder for FrameCodec {
    type Item = Frame;
    type Error = FrameError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Frame>, FrameError> {
        if src.is_empty() {
            return Ok(None);
        }
        let version_byte = src[0];
        let version = version_byte & 0x7f;
        if version != VERSION || (version_byte & RESPONSE != 0) != self.expect_response {
            // v1/v2 headers have a one-byte stream at offset 2; v3+ a two-byte one.
            let stream = match (version, src.len()) {
                (1 | 2, n) if n >= 3 => src[2] as i8 as i16,
                (_, n) if n >= 4 => i16::from_be_bytes([src[2], src[3]]),
                _ => 0,
            };
            return Err(FrameError::UnsupportedVersion { version, stream });
        }
        if src.len() < HEADER_LEN {
            return Ok(None);
        }
        let len = i32::from_be_bytes([src[5], src[6], src[7], src[8]]);
        if len < 0 || len as usize > MAX_BODY {
            return Err(FrameError::TooLong(len as i64));
        }
        let len = len as usize;
        if src.len() < HEADER_LEN + len {
            src.reserve(HEADER_LEN + len - src.len());
            return Ok(None);
        }
        let mut header = src.split_to(HEADER_LEN);
        let body = src.split_to(len).freeze();
        let version = header.get_u8();
        let mut flags = header.get_u8();
        let stream = header.get_i16();
        let opcode = header.get_u8();
        let body = if flags & FLAG_COMPRESSION != 0 {
            let compression = self.compression.ok_or_else(|| {
                FrameError::Compression("compressed frame but no compression negotiated".into())
            })?;
            flags &= !FLAG_COMPRESSION;
            Bytes::from(compression.decompress(&body)?)
        } else {
            body
        };
        Ok(Some(Frame {
            version,
            flags,
            stream,
            opcode,
            body,
        }))
    }
}

impl Encoder<Frame> for FrameCodec {
    type Error = FrameError;

    fn encode(&mut self, frame: Frame, dst: &mut BytesMut) -> Result<(), FrameError> {
        let mut flags = frame.flags & !FLAG_COMPRESSION;
        let compressed;
        let body: &[u8] = match self.compression {
            Some(c) if !frame.body.is_empty() => {
                compressed = c.compress(&frame.body)?;
                flags |= FLAG_COMPRESSION;
                &compressed
            }
            _ => &frame.body,
        };
        if body.len() > MAX_BODY {
            return Err(FrameError::TooLong(body.len() as i64));
        }
        dst.reserve(HEADER_LEN + body.len());
        dst.put_u8(frame.version);
        dst.put_u8(flags);
        dst.put_i16(frame.stream);
        dst.put_u8(frame.opcode);
        dst.put_u32(body.len() as u32);
        dst.put_slice(body);
        Ok(())
    }
}

/// Encodes the PROTOCOL_ERROR answer to a frame of an unsupported version in a header layout the
/// client can read: drivers parse the error, see "Invalid or unsupported protocol version" and
/// retry with a lower version. For versions above 4 we answer with a v4 header (what Cassandra
/// does when the client is ahead of it); for v3 the layout is the same as v4 but the version byte
/// is the client's; for v1/v2 the 8-byte header with a one-byte stream is used.
pub fn unsupported_version_response(version: u8, stream: i16) -> Vec<u8> {
    let message = format!(
        "Invalid or unsupported protocol version ({version}); supported versions are (4/v4)"
    );
    let body = crate::wire::error_body(crate::wire::error_code::PROTOCOL_ERROR, &message);
    let mut out = Vec::with_capacity(body.len() + 9);
    match version {
        1 | 2 => {
            out.push(RESPONSE | version);
            out.push(0);
            out.push(stream as i8 as u8);
        }
        3 => {
            out.push(RESPONSE | 3);
            out.push(0);
            out.extend_from_slice(&stream.to_be_bytes());
        }
        _ => {
            out.push(RESPONSE | VERSION);
            out.push(0);
            out.extend_from_slice(&stream.to_be_bytes());
        }
    }
    out.push(opcode::ERROR);
    out.extend_from_slice(&(body.len() as u32).to_be_bytes());
    out.extend_from_slice(&body);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roundtrip(compression: Option<Compression>) {
        let mut codec = FrameCodec::client_side();
        codec.set_compression(compression);
        let frame = Frame::request(7, opcode::QUERY, Bytes::from(vec![b'a'; 1000]));
        let mut buf = BytesMut::new();
        codec.encode(frame.clone(), &mut buf).unwrap();
        if compression.is_some() {
            assert!(buf.len() < 1000, "body was not compressed");
        }
        let decoded = codec.decode(&mut buf).unwrap().unwrap();
        assert_eq!(decoded, frame);
        assert!(buf.is_empty());
    }

    #[test]
    fn roundtrips_plain_lz4_and_snappy() {
        roundtrip(None);
        roundtrip(Some(Compression::Lz4));
        roundtrip(Some(Compression::Snappy));
    }

    #[test]
    fn waits_for_a_whole_frame() {
        let mut codec = FrameCodec::client_side();
        let mut buf = BytesMut::from(&[4u8, 0, 0, 1, 7, 0, 0, 0, 10, 1, 2][..]);
        assert!(codec.decode(&mut buf).unwrap().is_none());
    }

    #[test]
    fn refuses_other_versions_and_directions() {
        let mut codec = FrameCodec::client_side();
        let mut v5 = BytesMut::from(&[5u8, 0, 0, 3, 1, 0, 0, 0, 0][..]);
        assert!(matches!(
            codec.decode(&mut v5),
            Err(FrameError::UnsupportedVersion {
                version: 5,
                stream: 3
            })
        ));
        let mut response = BytesMut::from(&[0x84u8, 0, 0, 3, 1, 0, 0, 0, 0][..]);
        assert!(codec.decode(&mut response).is_err());
        let mut negative = BytesMut::from(&[4u8, 0, 0, 3, 1, 0xff, 0, 0, 0][..]);
        assert!(matches!(
            codec.decode(&mut negative),
            Err(FrameError::TooLong(_))
        ));
    }

    #[test]
    fn unsupported_version_answer_is_readable_by_old_and_new_clients() {
        let v5 = unsupported_version_response(5, 9);
        assert_eq!(&v5[..5], &[0x84, 0, 0, 9, 0]);
        let v2 = unsupported_version_response(2, 9);
        assert_eq!(&v2[..4], &[0x82, 0, 9, 0]);
    }
}
