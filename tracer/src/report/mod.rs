//! Renderers: event lines, the per-chip text summary, and the `tracer.summary/1` JSON.
pub mod json;
pub mod lines;
pub mod text;

/// Facts about the session that are not in the ledger.
#[derive(Clone, Debug, Default)]
pub struct SessionInfo {
    pub library: String,
    pub build_id: Option<String>,
    pub layout: String,
    pub lost_events: u64,
}
