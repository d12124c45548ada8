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
use tracer_common::{SlotSpec, SLOT_WINDOW_VALUES};

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
    mark_window_values(spec)
}

/// Sets [`SLOT_WINDOW_VALUES`] on a slot whose every value is one load in its window, within
/// one 8-byte word of it. The window starts on a word boundary of the object (moved down to
/// one), so a naturally aligned field never straddles two words.
fn mark_window_values(spec: SlotSpec) -> SlotSpec {
    let n = (spec.nfields as usize).min(tracer_common::MAX_VALUES);
    let plain = spec.fields[..n]
        .iter()
        .all(|f| f.arg == tracer_common::ARG_WINDOW && f.steps == 1);
    if n == 0 || !plain || spec.window_len == 0 || spec.tail != 0 {
        return spec;
    }
    let mut aligned = spec;
    let shift = spec.window_off.rem_euclid(8);
    aligned.window_off -= shift;
    aligned.window_len += shift as u32;
    for f in &mut aligned.fields[..n] {
        f.offsets[0] += shift;
    }
    let within_words = aligned.fields[..n].iter().all(|f| {
        let width = if f.width == 0 || f.width > 8 {
            8
        } else {
            f.width
        };
        (f.offsets[0] & 7) + i32::from(width) <= 8
    });
    if !within_words || aligned.window_len as usize > tracer_common::WINDOW_BYTES {
        return spec;
    }
    aligned.flags |= SLOT_WINDOW_VALUES;
    aligned
}

/// A value as the probe's path reads it: `width` bytes, zero-extended. Slots with
/// [`SLOT_WINDOW_VALUES`] leave this to userspace; for the others it changes nothing.
pub fn narrowed(v: u64, width: u8) -> u64 {
    match width {
        1..=7 => v & ((1u64 << (8 * u32::from(width))) - 1),
        _ => v,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracer_common::{FieldPath, ARG_WINDOW, MAX_STEPS};

    fn in_window(off: i32, width: u8, steps: u8) -> FieldPath {
        let mut offsets = [0; MAX_STEPS];
        offsets[0] = off;
        FieldPath {
            arg: ARG_WINDOW,
            steps,
            width,
            _pad: 0,
            offsets,
        }
    }

    fn windowed(window_off: i32, window_len: u32, fields: &[FieldPath]) -> SlotSpec {
        let mut s = SlotSpec {
            nfields: fields.len() as u32,
            window_off,
            window_len,
            ..Default::default()
        };
        s.fields[..fields.len()].copy_from_slice(fields);
        s
    }

    #[test]
    fn word_aligned_window_values_are_flagged_unchanged() {
        let s = windowed(
            0x10,
            0x10,
            &[in_window(0, 8, 1), in_window(8, 4, 1), in_window(0xc, 4, 1)],
        );
        let m = mark_window_values(s);
        assert_ne!(m.flags & SLOT_WINDOW_VALUES, 0);
        assert_eq!((m.window_off, m.window_len), (0x10, 0x10));
        assert_eq!(m.fields[2].offsets[0], 0xc);
    }

    #[test]
    fn a_window_starting_inside_a_word_moves_down_to_it() {
        // Object offsets 0x14 (4 bytes) and 0x18 (8 bytes).
        let s = windowed(0x14, 0xc, &[in_window(0, 4, 1), in_window(4, 8, 1)]);
        let m = mark_window_values(s);
        assert_ne!(m.flags & SLOT_WINDOW_VALUES, 0);
        assert_eq!((m.window_off, m.window_len), (0x10, 0x10));
        assert_eq!((m.fields[0].offsets[0], m.fields[1].offsets[0]), (4, 8));
    }

    #[test]
    fn a_value_across_two_words_keeps_the_general_path() {
        let s = windowed(0, 0x10, &[in_window(4, 8, 1), in_window(0, 4, 1)]);
        let m = mark_window_values(s);
        assert_eq!(m.flags & SLOT_WINDOW_VALUES, 0);
        assert_eq!(m.fields[0].offsets[0], 4);
    }

    #[test]
    fn a_value_behind_a_pointer_keeps_the_general_path() {
        let s = windowed(0, 0x10, &[in_window(0, 8, 1), in_window(8, 8, 2)]);
        assert_eq!(mark_window_values(s).flags & SLOT_WINDOW_VALUES, 0);
        let tailed = SlotSpec {
            tail: 1,
            ..windowed(0, 8, &[in_window(0, 8, 1)])
        };
        assert_eq!(mark_window_values(tailed).flags & SLOT_WINDOW_VALUES, 0);
    }

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
