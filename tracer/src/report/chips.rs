//! Chip-wide totals over all processes, followed event by event (for the exports' counter
//! tracks and peaks): what a chip's allocator holds is the sum of every process's share.
use std::collections::BTreeMap;

use crate::ledger::{BufferType, Event, Ledger};

#[derive(Default)]
pub struct ChipTotals {
    last: BTreeMap<(i32, BufferType), u64>,
    /// Highest total reserved per (chip, type) and when it was first reached.
    pub peaks: BTreeMap<(i32, BufferType), (u64, u64)>,
}

impl ChipTotals {
    /// After the ledger applied `ev`: the (chip, type, reserved bytes) totals that changed.
    pub fn changes(&mut self, ledger: &Ledger, ev: &Event) -> Vec<(i32, BufferType, u64)> {
        let Some(p) = ledger.processes.get(&ev.pid) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for chip in p.devices.keys() {
            for t in BufferType::ALL {
                let total: u64 = ledger
                    .processes
                    .values()
                    .filter_map(|q| q.devices.get(chip))
                    .map(|d| d.reserved.get(t))
                    .sum();
                let last = self.last.entry((*chip, t)).or_insert(0);
                if *last != total {
                    *last = total;
                    out.push((*chip, t, total));
                    let peak = self.peaks.entry((*chip, t)).or_insert((0, 0));
                    if total > peak.0 {
                        *peak = (total, ev.ts_ns);
                    }
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::{BufferInfo, DeviceRef, EventKind};

    fn alloc(ts_ns: u64, pid: u32, chips: Vec<i32>, uid: u64, size: u64) -> Event {
        Event {
            ts_ns,
            pid,
            kind: EventKind::Alloc {
                device: DeviceRef {
                    handle: 0x10 + u64::from(pid),
                    chips,
                    mesh: true,
                },
                buffer: BufferInfo {
                    address: 4096 * uid,
                    size,
                    page_size: 0,
                    kind: BufferType::L1,
                    unique_id: uid,
                },
            },
        }
    }

    #[test]
    fn totals_sum_processes_per_chip_and_keep_the_first_peak_time() {
        let mut ledger = Ledger::new();
        let mut totals = ChipTotals::default();
        let mut step = |totals: &mut ChipTotals, ev: Event| {
            ledger.apply(&ev);
            totals.changes(&ledger, &ev)
        };
        assert_eq!(
            step(&mut totals, alloc(10, 1, vec![0, 3], 1, 100)),
            vec![(0, BufferType::L1, 100), (3, BufferType::L1, 100)]
        );
        // Another process on chip 3 only: chip 3's total is both processes' bytes.
        assert_eq!(
            step(&mut totals, alloc(20, 2, vec![3], 2, 50)),
            vec![(3, BufferType::L1, 150)]
        );
        let free = Event {
            ts_ns: 30,
            pid: 1,
            kind: match alloc(0, 1, vec![0, 3], 1, 100).kind {
                EventKind::Alloc { device, buffer } => EventKind::Free { device, buffer },
                _ => unreachable!(),
            },
        };
        assert_eq!(
            step(&mut totals, free),
            vec![(0, BufferType::L1, 0), (3, BufferType::L1, 50)]
        );
        step(&mut totals, alloc(40, 2, vec![3], 3, 100));
        assert_eq!(totals.peaks[&(3, BufferType::L1)], (150, 20));
        assert_eq!(totals.peaks[&(0, BufferType::L1)], (100, 10));
        step(&mut totals, alloc(50, 2, vec![3], 4, 1));
        assert_eq!(totals.peaks[&(3, BufferType::L1)], (151, 50));
    }
}
