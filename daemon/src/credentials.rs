//! The default BMC password, from a systemd credential: batond.service's
//! `LoadCredential=bmc-password:/etc/baton/bmc-password` makes systemd copy
//! that file (readable by root only) to `$CREDENTIALS_DIRECTORY/bmc-password`,
//! readable by batond alone. The unit's `SetCredential=bmc-password:\n` is
//! the fallback when the file is missing, so the service still starts: a
//! credential holding nothing but a line ending (or nothing at all), like
//! an absent one, means "no default". batond reads it at start and on every
//! reload.

use std::path::{Path, PathBuf};

use baton_drivers::{DriverError, Secret};

use crate::config::BmcConfig;

/// The environment variable systemd names the credentials directory in.
pub const CREDENTIALS_DIRECTORY: &str = "CREDENTIALS_DIRECTORY";

/// The credentials directory systemd gave this process, if any.
pub fn directory_from_env() -> Option<PathBuf> {
    std::env::var_os(CREDENTIALS_DIRECTORY)
        .filter(|dir| !dir.is_empty())
        .map(PathBuf::from)
}

/// What the default BMC password is now.
#[derive(Debug)]
pub enum DefaultPassword {
    /// The credential held a password.
    Loaded(Secret),
    /// There is none; the reason says why, for the log.
    None(String),
}

impl DefaultPassword {
    pub fn into_secret(self) -> Option<Secret> {
        match self {
            Self::Loaded(secret) => Some(secret),
            Self::None(_) => None,
        }
    }
}

/// Reads the default BMC password (blocking). No credential configured, no
/// credentials directory, no such file or an empty one: no default. A file
/// that is there but cannot be used (unreadable, too long, not text,
/// readable by everyone) is an error naming it and the fix.
pub fn load(config: &BmcConfig, directory: Option<&Path>) -> Result<DefaultPassword, DriverError> {
    let name = &config.default_password_credential;
    if name.is_empty() {
        return Ok(DefaultPassword::None(
            "bmc.default_password_credential is empty".into(),
        ));
    }
    let Some(directory) = directory else {
        return Ok(DefaultPassword::None(format!(
            "${CREDENTIALS_DIRECTORY} is not set (batond was not started by systemd with LoadCredential={name}:…)"
        )));
    };
    let path = directory.join(name);
    match std::fs::metadata(&path) {
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            return Ok(DefaultPassword::None(format!(
                "no credential {name} in {}",
                directory.display()
            )))
        }
        Ok(meta) if meta.is_file() && meta.len() <= 2 && is_blank(&path) => {
            return Ok(DefaultPassword::None(format!(
                "credential {name} is empty (its LoadCredential= file is missing)"
            )))
        }
        _ => {}
    }
    Secret::read_file(&path, &format!("credential {name}")).map(DefaultPassword::Loaded)
}

/// Whether a (tiny) file holds nothing but a line ending: the unit's
/// fallback credential.
fn is_blank(path: &Path) -> bool {
    std::fs::read(path).is_ok_and(|bytes| matches!(bytes.as_slice(), b"" | b"\n" | b"\r\n"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt as _;

    fn config(name: &str) -> BmcConfig {
        BmcConfig {
            default_password_credential: name.into(),
        }
    }

    #[test]
    fn absent_or_empty_credentials_mean_no_default_and_bad_ones_are_errors() {
        let dir = tempfile::TempDir::new().unwrap();
        let creds = dir.path();
        let none = |r: Result<DefaultPassword, DriverError>| match r.unwrap() {
            DefaultPassword::None(why) => why,
            DefaultPassword::Loaded(_) => panic!("expected no default"),
        };
        assert!(none(load(&config("bmc-password"), None)).contains("CREDENTIALS_DIRECTORY"));
        assert!(none(load(&config(""), Some(creds))).contains("empty"));
        assert!(none(load(&config("bmc-password"), Some(creds))).contains("no credential"));
        let path = creds.join("bmc-password");
        for blank in ["", "\n"] {
            std::fs::write(&path, blank).unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o400)).unwrap();
            assert!(none(load(&config("bmc-password"), Some(creds))).contains("is empty"));
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        }

        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        std::fs::write(&path, "cred-pw-Xk3\n").unwrap();
        let loaded = load(&config("bmc-password"), Some(creds)).unwrap();
        assert_eq!(
            loaded.into_secret().as_ref().map(Secret::expose),
            Some("cred-pw-Xk3")
        );

        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let error = load(&config("bmc-password"), Some(creds))
            .unwrap_err()
            .to_string();
        assert!(error.contains("credential bmc-password "), "{error}");
        assert!(!error.contains("Xk3"), "{error}");
    }
}
