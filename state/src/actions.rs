//! SQL for the action log (`actions`) and its steps (`action_events`).

use rusqlite::{params, Connection, OptionalExtension, Row};
use uuid::Uuid;

use crate::model::{Action, ActionEvent, EventResult, NewAction, UpdatedWindow};
use crate::prune::{self, PruneChunk};
use crate::{time_fmt, StoreError};

const ACTION_COLUMNS: &str =
    "id, request_id, node_uuid, action, user_id, start_time, updated_at, message, project_id, \
     sub_job_id, user_name";

type RawAction = (
    i64,
    String,
    String,
    String,
    Option<String>,
    String,
    String,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
);

fn raw_action(row: &Row<'_>) -> rusqlite::Result<RawAction> {
    Ok((
        row.get(0)?,
        row.get(1)?,
        row.get(2)?,
        row.get(3)?,
        row.get(4)?,
        row.get(5)?,
        row.get(6)?,
        row.get(7)?,
        row.get(8)?,
        row.get(9)?,
        row.get(10)?,
    ))
}

pub(crate) fn insert(conn: &Connection, new: &NewAction) -> Result<Action, StoreError> {
    append(conn, new)?;
    get(conn, new.node_uuid, &new.request_id)
}

/// Inserts an action without reading it back.
pub(crate) fn append(conn: &Connection, new: &NewAction) -> Result<(), StoreError> {
    let now = time_fmt::encode(time_fmt::now());
    conn.prepare_cached(
        "INSERT INTO actions (request_id, node_uuid, action, user_id, start_time, updated_at,
                              message, project_id, sub_job_id, user_name)
         VALUES (?1, ?2, ?3, ?4, ?5, ?5, ?6, ?7, ?8, ?9)",
    )?
    .execute(params![
        new.request_id,
        new.node_uuid.to_string(),
        new.action,
        new.user_id,
        now,
        new.message,
        new.project_id,
        new.sub_job_id,
        new.user_name,
    ])?;
    Ok(())
}

pub(crate) fn add_event(
    conn: &Connection,
    node_uuid: Uuid,
    request_id: &str,
    event: &ActionEvent,
) -> Result<(), StoreError> {
    let action_id = action_id(conn, node_uuid, request_id)?;
    conn.prepare_cached(
        "INSERT INTO action_events (action_id, event, start_time, finish_time, result, traceback, host)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?
    .execute(params![
        action_id,
        event.event,
        time_fmt::encode(event.start_time),
        event.finish_time.map(time_fmt::encode),
        event.result.map(EventResult::as_str),
        event.traceback,
        event.host,
    ])?;
    conn.prepare_cached("UPDATE actions SET updated_at = ?2 WHERE id = ?1")?
        .execute(params![action_id, time_fmt::encode(time_fmt::now())])?;
    Ok(())
}

fn action_id(conn: &Connection, node_uuid: Uuid, request_id: &str) -> Result<i64, StoreError> {
    conn.prepare_cached("SELECT id FROM actions WHERE node_uuid = ?1 AND request_id = ?2")?
        .query_row(params![node_uuid.to_string(), request_id], |r| r.get(0))
        .optional()?
        .ok_or_else(|| StoreError::ActionNotFound {
            node: node_uuid.to_string(),
            request_id: request_id.to_owned(),
        })
}

pub(crate) fn get(
    conn: &Connection,
    node_uuid: Uuid,
    request_id: &str,
) -> Result<Action, StoreError> {
    let sql =
        format!("SELECT {ACTION_COLUMNS} FROM actions WHERE node_uuid = ?1 AND request_id = ?2");
    let raw = conn
        .prepare_cached(&sql)?
        .query_row(params![node_uuid.to_string(), request_id], raw_action)
        .optional()?
        .ok_or_else(|| StoreError::ActionNotFound {
            node: node_uuid.to_string(),
            request_id: request_id.to_owned(),
        })?;
    decode(conn, raw)
}

/// Newest first; `marker` is the request id of the last action of the
/// previous page; only actions last updated inside `window` count, so a
/// page is full whenever enough of them exist.
pub(crate) fn list(
    conn: &Connection,
    node_uuid: Uuid,
    limit: usize,
    marker: Option<&str>,
    window: &UpdatedWindow,
) -> Result<Vec<Action>, StoreError> {
    let before = match marker {
        Some(m) => action_id(conn, node_uuid, m).map_err(|_| StoreError::MarkerNotFound {
            marker: m.to_owned(),
        })?,
        None => i64::MAX,
    };
    let sql = format!(
        "SELECT {ACTION_COLUMNS} FROM actions WHERE node_uuid = ?1 AND id < ?2 ORDER BY id DESC"
    );
    let mut stmt = conn.prepare_cached(&sql)?;
    let mut rows = stmt.query_map(params![node_uuid.to_string(), before], raw_action)?;
    let mut page = Vec::new();
    while page.len() < limit {
        let Some(raw) = rows.next().transpose()? else {
            break;
        };
        // Timestamps are compared decoded: their text has a varying number
        // of fraction digits, so it does not sort.
        if window.contains(time_fmt::decode(&raw.6)?) {
            page.push(decode(conn, raw)?);
        }
    }
    Ok(page)
}

fn decode(conn: &Connection, raw: RawAction) -> Result<Action, StoreError> {
    let (
        id,
        request_id,
        node_uuid,
        action,
        user_id,
        start_time,
        updated_at,
        message,
        project_id,
        sub_job_id,
        user_name,
    ) = raw;
    Ok(Action {
        node_uuid: Uuid::parse_str(&node_uuid)
            .map_err(|_| StoreError::Corrupt(format!("action node uuid {node_uuid:?}")))?,
        request_id,
        action,
        user_id,
        user_name,
        start_time: time_fmt::decode(&start_time)?,
        updated_at: time_fmt::decode(&updated_at)?,
        message,
        project_id,
        sub_job_id,
        events: events(conn, id)?,
    })
}

fn events(conn: &Connection, action_id: i64) -> Result<Vec<ActionEvent>, StoreError> {
    type RawEvent = (
        String,
        String,
        Option<String>,
        Option<String>,
        Option<String>,
        Option<String>,
    );
    let raws: Vec<RawEvent> = conn
        .prepare_cached(
            "SELECT event, start_time, finish_time, result, traceback, host
             FROM action_events WHERE action_id = ?1 ORDER BY id",
        )?
        .query_map([action_id], |r| {
            Ok((
                r.get(0)?,
                r.get(1)?,
                r.get(2)?,
                r.get(3)?,
                r.get(4)?,
                r.get(5)?,
            ))
        })?
        .collect::<Result<_, _>>()?;
    raws.into_iter()
        .map(|(event, start, finish, result, traceback, host)| {
            Ok(ActionEvent {
                event,
                start_time: time_fmt::decode(&start)?,
                finish_time: finish.as_deref().map(time_fmt::decode).transpose()?,
                result: result.as_deref().map(parse_result).transpose()?,
                traceback,
                host,
            })
        })
        .collect()
}

fn parse_result(s: &str) -> Result<EventResult, StoreError> {
    match s {
        "Success" => Ok(EventResult::Success),
        "Error" => Ok(EventResult::Error),
        other => Err(StoreError::Corrupt(format!("event result {other:?}"))),
    }
}

/// Adds to an action's message (an error, or a note such as "already power
/// off"); a message already there (why the action was started, say) is
/// kept in front.
pub(crate) fn set_message(
    conn: &Connection,
    node_uuid: Uuid,
    request_id: &str,
    message: &str,
) -> Result<(), StoreError> {
    let action_id = action_id(conn, node_uuid, request_id)?;
    conn.prepare_cached("UPDATE actions SET message = CASE WHEN message IS NULL THEN ?2 ELSE message || '; ' || ?2 END,
             updated_at = ?3 WHERE id = ?1")?
        .execute(params![
            action_id,
            message,
            time_fmt::encode(time_fmt::now())
        ])?;
    Ok(())
}

/// Looks at up to `scan` actions after id `after`, oldest first, and deletes
/// (with their events, by cascade) those last updated before `cutoff` —
/// except an action that is still some node's operation, or that belongs to
/// a sub-job or batch job not yet ended (see [`prune::chunk`]).
pub(crate) fn prune_chunk(
    conn: &Connection,
    cutoff: time::OffsetDateTime,
    after: i64,
    scan: usize,
) -> Result<PruneChunk, StoreError> {
    prune::chunk(
        conn,
        "SELECT a.id, a.start_time,
                CASE WHEN EXISTS (SELECT 1 FROM nodes n
                                  WHERE n.uuid = a.node_uuid AND n.op_request_id = a.request_id)
                       OR EXISTS (SELECT 1 FROM sub_jobs s JOIN jobs j ON j.job_id = s.parent_id
                                  WHERE s.job_id = a.sub_job_id
                                    AND (s.status IN ('INIT', 'RUNNING')
                                         OR j.status IN ('INIT', 'RUNNING')))
                     THEN NULL ELSE a.updated_at END
         FROM actions a WHERE a.id > ?1 ORDER BY a.id LIMIT ?2",
        "DELETE FROM actions WHERE id = ?1",
        cutoff,
        after,
        scan,
    )
}
