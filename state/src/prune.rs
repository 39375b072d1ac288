//! The walk both retention prunes share (action records, batch jobs): a
//! table read oldest first, a chunk of rows per transaction, each row
//! deleted when it may go and ended before the cutoff.

use rusqlite::{params, Connection};
use time::OffsetDateTime;

use crate::{time_fmt, StoreError};

/// What one chunk of a prune did: the rows it deleted, and the id to
/// continue after (none: nothing older than the cutoff is left to look at).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PruneChunk {
    pub deleted: usize,
    pub next: Option<i64>,
}

/// One row as a prune sees it.
pub(crate) struct Candidate {
    pub id: i64,
    /// When it started: ids grow with start times (one writer stamps them
    /// in order), so the first row started at or after the cutoff ends the
    /// prune — everything after it is younger.
    pub started: String,
    /// When it last changed, if it may go at all (`None`: still running).
    pub ended: Option<String>,
}

/// Reads up to `scan` rows after id `after` with `select` (`?1` the id,
/// `?2` the limit; columns id, start, and the end of a row that may go, or
/// NULL) and deletes with `delete` (`?1` the id) those that ended before
/// `cutoff`. Timestamps are compared decoded: their text has a varying
/// number of fraction digits, so it does not sort. (A clock set far ahead
/// for a while holds pruning back until real time passes the rows it
/// stamped; it never makes a prune take a young row.)
pub(crate) fn chunk(
    conn: &Connection,
    select: &str,
    delete: &str,
    cutoff: OffsetDateTime,
    after: i64,
    scan: usize,
) -> Result<PruneChunk, StoreError> {
    let rows: Vec<Candidate> = conn
        .prepare_cached(select)?
        .query_map(
            params![after, i64::try_from(scan).unwrap_or(i64::MAX)],
            |r| {
                Ok(Candidate {
                    id: r.get(0)?,
                    started: r.get(1)?,
                    ended: r.get(2)?,
                })
            },
        )?
        .collect::<Result<_, _>>()?;
    let mut delete = conn.prepare_cached(delete)?;
    let mut deleted = 0;
    for row in &rows {
        if time_fmt::decode(&row.started)? >= cutoff {
            return Ok(PruneChunk {
                deleted,
                next: None,
            });
        }
        if let Some(ended) = &row.ended {
            if time_fmt::decode(ended)? < cutoff {
                deleted += delete.execute([row.id])?;
            }
        }
    }
    let next = match rows.last() {
        Some(row) if rows.len() >= scan => Some(row.id),
        _ => None,
    };
    Ok(PruneChunk { deleted, next })
}
