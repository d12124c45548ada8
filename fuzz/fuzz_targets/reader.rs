//! Fuzz target: the recording reader must answer any bytes with events or an error, never a
//! panic, an abort or an unbounded allocation. It compiles the tracer's own reader sources
//! (the tracer crate is a binary whose build also compiles the eBPF program).
#![no_main]

#[allow(dead_code)]
#[path = "../../tracer/src/ledger/event.rs"]
mod event;
mod ledger {
    pub use crate::event::*;
}
// `super::format` in the reader is the crate root's `format`.
#[allow(dead_code)]
#[path = "../../tracer/src/session/format.rs"]
mod format;
#[allow(dead_code)]
#[path = "../../tracer/src/session/reader.rs"]
mod reader;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Err(e) = reader::read_all(data) {
        // Every error says where (or that the file is truncated).
        let msg = format!("{e:#}");
        assert!(msg.contains("byte") || msg.contains("truncated"), "{msg}");
    }
});
