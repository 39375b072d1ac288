//! Timestamp encoding: RFC 3339 in UTC, as stored in the database and shown in
//! the API.

use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::StoreError;

pub(crate) fn now() -> OffsetDateTime {
    OffsetDateTime::now_utc()
}

pub(crate) fn encode(t: OffsetDateTime) -> String {
    // Rfc3339 formatting only fails for years outside 0..=9999.
    t.format(&Rfc3339)
        .unwrap_or_else(|_| t.unix_timestamp().to_string())
}

pub(crate) fn decode(s: &str) -> Result<OffsetDateTime, StoreError> {
    OffsetDateTime::parse(s, &Rfc3339)
        .map_err(|e| StoreError::Corrupt(format!("bad timestamp {s:?}: {e}")))
}
