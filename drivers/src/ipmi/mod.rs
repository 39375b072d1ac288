//! The IPMI power driver: raw chassis commands over one reused RMCP+ session
//! per BMC (see [`session`] for the protocol steps).
//!
//! ipmi-rs is blocking and can panic (see the crate docs), so every call:
//! 1. takes the BMC's session slot (one call per BMC at a time, held by the
//!    blocking task until it ends, even when the caller gave up);
//! 2. runs on tokio's blocking pool inside `catch_unwind`, opening a session
//!    when there is none, the old one idled too long, or a late answer of
//!    the request's kind may still come on it;
//!    an open the deadline cuts short goes on for the next call, up to one
//!    more call timeout (the request is not sent after the deadline);
//! 3. on a reused session that stops answering, re-opens once and repeats
//!    (a power command sent once is never repeated: it goes out only after a
//!    read showed the session still answers, see below);
//! 4. hands the result to the caller, then closes the sessions the call
//!    replaced (so that they do not hold slots in the BMC's session table)
//!    and puts the session back unless the call failed in a way that leaves
//!    it doubtful (panic, garbage, transport error; a timeout does not — on
//!    a lossy link the tries were lost, not the session, and a new open
//!    costs ten exchanges);
//!
//! and the whole call is bounded by the call deadline on the async side.
//!
//! Power commands: power cycle, hard reset, soft off and NMI run again each
//! time the BMC receives them, and a retransmission carries a new session
//! sequence number, so the BMC cannot tell it from a new command. They are
//! sent exactly once. Power on and hard off end in the same state however
//! often they arrive and are retransmitted like reads. Either way, once a
//! power command went out, a missing answer (deadline, lost session, panic)
//! is [`DriverError::OutcomeUnknown`], never a retryable timeout: the caller
//! re-reads the power state before deciding to send it again.

pub(crate) mod commands;
mod pace;
pub(crate) mod preflight;
pub(crate) mod relay;
pub(crate) mod session;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{oneshot, Mutex, OwnedMutexGuard};

use self::commands::{Effect, Raw};
use self::session::{ExchangeError, Session, Target};
use crate::refused::{Feature, Refused};
use crate::{
    BootDevice, BootSetting, Capabilities, DriverConfig, DriverError, DriverKind, DriverOptions,
    PowerAction, PowerDriver, PowerState,
};

/// Longest user name and password IPMI 2.0 allows.
const MAX_USERNAME: usize = 16;
const MAX_PASSWORD: usize = 20;

/// An IPMI 2.0 BMC.
#[derive(Debug)]
pub struct IpmiDriver {
    target: Target,
    options: DriverOptions,
    /// The BMC's session; a call's blocking task holds the lock until it
    /// ends, even when its caller gave up at the deadline (see `call_by`).
    session: Arc<Mutex<Option<Session>>>,
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
                pace: Arc::new(pace::Pacer::new(config.options.ipmi_min_interval)),
            },
            options: config.options.clone(),
            session: Arc::default(),
            refused: Refused::default(),
        })
    }

    /// Sends one request through the BMC's session (steps 1–4 of the module
    /// doc), bounded by the call deadline.
    async fn call(&self, operation: &'static str, request: Raw) -> Result<Vec<u8>, DriverError> {
        let deadline = deadline_after(self.options.call_timeout);
        self.call_by(operation, request, deadline).await
    }

    /// [`IpmiDriver::call`] with a deadline shared by several requests.
    async fn call_by(
        &self,
        operation: &'static str,
        request: Raw,
        deadline: Instant,
    ) -> Result<Vec<u8>, DriverError> {
        let sent = Arc::new(AtomicBool::new(false));
        let sent_here = sent.clone();
        let exchange = async {
            let mut slot = self.session.clone().lock_owned().await;
            let target = self.target.clone();
            let idle = self.options.ipmi_session_idle;
            let (answer, answered) = oneshot::channel();
            // The task, not this future, puts the session back and releases
            // the slot: when the caller gives up at the deadline first, the
            // session is neither lost (leaking a slot in the BMC's session
            // table) nor overlapped by the next call on this BMC. It hands
            // the result over first and then closes the sessions the call
            // replaced, so their closing does not delay this call.
            tokio::task::spawn_blocking(move || {
                let session = slot.take();
                let outcome = catch_unwind(AssertUnwindSafe(|| {
                    run_blocking(&target, session, idle, deadline, &request, &sent)
                }))
                .unwrap_or_else(|panic| Outcome {
                    result: Err(panic_error(operation, panic.as_ref())),
                    ..Outcome::default()
                });
                let Outcome {
                    result,
                    keep,
                    retired,
                } = outcome;
                // The caller may have given up: nobody to tell.
                let _ = answer.send(result);
                let kept = tidy(keep, retired, target.call_timeout);
                put_back(slot, kept, target.call_timeout);
            });
            answered.await.unwrap_or_else(|_| {
                Err(DriverError::SessionFailed(
                    "the IPMI call ended without an answer".into(),
                ))
            })
        };
        let result = match tokio::time::timeout_at(deadline.into(), exchange).await {
            Ok(result) => result,
            Err(_) => Err(DriverError::Timeout {
                operation,
                deadline: self.options.call_timeout,
            }),
        };
        unconfirmed(operation, sent_here.load(Ordering::SeqCst), result)
    }

    async fn set_power_inner(&self, action: PowerAction) -> Result<(), DriverError> {
        let request = commands::power_control(action)
            .ok_or_else(|| DriverError::Unsupported(format!("{action} over IPMI")))?;
        let result = self.call("set_power", request).await;
        self.refused.note(Feature::Power(action), &result);
        result.map(drop)
    }
}

/// Returns `session` to the driver's slot, or closes it when the driver
/// is gone (the slot's mutex has no other owner), so that its slot in the
/// BMC's session table is freed rather than left to expire.
fn put_back(
    mut slot: OwnedMutexGuard<Option<Session>>,
    session: Option<Session>,
    call_timeout: Duration,
) {
    if Arc::strong_count(OwnedMutexGuard::mutex(&slot)) > 1 {
        *slot = session;
    } else if let Some(orphan) = session {
        orphan.close(deadline_after(call_timeout));
    }
}

/// A power command that went out and drew no answer — the deadline passed,
/// the session failed or the socket broke after the send — may have run:
/// [`DriverError::OutcomeUnknown`]. Errors the BMC answered stay as they are.
fn unconfirmed<T>(
    operation: &'static str,
    sent: bool,
    result: Result<T, DriverError>,
) -> Result<T, DriverError> {
    match result {
        Err(
            e @ (DriverError::Timeout { .. }
            | DriverError::SessionFailed(_)
            | DriverError::Unreachable { .. }),
        ) if sent => Err(DriverError::OutcomeUnknown {
            operation,
            reason: format!("the command was sent but not answered ({e})"),
        }),
        other => other,
    }
}

/// What a call's blocking part leaves behind.
#[derive(Debug)]
struct Outcome {
    result: Result<Vec<u8>, DriverError>,
    /// The session for the next call, if it is still good.
    keep: Option<Session>,
    /// A session replaced by a fresh one, to be closed.
    retired: Option<Session>,
}

impl Default for Outcome {
    fn default() -> Self {
        Self {
            result: Err(DriverError::SessionFailed("no IPMI session".into())),
            keep: None,
            retired: None,
        }
    }
}

/// Frees the BMC's session slots a call no longer needs — the replaced
/// session, and those a lost RAKP 4 left activated — once the caller has
/// its result; returns the session to keep. Each close gets a few tries of
/// its own, not what is left of the call's deadline.
fn tidy(
    mut keep: Option<Session>,
    retired: Option<Session>,
    call_timeout: Duration,
) -> Option<Session> {
    if let Some(session) = keep.as_mut() {
        session.close_orphans(deadline_after(call_timeout));
    }
    if let Some(retired) = retired {
        retired.close(deadline_after(call_timeout));
    }
    keep
}

/// The blocking part of a call: get a session, send `request`, keep the
/// session when it is still good. A reused session gets its
/// [`Session::stale_tries`] tries of a retransmitted request before it is
/// re-opened; a fresh one tries until the deadline. A session idle too long
/// or unfit for `request` (a late answer of its kind may come on it) is
/// replaced and then closed, so that it does not hold a slot in the BMC's
/// small session table until the BMC's own, longer, idle timeout. `sent`
/// is raised once a power command went out.
fn run_blocking(
    target: &Target,
    session: Option<Session>,
    idle: Duration,
    deadline: Instant,
    request: &Raw,
    sent: &AtomicBool,
) -> Outcome {
    let (reusable, retired) = match session {
        Some(s) if s.reusable(idle) && s.fit_for(request) => (Some(s), None),
        replaced => (None, replaced),
    };
    if let Some(mut session) = reusable {
        match reuse(&mut session, request, deadline, sent) {
            Ok(data) => return finish(Ok(data), session, retired),
            Err(ExchangeError::Failed(e)) => return finish(Err(e), session, retired),
            Err(ExchangeError::Stale) => {
                tracing::debug!(bmc = %target.address, "IPMI session stopped answering, re-opening");
            }
        }
    }
    // An open the deadline cuts short would be lost work, started again
    // from nothing by the next call — on a lossy link, where an open takes
    // ten exchanges, again and again. So it runs on, up to one more call
    // timeout, for the next call (which waits for the slot); the request
    // itself never goes out after the deadline (`Session::exchange`).
    let open_by = deadline
        .checked_add(target.call_timeout)
        .unwrap_or(deadline);
    let mut session = match Session::open(target, open_by) {
        Ok(session) => session,
        Err(e) => {
            return Outcome {
                result: Err(e),
                keep: None,
                retired,
            }
        }
    };
    let result = session
        .exchange(request, deadline, None, sent)
        .map_err(|e| match e {
            ExchangeError::Stale => DriverError::SessionFailed("a fresh session went stale".into()),
            ExchangeError::Failed(e) => e,
        });
    finish(result, session, retired)
}

/// Sends `request` on a reused session. A command sent once first checks
/// with a read that the BMC still answers on this session: a BMC that
/// dropped it (restarted, timed it out early) ignores whatever comes on it,
/// and a command lost that way could not be told from one whose answer was
/// lost — it would be `OutcomeUnknown` though it never ran. The read is a
/// [`Session::probe`], of a kind no late answer can pass for; any answer to
/// it, an error code included, shows the session alive. `Stale` when the
/// session should be replaced first.
fn reuse(
    session: &mut Session,
    request: &Raw,
    deadline: Instant,
    sent: &AtomicBool,
) -> Result<Vec<u8>, ExchangeError> {
    if request.effect == Effect::Once {
        let probe = session.probe().ok_or(ExchangeError::Stale)?;
        let tries = session.stale_tries();
        match session.exchange(&probe, deadline, Some(tries), sent) {
            Ok(_) | Err(ExchangeError::Failed(DriverError::Bmc { .. })) => {}
            Err(e) => return Err(e),
        }
    }
    let tries = session.stale_tries();
    session.exchange(request, deadline, Some(tries), sent)
}

/// Keeps the session after answers from the BMC (success or a completion
/// code) and after a request that timed out — on a lossy link the tries
/// were lost, not the session, and the next call checks it with a few tries
/// (`Session::stale_tries`) before paying for a whole open; the session
/// knows an answer to that request may still come. Drops it after anything
/// else that leaves it doubtful (garbage, a broken socket).
fn finish(
    result: Result<Vec<u8>, DriverError>,
    session: Session,
    retired: Option<Session>,
) -> Outcome {
    let keep = match &result {
        Ok(_) => true,
        Err(e) => matches!(
            e,
            DriverError::Bmc { .. }
                | DriverError::Busy { .. }
                | DriverError::Unsupported(_)
                | DriverError::Timeout { .. }
        ),
    };
    Outcome {
        result,
        keep: keep.then_some(session),
        retired,
    }
}

/// `now + timeout`, or a year from now for a timeout too large to add (a
/// `Duration::MAX` in the options must not panic the async task).
/// Unreadable answers from a BMC (cut short, another session's) after which
/// a call gives up with `InvalidResponse` instead of waiting for its
/// deadline: one may be a stray, several in a row are a BMC that answers
/// garbage.
pub(crate) const UNREADABLE_ANSWERS: usize = 3;

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
        const OPERATION: &str = "set_boot_device";
        let deadline = deadline_after(self.options.call_timeout);
        match self
            .call_by(OPERATION, commands::keep_boot_flags_valid(), deadline)
            .await
        {
            Ok(_) => {}
            // Older BMCs may lack parameter 3; the override then lasts until
            // the BMC's own timeout, as it did before the parameter existed.
            Err(DriverError::Unsupported(reason)) => tracing::warn!(
                bmc = %self.target.address,
                %reason,
                "BMC cannot keep the boot override valid past 60 s; send the power command soon after"
            ),
            Err(e) => return Err(e),
        }
        let request = commands::set_boot_flags(device, persistent, self.options.ipmi_boot_efi);
        self.call_by(OPERATION, request, deadline).await.map(drop)
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

    /// Sends Close Session (by handle, see `Session::close`) within the
    /// call deadline; a session that cannot be closed is left to expire.
    async fn close(&self) {
        let mut slot = self.session.lock().await;
        let Some(session) = slot.take() else {
            return;
        };
        let deadline = deadline_after(self.options.call_timeout);
        let closing = tokio::task::spawn_blocking(move || {
            catch_unwind(AssertUnwindSafe(|| session.close(deadline)))
        });
        match tokio::time::timeout_at(deadline.into(), closing).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(panic))) => drop(panic_error("close", panic.as_ref())),
            Ok(Err(join)) => tracing::debug!(error = %join, "IPMI session close failed"),
            Err(_) => tracing::debug!(bmc = %self.target.address, "IPMI session close timed out"),
        }
    }
}

/// A driver dropped without [`PowerDriver::close`] still frees its BMC
/// session slot: the close runs on a thread of its own, since a drop may
/// happen on an async worker and the close blocks on the network.
impl Drop for IpmiDriver {
    fn drop(&mut self) {
        // A call still running puts its session back itself and closes
        // it, seeing the driver gone (`put_back`).
        let Some(session) = self
            .session
            .try_lock()
            .ok()
            .and_then(|mut slot| slot.take())
        else {
            return;
        };
        let deadline = deadline_after(self.options.call_timeout);
        let closing = std::thread::Builder::new()
            .name("ipmi-close".into())
            .spawn(move || {
                if let Err(panic) = catch_unwind(AssertUnwindSafe(|| session.close(deadline))) {
                    drop(panic_error("close", panic.as_ref()));
                }
            });
        if let Err(e) = closing {
            tracing::debug!(error = %e, "IPMI session left to expire: no thread to close it");
        }
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
