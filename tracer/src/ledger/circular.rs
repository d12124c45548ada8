//! Circular buffers per chip, counted the way tt-metal's own tracker counts them
//! (`Device::get_total_cb_allocated`, the SHM tracker's CB figure): for each core, the union of
//! the L1 address ranges of the locally allocated CBs of every program registered on the chip,
//! summed over the cores. Programs of one device place their CBs from the same base, so cached
//! programs overlap instead of adding up; a program's CBs leave when the program is destroyed.
use std::collections::BTreeMap;

use super::FastMap;
use crate::model::{CircularBuffer, CoreRange};

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ChipCircularBuffers {
    /// Live programs and their CBs on this chip.
    pub programs: BTreeMap<u64, Vec<CircularBuffer>>,
    /// L1 bytes the live programs' local CBs cover, summed over cores.
    pub live_bytes: u64,
    pub peak_bytes: u64,
    /// When `peak_bytes` was reached (session clock).
    pub peak_ns: u64,
    /// The largest one program's local CB bytes, summed over its cores.
    pub peak_program_bytes: u64,
    /// Programs placed on / released from this chip.
    pub placed: u64,
    pub released: u64,
    /// Programs found placed when tracer read the process's memory (not counted as placed).
    pub held: u64,
    /// CBs whose core range list the probe could copy only in part.
    pub cut: u64,
}

/// Bytes of one program's locally allocated CBs, summed over their cores (tt-metal's
/// per-program figure; CBs over an L1 buffer the program was given count as that buffer).
pub fn program_bytes(buffers: &[CircularBuffer]) -> u64 {
    buffers
        .iter()
        .filter(|b| !b.global)
        .map(|b| b.size * b.cores())
        .sum()
}

impl ChipCircularBuffers {
    /// `program` registered on this chip with `buffers` (again: its CBs are replaced).
    pub fn place(&mut self, program: u64, buffers: &[CircularBuffer], at_ns: u64) {
        self.placed += 1;
        self.cut += buffers.iter().filter(|b| b.cut).count() as u64;
        self.peak_program_bytes = self.peak_program_bytes.max(program_bytes(buffers));
        self.programs.insert(program, buffers.to_vec());
        self.recount(at_ns);
    }

    /// `program` was placed before tracer looked (read from the process's memory).
    pub fn hold(&mut self, program: u64, buffers: &[CircularBuffer], at_ns: u64) {
        self.held += 1;
        self.peak_program_bytes = self.peak_program_bytes.max(program_bytes(buffers));
        self.programs.insert(program, buffers.to_vec());
        self.recount(at_ns);
    }

    /// False when the program was not live here (placed before the tracer saw it).
    pub fn release(&mut self, program: u64, at_ns: u64) -> bool {
        if self.programs.remove(&program).is_none() {
            return false;
        }
        self.released += 1;
        self.recount(at_ns);
        true
    }

    /// The device closed: every program's CBs are gone with it.
    pub fn clear(&mut self, at_ns: u64) {
        self.released += self.programs.len() as u64;
        self.programs.clear();
        self.recount(at_ns);
    }

    fn recount(&mut self, at_ns: u64) {
        let mut per_core: FastMap<(u32, u32), Vec<(u64, u64)>> = FastMap::default();
        for cb in self.programs.values().flatten().filter(|b| !b.global) {
            let span = (cb.address, cb.address + cb.size);
            for r in &cb.cores {
                for x in r.start.0..=r.end.0 {
                    for y in r.start.1..=r.end.1 {
                        per_core.entry((x, y)).or_default().push(span);
                    }
                }
            }
        }
        self.live_bytes = per_core.into_values().map(union_length).sum();
        if self.live_bytes > self.peak_bytes {
            self.peak_bytes = self.live_bytes;
            self.peak_ns = at_ns;
        }
    }

    /// Where the live CB region ends on each core range (the highest `address + size` of the
    /// local CBs placed there): what an L1 buffer below it clashes with.
    pub fn region_tops(&self) -> BTreeMap<CoreRange, u64> {
        let mut tops = BTreeMap::new();
        for cb in self.programs.values().flatten().filter(|b| !b.global) {
            for r in &cb.cores {
                let top = tops.entry(*r).or_insert(0);
                *top = (*top).max(cb.address + cb.size);
            }
        }
        tops
    }
}

/// Bytes covered by half-open ranges.
fn union_length(mut spans: Vec<(u64, u64)>) -> u64 {
    spans.sort_unstable();
    let mut total = 0;
    let mut current: Option<(u64, u64)> = None;
    for (lo, hi) in spans {
        match &mut current {
            Some((_, end)) if lo <= *end => *end = (*end).max(hi),
            _ => {
                if let Some((a, b)) = current {
                    total += b - a;
                }
                current = Some((lo, hi));
            }
        }
    }
    total + current.map_or(0, |(a, b)| b - a)
}

#[cfg(test)]
mod tests {
    use super::*;

    type Corners = ((u32, u32), (u32, u32));

    fn cb(address: u64, size: u64, ranges: &[Corners]) -> CircularBuffer {
        CircularBuffer {
            address,
            size,
            global: false,
            cores: ranges
                .iter()
                .map(|&(start, end)| CoreRange { start, end })
                .collect(),
            cut: false,
        }
    }

    #[test]
    fn one_program_counts_size_times_cores() {
        let mut c = ChipCircularBuffers::default();
        // 2 CBs on 8x1 cores, and one on (0,0)-(1,1) = 4 cores.
        let bufs = [
            cb(100_000, 4096, &[((0, 0), (7, 0))]),
            cb(104_096, 2048, &[((0, 0), (7, 0))]),
            cb(100_000, 1024, &[((0, 2), (1, 3))]),
        ];
        c.place(1, &bufs, 5);
        assert_eq!(c.live_bytes, 8 * 4096 + 8 * 2048 + 4 * 1024);
        assert_eq!(c.live_bytes, program_bytes(&bufs));
        assert_eq!((c.peak_bytes, c.peak_ns), (c.live_bytes, 5));
    }

    #[test]
    fn cached_programs_overlap_instead_of_adding_up() {
        let mut c = ChipCircularBuffers::default();
        c.place(1, &[cb(100_000, 8192, &[((0, 0), (3, 0))])], 1);
        // A second live program from the same base: only its extra reach counts.
        c.place(2, &[cb(100_000, 12_288, &[((0, 0), (1, 0))])], 2);
        assert_eq!(c.live_bytes, 2 * 12_288 + 2 * 8192);
        assert!(c.release(1, 3));
        assert_eq!(c.live_bytes, 2 * 12_288);
        assert!(!c.release(1, 4), "released twice");
        assert_eq!(c.peak_bytes, 2 * 12_288 + 2 * 8192);
        assert_eq!(c.peak_program_bytes, 4 * 8192);
        c.clear(5);
        assert_eq!((c.live_bytes, c.programs.len(), c.released), (0, 0, 2));
    }

    #[test]
    fn globally_allocated_cbs_are_the_l1_buffer_they_sit_on() {
        let mut c = ChipCircularBuffers::default();
        let mut g = cb(500_000, 65_536, &[((0, 0), (0, 0))]);
        g.global = true;
        c.place(1, &[g, cb(100_000, 100, &[((0, 0), (0, 0))])], 1);
        assert_eq!(c.live_bytes, 100);
        assert_eq!(
            c.region_tops().into_iter().collect::<Vec<_>>(),
            vec![(
                CoreRange {
                    start: (0, 0),
                    end: (0, 0)
                },
                100_100
            )]
        );
    }

    #[test]
    fn union_merges_touching_and_nested_ranges() {
        assert_eq!(union_length(vec![(0, 10), (10, 20), (5, 7), (30, 31)]), 21);
        assert_eq!(union_length(vec![]), 0);
    }
}
