//! Fuzz target: the recording reader must answer any bytes with events or an error, never a
//! panic, an abort or an unbounded allocation.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Err(e) = tracer::recording::reader::read_all(data) {
        // Every error says where (or that the file is truncated).
        let msg = format!("{e:#}");
        assert!(msg.contains("byte") || msg.contains("truncated"), "{msg}");
    }
});
