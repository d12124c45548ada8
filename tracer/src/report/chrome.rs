//! Chrome trace-event JSON (opens in Perfetto UI): a counter track per chip and buffer type
//! with the bytes the chip's allocator holds (all processes), one per chip with the L1 its
//! programs' circular buffers hold (`chip N CB`), and an instant event per allocation and free
//! on the process's own track.
use std::{io::Write, path::Path};

use anyhow::{Context, Result};
use serde_json::json;

use super::chips::ChipTotals;
use crate::{
    ledger::EventKind,
    recording::reader::{Recording, Replayed},
    report::replay::Replay,
};

/// The pseudo-process that holds the counter tracks: above Linux's largest pid_max (2^22), so
/// it is never a traced PID, and not 0, which trace viewers treat as the idle task.
pub const COUNTERS_PID: u32 = (1 << 22) + 1;

/// The name of the counter track of `chip` and buffer type `ty`.
pub fn track(chip: i32, ty: &str) -> String {
    format!("chip {chip} {ty}")
}

pub fn export(rec: &Recording, out: &Path) -> Result<Replayed> {
    let file =
        std::fs::File::create(out).with_context(|| format!("cannot create {}", out.display()))?;
    let mut w = std::io::BufWriter::new(file);
    let base = rec.header.monotonic_base_ns;
    let counters = json!({
        "ph": "M", "name": "process_name", "pid": COUNTERS_PID,
        "args": {"name": "device memory, reserved bytes per chip (all processes)"}
    });
    let mut totals = ChipTotals::default();
    // Circular-buffer bytes per chip over all processes, as last emitted.
    let mut cb_last: std::collections::BTreeMap<i32, u64> = Default::default();
    let mut err = None;
    let mut emit =
        |w: &mut std::io::BufWriter<std::fs::File>, v: &serde_json::Value, first: bool| {
            let sep = if first { "" } else { ",\n" };
            if err.is_none() {
                if let Err(e) = write!(w, "{sep}{v}") {
                    err = Some(e);
                }
            }
        };
    writeln!(w, "{{\"displayTimeUnit\":\"ms\",\"traceEvents\":[")?;
    emit(&mut w, &counters, true);
    let replay = Replay::run(rec, None, |ledger, ev| {
        let ts = ev.ts_ns.saturating_sub(base) as f64 / 1e3;
        match &ev.kind {
            EventKind::ProcessStart { command } => emit(
                &mut w,
                &json!({"ph": "M", "name": "process_name", "pid": ev.pid,
                        "args": {"name": format!("PID {} {command}", ev.pid)}}),
                false,
            ),
            EventKind::Alloc { device, buffer } | EventKind::Free { device, buffer } => {
                let verb = if matches!(ev.kind, EventKind::Alloc { .. }) {
                    "alloc"
                } else {
                    "free"
                };
                emit(
                    &mut w,
                    &json!({"ph": "i", "s": "t", "pid": ev.pid, "tid": ev.pid, "ts": ts,
                            "name": format!("{verb} {} {} B", buffer.kind.name(), buffer.size),
                            "args": {"buffer_id": buffer.address, "unique_id": buffer.unique_id,
                                     "chips": device.chips, "requested": buffer.size}}),
                    false,
                );
            }
            EventKind::DeviceClose { device } => emit(
                &mut w,
                &json!({"ph": "i", "s": "t", "pid": ev.pid, "tid": ev.pid, "ts": ts,
                        "name": "device close", "args": {"chips": device.chips}}),
                false,
            ),
            _ => {}
        }
        for (chip, ty, bytes) in totals.changes(ledger, ev) {
            emit(
                &mut w,
                &json!({"ph": "C", "pid": COUNTERS_PID, "ts": ts,
                        "name": track(chip, ty.name()), "args": {"reserved": bytes}}),
                false,
            );
        }
        if matches!(
            ev.kind,
            EventKind::CircularBuffers { .. }
                | EventKind::ProgramReleased { .. }
                | EventKind::DeviceClose { .. }
        ) {
            let chips: Vec<i32> = ledger
                .processes
                .get(&ev.pid)
                .map(|p| p.devices.keys().copied().collect())
                .unwrap_or_default();
            for chip in chips {
                let bytes: u64 = ledger
                    .processes
                    .values()
                    .filter_map(|q| q.devices.get(&chip))
                    .map(|d| d.circular_buffers.live_bytes)
                    .sum();
                if cb_last.insert(chip, bytes) != Some(bytes) {
                    emit(
                        &mut w,
                        &json!({"ph": "C", "pid": COUNTERS_PID, "ts": ts,
                                "name": track(chip, "CB"), "args": {"bytes": bytes}}),
                        false,
                    );
                }
            }
        }
    })?;
    write!(w, "\n]}}\n")?;
    if let Some(e) = err {
        return Err(e).with_context(|| format!("cannot write {}", out.display()));
    }
    w.flush()?;
    Ok(replay.read)
}
