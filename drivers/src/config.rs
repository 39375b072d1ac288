//! What a driver is built from: the driver kind, the BMC's address and
//! credentials, TLS settings and timing options. The password is a [`Secret`]
//! that never prints.

use std::fmt;
use std::io::Read as _;
use std::path::{Path, PathBuf};
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

/// Longest password a file may hold (a BMC password is at most a few
/// dozen bytes; IPMI's are at most 20).
pub const MAX_PASSWORD_FILE_BYTES: u64 = 1024;

impl Secret {
    /// Reads a password from a file (blocking): the whole file, less one
    /// trailing newline. `what` names the file in errors (the config key or
    /// credential it comes from). A missing, unreadable, empty, oversized,
    /// non-UTF-8 or world-readable file is an error saying what to do;
    /// no error quotes the file's contents.
    pub fn read_file(path: &Path, what: &str) -> Result<Self, DriverError> {
        use std::os::unix::fs::PermissionsExt as _;
        let shown = path.display();
        let fail = |reason: String| DriverError::Config(format!("{what} {shown} {reason}"));
        let file = std::fs::File::open(path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => {
                fail("does not exist; create it (mode 0600, owned by batond's user) or point the setting elsewhere".into())
            }
            std::io::ErrorKind::PermissionDenied => fail(
                "cannot be read by batond's user (permission denied); make it readable by that user, e.g. chown baton: and chmod 0600".into(),
            ),
            _ => fail(format!("cannot be read: {e}")),
        })?;
        let meta = file
            .metadata()
            .map_err(|e| fail(format!("cannot be read: {e}")))?;
        if !meta.is_file() {
            return Err(fail("is not a regular file".into()));
        }
        let mode = meta.permissions().mode() & 0o7777;
        if mode & 0o004 != 0 {
            return Err(fail(format!(
                "can be read by every user (mode {mode:04o}); chmod o-rwx {shown}, then retry"
            )));
        }
        let mut bytes = Vec::new();
        file.take(MAX_PASSWORD_FILE_BYTES + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| fail(format!("cannot be read: {e}")))?;
        if bytes.len() as u64 > MAX_PASSWORD_FILE_BYTES {
            return Err(fail(format!(
                "is longer than {MAX_PASSWORD_FILE_BYTES} bytes; it must hold only the password"
            )));
        }
        let text = String::from_utf8(bytes).map_err(|_| fail("is not UTF-8 text".into()))?;
        let password = text
            .strip_suffix('\n')
            .map_or(text.as_str(), |t| t.strip_suffix('\r').unwrap_or(t));
        if password.is_empty() {
            return Err(fail("is empty; write the BMC password into it".into()));
        }
        Ok(Self(password.to_owned()))
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

    fn file_with(dir: &Path, name: &str, contents: &[u8], mode: u32) -> PathBuf {
        use std::os::unix::fs::PermissionsExt as _;
        let path = dir.join(name);
        std::fs::write(&path, contents).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        path
    }

    #[test]
    fn password_files_are_read_without_their_newline_and_never_quoted() {
        let dir = std::env::temp_dir().join(format!("baton-pwfile-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let read = |name: &str, contents: &[u8], mode: u32| {
            Secret::read_file(&file_with(&dir, name, contents, mode), "bmc.password_file")
        };
        assert_eq!(
            read("plain", b"pw-Zq81\n", 0o600).unwrap().expose(),
            "pw-Zq81"
        );
        assert_eq!(
            read("crlf", b"pw-Zq81\r\n", 0o400).unwrap().expose(),
            "pw-Zq81"
        );
        assert_eq!(read("bare", b"pw-Zq81", 0o640).unwrap().expose(), "pw-Zq81");
        for (name, contents, mode, says) in [
            ("empty", &b"\n"[..], 0o600, "is empty"),
            ("world", b"pw-Zq81\n", 0o644, "chmod o-rwx"),
            ("binary", b"pw-Zq81\xff\n", 0o600, "not UTF-8"),
        ] {
            let err = read(name, contents, mode).unwrap_err().to_string();
            assert!(err.contains("bmc.password_file /"), "{err}");
            assert!(err.contains(says), "{name}: {err}");
            assert!(!err.contains("Zq81"), "{err}");
        }
        let big = vec![b'x'; 2000];
        let err = read("big", &big, 0o600).unwrap_err().to_string();
        assert!(err.contains("longer than"), "{err}");
        let err = Secret::read_file(&dir.join("absent"), "credential bmc-password")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("credential bmc-password") && err.contains("does not exist"),
            "{err}"
        );
        let err = Secret::read_file(&dir, "bmc.password_file")
            .unwrap_err()
            .to_string();
        assert!(err.contains("not a regular file"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn driver_kind_parses_and_rejects_unknown() {
        assert_eq!("ipmi".parse::<DriverKind>(), Ok(DriverKind::Ipmi));
        assert_eq!("redfish".parse::<DriverKind>(), Ok(DriverKind::Redfish));
        let err = "snmp".parse::<DriverKind>().err().map(|e| e.to_string());
        assert!(err.is_some_and(|e| e.contains("redfish, ipmi")));
    }
}
