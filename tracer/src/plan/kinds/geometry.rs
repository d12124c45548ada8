//! `AllocatorImpl::allocate_buffer(Buffer*)`, for processes attached mid-run: reads the live
//! allocator's geometry per buffer type (three values per type: banks, alignment, minimum
//! block), along the paths runtime/allocator.rs calibrated.
use anyhow::Result;
use tracer_common::{SlotSpec, MAX_VALUES};

use super::{Hit, Values};
use crate::{
    model::BufferType,
    plan::slot::{path, spec},
    runtime::allocator::{geometry_from, probe_chains, AllocatorLayout},
};

/// Buffer types one hit reads (three values each).
pub const TYPES: usize = MAX_VALUES / 3;

pub fn slot(layout: &AllocatorLayout) -> Result<SlotSpec> {
    let mut fields = Vec::new();
    for (_, chains) in probe_chains(layout, TYPES) {
        for c in &chains {
            fields.push(path(0, c)?);
        }
    }
    Ok(spec(&fields))
}

pub fn decode(layout: &AllocatorLayout, v: &Values) -> Hit {
    let kinds: Vec<BufferType> = probe_chains(layout, TYPES)
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    Hit::Geometry(geometry_from(&kinds, v.all(), v.valid()))
}
