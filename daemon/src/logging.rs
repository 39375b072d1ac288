//! Log output: text or JSON lines on stderr, filtered by `[log] level`,
//! which SIGHUP can change ([`set_level`]).
//!
//! Under systemd (`$JOURNAL_STREAM` names our stderr) lines carry no
//! timestamp of their own — journald stamps them — and start with the
//! `<N>` syslog priority prefix, so `journalctl -p warning` works.
//!
//! Whatever the level, records of the protocol libraries in
//! [`CAPPED_TARGETS`] pass only at WARN and above: ipmi-rs logs Open Session
//! and RAKP 1–4 at debug (session ids, random numbers, the BMC's GUID, the
//! user name and the RAKP-2 HMAC), and an HMAC over those fields lets anyone
//! who reads the logs test password guesses offline. `log` records reach
//! tracing through the tracing-log bridge, so one filter covers both.

use std::io::IsTerminal;
use std::sync::OnceLock;

use tracing::{Event, Level, Metadata, Subscriber};
use tracing_subscriber::filter::filter_fn;
use tracing_subscriber::fmt::format::{self, FormatEvent, FormatFields, JsonFields, Writer};
use tracing_subscriber::fmt::{FmtContext, MakeWriter};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::{SubscriberInitExt, TryInitError};
use tracing_subscriber::{reload, EnvFilter, Registry};

use crate::config::{LogConfig, LogFormat};

/// Log targets (crates) whose records below WARN carry password equivalents.
pub const CAPPED_TARGETS: [&str; 2] = ["ipmi_rs", "ipmi_rs_core"];

/// Changes the level filter of the installed subscriber.
static LEVEL: OnceLock<reload::Handle<EnvFilter, Registry>> = OnceLock::new();

/// Installs the global subscriber. The config was validated, so the filter
/// parses; a second call (tests) is a no-op.
pub fn init(config: &LogConfig) {
    let journald = stderr_is_journal();
    let ansi = !journald && std::io::stderr().is_terminal();
    let _ = install_for(config, std::io::stderr, ansi, journald);
}

/// Installs batond's subscriber writing to `writer` (tests capture the logs
/// this way). Fails when a global subscriber is already set.
pub fn install<W>(config: &LogConfig, writer: W, ansi: bool) -> Result<(), TryInitError>
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    install_for(config, writer, ansi, false)
}

/// Applies a new `[log] level` (validated) to the installed subscriber.
pub fn set_level(level: &str) -> Result<(), String> {
    let filter = EnvFilter::builder()
        .parse(level)
        .map_err(|e| e.to_string())?;
    match LEVEL.get() {
        Some(handle) => handle.reload(filter).map_err(|e| e.to_string()),
        None => Err("batond's logging is not installed".into()),
    }
}

fn install_for<W>(
    config: &LogConfig,
    writer: W,
    ansi: bool,
    journald: bool,
) -> Result<(), TryInitError>
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let filter = EnvFilter::builder()
        .parse(&config.level)
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let text = format().with_target(true);
    match (config.format, journald) {
        (LogFormat::Text, false) => finish(
            filter,
            writer,
            ansi,
            format::DefaultFields::new(),
            text,
            false,
        ),
        (LogFormat::Text, true) => finish(
            filter,
            writer,
            ansi,
            format::DefaultFields::new(),
            text.without_time(),
            true,
        ),
        (LogFormat::Json, false) => finish(filter, writer, ansi, JsonFields::new(), json(), false),
        (LogFormat::Json, true) => finish(
            filter,
            writer,
            ansi,
            JsonFields::new(),
            json().without_time(),
            true,
        ),
    }
}

fn format() -> format::Format {
    format::Format::default()
}

fn json() -> format::Format<format::Json> {
    format().json().flatten_event(true)
}

type Filtered = tracing_subscriber::layer::Layered<reload::Layer<EnvFilter, Registry>, Registry>;

fn finish<W, N, E>(
    filter: EnvFilter,
    writer: W,
    ansi: bool,
    fields: N,
    lines: E,
    journald: bool,
) -> Result<(), TryInitError>
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
    N: for<'w> FormatFields<'w> + Send + Sync + 'static,
    E: FormatEvent<Filtered, N> + Send + Sync + 'static,
{
    let (filter, handle) = reload::Layer::new(filter);
    let lines = tracing_subscriber::fmt::layer()
        .with_writer(writer)
        .with_ansi(ansi)
        .fmt_fields(fields)
        .event_format(Priority { lines, journald });
    tracing_subscriber::registry()
        .with(filter)
        .with(lines)
        .with(filter_fn(allowed))
        .try_init()?;
    let _ = LEVEL.set(handle);
    Ok(())
}

/// True when stderr is the journal stream systemd connected
/// (`$JOURNAL_STREAM` is `device:inode` of it).
fn stderr_is_journal() -> bool {
    let Some(stream) = std::env::var_os("JOURNAL_STREAM") else {
        return false;
    };
    let Ok(stat) = nix::sys::stat::fstat(std::io::stderr()) else {
        return false;
    };
    stream.to_string_lossy() == format!("{}:{}", stat.st_dev, stat.st_ino)
}

/// Puts journald's `<N>` priority in front of each line when writing to
/// the journal.
struct Priority<E> {
    lines: E,
    journald: bool,
}

impl<S, N, E> FormatEvent<S, N> for Priority<E>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'w> FormatFields<'w> + 'static,
    E: FormatEvent<S, N>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> std::fmt::Result {
        if self.journald {
            write!(writer, "<{}>", syslog_priority(*event.metadata().level()))?;
        }
        self.lines.format_event(ctx, writer, event)
    }
}

/// sd-daemon(3) priorities: err, warning, info, debug.
fn syslog_priority(level: Level) -> u8 {
    match level {
        Level::ERROR => 3,
        Level::WARN => 4,
        Level::INFO => 6,
        _ => 7,
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
