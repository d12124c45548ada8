//! Replay: a recording through the same ledger as a live session.
use std::ops::ControlFlow;

use anyhow::Result;
use serde_json::{json, Value};

use super::SessionInfo;
use crate::{
    ledger::{Event, Ledger},
    recording::{
        format,
        reader::{Recording, Replayed},
    },
};

/// The ledger of a recording, at its end or at `at_s` seconds after its start.
pub struct Replay {
    pub ledger: Ledger,
    pub info: SessionInfo,
    pub read: Replayed,
    pub at_s: Option<f64>,
}

impl Replay {
    /// Replays `rec`, calling `each` after the ledger applied each event.
    pub fn run(
        rec: &Recording,
        at_s: Option<f64>,
        mut each: impl FnMut(&Ledger, &Event),
    ) -> Result<Self> {
        let base = rec.header.monotonic_base_ns;
        let cut = at_s.map(|s| base.saturating_add((s.max(0.0) * 1e9).round() as u64));
        let mut ledger = Ledger::new();
        let read = rec.replay(|ev| {
            if cut.is_some_and(|c| ev.ts_ns > c) {
                return ControlFlow::Break(());
            }
            ledger.apply(ev);
            each(&ledger, ev);
            ControlFlow::Continue(())
        })?;
        // A full replay closes the books as the live session did; a cut shows the ledger as it
        // was at that moment (what was held is still live, not outstanding).
        if at_s.is_none() {
            let end = match &read.trailer {
                Some(t) => t.end_ns,
                None => read.last_ns.unwrap_or(base),
            };
            ledger.finish(end);
        }
        let h = &rec.header;
        let info = SessionInfo {
            library: h.library.clone(),
            build_id: h.build_id.clone(),
            layout: h.layout.clone(),
            lost_events: read.trailer.as_ref().map_or(0, |t| t.lost_events),
            call_stacks: h.call_stacks.clone(),
            // The header names the one library the recorded session probed.
            process_libraries: ledger
                .processes
                .keys()
                .map(|pid| (*pid, h.library.clone()))
                .collect(),
            probe_hits: Default::default(),
        };
        Ok(Self {
            ledger,
            info,
            read,
            at_s,
        })
    }

    /// Facts about the recording itself, for `report --json` (absent from the live summary).
    pub fn recording_json(&self, rec: &Recording) -> Value {
        let h = &rec.header;
        json!({
            "format_version": format::VERSION,
            "tool_version": h.tool_version,
            "host": h.host,
            "kernel": h.kernel,
            "command": h.command,
            "start_unix_ns": h.start_unix_ns,
            "monotonic_base_ns": h.monotonic_base_ns,
            "chunks": self.read.chunks,
            "events": self.read.events,
            "at_s": self.at_s,
            "truncated": self.read.truncated.is_some(),
            "truncation": self.read.truncated.as_ref().map(|t| t.describe(self.read.chunks)),
            "lost_events_known": self.read.trailer.is_some(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::Replay;
    use crate::recording::{
        reader::Recording,
        tests::{events, recording, BASE},
    };

    #[test]
    fn replay_at_a_time_stops_there() {
        let (data, _, _) = recording(7);
        let rec = Recording::open(&data).unwrap();
        let all = events();
        let cut_ns = all[20].ts_ns;
        let at_s = (cut_ns - BASE) as f64 / 1e9;
        let r = Replay::run(&rec, Some(at_s), |_, ev| assert!(ev.ts_ns <= cut_ns + 1)).unwrap();
        // The ledger holds exactly the events up to the cut (the recording keeps their order).
        let mut expect = crate::ledger::Ledger::new();
        for ev in all.iter().take_while(|e| e.ts_ns <= cut_ns + 1) {
            expect.apply(ev);
        }
        assert_eq!(
            format!("{:?}", r.ledger.processes[&7].devices),
            format!("{:?}", expect.processes[&7].devices)
        );
        assert!(r.read.events < all.len() as u64);
    }
}
