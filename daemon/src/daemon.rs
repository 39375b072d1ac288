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
use std::future::IntoFuture;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::api::{self, metrics::Metrics, AppState};
use crate::conductor::Conductor;
use crate::config::Config;
use crate::socket::{self, SocketError};

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error("cannot open the database: {0}")]
    Store(#[from] StoreError),

    #[error("cannot bind the API socket: {0}")]
    Socket(#[from] SocketError),
    #[error("the API server failed: {0}")]
    Serve(#[source] std::io::Error),
    #[error("the API server task failed: {0}")]
    Join(#[from] tokio::task::JoinError),
}

/// A running daemon.
#[derive(Debug)]
pub struct Daemon {
    socket_path: PathBuf,
    conductor: Conductor,
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
        let store = Store::open(&config.state.database, StoreOptions::default()).await?;
        let socket_path = bound.guard.path().to_owned();
        let conductor = Conductor::new(store, Arc::new(config));
        let state = AppState {
            conductor: conductor.clone(),
            metrics: Arc::new(Metrics::default()),
        };
        let stop = CancellationToken::new();
        let server = tokio::spawn(serve(bound, state, stop.clone()));
        tracing::info!(
            socket = %socket_path.display(),
            database = %conductor.store().path().display(),
            version = env!("CARGO_PKG_VERSION"),
            "batond ready"
        );
        Ok(Self {
            socket_path,
            conductor,
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

    /// Stops accepting connections, lets in-flight requests finish, removes
    /// the socket.
    pub async fn shutdown(self) -> Result<(), DaemonError> {
        self.stop.cancel();
        self.server.await?
    }

    /// Waits until the server stops by itself (it only does on error).
    async fn wait(&mut self) -> Result<(), DaemonError> {
        (&mut self.server).await?
    }
}

async fn serve(
    bound: socket::BoundSocket,
    state: AppState,
    stop: CancellationToken,
) -> Result<(), DaemonError> {
    let socket::BoundSocket { listener, guard } = bound;
    let grace = state.conductor.config().conductor.shutdown_timeout;
    let server = axum::serve(listener, api::router(state))
        .with_graceful_shutdown(stop.clone().cancelled_owned())
        .into_future();
    // Draining waits for open requests, but not forever: a client that
    // never finishes its request must not keep batond from stopping.
    let deadline = async {
        stop.cancelled().await;
        tokio::time::sleep(grace).await;
    };
    let result = tokio::select! {
        result = server => result.map_err(DaemonError::Serve),
        () = deadline => {
            tracing::warn!(grace = %humantime::format_duration(grace), "requests still open after the shutdown timeout; closing them");
            Ok(())
        }
    };
    // The lock is released and the socket file removed only once serving
    // has ended.
    drop(guard);
    result
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
