//! The kinds of probe. Each kind's file both builds its slot (what the eBPF program reads, in
//! which order) and decodes a hit (what those values mean), with one set of named positions
//! between the two: a value is never read back by a bare index.
pub mod banks;
pub mod buffer;
pub mod cb;
pub mod device;
pub mod geometry;
pub mod refusal;

use super::{types::Role, ProbePlan};
use crate::model::{BufferInfo, BufferType, CbClash, CircularBuffer, Geometry, Refusal};
use tracer_common::SlotSpec;

/// The values one probe hit read, with which of them could be read.
pub struct Values<'a> {
    values: &'a [u64],
    valid: u16,
    /// The array a tailed slot copied after its values.
    tail: Option<cb::Tail<'a>>,
}

impl<'a> Values<'a> {
    /// `n`: how many values the slot reads (the rest of `values` is not the probe's).
    pub fn new(values: &'a [u64], n: usize, valid: u16) -> Self {
        Self {
            values: &values[..n.min(values.len())],
            valid,
            tail: None,
        }
    }

    /// The array a tailed slot copied, if this hit has one.
    pub fn tail(&self) -> Option<cb::Tail<'a>> {
        self.tail
    }

    pub fn with_tail(mut self, bytes: &'a [u8], total: u32) -> Self {
        self.tail = Some(cb::Tail { bytes, total });
        self
    }

    /// Value `i`, if the probe read it.
    pub fn get(&self, i: usize) -> Option<u64> {
        (i < self.values.len() && self.valid & (1 << i) != 0).then(|| self.values[i])
    }

    pub fn all(&self) -> &[u64] {
        self.values
    }

    pub fn valid(&self) -> u16 {
        self.valid
    }
}

/// What a probe hit means, before its device object is resolved to chips.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Hit {
    /// A buffer got its address (`alloc`), or is about to be freed.
    Buffer {
        alloc: bool,
        device: u64,
        buffer: BufferInfo,
        /// Its `TensorMemoryLayout` is one of the sharded ones.
        sharded: bool,
        /// A sharded buffer's pages per shard (what the allocator reserves in each bank).
        shard_pages: Option<u64>,
    },
    /// A device or mesh object ends its life.
    Close { device: u64 },
    /// A device (`shape` None) or a mesh is being opened.
    Open {
        device: u64,
        shape: Option<(u32, u32)>,
    },
    /// A bank manager was built: the geometry of one buffer type.
    Banks {
        kind: BufferType,
        geometry: Geometry,
    },
    /// The allocator's geometry per buffer type, read from a live allocator.
    Geometry(Vec<(BufferType, Geometry)>),
    /// The allocator refused an allocation.
    Refused(Refusal),
    /// A circular buffer was placed on a device, for the program about to register there.
    CircularBuffer { device: u64, buffer: CircularBuffer },
    /// The runtime refused a program: its CBs would run into an L1 buffer.
    Clash(CbClash),
    /// A program registered with (or left) a device.
    Program {
        device: u64,
        program: u64,
        registered: bool,
    },
    /// A value the kind needs was unreadable or makes no sense.
    Unreadable,
}

/// Decodes a hit of a probe of `role`.
pub fn decode(plan: &ProbePlan, role: Role, v: &Values) -> Hit {
    let hit = match role {
        Role::Alloc => buffer::decode(v, true),
        Role::Free => buffer::decode(v, false),
        Role::DeviceClose | Role::MeshClose => device::decode_close(v),
        Role::DeviceOpen => device::decode_open(v),
        Role::MeshOpen => device::decode_mesh_open(v),
        Role::BanksVector => banks::decode_vector(v),
        Role::BanksMap => banks::decode_map(v),
        Role::OutOfMemory => refusal::decode(v),
        Role::AllocatorGeometry => plan.allocator.as_ref().ok().map(|a| geometry::decode(a, v)),
        Role::CircularBuffer => plan
            .core_ranges
            .as_ref()
            .ok()
            .and_then(|l| cb::decode_allocate(l, v)),
        Role::ProgramRegister => cb::decode_program(v, true),
        Role::ProgramUnregister => cb::decode_program(v, false),
        Role::CircularBufferClash => cb::decode_clash(v),
    };
    hit.unwrap_or(Hit::Unreadable)
}

/// What the eBPF program reads at slot `slot`'s hits: the planned spec; a free's also says
/// what it carries in processes whose buffers are known by object ([`buffer::free_spec`]).
pub fn slot_spec(plan: &ProbePlan, slot: usize) -> SlotSpec {
    let p = &plan.probes[slot];
    let spec = if p.role == Role::Free {
        buffer::free_spec(&p.spec, &plan.layout)
    } else {
        p.spec
    };
    super::window::mark_window_values(spec)
}

/// A value as the probe's path reads it: `width` bytes, zero-extended. Slots with
/// [`tracer_common::SLOT_WINDOW_VALUES`] leave this to userspace; for the others it changes nothing.
pub fn narrowed(v: u64, width: u8) -> u64 {
    match width {
        1..=7 => v & ((1u64 << (8 * u32::from(width))) - 1),
        _ => v,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn narrowing_keeps_the_fields_own_bytes() {
        let word = 0x1122_3344_5566_7788;
        assert_eq!(narrowed(word, 1), 0x88);
        assert_eq!(narrowed(word, 2), 0x7788);
        assert_eq!(narrowed(word, 4), 0x5566_7788);
        assert_eq!(narrowed(word, 6), 0x3344_5566_7788);
        assert_eq!(narrowed(word, 8), word);
        assert_eq!(narrowed(word, 0), word);
    }
}
