//! Reads a recording without ever panicking: every defect is an error naming what is wrong and
//! at which byte, and a file cut short is read up to its last complete chunk.
use std::ops::ControlFlow;

use anyhow::{bail, Context, Result};

use super::format::{
    chunk_crc, Body, Header, Trailer, WireRecordOwned, CHUNK_MAGIC, FRAME_LEN, KIND_EVENTS,
    KIND_TRAILER, MAGIC, MAX_COMPRESSED, MAX_HEADER, MAX_RAW, PREAMBLE_LEN, VERSION,
};
use crate::ledger::{BufferInfo, DeviceRef, Event, EventKind};

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

/// A decoded chunk: its device table and its records in order.
pub struct Decoded {
    pub devices: Vec<DeviceRef>,
    pub records: Vec<Record>,
}

/// An event, or an allocation/free naming its device by index in the chunk's table.
pub enum Record {
    Event(Event),
    Buffer {
        alloc: bool,
        ts_ns: u64,
        pid: u32,
        device: u32,
        buffer: BufferInfo,
    },
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

    /// Decodes one chunk's records (device indices checked).
    pub fn decode(&self, c: &Chunk, dec: &mut zstd::bulk::Decompressor) -> Result<Decoded> {
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
        let mut out = Decoded {
            devices: Vec::new(),
            // The count is the file's word: cap what it can make us reserve up front.
            records: Vec::with_capacity(c.count.min(1 << 16)),
        };
        for k in 0..c.count {
            let (w, tail) = postcard::take_from_bytes::<WireRecordOwned>(left).map_err(|e| {
                anyhow::anyhow!(
                    "chunk {i} at byte {pos}, record {k}: cannot decode ({e}); an event kind \
                     from a newer tracer?"
                )
            })?;
            left = tail;
            prev = prev.wrapping_add(w.dt_ns as u64);
            let (ts_ns, pid) = (prev, w.pid);
            let defined = out.devices.len();
            let check = |d: u32| {
                if (d as usize) < defined {
                    Ok(d)
                } else {
                    Err(anyhow::anyhow!(
                        "chunk {i} at byte {pos}, record {k}: device {d} is not defined in the \
                         chunk (corrupt file)"
                    ))
                }
            };
            let rec = match w.body {
                Body::Event(kind) => Record::Event(Event { ts_ns, pid, kind }),
                Body::Alloc { device, buffer } => Record::Buffer {
                    alloc: true,
                    ts_ns,
                    pid,
                    device: check(device)?,
                    buffer,
                },
                Body::Free { device, buffer } => Record::Buffer {
                    alloc: false,
                    ts_ns,
                    pid,
                    device: check(device)?,
                    buffer,
                },
                Body::Device(d) => {
                    out.devices.push(d);
                    continue;
                }
            };
            out.records.push(rec);
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
        // Under the fuzzer, decode inline: LeakSanitizer reports glibc's per-thread exit
        // bookkeeping of short-lived threads as leaks, and one thread keeps runs reproducible.
        let workers = if scan.chunks.len() < 2 || cfg!(fuzzing) {
            0
        } else {
            std::thread::available_parallelism().map_or(1, |n| n.get().clamp(1, 4))
        };
        let mut deliver = |chunk: Decoded, out: &mut Replayed| {
            out.chunks += 1;
            // One reusable event per device of the chunk: allocations and frees are delivered
            // without copying the device's chip list for each of them.
            let mut slots: Vec<Option<Event>> = vec![None; chunk.devices.len()];
            for rec in chunk.records {
                let ev = match rec {
                    Record::Event(ev) => {
                        out.events += 1;
                        out.last_ns = Some(ev.ts_ns);
                        if f(&ev).is_break() {
                            return ControlFlow::Break(());
                        }
                        continue;
                    }
                    Record::Buffer {
                        alloc,
                        ts_ns,
                        pid,
                        device,
                        buffer,
                    } => {
                        let slot = &mut slots[device as usize];
                        let ev = slot.get_or_insert_with(|| Event {
                            ts_ns,
                            pid,
                            kind: EventKind::DeviceClose {
                                device: chunk.devices[device as usize].clone(),
                            },
                        });
                        ev.ts_ns = ts_ns;
                        ev.pid = pid;
                        let dev = match &mut ev.kind {
                            EventKind::Alloc { device, .. }
                            | EventKind::Free { device, .. }
                            | EventKind::DeviceClose { device } => std::mem::replace(
                                device,
                                DeviceRef {
                                    handle: 0,
                                    chips: Vec::new(),
                                    mesh: false,
                                },
                            ),
                            _ => chunk.devices[device as usize].clone(),
                        };
                        ev.kind = if alloc {
                            EventKind::Alloc {
                                device: dev,
                                buffer,
                            }
                        } else {
                            EventKind::Free {
                                device: dev,
                                buffer,
                            }
                        };
                        &*ev
                    }
                };
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
                let (tx, rx) = std::sync::mpsc::sync_channel::<Result<Decoded>>(2);
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
