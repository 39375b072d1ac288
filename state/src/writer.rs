//! Group commit: one thread owns the writer connection and commits many
//! callers' writes in one transaction.
//!
//! Each write is a job: a closure run against the open transaction inside
//! its own `SAVEPOINT`, so a job that fails rolls back only its own changes.
//! The thread takes every job that is queued when it wakes (up to
//! [`MAX_GROUP`]), runs them in order, commits once, and only then tells each
//! caller its result. A caller therefore still learns of its write only
//! after it is on disk, but a thousand concurrent writes cost a handful of
//! fsyncs instead of a thousand — the difference between a 1000-node batch
//! finishing near its physical bound and waiting on the disk.
//!
//! Before each group the thread checks that the database path still names
//! the file it has open (see `dbfile`): writes to a deleted or replaced
//! file would be lost, so they are refused rather than reported done.

use std::sync::{mpsc, Arc, Mutex, PoisonError};
use std::thread::JoinHandle;

use rusqlite::{Connection, Transaction, TransactionBehavior};

use crate::checkpoint::Nudge;
use crate::dbfile::{DbFile, Refusal};
use crate::StoreError;

/// Most jobs committed in one transaction; bounds how long the first
/// caller of a group waits behind the others.
const MAX_GROUP: usize = 512;

/// Hands the commit outcome to the caller that queued the job.
pub(crate) type Deliver = Box<dyn FnOnce(Result<(), StoreError>) + Send>;
/// A queued write. It runs in the group's transaction (`None` when the
/// transaction could not begin) and returns whether its own work succeeded
/// — which decides whether its savepoint is kept — and how to deliver its
/// result once the transaction's fate is known.
pub(crate) type Job = Box<dyn FnOnce(Option<&Transaction<'_>>) -> (bool, Deliver) + Send>;

/// The sending side; dropping it (and joining) stops the thread.
#[derive(Debug)]
pub(crate) struct Writer {
    jobs: Option<mpsc::Sender<Job>>,
    thread: Option<JoinHandle<()>>,
}

impl Writer {
    /// Starts the thread; `nudge` hears of every commit (see `checkpoint`).
    pub(crate) fn start(
        conn: Connection,
        file: DbFile,
        refused: LastRefusal,
        nudge: Nudge,
    ) -> Result<Self, StoreError> {
        let (jobs, queue) = mpsc::channel::<Job>();
        let thread = std::thread::Builder::new()
            .name("baton-db-writer".into())
            .spawn(move || run(conn, &file, &refused, &queue, &nudge))
            .map_err(|source| StoreError::Io {
                path: "baton-db-writer thread".into(),
                source,
            })?;
        Ok(Self {
            jobs: Some(jobs),
            thread: Some(thread),
        })
    }

    /// Queues `job`; fails only when the writer thread has stopped.
    pub(crate) fn submit(&self, job: Job) -> Result<(), StoreError> {
        self.jobs
            .as_ref()
            .ok_or(StoreError::WorkerGone)?
            .send(job)
            .map_err(|_| StoreError::WorkerGone)
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        // Closing the channel ends the thread after the jobs already queued;
        // joining keeps the connection open no longer than the store.
        self.jobs.take();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The last group's refusal — its commit's, or one of its jobs' (set by
/// the job) — `None` once a group goes through without one: what the
/// health report shows.
pub(crate) type LastRefusal = Arc<Mutex<Option<Refusal>>>;

fn run(
    mut conn: Connection,
    file: &DbFile,
    refused: &LastRefusal,
    queue: &mpsc::Receiver<Job>,
    nudge: &Nudge,
) {
    while let Ok(first) = queue.recv() {
        let mut group = vec![first];
        while group.len() < MAX_GROUP {
            match queue.try_recv() {
                Ok(job) => group.push(job),
                Err(_) => break,
            }
        }
        *refused.lock().unwrap_or_else(PoisonError::into_inner) = None;
        let outcome = match file.check() {
            Ok(()) => commit_group(&mut conn, file, group),
            Err(refusal) => {
                refuse(group, &refusal);
                Err(refusal)
            }
        };
        if let Err(refusal) = outcome {
            *refused.lock().unwrap_or_else(PoisonError::into_inner) = Some(refusal);
        }
        nudge.commit_done();
    }
}

/// Fails every job of a group, none of which ran.
fn refuse(group: Vec<Job>, refusal: &Refusal) {
    tracing::error!(error = %refusal, jobs = group.len(), "database write refused");
    for job in group {
        let (_, deliver) = job(None);
        deliver(Err(refusal.clone().into()));
    }
}

/// Runs and commits a group; the refusal every job got when it failed.
fn commit_group(conn: &mut Connection, file: &DbFile, group: Vec<Job>) -> Result<(), Refusal> {
    let tx = match conn.transaction_with_behavior(TransactionBehavior::Immediate) {
        Ok(tx) => tx,
        Err(error) => {
            let refusal = file.write_failed(&error);
            refuse(group, &refusal);
            return Err(refusal);
        }
    };
    let deliveries: Vec<Deliver> = group
        .into_iter()
        .map(|job| run_job(&tx, file, job))
        .collect();
    let outcome = tx.commit().map_err(|error| file.write_failed(&error));
    if let Err(refusal) = &outcome {
        tracing::error!(error = %refusal, jobs = deliveries.len(), "group commit failed");
    }
    for deliver in deliveries {
        deliver(outcome.clone().map_err(StoreError::from));
    }
    outcome
}

/// Runs one job inside its own savepoint, kept when the job succeeded and
/// rolled back when it failed, so one caller's failure never undoes (or
/// leaks half of) another's write.
fn run_job(tx: &Transaction<'_>, file: &DbFile, job: Job) -> Deliver {
    if let Err(error) = tx.execute_batch("SAVEPOINT job") {
        let (_, deliver) = job(None);
        let refusal = file.write_failed(&error);
        return Box::new(move |_| deliver(Err(refusal.into())));
    }
    let (ok, deliver) = job(Some(tx));
    let end = if ok {
        "RELEASE job"
    } else {
        "ROLLBACK TO job; RELEASE job"
    };
    match tx.execute_batch(end) {
        Ok(()) => deliver,
        Err(error) => {
            let refusal = file.write_failed(&error);
            Box::new(move |_| deliver(Err(refusal.into())))
        }
    }
}
