//! Renderers: event lines, the per-chip text summary, the `tracer.summary/1` JSON, and the
//! exports of a recording (Chrome trace, CSV, SQLite).
pub mod chips;
pub mod chrome;
pub mod csv;
pub mod json;
pub mod lines;
pub mod sqlite;
pub mod text;

/// Facts about the session that are not in the ledger.
#[derive(Clone, Debug, Default)]
pub struct SessionInfo {
    pub library: String,
    pub build_id: Option<String>,
    pub layout: String,
    pub lost_events: u64,
    /// CLOCK_MONOTONIC at the session start: event times are shown relative to it.
    pub start_ns: u64,
}

impl SessionInfo {
    /// Seconds from the session start to `ns` (session clock).
    pub fn offset_s(&self, ns: u64) -> f64 {
        ns.saturating_sub(self.start_ns) as f64 / 1e9
    }
}
