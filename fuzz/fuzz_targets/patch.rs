//! Bytes as the body of `PATCH /v1/nodes/{ident}`, applied by the
//! conductor's JSON Patch rules (`baton_tests::fuzzing::patch`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| baton_tests::fuzzing::patch(data));
