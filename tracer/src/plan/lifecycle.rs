//! Probes that fire rarely: device and mesh opens, and the allocator's out-of-memory throw.
//! None of them is on the allocation hot path.
use anyhow::Result;

use super::{
    kinds::device,
    oom,
    types::{PlannedProbe, Role},
};
use crate::runtime::{
    calibrate::pretty,
    disasm::{sets_frame_pointer, tail_accessor, Chain},
    elf::{parameters, Library},
    symbols as sym,
};

/// A chain of tail-calling accessors, as one load chain from `this`.
fn tail_chain(lib: &Library, names: &[&str]) -> Option<Chain> {
    let mut functions = Vec::new();
    for n in names {
        let s = lib.symbol(n)?;
        functions.push((lib.code(s, 256)?, s.address));
    }
    tail_accessor(&functions)
}

fn entry(lib: &Library, (mangled, demangled): (&str, &str)) -> Option<(String, u64)> {
    let (m, _, s) = lib.find_demangled(mangled, demangled).into_iter().next()?;
    Some((m, lib.file_offset(s.address)?))
}

/// The mesh-open function and the argument holding the `MeshDevice*` (0 = `this`):
/// `MeshDeviceImpl::initialize_impl(MeshDevice*, ...)` where the release has it (the public
/// `MeshDevice::initialize` is a wrapper `MeshDevice::create` does not call), else
/// `MeshDevice::initialize`.
fn mesh_open(lib: &Library) -> Option<(String, u64, u8)> {
    let (mangled, demangled) = sym::MESH_DEVICE_INITIALIZE_IMPL;
    if let Some((m, d, s)) = lib.find_demangled(mangled, demangled).into_iter().next() {
        let arg = parameters(&d)
            .iter()
            .position(|p| p == "tt::tt_metal::distributed::MeshDevice*")
            .map(|i| i as u8 + 1);
        if let (Some(arg), Some(off)) = (arg, lib.file_offset(s.address)) {
            return Some((m, off, arg));
        }
    }
    entry(lib, sym::MESH_DEVICE_INITIALIZE).map(|(m, off)| (m, off, 0))
}

pub fn plan(
    lib: &Library,
    probes: &mut Vec<PlannedProbe>,
    warnings: &mut Vec<String>,
) -> Result<()> {
    match entry(lib, sym::DEVICE_INITIALIZE) {
        Some((symbol, file_offset)) => probes.push(PlannedProbe {
            role: Role::DeviceOpen,
            symbol,
            file_offset,
            spec: device::open_device_spec()?,
            detail: String::new(),
        }),
        None => warnings.push(format!(
            "no `{}...)`: device opens are not shown",
            sym::DEVICE_INITIALIZE.1
        )),
    }
    let rows = tail_chain(lib, &sym::MESH_NUM_ROWS);
    let cols = tail_chain(lib, &sym::MESH_NUM_COLS);
    match mesh_open(lib) {
        Some((symbol, file_offset, arg)) => {
            let shape = rows.as_ref().zip(cols.as_ref());
            let detail = match shape {
                Some((r, c)) => {
                    format!(
                        "shape rows {} cols {} (from {} and {})",
                        r.describe(),
                        c.describe(),
                        pretty(sym::MESH_NUM_ROWS[0]),
                        pretty(sym::MESH_NUM_COLS[0])
                    )
                }
                None => {
                    warnings.push(format!(
                        "mesh shape not calibrated (`{}` is not a chain of loads): mesh opens show chips only",
                        pretty(sym::MESH_NUM_ROWS[0])
                    ));
                    String::new()
                }
            };
            probes.push(PlannedProbe {
                role: Role::MeshOpen,
                symbol,
                file_offset,
                spec: device::open_mesh_spec(arg, shape)?,
                detail,
            });
        }
        None => warnings.push(format!(
            "no `{}...)`: mesh opens are not shown",
            sym::MESH_DEVICE_INITIALIZE.1
        )),
    }
    match oom::sites(lib) {
        Ok(sites) => probes.extend(super::throw::probes(lib, sites, Role::OutOfMemory)),
        Err(e) => warnings.push(format!("out-of-memory events unavailable: {e}")),
    }
    Ok(())
}

/// Whether a native call stack per allocation can be had cheaply from this build.
pub fn call_stacks(lib: &Library) -> String {
    let fp = lib
        .symbol(sym::TRACK_ALLOCATE)
        .and_then(|s| lib.code(s, 64).map(|c| sets_frame_pointer(c, s.address)));
    match fp {
        Some(false) => format!(
            "not collected: {} has no frame pointer (no `mov %rsp,%rbp` in its prologue), so a \
             kernel stack walk stops in the runtime; unwinding with DWARF CFI per allocation \
             would cost more than the probe itself",
            pretty(sym::TRACK_ALLOCATE)
        ),
        Some(true) => "not collected: frame pointers are present, but a stack per allocation \
                       would double the probe's cost on the hot path"
            .to_string(),
        None => "not collected".to_string(),
    }
}
