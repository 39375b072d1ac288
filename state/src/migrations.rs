//! Schema migrations, versioned with `PRAGMA user_version`.
//!
//! Each entry of [`MIGRATIONS`] takes the schema from version `i` to `i + 1`
//! and runs in one transaction with the version bump, so a crash mid-way
//! leaves the previous version intact. A database from a newer batond is
//! refused rather than guessed at.

use std::path::Path;

use rusqlite::Connection;

use crate::StoreError;

const MIGRATIONS: &[&str] = &[
    // 1: nodes (and deletion markers), actions, action events.
    r"
    CREATE TABLE nodes (
        id                      INTEGER PRIMARY KEY AUTOINCREMENT,
        uuid                    TEXT NOT NULL UNIQUE,
        name                    TEXT UNIQUE,
        driver                  TEXT NOT NULL,
        bmc_address             TEXT NOT NULL,
        bmc_port                INTEGER,
        bmc_username            TEXT NOT NULL,
        bmc_password            TEXT NOT NULL,
        bmc_system_id           TEXT,
        bmc_verify_tls          INTEGER NOT NULL DEFAULT 1,
        bmc_ca_file             TEXT,
        power_domain            TEXT,
        power_state             TEXT,
        target_power_state      TEXT,
        boot_device             TEXT,
        maintenance             INTEGER NOT NULL DEFAULT 0,
        maintenance_reason      TEXT,
        fault                   TEXT,
        locked                  INTEGER NOT NULL DEFAULT 0,
        lock_reason             TEXT,
        locked_by               TEXT,
        last_error              TEXT,
        reservation             TEXT,
        reservation_expires_at  TEXT,
        created_at              TEXT NOT NULL,
        updated_at              TEXT NOT NULL,
        extra                   TEXT NOT NULL DEFAULT '{}'
    );
    CREATE INDEX nodes_by_power_state ON nodes (power_state);

    -- Where deleted nodes stood in enrollment order, so a paging marker
    -- naming a node deleted meanwhile still says where the next page starts.
    CREATE TABLE deleted_nodes (
        uuid  TEXT PRIMARY KEY,
        id    INTEGER NOT NULL
    );
    CREATE INDEX nodes_by_power_domain ON nodes (power_domain);

    CREATE TABLE actions (
        id          INTEGER PRIMARY KEY AUTOINCREMENT,
        request_id  TEXT NOT NULL,
        node_uuid   TEXT NOT NULL,
        action      TEXT NOT NULL,
        user_id     TEXT,
        start_time  TEXT NOT NULL,
        updated_at  TEXT NOT NULL,
        message     TEXT,
        UNIQUE (request_id, node_uuid)
    );
    CREATE INDEX actions_by_node ON actions (node_uuid, id);

    CREATE TABLE action_events (
        id           INTEGER PRIMARY KEY AUTOINCREMENT,
        action_id    INTEGER NOT NULL REFERENCES actions (id) ON DELETE CASCADE,
        event        TEXT NOT NULL,
        start_time   TEXT NOT NULL,
        finish_time  TEXT,
        result       TEXT,
        traceback    TEXT,
        host         TEXT
    );
    CREATE INDEX action_events_by_action ON action_events (action_id, id);
    ",
    // 2: when each node was deleted (unix seconds), so that deletion markers
    // older than any paging client needs can be pruned. Markers already
    // there count as deleted now.
    r"
    ALTER TABLE deleted_nodes ADD COLUMN deleted_at INTEGER NOT NULL DEFAULT 0;
    UPDATE deleted_nodes SET deleted_at = CAST(strftime('%s', 'now') AS INTEGER);
    CREATE INDEX deleted_nodes_by_time ON deleted_nodes (deleted_at);
    ",
    // 3: the conductor's bookkeeping: the operation behind a target (verb,
    // action record, boot device to set first, caller's timeout, phase),
    // learned transition times, the sync's failure count, and whether the
    // recorded power state may be stale after an interrupted operation.
    r"
    ALTER TABLE nodes ADD COLUMN op_verb TEXT;
    ALTER TABLE nodes ADD COLUMN op_request_id TEXT;
    ALTER TABLE nodes ADD COLUMN op_boot_first TEXT;
    ALTER TABLE nodes ADD COLUMN op_timeout_ms INTEGER;
    ALTER TABLE nodes ADD COLUMN op_phase TEXT;
    ALTER TABLE nodes ADD COLUMN op_requested_at TEXT;
    ALTER TABLE nodes ADD COLUMN sync_failures INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE nodes ADD COLUMN power_on_ms INTEGER;
    ALTER TABLE nodes ADD COLUMN power_off_ms INTEGER;
    ALTER TABLE nodes ADD COLUMN power_state_unsure INTEGER NOT NULL DEFAULT 0;
    CREATE INDEX nodes_pending ON nodes (id) WHERE target_power_state IS NOT NULL;
    ALTER TABLE actions ADD COLUMN project_id TEXT;
    ",
    // 4: batch jobs and their sub-jobs (one per server), cron schedules
    // that create jobs, and the links between a node's operation or action
    // and the sub-job it belongs to.
    r"
    CREATE TABLE jobs (
        id           INTEGER PRIMARY KEY AUTOINCREMENT,
        job_id       TEXT NOT NULL UNIQUE,
        operation    TEXT NOT NULL,
        op_type      TEXT,
        status       TEXT NOT NULL,
        request_id   TEXT NOT NULL,
        project_id   TEXT,
        user_id      TEXT,
        schedule_id  TEXT,
        created_at   TEXT NOT NULL,
        begin_time   TEXT,
        end_time     TEXT,
        error_code   TEXT,
        fail_reason  TEXT
    );
    CREATE INDEX jobs_by_status ON jobs (status, id);

    CREATE TABLE sub_jobs (
        job_id       TEXT PRIMARY KEY,
        parent_id    TEXT NOT NULL REFERENCES jobs (job_id) ON DELETE CASCADE,
        position     INTEGER NOT NULL,
        node_uuid    TEXT NOT NULL,
        node_name    TEXT,
        request_id   TEXT NOT NULL,
        status       TEXT NOT NULL,
        begin_time   TEXT,
        end_time     TEXT,
        error_code   TEXT,
        fail_reason  TEXT,
        message      TEXT
    );
    CREATE INDEX sub_jobs_by_parent ON sub_jobs (parent_id, position);
    CREATE INDEX sub_jobs_unfinished ON sub_jobs (parent_id)
        WHERE status IN ('INIT', 'RUNNING');

    CREATE TABLE schedules (
        id           INTEGER PRIMARY KEY AUTOINCREMENT,
        schedule_id  TEXT NOT NULL UNIQUE,
        cron         TEXT NOT NULL,
        time_zone    TEXT NOT NULL,
        body         TEXT NOT NULL,
        project_id   TEXT,
        user_id      TEXT,
        created_at   TEXT NOT NULL,
        last_fired   TEXT,
        last_job_id  TEXT
    );

    ALTER TABLE nodes ADD COLUMN op_sub_job TEXT;
    ALTER TABLE actions ADD COLUMN sub_job_id TEXT;
    ",
    // 5: where a node's BMC password comes from: a file batond reads
    // (`bmc_password_file`), or batond's default password when the node
    // stores none (`bmc_password_stored = 0`, `bmc_password` then empty).
    r"
    ALTER TABLE nodes ADD COLUMN bmc_password_file TEXT;
    ALTER TABLE nodes ADD COLUMN bmc_password_stored INTEGER NOT NULL DEFAULT 1;
    ",
    // 6: the caller's user name beside its uid, as resolved when the
    // action was recorded.
    r"
    ALTER TABLE actions ADD COLUMN user_name TEXT;
    ",
];

/// The schema version this build writes.
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// Brings the database up to [`SCHEMA_VERSION`], or refuses a newer one.
pub(crate) fn migrate(conn: &mut Connection, path: &Path) -> Result<(), StoreError> {
    let found: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if found < 0 {
        return Err(StoreError::Corrupt(format!(
            "database {} has schema version {found}, which no batond writes; restore a backup",
            path.display()
        )));
    }
    if found > SCHEMA_VERSION {
        return Err(StoreError::SchemaTooNew {
            path: path.to_owned(),
            found,
            supported: SCHEMA_VERSION,
        });
    }
    let applied = usize::try_from(found).unwrap_or(usize::MAX);
    for (index, sql) in MIGRATIONS.iter().enumerate().skip(applied) {
        let to = index as i64 + 1;
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", to)?;
        tx.commit()?;
        tracing::info!(version = to, "applied database migration");
    }
    Ok(())
}
