//! Event lines on stdout (what `run`/`attach` print unless `--quiet`).
use std::io::Write as _;

use anyhow::Result;

use crate::{
    ledger::Ledger,
    model::EventKind,
    report::lines,
    session::sink::{Applied, End, Out, Sink, Status},
};

pub struct Printer {
    out: Out,
}

impl Printer {
    pub fn new(out: Out) -> Self {
        Self { out }
    }
}

impl Sink for Printer {
    fn event(&mut self, ledger: &Ledger, a: &Applied) {
        let ev = a.ev;
        let mut out = self.out.borrow_mut();
        for line in lines::event_lines(ev) {
            let _ = writeln!(out, "{line}");
        }
        let Some(p) = ledger.processes.get(&ev.pid) else {
            return;
        };
        match ev.kind {
            EventKind::DeviceClose { .. } => {
                let dropped = p.outstanding.get(a.outstanding_before..).unwrap_or(&[]);
                if let Some(line) = lines::dropped_by_close(ev.pid, dropped) {
                    let _ = writeln!(out, "{line}");
                }
            }
            EventKind::OutOfMemory { .. } => {
                for line in p
                    .ooms
                    .last()
                    .map(|o| lines::oom(ev.pid, o))
                    .unwrap_or_default()
                {
                    let _ = writeln!(out, "{line}");
                }
            }
            EventKind::CircularBufferClash { .. } => {
                if let Some(c) = p.clashes.last() {
                    let _ = writeln!(out, "{}", lines::clash(ev.pid, c));
                }
            }
            _ => {}
        }
    }

    fn batch(&mut self, _: &Ledger, _: &Status, _: bool) -> Result<bool> {
        let _ = self.out.borrow_mut().flush();
        Ok(false)
    }

    fn finish(&mut self, _: &Ledger, _: &Status, _: &End) {
        let _ = self.out.borrow_mut().flush();
    }
}
