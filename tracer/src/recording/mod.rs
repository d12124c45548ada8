//! Recordings: the file format, its writer (live sessions) and its reader (`report`,
//! `export`, through report::replay, which feeds the same ledger as live tracing).
pub mod format;
pub mod reader;
#[cfg(test)]
pub(crate) mod tests;
pub mod writer;

use std::path::Path;

use anyhow::{Context, Result};

/// Reads a whole recording into memory (the reader works on bytes so it can be fuzzed).
pub fn load(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("cannot read recording {}", path.display()))
}
