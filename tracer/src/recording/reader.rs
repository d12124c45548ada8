//! Reads a recording without ever panicking. A file cut short is read up to its last complete
//! chunk; bytes in the middle that fail the frame checks (magic, lengths, checksum) are skipped
//! up to the next chunk that passes them and reported as [`Damage`], so one bad sector or a
//! flipped bit costs the events of its chunk, not the rest of the session. What cannot be
//! skipped (the header, a chunk whose checksum holds but whose content does not decode) is an
//! error naming what is wrong and at which byte.
use std::ops::ControlFlow;

use anyhow::{bail, Context, Result};

use super::format::{
    chunk_crc, Body, Header, Trailer, WireRecordOwned, CHUNK_MAGIC, FRAME_LEN, KIND_EVENTS,
    KIND_TRAILER, MAGIC, MAX_COMPRESSED, MAX_HEADER, MAX_RAW, PREAMBLE_LEN, VERSION,
};
use crate::model::{BufferInfo, DeviceRef, Event, EventKind};

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
    /// Unreadable stretches skipped, in file order.
    pub damaged: Vec<Damage>,
    pub file_bytes: u64,
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
    /// Unreadable stretches skipped, in file order; their chunks' events were not delivered.
    pub damaged: Vec<Damage>,
    pub file_bytes: u64,
    /// The timestamp of the last event delivered.
    pub last_ns: Option<u64>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Truncation {
    /// Where the incomplete last chunk starts: the bytes before it hold the header and the
    /// complete chunks (and any damage skipped on the way).
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

/// Bytes `start..end` of the file that failed the frame checks, skipped up to the next chunk
/// that passes them (or to the end of the file).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Damage {
    pub start: u64,
    pub end: u64,
    /// Chunk frames that started in these bytes, found by following their length fields.
    pub chunks_lost: u64,
    /// False when a frame's magic or length was itself damaged: past it, frames were found by
    /// their magic alone and each stretch long enough for a frame counted as one chunk, so the
    /// count is an estimate.
    pub exact: bool,
}

fn plural(n: u64, what: &str) -> String {
    format!("{n} {what}{}", if n == 1 { "" } else { "s" })
}

impl Damage {
    pub fn describe(&self) -> String {
        let lost = match (self.chunks_lost, self.exact) {
            (0, _) => "too short to have held a whole chunk".to_string(),
            (n, true) => format!("{} lost", plural(n, "chunk")),
            (n, false) => format!(
                "about {} lost (a frame header was damaged too)",
                plural(n, "chunk")
            ),
        };
        format!(
            "bytes {}-{} ({}) unreadable, {lost}",
            self.start,
            self.end.saturating_sub(1),
            plural(self.end - self.start, "byte"),
        )
    }
}

impl Replayed {
    /// What the damage cost, in one sentence for the reader of a report; None if nothing was
    /// skipped.
    pub fn damage_note(&self) -> Option<String> {
        if self.damaged.is_empty() {
            return None;
        }
        let ranges: Vec<String> = self.damaged.iter().map(Damage::describe).collect();
        let at_end = self
            .damaged
            .last()
            .is_some_and(|d| d.end == self.file_bytes);
        let tail = if at_end && self.trailer.is_none() {
            " (up to the end of the file: no trailer was read)"
        } else {
            ""
        };
        Some(format!(
            "recording damaged: {}{tail}; everything else was read. The lost chunks' events \
             are missing from the ledger: buffers freed in them still count as held, frees of \
             buffers allocated in them count as frees of buffers allocated before tracing \
             began, and what is recorded once (process start, allocator geometry, device \
             opens) may be missing too",
            ranges.join("; ")
        ))
    }

    /// Chunks lost to damage, "about" when a count is an estimate.
    pub fn chunks_lost_text(&self) -> String {
        let n = plural(self.chunks_lost(), "chunk");
        if self.damaged.iter().all(|d| d.exact) {
            n
        } else {
            format!("about {n}")
        }
    }

    pub fn chunks_lost(&self) -> u64 {
        self.damaged.iter().map(|d| d.chunks_lost).sum()
    }
}

/// A chunk frame as the bytes alone can judge it.
enum Frame<'a> {
    /// Magic, lengths and checksum hold.
    Valid {
        kind: u8,
        count: usize,
        raw_len: usize,
        payload: &'a [u8],
        end: usize,
    },
    /// A plausible frame that the file ends inside.
    Incomplete,
    Bad,
}

fn frame_at(d: &[u8], pos: usize) -> Frame<'_> {
    let rest = d.len() - pos;
    if rest < FRAME_LEN {
        return if CHUNK_MAGIC.starts_with(&d[pos..pos + rest.min(4)]) {
            Frame::Incomplete
        } else {
            Frame::Bad
        };
    }
    if &d[pos..pos + 4] != CHUNK_MAGIC {
        return Frame::Bad;
    }
    let count = u32_at(d, pos + 8) as usize;
    let raw_len = u32_at(d, pos + 12) as usize;
    let comp_len = u32_at(d, pos + 16) as usize;
    if comp_len > MAX_COMPRESSED || raw_len > MAX_RAW {
        return Frame::Bad;
    }
    let start = pos + FRAME_LEN;
    if rest - FRAME_LEN < comp_len {
        return Frame::Incomplete;
    }
    let payload = &d[start..start + comp_len];
    if chunk_crc(&d[pos + 4..pos + 20], payload) != u32_at(d, pos + 20) {
        return Frame::Bad;
    }
    Frame::Valid {
        kind: d[pos + 4],
        count,
        raw_len,
        payload,
        end: start + comp_len,
    }
}

fn find_magic(d: &[u8], from: usize, to: usize) -> Option<usize> {
    if from >= to {
        return None;
    }
    d[from..to]
        .windows(CHUNK_MAGIC.len())
        .position(|w| w == CHUNK_MAGIC)
        .map(|i| from + i)
}

/// The first chunk after `pos` that passes every frame check. A checksum over the frame and
/// payload is what makes a magic found in damaged bytes trustworthy.
fn next_valid(d: &[u8], pos: usize) -> Option<usize> {
    let mut at = pos + 1;
    while let Some(q) = find_magic(d, at, d.len()) {
        if matches!(frame_at(d, q), Frame::Valid { .. }) {
            return Some(q);
        }
        at = q + 1;
    }
    None
}

/// Counts the chunk frames in the damaged bytes `from..to`. A chunk was due at `from`; while
/// each frame's magic and length hold and its length lands on the next frame (the last one on
/// `to`), the count is exact. Otherwise the chunk magics in the stretch are counted instead,
/// an estimate. With `at_eof`, a plausible frame that the file ends inside is the incomplete
/// chunk of a truncation, not damage: its offset is returned.
fn lost_chunks(d: &[u8], from: usize, to: usize, at_eof: bool) -> (u64, bool, Option<usize>) {
    let (mut p, mut n) = (from, 0u64);
    loop {
        if p == to {
            return (n, true, None);
        }
        let rest = to - p;
        if rest < FRAME_LEN {
            if at_eof && CHUNK_MAGIC.starts_with(&d[p..p + rest.min(4)]) {
                return (n, true, Some(p));
            }
            break;
        }
        if &d[p..p + 4] != CHUNK_MAGIC {
            break;
        }
        let raw_len = u32_at(d, p + 12) as usize;
        let comp_len = u32_at(d, p + 16) as usize;
        if comp_len > MAX_COMPRESSED || raw_len > MAX_RAW {
            break;
        }
        if rest - FRAME_LEN < comp_len {
            if at_eof {
                return (n, true, Some(p));
            }
            break;
        }
        n += 1;
        p += FRAME_LEN + comp_len;
    }
    let mut n = 0;
    let mut magic = find_magic(d, from, to);
    // The chunk due at `from` lost its magic too, unless the stretch is too short to have held
    // a frame (bytes inserted between two chunks, say).
    if magic.unwrap_or(to) - from >= FRAME_LEN {
        n += 1;
    }
    while let Some(q) = magic {
        let next = find_magic(d, q + 1, to);
        if at_eof && next.is_none() && matches!(frame_at(d, q), Frame::Incomplete) {
            return (n, false, Some(q));
        }
        n += 1;
        magic = next;
    }
    (n, false, None)
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

    /// Checks every frame (lengths, checksums) and lists the chunks; stops at the trailer or
    /// the end of the file. Damaged bytes are skipped to the next valid chunk and a cut tail is
    /// noted (both reported, not errors); a chunk that passes its checksum yet makes no sense
    /// was written that way, and is an error.
    pub fn scan(&self) -> Result<Scan<'a>> {
        let d = self.data;
        let mut pos = self.body;
        let mut out = Scan {
            file_bytes: d.len() as u64,
            ..Default::default()
        };
        loop {
            let rest = d.len() - pos;
            // The chunk's place in the file, lost ones counted, as the frames say it.
            let chunk =
                out.chunks.len() as u64 + out.damaged.iter().map(|x| x.chunks_lost).sum::<u64>();
            if rest == 0 && out.trailer.is_some() {
                return Ok(out);
            }
            if out.trailer.is_some() {
                bail!("{rest} unexpected byte(s) after the trailer at byte {pos}");
            }
            if rest == 0 {
                // Complete chunks and no trailer: the tracer stopped between two chunks.
                out.truncated = Some(Truncation {
                    valid_bytes: pos as u64,
                    file_bytes: d.len() as u64,
                });
                return Ok(out);
            }
            let (kind, count, raw_len, payload, end) = match frame_at(d, pos) {
                Frame::Valid {
                    kind,
                    count,
                    raw_len,
                    payload,
                    end,
                } => (kind, count, raw_len, payload, end),
                Frame::Incomplete | Frame::Bad => {
                    // An incomplete frame may be a damaged length in the middle: only the
                    // lack of any valid chunk after it makes it a truncated tail.
                    if let Some(next) = next_valid(d, pos) {
                        let (lost, exact, _) = lost_chunks(d, pos, next, false);
                        out.damaged.push(Damage {
                            start: pos as u64,
                            end: next as u64,
                            chunks_lost: lost,
                            exact,
                        });
                        pos = next;
                        continue;
                    }
                    let (lost, exact, cut) = lost_chunks(d, pos, d.len(), true);
                    let stop = cut.unwrap_or(d.len());
                    if stop > pos {
                        out.damaged.push(Damage {
                            start: pos as u64,
                            end: stop as u64,
                            chunks_lost: lost,
                            exact,
                        });
                    }
                    if cut.is_some() {
                        out.truncated = Some(Truncation {
                            valid_bytes: stop as u64,
                            file_bytes: d.len() as u64,
                        });
                    }
                    return Ok(out);
                }
            };
            match kind {
                KIND_EVENTS => {
                    // Each record takes at least 3 bytes (delta, pid, variant).
                    if count.saturating_mul(3) > raw_len {
                        bail!("chunk {chunk} at byte {pos}: {count} records cannot fit in {raw_len} bytes");
                    }
                    out.chunks.push(Chunk {
                        index: chunk as usize,
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
            pos = end;
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
            damaged: scan.damaged.clone(),
            file_bytes: scan.file_bytes,
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
