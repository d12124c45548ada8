//! `tracer report FILE [--json] [--at SECONDS]`: the live summary, from a recording.
use std::{fmt::Write as _, path::Path};

use anyhow::{bail, Result};

use crate::{
    report,
    session::{self, reader::Recording, replay::Replay},
};

pub fn report(file: &Path, json: bool, at: Option<f64>) -> Result<i32> {
    if at.is_some_and(|s| !s.is_finite() || s < 0.0) {
        bail!("--at wants a number of seconds >= 0");
    }
    let data = session::load(file)?;
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
    if json {
        let mut doc = report::json::summary(&replay.ledger, &replay.info);
        doc["recording"] = replay.recording_json(&rec);
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
    if let Some(at) = at {
        let _ = writeln!(s, "ledger at +{at:.3}s after the session start:");
    }
    s.push_str(&report::text::summary(&replay.ledger, &replay.info));
    if let Some(t) = &replay.read.truncated {
        let _ = writeln!(s, "NOTE: {}", t.describe(replay.read.chunks));
    }
    print!("{s}");
    Ok(0)
}
