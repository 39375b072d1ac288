//! Starting and stopping batond: open the store, bind the socket, serve the
//! API until the shutdown future resolves, then drain and clean up.
//!
//! Shutdown is an input: [`run`] takes any future (the binary passes the
//! signal handler, tests pass a oneshot), and [`Daemon`] lets tests start the
//! daemon in-process and stop it.

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;

use baton_state::{Store, StoreError, StoreOptions};
use std::time::Duration;

use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::api::{self, metrics::Metrics, power::PeerUid, AppState};
use crate::conductor::{Background, Conductor};
use crate::config::Config;
use crate::connections::{self, Admission, BusyBody, ConnectionState, DeadlineIo};
use crate::socket::{self, SocketError};
use http::{Request, Response};
use hyper::body::Incoming;
use std::convert::Infallible;
use tower::ServiceExt;

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error("cannot open the database: {0}")]
    Store(#[from] StoreError),

    #[error("cannot bind the API socket: {0}")]
    Socket(#[from] SocketError),
    #[error("the API server task failed: {0}")]
    Join(#[from] tokio::task::JoinError),
    #[error("cannot resume pending operations: {0}")]
    Conductor(#[from] crate::conductor::ConductorError),
}

/// A running daemon.
#[derive(Debug)]
pub struct Daemon {
    socket_path: PathBuf,
    conductor: Conductor,
    background: Option<Background>,
    stop: CancellationToken,
    server: JoinHandle<Result<(), DaemonError>>,
}

impl Daemon {
    /// Opens the store and binds the socket (everything that can fail on bad
    /// config fails here, before the first request), then serves in the
    /// background.
    pub async fn start(config: Config) -> Result<Self, DaemonError> {
        // The socket lock comes first: a second batond started by mistake
        // stops before it touches (or migrates) the running one's database.
        let bound = socket::bind(&config.api.socket)?;
        let store_options = StoreOptions::default();
        let max_connections = admitted_connections(&config, store_options.max_readers);
        let store = Store::open(&config.state.database, store_options).await?;
        let socket_path = bound.guard.path().to_owned();
        let (conductor, background) = Conductor::start(store, Arc::new(config)).await?;
        let state = AppState {
            conductor: conductor.clone(),
            metrics: Arc::new(Metrics::default()),
        };
        let stop = CancellationToken::new();
        let admission = Admission::new(max_connections, connections::EVICTABLE_AFTER);
        let server = tokio::spawn(serve(bound, state, admission, stop.clone()));
        tracing::info!(
            socket = %socket_path.display(),
            database = %conductor.store().path().display(),
            version = env!("CARGO_PKG_VERSION"),
            max_connections,
            "batond ready"
        );
        Ok(Self {
            socket_path,
            conductor,
            background: Some(background),
            stop,
            server,
        })
    }

    pub fn socket_path(&self) -> &std::path::Path {
        &self.socket_path
    }

    pub fn conductor(&self) -> &Conductor {
        &self.conductor
    }

    /// Stops accepting connections and scheduling BMC work, lets in-flight
    /// requests (API and BMC) finish within `conductor.shutdown_timeout`,
    /// removes the socket. Unfinished operations stay in the database and
    /// resume at the next start.
    pub async fn shutdown(mut self) -> Result<(), DaemonError> {
        self.stop.cancel();
        let grace = self.conductor.config().conductor.shutdown_timeout;
        let background = self.background.take();
        let conductor = async move {
            if let Some(background) = background {
                background.shutdown(grace).await;
            }
        };
        let (served, ()) = tokio::join!(self.server, conductor);
        served?
    }

    /// Waits until the server stops by itself (it only does on error).
    async fn wait(&mut self) -> Result<(), DaemonError> {
        (&mut self.server).await?
    }
}

/// Raises the open-file limit and says how many connections fit in it.
fn admitted_connections(config: &Config, db_readers: usize) -> usize {
    let configured = config.api.max_connections;
    let reserved = connections::reserved_fds(config.conductor.workers, db_readers);
    let fd_limit = match connections::raise_fd_limit() {
        Ok(limit) => limit,
        Err(error) => {
            tracing::warn!(%error, "cannot read the open-file limit; keeping api.max_connections");
            return usize::try_from(configured).unwrap_or(usize::MAX);
        }
    };
    let budget = connections::connection_budget(configured, fd_limit, reserved);
    if budget < usize::try_from(configured).unwrap_or(usize::MAX) {
        tracing::warn!(
            configured,
            admitted = budget,
            fd_limit,
            "the open-file limit cannot hold api.max_connections; admitting fewer (raise LimitNOFILE)"
        );
    }
    budget
}

/// Pause after a failed accept (e.g. out of file descriptors) before the
/// next, so the loop does not spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Accepts connections until `stop`, serving each with HTTP/1.1 (keep-alive,
/// header and write timeouts) within the connection limit, then drains: idle
/// connections close at once, open requests get up to
/// `conductor.shutdown_timeout` to finish.
async fn serve(
    bound: socket::BoundSocket,
    state: AppState,
    admission: Arc<Admission>,
    stop: CancellationToken,
) -> Result<(), DaemonError> {
    let socket::BoundSocket { listener, guard } = bound;
    let config = state.conductor.config();
    let grace = config.conductor.shutdown_timeout;
    let (header_timeout, write_timeout) = (config.api.header_timeout, config.api.write_timeout);
    let app = api::router(state);
    let connections = GracefulShutdown::new();
    loop {
        // Accept first, then wait for a slot: the waiting connection is
        // what tells the limit to close an idle one.
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = stop.cancelled() => break,
        };
        match accepted {
            Ok((stream, _)) => {
                // Who is calling, for the action log (and roles): the
                // kernel's word, not anything the client sends.
                let peer = stream.peer_cred().ok().map(|c| PeerUid(c.uid()));
                let admitted = tokio::select! {
                    admitted = admission.admit(stream) => admitted,
                    () = stop.cancelled() => break,
                };
                let service = track_requests(app.clone(), Arc::clone(&admitted.state), peer);
                let connection = http1::Builder::new()
                    .timer(TokioTimer::new())
                    .header_read_timeout(header_timeout)
                    .serve_connection(
                        TokioIo::new(DeadlineIo::new(Arc::clone(&admitted.stream), write_timeout)),
                        TowerToHyperService::new(service),
                    );
                let connection = connections.watch(connection);
                tokio::spawn(async move {
                    tokio::select! {
                        result = connection => {
                            if let Err(error) = result {
                                tracing::debug!(%error, "connection ended with an error");
                            }
                        }
                        () = admitted.close.cancelled() => {}
                    }
                    drop(admitted);
                });
            }
            Err(error) => {
                tracing::warn!(%error, "cannot accept a connection");
                tokio::time::sleep(ACCEPT_BACKOFF).await;
            }
        }
    }
    drop(listener);
    // Draining waits for open requests, but not forever: a client that
    // never finishes its request must not keep batond from stopping.
    tokio::select! {
        () = connections.shutdown() => {}
        () = tokio::time::sleep(grace) => {
            tracing::warn!(
                grace = %humantime::format_duration(grace),
                "requests still open after the shutdown timeout; closing them"
            );
        }
    }
    // The lock is released and the socket file removed only once serving
    // has ended.
    drop(guard);
    Ok(())
}

/// The router, with the caller's uid on each request, marking the
/// connection busy from a request's arrival until its response has been sent.
fn track_requests(
    app: axum::Router,
    state: Arc<ConnectionState>,
    peer: Option<PeerUid>,
) -> impl tower::Service<
    Request<Incoming>,
    Response = Response<BusyBody>,
    Error = Infallible,
    Future = impl Future<Output = Result<Response<BusyBody>, Infallible>> + Send,
> + Clone {
    tower::service_fn(move |mut request: Request<Incoming>| {
        let busy = state.enter();
        if let Some(peer) = peer {
            request.extensions_mut().insert(peer);
        }
        let app = app.clone();
        async move {
            let response = app.oneshot(request).await?;
            Ok(response.map(|body| BusyBody::new(body, busy)))
        }
    })
}

/// Runs batond until `shutdown` resolves.
pub async fn run(config: Config, shutdown: impl Future<Output = ()>) -> Result<(), DaemonError> {
    let mut daemon = Daemon::start(config).await?;
    tokio::select! {
        result = daemon.wait() => result,
        () = shutdown => {
            tracing::info!("shutting down");
            daemon.shutdown().await
        }
    }
}
