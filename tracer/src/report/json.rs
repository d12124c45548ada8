//! The `tracer.summary/1` JSON document.
use serde_json::{json, Map, Value};

use super::SessionInfo;
use crate::ledger::{Amounts, BufferType, Ledger, PreAttach};

pub const SCHEMA: &str = "tracer.summary/1";

fn amounts(a: &Amounts) -> Value {
    let mut m = Map::new();
    for t in BufferType::ALL {
        m.insert(t.name().to_string(), json!(a.get(t)));
    }
    Value::Object(m)
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
                    json!({
                        "device": chip,
                        "allocations": d.allocations,
                        "deallocations": d.deallocations,
                        "live": {"buffers": d.live_buffers, "requested": amounts(&d.requested), "reserved": amounts(&d.reserved)},
                        "peak": {"requested": amounts(&d.peak_requested), "reserved": amounts(&d.peak_reserved)},
                        "seeded": {"requested": amounts(&d.seeded)},
                        "freed_before_attach": {"count": d.freed_before_attach, "requested": d.freed_before_attach_bytes},
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
                        })
                    })
                })
                .collect();
            json!({
                "pid": p.pid,
                "command": p.command,
                "exit_code": p.exit_code,
                "devices": devices,
                "outstanding": outstanding,
                "unknown_frees": p.unknown_frees,
                "attach": match &p.pre_attach {
                    None => Value::Null,
                    Some(PreAttach::Seeded(source)) => json!({"mode": "seeded", "source": source,
                        "unknown_frees": p.unknown_frees, "unknown_free_bytes": p.unknown_free_bytes}),
                    Some(PreAttach::SinceAttach) => json!({"mode": "since_attach",
                        "unknown_frees": p.unknown_frees, "unknown_free_bytes": p.unknown_free_bytes}),
                },
            })
        })
        .collect();
    json!({
        "schema": SCHEMA,
        "lost_events": info.lost_events,
        "runtime": {"library": info.library, "build_id": info.build_id, "layout": info.layout},
        "processes": processes,
    })
}
