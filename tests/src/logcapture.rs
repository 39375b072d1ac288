//! Captures every tracing event (and `log` record, through the tracing-log
//! bridge) of the test process into memory, through batond's own log set-up
//! (`batond::logging::install`) at TRACE level, so tests can assert what the
//! logs do *not* contain — BMC passwords and password equivalents above all.

use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};

/// The process-wide capture buffer.
#[derive(Debug, Clone, Default)]
pub struct LogCapture {
    buffer: Arc<Mutex<Vec<u8>>>,
}

impl LogCapture {
    /// Everything logged so far.
    pub fn contents(&self) -> String {
        let bytes = self.buffer.lock().map(|b| b.clone()).unwrap_or_default();
        String::from_utf8_lossy(&bytes).into_owned()
    }

    /// Number of bytes logged so far (to show the capture is not empty).
    pub fn len(&self) -> usize {
        self.buffer.lock().map_or(0, |b| b.len())
    }

    /// True when nothing was logged.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Which form of the credentials appears in the logs, if any: the
    /// password itself, the base64 `user:password` of an HTTP basic
    /// `Authorization` header (which a plain search would miss), or the
    /// fields of an IPMI session set-up from which password guesses can be
    /// tested offline (see [`LogCapture::leaked_rakp`]).
    pub fn leaked_secret(&self, username: &str, password: &str) -> Option<String> {
        let text = self.contents();
        if text.contains(password) {
            return Some("the BMC password".into());
        }
        let basic = base64(format!("{username}:{password}").as_bytes());
        if text.contains(&basic) {
            return Some("the HTTP basic credentials (base64 user:password)".into());
        }
        self.leaked_rakp(username)
    }

    /// The first sign of an RMCP+ session set-up in the logs: ipmi-rs dumps
    /// Open Session and RAKP 1–4 at debug, with the session ids, both random
    /// numbers, the BMC's GUID, the user name (as bytes) and the RAKP-2 HMAC
    /// — together enough to test password guesses offline.
    pub fn leaked_rakp(&self, username: &str) -> Option<String> {
        let text = self.contents();
        if let Some(field) = RAKP_FIELDS.iter().find(|f| text.contains(*f)) {
            return Some(format!("the IPMI session set-up field {field}"));
        }
        let bytes = username.as_bytes();
        [format!("{bytes:X?}"), format!("{bytes:?}")]
            .into_iter()
            .map(|list| list.trim_end_matches(']').to_owned())
            .find(|list| !username.is_empty() && text.contains(list))
            .map(|list| format!("the user name as RAKP bytes ({list}…)"))
    }
}

/// Field and type names of ipmi-rs's Open Session and RAKP messages, as
/// their `Debug` dumps spell them.
const RAKP_FIELDS: [&str; 10] = [
    "remote_console_session_id",
    "managed_system_session_id",
    "remote_console_random_number",
    "managed_system_random_number",
    "managed_system_guid",
    "key_exchange_auth_code",
    "integrity_check_value",
    "OpenSessionResponse",
    "RakpMessage",
    "RMCP+ RAKP",
];

/// Standard base64 with padding (RFC 4648 §4), as in `Authorization: Basic`.
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = u32::from(b[0]) << 16 | u32::from(b[1]) << 8 | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[(n >> (18 - 6 * i)) as usize & 63]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// One writer per event, appending to the shared buffer.
struct Appender(Arc<Mutex<Vec<u8>>>);

impl Write for Appender {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        if let Ok(mut buffer) = self.0.lock() {
            buffer.extend_from_slice(data);
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Installs the capturing subscriber (once per process) and returns it.
pub fn capture() -> LogCapture {
    static CAPTURE: OnceLock<LogCapture> = OnceLock::new();
    CAPTURE
        .get_or_init(|| {
            let capture = LogCapture::default();
            let buffer = capture.buffer.clone();
            let config = batond::config::LogConfig {
                level: "trace".into(),
                format: batond::config::LogFormat::Text,
            };
            let installed =
                batond::logging::install(&config, move || Appender(buffer.clone()), false);
            if let Err(error) = installed {
                eprintln!("log capture not installed: {error}");
            }
            capture
        })
        .clone()
}

#[cfg(test)]
mod tests {
    use super::{base64, LogCapture};

    fn capture_of(text: &str) -> LogCapture {
        let capture = LogCapture::default();
        if let Ok(mut buffer) = capture.buffer.lock() {
            buffer.extend_from_slice(text.as_bytes());
        }
        capture
    }

    #[test]
    fn rakp_dumps_count_as_leaks() {
        // As ipmi-rs 0.6 logs them at debug.
        let rakp2 = "DEBUG ipmi_rs::rmcp::v2_0: Received RMCP+ RAKP Message 2. RakpMessage2 { \
            message_tag: 0, remote_console_session_id: 1A2B, managed_system_random_number: [1, 2], \
            managed_system_guid: [3, 4], key_exchange_auth_code: [5, 6] }";
        let leaked = capture_of(rakp2).leaked_secret("admin", "pw-not-there");
        assert!(leaked.is_some_and(|l| l.contains("remote_console_session_id")));
        let rakp1 = "RM1 { username: Username { data: [61, 64, 6D, 69, 6E, 0, 0], length: 5 } }";
        let leaked = capture_of(rakp1).leaked_rakp("admin");
        assert!(leaked.is_some_and(|l| l.contains("user name")));
        let clean = capture_of("INFO batond: node n1 powered on by admin");
        assert_eq!(clean.leaked_secret("admin", "pw-not-there"), None);
    }

    #[test]
    fn base64_matches_rfc_4648() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"foobar"), "Zm9vYmFy");
        assert_eq!(
            base64(b"Aladdin:open sesame"),
            "QWxhZGRpbjpvcGVuIHNlc2FtZQ=="
        );
    }
}
