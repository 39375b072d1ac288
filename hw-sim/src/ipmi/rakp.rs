//! The RMCP+ session handshake: Open Session and RAKP messages 1–4, BMC side.
//!
//! Steps (IPMI v2.0 section 13.15 and the message formats of 13.17–13.23):
//!
//! 1. **Open Session Request** (13.17) → **Response** (13.18): the console
//!    proposes one authentication, integrity and confidentiality algorithm
//!    and its session id SIDm. The BMC answers with its own id SIDc when the
//!    triple is exactly one of its cipher suites (never a different suite:
//!    "no cipher suite match", status 11h, otherwise), and grants a maximum
//!    privilege (requested 0 = the highest the channel allows).
//! 2. **RAKP 1** (13.20) → **RAKP 2** (13.21): the console sends its random
//!    Rm, the requested role and user name; the BMC answers its random Rc,
//!    its GUID and `HMAC_Kuid(SIDm | SIDc | Rm | Rc | GUIDc | RoleM | ULen |
//!    UName)`. An unknown name answers "unauthorized name" (0Dh); a role
//!    above what the user or the session may hold answers 0Ah.
//! 3. **RAKP 3** (13.22) → **RAKP 4** (13.23): the console proves the key
//!    with `HMAC_Kuid(Rc | SIDm | RoleM | ULen | UName)`; a wrong one (wrong
//!    password) answers "invalid integrity check value" (0Fh) and ends the
//!    session. Otherwise the BMC answers `HMAC_SIK(Rm | SIDc | GUIDc)`
//!    truncated per suite, and the session is active with K1/K2 (13.32).
//!
//! Error replies carry only the tag, status and the console's session id,
//! as the message formats say when the status is not 00h.

use super::crypto::{user_key, CipherSuite, SessionKeys, SUPPORTED_SUITES};
use super::session::{Challenge, NewSession, Privilege, SessionTable, Stage};
use super::wire::{Reader, WireError};

/// RMCP+ status codes (table 13-15).
pub mod status {
    /// No errors.
    pub const OK: u8 = 0x00;
    /// Insufficient resources to create a session.
    pub const NO_RESOURCES: u8 = 0x01;
    /// Invalid session id.
    pub const INVALID_SESSION_ID: u8 = 0x02;
    /// Invalid role.
    pub const INVALID_ROLE: u8 = 0x09;
    /// Unauthorized role or privilege level requested.
    pub const UNAUTHORIZED_ROLE: u8 = 0x0A;
    /// Invalid name length.
    pub const INVALID_NAME_LENGTH: u8 = 0x0C;
    /// Unauthorized name.
    pub const UNAUTHORIZED_NAME: u8 = 0x0D;
    /// Invalid integrity check value.
    pub const INVALID_INTEGRITY_CHECK: u8 = 0x0F;
    /// No cipher suite match with proposed security algorithms.
    pub const NO_CIPHER_SUITE_MATCH: u8 = 0x11;
    /// Illegal or unrecognized parameter.
    pub const ILLEGAL_PARAMETER: u8 = 0x12;
}

/// The account and identity a BMC checks the handshake against.
#[derive(Debug, Clone, Copy)]
pub struct Account<'a> {
    /// The one user name this BMC knows.
    pub username: &'a str,
    /// The password it holds now (may differ from the configured one under
    /// the `wrong_credentials` fault).
    pub password: &'a str,
    /// That user's privilege limit.
    pub max_privilege: Privilege,
    /// The BMC's GUID.
    pub guid: [u8; 16],
}

/// Randomness the handshake needs, injectable for tests.
pub trait Entropy {
    /// A fresh non-zero session id.
    fn session_id(&mut self) -> u32;
    /// A fresh 16-byte random number.
    fn random16(&mut self) -> [u8; 16];
}

/// One handshake answer: the payload type and payload to send back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// Payload type of the reply.
    pub payload_type: u8,
    /// Reply payload.
    pub payload: Vec<u8>,
}

fn error_reply(payload_type: u8, tag: u8, status: u8, console_id: u32) -> Reply {
    let mut payload = vec![tag, status, 0, 0];
    payload.extend_from_slice(&console_id.to_le_bytes());
    Reply {
        payload_type,
        payload,
    }
}

/// The algorithm number of one 8-byte algorithm payload (13.17, table 13-17),
/// checking its type and length.
fn algorithm(r: &mut Reader<'_>, expected_type: u8) -> Result<Option<u8>, WireError> {
    let [kind, _, _, len, alg, _, _, _] = r.array::<8>()?;
    if kind != expected_type {
        return Ok(None);
    }
    Ok(match len {
        8 => Some(alg & 0x3F),
        _ => None,
    })
}

/// Step 1: Open Session Request → Response.
pub fn open_session(
    payload: &[u8],
    peer: std::net::SocketAddr,
    table: &mut SessionTable,
    entropy: &mut dyn Entropy,
    now: std::time::Instant,
) -> Result<Reply, WireError> {
    use super::wire::payload::OPEN_SESSION_RESPONSE as RSP;
    let mut r = Reader::new(payload, "Open Session Request");
    let tag = r.u8()?;
    let requested = r.u8()? & 0x0F;
    r.take(2)?;
    let console_id = r.u32_le()?;
    let algs = (
        algorithm(&mut r, 0)?,
        algorithm(&mut r, 1)?,
        algorithm(&mut r, 2)?,
    );
    let (Some(a), Some(i), Some(c)) = algs else {
        return Ok(error_reply(RSP, tag, status::ILLEGAL_PARAMETER, console_id));
    };
    let Some(suite) = CipherSuite::from_algorithms((a, i, c)) else {
        return Ok(error_reply(
            RSP,
            tag,
            status::NO_CIPHER_SUITE_MATCH,
            console_id,
        ));
    };
    let max_privilege = match requested {
        0 => Privilege::Administrator,
        n => match Privilege::from_nibble(n) {
            Some(p) => p,
            None => return Ok(error_reply(RSP, tag, status::INVALID_ROLE, console_id)),
        },
    };
    // A retransmitted request (same console, same id, reply lost) gets the
    // session already opened for it instead of a second slot.
    let existing = table
        .iter()
        .find(|s| matches!(s.stage, Stage::Opened) && s.console_id == console_id && s.peer == peer)
        .map(|s| s.bmc_id);
    let bmc_id = match existing {
        Some(id) => id,
        None => {
            let bmc_id = fresh_id(table, entropy);
            let new = NewSession {
                bmc_id,
                console_id,
                suite,
                max_privilege,
                peer,
            };
            if table.open(new, now).is_none() {
                return Ok(error_reply(RSP, tag, status::NO_RESOURCES, console_id));
            }
            bmc_id
        }
    };
    let mut out = vec![tag, status::OK, max_privilege as u8, 0];
    out.extend_from_slice(&console_id.to_le_bytes());
    out.extend_from_slice(&bmc_id.to_le_bytes());
    let (a, i, c) = suite.algorithms();
    for (kind, alg) in [(0u8, a), (1, i), (2, c)] {
        out.extend_from_slice(&[kind, 0, 0, 8, alg, 0, 0, 0]);
    }
    Ok(Reply {
        payload_type: RSP,
        payload: out,
    })
}

fn fresh_id(table: &SessionTable, entropy: &mut dyn Entropy) -> u32 {
    loop {
        let id = entropy.session_id();
        if id != 0 && !table.id_in_use(id) {
            return id;
        }
    }
}

/// Fields of RAKP 1 (13.20).
struct Rakp1<'a> {
    tag: u8,
    console_random: [u8; 16],
    role: u8,
    name: &'a [u8],
}

fn parse_rakp1(payload: &[u8]) -> Result<Result<Rakp1<'_>, (u8, u8)>, WireError> {
    let mut r = Reader::new(payload, "RAKP 1");
    let tag = r.u8()?;
    r.take(3)?;
    r.take(4)?; // BMC session id, read by the caller
    let console_random = r.array()?;
    let role = r.u8()?;
    r.take(2)?;
    let name_len = usize::from(r.u8()?);
    if name_len > 16 || r.rest().len() != name_len {
        return Ok(Err((tag, status::INVALID_NAME_LENGTH)));
    }
    Ok(Ok(Rakp1 {
        tag,
        console_random,
        role,
        name: r.rest(),
    }))
}

/// Step 2: RAKP 1 → RAKP 2.
pub fn rakp1(
    payload: &[u8],
    table: &mut SessionTable,
    account: &Account<'_>,
    entropy: &mut dyn Entropy,
    now: std::time::Instant,
) -> Result<Reply, WireError> {
    use super::wire::payload::RAKP2 as RSP;
    let bmc_id = Reader::new(payload, "RAKP 1")
        .take(8)
        .map(|b| u32::from_le_bytes([b[4], b[5], b[6], b[7]]))?;
    let Some(session) = table.get_mut(bmc_id) else {
        let tag = payload.first().copied().unwrap_or(0);
        return Ok(error_reply(RSP, tag, status::INVALID_SESSION_ID, 0));
    };
    let console_id = session.console_id;
    let msg = match parse_rakp1(payload)? {
        Ok(m) => m,
        Err((tag, code)) => return Ok(fail(table, bmc_id, RSP, tag, code, console_id)),
    };
    if matches!(session.stage, Stage::Active(_)) {
        return Ok(error_reply(
            RSP,
            msg.tag,
            status::INVALID_SESSION_ID,
            console_id,
        ));
    }
    let known_user = msg.name == account.username.as_bytes();
    if !known_user {
        return Ok(fail(
            table,
            bmc_id,
            RSP,
            msg.tag,
            status::UNAUTHORIZED_NAME,
            console_id,
        ));
    }
    let Some(role) = Privilege::from_nibble(msg.role) else {
        return Ok(fail(
            table,
            bmc_id,
            RSP,
            msg.tag,
            status::INVALID_ROLE,
            console_id,
        ));
    };
    if role > account.max_privilege || role > session.max_privilege {
        return Ok(fail(
            table,
            bmc_id,
            RSP,
            msg.tag,
            status::UNAUTHORIZED_ROLE,
            console_id,
        ));
    }
    let key = user_key(account.password);
    let bmc_random = entropy.random16();
    let name_len = [msg.name.len() as u8];
    let suite = session.suite;
    let sik = suite.hmac(
        &key,
        &[
            &msg.console_random,
            &bmc_random,
            &[msg.role],
            &name_len,
            msg.name,
        ],
    );
    let code = suite.hmac(
        &key,
        &[
            &console_id.to_le_bytes(),
            &bmc_id.to_le_bytes(),
            &msg.console_random,
            &bmc_random,
            &account.guid,
            &[msg.role],
            &name_len,
            msg.name,
        ],
    );
    session.max_privilege = role;
    session.privilege = role.min(Privilege::User);
    session.last_seen = now;
    session.stage = Stage::Challenged(Box::new(Challenge {
        console_random: msg.console_random,
        bmc_random,
        role: msg.role,
        username: msg.name.to_vec(),
        sik,
    }));
    let mut out = vec![msg.tag, status::OK, 0, 0];
    out.extend_from_slice(&console_id.to_le_bytes());
    out.extend_from_slice(&bmc_random);
    out.extend_from_slice(&account.guid);
    out.extend_from_slice(code.as_bytes());
    Ok(Reply {
        payload_type: RSP,
        payload: out,
    })
}

/// Ends a half-open session and builds its error reply.
fn fail(
    table: &mut SessionTable,
    bmc_id: u32,
    kind: u8,
    tag: u8,
    code: u8,
    console_id: u32,
) -> Reply {
    table.close(bmc_id);
    error_reply(kind, tag, code, console_id)
}

/// Step 3: RAKP 3 → RAKP 4. `None` when the console itself reported an
/// error in RAKP 3: the session is dropped and nothing is sent.
pub fn rakp3(
    payload: &[u8],
    table: &mut SessionTable,
    account: &Account<'_>,
    now: std::time::Instant,
) -> Result<Option<Reply>, WireError> {
    use super::wire::payload::RAKP4 as RSP;
    let mut r = Reader::new(payload, "RAKP 3");
    let tag = r.u8()?;
    let console_status = r.u8()?;
    r.take(2)?;
    let bmc_id = r.u32_le()?;
    let received = r.rest();
    let Some(session) = table.get_mut(bmc_id) else {
        return Ok(Some(error_reply(RSP, tag, status::INVALID_SESSION_ID, 0)));
    };
    let console_id = session.console_id;
    if console_status != status::OK {
        table.close(bmc_id);
        return Ok(None);
    }
    let Stage::Challenged(ch) = &session.stage else {
        return Ok(Some(error_reply(
            RSP,
            tag,
            status::INVALID_SESSION_ID,
            console_id,
        )));
    };
    let suite = session.suite;
    let key = user_key(account.password);
    let name_len = [ch.username.len() as u8];
    let expected = suite.hmac(
        &key,
        &[
            &ch.bmc_random,
            &console_id.to_le_bytes(),
            &[ch.role],
            &name_len,
            &ch.username,
        ],
    );
    if !super::crypto::mac_eq(expected.as_bytes(), received) {
        return Ok(Some(fail(
            table,
            bmc_id,
            RSP,
            tag,
            status::INVALID_INTEGRITY_CHECK,
            console_id,
        )));
    }
    let icv = suite.hmac(
        ch.sik.as_bytes(),
        &[&ch.console_random, &bmc_id.to_le_bytes(), &account.guid],
    );
    let keys = SessionKeys::derive(suite, &ch.sik);
    let mut out = vec![tag, status::OK, 0, 0];
    out.extend_from_slice(&console_id.to_le_bytes());
    out.extend_from_slice(icv.truncated(suite.auth_code_len()));
    session.stage = Stage::Active(Box::new(keys));
    session.last_seen = now;
    Ok(Some(Reply {
        payload_type: RSP,
        payload: out,
    }))
}

/// The cipher suite records of Get Channel Cipher Suites (22.15, table
/// 22-19): `C0h, id, auth, 40h|integrity, 80h|confidentiality` per suite.
pub fn cipher_suite_records() -> Vec<u8> {
    let mut out = Vec::new();
    for suite in SUPPORTED_SUITES {
        let (a, i, c) = suite.algorithms();
        out.extend_from_slice(&[0xC0, suite.id(), a, 0x40 | i, 0x80 | c]);
    }
    out
}

/// The algorithm list of Get Channel Cipher Suites when not listing by
/// suite: every supported algorithm once, tagged as in the records.
pub fn algorithm_list() -> Vec<u8> {
    let mut out: Vec<u8> = Vec::new();
    for suite in SUPPORTED_SUITES {
        let (a, i, c) = suite.algorithms();
        for tagged in [a, 0x40 | i, 0x80 | c] {
            if !out.contains(&tagged) {
                out.push(tagged);
            }
        }
    }
    out
}
