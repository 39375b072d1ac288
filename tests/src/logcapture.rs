//! Captures every tracing event (and `log` record, through the tracing-log
//! bridge) of the test process at TRACE level into memory, so tests can
//! assert what the logs do *not* contain — BMC passwords above all.

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
    /// password itself, or the base64 `user:password` of an HTTP basic
    /// `Authorization` header (which a plain search would miss).
    pub fn leaked_secret(&self, username: &str, password: &str) -> Option<&'static str> {
        let text = self.contents();
        if text.contains(password) {
            return Some("the BMC password");
        }
        let basic = base64(format!("{username}:{password}").as_bytes());
        text.contains(&basic)
            .then_some("the HTTP basic credentials (base64 user:password)")
    }
}

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
            let installed = tracing_subscriber::fmt()
                .with_max_level(tracing::Level::TRACE)
                .with_ansi(false)
                .with_writer(move || Appender(buffer.clone()))
                .try_init();
            if let Err(error) = installed {
                eprintln!("log capture not installed: {error}");
            }
            capture
        })
        .clone()
}

#[cfg(test)]
mod tests {
    use super::base64;

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
