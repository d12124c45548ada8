//! Runtime discovery: find libtt_metal.so, read its symbols, calibrate its layout, and turn
//! that into a [`plan::ProbePlan`].
pub mod allocator;
pub mod calibrate;
pub mod devices;
pub mod disasm;
pub mod discover;
pub mod dynamic_linker;
pub mod elf;
pub mod lifecycle;
pub mod loader;
pub mod oom;
pub mod plan;
pub mod shm;
pub mod symbols;
pub mod window;
pub mod x86;

use std::path::Path;

use anyhow::{Context, Result};

/// Opens and calibrates a runtime library.
pub fn plan_for(lib: &Path) -> Result<plan::ProbePlan> {
    let library = elf::Library::open(lib)?;
    plan::build(&library)
        .with_context(|| format!("cannot build a probe plan for {}", lib.display()))
}
