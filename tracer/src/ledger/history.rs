//! What happened besides allocations: device lifecycles, refused allocations, and the
//! buffers that made each chip's high-water mark.
use super::{BufferType, CbClash, DeviceRef, HeldBuffer, ProcessLedger, Refusal};
use crate::model::CoreRange;

/// A device or mesh opened or closed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lifecycle {
    pub at_ns: u64,
    pub device: DeviceRef,
    pub opened: bool,
    /// Mesh rows x columns (opens of meshes, when the runtime's layout gave them).
    pub shape: Option<(u32, u32)>,
    /// Closes: buffers the program never deallocated that the close dropped.
    pub dropped: usize,
}

/// Refusals whose holders are kept: a program that retries in a loop must not make the
/// ledger copy its whole live set each time.
pub const OOM_WITH_HOLDERS: usize = 32;

/// An allocation the device allocator refused, and the ledger at that moment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OomRecord {
    pub at_ns: u64,
    pub refusal: Refusal,
    /// The device whose allocator refused: the one whose held bytes of that type equal the
    /// allocator's own count in the message (`allocated per bank x banks`).
    pub device: Option<DeviceRef>,
    /// False when no device's ledger matched the allocator's count (the device is then the
    /// most recently opened one, or the largest holder).
    pub matched: bool,
    /// Per chip of that device: every buffer of that type it held, largest first (empty after
    /// the first [`OOM_WITH_HOLDERS`] refusals).
    pub holders: Vec<(i32, Vec<HeldBuffer>)>,
    /// For an L1 refusal: where the live programs' circular buffers end, per core range, on
    /// the device's first chip (L1 buffers grow down towards that region).
    pub cb_region_tops: Vec<(CoreRange, u64)>,
}

/// A program the runtime refused because its circular buffers would overlap an L1 buffer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClashRecord {
    pub at_ns: u64,
    pub clash: CbClash,
    /// The live L1 buffer(s) at the address the runtime named (one per device object holding
    /// one there): who is in the way.
    pub holders: Vec<HeldBuffer>,
}

/// A chip's high-water mark for one buffer type.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Peak {
    pub reserved: u64,
    pub at_ns: u64,
    /// The buffers held at that moment, largest first.
    pub holders: Vec<HeldBuffer>,
    /// The holders are taken lazily, just before the level first drops after a new peak
    /// (one scan per rise, not per allocation).
    pending: bool,
}

impl ProcessLedger {
    /// Live buffers of `kind` on `chip`, largest reservation first.
    pub fn holders(&self, chip: i32, kind: BufferType) -> Vec<HeldBuffer> {
        let mut v: Vec<HeldBuffer> = self
            .live
            .values()
            .filter(|h| h.buffer.kind == kind && h.device.chips.contains(&chip))
            .cloned()
            .collect();
        v.sort_by(|a, b| {
            b.reserved
                .cmp(&a.reserved)
                .then(a.allocated_ns.cmp(&b.allocated_ns))
                .then(a.buffer.unique_id.cmp(&b.buffer.unique_id))
        });
        v
    }

    pub(super) fn new_peak(&mut self, chip: i32, kind: BufferType, at_ns: u64) {
        let reserved = self.devices.get(&chip).map_or(0, |d| d.reserved.get(kind));
        let p = self.peaks.entry((chip, kind)).or_default();
        p.reserved = reserved;
        p.at_ns = at_ns;
        if !p.pending {
            self.pending_peaks += 1;
        }
        p.pending = true;
    }

    /// Records the holders of a pending peak (the live set is still the peak's).
    pub(super) fn settle_peak(&mut self, chip: i32, kind: BufferType) {
        if !self.peaks.get(&(chip, kind)).is_some_and(|p| p.pending) {
            return;
        }
        let holders = self.holders(chip, kind);
        if let Some(p) = self.peaks.get_mut(&(chip, kind)) {
            p.holders = holders;
            p.pending = false;
            self.pending_peaks -= 1;
        }
    }

    pub(super) fn settle_all_peaks(&mut self) {
        let keys: Vec<_> = self.peaks.keys().copied().collect();
        for (chip, kind) in keys {
            self.settle_peak(chip, kind);
        }
    }

    pub(super) fn opened(&mut self, device: &DeviceRef, shape: Option<(u32, u32)>, at_ns: u64) {
        self.lifecycle.push(Lifecycle {
            at_ns,
            device: device.clone(),
            opened: true,
            shape,
            dropped: 0,
        });
    }

    pub(super) fn closed(&mut self, device: &DeviceRef, at_ns: u64, dropped: usize) {
        self.lifecycle.push(Lifecycle {
            at_ns,
            device: device.clone(),
            opened: false,
            shape: None,
            dropped,
        });
    }

    /// Devices opened and not closed since, most recent last.
    fn open_devices(&self) -> Vec<&DeviceRef> {
        let mut open: Vec<&DeviceRef> = Vec::new();
        for l in &self.lifecycle {
            open.retain(|d| d.handle != l.device.handle);
            if l.opened {
                open.push(&l.device);
            }
        }
        open
    }

    pub(super) fn clashed(&mut self, clash: &CbClash, at_ns: u64) {
        let mut holders: Vec<HeldBuffer> = self
            .live
            .values()
            .filter(|h| {
                h.buffer.kind == BufferType::L1 && h.buffer.address == clash.l1_buffer_address
            })
            .cloned()
            .collect();
        holders.sort_by_key(|h| (h.allocated_ns, h.buffer.unique_id));
        self.clashes.push(ClashRecord {
            at_ns,
            clash: clash.clone(),
            holders,
        });
    }

    pub(super) fn refused(&mut self, r: &Refusal, at_ns: u64) {
        let target = r.allocated_per_bank * u64::from(r.banks);
        // Bytes of that type held per device object (each has its own allocator).
        let mut per_device: Vec<(DeviceRef, u64)> = Vec::new();
        for h in self.live.values().filter(|h| h.buffer.kind == r.kind) {
            match per_device
                .iter_mut()
                .find(|(d, _)| d.handle == h.device.handle)
            {
                Some((_, sum)) => *sum += h.reserved,
                None => per_device.push((h.device.clone(), h.reserved)),
            }
        }
        let matching: Vec<&DeviceRef> = per_device
            .iter()
            .filter(|(_, sum)| *sum == target)
            .map(|(d, _)| d)
            .collect();
        let (device, matched) = if matching.len() == 1 {
            (Some(matching[0].clone()), true)
        } else {
            let open = self.open_devices();
            let fallback = open
                .iter()
                .rev()
                .find(|d| d.mesh)
                .or(open.last())
                .map(|d| (*d).clone())
                .or_else(|| {
                    per_device
                        .iter()
                        .max_by_key(|(_, s)| *s)
                        .map(|(d, _)| d.clone())
                });
            // With nothing held and nothing to compare, the only open device is still a
            // certain answer.
            let certain = target == 0 && per_device.is_empty() && open.len() == 1;
            (fallback, certain)
        };
        let holders = device
            .as_ref()
            .filter(|_| self.ooms.len() < OOM_WITH_HOLDERS)
            .map(|d| {
                d.chips
                    .iter()
                    .map(|c| (*c, self.holders(*c, r.kind)))
                    .collect()
            })
            .unwrap_or_default();
        let cb_region_tops = device
            .as_ref()
            .filter(|_| r.kind == BufferType::L1)
            .and_then(|d| d.chips.first())
            .and_then(|c| self.devices.get(c))
            .map(|a| a.circular_buffers.region_tops().into_iter().collect())
            .unwrap_or_default();
        self.ooms.push(OomRecord {
            at_ns,
            refusal: r.clone(),
            device,
            matched,
            holders,
            cb_region_tops,
        });
    }
}
