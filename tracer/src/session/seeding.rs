//! What a seed of a process attached mid-run already counts, so the event loop neither counts
//! it twice nor loses what raced with the read.
use std::collections::{BTreeMap, HashMap};

use super::held;
use crate::{
    model::{BufferInfo, BufferType, DeviceRef, Event, EventKind},
    plan::ProbePlan,
    probe::monotonic_ns,
    runtime::{process::command_line, shm},
};

/// Source name the ledger and the output use for seeded totals.
pub const SHM_SOURCE: &str = "tt-metal SHM tracker";

/// A process's opening events, read when tracer attached to it mid-run.
pub struct Seed {
    /// Its start, and what came before the attach: the buffers read from its memory, else
    /// seeded from tt-metal's SHM tracker when the process has one, else marked "since
    /// attach".
    pub events: Vec<Event>,
    /// CLOCK_MONOTONIC before and after the read (see [`SeedCutoffs`]).
    pub read_between: Option<(u64, u64)>,
    /// Which of the two, in words.
    pub note: String,
    /// Read from its memory: every buffer it held, by the object a probed free carries
    /// (`None` for the other seeds, which know no buffers).
    pub objects: Option<Vec<(u64, DeviceRef, BufferInfo)>>,
}

/// Reads what `pid` held before the attach. The probes must be live already, so that every
/// allocation and free the read may miss or see half-done has an event.
///
/// From the process's own allocators where its memory can be read: real buffers, reconciled
/// with the racing events by key in the ledger (no cut-off needed); the SHM tracker, when the
/// process has one, only cross-checks them. Otherwise the SHM tracker's byte totals, or
/// nothing ("since attach").
pub fn read(pid: u32, plan: &ProbePlan) -> Seed {
    let ts_ns = monotonic_ns();
    let ev = |kind| Event { ts_ns, pid, kind };
    let start = ev(EventKind::ProcessStart {
        command: command_line(pid),
    });
    // TRACER_SEED=shm: the seed of releases whose allocators cannot be read, on any release
    // (to compare the two).
    let from_memory = if std::env::var("TRACER_SEED").is_ok_and(|v| v == "shm") {
        Err(anyhow::anyhow!("TRACER_SEED=shm"))
    } else {
        held::read(pid, plan)
    };
    match from_memory {
        Ok(read) => {
            let mut events = vec![
                start,
                ev(EventKind::Attached {
                    seeded_from: Some(held::MEMORY_SOURCE.into()),
                }),
            ];
            events.extend(held::events(pid, &read.held, read.between.1));
            let h = &read.held;
            let mut note = format!(
                "PID {pid}: seeded with {} live buffer(s) read from {} in {:.1} ms",
                h.buffers.len(),
                held::MEMORY_SOURCE,
                (read.between.1 - read.between.0) as f64 / 1e6
            );
            match &h.programs_unread {
                None => note.push_str(&format!(
                    ", and the circular buffers of {} program(s) placed on its chips",
                    h.programs.len()
                )),
                Some(why) => note.push_str(&format!(
                    "; the circular buffers of programs placed before the attach were not read \
                     ({why}): CB figures count programs placed after it"
                )),
            }
            if let Some(d) = shm_disagrees(pid, &read.held) {
                note.push_str(&format!("; note: {SHM_SOURCE} disagrees: {d}"));
            }
            let objects = h
                .buffers
                .iter()
                .map(|b| (b.object, b.device.clone(), b.buffer.clone()))
                .collect();
            Seed {
                events,
                read_between: None,
                note,
                objects: Some(objects),
            }
        }
        Err(e) => {
            let mut seed = from_shm(pid, ts_ns, start);
            seed.note = format!("{} (its memory could not be read: {e:#})", seed.note);
            seed
        }
    }
}

/// Where tt-metal's SHM tracker, if the process has one, tells other totals than the read:
/// per chip, DRAM and L1 requested bytes (`None`: it agrees, or there is no tracker).
fn shm_disagrees(pid: u32, read: &crate::runtime::held::Held) -> Option<String> {
    let h = shm::holdings(pid).ok()??;
    let mine = held::requested_per_chip(read);
    let mut diffs = Vec::new();
    for c in &h.chips {
        for (kind, bytes) in [("DRAM", c.dram), ("L1", c.l1)] {
            let got = mine.get(&(c.chip, kind)).copied().unwrap_or(0);
            if got != bytes {
                diffs.push(format!(
                    "chip {} {kind}: tracker {bytes}, allocators {got}",
                    c.chip
                ));
            }
        }
    }
    (!diffs.is_empty()).then(|| diffs.join(", "))
}

/// The seed from tt-metal's SHM tracker (byte totals), or "since attach" without one.
fn from_shm(pid: u32, ts_ns: u64, start: Event) -> Seed {
    let ev = |kind| Event { ts_ns, pid, kind };
    let mut events = vec![start];
    let t0 = monotonic_ns();
    std::thread::sleep(std::time::Duration::from_millis(2));
    let read = shm::holdings(pid);
    let t1 = monotonic_ns();
    match read {
        Ok(Some(h)) => {
            for w in &h.warnings {
                eprintln!("tracer: warning: {w}");
            }
            events.push(ev(EventKind::Attached {
                seeded_from: Some(SHM_SOURCE.into()),
            }));
            for c in &h.chips {
                for (kind, bytes) in [(BufferType::Dram, c.dram), (BufferType::L1, c.l1)] {
                    events.push(ev(EventKind::Seed {
                        chip: c.chip,
                        kind,
                        requested: bytes,
                    }));
                }
            }
            let per_chip: Vec<String> = h
                .chips
                .iter()
                .map(|c| format!("chip {}: DRAM {} L1 {}", c.chip, c.dram, c.l1))
                .collect();
            Seed {
                events,
                read_between: Some((t0, t1)),
                note: format!(
                    "PID {pid}: live totals seeded from {SHM_SOURCE} ({})",
                    per_chip.join(", ")
                ),
                objects: None,
            }
        }
        other => {
            let why = match other {
                Err(e) => format!("the tt-metal SHM tracker cannot tell ({e:#})"),
                _ => "no tt-metal SHM tracker in this process".to_string(),
            };
            events.push(ev(EventKind::Attached { seeded_from: None }));
            Seed {
                events,
                read_between: None,
                note: format!(
                    "PID {pid}: {why}; counting since attach (frees of buffers allocated before \
                     the attach are reported apart)"
                ),
                objects: None,
            }
        }
    }
}

#[derive(Default)]
pub struct SeedCutoffs {
    /// Per seeded process, (t0, t1) around reading the runtime's state: allocations, frees and
    /// closes before t0 are already in the seed (dropped here); those between t0 and t1 may or
    /// may not be (counted in `raced` and reported).
    cutoffs: HashMap<u32, (u64, u64)>,
    raced: BTreeMap<u32, u64>,
}

impl SeedCutoffs {
    pub fn insert(&mut self, pid: u32, read_between: (u64, u64)) {
        self.cutoffs.insert(pid, read_between);
    }

    /// Whether the ledger should apply `ev` (false: the seed already has it).
    pub fn admit(&mut self, ev: &Event) -> bool {
        let Some((t0, t1)) = self.cutoffs.get(&ev.pid) else {
            return true;
        };
        if !matches!(
            ev.kind,
            EventKind::Alloc { .. } | EventKind::Free { .. } | EventKind::DeviceClose { .. }
        ) {
            return true;
        }
        if ev.ts_ns < *t0 {
            return false;
        }
        if ev.ts_ns <= *t1 {
            *self.raced.entry(ev.pid).or_default() += 1;
        }
        true
    }

    /// Warnings for the end of the session.
    pub fn warnings(&self) -> Vec<String> {
        self.raced
            .iter()
            .map(|(pid, n)| {
                format!(
                    "PID {pid}: {n} allocation/free event(s) happened while tracer read the SHM \
                     tracker; the seeded totals may be off by their bytes"
                )
            })
            .collect()
    }
}
