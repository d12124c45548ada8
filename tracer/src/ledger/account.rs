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
    /// When each high-water mark was first reached (ns, session clock; 0 = never).
    pub peak_requested_ns: Amounts,
    pub peak_reserved_ns: Amounts,
}

impl DeviceAccount {
    pub(super) fn add(&mut self, kind: BufferType, requested: u64, reserved: u64, at_ns: u64) {
        let i = kind.index();
        self.live_buffers += 1;
        self.requested.0[i] += requested;
        self.reserved.0[i] += reserved;
        // Strictly greater: the time is when the mark was FIRST reached.
        if self.requested.0[i] > self.peak_requested.0[i] {
            self.peak_requested.0[i] = self.requested.0[i];
            self.peak_requested_ns.0[i] = at_ns;
        }
        if self.reserved.0[i] > self.peak_reserved.0[i] {
            self.peak_reserved.0[i] = self.reserved.0[i];
            self.peak_reserved_ns.0[i] = at_ns;
        }
    }

    pub(super) fn remove(&mut self, kind: BufferType, requested: u64, reserved: u64) {
        let i = kind.index();
        self.live_buffers = self.live_buffers.saturating_sub(1);
        self.requested.0[i] = self.requested.0[i].saturating_sub(requested);
        self.reserved.0[i] = self.reserved.0[i].saturating_sub(reserved);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peak_time_is_when_the_mark_was_first_reached() {
        let mut a = DeviceAccount::default();
        a.add(BufferType::L1, 100, 200, 10);
        a.add(BufferType::L1, 50, 100, 20);
        a.remove(BufferType::L1, 50, 100);
        // Back to the same height later: the peak keeps its first time.
        a.add(BufferType::L1, 50, 100, 30);
        assert_eq!(a.peak_reserved.get(BufferType::L1), 300);
        assert_eq!(a.peak_reserved_ns.get(BufferType::L1), 20);
        assert_eq!(a.peak_requested_ns.get(BufferType::L1), 20);
        a.add(BufferType::L1, 1, 1, 40);
        assert_eq!(a.peak_reserved.get(BufferType::L1), 301);
        assert_eq!(a.peak_reserved_ns.get(BufferType::L1), 40);
    }

    #[test]
    fn peak_times_are_per_type() {
        let mut a = DeviceAccount::default();
        a.add(BufferType::Dram, 8, 8, 5);
        a.add(BufferType::L1, 4, 4, 7);
        a.remove(BufferType::Dram, 8, 8);
        assert_eq!(a.peak_reserved_ns.get(BufferType::Dram), 5);
        assert_eq!(a.peak_reserved_ns.get(BufferType::L1), 7);
        assert_eq!(a.peak_reserved_ns.get(BufferType::Trace), 0);
        assert_eq!(a.reserved.get(BufferType::Dram), 0);
    }
}
