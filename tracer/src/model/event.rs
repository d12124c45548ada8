//! Decoded events: what the ledger consumes, live or replayed from a recording.
use serde::{Deserialize, Serialize};

use super::Site;

/// tt-metal's `BufferType`, in its enum order (the raw value read from the runtime).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum BufferType {
    Dram,
    L1,
    SystemMemory,
    L1Small,
    Trace,
}

impl BufferType {
    pub const ALL: [BufferType; 5] = [
        BufferType::Dram,
        BufferType::L1,
        BufferType::L1Small,
        BufferType::Trace,
        BufferType::SystemMemory,
    ];

    pub fn from_raw(raw: u64) -> Option<Self> {
        Some(match raw {
            0 => Self::Dram,
            1 => Self::L1,
            2 => Self::SystemMemory,
            3 => Self::L1Small,
            4 => Self::Trace,
            _ => return None,
        })
    }

    /// From the name tt-metal prints (`DRAM`, `L1`, ...), given at least its first 8 bytes.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| {
            let full = t.name();
            name == full || (name.len() == 8 && full.len() > 8 && full.starts_with(name))
        })
    }

    pub fn index(self) -> usize {
        self as usize
    }

    /// The name used in event lines and JSON keys.
    pub fn name(self) -> &'static str {
        match self {
            Self::Dram => "DRAM",
            Self::L1 => "L1",
            Self::SystemMemory => "SYSTEM_MEMORY",
            Self::L1Small => "L1_SMALL",
            Self::Trace => "TRACE",
        }
    }
}

/// The device a buffer belongs to: a single chip, or a mesh spanning several chips.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceRef {
    /// Address of the runtime's device object (identifies it within one process).
    pub handle: u64,
    /// Physical chip ids (`Device::id()`), in the mesh's order. One entry for a chip.
    pub chips: Vec<i32>,
    pub mesh: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BufferInfo {
    /// Device address; what event lines call `buffer_id` (identical on every chip of a mesh).
    pub address: u64,
    /// Bytes the program asked for (`Buffer::size()`).
    pub size: u64,
    pub page_size: u64,
    pub kind: BufferType,
    pub unique_id: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum EventKind {
    /// A traced process appeared (launched, forked or attached).
    ProcessStart {
        command: String,
    },
    Alloc {
        device: DeviceRef,
        buffer: BufferInfo,
    },
    Free {
        device: DeviceRef,
        buffer: BufferInfo,
    },
    /// A device or mesh closed: its allocator is reset without per-buffer frees.
    DeviceClose {
        device: DeviceRef,
    },
    /// An allocator bank manager was built for a buffer type: its bank count, the alignment of
    /// a page, and the granularity each bank's share is rounded up to.
    BankGeometry {
        kind: BufferType,
        banks: u32,
        alignment: u32,
        granularity: u32,
    },
    ProcessExit {
        code: Option<i32>,
    },
    /// A chip or mesh is being opened: its chips, and a mesh's rows x columns when known.
    DeviceOpen {
        device: DeviceRef,
        shape: Option<(u32, u32)>,
    },
    /// The device allocator refused an allocation (tt-metal threw "Out of Memory"); the values
    /// are the ones tt-metal put in its message.
    OutOfMemory {
        refusal: Refusal,
    },
    /// The tracer attached to a process that was already running: buffers allocated before
    /// this moment were not seen. `seeded_from` names the runtime state the live totals are
    /// seeded from (followed by [`EventKind::Seed`] events); `None` means the ledger counts
    /// only what happens after the attach.
    Attached {
        seeded_from: Option<String>,
    },
    /// Bytes (`Buffer::size()` sums) of `kind` the process held on `chip` at the attach,
    /// read from the runtime's own bookkeeping.
    Seed {
        chip: i32,
        kind: BufferType,
        requested: u64,
    },
    /// The buffer allocated next with this device object and unique id is sharded: the
    /// allocator reserves `pages_per_bank` aligned pages for it in every bank of its type.
    /// (Its own event, before the `Alloc`, so recordings of older tracers read unchanged.)
    ShardFootprint {
        device: u64,
        unique_id: u64,
        pages_per_bank: u64,
    },
    /// A program's circular buffers were placed on a device (the program registered with it):
    /// they hold L1 there until the program is released.
    CircularBuffers {
        device: DeviceRef,
        /// The program object (identifies it within the process).
        program: u64,
        buffers: Vec<CircularBuffer>,
    },
    /// The runtime refused a program: its circular buffers would overlap an L1 buffer.
    CircularBufferClash {
        clash: CbClash,
    },
    /// A program left a device (it was destroyed): its circular buffers there are gone.
    ProgramReleased {
        device: DeviceRef,
        program: u64,
    },
    /// Who asks for the buffer allocated next with this device object and unique id (its own
    /// event before the `Alloc`, like [`EventKind::ShardFootprint`]).
    AllocationSite {
        device: u64,
        unique_id: u64,
        site: Site,
    },
    /// A buffer the process held when tracer read its memory (`snapshot`, the seed of a mid-run
    /// attach): live, allocated before tracer looked (not counted as an allocation). A sharded
    /// one is announced by a [`EventKind::ShardFootprint`] first, like an `Alloc`.
    Held {
        device: DeviceRef,
        buffer: BufferInfo,
    },
    /// A program the process had placed on a chip when tracer read its memory (`snapshot`, the
    /// seed of a mid-run attach), with its circular buffers there: live, placed before tracer
    /// looked (not counted as placed). Keyed like [`EventKind::CircularBuffers`]: a later
    /// `ProgramReleased` of it releases them, a later placement of it replaces them.
    HeldCircularBuffers {
        device: DeviceRef,
        program: u64,
        buffers: Vec<CircularBuffer>,
    },
}

/// A rectangle of cores, corners included (tt-metal's `CoreRange`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct CoreRange {
    pub start: (u32, u32),
    pub end: (u32, u32),
}

impl CoreRange {
    pub fn cores(&self) -> u64 {
        let w = u64::from(self.end.0.saturating_sub(self.start.0)) + 1;
        let h = u64::from(self.end.1.saturating_sub(self.start.1)) + 1;
        w * h
    }

    /// `(x0,y0)-(x1,y1)`, as tt-metal prints core ranges.
    pub fn describe(&self) -> String {
        format!(
            "({},{})-({},{})",
            self.start.0, self.start.1, self.end.0, self.end.1
        )
    }
}

/// One circular buffer of a program, on the cores of `cores`: `size` bytes of L1 from
/// `address` on each of them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CircularBuffer {
    pub address: u64,
    /// Bytes per core.
    pub size: u64,
    /// Backed by an L1 buffer the program was given (that buffer is counted as L1 already).
    pub global: bool,
    pub cores: Vec<CoreRange>,
    /// The probe could copy only part of the core range list (more ranges than it carries).
    pub cut: bool,
}

impl CircularBuffer {
    pub fn cores(&self) -> u64 {
        self.cores.iter().map(CoreRange::cores).sum()
    }
}

/// What the runtime's "circular buffers clash with L1 buffers" refusal says.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CbClash {
    /// The program's id as the runtime prints it.
    pub program: u64,
    /// The cores, when the runtime's text of them could be read and parsed.
    pub core_range: Option<CoreRange>,
    /// The runtime's own text of the core range (its first 32 characters).
    pub core_range_text: String,
    /// Address of the lowest L1 buffer on those cores (L1 buffers grow down from the top).
    pub l1_buffer_address: u64,
    /// Where the program's CB region would end (CBs grow up from the L1 base).
    pub cb_region_end: u64,
}

/// What an out-of-memory message of the allocator says.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refusal {
    pub kind: BufferType,
    /// Bytes asked for (the buffer's size as the allocator saw it).
    pub requested: u64,
    pub banks: u32,
    /// Bytes each bank would have had to hold.
    pub per_bank: u64,
    pub bank_size: u64,
    /// Bytes already allocated in each bank, free in each bank, largest free block.
    pub allocated_per_bank: u64,
    pub free_per_bank: u64,
    pub largest_free: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    pub ts_ns: u64,
    pub pid: u32,
    pub kind: EventKind,
}
