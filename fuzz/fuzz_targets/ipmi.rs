//! Bytes as IPMI answers, decoded as the IPMI driver decodes them
//! (`baton_tests::fuzzing::ipmi`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| baton_tests::fuzzing::ipmi(data));
