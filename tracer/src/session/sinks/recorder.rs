//! `-o FILE`: every event the ledger sees, recorded. A failing recording is reported once and
//! dropped; the trace goes on.
use std::path::PathBuf;

use anyhow::Result;

use crate::{
    ledger::Ledger,
    recording::writer::Recorder,
    session::sink::{Applied, End, Sink, Status},
};

pub struct RecorderSink {
    recorder: Option<Recorder<std::fs::File>>,
    path: PathBuf,
}

impl RecorderSink {
    pub fn new(recorder: Recorder<std::fs::File>, path: PathBuf) -> Self {
        Self {
            recorder: Some(recorder),
            path,
        }
    }

    fn step(&mut self, step: impl FnOnce(&mut Recorder<std::fs::File>) -> Result<()>) {
        if let Some(rec) = self.recorder.as_mut() {
            if let Err(e) = step(rec) {
                eprintln!(
                    "tracer: error: recording to {} failed, recording stopped: {e:#}",
                    self.path.display()
                );
                self.recorder = None;
            }
        }
    }
}

impl Sink for RecorderSink {
    fn event(&mut self, _: &Ledger, a: &Applied) {
        self.step(|r| r.record(a.ev));
    }

    fn batch(&mut self, _: &Ledger, _: &Status, _: bool) -> Result<bool> {
        self.step(|r| r.flush_if_due());
        Ok(false)
    }

    /// The trailer marks a clean end; without it `report` says the file was truncated (still
    /// readable), so a failure here is a warning, not a lost summary.
    fn finish(&mut self, _: &Ledger, _: &Status, end: &End) {
        if let Some(rec) = self.recorder.take() {
            if let Err(e) = rec
                .finish(end.end_ns, end.lost)
                .and_then(|f| Ok(f.sync_all()?))
            {
                eprintln!(
                    "tracer: error: cannot finish recording {}: {e:#}",
                    self.path.display()
                );
            }
        }
    }
}
