//! A process's final state when it exits (`attach --all` watches many processes that come and
//! go; each gets its summary as it ends).
use std::io::Write as _;

use crate::{
    ledger::Ledger,
    model::EventKind,
    report::text,
    session::sink::{Applied, Out, Sink},
};

pub struct ExitReporter {
    out: Out,
    /// The library's call-stack note, as the summary prints it.
    call_stacks: String,
}

impl ExitReporter {
    pub fn new(out: Out, call_stacks: String) -> Self {
        Self { out, call_stacks }
    }
}

impl Sink for ExitReporter {
    fn event(&mut self, ledger: &Ledger, a: &Applied) {
        if !matches!(a.ev.kind, EventKind::ProcessExit { .. }) {
            return;
        }
        if let Some(p) = ledger.processes.get(&a.ev.pid) {
            let mut out = self.out.borrow_mut();
            let _ = write!(out, "{}", text::process_summary(p, &self.call_stacks));
            let _ = out.flush();
        }
    }
}
