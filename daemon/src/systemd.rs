//! batond as a systemd service: the notify protocol (`sd_notify(3)`) and
//! socket activation (`sd_listen_fds(3)`).
//!
//! - [`Notifier`] sends state datagrams to `$NOTIFY_SOCKET` (a path, or an
//!   abstract name starting with `@`): `READY=1` once the database is open
//!   and the socket serves, `STATUS=` lines, `WATCHDOG=1`, `STOPPING=1`,
//!   `RELOADING=1` with `MONOTONIC_USEC=`. Without `$NOTIFY_SOCKET` it sends
//!   nothing.
//! - [`supervise`] pings the watchdog every half `$WATCHDOG_USEC`, but only
//!   after the conductor's reconcile loop has answered a probe: a hung
//!   conductor stops the pings and systemd restarts batond, even while the
//!   API still answers. It refreshes `STATUS=` as it goes.
//! - [`inherited_listener`] takes the listening socket systemd passed (fd 3,
//!   `$LISTEN_FDS` = 1, `$LISTEN_PID` = our pid). It must run before any
//!   thread starts, since it clears those variables.

use std::future::Future;
use std::os::unix::net::{SocketAddr, UnixDatagram, UnixListener};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

/// How often `STATUS=` is refreshed when nothing else prompts it.
const STATUS_EVERY: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum ActivationError {
    #[error("systemd passed {0} sockets (LISTEN_FDS); batond serves exactly one — give batond.socket a single ListenStream=")]
    Count(usize),
    #[error("the socket systemd passed is not a listening Unix stream socket: {0}; batond.socket needs ListenStream=/path/to/socket")]
    NotUnix(#[source] std::io::Error),
}

/// The listening socket systemd passed, if any and if it is for this
/// process. Call before starting threads: it clears `LISTEN_*`.
pub fn inherited_listener() -> Result<Option<UnixListener>, ActivationError> {
    // listenfd accepts a missing LISTEN_PID; systemd always sets it, and
    // fds meant for another process must not be taken.
    let for_us = std::env::var("LISTEN_PID")
        .ok()
        .and_then(|pid| pid.parse::<u32>().ok())
        == Some(std::process::id());
    if !for_us {
        return Ok(None);
    }
    let mut fds = listenfd::ListenFd::from_env();
    match fds.len() {
        0 => Ok(None),
        1 => fds.take_unix_listener(0).map_err(ActivationError::NotUnix),
        n => Err(ActivationError::Count(n)),
    }
}

/// Sends state changes to the service manager.
#[derive(Debug, Default)]
pub struct Notifier {
    socket: Option<SocketAddr>,
    watchdog: Option<Duration>,
}

impl Notifier {
    /// A notifier that sends nothing (batond not run by systemd, tests).
    pub fn disabled() -> Self {
        Self::default()
    }

    /// Sends to `socket`; expects pings within `watchdog`.
    pub fn new(socket: SocketAddr, watchdog: Option<Duration>) -> Self {
        Self {
            socket: Some(socket),
            watchdog,
        }
    }

    /// From `$NOTIFY_SOCKET`, `$WATCHDOG_USEC` and `$WATCHDOG_PID`.
    pub fn from_env() -> Self {
        let socket = std::env::var_os("NOTIFY_SOCKET").and_then(|path| {
            let address = notify_address(path.as_encoded_bytes());
            if let Err(error) = &address {
                tracing::warn!(%error, socket = ?path, "cannot use NOTIFY_SOCKET; systemd will not hear from batond");
            }
            address.ok()
        });
        let watchdog_for_us = std::env::var("WATCHDOG_PID")
            .ok()
            .and_then(|pid| pid.parse::<u32>().ok())
            .is_none_or(|pid| pid == std::process::id());
        let watchdog = std::env::var("WATCHDOG_USEC")
            .ok()
            .and_then(|usec| usec.parse::<u64>().ok())
            .filter(|usec| *usec > 0 && watchdog_for_us)
            .map(Duration::from_micros);
        Self { socket, watchdog }
    }

    /// The watchdog timeout systemd expects pings within, if enabled.
    pub fn watchdog(&self) -> Option<Duration> {
        self.watchdog.filter(|_| self.socket.is_some())
    }

    /// Sends one message (`KEY=value` lines). Failures are logged: systemd
    /// restarting a service it cannot hear from is the right outcome.
    pub fn send(&self, message: &str) {
        let Some(address) = &self.socket else { return };
        // Never block the runtime on a service manager that is not reading.
        let sent = UnixDatagram::unbound()
            .and_then(|s| s.set_nonblocking(true).map(|()| s))
            .and_then(|s| s.send_to_addr(message.as_bytes(), address));
        if let Err(error) = sent {
            tracing::warn!(%error, "cannot notify systemd");
        }
    }

    pub fn ready(&self, status: &str) {
        self.send(&format!("READY=1\nSTATUS={status}\n"));
    }

    pub fn status(&self, status: &str) {
        self.send(&format!("STATUS={status}\n"));
    }

    pub fn stopping(&self) {
        self.send("STOPPING=1\nSTATUS=stopping: finishing BMC commands in flight\n");
    }

    /// `RELOADING=1` with the monotonic time, as `Type=notify-reload`
    /// expects; `READY=1` follows when the reload is done.
    pub fn reloading(&self) {
        let now = nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC)
            .map(|t| Duration::from(t).as_micros())
            .unwrap_or_default();
        self.send(&format!(
            "RELOADING=1\nMONOTONIC_USEC={now}\nSTATUS=reloading the config\n"
        ));
    }

    pub fn ping(&self) {
        self.send("WATCHDOG=1\n");
    }
}

/// `$NOTIFY_SOCKET` as an address: `@name` is abstract, anything else a path.
fn notify_address(raw: &[u8]) -> std::io::Result<SocketAddr> {
    use std::os::linux::net::SocketAddrExt;
    match raw.strip_prefix(b"@") {
        Some(name) => SocketAddr::from_abstract_name(name),
        None => SocketAddr::from_pathname(
            <std::ffi::OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(raw),
        ),
    }
}

/// Pings the watchdog while `alive` (a probe of the conductor's loop)
/// answers within half the watchdog timeout, and refreshes `STATUS=` from
/// `status`, until `stop`.
pub async fn supervise<A, AF, S, SF>(
    notifier: &Notifier,
    alive: A,
    status: S,
    stop: CancellationToken,
) where
    A: Fn() -> AF,
    AF: Future<Output = bool>,
    S: Fn() -> SF,
    SF: Future<Output = String>,
{
    let ping_every = notifier.watchdog().map(|timeout| timeout / 2);
    let mut pings = tokio::time::interval(ping_every.unwrap_or(STATUS_EVERY));
    // READY=1 carried the first status.
    let mut statuses =
        tokio::time::interval_at(tokio::time::Instant::now() + STATUS_EVERY, STATUS_EVERY);
    pings.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    statuses.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = pings.tick(), if ping_every.is_some() => {
                let limit = ping_every.unwrap_or(STATUS_EVERY);
                match tokio::time::timeout(limit, alive()).await {
                    Ok(true) => notifier.ping(),
                    _ => tracing::error!(
                        waited = %humantime::format_duration(limit),
                        "the conductor loop did not answer; withholding the watchdog ping so systemd restarts batond"
                    ),
                }
            }
            _ = statuses.tick() => notifier.status(&status().await),
        }
    }
}

/// One line for `STATUS=`: nodes, busy workers, operations, last sweep.
pub async fn status_line(conductor: &crate::conductor::Conductor) -> String {
    let nodes = conductor.power_state_counts().await.map_or_else(
        |_| "? (database unavailable)".to_owned(),
        |c| c.total().to_string(),
    );
    let activity = conductor.activity();
    let sweep = activity
        .last_sweeps
        .iter()
        .find(|s| s.kind == "sync")
        .map_or_else(
            || "no power sync sweep yet".to_owned(),
            |s| {
                format!(
                    "last sweep {} ({} read, {} failed, {} ms)",
                    s.started_at, s.read, s.failed, s.duration_ms
                )
            },
        );
    let refused = conductor
        .store()
        .writes_refused()
        .map(|refusal| format!("; DATABASE REFUSES WRITES: {refusal}"))
        .unwrap_or_default();
    format!(
        "{nodes} nodes, {}/{} workers busy, {} operations in flight, {sweep}{refused}",
        activity.workers.busy, activity.workers.max, activity.operations.in_flight
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs `supervise` for five watchdog periods with a conductor probe
    /// that answers `answers`, and returns the pings sent.
    async fn pings(answers: bool) -> usize {
        let dir = tempfile::TempDir::new().unwrap();
        let path = dir.path().join("notify");
        let socket = tokio::net::UnixDatagram::bind(&path).unwrap();
        let pings = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = std::sync::Arc::clone(&pings);
        let counting = tokio::spawn(async move {
            let mut buf = [0u8; 4096];
            while let Ok(n) = socket.recv(&mut buf).await {
                if String::from_utf8_lossy(&buf[..n]).contains("WATCHDOG=1") {
                    counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                }
            }
        });
        let watchdog = Duration::from_secs(2);
        let notifier = Notifier::new(SocketAddr::from_pathname(&path).unwrap(), Some(watchdog));
        let stop = CancellationToken::new();
        let run = supervise(
            &notifier,
            || async move {
                if !answers {
                    std::future::pending::<()>().await;
                }
                true
            },
            || async { "status".to_owned() },
            stop.clone(),
        );
        let _ = tokio::time::timeout(watchdog * 5, run).await;
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        counting.abort();
        pings.load(std::sync::atomic::Ordering::SeqCst)
    }

    #[tokio::test(start_paused = true)]
    async fn pings_only_while_the_conductor_loop_answers() {
        assert!(pings(true).await >= 8);
        assert_eq!(pings(false).await, 0);
    }

    #[test]
    fn abstract_and_path_addresses() {
        use std::os::linux::net::SocketAddrExt;
        let abstract_ = notify_address(b"@/org/freedesktop/systemd1/notify").unwrap();
        assert_eq!(
            abstract_.as_abstract_name(),
            Some(&b"/org/freedesktop/systemd1/notify"[..])
        );
        let path = notify_address(b"/run/systemd/notify").unwrap();
        assert_eq!(
            path.as_pathname(),
            Some(std::path::Path::new("/run/systemd/notify"))
        );
    }
}
