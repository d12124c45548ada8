//! Renderers: event lines, the per-chip text summary, the `tracer.summary/1` JSON, and the
//! exports of a recording (Chrome trace, CSV, SQLite, HTML page, PyTorch memory snapshot).
pub mod chips;
pub mod chrome;
pub mod csv;
pub mod explain;
pub mod html;
pub mod json;
pub mod lines;
pub mod offline;
pub mod pickle;
pub mod replay;
pub mod sqlite;
#[cfg(test)]
mod test_recording;
pub mod text;
pub mod torch_snapshot;

/// Facts about the session that are not in the ledger.
#[derive(Clone, Debug, Default)]
pub struct SessionInfo {
    pub library: String,
    pub build_id: Option<String>,
    pub layout: String,
    pub lost_events: u64,
    /// Why allocation call stacks are (not) part of the report.
    pub call_stacks: String,
    /// The runtime library each process' events came from, where several were probed (a
    /// process may run on a copy loaded from elsewhere); empty when not known (recordings).
    pub process_libraries: std::collections::BTreeMap<u32, String>,
    /// Probe records received per probe role (one per uprobe trap that reached userspace),
    /// for a live session; empty for recordings.
    pub probe_hits: std::collections::BTreeMap<String, u64>,
}

/// Bytes for people: `4 MiB`, `19.53 KiB`, `512 B`.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut v = n as f64 / 1024.0;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    let s = format!("{v:.2}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    format!("{s} {}", UNITS[u])
}

/// Session-relative time: `+1.234 s`.
pub fn since(ns: u64, origin: Option<u64>) -> String {
    let d = ns.saturating_sub(origin.unwrap_or(ns));
    format!("+{:.3} s", d as f64 / 1e9)
}
