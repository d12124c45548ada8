//! Live sinks: views of the ledger while the session runs.
pub mod metrics;
pub mod top;
