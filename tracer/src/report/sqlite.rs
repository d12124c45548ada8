//! SQLite export: processes, devices (object -> chips), buffers (one row per lifetime, with
//! the bytes reserved on each chip), events, and the chip-wide peaks, so that "who held the
//! most L1 on chip 3 at the peak" is one query (see README).
use std::{collections::HashMap, path::Path};

use anyhow::{Context, Result};
use rusqlite::{params, Connection};

use super::{chips::ChipTotals, csv::snake};
use crate::{
    ledger::{EventKind, Outcome},
    recording::reader::{Recording, Replayed},
    report::replay::Replay,
};

const SCHEMA: &str = "
CREATE TABLE session(key TEXT PRIMARY KEY, value TEXT);
CREATE TABLE processes(pid INTEGER PRIMARY KEY, command TEXT, exit_code INTEGER, exited INTEGER);
-- One row per chip of each device object (a mesh has one row per chip).
CREATE TABLE devices(pid INTEGER, handle INTEGER, chip INTEGER, mesh INTEGER,
                     PRIMARY KEY(pid, handle, chip));
-- One row per buffer lifetime; reserved = bytes the allocator holds on EACH chip of the device.
CREATE TABLE buffers(id INTEGER PRIMARY KEY, pid INTEGER, device_handle INTEGER,
                     unique_id INTEGER, buffer_id INTEGER, type TEXT, requested INTEGER,
                     page_size INTEGER, reserved INTEGER, allocated_ns INTEGER,
                     freed_ns INTEGER, outcome TEXT,
                     -- Where it was allocated: the program's Python line and the ttnn op it
                     -- called; site_stack is the kept frames as JSON (NULL: no stack read).
                     site_file TEXT, site_line INTEGER, site_function TEXT, site_op TEXT,
                     site_stack TEXT,
                     -- 1: held when tracer attached (read from the process's memory;
                     -- allocated_ns is when it was read).
                     held_at_attach INTEGER NOT NULL DEFAULT 0);
CREATE TABLE events(seq INTEGER PRIMARY KEY, ts_ns INTEGER, pid INTEGER, kind TEXT,
                    buffer INTEGER REFERENCES buffers(id), detail TEXT);
-- One row per circular buffer of a program on a chip: size bytes of L1 on each of its cores
-- from address, from placed_ns until released_ns (the program's destruction or a close).
CREATE TABLE circular_buffers(id INTEGER PRIMARY KEY, pid INTEGER, chip INTEGER,
                              program INTEGER, address INTEGER, size INTEGER, cores INTEGER,
                              core_ranges TEXT, globally_allocated INTEGER,
                              placed_ns INTEGER, released_ns INTEGER,
                              -- 1: its program was placed before tracer attached (read from
                              -- the process's memory; placed_ns is when it was read).
                              held_at_attach INTEGER NOT NULL DEFAULT 0);
-- Highest reserved bytes per chip and type over all processes, and when first reached.
CREATE TABLE peaks(chip INTEGER, type TEXT, reserved INTEGER, at_ns INTEGER,
                   PRIMARY KEY(chip, type));
";

/// One `devices` row per chip of a device object (a mesh has several).
fn insert_device(
    stmt: &mut rusqlite::Statement,
    pid: u32,
    device: &crate::ledger::DeviceRef,
) -> rusqlite::Result<()> {
    for chip in &device.chips {
        stmt.execute(params![pid, device.handle as i64, chip, device.mesh])?;
    }
    Ok(())
}

pub fn export(rec: &Recording, out: &Path) -> Result<Replayed> {
    if out.exists() {
        std::fs::remove_file(out).with_context(|| format!("cannot replace {}", out.display()))?;
    }
    let mut db =
        Connection::open(out).with_context(|| format!("cannot create {}", out.display()))?;
    db.execute_batch(SCHEMA)?;
    let tx = db.transaction()?;
    let mut totals = ChipTotals::default();
    let mut live: HashMap<(u32, u64, u64), i64> = HashMap::new();
    // Rows of buffers read at the attach that no allocation event has matched yet.
    let mut held_rows: std::collections::HashSet<i64> = Default::default();
    // Rows of the circular buffers a program holds on a chip: (pid, chip, program) -> ids.
    let mut placed: HashMap<(u32, i32, u64), Vec<i64>> = HashMap::new();
    let mut err: Option<rusqlite::Error> = None;
    let replay = {
        let mut ins_dev = tx.prepare(
            "INSERT OR IGNORE INTO devices(pid, handle, chip, mesh) VALUES (?1, ?2, ?3, ?4)",
        )?;
        let mut ins_buf = tx.prepare(
            "INSERT INTO buffers(pid, device_handle, unique_id, buffer_id, type, requested,
             page_size, reserved, allocated_ns, site_file, site_line, site_function, site_op,
             site_stack, held_at_attach)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)",
        )?;
        // A buffer both read at the attach and seen allocated is one lifetime, allocated then.
        let mut raced_buf =
            tx.prepare("UPDATE buffers SET allocated_ns = ?2, held_at_attach = 0 WHERE id = ?1")?;
        let mut end_buf =
            tx.prepare("UPDATE buffers SET freed_ns = ?2, outcome = ?3 WHERE id = ?1")?;
        let mut ins_cb = tx.prepare(
            "INSERT INTO circular_buffers(pid, chip, program, address, size, cores, core_ranges,
             globally_allocated, placed_ns, held_at_attach)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
        )?;
        let mut end_cb =
            tx.prepare("UPDATE circular_buffers SET released_ns = ?2 WHERE id = ?1")?;
        let mut ins_ev = tx.prepare(
            "INSERT INTO events(seq, ts_ns, pid, kind, buffer, detail) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )?;
        let mut seq = 0i64;
        let mut step =
            |ledger: &crate::ledger::Ledger, ev: &crate::ledger::Event| -> rusqlite::Result<()> {
                let ts = ev.ts_ns as i64;
                let mut buffer_row = None;
                let kind = match &ev.kind {
                    EventKind::Alloc { device, buffer } | EventKind::Held { device, buffer } => {
                        let held_now = matches!(ev.kind, EventKind::Held { .. });
                        insert_device(&mut ins_dev, ev.pid, device)?;
                        let key = (ev.pid, device.handle, buffer.unique_id);
                        let raced = live
                            .get(&key)
                            .copied()
                            .filter(|old| !held_now && held_rows.contains(old));
                        if let Some(old) = raced {
                            held_rows.remove(&old);
                            raced_buf.execute(params![old, ts])?;
                            buffer_row = Some(old);
                        } else {
                            if let Some(old) = live.remove(&key) {
                                held_rows.remove(&old);
                                end_buf.execute(params![old, ts, "replaced"])?;
                            }
                            let held = ledger
                                .processes
                                .get(&ev.pid)
                                .and_then(|p| p.held(device.handle, buffer.unique_id));
                            let reserved = held.map_or(buffer.size, |h| h.reserved);
                            let site = held.and_then(|h| h.site.as_deref());
                            let user = site.and_then(|s| s.user_frame());
                            ins_buf.execute(params![
                                ev.pid,
                                device.handle as i64,
                                buffer.unique_id as i64,
                                buffer.address as i64,
                                buffer.kind.name(),
                                buffer.size as i64,
                                buffer.page_size as i64,
                                reserved as i64,
                                ts,
                                user.map(|f| f.file.as_str()),
                                user.map(|f| f.line),
                                user.map(|f| f.function.as_str()),
                                site.and_then(|s| s.op.as_deref()),
                                site.map(|s| super::json::site(Some(s))["stack"].to_string()),
                                held_now,
                            ])?;
                            let id = tx.last_insert_rowid();
                            live.insert(key, id);
                            if held_now {
                                held_rows.insert(id);
                            }
                            buffer_row = Some(id);
                        }
                        if held_now { "held" } else { "alloc" }.to_string()
                    }
                    EventKind::Free { device, buffer } => {
                        if let Some(id) = live.remove(&(ev.pid, device.handle, buffer.unique_id)) {
                            held_rows.remove(&id);
                            end_buf.execute(params![id, ts, "freed"])?;
                            buffer_row = Some(id);
                        }
                        "free".to_string()
                    }
                    EventKind::DeviceClose { device } => {
                        insert_device(&mut ins_dev, ev.pid, device)?;
                        let gone: Vec<_> = live
                            .keys()
                            .filter(|k| k.0 == ev.pid && k.1 == device.handle)
                            .copied()
                            .collect();
                        for k in gone {
                            if let Some(id) = live.remove(&k) {
                                end_buf.execute(params![id, ts, Outcome::FreedByClose.name()])?;
                            }
                        }
                        let programs: Vec<_> = placed
                            .keys()
                            .filter(|k| k.0 == ev.pid && device.chips.contains(&k.1))
                            .copied()
                            .collect();
                        for k in programs {
                            for id in placed.remove(&k).unwrap_or_default() {
                                end_cb.execute(params![id, ts])?;
                            }
                        }
                        "device_close".to_string()
                    }
                    EventKind::DeviceOpen { device, .. } => {
                        insert_device(&mut ins_dev, ev.pid, device)?;
                        "device_open".to_string()
                    }
                    EventKind::CircularBuffers {
                        device,
                        program,
                        buffers,
                    }
                    | EventKind::HeldCircularBuffers {
                        device,
                        program,
                        buffers,
                    } => {
                        let held_now = matches!(ev.kind, EventKind::HeldCircularBuffers { .. });
                        insert_device(&mut ins_dev, ev.pid, device)?;
                        for chip in &device.chips {
                            let rows = placed.entry((ev.pid, *chip, *program)).or_default();
                            for id in rows.drain(..) {
                                end_cb.execute(params![id, ts])?;
                            }
                            for b in buffers {
                                let ranges: Vec<String> =
                                    b.cores.iter().map(|r| r.describe()).collect();
                                ins_cb.execute(params![
                                    ev.pid,
                                    chip,
                                    *program as i64,
                                    b.address as i64,
                                    b.size as i64,
                                    b.cores() as i64,
                                    ranges.join(" "),
                                    b.global,
                                    ts,
                                    held_now
                                ])?;
                                rows.push(tx.last_insert_rowid());
                            }
                        }
                        if held_now {
                            "held_circular_buffers"
                        } else {
                            "circular_buffers"
                        }
                        .to_string()
                    }
                    EventKind::ProgramReleased { device, program } => {
                        for chip in &device.chips {
                            for id in placed
                                .remove(&(ev.pid, *chip, *program))
                                .unwrap_or_default()
                            {
                                end_cb.execute(params![id, ts])?;
                            }
                        }
                        "program_released".to_string()
                    }
                    other => serde_json::to_value(other)
                        .ok()
                        .and_then(|v| match v {
                            serde_json::Value::Object(m) => m.keys().next().map(|k| snake(k)),
                            serde_json::Value::String(s) => Some(snake(&s)),
                            _ => None,
                        })
                        .unwrap_or_else(|| "event".into()),
                };
                let detail = serde_json::to_string(&ev.kind).unwrap_or_default();
                ins_ev.execute(params![seq, ts, ev.pid, kind, buffer_row, detail])?;
                seq += 1;
                totals.changes(ledger, ev);
                Ok(())
            };
        Replay::run(rec, None, |ledger, ev| {
            if err.is_none() {
                if let Err(e) = step(ledger, ev) {
                    err = Some(e);
                }
            }
        })?
    };
    if let Some(e) = err {
        return Err(e.into());
    }
    // Whatever is still held ends as the ledger classified it (leaked / live_at_detach).
    for p in replay.ledger.processes.values() {
        tx.execute(
            "INSERT INTO processes(pid, command, exit_code, exited) VALUES (?1, ?2, ?3, ?4)",
            params![p.pid, p.command, p.exit_code, p.exited],
        )?;
        for o in &p.outstanding {
            if let Some(id) = live.remove(&(p.pid, o.held.device.handle, o.held.buffer.unique_id)) {
                tx.execute(
                    "UPDATE buffers SET outcome = ?2 WHERE id = ?1",
                    params![id, o.outcome.name()],
                )?;
            }
        }
    }
    for ((chip, ty), (bytes, at)) in &totals.peaks {
        tx.execute(
            "INSERT INTO peaks(chip, type, reserved, at_ns) VALUES (?1, ?2, ?3, ?4)",
            params![chip, ty.name(), *bytes as i64, *at as i64],
        )?;
    }
    let h = &rec.header;
    for (k, v) in [
        ("command", h.command.clone()),
        ("host", h.host.clone()),
        ("kernel", h.kernel.clone()),
        ("library", h.library.clone()),
        ("build_id", h.build_id.clone().unwrap_or_default()),
        ("layout", h.layout.clone()),
        ("start_unix_ns", h.start_unix_ns.to_string()),
        ("monotonic_base_ns", h.monotonic_base_ns.to_string()),
        ("truncated", replay.read.truncated.is_some().to_string()),
    ] {
        tx.execute(
            "INSERT INTO session(key, value) VALUES (?1, ?2)",
            params![k, v],
        )?;
    }
    tx.commit()?;
    Ok(replay.read)
}
