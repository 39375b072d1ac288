//! Set / Get System Boot Options (IPMI v2.0 sections 28.12 and 28.13).
//!
//! Request of Set: byte 1 = parameter selector (bit 7 "mark invalid" is
//! accepted and ignored), then the parameter data. Request of Get:
//! parameter selector, set selector, block selector; the response is the
//! parameter version (01h), the selector byte (bit 7 clear: valid/unlocked)
//! and the data. Parameters served (table 28-14):
//!
//! - **0, set in progress**: 00b set complete, 01b set in progress (81h when
//!   already in progress), 10b commit write (accepted; writes apply at once).
//! - **4, boot info acknowledge**: write mask then data; Get returns both
//!   bytes, the mask as 00h.
//! - **5, boot flags**: the five bytes mapped onto the model's boot override
//!   by [`super::chassis`]; the valid bit reads back set while an override
//!   is pending and clears when a "once" override is used by a boot.
//!
//! Any other parameter answers 80h "parameter not supported".

use super::chassis::{decode_boot_flags, encode_boot_flags, Chassis};
use super::commands::{cc, length, Answer, BmcState, SetProgress};

const PARAM_SET_IN_PROGRESS: u8 = 0;
const PARAM_BOOT_INFO_ACK: u8 = 4;
const PARAM_BOOT_FLAGS: u8 = 5;
const PARAMETER_VERSION: u8 = 0x01;

/// Checks that `data` (after the selector byte) has exactly `n` bytes.
fn exact(data: &[u8], n: usize) -> Result<(), Answer> {
    length(data, n, n)
}

/// Set System Boot Options.
pub fn set(data: &[u8], state: &mut BmcState, node: &dyn Chassis) -> Result<Answer, Answer> {
    let (&selector, value) = data.split_first().ok_or(Answer::code(cc::LENGTH_INVALID))?;
    match selector & 0x7F {
        PARAM_SET_IN_PROGRESS => {
            exact(value, 1)?;
            set_progress(value[0], state)
        }
        PARAM_BOOT_INFO_ACK => {
            exact(value, 2)?;
            let (mask, bits) = (value[0], value[1]);
            state.boot_ack = (state.boot_ack & !mask) | (bits & mask);
            Ok(Answer::code(cc::OK))
        }
        PARAM_BOOT_FLAGS => {
            exact(value, 5)?;
            let mut flags = [0u8; 5];
            flags.copy_from_slice(value);
            let boot = decode_boot_flags(&flags).ok_or(Answer::code(cc::INVALID_DATA))?;
            node.set_boot_override(boot);
            Ok(Answer::code(cc::OK))
        }
        _ => Err(Answer::code(cc::PARAMETER_NOT_SUPPORTED)),
    }
}

fn set_progress(value: u8, state: &mut BmcState) -> Result<Answer, Answer> {
    match (value & 0x03, state.boot_progress) {
        (0b00, _) => state.boot_progress = SetProgress::Complete,
        (0b01, SetProgress::InProgress) => return Err(Answer::code(cc::SET_IN_PROGRESS)),
        (0b01, SetProgress::Complete) => state.boot_progress = SetProgress::InProgress,
        (0b10, _) => {} // commit write: every write already took effect
        _ => return Err(Answer::code(cc::INVALID_DATA)),
    }
    Ok(Answer::code(cc::OK))
}

/// Get System Boot Options.
pub fn get(data: &[u8], state: &BmcState, node: &dyn Chassis) -> Result<Answer, Answer> {
    length(data, 3, 3)?;
    let selector = data[0] & 0x7F;
    let value: Vec<u8> = match selector {
        PARAM_SET_IN_PROGRESS => vec![match state.boot_progress {
            SetProgress::Complete => 0,
            SetProgress::InProgress => 1,
        }],
        PARAM_BOOT_INFO_ACK => vec![0x00, state.boot_ack],
        PARAM_BOOT_FLAGS => encode_boot_flags(&node.boot_override()).to_vec(),
        _ => return Err(Answer::code(cc::PARAMETER_NOT_SUPPORTED)),
    };
    let mut out = vec![PARAMETER_VERSION, selector];
    out.extend_from_slice(&value);
    Ok(Answer {
        cc: cc::OK,
        data: out,
        close_session: false,
    })
}
