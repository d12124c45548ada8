//! The recording file format (version 1), shared by the writer and the reader.
//!
//! ```text
//! file    = preamble header chunk*
//! preamble= "TRACEREC" (8) | version u16 LE | reserved u16 | header_len u32 LE
//! header  = header_len bytes of JSON (`Header`) | crc32(header JSON) u32 LE
//! chunk   = "TRCK" (4) | kind u8 | reserved 3 | count u32 | raw_len u32 | comp_len u32
//!           | crc32(bytes 4..20 of the frame + payload) u32 | payload (comp_len bytes)
//! ```
//! Kind 1 (events): the payload is zstd; decompressed it is `count` postcard-encoded
//! [`WireRecord`]s whose timestamps are deltas (zigzag varints) from the previous record of
//! the same chunk, the first one from the header's `monotonic_base_ns`; devices are interned
//! per chunk (see [`Body`]). Every chunk decodes alone,
//! so a file cut anywhere (SIGKILL, full disk) is readable up to its last complete chunk.
//! Kind 2 (trailer): JSON [`Trailer`], written once when the session ends cleanly; a file
//! without it was truncated. Events are serde-encoded `ledger::Event`s, so variants added at
//! the end of `EventKind` are recorded and replayed with no change here.
use serde::{Deserialize, Serialize};

use crate::model::{BufferInfo, DeviceRef, EventKind};

pub const MAGIC: &[u8; 8] = b"TRACEREC";
pub const VERSION: u16 = 1;
pub const PREAMBLE_LEN: usize = 16;
pub const CHUNK_MAGIC: &[u8; 4] = b"TRCK";
pub const FRAME_LEN: usize = 24;
pub const KIND_EVENTS: u8 = 1;
pub const KIND_TRAILER: u8 = 2;

/// Caps that a hostile file cannot make the reader exceed.
pub const MAX_HEADER: usize = 1 << 20;
pub const MAX_COMPRESSED: usize = 16 << 20;
pub const MAX_RAW: usize = 16 << 20;

/// What the session was: everything `report` needs besides the events.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Header {
    pub tool: String,
    pub tool_version: String,
    pub host: String,
    pub kernel: String,
    pub command: String,
    pub library: String,
    pub build_id: Option<String>,
    /// The calibrated layout (`ProbePlan::layout.describe()`).
    pub layout: String,
    /// Whether allocation call stacks are part of the report, and why (the live summary's
    /// `call_stacks` note).
    #[serde(default)]
    pub call_stacks: String,
    /// Wall clock at the start (ns since the Unix epoch).
    pub start_unix_ns: u64,
    /// CLOCK_MONOTONIC at the start: event timestamps use this clock.
    pub monotonic_base_ns: u64,
}

/// How the session ended; only present when it ended cleanly.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Trailer {
    /// When the ledger's books were closed (what `finish` was given).
    pub end_ns: u64,
    /// Events the kernel ring buffer dropped (live-only fact, kept for `report`).
    pub lost_events: u64,
    pub events: u64,
}

/// One record as stored: the timestamp relative to the previous record in its chunk.
#[derive(Serialize, Deserialize)]
pub struct WireRecord<K, D> {
    pub dt_ns: i64,
    pub pid: u32,
    pub body: Body<K, D>,
}

/// What a record holds. Allocations and frees, the bulk of a session, name their device by
/// its index in the chunk's device table (a mesh's chip list is stored once per chunk, not
/// once per event); every other event kind, including kinds added later, is stored whole.
#[derive(Serialize, Deserialize)]
pub enum Body<K, D> {
    Event(K),
    /// Appends a device to the chunk's table (not an event).
    Device(D),
    Alloc {
        device: u32,
        buffer: BufferInfo,
    },
    Free {
        device: u32,
        buffer: BufferInfo,
    },
}

pub type WireRecordOwned = WireRecord<EventKind, DeviceRef>;

/// Bytes 4..20 of a chunk frame, the part covered by its checksum with the payload.
pub fn frame(kind: u8, count: u32, raw_len: u32, comp_len: u32) -> [u8; 16] {
    let mut f = [0u8; 16];
    f[0] = kind;
    f[4..8].copy_from_slice(&count.to_le_bytes());
    f[8..12].copy_from_slice(&raw_len.to_le_bytes());
    f[12..16].copy_from_slice(&comp_len.to_le_bytes());
    f
}

pub fn chunk_crc(frame: &[u8], payload: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(frame);
    h.update(payload);
    h.finalize()
}
