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
//!
//! Protocol v5 (when both clusters speak it): STARTUP and its answer use the v4 layout with
//! version 5; once that answer (READY or AUTHENTICATE) has passed, each side wraps its frames ("envelopes" in the v5
//! spec) in segments (`segment`), LZ4 then applying to segments, not to envelopes.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use tokio_util::codec::{Decoder, Encoder};

/// The protocol version of frames the proxy makes itself; the codec writes each connection's
/// negotiated version (4 or 5) into the header of every frame it sends.
pub const VERSION: u8 = 4;
/// Protocol v5: spoken when the client asks for it and both clusters support it.
pub const V5: u8 = 5;
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
        let mut r = crate::protocol::wire::Reader::new(&self.body);
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
    let mut r = crate::protocol::wire::Reader::new(body);
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
    #[error("Invalid or unsupported protocol version ({version}); supported versions are ({})", supported_versions(*.max))]
    UnsupportedVersion { version: u8, stream: i16, max: u8 },
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
    /// The connection's protocol version; 0 on a client connection until its first frame.
    version: u8,
    /// Highest version a client may pick (5 only when both clusters speak it).
    max_version: u8,
    /// v5 segment framing, once started.
    segments: Option<Segments>,
    /// v5: LZ4 asked for by STARTUP, applied to segments once they start (the frames of the
    /// handshake are never compressed in v5).
    v5_lz4: bool,
}

/// State of v5 segment framing on one connection.
#[derive(Debug, Clone, Default)]
struct Segments {
    lz4: bool,
    /// Envelope bytes taken out of segments, not yet a whole envelope.
    envelopes: BytesMut,
}

/// How the "unsupported version" error lists the versions, as Cassandra does.
pub fn supported_versions(max: u8) -> &'static str {
    if max >= V5 {
        "4/v4, 5/v5"
    } else {
        "4/v4"
    }
}

impl FrameCodec {
    /// A client connection: v4, or v5 if `max_version` allows, as its first frame says.
    pub fn client_side(max_version: u8) -> FrameCodec {
        FrameCodec {
            compression: None,
            expect_response: false,
            version: 0,
            max_version,
            segments: None,
            v5_lz4: false,
        }
    }

    /// A cluster connection speaking `version`.
    pub fn cluster_side(version: u8) -> FrameCodec {
        FrameCodec {
            compression: None,
            expect_response: true,
            version,
            max_version: version,
            segments: None,
            v5_lz4: false,
        }
    }

    /// The compression a client's STARTUP asked for: on v4 frames from now on; on v5
    /// segments once they start (v5 has no Snappy: the handshake refuses it).
    pub fn set_compression(&mut self, compression: Option<Compression>) {
        if self.version >= V5 {
            self.v5_lz4 = compression == Some(Compression::Lz4);
        } else {
            self.compression = compression;
        }
    }

    /// The negotiated version (0 before a client's first frame).
    pub fn version(&self) -> u8 {
        self.version
    }

    /// Switches a v5 connection to segment framing (after STARTUP's READY or AUTHENTICATE); LZ4, if
    /// negotiated, then applies to segments. No-op on v4.
    pub fn start_segments(&mut self) {
        if self.version >= V5 && self.segments.is_none() {
            self.segments = Some(Segments {
                lz4: self.v5_lz4,
                envelopes: BytesMut::new(),
            });
        }
    }

    pub fn segmented(&self) -> bool {
        self.segments.is_some()
    }

    /// Checks the version byte of the frame at the start of `src` (locking a client
    /// connection's version on its first frame).
    fn check_version(&mut self, src: &[u8]) -> Result<(), FrameError> {
        let version_byte = src[0];
        let version = version_byte & 0x7f;
        let direction_ok = (version_byte & RESPONSE != 0) == self.expect_response;
        let acceptable = if self.version == 0 {
            version == VERSION || (version == V5 && self.max_version >= V5)
        } else {
            version == self.version
        };
        if !acceptable || !direction_ok {
            // v1/v2 headers have a one-byte stream at offset 2; v3+ a two-byte one.
            let stream = match (version, src.len()) {
                (1 | 2, n) if n >= 3 => src[2] as i8 as i16,
                (_, n) if n >= 4 => i16::from_be_bytes([src[2], src[3]]),
                _ => 0,
            };
            return Err(FrameError::UnsupportedVersion {
                version,
                stream,
                max: self.max_version.max(VERSION),
            });
        }
        if self.version == 0 {
            self.version = version;
        }
        Ok(())
    }

    /// Takes one frame (v4 layout: 9-byte header and body) off `src`, if whole.
    fn decode_frame(&mut self, src: &mut BytesMut) -> Result<Option<Frame>, FrameError> {
        if src.is_empty() {
            return Ok(None);
        }
        self.check_version(src)?;
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

impl Decoder for FrameCodec {
    type Item = Frame;
    type Error = FrameError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Frame>, FrameError> {
        // A buffer this large grew for a large frame (or segment); once that is taken off and
        // little is left, the rest moves to a buffer of the usual size, so an idle connection
        // does not keep the largest frame it ever saw (the frame's body keeps the large
        // allocation alive only as long as the body itself lives).
        let grown = src.capacity() > crate::protocol::buffers::READ_KEEP;
        let result = self.decode_message(src);
        if grown
            && src.len() <= crate::protocol::buffers::READ_INITIAL
            && matches!(result, Ok(Some(_)))
        {
            crate::protocol::buffers::shrink_read_buffer(src);
        }
        result
    }
}

impl FrameCodec {
    /// One frame off `src`: directly in v4 (and v5 before segments start), else out of the
    /// segments.
    fn decode_message(&mut self, src: &mut BytesMut) -> Result<Option<Frame>, FrameError> {
        let Some(mut seg) = self.segments.take() else {
            return self.decode_frame(src);
        };
        // v5: envelopes are read out of the segment payloads gathered so far; a segment is
        // taken off `src` only when they hold no whole envelope.
        let result = loop {
            match self.decode_frame(&mut seg.envelopes) {
                Ok(Some(f)) => {
                    if seg.envelopes.is_empty() {
                        // Its (empty) tail would keep the whole message's allocation alive.
                        seg.envelopes = BytesMut::new();
                    }
                    break Ok(Some(f));
                }
                Err(e) => break Err(e),
                Ok(None) => {}
            }
            match crate::protocol::segment::decode(src, seg.lz4) {
                Ok(Some(s)) => {
                    if seg.envelopes.is_empty() {
                        seg.envelopes = s.payload;
                    } else {
                        seg.envelopes.unsplit(s.payload);
                    }
                }
                Ok(None) => break Ok(None),
                Err(e) => break Err(e),
            }
        };
        self.segments = Some(seg);
        result
    }
}

impl Encoder<Frame> for FrameCodec {
    type Error = FrameError;

    fn encode(&mut self, frame: Frame, dst: &mut BytesMut) -> Result<(), FrameError> {
        // Every frame leaves with the connection's version (the proxy builds its own frames
        // with `VERSION`); a client connection that never sent a frame answers in v4.
        let direction = frame.version & RESPONSE;
        let version = match self.version {
            0 => VERSION,
            v => v,
        } | direction;
        let mut flags = frame.flags & !FLAG_COMPRESSION;
        if let Some(seg) = &self.segments {
            if frame.body.len() > MAX_BODY {
                return Err(FrameError::TooLong(frame.body.len() as i64));
            }
            let len = HEADER_LEN + frame.body.len();
            let put_envelope = |d: &mut BytesMut| {
                d.put_u8(version);
                d.put_u8(flags);
                d.put_i16(frame.stream);
                d.put_u8(frame.opcode);
                d.put_u32(frame.body.len() as u32);
                d.put_slice(&frame.body);
            };
            if !seg.lz4 && len <= crate::protocol::segment::MAX_PAYLOAD {
                crate::protocol::segment::encode_in_place(dst, len, put_envelope);
            } else {
                let mut envelope = BytesMut::with_capacity(len);
                put_envelope(&mut envelope);
                crate::protocol::segment::encode(&envelope, seg.lz4, dst);
            }
            return Ok(());
        }
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
        dst.put_u8(version);
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
/// does when the client is ahead of it; v5 when `max` is 5); for v3 the layout is the same as v4 but the version byte
/// is the client's; for v1/v2 the 8-byte header with a one-byte stream is used.
pub fn unsupported_version_response(version: u8, stream: i16, max: u8) -> Vec<u8> {
    let message = format!(
        "Invalid or unsupported protocol version ({version}); supported versions are ({})",
        supported_versions(max)
    );
    let body = crate::protocol::wire::error_body(
        crate::protocol::wire::error_code::PROTOCOL_ERROR,
        &message,
    );
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
            // Above what we speak: our highest version, which the driver then retries with,
            // on stream 0 as Cassandra answers it. gocql matches this answer to its probe only
            // on stream 0; on the request's own stream it gives up instead of downgrading.
            out.push(RESPONSE | max.clamp(VERSION, V5));
            out.push(0);
            out.extend_from_slice(&0i16.to_be_bytes());
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
        let mut codec = FrameCodec::client_side(VERSION);
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
    fn a_read_buffer_grown_for_a_large_frame_shrinks_back_once_it_is_decoded() {
        use crate::protocol::buffers::{READ_INITIAL, READ_KEEP};
        let mut codec = FrameCodec::cluster_side(VERSION);
        let big = Frame::response(1, opcode::RESULT, Bytes::from(vec![7u8; 300 * 1024]));
        let small = Frame::response(2, opcode::RESULT, Bytes::from_static(b"small"));
        let mut wire = BytesMut::new();
        codec.encode(big.clone(), &mut wire).unwrap();
        let big_len = wire.len();
        codec.encode(small.clone(), &mut wire).unwrap();
        // As from a socket: the start of the large frame into a buffer of the usual size.
        let mut src = BytesMut::with_capacity(READ_INITIAL);
        src.extend_from_slice(&wire.split_to(1000));
        assert_eq!(codec.decode(&mut src).unwrap(), None);
        assert!(src.capacity() > READ_KEEP, "the buffer grows for the frame");
        // The rest of it, and the first bytes of the next frame.
        src.extend_from_slice(&wire.split_to(big_len - 1000 + 3));
        assert_eq!(codec.decode(&mut src).unwrap(), Some(big));
        assert_eq!(src.len(), 3, "what follows the frame is kept");
        assert_eq!(
            src.capacity(),
            READ_INITIAL,
            "and moved to a buffer of the usual size"
        );
        src.extend_from_slice(&wire);
        assert_eq!(codec.decode(&mut src).unwrap(), Some(small));
    }

    #[test]
    fn waits_for_a_whole_frame() {
        let mut codec = FrameCodec::client_side(VERSION);
        let mut buf = BytesMut::from(&[4u8, 0, 0, 1, 7, 0, 0, 0, 10, 1, 2][..]);
        assert!(codec.decode(&mut buf).unwrap().is_none());
    }

    #[test]
    fn refuses_other_versions_and_directions() {
        let mut codec = FrameCodec::client_side(VERSION);
        let mut v5 = BytesMut::from(&[5u8, 0, 0, 3, 1, 0, 0, 0, 0][..]);
        assert!(matches!(
            codec.decode(&mut v5),
            Err(FrameError::UnsupportedVersion {
                version: 5,
                stream: 3,
                max: 4
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

    /// A v5 connection: the handshake in v4 layout, then envelopes in segments, a client's
    /// several envelopes in one segment, a large one over several, LZ4 at segment level.
    #[test]
    fn v5_frames_travel_in_segments_after_the_handshake() {
        for lz4 in [false, true] {
            let mut server = FrameCodec::client_side(V5);
            let mut client = FrameCodec::cluster_side(V5);
            client.expect_response = false; // the client's side of the same connection
            server.expect_response = false;
            let mut wire = BytesMut::new();
            let startup = Frame {
                version: V5,
                ..Frame::request(0, opcode::STARTUP, Bytes::from_static(b"x"))
            };
            client.encode(startup.clone(), &mut wire).unwrap();
            assert_eq!(wire[0], V5, "handshake frames keep the v4 layout");
            assert_eq!(
                server.decode(&mut wire).unwrap().unwrap().opcode,
                opcode::STARTUP
            );
            assert_eq!(server.version(), V5);
            let c = lz4.then_some(Compression::Lz4);
            server.set_compression(c);
            client.set_compression(c);
            server.start_segments();
            client.start_segments();
            // Three small envelopes packed into one self-contained segment by hand.
            let mut envelopes = BytesMut::new();
            let mut plain = FrameCodec::cluster_side(V5);
            for i in 0..3 {
                let f = Frame::request(i, opcode::QUERY, Bytes::from(vec![b'q'; 10 + i as usize]));
                plain.encode(f, &mut envelopes).unwrap();
            }
            crate::protocol::segment::encode(&envelopes, lz4, &mut wire);
            // And one envelope of 300 000 bytes, cut over three segments by the encoder.
            let big = Frame::request(9, opcode::QUERY, Bytes::from(vec![7u8; 300_000]));
            client.encode(big.clone(), &mut wire).unwrap();
            let mut got = Vec::new();
            while let Some(f) = server.decode(&mut wire).unwrap() {
                got.push(f);
            }
            assert!(wire.is_empty());
            assert_eq!(got.len(), 4, "lz4={lz4}");
            assert_eq!(
                got.iter().map(|f| f.stream).collect::<Vec<_>>(),
                [0, 1, 2, 9]
            );
            assert_eq!(got[2].body.len(), 12);
            assert_eq!(got[3].body, big.body);
            assert_eq!(got[3].version, V5);
        }
    }

    #[test]
    fn v5_is_refused_unless_allowed_and_a_connection_keeps_its_version() {
        let mut v4_only = FrameCodec::client_side(VERSION);
        let mut v5 = BytesMut::from(&[5u8, 0, 0, 3, 1, 0, 0, 0, 0][..]);
        assert!(matches!(
            v4_only.decode(&mut v5),
            Err(FrameError::UnsupportedVersion {
                version: 5,
                max: 4,
                ..
            })
        ));
        let mut codec = FrameCodec::client_side(V5);
        let mut first = BytesMut::from(&[4u8, 0, 0, 1, 5, 0, 0, 0, 0][..]);
        assert!(codec.decode(&mut first).unwrap().is_some());
        let mut then_v5 = BytesMut::from(&[5u8, 0, 0, 2, 5, 0, 0, 0, 0][..]);
        assert!(codec.decode(&mut then_v5).is_err());
    }

    #[test]
    fn unsupported_version_answer_is_readable_by_old_and_new_clients() {
        let v5 = unsupported_version_response(5, 9, 4);
        assert_eq!(
            &v5[..5],
            &[0x84, 0, 0, 0, 0],
            "stream 0, as Cassandra answers"
        );
        let v6 = unsupported_version_response(6, 9, 5);
        assert_eq!(&v6[..5], &[0x85, 0, 0, 0, 0]);
        let v2 = unsupported_version_response(2, 9, 5);
        assert_eq!(&v2[..4], &[0x82, 0, 9, 0]);
    }
}
