//! Entry points for the fuzz targets (`proxy/fuzz`) and the property tests: untrusted bytes
//! through the same decoding and parsing a client's request gets before it is routed. They
//! must return (an error is fine) for any input: no panic, no hang, no huge allocation.

use bytes::BytesMut;
use tokio_util::codec::Decoder;

use crate::protocol::frame::{opcode, Compression, FrameCodec};
use crate::protocol::wire::Reader;
use crate::statements::routing::{self, Route, SystemTable};

/// Decodes `data` as a client byte stream; the first byte picks the negotiated compression
/// (none, LZ4, Snappy). Each decoded request is parsed as the session would. Returns the
/// number of frames decoded.
pub fn decode_and_classify(data: &[u8]) -> usize {
    let Some((&pick, stream)) = data.split_first() else {
        return 0;
    };
    let mut codec = FrameCodec::client_side(crate::protocol::frame::VERSION);
    codec.set_compression(match pick % 3 {
        0 => None,
        1 => Some(Compression::Lz4),
        _ => Some(Compression::Snappy),
    });
    let mut buf = BytesMut::from(stream);
    let mut frames = 0;
    // Each successful decode consumes at least a header, so this loop is bounded.
    while let Ok(Some(frame)) = codec.decode(&mut buf) {
        frames += 1;
        let Ok(off) = frame.message_offset() else {
            continue;
        };
        let mut r = Reader::at(&frame.body, off);
        match frame.opcode {
            opcode::QUERY | opcode::PREPARE => {
                if let Ok(query) = r.long_string() {
                    classify_all(query);
                }
            }
            opcode::EXECUTE => {
                let _ = r.short_bytes();
            }
            opcode::BATCH => walk_batch(&mut r),
            _ => {}
        }
    }
    frames
}

/// Decodes `data` as a v5 client's byte stream after its handshake: segments (the first byte
/// picks LZ4 or none), then the envelopes in them, each parsed as `decode_and_classify` does.
/// Returns the number of envelopes decoded.
pub fn decode_segments(data: &[u8]) -> usize {
    let Some((&pick, stream)) = data.split_first() else {
        return 0;
    };
    let mut codec = FrameCodec::client_side(crate::protocol::frame::V5);
    // The handshake: a v5 STARTUP, then segments (with LZ4 if the first byte says so).
    let mut startup = BytesMut::from(&[5u8, 0, 0, 0, opcode::STARTUP, 0, 0, 0, 0][..]);
    if !matches!(codec.decode(&mut startup), Ok(Some(_))) {
        return 0;
    }
    codec.set_compression((pick & 1 == 1).then_some(Compression::Lz4));
    codec.start_segments();
    let mut buf = BytesMut::from(stream);
    let mut frames = 0;
    // Each successful decode consumes at least a segment header, so this loop is bounded.
    while let Ok(Some(frame)) = codec.decode(&mut buf) {
        frames += 1;
        if let Ok(off) = frame.message_offset() {
            let mut r = Reader::at(&frame.body, off);
            if matches!(frame.opcode, opcode::QUERY | opcode::PREPARE) {
                if let Ok(query) = r.long_string() {
                    classify_all(query);
                }
            }
        }
    }
    frames
}

/// Walks a BATCH body the way the session does (kind, query or id, values).
fn walk_batch(r: &mut Reader<'_>) {
    let (Ok(_), Ok(n)) = (r.byte(), r.short()) else {
        return;
    };
    for _ in 0..n {
        let ok = match r.byte() {
            Ok(0) => r.long_string().map(classify_all).is_ok(),
            Ok(1) => r.short_bytes().is_ok(),
            _ => false,
        };
        if !ok {
            return;
        }
        let Ok(nv) = r.short() else { return };
        for _ in 0..nv {
            match r.int() {
                Ok(len) if len > 0 => {
                    if r.take(len as usize, "value").is_err() {
                        return;
                    }
                }
                Ok(_) => {}
                Err(_) => return,
            }
        }
    }
}

/// Every parser that sees statement text: classifier (with and without a current keyspace),
/// USE detection and the topology SELECT list parser.
pub fn classify_all(query: &str) -> Route {
    let route = routing::classify(query, None);
    let _ = routing::classify(query, Some("system"));
    let _ = routing::use_keyspace(query);
    for t in [SystemTable::Local, SystemTable::Peers, SystemTable::PeersV2] {
        let _ = routing::topology_select(query, t);
    }
    route
}
