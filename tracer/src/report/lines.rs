//! One line per event, in the format of the contract (and of the seed tooling).
use std::fmt::Write as _;

use super::human_bytes;
use crate::ledger::{ClashRecord, DeviceRef, Event, EventKind, OomRecord, Outstanding};

fn chips_of(d: &DeviceRef) -> Vec<String> {
    if d.chips.is_empty() {
        vec![format!("mesh@{:#x} (chips unknown)", d.handle)]
    } else {
        d.chips.iter().map(|c| c.to_string()).collect()
    }
}

/// The lines an event prints (none for bookkeeping events).
pub fn event_lines(ev: &Event) -> Vec<String> {
    let pid = ev.pid;
    match &ev.kind {
        EventKind::Alloc { device, buffer } => chips_of(device)
            .into_iter()
            .map(|chip| {
                format!(
                    "✓ [PID {pid}] Allocated {} bytes of {} on device {chip} (buffer_id={})",
                    buffer.size,
                    buffer.kind.name(),
                    buffer.address
                )
            })
            .collect(),
        EventKind::Free { device, buffer } => chips_of(device)
            .into_iter()
            .map(|chip| {
                format!(
                    "✗ [PID {pid}] Freed buffer {} on device {chip} ({} bytes)",
                    buffer.address, buffer.size
                )
            })
            .collect(),
        EventKind::DeviceClose { device } if device.mesh => vec![format!(
            "• [PID {pid}] Mesh closed: chips {}",
            chips_of(device).join(",")
        )],
        EventKind::DeviceClose { device } => vec![format!(
            "• [PID {pid}] Device {} closed",
            chips_of(device).join(",")
        )],
        EventKind::DeviceOpen { device, shape } if device.mesh => {
            let shape = shape.map_or(String::new(), |(r, c)| format!(" {r}x{c}"));
            vec![format!(
                "• [PID {pid}] Mesh{shape} opened: chips {}",
                chips_of(device).join(",")
            )]
        }
        EventKind::DeviceOpen { device, .. } => vec![format!(
            "• [PID {pid}] Device {} opened",
            chips_of(device).join(",")
        )],
        EventKind::CircularBuffers {
            device,
            program,
            buffers,
        } => chips_of(device)
            .into_iter()
            .map(|chip| {
                let cores: Vec<String> = buffers
                    .iter()
                    .map(|b| {
                        let ranges: Vec<String> = b.cores.iter().map(|r| r.describe()).collect();
                        format!("{}x{}@{}", b.size, b.cores(), ranges.join("+"))
                    })
                    .collect();
                format!(
                    "◆ [PID {pid}] Placed {} circular buffer(s) of program {program:#x} on device {chip}: {} bytes of L1 over the cores (size x cores@ranges: {})",
                    buffers.len(),
                    crate::ledger::program_bytes(buffers),
                    cores.join(", ")
                )
            })
            .collect(),
        EventKind::ProgramReleased { device, program } => chips_of(device)
            .into_iter()
            .map(|chip| {
                format!(
                    "◇ [PID {pid}] Released the circular buffers of program {program:#x} on device {chip}"
                )
            })
            .collect(),
        _ => Vec::new(),
    }
}

/// What a close dropped that the program never deallocated.
pub fn dropped_by_close(pid: u32, dropped: &[Outstanding]) -> Option<String> {
    if dropped.is_empty() {
        return None;
    }
    let mut chips: Vec<i32> = dropped
        .iter()
        .flat_map(|o| o.held.device.chips.clone())
        .collect();
    chips.sort_unstable();
    chips.dedup();
    let mut s = format!(
        "! [PID {pid}] {} buffer(s) never deallocated were dropped by the close (freed_by_close) on device(s) {}:",
        dropped.len(),
        chips.iter().map(|c| c.to_string()).collect::<Vec<_>>().join(",")
    );
    for o in dropped {
        let b = &o.held.buffer;
        let _ = write!(
            s,
            " {} {} bytes (buffer_id={});",
            b.kind.name(),
            b.size,
            b.address
        );
    }
    Some(s)
}

/// How many holders an out-of-memory line names.
const OOM_HOLDERS_SHOWN: usize = 5;

/// An out-of-memory event: what was refused, where, and the largest holders on that chip.
pub fn oom(pid: u32, o: &OomRecord) -> Vec<String> {
    let r = &o.refusal;
    let on = match &o.device {
        Some(d) if d.mesh => format!("mesh chips {}", chips_of(d).join(",")),
        Some(d) => format!("device {}", chips_of(d).join(",")),
        None => "an unknown device".to_string(),
    };
    let mut out = vec![format!(
        "! [PID {pid}] Out of memory: {} allocation of {} bytes refused on {on} \
         ({} B per bank x {} banks needed; bank size {} B, allocated {} B, free {} B, largest free block {} B per bank){}",
        r.kind.name(),
        r.requested,
        r.per_bank,
        r.banks,
        r.bank_size,
        r.allocated_per_bank,
        r.free_per_bank,
        r.largest_free,
        if o.matched { "" } else { " [device inferred: no ledger matched the allocator's count]" }
    )];
    // The chips of a mesh hold the same buffers: one line per distinct holder list.
    let mut shown: Vec<&Vec<crate::ledger::HeldBuffer>> = Vec::new();
    for (_, holders) in &o.holders {
        if shown.contains(&holders) {
            continue;
        }
        shown.push(holders);
        let chips: Vec<String> = o
            .holders
            .iter()
            .filter(|(_, h)| h == holders)
            .map(|(c, _)| c.to_string())
            .collect();
        let total: u64 = holders.iter().map(|h| h.reserved).sum();
        let mut s = format!(
            "    device(s) {}: {} reserved by {} buffer(s) ({} bytes each); largest:",
            chips.join(","),
            r.kind.name(),
            holders.len(),
            total
        );
        for h in holders.iter().take(OOM_HOLDERS_SHOWN) {
            let _ = write!(
                s,
                " {} (buffer_id={}, {} reserved);",
                human_bytes(h.buffer.size),
                h.buffer.address,
                human_bytes(h.reserved)
            );
        }
        out.push(s);
    }
    out
}

/// Both sides of a program refused because its circular buffers would overlap an L1 buffer.
pub fn clash(pid: u32, c: &ClashRecord) -> String {
    let k = &c.clash;
    let cores = k
        .core_range
        .map_or(k.core_range_text.clone(), |r| r.describe());
    let mut s = format!(
        "✗ [PID {pid}] Program {} refused: its circular buffers would end at {} on cores {cores}, above the lowest L1 buffer there, at {} ({} B overlap)",
        k.program,
        k.cb_region_end,
        k.l1_buffer_address,
        k.cb_region_end.saturating_sub(k.l1_buffer_address)
    );
    match c.holders.as_slice() {
        [] => s.push_str("; that L1 buffer was allocated before tracing (holder unknown)"),
        holders => {
            for h in holders {
                let chips: Vec<String> = h.device.chips.iter().map(|c| c.to_string()).collect();
                let _ = write!(
                    s,
                    "; held by buffer_id={} (unique_id {}, {} B requested, {} B reserved per chip, on chip(s) {}, allocated at ns {})",
                    h.buffer.address,
                    h.buffer.unique_id,
                    h.buffer.size,
                    h.reserved,
                    chips.join(","),
                    h.allocated_ns
                );
            }
        }
    }
    s
}
