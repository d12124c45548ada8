//! PyTorch memory snapshot (`--format pytorch-snapshot`): the pickle that
//! `torch.cuda.memory._snapshot()` produces, for PyTorch's own tools (`_memory_viz.py`'s
//! `trace`, `stats`, `segments`, `memory`, and the memory_viz page).
//!
//! How tt-metal's memory maps onto PyTorch's caching allocator:
//! - one PyTorch device per chip: `device_traces[N]` and the segments with `device: N` are chip
//!   N's (chips that never held a buffer get an empty trace);
//! - tt-metal's allocator reserves memory per buffer and caches nothing, so every buffer is a
//!   segment of its own holding one block: `size` is the bytes the allocator reserves for it on
//!   the chip (all banks), `requested_size` what the program asked for; the difference is what
//!   PyTorch's tools call internal fragmentation (bank rounding, page alignment);
//! - a buffer's allocation writes `segment_alloc` then `alloc`, its free (or the device close
//!   that dropped it) `free_requested`, `free_completed`, `segment_free`, all with the
//!   allocation's frames (the free's own stack is not read); a refused allocation is an `oom`
//!   with the bytes asked for and the bank manager's free bytes;
//! - `segments` is the allocator state at the end of the recording: the buffers still held;
//! - addresses: a buffer occupies the same offsets in every bank of its type (its
//!   `buffer_id` is that offset) and reserves `size / banks` bytes in each, while PyTorch's
//!   tools lay a segment out as `size` bytes from its address. A block's address is therefore
//!   `buffer_id * banks`, which keeps the buffers of one type in their order, without overlap,
//!   with the gaps between them as large as the free bytes over all banks; plus the buffer
//!   type's index (DRAM 0, L1 1, SYSTEM_MEMORY 2, L1_SMALL 3, TRACE 4) times 2^40 and the
//!   process's order of appearance in the recording times 2^44, because types and processes
//!   have address spaces of their own and the tools need one address per live block. Blocks
//!   also carry `tt_buffer_id`, `tt_type`, `tt_pid` and `tt_unique_id` (ignored by PyTorch);
//! - frames: the allocation site's Python frames, innermost first as in PyTorch; none when
//!   the probes read no stack. Circular buffers are not allocator buffers and are left out, and
//!   so is what an attached process held before the attach (seeded totals, frees of buffers
//!   never seen allocated): PyTorch's tools need the block of every free.
use std::{
    collections::{BTreeMap, HashMap},
    io::Write,
    path::Path,
    sync::Arc,
};

use anyhow::{Context, Result};

use super::pickle::Pickler;
use crate::{
    ledger::{BufferType, EventKind, Site},
    recording::reader::{Recording, Replayed},
    report::replay::Replay,
};

/// Bits of a snapshot address below the buffer type tag, and below the process tag.
pub const TYPE_SHIFT: u32 = 40;
pub const PROCESS_SHIFT: u32 = 44;

/// The address PyTorch's tools see for a buffer (see the module comment); `banks` is 1 where
/// the bank count is not known.
pub fn snapshot_address(process_ordinal: u64, kind: BufferType, address: u64, banks: u32) -> u64 {
    (process_ordinal << PROCESS_SHIFT)
        + ((kind.index() as u64) << TYPE_SHIFT)
        + address * u64::from(banks.max(1))
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Action {
    SegmentAlloc,
    Alloc,
    FreeRequested,
    FreeCompleted,
    SegmentFree,
    Oom { device_free: u64 },
}

impl Action {
    fn name(self) -> &'static str {
        match self {
            Self::SegmentAlloc => "segment_alloc",
            Self::Alloc => "alloc",
            Self::FreeRequested => "free_requested",
            Self::FreeCompleted => "free_completed",
            Self::SegmentFree => "segment_free",
            Self::Oom { .. } => "oom",
        }
    }
}

struct Entry {
    action: Action,
    addr: u64,
    size: u64,
    time_us: u64,
    site: Option<Arc<Site>>,
}

/// A buffer the export follows from its allocation to its free.
#[derive(Clone)]
struct Live {
    addr: u64,
    pid: u32,
    buffer_id: u64,
    unique_id: u64,
    kind: BufferType,
    chips: Vec<i32>,
    reserved: u64,
    requested: u64,
    allocated_ns: u64,
    site: Option<Arc<Site>>,
}

#[derive(Default)]
struct Snapshot {
    traces: BTreeMap<i32, Vec<Entry>>,
    /// (pid, device object, unique id) -> the buffer.
    live: HashMap<(u32, u64, u64), Live>,
    ordinals: HashMap<u32, u64>,
    /// Bank counts per (pid, buffer type), as the ledger keeps them.
    banks: HashMap<(u32, BufferType), u32>,
}

impl Snapshot {
    fn push(&mut self, chip: i32, action: Action, b: &Live, time_us: u64) {
        self.traces.entry(chip).or_default().push(Entry {
            action,
            addr: b.addr,
            size: b.reserved,
            time_us,
            site: b.site.clone(),
        });
    }

    fn alloc(&mut self, b: Live, time_us: u64) {
        for chip in &b.chips {
            self.push(*chip, Action::SegmentAlloc, &b, time_us);
            self.push(*chip, Action::Alloc, &b, time_us);
        }
    }

    fn free(&mut self, b: &Live, time_us: u64) {
        for chip in &b.chips {
            for a in [
                Action::FreeRequested,
                Action::FreeCompleted,
                Action::SegmentFree,
            ] {
                self.push(*chip, a, b, time_us);
            }
        }
    }
}

pub fn export(rec: &Recording, out: &Path) -> Result<Replayed> {
    let (snap, read) = collect(rec)?;
    let file =
        std::fs::File::create(out).with_context(|| format!("cannot create {}", out.display()))?;
    let w = std::io::BufWriter::new(file);
    let w = write(&snap, &rec.header.command, w)
        .with_context(|| format!("cannot write {}", out.display()))?;
    w.into_inner()
        .map_err(|e| e.into_error())
        .and_then(|f| f.sync_all())
        .with_context(|| format!("cannot write {}", out.display()))?;
    Ok(read)
}

/// The traces and the end state, from one replay.
fn collect(rec: &Recording) -> Result<(Snapshot, Replayed)> {
    let base = rec.header.monotonic_base_ns;
    let start_unix_ns = rec.header.start_unix_ns;
    let mut snap = Snapshot::default();
    let replay = Replay::run(rec, None, |ledger, ev| {
        let time_us = (start_unix_ns + ev.ts_ns.saturating_sub(base)) / 1000;
        let next = snap.ordinals.len() as u64;
        let ordinal = *snap.ordinals.entry(ev.pid).or_insert(next);
        match &ev.kind {
            EventKind::BankGeometry { kind, banks, .. } if *banks > 0 => {
                snap.banks.insert((ev.pid, *kind), *banks);
            }
            EventKind::Alloc { device, buffer } => {
                let key = (ev.pid, device.handle, buffer.unique_id);
                // The ledger dropped a stale record of the same key (a missed free): so do we.
                if let Some(stale) = snap.live.remove(&key) {
                    snap.free(&stale, time_us);
                }
                let Some(held) = ledger
                    .processes
                    .get(&ev.pid)
                    .and_then(|p| p.held(device.handle, buffer.unique_id))
                else {
                    return;
                };
                let banks = snap.banks.get(&(ev.pid, buffer.kind)).copied().unwrap_or(1);
                let b = Live {
                    addr: snapshot_address(ordinal, buffer.kind, buffer.address, banks),
                    pid: ev.pid,
                    buffer_id: buffer.address,
                    unique_id: buffer.unique_id,
                    kind: buffer.kind,
                    chips: device.chips.clone(),
                    reserved: held.reserved,
                    requested: buffer.size,
                    allocated_ns: ev.ts_ns,
                    site: held.site.clone(),
                };
                snap.live.insert(key, b.clone());
                snap.alloc(b, time_us);
            }
            EventKind::Free { device, buffer } => {
                if let Some(b) = snap.live.remove(&(ev.pid, device.handle, buffer.unique_id)) {
                    snap.free(&b, time_us);
                }
            }
            EventKind::DeviceClose { device } => {
                let mut doomed: Vec<_> = snap
                    .live
                    .iter()
                    .filter(|((pid, handle, _), _)| *pid == ev.pid && *handle == device.handle)
                    .map(|(k, b)| (b.allocated_ns, *k))
                    .collect();
                doomed.sort_unstable();
                for (_, key) in doomed {
                    if let Some(b) = snap.live.remove(&key) {
                        snap.free(&b, time_us);
                    }
                }
            }
            EventKind::OutOfMemory { .. } => {
                let Some(oom) = ledger.processes.get(&ev.pid).and_then(|p| p.ooms.last()) else {
                    return;
                };
                let r = &oom.refusal;
                for chip in oom.device.iter().flat_map(|d| d.chips.iter()) {
                    snap.traces.entry(*chip).or_default().push(Entry {
                        action: Action::Oom {
                            device_free: r.free_per_bank * u64::from(r.banks),
                        },
                        addr: 0,
                        size: r.requested,
                        time_us,
                        site: None,
                    });
                }
            }
            _ => {}
        }
    })?;
    Ok((snap, replay.read))
}

/// Frames lists are written once per distinct site (a line in a loop allocates many buffers)
/// and referred to afterwards.
struct Frames(HashMap<Arc<Site>, u32>);

impl Frames {
    fn write<W: Write>(
        &mut self,
        p: &mut Pickler<W>,
        site: &Option<Arc<Site>>,
    ) -> std::io::Result<()> {
        let Some(site) = site else {
            p.begin_list()?;
            return p.end();
        };
        if let Some(id) = self.0.get(site) {
            return p.get(*id);
        }
        p.begin_list()?;
        for f in &site.frames {
            p.begin_dict()?;
            p.key("filename")?;
            p.str(&f.file)?;
            p.key("line")?;
            p.uint(u64::from(f.line))?;
            p.key("name")?;
            p.str(&f.function)?;
            p.end()?;
        }
        p.end()?;
        let id = p.put()?;
        self.0.insert(site.clone(), id);
        Ok(())
    }
}

fn write<W: Write>(snap: &Snapshot, command: &str, w: W) -> std::io::Result<W> {
    let mut p = Pickler::new(w)?;
    let mut frames = Frames(HashMap::new());
    p.begin_dict()?;

    p.key("segments")?;
    p.begin_list()?;
    let mut held: Vec<(i32, &Live)> = snap
        .live
        .values()
        .flat_map(|b| b.chips.iter().map(move |c| (*c, b)))
        .collect();
    held.sort_by_key(|(chip, b)| (*chip, b.addr));
    for (chip, b) in held {
        p.begin_dict()?;
        p.key("device")?;
        p.int(i64::from(chip))?;
        p.key("address")?;
        p.uint(b.addr)?;
        for k in ["total_size", "allocated_size", "active_size"] {
            p.key(k)?;
            p.uint(b.reserved)?;
        }
        p.key("requested_size")?;
        p.uint(b.requested)?;
        p.key("stream")?;
        p.int(0)?;
        p.key("segment_type")?;
        p.str("large")?;
        p.key("is_expandable")?;
        p.bool(false)?;
        p.key("frames")?;
        frames.write(&mut p, &b.site)?;
        p.key("blocks")?;
        p.begin_list()?;
        p.begin_dict()?;
        p.key("address")?;
        p.uint(b.addr)?;
        p.key("size")?;
        p.uint(b.reserved)?;
        p.key("requested_size")?;
        p.uint(b.requested)?;
        p.key("state")?;
        p.str("active_allocated")?;
        p.key("frames")?;
        frames.write(&mut p, &b.site)?;
        p.key("tt_buffer_id")?;
        p.uint(b.buffer_id)?;
        p.key("tt_type")?;
        p.str(b.kind.name())?;
        p.key("tt_pid")?;
        p.uint(u64::from(b.pid))?;
        p.key("tt_unique_id")?;
        p.uint(b.unique_id)?;
        p.end()?;
        p.end()?;
        p.end()?;
    }
    p.end()?;

    p.key("device_traces")?;
    p.begin_list()?;
    let devices = snap.traces.keys().max().map_or(0, |c| c + 1);
    for chip in 0..devices {
        p.begin_list()?;
        for e in snap.traces.get(&chip).into_iter().flatten() {
            p.begin_dict()?;
            p.key("action")?;
            p.str(e.action.name())?;
            p.key("addr")?;
            p.uint(e.addr)?;
            p.key("size")?;
            p.uint(e.size)?;
            p.key("stream")?;
            p.int(0)?;
            p.key("time_us")?;
            p.uint(e.time_us)?;
            if let Action::Oom { device_free } = e.action {
                p.key("device_free")?;
                p.uint(device_free)?;
            }
            p.key("frames")?;
            frames.write(&mut p, &e.site)?;
            p.end()?;
        }
        p.end()?;
    }
    p.end()?;

    p.key("allocator_settings")?;
    p.begin_dict()?;
    p.end()?;
    // Ignored by PyTorch's tools; says what the numbers mean to a person reading the pickle.
    p.key("tracer")?;
    p.begin_dict()?;
    p.key("command")?;
    p.str(command)?;
    p.key("devices")?;
    p.str("device N is chip N (tt-metal's chip id)")?;
    p.key("addresses")?;
    p.str(
        "buffer_id * banks of its type + buffer type index (DRAM 0, L1 1, SYSTEM_MEMORY 2, \
         L1_SMALL 3, TRACE 4) * 2^40 + process order in the recording * 2^44",
    )?;
    p.key("sizes")?;
    p.str("size: bytes reserved on the chip over all banks; requested_size: bytes asked for")?;
    p.end()?;

    p.end()?;
    p.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{recording::reader::Recording, report::test_recording};

    #[test]
    fn buffers_become_segments_with_their_sites_frames_and_addresses_of_their_own() {
        let data = test_recording::with_sites();
        let rec = Recording::open(&data).unwrap();
        let (snap, _) = collect(&rec).unwrap();
        let actions = |chip: i32| -> Vec<&str> {
            snap.traces[&chip].iter().map(|e| e.action.name()).collect()
        };
        let expect = [
            "segment_alloc",
            "alloc",
            "segment_alloc",
            "alloc",
            "segment_alloc",
            "alloc",
            "free_requested",
            "free_completed",
            "segment_free",
            "oom",
        ];
        assert_eq!(actions(0), expect);
        assert_eq!(actions(1), expect);
        let t = &snap.traces[&0];
        // DRAM at 0x1000 over 8 banks, L1 at the same device address over 4 banks: apart.
        assert_eq!(t[1].addr, 0x1000 * 8);
        assert_eq!(t[5].addr, (1 << TYPE_SHIFT) + 0x1000 * 4);
        assert_eq!(
            t[1].site.as_ref().unwrap().frames,
            test_recording::site().frames
        );
        assert!(t[5].site.is_none());
        assert_eq!(t[9].action, Action::Oom { device_free: 4000 });
        assert_eq!(t[9].size, 1 << 20);
        // The end state: the two buffers still held, on both chips.
        let mut live: Vec<u64> = snap.live.values().map(|b| b.unique_id).collect();
        live.sort_unstable();
        assert_eq!(live, [1, 3]);

        // The two buffers' sites are equal: their frames are written once, referred to after.
        let bytes = write(&snap, "python model.py", Vec::new()).unwrap();
        let n = bytes.windows(8).filter(|w| w == b"model.py").count();
        assert_eq!(n, 1 + 1, "one frames list, plus the command");
    }
}
