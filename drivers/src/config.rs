//! What a driver is built from: the driver kind, the BMC's address and
//! credentials, TLS settings and timing options. The password is a [`Secret`]
//! that never prints.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use crate::DriverError;

/// A password: `Debug` and `Display` print `******`, only [`Secret::expose`]
/// gives the value.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret value, for the protocol code that must send it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Self {
        Self(value)
    }
}

impl From<&str> for Secret {
    fn from(value: &str) -> Self {
        Self(value.to_owned())
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("******")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("******")
    }
}

/// Which protocol a node's BMC speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DriverKind {
    /// DMTF Redfish over HTTPS (or HTTP when the address says `http://`).
    Redfish,
    /// IPMI 2.0 over LAN (RMCP+, cipher suite 3).
    Ipmi,
}

impl DriverKind {
    /// The name used in node records and config files.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Redfish => "redfish",
            Self::Ipmi => "ipmi",
        }
    }
}

impl fmt::Display for DriverKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for DriverKind {
    type Err = DriverError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "redfish" => Ok(Self::Redfish),
            "ipmi" => Ok(Self::Ipmi),
            other => Err(DriverError::Config(format!(
                "unknown driver {other:?}; valid drivers: redfish, ipmi"
            ))),
        }
    }
}

/// Everything needed to build a driver for one BMC.
#[derive(Debug, Clone)]
pub struct DriverConfig {
    /// The protocol.
    pub kind: DriverKind,
    /// Host name or IP address; for Redfish it may carry a scheme
    /// (`http://10.0.0.5`), HTTPS is the default.
    pub address: String,
    /// The port; `None` for the protocol's default (443/80 Redfish, 623 IPMI).
    pub port: Option<u16>,
    /// BMC user name.
    pub username: String,
    /// BMC password.
    pub password: Secret,
    /// Redfish system id (the last segment of `/redfish/v1/Systems/{id}`);
    /// discovered when `None` and the BMC has exactly one system.
    pub system_id: Option<String>,
    /// Verify the BMC's TLS certificate (Redfish). On by default.
    pub verify_tls: bool,
    /// A PEM file with the CA (or self-signed certificate) to trust (Redfish).
    pub ca_file: Option<PathBuf>,
    /// Timing and compatibility options.
    pub options: DriverOptions,
}

impl DriverConfig {
    /// A config with default options, TLS verification on and no system id.
    pub fn new(
        kind: DriverKind,
        address: impl Into<String>,
        port: Option<u16>,
        username: impl Into<String>,
        password: impl Into<Secret>,
    ) -> Self {
        Self {
            kind,
            address: address.into(),
            port,
            username: username.into(),
            password: password.into(),
            system_id: None,
            verify_tls: true,
            ca_file: None,
            options: DriverOptions::default(),
        }
    }
}

/// Timing and compatibility knobs, with defaults that suit real BMCs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DriverOptions {
    /// Hard deadline of one driver call (`power_state()`, `set_power()`…),
    /// including logins, retransmits and task polling.
    pub call_timeout: Duration,
    /// Timeout of one TCP connect to a Redfish BMC.
    pub connect_timeout: Duration,
    /// IPMI: wait this long for an answer before retransmitting a request.
    pub ipmi_retransmit_interval: Duration,
    /// IPMI: re-open a session that has been idle this long (BMCs drop idle
    /// sessions after about 60 s).
    pub ipmi_session_idle: Duration,
    /// IPMI: least time between two datagrams to the BMC (zero: none), for
    /// BMCs that drop or choke on requests that come too quickly.
    pub ipmi_min_interval: Duration,
    /// IPMI: set the EFI bit when setting a boot device.
    pub ipmi_boot_efi: bool,
    /// Redfish: send `If-Match` with the system's ETag on boot-override PATCH.
    /// Turn off for BMCs that reject it.
    pub redfish_use_etag: bool,
}

impl Default for DriverOptions {
    fn default() -> Self {
        Self {
            call_timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(5),
            ipmi_retransmit_interval: Duration::from_secs(1),
            ipmi_session_idle: Duration::from_secs(30),
            ipmi_min_interval: Duration::ZERO,
            ipmi_boot_efi: false,
            redfish_use_etag: true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_never_prints() {
        let config = DriverConfig::new(
            DriverKind::Ipmi,
            "10.0.0.1",
            None,
            "admin",
            "hunter2-very-secret",
        );
        let shown = format!("{config:?} {}", config.password);
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("******"));
        assert_eq!(config.password.expose(), "hunter2-very-secret");
    }

    #[test]
    fn driver_kind_parses_and_rejects_unknown() {
        assert_eq!("ipmi".parse::<DriverKind>(), Ok(DriverKind::Ipmi));
        assert_eq!("redfish".parse::<DriverKind>(), Ok(DriverKind::Redfish));
        let err = "snmp".parse::<DriverKind>().err().map(|e| e.to_string());
        assert!(err.is_some_and(|e| e.contains("redfish, ipmi")));
    }
}
