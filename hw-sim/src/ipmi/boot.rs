//! Set / Get System Boot Options (IPMI v2.0 sections 28.12 and 28.13).
//!
//! Request of Set: byte 1 = parameter selector (bit 7 "mark invalid" is
//! accepted and ignored), then the parameter data, whose length is checked
//! per parameter (C7h short, C8h long). Request of Get: parameter selector,
//! set selector, block selector; the response is the parameter version
//! (01h), the selector byte (bit 7 clear: valid/unlocked) and the data.
//! Parameters served (table 28-14):
//!
//! - **0, set in progress** (1 byte): 00b set complete, 01b set in progress
//!   (81h when already in progress), 10b commit write (accepted; writes
//!   apply at once).
//! - **1, service partition selector** (1 byte): stored and read back.
//! - **2, service partition scan** (1 byte, bits 1:0): stored and read back;
//!   reserved bits refused (CCh).
//! - **3, BMC boot flag valid bit clearing** (1 byte, bits 4:0; reserved
//!   bits refused): kept by the model, which honours bit 3 — a set bit
//!   keeps the flags valid past the timeout without a Chassis Control
//!   command. The other events (PEF, watchdog, pushbutton) do not occur in
//!   the simulation; their bits are stored and read back.
//! - **4, boot info acknowledge** (2 bytes): write mask then data; Get
//!   returns both bytes, the mask as 00h.
//! - **5, boot flags** (5 bytes): mapped onto the model's boot override by
//!   [`super::chassis`]; flags written valid start the model's valid-bit
//!   timer. The valid bit reads back set while an override is pending and
//!   clears when a "once" override is used by a boot or the timer runs out.
//! - **6, boot initiator info** (9 bytes: channel, session id, timestamp):
//!   stored and read back.
//! - **7, boot initiator mailbox** (Set: block selector + 1–16 bytes, which
//!   replace the start of that block; Get: the block selector is the set
//!   selector, the answer the selector and its 16 bytes): five blocks, the
//!   minimum the specification asks for; a block past them is C9h
//!   "parameter out of range", which is how clients find the end.
//!
//! Any other parameter answers 80h "parameter not supported".

use super::chassis::{decode_boot_flags, encode_boot_flags, Chassis};
use super::commands::{cc, length, Answer, BmcState, SetProgress};
use crate::model::ValidBitClearing;

const PARAM_SET_IN_PROGRESS: u8 = 0;
const PARAM_SERVICE_PARTITION: u8 = 1;
const PARAM_SERVICE_SCAN: u8 = 2;
const PARAM_VALID_BIT_CLEARING: u8 = 3;
const PARAM_BOOT_INFO_ACK: u8 = 4;
const PARAM_BOOT_FLAGS: u8 = 5;
const PARAM_INITIATOR_INFO: u8 = 6;
const PARAM_INITIATOR_MAILBOX: u8 = 7;
const PARAMETER_VERSION: u8 = 0x01;

/// Bytes per boot initiator mailbox block.
const MAILBOX_BLOCK: usize = 16;
/// Mailbox blocks (80 bytes: the minimum table 28-14 asks for).
const MAILBOX_BLOCKS: usize = 5;
/// Service partition scan: only bits 1:0 are defined.
const SCAN_RESERVED: u8 = 0xFC;
/// Boot initiator info: channel, 4-byte session id, 4-byte timestamp.
const INITIATOR_INFO_LEN: usize = 9;

/// The boot options only IPMI has words for (parameter 3 and 5 live in
/// the model, shared with Redfish).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootOptions {
    /// Parameter 0.
    pub progress: SetProgress,
    /// Parameter 1.
    pub service_partition: u8,
    /// Parameter 2.
    pub service_scan: u8,
    /// Parameter 4 (boot initiator acknowledge data).
    pub ack: u8,
    /// Parameter 6.
    pub initiator_info: [u8; INITIATOR_INFO_LEN],
    /// Parameter 7.
    pub mailbox: [[u8; MAILBOX_BLOCK]; MAILBOX_BLOCKS],
}

impl Default for BootOptions {
    fn default() -> Self {
        Self {
            progress: SetProgress::Complete,
            service_partition: 0,
            service_scan: 0,
            ack: 0,
            initiator_info: [0; INITIATOR_INFO_LEN],
            mailbox: [[0; MAILBOX_BLOCK]; MAILBOX_BLOCKS],
        }
    }
}

/// Checks that `data` (after the selector byte) has exactly `n` bytes.
fn exact(data: &[u8], n: usize) -> Result<(), Answer> {
    length(data, n, n)
}

fn done() -> Result<Answer, Answer> {
    Ok(Answer::code(cc::OK))
}

/// Set System Boot Options.
pub fn set(data: &[u8], state: &mut BmcState, node: &dyn Chassis) -> Result<Answer, Answer> {
    let (&selector, value) = data.split_first().ok_or(Answer::code(cc::LENGTH_INVALID))?;
    let options = &mut state.boot;
    match selector & 0x7F {
        PARAM_SET_IN_PROGRESS => {
            exact(value, 1)?;
            set_progress(value[0], options)
        }
        PARAM_SERVICE_PARTITION => {
            exact(value, 1)?;
            options.service_partition = value[0];
            done()
        }
        PARAM_SERVICE_SCAN => {
            exact(value, 1)?;
            if value[0] & SCAN_RESERVED != 0 {
                return Err(Answer::code(cc::INVALID_DATA));
            }
            options.service_scan = value[0];
            done()
        }
        PARAM_VALID_BIT_CLEARING => {
            exact(value, 1)?;
            let clearing =
                ValidBitClearing::from_byte(value[0]).ok_or(Answer::code(cc::INVALID_DATA))?;
            node.set_valid_bit_clearing(clearing);
            done()
        }
        PARAM_BOOT_INFO_ACK => {
            exact(value, 2)?;
            let (mask, bits) = (value[0], value[1]);
            options.ack = (options.ack & !mask) | (bits & mask);
            done()
        }
        PARAM_BOOT_FLAGS => {
            exact(value, 5)?;
            let mut flags = [0u8; 5];
            flags.copy_from_slice(value);
            let boot = decode_boot_flags(&flags).ok_or(Answer::code(cc::INVALID_DATA))?;
            node.set_boot_flags(boot);
            done()
        }
        PARAM_INITIATOR_INFO => {
            exact(value, INITIATOR_INFO_LEN)?;
            options.initiator_info.copy_from_slice(value);
            done()
        }
        PARAM_INITIATOR_MAILBOX => {
            length(value, 2, 1 + MAILBOX_BLOCK)?;
            let block = mailbox_block(&mut options.mailbox, value[0])?;
            let bytes = &value[1..];
            block[..bytes.len()].copy_from_slice(bytes);
            done()
        }
        _ => Err(Answer::code(cc::PARAMETER_NOT_SUPPORTED)),
    }
}

fn mailbox_block(
    mailbox: &mut [[u8; MAILBOX_BLOCK]; MAILBOX_BLOCKS],
    selector: u8,
) -> Result<&mut [u8; MAILBOX_BLOCK], Answer> {
    mailbox
        .get_mut(usize::from(selector))
        .ok_or(Answer::code(cc::PARAMETER_OUT_OF_RANGE))
}

fn set_progress(value: u8, options: &mut BootOptions) -> Result<Answer, Answer> {
    match (value & 0x03, options.progress) {
        (0b00, _) => options.progress = SetProgress::Complete,
        (0b01, SetProgress::InProgress) => return Err(Answer::code(cc::SET_IN_PROGRESS)),
        (0b01, SetProgress::Complete) => options.progress = SetProgress::InProgress,
        (0b10, _) => {} // commit write: every write already took effect
        _ => return Err(Answer::code(cc::INVALID_DATA)),
    }
    done()
}

/// Get System Boot Options.
pub fn get(data: &[u8], state: &BmcState, node: &dyn Chassis) -> Result<Answer, Answer> {
    length(data, 3, 3)?;
    let selector = data[0] & 0x7F;
    let options = &state.boot;
    let value: Vec<u8> = match selector {
        PARAM_SET_IN_PROGRESS => vec![match options.progress {
            SetProgress::Complete => 0,
            SetProgress::InProgress => 1,
        }],
        PARAM_SERVICE_PARTITION => vec![options.service_partition],
        PARAM_SERVICE_SCAN => vec![options.service_scan],
        PARAM_VALID_BIT_CLEARING => vec![node.valid_bit_clearing().byte()],
        PARAM_BOOT_INFO_ACK => vec![0x00, options.ack],
        PARAM_BOOT_FLAGS => encode_boot_flags(&node.boot_override()).to_vec(),
        PARAM_INITIATOR_INFO => options.initiator_info.to_vec(),
        PARAM_INITIATOR_MAILBOX => {
            let block = options
                .mailbox
                .get(usize::from(data[1]))
                .ok_or(Answer::code(cc::PARAMETER_OUT_OF_RANGE))?;
            let mut out = vec![data[1]];
            out.extend_from_slice(block);
            out
        }
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
