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
