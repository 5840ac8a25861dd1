//! Property tests (no sandbox needed): random bytes and mutated valid frames through the frame
//! decoder and the request classifier never panic, never hang, never allocate for a bomb.
//! The cargo-fuzz targets in `proxy/fuzz` run the same entry points for longer.
use std::sync::mpsc;
use std::time::Duration;

use proptest::prelude::*;
use zdm_proxy::fuzzing::{classify_all, decode_and_classify, decode_segments};

/// Runs `f` on a helper thread and fails if it takes longer than a generous bound (a hang),
/// or panics.
fn within_bound<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    let worker = std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    match rx.recv_timeout(Duration::from_secs(20)) {
        Ok(v) => v,
        Err(_) => {
            // A panic drops the sender: report it as such rather than as a hang.
            if worker.is_finished() {
                panic!("decoder panicked: {:?}", worker.join().err());
            }
            panic!("decoder did not return within 20 s (hang)")
        }
    }
}

/// A valid v4 request frame: header + body, optionally LZ4/Snappy compressed (as the first
/// byte of the fuzz input selects: 0 none, 1 LZ4, 2 Snappy).
fn frame(compression: u8, opcode: u8, stream: i16, body: &[u8]) -> Vec<u8> {
    let (flags, body) = match compression % 3 {
        0 => (0u8, body.to_vec()),
        1 => {
            let mut b = (body.len() as u32).to_be_bytes().to_vec();
            b.extend(lz4_flex::block::compress(body));
            (1, b)
        }
        _ => (1, snap::raw::Encoder::new().compress_vec(body).unwrap()),
    };
    let mut out = vec![0x04, flags];
    out.extend(stream.to_be_bytes());
    out.push(opcode);
    out.extend((body.len() as u32).to_be_bytes());
    out.extend(body);
    out
}

fn long_string(s: &str) -> Vec<u8> {
    let mut b = (s.len() as u32).to_be_bytes().to_vec();
    b.extend(s.as_bytes());
    b
}

/// QUERY / PREPARE / EXECUTE / BATCH bodies built from a statement and an id.
fn body(kind: u8, query: &str, id: &[u8]) -> (u8, Vec<u8>) {
    match kind % 4 {
        0 => {
            let mut b = long_string(query);
            b.extend([0x00, 0x01, 0x00]); // consistency ONE, no flags
            (0x07, b)
        }
        1 => (0x09, long_string(query)),
        2 => {
            let mut b = (id.len() as u16).to_be_bytes().to_vec();
            b.extend(id);
            b.extend([0x00, 0x01, 0x00]);
            (0x0A, b)
        }
        _ => {
            let mut b = vec![0x00, 0x00, 0x02]; // logged, 2 children
            b.push(0);
            b.extend(long_string(query));
            b.extend([0x00, 0x01, 0x00, 0x00, 0x00, 0x01, 0x2a]); // one 1-byte value
            b.push(1);
            b.extend((id.len() as u16).to_be_bytes());
            b.extend(id);
            b.extend([0x00, 0x00]);
            b.extend([0x00, 0x01, 0x00]);
            (0x0D, b)
        }
    }
}

fn statement() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "(?i)(select|insert|update|delete|use|begin batch|/\\*|--) [ -~]{0,60}",
        "(?i)select [a-z_*, \"]{0,30} from (system\\.)?(local|peers|peers_v2|\"ks\"\\.t|t)[ -~]{0,20}",
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes_never_panic_or_hang(data in proptest::collection::vec(any::<u8>(), 0..2048)) {
        within_bound(move || decode_and_classify(&data));
    }

    #[test]
    fn random_bytes_as_v5_segments_never_panic_or_hang(data in proptest::collection::vec(any::<u8>(), 0..2048)) {
        within_bound(move || decode_segments(&data));
    }

    /// Valid v5 segment streams (plain or LZ4; several envelopes per segment, or one envelope
    /// split over segments) decode to their envelopes; mutated, they never panic (the CRCs
    /// refuse nearly every mutation).
    #[test]
    fn valid_segments_decode_and_mutations_never_panic(
        lz4 in any::<bool>(),
        kind in 0u8..4,
        q in statement(),
        id in proptest::collection::vec(any::<u8>(), 0..20),
        repeat in 1usize..4,
        pad in 0usize..300_000,
        flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 0..4),
    ) {
        let (op, mut b) = body(kind, &q, &id);
        if repeat == 1 && kind == 0 {
            b.resize(b.len() + pad, 0); // sometimes larger than one segment
        }
        let mut envelopes = Vec::new();
        for i in 0..repeat {
            let mut one = frame(0, op, i as i16, &b);
            one[0] = 5;
            envelopes.extend(one);
        }
        let mut segments = bytes::BytesMut::new();
        zdm_proxy::protocol::segment::encode(&envelopes, lz4, &mut segments);
        let mut input = vec![lz4 as u8];
        input.extend(&segments);
        let valid = input.clone();
        prop_assert_eq!(within_bound(move || decode_segments(&valid)), repeat);
        for (at, byte) in flips {
            let i = at % input.len();
            input[i] = byte;
        }
        within_bound(move || decode_segments(&input));
    }

    #[test]
    fn random_statements_classify(q in statement()) {
        within_bound(move || { classify_all(&q); });
    }

    #[test]
    fn valid_frames_decode_and_mutations_never_panic(
        compression in 0u8..3,
        kind in 0u8..4,
        stream in any::<i16>(),
        q in statement(),
        id in proptest::collection::vec(any::<u8>(), 0..20),
        flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 0..8),
        cut in proptest::option::of(any::<usize>()),
        repeat in 1usize..4,
    ) {
        let (op, b) = body(kind, &q, &id);
        let one = frame(compression, op, stream, &b);
        let mut input = vec![compression];
        for _ in 0..repeat {
            input.extend(&one);
        }
        // The unmutated stream decodes to exactly `repeat` frames.
        let valid = input.clone();
        prop_assert_eq!(within_bound(move || decode_and_classify(&valid)), repeat);
        for (at, byte) in flips {
            let i = at % input.len();
            input[i] = byte;
        }
        if let Some(c) = cut {
            input.truncate(c % (input.len() + 1));
        }
        within_bound(move || decode_and_classify(&input));
    }
}

/// Compression bombs: a few bytes claiming a huge decompressed length are refused by the
/// length check, before an allocation of that size.
#[test]
fn decompression_bombs_are_refused() {
    use tokio_util::codec::Decoder;
    use zdm_proxy::protocol::frame::{Compression, FrameCodec, FrameError};
    for (compression, body) in [
        // LZ4: claims 200 MB from 4 bytes.
        (
            Compression::Lz4,
            [0x0B, 0xEB, 0xC2, 0x00, 0x10, 0x00, 0x00, 0x00].to_vec(),
        ),
        // Snappy: varint preamble claiming ~4 GB.
        (
            Compression::Snappy,
            vec![0xFF, 0xFF, 0xFF, 0xFF, 0x0F, 0x00],
        ),
    ] {
        let mut input = vec![0x04, 0x01, 0x00, 0x01, 0x07];
        input.extend((body.len() as u32).to_be_bytes());
        input.extend(&body);
        let mut codec = FrameCodec::client_side(4);
        codec.set_compression(Some(compression));
        match codec.decode(&mut bytes::BytesMut::from(&input[..])) {
            Err(FrameError::Compression(msg)) => {
                assert!(msg.contains("impossible"), "{compression:?}: {msg}")
            }
            other => panic!("{compression:?} bomb not refused: {other:?}"),
        }
    }
}
