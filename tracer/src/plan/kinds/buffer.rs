//! `GraphTracker::track_allocate` / `track_deallocate(Buffer*)`: one buffer's fields.
use anyhow::Result;
use tracer_common::{SlotSpec, MAX_VALUES, SLOT_BY_OBJECT};

use super::{Hit, Values};
use crate::{
    model::{BufferInfo, BufferType},
    plan::slot::{device_spec, path, saved_register},
    runtime::{calibrate::Layout, disasm::Chain},
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
/// Shard parameters, where calibrated: their presence flag, then the shard's and the page's
/// (height, width) as two 4-byte halves of one 8-byte read each.
pub const SHARD_PRESENT: usize = 7;
pub const SHARD_SHAPE: usize = 8;
pub const PAGE_SHAPE: usize = 9;

/// One 8-byte read covering a (height, width) pair of adjacent 4-byte fields.
fn pair(c: &[Chain; 2]) -> Option<Chain> {
    let (h, w) = (&c[0], &c[1]);
    let (hl, wl) = (h.offsets.last()?, w.offsets.last()?);
    let same_object = h.offsets[..h.offsets.len() - 1] == w.offsets[..w.offsets.len() - 1];
    (same_object && *wl == hl + 4).then(|| Chain {
        offsets: h.offsets.clone(),
        width: 8,
    })
}

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
        let shapes = b
            .shard
            .as_ref()
            .and_then(|s| Some((s, pair(&s.shard)?, pair(&s.page)?)));
        if let Some((s, shard, page)) = shapes {
            v.push(path(1, &s.present)?);
            v.push(path(1, &shard)?);
            v.push(path(1, &page)?);
        }
    }
    debug_assert!(v.len() <= MAX_VALUES);
    Ok(device_spec(&v, false))
}

/// A free: the allocation's reads, plus [`SLOT_BY_OBJECT`]: in a process whose every buffer
/// userspace knows by its object (launched, or seeded from its memory), the hit carries that
/// object alone, the base of the window (the `Buffer*` itself, or on releases where `Buffer` is
/// a handle, its implementation object: handles of one buffer differ between its allocation
/// and its free), and the decoder matches it to the allocation (each user-memory read is the
/// costliest part of a hit). Where the object is behind a pointer and calibration found a
/// callee-saved register the free's only caller keeps it in (`runtime/free_object.rs`), the
/// window starts from that register: such a free reads no memory, and a full one only the
/// window.
pub fn free_spec(alloc: &SlotSpec, layout: &Layout) -> SlotSpec {
    let kept = layout.free_object.as_ref().ok().map(|f| f.register);
    // The register holds the `BufferImpl*`: the window must be that one hop from the `Buffer*`.
    let pimpl = layout.buffer.pimpl();
    let behind_pimpl = alloc.window.steps == 1 && pimpl == Some(alloc.window.offsets[0]);
    let mut spec = *alloc;
    if let (Some(register), true) = (kept.and_then(saved_register), behind_pimpl) {
        spec.window = register;
    }
    spec.flags |= SLOT_BY_OBJECT;
    spec
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
    let shard_pages = if sharded { pages_per_shard(v) } else { None };
    Some(Hit::Buffer {
        alloc,
        device: v.get(DEVICE)?,
        buffer,
        sharded,
        shard_pages,
    })
}

/// `(shard_h / page_h) * (shard_w / page_w)`, as `Buffer::num_dev_pages` computes it, when the
/// buffer has shard parameters.
fn pages_per_shard(v: &Values) -> Option<u64> {
    if v.get(SHARD_PRESENT)? & 0xff != 1 {
        return None;
    }
    let halves = |x: u64| (x & 0xffff_ffff, x >> 32);
    let (sh, sw) = halves(v.get(SHARD_SHAPE)?);
    let (ph, pw) = halves(v.get(PAGE_SHAPE)?);
    if ph == 0 || pw == 0 {
        return None;
    }
    Some((sh / ph) * (sw / pw)).filter(|p| *p > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(layout: u64, present: u64, shard: (u64, u64), page: (u64, u64)) -> Vec<u64> {
        vec![
            0x1000,
            1 << 20,
            32768,
            2048,
            1,
            9,
            layout,
            present,
            shard.0 | shard.1 << 32,
            page.0 | page.1 << 32,
        ]
    }

    #[test]
    fn pages_per_shard_as_num_dev_pages_computes_them() {
        // Block sharded, 64x64 shards of 32x32 tiles: 4 pages per shard.
        let v = values(4, 1, (64, 64), (32, 32));
        let hit = decode(&Values::new(&v, 10, 0x3ff), true).unwrap();
        let Hit::Buffer {
            sharded,
            shard_pages,
            ..
        } = hit
        else {
            panic!()
        };
        assert!(sharded);
        assert_eq!(shard_pages, Some(4));
        // No shard parameters: no footprint (the summary warns instead).
        let v = values(2, 0, (64, 64), (32, 32));
        let Hit::Buffer { shard_pages, .. } = decode(&Values::new(&v, 10, 0x3ff), true).unwrap()
        else {
            panic!()
        };
        assert_eq!(shard_pages, None);
        // Interleaved: neither.
        let v = values(0, 1, (64, 64), (32, 32));
        let Hit::Buffer {
            sharded,
            shard_pages,
            ..
        } = decode(&Values::new(&v, 10, 0x3ff), true).unwrap()
        else {
            panic!()
        };
        assert!(!sharded && shard_pages.is_none());
    }
}
