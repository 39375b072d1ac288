//! Bytes as a scripted BMC's raw HTTP answers to the Redfish driver: the
//! first byte picks two driver calls, the rest is the answers, separated
//! by `\n~~~\n` (`baton_tests::fuzzing::RedfishTarget`).
#![no_main]

use std::sync::OnceLock;

use baton_tests::fuzzing::{redfish_runtime, RedfishTarget};
use tokio::runtime::Runtime;

static TARGET: OnceLock<(Runtime, RedfishTarget)> = OnceLock::new();

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let (runtime, target) = TARGET.get_or_init(|| {
        let runtime = redfish_runtime();
        let target = runtime.block_on(RedfishTarget::start());
        (runtime, target)
    });
    runtime.block_on(target.run(data));
});
