//! Log output: text or JSON lines on stderr (journald adds timestamps and
//! priority itself), filtered by `[log] level`.
//!
//! Whatever the level, records of the protocol libraries in
//! [`CAPPED_TARGETS`] pass only at WARN and above: ipmi-rs logs Open Session
//! and RAKP 1–4 at debug (session ids, random numbers, the BMC's GUID, the
//! user name and the RAKP-2 HMAC), and an HMAC over those fields lets anyone
//! who reads the logs test password guesses offline. `log` records reach
//! tracing through the tracing-log bridge, so one filter covers both.

use std::io::IsTerminal;

use tracing::{Level, Metadata};
use tracing_subscriber::filter::filter_fn;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::{SubscriberInitExt, TryInitError};
use tracing_subscriber::EnvFilter;

use crate::config::{LogConfig, LogFormat};

/// Log targets (crates) whose records below WARN carry password equivalents.
pub const CAPPED_TARGETS: [&str; 2] = ["ipmi_rs", "ipmi_rs_core"];

/// Installs the global subscriber. The config was validated, so the filter
/// parses; a second call (tests) is a no-op.
pub fn init(config: &LogConfig) {
    let _ = install(config, std::io::stderr, std::io::stderr().is_terminal());
}

/// Installs batond's subscriber writing to `writer` (tests capture the logs
/// this way). Fails when a global subscriber is already set.
pub fn install<W>(config: &LogConfig, writer: W, ansi: bool) -> Result<(), TryInitError>
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let filter = EnvFilter::builder()
        .parse(&config.level)
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer)
        .with_ansi(ansi)
        .with_target(true);
    let cap = filter_fn(allowed);
    match config.format {
        LogFormat::Text => builder.finish().with(cap).try_init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .finish()
            .with(cap)
            .try_init(),
    }
}

/// False for records of a [`CAPPED_TARGETS`] crate more verbose than WARN.
fn allowed(metadata: &Metadata<'_>) -> bool {
    *metadata.level() <= Level::WARN || !is_capped(metadata.target())
}

/// True when `target` is a capped crate or one of its modules.
fn is_capped(target: &str) -> bool {
    CAPPED_TARGETS.iter().any(|krate| {
        target
            .strip_prefix(krate)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with("::"))
    })
}

#[cfg(test)]
mod tests {
    use super::is_capped;

    #[test]
    fn ipmi_rs_and_its_modules_are_capped() {
        assert!(is_capped("ipmi_rs"));
        assert!(is_capped("ipmi_rs::rmcp::v2_0"));
        assert!(is_capped("ipmi_rs_core::app"));
        assert!(!is_capped("ipmi_rs_other"));
        assert!(!is_capped("baton_drivers::ipmi"));
        assert!(!is_capped("batond"));
    }
}
