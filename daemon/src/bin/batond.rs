//! `batond`: the baton conductor daemon.
//!
//! Reads the config (every key validated before anything is opened or
//! bound), takes the socket systemd passed (if any, before any thread
//! starts), sets up logging, and runs until SIGTERM or SIGINT; SIGHUP
//! reloads the config.
//!
//! Exit codes: 0 clean stop, 1 runtime failure (socket, database), 2 usage
//! error, 78 (EX_CONFIG) invalid or unreadable config.

use std::path::PathBuf;
use std::process::ExitCode;

use batond::config::Config;
use batond::daemon::{Control, Startup};
use clap::Parser;

const DEFAULT_CONFIG: &str = "/etc/baton/batond.toml";
const EXIT_CONFIG: u8 = 78;

#[derive(Debug, Parser)]
#[command(
    name = "batond",
    version,
    about = "The baton bare-metal conductor daemon"
)]
struct Args {
    /// Config file (default /etc/baton/batond.toml; built-in defaults when absent).
    #[arg(long, value_name = "FILE", conflicts_with = "check_config")]
    config: Option<PathBuf>,
    /// Validate a config file, print every problem, and exit.
    #[arg(long, value_name = "FILE")]
    check_config: Option<PathBuf>,
}

/// How long batond waits at exit for blocking BMC work still running.
const BLOCKING_GRACE: std::time::Duration = std::time::Duration::from_secs(2);

fn main() -> ExitCode {
    // First of all: no thread may have started (see its doc).
    batond::memory::use_one_arena();
    let args = Args::parse();
    if let Some(path) = args.check_config {
        return match Config::load(&path) {
            Ok(_) => {
                println!("{}: ok", path.display());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("batond: {e}");
                ExitCode::from(EXIT_CONFIG)
            }
        };
    }
    let config_path = args.config.or_else(|| {
        let default = PathBuf::from(DEFAULT_CONFIG);
        default.exists().then_some(default)
    });
    let config = match config_path
        .as_deref()
        .map_or_else(|| Ok(Config::default()), Config::load)
    {
        Ok(config) => config,
        Err(e) => {
            eprintln!("batond: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    // Before the runtime's threads: this clears LISTEN_* from the
    // environment.
    let listener = match batond::systemd::inherited_listener() {
        Ok(listener) => listener,
        Err(e) => {
            eprintln!("batond: {e}");
            return ExitCode::from(1);
        }
    };
    batond::logging::init(&config.log);
    let startup = Startup {
        listener,
        notifier: batond::systemd::Notifier::from_env(),
        config_path,
        credentials_dir: batond::credentials::directory_from_env(),
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("batond: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let served = runtime.block_on(async {
        // Handlers are in place before READY=1, so a reload or stop sent
        // right after it is never lost (or fatal).
        let signals = match Signals::install() {
            Ok(signals) => signals,
            Err(error) => {
                tracing::error!(%error, "cannot install signal handlers; stop batond with SIGKILL");
                Signals::none()
            }
        };
        let (control, controls) = tokio::sync::mpsc::channel(4);
        tokio::spawn(signals.forward(control));
        batond::daemon::run(config, startup, controls).await
    });
    // What blocking work is left once `run` has drained — an IPMI session
    // open going on for a call that will not come, a session close — is not
    // waited for past a short grace (dropping the runtime would wait for it
    // without bound): every accepted operation is already in the database.
    runtime.shutdown_timeout(BLOCKING_GRACE);
    match served {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "batond stopped");
            eprintln!("batond: {e}");
            ExitCode::from(1)
        }
    }
}

/// SIGTERM and SIGINT become [`Control::Stop`], SIGHUP [`Control::Reload`].
struct Signals(Option<[tokio::signal::unix::Signal; 3]>);

impl Signals {
    fn install() -> std::io::Result<Self> {
        use tokio::signal::unix::{signal, SignalKind};
        Ok(Self(Some([
            signal(SignalKind::terminate())?,
            signal(SignalKind::interrupt())?,
            signal(SignalKind::hangup())?,
        ])))
    }

    fn none() -> Self {
        Self(None)
    }

    async fn forward(self, control: tokio::sync::mpsc::Sender<Control>) {
        let Some([mut term, mut int, mut hup]) = self.0 else {
            return std::future::pending().await;
        };
        loop {
            let message = tokio::select! {
                _ = term.recv() => { tracing::info!("SIGTERM received"); Control::Stop }
                _ = int.recv() => { tracing::info!("SIGINT received"); Control::Stop }
                _ = hup.recv() => { tracing::info!("SIGHUP received: reloading the config"); Control::Reload }
            };
            if control.send(message).await.is_err() {
                return;
            }
        }
    }
}
