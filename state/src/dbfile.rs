//! The database file as batond opened it, and what to tell an operator
//! when it stops taking writes.
//!
//! SQLite keeps writing to a file that was deleted or replaced under it
//! (the open descriptor still points at the old inode): every write would
//! report success and vanish at the next start. So the file's identity
//! (device and inode) is kept at open, and checked before each group
//! commit; a mismatch refuses the write instead. Errors that mean the disk
//! or file system cannot take writes (full, read-only, failing, damaged)
//! become [`StoreError::Unavailable`] with the file and what to do, which
//! the API answers with 503 — never as a success.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use rusqlite::ErrorCode;

use crate::StoreError;

/// Why the database refused a request, and what to do about it.
#[derive(Debug, Clone, thiserror::Error)]
#[error("the database {} cannot take this request: {reason}; nothing was changed — {hint}", .path.display())]
pub struct Refusal {
    pub path: PathBuf,
    pub reason: String,
    pub hint: &'static str,
}

#[derive(Debug, Clone)]
pub(crate) struct DbFile {
    path: PathBuf,
    /// (device, inode) at open.
    identity: (u64, u64),
}

impl DbFile {
    /// Records the identity of the file at `path` (which must exist).
    pub(crate) fn new(path: &Path) -> Result<Self, StoreError> {
        let meta = std::fs::metadata(path).map_err(|source| StoreError::Io {
            path: path.to_owned(),
            source,
        })?;
        Ok(Self {
            path: path.to_owned(),
            identity: (meta.dev(), meta.ino()),
        })
    }

    /// Fails when the path no longer names the file that was opened.
    pub(crate) fn check(&self) -> Result<(), Refusal> {
        let same = std::fs::metadata(&self.path).is_ok_and(|m| (m.dev(), m.ino()) == self.identity);
        if same {
            Ok(())
        } else {
            Err(self.unavailable(
                "the file was deleted or replaced while batond was running, so writes to it would be lost"
                    .into(),
                "put the file back (or restore a backup) and restart batond",
            ))
        }
    }

    fn unavailable(&self, reason: String, hint: &'static str) -> Refusal {
        Refusal {
            path: self.path.clone(),
            reason,
            hint,
        }
    }

    /// Why a group of writes failed to begin or commit.
    pub(crate) fn write_failed(&self, error: &rusqlite::Error) -> Refusal {
        self.unavailable(
            error.to_string(),
            hint(error).unwrap_or("see batond's log; batond retries its own writes"),
        )
    }

    /// `error` as [`StoreError::Unavailable`] when it says the disk or
    /// file system cannot serve the database; other errors as they are.
    pub(crate) fn classify(&self, error: StoreError) -> StoreError {
        let StoreError::Sqlite(sqlite) = &error else {
            return error;
        };
        match hint(sqlite) {
            Some(hint) => self.unavailable(sqlite.to_string(), hint).into(),
            None => error,
        }
    }
}

/// What to do about an SQLite error that means the database's storage
/// cannot serve it; `None` for other errors (bad SQL, constraints…).
fn hint(error: &rusqlite::Error) -> Option<&'static str> {
    Some(match error.sqlite_error_code()? {
        ErrorCode::DiskFull => {
            "free space on its file system; batond takes writes again as soon as there is room"
        }
        ErrorCode::ReadOnly | ErrorCode::SystemIoFailure | ErrorCode::CannotOpen => {
            "its file or file system is read-only or failing (see the kernel log): make it \
             writable again, check the disk, then restart batond"
        }
        ErrorCode::DatabaseCorrupt | ErrorCode::NotADatabase => {
            "the file is damaged: stop batond and restore a backup"
        }
        ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked => {
            "another process holds a lock on it; retry, and stop any tool that has it open"
        }
        _ => return None,
    })
}

/// Whether an error opening the database means its content is damaged
/// (rather than unreachable).
pub(crate) fn is_damage(error: &rusqlite::Error) -> bool {
    matches!(
        error.sqlite_error_code(),
        Some(ErrorCode::DatabaseCorrupt | ErrorCode::NotADatabase)
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn sqlite(code: ErrorCode, extended: i32) -> StoreError {
        StoreError::Sqlite(rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error {
                code,
                extended_code: extended,
            },
            None,
        ))
    }

    /// Storage failures become a refusal naming the file and what to do;
    /// anything else (a constraint, say) stays what it was.
    #[test]
    fn storage_errors_become_refusals() {
        let dir = tempfile::TempDir::new().unwrap();
        let path = dir.path().join("db");
        std::fs::write(&path, b"").unwrap();
        let file = DbFile::new(&path).unwrap();
        for (code, extended, hint) in [
            (ErrorCode::DiskFull, 13, "free space"),
            (ErrorCode::ReadOnly, 8, "read-only"),
            (ErrorCode::SystemIoFailure, 10, "read-only or failing"),
            (ErrorCode::DatabaseCorrupt, 11, "restore a backup"),
        ] {
            let StoreError::Unavailable(refusal) = file.classify(sqlite(code, extended)) else {
                panic!("{code:?} is a storage failure");
            };
            assert_eq!(refusal.path, path);
            assert!(refusal.to_string().contains(hint), "{refusal}");
        }
        let constraint = file.classify(sqlite(ErrorCode::ConstraintViolation, 19));
        assert!(matches!(constraint, StoreError::Sqlite(_)), "{constraint}");
    }

    /// A deleted file, and one put in its place, are both noticed.
    #[test]
    fn a_deleted_or_replaced_file_is_noticed() {
        let dir = tempfile::TempDir::new().unwrap();
        let path = dir.path().join("db");
        std::fs::write(&path, b"").unwrap();
        let file = DbFile::new(&path).unwrap();
        file.check().unwrap();
        // Held open, as SQLite holds it, so its inode is not reused.
        let _open = std::fs::File::open(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        assert!(file
            .check()
            .unwrap_err()
            .reason
            .contains("deleted or replaced"));
        let other = dir.path().join("other");
        std::fs::write(&other, b"").unwrap();
        std::fs::rename(&other, &path).unwrap();
        assert!(file.check().is_err());
    }
}
