//! `batond`: the baton conductor daemon.
//!
//! Reads the config (every key validated before anything is opened or
//! bound), sets up logging, and runs until SIGTERM or SIGINT.
//!
//! Exit codes: 0 clean stop, 1 runtime failure (socket, database), 2 usage
//! error, 78 (EX_CONFIG) invalid or unreadable config.

use std::path::PathBuf;
use std::process::ExitCode;

use batond::config::Config;
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

fn main() -> ExitCode {
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
    let config = match load(args.config) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("batond: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    batond::logging::init(&config.log);
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("batond: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(batond::daemon::run(config, shutdown_signal())) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "batond stopped");
            eprintln!("batond: {e}");
            ExitCode::from(1)
        }
    }
}

/// The explicit config file, or the default one, or built-in defaults when
/// the default file does not exist.
fn load(explicit: Option<PathBuf>) -> Result<Config, batond::config::ConfigError> {
    match explicit {
        Some(path) => Config::load(&path),
        None if std::path::Path::new(DEFAULT_CONFIG).exists() => {
            Config::load(DEFAULT_CONFIG.as_ref())
        }
        None => Ok(Config::default()),
    }
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::error!("cannot install signal handlers; stop batond with SIGKILL");
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM received"),
        _ = int.recv() => tracing::info!("SIGINT received"),
    }
}
