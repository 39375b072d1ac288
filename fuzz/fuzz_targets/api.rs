//! Bytes written to batond's Unix socket as they are, the answer read to
//! the close (`baton_tests::fuzzing::ApiTarget`): no panic, no 5xx, no
//! hang. batond runs in-process on a throwaway store in a temp dir, which
//! is left behind when the fuzzer exits.
//!
//! Inputs may enroll nodes and send them power commands: before the first
//! input the process moves into a network namespace of its own (with a
//! user namespace when not root), so whatever BMC address an input names,
//! nothing leaves the machine.
#![no_main]

use std::sync::OnceLock;

use baton_tests::fuzzing::ApiTarget;
use nix::sched::{unshare, CloneFlags};
use nix::unistd::{getegid, geteuid};
use tokio::runtime::Runtime;

static TARGET: OnceLock<(Runtime, ApiTarget)> = OnceLock::new();

/// Moves the (still single-threaded) process into a network namespace of
/// its own, keeping its uid and gid inside the user namespace it needs.
fn isolate_network() {
    let (uid, gid) = (geteuid(), getegid());
    if uid.is_root() {
        unshare(CloneFlags::CLONE_NEWNET).expect("a network namespace of its own");
        return;
    }
    unshare(CloneFlags::CLONE_NEWUSER | CloneFlags::CLONE_NEWNET).unwrap_or_else(|e| {
        panic!("cannot isolate the network ({e}); the api target needs user namespaces")
    });
    let write = |file: &str, text: String| {
        std::fs::write(file, text).unwrap_or_else(|e| panic!("cannot write {file}: {e}"));
    };
    write("/proc/self/setgroups", "deny".into());
    write("/proc/self/uid_map", format!("{uid} {uid} 1"));
    write("/proc/self/gid_map", format!("{gid} {gid} 1"));
}

libfuzzer_sys::fuzz_target!(init: isolate_network(), |data: &[u8]| {
    let (runtime, target) = TARGET.get_or_init(|| {
        let runtime = Runtime::new().expect("a tokio runtime");
        let target = runtime.block_on(ApiTarget::start());
        (runtime, target)
    });
    runtime.block_on(target.send(data));
});
