//! Byte-level framing of IPMI over LAN: what one UDP datagram looks like.
//!
//! This file owns decoding and encoding of every header that wraps an IPMI
//! request, and nothing that needs a session's keys (see [`super::crypto`]).
//! Layers, outermost first, with IPMI v2.0 section numbers:
//!
//! 1. **RMCP header** (13.1.3): version 06h, reserved, sequence number (FFh:
//!    no RMCP ACK), class of message (06h ASF, 07h IPMI; bit 7 = ACK).
//! 2. **ASF Presence Ping / Pong** (13.2.3, DSP0136 3.2.4): IANA 4542, type
//!    80h ping / 40h pong, message tag echoed, data length; the pong carries
//!    the supported-entities byte with "IPMI supported".
//! 3. **IPMI v1.5 session header** (13.6, table 13-4): auth type, session
//!    sequence, session id, [16-byte auth code], message length. Only the
//!    session-less form (auth type NONE, id 0) is served, for Get Channel
//!    Authentication Capabilities before RMCP+ starts.
//! 4. **IPMI v2.0 / RMCP+ session header** (13.6, table 13-8): auth type 06h,
//!    payload type (bit 7 encrypted, bit 6 authenticated), session id,
//!    session sequence, 16-bit payload length, payload, then for
//!    authenticated packets the session trailer (integrity pad FFh so that
//!    auth type .. next header is a multiple of 4, pad length, next header
//!    07h, AuthCode).
//! 5. **IPMI LAN message** (13.8): rsAddr, netFn/rsLUN, checksum, rqAddr,
//!    rqSeq/rqLUN, cmd, data, checksum — two's-complement checksums
//!    (section 13.8, "checksum").
//!
//! Decoding never panics on any input: every read is bounds-checked and
//! failures are a typed [`WireError`]; a datagram that does not decode is
//! dropped by the caller, as the spec asks for malformed packets.

use thiserror::Error;

/// RMCP version 1.0 (13.1.3).
pub const RMCP_VERSION: u8 = 0x06;
/// RMCP sequence number meaning "do not send an RMCP ACK".
pub const RMCP_SEQ_NO_ACK: u8 = 0xFF;
/// RMCP message class: ASF.
pub const CLASS_ASF: u8 = 0x06;
/// RMCP message class: IPMI.
pub const CLASS_IPMI: u8 = 0x07;
/// ASF IANA enterprise number (4542).
pub const ASF_IANA: u32 = 4542;
/// ASF message type: Presence Ping.
pub const ASF_PING: u8 = 0x80;
/// ASF message type: Presence Pong.
pub const ASF_PONG: u8 = 0x40;
/// Session auth type NONE (IPMI v1.5 header, no auth code).
pub const AUTH_NONE: u8 = 0x00;
/// Session auth type/format "RMCP+" (IPMI v2.0 header).
pub const AUTH_RMCPP: u8 = 0x06;
/// The "next header" byte of the RMCP+ session trailer.
pub const NEXT_HEADER: u8 = 0x07;
/// BMC responder address (13.8: the BMC is 20h).
pub const BMC_ADDR: u8 = 0x20;
/// Largest datagram the BMC reads or writes; anything longer is truncated by
/// the receive buffer and fails to decode.
pub const MAX_DATAGRAM: usize = 1024;

/// Payload types of the RMCP+ header (13.27.3).
pub mod payload {
    /// An IPMI message (13.8 format).
    pub const IPMI: u8 = 0x00;
    /// OEM explicit: followed by IANA and OEM payload id in the header.
    pub const OEM_EXPLICIT: u8 = 0x02;
    /// RMCP+ Open Session Request.
    pub const OPEN_SESSION_REQUEST: u8 = 0x10;
    /// RMCP+ Open Session Response.
    pub const OPEN_SESSION_RESPONSE: u8 = 0x11;
    /// RAKP Message 1.
    pub const RAKP1: u8 = 0x12;
    /// RAKP Message 2.
    pub const RAKP2: u8 = 0x13;
    /// RAKP Message 3.
    pub const RAKP3: u8 = 0x14;
    /// RAKP Message 4.
    pub const RAKP4: u8 = 0x15;
}

/// Why a datagram (or a part of one) did not decode.
#[derive(Debug, Error, Clone, Copy, PartialEq, Eq)]
pub enum WireError {
    /// Fewer bytes than the structure needs.
    #[error("Truncated {0}")]
    Truncated(&'static str),
    /// A fixed field holds a value this BMC does not speak.
    #[error("Unsupported {what} {value:#04x}")]
    Unsupported {
        /// The field.
        what: &'static str,
        /// Its value.
        value: u8,
    },
    /// A length field disagrees with the bytes present.
    #[error("Length mismatch in {0}")]
    Length(&'static str),
    /// An IPMI message checksum does not add up to zero.
    #[error("Bad checksum in IPMI message")]
    Checksum,
    /// The RMCP+ session trailer is malformed.
    #[error("Malformed session trailer")]
    Trailer,
}

/// A bounds-checked reader over a byte slice.
#[derive(Debug, Clone, Copy)]
pub struct Reader<'a> {
    buf: &'a [u8],
    what: &'static str,
}

impl<'a> Reader<'a> {
    /// Reads `buf`; `what` names the structure in errors.
    pub fn new(buf: &'a [u8], what: &'static str) -> Self {
        Self { buf, what }
    }

    /// Takes the next `n` bytes.
    pub fn take(&mut self, n: usize) -> Result<&'a [u8], WireError> {
        if self.buf.len() < n {
            return Err(WireError::Truncated(self.what));
        }
        let (head, tail) = self.buf.split_at(n);
        self.buf = tail;
        Ok(head)
    }

    /// Takes the next `N` bytes as an array.
    pub fn array<const N: usize>(&mut self) -> Result<[u8; N], WireError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    /// Takes one byte.
    pub fn u8(&mut self) -> Result<u8, WireError> {
        Ok(self.array::<1>()?[0])
    }

    /// Takes a little-endian u16 (IPMI multi-byte fields are LS-byte first).
    pub fn u16_le(&mut self) -> Result<u16, WireError> {
        Ok(u16::from_le_bytes(self.array()?))
    }

    /// Takes a little-endian u32.
    pub fn u32_le(&mut self) -> Result<u32, WireError> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    /// The bytes not read yet.
    pub fn rest(&self) -> &'a [u8] {
        self.buf
    }
}

/// What the outer layers of a datagram turned out to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Datagram<'a> {
    /// ASF Presence Ping with its RMCP sequence number and message tag.
    AsfPing {
        /// RMCP sequence number of the ping.
        rmcp_seq: u8,
        /// ASF message tag, echoed in the pong.
        tag: u8,
    },
    /// IPMI v1.5 session-less packet (auth type NONE, session id 0).
    V15 {
        /// The IPMI LAN message bytes.
        message: &'a [u8],
    },
    /// IPMI v2.0 / RMCP+ packet.
    V20(V20Packet<'a>),
}

/// A decoded RMCP+ packet; the trailer is checked by the session layer,
/// which knows the AuthCode length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct V20Packet<'a> {
    /// Payload type (low 6 bits of the payload type byte).
    pub payload_type: u8,
    /// Bit 7: payload is encrypted.
    pub encrypted: bool,
    /// Bit 6: packet carries a session trailer with AuthCode.
    pub authenticated: bool,
    /// Session id as addressed to the BMC (0 outside a session).
    pub session_id: u32,
    /// Session sequence number (0 outside a session).
    pub session_seq: u32,
    /// The payload bytes (ciphertext when encrypted).
    pub payload: &'a [u8],
    /// From the auth type byte to the end of the datagram: the bytes the
    /// integrity check covers, plus the AuthCode.
    pub session_bytes: &'a [u8],
}

impl<'a> V20Packet<'a> {
    /// Splits the session trailer (13.28.4): returns the bytes covered by
    /// the AuthCode (auth type .. next header) and the AuthCode itself.
    pub fn trailer(&self, code_len: usize) -> Result<(&'a [u8], &'a [u8]), WireError> {
        let bytes = self.session_bytes;
        let signed_len = bytes
            .len()
            .checked_sub(code_len)
            .ok_or(WireError::Trailer)?;
        let (signed, code) = bytes.split_at(signed_len);
        let header_and_payload = V20_HEADER_LEN + self.payload.len();
        // pad length and next header follow the pad.
        let tail = signed.get(header_and_payload..).ok_or(WireError::Trailer)?;
        let [pad @ .., pad_len, next] = tail else {
            return Err(WireError::Trailer);
        };
        let pad_ok = pad.len() == usize::from(*pad_len) && pad.iter().all(|b| *b == 0xFF);
        if *next != NEXT_HEADER || !pad_ok || signed.len() % 4 != 0 {
            return Err(WireError::Trailer);
        }
        Ok((signed, code))
    }
}

/// Bytes of the RMCP+ session header (auth type .. payload length).
const V20_HEADER_LEN: usize = 12;

/// Decodes the RMCP header and the session layer of one datagram.
pub fn decode_datagram(buf: &[u8]) -> Result<Datagram<'_>, WireError> {
    let mut r = Reader::new(buf, "RMCP header");
    let [version, _reserved, rmcp_seq, class] = r.array()?;
    if version != RMCP_VERSION {
        return Err(WireError::Unsupported {
            what: "RMCP version",
            value: version,
        });
    }
    match class {
        CLASS_ASF => decode_asf(r.rest(), rmcp_seq),
        CLASS_IPMI => decode_session(r.rest()),
        other => Err(WireError::Unsupported {
            what: "RMCP class",
            value: other,
        }),
    }
}

fn decode_asf(buf: &[u8], rmcp_seq: u8) -> Result<Datagram<'_>, WireError> {
    let mut r = Reader::new(buf, "ASF message");
    let iana = u32::from_be_bytes(r.array()?);
    let [kind, tag, _reserved, len] = r.array()?;
    if iana != ASF_IANA {
        return Err(WireError::Unsupported {
            what: "ASF IANA",
            value: 0,
        });
    }
    if kind != ASF_PING {
        return Err(WireError::Unsupported {
            what: "ASF message type",
            value: kind,
        });
    }
    r.take(usize::from(len))?;
    Ok(Datagram::AsfPing { rmcp_seq, tag })
}

fn decode_session(buf: &[u8]) -> Result<Datagram<'_>, WireError> {
    match buf.first() {
        Some(&AUTH_NONE) => decode_v15(buf),
        Some(&AUTH_RMCPP) => decode_v20(buf).map(Datagram::V20),
        Some(&other) => Err(WireError::Unsupported {
            what: "session auth type",
            value: other,
        }),
        None => Err(WireError::Truncated("session header")),
    }
}

fn decode_v15(buf: &[u8]) -> Result<Datagram<'_>, WireError> {
    let mut r = Reader::new(buf, "IPMI v1.5 session header");
    let _auth = r.u8()?;
    let _seq = r.u32_le()?;
    let session_id = r.u32_le()?;
    if session_id != 0 {
        // IPMI v1.5 sessions are not offered (auth caps say so).
        return Err(WireError::Unsupported {
            what: "v1.5 session",
            value: 0,
        });
    }
    let len = usize::from(r.u8()?);
    let message = r.take(len)?;
    // An optional legacy pad byte may follow; nothing else.
    if r.rest().len() > 1 {
        return Err(WireError::Length("IPMI v1.5 packet"));
    }
    Ok(Datagram::V15 { message })
}

fn decode_v20(buf: &[u8]) -> Result<V20Packet<'_>, WireError> {
    let mut r = Reader::new(buf, "RMCP+ session header");
    let _auth = r.u8()?;
    let kind = r.u8()?;
    let payload_type = kind & 0x3F;
    if payload_type == payload::OEM_EXPLICIT {
        return Err(WireError::Unsupported {
            what: "payload type",
            value: payload_type,
        });
    }
    let session_id = r.u32_le()?;
    let session_seq = r.u32_le()?;
    let len = usize::from(r.u16_le()?);
    let payload = r.take(len)?;
    let authenticated = kind & 0x40 != 0;
    if !authenticated && !r.rest().is_empty() {
        return Err(WireError::Length("RMCP+ packet"));
    }
    Ok(V20Packet {
        payload_type,
        encrypted: kind & 0x80 != 0,
        authenticated,
        session_id,
        session_seq,
        payload,
        session_bytes: buf,
    })
}

/// Writes an RMCP header for an IPMI-class message.
pub fn put_rmcp_ipmi(out: &mut Vec<u8>) {
    out.extend_from_slice(&[RMCP_VERSION, 0, RMCP_SEQ_NO_ACK, CLASS_IPMI]);
}

/// Encodes an ASF Presence Pong answering a ping (ASF DSP0136 3.2.4.3):
/// IPMI supported, ASF version 1.0, no OEM data.
pub fn encode_pong(rmcp_seq: u8, tag: u8, out: &mut Vec<u8>) {
    out.extend_from_slice(&[RMCP_VERSION, 0, rmcp_seq, CLASS_ASF]);
    out.extend_from_slice(&ASF_IANA.to_be_bytes());
    out.extend_from_slice(&[ASF_PONG, tag, 0, 0x10]);
    out.extend_from_slice(&ASF_IANA.to_be_bytes());
    out.extend_from_slice(&[0, 0, 0, 0]); // OEM-defined
    out.extend_from_slice(&[0x81, 0x00]); // IPMI supported | ASF 1.0; interactions
    out.extend_from_slice(&[0; 6]);
}

/// Encodes a session-less IPMI v1.5 packet around `message`.
pub fn encode_v15(message: &[u8], out: &mut Vec<u8>) {
    put_rmcp_ipmi(out);
    out.push(AUTH_NONE);
    out.extend_from_slice(&[0; 8]); // sequence, session id
    out.push(u8::try_from(message.len()).unwrap_or(u8::MAX));
    out.extend_from_slice(message);
}

/// Writes an RMCP+ session header; the payload length is patched by
/// [`finish_v20_payload`] once the payload is written.
pub fn begin_v20(kind: u8, session_id: u32, seq: u32, out: &mut Vec<u8>) -> usize {
    out.push(AUTH_RMCPP);
    out.push(kind);
    out.extend_from_slice(&session_id.to_le_bytes());
    out.extend_from_slice(&seq.to_le_bytes());
    let len_at = out.len();
    out.extend_from_slice(&[0, 0]);
    len_at
}

/// Patches the payload length written by [`begin_v20`].
pub fn finish_v20_payload(len_at: usize, out: &mut [u8]) {
    let len = out.len().saturating_sub(len_at + 2);
    let bytes = u16::try_from(len).unwrap_or(u16::MAX).to_le_bytes();
    if let Some(slot) = out.get_mut(len_at..len_at + 2) {
        slot.copy_from_slice(&bytes);
    }
}

/// Appends the integrity pad, pad length and next header (13.28.4), so that
/// the bytes from `session_start` (the auth type byte) are a multiple of 4.
pub fn put_trailer_pad(session_start: usize, out: &mut Vec<u8>) {
    let covered = out.len() - session_start + 2;
    let pad = (4 - covered % 4) % 4;
    out.extend(std::iter::repeat_n(0xFF, pad));
    out.push(u8::try_from(pad).unwrap_or(0));
    out.push(NEXT_HEADER);
}

/// Two's-complement checksum: the byte that makes the sum zero (13.8).
pub fn checksum(bytes: &[u8]) -> u8 {
    bytes
        .iter()
        .fold(0u8, |acc, b| acc.wrapping_add(*b))
        .wrapping_neg()
}

/// A decoded IPMI LAN request message (13.8, request form).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Request<'a> {
    /// Responder (BMC) address.
    pub rs_addr: u8,
    /// Network function (even: request).
    pub netfn: u8,
    /// Responder LUN.
    pub rs_lun: u8,
    /// Requester address (software id of the remote console).
    pub rq_addr: u8,
    /// Requester sequence number (6 bits).
    pub rq_seq: u8,
    /// Requester LUN.
    pub rq_lun: u8,
    /// Command code.
    pub cmd: u8,
    /// Request data.
    pub data: &'a [u8],
}

/// Decodes an IPMI LAN request and checks both checksums.
pub fn decode_request(msg: &[u8]) -> Result<Request<'_>, WireError> {
    let mut r = Reader::new(msg, "IPMI message");
    let head = r.take(3)?;
    let body = r.rest();
    if checksum(head) != 0 || body.len() < 4 || checksum(body) != 0 {
        return Err(if body.len() < 4 {
            WireError::Truncated("IPMI message")
        } else {
            WireError::Checksum
        });
    }
    let [rs_addr, netfn_lun, _] = [head[0], head[1], head[2]];
    let mut b = Reader::new(&body[..body.len() - 1], "IPMI message");
    let rq_addr = b.u8()?;
    let seq_lun = b.u8()?;
    let cmd = b.u8()?;
    let netfn = netfn_lun >> 2;
    if netfn % 2 != 0 {
        return Err(WireError::Unsupported {
            what: "response netFn in request",
            value: netfn,
        });
    }
    Ok(Request {
        rs_addr,
        netfn,
        rs_lun: netfn_lun & 3,
        rq_addr,
        rq_seq: seq_lun >> 2,
        rq_lun: seq_lun & 3,
        cmd,
        data: b.rest(),
    })
}

/// Encodes the response to `req`: completion code then data (13.8).
pub fn encode_response(req: &Request<'_>, cc: u8, data: &[u8], out: &mut Vec<u8>) {
    let start = out.len();
    out.push(req.rq_addr);
    out.push(((req.netfn | 1) << 2) | req.rq_lun);
    out.push(checksum(&out[start..]));
    let body = out.len();
    out.push(req.rs_addr);
    out.push((req.rq_seq << 2) | req.rs_lun);
    out.push(req.cmd);
    out.push(cc);
    out.extend_from_slice(data);
    out.push(checksum(&out[body..]));
}

/// Encodes a request message (used by the bench and test client).
pub fn encode_request(netfn: u8, cmd: u8, rq_seq: u8, data: &[u8], out: &mut Vec<u8>) {
    let start = out.len();
    out.push(BMC_ADDR);
    out.push(netfn << 2);
    out.push(checksum(&out[start..]));
    let body = out.len();
    out.push(0x81); // remote console software id
    out.push((rq_seq & 0x3F) << 2);
    out.push(cmd);
    out.extend_from_slice(data);
    out.push(checksum(&out[body..]));
}

/// A decoded response message (client side): netFn, cmd, completion code, data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Response<'a> {
    /// Response network function (odd).
    pub netfn: u8,
    /// Requester sequence number echoed.
    pub rq_seq: u8,
    /// Command code.
    pub cmd: u8,
    /// Completion code.
    pub cc: u8,
    /// Response data after the completion code.
    pub data: &'a [u8],
}

/// Decodes a response message (client side), checking checksums.
pub fn decode_response(msg: &[u8]) -> Result<Response<'_>, WireError> {
    if msg.len() < 8 {
        return Err(WireError::Truncated("IPMI response"));
    }
    let (head, body) = msg.split_at(3);
    if checksum(head) != 0 || checksum(body) != 0 {
        return Err(WireError::Checksum);
    }
    Ok(Response {
        netfn: head[1] >> 2,
        rq_seq: body[1] >> 2,
        cmd: body[2],
        cc: body[3],
        data: &body[4..body.len() - 1],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_roundtrip_and_response_checksums() {
        let mut msg = Vec::new();
        encode_request(0x00, 0x01, 5, &[1, 2], &mut msg);
        let req = decode_request(&msg).expect("decodes");
        assert_eq!(
            (req.netfn, req.cmd, req.rq_seq, req.data),
            (0, 1, 5, &[1u8, 2][..])
        );
        let mut rsp = Vec::new();
        encode_response(&req, 0, &[9], &mut rsp);
        let r = decode_response(&rsp).expect("decodes");
        assert_eq!(
            (r.netfn, r.cmd, r.cc, r.rq_seq, r.data),
            (1, 1, 0, 5, &[9u8][..])
        );
    }

    #[test]
    fn bad_checksum_is_rejected() {
        let mut msg = Vec::new();
        encode_request(0x06, 0x01, 1, &[], &mut msg);
        let last = msg.len() - 1;
        msg[last] ^= 1;
        assert_eq!(decode_request(&msg), Err(WireError::Checksum));
    }

    #[test]
    fn ping_decodes_and_pong_says_ipmi() {
        let ping = [6, 0, 0xFF, 6, 0, 0, 0x11, 0xBE, 0x80, 7, 0, 0];
        assert_eq!(
            decode_datagram(&ping),
            Ok(Datagram::AsfPing {
                rmcp_seq: 0xFF,
                tag: 7
            })
        );
        let mut pong = Vec::new();
        encode_pong(0xFF, 7, &mut pong);
        assert_eq!(pong.len(), 4 + 8 + 16);
        assert_eq!(pong[8..10], [ASF_PONG, 7]);
        assert_eq!(pong[20], 0x81);
    }

    #[test]
    fn trailer_pad_makes_multiple_of_four() {
        for payload_len in 0..8 {
            let mut out = Vec::new();
            put_rmcp_ipmi(&mut out);
            let start = out.len();
            let at = begin_v20(0x40, 1, 1, &mut out);
            out.extend(std::iter::repeat_n(0xAB, payload_len));
            finish_v20_payload(at, &mut out);
            put_trailer_pad(start, &mut out);
            out.extend_from_slice(&[0; 12]);
            let Ok(Datagram::V20(p)) = decode_datagram(&out) else {
                panic!("decodes")
            };
            let (signed, code) = p.trailer(12).expect("trailer");
            assert_eq!(signed.len() % 4, 0);
            assert_eq!(code.len(), 12);
        }
    }
}
