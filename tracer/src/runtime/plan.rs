//! The probe plan: which functions to probe and what each probe reads.
use std::path::PathBuf;

use anyhow::{anyhow, Result};
use tracer_common::{
    arg_word, FieldPath, SlotSpec, MAX_STEPS, MAX_VALUES, PT_REGS_SP, SLOT_FORGETS_DEVICE,
};

use super::{
    allocator::{self, AllocatorLayout},
    calibrate::{calibrate, pretty, Layout},
    disasm::Chain,
    elf::{parameters, Library},
    lifecycle, symbols as sym, window,
};

/// What a probed function means to the ledger.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// `GraphTracker::track_allocate(const Buffer*)`: a buffer got its address.
    Alloc,
    /// `GraphTracker::track_deallocate(Buffer*)`: a buffer is about to be freed.
    Free,
    /// `Device::close()`.
    DeviceClose,
    /// `MeshDevice::close()`.
    MeshClose,
    /// `BankManager(BufferType const&, std::vector<long> const& offsets, ..., alignment, ...)`.
    BanksVector,
    /// `BankManager(BufferType const&, std::unordered_map<..> const& offsets, ..., alignment, ...)`.
    BanksMap,
    /// `Device::initialize(...)`: a chip is being opened.
    DeviceOpen,
    /// `MeshDevice::initialize(...)`: a mesh is being opened (its chips are already known).
    MeshOpen,
    /// The `tt_throw` of "Out of Memory" inside `BankManager::allocate_buffer` (an
    /// instruction, not a function entry): the allocator refused an allocation.
    OutOfMemory,
    /// `AllocatorImpl::allocate_buffer(Buffer*)`: reads the allocator's geometry per buffer
    /// type (see runtime/allocator.rs). Attached only for processes attached mid-run, and
    /// removed once they have reported.
    AllocatorGeometry,
}

/// Buffer types whose geometry one [`Role::AllocatorGeometry`] hit reads (three values each).
pub const GEOMETRY_TYPES: usize = MAX_VALUES / 3;

/// Value positions in Alloc/Free events.
pub mod field {
    pub const DEVICE: usize = 0;
    pub const ADDRESS: usize = 1;
    pub const SIZE: usize = 2;
    pub const PAGE_SIZE: usize = 3;
    pub const KIND: usize = 4;
    pub const UNIQUE_ID: usize = 5;
    /// `TensorMemoryLayout`, where calibrated.
    pub const MEMORY_LAYOUT: usize = 6;
}

#[derive(Clone, Debug)]
pub struct PlannedProbe {
    pub role: Role,
    pub symbol: String,
    pub file_offset: u64,
    pub spec: SlotSpec,
    /// Where inside `symbol` the probe sits and why (empty: at its entry).
    pub detail: String,
}

#[derive(Clone, Debug)]
pub struct ProbePlan {
    pub library: PathBuf,
    pub build_id: Option<String>,
    pub layout: Layout,
    /// Slot number == index (the attach cookie).
    pub probes: Vec<PlannedProbe>,
    /// Link-time addresses of the objects' vtable pointers (vtable symbol + 16).
    pub device_vptr: Option<u64>,
    pub mesh_vptr: Option<u64>,
    /// Things that work in a degraded way with this library.
    pub warnings: Vec<String>,
    /// Why allocation call stacks are (not) collected, as found in this library.
    pub call_stacks: String,
    /// Paths to the allocator geometry in a live process (read after a mid-run attach), or
    /// which symbol or pattern failed to calibrate.
    pub allocator: Result<AllocatorLayout, String>,
    /// Set by `attach` before the probes go live: the processes may have opened their devices
    /// already, so the [`Role::AllocatorGeometry`] probe is attached too.
    pub mid_run: bool,
}

impl ProbePlan {
    pub fn role(&self, slot: u32) -> Option<Role> {
        self.probes.get(slot as usize).map(|p| p.role)
    }
}

/// Loads `chain` from argument `arg` (0 = `this`). Integer arguments past the sixth live on the
/// stack at entry: `[rsp + 8 + 8 * (arg - 6)]` (rsp points at the return address).
pub(super) fn path(arg: u8, chain: &Chain) -> Result<FieldPath> {
    let mut hops = chain.offsets.clone();
    let base = if arg < 6 {
        arg_word(arg)
    } else {
        hops.insert(0, 8 + 8 * (i32::from(arg) - 6));
        PT_REGS_SP
    };
    if hops.len() > MAX_STEPS {
        return Err(anyhow!(
            "layout chain {} deeper than {MAX_STEPS} loads",
            chain.describe()
        ));
    }
    let mut offsets = [0i32; MAX_STEPS];
    offsets[..hops.len()].copy_from_slice(&hops);
    Ok(FieldPath {
        arg: base,
        steps: hops.len() as u8,
        width: chain.width,
        _pad: 0,
        offsets,
    })
}

/// The value of argument `arg` itself (`width` bytes of it).
pub(super) fn register(arg: u8, width: u8) -> Result<FieldPath> {
    if arg < 6 {
        return Ok(FieldPath {
            arg: arg_word(arg),
            steps: 0,
            width,
            _pad: 0,
            offsets: [0; MAX_STEPS],
        });
    }
    let mut stack = path(arg, &Chain::field(0, width))?;
    // `path` added the stack slot hop in front of the field read; the slot IS the value.
    stack.steps -= 1;
    Ok(stack)
}

fn spec(fields: &[FieldPath]) -> SlotSpec {
    let mut s = SlotSpec {
        nfields: fields.len() as u32,
        ..Default::default()
    };
    s.fields[..fields.len()].copy_from_slice(fields);
    window::with_window(s)
}

/// A slot whose first value is a device object pointer (described on first sight; `forgets`
/// when the call ends that object's life).
pub(super) fn device_spec(fields: &[FieldPath], forgets: bool) -> SlotSpec {
    let mut s = spec(fields);
    s.device_field = 1;
    if forgets {
        s.flags |= SLOT_FORGETS_DEVICE;
    }
    s
}

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
