//! One line per event, in the format of the contract (and of the seed tooling).
use std::fmt::Write as _;

use crate::ledger::{DeviceRef, Event, EventKind, Outstanding};

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
