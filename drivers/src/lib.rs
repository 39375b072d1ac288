//! Power drivers for BMCs: the [`PowerDriver`] trait, with a Redfish
//! implementation (reqwest + rustls) and an IPMI 2.0 implementation (ipmi-rs,
//! RMCP+), built from a [`DriverConfig`] by [`DriverFactory`] or
//! [`build_driver`].
//!
//! Every call has a hard deadline (`DriverOptions::call_timeout`) and fails
//! with one typed [`DriverError`] whose [`DriverError::is_transient`] tells the
//! conductor whether to retry. Passwords are [`Secret`]s: they never appear in
//! `Debug`, `Display` or tracing output.
//!
//! ## ipmi-rs 0.6 limitations and the workarounds here
//! - It never raises the session privilege: the driver sends Set Session
//!   Privilege Level (Administrator) after opening each session.
//! - It implements cipher suite 3 only and panics (`todo!`) on other suites,
//!   `unwrap`s while reading RAKP message 4 and on socket send errors, and
//!   panics when the session sequence number wraps: every call runs inside
//!   `catch_unwind` on the blocking pool, a panic becomes
//!   [`DriverError::SessionFailed`] and drops the session, and sessions are
//!   re-opened long before the sequence number can wrap.
//! - It falls back to an IPMI 1.5 session (password in clear with auth type
//!   `Key`) when a BMC says it has no IPMI 2.0, asking on its own after the
//!   driver's check: the driver asks the BMC itself first and refuses such a
//!   BMC as unsupported (`ipmi::preflight`), and hands ipmi-rs the password
//!   zero-padded to the 20-byte RAKP key (the same key for RMCP+), which
//!   ipmi-rs's IPMI 1.5 path refuses as too long before sending anything.
//! - It sends each session-open step once, owning the socket and the
//!   handshake's random numbers, so a lost datagram would fail the open: it
//!   talks to the BMC through a relay on loopback (`ipmi::relay`) that
//!   resends each step with the same bytes until answered.
//! - It has no chassis commands and does not retransmit: the driver sends raw
//!   requests and retransmits reads and idempotent settings itself, matching
//!   answers by NetFn/command. ipmi-rs does not expose the IPMB sequence
//!   number, so a late answer cannot be told from the answer to the current
//!   request: it would be taken for it (a leftover NMI answer confirming a
//!   reset that never reached the BMC). Once a request was sent more than
//!   once, its session carries reads only (a command or setting gets a
//!   fresh session), and power cycle, hard reset,
//!   soft off and NMI — which a retransmission would run again, since each
//!   try carries a new session sequence number — are sent exactly once. A
//!   power command that went out without an answer is
//!   [`DriverError::OutcomeUnknown`].

#![forbid(unsafe_code)]

mod config;
mod error;
mod factory;
#[doc(hidden)]
pub mod fuzzing;
mod ipmi;
mod redfish;
mod refused;
mod types;

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

pub use config::{DriverConfig, DriverKind, DriverOptions, Secret};
pub use error::DriverError;
pub use factory::{build_driver, DriverFactory};
pub use ipmi::IpmiDriver;
pub use redfish::RedfishDriver;
pub use types::{BootDevice, BootSetting, Capabilities, PowerAction, PowerState};

/// One BMC's power interface. All methods are async, bounded by the driver's
/// call deadline, and safe to call concurrently (calls to one BMC are
/// serialised where the protocol needs it).
#[async_trait::async_trait]
pub trait PowerDriver: Send + Sync + std::fmt::Debug {
    /// The protocol this driver speaks.
    fn kind(&self) -> DriverKind;

    /// Reads the server's power state.
    async fn power_state(&self) -> Result<PowerState, DriverError>;

    /// Reads the server's power state when nothing more is asked of this
    /// BMC soon (a periodic sweep): the driver keeps no connection open for
    /// a next call. The same as [`PowerDriver::power_state`] where there is
    /// none to keep.
    async fn power_state_then_idle(&self) -> Result<PowerState, DriverError> {
        self.power_state().await
    }

    /// Sends a power command. Returns once the BMC accepted it (and, for
    /// Redfish task monitors, once the task finished) — not when the power
    /// state settled; poll [`PowerDriver::power_state`] for that.
    async fn set_power(&self, action: PowerAction) -> Result<(), DriverError>;

    /// Reads the boot override.
    async fn boot_device(&self) -> Result<BootSetting, DriverError>;

    /// Sets the boot override for the next boot, or every boot when
    /// `persistent`.
    async fn set_boot_device(
        &self,
        device: BootDevice,
        persistent: bool,
    ) -> Result<(), DriverError>;

    /// Injects a diagnostic interrupt (NMI), for a crash dump.
    async fn inject_nmi(&self) -> Result<(), DriverError>;

    /// Checks that the BMC answers and accepts the credentials.
    async fn validate(&self) -> Result<(), DriverError>;

    /// What this BMC supports, learned from the BMC where the protocol allows.
    async fn capabilities(&self) -> Result<Capabilities, DriverError>;

    /// Ends the BMC session (Redfish: DELETE the session; IPMI: Close Session).
    /// The driver stays usable: the next call logs in again.
    async fn close(&self);
}

/// Runs `fut` with the call deadline; a deadline that passes becomes
/// [`DriverError::Timeout`].
pub(crate) async fn with_deadline<T>(
    operation: &'static str,
    deadline: Duration,
    fut: impl Future<Output = Result<T, DriverError>>,
) -> Result<T, DriverError> {
    match tokio::time::timeout(deadline, fut).await {
        Ok(result) => result,
        Err(_) => Err(DriverError::Timeout {
            operation,
            deadline,
        }),
    }
}

/// [`with_deadline`] for a command that changes the server. Once `sent` is
/// set (the request may have reached the BMC, or the BMC accepted it), a
/// deadline that passes is [`DriverError::OutcomeUnknown`]: the command may
/// be running, and a retry could run it twice. Before that it is the
/// transient [`DriverError::Timeout`].
pub(crate) async fn with_command_deadline<T>(
    operation: &'static str,
    deadline: Duration,
    sent: &AtomicBool,
    fut: impl Future<Output = Result<T, DriverError>>,
) -> Result<T, DriverError> {
    match tokio::time::timeout(deadline, fut).await {
        Ok(result) => result,
        Err(_) if sent.load(Ordering::SeqCst) => Err(DriverError::OutcomeUnknown {
            operation,
            reason: format!("it was sent but not confirmed within {deadline:?}"),
        }),
        Err(_) => Err(DriverError::Timeout {
            operation,
            deadline,
        }),
    }
}
