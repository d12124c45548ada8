//! Reads a recording without ever panicking: every defect is an error naming what is wrong and
//! at which byte, and a file cut short is read up to its last complete chunk.
use std::ops::ControlFlow;

use anyhow::{bail, Context, Result};

use super::format::{
    chunk_crc, Body, Header, Trailer, WireRecordOwned, CHUNK_MAGIC, FRAME_LEN, KIND_EVENTS,
    KIND_TRAILER, MAGIC, MAX_COMPRESSED, MAX_HEADER, MAX_RAW, PREAMBLE_LEN, VERSION,
};
use crate::ledger::{Event, EventKind};

fn decompressor() -> Result<zstd::bulk::Decompressor<'static>> {
    zstd::bulk::Decompressor::new().context("cannot create a zstd decompressor")
}

/// A complete, checksummed chunk of events, not yet decoded.
#[derive(Clone, Debug)]
pub struct Chunk<'a> {
    pub index: usize,
    /// Byte offset of its frame.
    pub pos: usize,
    pub count: usize,
    pub raw_len: usize,
    pub payload: &'a [u8],
}

/// The frames of a recording.
#[derive(Clone, Debug, Default)]
pub struct Scan<'a> {
    pub chunks: Vec<Chunk<'a>>,
    pub trailer: Option<Trailer>,
    pub truncated: Option<Truncation>,
}

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
            bail!(
                "header length {len} at byte 12 exceeds the {MAX_HEADER}-byte limit (corrupt file)"
            );
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

    /// Checks every frame (lengths, checksums) and lists the chunks; stops at the trailer,
    /// the end of the file, or a truncation (reported, not an error). Corruption is an error.
    pub fn scan(&self) -> Result<Scan<'a>> {
        let d = self.data;
        let mut pos = self.body;
        let mut out = Scan::default();
        loop {
            let rest = d.len() - pos;
            let chunk = out.chunks.len();
            if rest == 0 && out.trailer.is_some() {
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
                    bail!("chunk {chunk} at byte {pos}: bad chunk magic (corrupt file)");
                }
                out.truncated = Some(truncated());
                return Ok(out);
            }
            if &d[pos..pos + 4] != CHUNK_MAGIC {
                bail!("chunk {chunk} at byte {pos}: bad chunk magic (corrupt file)");
            }
            let kind = d[pos + 4];
            let count = u32_at(d, pos + 8) as usize;
            let raw_len = u32_at(d, pos + 12) as usize;
            let comp_len = u32_at(d, pos + 16) as usize;
            let crc = u32_at(d, pos + 20);
            if comp_len > MAX_COMPRESSED || raw_len > MAX_RAW {
                bail!(
                    "chunk {chunk} at byte {pos}: lengths {comp_len}/{raw_len} exceed the limits \
                     {MAX_COMPRESSED}/{MAX_RAW} (corrupt or hostile file)"
                );
            }
            let start = pos + FRAME_LEN;
            if d.len() - start < comp_len {
                out.truncated = Some(truncated());
                return Ok(out);
            }
            let payload = &d[start..start + comp_len];
            if chunk_crc(&d[pos + 4..pos + 20], payload) != crc {
                bail!("chunk {chunk} at byte {pos}: checksum mismatch (corrupt file)");
            }
            match kind {
                KIND_EVENTS => {
                    // Each record takes at least 3 bytes (delta, pid, variant).
                    if count.saturating_mul(3) > raw_len {
                        bail!("chunk {chunk} at byte {pos}: {count} records cannot fit in {raw_len} bytes");
                    }
                    out.chunks.push(Chunk {
                        index: chunk,
                        pos,
                        count,
                        raw_len,
                        payload,
                    });
                }
                KIND_TRAILER => {
                    let t: Trailer = serde_json::from_slice(payload)
                        .with_context(|| format!("trailer at byte {pos} is not valid"))?;
                    out.trailer = Some(t);
                }
                other => bail!(
                    "chunk {chunk} at byte {pos}: unknown chunk kind {other} (written by a newer tracer?)"
                ),
            }
            pos = start + comp_len;
        }
    }

    /// Decodes one chunk's events.
    pub fn decode(&self, c: &Chunk, dec: &mut zstd::bulk::Decompressor) -> Result<Vec<Event>> {
        let (i, pos) = (c.index, c.pos);
        let mut raw = Vec::with_capacity(c.raw_len);
        let n = dec
            .decompress_to_buffer(c.payload, &mut raw)
            .map_err(|e| anyhow::anyhow!("chunk {i} at byte {pos}: cannot decompress: {e}"))?;
        if n != c.raw_len {
            bail!(
                "chunk {i} at byte {pos}: {n} bytes decompressed, the frame says {}",
                c.raw_len
            );
        }
        let mut prev = self.header.monotonic_base_ns;
        let mut left: &[u8] = &raw;
        let mut out = Vec::with_capacity(c.count);
        let mut devices = Vec::new();
        for k in 0..c.count {
            let (w, tail) = postcard::take_from_bytes::<WireRecordOwned>(left).map_err(|e| {
                anyhow::anyhow!(
                    "chunk {i} at byte {pos}, record {k}: cannot decode ({e}); an event kind \
                     from a newer tracer?"
                )
            })?;
            left = tail;
            prev = prev.wrapping_add(w.dt_ns as u64);
            let device = |d: u32| {
                devices.get(d as usize).cloned().ok_or_else(|| {
                    anyhow::anyhow!(
                        "chunk {i} at byte {pos}, record {k}: device {d} is not defined in the \
                         chunk (corrupt file)"
                    )
                })
            };
            let kind = match w.body {
                Body::Event(kind) => kind,
                Body::Alloc { device: d, buffer } => EventKind::Alloc {
                    device: device(d)?,
                    buffer,
                },
                Body::Free { device: d, buffer } => EventKind::Free {
                    device: device(d)?,
                    buffer,
                },
                Body::Device(d) => {
                    devices.push(d);
                    continue;
                }
            };
            out.push(Event {
                ts_ns: prev,
                pid: w.pid,
                kind,
            });
        }
        if !left.is_empty() {
            bail!(
                "chunk {i} at byte {pos}: {} byte(s) left after its {} records",
                left.len(),
                c.count
            );
        }
        Ok(out)
    }

    /// Feeds every event, in order, to `f` until it breaks. Chunks decode alone, so worker
    /// threads decode them ahead while `f` (the ledger) consumes them in order.
    pub fn replay(&self, mut f: impl FnMut(&Event) -> ControlFlow<()>) -> Result<Replayed> {
        let scan = self.scan()?;
        let mut out = Replayed {
            trailer: scan.trailer.clone(),
            truncated: scan.truncated.clone(),
            ..Default::default()
        };
        let workers = if scan.chunks.len() < 2 {
            0
        } else {
            std::thread::available_parallelism().map_or(1, |n| n.get().clamp(1, 4))
        };
        let mut deliver = |events: Vec<Event>, out: &mut Replayed| {
            out.chunks += 1;
            for ev in &events {
                out.events += 1;
                out.last_ns = Some(ev.ts_ns);
                if f(ev).is_break() {
                    return ControlFlow::Break(());
                }
            }
            ControlFlow::Continue(())
        };
        if workers == 0 {
            let mut dec = decompressor()?;
            for c in &scan.chunks {
                if deliver(self.decode(c, &mut dec)?, &mut out).is_break() {
                    break;
                }
            }
            return Ok(out);
        }
        std::thread::scope(|s| -> Result<()> {
            let mut rxs = Vec::new();
            for w in 0..workers {
                let (tx, rx) = std::sync::mpsc::sync_channel::<Result<Vec<Event>>>(2);
                rxs.push(rx);
                let chunks = &scan.chunks;
                s.spawn(move || {
                    let mut dec = match decompressor() {
                        Ok(d) => d,
                        Err(e) => {
                            let _ = tx.send(Err(e));
                            return;
                        }
                    };
                    for c in chunks.iter().skip(w).step_by(workers) {
                        // A closed channel means the consumer stopped: so do we.
                        if tx.send(self.decode(c, &mut dec)).is_err() {
                            return;
                        }
                    }
                });
            }
            for i in 0..scan.chunks.len() {
                let events = rxs[i % workers]
                    .recv()
                    .map_err(|_| anyhow::anyhow!("a decoding thread stopped early"))??;
                if deliver(events, &mut out).is_break() {
                    break;
                }
            }
            drop(rxs);
            Ok(())
        })?;
        Ok(out)
    }
}

/// Reads a whole recording from bytes: header, events, and what the replay found. The fuzz
/// target and the mutation tests drive the reader through this.
#[cfg_attr(not(test), allow(dead_code))]
pub fn read_all(data: &[u8]) -> Result<(Header, Vec<Event>, Replayed)> {
    let rec = Recording::open(data)?;
    let mut events = Vec::new();
    let read = rec.replay(|ev| {
        events.push(ev.clone());
        ControlFlow::Continue(())
    })?;
    Ok((rec.header, events, read))
}
