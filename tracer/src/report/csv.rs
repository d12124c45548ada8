//! CSV export: one row per recorded event.
use std::{io::Write, path::Path};

use anyhow::{Context, Result};

use crate::{
    ledger::EventKind,
    recording::reader::{Recording, Replayed},
    report::replay::Replay,
};

pub const COLUMNS: &str = "seq,ts_ns,t_s,pid,event,device_handle,mesh,chips,buffer_id,unique_id,type,requested,page_size,reserved,detail,site_file,site_line,site_function,site_op";

/// Quotes a field when CSV needs it.
/// A device's chips in one CSV field: `1;0;2;3`.
fn chip_list(chips: &[i32]) -> String {
    chips
        .iter()
        .map(|c| c.to_string())
        .collect::<Vec<_>>()
        .join(";")
}

fn field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

pub fn export(rec: &Recording, out: &Path) -> Result<Replayed> {
    let file =
        std::fs::File::create(out).with_context(|| format!("cannot create {}", out.display()))?;
    let mut w = std::io::BufWriter::new(file);
    writeln!(w, "{COLUMNS}")?;
    let base = rec.header.monotonic_base_ns;
    let mut seq = 0u64;
    let mut err = None;
    let replay = Replay::run(rec, None, |ledger, ev| {
        let t_s = ev.ts_ns.saturating_sub(base) as f64 / 1e9;
        let row = match &ev.kind {
            EventKind::Alloc { device, buffer } | EventKind::Free { device, buffer } => {
                let name = if matches!(ev.kind, EventKind::Alloc { .. }) {
                    "alloc"
                } else {
                    "free"
                };
                // Reserved bytes per chip, as the ledger computed them at allocation.
                let held = ledger
                    .processes
                    .get(&ev.pid)
                    .and_then(|p| p.held(device.handle, buffer.unique_id))
                    .filter(|_| name == "alloc");
                let reserved = held.map_or(String::new(), |h| h.reserved.to_string());
                let site = held.and_then(|h| h.site.as_deref());
                let site = match (site.and_then(|s| s.user_frame()), site) {
                    (Some(f), Some(s)) => format!(
                        "{},{},{},{}",
                        field(&f.file),
                        f.line,
                        field(&f.function),
                        field(s.op.as_deref().unwrap_or(""))
                    ),
                    _ => ",,,".to_string(),
                };
                format!(
                    "{seq},{},{t_s:.9},{},{name},{},{},{},{},{},{},{},{},{reserved},,{site}",
                    ev.ts_ns,
                    ev.pid,
                    device.handle,
                    device.mesh as u8,
                    chip_list(&device.chips),
                    buffer.address,
                    buffer.unique_id,
                    buffer.kind.name(),
                    buffer.size,
                    buffer.page_size
                )
            }
            other => {
                // Everything else (and kinds added later) keeps its fields as JSON.
                let detail = serde_json::to_value(other).unwrap_or_default();
                let (name, detail) = match detail {
                    serde_json::Value::Object(m) if m.len() == 1 => {
                        let (k, v) = m.into_iter().next().unwrap_or_default();
                        (k, v.to_string())
                    }
                    serde_json::Value::String(s) => (s, String::new()),
                    v => ("event".to_string(), v.to_string()),
                };
                let (handle, mesh, chips) = match other {
                    EventKind::DeviceClose { device } => (
                        device.handle.to_string(),
                        (device.mesh as u8).to_string(),
                        chip_list(&device.chips),
                    ),
                    _ => Default::default(),
                };
                format!(
                    "{seq},{},{t_s:.9},{},{},{handle},{mesh},{chips},,,,,,,{},,,,",
                    ev.ts_ns,
                    ev.pid,
                    field(&snake(&name)),
                    field(&detail)
                )
            }
        };
        seq += 1;
        if err.is_none() {
            if let Err(e) = writeln!(w, "{row}") {
                err = Some(e);
            }
        }
    })?;
    if let Some(e) = err {
        return Err(e).with_context(|| format!("cannot write {}", out.display()));
    }
    w.flush()?;
    Ok(replay.read)
}

/// `DeviceClose` -> `device_close`.
pub(super) fn snake(name: &str) -> String {
    let mut s = String::new();
    for (i, c) in name.chars().enumerate() {
        if c.is_uppercase() {
            if i > 0 {
                s.push('_');
            }
            s.extend(c.to_lowercase());
        } else {
            s.push(c);
        }
    }
    s
}
