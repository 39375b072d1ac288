//! Checkpoints the write-ahead log on a thread of its own, so that copying
//! the WAL back into the database file (and its fsync) is never part of a
//! commit that a caller waits for.
//!
//! SQLite's automatic checkpoint runs inside the commit that crosses its
//! threshold: every thousand pages or so, one unlucky group commit — often a
//! 1000-server batch being accepted — also copied and synced megabytes. Here
//! the writer nudges this thread after each commit; the thread waits a
//! moment (so a burst of commits costs one checkpoint), then runs a PASSIVE
//! checkpoint, which never blocks the writer or the readers. The writer's
//! own automatic checkpoint stays as a backstop at a much larger size, in
//! case this thread falls behind.

use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rusqlite::Connection;

use crate::StoreError;

/// How long the thread lets commits gather before checkpointing them.
const GATHER: Duration = Duration::from_millis(200);

/// WAL pages after which the writer checkpoints by itself (SQLite's
/// default is 1000): only reached when this thread cannot keep up.
pub(crate) const BACKSTOP_PAGES: i64 = 20_000;

/// The nudging side, handed to the writer; dropping it stops the thread.
#[derive(Debug, Clone)]
pub(crate) struct Nudge(SyncSender<()>);

impl Nudge {
    /// Asks for a checkpoint soon; never blocks (one pending nudge is
    /// enough).
    pub(crate) fn commit_done(&self) {
        let _ = self.0.try_send(());
    }
}

/// The checkpointing thread, joined on drop (after every [`Nudge`] is gone).
#[derive(Debug)]
pub(crate) struct Checkpointer {
    thread: Option<JoinHandle<()>>,
}

impl Checkpointer {
    pub(crate) fn start(conn: Connection) -> Result<(Self, Nudge), StoreError> {
        let (nudge, nudged) = mpsc::sync_channel(1);
        let thread = std::thread::Builder::new()
            .name("baton-db-checkpoint".into())
            .spawn(move || run(&conn, &nudged))
            .map_err(|source| StoreError::Io {
                path: "baton-db-checkpoint thread".into(),
                source,
            })?;
        Ok((
            Self {
                thread: Some(thread),
            },
            Nudge(nudge),
        ))
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn run(conn: &Connection, nudged: &Receiver<()>) {
    while nudged.recv().is_ok() {
        let stopping = gather(nudged);
        checkpoint(conn);
        if stopping {
            return;
        }
    }
}

/// Lets further commits land for [`GATHER`]; true when the store is
/// closing (then there is nothing to wait for).
fn gather(nudged: &Receiver<()>) -> bool {
    let deadline = Instant::now() + GATHER;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return false;
        }
        match nudged.recv_timeout(left) {
            Ok(()) => {}
            Err(RecvTimeoutError::Timeout) => return false,
            Err(RecvTimeoutError::Disconnected) => return true,
        }
    }
}

fn checkpoint(conn: &Connection) {
    let result = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |row| {
        Ok((row.get::<_, i64>(1)?, row.get::<_, i64>(2)?))
    });
    match result {
        Ok((wal_pages, copied)) => {
            tracing::trace!(wal_pages, copied, "checkpointed the write-ahead log");
        }
        Err(error) => tracing::warn!(%error, "cannot checkpoint the write-ahead log"),
    }
}
