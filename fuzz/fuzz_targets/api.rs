//! Bytes written to batond's Unix socket as they are, the answer read to
//! the close (`baton_tests::fuzzing::ApiTarget`): no panic, no 5xx, no
//! hang. batond runs in-process on a throwaway store in a temp dir under
//! `$TMPDIR/baton-fuzz-api/<pid>`: libFuzzer exits without dropping it, so
//! each start removes those of processes that are gone.
//!
//! Inputs may enroll nodes and send them power commands: before the first
//! input the process moves into a network namespace of its own (with a
//! user namespace when not root), so whatever BMC address an input names,
//! nothing leaves the machine.
#![no_main]

use std::sync::OnceLock;

use baton_tests::fuzzing::ApiTarget;
use nix::sched::{unshare, CloneFlags};
use nix::sys::signal::kill;
use nix::unistd::{getegid, geteuid, Pid};
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

/// Points `TMPDIR` at a directory of this process's own, after removing
/// those left by fuzzers that have exited.
fn own_temp_dir() {
    let base = std::env::temp_dir().join("baton-fuzz-api");
    for entry in std::fs::read_dir(&base).into_iter().flatten().flatten() {
        let pid = entry.file_name().to_str().and_then(|n| n.parse().ok());
        if pid.is_some_and(|pid| kill(Pid::from_raw(pid), None).is_err()) {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
    let own = base.join(std::process::id().to_string());
    std::fs::create_dir_all(&own).expect("a temp dir of its own");
    std::env::set_var("TMPDIR", own);
}

libfuzzer_sys::fuzz_target!(init: { own_temp_dir(); isolate_network() }, |data: &[u8]| {
    let (runtime, target) = TARGET.get_or_init(|| {
        let runtime = Runtime::new().expect("a tokio runtime");
        let target = runtime.block_on(ApiTarget::start());
        (runtime, target)
    });
    runtime.block_on(target.send(data));
});
