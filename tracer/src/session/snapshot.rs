//! `tracer snapshot --pid PID [--json]`: what a running process holds now, read from its own
//! memory (no probes), as the summary of a session would show it.
use std::{collections::BTreeMap, path::PathBuf, time::Instant};

use anyhow::{anyhow, Result};
use serde_json::json;

use super::held::{self, MEMORY_SOURCE};
use crate::{
    ledger::Ledger,
    model::{Event, EventKind},
    plan,
    report::{self, human_bytes, SessionInfo},
    runtime::{discover, process::command_line},
};

pub fn snapshot(pid: u32, json: bool, lib: Option<PathBuf>) -> Result<i32> {
    let started = Instant::now();
    let lib = match lib {
        Some(l) => discover::checked(&l)?,
        None => {
            discover::library_in_process(pid)?
                .ok_or_else(|| anyhow!("PID {pid} does not map the tt-metal runtime library"))?
                .0
        }
    };
    let plan = plan::for_library(&lib)?;
    let calibrated = started.elapsed();
    let read = held::read(pid, &plan)?;
    let read_time = std::time::Duration::from_nanos(read.between.1 - read.between.0);
    let ts_ns = read.between.1;
    let ev = |kind| Event { ts_ns, pid, kind };
    let mut ledger = Ledger::new();
    ledger.apply(&ev(EventKind::ProcessStart {
        command: command_line(pid),
    }));
    ledger.apply(&ev(EventKind::Attached {
        seeded_from: Some(MEMORY_SOURCE.into()),
    }));
    for e in held::events(pid, &read.held, ts_ns) {
        ledger.apply(&e);
    }
    ledger.finish(ts_ns);
    let traced = plan.traced();
    let info = SessionInfo {
        library: traced.library,
        build_id: traced.build_id,
        layout: traced.layout,
        lost_events: 0,
        call_stacks: traced.call_stacks,
        process_libraries: BTreeMap::new(),
        probe_hits: BTreeMap::new(),
    };
    let h = &read.held;
    let estimated = h.buffers.iter().filter(|b| b.sharded_unknown).count();
    if json {
        let mut doc = report::json::summary(&ledger, &info);
        doc["snapshot"] = json!({
            "pid": pid,
            "source": MEMORY_SOURCE,
            "buffers": h.buffers.len(),
            "device_objects": h.devices.len(),
            "read_ms": read_time.as_secs_f64() * 1e3,
            "calibrate_ms": calibrated.as_secs_f64() * 1e3,
            "heap_searched_bytes": h.scanned,
            "retries": h.retries,
            "sharded_without_footprint": estimated,
            "programs": h.programs.len(),
            "circular_buffers_unread": h.programs_unread,
        });
        println!("{}", serde_json::to_string_pretty(&doc)?);
    } else {
        println!(
            "snapshot of PID {pid}: {} buffer(s) on {} device object(s) and {} program(s) placed \
             on its chips, read from its memory in {:.1} ms ({} of heap searched for device \
             objects)",
            h.buffers.len(),
            h.devices.len(),
            h.programs.len(),
            read_time.as_secs_f64() * 1e3,
            human_bytes(h.scanned)
        );
        if let Some(why) = &h.programs_unread {
            println!(
                "note: the circular buffers of its programs were not read ({why}): CB figures \
                 are missing"
            );
        }
        if estimated > 0 {
            println!(
                "note: {estimated} sharded buffer(s) without readable shard parameters: their \
                 reserved bytes are estimated"
            );
        }
        print!("{}", report::text::summary(&ledger, &info));
    }
    Ok(0)
}
