//! tt-metal's own SHM memory tracker (`/dev/shm/tt_device_<asic>_memory`, one region per
//! chip, shared by every process using that chip), read from outside to seed the ledger of a
//! process the tracer attaches to after it started.
//!
//! Layout of version 3 (learned from regions written by ttnn 0.81.1; the attach tests check
//! the figures read here against `ttnn.get_memory_view` and the workload's own buffer sizes):
//! - header: `u32 version` at 0, `u32 records in use` at 4, `u32 chip id` (`Device::id()`) at
//!   0x28;
//! - per-process records from 0x350, 0x78 bytes each (tt-metal's `ProcessStats`, counted from
//!   8 bytes before its `pid`): `u64 pid` at +0x08, then the bytes the process holds on the
//!   chip: DRAM at +0x10, L1 at +0x18 (`Buffer::size()` sums), L1_SMALL at +0x20, TRACE at
//!   +0x28, circular buffers at +0x30 (`Device::get_total_cb_allocated()`, which the real-ops
//!   tests compare with the ledger); a timestamp at +0x38 and the process name at +0x40.
//!
//! A seed from the tracker carries DRAM and L1 only (the kinds whose buffers it sums the
//! same way the ledger does); the other words, when not zero, are said to stay unseeded.
use std::path::PathBuf;

use anyhow::{bail, Context, Result};

const VERSION: u32 = 3;
const CHIP_ID: usize = 0x28;
const RECORDS: usize = 0x350;
const RECORD_LEN: usize = 0x78;
const PID: usize = 0x08;
const DRAM: usize = 0x10;
const L1: usize = 0x18;
/// The words a seed from the tracker does not carry, and what they count.
const NOT_SEEDED: [(usize, &str); 3] = [
    (0x20, "L1_SMALL"),
    (0x28, "TRACE"),
    (0x30, "circular buffers"),
];

/// What one chip's region says about one process.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Record {
    Found(ChipHolding),
    /// No record of the process; `full` when every record slot is taken (tt-metal does not
    /// reclaim the records of processes that died without closing their devices, so the
    /// table fills up and new processes go untracked).
    Absent {
        chip: i32,
        full: bool,
    },
}

/// One chip's figures for one process.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChipHolding {
    pub chip: i32,
    pub dram: u64,
    pub l1: u64,
}

/// The tracker's view of a process.
#[derive(Clone, Debug, Default)]
pub struct Holdings {
    /// One entry per chip region the process maps (zero bytes when it has no record yet).
    pub chips: Vec<ChipHolding>,
    pub warnings: Vec<String>,
}

fn u32_at(b: &[u8], off: usize) -> u32 {
    u32::from_le_bytes(b[off..off + 4].try_into().unwrap())
}

fn u64_at(b: &[u8], off: usize) -> u64 {
    u64::from_le_bytes(b[off..off + 8].try_into().unwrap())
}

/// Reads `pid`'s record out of one region's bytes.
pub fn parse(bytes: &[u8], pid: u32, warnings: &mut Vec<String>) -> Result<Record> {
    if bytes.len() < RECORDS + RECORD_LEN {
        bail!(
            "region is {} bytes, too short for a tracker region",
            bytes.len()
        );
    }
    let version = u32_at(bytes, 0);
    if version != VERSION {
        bail!("tracker region version {version}; this tracer reads version {VERSION}");
    }
    let chip = u32_at(bytes, CHIP_ID) as i32;
    let capacity = (bytes.len() - RECORDS) / RECORD_LEN;
    let mut out = ChipHolding {
        chip,
        dram: 0,
        l1: 0,
    };
    let mut off = RECORDS;
    while off + RECORD_LEN <= bytes.len() {
        if u64_at(bytes, off + PID) == u64::from(pid) {
            out.dram = u64_at(bytes, off + DRAM);
            out.l1 = u64_at(bytes, off + L1);
            for (at, what) in NOT_SEEDED {
                let v = u64_at(bytes, off + at);
                if v != 0 {
                    warnings.push(format!(
                        "the SHM tracker counts {v} B of {what} for PID {pid} on chip {chip}; a \
                         seed from the tracker carries DRAM and L1 only, so these stay unseeded"
                    ));
                }
            }
            return Ok(Record::Found(out));
        }
        off += RECORD_LEN;
    }
    let in_use = u32_at(bytes, 4) as usize;
    Ok(Record::Absent {
        chip,
        full: in_use >= capacity,
    })
}

/// The tracker regions `pid` has mapped, as paths that open exactly the mapped file: through
/// /proc/PID/map_files, because another process may have unlinked and recreated a region of
/// the same name since this one mapped it (tt-metal cleans up regions it thinks are stale).
pub fn regions_of(pid: u32) -> Result<Vec<PathBuf>> {
    let mut seen = std::collections::HashSet::new();
    let mut out = Vec::new();
    for m in super::process::maps(pid)? {
        let procfs::process::MMapPath::Path(path) = &m.pathname else {
            continue;
        };
        let name = path.to_string_lossy();
        if !(name.starts_with("/dev/shm/tt_device_") && name.ends_with("_memory")) {
            continue;
        }
        if seen.insert(path.clone()) {
            let (start, end) = m.address;
            out.push(PathBuf::from(format!(
                "/proc/{pid}/map_files/{start:x}-{end:x}"
            )));
        }
    }
    Ok(out)
}

/// What tt-metal's tracker says `pid` holds. `Ok(None)` when the process maps no tracker
/// region (tracking disabled with TT_METAL_SHM_TRACKING_DISABLED=1, or a runtime without it);
/// an error when the tracker cannot tell (e.g. its record table is full).
pub fn holdings(pid: u32) -> Result<Option<Holdings>> {
    let regions = regions_of(pid)?;
    if regions.is_empty() {
        return Ok(None);
    }
    let mut h = Holdings::default();
    for r in regions {
        let bytes = std::fs::read(&r).with_context(|| format!("cannot read {}", r.display()))?;
        match parse(&bytes, pid, &mut h.warnings)
            .with_context(|| format!("SHM tracker region {}", r.display()))?
        {
            Record::Found(c) => h.chips.push(c),
            Record::Absent { chip, full: true } => bail!(
                "the tracker's record table of chip {chip} is full (records of exited processes \
                 are not reclaimed by tt-metal) and holds nothing for PID {pid}"
            ),
            // No record yet: the process has not allocated on this chip.
            Record::Absent { chip, full: false } => h.chips.push(ChipHolding {
                chip,
                dram: 0,
                l1: 0,
            }),
        }
    }
    h.chips.sort_by_key(|c| c.chip);
    Ok(Some(h))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A region built by hand (stand-in for one written by the runtime, which the attach
    /// tests read for real): checks offsets and the record walk.
    fn region(chip: u32, records: &[(u64, u64, u64)]) -> Vec<u8> {
        let mut b = vec![0u8; 8576];
        b[0..4].copy_from_slice(&VERSION.to_le_bytes());
        b[4..8].copy_from_slice(&(records.len() as u32).to_le_bytes());
        b[CHIP_ID..CHIP_ID + 4].copy_from_slice(&chip.to_le_bytes());
        for (i, (pid, dram, l1)) in records.iter().enumerate() {
            let off = RECORDS + i * RECORD_LEN;
            b[off + PID..off + PID + 8].copy_from_slice(&pid.to_le_bytes());
            b[off + DRAM..off + DRAM + 8].copy_from_slice(&dram.to_le_bytes());
            b[off + L1..off + L1 + 8].copy_from_slice(&l1.to_le_bytes());
        }
        b
    }

    #[test]
    fn finds_the_record_of_the_pid() {
        let b = region(5, &[(11, 1, 2), (42, 6291456, 8192), (43, 7, 7)]);
        let mut w = Vec::new();
        assert_eq!(
            parse(&b, 42, &mut w).unwrap(),
            Record::Found(ChipHolding {
                chip: 5,
                dram: 6291456,
                l1: 8192
            })
        );
        assert_eq!(
            parse(&b, 99, &mut w).unwrap(),
            Record::Absent {
                chip: 5,
                full: false
            }
        );
        assert!(w.is_empty());
    }

    #[test]
    fn a_full_table_without_our_record_is_not_zero() {
        let records: Vec<_> = (1..=64).map(|p| (p, 0, 0x8388)).collect();
        let b = region(2, &records);
        assert_eq!(
            parse(&b, 4242, &mut Vec::new()).unwrap(),
            Record::Absent {
                chip: 2,
                full: true
            }
        );
    }

    #[test]
    fn kinds_a_tracker_seed_does_not_carry_are_named() {
        let mut b = region(3, &[(42, 4096, 2048)]);
        // Circular buffers: the word `real_ops.py` reads as the tracker's CB figure.
        b[RECORDS + 0x30..RECORDS + 0x38].copy_from_slice(&1351680u64.to_le_bytes());
        let mut w = Vec::new();
        assert!(matches!(parse(&b, 42, &mut w).unwrap(), Record::Found(_)));
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(
            w[0].contains("1351680 B of circular buffers for PID 42 on chip 3"),
            "{}",
            w[0]
        );
    }

    #[test]
    fn refuses_other_versions() {
        let mut b = region(0, &[]);
        b[0] = 4;
        assert!(parse(&b, 1, &mut Vec::new()).is_err());
    }
}
