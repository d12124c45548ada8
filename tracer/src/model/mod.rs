//! The words every stage speaks: buffer types, devices and their chips, buffers, and the
//! events the probes produce and the ledger consumes.
mod event;
mod site;

pub use event::{
    BufferInfo, BufferType, CbClash, CircularBuffer, CoreRange, DeviceRef, Event, EventKind,
    Refusal,
};
pub use site::{Frame, Site};

/// Allocator geometry for one buffer type, learned from the runtime.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Geometry {
    pub banks: u32,
    /// Each page is padded to this.
    pub alignment: u32,
    /// Each bank's share is rounded up to this (the allocator's minimum block).
    pub granularity: u32,
}

/// The runtime library a session traced, as reports and recordings name it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TracedLibrary {
    pub library: String,
    pub build_id: Option<String>,
    /// The calibrated layout, in words.
    pub layout: String,
    /// Why allocation call stacks are (not) collected, as found in this library.
    pub call_stacks: String,
}
