//! The one error type every driver returns, and the retry rule the conductor
//! applies to it (`is_transient`, `retry_after`).

use std::time::Duration;

/// An error from a BMC call. The variant says what the conductor should do:
/// retry transient ones with backoff, fail the operation on the others.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DriverError {
    /// The BMC could not be reached (connection refused, DNS, a TLS handshake
    /// that failed for a reason other than an untrusted certificate).
    #[error("BMC {address} is unreachable: {reason}")]
    Unreachable {
        /// `host:port` of the BMC.
        address: String,
        /// What the transport said.
        reason: String,
    },
    /// The BMC did not answer within the call's deadline.
    #[error("BMC did not answer {operation} within {deadline:?}")]
    Timeout {
        /// The driver call that timed out.
        operation: &'static str,
        /// The deadline that passed.
        deadline: Duration,
    },
    /// The BMC refused the credentials (or the user lacks the privilege).
    #[error("BMC refused the credentials: {0}")]
    Auth(String),
    /// The BMC is busy; try again later, after `retry_after` when it said.
    #[error("BMC is busy: {message}")]
    Busy {
        /// What the BMC said.
        message: String,
        /// How long the BMC asked us to wait, when it said.
        retry_after: Option<Duration>,
    },
    /// The BMC answered with an error: an HTTP status or an IPMI completion code.
    #[error("BMC error {code}: {message}")]
    Bmc {
        /// HTTP status (Redfish) or completion code (IPMI).
        code: u16,
        /// What the BMC said.
        message: String,
        /// True when the code means "try again" (HTTP 5xx, IPMI 0xC3/0xCE…).
        transient: bool,
    },
    /// The BMC cannot do this (no matching `ResetType`, IPMI 0xC1…).
    #[error("BMC does not support {0}")]
    Unsupported(String),
    /// The BMC answered something this driver cannot read.
    #[error("BMC sent an invalid response: {0}")]
    InvalidResponse(String),
    /// The node's BMC settings are wrong (bad `ca_file`, a certificate the
    /// TLS settings do not trust, several systems and no `system_id`…); fix
    /// the node, retrying will not help.
    #[error("Invalid BMC settings: {0}")]
    Config(String),
    /// The protocol library failed inside a call (a panic in ipmi-rs); the
    /// session was discarded and the next call opens a new one.
    #[error("BMC session failed: {0}")]
    SessionFailed(String),
    /// A command that changes the server may have been carried out, but its
    /// outcome was not confirmed: the request went out and its answer was
    /// lost, or the BMC accepted it and its task outlived the deadline.
    /// Sending it again could run it twice (a second reset, a second NMI),
    /// so this is not transient: the caller re-reads the power state to
    /// learn what happened, and only then decides whether to send again.
    #[error("BMC outcome of {operation} is unknown: {reason}; re-read the power state before sending it again")]
    OutcomeUnknown {
        /// The driver call whose outcome is unknown.
        operation: &'static str,
        /// Why it is unknown (answer lost, task still running…).
        reason: String,
    },
}

impl DriverError {
    /// True when retrying the same call later may succeed.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Unreachable { .. }
            | Self::Timeout { .. }
            | Self::Busy { .. }
            | Self::SessionFailed(_) => true,
            Self::Bmc { transient, .. } => *transient,
            Self::Auth(_)
            | Self::Unsupported(_)
            | Self::InvalidResponse(_)
            | Self::Config(_)
            | Self::OutcomeUnknown { .. } => false,
        }
    }

    /// How long the BMC asked to wait before the next try, when it said.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::Busy { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// A short machine-readable name of the variant, for metrics and records.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Unreachable { .. } => "unreachable",
            Self::Timeout { .. } => "timeout",
            Self::Auth(_) => "auth",
            Self::Busy { .. } => "busy",
            Self::Bmc { .. } => "bmc",
            Self::Unsupported(_) => "unsupported",
            Self::InvalidResponse(_) => "invalid_response",
            Self::Config(_) => "config",
            Self::SessionFailed(_) => "session_failed",
            Self::OutcomeUnknown { .. } => "outcome_unknown",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transient_errors_are_the_retryable_ones() {
        let timeout = DriverError::Timeout {
            operation: "power_state",
            deadline: Duration::from_secs(1),
        };
        assert!(timeout.is_transient());
        assert!(!DriverError::Auth("bad password".into()).is_transient());
        assert!(!DriverError::Unsupported("Nmi".into()).is_transient());
        let e500 = DriverError::Bmc {
            code: 500,
            message: "oops".into(),
            transient: true,
        };
        assert!(e500.is_transient());
        let busy = DriverError::Busy {
            message: "busy".into(),
            retry_after: Some(Duration::from_secs(3)),
        };
        assert_eq!(busy.retry_after(), Some(Duration::from_secs(3)));
        assert!(busy.is_transient());
        let unknown = DriverError::OutcomeUnknown {
            operation: "set_power",
            reason: "the answer was lost".into(),
        };
        assert!(!unknown.is_transient(), "resending could run it twice");
        assert_eq!(unknown.kind(), "outcome_unknown");
    }
}
