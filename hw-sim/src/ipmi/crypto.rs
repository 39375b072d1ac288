//! Cipher suites and the cryptography of RMCP+ sessions.
//!
//! Owns the algorithm numbers, the two cipher suites this BMC offers, the
//! HMACs of the RAKP exchange, key derivation and the per-packet integrity
//! and confidentiality transforms. IPMI v2.0 sections:
//!
//! - 13.28: authentication algorithms (RAKP-HMAC-SHA1 = 01h; RAKP-HMAC-SHA256
//!   = 03h from the SHA-256 errata), integrity algorithms (HMAC-SHA1-96 =
//!   01h; HMAC-SHA256-128 = 04h), confidentiality (AES-CBC-128 = 01h).
//! - 22.15.2, table 22-20: cipher suite ids — suite 3 is
//!   SHA1 / SHA1-96 / AES-CBC-128, suite 17 is SHA256 / SHA256-128 / AES-CBC-128.
//! - 13.31: the user key Kuid is the password, zero-padded to 20 bytes;
//!   `SIK = HMAC_Kg(Rm | Rc | RoleM | ULengthM | UNameM)` where Kg is the BMC
//!   key, or Kuid when no BMC key is set (as here).
//! - 13.32: `K1 = HMAC_SIK(20 × 01h)`, `K2 = HMAC_SIK(20 × 02h)`.
//! - 13.28.4: the packet AuthCode is `HMAC_K1(auth type .. next header)`
//!   truncated to 12 (SHA1-96) or 16 (SHA256-128) bytes.
//! - 13.29: AES-CBC-128 payloads are a 16-byte IV then the ciphertext of
//!   `data | pad 01h 02h .. N | N`, keyed with the first 16 bytes of K2.

use aes::Aes128;
use cbc::cipher::block_padding::NoPadding;
use cbc::cipher::{BlockDecryptMut, BlockEncryptMut, KeyIvInit};
use hmac::{Hmac, Mac};
use sha1::Sha1;
use sha2::Sha256;
use thiserror::Error;

/// A cipher suite this BMC supports (table 22-20).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CipherSuite {
    /// Suite 3: RAKP-HMAC-SHA1, HMAC-SHA1-96, AES-CBC-128.
    Suite3,
    /// Suite 17: RAKP-HMAC-SHA256, HMAC-SHA256-128, AES-CBC-128.
    Suite17,
}

/// Authentication algorithm number of RAKP-HMAC-SHA1.
pub const AUTH_HMAC_SHA1: u8 = 0x01;
/// Authentication algorithm number of RAKP-HMAC-SHA256.
pub const AUTH_HMAC_SHA256: u8 = 0x03;
/// Integrity algorithm number of HMAC-SHA1-96.
pub const INTEGRITY_HMAC_SHA1_96: u8 = 0x01;
/// Integrity algorithm number of HMAC-SHA256-128.
pub const INTEGRITY_HMAC_SHA256_128: u8 = 0x04;
/// Confidentiality algorithm number of AES-CBC-128.
pub const CONF_AES_CBC_128: u8 = 0x01;
/// AES block (and IV) size.
pub const AES_BLOCK: usize = 16;
/// Length of the user key (password field) in RMCP+.
pub const KEY_LEN: usize = 20;

/// The suites this BMC advertises, in the order it lists them.
pub const SUPPORTED_SUITES: [CipherSuite; 2] = [CipherSuite::Suite3, CipherSuite::Suite17];

impl CipherSuite {
    /// The suite id of table 22-20.
    pub fn id(self) -> u8 {
        match self {
            Self::Suite3 => 3,
            Self::Suite17 => 17,
        }
    }

    /// (authentication, integrity, confidentiality) algorithm numbers.
    pub fn algorithms(self) -> (u8, u8, u8) {
        match self {
            Self::Suite3 => (AUTH_HMAC_SHA1, INTEGRITY_HMAC_SHA1_96, CONF_AES_CBC_128),
            Self::Suite17 => (
                AUTH_HMAC_SHA256,
                INTEGRITY_HMAC_SHA256_128,
                CONF_AES_CBC_128,
            ),
        }
    }

    /// The suite whose algorithms are exactly these, if offered.
    pub fn from_algorithms(algs: (u8, u8, u8)) -> Option<Self> {
        SUPPORTED_SUITES
            .into_iter()
            .find(|s| s.algorithms() == algs)
    }

    fn hash(self) -> Hash {
        match self {
            Self::Suite3 => Hash::Sha1,
            Self::Suite17 => Hash::Sha256,
        }
    }

    /// Length of the RAKP 4 integrity check value and the packet AuthCode.
    pub fn auth_code_len(self) -> usize {
        match self {
            Self::Suite3 => 12,
            Self::Suite17 => 16,
        }
    }

    /// HMAC of the concatenated `parts` under `key`, full length.
    pub fn hmac(self, key: &[u8], parts: &[&[u8]]) -> Digest {
        self.hash().hmac(key, parts)
    }
}

#[derive(Debug, Clone, Copy)]
enum Hash {
    Sha1,
    Sha256,
}

impl Hash {
    fn hmac(self, key: &[u8], parts: &[&[u8]]) -> Digest {
        match self {
            Self::Sha1 => Digest::from_mac(keyed::<Hmac<Sha1>>(key), parts),
            Self::Sha256 => Digest::from_mac(keyed::<Hmac<Sha256>>(key), parts),
        }
    }
}

fn keyed<M: Mac + hmac::digest::KeyInit>(key: &[u8]) -> M {
    <M as Mac>::new_from_slice(key).expect("HMAC accepts keys of any length")
}

/// An HMAC output of up to 32 bytes.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Digest {
    buf: [u8; 32],
    len: usize,
}

impl std::fmt::Debug for Digest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Digest({} bytes)", self.len)
    }
}

impl Digest {
    fn from_mac<M: Mac>(mut mac: M, parts: &[&[u8]]) -> Self {
        for part in parts {
            mac.update(part);
        }
        let out = mac.finalize().into_bytes();
        let mut buf = [0u8; 32];
        let len = out.len().min(32);
        buf[..len].copy_from_slice(&out[..len]);
        Self { buf, len }
    }

    /// The digest bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }

    /// The first `n` bytes (the truncated forms of 13.28.4).
    pub fn truncated(&self, n: usize) -> &[u8] {
        &self.buf[..n.min(self.len)]
    }
}

/// Constant-time comparison of an expected MAC with a received one.
pub fn mac_eq(expected: &[u8], received: &[u8]) -> bool {
    expected.len() == received.len()
        && expected
            .iter()
            .zip(received)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}

/// The user key Kuid: the password zero-padded (or cut) to 20 bytes.
pub fn user_key(password: &str) -> [u8; KEY_LEN] {
    let mut key = [0u8; KEY_LEN];
    let bytes = password.as_bytes();
    let n = bytes.len().min(KEY_LEN);
    key[..n].copy_from_slice(&bytes[..n]);
    key
}

/// Failures of the per-packet transforms.
#[derive(Debug, Error, Clone, Copy, PartialEq, Eq)]
pub enum CryptoError {
    /// The ciphertext is not a whole number of AES blocks after the IV.
    #[error("Encrypted payload is not whole AES blocks")]
    BlockLength,
    /// The confidentiality trailer (pad bytes and pad length) is wrong.
    #[error("Bad confidentiality pad")]
    Pad,
}

/// The keys of an established session (13.32) and the transforms they drive.
#[derive(Clone)]
pub struct SessionKeys {
    suite: CipherSuite,
    k1: Digest,
    aes_key: [u8; AES_BLOCK],
}

impl std::fmt::Debug for SessionKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionKeys")
            .field("suite", &self.suite)
            .finish_non_exhaustive()
    }
}

impl SessionKeys {
    /// Derives K1 and K2 from the session integrity key.
    pub fn derive(suite: CipherSuite, sik: &Digest) -> Self {
        let k1 = suite.hmac(sik.as_bytes(), &[&[0x01; 20]]);
        let k2 = suite.hmac(sik.as_bytes(), &[&[0x02; 20]]);
        let mut aes_key = [0u8; AES_BLOCK];
        aes_key.copy_from_slice(k2.truncated(AES_BLOCK));
        Self { suite, k1, aes_key }
    }

    /// The cipher suite the keys belong to.
    pub fn suite(&self) -> CipherSuite {
        self.suite
    }

    /// The packet AuthCode over `signed` (13.28.4), truncated.
    pub fn auth_code(&self, signed: &[u8]) -> Digest {
        let mut d = self.suite.hmac(self.k1.as_bytes(), &[signed]);
        d.len = self.suite.auth_code_len();
        d
    }

    /// Whether `code` is the right AuthCode for `signed`.
    pub fn verify(&self, signed: &[u8], code: &[u8]) -> bool {
        mac_eq(self.auth_code(signed).as_bytes(), code)
    }

    /// Appends `IV | AES-CBC(plain | pad | pad length)` to `out` (13.29).
    pub fn encrypt(&self, iv: [u8; AES_BLOCK], plain: &[u8], out: &mut Vec<u8>) {
        out.extend_from_slice(&iv);
        let start = out.len();
        out.extend_from_slice(plain);
        let pad = (AES_BLOCK - (plain.len() + 1) % AES_BLOCK) % AES_BLOCK;
        out.extend((1..=pad).map(|b| b as u8));
        out.push(pad as u8);
        let len = out.len() - start;
        let enc = cbc::Encryptor::<Aes128>::new(&self.aes_key.into(), &iv.into());
        // The buffer is a whole number of blocks by construction.
        if enc
            .encrypt_padded_mut::<NoPadding>(&mut out[start..], len)
            .is_err()
        {
            out.truncate(start);
        }
    }

    /// Decrypts an encrypted payload into `out` and strips the pad.
    pub fn decrypt(&self, payload: &[u8], out: &mut Vec<u8>) -> Result<(), CryptoError> {
        if payload.len() < 2 * AES_BLOCK || payload.len() % AES_BLOCK != 0 {
            return Err(CryptoError::BlockLength);
        }
        let (iv, body) = payload.split_at(AES_BLOCK);
        out.clear();
        out.extend_from_slice(body);
        let mut iv_arr = [0u8; AES_BLOCK];
        iv_arr.copy_from_slice(iv);
        let dec = cbc::Decryptor::<Aes128>::new(&self.aes_key.into(), &iv_arr.into());
        dec.decrypt_padded_mut::<NoPadding>(out)
            .map_err(|_| CryptoError::BlockLength)?;
        strip_conf_pad(out)
    }
}

fn strip_conf_pad(buf: &mut Vec<u8>) -> Result<(), CryptoError> {
    let Some(&pad) = buf.last() else {
        return Err(CryptoError::Pad);
    };
    let pad = usize::from(pad);
    if pad >= AES_BLOCK || pad + 1 > buf.len() {
        return Err(CryptoError::Pad);
    }
    let data_len = buf.len() - pad - 1;
    let pad_ok = buf[data_len..data_len + pad]
        .iter()
        .enumerate()
        .all(|(i, b)| usize::from(*b) == i + 1);
    if !pad_ok {
        return Err(CryptoError::Pad);
    }
    buf.truncate(data_len);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suites_map_both_ways() {
        for s in SUPPORTED_SUITES {
            assert_eq!(CipherSuite::from_algorithms(s.algorithms()), Some(s));
        }
        assert_eq!(CipherSuite::from_algorithms((1, 1, 0)), None);
    }

    #[test]
    fn hmac_sha1_matches_rfc2202_case_2() {
        let d = CipherSuite::Suite3.hmac(b"Jefe", &[b"what do ya want ", b"for nothing?"]);
        let hex: String = d.as_bytes().iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(hex, "effcdf6ae5eb2fa2d27416d5f184df9c259a7c79");
    }

    #[test]
    fn hmac_sha256_matches_rfc4231_case_2() {
        let d = CipherSuite::Suite17.hmac(b"Jefe", &[b"what do ya want for nothing?"]);
        let hex: String = d.as_bytes().iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(
            hex,
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn encrypt_decrypt_roundtrip_all_lengths() {
        let sik = CipherSuite::Suite17.hmac(b"k", &[b"x"]);
        let keys = SessionKeys::derive(CipherSuite::Suite17, &sik);
        for len in 0..40 {
            let plain: Vec<u8> = (0..len).map(|i| i as u8).collect();
            let mut enc = Vec::new();
            keys.encrypt([7; 16], &plain, &mut enc);
            assert_eq!(enc.len() % 16, 0);
            let mut dec = Vec::new();
            keys.decrypt(&enc, &mut dec).expect("decrypts");
            assert_eq!(dec, plain);
        }
    }

    #[test]
    fn auth_code_is_truncated_per_suite() {
        let sik = CipherSuite::Suite3.hmac(b"k", &[b"x"]);
        let keys = SessionKeys::derive(CipherSuite::Suite3, &sik);
        let code = keys.auth_code(b"abcd");
        assert_eq!(code.as_bytes().len(), 12);
        assert!(keys.verify(b"abcd", code.as_bytes()));
        assert!(!keys.verify(b"abce", code.as_bytes()));
    }
}
