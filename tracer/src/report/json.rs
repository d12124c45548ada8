//! The `tracer.summary/1` JSON document.
use serde_json::{json, Map, Value};

use super::{explain, SessionInfo};
use crate::ledger::{
    program_bytes, Amounts, BufferType, ChipCircularBuffers, HeldBuffer, Ledger, PreAttach,
    ProcessLedger,
};
use crate::model::{Frame, Site};

pub const SCHEMA: &str = "tracer.summary/1";

fn amounts(a: &Amounts) -> Value {
    let mut m = Map::new();
    for t in BufferType::ALL {
        m.insert(t.name().to_string(), json!(a.get(t)));
    }
    Value::Object(m)
}

fn held(h: &HeldBuffer) -> Value {
    json!({
        "buffer_id": h.buffer.address,
        "unique_id": h.buffer.unique_id,
        "type": h.buffer.kind.name(),
        "requested": h.buffer.size,
        "reserved": h.reserved,
        "allocated_ns": h.allocated_ns,
        "chips": h.device.chips,
        "site": site(h.site.as_deref()),
    })
}

/// Where a buffer was allocated: the program's own line (`file`, `line`, `function`), the
/// ttnn entry point it called (`op`), and the frames kept (`stack`, innermost first); `null`
/// when the stack could not be read.
pub fn site(site: Option<&Site>) -> Value {
    let Some(s) = site else {
        return Value::Null;
    };
    let frame = |f: &Frame| json!({"file": f.file, "line": f.line, "function": f.function});
    let user = s.user_frame();
    json!({
        "file": user.map(|f| &f.file),
        "line": user.map(|f| f.line),
        "function": user.map(|f| &f.function),
        "op": s.op,
        "describe": s.describe(),
        "stack": s.frames.iter().map(frame).collect::<Vec<_>>(),
    })
}

/// Per type: when the reserved peak was reached and which buffers held it.
fn peak_details(p: &ProcessLedger, chip: i32) -> (Value, Value) {
    let (mut at, mut holders) = (Map::new(), Map::new());
    for t in BufferType::ALL {
        if let Some(peak) = p.peaks.get(&(chip, t)) {
            at.insert(t.name().to_string(), json!(peak.at_ns));
            holders.insert(
                t.name().to_string(),
                Value::Array(peak.holders.iter().map(held).collect()),
            );
        }
    }
    (Value::Object(at), Value::Object(holders))
}

fn lifecycle(p: &ProcessLedger) -> Value {
    p.lifecycle
        .iter()
        .map(|l| {
            json!({
                "at_ns": l.at_ns,
                "event": if l.opened { "open" } else { "close" },
                "mesh": l.device.mesh,
                "chips": l.device.chips,
                "shape": l.shape.map(|(r, c)| vec![r, c]),
                "freed_by_close": l.dropped,
            })
        })
        .collect()
}

fn clashes(p: &ProcessLedger) -> Value {
    p.clashes
        .iter()
        .map(|c| {
            let k = &c.clash;
            json!({
                "at_ns": c.at_ns,
                "program": k.program,
                "core_range": k.core_range.map(|r| r.describe()),
                "core_range_text": k.core_range_text,
                "cb_region_end": k.cb_region_end,
                "l1_buffer_address": k.l1_buffer_address,
                "overlap": k.cb_region_end.saturating_sub(k.l1_buffer_address),
                "l1_buffer_holders": c.holders.iter().map(|h| json!({
                    "buffer_id": h.buffer.address, "unique_id": h.buffer.unique_id,
                    "requested": h.buffer.size, "reserved": h.reserved,
                    "chips": h.device.chips, "allocated_ns": h.allocated_ns,
                })).collect::<Vec<_>>(),
            })
        })
        .collect()
}

fn ooms(p: &ProcessLedger) -> Value {
    p.ooms
        .iter()
        .map(|o| {
            let r = &o.refusal;
            json!({
                "at_ns": o.at_ns,
                "type": r.kind.name(),
                "requested": r.requested,
                "banks": r.banks,
                "per_bank": r.per_bank,
                "bank_size": r.bank_size,
                "allocated_per_bank": r.allocated_per_bank,
                "free_per_bank": r.free_per_bank,
                "largest_free": r.largest_free,
                "mesh": o.device.as_ref().map(|d| d.mesh),
                "chips": o.device.as_ref().map(|d| d.chips.clone()),
                "device_matched": o.matched,
                "cb_region_tops": o.cb_region_tops.iter().map(|(r, top)| json!({"core_range": r.describe(), "top": top})).collect::<Vec<_>>(),
                "holders": o.holders.iter().map(|(chip, hs)| json!({
                    "device": chip,
                    "reserved": hs.iter().map(|h| h.reserved).sum::<u64>(),
                    "buffers": hs.iter().map(held).collect::<Vec<_>>(),
                })).collect::<Vec<_>>(),
            })
        })
        .collect()
}

fn groups(p: &ProcessLedger) -> Value {
    explain::groups(p)
        .iter()
        .map(|g| {
            json!({
                "class": g.outcome.name(),
                "type": g.kind.name(),
                "requested": g.size,
                "chips": g.chips,
                "count": g.members.len(),
                "buffer_ids": g.members.iter().map(|o| o.held.buffer.address).collect::<Vec<_>>(),
                "reserved_per_chip": g.reserved_per_chip(),
                "requested_total": g.size * g.members.len() as u64 * g.chips.len() as u64,
                "allocated_ns": g.members.iter().map(|o| o.held.allocated_ns).collect::<Vec<_>>(),
                "site": site(g.site),
            })
        })
        .collect()
}

/// A chip's circular buffers: bytes summed over cores, as tt-metal's tracker counts them.
fn circular_buffers(c: &ChipCircularBuffers) -> Value {
    let programs: Vec<Value> = c
        .programs
        .iter()
        .map(|(program, cbs)| {
            json!({
                "program": program,
                "bytes": program_bytes(cbs),
                "buffers": cbs.iter().map(|b| json!({
                    "address": b.address, "size": b.size, "cores": b.cores(),
                    "globally_allocated": b.global,
                    "core_ranges": b.cores.iter().map(|r| r.describe()).collect::<Vec<_>>(),
                })).collect::<Vec<_>>(),
            })
        })
        .collect();
    let tops: Vec<Value> = c
        .region_tops()
        .into_iter()
        .map(|(r, top)| json!({"core_range": r.describe(), "top": top}))
        .collect();
    json!({
        "live_bytes": c.live_bytes,
        "peak_bytes": c.peak_bytes,
        "peak_at_ns": c.peak_ns,
        "largest_program_bytes": c.peak_program_bytes,
        "programs_placed": c.placed,
        "programs_released": c.released,
        "programs_held": c.held,
        "live_programs": programs,
        "region_tops": tops,
        "cut_core_ranges": c.cut,
    })
}

pub fn summary(ledger: &Ledger, info: &SessionInfo) -> Value {
    let processes: Vec<Value> = ledger
        .processes
        .values()
        .map(|p| {
            let devices: Vec<Value> = p
                .devices
                .iter()
                .map(|(chip, d)| {
                    let (peak_at, peak_holders) = peak_details(p, *chip);
                    json!({
                        "device": chip,
                        "allocations": d.allocations,
                        "deallocations": d.deallocations,
                        "live": {"buffers": d.live_buffers, "requested": amounts(&d.requested), "reserved": amounts(&d.reserved)},
                        "peak": {"requested": amounts(&d.peak_requested), "reserved": amounts(&d.peak_reserved),
                                 "reserved_at_ns": peak_at, "holders": peak_holders},
                        "seeded": {"requested": amounts(&d.seeded), "buffers": d.seeded_buffers},
                        "freed_before_attach": {"count": d.freed_before_attach, "requested": d.freed_before_attach_bytes},
                        "circular_buffers": circular_buffers(&d.circular_buffers),
                    })
                })
                .collect();
            let outstanding: Vec<Value> = p
                .outstanding
                .iter()
                .flat_map(|o| {
                    o.held.device.chips.iter().map(move |chip| {
                        json!({
                            "device": chip,
                            "buffer_id": o.held.buffer.address,
                            "unique_id": o.held.buffer.unique_id,
                            "type": o.held.buffer.kind.name(),
                            "requested": o.held.buffer.size,
                            "reserved": o.held.reserved,
                            "allocated_ns": o.held.allocated_ns,
                            "class": o.outcome.name(),
                            "site": site(o.held.site.as_deref()),
                        })
                    })
                })
                .collect();
            json!({
                "pid": p.pid,
                "command": p.command,
                "exit_code": p.exit_code,
                "library": info.process_libraries.get(&p.pid),
                // Seen to end while traced (its exit code is known only for the launched command).
                "exited": p.exited,
                "devices": devices,
                "outstanding": outstanding,
                "unknown_frees": p.unknown_frees,
                // Allocations whose `reserved` fell back to `requested` (geometry unknown).
                "reserved_estimated": p.reserved_estimated,
                "outstanding_groups": groups(p),
                "lifecycle": lifecycle(p),
                "oom": ooms(p),
                "circular_buffer_clashes": clashes(p),
                "attach": match &p.pre_attach {
                    None => Value::Null,
                    Some(PreAttach::Seeded(source)) => json!({"mode": "seeded", "source": source,
                        "unknown_frees": p.unknown_frees, "unknown_free_bytes": p.unknown_free_bytes,
                        "raced_with_read": p.seed_raced}),
                    Some(PreAttach::SinceAttach) => json!({"mode": "since_attach",
                        "unknown_frees": p.unknown_frees, "unknown_free_bytes": p.unknown_free_bytes}),
                },
            })
        })
        .collect();
    let mut doc = json!({
        "schema": SCHEMA,
        "lost_events": info.lost_events,
        "runtime": {"library": info.library, "build_id": info.build_id, "layout": info.layout},
        "processes": processes,
        "call_stacks": info.call_stacks,
    });
    // Live sessions only: a recording does not carry the probes' hit counts.
    if !info.probe_hits.is_empty() {
        doc["probe_hits"] = json!(info.probe_hits);
    }
    doc
}
