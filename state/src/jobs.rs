//! SQL for batch jobs (`jobs`), their sub-jobs (`sub_jobs`) and the cron
//! schedules that create them (`schedules`).
//!
//! A job's own status follows from its sub-jobs: it is settled (SUCCESS or
//! FAIL, with the failures counted by code) in the same transaction as the
//! last sub-job that ends.

use std::collections::BTreeMap;

use rusqlite::{params, Connection, OptionalExtension, Row};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::job::{
    BatchOperation, FailCode, Failure, Job, JobFilter, JobStatus, NewJob, Schedule, SubJob,
    SubJobCounts, SubJobEnd,
};
use crate::prune::{self, PruneChunk};
use crate::{time_fmt, StoreError};

const JOB_COLUMNS: &str = "job_id, operation, op_type, status, request_id, project_id, \
     user_id, schedule_id, created_at, begin_time, end_time, error_code, fail_reason";

const SUB_JOB_COLUMNS: &str = "job_id, node_uuid, node_name, request_id, status, begin_time, \
     end_time, error_code, fail_reason, message";

fn corrupt(what: &str, value: &str) -> StoreError {
    StoreError::Corrupt(format!("{what} {value:?}"))
}

fn status(s: &str) -> Result<JobStatus, StoreError> {
    JobStatus::parse(s).ok_or_else(|| corrupt("job status", s))
}

fn opt_time(s: Option<&str>) -> Result<Option<OffsetDateTime>, StoreError> {
    s.map(time_fmt::decode).transpose()
}

pub(crate) fn insert_job(conn: &Connection, job: &NewJob) -> Result<(), StoreError> {
    conn.prepare_cached(
        "INSERT INTO jobs (job_id, operation, op_type, status, request_id, project_id, user_id,
                           schedule_id, created_at)
         VALUES (?1, ?2, ?3, 'INIT', ?4, ?5, ?6, ?7, ?8)",
    )?
    .execute(params![
        job.job_id,
        job.operation.name(),
        job.operation.stop_type().map(crate::job::StopType::as_str),
        job.request_id,
        job.project_id,
        job.user_id,
        job.schedule_id,
        time_fmt::encode(time_fmt::now()),
    ])?;
    Ok(())
}

/// One sub-job as a batch creates it: waiting (`failure = None`) or
/// already failed (the node refused the operation).
pub(crate) struct NewSubJob<'a> {
    pub parent: &'a str,
    pub position: usize,
    pub sub_job_id: &'a str,
    pub node_uuid: Uuid,
    pub node_name: Option<&'a str>,
    pub request_id: &'a str,
    pub failure: Option<&'a Failure>,
}

pub(crate) fn insert_sub_job(conn: &Connection, sub: &NewSubJob<'_>) -> Result<(), StoreError> {
    let now = time_fmt::encode(time_fmt::now());
    let (state, end) = match sub.failure {
        Some(_) => (JobStatus::Fail, Some(now.as_str())),
        None => (JobStatus::Init, None),
    };
    conn.prepare_cached(
        "INSERT INTO sub_jobs (job_id, parent_id, position, node_uuid, node_name, request_id,
                               status, begin_time, end_time, error_code, fail_reason)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?8, ?9, ?10)",
    )?
    .execute(params![
        sub.sub_job_id,
        sub.parent,
        i64::try_from(sub.position).unwrap_or(i64::MAX),
        sub.node_uuid.to_string(),
        sub.node_name,
        sub.request_id,
        state.as_str(),
        end,
        sub.failure.map(|f| f.code.as_str()),
        sub.failure.map(|f| f.reason.as_str()),
    ])?;
    Ok(())
}

/// Marks a sub-job (and its job) running, unless it already moved on.
pub(crate) fn mark_running(
    conn: &Connection,
    sub_job_id: &str,
    at: OffsetDateTime,
) -> Result<(), StoreError> {
    let at = time_fmt::encode(at);
    let parent: Option<String> = conn
        .prepare_cached(
            "UPDATE sub_jobs SET status = 'RUNNING', begin_time = ?2
             WHERE job_id = ?1 AND status = 'INIT' RETURNING parent_id",
        )?
        .query_row(params![sub_job_id, at], |r| r.get(0))
        .optional()?;
    if let Some(parent) = parent {
        start_job(conn, &parent, &at)?;
    }
    Ok(())
}

fn start_job(conn: &Connection, job_id: &str, at: &str) -> Result<(), StoreError> {
    conn.prepare_cached(
        "UPDATE jobs SET status = 'RUNNING', begin_time = COALESCE(begin_time, ?2)
         WHERE job_id = ?1 AND status = 'INIT'",
    )?
    .execute(params![job_id, at])?;
    Ok(())
}

/// Ends a sub-job that has not ended yet (a cancelled one keeps its end),
/// and settles its job when it was the last.
pub(crate) fn end_sub_job(conn: &Connection, end: &SubJobEnd) -> Result<(), StoreError> {
    let now = time_fmt::encode(time_fmt::now());
    let begin = end.begin_time.map(time_fmt::encode);
    let (state, failure, message) = match &end.outcome {
        Ok(note) => (JobStatus::Success, None, Some(note.as_str())),
        Err(f) => (JobStatus::Fail, Some(f), None),
    };
    let parent: Option<String> = conn
        .prepare_cached(
            "UPDATE sub_jobs SET status = ?2, begin_time = COALESCE(begin_time, ?3, ?4),
                 end_time = ?4, error_code = ?5, fail_reason = ?6, message = ?7
             WHERE job_id = ?1 AND status IN ('INIT', 'RUNNING') RETURNING parent_id",
        )?
        .query_row(
            params![
                end.sub_job_id,
                state.as_str(),
                begin,
                now,
                failure.map(|f| f.code.as_str()),
                failure.map(|f| f.reason.as_str()),
                message,
            ],
            |r| r.get(0),
        )
        .optional()?;
    if let Some(parent) = parent {
        start_job(conn, &parent, begin.as_deref().unwrap_or(&now))?;
        settle(conn, &parent)?;
    }
    Ok(())
}

/// Looks at up to `scan` jobs after id `after`, oldest first, and deletes
/// (with their sub-jobs, by cascade) those that ended before `cutoff`. A
/// job cannot end before it was created, so its creation time serves as
/// the start (see [`prune::chunk`]). A job still INIT or RUNNING is never
/// taken, however old.
pub(crate) fn prune_chunk(
    conn: &Connection,
    cutoff: OffsetDateTime,
    after: i64,
    scan: usize,
) -> Result<PruneChunk, StoreError> {
    prune::chunk(
        conn,
        "SELECT id, created_at,
                CASE WHEN status IN ('SUCCESS', 'FAIL') THEN end_time END
         FROM jobs WHERE id > ?1 ORDER BY id LIMIT ?2",
        "DELETE FROM jobs WHERE id = ?1",
        cutoff,
        after,
        scan,
    )
}

/// Closes a job once none of its sub-jobs is left to run: SUCCESS when all
/// succeeded, else FAIL with the failures counted by code.
pub(crate) fn settle(conn: &Connection, job_id: &str) -> Result<(), StoreError> {
    let unfinished: i64 = conn
        .prepare_cached(
            "SELECT count(*) FROM sub_jobs
             WHERE parent_id = ?1 AND status IN ('INIT', 'RUNNING')",
        )?
        .query_row([job_id], |r| r.get(0))?;
    if unfinished > 0 {
        return Ok(());
    }
    let (total, failures) = failures_by_code(conn, job_id)?;
    let failed: u64 = failures.values().sum();
    let now = time_fmt::encode(time_fmt::now());
    let (state, code, reason) = if failed == 0 {
        (JobStatus::Success, None, None)
    } else {
        let by_code: Vec<String> = failures
            .iter()
            .map(|(code, n)| {
                let what = FailCode::parse(code).map_or("failed", FailCode::summary);
                format!("{n} {what} ({code})")
            })
            .collect::<Vec<String>>();
        (
            JobStatus::Fail,
            Some(JOB_FAILED_CODE),
            Some(format!(
                "{failed} of {total} sub-jobs failed: {}",
                by_code.join(", ")
            )),
        )
    };
    conn.prepare_cached(
        "UPDATE jobs SET status = ?2, end_time = ?3, begin_time = COALESCE(begin_time, ?3),
             error_code = ?4, fail_reason = ?5
         WHERE job_id = ?1 AND status IN ('INIT', 'RUNNING')",
    )?
    .execute(params![job_id, state.as_str(), now, code, reason])?;
    Ok(())
}

/// The error code of a job with failed sub-jobs.
pub const JOB_FAILED_CODE: &str = "BATON.0001";

fn failures_by_code(
    conn: &Connection,
    job_id: &str,
) -> Result<(u64, BTreeMap<String, u64>), StoreError> {
    let mut total = 0;
    let mut failures = BTreeMap::new();
    let mut stmt = conn.prepare_cached(
        "SELECT status, error_code, count(*) FROM sub_jobs WHERE parent_id = ?1
         GROUP BY status, error_code",
    )?;
    let rows = stmt.query_map([job_id], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, Option<String>>(1)?,
            r.get::<_, i64>(2)?,
        ))
    })?;
    for row in rows {
        let (state, code, n) = row?;
        let n = u64::try_from(n).unwrap_or(0);
        total += n;
        if state == JobStatus::Fail.as_str() {
            *failures.entry(code.unwrap_or_default()).or_insert(0) += n;
        }
    }
    Ok((total, failures))
}

fn counts(conn: &Connection, job_id: &str) -> Result<SubJobCounts, StoreError> {
    let mut counts = SubJobCounts::default();
    let mut stmt = conn.prepare_cached(
        "SELECT status, count(*) FROM sub_jobs WHERE parent_id = ?1 GROUP BY status",
    )?;
    let rows = stmt.query_map([job_id], |r| {
        Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?))
    })?;
    for row in rows {
        let (state, n) = row?;
        let n = u64::try_from(n).unwrap_or(0);
        match status(&state)? {
            JobStatus::Init => counts.init = n,
            JobStatus::Running => counts.running = n,
            JobStatus::Success => counts.success = n,
            JobStatus::Fail => counts.fail = n,
        }
    }
    Ok(counts)
}

struct RawJob {
    job_id: String,
    operation: String,
    op_type: Option<String>,
    status: String,
    request_id: String,
    project_id: Option<String>,
    user_id: Option<String>,
    schedule_id: Option<String>,
    created_at: String,
    begin_time: Option<String>,
    end_time: Option<String>,
    error_code: Option<String>,
    fail_reason: Option<String>,
}

impl RawJob {
    fn from_row(r: &Row<'_>) -> rusqlite::Result<Self> {
        Ok(Self {
            job_id: r.get(0)?,
            operation: r.get(1)?,
            op_type: r.get(2)?,
            status: r.get(3)?,
            request_id: r.get(4)?,
            project_id: r.get(5)?,
            user_id: r.get(6)?,
            schedule_id: r.get(7)?,
            created_at: r.get(8)?,
            begin_time: r.get(9)?,
            end_time: r.get(10)?,
            error_code: r.get(11)?,
            fail_reason: r.get(12)?,
        })
    }

    fn decode(self, conn: &Connection) -> Result<Job, StoreError> {
        let operation = BatchOperation::parse(&self.operation, self.op_type.as_deref())
            .ok_or_else(|| corrupt("job operation", &self.operation))?;
        Ok(Job {
            counts: counts(conn, &self.job_id)?,
            operation,
            status: status(&self.status)?,
            request_id: self.request_id,
            project_id: self.project_id,
            user_id: self.user_id,
            schedule_id: self.schedule_id,
            created_at: time_fmt::decode(&self.created_at)?,
            begin_time: opt_time(self.begin_time.as_deref())?,
            end_time: opt_time(self.end_time.as_deref())?,
            error_code: self.error_code,
            fail_reason: self.fail_reason,
            job_id: self.job_id,
            sub_jobs: Vec::new(),
        })
    }
}

fn sub_job(r: &Row<'_>) -> rusqlite::Result<[Option<String>; 10]> {
    Ok([
        r.get(0)?,
        r.get(1)?,
        r.get(2)?,
        r.get(3)?,
        r.get(4)?,
        r.get(5)?,
        r.get(6)?,
        r.get(7)?,
        r.get(8)?,
        r.get(9)?,
    ])
}

fn decode_sub_job(raw: [Option<String>; 10]) -> Result<SubJob, StoreError> {
    let [id, node, name, request_id, state, begin, end, code, reason, message] = raw;
    let node = node.unwrap_or_default();
    let failure = match code {
        Some(code) => Some(Failure {
            code: FailCode::parse(&code).ok_or_else(|| corrupt("error code", &code))?,
            reason: reason.unwrap_or_default(),
        }),
        None => None,
    };
    Ok(SubJob {
        job_id: id.unwrap_or_default(),
        node_uuid: Uuid::parse_str(&node).map_err(|_| corrupt("sub-job node", &node))?,
        node_name: name,
        request_id: request_id.unwrap_or_default(),
        status: status(state.as_deref().unwrap_or_default())?,
        begin_time: opt_time(begin.as_deref())?,
        end_time: opt_time(end.as_deref())?,
        failure,
        message,
    })
}

pub(crate) fn get(conn: &Connection, job_id: &str) -> Result<Job, StoreError> {
    let sql = format!("SELECT {JOB_COLUMNS} FROM jobs WHERE job_id = ?1");
    let raw = conn
        .prepare_cached(&sql)?
        .query_row([job_id], RawJob::from_row)
        .optional()?
        .ok_or_else(|| StoreError::JobNotFound {
            job_id: job_id.to_owned(),
        })?;
    let mut job = raw.decode(conn)?;
    let sql =
        format!("SELECT {SUB_JOB_COLUMNS} FROM sub_jobs WHERE parent_id = ?1 ORDER BY position");
    job.sub_jobs = conn
        .prepare_cached(&sql)?
        .query_map([job_id], sub_job)?
        .collect::<Result<Vec<_>, _>>()?
        .into_iter()
        .map(decode_sub_job)
        .collect::<Result<_, _>>()?;
    Ok(job)
}

/// Newest first; `marker` is the last job id of the previous page.
pub(crate) fn list(
    conn: &Connection,
    filter: &JobFilter,
    limit: usize,
    marker: Option<&str>,
) -> Result<Vec<Job>, StoreError> {
    let before = match marker {
        Some(m) => conn
            .prepare_cached("SELECT id FROM jobs WHERE job_id = ?1")?
            .query_row([m], |r| r.get::<_, i64>(0))
            .optional()?
            .ok_or_else(|| StoreError::MarkerNotFound {
                marker: m.to_owned(),
            })?,
        None => i64::MAX,
    };
    let sql = format!(
        "SELECT {JOB_COLUMNS} FROM jobs WHERE id < ?1
           AND (?2 IS NULL OR status = ?2) AND (?3 IS NULL OR operation = ?3)
         ORDER BY id DESC LIMIT ?4"
    );
    let raws = conn
        .prepare_cached(&sql)?
        .query_map(
            params![
                before,
                filter.status.map(JobStatus::as_str),
                filter.operation,
                i64::try_from(limit).unwrap_or(i64::MAX),
            ],
            RawJob::from_row,
        )?
        .collect::<Result<Vec<_>, _>>()?;
    raws.into_iter().map(|raw| raw.decode(conn)).collect()
}

/// The sub-jobs of a job that have not ended: (sub-job id, node uuid).
pub(crate) fn unfinished(
    conn: &Connection,
    job_id: &str,
) -> Result<Vec<(String, Uuid)>, StoreError> {
    let rows = conn
        .prepare_cached(
            "SELECT job_id, node_uuid FROM sub_jobs
             WHERE parent_id = ?1 AND status IN ('INIT', 'RUNNING') ORDER BY position",
        )?
        .query_map([job_id], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
        })?
        .collect::<Result<Vec<_>, _>>()?;
    rows.into_iter()
        .map(|(id, node)| {
            let uuid = Uuid::parse_str(&node).map_err(|_| corrupt("sub-job node", &node))?;
            Ok((id, uuid))
        })
        .collect()
}

/// The node and request of a sub-job, while it has not ended.
pub(crate) fn sub_job_node(
    conn: &Connection,
    sub_job_id: &str,
) -> Result<Option<(Uuid, String)>, StoreError> {
    let row = conn
        .prepare_cached(
            "SELECT node_uuid, request_id FROM sub_jobs
             WHERE job_id = ?1 AND status IN ('INIT', 'RUNNING')",
        )?
        .query_row([sub_job_id], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
        })
        .optional()?;
    row.map(|(node, request)| {
        let uuid = Uuid::parse_str(&node).map_err(|_| corrupt("sub-job node", &node))?;
        Ok((uuid, request))
    })
    .transpose()
}

const SCHEDULE_COLUMNS: &str = "schedule_id, cron, time_zone, body, project_id, user_id, \
     created_at, last_fired, last_job_id";

fn schedule(r: &Row<'_>) -> rusqlite::Result<[Option<String>; 9]> {
    Ok([
        r.get(0)?,
        r.get(1)?,
        r.get(2)?,
        r.get(3)?,
        r.get(4)?,
        r.get(5)?,
        r.get(6)?,
        r.get(7)?,
        r.get(8)?,
    ])
}

fn decode_schedule(raw: [Option<String>; 9]) -> Result<Schedule, StoreError> {
    let [id, cron, zone, body, project, user, created, fired, job] = raw;
    Ok(Schedule {
        schedule_id: id.unwrap_or_default(),
        cron: cron.unwrap_or_default(),
        time_zone: zone.unwrap_or_default(),
        body: body.unwrap_or_default(),
        project_id: project,
        user_id: user,
        created_at: time_fmt::decode(created.as_deref().unwrap_or_default())?,
        last_fired: opt_time(fired.as_deref())?,
        last_job_id: job,
    })
}

pub(crate) fn insert_schedule(conn: &Connection, s: &Schedule) -> Result<(), StoreError> {
    conn.prepare_cached(
        "INSERT INTO schedules (schedule_id, cron, time_zone, body, project_id, user_id, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?
    .execute(params![
        s.schedule_id,
        s.cron,
        s.time_zone,
        s.body,
        s.project_id,
        s.user_id,
        time_fmt::encode(s.created_at),
    ])?;
    Ok(())
}

pub(crate) fn schedules(conn: &Connection) -> Result<Vec<Schedule>, StoreError> {
    let sql = format!("SELECT {SCHEDULE_COLUMNS} FROM schedules ORDER BY id");
    conn.prepare_cached(&sql)?
        .query_map([], schedule)?
        .collect::<Result<Vec<_>, _>>()?
        .into_iter()
        .map(decode_schedule)
        .collect()
}

pub(crate) fn get_schedule(conn: &Connection, id: &str) -> Result<Schedule, StoreError> {
    let sql = format!("SELECT {SCHEDULE_COLUMNS} FROM schedules WHERE schedule_id = ?1");
    let raw = conn
        .prepare_cached(&sql)?
        .query_row([id], schedule)
        .optional()?
        .ok_or_else(|| StoreError::ScheduleNotFound { id: id.to_owned() })?;
    decode_schedule(raw)
}

pub(crate) fn delete_schedule(conn: &Connection, id: &str) -> Result<Schedule, StoreError> {
    let found = get_schedule(conn, id)?;
    conn.prepare_cached("DELETE FROM schedules WHERE schedule_id = ?1")?
        .execute([id])?;
    Ok(found)
}

pub(crate) fn schedule_fired(
    conn: &Connection,
    id: &str,
    at: OffsetDateTime,
    job_id: Option<&str>,
) -> Result<(), StoreError> {
    conn.prepare_cached(
        "UPDATE schedules SET last_fired = ?2, last_job_id = COALESCE(?3, last_job_id)
         WHERE schedule_id = ?1",
    )?
    .execute(params![id, time_fmt::encode(at), job_id])?;
    Ok(())
}
