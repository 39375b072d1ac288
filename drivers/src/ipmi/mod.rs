//! The IPMI power driver: raw chassis commands over one reused RMCP+ session
//! per BMC (see [`session`] for the protocol steps).
//!
//! ipmi-rs is blocking and can panic (see the crate docs), so every call:
//! 1. takes the BMC's session out of its slot (one call per BMC at a time);
//! 2. runs on tokio's blocking pool inside `catch_unwind`, opening a session
//!    when there is none or the old one idled too long;
//! 3. on a reused session that stops answering, re-opens once and repeats;
//! 4. puts the session back unless the call failed in a way that leaves it
//!    doubtful (timeout, panic, transport error);
//!
//! and the whole call is bounded by the call deadline on the async side.

mod commands;
mod preflight;
mod session;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::{Duration, Instant};

use tokio::sync::Mutex;

use self::commands::Raw;
use self::session::{ExchangeError, Session, Target, STALE_TRIES};
use crate::refused::{Feature, Refused};
use crate::{
    with_deadline, BootDevice, BootSetting, Capabilities, DriverConfig, DriverError, DriverKind,
    DriverOptions, PowerAction, PowerDriver, PowerState,
};

/// Longest user name and password IPMI 2.0 allows.
const MAX_USERNAME: usize = 16;
const MAX_PASSWORD: usize = 20;

/// An IPMI 2.0 BMC.
#[derive(Debug)]
pub struct IpmiDriver {
    target: Target,
    options: DriverOptions,
    session: Mutex<Option<Session>>,
    refused: Refused,
}

impl IpmiDriver {
    /// A driver for the BMC in `config` (no session is opened yet).
    pub fn new(config: &DriverConfig) -> Result<Self, DriverError> {
        if config.username.len() > MAX_USERNAME {
            return Err(DriverError::Config(format!(
                "IPMI user names are at most {MAX_USERNAME} bytes"
            )));
        }
        if config.password.expose().len() > MAX_PASSWORD {
            return Err(DriverError::Config(format!(
                "IPMI passwords are at most {MAX_PASSWORD} bytes"
            )));
        }
        let port = config.port.unwrap_or(623);
        let address = match config.address.parse::<std::net::Ipv6Addr>() {
            Ok(v6) => format!("[{v6}]:{port}"),
            Err(_) => format!("{}:{port}", config.address),
        };
        Ok(Self {
            target: Target {
                address,
                username: config.username.clone(),
                password: config.password.clone(),
                retransmit: config.options.ipmi_retransmit_interval,
                call_timeout: config.options.call_timeout,
            },
            options: config.options.clone(),
            session: Mutex::new(None),
            refused: Refused::default(),
        })
    }

    /// Sends one request through the BMC's session (steps 1–4 of the module doc).
    async fn call(&self, operation: &'static str, request: Raw) -> Result<Vec<u8>, DriverError> {
        let call_timeout = self.options.call_timeout;
        let deadline = deadline_after(call_timeout);
        with_deadline(operation, call_timeout, async {
            let mut slot = self.session.lock().await;
            let session = slot.take();
            let target = self.target.clone();
            let idle = self.options.ipmi_session_idle;
            let blocking = tokio::task::spawn_blocking(move || {
                catch_unwind(AssertUnwindSafe(|| {
                    run_blocking(&target, session, idle, deadline, &request)
                }))
            });
            let (session, result) = match blocking.await {
                Ok(Ok(outcome)) => outcome,
                Ok(Err(panic)) => (None, Err(panic_error(operation, panic.as_ref()))),
                Err(join) => (None, Err(DriverError::SessionFailed(join.to_string()))),
            };
            *slot = session;
            result
        })
        .await
    }

    async fn set_power_inner(&self, action: PowerAction) -> Result<(), DriverError> {
        let request = commands::power_control(action)
            .ok_or_else(|| DriverError::Unsupported(format!("{action} over IPMI")))?;
        let result = self.call("set_power", request).await;
        self.refused.note(Feature::Power(action), &result);
        result.map(drop)
    }
}

/// The blocking part of a call: get a session, send `request`, keep the
/// session when it is still good. A reused session gets [`STALE_TRIES`]
/// tries before it is re-opened; a fresh one tries until the deadline.
fn run_blocking(
    target: &Target,
    session: Option<Session>,
    idle: Duration,
    deadline: Instant,
    request: &Raw,
) -> (Option<Session>, Result<Vec<u8>, DriverError>) {
    if let Some(mut session) = session.filter(|s| s.reusable(idle)) {
        match session.exchange(request, deadline, Some(STALE_TRIES)) {
            Ok(data) => return (Some(session), Ok(data)),
            Err(ExchangeError::Failed(e)) => return finish(Err(e), session),
            Err(ExchangeError::Stale) => {
                tracing::debug!(bmc = %target.address, "IPMI session stopped answering, re-opening");
            }
        }
    }
    let mut session = match Session::open(target, deadline) {
        Ok(session) => session,
        Err(e) => return (None, Err(e)),
    };
    let result = session
        .exchange(request, deadline, None)
        .map_err(|e| match e {
            ExchangeError::Stale => DriverError::SessionFailed("a fresh session went stale".into()),
            ExchangeError::Failed(e) => e,
        });
    finish(result, session)
}

/// Keeps the session after answers from the BMC (success or a completion
/// code), drops it after anything that leaves it doubtful.
fn finish(
    result: Result<Vec<u8>, DriverError>,
    session: Session,
) -> (Option<Session>, Result<Vec<u8>, DriverError>) {
    let keep = match &result {
        Ok(_) => true,
        Err(e) => matches!(
            e,
            DriverError::Bmc { .. } | DriverError::Busy { .. } | DriverError::Unsupported(_)
        ),
    };
    (keep.then_some(session), result)
}

/// `now + timeout`, or a year from now for a timeout too large to add (a
/// `Duration::MAX` in the options must not panic the async task).
pub(crate) fn deadline_after(timeout: Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(timeout)
        .or_else(|| now.checked_add(Duration::from_secs(365 * 24 * 3600)))
        .unwrap_or(now)
}

/// The typed error for a panic inside ipmi-rs.
fn panic_error(operation: &str, panic: &(dyn std::any::Any + Send)) -> DriverError {
    let message = panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into());
    tracing::warn!(operation, %message, "ipmi-rs panicked; IPMI session discarded");
    DriverError::SessionFailed(format!("ipmi-rs panicked during {operation}: {message}"))
}

#[async_trait::async_trait]
impl PowerDriver for IpmiDriver {
    fn kind(&self) -> DriverKind {
        DriverKind::Ipmi
    }

    async fn power_state(&self) -> Result<PowerState, DriverError> {
        let data = self
            .call("power_state", commands::get_chassis_status())
            .await?;
        commands::parse_chassis_status(&data)
    }

    async fn set_power(&self, action: PowerAction) -> Result<(), DriverError> {
        self.set_power_inner(action).await
    }

    async fn boot_device(&self) -> Result<BootSetting, DriverError> {
        let data = self.call("boot_device", commands::get_boot_flags()).await?;
        commands::parse_boot_flags(&data)
    }

    async fn set_boot_device(
        &self,
        device: BootDevice,
        persistent: bool,
    ) -> Result<(), DriverError> {
        let request = commands::set_boot_flags(device, persistent, self.options.ipmi_boot_efi);
        self.call("set_boot_device", request).await.map(drop)
    }

    async fn inject_nmi(&self) -> Result<(), DriverError> {
        let result = self.call("inject_nmi", commands::nmi()).await;
        self.refused.note(Feature::Nmi, &result);
        result.map(drop)
    }

    async fn validate(&self) -> Result<(), DriverError> {
        self.power_state().await.map(drop)
    }

    /// IPMI cannot list what Chassis Control accepts: every action the spec
    /// defines is reported until the BMC refuses one (0xC1/0xCC).
    async fn capabilities(&self) -> Result<Capabilities, DriverError> {
        Ok(self.refused.filter(Capabilities {
            power_actions: PowerAction::ALL
                .into_iter()
                .filter(|a| commands::power_control(*a).is_some())
                .collect(),
            boot_devices: BootDevice::ALL.to_vec(),
            nmi: true,
        }))
    }

    /// ipmi-rs 0.6 does not expose the session id that Close Session needs,
    /// so the session is dropped locally and the BMC times it out.
    async fn close(&self) {
        self.session.lock().await.take();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A BMC that answers Get Channel Authentication Capabilities saying it
    /// offers IPMI 1.5 only (auth type `Key`, the password in clear), and
    /// records every datagram it gets.
    fn ipmi15_only_bmc() -> (u16, std::sync::mpsc::Receiver<Vec<u8>>) {
        let socket = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
        let port = socket.local_addr().expect("addr").port();
        let (seen, received) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut buffer = [0u8; 512];
            while let Ok((n, peer)) = socket.recv_from(&mut buffer) {
                let packet = buffer[..n].to_vec();
                let asks_caps = preflight::request() == packet;
                if seen.send(packet).is_err() {
                    return;
                }
                if asks_caps {
                    let mut answer = vec![0x06, 0x00, 0xFF, 0x07, 0x00, 0, 0, 0, 0, 0, 0, 0, 0];
                    let message = [
                        0x81, 0x1C, 0, 0x20, 0, 0x38, 0x00, 0x01, 0x90, 0x04, 0x01, 0, 0, 0, 0, 0,
                    ];
                    answer.push(message.len() as u8);
                    answer.extend_from_slice(&message);
                    let _ = socket.send_to(&answer, peer);
                }
            }
        });
        (port, received)
    }

    #[tokio::test]
    async fn an_unbounded_call_timeout_does_not_panic() {
        let closed = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
        let port = closed.local_addr().expect("addr").port();
        drop(closed);
        let mut config = DriverConfig::new(DriverKind::Ipmi, "127.0.0.1", Some(port), "a", "b");
        config.options.call_timeout = Duration::MAX;
        config.options.ipmi_retransmit_interval = Duration::from_millis(100);
        let driver = IpmiDriver::new(&config).expect("driver");
        let result = driver.power_state().await;
        assert!(
            matches!(result, Err(DriverError::Unreachable { .. })),
            "{result:?}"
        );
    }

    #[tokio::test]
    async fn a_bmc_without_ipmi2_is_refused_before_any_credential_is_sent() {
        let (port, received) = ipmi15_only_bmc();
        let mut config = DriverConfig::new(
            DriverKind::Ipmi,
            "127.0.0.1",
            Some(port),
            "admin",
            "cleartext-pw",
        );
        config.options.call_timeout = Duration::from_secs(3);
        config.options.ipmi_retransmit_interval = Duration::from_millis(200);
        let driver = IpmiDriver::new(&config).expect("driver");
        let result = driver.power_state().await;
        assert!(
            matches!(&result, Err(DriverError::Unsupported(m)) if m.contains("IPMI 1.5")),
            "{result:?}"
        );
        let packets: Vec<_> = received.try_iter().collect();
        assert!(!packets.is_empty());
        for packet in packets {
            assert_eq!(
                packet,
                preflight::request(),
                "only the capabilities request"
            );
        }
    }
}
