//! What a probe plan is: the probed functions, their roles, and where each value sits.
use std::path::PathBuf;

use tracer_common::SlotSpec;

use crate::runtime::{
    allocator::AllocatorLayout, calibrate::Layout, core_ranges::CoreRangeLayout, held::HeldLayout,
    programs::ProgramLayout,
};

/// What a probed function means to the ledger.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// `GraphTracker::track_allocate(const Buffer*)`: a buffer got its address.
    Alloc,
    /// `GraphTracker::track_deallocate(Buffer*)`: a buffer is about to be freed.
    Free,
    /// `Device::close()`.
    DeviceClose,
    /// `MeshDevice::close()`.
    MeshClose,
    /// `BankManager(BufferType const&, std::vector<long> const& offsets, ..., alignment, ...)`.
    BanksVector,
    /// `BankManager(BufferType const&, std::unordered_map<..> const& offsets, ..., alignment, ...)`.
    BanksMap,
    /// `Device::initialize(...)`: a chip is being opened.
    DeviceOpen,
    /// `MeshDevice::initialize(...)`: a mesh is being opened (its chips are already known).
    MeshOpen,
    /// The `tt_throw` of "Out of Memory" inside `BankManager::allocate_buffer` (an
    /// instruction, not a function entry): the allocator refused an allocation.
    OutOfMemory,
    /// `AllocatorImpl::allocate_buffer(Buffer*)`: reads the allocator's geometry per buffer
    /// type (see runtime/allocator.rs). Attached only for processes attached mid-run, and
    /// removed once they have reported.
    AllocatorGeometry,
    /// `GraphTracker::track_allocate_cb(...)`: a circular buffer placed on a device.
    CircularBuffer,
    /// `Device::register_program(ProgramImpl*)`: the CBs just placed belong to this program.
    ProgramRegister,
    /// `Device::unregister_program(ProgramImpl*)`: the program is destroyed; its CBs go.
    ProgramUnregister,
    /// The `tt_throw` of "... clash with L1 buffers ..." in
    /// `ProgramImpl::validate_circular_buffer_region` (an instruction): a program refused.
    CircularBufferClash,
}

#[derive(Clone, Debug)]
pub struct PlannedProbe {
    pub role: Role,
    pub symbol: String,
    pub file_offset: u64,
    pub spec: SlotSpec,
    /// Where inside `symbol` the probe sits and why (empty: at its entry).
    pub detail: String,
}

#[derive(Clone, Debug)]
pub struct ProbePlan {
    pub library: PathBuf,
    pub build_id: Option<String>,
    pub layout: Layout,
    /// Slot number == index (the attach cookie).
    pub probes: Vec<PlannedProbe>,
    /// Link-time addresses of the objects' vtable pointers (vtable symbol + 16).
    pub device_vptr: Option<u64>,
    pub mesh_vptr: Option<u64>,
    /// Things that work in a degraded way with this library.
    pub warnings: Vec<String>,
    /// Why allocation call stacks are (not) collected, as found in this library.
    pub call_stacks: String,
    /// Paths to the allocator geometry in a live process (read after a mid-run attach), or
    /// which symbol or pattern failed to calibrate.
    pub allocator: Result<AllocatorLayout, String>,
    /// Paths from a device object to the buffers its allocators hold (what a process holds
    /// is read from its memory: `snapshot`, the seed of a mid-run attach), or why not.
    pub held: Result<HeldLayout, String>,
    /// How core ranges are laid out (circular buffers are tracked with it), or why not.
    pub core_ranges: Result<CoreRangeLayout, String>,
    /// Paths from a chip's device object to its registered programs and their circular
    /// buffers (read with `held`: the CBs of programs placed before a mid-run attach), or why
    /// not.
    pub programs: Result<ProgramLayout, String>,
    /// Set by `attach` before the probes go live: the processes may have opened their devices
    /// already, so the [`Role::AllocatorGeometry`] probe is attached too.
    pub mid_run: bool,
}

impl ProbePlan {
    /// The library as reports and recordings name it.
    pub fn traced(&self) -> crate::model::TracedLibrary {
        crate::model::TracedLibrary {
            library: self.library.display().to_string(),
            build_id: self.build_id.clone(),
            layout: self.layout.describe(),
            call_stacks: self.call_stacks.clone(),
        }
    }

    pub fn role(&self, slot: u32) -> Option<Role> {
        self.probes.get(slot as usize).map(|p| p.role)
    }
}
