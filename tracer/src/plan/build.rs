//! The probe plan of one library: which functions to probe and what each probe reads.
use anyhow::{anyhow, Result};
use tracer_common::{FieldPath, SlotSpec, MAX_VALUES};

use super::{
    lifecycle,
    slot::{device_spec, path, register, spec},
    types::{PlannedProbe, ProbePlan, Role, GEOMETRY_TYPES},
};
use crate::runtime::{
    allocator,
    calibrate::{calibrate, pretty, Layout},
    disasm::Chain,
    elf::{parameters, Library},
    symbols as sym,
};

fn buffer_fields(layout: &Layout) -> Result<Vec<FieldPath>> {
    let b = &layout.buffer;
    // Argument 1: GraphTracker's methods take `this` first, the Buffer second. The device
    // object itself is described once per process (RawDevice), not read on every hit.
    let mut v = vec![
        path(1, &b.device)?,
        path(1, &b.address)?,
        path(1, &b.size)?,
        path(1, &b.page_size)?,
        path(1, &b.kind)?,
        path(1, &b.unique_id)?,
    ];
    if let Some(layout) = &b.memory_layout {
        v.push(path(1, layout)?);
    }
    debug_assert!(v.len() <= MAX_VALUES);
    Ok(v)
}

/// A bank-manager constructor's arguments: buffer type, bank container, alignment.
fn bank_probe(lib: &Library, mangled: &str, demangled: &str) -> Option<(Role, SlotSpec)> {
    let params = parameters(demangled);
    // Every parameter here is of INTEGER class, so parameter i is argument i + 1.
    let args = |pred: &dyn Fn(&str) -> bool| -> Vec<u8> {
        params
            .iter()
            .enumerate()
            .filter(|(_, p)| pred(p))
            .map(|(i, _)| i as u8 + 1)
            .collect()
    };
    let kind = *args(&|p| p.starts_with("tt::tt_metal::BufferType")).first()?;
    let uints = args(&|p| p == "unsigned int");
    // The first `unsigned int` is the page alignment; a second one, where the release has it,
    // is the allocator's minimum block (each bank's share is rounded up to it).
    let align = register(*uints.first()?, 4).ok()?;
    let granule = register(*uints.get(1).unwrap_or(&uints[0]), 4).ok()?;
    let _ = lib.symbol(mangled)?;
    let kind_f = path(kind, &Chain::field(0, 4)).ok()?;
    if let Some(c) = args(&|p| p.starts_with("std::vector<")).first() {
        let begin = path(*c, &Chain::field(0, 8)).ok()?;
        let end = path(*c, &Chain::field(8, 8)).ok()?;
        return Some((
            Role::BanksVector,
            spec(&[kind_f, begin, end, align, granule]),
        ));
    }
    if let Some(c) = args(&|p| p.starts_with("std::unordered_map<")).first() {
        // libstdc++'s _Hashtable: buckets, bucket_count, before_begin, element_count.
        let count = path(*c, &Chain::field(0x18, 8)).ok()?;
        return Some((Role::BanksMap, spec(&[kind_f, count, align, granule])));
    }
    None
}

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
    let fields = buffer_fields(&layout)?;
    for (role, mangled) in [
        (Role::Alloc, sym::TRACK_ALLOCATE),
        (Role::Free, sym::TRACK_DEALLOCATE),
    ] {
        probes.push(PlannedProbe {
            role,
            symbol: mangled.to_string(),
            file_offset: offset_of(mangled)?,
            spec: device_spec(&fields, false),
            detail: String::new(),
        });
    }
    let id = &layout.device_id;
    let this = register(0, 8)?;
    let vptr = path(0, &Chain::field(0, 8))?;
    let close_specs = [
        (
            Role::DeviceClose,
            sym::DEVICE_CLOSE,
            device_spec(&[this, vptr, path(0, id)?], true),
        ),
        (
            Role::MeshClose,
            sym::MESH_DEVICE_CLOSE,
            device_spec(&[this, vptr], true),
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
        if let Some((role, spec)) = bank_probe(lib, &mangled, &demangled) {
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
        let mut fields = Vec::new();
        for (_, chains) in allocator::probe_chains(a, GEOMETRY_TYPES) {
            for c in &chains {
                fields.push(path(0, c)?);
            }
        }
        probes.push(PlannedProbe {
            role: Role::AllocatorGeometry,
            symbol: sym::ALLOCATOR_ALLOCATE_BUFFER.to_string(),
            file_offset: offset_of(sym::ALLOCATOR_ALLOCATE_BUFFER)?,
            spec: spec(&fields),
            detail: "attached only after a mid-run attach, until each process reported".into(),
        });
    }
    let call_stacks = lifecycle::call_stacks(lib);
    let vptr_of = |m: &str| lib.symbol(m).map(|s| s.address + 16);
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
        mid_run: false,
    })
}
