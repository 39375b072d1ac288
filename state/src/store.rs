//! [`Store`]: the async handle to the SQLite database.
//!
//! One writer connection (SQLite allows one writer at a time anyway), owned
//! by a thread that commits concurrent writes together (group commit, see
//! `writer`), and a bounded pool of reader connections, which WAL mode lets
//! run beside the writer. A read waits (asynchronously) for a free reader
//! rather than opening another connection, so a burst of requests cannot
//! exhaust file descriptors. Reads run on tokio's blocking pool, so SQLite
//! never blocks the runtime; every call returns after its transaction has
//! committed (`synchronous = FULL`: committed means on disk).

use std::collections::HashMap;
use std::fs::{DirBuilder, OpenOptions};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};
use uuid::Uuid;

use crate::checkpoint::{self, Checkpointer};
use crate::dbfile::{self, DbFile};
use crate::job::{Failure, Job, JobFilter, NewJob, Schedule, SubJobEnd};
use crate::model::{
    Action, NewAction, Node, NodeFilter, NodeIdent, NodeSpec, PowerStateCounts, UpdatedWindow,
};
use crate::operation::NodeChange;
use crate::writer::{self, Writer};
use crate::{actions, jobs, migrations, nodes, time_fmt, ActionEvent, StoreError};

/// Tuning knobs of the store; the defaults suit a single conductor.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// Most reader connections open at once (at least 1); further reads
    /// wait for one to be free.
    pub max_readers: usize,
    /// How long a statement waits for a lock held by another connection.
    pub busy_timeout: Duration,
    /// Hold an exclusive lock on `<database>.lock` while open, so that a
    /// second store (another batond) cannot use the same database. Turn
    /// off only for read-only inspection tools.
    pub exclusive: bool,
    /// How long a deleted node's place in enrollment order is kept, so that
    /// a paging marker naming it still works; older ones are pruned.
    pub deleted_marker_retention: Duration,
}

/// A listing paged with a marker of a node deleted longer ago than this is
/// refused (400) and must start over; a day covers any paging client.
pub const DELETED_MARKER_RETENTION: Duration = Duration::from_secs(24 * 60 * 60);

/// Action records one prune transaction looks at: a few milliseconds of
/// the writer's time, events included.
pub const PRUNE_SCAN: usize = 500;

/// Batch jobs one prune transaction looks at: each may take up to a
/// thousand sub-jobs with it.
pub const JOB_PRUNE_SCAN: usize = 5;

impl Default for StoreOptions {
    fn default() -> Self {
        Self {
            max_readers: 8,
            busy_timeout: Duration::from_secs(5),
            exclusive: true,
            deleted_marker_retention: DELETED_MARKER_RETENTION,
        }
    }
}

/// A failed conditional update: either the store failed, or the caller's
/// closure rejected the node it was shown.
#[derive(Debug, thiserror::Error)]
pub enum UpdateError<E> {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Rejected(E),
}

/// Cheap to clone; all clones share the same connections.
#[derive(Clone, Debug)]
pub struct Store {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    path: PathBuf,
    file: DbFile,
    refused: writer::LastRefusal,
    options: StoreOptions,
    writer: Writer,
    /// Declared after `writer`, which holds its nudge: dropping the writer
    /// first lets the checkpointer finish and be joined.
    _checkpointer: Checkpointer,
    readers: Mutex<Vec<Connection>>,
    /// One permit per reader connection that may be open.
    reader_permits: Arc<tokio::sync::Semaphore>,
    _lock: Option<crate::lockfile::Lock>,
}

impl Store {
    /// Opens (creating if needed, mode 0600 in a 0750 directory) and migrates
    /// the database at `path`.
    pub async fn open(path: impl Into<PathBuf>, options: StoreOptions) -> Result<Self, StoreError> {
        let path = path.into();
        tokio::task::spawn_blocking(move || Self::open_blocking(path, options))
            .await
            .map_err(|_| StoreError::WorkerGone)?
    }

    fn open_blocking(path: PathBuf, options: StoreOptions) -> Result<Self, StoreError> {
        create_private_file(&path)?;
        let lock = if options.exclusive {
            let lock = crate::lockfile::lock(&path).map_err(|source| StoreError::InUse {
                path: path.clone(),
                source,
            })?;
            Some(lock)
        } else {
            None
        };
        let with_path = |e: StoreError| match e {
            StoreError::Sqlite(source) if dbfile::is_damage(&source) => StoreError::Damaged {
                path: path.clone(),
                detail: source.to_string(),
            },
            StoreError::Sqlite(source) => StoreError::Open {
                path: path.clone(),
                source,
            },
            other => other,
        };
        let file = DbFile::new(&path)?;
        let mut writer = connect(&path, &options, Role::Writer).map_err(with_path)?;
        // Checked before anything writes to it (the WAL switch, the
        // migrations), so a damaged file is left exactly as it was.
        quick_check(&writer, &path).map_err(with_path)?;
        writer
            .pragma_update(None, "journal_mode", "WAL")
            .map_err(|e| with_path(e.into()))?;
        migrations::migrate(&mut writer, &path).map_err(with_path)?;
        writer
            .pragma_update(None, "wal_autocheckpoint", checkpoint::BACKSTOP_PAGES)
            .map_err(|e| with_path(e.into()))?;
        let (checkpointer, nudge) =
            Checkpointer::start(connect(&path, &options, Role::Checkpointer).map_err(with_path)?)?;
        let reader_permits = Arc::new(tokio::sync::Semaphore::new(options.max_readers.max(1)));
        let refused = writer::LastRefusal::default();
        Ok(Self {
            inner: Arc::new(Inner {
                path,
                writer: Writer::start(writer, file.clone(), Arc::clone(&refused), nudge)?,
                refused,
                file,
                options,
                _checkpointer: checkpointer,
                readers: Mutex::new(Vec::new()),
                reader_permits,
                _lock: lock,
            }),
        })
    }

    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Why writes are refused right now, if they are: the file was deleted
    /// or replaced, or the last write failed on its storage (disk full,
    /// read-only…) and none has succeeded since.
    pub fn writes_refused(&self) -> Option<crate::Refusal> {
        if let Err(refusal) = self.inner.file.check() {
            return Some(refusal);
        }
        self.inner
            .refused
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Bytes on disk: the database file plus its write-ahead log.
    pub fn size_on_disk(&self) -> u64 {
        let wal = PathBuf::from(format!("{}-wal", self.inner.path.display()));
        [self.inner.path.as_path(), wal.as_path()]
            .iter()
            .filter_map(|p| std::fs::metadata(p).ok())
            .map(|m| m.len())
            .sum()
    }

    async fn read<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let inner = Arc::clone(&self.inner);
        // Waiting here, before the blocking pool, keeps the number of reader
        // connections (and blocked threads) at `max_readers`.
        let permit = Arc::clone(&inner.reader_permits)
            .acquire_owned()
            .await
            .map_err(|_| StoreError::WorkerGone)?;
        tokio::task::spawn_blocking(move || {
            let conn = inner.take_reader()?;
            let result = f(&conn);
            inner.return_reader(conn);
            drop(permit);
            result.map_err(|e| inner.file.classify(e))
        })
        .await
        .map_err(|_| StoreError::WorkerGone)?
    }

    /// Runs `f` in a write transaction shared with whatever other writes
    /// are queued (group commit, see `writer`); returns once it committed.
    async fn write<T, E, F>(&self, f: F) -> Result<T, E>
    where
        T: Send + 'static,
        E: WriteError + Send + 'static,
        F: FnOnce(&rusqlite::Transaction<'_>) -> Result<T, E> + Send + 'static,
    {
        let (reply, answer) = tokio::sync::oneshot::channel::<Result<T, E>>();
        let (file, refused) = (self.inner.file.clone(), Arc::clone(&self.inner.refused));
        let job: writer::Job = Box::new(move |tx| {
            let result = match tx {
                Some(tx) => f(tx).map_err(|e| {
                    let e = e.classify(&file);
                    if let Some(refusal) = e.refusal() {
                        *refused.lock().unwrap_or_else(PoisonError::into_inner) =
                            Some(refusal.clone());
                    }
                    e
                }),
                None => Err(E::from(StoreError::WorkerGone)),
            };
            let ok = result.is_ok();
            let deliver: writer::Deliver = Box::new(move |committed| {
                let result = match committed {
                    Ok(()) => result,
                    Err(error) => Err(E::from(error)),
                };
                // The caller may have gone (its request was cancelled); the
                // write stands either way.
                let _ = reply.send(result);
            });
            (ok, deliver)
        });
        self.inner.writer.submit(job)?;
        answer.await.map_err(|_| E::from(StoreError::WorkerGone))?
    }

    /// Enrolls one node.
    pub async fn create_node(&self, spec: NodeSpec) -> Result<Node, StoreError> {
        self.write(move |tx| {
            let mut created = nodes::insert_all(tx, std::slice::from_ref(&spec))?;
            let uuid = created.pop().ok_or(StoreError::WorkerGone)?;
            nodes::get(tx, &NodeIdent::Uuid(uuid))
        })
        .await
    }

    /// Enrolls many nodes in one transaction: all of them, or none.
    pub async fn import_nodes(&self, specs: Vec<NodeSpec>) -> Result<Vec<Uuid>, StoreError> {
        self.write(move |tx| nodes::insert_all(tx, &specs)).await
    }

    /// Enrolls nodes as [`Store::import_nodes`] does and logs `action` for
    /// each (its `node_uuid` set to the new node's) in the same transaction,
    /// so that no crash can leave nodes enrolled without their record.
    pub async fn import_nodes_logged(
        &self,
        specs: Vec<NodeSpec>,
        action: NewAction,
    ) -> Result<Vec<Uuid>, StoreError> {
        self.write(move |tx| {
            let uuids = nodes::insert_all(tx, &specs)?;
            for uuid in &uuids {
                append_log(tx, *uuid, Some(action.clone()))?;
            }
            Ok(uuids)
        })
        .await
    }

    /// Which of these names (with their positions in a request) are taken
    /// or repeated; lets a caller report name clashes beside other problems.
    pub async fn duplicate_names(
        &self,
        names: Vec<(usize, String)>,
    ) -> Result<Vec<crate::DuplicateName>, StoreError> {
        self.read(move |conn| {
            nodes::find_duplicate_names(conn, names.iter().map(|(i, n)| (*i, n.as_str())))
        })
        .await
    }

    pub async fn get_node(&self, ident: NodeIdent) -> Result<Node, StoreError> {
        self.read(move |conn| nodes::get(conn, &ident)).await
    }

    /// Up to `limit` nodes after `marker` (a node uuid), in enrollment order.
    pub async fn list_nodes(
        &self,
        filter: NodeFilter,
        limit: usize,
        marker: Option<Uuid>,
    ) -> Result<Vec<Node>, StoreError> {
        self.read(move |conn| nodes::list(conn, &filter, limit, marker))
            .await
    }

    /// Changes a node's operator-set fields. `change` sees the current node
    /// inside the transaction and returns the new spec (or rejects it), so a
    /// read-modify-write cannot interleave with another writer. Refused while
    /// the node is reserved or has a power target. `log`, when given, is
    /// appended to the node's action log in the same transaction.
    pub async fn update_node<E, F>(
        &self,
        ident: NodeIdent,
        change: F,
        log: Option<NewAction>,
    ) -> Result<Node, UpdateError<E>>
    where
        E: Send + 'static,
        F: FnOnce(&Node) -> Result<NodeSpec, E> + Send + 'static,
    {
        self.write(move |tx| {
            let node = nodes::get(tx, &ident)?;
            ensure_idle(&node, &ident)?;
            let spec = change(&node).map_err(UpdateError::Rejected)?;
            append_log(tx, node.uuid, log)?;
            if spec == node.spec {
                // Nothing changed (e.g. a patch of only `test` operations).
                return Ok(node);
            }
            nodes::update_spec(tx, node.uuid, &spec)?;
            Ok(nodes::get(tx, &NodeIdent::Uuid(node.uuid))?)
        })
        .await
    }

    /// Removes a node; refused while it is reserved or has a power target.
    /// `log`, when given, is appended to its action log in the same
    /// transaction.
    pub async fn delete_node(
        &self,
        ident: NodeIdent,
        log: Option<NewAction>,
    ) -> Result<Node, StoreError> {
        let retention = self.inner.options.deleted_marker_retention;
        self.write(move |tx| {
            let node = nodes::get(tx, &ident)?;
            ensure_idle(&node, &ident)?;
            append_log(tx, node.uuid, log)?;
            nodes::delete(tx, node.uuid)?;
            nodes::prune_deleted(tx, retention)?;
            Ok(node)
        })
        .await
    }

    /// Changes a node's state and its action log in one transaction.
    /// `change` sees the node as it is inside the transaction and returns
    /// the change, or rejects it (e.g. the node is locked), so the check
    /// and the write cannot be split by another writer. Returns the node as
    /// changed.
    pub async fn change_node<E, F>(
        &self,
        ident: NodeIdent,
        change: F,
    ) -> Result<Node, UpdateError<E>>
    where
        E: Send + 'static,
        F: FnOnce(&Node) -> Result<NodeChange, E> + Send + 'static,
    {
        self.write(move |tx| {
            let node = nodes::get(tx, &ident)?;
            let change = change(&node).map_err(UpdateError::Rejected)?;
            apply_change(tx, node.uuid, &change)?;
            Ok(nodes::get(tx, &NodeIdent::Uuid(node.uuid))?)
        })
        .await
    }

    /// Nodes with a power target: the operations to resume at start-up.
    pub async fn pending_operations(&self) -> Result<Vec<Node>, StoreError> {
        self.read(nodes::pending).await
    }

    /// The nodes for a power-sync sweep, failing ones first, as opaque row
    /// ids to load a few at a time with [`Store::sync_candidates_among`]:
    /// idle nodes, or (`faulted`) the nodes the sync put in maintenance.
    pub async fn sync_candidate_ids(&self, faulted: bool) -> Result<Vec<i64>, StoreError> {
        self.read(move |conn| nodes::sync_candidate_ids(conn, faulted))
            .await
    }

    /// The nodes of `ids` (from [`Store::sync_candidate_ids`]) that are
    /// still candidates, in the order of `ids`.
    pub async fn sync_candidates_among(
        &self,
        ids: Vec<i64>,
        faulted: bool,
    ) -> Result<Vec<Node>, StoreError> {
        self.read(move |conn| nodes::sync_candidates_among(conn, &ids, faulted))
            .await
    }

    pub async fn count_by_power_state(&self) -> Result<PowerStateCounts, StoreError> {
        self.read(nodes::count_by_power_state).await
    }

    /// Appends an action to the log.
    pub async fn record_action(&self, action: NewAction) -> Result<Action, StoreError> {
        self.write(move |tx| actions::insert(tx, &action)).await
    }

    /// Appends an event to an action.
    pub async fn add_action_event(
        &self,
        node_uuid: Uuid,
        request_id: String,
        event: ActionEvent,
    ) -> Result<(), StoreError> {
        self.write(move |tx| actions::add_event(tx, node_uuid, &request_id, &event))
            .await
    }

    /// Deletes the action records (and their events) last updated more
    /// than `retention` ago, except those of an operation, sub-job or batch
    /// job that has not ended; returns how many went. Works through the log
    /// [`PRUNE_SCAN`] records per transaction, so other writes go between
    /// its chunks and none waits long behind it. Jobs are pruned on their
    /// own ([`Store::prune_jobs`]).
    pub async fn prune_actions(&self, retention: Duration) -> Result<usize, StoreError> {
        self.prune(retention, PRUNE_SCAN, actions::prune_chunk)
            .await
    }

    /// Deletes batch jobs (with their sub-jobs) that ended more than
    /// `retention` ago; returns how many went. A job that has not ended is
    /// kept however old it is. [`JOB_PRUNE_SCAN`] jobs per transaction:
    /// each may take a thousand sub-jobs with it.
    pub async fn prune_jobs(&self, retention: Duration) -> Result<usize, StoreError> {
        self.prune(retention, JOB_PRUNE_SCAN, jobs::prune_chunk)
            .await
    }

    /// Runs `chunk` over a table in transactions of `scan` rows until it
    /// says nothing older than the cutoff is left.
    async fn prune(
        &self,
        retention: Duration,
        scan: usize,
        chunk: fn(
            &Connection,
            time::OffsetDateTime,
            i64,
            usize,
        ) -> Result<crate::prune::PruneChunk, StoreError>,
    ) -> Result<usize, StoreError> {
        let Some(cutoff) = time::Duration::try_from(retention)
            .ok()
            .and_then(|r| time_fmt::now().checked_sub(r))
        else {
            // Older than anything a clock can date: nothing to prune.
            return Ok(0);
        };
        let (mut after, mut deleted) = (0, 0);
        loop {
            let done = self.write(move |tx| chunk(tx, cutoff, after, scan)).await?;
            deleted += done.deleted;
            match done.next {
                Some(next) => after = next,
                None => return Ok(deleted),
            }
        }
    }

    /// A node's actions, newest first, with their events.
    pub async fn list_actions(
        &self,
        node_uuid: Uuid,
        limit: usize,
        marker: Option<String>,
        window: UpdatedWindow,
    ) -> Result<Vec<Action>, StoreError> {
        self.read(move |conn| actions::list(conn, node_uuid, limit, marker.as_deref(), &window))
            .await
    }

    /// Creates a batch job in one transaction: the job, a sub-job per
    /// server, and each node's change as `plan` decides it — an operation
    /// (`Ok`), or a refusal that fails its sub-job at once (`Err`, with the
    /// change holding the node's action record). Unknown or repeated server
    /// ids refuse the whole batch and nothing is written. Returns the nodes
    /// given an operation.
    pub async fn create_batch<F>(
        &self,
        job: NewJob,
        servers: Vec<String>,
        plan: F,
    ) -> Result<Vec<Uuid>, StoreError>
    where
        F: Fn(&Node, &str) -> (NodeChange, Option<Failure>) + Send + 'static,
    {
        self.write(move |tx| {
            let found = resolve_servers(tx, &servers)?;
            jobs::insert_job(tx, &job)?;
            let mut started = Vec::with_capacity(found.len());
            for (position, node) in found.iter().enumerate() {
                let sub_job_id = Uuid::now_v7().to_string();
                let (change, failure) = plan(node, &sub_job_id);
                apply_change(tx, node.uuid, &change)?;
                jobs::insert_sub_job(
                    tx,
                    &jobs::NewSubJob {
                        parent: &job.job_id,
                        position,
                        sub_job_id: &sub_job_id,
                        node_uuid: node.uuid,
                        node_name: node.spec.name.as_deref(),
                        request_id: &job.request_id,
                        failure: failure.as_ref(),
                    },
                )?;
                if failure.is_none() {
                    started.push(node.uuid);
                }
            }
            jobs::settle(tx, &job.job_id)?;
            Ok(started)
        })
        .await
    }

    /// Checks that every server id names an enrolled node, once (what a
    /// batch would refuse), without starting anything.
    pub async fn check_servers(&self, servers: Vec<String>) -> Result<(), StoreError> {
        self.read(move |conn| resolve_servers(conn, &servers).map(|_| ()))
            .await
    }

    /// Records that a sub-job's first BMC request is going out.
    pub async fn mark_sub_job_running(
        &self,
        sub_job_id: String,
        at: time::OffsetDateTime,
    ) -> Result<(), StoreError> {
        self.write(move |tx| jobs::mark_running(tx, &sub_job_id, at))
            .await
    }

    /// A job with all its sub-jobs.
    pub async fn get_job(&self, job_id: String) -> Result<Job, StoreError> {
        self.read(move |conn| jobs::get(conn, &job_id)).await
    }

    /// Up to `limit` jobs after `marker` (a job id), newest first, without
    /// their sub-jobs (counts only).
    pub async fn list_jobs(
        &self,
        filter: JobFilter,
        limit: usize,
        marker: Option<String>,
    ) -> Result<Vec<Job>, StoreError> {
        self.read(move |conn| jobs::list(conn, &filter, limit, marker.as_deref()))
            .await
    }

    /// The sub-jobs of a job that have not ended: (sub-job id, node).
    pub async fn unfinished_sub_jobs(
        &self,
        job_id: String,
    ) -> Result<Vec<(String, Uuid)>, StoreError> {
        self.read(move |conn| {
            jobs::get(conn, &job_id)?;
            jobs::unfinished(conn, &job_id)
        })
        .await
    }

    /// Cancels these sub-jobs in one transaction: each one that has not
    /// ended fails with `failure`, and its node's operation (still that
    /// sub-job's) is cleared with a note in the node's action. Returns the
    /// nodes whose operation was cleared.
    pub async fn cancel_sub_jobs(
        &self,
        sub_jobs: Vec<String>,
        failure: Failure,
    ) -> Result<Vec<Uuid>, StoreError> {
        self.write(move |tx| {
            let mut cleared = Vec::new();
            for sub_job_id in sub_jobs {
                let Some((uuid, request_id)) = jobs::sub_job_node(tx, &sub_job_id)? else {
                    continue;
                };
                let node = match nodes::get(tx, &NodeIdent::Uuid(uuid)) {
                    Ok(node) => Some(node),
                    Err(StoreError::NodeNotFound { .. }) => None,
                    Err(other) => return Err(other),
                };
                let ours = node.as_ref().is_some_and(|n| {
                    n.conductor
                        .operation
                        .as_ref()
                        .is_some_and(|o| o.sub_job.as_deref() == Some(sub_job_id.as_str()))
                });
                let end = SubJobEnd {
                    sub_job_id,
                    begin_time: None,
                    outcome: Err(failure.clone()),
                };
                if ours {
                    let change = NodeChange {
                        update: crate::NodeUpdate {
                            operation: Some(None),
                            reservation: Some(None),
                            ..crate::NodeUpdate::default()
                        },
                        action_message: Some((request_id, failure.reason.clone())),
                        sub_job_end: Some(end),
                        ..NodeChange::default()
                    };
                    apply_change(tx, uuid, &change)?;
                    cleared.push(uuid);
                } else {
                    jobs::end_sub_job(tx, &end)?;
                }
            }
            Ok(cleared)
        })
        .await
    }

    pub async fn add_schedule(&self, schedule: Schedule) -> Result<Schedule, StoreError> {
        self.write(move |tx| {
            jobs::insert_schedule(tx, &schedule)?;
            jobs::get_schedule(tx, &schedule.schedule_id)
        })
        .await
    }

    pub async fn schedules(&self) -> Result<Vec<Schedule>, StoreError> {
        self.read(jobs::schedules).await
    }

    pub async fn get_schedule(&self, id: String) -> Result<Schedule, StoreError> {
        self.read(move |conn| jobs::get_schedule(conn, &id)).await
    }

    pub async fn delete_schedule(&self, id: String) -> Result<Schedule, StoreError> {
        self.write(move |tx| jobs::delete_schedule(tx, &id)).await
    }

    /// Records a firing of a schedule and the job it created, if any.
    pub async fn schedule_fired(
        &self,
        id: String,
        at: time::OffsetDateTime,
        job_id: Option<String>,
    ) -> Result<(), StoreError> {
        self.write(move |tx| jobs::schedule_fired(tx, &id, at, job_id.as_deref()))
            .await
    }

    pub async fn get_action(
        &self,
        node_uuid: Uuid,
        request_id: String,
    ) -> Result<Action, StoreError> {
        self.read(move |conn| actions::get(conn, node_uuid, &request_id))
            .await
    }
}

/// The error of a write: the store's own, or a caller's type that may hold
/// one. Storage failures inside it become [`StoreError::Unavailable`].
trait WriteError: From<StoreError> {
    #[must_use]
    fn classify(self, file: &DbFile) -> Self;
    fn refusal(&self) -> Option<&crate::Refusal>;
}

impl WriteError for StoreError {
    fn classify(self, file: &DbFile) -> Self {
        file.classify(self)
    }

    fn refusal(&self) -> Option<&crate::Refusal> {
        match self {
            StoreError::Unavailable(refusal) => Some(refusal),
            _ => None,
        }
    }
}

impl<E> WriteError for UpdateError<E> {
    fn classify(self, file: &DbFile) -> Self {
        match self {
            UpdateError::Store(e) => UpdateError::Store(file.classify(e)),
            rejected @ UpdateError::Rejected(_) => rejected,
        }
    }

    fn refusal(&self) -> Option<&crate::Refusal> {
        match self {
            UpdateError::Store(e) => e.refusal(),
            UpdateError::Rejected(_) => None,
        }
    }
}

/// `PRAGMA quick_check` of a database about to be used: a damaged file is
/// refused at start, not found out by the first request that reads the
/// damaged page.
fn quick_check(conn: &Connection, path: &Path) -> Result<(), StoreError> {
    let mut statement = conn.prepare("PRAGMA quick_check")?;
    let problems: Vec<String> = statement
        .query_map([], |row| row.get::<_, String>(0))?
        .collect::<Result<_, _>>()?;
    if problems.iter().all(|p| p == "ok") {
        return Ok(());
    }
    Err(StoreError::Damaged {
        path: path.to_owned(),
        detail: problems
            .iter()
            .take(3)
            .cloned()
            .collect::<Vec<_>>()
            .join("; "),
    })
}

/// Appends `log` (if any) to the action log of node `uuid`.
fn append_log(
    tx: &rusqlite::Transaction<'_>,
    uuid: Uuid,
    log: Option<NewAction>,
) -> Result<(), StoreError> {
    match log {
        Some(entry) => actions::append(
            tx,
            &NewAction {
                node_uuid: uuid,
                ..entry
            },
        ),
        None => Ok(()),
    }
}

fn apply_change(
    tx: &rusqlite::Transaction<'_>,
    uuid: Uuid,
    change: &NodeChange,
) -> Result<(), StoreError> {
    nodes::apply_update(tx, uuid, &change.update)?;
    if let Some(action) = &change.action {
        actions::append(tx, action)?;
    }
    for (request_id, event) in &change.events {
        actions::add_event(tx, uuid, request_id, event)?;
    }
    if let Some((request_id, message)) = &change.action_message {
        actions::set_message(tx, uuid, request_id, message)?;
    }
    if let Some(end) = &change.sub_job_end {
        jobs::end_sub_job(tx, end)?;
    }
    Ok(())
}

/// Resolves a batch's server ids to nodes: every unknown id, and every
/// node named twice (by name and by uuid, say), refuse the whole batch.
fn resolve_servers(conn: &Connection, servers: &[String]) -> Result<Vec<Node>, StoreError> {
    let mut found = Vec::with_capacity(servers.len());
    let mut unknown = Vec::new();
    let mut seen: HashMap<Uuid, &str> = HashMap::with_capacity(servers.len());
    let mut twice = Vec::new();
    for id in servers {
        match nodes::get(conn, &NodeIdent::parse(id)) {
            Ok(node) => {
                if let Some(first) = seen.insert(node.uuid, id) {
                    twice.push(format!("{id} (same node as {first})"));
                }
                found.push(node);
            }
            Err(StoreError::NodeNotFound { .. }) => unknown.push(id.clone()),
            Err(other) => return Err(other),
        }
    }
    if !unknown.is_empty() {
        return Err(StoreError::UnknownServers(unknown));
    }
    if !twice.is_empty() {
        return Err(StoreError::DuplicateServers(twice));
    }
    Ok(found)
}

fn ensure_idle(node: &Node, ident: &NodeIdent) -> Result<(), StoreError> {
    match node.busy_reason() {
        Some(reason) => Err(StoreError::NodeBusy {
            ident: ident.to_string(),
            reason,
        }),
        None => Ok(()),
    }
}

impl Inner {
    fn take_reader(&self) -> Result<Connection, StoreError> {
        let pooled = self
            .readers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop();
        match pooled {
            Some(conn) => Ok(conn),
            None => {
                // Opening the path again after the file was deleted or
                // replaced would read another database.
                self.file.check()?;
                connect(&self.path, &self.options, Role::Reader)
            }
        }
    }

    fn return_reader(&self, conn: Connection) {
        let mut pool = self.readers.lock().unwrap_or_else(PoisonError::into_inner);
        if pool.len() < self.options.max_readers {
            pool.push(conn);
        }
    }
}

/// What a connection is for, which decides the size of its page cache.
#[derive(Debug, Clone, Copy)]
enum Role {
    /// The one writer: a batch's transaction touches a thousand node rows,
    /// so it keeps SQLite's default cache (about 2 MiB).
    Writer,
    /// One of up to `max_readers`: each reads a page or a few per request
    /// (a sweep's chunk a few hundred rows), and the operating system's
    /// cache holds the file anyway; SQLite's default on each of eight would
    /// hold 16 MiB for a 10 000-node fleet.
    Reader,
    /// Copies WAL frames into the database; it reads through no cache.
    Checkpointer,
}

impl Role {
    /// `PRAGMA cache_size`: negative means KiB.
    fn cache_size(self) -> i64 {
        match self {
            Role::Writer => -2000,
            Role::Reader => -512,
            Role::Checkpointer => -64,
        }
    }
}

fn connect(path: &Path, options: &StoreOptions, role: Role) -> Result<Connection, StoreError> {
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(path, flags)?;
    conn.busy_timeout(options.busy_timeout)?;
    conn.pragma_update(None, "cache_size", role.cache_size())?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    // Savepoint journals (one per write in a group commit) in memory rather
    // than in a temp file: they only matter until the transaction ends, and
    // a thousand-node batch would otherwise write hundreds of pages twice.
    conn.pragma_update(None, "temp_store", "MEMORY")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    Ok(conn)
}

/// Creates the database file with mode 0600 (SQLite gives its -wal and -shm
/// files the same mode) and its directory with 0750, before SQLite opens it,
/// so the credentials it will hold are never world-readable, not even briefly.
fn create_private_file(path: &Path) -> Result<(), StoreError> {
    let io = |source| StoreError::Io {
        path: path.to_owned(),
        source,
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        DirBuilder::new()
            .recursive(true)
            .mode(0o750)
            .create(dir)
            .map_err(io)?;
    }
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)
        .map_err(io)?;
    let mode = file.metadata().map_err(io)?.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        tracing::warn!(
            path = %path.display(),
            mode = format!("{mode:o}"),
            "database file is readable by others; tightening to 0600"
        );
        file.set_permissions(std::fs::Permissions::from_mode(0o600))
            .map_err(io)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn spec(name: &str) -> NodeSpec {
        serde_json::from_value(serde_json::json!({
            "name": name,
            "driver": "ipmi",
            "bmc": {"address": "127.0.0.1", "username": "admin", "password": "pw"}
        }))
        .unwrap()
    }

    /// Concurrent writes share transactions, yet each stands or falls on
    /// its own: a write that fails after changing rows leaves none of its
    /// changes behind, and its neighbours in the group all commit.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn group_commit_keeps_each_write_atomic() {
        let dir = tempfile::TempDir::new().unwrap();
        let store = Store::open(dir.path().join("db"), StoreOptions::default())
            .await
            .unwrap();
        let mut tasks = Vec::new();
        for i in 0..200 {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                store
                    .write(move |tx| {
                        nodes::insert_all(tx, &[spec(&format!("n{i}"))])?;
                        if i % 10 == 3 {
                            return Err(StoreError::Corrupt("refused after writing".into()));
                        }
                        Ok(())
                    })
                    .await
            }));
        }
        let mut failed = 0;
        for (i, task) in tasks.into_iter().enumerate() {
            match task.await.unwrap() {
                Ok(()) => assert_ne!(i % 10, 3),
                Err(_) => {
                    assert_eq!(i % 10, 3);
                    failed += 1;
                }
            }
        }
        assert_eq!(failed, 20);
        let all = store
            .list_nodes(NodeFilter::default(), 1000, None)
            .await
            .unwrap();
        assert_eq!(all.len(), 180, "the failed writes left nothing behind");
        assert!(all
            .iter()
            .all(|n| !n.spec.name.as_deref().unwrap().ends_with('3')));
    }
}
