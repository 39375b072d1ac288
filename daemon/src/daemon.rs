//! Starting and stopping batond: open the store, bind the socket, serve the
//! API until the shutdown future resolves, then drain and clean up.
//!
//! Shutdown and reload are inputs: [`run`] takes a channel of [`Control`]
//! messages (the binary feeds it from signals), and [`Daemon`] lets tests
//! start the daemon in-process and stop it. [`Startup`] carries what systemd
//! handed the process: a listening socket and the notify channel.

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

use crate::api::roles::{Access, Peer, SharedAccess};
use crate::api::{self, metrics::Metrics, power::PeerUid, AppState};
use crate::conductor::{Background, Conductor};
use crate::config::Config;
use crate::connections::{self, Admission, BusyBody, ConnectionState, DeadlineIo};
use crate::credentials::DefaultPassword;
use crate::reload;
use crate::socket::{self, SocketError};
use crate::systemd::{self, Notifier};
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
    #[error("the database {path} can be read by users other than batond's (mode {mode:04o}); it holds BMC passwords — chmod 0600 {path}")]
    DatabaseExposed { path: PathBuf, mode: u32 },
    #[error("the API server stopped before it served")]
    NotServing,
    #[error("cannot load the default BMC password: {0}")]
    Credential(baton_drivers::DriverError),
    #[error("invalid access settings:\n{}", .0.iter().map(|p| format!("  - {p}")).collect::<Vec<_>>().join("\n"))]
    Access(Vec<crate::config::ConfigProblem>),
}

/// What the process was handed beyond its config.
#[derive(Debug, Default)]
pub struct Startup {
    /// The listening socket systemd passed (`batond.socket`); batond binds
    /// `api.socket` itself when there is none.
    pub listener: Option<std::os::unix::net::UnixListener>,
    pub notifier: Notifier,
    /// The file a reload re-reads; none when batond runs on built-in
    /// defaults.
    pub config_path: Option<PathBuf>,
    /// `$CREDENTIALS_DIRECTORY`, where the default BMC password is.
    pub credentials_dir: Option<PathBuf>,
}

/// What [`run`] can be told while it runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Control {
    /// Stop (SIGTERM, SIGINT).
    Stop,
    /// Re-read the config (SIGHUP).
    Reload,
}

/// A running daemon.
#[derive(Debug)]
pub struct Daemon {
    socket_path: PathBuf,
    conductor: Conductor,
    background: Option<Background>,
    stop: CancellationToken,
    server: JoinHandle<Result<(), DaemonError>>,
    notifier: Arc<Notifier>,
    supervisor: JoinHandle<()>,
    config_path: Option<PathBuf>,
    /// The config in effect (the start config plus what reloads applied).
    current: Config,
    access: SharedAccess,
    credentials_dir: Option<PathBuf>,
}

impl Daemon {
    /// Opens the store and binds the socket (everything that can fail on bad
    /// config fails here, before the first request), then serves in the
    /// background.
    pub async fn start(config: Config) -> Result<Self, DaemonError> {
        Self::start_with(config, Startup::default()).await
    }

    /// Like [`Daemon::start`], on systemd's socket when it passed one, and
    /// telling systemd (`READY=1`) once the socket serves.
    pub async fn start_with(config: Config, startup: Startup) -> Result<Self, DaemonError> {
        // The socket lock comes first: a second batond started by mistake
        // stops before it touches (or migrates) the running one's database.
        let access = SharedAccess::new(Access::resolve(&config.auth).map_err(DaemonError::Access)?);
        let bound = match startup.listener {
            Some(listener) => socket::adopt(listener)?,
            None => {
                let group = socket_group(&config.api.socket_group)?;
                socket::bind(&config.api.socket, group)?
            }
        };
        let store_options = StoreOptions::default();
        let max_connections = admitted_connections(&config, store_options.max_readers);
        check_database(&config.state.database)?;
        let store = Store::open(&config.state.database, store_options).await?;
        let socket_path = bound.guard.path().to_owned();
        let bound_by_systemd = !bound.guard.owned();
        let current = config.clone();
        let default_password = load_default_password(&config, startup.credentials_dir.clone())
            .await
            .map_err(DaemonError::Credential)?;
        let (conductor, background) = Conductor::start(store, Arc::new(config)).await?;
        use_default_password(
            &conductor,
            default_password,
            &current.bmc.default_password_credential,
        );
        let state = AppState {
            conductor: conductor.clone(),
            metrics: Arc::new(Metrics::default()),
        };
        let stop = CancellationToken::new();
        let admission = Admission::new(max_connections, connections::EVICTABLE_AFTER);
        let (serving, served) = tokio::sync::oneshot::channel();
        let mut server = tokio::spawn(serve(
            bound,
            state,
            admission,
            access.clone(),
            stop.clone(),
            serving,
        ));
        if served.await.is_err() {
            // The server ended before its loop: its result says why.
            return Err(match (&mut server).await {
                Ok(Err(e)) => e,
                Ok(Ok(())) => DaemonError::NotServing,
                Err(e) => DaemonError::Join(e),
            });
        }
        let notifier = Arc::new(startup.notifier);
        notifier.ready(&systemd::status_line(&conductor).await);
        let supervisor = tokio::spawn(supervise(
            Arc::clone(&notifier),
            conductor.clone(),
            stop.clone(),
        ));
        tracing::info!(
            socket = %socket_path.display(),
            database = %conductor.store().path().display(),
            version = env!("CARGO_PKG_VERSION"),
            max_connections,
            systemd_socket = bound_by_systemd,
            "batond ready"
        );
        Ok(Self {
            socket_path,
            conductor,
            background: Some(background),
            stop,
            server,
            notifier,
            supervisor,
            config_path: startup.config_path,
            current,
            access,
            credentials_dir: startup.credentials_dir,
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
        self.notifier.stopping();
        self.stop.cancel();
        let _ = (&mut self.supervisor).await;
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

    /// Re-reads the config file and applies its reloadable keys (see
    /// [`crate::reload`]); an invalid file changes nothing. Tells systemd
    /// `RELOADING=1` first and `READY=1` with the outcome in `STATUS=` after.
    pub async fn reload(&mut self) {
        self.notifier.reloading();
        let mut outcome = match &self.config_path {
            Some(path) => self.reload_from(&path.clone()),
            None => "no config file to re-read (batond runs on built-in defaults)".to_owned(),
        };
        match load_default_password(&self.current, self.credentials_dir.clone()).await {
            Ok(password) => use_default_password(
                &self.conductor,
                password,
                &self.current.bmc.default_password_credential,
            ),
            Err(error) => {
                tracing::error!(%error, "cannot load the default BMC password; keeping the previous one");
                outcome.push_str("; default BMC password kept (see the log)");
            }
        }
        let status = systemd::status_line(&self.conductor).await;
        self.notifier.ready(&format!("{outcome}; {status}"));
    }

    /// Loads `path` and applies it; returns the outcome for `STATUS=`.
    fn reload_from(&mut self, path: &std::path::Path) -> String {
        let new = match Config::load(path) {
            Ok(new) => new,
            Err(error) => {
                let problems = match &error {
                    crate::config::ConfigError::Invalid { problems, .. } => problems.len(),
                    crate::config::ConfigError::Read { .. } => 1,
                };
                tracing::error!(%error, "reload failed; keeping the previous config");
                return format!(
                    "reload failed, previous config kept: {problems} problem(s) in {} (see the log)",
                    path.display()
                );
            }
        };
        let access = match Access::resolve(&new.auth) {
            Ok(access) => access,
            Err(problems) => {
                for problem in &problems {
                    tracing::error!(path = %path.display(), %problem, "reload failed; keeping the previous config");
                }
                return format!(
                    "reload failed, previous config kept: {} problem(s) in {} (see the log)",
                    problems.len(),
                    path.display()
                );
            }
        };
        let changed = reload::changed_keys(&self.current, &new);
        let restart = reload::needing_restart(&changed);
        for key in &changed {
            self.apply(key, &new);
        }
        if changed.iter().any(|key| key.starts_with("auth.")) {
            self.access.replace(access);
        }
        if !restart.is_empty() {
            tracing::warn!(
                keys = %restart.join(", "),
                "changed keys take effect only after a restart (systemctl restart batond)"
            );
        }
        self.current = reload::effective(&self.current, &new);
        tracing::info!(path = %path.display(), changed = %changed.join(", "), "config reloaded");
        match (changed.len() - restart.len(), restart.is_empty()) {
            (0, true) => "config reloaded, nothing changed".to_owned(),
            (applied, true) => format!("config reloaded, {applied} key(s) applied"),
            (applied, false) => format!(
                "config reloaded, {applied} key(s) applied, {} need a restart: {}",
                restart.len(),
                restart.join(", ")
            ),
        }
    }

    /// Applies one changed reloadable key.
    fn apply(&self, key: &str, new: &Config) {
        match key {
            "log.level" => {
                if let Err(error) = crate::logging::set_level(&new.log.level) {
                    tracing::error!(%error, level = %new.log.level, "cannot change the log level");
                }
            }
            "conductor.workers" => {
                let workers = usize::try_from(new.conductor.workers).unwrap_or(usize::MAX);
                self.conductor.pool().resize(workers);
            }
            key if key.starts_with("sync.") => self.conductor.set_sync(new.sync.clone()),
            "actions.retention" => self.conductor.set_action_retention(new.actions.retention),
            _ => {}
        }
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
    access: SharedAccess,
    stop: CancellationToken,
    serving: tokio::sync::oneshot::Sender<()>,
) -> Result<(), DaemonError> {
    let socket::BoundSocket { listener, guard } = bound;
    let config = state.conductor.config();
    let grace = config.conductor.shutdown_timeout;
    let (header_timeout, write_timeout) = (config.api.header_timeout, config.api.write_timeout);
    let app = api::router(state);
    let connections = GracefulShutdown::new();
    let _ = serving.send(());
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
                let cred = stream.peer_cred().ok().map(|c| (c.uid(), c.gid()));
                let admitted = tokio::select! {
                    admitted = admission.admit(stream) => admitted,
                    () = stop.cancelled() => break,
                };
                let service = track_requests(
                    app.clone(),
                    Arc::clone(&admitted.state),
                    cred,
                    access.clone(),
                );
                // A client may close its sending side once its request is
                // out (`nc -N`, `socat`, some HTTP/1.0 clients): it still
                // reads the answer. Without half-close hyper took that for
                // a hang-up and dropped the request mid-handling, unanswered.
                let connection = http1::Builder::new()
                    .timer(TokioTimer::new())
                    .half_close(true)
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

/// The router, with the caller (uid, groups) and the role groups in effect
/// on each request, marking the connection busy from a request's arrival
/// until its response has been sent. The caller's groups are looked up once
/// per connection, at its first request.
fn track_requests(
    app: axum::Router,
    state: Arc<ConnectionState>,
    cred: Option<(u32, u32)>,
    access: SharedAccess,
) -> impl tower::Service<
    Request<Incoming>,
    Response = Response<BusyBody>,
    Error = Infallible,
    Future = impl Future<Output = Result<Response<BusyBody>, Infallible>> + Send,
> + Clone {
    let caller: Arc<tokio::sync::OnceCell<Option<Peer>>> = Arc::default();
    tower::service_fn(move |mut request: Request<Incoming>| {
        let busy = state.enter();
        let (app, access, caller) = (app.clone(), access.current(), Arc::clone(&caller));
        async move {
            let peer = caller.get_or_init(|| lookup_peer(cred, &access)).await;
            if let Some(peer) = peer {
                request.extensions_mut().insert(PeerUid(peer.uid));
                request.extensions_mut().insert(peer.clone());
            }
            request.extensions_mut().insert(access);
            let response = app.oneshot(request).await?;
            Ok(response.map(|body| BusyBody::new(body, busy)))
        }
    })
}

/// The caller behind socket credentials: root and batond's own uid need no
/// lookup (they are admins whatever their groups); others' names and groups
/// come from the user and group databases, off the runtime.
async fn lookup_peer(cred: Option<(u32, u32)>, access: &Access) -> Option<Peer> {
    let (uid, gid) = cred?;
    if access.always_admin(uid) {
        return Some(Peer {
            uid,
            gid,
            name: crate::users::name_of(uid).await,
            groups: std::collections::BTreeSet::from([gid]),
        });
    }
    tokio::task::spawn_blocking(move || Peer::lookup(uid, gid))
        .await
        .ok()
}

/// The default BMC password from the systemd credential, read off the
/// runtime.
async fn load_default_password(
    config: &Config,
    directory: Option<PathBuf>,
) -> Result<DefaultPassword, baton_drivers::DriverError> {
    let bmc = config.bmc.clone();
    tokio::task::spawn_blocking(move || crate::credentials::load(&bmc, directory.as_deref()))
        .await
        .map_err(|e| baton_drivers::DriverError::Config(format!("reading it failed: {e}")))?
}

/// Makes `loaded` the default BMC password, then logs where it came from
/// or why there is none (after: the line tells that it is in effect).
fn use_default_password(conductor: &Conductor, loaded: DefaultPassword, credential: &str) {
    let reason = match &loaded {
        DefaultPassword::Loaded(_) => None,
        DefaultPassword::None(why) => Some(why.clone()),
    };
    conductor.set_default_password(loaded.into_secret());
    match reason {
        None => tracing::info!(
            %credential,
            "default BMC password loaded"
        ),
        Some(reason) => tracing::info!(
            %reason,
            "no default BMC password; nodes need bmc.password or bmc.password_file"
        ),
    }
}

/// Refuses a database file (and its WAL) others may read: it holds BMC
/// passwords. batond creates them 0600; a looser mode came from outside.
fn check_database(path: &std::path::Path) -> Result<(), DaemonError> {
    use std::os::unix::fs::PermissionsExt;
    let mut wal = path.as_os_str().to_owned();
    wal.push("-wal");
    for file in [path.to_owned(), PathBuf::from(wal)] {
        let Ok(meta) = std::fs::metadata(&file) else {
            continue;
        };
        let mode = meta.permissions().mode() & 0o7777;
        if mode & 0o004 != 0 {
            return Err(DaemonError::DatabaseExposed { path: file, mode });
        }
    }
    Ok(())
}

/// The gid of `api.socket_group`; none when empty (batond's own group).
fn socket_group(name: &str) -> Result<Option<u32>, DaemonError> {
    if name.is_empty() {
        return Ok(None);
    }
    match nix::unistd::Group::from_name(name) {
        Ok(Some(group)) => Ok(Some(group.gid.as_raw())),
        _ => Err(DaemonError::Access(vec![crate::config::ConfigProblem {
            key: "api.socket_group".into(),
            reason: format!("group {name:?} does not exist; create it or leave the key empty"),
        }])),
    }
}

/// The systemd watchdog and `STATUS=` task: pings only while the
/// conductor's reconcile loop answers.
async fn supervise(notifier: Arc<Notifier>, conductor: Conductor, stop: CancellationToken) {
    systemd::supervise(
        &notifier,
        || conductor.alive(),
        || systemd::status_line(&conductor),
        stop,
    )
    .await;
}

/// Runs batond until told to stop (or the server fails), reloading the
/// config when told to.
pub async fn run(
    config: Config,
    startup: Startup,
    mut control: tokio::sync::mpsc::Receiver<Control>,
) -> Result<(), DaemonError> {
    let mut daemon = Daemon::start_with(config, startup).await?;
    loop {
        let message = tokio::select! {
            result = daemon.wait() => return result,
            message = control.recv() => message,
        };
        match message {
            Some(Control::Reload) => daemon.reload().await,
            Some(Control::Stop) | None => {
                tracing::info!("shutting down");
                return daemon.shutdown().await;
            }
        }
    }
}
