//! Per-chip running totals.
use super::{BufferType, ChipCircularBuffers};

/// Bytes per buffer type, indexed by [`BufferType::index`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Amounts(pub [u64; 5]);

impl Amounts {
    pub fn get(&self, kind: BufferType) -> u64 {
        self.0[kind.index()]
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DeviceAccount {
    pub allocations: u64,
    pub deallocations: u64,
    pub live_buffers: u64,
    pub requested: Amounts,
    pub reserved: Amounts,
    /// High-water marks per type, and when they were reached (ns, session clock).
    pub peak_requested: Amounts,
    pub peak_reserved: Amounts,
    /// Bytes seeded at attach from the runtime's own state, per type (see
    /// [`super::EventKind::Seed`]); they count in `requested` and, lacking a per-bank
    /// footprint, as the same figure in `reserved`.
    pub seeded: Amounts,
    /// Buffers the seed read from the process's own allocators (their bytes are in `seeded`,
    /// and they are live buffers like any other: no `seeded_left`).
    pub seeded_buffers: u64,
    /// What is left of `seeded` after frees of pre-attach buffers and closes.
    pub seeded_left: Amounts,
    /// Frees of buffers allocated before the attach, and their `requested` bytes.
    pub freed_before_attach: u64,
    pub freed_before_attach_bytes: u64,
    /// The L1 the programs' circular buffers hold on this chip.
    pub circular_buffers: ChipCircularBuffers,
}

impl DeviceAccount {
    pub(super) fn add(&mut self, kind: BufferType, requested: u64, reserved: u64) {
        let i = kind.index();
        self.live_buffers += 1;
        self.requested.0[i] += requested;
        self.reserved.0[i] += reserved;
        self.peak_requested.0[i] = self.peak_requested.0[i].max(self.requested.0[i]);
        self.peak_reserved.0[i] = self.peak_reserved.0[i].max(self.reserved.0[i]);
    }

    /// Like `add`, without moving the high-water marks.
    pub(super) fn add_quietly(&mut self, kind: BufferType, requested: u64, reserved: u64) {
        let i = kind.index();
        self.live_buffers += 1;
        self.requested.0[i] += requested;
        self.reserved.0[i] += reserved;
    }

    pub(super) fn seed(&mut self, kind: BufferType, requested: u64) {
        let i = kind.index();
        self.seeded.0[i] += requested;
        self.seeded_left.0[i] += requested;
        self.requested.0[i] += requested;
        self.reserved.0[i] += requested;
        self.peak_requested.0[i] = self.peak_requested.0[i].max(self.requested.0[i]);
        self.peak_reserved.0[i] = self.peak_reserved.0[i].max(self.reserved.0[i]);
    }

    /// Takes a pre-attach buffer off the seeded totals (never below what was seeded).
    pub(super) fn unseed(&mut self, kind: BufferType, requested: u64) {
        let i = kind.index();
        let n = requested.min(self.seeded_left.0[i]);
        self.seeded_left.0[i] -= n;
        self.requested.0[i] = self.requested.0[i].saturating_sub(n);
        self.reserved.0[i] = self.reserved.0[i].saturating_sub(n);
    }

    /// A close reset the allocator: whatever seeded bytes are left are gone too.
    pub(super) fn drop_seed(&mut self) {
        for kind in BufferType::ALL {
            let n = self.seeded_left.get(kind);
            self.unseed(kind, n);
        }
    }

    pub(super) fn remove(&mut self, kind: BufferType, requested: u64, reserved: u64) {
        let i = kind.index();
        self.live_buffers = self.live_buffers.saturating_sub(1);
        self.requested.0[i] = self.requested.0[i].saturating_sub(requested);
        self.reserved.0[i] = self.reserved.0[i].saturating_sub(reserved);
    }
}
