//! Reads a recording without ever panicking: every defect is an error naming what is wrong and
//! at which byte, and a file cut short is read up to its last complete chunk.
use std::ops::ControlFlow;

use anyhow::{bail, Context, Result};

use super::format::{
    chunk_crc, Header, Trailer, WireEventOwned, CHUNK_MAGIC, FRAME_LEN, KIND_EVENTS, KIND_TRAILER,
    MAGIC, MAX_COMPRESSED, MAX_HEADER, MAX_RAW, PREAMBLE_LEN, VERSION,
};
use crate::ledger::Event;

/// A recording in memory, its header checked.
pub struct Recording<'a> {
    data: &'a [u8],
    pub header: Header,
    /// Where the first chunk starts.
    body: usize,
}

/// What a replay found besides the events.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Replayed {
    pub chunks: u64,
    pub events: u64,
    pub trailer: Option<Trailer>,
    /// Set when the file ends without a trailer: where the complete chunks end, and why.
    pub truncated: Option<Truncation>,
    /// The timestamp of the last event delivered.
    pub last_ns: Option<u64>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Truncation {
    /// Bytes of the file that hold complete chunks (header included).
    pub valid_bytes: u64,
    pub file_bytes: u64,
}

impl Truncation {
    pub fn describe(&self, chunks: u64) -> String {
        let partial = self.file_bytes - self.valid_bytes;
        format!(
            "the recording was truncated: {chunks} complete chunk(s) in the first {} bytes, \
             {partial} byte(s) of an incomplete chunk after them, no trailer (the tracer did \
             not stop cleanly)",
            self.valid_bytes
        )
    }
}

fn u16_at(d: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([d[at], d[at + 1]])
}

fn u32_at(d: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([d[at], d[at + 1], d[at + 2], d[at + 3]])
}

impl<'a> Recording<'a> {
    pub fn open(data: &'a [u8]) -> Result<Self> {
        if data.len() < PREAMBLE_LEN {
            if !data.is_empty() && !MAGIC.starts_with(&data[..data.len().min(MAGIC.len())]) {
                bail!("not a tracer recording (bad magic at byte 0)");
            }
            bail!(
                "recording truncated inside its preamble: {} of {PREAMBLE_LEN} bytes",
                data.len()
            );
        }
        if &data[..8] != MAGIC {
            bail!("not a tracer recording (bad magic at byte 0)");
        }
        let version = u16_at(data, 8);
        if version != VERSION {
            bail!(
                "recording format version {version} (byte 8); this tracer reads version {VERSION}"
            );
        }
        let len = u32_at(data, 12) as usize;
        if len > MAX_HEADER {
            bail!("header length {len} at byte 12 exceeds the {MAX_HEADER}-byte limit (corrupt file)");
        }
        let end = PREAMBLE_LEN + len + 4;
        if data.len() < end {
            bail!(
                "recording truncated inside its header: it needs {end} bytes, the file has {}",
                data.len()
            );
        }
        let json = &data[PREAMBLE_LEN..PREAMBLE_LEN + len];
        if crc32fast::hash(json) != u32_at(data, PREAMBLE_LEN + len) {
            bail!("header checksum mismatch (bytes {PREAMBLE_LEN}..{end}): corrupt file");
        }
        let header: Header = serde_json::from_slice(json)
            .with_context(|| format!("header at byte {PREAMBLE_LEN} is not valid"))?;
        Ok(Self {
            data,
            header,
            body: end,
        })
    }

    /// Feeds every event, in order, to `f` until it breaks; stops at the end of the file, at the
    /// trailer, or at a truncation (reported, not an error). Corruption is an error.
    pub fn replay(&self, mut f: impl FnMut(&Event) -> ControlFlow<()>) -> Result<Replayed> {
        let d = self.data;
        let mut pos = self.body;
        let mut out = Replayed::default();
        let mut raw = Vec::new();
        let mut dec = zstd::bulk::Decompressor::new().context("cannot create a zstd decompressor")?;
        loop {
            let rest = d.len() - pos;
            if rest == 0 && out.trailer.is_some() {
                return Ok(out);
            }
            if rest == 0 {
                out.truncated = Some(Truncation {
                    valid_bytes: pos as u64,
                    file_bytes: d.len() as u64,
                });
                return Ok(out);
            }
            if out.trailer.is_some() {
                bail!("{rest} unexpected byte(s) after the trailer at byte {pos}");
            }
            let truncated = || Truncation {
                valid_bytes: pos as u64,
                file_bytes: d.len() as u64,
            };
            if rest < FRAME_LEN {
                if !CHUNK_MAGIC.starts_with(&d[pos..pos + rest.min(4)]) {
                    bail!("chunk {} at byte {pos}: bad chunk magic (corrupt file)", out.chunks);
                }
                out.truncated = Some(truncated());
                return Ok(out);
            }
            if &d[pos..pos + 4] != CHUNK_MAGIC {
                bail!("chunk {} at byte {pos}: bad chunk magic (corrupt file)", out.chunks);
            }
            let kind = d[pos + 4];
            let count = u32_at(d, pos + 8) as usize;
            let raw_len = u32_at(d, pos + 12) as usize;
            let comp_len = u32_at(d, pos + 16) as usize;
            let crc = u32_at(d, pos + 20);
            if comp_len > MAX_COMPRESSED || raw_len > MAX_RAW {
                bail!(
                    "chunk {} at byte {pos}: lengths {comp_len}/{raw_len} exceed the limits \
                     {MAX_COMPRESSED}/{MAX_RAW} (corrupt or hostile file)",
                    out.chunks
                );
            }
            let start = pos + FRAME_LEN;
            if d.len() - start < comp_len {
                out.truncated = Some(truncated());
                return Ok(out);
            }
            let payload = &d[start..start + comp_len];
            if chunk_crc(&d[pos + 4..pos + 20], payload) != crc {
                bail!("chunk {} at byte {pos}: checksum mismatch (corrupt file)", out.chunks);
            }
            match kind {
                KIND_EVENTS => {
                    // Each event takes at least 3 bytes (delta, pid, variant).
                    if count.saturating_mul(3) > raw_len {
                        bail!(
                            "chunk {} at byte {pos}: {count} events cannot fit in {raw_len} bytes",
                            out.chunks
                        );
                    }
                    raw.clear();
                    raw.reserve(raw_len);
                    let n = dec
                        .decompress_to_buffer(payload, &mut raw)
                        .map_err(|e| {
                            anyhow::anyhow!(
                                "chunk {} at byte {pos}: cannot decompress: {e}",
                                out.chunks
                            )
                        })?;
                    if n != raw_len {
                        bail!(
                            "chunk {} at byte {pos}: {n} bytes decompressed, the frame says {raw_len}",
                            out.chunks
                        );
                    }
                    let mut prev = self.header.monotonic_base_ns;
                    let mut left: &[u8] = &raw;
                    for i in 0..count {
                        let (w, tail) = postcard::take_from_bytes::<WireEventOwned>(left)
                            .map_err(|e| {
                                anyhow::anyhow!(
                                    "chunk {} at byte {pos}, event {i}: cannot decode ({e}); \
                                     an event kind from a newer tracer?",
                                    out.chunks
                                )
                            })?;
                        left = tail;
                        prev = prev.wrapping_add(w.dt_ns as u64);
                        let ev = Event {
                            ts_ns: prev,
                            pid: w.pid,
                            kind: w.kind,
                        };
                        out.events += 1;
                        out.last_ns = Some(prev);
                        if f(&ev).is_break() {
                            out.chunks += 1;
                            return Ok(out);
                        }
                    }
                    if !left.is_empty() {
                        bail!(
                            "chunk {} at byte {pos}: {} byte(s) left after its {count} events",
                            out.chunks,
                            left.len()
                        );
                    }
                    out.chunks += 1;
                }
                KIND_TRAILER => {
                    let t: Trailer = serde_json::from_slice(payload).with_context(|| {
                        format!("trailer at byte {pos} is not valid")
                    })?;
                    out.trailer = Some(t);
                }
                other => bail!(
                    "chunk {} at byte {pos}: unknown chunk kind {other} (written by a newer tracer?)",
                    out.chunks
                ),
            }
            pos = start + comp_len;
        }
    }
}
