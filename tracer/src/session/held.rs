//! What a running process holds, read from its memory ([`crate::runtime::held`]), as the
//! ledger's events: `tracer snapshot`, and the seed of a mid-run attach.
use anyhow::{anyhow, Context, Result};

use crate::{
    model::{Event, EventKind},
    plan::ProbePlan,
    probe::monotonic_ns,
    runtime::{
        discover,
        held::{self, Held, Reading},
    },
};

/// How the ledger and the output name this source of a seed.
pub const MEMORY_SOURCE: &str = "the process's own allocators";

/// A read and when it happened.
pub struct Read {
    pub held: Held,
    /// CLOCK_MONOTONIC before and after.
    pub between: (u64, u64),
}

/// Reads what `pid` holds now, with the layouts of `plan` (its runtime library must be the
/// one `pid` maps).
pub fn read(pid: u32, plan: &ProbePlan) -> Result<Read> {
    let held_layout = plan
        .held
        .as_ref()
        .map_err(|e| anyhow!("this runtime's allocators do not calibrate for reading: {e}"))?;
    let allocator = plan
        .allocator
        .as_ref()
        .map_err(|e| anyhow!("this runtime's allocator geometry does not calibrate: {e}"))?;
    let (Some(device_vptr), Some(mesh_vptr)) = (plan.device_vptr, plan.mesh_vptr) else {
        return Err(anyhow!(
            "the runtime library has no Device or MeshDevice vtable symbol"
        ));
    };
    let (_, base) = discover::library_in_process(pid)?
        .ok_or_else(|| anyhow!("PID {pid} does not map the tt-metal runtime library"))?;
    let programs = match (&plan.programs, &plan.core_ranges) {
        (Ok(p), Ok(r)) => Ok((p, r)),
        (Err(e), _) => Err(format!("their layout does not calibrate: {e}")),
        (_, Err(e)) => Err(format!("the layout of core ranges does not calibrate: {e}")),
    };
    let reading = Reading {
        layout: &plan.layout,
        allocator,
        held: held_layout,
        programs,
        device_vptr,
        mesh_vptr,
    };
    let t0 = monotonic_ns();
    let held = held::read(pid, base, &reading)
        .with_context(|| format!("cannot read what PID {pid} holds"))?;
    Ok(Read {
        held,
        between: (t0, monotonic_ns()),
    })
}

/// The ledger events of a read, at `ts_ns`: the bank geometry, then every buffer.
pub fn events(pid: u32, held: &Held, ts_ns: u64) -> Vec<Event> {
    let ev = |kind| Event { ts_ns, pid, kind };
    let mut out = Vec::with_capacity(held.buffers.len() + held.geometry.len());
    for (kind, g) in &held.geometry {
        out.push(ev(EventKind::BankGeometry {
            kind: *kind,
            banks: g.banks,
            alignment: g.alignment,
            granularity: g.granularity,
        }));
    }
    let mut buffers: Vec<_> = held.buffers.iter().collect();
    buffers.sort_by_key(|b| b.buffer.unique_id);
    for b in buffers {
        if let Some(pages) = b.shard_pages {
            out.push(ev(EventKind::ShardFootprint {
                device: b.device.handle,
                unique_id: b.buffer.unique_id,
                pages_per_bank: pages,
            }));
        }
        out.push(ev(EventKind::Held {
            device: b.device.clone(),
            buffer: b.buffer.clone(),
        }));
    }
    // Programs without a CB hold nothing the ledger counts (the probes announce none either).
    for p in held.programs.iter().filter(|p| !p.buffers.is_empty()) {
        out.push(ev(EventKind::HeldCircularBuffers {
            device: p.device.clone(),
            program: p.program,
            buffers: p.buffers.clone(),
        }));
    }
    out
}

/// Per chip and buffer type, the requested bytes of a read (to compare with another source).
pub fn requested_per_chip(held: &Held) -> std::collections::BTreeMap<(i32, &'static str), u64> {
    let mut out = std::collections::BTreeMap::new();
    for b in &held.buffers {
        for chip in &b.device.chips {
            *out.entry((*chip, b.buffer.kind.name())).or_default() += b.buffer.size;
        }
    }
    out
}
