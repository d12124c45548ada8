//! The sinks of a live session.
mod exits;
mod metrics;
mod printer;
mod recorder;
mod top;

pub use exits::ExitReporter;
pub use metrics::MetricsSink;
pub use printer::Printer;
pub use recorder::RecorderSink;
pub use top::TopSink;
