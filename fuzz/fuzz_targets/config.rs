//! Bytes as batond's config file: refused with problems named, or read
//! back alike once written out (`baton_tests::fuzzing::config`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| baton_tests::fuzzing::config(data));
