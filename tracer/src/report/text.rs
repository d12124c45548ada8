//! The human summary printed at the end of a session.
use std::fmt::Write as _;

use super::SessionInfo;
use super::{explain, human_bytes};
use crate::ledger::{Amounts, BufferType, Ledger, PreAttach, ProcessLedger};

fn amounts(a: &Amounts, always_dram: bool) -> String {
    BufferType::ALL
        .iter()
        .filter(|t| (always_dram && **t == BufferType::Dram) || a.get(**t) > 0)
        .map(|t| format!("{}: {} bytes", t.name(), a.get(*t)))
        .collect::<Vec<_>>()
        .join(", ")
}

pub fn process_summary(p: &ProcessLedger, call_stacks: &str) -> String {
    let mut s = String::new();
    let status = match (p.exited, p.exit_code) {
        (true, Some(c)) => format!("exited with code {c}"),
        (true, None) => "exited".to_string(),
        (false, _) => "still running when the tracer stopped".to_string(),
    };
    let _ = writeln!(s, "PID {} ({}) {status}", p.pid, p.command);
    match &p.pre_attach {
        Some(PreAttach::Seeded(source)) if p.devices.values().any(|d| d.seeded_buffers > 0) => {
            let _ = writeln!(
                s,
                "pre-attach state: seeded with the buffers read from {source} ({} free(s) of buffers allocated before attach and freed before the read, {} bytes)",
                p.unknown_frees, p.unknown_free_bytes
            );
        }
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
    explain::lifecycle(&mut s, p);
    // One contract line per chip, then the details; chips of a mesh usually have identical
    // details, which are printed once for all of them.
    let mut details: Vec<(String, Vec<i32>)> = Vec::new();
    for (chip, d) in &p.devices {
        let _ = writeln!(
            s,
            "Device {chip}: Buffers: {}, {}",
            d.live_buffers,
            amounts(&d.requested, true)
        );
        let mut detail = String::new();
        let _ = writeln!(
            detail,
            "    reserved by the allocator: {}; peak reserved: {}",
            amounts(&d.reserved, true),
            amounts(&d.peak_reserved, true)
        );
        explain::peaks(&mut detail, p, *chip);
        let cb = &d.circular_buffers;
        if cb.placed > 0 || cb.held > 0 {
            let held = if cb.held > 0 {
                format!(
                    ", {} found placed when tracer read the process's memory",
                    cb.held
                )
            } else {
                String::new()
            };
            let _ = writeln!(
                detail,
                "    circular buffers (L1, summed over cores): {} live in {} program(s), peak {} at {}; largest program {}; {} program(s) placed, {} released{held}",
                human_bytes(cb.live_bytes),
                cb.programs.len(),
                human_bytes(cb.peak_bytes),
                super::since(cb.peak_ns, p.first_ns),
                human_bytes(cb.peak_program_bytes),
                cb.placed,
                cb.released
            );
        }
        match details.iter_mut().find(|(text, _)| *text == detail) {
            Some((_, chips)) => chips.push(*chip),
            None => details.push((detail, vec![*chip])),
        }
    }
    for (detail, chips) in details {
        let names: Vec<String> = chips.iter().map(|c| c.to_string()).collect();
        if chips.len() == 1 {
            let _ = writeln!(s, "  device {}:", names[0]);
        } else {
            let _ = writeln!(s, "  each of devices {}:", names.join(","));
        }
        s.push_str(&detail);
    }
    if p.devices.is_empty() {
        let _ = writeln!(s, "(no device memory activity)");
    }
    explain::ooms(&mut s, p);
    explain::clashes(&mut s, p);
    explain::outstanding(&mut s, p, call_stacks);
    explain::per_chip(&mut s, p);
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
    if info.lost_events > 0 {
        // Said first too: every figure and explanation below is affected.
        let _ = writeln!(
            s,
            "WARNING: {} event(s) lost (ring buffer full): allocations, frees or closes are \
             missing below, so buffers may show as held that were freed, and counts are low",
            info.lost_events
        );
    }
    for p in ledger.processes.values() {
        s.push_str(&process_summary(p, &info.call_stacks));
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
