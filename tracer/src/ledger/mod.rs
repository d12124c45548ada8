//! The ledger: a pure state machine from [`Event`]s to per-process, per-chip accounts.
//!
//! No I/O happens here; live tracing and offline `report` feed the same code.
mod account;
mod circular;
mod history;
#[cfg(test)]
mod tests;

use std::{collections::BTreeMap, sync::Arc};

pub use crate::model::{
    BufferInfo, BufferType, CbClash, DeviceRef, Event, EventKind, Geometry, Refusal, Site,
};
pub use account::{Amounts, DeviceAccount};
pub use circular::{program_bytes, ChipCircularBuffers};
pub use history::{ClashRecord, Lifecycle, OomRecord, Peak};

/// Why a buffer was still held at the end.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// A device/mesh close dropped it; the program never deallocated it.
    FreedByClose,
    /// The process ended with the device still open.
    Leaked,
    /// The tracer stopped (detach) while the process still held it.
    LiveAtDetach,
}

impl Outcome {
    pub fn name(self) -> &'static str {
        match self {
            Self::FreedByClose => "freed_by_close",
            Self::Leaked => "leaked",
            Self::LiveAtDetach => "live_at_detach",
        }
    }
}

/// A buffer the ledger holds (or held, for outstanding ones).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HeldBuffer {
    pub device: DeviceRef,
    pub buffer: BufferInfo,
    /// Bytes the allocator reserves for it on EACH chip.
    pub reserved: u64,
    pub allocated_ns: u64,
    /// Who allocated it, when the probes could read the caller's Python stack.
    pub site: Option<Arc<Site>>,
}

/// How the ledger of a process attached mid-run treats what happened before the attach.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PreAttach {
    /// Live totals start from the runtime's own state (named).
    Seeded(String),
    /// Only what happens after the attach is counted; frees of earlier buffers are kept apart.
    SinceAttach,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outstanding {
    pub held: HeldBuffer,
    pub outcome: Outcome,
    pub at_ns: u64,
}

#[derive(Clone, Debug, Default)]
pub struct ProcessLedger {
    pub pid: u32,
    pub command: String,
    pub exit_code: Option<i32>,
    pub exited: bool,
    pub devices: BTreeMap<i32, DeviceAccount>,
    pub outstanding: Vec<Outstanding>,
    /// Frees of buffers the ledger never saw allocated (e.g. allocated before attach).
    pub unknown_frees: u64,
    /// Their `requested` bytes, summed over the chips they were on.
    pub unknown_free_bytes: u64,
    /// Programs released from a chip that the ledger never saw placed there (placed before
    /// the tracer attached).
    pub unknown_program_releases: u64,
    /// Set when the tracer attached to the process after it started.
    pub pre_attach: Option<PreAttach>,
    /// Allocations whose reserved size had to fall back to the requested size because the
    /// allocator geometry was not known.
    pub reserved_estimated: u64,
    /// Device and mesh opens and closes, in order.
    pub lifecycle: Vec<Lifecycle>,
    /// Allocations the device allocator refused.
    pub ooms: Vec<OomRecord>,
    /// Programs refused because their circular buffers would overlap L1 buffers.
    pub clashes: Vec<ClashRecord>,
    /// Per (chip, type): when the reserved high-water mark was reached and which buffers held
    /// it.
    pub peaks: BTreeMap<(i32, BufferType), Peak>,
    /// Time of the first event of the process (for relative times).
    pub first_ns: Option<u64>,
    geometry: FastMap<BufferType, Geometry>,
    /// Footprints announced for the next allocation of (device object, unique id).
    shard_pages: FastMap<(u64, u64), u64>,
    /// Sites announced for the next allocation of (device object, unique id).
    sites: FastMap<(u64, u64), Arc<Site>>,
    live: FastMap<(u64, u64), HeldBuffer>,
    /// Live buffers that came from a read of the process's memory ([`EventKind::Held`]), not
    /// from an allocation the probes saw.
    held_keys: rustc_hash::FxHashSet<(u64, u64)>,
    /// When the read of the process's memory ended (0: no such seed).
    pub seed_read_ns: u64,
    /// Buffers both read at the attach and seen allocated by the probes (the allocation raced
    /// with the read; counted once, as an allocation).
    pub seed_raced: u64,
    /// Peaks whose holders are not taken yet: releases skip the peak bookkeeping while there
    /// are none (the common case once a session's high-water marks are set).
    pending_peaks: usize,
}

/// Replaying a recording spends much of its time in these maps; their keys are small integers
/// (addresses, ids) where SipHash's resistance to hostile keys buys nothing.
type FastMap<K, V> = rustc_hash::FxHashMap<K, V>;

impl ProcessLedger {
    /// Every buffer the ledger holds now.
    pub fn live(&self) -> impl Iterator<Item = &HeldBuffer> {
        self.live.values()
    }

    /// The live buffer of `device_handle` with `unique_id`, if the ledger holds it.
    pub fn held(&self, device_handle: u64, unique_id: u64) -> Option<&HeldBuffer> {
        self.live.get(&(device_handle, unique_id))
    }

    fn reserved_for(&mut self, b: &BufferInfo, shard_pages: Option<u64>) -> u64 {
        match self.geometry.get(&b.kind) {
            Some(g) => match shard_pages {
                Some(pages) => sharded_reserved_bytes(pages, b.page_size, *g),
                None => reserved_bytes(b.size, b.page_size, *g),
            },
            None => {
                self.reserved_estimated += 1;
                b.size
            }
        }
    }

    /// Takes a live buffer off the books without counting a deallocation.
    fn forget(&mut self, key: (u64, u64)) {
        if let Some(held) = self.live.remove(&key) {
            for chip in &held.device.chips {
                let acct = self.devices.entry(*chip).or_default();
                acct.remove(held.buffer.kind, held.buffer.size, held.reserved);
            }
        }
    }

    fn release(&mut self, key: (u64, u64), at_ns: u64, outcome: Option<Outcome>) -> bool {
        self.held_keys.remove(&key);
        if self.pending_peaks > 0 {
            let Some(kind) = self.live.get(&key).map(|h| h.buffer.kind) else {
                return false;
            };
            let chips = self.live[&key].device.chips.clone();
            for chip in chips {
                self.settle_peak(chip, kind);
            }
        }
        let Some(held) = self.live.remove(&key) else {
            return false;
        };
        for chip in &held.device.chips {
            let acct = self.devices.entry(*chip).or_default();
            acct.remove(held.buffer.kind, held.buffer.size, held.reserved);
            if outcome.is_none() {
                acct.deallocations += 1;
            }
        }
        if let Some(outcome) = outcome {
            self.outstanding.push(Outstanding {
                held,
                outcome,
                at_ns,
            });
        }
        true
    }
}

/// Bytes the device allocator holds for a sharded buffer: `pages` aligned pages (one shard) in
/// EVERY bank of its type, whichever cores the shards sit on (the banks move in lockstep).
pub fn sharded_reserved_bytes(pages: u64, page_size: u64, g: Geometry) -> u64 {
    let banks = u64::from(g.banks.max(1));
    let align = u64::from(g.alignment.max(1));
    let granule = u64::from(g.granularity.max(1));
    (pages * page_size.next_multiple_of(align)).next_multiple_of(granule) * banks
}

/// Bytes the device allocator holds for a buffer, summed over all banks of its type.
///
/// tt-metal spreads `ceil(size / page_size)` pages round-robin over the banks, so every bank
/// reserves `ceil(pages / banks)` aligned pages, rounded up to the allocator's granularity; the
/// allocator reports per-bank totals times the number of banks (`get_memory_view`).
pub fn reserved_bytes(size: u64, page_size: u64, g: Geometry) -> u64 {
    let banks = u64::from(g.banks.max(1));
    let align = u64::from(g.alignment.max(1));
    let granule = u64::from(g.granularity.max(1));
    let per_bank = if page_size == 0 {
        size.div_ceil(banks)
    } else {
        size.div_ceil(page_size).div_ceil(banks) * page_size.next_multiple_of(align)
    };
    per_bank.next_multiple_of(granule) * banks
}

#[derive(Clone, Debug, Default)]
pub struct Ledger {
    pub processes: BTreeMap<u32, ProcessLedger>,
}

impl Ledger {
    pub fn new() -> Self {
        Self::default()
    }

    fn process(&mut self, pid: u32) -> &mut ProcessLedger {
        self.processes.entry(pid).or_insert_with(|| ProcessLedger {
            pid,
            ..Default::default()
        })
    }

    pub fn apply(&mut self, ev: &Event) {
        let p = self.process(ev.pid);
        p.first_ns.get_or_insert(ev.ts_ns);
        match &ev.kind {
            EventKind::ProcessStart { command } => {
                if p.command.is_empty() {
                    p.command = command.clone();
                }
            }
            EventKind::BankGeometry {
                kind,
                banks,
                alignment,
                granularity,
            } => {
                // A buffer type with no banks (unused on this chip) says nothing useful.
                if *banks > 0 {
                    p.geometry.insert(
                        *kind,
                        Geometry {
                            banks: *banks,
                            alignment: *alignment,
                            granularity: *granularity,
                        },
                    );
                }
            }
            EventKind::ShardFootprint {
                device,
                unique_id,
                pages_per_bank,
            } => {
                p.shard_pages.insert((*device, *unique_id), *pages_per_bank);
            }
            EventKind::AllocationSite {
                device,
                unique_id,
                site,
            } => {
                p.sites
                    .insert((*device, *unique_id), Arc::new(site.clone()));
            }
            EventKind::Alloc { device, buffer } | EventKind::Held { device, buffer } => {
                let seen = matches!(ev.kind, EventKind::Alloc { .. });
                let pages = p.shard_pages.remove(&(device.handle, buffer.unique_id));
                let reserved = p.reserved_for(buffer, pages);
                let key = (device.handle, buffer.unique_id);
                if p.held_keys.remove(&key) {
                    // Read from the process's memory, and its allocation seen too (it raced
                    // with the read): one buffer, replaced by what the probe saw.
                    p.forget(key);
                    p.seed_raced += 1;
                } else {
                    // The same key twice means we missed the free: drop the stale record.
                    p.release(key, ev.ts_ns, None);
                }
                if !seen {
                    p.held_keys.insert(key);
                    p.seed_read_ns = p.seed_read_ns.max(ev.ts_ns);
                }
                // An allocation the probes saw before the read ended is applied after the
                // seed, out of time order: the seed may hold it already, or it was freed
                // before the read. Either way it sets no high-water mark.
                let peaks = !seen || ev.ts_ns > p.seed_read_ns;
                for chip in &device.chips {
                    let acct = p.devices.entry(*chip).or_default();
                    let before = acct.peak_reserved.get(buffer.kind);
                    if peaks {
                        acct.add(buffer.kind, buffer.size, reserved);
                    } else {
                        acct.add_quietly(buffer.kind, buffer.size, reserved);
                    }
                    if seen {
                        acct.allocations += 1;
                    } else {
                        acct.seeded.0[buffer.kind.index()] += buffer.size;
                        acct.seeded_buffers += 1;
                    }
                    if acct.reserved.get(buffer.kind) > before {
                        p.new_peak(*chip, buffer.kind, ev.ts_ns);
                    }
                }
                p.live.insert(
                    key,
                    HeldBuffer {
                        device: device.clone(),
                        buffer: buffer.clone(),
                        reserved,
                        allocated_ns: ev.ts_ns,
                        site: p.sites.remove(&key),
                    },
                );
            }
            EventKind::Free { device, buffer } => {
                if !p.release((device.handle, buffer.unique_id), ev.ts_ns, None) {
                    p.unknown_frees += 1;
                    p.unknown_free_bytes += buffer.size * device.chips.len() as u64;
                    let seeded = matches!(p.pre_attach, Some(PreAttach::Seeded(_)));
                    for chip in &device.chips {
                        let acct = p.devices.entry(*chip).or_default();
                        acct.freed_before_attach += 1;
                        acct.freed_before_attach_bytes += buffer.size;
                        // A seeded ledger holds this buffer's bytes already: take them off.
                        if seeded {
                            acct.unseed(buffer.kind, buffer.size);
                            acct.deallocations += 1;
                        }
                    }
                }
            }
            EventKind::DeviceClose { device } => {
                let mut doomed: Vec<_> = p
                    .live
                    .iter()
                    .filter(|(_, b)| b.device.handle == device.handle)
                    .map(|(k, b)| (b.allocated_ns, *k))
                    .collect();
                doomed.sort_unstable();
                let dropped = doomed.len();
                for (_, key) in doomed {
                    p.release(key, ev.ts_ns, Some(Outcome::FreedByClose));
                }
                p.closed(device, ev.ts_ns, dropped);
                for chip in &device.chips {
                    if let Some(acct) = p.devices.get_mut(chip) {
                        acct.drop_seed();
                        acct.circular_buffers.clear(ev.ts_ns);
                    }
                }
            }
            EventKind::Attached { seeded_from } => {
                p.pre_attach = Some(match seeded_from {
                    Some(source) => PreAttach::Seeded(source.clone()),
                    None => PreAttach::SinceAttach,
                });
            }
            EventKind::Seed {
                chip,
                kind,
                requested,
            } => {
                if *requested > 0 {
                    p.devices.entry(*chip).or_default().seed(*kind, *requested);
                }
            }
            EventKind::CircularBuffers {
                device,
                program,
                buffers,
            } => {
                for chip in &device.chips {
                    let acct = p.devices.entry(*chip).or_default();
                    acct.circular_buffers.place(*program, buffers, ev.ts_ns);
                }
            }
            EventKind::HeldCircularBuffers {
                device,
                program,
                buffers,
            } => {
                for chip in &device.chips {
                    let acct = p.devices.entry(*chip).or_default();
                    acct.circular_buffers.hold(*program, buffers, ev.ts_ns);
                }
            }
            EventKind::ProgramReleased { device, program } => {
                for chip in &device.chips {
                    let acct = p.devices.entry(*chip).or_default();
                    if !acct.circular_buffers.release(*program, ev.ts_ns) {
                        p.unknown_program_releases += 1;
                    }
                }
            }
            EventKind::DeviceOpen { device, shape } => p.opened(device, *shape, ev.ts_ns),
            EventKind::OutOfMemory { refusal } => p.refused(refusal, ev.ts_ns),
            EventKind::CircularBufferClash { clash } => p.clashed(clash, ev.ts_ns),
            EventKind::ProcessExit { code } => {
                p.exited = true;
                if code.is_some() {
                    p.exit_code = *code;
                }
            }
        }
    }

    /// Closes the books at the end of a session: whatever is still held becomes `leaked` (the
    /// process ended) or `live_at_detach` (the tracer stopped first). Live totals stay as they
    /// are: they are what the process held at that moment.
    pub fn finish(&mut self, at_ns: u64) {
        for p in self.processes.values_mut() {
            p.settle_all_peaks();
            let outcome = if p.exited {
                Outcome::Leaked
            } else {
                Outcome::LiveAtDetach
            };
            let mut held: Vec<_> = p.live.values().cloned().collect();
            held.sort_by_key(|b| (b.allocated_ns, b.buffer.unique_id));
            for h in held {
                p.outstanding.push(Outstanding {
                    held: h,
                    outcome,
                    at_ns,
                });
            }
        }
    }
}
