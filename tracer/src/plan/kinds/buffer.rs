//! `GraphTracker::track_allocate` / `track_deallocate(Buffer*)`: one buffer's fields.
use anyhow::Result;
use tracer_common::{SlotSpec, MAX_VALUES};

use super::{Hit, Values};
use crate::{
    model::{BufferInfo, BufferType},
    plan::slot::{device_spec, path},
    runtime::calibrate::Layout,
};

/// The values, in slot order.
pub const DEVICE: usize = 0;
pub const ADDRESS: usize = 1;
pub const SIZE: usize = 2;
pub const PAGE_SIZE: usize = 3;
pub const KIND: usize = 4;
pub const UNIQUE_ID: usize = 5;
/// `TensorMemoryLayout`, where calibrated.
pub const MEMORY_LAYOUT: usize = 6;

/// Argument 1: GraphTracker's methods take `this` first, the Buffer second. The device object
/// itself is described once per process (RawDevice), not read on every hit.
pub fn spec(layout: &Layout) -> Result<SlotSpec> {
    let b = &layout.buffer;
    let mut v = vec![
        path(1, &b.device)?,
        path(1, &b.address)?,
        path(1, &b.size)?,
        path(1, &b.page_size)?,
        path(1, &b.kind)?,
        path(1, &b.unique_id)?,
    ];
    if let Some(layout) = &b.memory_layout {
        debug_assert_eq!(v.len(), MEMORY_LAYOUT);
        v.push(path(1, layout)?);
    }
    debug_assert!(v.len() <= MAX_VALUES);
    Ok(device_spec(&v, false))
}

pub fn decode(v: &Values, alloc: bool) -> Option<Hit> {
    let kind = BufferType::from_raw(v.get(KIND)?)?;
    let buffer = BufferInfo {
        address: v.get(ADDRESS)?,
        size: v.get(SIZE)?,
        page_size: v.all().get(PAGE_SIZE).copied().unwrap_or(0),
        kind,
        unique_id: v.get(UNIQUE_ID)?,
    };
    // tt-metal's TensorMemoryLayout: INTERLEAVED = 0, (SINGLE_BANK = 1,) then the sharded
    // layouts.
    let sharded = alloc && v.get(MEMORY_LAYOUT).is_some_and(|l| l >= 2);
    Some(Hit::Buffer {
        alloc,
        device: v.get(DEVICE)?,
        buffer,
        sharded,
    })
}
