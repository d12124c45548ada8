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
