//! Handing memory batond freed back to the system.
//!
//! glibc keeps what a thread frees in that thread's arena for reuse and
//! returns little of it on its own. batond's churn is the kind that leaves
//! it there: a power-sync sweep of 10 000 BMCs opens and closes 10 000 TLS
//! connections, each with tens of KiB of buffers, and a batch does the same
//! for its nodes. Left alone, batond stayed at about twice its live heap
//! after a sweep, and crept up by megabytes a minute under a steady sync
//! load (the soak bench) although the heap itself stayed flat. So a task
//! asks glibc to trim its arenas every [`TRIM_EVERY`]: a call that walks
//! the arenas (well under a millisecond at batond's sizes) and takes
//! nothing that is in use. Elsewhere than glibc it does nothing.
//!
//! And batond keeps one arena ([`use_one_arena`], before any thread
//! starts): glibc gives threads arenas of their own (up to eight per CPU),
//! each holding its own free memory, and batond's threads (the runtime's,
//! the blocking pool's, the store's) each leave some there. With one,
//! what one thread frees the next allocation anywhere reuses: a 10 000-node
//! sweep peaked at about 47 MB resident with the default and 36 MB with one
//! arena, the sweep's duration unchanged. The contention this could cost is
//! small: each thread's cache (tcache) serves most small allocations
//! without the arena's lock, and batond runs a few busy threads, not dozens.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

/// How often freed memory is handed back: often enough that one sweep's
/// churn does not pile up, rarely enough to cost nothing measurable.
pub const TRIM_EVERY: Duration = Duration::from_secs(2);

/// Trims until `stop`.
pub async fn run(stop: CancellationToken) {
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(TRIM_EVERY) => {}
        }
        // Off the runtime: the call locks each arena while it walks it.
        let _ = tokio::task::spawn_blocking(release_freed_memory).await;
    }
}

/// Asks the allocator to return the memory it holds free to the system;
/// whether it gave anything back.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
pub fn release_freed_memory() -> bool {
    // SAFETY: malloc_trim takes no pointers and touches only glibc's own
    // free lists, which it locks while it works; any thread may call it.
    unsafe { libc::malloc_trim(0) == 1 }
}

/// Other allocators return what they free themselves, or offer no such
/// call.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn release_freed_memory() -> bool {
    false
}

/// Makes every thread allocate from the one main arena; call before any
/// thread starts. Whether the allocator took the setting.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
pub fn use_one_arena() -> bool {
    // SAFETY: mallopt takes two integers and sets a glibc tunable; called
    // before other threads exist, it races with no allocation.
    unsafe { libc::mallopt(libc::M_ARENA_MAX, 1) == 1 }
}

/// Other allocators have no such setting.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn use_one_arena() -> bool {
    false
}

#[cfg(all(test, target_os = "linux", target_env = "gnu"))]
mod tests {
    use super::*;

    /// Memory freed below a live block stays with glibc until a trim
    /// hands it back.
    #[test]
    fn freed_memory_is_handed_back() {
        let mut blocks: Vec<Vec<u8>> = (0..2048).map(|_| vec![1u8; 16 * 1024]).collect();
        let last = blocks.pop();
        drop(blocks);
        assert!(release_freed_memory(), "32 MiB freed, nothing handed back");
        drop(last);
    }
}
