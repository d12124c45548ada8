//! Where a live session's events go once the ledger has applied them: event lines, the
//! recording, the metrics page, the `top` view, the per-process exit report. Each is a
//! [`Sink`]; the session calls them in order and knows nothing of what they do.
use anyhow::Result;

pub use crate::live::top::Status;
use crate::{ledger::Ledger, model::Event};

/// What a sink learns of one applied event.
pub struct Applied<'a> {
    pub ev: &'a Event,
    /// The process's outstanding list before the event (a device close appends to it what the
    /// close dropped).
    pub outstanding_before: usize,
}

/// What a sink learns at the end.
pub struct End {
    pub end_ns: u64,
    pub lost: u64,
}

/// Standard output, shared by the sinks that print and the summary, so what they print stays
/// in the order it happened.
pub type Out = std::rc::Rc<std::cell::RefCell<std::io::BufWriter<std::io::Stdout>>>;

pub fn stdout() -> Out {
    std::rc::Rc::new(std::cell::RefCell::new(std::io::BufWriter::new(
        std::io::stdout(),
    )))
}

pub trait Sink {
    /// After the ledger applied an event.
    fn event(&mut self, _ledger: &Ledger, _applied: &Applied) {}

    /// After each batch of events; `now` asks for an update whatever the sink's pace.
    /// `Ok(true)` asks the session to stop (the user quit `top`).
    fn batch(&mut self, _ledger: &Ledger, _status: &Status, _now: bool) -> Result<bool> {
        Ok(false)
    }

    /// The session is over and the ledger closed; before the summary is printed.
    fn finish(&mut self, _ledger: &Ledger, _status: &Status, _end: &End) {}
}
