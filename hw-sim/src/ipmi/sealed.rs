//! Building and opening RMCP+ packets, plain and protected, for both ends.
//!
//! A protected packet (IPMI v2.0 13.6 table 13-8, 13.28.4, 13.29) is built in
//! this order: RMCP header; session header with payload type C0h|type
//! (encrypted + authenticated), the peer's session id and our sequence
//! number; the AES-CBC-128 payload (IV + ciphertext); integrity pad, pad
//! length, next header; AuthCode over auth type .. next header. Opening
//! checks the AuthCode first, then decrypts; the caller checks the sequence
//! number against its replay window only after the AuthCode verified, so
//! forged packets cannot move the window.

use super::crypto::{CryptoError, SessionKeys, AES_BLOCK};
use super::wire::{self, V20Packet, WireError};
use thiserror::Error;

/// Why a protected packet was refused.
#[derive(Debug, Error, Clone, Copy, PartialEq, Eq)]
pub enum OpenError {
    /// The packet is not encrypted and authenticated.
    #[error("Packet is not encrypted and authenticated")]
    Unprotected,
    /// Framing of the trailer is wrong.
    #[error("Bad trailer")]
    Wire(#[from] WireError),
    /// The AuthCode does not verify.
    #[error("AuthCode does not verify")]
    AuthCode,
    /// Decryption failed.
    #[error("Cannot decrypt payload")]
    Crypto(#[from] CryptoError),
}

/// Writes an unprotected RMCP+ packet (handshake, or outside a session).
pub fn plain(payload_type: u8, session_id: u32, payload: &[u8], out: &mut Vec<u8>) {
    wire::put_rmcp_ipmi(out);
    let at = wire::begin_v20(payload_type, session_id, 0, out);
    out.extend_from_slice(payload);
    wire::finish_v20_payload(at, out);
}

/// Writes a protected RMCP+ packet carrying `message`.
pub fn seal(
    keys: &SessionKeys,
    payload_type: u8,
    session_id: u32,
    seq: u32,
    message: &[u8],
    iv: [u8; AES_BLOCK],
    out: &mut Vec<u8>,
) {
    wire::put_rmcp_ipmi(out);
    let start = out.len();
    let at = wire::begin_v20(0xC0 | payload_type, session_id, seq, out);
    keys.encrypt(iv, message, out);
    wire::finish_v20_payload(at, out);
    wire::put_trailer_pad(start, out);
    let code = keys.auth_code(&out[start..]);
    out.extend_from_slice(code.as_bytes());
}

/// Verifies and decrypts a protected packet into `plain`.
pub fn open(
    keys: &SessionKeys,
    packet: &V20Packet<'_>,
    plain: &mut Vec<u8>,
) -> Result<(), OpenError> {
    if !packet.encrypted || !packet.authenticated {
        return Err(OpenError::Unprotected);
    }
    let (signed, code) = packet.trailer(keys.suite().auth_code_len())?;
    if !keys.verify(signed, code) {
        return Err(OpenError::AuthCode);
    }
    keys.decrypt(packet.payload, plain)?;
    Ok(())
}

/// A fresh random IV.
pub fn random_iv() -> [u8; AES_BLOCK] {
    rand::random()
}
