//! Bytes from a client, as the proxy reads them: frames are decoded (with the compression the
//! first input byte picks) and each request goes through the same parsing the session does
//! before it routes: custom payload skip, query string, classifier.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    zdm_proxy::fuzzing::decode_and_classify(data);
});
