//! Admission and deadlines of API connections, so that careless or hostile
//! clients cannot exhaust file descriptors or memory:
//!
//! - [`Admission`] caps the connections open at once. At the cap, the
//!   connection idle longest is closed to admit the new one, once it has
//!   been idle for [`EVICTABLE_AFTER`]; if none is, the new one waits for a
//!   slot. Idle means no request in progress and nothing unread in the
//!   socket: a keep-alive connection between requests, or one that stalled
//!   partway through its headers. A request that waits unread, e.g. while
//!   batond is busy, is never cut off.
//! - [`DeadlineIo`] closes a connection whose client stops reading: a write
//!   that makes no progress for the write timeout fails, hyper drops the
//!   connection, and the response it held is freed. It also puts the error
//!   envelope and a request id on the answers hyper makes by itself to
//!   requests it cannot parse ([`crate::malformed`]).
//! - [`raise_fd_limit`] lifts the open-file soft limit to the hard limit,
//!   and [`connection_budget`] keeps the cap within what that limit holds.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use hyper::body::{Body as HttpBody, Frame, SizeHint};
use nix::sys::socket::{recv, MsgFlags, Shutdown};
use std::os::fd::AsRawFd;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::UnixStream;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::{Instant, Sleep};
use tokio_util::sync::CancellationToken;

/// A connection without a request in progress for this long may be closed
/// to admit a new one; shorter, and it is likely a client about to send.
pub const EVICTABLE_AFTER: Duration = Duration::from_secs(1);
/// How often a new connection that waits for a slot looks again for an
/// idle connection to close.
const ADMISSION_RETRY: Duration = Duration::from_millis(100);

/// File descriptors kept back from client connections: the database
/// (writer and readers, each with its -wal and -shm files), locks, the
/// listener, logs, the runtime, and the conductor's BMC connections.
pub fn reserved_fds(bmc_workers: u32, db_readers: usize) -> u64 {
    64 + u64::from(bmc_workers) + 3 * (db_readers as u64 + 1)
}

/// Raises the soft limit on open files to the hard limit; returns the soft
/// limit in force afterwards (the old one if it could not be raised).
pub fn raise_fd_limit() -> io::Result<u64> {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).map_err(io::Error::from)?;
    if soft >= hard {
        return Ok(soft);
    }
    match setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
        Ok(()) => Ok(hard),
        Err(error) => {
            tracing::warn!(%error, soft, hard, "cannot raise the open-file limit");
            Ok(soft)
        }
    }
}

/// How many connections to admit: the configured cap, lowered so that
/// connections plus `reserved` descriptors fit in `fd_limit` (but at least
/// 1, so the API stays reachable).
pub fn connection_budget(configured: u32, fd_limit: u64, reserved: u64) -> usize {
    let room = fd_limit.saturating_sub(reserved).max(1);
    usize::try_from(u64::from(configured).min(room)).unwrap_or(usize::MAX)
}

/// Whether one connection has requests in progress, and since when not.
#[derive(Debug)]
pub struct ConnectionState {
    in_flight: AtomicUsize,
    /// Milliseconds since `epoch` when it last became idle.
    idle_since_ms: AtomicU64,
    epoch: Instant,
}

impl ConnectionState {
    fn new(epoch: Instant) -> Self {
        let state = Self {
            in_flight: AtomicUsize::new(0),
            idle_since_ms: AtomicU64::new(0),
            epoch,
        };
        state.mark_idle();
        state
    }

    fn mark_idle(&self) {
        let ms = u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.idle_since_ms.store(ms, Ordering::Relaxed);
    }

    /// How long it has been without a request, or `None` while one is in
    /// progress.
    fn idle_for(&self, now_ms: u64) -> Option<u64> {
        (self.in_flight.load(Ordering::Acquire) == 0)
            .then(|| now_ms.saturating_sub(self.idle_since_ms.load(Ordering::Relaxed)))
    }

    /// Marks a request in progress until the returned guard is dropped
    /// (which [`BusyBody`] does once the response is sent or abandoned).
    pub fn enter(self: &Arc<Self>) -> Busy {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        Busy(Arc::clone(self))
    }
}

/// A request in progress on a connection.
#[derive(Debug)]
pub struct Busy(Arc<ConnectionState>);

impl Drop for Busy {
    fn drop(&mut self) {
        if self.0.in_flight.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.mark_idle();
        }
    }
}

/// A response body that keeps its connection marked busy until hyper has
/// sent it (or dropped it with the connection).
#[derive(Debug)]
pub struct BusyBody {
    body: Body,
    _busy: Busy,
}

impl BusyBody {
    pub fn new(body: Body, busy: Busy) -> Self {
        Self { body, _busy: busy }
    }
}

impl HttpBody for BusyBody {
    type Data = bytes::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// The open connections, and the slots for more.
#[derive(Debug)]
pub struct Admission {
    slots: Arc<Semaphore>,
    open: Mutex<HashMap<u64, Entry>>,
    next_id: AtomicU64,
    epoch: Instant,
    evictable_after: Duration,
}

#[derive(Debug)]
struct Entry {
    state: Arc<ConnectionState>,
    close: CancellationToken,
    /// Shared with the connection, so that the descriptor stays this
    /// socket's for as long as the entry can be looked at.
    stream: Arc<UnixStream>,
}

impl Entry {
    /// Whether the client has sent something batond has not read yet (or
    /// closed its end): peeks, without consuming or waiting.
    fn has_unread(&self) -> bool {
        let mut byte = [0_u8; 1];
        let flags = MsgFlags::MSG_PEEK | MsgFlags::MSG_DONTWAIT;
        !matches!(
            recv(self.stream.as_raw_fd(), &mut byte, flags),
            Err(nix::errno::Errno::EAGAIN)
        )
    }
}

/// An admitted connection: its socket, state, and the token that closes
/// it; gives its slot back (and is forgotten) when dropped.
#[derive(Debug)]
pub struct Admitted {
    pub stream: Arc<UnixStream>,
    pub state: Arc<ConnectionState>,
    pub close: CancellationToken,
    id: u64,
    admission: Arc<Admission>,
    _slot: OwnedSemaphorePermit,
}

impl Drop for Admitted {
    fn drop(&mut self) {
        self.admission.lock().remove(&self.id);
    }
}

impl Admission {
    /// Admits up to `max_connections`; at the limit, closes connections idle
    /// at least `evictable_after` ([`EVICTABLE_AFTER`] in batond).
    pub fn new(max_connections: usize, evictable_after: Duration) -> Arc<Self> {
        Arc::new(Self {
            slots: Arc::new(Semaphore::new(max_connections.max(1))),
            open: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(0),
            epoch: Instant::now(),
            evictable_after,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Entry>> {
        self.open.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Connections open now.
    pub fn open_connections(&self) -> usize {
        self.lock().len()
    }

    /// Waits for a slot for a new connection, closing the connection idle
    /// longest when all slots are taken.
    pub async fn admit(self: &Arc<Self>, stream: UnixStream) -> Admitted {
        let slot = loop {
            if let Ok(slot) = Arc::clone(&self.slots).try_acquire_owned() {
                break slot;
            }
            self.close_idlest();
            // A closed connection gives its slot back as its task ends.
            tokio::select! {
                slot = Arc::clone(&self.slots).acquire_owned() => match slot {
                    Ok(slot) => break slot,
                    Err(_) => std::future::pending().await,
                },
                () = tokio::time::sleep(ADMISSION_RETRY) => {}
            }
        };
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let state = Arc::new(ConnectionState::new(self.epoch));
        let close = CancellationToken::new();
        let stream = Arc::new(stream);
        self.lock().insert(
            id,
            Entry {
                state: Arc::clone(&state),
                close: close.clone(),
                stream: Arc::clone(&stream),
            },
        );
        Admitted {
            stream,
            state,
            close,
            id,
            admission: Arc::clone(self),
            _slot: slot,
        }
    }

    /// Closes the connection idle longest, if one has been idle at least
    /// `evictable_after` with nothing unread, and is not closing already.
    fn close_idlest(&self) {
        let now_ms = u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX);
        let min_ms = u64::try_from(self.evictable_after.as_millis()).unwrap_or(u64::MAX);
        let open = self.lock();
        let idlest = open
            .values()
            .filter(|e| !e.close.is_cancelled())
            .filter_map(|e| e.state.idle_for(now_ms).map(|idle| (idle, e)))
            .filter(|(idle, e)| *idle >= min_ms && !e.has_unread())
            .max_by_key(|(idle, _)| *idle);
        if let Some((idle_ms, entry)) = idlest {
            tracing::debug!(
                idle_ms,
                "at the connection limit; closing the connection idle longest"
            );
            entry.close.cancel();
        }
    }
}

/// A connection's socket, whose writes fail once they have made no
/// progress for `timeout` (the client stopped reading). It shares the
/// socket with the connection's [`Admitted`], so it reads and writes
/// through `&UnixStream`.
#[derive(Debug)]
pub struct DeadlineIo {
    stream: Arc<UnixStream>,
    timeout: Duration,
    stalled: Option<Pin<Box<Sleep>>>,
    /// Our answer in place of hyper's own to a request it could not parse,
    /// and how much of it is written.
    refusal: Option<(Vec<u8>, usize)>,
}

impl DeadlineIo {
    pub fn new(stream: Arc<UnixStream>, timeout: Duration) -> Self {
        Self {
            stream,
            timeout,
            stalled: None,
            refusal: None,
        }
    }

    /// Writes what is left of the refusal answer, if there is one.
    fn poll_refusal(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        loop {
            let Some((bytes, written)) = self.refusal.as_ref() else {
                return Poll::Ready(Ok(()));
            };
            if *written >= bytes.len() {
                return Poll::Ready(Ok(()));
            }
            let poll = self.poll_write_with(cx, |s| s.try_write(&bytes[*written..]));
            let n = std::task::ready!(self.watch(cx, poll))?;
            if let Some((_, written)) = self.refusal.as_mut() {
                *written += n;
            }
        }
    }

    /// Replaces hyper's bare answer to an unparsable request (`buf`) with
    /// ours; once one is made, hyper's bytes are taken and dropped (it
    /// writes nothing else before closing).
    fn poll_write_refusal(
        &mut self,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Option<Poll<io::Result<usize>>> {
        if self.refusal.is_none() {
            self.refusal = crate::malformed::answer(buf).map(|bytes| (bytes, 0));
        }
        self.refusal.as_ref()?;
        Some(self.poll_refusal(cx).map_ok(|()| buf.len()))
    }

    /// Passes a write's outcome through, arming the deadline while it is
    /// pending and disarming it on progress.
    fn watch<T>(&mut self, cx: &mut Context<'_>, poll: Poll<io::Result<T>>) -> Poll<io::Result<T>> {
        if poll.is_ready() {
            self.stalled = None;
            return poll;
        }
        let timeout = self.timeout;
        let stalled = self
            .stalled
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
        match stalled.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the client did not read the response within the write timeout",
            ))),
            Poll::Pending => Poll::Pending,
        }
    }

    /// Runs `attempt` once the socket is writable, until it does not block.
    fn poll_write_with<T>(
        &self,
        cx: &mut Context<'_>,
        attempt: impl Fn(&UnixStream) -> io::Result<T>,
    ) -> Poll<io::Result<T>> {
        loop {
            std::task::ready!(self.stream.poll_write_ready(cx))?;
            match attempt(&self.stream) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                result => return Poll::Ready(result),
            }
        }
    }
}

impl AsyncRead for DeadlineIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        loop {
            std::task::ready!(self.stream.poll_read_ready(cx))?;
            match self.stream.try_read(buf.initialize_unfilled()) {
                Ok(n) => {
                    buf.advance(n);
                    return Poll::Ready(Ok(()));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }
}

impl AsyncWrite for DeadlineIo {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if let Some(poll) = self.poll_write_refusal(cx, buf) {
            return poll;
        }
        let poll = self.poll_write_with(cx, |s| s.try_write(buf));
        self.watch(cx, poll)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        // A response head is always the first slice of its write.
        if let Some(first) = bufs.iter().find(|b| !b.is_empty()) {
            if let Some(poll) = self.poll_write_refusal(cx, first) {
                return poll;
            }
        }
        let poll = self.poll_write_with(cx, |s| s.try_write_vectored(bufs));
        self.watch(cx, poll)
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // Writes go straight to the socket: only a refusal can be pending.
        self.poll_refusal(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        std::task::ready!(self.poll_refusal(cx))?;
        let done = nix::sys::socket::shutdown(self.stream.as_raw_fd(), Shutdown::Write);
        Poll::Ready(done.map_err(io::Error::from))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    #[test]
    fn the_budget_fits_the_fd_limit() {
        assert_eq!(connection_budget(1024, 1_048_576, 200), 1024);
        assert_eq!(connection_budget(1024, 1024, 200), 824);
        assert_eq!(connection_budget(1024, 100, 200), 1);
    }

    #[test]
    fn the_fd_soft_limit_is_raised_to_the_hard_limit() {
        use nix::sys::resource::{getrlimit, setrlimit, Resource};
        let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
        let lowered = hard.min(soft).min(512);
        if lowered == hard {
            return; // Nothing to raise to; the call below must still work.
        }
        setrlimit(Resource::RLIMIT_NOFILE, lowered, hard).unwrap();
        let raised = raise_fd_limit().unwrap();
        let now = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
        setrlimit(Resource::RLIMIT_NOFILE, soft, hard).unwrap();
        assert_eq!((raised, now), (hard, (hard, hard)));
    }

    #[tokio::test]
    async fn a_write_nobody_reads_fails_after_the_timeout() {
        let (ours, _theirs) = UnixStream::pair().unwrap();
        let mut io = DeadlineIo::new(Arc::new(ours), Duration::from_millis(50));
        let chunk = vec![0_u8; 64 * 1024];
        let error = loop {
            if let Err(e) = io.write_all(&chunk).await {
                break e;
            }
        };
        assert_eq!(error.kind(), io::ErrorKind::TimedOut);
    }

    #[tokio::test]
    async fn only_connections_idle_long_enough_with_nothing_unread_are_closed() {
        let evictable_after = Duration::from_millis(50);
        let admission = Admission::new(3, evictable_after);
        let (a, _a) = UnixStream::pair().unwrap();
        let (b, _b) = UnixStream::pair().unwrap();
        let (c, mut c_client) = UnixStream::pair().unwrap();
        let idle = admission.admit(a).await;
        let busy = admission.admit(b).await;
        let unread = admission.admit(c).await;
        let _request = busy.state.enter();
        c_client.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
        admission.close_idlest();
        assert!(!idle.close.is_cancelled(), "idle too briefly");
        tokio::time::sleep(evictable_after).await;
        admission.close_idlest();
        assert!(idle.close.is_cancelled());
        assert!(!busy.close.is_cancelled(), "a request is in progress");
        assert!(!unread.close.is_cancelled(), "a request waits to be read");
        let (d, _d) = UnixStream::pair().unwrap();
        let fourth = tokio::spawn({
            let admission = Arc::clone(&admission);
            async move { admission.admit(d).await }
        });
        drop(idle);
        let fourth = fourth.await.unwrap();
        assert_eq!(admission.open_connections(), 3);
        drop((busy, unread, fourth));
        assert_eq!(admission.open_connections(), 0);
    }
}
