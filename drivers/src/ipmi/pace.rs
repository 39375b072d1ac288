//! Spacing between the datagrams one driver sends to its BMC.
//!
//! Some BMCs drop (or crash on) requests that come sooner than some
//! interval after the previous one; hw-sim models them with its
//! `min_interval` fault. A session open is a string of steps each sent the
//! moment the previous answer arrives, and a power command goes out once
//! right after the read that checks the session, so against such a BMC the
//! open stalls and the command is lost — its outcome then unknown. With
//! `ipmi_min_interval` set, every datagram to the BMC (preflight, each
//! handshake step and its resends, requests, Close Session) waits until that
//! long after the previous one: a BMC that wants D between requests then
//! never sees two closer than D.

use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// The last send to one BMC, shared by every socket of the driver.
#[derive(Debug, Default)]
pub(crate) struct Pacer {
    min: Duration,
    last: Mutex<Option<Instant>>,
}

impl Pacer {
    /// A pacer keeping `min` between sends (zero: no pacing).
    pub fn new(min: Duration) -> Self {
        Self {
            min,
            last: Mutex::new(None),
        }
    }

    /// Blocks until `min` after the previous send, then counts a send now.
    /// Call right before each datagram goes to the BMC.
    pub fn before_send(&self) {
        if self.min.is_zero() {
            return;
        }
        let mut last = self.last.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(at) = last.and_then(|previous| previous.checked_add(self.min)) {
            let wait = at.saturating_duration_since(Instant::now());
            if !wait.is_zero() {
                std::thread::sleep(wait);
            }
        }
        *last = Some(Instant::now());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sends_are_spaced_by_the_minimum() {
        let pacer = Pacer::new(Duration::from_millis(30));
        let start = Instant::now();
        for _ in 0..3 {
            pacer.before_send();
        }
        assert!(start.elapsed() >= Duration::from_millis(60));
        let unpaced = Pacer::new(Duration::ZERO);
        unpaced.before_send();
        let noted = *unpaced.last.lock().unwrap_or_else(PoisonError::into_inner);
        assert_eq!(noted, None, "an unpaced driver keeps no clock");
    }
}
