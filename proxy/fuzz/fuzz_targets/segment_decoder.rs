//! Bytes from a v5 client after its handshake: segments (uncompressed or LZ4, as the first
//! input byte picks) with their CRCs, then the envelopes they carry, each parsed as the
//! session would before routing.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    zdm_proxy::fuzzing::decode_segments(data);
});
