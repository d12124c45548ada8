//! The human summary printed at the end of a session.
use std::fmt::Write as _;

use super::SessionInfo;
use crate::ledger::{Amounts, BufferType, Ledger, Outcome, PreAttach, ProcessLedger};

fn amounts(a: &Amounts, always_dram: bool) -> String {
    BufferType::ALL
        .iter()
        .filter(|t| (always_dram && **t == BufferType::Dram) || a.get(**t) > 0)
        .map(|t| format!("{}: {} bytes", t.name(), a.get(*t)))
        .collect::<Vec<_>>()
        .join(", ")
}

pub fn process_summary(p: &ProcessLedger) -> String {
    let mut s = String::new();
    let status = match (p.exited, p.exit_code) {
        (true, Some(c)) => format!("exited with code {c}"),
        (true, None) => "exited".to_string(),
        (false, _) => "still running when the tracer stopped".to_string(),
    };
    let _ = writeln!(s, "PID {} ({}) {status}", p.pid, p.command);
    match &p.pre_attach {
        Some(PreAttach::Seeded(source)) => {
            let _ = writeln!(
                s,
                "pre-attach state: seeded from {source} ({} free(s) of buffers allocated before attach, {} bytes, taken off the seed; seeded bytes count as reserved too)",
                p.unknown_frees, p.unknown_free_bytes
            );
        }
        Some(PreAttach::SinceAttach) => {
            let _ = writeln!(
                s,
                "pre-attach state: since attach ({} free(s) of buffers allocated before attach, {} bytes, not counted)",
                p.unknown_frees, p.unknown_free_bytes
            );
        }
        None => {}
    }
    for (chip, d) in &p.devices {
        let _ = writeln!(
            s,
            "Device {chip}: Buffers: {}, {}",
            d.live_buffers,
            amounts(&d.requested, true)
        );
        let _ = writeln!(
            s,
            "    reserved by the allocator: {}; peak reserved: {}",
            amounts(&d.reserved, true),
            amounts(&d.peak_reserved, true)
        );
    }
    if p.devices.is_empty() {
        let _ = writeln!(s, "(no device memory activity)");
    }
    for outcome in [
        Outcome::FreedByClose,
        Outcome::Leaked,
        Outcome::LiveAtDetach,
    ] {
        let list: Vec<_> = p
            .outstanding
            .iter()
            .filter(|o| o.outcome == outcome)
            .collect();
        if list.is_empty() {
            continue;
        }
        let why = match outcome {
            Outcome::FreedByClose => "never deallocated; dropped when their device/mesh closed",
            Outcome::Leaked => "still allocated when the process ended with the device open",
            Outcome::LiveAtDetach => "still allocated when the tracer stopped",
        };
        let _ = writeln!(s, "{} buffer(s) {} ({}):", list.len(), outcome.name(), why);
        for o in list {
            let b = &o.held.buffer;
            let chips = &o.held.device.chips;
            let _ = writeln!(
                s,
                "    {} {} bytes x {} chip(s) = {} bytes (buffer_id={}, chips {})",
                b.kind.name(),
                b.size,
                chips.len(),
                b.size * chips.len() as u64,
                b.address,
                chips
                    .iter()
                    .map(|c| c.to_string())
                    .collect::<Vec<_>>()
                    .join(",")
            );
        }
    }
    if p.unknown_frees > 0 && p.pre_attach.is_none() {
        let _ = writeln!(
            s,
            "{} free(s) of buffers allocated before tracing began",
            p.unknown_frees
        );
    }
    if p.reserved_estimated > 0 {
        let _ = writeln!(
            s,
            "note: allocator geometry unknown for {} allocation(s); their reserved bytes equal requested",
            p.reserved_estimated
        );
    }
    s
}

pub fn summary(ledger: &Ledger, info: &SessionInfo) -> String {
    let mut s = String::new();
    for p in ledger.processes.values() {
        s.push_str(&process_summary(p));
    }
    if info.lost_events > 0 {
        let _ = writeln!(
            s,
            "WARNING: {} event(s) lost (ring buffer full); the ledger above is incomplete",
            info.lost_events
        );
    }
    s
}
