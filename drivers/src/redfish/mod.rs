//! The Redfish power driver.
//!
//! Steps, per DSP0266 and the `ComputerSystem` schema:
//! 1. Find the system: `system_id` when configured, else the only member of
//!    the service root's `Systems` collection (several members and no
//!    `system_id` is a config error that lists them).
//! 2. Power state: `GET` the system, read `PowerState`.
//! 3. Power: `POST` `Actions/#ComputerSystem.Reset` with a `ResetType` picked
//!    from `ResetType@Redfish.AllowableValues` (or the action's `ActionInfo`).
//!    A 400/409 when the server is already in the requested state is success;
//!    409 `ActionParameterValueConflict` (a BMC still settling after a power
//!    change) is retried; 202 + `Location` is a task monitor, polled until it
//!    stops answering 202, honouring `Retry-After`. Once the reset may have
//!    reached the BMC, it is never sent again: a lost answer, a task monitor
//!    that fails to answer or outlives the deadline is
//!    [`DriverError::OutcomeUnknown`], for the caller to re-read the state.
//! 4. Boot override: `PATCH` the system's `Boot` (target, `Enabled` and the
//!    current `Mode`) with `If-Match` set to the system's ETag (opt-out:
//!    `redfish_use_etag = false`); a 412 re-reads the ETag and tries again
//!    (a weak tag then without its `W/`); a persistent override the BMC does
//!    not offer (`Continuous` not allowed) is `Unsupported`; a refusal while
//!    the server is in POST is transient.
//!
//! The system path and reset action are learned once and kept.

mod client;
mod model;
#[cfg(test)]
mod testbmc;

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use tokio::sync::OnceCell;

use self::client::{Extra, RedfishClient, Reply};
use crate::refused::{Feature, Refused};
use crate::{
    with_command_deadline, with_deadline, BootDevice, BootSetting, Capabilities, DriverConfig,
    DriverError, DriverKind, DriverOptions, PowerAction, PowerDriver, PowerState,
};

/// HPE iLO's refusal of a boot override while the server is in POST: the
/// same PATCH succeeds once POST is over.
const IN_POST: &str = "UnableToModifyDuringSystemPOST";

/// Wait between tries of a reset the BMC answered with a conflict.
const CONFLICT_RETRY: Duration = Duration::from_millis(500);
/// Poll interval of a task monitor that sends no `Retry-After`.
const TASK_POLL: Duration = Duration::from_secs(1);
/// The shortest wait between polls or retries, whatever `Retry-After` says
/// (`Retry-After: 0` must not turn a poll loop into a flood).
const MIN_WAIT: Duration = Duration::from_millis(200);

/// The system's reset action, learned once.
#[derive(Debug)]
struct ResetAction {
    target: String,
    allowed: Vec<String>,
}

/// A call that sends a command changing the server: its name for errors,
/// and whether the command may be under way on the BMC.
#[derive(Debug)]
struct Command {
    operation: &'static str,
    sent: AtomicBool,
}

impl Command {
    fn new(operation: &'static str) -> Self {
        Self {
            operation,
            sent: AtomicBool::new(false),
        }
    }
}

/// A Redfish BMC.
#[derive(Debug)]
pub struct RedfishDriver {
    client: RedfishClient,
    system_id: Option<String>,
    options: DriverOptions,
    system: OnceCell<String>,
    reset: OnceCell<ResetAction>,
    refused: Refused,
}

impl RedfishDriver {
    /// A driver for the BMC in `config`, sending through `http` (shared by
    /// every BMC with the same TLS settings, see [`crate::DriverFactory`]).
    pub fn new(config: &DriverConfig, http: reqwest::Client) -> Result<Self, DriverError> {
        let base = base_url(&config.address, config.port)?;
        Ok(Self {
            client: RedfishClient::new(
                http,
                base,
                config.username.clone(),
                config.password.clone(),
                config.options.connect_timeout,
                config.options.call_timeout,
            ),
            system_id: config.system_id.clone(),
            options: config.options.clone(),
            system: OnceCell::new(),
            reset: OnceCell::new(),
            refused: Refused::default(),
        })
    }

    /// Step 1: the system's path.
    async fn system_path(&self) -> Result<&str, DriverError> {
        self.system
            .get_or_try_init(|| self.find_system())
            .await
            .map(String::as_str)
    }

    async fn find_system(&self) -> Result<String, DriverError> {
        let root = self.client.service_root().await?;
        let systems = match model::link(&root, "/Systems") {
            Some(systems) => systems,
            // There, but not a link: the BMC's answer is broken, not short
            // of a feature.
            None if root.get("Systems").is_some() => {
                return Err(DriverError::InvalidResponse(
                    "the service root's Systems is not a link ({\"@odata.id\": \"…\"})".into(),
                ))
            }
            None => {
                return Err(DriverError::Unsupported(
                    "a Redfish service without Systems".into(),
                ))
            }
        };
        if let Some(id) = &self.system_id {
            return Ok(format!("{}/{}", systems.trim_end_matches('/'), id));
        }
        let members = model::members(&self.client.get(&systems).await?.body);
        match members.as_slice() {
            [one] => Ok(one.clone()),
            [] => Err(DriverError::InvalidResponse(format!(
                "{systems} has no members"
            ))),
            several => Err(DriverError::Config(format!(
                "the BMC has {} systems ({}); set system_id to one of them",
                several.len(),
                several.join(", ")
            ))),
        }
    }

    async fn get_system(&self) -> Result<Reply, DriverError> {
        let path = self.system_path().await?;
        self.client.get(path).await
    }

    async fn reset_action(&self) -> Result<&ResetAction, DriverError> {
        self.reset.get_or_try_init(|| self.learn_reset()).await
    }

    async fn learn_reset(&self) -> Result<ResetAction, DriverError> {
        let system = self.get_system().await?.body;
        let action = system
            .pointer("/Actions/#ComputerSystem.Reset")
            .ok_or_else(|| DriverError::Unsupported("ComputerSystem.Reset".into()))?;
        let target = model::required_str(action, "target")?.to_owned();
        let allowed = match model::allowable(action, "ResetType") {
            Some(allowed) => allowed,
            None => self.action_info_allowable(action).await?,
        };
        tracing::debug!(bmc = self.client.address(), ?allowed, "Redfish reset types");
        Ok(ResetAction { target, allowed })
    }

    /// The reset types of an `@Redfish.ActionInfo` resource, or the defaults.
    async fn action_info_allowable(&self, action: &Value) -> Result<Vec<String>, DriverError> {
        let Some(info) = action.get("@Redfish.ActionInfo").and_then(Value::as_str) else {
            return Ok(model::default_reset_types());
        };
        let info = self.client.get(info).await?.body;
        Ok(model::action_info_allowable(&info, "ResetType")
            .unwrap_or_else(model::default_reset_types))
    }

    async fn read_power(&self, extra: Extra<'_>) -> Result<PowerState, DriverError> {
        let path = self.system_path().await?;
        model::power_state(&self.client.get_with(path, extra).await?.body)
    }

    /// Step 3: send `reset_type`; `already` is the end state that makes a
    /// refusal a success. `sent` is set while the reset may be under way on
    /// the BMC (see [`with_command_deadline`]); it is cleared when the BMC
    /// answers that it did not take it.
    async fn reset(
        &self,
        command: &Command,
        reset_type: &str,
        already: Option<PowerState>,
    ) -> Result<(), DriverError> {
        let target = &self.reset_action().await?.target;
        let body = json!({ "ResetType": reset_type });
        loop {
            command.sent.store(true, Ordering::SeqCst);
            let reply = self
                .client
                .command(command.operation, target, &body)
                .await?;
            match reply.status {
                StatusCode::ACCEPTED => return self.follow_task(command, reply).await,
                s if s.is_success() => return Ok(()),
                StatusCode::BAD_REQUEST | StatusCode::CONFLICT => {}
                _ => return Err(reply.error()),
            }
            command.sent.store(false, Ordering::SeqCst);
            if self.is_already(already).await? {
                tracing::debug!(
                    bmc = self.client.address(),
                    reset_type,
                    "already in that state"
                );
                return Ok(());
            }
            if !model::has_message(&reply.body, "ActionParameterValueConflict") {
                return Err(reply.error());
            }
            tracing::debug!(
                bmc = self.client.address(),
                reset_type,
                "reset conflict, retrying"
            );
            tokio::time::sleep(reply.retry_after.unwrap_or(CONFLICT_RETRY).max(MIN_WAIT)).await;
        }
    }

    async fn is_already(&self, end_state: Option<PowerState>) -> Result<bool, DriverError> {
        match end_state {
            // PoweringOn/PoweringOff: already on its way there.
            Some(end) => Ok(self.read_power(Extra::default()).await?.settled() == end),
            None => Ok(false),
        }
    }

    /// Polls a task monitor until it stops answering 202. The BMC accepted
    /// the reset: a monitor that cannot be read leaves its outcome unknown.
    async fn follow_task(&self, command: &Command, accepted: Reply) -> Result<(), DriverError> {
        let Some(monitor) = accepted.location.clone() else {
            return Ok(());
        };
        let unknown = |error: DriverError| DriverError::OutcomeUnknown {
            operation: command.operation,
            reason: format!(
                "the BMC accepted it, but its task {monitor} did not say how it ended ({error})"
            ),
        };
        let mut wait = accepted.retry_after.unwrap_or(TASK_POLL);
        loop {
            tokio::time::sleep(wait.max(MIN_WAIT)).await;
            let reply = self
                .client
                .request(Method::GET, &monitor, None, Extra::default())
                .await
                .map_err(unknown)?;
            if reply.status == StatusCode::ACCEPTED {
                wait = reply.retry_after.unwrap_or(TASK_POLL);
                continue;
            }
            let reply = reply.check().map_err(unknown)?;
            match reply.body.get("TaskState").and_then(Value::as_str) {
                None | Some("Completed") => return Ok(()),
                Some("Exception" | "Killed" | "Cancelled") => {
                    return Err(DriverError::Bmc {
                        code: reply.status.as_u16(),
                        message: format!("task {monitor} failed: {}", task_messages(&reply.body)),
                        transient: false,
                    })
                }
                Some(_) => wait = reply.retry_after.unwrap_or(TASK_POLL),
            }
        }
    }

    async fn set_power_inner(
        &self,
        action: PowerAction,
        command: &Command,
    ) -> Result<(), DriverError> {
        let allowed = &self.reset_action().await?.allowed;
        let reset_type = model::choose_reset_type(action, allowed).ok_or_else(|| {
            DriverError::Unsupported(format!("{action} (BMC allows {})", allowed.join(", ")))
        })?;
        let already = matches!(
            action,
            PowerAction::On | PowerAction::Off | PowerAction::SoftOff
        )
        .then(|| action.end_state());
        self.reset(command, reset_type, already).await
    }

    async fn boot_device_inner(&self) -> Result<BootSetting, DriverError> {
        let system = self.get_system().await?.body;
        let boot = system
            .get("Boot")
            .ok_or_else(|| DriverError::Unsupported("boot override (no Boot property)".into()))?;
        let enabled = boot
            .get("BootSourceOverrideEnabled")
            .and_then(Value::as_str)
            .unwrap_or("Disabled");
        let target = boot
            .get("BootSourceOverrideTarget")
            .and_then(Value::as_str)
            .unwrap_or("None");
        let device = match enabled {
            "Disabled" => None,
            _ => model::boot_device(target)?,
        };
        Ok(BootSetting {
            device,
            persistent: enabled == "Continuous",
        })
    }

    /// Step 4. The PATCH names target, `Enabled` and (when the system
    /// reports one) the current `Mode`, since some BMCs take all three or
    /// none. Each try re-reads the system for its ETag. A 412 is tried again
    /// once with a fresh tag — sent without its `W/`, since a weak tag never
    /// matches a BMC that compares strongly; a 400 when `Enabled` repeats the
    /// present value is tried again without it.
    async fn set_boot_inner(
        &self,
        device: BootDevice,
        persistent: bool,
    ) -> Result<(), DriverError> {
        let path = self.system_path().await?;
        let enabled = if persistent { "Continuous" } else { "Once" };
        let mut strong = false;
        let mut repeat_enabled = true;
        for _try in 0..3 {
            let system = self.client.get(path).await?;
            let boot = system.body.get("Boot").cloned().unwrap_or_default();
            let offered = model::allowable(&boot, "BootSourceOverrideEnabled");
            if let Some(values) = offered.filter(|values| !values.iter().any(|v| v == enabled)) {
                return Err(DriverError::Unsupported(format!(
                    "{enabled} boot override (the BMC offers {})",
                    values.join(", ")
                )));
            }
            let repeats = boot
                .get("BootSourceOverrideEnabled")
                .and_then(Value::as_str)
                == Some(enabled);
            let mut fields = json!({ "BootSourceOverrideTarget": model::boot_target(device) });
            if repeat_enabled || !repeats {
                fields["BootSourceOverrideEnabled"] = json!(enabled);
            }
            if let Some(mode) = boot.get("BootSourceOverrideMode").and_then(Value::as_str) {
                fields["BootSourceOverrideMode"] = json!(mode);
            }
            let etag = system
                .etag
                .filter(|_| self.options.redfish_use_etag)
                .map(|tag| match tag.strip_prefix("W/") {
                    Some(bare) if strong => bare.to_owned(),
                    _ => tag,
                });
            let weak = etag.as_deref().is_some_and(|t| t.starts_with("W/"));
            let body = json!({ "Boot": fields });
            let reply = self
                .client
                .request(
                    Method::PATCH,
                    path,
                    Some(&body),
                    Extra {
                        if_match: etag.as_deref(),
                        last: false,
                    },
                )
                .await?;
            match reply.status {
                StatusCode::PRECONDITION_FAILED => strong |= weak,
                StatusCode::BAD_REQUEST if repeats && repeat_enabled => repeat_enabled = false,
                StatusCode::BAD_REQUEST if model::has_message(&reply.body, IN_POST) => {
                    return Err(DriverError::Bmc {
                        code: 400,
                        message: model::error_message(&reply.body, reply.status),
                        transient: true,
                    })
                }
                _ => return reply.check().map(drop),
            }
        }
        Err(DriverError::Bmc {
            code: 412,
            message: "the boot override kept being changed under it (ETag mismatch)".into(),
            transient: true,
        })
    }

    async fn capabilities_inner(&self) -> Result<Capabilities, DriverError> {
        let allowed = &self.reset_action().await?.allowed;
        let system = self.get_system().await?.body;
        let boot_devices = match system
            .get("Boot")
            .and_then(|b| model::allowable(b, "BootSourceOverrideTarget"))
        {
            Some(targets) => BootDevice::ALL
                .into_iter()
                .filter(|d| targets.iter().any(|t| t == model::boot_target(*d)))
                .collect(),
            None => BootDevice::ALL.to_vec(),
        };
        Ok(self.refused.filter(Capabilities {
            power_actions: PowerAction::ALL
                .into_iter()
                .filter(|a| model::choose_reset_type(*a, allowed).is_some())
                .collect(),
            boot_devices,
            nmi: model::allows_nmi(allowed),
        }))
    }

    /// Runs `call`, which sends `command`, within the call deadline.
    async fn bounded(
        &self,
        command: &Command,
        call: impl std::future::Future<Output = Result<(), DriverError>>,
    ) -> Result<(), DriverError> {
        let deadline = self.options.call_timeout;
        with_command_deadline(command.operation, deadline, &command.sent, call).await
    }

    async fn inject_nmi_inner(&self, command: &Command) -> Result<(), DriverError> {
        if !model::allows_nmi(&self.reset_action().await?.allowed) {
            return Err(DriverError::Unsupported("NMI (no Nmi ResetType)".into()));
        }
        self.reset(command, "Nmi", None).await
    }
}

#[async_trait::async_trait]
impl PowerDriver for RedfishDriver {
    fn kind(&self) -> DriverKind {
        DriverKind::Redfish
    }

    async fn power_state(&self) -> Result<PowerState, DriverError> {
        let read = self.read_power(Extra::default());
        with_deadline("power_state", self.options.call_timeout, read).await
    }

    async fn power_state_then_idle(&self) -> Result<PowerState, DriverError> {
        let extra = Extra {
            last: true,
            ..Extra::default()
        };
        let read = self.read_power(extra);
        with_deadline("power_state", self.options.call_timeout, read).await
    }

    async fn set_power(&self, action: PowerAction) -> Result<(), DriverError> {
        let command = &Command::new("set_power");
        let result = self
            .bounded(command, self.set_power_inner(action, command))
            .await;
        self.refused.note(Feature::Power(action), &result);
        result
    }

    async fn boot_device(&self) -> Result<BootSetting, DriverError> {
        let deadline = self.options.call_timeout;
        with_deadline("boot_device", deadline, self.boot_device_inner()).await
    }

    async fn set_boot_device(
        &self,
        device: BootDevice,
        persistent: bool,
    ) -> Result<(), DriverError> {
        let deadline = self.options.call_timeout;
        with_deadline(
            "set_boot_device",
            deadline,
            self.set_boot_inner(device, persistent),
        )
        .await
    }

    async fn inject_nmi(&self) -> Result<(), DriverError> {
        let command = &Command::new("inject_nmi");
        let result = self.bounded(command, self.inject_nmi_inner(command)).await;
        self.refused.note(Feature::Nmi, &result);
        result
    }

    async fn validate(&self) -> Result<(), DriverError> {
        with_deadline("validate", self.options.call_timeout, async {
            self.get_system().await.map(drop)
        })
        .await
    }

    async fn capabilities(&self) -> Result<Capabilities, DriverError> {
        let deadline = self.options.call_timeout;
        with_deadline("capabilities", deadline, self.capabilities_inner()).await
    }

    async fn close(&self) {
        let deadline = self.options.call_timeout;
        let logout = async {
            self.client.logout().await;
            Ok(())
        };
        if let Err(error) = with_deadline("close", deadline, logout).await {
            tracing::debug!(bmc = self.client.address(), %error, "Redfish logout timed out");
        }
    }
}

/// `scheme://host:port` from a node's address and port (HTTPS by default).
fn base_url(address: &str, port: Option<u16>) -> Result<String, DriverError> {
    let (scheme, host) = match address.split_once("://") {
        Some((scheme @ ("http" | "https"), host)) => (scheme, host),
        Some((other, _)) => {
            return Err(DriverError::Config(format!(
                "Redfish address scheme {other:?}; use https:// or http://"
            )))
        }
        None => ("https", address),
    };
    let host = host.trim_end_matches('/');
    if host.contains('@') {
        // `user:password@host`: never echo it, and never send it in URLs.
        return Err(DriverError::Config(
            "Redfish address must not carry credentials (user@host); set username and password"
                .into(),
        ));
    }
    if host.is_empty() || host.contains(['/', '?', '#']) || host.contains(char::is_whitespace) {
        return Err(DriverError::Config(format!(
            "Redfish address {address:?} must be a host name or IP, optionally with a scheme"
        )));
    }
    let host = match host.parse::<std::net::Ipv6Addr>() {
        Ok(v6) => format!("[{v6}]"),
        Err(_) => host.to_owned(),
    };
    let port = port.unwrap_or(if scheme == "https" { 443 } else { 80 });
    Ok(format!("{scheme}://{host}:{port}"))
}

/// The messages of a failed task, joined.
fn task_messages(task: &Value) -> String {
    task.get("Messages")
        .and_then(Value::as_array)
        .map(|messages| {
            messages
                .iter()
                .filter_map(|m| m.get("Message").and_then(Value::as_str))
                .collect::<Vec<_>>()
                .join("; ")
        })
        .filter(|text| !text.is_empty())
        .unwrap_or_else(|| "no message".into())
}

#[cfg(test)]
mod tests {
    use super::testbmc::{Answer, Seen, TestBmc};
    use super::*;
    use crate::Secret;

    const PASSWORD: &str = "s3cret-Pa55";

    fn driver(port: u16) -> RedfishDriver {
        driver_with_deadline(port, Duration::from_secs(10))
    }

    /// A driver for the test BMC on `port` whose calls end after `deadline`.
    fn driver_with_deadline(port: u16, deadline: Duration) -> RedfishDriver {
        let mut config = DriverConfig::new(
            DriverKind::Redfish,
            "http://127.0.0.1",
            Some(port),
            "admin",
            Secret::new(PASSWORD),
        );
        config.options.call_timeout = deadline;
        RedfishDriver::new(&config, reqwest::Client::new()).expect("driver")
    }

    fn root(sessions: &str) -> Value {
        json!({"Systems": {"@odata.id": "/redfish/v1/Systems"},
               "Links": {"Sessions": {"@odata.id": sessions}}})
    }

    /// A BMC whose system resource is `system`, with basic auth.
    async fn bmc_with_system(system: impl Fn() -> Answer + Send + Sync + 'static) -> TestBmc {
        bmc_with_routes(move |_| system()).await
    }

    /// A BMC without sessions and with one system: `routes` answers every
    /// request other than the service root and the Systems collection.
    async fn bmc_with_routes(routes: impl Fn(&Seen) -> Answer + Send + Sync + 'static) -> TestBmc {
        TestBmc::start(move |req| match req.path.as_str() {
            "/redfish/v1/" => Answer::json(
                200,
                &json!({"Systems": {"@odata.id": "/redfish/v1/Systems"}}),
            ),
            "/redfish/v1/Systems" => Answer::json(
                200,
                &json!({"Members": [{"@odata.id": "/redfish/v1/Systems/1"}]}),
            ),
            _ => routes(req),
        })
        .await
    }

    #[tokio::test]
    async fn an_endless_body_is_refused_not_buffered() {
        let bmc = bmc_with_system(|| Answer::Endless).await;
        let started = std::time::Instant::now();
        let result = driver(bmc.port).power_state().await;
        assert!(
            matches!(&result, Err(DriverError::InvalidResponse(m)) if m.contains("larger than")),
            "{result:?}"
        );
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[tokio::test]
    async fn a_huge_declared_body_is_refused_at_once() {
        let bmc = bmc_with_system(|| Answer::Declared(1 << 40)).await;
        let result = driver(bmc.port).power_state().await;
        assert!(
            matches!(&result, Err(DriverError::InvalidResponse(m)) if m.contains("larger than")),
            "{result:?}"
        );
    }

    #[tokio::test]
    async fn credentials_never_go_to_a_host_the_bmc_links_to() {
        let elsewhere = TestBmc::start(|_| Answer::json(201, &json!({}))).await;
        let foreign = format!("http://127.0.0.1:{}/steal", elsewhere.port);
        // A foreign URL is read as a path on the BMC itself.
        let link = foreign.clone();
        let bmc = TestBmc::start(move |req| match req.path.as_str() {
            "/redfish/v1/" => Answer::json(200, &root(&link)),
            _ => Answer::json(401, &json!({})),
        })
        .await;
        let result = driver(bmc.port).validate().await;
        assert!(matches!(result, Err(DriverError::Auth(_))), "{result:?}");
        let posts: Vec<_> = bmc
            .seen()
            .into_iter()
            .filter(|r| r.method == "POST")
            .map(|r| r.path)
            .collect();
        assert_eq!(posts, vec!["/steal".to_owned()]);
        // Links that are not paths are refused before anything is sent.
        for sessions in ["@127.0.0.1/steal", "//127.0.0.1/steal"] {
            let link = sessions.to_owned();
            let bmc = TestBmc::start(move |_| Answer::json(200, &root(&link))).await;
            let result = driver(bmc.port).validate().await;
            assert!(
                matches!(&result, Err(DriverError::InvalidResponse(m)) if m.contains("not a path")),
                "{sessions}: {result:?}"
            );
            assert!(
                bmc.seen().iter().all(|r| r.method == "GET"),
                "{sessions}: {:?}",
                bmc.seen()
            );
        }
        assert!(elsewhere.seen().is_empty(), "{:?}", elsewhere.seen());
    }

    #[tokio::test]
    async fn an_absolute_link_back_to_the_bmc_is_followed() {
        let port = std::sync::Arc::new(std::sync::OnceLock::<u16>::new());
        let own = std::sync::Arc::clone(&port);
        let bmc = TestBmc::start(move |req| {
            let base = format!("http://127.0.0.1:{}", own.get().copied().unwrap_or(0));
            match (req.method.as_str(), req.path.as_str()) {
                ("GET", "/redfish/v1/") => {
                    Answer::json(200, &root(&format!("{base}/redfish/v1/Sessions")))
                }
                ("POST", "/redfish/v1/Sessions") => Answer::Json {
                    status: 201,
                    headers: vec![
                        ("x-auth-token", "tok".into()),
                        ("location", format!("{base}/redfish/v1/Sessions/1")),
                    ],
                    body: "{}".into(),
                },
                ("GET", "/redfish/v1/Systems") => Answer::json(
                    200,
                    &json!({"Members": [{"@odata.id": format!("{base}/redfish/v1/Systems/1")}]}),
                ),
                ("GET", "/redfish/v1/Systems/1") => Answer::json(200, &json!({"PowerState": "On"})),
                _ => Answer::json(404, &json!({})),
            }
        })
        .await;
        port.set(bmc.port).expect("port set once");
        let driver = driver(bmc.port);
        assert_eq!(driver.power_state().await, Ok(PowerState::On));
        driver.close().await;
        let seen: Vec<_> = bmc
            .seen()
            .into_iter()
            .map(|r| format!("{} {}", r.method, r.path))
            .collect();
        assert!(
            seen.contains(&"POST /redfish/v1/Sessions".to_owned()),
            "{seen:?}"
        );
        assert!(
            seen.contains(&"DELETE /redfish/v1/Sessions/1".to_owned()),
            "{seen:?}"
        );
    }

    /// A BMC whose login takes `login_delay`, counting logins.
    async fn slow_login_bmc(login_delay: Duration) -> TestBmc {
        TestBmc::start(move |req| match (req.method.as_str(), req.path.as_str()) {
            ("GET", "/redfish/v1/") => Answer::json(200, &root("/redfish/v1/Sessions")),
            ("POST", "/redfish/v1/Sessions") => Answer::Slow(
                login_delay,
                Box::new(Answer::Json {
                    status: 201,
                    headers: vec![
                        ("x-auth-token", "tok".into()),
                        ("location", "/redfish/v1/Sessions/1".into()),
                    ],
                    body: "{}".into(),
                }),
            ),
            ("GET", "/redfish/v1/Systems") => Answer::json(
                200,
                &json!({"Members": [{"@odata.id": "/redfish/v1/Systems/1"}]}),
            ),
            ("GET", "/redfish/v1/Systems/1") => Answer::json(200, &json!({"PowerState": "Off"})),
            _ => Answer::json(404, &json!({})),
        })
        .await
    }

    #[tokio::test]
    async fn a_relogin_cut_short_by_the_deadline_is_kept_not_leaked() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let logins = std::sync::Arc::new(AtomicUsize::new(0));
        let count = std::sync::Arc::clone(&logins);
        let bmc = TestBmc::start(move |req| match (req.method.as_str(), req.path.as_str()) {
            ("GET", "/redfish/v1/") => Answer::json(200, &root("/redfish/v1/Sessions")),
            ("POST", "/redfish/v1/Sessions") => {
                let n = count.fetch_add(1, Ordering::SeqCst) + 1;
                let session = Answer::Json {
                    status: 201,
                    headers: vec![
                        ("x-auth-token", format!("tok{n}")),
                        ("location", format!("/redfish/v1/Sessions/{n}")),
                    ],
                    body: "{}".into(),
                };
                // The second login (after the first session expired) is slow.
                match n {
                    1 => session,
                    _ => Answer::Slow(Duration::from_millis(150), Box::new(session)),
                }
            }
            ("GET", "/redfish/v1/Systems") => Answer::json(
                200,
                &json!({"Members": [{"@odata.id": "/redfish/v1/Systems/1"}]}),
            ),
            ("GET", "/redfish/v1/Systems/1") if req.token.as_deref() == Some("tok1") => {
                Answer::Slow(
                    Duration::from_millis(200),
                    Box::new(Answer::json(401, &json!({}))),
                )
            }
            ("GET", "/redfish/v1/Systems/1") => Answer::json(200, &json!({"PowerState": "Off"})),
            _ => Answer::json(404, &json!({})),
        })
        .await;
        let driver = driver_with_deadline(bmc.port, Duration::from_millis(300));
        let first = driver.power_state().await;
        assert!(
            matches!(first, Err(DriverError::Timeout { .. })),
            "{first:?}"
        );
        // The deadline passed mid-login; the login itself ends on its own and
        // its session serves the next call.
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(driver.power_state().await, Ok(PowerState::Off));
        driver.close().await;
        assert_eq!(logins.load(Ordering::SeqCst), 2, "{:?}", bmc.seen());
        let deleted: Vec<_> = bmc
            .seen()
            .into_iter()
            .filter(|r| r.method == "DELETE")
            .map(|r| r.path)
            .collect();
        assert_eq!(deleted, vec!["/redfish/v1/Sessions/2".to_owned()]);
    }

    #[tokio::test]
    async fn concurrent_first_calls_log_in_once() {
        let bmc = slow_login_bmc(Duration::from_millis(100)).await;
        let driver = std::sync::Arc::new(driver(bmc.port));
        let mut calls = tokio::task::JoinSet::new();
        for _ in 0..8 {
            let driver = std::sync::Arc::clone(&driver);
            calls.spawn(async move { driver.power_state().await });
        }
        while let Some(result) = calls.join_next().await {
            assert_eq!(result.expect("call task"), Ok(PowerState::Off));
        }
        let logins = bmc.seen().iter().filter(|r| r.method == "POST").count();
        assert_eq!(logins, 1, "{:?}", bmc.seen());
    }

    const RESET_TARGET: &str = "/redfish/v1/Systems/1/Actions/ComputerSystem.Reset";

    /// A BMC with one system that is on and allows every reset type; `reset`
    /// answers the reset action and anything else but the system.
    async fn reset_bmc(reset: impl Fn(&Seen) -> Answer + Send + Sync + 'static) -> TestBmc {
        bmc_with_routes(move |req| match (req.method.as_str(), req.path.as_str()) {
            ("GET", "/redfish/v1/Systems/1") => Answer::json(
                200,
                &json!({"PowerState": "On", "Actions": {"#ComputerSystem.Reset": {
                    "target": RESET_TARGET,
                    "ResetType@Redfish.AllowableValues": ["On", "ForceOff",
                        "GracefulShutdown", "ForceRestart", "PowerCycle", "Nmi"]}}}),
            ),
            _ => reset(req),
        })
        .await
    }

    /// The `ResetType`s the BMC received, in order.
    fn resets_sent(bmc: &TestBmc) -> Vec<String> {
        bmc.seen()
            .into_iter()
            .filter(|r| r.method == "POST" && r.path == RESET_TARGET)
            .map(|r| {
                serde_json::from_str::<Value>(&r.body)
                    .ok()
                    .and_then(|b| b.get("ResetType")?.as_str().map(str::to_owned))
                    .unwrap_or_default()
            })
            .collect()
    }

    fn assert_outcome_unknown(result: &Result<(), DriverError>, operation: &str) {
        assert!(
            matches!(result, Err(DriverError::OutcomeUnknown { operation: o, .. }) if *o == operation),
            "{result:?}"
        );
        assert!(result.as_ref().is_err_and(|e| !e.is_transient()));
    }

    #[tokio::test]
    async fn a_task_monitor_outliving_the_deadline_is_outcome_unknown_and_not_flooded() {
        let bmc = reset_bmc(|req| match req.path.as_str() {
            RESET_TARGET | "/tasks/1" => Answer::Json {
                status: 202,
                headers: vec![("location", "/tasks/1".into()), ("retry-after", "0".into())],
                body: "{}".into(),
            },
            _ => Answer::json(404, &json!({})),
        })
        .await;
        let driver = driver_with_deadline(bmc.port, Duration::from_secs(1));
        let result = driver.set_power(PowerAction::Reboot).await;
        assert_outcome_unknown(&result, "set_power");
        assert_eq!(resets_sent(&bmc), ["ForceRestart"]);
        let polls = bmc.seen().iter().filter(|r| r.path == "/tasks/1").count();
        assert!((1..=5).contains(&polls), "{polls} polls in one second");
    }

    #[tokio::test]
    async fn a_task_monitor_that_fails_to_answer_is_outcome_unknown() {
        let broken = [Answer::Hangup, Answer::json(500, &json!({}))];
        for (index, monitor) in broken.into_iter().enumerate() {
            let monitor = std::sync::Mutex::new(Some(monitor));
            let bmc = reset_bmc(move |req| match req.path.as_str() {
                RESET_TARGET => Answer::Json {
                    status: 202,
                    headers: vec![("location", "/tasks/1".into())],
                    body: "{}".into(),
                },
                _ => monitor
                    .lock()
                    .ok()
                    .and_then(|mut m| m.take())
                    .unwrap_or(Answer::Hangup),
            })
            .await;
            let result = driver(bmc.port).set_power(PowerAction::PowerCycle).await;
            assert_outcome_unknown(&result, "set_power");
            assert_eq!(resets_sent(&bmc), ["PowerCycle"], "case {index}");
        }
    }

    #[tokio::test]
    async fn a_reset_whose_answer_is_lost_is_outcome_unknown_and_sent_once() {
        let late = || {
            Answer::Slow(
                Duration::from_secs(3),
                Box::new(Answer::json(204, &json!({}))),
            )
        };
        for (name, lost) in [("late", true), ("hang-up", false)] {
            let bmc = reset_bmc(move |_| if lost { late() } else { Answer::Hangup }).await;
            let driver = driver_with_deadline(bmc.port, Duration::from_secs(1));
            let reboot = driver.set_power(PowerAction::Reboot).await;
            assert_outcome_unknown(&reboot, "set_power");
            let nmi = driver.inject_nmi().await;
            assert_outcome_unknown(&nmi, "inject_nmi");
            assert_eq!(resets_sent(&bmc), ["ForceRestart", "Nmi"], "{name}");
        }
    }

    /// A read whose connection is dropped (a BMC's link flapping, a
    /// kept-alive connection closed under it) is sent once more, and only once.
    #[tokio::test]
    async fn a_read_whose_connection_drops_is_sent_once_more() {
        let system = || Answer::json(200, &json!({"PowerState": "On"}));
        for (drops, expect_ok) in [(1, true), (usize::MAX, false)] {
            let count = std::sync::atomic::AtomicUsize::new(0);
            let bmc = bmc_with_system(move || {
                let n = count.fetch_add(1, Ordering::SeqCst);
                if n < drops {
                    Answer::Hangup
                } else {
                    system()
                }
            })
            .await;
            let result = driver(bmc.port).power_state().await;
            assert_eq!(result.is_ok(), expect_ok, "{drops}: {result:?}");
            if !expect_ok {
                assert!(matches!(result, Err(DriverError::Unreachable { .. })));
            }
            let reads = bmc
                .seen()
                .iter()
                .filter(|r| r.path == "/redfish/v1/Systems/1")
                .count();
            assert_eq!(reads, 2, "{drops}");
        }
    }

    #[tokio::test]
    async fn a_reset_that_never_left_is_transient() {
        // The connection is refused: nothing reached the BMC.
        let bmc = reset_bmc(|_| Answer::json(204, &json!({}))).await;
        let mut config = DriverConfig::new(
            DriverKind::Redfish,
            "http://127.0.0.1",
            Some(bmc.port),
            "admin",
            Secret::new(PASSWORD),
        );
        config.options.call_timeout = Duration::from_secs(5);
        let unpooled = reqwest::Client::builder()
            .pool_max_idle_per_host(0)
            .build()
            .expect("client");
        let driver = RedfishDriver::new(&config, unpooled).expect("driver");
        assert!(driver.capabilities().await.is_ok());
        bmc.stop_listening().await;
        let result = driver.set_power(PowerAction::Reboot).await;
        assert!(
            matches!(result, Err(DriverError::Unreachable { .. })),
            "{result:?}"
        );
        assert!(result.is_err_and(|e| e.is_transient()));
        // The deadline passes before the reset is sent: a plain timeout.
        let slow = bmc_with_system(|| {
            Answer::Slow(
                Duration::from_secs(3),
                Box::new(Answer::json(200, &json!({}))),
            )
        })
        .await;
        let result = driver_with_deadline(slow.port, Duration::from_millis(500))
            .set_power(PowerAction::Reboot)
            .await;
        assert!(
            matches!(result, Err(DriverError::Timeout { .. })),
            "{result:?}"
        );
        assert!(result.is_err_and(|e| e.is_transient()));
    }

    #[tokio::test]
    async fn a_refused_reset_towards_the_state_already_being_reached_is_success() {
        let bmc = bmc_with_routes(|req| match (req.method.as_str(), req.path.as_str()) {
            ("GET", "/redfish/v1/Systems/1") => Answer::json(
                200,
                &json!({"PowerState": "PoweringOn", "Actions": {"#ComputerSystem.Reset": {
                    "target": "/redfish/v1/Systems/1/Actions/ComputerSystem.Reset",
                    "ResetType@Redfish.AllowableValues": ["On", "ForceOff"]}}}),
            ),
            _ => Answer::json(
                409,
                &json!({"error": {"message": "The system is already powering on"}}),
            ),
        })
        .await;
        let driver = driver(bmc.port);
        assert_eq!(driver.set_power(PowerAction::On).await, Ok(()));
        let off = driver.set_power(PowerAction::Off).await;
        assert!(
            matches!(off, Err(DriverError::Bmc { code: 409, .. })),
            "{off:?}"
        );
    }

    #[tokio::test]
    async fn an_etag_that_cannot_be_a_header_is_an_invalid_response() {
        let bmc = bmc_with_system(|| {
            Answer::json(
                200,
                &json!({"PowerState": "On", "@odata.etag": "W/\"1\"\r\nX-Evil: 1",
                        "Boot": {"BootSourceOverrideEnabled": "Disabled"}}),
            )
        })
        .await;
        let result = driver(bmc.port)
            .set_boot_device(BootDevice::Pxe, false)
            .await;
        assert!(
            matches!(&result, Err(DriverError::InvalidResponse(_))),
            "{result:?}"
        );
        assert!(result.is_err_and(|e| !e.is_transient()));
        assert!(bmc.seen().iter().all(|r| r.method == "GET"));
    }

    #[tokio::test]
    async fn a_session_without_a_token_is_deleted_not_left_on_the_bmc() {
        let bmc = TestBmc::start(|req| match (req.method.as_str(), req.path.as_str()) {
            ("GET", "/redfish/v1/") => Answer::json(200, &root("/redfish/v1/Sessions")),
            ("POST", "/redfish/v1/Sessions") => Answer::Json {
                status: 201,
                headers: vec![("location", "/redfish/v1/Sessions/7".into())],
                body: "{}".into(),
            },
            _ => Answer::Json {
                status: 204,
                headers: Vec::new(),
                body: String::new(),
            },
        })
        .await;
        let result = driver(bmc.port).validate().await;
        assert!(
            matches!(&result, Err(DriverError::InvalidResponse(m)) if m.contains("X-Auth-Token")),
            "{result:?}"
        );
        let deleted: Vec<_> = bmc
            .seen()
            .into_iter()
            .filter(|r| r.method == "DELETE")
            .map(|r| r.path)
            .collect();
        assert_eq!(deleted, vec!["/redfish/v1/Sessions/7".to_owned()]);
    }

    #[tokio::test]
    async fn a_login_error_leaves_out_the_body_that_echoes_the_password() {
        // A password that JSON escapes: `pa"ss\word` is echoed `pa\"ss\\word`.
        let password = r#"pa"ss\word-9"#;
        let bmc = TestBmc::start(|req| match req.method.as_str() {
            "GET" => Answer::json(200, &root("/redfish/v1/SessionService/Sessions")),
            _ => Answer::json(
                400,
                &json!({"error": {"message": format!("Bad request body: {}", req.body)}}),
            ),
        })
        .await;
        let config = DriverConfig::new(
            DriverKind::Redfish,
            "http://127.0.0.1",
            Some(bmc.port),
            "admin",
            Secret::new(password),
        );
        let driver = RedfishDriver::new(&config, reqwest::Client::new()).expect("driver");
        let result = driver.validate().await;
        let text = format!(
            "{result:?} {}",
            result
                .as_ref()
                .err()
                .map(ToString::to_string)
                .unwrap_or_default()
        );
        assert!(
            matches!(result, Err(DriverError::Bmc { code: 400, .. })),
            "{text}"
        );
        assert!(bmc
            .seen()
            .iter()
            .any(|r| r.body.contains(r#"pa\"ss\\word"#)));
        assert!(!text.contains("Bad request body"), "{text}");
        for fragment in ["pa\"ss", "ss\\word", "pa\\\"ss", "ss\\\\word", "word-9"] {
            assert!(!text.contains(fragment), "{fragment} in {text}");
        }
    }

    #[test]
    fn base_url_defaults_to_https_and_brackets_ipv6() {
        assert_eq!(
            base_url("10.0.0.1", None).ok(),
            Some("https://10.0.0.1:443".into())
        );
        assert_eq!(
            base_url("http://bmc1", Some(8000)).ok(),
            Some("http://bmc1:8000".into())
        );
        assert_eq!(
            base_url("::1", Some(8443)).ok(),
            Some("https://[::1]:8443".into())
        );
        assert!(base_url("ftp://bmc", None).is_err());
        assert!(base_url("bmc/redfish", None).is_err());
        assert!(base_url("bmc?x=1", None).is_err());
    }

    #[test]
    fn base_url_refuses_userinfo_without_echoing_it() {
        for address in ["https://root:hunter2@bmc1", "root:hunter2@bmc1"] {
            let error = base_url(address, None).err();
            assert!(matches!(error, Some(DriverError::Config(_))), "{error:?}");
            let text = error.map(|e| e.to_string()).unwrap_or_default();
            assert!(!text.contains("hunter2"), "{text}");
        }
    }
}
