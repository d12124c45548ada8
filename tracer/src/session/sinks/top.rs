//! `tracer top`: the live table (or batch snapshots) instead of event lines.
use anyhow::Result;

use crate::{
    ledger::Ledger,
    live::top::{TopMode, View},
    session::sink::{End, Sink, Status},
};

pub struct TopSink {
    view: Option<View>,
    out: std::io::Stdout,
}

impl TopSink {
    pub fn open(mode: TopMode) -> Result<Self> {
        Ok(Self {
            view: Some(View::open(mode)?),
            out: std::io::stdout(),
        })
    }
}

impl Sink for TopSink {
    fn batch(&mut self, ledger: &Ledger, status: &Status, now: bool) -> Result<bool> {
        match &mut self.view {
            Some(v) => v.refresh(ledger, || status.clone(), &mut self.out, now),
            None => Ok(false),
        }
    }

    /// The last state of a batch `top`, then the terminal back to normal before the summary.
    fn finish(&mut self, ledger: &Ledger, status: &Status, _: &End) {
        if let Some(mut v) = self.view.take() {
            if v.is_batch() {
                let _ = v.refresh(ledger, || status.clone(), &mut self.out, true);
            }
        }
    }
}
