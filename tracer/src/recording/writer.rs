//! Appends a session to a recording: header first, then framed chunks, then a trailer.
//!
//! Chunks are cut every `max_events` events or whenever `flush_if_due` finds pending events
//! older than `interval`, and each goes to the file in one write, so a tracer killed with
//! SIGKILL loses at most the events of the last interval.
use std::{
    io::Write,
    time::{Duration, Instant},
};

use anyhow::{Context, Result};

use super::format::{
    chunk_crc, frame, Body, Header, Trailer, WireRecord, CHUNK_MAGIC, KIND_EVENTS, KIND_TRAILER,
    MAGIC, VERSION,
};
use crate::model::{DeviceRef, Event, EventKind};

/// zstd level: 3 is zstd's default, fast enough for the live path.
const LEVEL: i32 = 3;
/// Raw bytes that force a chunk out (well under the reader's `MAX_RAW`).
const MAX_PENDING: usize = 8 << 20;

pub struct Recorder<W: Write> {
    out: W,
    base_ns: u64,
    pending: Vec<u8>,
    count: u32,
    prev_ns: u64,
    oldest: Option<Instant>,
    /// This chunk's device table.
    devices: Vec<DeviceRef>,
    pub max_events: u32,
    pub interval: Duration,
    pub events: u64,
    pub chunks: u64,
    /// Bytes written so far, header included.
    pub bytes: u64,
}

impl<W: Write> Recorder<W> {
    pub fn new(mut out: W, header: &Header) -> Result<Self> {
        let json = serde_json::to_vec(header)?;
        let mut pre = Vec::with_capacity(json.len() + 20);
        pre.extend_from_slice(MAGIC);
        pre.extend_from_slice(&VERSION.to_le_bytes());
        pre.extend_from_slice(&0u16.to_le_bytes());
        pre.extend_from_slice(&(json.len() as u32).to_le_bytes());
        pre.extend_from_slice(&json);
        pre.extend_from_slice(&crc32fast::hash(&json).to_le_bytes());
        out.write_all(&pre)
            .context("cannot write the recording header")?;
        out.flush()?;
        Ok(Self {
            out,
            base_ns: header.monotonic_base_ns,
            pending: Vec::with_capacity(1 << 16),
            count: 0,
            prev_ns: header.monotonic_base_ns,
            oldest: None,
            devices: Vec::new(),
            max_events: 65536,
            interval: Duration::from_millis(250),
            events: 0,
            chunks: 0,
            bytes: pre.len() as u64,
        })
    }

    /// The index of `d` in this chunk's device table, defining it first if new.
    fn device(&mut self, d: &DeviceRef, pid: u32) -> Result<u32> {
        if let Some(i) = self
            .devices
            .iter()
            .position(|x| x.handle == d.handle && x == d)
        {
            return Ok(i as u32);
        }
        self.put(pid, Body::Device(d))?;
        self.devices.push(d.clone());
        Ok(self.devices.len() as u32 - 1)
    }

    fn put(&mut self, pid: u32, body: Body<&EventKind, &DeviceRef>) -> Result<()> {
        // Device definitions carry a zero delta: they take the time of the event after them.
        let wire = WireRecord {
            dt_ns: 0,
            pid,
            body,
        };
        postcard::to_io(&wire, &mut self.pending).context("cannot encode an event")?;
        self.count += 1;
        Ok(())
    }

    pub fn record(&mut self, ev: &Event) -> Result<()> {
        let dt_ns = ev.ts_ns.wrapping_sub(self.prev_ns) as i64;
        let body: Body<&EventKind, &DeviceRef> = match &ev.kind {
            EventKind::Alloc { device, buffer } => Body::Alloc {
                device: self.device(device, ev.pid)?,
                buffer: buffer.clone(),
            },
            EventKind::Free { device, buffer } => Body::Free {
                device: self.device(device, ev.pid)?,
                buffer: buffer.clone(),
            },
            other => Body::Event(other),
        };
        let wire = WireRecord {
            dt_ns,
            pid: ev.pid,
            body,
        };
        postcard::to_io(&wire, &mut self.pending).context("cannot encode an event")?;
        self.prev_ns = ev.ts_ns;
        self.count += 1;
        self.events += 1;
        self.oldest.get_or_insert_with(Instant::now);
        if self.count >= self.max_events || self.pending.len() >= MAX_PENDING {
            self.flush()?;
        }
        Ok(())
    }

    /// Writes the pending events if the oldest of them waited longer than the interval.
    pub fn flush_if_due(&mut self) -> Result<()> {
        match self.oldest {
            Some(t) if t.elapsed() >= self.interval => self.flush(),
            _ => Ok(()),
        }
    }

    fn write_chunk(&mut self, kind: u8, count: u32, raw_len: usize, payload: &[u8]) -> Result<()> {
        let f = frame(kind, count, raw_len as u32, payload.len() as u32);
        let mut chunk = Vec::with_capacity(24 + payload.len());
        chunk.extend_from_slice(CHUNK_MAGIC);
        chunk.extend_from_slice(&f);
        chunk.extend_from_slice(&chunk_crc(&f, payload).to_le_bytes());
        chunk.extend_from_slice(payload);
        // One write per chunk: a kill leaves either the whole chunk or a short tail.
        self.out
            .write_all(&chunk)
            .context("cannot write a recording chunk")?;
        self.out.flush()?;
        self.bytes += chunk.len() as u64;
        self.chunks += 1;
        Ok(())
    }

    /// Compresses and writes the pending events as one chunk.
    pub fn flush(&mut self) -> Result<()> {
        if self.count == 0 {
            return Ok(());
        }
        let payload = zstd::bulk::compress(&self.pending, LEVEL).context("zstd")?;
        let raw_len = self.pending.len();
        self.write_chunk(KIND_EVENTS, self.count, raw_len, &payload)?;
        self.pending.clear();
        self.count = 0;
        self.prev_ns = self.base_ns;
        self.oldest = None;
        self.devices.clear();
        Ok(())
    }

    /// The writer as it is, without a trailer (tests build files by hand after a header).
    #[cfg(test)]
    pub fn finish_raw(self) -> W {
        self.out
    }

    /// Ends the recording cleanly; returns the writer.
    pub fn finish(mut self, end_ns: u64, lost_events: u64) -> Result<W> {
        self.flush()?;
        let trailer = serde_json::to_vec(&Trailer {
            end_ns,
            lost_events,
            events: self.events,
        })?;
        self.write_chunk(KIND_TRAILER, 0, trailer.len(), &trailer)?;
        Ok(self.out)
    }
}

/// The header of a live session on this machine.
pub fn live_header(
    command: &str,
    traced: &crate::model::TracedLibrary,
    monotonic_base_ns: u64,
) -> Header {
    let read = |p: &str| {
        std::fs::read_to_string(p)
            .map(|s| s.trim().to_string())
            .unwrap_or_default()
    };
    Header {
        tool: "tracer".into(),
        tool_version: env!("CARGO_PKG_VERSION").into(),
        host: read("/proc/sys/kernel/hostname"),
        kernel: read("/proc/sys/kernel/osrelease"),
        command: command.into(),
        library: traced.library.clone(),
        build_id: traced.build_id.clone(),
        layout: traced.layout.clone(),
        call_stacks: traced.call_stacks.clone(),
        start_unix_ns: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64),
        monotonic_base_ns,
    }
}
