//! Any statement text through the request classifier and the topology SELECT parser.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(query) = std::str::from_utf8(data) {
        zdm_proxy::fuzzing::classify_all(query);
    }
});
