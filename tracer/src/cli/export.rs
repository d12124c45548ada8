//! `tracer export FILE --format chrome|csv|sqlite -o OUT`.
use std::path::Path;

use anyhow::{Context, Result};

use crate::{
    report,
    session::{self, reader::Recording},
};

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum Format {
    Chrome,
    Csv,
    Sqlite,
}

pub fn export(file: &Path, format: Format, out: &Path) -> Result<i32> {
    let data = session::load(file)?;
    let rec = Recording::open(&data).map_err(|e| e.context(format!("{}", file.display())))?;
    let read = match format {
        Format::Chrome => report::chrome::export(&rec, out),
        Format::Csv => report::csv::export(&rec, out),
        Format::Sqlite => report::sqlite::export(&rec, out),
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
