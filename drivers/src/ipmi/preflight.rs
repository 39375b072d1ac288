//! The check before every session open that the BMC offers IPMI 2.0
//! (RMCP+), so credentials only ever go out through RAKP.
//!
//! ipmi-rs 0.6 `activate(true, …)` asks Get Channel Authentication
//! Capabilities and, when the BMC says it has no IPMI 2.0, silently falls back
//! to an IPMI 1.5 session with the best auth type the BMC offers — `Key` sends
//! the password in clear in every packet, `None` authenticates nothing. A
//! misconfigured or spoofed BMC could make the driver do that. So before
//! handing the credentials to ipmi-rs, this module sends the same
//! pre-session request itself (IPMI v2.0 §22.13, App 0x38, channel "current"
//! with the IPMI 2.0 extended-data bit, Administrator), retransmitting until
//! the deadline, and refuses a BMC that does not list IPMI 2.0 support with
//! [`DriverError::Unsupported`]. The request carries no credentials.

use std::io::ErrorKind;
use std::net::{SocketAddr, ToSocketAddrs, UdpSocket};
use std::time::{Duration, Instant};

use super::session::Target;
use crate::DriverError;

/// The first try's request (tests recognise the request by it).
#[cfg(test)]
pub(crate) fn request() -> Vec<u8> {
    numbered_request(0)
}

/// RMCP header (version 6, no ack, class IPMI) + IPMI 1.5 session header
/// (auth type none, sequence 0, session 0, length 9) + Get Channel
/// Authentication Capabilities to the BMC (rsSA 0x20, NetFn App, rqSA 0x81),
/// with IPMB sequence number `try_number` (mod 64), which the answer carries
/// back, so that each try's answer time can be measured.
fn numbered_request(try_number: usize) -> Vec<u8> {
    let mut packet = vec![0x06, 0x00, 0xFF, 0x07, 0x00, 0, 0, 0, 0, 0, 0, 0, 0, 9];
    let header = [0x20, 0x06 << 2];
    let sequence = u8::try_from(try_number % SEQUENCES).unwrap_or(0);
    let body = [0x81, sequence << 2, 0x38, 0x8E, 0x04];
    packet.extend_from_slice(&header);
    packet.push(checksum(&header));
    packet.extend_from_slice(&body);
    packet.push(checksum(&body));
    packet
}

/// IPMB sequence numbers (6 bits).
const SEQUENCES: usize = 64;

/// The IPMB sequence number an answer carries (rqSeq/rqLUN, the fifth byte
/// of the message after the IPMI 1.5 session header).
fn answer_sequence(packet: &[u8]) -> Option<usize> {
    packet
        .get(4 + 10 + 4)
        .map(|seq_lun| usize::from(seq_lun >> 2))
}

/// The IPMI two's-complement checksum.
fn checksum(bytes: &[u8]) -> u8 {
    bytes
        .iter()
        .fold(0u8, |sum, b| sum.wrapping_add(*b))
        .wrapping_neg()
}

/// What an answer says: `None` when the datagram is not an answer to our
/// request; else `Ok(true)` when the BMC offers IPMI 2.0, `Ok(false)` when it
/// does not, `Err(code)` for a non-zero completion code.
pub(crate) fn parse(packet: &[u8]) -> Option<Result<bool, u8>> {
    // RMCP header, class IPMI, then an IPMI 1.5 session header without an
    // auth code (pre-session answers carry none).
    let (rmcp, rest) = packet.split_at_checked(4)?;
    if rmcp[0] != 0x06 || rmcp[3] & 0x1F != 0x07 {
        return None;
    }
    let (session, message) = rest.split_at_checked(10)?;
    if session[0] != 0x00 {
        return None;
    }
    let message = message.get(..usize::from(session[9]))?;
    // rqSA, NetFn/LUN, checksum, rsSA, rqSeq/LUN, command, completion code.
    let [_, netfn, _, _, _, cmd, code, data @ ..] = message else {
        return None;
    };
    if netfn >> 2 != 0x07 || *cmd != 0x38 {
        return None;
    }
    if *code != 0 {
        return Some(Err(*code));
    }
    // Channel, auth types (bit 7: extended data present), status, extended
    // capabilities (bit 1: IPMI 2.0 connections).
    let offers_v2 = match data {
        [_, auth, _, extended, ..] => auth & 0x80 != 0 && extended & 0x02 != 0,
        _ => false,
    };
    Some(Ok(offers_v2))
}

/// The BMC's socket address (the first one its name resolves to).
pub(crate) fn resolve(target: &Target) -> Result<SocketAddr, DriverError> {
    let unreachable = |reason: String| DriverError::Unreachable {
        address: target.address.clone(),
        reason,
    };
    target
        .address
        .to_socket_addrs()
        .map_err(|e| unreachable(e.to_string()))?
        .next()
        .ok_or_else(|| unreachable("the name has no address".into()))
}

/// Asks the BMC whether it offers IPMI 2.0 and refuses one that does not.
/// Returns how long the BMC took to answer, counted from the try the answer
/// names by its sequence number (a late answer to an earlier try is
/// accepted), so the handshake can wait that long — and lost tries do not
/// count as the BMC's slowness.
pub(crate) fn require_ipmi2(target: &Target, deadline: Instant) -> Result<Duration, DriverError> {
    let unreachable = |reason: String| DriverError::Unreachable {
        address: target.address.clone(),
        reason,
    };
    let address = resolve(target)?;
    let local: SocketAddr = match address {
        SocketAddr::V4(_) => ([0, 0, 0, 0], 0).into(),
        SocketAddr::V6(_) => (std::net::Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let socket = UdpSocket::bind(local).map_err(|e| unreachable(e.to_string()))?;
    socket
        .connect(address)
        .and_then(|()| socket.set_read_timeout(Some(target.retransmit)))
        .map_err(|e| unreachable(e.to_string()))?;
    let mut buffer = [0u8; 512];
    let first_try = Instant::now();
    let mut sent_at = [first_try; SEQUENCES];
    let mut tries = 0;
    // Datagrams from the BMC (the socket is connected to it) that were no
    // readable answer: after a few, the BMC answers garbage rather than
    // nothing, and waiting longer will not help.
    let mut unreadable: Vec<usize> = Vec::new();
    while Instant::now() < deadline {
        target.pace.before_send();
        socket
            .send(&numbered_request(tries))
            .map_err(|e| unreachable(e.to_string()))?;
        sent_at[tries % SEQUENCES] = Instant::now();
        tries += 1;
        let try_ends = super::deadline_after(target.retransmit);
        while Instant::now() < try_ends.min(deadline) {
            let received = match socket.recv(&mut buffer) {
                Ok(n) => n,
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => break,
                Err(e) => return Err(unreachable(e.to_string())),
            };
            match parse(&buffer[..received]) {
                None => {
                    unreadable.push(received);
                    if unreadable.len() >= super::UNREADABLE_ANSWERS {
                        return Err(unreadable_answers(&unreadable));
                    }
                    continue;
                }
                Some(Ok(true)) => {
                    let asked = answer_sequence(&buffer[..received])
                        .and_then(|sequence| sent_at.get(sequence))
                        .filter(|_| tries <= SEQUENCES)
                        .unwrap_or(&first_try);
                    return Ok(asked.elapsed());
                }
                Some(Ok(false)) => {
                    return Err(DriverError::Unsupported(
                        "IPMI 2.0 (RMCP+): the BMC offers only IPMI 1.5 sessions, which \
                         would expose the password"
                            .into(),
                    ))
                }
                Some(Err(code)) => {
                    return Err(DriverError::Unsupported(format!(
                        "IPMI 2.0 (RMCP+): Get Channel Authentication Capabilities \
                         answered completion code {code:#04x}"
                    )))
                }
            }
        }
    }
    if !unreadable.is_empty() {
        return Err(unreadable_answers(&unreadable));
    }
    Err(DriverError::Timeout {
        operation: "open session",
        deadline: target.call_timeout,
    })
}

fn unreadable_answers(lengths: &[usize]) -> DriverError {
    DriverError::InvalidResponse(format!(
        "the BMC answered Get Channel Authentication Capabilities only with datagrams that \
         are no readable answer ({} of {:?} bytes; cut short or malformed)",
        lengths.len(),
        lengths
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An answer as a BMC sends it, with `auth` and `extended` capability bytes.
    fn answer(code: u8, auth: u8, extended: u8) -> Vec<u8> {
        let mut packet = vec![0x06, 0x00, 0xFF, 0x07, 0x00, 0, 0, 0, 0, 0, 0, 0, 0];
        let message = [
            0x81,
            0x07 << 2,
            0,
            0x20,
            0,
            0x38,
            code,
            0x01,
            auth,
            0x04,
            extended,
            0,
            0,
            0,
            0,
            0,
        ];
        packet.push(message.len() as u8);
        packet.extend_from_slice(&message);
        packet
    }

    #[test]
    fn the_request_matches_the_spec_bytes() {
        // As ipmitool -I lanplus sends it before a session.
        assert_eq!(
            request(),
            vec![
                0x06, 0x00, 0xFF, 0x07, 0x00, 0, 0, 0, 0, 0, 0, 0, 0, 0x09, 0x20, 0x18, 0xC8, 0x81,
                0x00, 0x38, 0x8E, 0x04, 0xB5
            ]
        );
    }

    #[test]
    fn each_try_carries_its_sequence_number_back() {
        let second = numbered_request(1);
        assert_eq!(second[18], 1 << 2);
        assert_eq!(checksum(&second[17..]), 0, "body checksum");
        assert_eq!(numbered_request(SEQUENCES + 2)[18], 2 << 2);
        let mut answered = answer(0, 0x94, 0x03);
        answered[14 + 4] = 5 << 2;
        assert_eq!(answer_sequence(&answered), Some(5));
        assert_eq!(parse(&answered), Some(Ok(true)));
    }

    #[test]
    fn answers_say_whether_ipmi2_is_offered() {
        assert_eq!(parse(&answer(0, 0x80 | 0x14, 0x03)), Some(Ok(true)));
        // Extended data present, IPMI 1.5 only.
        assert_eq!(parse(&answer(0, 0x80 | 0x10, 0x01)), Some(Ok(false)));
        // No extended data at all: an IPMI 1.5 BMC.
        assert_eq!(parse(&answer(0, 0x14, 0x00)), Some(Ok(false)));
        assert_eq!(parse(&answer(0xCC, 0, 0)), Some(Err(0xCC)));
    }

    #[test]
    fn garbage_is_ignored_without_panicking() {
        let good = answer(0, 0x94, 0x03);
        for end in 0..good.len() {
            assert_eq!(parse(&good[..end]), None, "prefix of {end} bytes");
        }
        assert_eq!(parse(&[0xFF; 64]), None);
        let mut wrong_command = good.clone();
        wrong_command[14 + 5] = 0x3B;
        assert_eq!(parse(&wrong_command), None);
        let mut long_length = good;
        long_length[13] = 0xFF;
        assert_eq!(parse(&long_length), None);
    }
}
