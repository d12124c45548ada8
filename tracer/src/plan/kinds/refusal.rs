//! The `tt_throw` of "Out of Memory" inside `BankManager::allocate_buffer`: the allocator
//! refused an allocation. The slot's values are calibrated from the message's own arguments
//! (plan/oom.rs, which names their positions).
use super::{Hit, Values};
use crate::{
    model::{BufferType, Refusal},
    plan::oom::field,
};

/// A hit of the out-of-memory probe: the allocator's refusal, in its own numbers.
pub fn decode(v: &Values) -> Option<Hit> {
    let raw = |i: usize| v.all().get(i).copied().unwrap_or(0);
    let len = (raw(field::TYPE_LEN) as usize).min(8);
    let chars = raw(field::TYPE_CHARS).to_le_bytes();
    let name = String::from_utf8_lossy(&chars[..len]).into_owned();
    let kind = BufferType::from_name(&name)?;
    Some(Hit::Refused(Refusal {
        kind,
        requested: raw(field::REQUESTED),
        banks: raw(field::BANKS) as u32,
        per_bank: raw(field::PER_BANK),
        bank_size: raw(field::BANK_SIZE),
        allocated_per_bank: raw(field::ALLOCATED),
        free_per_bank: raw(field::FREE),
        largest_free: raw(field::LARGEST_FREE),
    }))
}
