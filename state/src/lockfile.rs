//! Exclusive `flock`s on `<path>.lock` files: one store per database file
//! (and, for the daemon, one batond per API socket). The lock file holds the owner's pid so the refusal can
//! name it; the kernel drops the lock when the process dies, however it dies.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};

/// A held lock; released when dropped.
pub type Lock = Flock<File>;

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("lock {lock} is held{holder}")]
    Held { lock: PathBuf, holder: String },
    #[error("cannot lock {lock}: {source}")]
    Io {
        lock: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// `<path>.lock`.
pub fn lock_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".lock");
    PathBuf::from(name)
}

/// Takes the exclusive lock for `path` without waiting.
pub fn lock(path: &Path) -> Result<Lock, LockError> {
    let lock = lock_path(path);
    let io = |source| LockError::Io {
        lock: lock.clone(),
        source,
    };
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .mode(0o600)
        .open(&lock)
        .map_err(io)?;
    match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
        Ok(mut locked) => {
            // The pid is informational; a failure to write it is harmless.
            let _ = locked.set_len(0);
            let _ = writeln!(locked, "{}", std::process::id());
            Ok(locked)
        }
        Err((_, nix::errno::Errno::EWOULDBLOCK)) => {
            let holder = std::fs::read_to_string(&lock)
                .ok()
                .map(|pid| pid.trim().to_owned())
                .filter(|pid| !pid.is_empty())
                .map(|pid| format!(" by pid {pid}"))
                .unwrap_or_default();
            Err(LockError::Held { lock, holder })
        }
        Err((_, errno)) => Err(io(std::io::Error::from(errno))),
    }
}
