//! Protocol v5 framing: the segments that carry envelopes (what v4 calls frames) once a v5
//! connection is READY.
//!
//! A segment is a header, a payload of at most 128 KiB - 1 and a CRC32 trailer of the payload
//! (as sent, i.e. compressed if it is). Uncompressed header: 3 bytes little endian (payload
//! length in the low 17 bits, the self-contained flag in bit 17) and the CRC24 of those 3 bytes.
//! LZ4 header: 5 bytes little endian (compressed length 17 bits, uncompressed length 17 bits,
//! self-contained flag in bit 34; an uncompressed length of 0 says the payload was sent as is,
//! compression not paying) and the CRC24 of those 5 bytes. A self-contained segment carries one
//! or more whole envelopes; a large envelope is cut over several segments that are not.
//!
//! The CRCs are Cassandra's: CRC24 with the Koopman polynomial 0x1974F0B from 0x875060 over the
//! header bytes in wire order; CRC32 (IEEE) over the bytes FA 2D 55 CA and then the payload.
//! Both are little endian on the wire. A CRC mismatch is a corrupt stream: the connection ends.
//! Payloads stay raw bytes: the decoder only checks and, for LZ4, decompresses them.

use bytes::{BufMut, BytesMut};

use crate::protocol::frame::FrameError;

/// Largest payload of one segment (17 bits).
pub const MAX_PAYLOAD: usize = (1 << 17) - 1;
const UNCOMPRESSED_HEADER: usize = 6;
const COMPRESSED_HEADER: usize = 8;
const TRAILER: usize = 4;
const CRC24_INIT: u32 = 0x875060;
const CRC24_POLY: u32 = 0x1974F0B;
const CRC32_SEED: [u8; 4] = [0xFA, 0x2D, 0x55, 0xCA];

/// CRC24 of a segment header, over its bytes in wire order.
pub fn crc24(header: &[u8]) -> u32 {
    let mut crc = CRC24_INIT;
    for b in header {
        crc ^= (*b as u32) << 16;
        for _ in 0..8 {
            crc <<= 1;
            if crc & 0x100_0000 != 0 {
                crc ^= CRC24_POLY;
            }
        }
    }
    crc & 0xFF_FFFF
}

const CRC32_TABLE: [u32; 256] = {
    let mut table = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 {
                0xEDB8_8320 ^ (c >> 1)
            } else {
                c >> 1
            };
            k += 1;
        }
        table[i] = c;
        i += 1;
    }
    table
};

fn crc32_update(mut crc: u32, data: &[u8]) -> u32 {
    for b in data {
        crc = CRC32_TABLE[((crc ^ *b as u32) & 0xff) as usize] ^ (crc >> 8);
    }
    crc
}

/// CRC32 of a segment payload (seeded as Cassandra seeds it).
pub fn crc32(payload: &[u8]) -> u32 {
    !crc32_update(crc32_update(!0, &CRC32_SEED), payload)
}

fn le(bytes: &[u8]) -> u64 {
    bytes
        .iter()
        .rev()
        .fold(0u64, |acc, b| (acc << 8) | *b as u64)
}

/// One decoded segment: its (decompressed) payload and whether it holds whole envelopes.
#[derive(Debug)]
pub struct Segment {
    pub payload: BytesMut,
    pub self_contained: bool,
}

/// Takes one segment off the front of `src`; `None` until a whole one is there.
pub fn decode(src: &mut BytesMut, lz4: bool) -> Result<Option<Segment>, FrameError> {
    let header_len = if lz4 {
        COMPRESSED_HEADER
    } else {
        UNCOMPRESSED_HEADER
    };
    if src.len() < header_len {
        return Ok(None);
    }
    let fields = header_len - 3;
    let header = le(&src[..fields]);
    let crc = le(&src[fields..header_len]) as u32;
    if crc24(&src[..fields]) != crc {
        return Err(FrameError::Malformed(
            "v5 segment header CRC24 mismatch".into(),
        ));
    }
    let len = (header & MAX_PAYLOAD as u64) as usize;
    let (uncompressed, flag_bit) = if lz4 {
        (((header >> 17) & MAX_PAYLOAD as u64) as usize, 34)
    } else {
        (0, 17)
    };
    let self_contained = header & (1 << flag_bit) != 0;
    let total = header_len + len + TRAILER;
    if src.len() < total {
        src.reserve(total - src.len());
        return Ok(None);
    }
    let mut segment = src.split_to(total);
    let trailer = le(&segment[header_len + len..]) as u32;
    let _ = segment.split_to(header_len);
    segment.truncate(len);
    if crc32(&segment) != trailer {
        return Err(FrameError::Malformed(
            "v5 segment payload CRC32 mismatch".into(),
        ));
    }
    let payload = if lz4 && uncompressed != 0 {
        let out = lz4_flex::block::decompress(&segment, uncompressed)
            .map_err(|e| FrameError::Compression(format!("v5 segment: {e}")))?;
        BytesMut::from(&out[..])
    } else {
        segment
    };
    Ok(Some(Segment {
        payload,
        self_contained,
    }))
}

/// Appends `payload` to `dst` as segments: one self-contained segment when it fits, else cut
/// into segments of at most `MAX_PAYLOAD` bytes that are not self-contained (the payload is
/// then one large envelope, as the protocol requires).
pub fn encode(payload: &[u8], lz4: bool, dst: &mut BytesMut) {
    if payload.len() <= MAX_PAYLOAD {
        put_segment(payload, true, lz4, dst);
    } else {
        for chunk in payload.chunks(MAX_PAYLOAD) {
            put_segment(chunk, false, lz4, dst);
        }
    }
}

fn put_header(fields: u64, len: usize, dst: &mut BytesMut) {
    let bytes = fields.to_le_bytes();
    dst.put_slice(&bytes[..len]);
    dst.put_slice(&crc24(&bytes[..len]).to_le_bytes()[..3]);
}

fn put_segment(chunk: &[u8], self_contained: bool, lz4: bool, dst: &mut BytesMut) {
    debug_assert!(chunk.len() <= MAX_PAYLOAD);
    if !lz4 {
        dst.reserve(UNCOMPRESSED_HEADER + chunk.len() + TRAILER);
        put_header(chunk.len() as u64 | (self_contained as u64) << 17, 3, dst);
        dst.put_slice(chunk);
        dst.put_u32_le(crc32(chunk));
        return;
    }
    let compressed = lz4_flex::block::compress(chunk);
    // Sent as is (uncompressed length 0) when compression does not make it smaller.
    let (body, uncompressed) = if compressed.len() < chunk.len() {
        (&compressed[..], chunk.len())
    } else {
        (chunk, 0)
    };
    dst.reserve(COMPRESSED_HEADER + body.len() + TRAILER);
    let fields = body.len() as u64 | (uncompressed as u64) << 17 | (self_contained as u64) << 34;
    put_header(fields, 5, dst);
    dst.put_slice(body);
    dst.put_u32_le(crc32(body));
}

/// Appends one self-contained uncompressed segment whose payload `write` puts straight into
/// `dst` (an envelope, with no intermediate copy); the payload must not exceed `MAX_PAYLOAD`.
pub fn encode_in_place(dst: &mut BytesMut, len: usize, write: impl FnOnce(&mut BytesMut)) {
    debug_assert!(len <= MAX_PAYLOAD);
    dst.reserve(UNCOMPRESSED_HEADER + len + TRAILER);
    put_header(len as u64 | 1 << 17, 3, dst);
    let start = dst.len();
    write(dst);
    debug_assert_eq!(dst.len() - start, len);
    let crc = crc32(&dst[start..]);
    dst.put_u32_le(crc);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc_vectors() {
        // CRC32 (IEEE) check value, then the seeded variant: the seed is CRC'd first.
        assert_eq!(!crc32_update(!0, b"123456789"), 0xCBF4_3926);
        let mut seeded = CRC32_SEED.to_vec();
        seeded.extend_from_slice(b"123456789");
        assert_eq!(crc32(b"123456789"), !crc32_update(!0, &seeded));
        assert_eq!(crc32(b""), !crc32_update(!0, &CRC32_SEED));
        // Computed independently (Python's zlib.crc32 over the seed and the payload).
        assert_eq!(crc32(b"123456789"), 0xE2A2_61A7);
        assert_eq!(crc32(b"hello"), 0xB60E_8074);
        // A pinned header CRC24 (the algorithm is checked by Cassandra itself accepting the
        // proxy's segments in tests/protocol_v5.rs).
        assert_eq!(crc24(&[0x05, 0x00, 0x02]), 0x009A_9919);
        // CRC24 from its init over nothing is the init; one zero byte is 8 shift/xor rounds.
        assert_eq!(crc24(&[]), CRC24_INIT);
        let mut crc = CRC24_INIT;
        for _ in 0..8 {
            crc <<= 1;
            if crc & 0x100_0000 != 0 {
                crc ^= CRC24_POLY;
            }
        }
        assert_eq!(crc24(&[0]), crc & 0xFF_FFFF);
    }

    #[test]
    fn a_known_segment_header() {
        // A self-contained 5-byte uncompressed payload: header fields 0x020005, little endian.
        let mut dst = BytesMut::new();
        encode(b"hello", false, &mut dst);
        assert_eq!(&dst[..3], &[0x05, 0x00, 0x02]);
        assert_eq!(&dst[3..6], &crc24(&[0x05, 0x00, 0x02]).to_le_bytes()[..3]);
        assert_eq!(&dst[6..11], b"hello");
        assert_eq!(&dst[11..], &crc32(b"hello").to_le_bytes());
    }

    fn roundtrip(payload: &[u8], lz4: bool) -> Vec<Segment> {
        let mut dst = BytesMut::new();
        encode(payload, lz4, &mut dst);
        let mut out = Vec::new();
        // Fed in odd-sized pieces, as a socket would.
        let mut src = BytesMut::new();
        for piece in dst.chunks(7777) {
            src.extend_from_slice(piece);
            while let Some(s) = decode(&mut src, lz4).unwrap() {
                out.push(s);
            }
        }
        assert!(src.is_empty());
        let joined: Vec<u8> = out.iter().flat_map(|s| s.payload.to_vec()).collect();
        assert_eq!(joined, payload);
        out
    }

    #[test]
    fn small_payloads_are_one_self_contained_segment() {
        for lz4 in [false, true] {
            let segs = roundtrip(b"some envelope bytes", lz4);
            assert_eq!(segs.len(), 1);
            assert!(segs[0].self_contained);
        }
    }

    #[test]
    fn large_payloads_are_split_over_segments_that_are_not_self_contained() {
        let big: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        for lz4 in [false, true] {
            let segs = roundtrip(&big, lz4);
            assert_eq!(segs.len(), 3, "lz4={lz4}");
            assert!(segs.iter().all(|s| !s.self_contained));
            assert_eq!(segs[0].payload.len(), MAX_PAYLOAD);
        }
    }

    #[test]
    fn compression_shrinks_or_sends_as_is() {
        let mut dst = BytesMut::new();
        encode(&[b'a'; 10_000], true, &mut dst);
        assert!(dst.len() < 1000, "compressible payload not compressed");
        // Incompressible: sent as is, uncompressed length 0.
        let mut x = 0x2545_F491_4F6C_DD1Du64;
        let noise: Vec<u8> = (0..1000)
            .map(|_| {
                // xorshift: no repeats for LZ4 to find
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 24) as u8
            })
            .collect();
        let mut dst = BytesMut::new();
        encode(&noise, true, &mut dst);
        let fields = le(&dst[..5]);
        assert_eq!((fields >> 17) & MAX_PAYLOAD as u64, 0);
        roundtrip(&noise, true);
    }

    #[test]
    fn corruption_is_detected() {
        let mut dst = BytesMut::new();
        encode(b"payload", false, &mut dst);
        let mut bad_header = dst.clone();
        bad_header[0] ^= 1;
        assert!(decode(&mut bad_header, false).is_err());
        let mut bad_payload = dst.clone();
        bad_payload[7] ^= 1;
        assert!(decode(&mut bad_payload, false).is_err());
    }

    #[test]
    fn in_place_encoding_matches() {
        let mut a = BytesMut::new();
        encode(b"abc", false, &mut a);
        let mut b = BytesMut::new();
        encode_in_place(&mut b, 3, |d| d.put_slice(b"abc"));
        assert_eq!(a, b);
    }
}
