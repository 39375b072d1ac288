//! Typed errors of the state store. The daemon maps them to HTTP statuses in
//! one place (`batond::api::error`).

use std::path::PathBuf;

/// A node name that collides with another node, and where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DuplicateName {
    /// Position in the submitted list (0 for a single create).
    pub index: usize,
    pub name: String,
    /// `true` when the name is already enrolled, `false` when it appears twice
    /// in the same import.
    pub already_enrolled: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("node {ident} not found")]
    NodeNotFound { ident: String },

    #[error("paging marker {marker} is not a node uuid in this listing")]
    MarkerNotFound { marker: String },

    #[error("action {request_id} not found for node {node}")]
    ActionNotFound { node: String, request_id: String },

    #[error("{}", describe_duplicates(.0))]
    DuplicateNames(Vec<DuplicateName>),

    #[error("job {job_id} not found")]
    JobNotFound { job_id: String },

    #[error("schedule {id} not found")]
    ScheduleNotFound { id: String },

    /// A batch named servers that are not enrolled; nothing was started.
    #[error("{} unknown server id(s), nothing was started: {}", .0.len(), crate::job::list_ids(.0))]
    UnknownServers(Vec<String>),

    /// A batch named a server twice (perhaps once by name, once by uuid).
    #[error("{} server(s) named more than once, nothing was started: {}", .0.len(), crate::job::list_ids(.0))]
    DuplicateServers(Vec<String>),

    #[error("node {ident} is busy: {reason}")]
    NodeBusy { ident: String, reason: String },

    #[error(
        "database {path} has schema version {found}, newer than this batond supports ({supported}); \
         run a newer batond or restore a backup made by this version"
    )]
    SchemaTooNew {
        path: PathBuf,
        found: i64,
        supported: i64,
    },

    #[error("database {path} is in use by another process ({source}); each batond needs its own [state] database")]
    InUse {
        path: PathBuf,
        #[source]
        source: crate::lockfile::LockError,
    },

    #[error("cannot prepare database location {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("cannot open database {path}: {source}; check that the file and its directory are writable by batond")]
    Open {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },

    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),

    #[error("stored data is invalid: {0}")]
    Corrupt(String),

    #[error("the database worker stopped unexpectedly")]
    WorkerGone,

    /// The database's file or storage cannot serve the request (disk full,
    /// file deleted or made read-only under batond…); nothing was changed.
    #[error(transparent)]
    Unavailable(#[from] crate::dbfile::Refusal),

    /// The database file is damaged or not a database; batond leaves it as
    /// it is.
    #[error(
        "database {file} is damaged ({detail}); batond did not change it: restore it from a \
         backup (with batond stopped, copy the backup over it and delete {file}-wal and \
         {file}-shm), or move those files aside to start with an empty database",
        file = .path.display()
    )]
    Damaged { path: PathBuf, detail: String },
}

fn describe_duplicates(dups: &[DuplicateName]) -> String {
    let parts: Vec<String> = dups
        .iter()
        .map(|d| {
            let why = if d.already_enrolled {
                "already enrolled"
            } else {
                "repeated in this request"
            };
            format!("[{}] name {:?} ({why})", d.index, d.name)
        })
        .collect();
    format!("duplicate node names: {}", parts.join(", "))
}
