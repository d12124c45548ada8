//! The state of a process before the tracer attached: seeded from tt-metal's SHM tracker when
//! the process has one, else the ledger is marked "since attach".
use super::session::{monotonic_ns, LiveSession};
use crate::{
    ledger::{BufferType, Event, EventKind},
    probe::decode::command_line,
    runtime::shm,
};

/// Source name the ledger and the output use for seeded totals.
pub const SHM_SOURCE: &str = "tt-metal SHM tracker";

/// Opens the process' ledger: its start, and what came before the attach (seeded from tt-metal's
/// SHM tracker when the process has it, else marked "since attach"). Returns a line saying which.
pub fn open_ledger(session: &mut LiveSession, pid: u32) -> String {
    let ts_ns = monotonic_ns();
    let ev = |kind| Event { ts_ns, pid, kind };
    session.apply(&ev(EventKind::ProcessStart {
        command: command_line(pid),
    }));
    // Calls whose probe fired before t0 have updated the tracker by the time it is read
    // (the update follows the probe within microseconds); see LiveSession::seed_cutoffs.
    let t0 = monotonic_ns();
    std::thread::sleep(std::time::Duration::from_millis(2));
    let read = shm::holdings(pid);
    let t1 = monotonic_ns();
    match read {
        Ok(Some(h)) => {
            session.seed_cutoffs.insert(pid, (t0, t1));
            for w in &h.warnings {
                eprintln!("tracer: warning: {w}");
            }
            session.apply(&ev(EventKind::Attached {
                seeded_from: Some(SHM_SOURCE.into()),
            }));
            for c in &h.chips {
                for (kind, bytes) in [(BufferType::Dram, c.dram), (BufferType::L1, c.l1)] {
                    session.apply(&ev(EventKind::Seed {
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
            format!(
                "PID {pid}: live totals seeded from {SHM_SOURCE} ({})",
                per_chip.join(", ")
            )
        }
        other => {
            let why = match other {
                Err(e) => format!("the tt-metal SHM tracker cannot tell ({e:#})"),
                _ => "no tt-metal SHM tracker in this process".to_string(),
            };
            session.apply(&ev(EventKind::Attached { seeded_from: None }));
            format!(
                "PID {pid}: {why}; counting since attach (frees of buffers allocated before the \
                 attach are reported apart)"
            )
        }
    }
}
