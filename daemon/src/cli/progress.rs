//! A spinner on stderr while a command waits for a node (`--wait`): drawn
//! only when stderr is a terminal, so scripts and logs get the final line
//! alone. It redraws one line in place and clears it when done.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

const FRAMES: [char; 10] = ['⠋', '⠙', '⠹', '⠸', '⠼', '⠴', '⠦', '⠧', '⠇', '⠏'];

/// How often the spinner moves.
pub const TICK: Duration = Duration::from_millis(100);

#[derive(Debug)]
pub struct Spinner {
    draw: bool,
    frame: usize,
    started: Instant,
    message: String,
}

impl Spinner {
    /// A spinner saying `message`; silent unless stderr is a terminal.
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            draw: std::io::stderr().is_terminal(),
            frame: 0,
            started: Instant::now(),
            message: message.into(),
        }
    }

    /// Moves the spinner one frame, showing `status` (e.g. the node's
    /// current power state) after the message.
    pub fn tick(&mut self, status: &str) {
        if !self.draw {
            return;
        }
        let line = render(self.frame, &self.message, status, self.started.elapsed());
        self.frame = self.frame.wrapping_add(1);
        let mut err = std::io::stderr().lock();
        // Carriage return, the line, then "erase to end of line".
        let _ = write!(err, "\r{line}\x1b[K");
        let _ = err.flush();
    }

    /// Clears the spinner's line.
    pub fn finish(self) {
        if self.draw {
            let mut err = std::io::stderr().lock();
            let _ = write!(err, "\r\x1b[K");
            let _ = err.flush();
        }
    }
}

/// One frame: `⠋ powering off node-0001 (power on, 3s)`.
fn render(frame: usize, message: &str, status: &str, elapsed: Duration) -> String {
    let glyph = FRAMES[frame % FRAMES.len()];
    let secs = elapsed.as_secs();
    if status.is_empty() {
        format!("{glyph} {message} ({secs}s)")
    } else {
        format!("{glyph} {message} ({status}, {secs}s)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_cycle_and_show_status_and_time() {
        assert_eq!(
            render(
                0,
                "powering off n1",
                "power on",
                Duration::from_millis(3400)
            ),
            "⠋ powering off n1 (power on, 3s)"
        );
        assert_eq!(render(11, "m", "", Duration::ZERO), "⠙ m (0s)");
    }
}
