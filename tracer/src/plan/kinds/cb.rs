//! Circular buffers: `GraphTracker::track_allocate_cb` (one CB placed on one device, with its
//! core ranges) and `Device::register_program` / `unregister_program` (the program that owns
//! the CBs just placed arrives on, or leaves, a device). Hit once per CB and device when a
//! program first runs there, never per op of a cached program.
use anyhow::Result;
use tracer_common::SlotSpec;

use super::{Hit, Values};
use crate::{
    model::{CbClash, CircularBuffer, CoreRange},
    plan::clash::field,
    plan::slot::{device_spec, path, register},
    runtime::{core_ranges::CoreRangeLayout, disasm::Chain},
};

/// `track_allocate_cb(this, CoreRangeSet const&, addr, size, bool, IDevice const*)`.
pub const DEVICE: usize = 0;
pub const ADDRESS: usize = 1;
pub const SIZE: usize = 2;
pub const GLOBAL: usize = 3;

/// The arguments of `track_allocate_cb` (0 = the tracker itself).
const ARG_RANGES: u8 = 1;
const ARG_ADDRESS: u8 = 2;
const ARG_SIZE: u8 = 3;
const ARG_GLOBAL: u8 = 4;
const ARG_DEVICE: u8 = 5;

/// The CB's address, size, whether it is globally allocated, its device; then the core range
/// elements themselves, copied whole (a set may hold several rectangles).
pub fn allocate_spec(l: &CoreRangeLayout) -> Result<SlotSpec> {
    let mut s = device_spec(
        &[
            register(ARG_DEVICE, 8)?,
            register(ARG_ADDRESS, 8)?,
            register(ARG_SIZE, 8)?,
            register(ARG_GLOBAL, 1)?,
        ],
        false,
    );
    s.tail = 1;
    s.tail_begin = path(ARG_RANGES, &Chain::field(l.vector, 8))?;
    s.tail_end = path(ARG_RANGES, &Chain::field(l.vector + 8, 8))?;
    Ok(s)
}

/// `Device::(un)register_program(this, ProgramImpl*)`.
pub const PROGRAM: usize = 1;

pub fn program_spec() -> Result<SlotSpec> {
    Ok(device_spec(&[register(0, 8)?, register(1, 8)?], false))
}

pub fn decode_allocate(l: &CoreRangeLayout, v: &Values) -> Option<Hit> {
    let tail = v.tail()?;
    let cores = l.ranges(tail.bytes);
    Some(Hit::CircularBuffer {
        device: v.get(DEVICE)?,
        buffer: CircularBuffer {
            address: v.get(ADDRESS)?,
            size: v.get(SIZE)?,
            global: v.get(GLOBAL)? != 0,
            cut: tail.total as usize > tail.bytes.len(),
            cores,
        },
    })
}

pub fn decode_program(v: &Values, registered: bool) -> Option<Hit> {
    Some(Hit::Program {
        device: v.get(DEVICE)?,
        program: v.get(PROGRAM)?,
        registered,
    })
}

/// A hit of the clash probe: both sides, in the runtime's own numbers.
pub fn decode_clash(v: &Values) -> Option<Hit> {
    let at = |i: usize| v.get(i);
    let len = (at(field::RANGE_LEN)? as usize).min(8 * field::RANGE_WORDS);
    let mut chars = Vec::with_capacity(8 * field::RANGE_WORDS);
    for w in 0..field::RANGE_WORDS {
        chars.extend_from_slice(&v.get(field::RANGE_CHARS + w).unwrap_or(0).to_le_bytes());
    }
    let text = String::from_utf8_lossy(&chars[..len]).into_owned();
    Some(Hit::Clash(CbClash {
        program: at(field::PROGRAM)?,
        core_range: parse_range(&text),
        core_range_text: text,
        l1_buffer_address: at(field::L1_BUFFER)?,
        cb_region_end: at(field::REGION_END)?,
    }))
}

/// The corners of a range as tt-metal prints it (`[0-0 - 7-0]`, `[(x=0,y=0) - (x=7,y=0)]`): the
/// first four numbers, x then y of each corner.
fn parse_range(text: &str) -> Option<CoreRange> {
    let n: Vec<u32> = text
        .split(|c: char| !c.is_ascii_digit())
        .filter(|s| !s.is_empty())
        .filter_map(|s| s.parse().ok())
        .collect();
    (n.len() >= 4).then(|| CoreRange {
        start: (n[0], n[1]),
        end: (n[2], n[3]),
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn ranges_as_the_runtime_prints_them() {
        let r = super::parse_range("[0-0 - 7-0]").unwrap();
        assert_eq!((r.start, r.end), ((0, 0), (7, 0)));
        let r = super::parse_range("[(x=1,y=2) - (x=3,y=4)]").unwrap();
        assert_eq!((r.start, r.end), ((1, 2), (3, 4)));
        assert!(super::parse_range("[?]").is_none());
    }
}

/// The array a tailed probe copied: `bytes` of the `total` it spans.
#[derive(Clone, Copy, Debug)]
pub struct Tail<'a> {
    pub bytes: &'a [u8],
    pub total: u32,
}
