//! The probe plan: which functions of the runtime library to probe, and what each probe reads
//! (built from the layout that runtime/ calibrated).
mod build;
pub mod clash;
pub mod kinds;
pub mod lifecycle;
pub mod oom;
pub mod slot;
pub mod throw;
pub mod types;
pub mod window;

use std::path::Path;

use anyhow::{Context, Result};

pub use build::build;
pub use types::{PlannedProbe, ProbePlan, Role};

/// Opens and calibrates a runtime library, and plans its probes.
pub fn for_library(lib: &Path) -> Result<ProbePlan> {
    let library = crate::runtime::elf::Library::open(lib)?;
    build(&library).with_context(|| format!("cannot build a probe plan for {}", lib.display()))
}
