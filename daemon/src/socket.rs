//! Owning the API's Unix socket strictly.
//!
//! 1. Create the socket's directory (0750) if it is missing.
//! 2. Take an exclusive `flock` on `<socket>.lock`, held for the daemon's
//!    life: a second batond on the same path stops here with a clear message.
//! 3. If a socket file is already there, see whether anything answers on it:
//!    a live listener (not ours) is left alone, a dead one's file is removed.
//!    Anything that is not a socket is never removed.
//! 4. Bind, then set the socket's mode to 0660 (and its group, when
//!    `api.socket_group` names one).
//!
//! The socket file is removed when the [`SocketGuard`] is dropped.
//!
//! A socket systemd passed ([`adopt`]) is systemd's: no lock, and it is
//! never removed. Either way batond refuses a socket directory that others
//! may write to (they could replace the socket with their own).

use std::fs::DirBuilder;
use std::io::ErrorKind;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};

use tokio::net::UnixListener;

use baton_state::lockfile::{self, Lock, LockError};

#[derive(Debug, thiserror::Error)]
pub enum SocketError {
    #[error("another batond is already serving on {path} (lock {lock} is held{holder}); stop it first or choose another [api] socket")]
    AlreadyRunning {
        path: PathBuf,
        lock: PathBuf,
        holder: String,
    },
    #[error("{path} is answered by a running process that is not this batond; stop it or choose another [api] socket")]
    InUse { path: PathBuf },
    #[error("{path} exists and is not a socket; refusing to replace it — remove it or choose another [api] socket")]
    NotASocket { path: PathBuf },
    #[error("the socket's directory {dir} is writable by others (mode {mode:04o}); anyone could replace the socket — make it 0750 (chmod 0750 {dir})")]
    OpenDirectory { dir: PathBuf, mode: u32 },
    #[error("cannot {action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// A bound listener plus the guard that makes the path ours.
#[derive(Debug)]
pub struct BoundSocket {
    pub listener: UnixListener,
    pub guard: SocketGuard,
}

/// Holds the lock; removes the socket file when dropped — unless systemd
/// passed the socket, which then has neither lock nor removal.
#[derive(Debug)]
pub struct SocketGuard {
    path: PathBuf,
    lock: Option<Lock>,
}

impl SocketGuard {
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// False for a socket systemd passed (not batond's to lock or remove).
    pub fn owned(&self) -> bool {
        self.lock.is_some()
    }
}

impl Drop for SocketGuard {
    fn drop(&mut self) {
        if self.lock.is_some() {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

fn io<'a>(action: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> SocketError + 'a {
    move |source| SocketError::Io {
        action,
        path: path.to_owned(),
        source,
    }
}

/// Binds the API socket at `path`, following the steps in the module docs.
/// Must be called inside a tokio runtime.
pub fn bind(path: &Path, group: Option<u32>) -> Result<BoundSocket, SocketError> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        DirBuilder::new()
            .recursive(true)
            .mode(0o750)
            .create(dir)
            .map_err(io("create directory", dir))?;
        check_directory(dir)?;
    }
    let lock = take_lock(path)?;
    remove_stale(path)?;
    let listener = UnixListener::bind(path).map_err(io("bind", path))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))
        .map_err(io("set permissions on", path))?;
    if let Some(gid) = group {
        nix::unistd::chown(path, None, Some(nix::unistd::Gid::from_raw(gid)))
            .map_err(|e| io("set the group of", path)(e.into()))?;
    }
    Ok(BoundSocket {
        listener,
        guard: SocketGuard {
            path: path.to_owned(),
            lock: Some(lock),
        },
    })
}

/// Serves on the listening socket systemd passed (`batond.socket`). Must
/// be called inside a tokio runtime.
pub fn adopt(listener: std::os::unix::net::UnixListener) -> Result<BoundSocket, SocketError> {
    let unnamed = PathBuf::from("(socket passed by systemd)");
    let path = listener
        .local_addr()
        .ok()
        .and_then(|a| a.as_pathname().map(Path::to_owned))
        .unwrap_or(unnamed);
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        check_directory(dir)?;
    }
    listener
        .set_nonblocking(true)
        .map_err(io("configure", &path))?;
    let listener = UnixListener::from_std(listener).map_err(io("serve on", &path))?;
    Ok(BoundSocket {
        listener,
        guard: SocketGuard { path, lock: None },
    })
}

/// Refuses a directory others may write to.
fn check_directory(dir: &Path) -> Result<(), SocketError> {
    let mode = std::fs::metadata(dir)
        .map_err(io("inspect", dir))?
        .permissions()
        .mode();
    if mode & 0o002 != 0 {
        return Err(SocketError::OpenDirectory {
            dir: dir.to_owned(),
            mode: mode & 0o7777,
        });
    }
    Ok(())
}

fn take_lock(path: &Path) -> Result<Lock, SocketError> {
    lockfile::lock(path).map_err(|e| match e {
        LockError::Held { lock, holder } => SocketError::AlreadyRunning {
            path: path.to_owned(),
            lock,
            holder,
        },
        LockError::Io { lock, source } => SocketError::Io {
            action: "lock",
            path: lock,
            source,
        },
    })
}

fn remove_stale(path: &Path) -> Result<(), SocketError> {
    let meta = match std::fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io("inspect", path)(e)),
    };
    if !meta.file_type().is_socket() {
        return Err(SocketError::NotASocket {
            path: path.to_owned(),
        });
    }
    match std::os::unix::net::UnixStream::connect(path) {
        Ok(_) => Err(SocketError::InUse {
            path: path.to_owned(),
        }),
        Err(e) if e.kind() == ErrorKind::ConnectionRefused => {
            tracing::info!(path = %path.display(), "removing stale socket left by a stopped batond");
            std::fs::remove_file(path).map_err(io("remove stale socket", path))
        }
        Err(e) => Err(io("probe existing socket", path)(e)),
    }
}
