//! The probe plan of one library: which functions to probe and what each probe reads.
use anyhow::{anyhow, Result};

use super::{
    kinds::{banks, buffer, cb, device, geometry},
    lifecycle,
    types::{PlannedProbe, ProbePlan, Role},
};
use crate::runtime::{
    allocator,
    calibrate::{calibrate, pretty},
    core_ranges,
    elf::Library,
    held, symbols as sym,
};

pub fn build(lib: &Library) -> Result<ProbePlan> {
    let mut probes = Vec::new();
    let mut warnings = Vec::new();
    let offset_of = |mangled: &str| -> Result<u64> {
        let s = lib.symbol(mangled).ok_or_else(|| {
            anyhow!(
                "symbol `{}` ({mangled}) not found in {}: this does not look like a tt-metal \
                 build tracer supports (is it libtt_metal.so?)",
                pretty(mangled),
                lib.path.display()
            )
        })?;
        lib.file_offset(s.address)
            .ok_or_else(|| anyhow!("symbol {mangled} lies outside any loadable segment"))
    };
    // The probed functions first: without them nothing else matters.
    for mangled in [sym::TRACK_ALLOCATE, sym::TRACK_DEALLOCATE] {
        offset_of(mangled)?;
    }
    let layout = calibrate(lib)?;
    let allocator = allocator::calibrate(lib);
    if let Err(e) = &allocator {
        warnings.push(format!(
            "allocator geometry cannot be read after a mid-run attach ({e}): `reserved` of \
             processes attached after they opened their devices falls back to requested bytes"
        ));
    }
    let buffer_spec = buffer::spec(&layout)?;
    for (role, mangled) in [
        (Role::Alloc, sym::TRACK_ALLOCATE),
        (Role::Free, sym::TRACK_DEALLOCATE),
    ] {
        probes.push(PlannedProbe {
            role,
            symbol: mangled.to_string(),
            file_offset: offset_of(mangled)?,
            spec: buffer_spec,
            detail: String::new(),
        });
    }
    let close_specs = [
        (
            Role::DeviceClose,
            sym::DEVICE_CLOSE,
            device::close_device_spec(&layout.device_id)?,
        ),
        (
            Role::MeshClose,
            sym::MESH_DEVICE_CLOSE,
            device::close_mesh_spec()?,
        ),
    ];
    for (role, mangled, spec) in close_specs {
        match offset_of(mangled) {
            Ok(file_offset) => probes.push(PlannedProbe {
                role,
                symbol: mangled.to_string(),
                file_offset,
                spec,
                detail: String::new(),
            }),
            Err(_) => warnings.push(format!(
                "`{}` not found: buffers dropped by closing a device stay live in the ledger",
                pretty(mangled)
            )),
        }
    }
    let mut seen = std::collections::HashSet::new();
    for (mangled, demangled, s) in
        lib.find_demangled(sym::BANK_MANAGER_CTOR.0, sym::BANK_MANAGER_CTOR.1)
    {
        if !seen.insert(s.address) {
            continue; // C1 and C2 constructors share one body.
        }
        if let Some((role, spec)) = banks::probe(lib, &mangled, &demangled) {
            probes.push(PlannedProbe {
                role,
                symbol: mangled.clone(),
                file_offset: offset_of(&mangled)?,
                spec,
                detail: String::new(),
            });
        }
    }
    if !probes
        .iter()
        .any(|p| matches!(p.role, Role::BanksVector | Role::BanksMap))
    {
        warnings.push(
            "no BankManager constructor understood: `reserved` falls back to requested bytes"
                .into(),
        );
    }
    lifecycle::plan(lib, &mut probes, &mut warnings)?;
    if let Ok(a) = &allocator {
        probes.push(PlannedProbe {
            role: Role::AllocatorGeometry,
            symbol: sym::ALLOCATOR_ALLOCATE_BUFFER.to_string(),
            file_offset: offset_of(sym::ALLOCATOR_ALLOCATE_BUFFER)?,
            spec: geometry::slot(a)?,
            detail: "attached only after a mid-run attach, until each process reported".into(),
        });
    }
    let core_ranges = circular_buffers(lib, &mut probes, &mut warnings);
    let call_stacks = lifecycle::call_stacks(lib);
    let vptr_of = |m: &str| lib.symbol(m).map(|s| s.address + 16);
    let held = held::calibrate(lib, layout.mesh_devices.as_ref().map(|(h, _)| h.as_slice()));
    Ok(ProbePlan {
        library: lib.path.clone(),
        build_id: lib.build_id.clone(),
        layout,
        probes,
        device_vptr: vptr_of(sym::DEVICE_VTABLE),
        mesh_vptr: vptr_of(sym::MESH_DEVICE_VTABLE),
        warnings,
        call_stacks,
        allocator,
        held,
        core_ranges,
        programs: crate::runtime::programs::calibrate(lib),
        mid_run: false,
    })
}

/// The circular-buffer probes, when the library has them and its core ranges calibrate.
fn circular_buffers(
    lib: &Library,
    probes: &mut Vec<PlannedProbe>,
    warnings: &mut Vec<String>,
) -> Result<core_ranges::CoreRangeLayout, String> {
    let wanted = [
        (Role::CircularBuffer, sym::TRACK_ALLOCATE_CB),
        (Role::ProgramRegister, sym::DEVICE_REGISTER_PROGRAM),
        (Role::ProgramUnregister, sym::DEVICE_UNREGISTER_PROGRAM),
    ];
    let located: Result<Vec<_>, String> = wanted
        .iter()
        .map(|(role, mangled)| {
            lib.symbol(mangled)
                .and_then(|s| lib.file_offset(s.address))
                .map(|off| (*role, *mangled, off))
                .ok_or_else(|| format!("`{}` not found", pretty(mangled)))
        })
        .collect();
    let planned = located.and_then(|located| {
        let layout = core_ranges::calibrate(lib)?;
        let cb_spec = cb::allocate_spec(&layout).map_err(|e| e.to_string())?;
        let program_spec = cb::program_spec().map_err(|e| e.to_string())?;
        for (role, mangled, file_offset) in located {
            let spec = if role == Role::CircularBuffer {
                cb_spec
            } else {
                program_spec
            };
            probes.push(PlannedProbe {
                role,
                symbol: mangled.to_string(),
                file_offset,
                spec,
                detail: String::new(),
            });
        }
        match super::clash::sites(lib) {
            Ok(sites) => probes.extend(super::throw::probes(lib, sites, Role::CircularBufferClash)),
            Err(e) => warnings.push(format!("circular buffer clashes are not shown: {e}")),
        }
        Ok(layout)
    });
    if let Err(e) = &planned {
        warnings.push(format!("circular buffers are not tracked: {e}"));
    }
    planned
}
