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

/// A progress bar on stderr for `batch --wait`: drawn only when stderr is
/// a terminal (callers print plain lines otherwise).
#[derive(Debug)]
pub struct Bar {
    draw: bool,
}

/// Where a batch stands: sub-jobs done (succeeded), failed, and in all.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Progress {
    pub succeeded: u64,
    pub failed: u64,
    pub total: u64,
}

impl Progress {
    pub fn ended(&self) -> u64 {
        self.succeeded + self.failed
    }
}

/// Width of the bar itself, in cells.
const BAR_WIDTH: usize = 30;

impl Bar {
    pub fn new() -> Self {
        Self {
            draw: std::io::stderr().is_terminal(),
        }
    }

    /// Whether it draws (stderr is a terminal).
    pub fn is_drawn(&self) -> bool {
        self.draw
    }

    pub fn draw(&mut self, progress: &Progress, elapsed: Duration) {
        if !self.draw {
            return;
        }
        let line = bar_line(progress, elapsed);
        let mut err = std::io::stderr().lock();
        let _ = write!(err, "\r{line}\x1b[K");
        let _ = err.flush();
    }

    pub fn finish(self) {
        if self.draw {
            let mut err = std::io::stderr().lock();
            let _ = writeln!(err);
            let _ = err.flush();
        }
    }
}

impl Default for Bar {
    fn default() -> Self {
        Self::new()
    }
}

/// `[#########-----] 600/1000 done, 3 failed · 412/s · ETA 1s`.
pub fn bar_line(p: &Progress, elapsed: Duration) -> String {
    let filled = usize::try_from(p.ended() * BAR_WIDTH as u64 / p.total.max(1)).unwrap_or(0);
    let bar = format!(
        "{}{}",
        "#".repeat(filled.min(BAR_WIDTH)),
        "-".repeat(BAR_WIDTH - filled.min(BAR_WIDTH))
    );
    format!("[{bar}] {}", rate_and_eta(p, elapsed))
}

/// `600/1000 done, 3 failed · 412/s · ETA 1s` (no rate before the first end).
pub fn rate_and_eta(p: &Progress, elapsed: Duration) -> String {
    let mut line = format!("{}/{} done, {} failed", p.ended(), p.total, p.failed);
    let secs = elapsed.as_secs_f64();
    if p.ended() > 0 && secs > 0.0 {
        #[allow(clippy::cast_precision_loss)]
        let rate = p.ended() as f64 / secs;
        #[allow(clippy::cast_precision_loss)]
        let left = p.total.saturating_sub(p.ended()) as f64 / rate;
        let _ = std::fmt::Write::write_fmt(
            &mut line,
            format_args!(" · {rate:.0}/s · ETA {:.0}s", left.ceil()),
        );
    }
    line
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

    #[test]
    fn the_bar_shows_counts_rate_and_eta() {
        let p = Progress {
            succeeded: 497,
            failed: 3,
            total: 1000,
        };
        assert_eq!(
            bar_line(&p, Duration::from_secs(2)),
            "[###############---------------] 500/1000 done, 3 failed · 250/s · ETA 2s"
        );
        let none = Progress {
            total: 10,
            ..Progress::default()
        };
        assert_eq!(
            rate_and_eta(&none, Duration::from_secs(1)),
            "0/10 done, 0 failed"
        );
    }
}
