//! A live session: what `run`, `attach` and `top` do, wiring the stages into one pipeline
//! (see [`pipeline`]). Attach-only work lives in [`attach`], the launch in [`launch`].
pub mod attach;
pub mod held;
pub mod launch;
mod library_watch;
pub mod pipeline;
pub mod run;
mod seeding;
pub mod sink;
mod sinks;
pub mod snapshot;
pub mod source;
pub mod top;

use std::path::PathBuf;

pub use pipeline::{Session, Stop};

/// What the user asked of a tracing session (the options `run`, `attach` and `top` share).
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// Record the session to this file.
    pub output: Option<PathBuf>,
    /// Write the tracer.summary/1 JSON here ("-" for stdout).
    pub summary_json: Option<PathBuf>,
    /// The runtime library (default: found from the command or the processes).
    pub lib: Option<PathBuf>,
    /// No event lines; only the summary.
    pub quiet: bool,
    /// Exit non-zero if any event was lost.
    pub strict: bool,
    /// Serve Prometheus metrics at http://ADDR/metrics.
    pub metrics: Option<String>,
    /// Stop tracing after this many seconds.
    pub duration: Option<f64>,
    /// `tracer top`: the live table instead of event lines.
    pub top: Option<crate::live::top::TopMode>,
    /// How the probes load (ring buffer size, eBPF-side diagnostics).
    pub probes: crate::probe::Settings,
}
