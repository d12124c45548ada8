//! Offline: `tracer report FILE [--json] [--at SECONDS]` (the live summary, from a recording)
//! and `tracer export`.
//!
//! A truncated or damaged recording still exits 0: what could be read is reported, and what
//! was lost is said on stderr, in the text (a warning before the summary) and in the JSON
//! (`recording.truncated`, `recording.damaged`). Only an unreadable header, or a chunk whose
//! checksum holds but whose content does not decode, is an error (exit 1).
use std::{fmt::Write as _, path::Path};

use anyhow::{bail, Context, Result};
use serde_json::json;

use super::replay::Replay;
use crate::{
    recording::{self, reader::Recording},
    report,
};

/// What `tracer export` writes.
#[derive(Clone, Copy, Debug)]
pub enum ExportFormat {
    Chrome,
    Csv,
    Sqlite,
    Html,
    PytorchSnapshot,
}

/// Converts a recording; prints what was read.
pub fn export(file: &Path, format: ExportFormat, out: &Path) -> Result<i32> {
    let data = recording::load(file)?;
    let rec = Recording::open(&data).map_err(|e| e.context(format!("{}", file.display())))?;
    let read = match format {
        ExportFormat::Chrome => report::chrome::export(&rec, out),
        ExportFormat::Csv => report::csv::export(&rec, out),
        ExportFormat::Sqlite => report::sqlite::export(&rec, out),
        ExportFormat::Html => report::html::export(&rec, out),
        ExportFormat::PytorchSnapshot => report::torch_snapshot::export(&rec, out),
    }
    .with_context(|| format!("cannot export {} to {}", file.display(), out.display()))?;
    if let Some(t) = &read.truncated {
        eprintln!(
            "tracer: note: {}: {}",
            file.display(),
            t.describe(read.chunks)
        );
    }
    eprintln!(
        "tracer: exported {} event(s) to {}",
        read.events,
        out.display()
    );
    Ok(0)
}

/// The summary of a recording, as text or JSON, on stdout.
pub fn report(file: &Path, json: bool, at: Option<f64>) -> Result<i32> {
    if at.is_some_and(|s| !s.is_finite() || s < 0.0) {
        bail!("--at wants a number of seconds >= 0");
    }
    let data = recording::load(file)?;
    let rec = Recording::open(&data).map_err(|e| e.context(format!("{}", file.display())))?;
    let replay =
        Replay::run(&rec, at, |_, _| {}).map_err(|e| e.context(format!("{}", file.display())))?;
    if let Some(t) = &replay.read.truncated {
        eprintln!(
            "tracer: note: {}: {}",
            file.display(),
            t.describe(replay.read.chunks)
        );
    }
    let damage = replay.read.damage_note();
    if let Some(note) = &damage {
        eprintln!("tracer: warning: {}: {note}", file.display());
    }
    if json {
        let mut doc = report::json::summary(&replay.ledger, &replay.info);
        doc["recording"] = replay.recording_json(&rec);
        let ranges: Vec<_> = replay
            .read
            .damaged
            .iter()
            .map(|d| {
                // `end` is exclusive, as everywhere in the reader's byte offsets.
                json!({
                    "start": d.start,
                    "end": d.end,
                    "bytes": d.end - d.start,
                    "chunks_lost": d.chunks_lost,
                    "chunks_lost_exact": d.exact,
                })
            })
            .collect();
        doc["recording"]["damaged"] = json!(!ranges.is_empty());
        doc["recording"]["damage"] = json!(ranges);
        doc["recording"]["chunks_lost"] = json!(replay.read.chunks_lost());
        doc["recording"]["damage_note"] = json!(damage);
        println!("{}", serde_json::to_string_pretty(&doc)?);
        return Ok(0);
    }
    let h = &rec.header;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "recording of `{}` on {} (kernel {}, tracer {}): {} event(s) in {} chunk(s)",
        h.command, h.host, h.kernel, h.tool_version, replay.read.events, replay.read.chunks
    );
    // Before the summary: every number below it lacks the lost chunks.
    if let Some(note) = &damage {
        let _ = writeln!(s, "WARNING: {note}");
    }
    if let Some(at) = at {
        let _ = writeln!(s, "ledger at +{at:.3}s after the session start:");
    }
    s.push_str(&report::text::summary(&replay.ledger, &replay.info));
    if let Some(t) = &replay.read.truncated {
        let _ = writeln!(s, "NOTE: {}", t.describe(replay.read.chunks));
    }
    if damage.is_some() {
        let _ = writeln!(
            s,
            "NOTE: the recording is damaged: the summary above lacks {} (see the warning at \
             the top)",
            replay.read.chunks_lost_text()
        );
    }
    print!("{s}");
    Ok(0)
}
