//! batond's configuration file: one TOML file, one serde struct with
//! defaults, and validation that reports every bad key at once.
//!
//! Loading works in two passes so that an operator sees all mistakes in one
//! run: serde (the single source of truth for key names and types) is run
//! repeatedly, each failing key is recorded with its dotted path and removed,
//! until the rest deserializes; then the semantic rules (ranges, path limits)
//! run over the result. Nothing binds or opens until [`Config::load`] has
//! returned without errors.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The whole configuration file.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub api: ApiConfig,
    pub state: StateConfig,
    pub conductor: ConductorConfig,
    pub sync: SyncConfig,
    pub actions: ActionsConfig,
    pub power_on: PowerOnConfig,
    pub log: LogConfig,
    pub auth: AuthConfig,
    pub bmc: BmcConfig,
}

/// `[bmc]`: what nodes' BMCs share.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BmcConfig {
    /// The systemd credential (`LoadCredential=`, a file in
    /// `$CREDENTIALS_DIRECTORY`) holding the BMC password of nodes enrolled
    /// with neither `bmc.password` nor `bmc.password_file`. Read at start
    /// and on reload; empty: no default.
    pub default_password_credential: String,
}

impl Default for BmcConfig {
    fn default() -> Self {
        Self {
            default_password_credential: "bmc-password".into(),
        }
    }
}

/// Longest credential name systemd accepts (a file name).
const MAX_CREDENTIAL_NAME: usize = 255;

/// `[auth]`: which groups hold which role on the socket (uid 0 and
/// batond's own uid are always admins). Group names are resolved at start
/// and on reload.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// Everything: node enrollment, edits, deletion, `os-reset_status`.
    pub admin_groups: Vec<String>,
    /// Power actions, boot device, maintenance, lock/unlock, batches, job
    /// cancel, schedules, and reads.
    pub operator_groups: Vec<String>,
    /// Reads only (GET and HEAD, `/metrics` too).
    pub reader_groups: Vec<String>,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            admin_groups: vec!["baton-admins".into()],
            operator_groups: vec!["baton-operators".into()],
            reader_groups: vec!["baton-readers".into()],
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApiConfig {
    /// The Unix socket the action API listens on.
    pub socket: PathBuf,
    /// Most client connections open at once; at the limit the connection
    /// idle longest is closed to admit a new one (lowered at start if the
    /// open-file limit cannot hold this many).
    pub max_connections: u32,
    /// Longest a connection may take to send a request's headers, counted
    /// from its opening or from the end of its previous response (so it is
    /// also how long an idle keep-alive connection stays open).
    #[serde(with = "humantime_serde")]
    pub header_timeout: Duration,
    /// Longest a response may wait for the client to read it without any
    /// progress before the connection is closed (and its memory freed).
    #[serde(with = "humantime_serde")]
    pub write_timeout: Duration,
    /// Group of the socket batond binds (mode 0660); empty: batond's own
    /// group. A socket systemd passes keeps `SocketGroup=`.
    pub socket_group: String,
}

impl Default for ApiConfig {
    fn default() -> Self {
        Self {
            socket: PathBuf::from(DEFAULT_SOCKET),
            max_connections: 1024,
            header_timeout: Duration::from_secs(10),
            write_timeout: Duration::from_secs(30),
            socket_group: String::new(),
        }
    }
}

/// Bounds of `api.max_connections` and of the API's timeouts.
const MAX_CONNECTIONS: u32 = 65_536;
const MIN_API_TIMEOUT: Duration = Duration::from_millis(100);
const MAX_API_TIMEOUT: Duration = Duration::from_secs(3600);

/// Where the CLI and the daemon look for the socket by default.
pub const DEFAULT_SOCKET: &str = "/run/baton/baton.sock";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StateConfig {
    /// The SQLite database file (created 0600, directory 0750).
    pub database: PathBuf,
}

impl Default for StateConfig {
    fn default() -> Self {
        Self {
            database: PathBuf::from("/var/lib/baton/baton.db"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConductorConfig {
    /// The most BMC requests in flight at once.
    pub workers: u32,
    /// How long a stopping batond waits for work in flight (API requests,
    /// BMC commands) before it exits anyway.
    #[serde(with = "humantime_serde")]
    pub shutdown_timeout: Duration,
    /// How long a node may take to reach the target after the command.
    #[serde(with = "humantime_serde")]
    pub power_state_change_timeout: Duration,
    /// How long a soft power off (or soft reboot) may take before the
    /// fallback (or failure).
    #[serde(with = "humantime_serde")]
    pub soft_power_off_timeout: Duration,
    /// After `soft_power_off_timeout`, power off hard (soft reboot: reset
    /// hard) instead of failing.
    pub soft_off_fallback: bool,
    /// Tries after the first for a BMC request that failed transiently.
    pub max_retries: u32,
    /// Deadline of one BMC request (login, retransmits and task polling
    /// included).
    #[serde(with = "humantime_serde")]
    pub bmc_timeout: Duration,
    /// Least time between two requests to one BMC, per protocol.
    pub min_command_interval: MinCommandInterval,
}

impl Default for ConductorConfig {
    fn default() -> Self {
        Self {
            workers: 100,
            shutdown_timeout: Duration::from_secs(30),
            power_state_change_timeout: Duration::from_secs(60),
            soft_power_off_timeout: Duration::from_secs(600),
            soft_off_fallback: true,
            max_retries: 5,
            bmc_timeout: Duration::from_secs(20),
            min_command_interval: MinCommandInterval::default(),
        }
    }
}

/// `conductor.min_command_interval`: the gap kept between the end of one
/// request to a BMC and the start of the next, per protocol. baton never
/// has two requests in flight to one BMC whatever these say.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MinCommandInterval {
    /// Redfish BMCs serve keep-alive requests one after another; none by
    /// default.
    #[serde(with = "humantime_serde")]
    pub redfish: Duration,
    /// IPMI BMCs are small controllers that some firmware lets fall over
    /// when commands arrive back to back; 100 ms by default (Ironic waits
    /// 5 s because ipmitool opens a session per command, baton keeps one).
    #[serde(with = "humantime_serde")]
    pub ipmi: Duration,
}

impl Default for MinCommandInterval {
    fn default() -> Self {
        Self {
            redfish: Duration::ZERO,
            ipmi: Duration::from_millis(100),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SyncPolicy {
    /// Record the BMC's state in the database and log a `power-sync` action.
    Record,
    /// Drive the node back to the recorded state.
    Enforce,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SyncConfig {
    /// How often the power-sync sweep reads every idle node.
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
    pub policy: SyncPolicy,
    /// BMC reads in flight at once during a sweep.
    pub workers: u32,
    /// Consecutive failed reads after which a node goes to maintenance
    /// with `fault = "power failure"`.
    pub max_failures: u32,
    /// How often the nodes the sync put in maintenance are tried again.
    #[serde(with = "humantime_serde")]
    pub recovery_interval: Duration,
}

impl Default for SyncConfig {
    fn default() -> Self {
        Self {
            interval: Duration::from_secs(60),
            policy: SyncPolicy::Record,
            workers: 8,
            max_failures: 3,
            recovery_interval: Duration::from_secs(300),
        }
    }
}

/// `[actions]`: how long the action log keeps its records.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ActionsConfig {
    /// An action record (with its events) last updated longer ago than
    /// this is deleted by the next prune (hourly, at start, and on a reload
    /// that changes it); records of an operation or batch job not yet ended
    /// are kept. A batch job (with its sub-jobs) that ended longer ago than
    /// this goes too.
    #[serde(with = "humantime_serde")]
    pub retention: Duration,
}

impl Default for ActionsConfig {
    fn default() -> Self {
        Self {
            retention: Duration::from_secs(30 * DAY),
        }
    }
}

const DAY: u64 = 24 * 60 * 60;
/// Bounds of `actions.retention`: a second (tests), a hundred years (keep
/// everything, in effect).
const MIN_RETENTION: Duration = Duration::from_secs(1);
const MAX_RETENTION: Duration = Duration::from_secs(36_500 * DAY);

/// Staggered power-on, so that starting a rack does not trip its breaker.
/// Applies to every command that powers a node on (start, reboot, power
/// cycle), per `power_domain`; nodes without a domain are not limited.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PowerOnConfig {
    /// Most nodes of one power domain powering on at once (from the command
    /// until the node is seen on); 0 = unlimited.
    pub max_per_domain: u32,
    /// Least time between two power-on commands in one power domain.
    #[serde(with = "humantime_serde")]
    pub stagger: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// A level (`error`, `warn`, `info`, `debug`, `trace`) or a tracing
    /// filter directive such as `info,batond::api=debug`.
    pub level: String,
    pub format: LogFormat,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            level: "info".into(),
            format: LogFormat::Text,
        }
    }
}

/// One thing wrong with the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigProblem {
    /// Dotted path of the key (`api.socket`), or empty for the whole file.
    pub key: String,
    pub reason: String,
}

impl fmt::Display for ConfigProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.key.is_empty() {
            f.write_str(&self.reason)
        } else {
            write!(f, "{}: {}", self.key, self.reason)
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("config file {path} has {} problem(s):\n{}", .problems.len(), list(.problems))]
    Invalid {
        path: PathBuf,
        problems: Vec<ConfigProblem>,
    },
}

fn list(problems: &[ConfigProblem]) -> String {
    problems
        .iter()
        .map(|p| format!("  - {p}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Longest path a Unix socket address can hold (`sun_path` is 108 bytes
/// including the terminating NUL).
const MAX_SOCKET_PATH: usize = 107;
const MAX_WORKERS: u32 = 10_000;

impl Config {
    /// Reads and validates a config file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&text).map_err(|problems| ConfigError::Invalid {
            path: path.to_owned(),
            problems,
        })
    }

    /// Parses and validates config text, returning every problem found.
    pub fn parse(text: &str) -> Result<Self, Vec<ConfigProblem>> {
        let mut table: toml::Table = text.parse().map_err(|e: toml::de::Error| {
            vec![ConfigProblem {
                key: String::new(),
                reason: format!("not valid TOML: {}", e.message().trim()),
            }]
        })?;
        let (config, mut problems) = deserialize_collecting(&mut table);
        problems.extend(config.semantic_problems());
        if problems.is_empty() {
            Ok(config)
        } else {
            Err(problems)
        }
    }

    fn semantic_problems(&self) -> Vec<ConfigProblem> {
        let mut problems = Vec::new();
        let mut bad = |key: &str, reason: String| {
            problems.push(ConfigProblem {
                key: key.into(),
                reason,
            });
        };
        let socket_len = self.api.socket.as_os_str().len();
        if socket_len == 0 {
            bad("api.socket", "must not be empty".into());
        } else if socket_len > MAX_SOCKET_PATH {
            bad(
                "api.socket",
                format!("is {socket_len} bytes long; a Unix socket path can be at most {MAX_SOCKET_PATH}"),
            );
        }
        if self.api.socket.as_os_str().as_encoded_bytes().contains(&0) {
            bad("api.socket", "must not contain a NUL character".into());
        }
        if !(1..=MAX_CONNECTIONS).contains(&self.api.max_connections) {
            bad(
                "api.max_connections",
                format!(
                    "is {}; must be between 1 and {MAX_CONNECTIONS}",
                    self.api.max_connections
                ),
            );
        }
        for (key, timeout) in [
            ("api.header_timeout", self.api.header_timeout),
            ("api.write_timeout", self.api.write_timeout),
        ] {
            if !(MIN_API_TIMEOUT..=MAX_API_TIMEOUT).contains(&timeout) {
                bad(
                    key,
                    format!(
                        "is {}; must be between 100ms and 1h",
                        humantime::format_duration(timeout)
                    ),
                );
            }
        }
        if self.state.database.as_os_str().is_empty() {
            bad("state.database", "must not be empty".into());
        } else if self
            .state
            .database
            .as_os_str()
            .as_encoded_bytes()
            .contains(&0)
        {
            bad("state.database", "must not contain a NUL character".into());
        }
        if !(1..=MAX_WORKERS).contains(&self.conductor.workers) {
            bad(
                "conductor.workers",
                format!(
                    "is {}; must be between 1 and {MAX_WORKERS}",
                    self.conductor.workers
                ),
            );
        }
        if self.conductor.shutdown_timeout > Duration::from_secs(3600) {
            bad(
                "conductor.shutdown_timeout",
                "must be at most 1h (systemd's stop timeout should be longer)".into(),
            );
        }
        let at_least =
            |key: &str, value: Duration, least: Duration, bad: &mut dyn FnMut(&str, String)| {
                if value < least {
                    bad(
                        key,
                        format!(
                            "is {}; must be at least {}",
                            humantime::format_duration(value),
                            humantime::format_duration(least)
                        ),
                    );
                }
            };
        let conductor = &self.conductor;
        at_least(
            "conductor.power_state_change_timeout",
            conductor.power_state_change_timeout,
            Duration::from_secs(1),
            &mut bad,
        );
        at_least(
            "conductor.soft_power_off_timeout",
            conductor.soft_power_off_timeout,
            Duration::from_secs(1),
            &mut bad,
        );
        at_least(
            "conductor.bmc_timeout",
            conductor.bmc_timeout,
            Duration::from_millis(100),
            &mut bad,
        );
        at_least(
            "sync.recovery_interval",
            self.sync.recovery_interval,
            Duration::from_secs(1),
            &mut bad,
        );
        if self.power_on.stagger > Duration::from_secs(600) {
            bad("power_on.stagger", "must be at most 10m".into());
        }
        if conductor.max_retries > 100 {
            bad(
                "conductor.max_retries",
                format!("is {}; must be at most 100", conductor.max_retries),
            );
        }
        for (key, gap) in [
            (
                "conductor.min_command_interval.redfish",
                conductor.min_command_interval.redfish,
            ),
            (
                "conductor.min_command_interval.ipmi",
                conductor.min_command_interval.ipmi,
            ),
        ] {
            if gap > Duration::from_secs(60) {
                bad(key, "must be at most 60s".into());
            }
        }
        if !(1..=MAX_WORKERS).contains(&self.sync.workers) {
            bad(
                "sync.workers",
                format!(
                    "is {}; must be between 1 and {MAX_WORKERS}",
                    self.sync.workers
                ),
            );
        }
        if self.sync.max_failures == 0 {
            bad("sync.max_failures", "must be at least 1".into());
        }
        if self.sync.interval < Duration::from_secs(1) {
            bad(
                "sync.interval",
                format!(
                    "is {}; must be at least 1s",
                    humantime::format_duration(self.sync.interval)
                ),
            );
        }
        if !(MIN_RETENTION..=MAX_RETENTION).contains(&self.actions.retention) {
            bad(
                "actions.retention",
                format!(
                    "is {}; must be between 1s and 100years",
                    humantime::format_duration(self.actions.retention)
                ),
            );
        }
        if let Err(reason) = check_credential_name(&self.bmc.default_password_credential) {
            bad("bmc.default_password_credential", reason);
        }
        if let Err(e) = check_log_level(&self.log.level) {
            bad(
                "log.level",
                format!(
                    "{:?} is not a level (error, warn, info, debug, trace) or filter directive: {e}",
                    self.log.level
                ),
            );
        }
        problems
    }
}

/// A systemd credential name is a file name in `$CREDENTIALS_DIRECTORY`
/// (empty: none).
fn check_credential_name(name: &str) -> Result<(), String> {
    if name.len() > MAX_CREDENTIAL_NAME {
        return Err(format!("is longer than {MAX_CREDENTIAL_NAME} bytes"));
    }
    let printable = name.chars().all(|c| c.is_ascii_graphic() && c != '/');
    if !printable || name == "." || name == ".." {
        return Err(format!(
            "{name:?} is not a credential name: use the ID of the unit's LoadCredential= line, \
             such as \"bmc-password\" (ASCII, no '/'), or \"\" for no default BMC password"
        ));
    }
    Ok(())
}

/// A bare word must be a level; anything with `=` or `,` is a filter
/// directive (a bare unknown word would silently mean "trace for target X").
fn check_log_level(level: &str) -> Result<(), String> {
    const LEVELS: [&str; 6] = ["off", "error", "warn", "info", "debug", "trace"];
    if !level.contains(['=', ',']) && !LEVELS.contains(&level.to_ascii_lowercase().as_str()) {
        return Err(format!("expected one of {}", LEVELS.join(", ")));
    }
    tracing_subscriber::EnvFilter::builder()
        .parse(level)
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// Deserializes `table`, recording each failing key and removing it so the
/// next attempt can find the following one. Removed keys take their defaults.
fn deserialize_collecting(table: &mut toml::Table) -> (Config, Vec<ConfigProblem>) {
    let mut problems = Vec::new();
    loop {
        let value = toml::Value::Table(table.clone());
        match serde_path_to_error::deserialize::<_, Config>(value) {
            Ok(config) => return (config, problems),
            Err(err) => {
                let key = err.path().to_string();
                let reason = err.inner().to_string();
                let removed = remove_key(table, &key, &reason);
                problems.push(ConfigProblem {
                    key: if key == "." { String::new() } else { key },
                    reason: clean_reason(&reason),
                });
                if !removed {
                    return (Config::default(), problems);
                }
            }
        }
    }
}

/// Removes the key an error points at. For an unknown key, serde's path
/// names the enclosing table and the message names the key.
fn remove_key(table: &mut toml::Table, path: &str, reason: &str) -> bool {
    let mut segments: Vec<String> = if path == "." {
        Vec::new()
    } else {
        path.split('.').map(str::to_owned).collect()
    };
    if let Some(unknown) = unknown_field_name(reason) {
        if segments.last() != Some(&unknown) {
            segments.push(unknown);
        }
    }
    let Some((last, parents)) = segments.split_last() else {
        return false;
    };
    let mut current = table;
    for parent in parents {
        match current.get_mut(parent) {
            Some(toml::Value::Table(t)) => current = t,
            _ => return false,
        }
    }
    current.remove(last).is_some()
}

fn unknown_field_name(reason: &str) -> Option<String> {
    let rest = reason.strip_prefix("unknown field `")?;
    rest.split('`').next().map(str::to_owned)
}

/// Serde's messages for unknown keys name them; make that read as a config
/// message and point at the documented reference.
fn clean_reason(reason: &str) -> String {
    match unknown_field_name(reason) {
        Some(name) => {
            let first_line = reason.lines().next().unwrap_or(reason);
            let expected = first_line
                .split_once(", expected ")
                .map(|(_, e)| format!("; expected {}", e.trim()))
                .unwrap_or_default();
            format!("unknown key `{name}`{expected} (config/batond.toml lists every key)")
        }
        None => crate::messages::humanize(reason),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(text: &str) -> Vec<String> {
        Config::parse(text)
            .unwrap_err()
            .into_iter()
            .map(|p| p.key)
            .collect()
    }

    #[test]
    fn empty_file_gives_defaults() {
        let c = Config::parse("").unwrap();
        assert_eq!(c, Config::default());
        assert_eq!(c.api.socket, PathBuf::from(DEFAULT_SOCKET));
        assert_eq!(c.conductor.workers, 100);
        assert_eq!(c.sync.interval, Duration::from_secs(60));
    }

    #[test]
    fn reports_every_bad_key_with_its_path() {
        let text = "[api]\nsocket = 5\n[conductor]\nworkers = \"many\"\n";
        assert_eq!(keys(text), ["api.socket", "conductor.workers"]);
        let problems = Config::parse(text).unwrap_err();
        assert!(problems[0].reason.contains("integer `5`"), "{problems:?}");
    }

    #[test]
    fn reports_unknown_keys_and_sections() {
        let text = "[api]\nsokcet = \"/x\"\n[bogus]\na = 1\n[sync]\npolicy = \"maybe\"\n";
        let problems = Config::parse(text).unwrap_err();
        let shown: Vec<String> = problems.iter().map(ToString::to_string).collect();
        assert_eq!(shown.len(), 3, "{shown:?}");
        assert!(
            shown.iter().any(
                |s| s.starts_with("api.sokcet: unknown key `sokcet`; expected one of `socket`")
            ),
            "{shown:?}"
        );
        assert!(
            shown.iter().any(|s| s.contains("unknown key `bogus`")),
            "{shown:?}"
        );
        assert!(
            shown.iter().any(|s| s.starts_with("sync.policy")),
            "{shown:?}"
        );
    }

    #[test]
    fn api_limits_are_bounded() {
        let text = "[api]\nmax_connections = 0\nheader_timeout = \"1ms\"\nwrite_timeout = \"2h\"\n";
        assert_eq!(
            keys(text),
            [
                "api.max_connections",
                "api.header_timeout",
                "api.write_timeout"
            ]
        );
        let c = Config::parse("[api]\nmax_connections = 64\nwrite_timeout = \"500ms\"\n").unwrap();
        assert_eq!(c.api.max_connections, 64);
        assert_eq!(c.api.write_timeout, Duration::from_millis(500));
        assert_eq!(c.api.header_timeout, Duration::from_secs(10));
    }

    #[test]
    fn semantic_rules_are_checked_with_type_errors() {
        let long = "/x".repeat(60);
        let text = format!(
            "[api]\nsocket = \"{long}\"\n[conductor]\nworkers = 0\n[sync]\ninterval = \"10ms\"\n\
             [log]\nlevel = \"lots\"\nformat = \"xml\"\n"
        );
        assert_eq!(
            keys(&text),
            [
                "log.format",
                "api.socket",
                "conductor.workers",
                "sync.interval",
                "log.level"
            ]
        );
    }

    #[test]
    fn durations_use_humantime() {
        let c = Config::parse("[sync]\ninterval = \"2m 30s\"\npolicy = \"enforce\"").unwrap();
        assert_eq!(c.sync.interval, Duration::from_secs(150));
        assert_eq!(c.sync.policy, SyncPolicy::Enforce);
        assert_eq!(keys("[sync]\ninterval = \"soon\""), ["sync.interval"]);
    }

    #[test]
    fn action_retention_is_a_bounded_duration() {
        let c = Config::parse("").unwrap();
        assert_eq!(c.actions.retention, Duration::from_secs(30 * DAY));
        let c = Config::parse("[actions]\nretention = \"90days\"").unwrap();
        assert_eq!(c.actions.retention, Duration::from_secs(90 * DAY));
        for bad in ["\"0s\"", "\"500ms\"", "\"200years\"", "\"forever\"", "30"] {
            let text = format!("[actions]\nretention = {bad}");
            assert_eq!(keys(&text), ["actions.retention"], "{bad}");
        }
        assert_eq!(keys("[actions]\nretain = \"1d\""), ["actions.retain"]);
    }

    #[test]
    fn the_default_password_credential_is_a_file_name() {
        let c = Config::parse("").unwrap();
        assert_eq!(c.bmc.default_password_credential, "bmc-password");
        let c = Config::parse("[bmc]\ndefault_password_credential = \"\"").unwrap();
        assert_eq!(c.bmc.default_password_credential, "");
        for bad in ["../etc/shadow", "a b", "..", "x\ty"] {
            let text = format!("[bmc]\ndefault_password_credential = {bad:?}");
            assert_eq!(keys(&text), ["bmc.default_password_credential"], "{bad}");
        }
        assert_eq!(
            keys("[bmc]\ndefault_password = \"x\""),
            ["bmc.default_password"]
        );
    }

    #[test]
    fn toml_syntax_errors_are_one_problem() {
        let problems = Config::parse("[api\nsocket=").unwrap_err();
        assert_eq!(problems.len(), 1);
        assert!(problems[0].reason.starts_with("not valid TOML"));
    }

    #[test]
    fn shipped_config_files_are_valid() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../config");
        for file in ["batond.toml", "demo.toml"] {
            let loaded = Config::load(&root.join(file));
            assert!(loaded.is_ok(), "{file}: {loaded:?}");
        }
        let documented = Config::load(&root.join("batond.toml")).unwrap();
        assert_eq!(
            documented,
            Config::default(),
            "batond.toml must document the defaults"
        );
    }
}
