//! Per-chip running totals.
use super::BufferType;

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

    pub(super) fn remove(&mut self, kind: BufferType, requested: u64, reserved: u64) {
        let i = kind.index();
        self.live_buffers = self.live_buffers.saturating_sub(1);
        self.requested.0[i] = self.requested.0[i].saturating_sub(requested);
        self.reserved.0[i] = self.reserved.0[i].saturating_sub(reserved);
    }
}
