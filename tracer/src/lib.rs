//! tracer: per-process, per-chip device memory of accelerator runtimes, from eBPF uprobes.
//!
//! The stages, in the order data flows through them. A stage uses only the stages above it in
//! this list (`cargo xtask layers` checks it):
//!
//! - [`model`], [`exit`]: the words every stage speaks (buffer types, devices, events) and the
//!   exit codes of bad input.
//! - [`runtime`]: find the runtime library, read its symbols, calibrate its layout.
//! - [`plan`]: which functions to probe and what each probe reads (and how to read it back).
//! - [`probe`]: the kernel side: load and attach the eBPF programs, stream and decode events.
//! - [`ledger`]: a pure state machine from events to per-process, per-chip accounts.
//! - [`recording`]: the recording file format, its writer and reader.
//! - [`report`], [`live`]: the sinks: event lines, summaries, exports; `top`, metrics.
//! - [`session`], [`doctor`]: a live session wiring the stages together, and the checks.
pub mod doctor;
pub mod exit;
pub mod ledger;
pub mod live;
pub mod model;
pub mod plan;
pub mod probe;
pub mod recording;
pub mod report;
pub mod runtime;
pub mod session;
