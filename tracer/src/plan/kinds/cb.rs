//! Circular buffers: `GraphTracker::track_allocate_cb` (one CB placed on one device, with its
//! core ranges) and `Device::register_program` / `unregister_program` (the program that owns
//! the CBs just placed arrives on, or leaves, a device). Hit once per CB and device when a
//! program first runs there, never per op of a cached program.
use anyhow::Result;
use tracer_common::SlotSpec;

use super::{Hit, Values};
use crate::{
    model::CircularBuffer,
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

pub fn decode_allocate(l: &CoreRangeLayout, v: &Values, tail: Option<Tail>) -> Option<Hit> {
    let tail = tail?;
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

/// The array a tailed probe copied: `bytes` of the `total` it spans.
#[derive(Clone, Copy, Debug)]
pub struct Tail<'a> {
    pub bytes: &'a [u8],
    pub total: u32,
}
