//! What a running process holds now, read from its own memory (no probes): every live buffer
//! of every device and mesh object, as its allocator records it.
//!
//! tt-metal keeps no global list of its mesh devices that works everywhere: the inspector's
//! list is skipped on mock clusters and off with `TT_METAL_INSPECTOR=0`, the allocator
//! registry of 0.80 and later is filled only when allocator tracebacks are asked for. The
//! device objects themselves are found where they live, on the process's heap, by their
//! vtable pointer (the library's `MeshDevice` and `Device` vtables), and each candidate must
//! then prove it is a live device object: its chips are `Device` objects, its allocator's
//! buffers all name it as their device. From each one:
//! - a mesh: its implementation object (`MeshDevice::allocator_impl() const` hands on to it),
//!   the sub-device manager tracker (`MeshDeviceImpl::allocator_impl() const` asks it for the
//!   default manager), that manager (`SubDeviceManagerTracker::get_default_sub_device_manager()
//!   const`), its allocators (the vector `SubDeviceManager::allocator(SubDeviceId) const`
//!   indexes);
//! - a chip: its allocator member (`Device::allocator_impl() const` returns its address);
//! - an allocator: its `std::unordered_set<Buffer*>` of allocated buffers (the member
//!   `get_allocated_buffers() const` copies; `get_num_allocated_buffers() const` returns its
//!   element count), walked as libstdc++ lays it out: a singly linked list of nodes
//!   `{next, Buffer*}` from the set's before-begin node, with the element count beside it.
//!
//! Each `Buffer` is read with the layout the probes use ([`super::calibrate::BufferLayout`]),
//! so a buffer read here has the same device object and unique id the probes report when it is
//! freed. Reads go through `process_vm_readv`, batched; a read that races with the process's
//! own changes (a node freed under the walk) is detected (the walk does not end where the
//! count says) and redone.
//!
//! Then, from every chip's `Device` object (a mesh's too), the programs placed on it and their
//! circular buffers ([`super::programs`]); where their layout does not calibrate, or they
//! keep changing under the read, the buffers stand and the CBs are said to be unread.
use anyhow::{bail, Result};
use iced_x86::Register;

use super::{
    allocator::{finding, geometry_from, probe_chains, resolve, AllocatorLayout},
    calibrate::{is_function, pretty, FieldSources, Layout},
    core_ranges::CoreRangeLayout,
    memory::Memory,
    programs::{HeldProgram, ProgramLayout},
    symbols as sym,
    x86::{
        accessor_chain, field_reads, forwarded_member, indexed_member, member_at_call,
        member_lea_at_call, returned_after_calls, returned_member_address, Chain, Image,
    },
};
use crate::model::{BufferInfo, BufferType, DeviceRef, Geometry};

/// The hops from a device object to its allocators' sets of buffers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HeldLayout {
    /// `MeshDevice` -> its implementation object (a pointer member).
    pub mesh_impl: i32,
    /// Implementation object -> `SubDeviceManagerTracker*`.
    pub impl_tracker: i32,
    /// Tracker -> its default `SubDeviceManager*`.
    pub tracker_default: i32,
    /// Manager -> its `std::vector<std::unique_ptr<AllocatorImpl>>` (begin pointer first).
    pub manager_allocators: i32,
    /// `Device` -> its `std::unique_ptr<AllocatorImpl>` member.
    pub device_allocator: i32,
    /// `AllocatorImpl` -> its `std::unordered_set<Buffer*>` of allocated buffers.
    pub allocated_buffers: i32,
    pub provenance: Vec<FieldSources>,
}

impl HeldLayout {
    pub fn describe(&self) -> String {
        format!(
            "MeshDevice{{impl +{:#x}->tracker +{:#x}->default manager +{:#x}->allocators \
             +{:#x}}} Device{{allocator +{:#x}}} AllocatorImpl{{allocated buffers +{:#x}}}",
            self.mesh_impl,
            self.impl_tracker,
            self.tracker_default,
            self.manager_allocators,
            self.device_allocator,
            self.allocated_buffers
        )
    }
}

/// libstdc++'s hashtable: the before-begin node's `next` and the element count, from the set.
const SET_FIRST: u64 = 0x10;
const SET_COUNT: i32 = 0x18;

/// Calibrates the hops of `lib`; `mesh_hops` are the pointer loads from a `MeshDevice` to its
/// device list (the layout calibration's), whose first one is the same implementation object.
pub fn calibrate(lib: &dyn Image, mesh_hops: Option<&[i32]>) -> Result<HeldLayout, String> {
    let function = |mangled: &str| {
        lib.symbol(mangled)
            .and_then(|s| Some((lib.code(s, 512)?, s.address)))
    };
    let name = |mangled: &str| pretty(mangled);
    let single = |c: Option<Chain>| c.filter(|c| c.offsets.len() == 1).map(|c| c.offsets[0]);
    let mut provenance = Vec::new();
    let mut one = |field: &str, findings: Vec<super::calibrate::Finding>| {
        let (at, sources) = resolve(lib, field, findings)?;
        provenance.push(sources);
        Ok::<i32, String>(at)
    };
    let forwarded =
        single(function(sym::MESH_ALLOCATOR_IMPL).and_then(|(c, ip)| forwarded_member(c, ip)));
    let mesh_impl = one(
        "MeshDevice implementation object",
        vec![
            finding(
                format!(
                    "the object `{}` hands on to",
                    name(sym::MESH_ALLOCATOR_IMPL)
                ),
                forwarded,
                8,
            ),
            finding(
                format!("the first hop of `{}`", name(sym::MESH_GET_DEVICES)),
                mesh_hops.and_then(|h| h.first().copied()),
                8,
            ),
        ],
    )?;
    let is_default = |t: u64| is_function(lib, t, sym::TRACKER_DEFAULT_MANAGER);
    let tracker = single(
        function(sym::MESH_IMPL_ALLOCATOR_IMPL)
            .and_then(|(c, ip)| member_at_call(c, ip, Register::RDI, 32, is_default)),
    );
    let tracker_of_id = single(
        function(sym::MESH_IMPL_DEFAULT_MANAGER_ID)
            .and_then(|(c, ip)| member_at_call(c, ip, Register::RDI, 32, is_default)),
    );
    let impl_tracker = one(
        "MeshDeviceImpl sub-device manager tracker",
        vec![
            finding(
                format!(
                    "the member `{}` asks for its default manager",
                    name(sym::MESH_IMPL_ALLOCATOR_IMPL)
                ),
                tracker,
                8,
            ),
            finding(
                format!(
                    "the member `{}` asks for its default manager",
                    name(sym::MESH_IMPL_DEFAULT_MANAGER_ID)
                ),
                tracker_of_id,
                8,
            ),
        ],
    )?;
    let default =
        single(function(sym::TRACKER_DEFAULT_MANAGER).and_then(|(c, ip)| accessor_chain(c, ip, 0)));
    // The id accessor reads the id through the same pointer: its first hop.
    let default_of_id = function(sym::TRACKER_DEFAULT_MANAGER_ID)
        .and_then(|(c, ip)| accessor_chain(c, ip, 0))
        .filter(|c| c.offsets.len() == 2)
        .map(|c| c.offsets[0]);
    let tracker_default = one(
        "SubDeviceManagerTracker default manager",
        vec![
            finding(
                format!("accessor `{}`", name(sym::TRACKER_DEFAULT_MANAGER)),
                default,
                8,
            ),
            finding(
                format!(
                    "the pointer `{}` reads the id through",
                    name(sym::TRACKER_DEFAULT_MANAGER_ID)
                ),
                default_of_id,
                8,
            ),
        ],
    )?;
    let indexed = single(
        function(sym::SUB_DEVICE_MANAGER_ALLOCATOR).and_then(|(c, ip)| indexed_member(c, ip)),
    );
    // `sub_device_allocator(id)` checks the id against the sub-devices vector, then adds the
    // allocators vector's begin pointer: its last read.
    let offset_into = function(sym::SUB_DEVICE_ALLOCATOR)
        .and_then(|(c, ip)| field_reads(c, ip, 0, 32).pop())
        .filter(|c| c.offsets.len() == 1)
        .map(|c| c.offsets[0]);
    let manager_allocators = one(
        "SubDeviceManager allocators",
        vec![
            finding(
                format!(
                    "the vector `{}` indexes",
                    name(sym::SUB_DEVICE_MANAGER_ALLOCATOR)
                ),
                indexed,
                8,
            ),
            finding(
                format!(
                    "the vector `{}` offsets into",
                    name(sym::SUB_DEVICE_ALLOCATOR)
                ),
                offset_into,
                8,
            ),
        ],
    )?;
    let member =
        function(sym::DEVICE_ALLOCATOR_IMPL).and_then(|(c, ip)| returned_member_address(c, ip));
    let member_of =
        function(sym::DEVICE_ALLOCATOR_IMPL_OF).and_then(|(c, ip)| returned_member_address(c, ip));
    let device_allocator = one(
        "Device allocator",
        vec![
            finding(
                format!("the member `{}` returns", name(sym::DEVICE_ALLOCATOR_IMPL)),
                member,
                8,
            ),
            finding(
                format!(
                    "the member `{}` returns",
                    name(sym::DEVICE_ALLOCATOR_IMPL_OF)
                ),
                member_of,
                8,
            ),
        ],
    )?;
    let is_copy = |t: u64| {
        lib.symbol_at(t)
            .map(|n| n.strip_suffix("$plt").unwrap_or(n))
            .and_then(super::elf::demangle)
            .is_some_and(|d| d.contains("_Hashtable<tt::tt_metal::Buffer*"))
    };
    let copied = function(sym::ALLOCATOR_ALLOCATED_BUFFERS)
        .and_then(|(c, ip)| member_lea_at_call(c, ip, 1, Register::RSI, 48, is_copy));
    let counted = single(
        function(sym::ALLOCATOR_NUM_ALLOCATED_BUFFERS)
            .and_then(|(c, ip)| returned_after_calls(c, ip, 32)),
    )
    .map(|count| count - SET_COUNT);
    let allocated_buffers = one(
        "AllocatorImpl allocated buffers",
        vec![
            finding(
                format!(
                    "the set `{}` copies",
                    name(sym::ALLOCATOR_ALLOCATED_BUFFERS)
                ),
                copied,
                8,
            ),
            finding(
                format!(
                    "the element count `{}` returns",
                    name(sym::ALLOCATOR_NUM_ALLOCATED_BUFFERS)
                ),
                counted,
                8,
            ),
        ],
    )?;
    Ok(HeldLayout {
        mesh_impl,
        impl_tracker,
        tracker_default,
        manager_allocators,
        device_allocator,
        allocated_buffers,
        provenance,
    })
}

/// One live buffer as its allocator holds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HeldBuffer {
    pub device: DeviceRef,
    pub buffer: BufferInfo,
    /// The object its fields were read from (the `Buffer*`, or the implementation object a
    /// `Buffer` handle points to), which a probed free carries.
    pub object: u64,
    /// Pages per bank of a sharded buffer, when its shard parameters could be read.
    pub shard_pages: Option<u64>,
    /// Sharded without readable shard parameters (its `reserved` is an estimate).
    pub sharded_unknown: bool,
}

/// What a process holds, read from its memory.
#[derive(Clone, Debug, Default)]
pub struct Held {
    pub buffers: Vec<HeldBuffer>,
    /// Every live device object: meshes with their chips, and chips.
    pub devices: Vec<DeviceRef>,
    /// The chips' `Device` objects (those of the meshes too): (object, chip id).
    pub chip_objects: Vec<(u64, i32)>,
    /// The programs registered on each chip, with their circular buffers.
    pub programs: Vec<HeldProgram>,
    /// Why the programs were not read (their layout does not calibrate, or the process kept
    /// changing them): the CBs of programs placed before the read are then unknown.
    pub programs_unread: Option<String>,
    /// The allocators' bank geometry per buffer type.
    pub geometry: Vec<(BufferType, Geometry)>,
    /// Heap bytes searched for device objects.
    pub scanned: u64,
    /// How many times the walk was redone because the process changed a set under it.
    pub retries: u32,
}

/// Everything the read needs of the library: its layouts and the link-time addresses of the
/// two vtable pointers.
pub struct Reading<'a> {
    pub layout: &'a Layout,
    pub allocator: &'a AllocatorLayout,
    pub held: &'a HeldLayout,
    /// The paths to the chips' programs and the core range layout of their CBs, or why the
    /// CBs cannot be read.
    pub programs: Result<(&'a ProgramLayout, &'a CoreRangeLayout), String>,
    /// Link-time addresses of the `Device` and `MeshDevice` vtable pointers (symbol + 16).
    pub device_vptr: u64,
    pub mesh_vptr: u64,
}

/// More elements than this in one allocator's set is no set (a torn or stale read).
const MAX_BUFFERS: u64 = 1 << 22;
/// Walks redone before giving up on a process that keeps changing its sets.
const MAX_RETRIES: u32 = 5;

/// Reads what `pid` (whose runtime is mapped at `base`) holds now.
pub fn read(pid: u32, base: u64, r: &Reading) -> Result<Held> {
    let mem = Memory::open(pid, base)?;
    let mesh_vptr = base.wrapping_add(r.mesh_vptr);
    let device_vptr = base.wrapping_add(r.device_vptr);
    let (found, scanned) = scan(pid, &mem, &[mesh_vptr, device_vptr])?;
    let mut retries = 0;
    loop {
        match walk(&mem, r, &found, device_vptr) {
            Ok(mut held) => {
                held.scanned = scanned;
                held.retries = retries;
                read_programs(pid, &mem, r, &mut held);
                return Ok(held);
            }
            Err(Torn(why)) if retries < MAX_RETRIES => {
                log::debug!("PID {pid}: walk redone: {why}");
                retries += 1;
            }
            Err(Torn(why)) => bail!(
                "PID {pid} changed its allocators {MAX_RETRIES} times while tracer read them \
                 (last: {why})"
            ),
        }
    }
}

/// The programs of every chip of `held` (after its buffers: a failure here leaves them be).
fn read_programs(pid: u32, mem: &Memory, r: &Reading, held: &mut Held) {
    let (layout, ranges) = match &r.programs {
        Ok(p) => *p,
        Err(e) => {
            held.programs_unread = Some(e.clone());
            return;
        }
    };
    let mut retries = 0;
    loop {
        let mut programs = Vec::new();
        let got = held.chip_objects.iter().try_for_each(|(object, chip)| {
            let set = object.wrapping_add(layout.device_programs as i64 as u64);
            let device = DeviceRef {
                handle: *object,
                chips: vec![*chip],
                mesh: false,
            };
            let elements = set_elements(mem, set)?;
            programs.extend(
                super::programs::read(mem, layout, ranges, &device, &elements).map_err(Torn)?,
            );
            Ok::<(), Torn>(())
        });
        match got {
            Ok(()) => {
                held.programs = programs;
                return;
            }
            Err(Torn(why)) if retries < MAX_RETRIES => {
                log::debug!("PID {pid}: programs read again: {why}");
                retries += 1;
                held.retries += 1;
            }
            Err(Torn(why)) => {
                held.programs_unread = Some(format!(
                    "PID {pid} changed its programs {MAX_RETRIES} times while tracer read them \
                     (last: {why})"
                ));
                return;
            }
        }
    }
}

/// glibc's non-main arenas live in heaps aligned to their maximum size (64 MiB on 64-bit),
/// each starting with a `heap_info` {arena, previous heap, size, mprotect size}.
const ARENA_HEAP_ALIGN: u64 = 64 << 20;

/// Allocators other than glibc's keep their memory in mappings tracer cannot tell from others:
/// with one of these, every anonymous mapping is searched.
const OTHER_MALLOCS: [&str; 3] = ["jemalloc", "tcmalloc", "mimalloc"];

/// Every heap word of `pid` equal to one of `needles`: (its address, which needle), and how
/// many bytes were searched. The device objects are small C++ objects from `new`: with glibc
/// they are in the main heap or in an arena's heap, and nothing else is searched.
fn scan(pid: u32, mem: &Memory, needles: &[u64]) -> Result<(Vec<(u64, usize)>, u64)> {
    use procfs::process::{MMPermissions, MMapPath};
    let maps = super::process::maps(pid)?;
    let other_malloc = maps.iter().any(|m| match &m.pathname {
        MMapPath::Path(p) => {
            let name = p
                .file_name()
                .map(|n| n.to_string_lossy())
                .unwrap_or_default();
            OTHER_MALLOCS.iter().any(|o| name.contains(o))
        }
        _ => false,
    });
    let mut ranges = Vec::new();
    for m in &maps {
        let rw = m.perms.contains(MMPermissions::READ) && m.perms.contains(MMPermissions::WRITE);
        let (start, end) = m.address;
        match m.pathname {
            MMapPath::Heap if rw => ranges.push((start, end)),
            MMapPath::Anonymous if rw && other_malloc => ranges.push((start, end)),
            MMapPath::Anonymous if rw && start % ARENA_HEAP_ALIGN == 0 => {
                let Some(info) = mem.bytes(start, 32) else {
                    continue;
                };
                let word =
                    |i: usize| u64::from_le_bytes(info[8 * i..8 * i + 8].try_into().unwrap());
                let (arena, size) = (word(0), word(2));
                if arena != 0 && arena % 8 == 0 && size > 0 && size <= end - start {
                    ranges.push((start, start + size));
                }
            }
            _ => {}
        }
    }
    let mut out = Vec::new();
    let mut scanned = 0u64;
    const CHUNK: u64 = 1 << 22;
    let mut buf = vec![0u8; CHUNK as usize];
    for (start, end) in ranges {
        let mut at = start;
        while at < end {
            let len = (end - at).min(CHUNK) as usize;
            if mem.read_into(at, &mut buf[..len]).is_ok() {
                scanned += len as u64;
                for (i, w) in buf[..len].as_chunks::<8>().0.iter().enumerate() {
                    let w = u64::from_le_bytes(*w);
                    if let Some(n) = needles.iter().position(|x| *x == w) {
                        out.push((at + 8 * i as u64, n));
                    }
                }
            }
            at += len as u64;
        }
    }
    Ok((out, scanned))
}

/// The process changed what was being read: read again.
struct Torn(String);

fn walk(
    mem: &Memory,
    r: &Reading,
    found: &[(u64, usize)],
    device_vptr: u64,
) -> std::result::Result<Held, Torn> {
    let mut held = Held::default();
    let mut seen_buffers = std::collections::HashSet::new();
    for (object, which) in found {
        let mesh = *which == 0;
        let Some((device, chips)) = describe(mem, r, *object, mesh, device_vptr) else {
            continue;
        };
        let allocators = allocators_of(mem, r.held, *object, mesh);
        if allocators.is_empty() {
            continue; // Closed: its allocators are gone.
        }
        let mut buffers = Vec::new();
        for a in &allocators {
            buffers.extend(set_elements(
                mem,
                a + r.held.allocated_buffers as i64 as u64,
            )?);
            if held.geometry.is_empty() {
                held.geometry = geometry(mem, r.allocator, *a);
            }
        }
        let devices = mem.chains(&buffers, &r.layout.buffer.device);
        // A live device object's buffers all name it; a copy of a vtable pointer elsewhere
        // leads to no such set.
        if devices.iter().any(|d| *d != Some(*object)) {
            if devices.iter().all(|d| *d != Some(*object)) && !buffers.is_empty() {
                continue;
            }
            return Err(Torn(format!(
                "a buffer of device object {object:#x} names another device"
            )));
        }
        for b in read_buffers(mem, r.layout, &buffers, &device)? {
            if seen_buffers.insert((b.device.handle, b.buffer.unique_id)) {
                held.buffers.push(b);
            }
        }
        held.devices.push(device);
        for c in chips {
            if !held.chip_objects.contains(&c) {
                held.chip_objects.push(c);
            }
        }
    }
    Ok(held)
}

/// What device object `object` is: a mesh and its chips (each a live `Device`), or a chip;
/// with the chips' `Device` objects and ids.
fn describe(
    mem: &Memory,
    r: &Reading,
    object: u64,
    mesh: bool,
    device_vptr: u64,
) -> Option<(DeviceRef, Vec<(u64, i32)>)> {
    let chip_id = |d: u64| -> Option<i32> {
        let id = mem.chains(&[d], &r.layout.device_id)[0]?;
        Some(id as u32 as i32)
    };
    if !mesh {
        let id = chip_id(object)?;
        return Some((
            DeviceRef {
                handle: object,
                chips: vec![id],
                mesh: false,
            },
            vec![(object, id)],
        ));
    }
    let (hops, at) = r.layout.mesh_devices.as_ref()?;
    let mut p = object;
    for h in hops {
        p = mem
            .word(p.wrapping_add(*h as i64 as u64))
            .filter(|w| *w != 0)?;
    }
    let begin = mem.word(p.wrapping_add(*at as u64))?;
    let end = mem.word(p.wrapping_add(*at as u64 + 8))?;
    if end < begin || (end - begin) % 8 != 0 || (end - begin) / 8 > 1024 {
        return None; // No device vector: a stale copy of a vtable pointer.
    }
    let n = ((end - begin) / 8) as usize;
    let devices: Vec<u64> = (0..n as u64).map(|i| begin + 8 * i).collect();
    // Some releases keep more than a pointer per element (a pointer and a flag): the words
    // that point to a `Device` are the chips, as the probes' description of a mesh reads them.
    let mut chips = Vec::with_capacity(n);
    for d in mem.words(&devices).into_iter().flatten() {
        if d != 0 && mem.word(d) == Some(device_vptr) {
            chips.push((d, chip_id(d)?));
        }
    }
    if chips.is_empty() {
        return None;
    }
    Some((
        DeviceRef {
            handle: object,
            chips: chips.iter().map(|(_, id)| *id).collect(),
            mesh: true,
        },
        chips,
    ))
}

/// The `AllocatorImpl`s of a device object (none when it is closed).
fn allocators_of(mem: &Memory, h: &HeldLayout, object: u64, mesh: bool) -> Vec<u64> {
    let at = |p: u64, off: i32| {
        mem.word(p.wrapping_add(off as i64 as u64))
            .filter(|w| *w != 0)
    };
    if !mesh {
        return at(object, h.device_allocator).into_iter().collect();
    }
    let Some(manager) = at(object, h.mesh_impl)
        .and_then(|i| at(i, h.impl_tracker))
        .and_then(|t| at(t, h.tracker_default))
    else {
        return Vec::new();
    };
    let (Some(begin), Some(end)) = (
        at(manager, h.manager_allocators),
        at(manager, h.manager_allocators + 8),
    ) else {
        return Vec::new();
    };
    if end < begin || (end - begin) % 8 != 0 || (end - begin) / 8 > 256 {
        return Vec::new();
    }
    let slots: Vec<u64> = (begin..end).step_by(8).collect();
    mem.words(&slots)
        .into_iter()
        .flatten()
        .filter(|a| *a != 0)
        .collect()
}

/// The elements of the `std::unordered_set<T*>` at `set`.
fn set_elements(mem: &Memory, set: u64) -> std::result::Result<Vec<u64>, Torn> {
    let count = mem
        .word(set + SET_COUNT as u64)
        .ok_or_else(|| Torn(format!("set at {set:#x} unreadable")))?;
    if count > MAX_BUFFERS {
        return Err(Torn(format!("set at {set:#x} counts {count} elements")));
    }
    let mut out = Vec::with_capacity(count as usize);
    let mut node = mem.word(set + SET_FIRST).unwrap_or(0);
    while node != 0 {
        if out.len() as u64 == count {
            return Err(Torn(format!("set at {set:#x} longer than its count")));
        }
        let pair = mem
            .bytes(node, 16)
            .ok_or_else(|| Torn(format!("node {node:#x} unreadable")))?;
        let next = u64::from_le_bytes(pair[..8].try_into().unwrap());
        out.push(u64::from_le_bytes(pair[8..].try_into().unwrap()));
        node = next;
    }
    if out.len() as u64 != count {
        return Err(Torn(format!(
            "set at {set:#x} has {} nodes for a count of {count}",
            out.len()
        )));
    }
    Ok(out)
}

/// The bank geometry of allocator `a`, per buffer type.
fn geometry(mem: &Memory, layout: &AllocatorLayout, a: u64) -> Vec<(BufferType, Geometry)> {
    let chains = probe_chains(layout, usize::MAX);
    let kinds: Vec<BufferType> = chains.iter().map(|(k, _)| *k).collect();
    let mut values = Vec::new();
    let mut valid = 0u16;
    for (_, three) in &chains {
        for c in three {
            let v = mem.chains(&[a], c)[0];
            if v.is_some() {
                valid |= 1 << values.len();
            }
            values.push(v.unwrap_or(0));
        }
    }
    geometry_from(&kinds, &values, valid)
}

/// The buffers at `pointers`, all of `device`.
fn read_buffers(
    mem: &Memory,
    layout: &Layout,
    pointers: &[u64],
    device: &DeviceRef,
) -> std::result::Result<Vec<HeldBuffer>, Torn> {
    let b = &layout.buffer;
    let read = |c: &Chain| mem.chains(pointers, c);
    let (address, size, page_size, kind, unique_id) = (
        read(&b.address),
        read(&b.size),
        read(&b.page_size),
        read(&b.kind),
        read(&b.unique_id),
    );
    let memory_layout = b.memory_layout.as_ref().map(read);
    // The buffer's object: its implementation behind the `Buffer`, or the `Buffer*` itself.
    let objects = match b.pimpl() {
        Some(hop) => mem.chains(pointers, &Chain::field(hop, 8)),
        None => pointers.iter().map(|p| Some(*p)).collect(),
    };
    let shard = b.shard.as_ref().map(|s| {
        (
            read(&s.present),
            read(&s.shard[0]),
            read(&s.shard[1]),
            read(&s.page[0]),
            read(&s.page[1]),
        )
    });
    let mut out = Vec::with_capacity(pointers.len());
    for i in 0..pointers.len() {
        let torn = || Torn(format!("buffer {:#x} unreadable", pointers[i]));
        let kind = kind[i].and_then(BufferType::from_raw).ok_or_else(torn)?;
        let buffer = BufferInfo {
            address: address[i].ok_or_else(torn)?,
            size: size[i].ok_or_else(torn)?,
            page_size: page_size[i].ok_or_else(torn)?,
            kind,
            unique_id: unique_id[i].ok_or_else(torn)?,
        };
        // tt-metal's TensorMemoryLayout: INTERLEAVED = 0, SINGLE_BANK = 1, then sharded ones.
        let sharded = memory_layout
            .as_ref()
            .and_then(|l| l[i])
            .is_some_and(|l| l >= 2);
        let shard_pages = shard.as_ref().filter(|_| sharded).and_then(|s| {
            if s.0[i]? & 0xff != 1 {
                return None;
            }
            let (sh, sw, ph, pw) = (s.1[i]?, s.2[i]?, s.3[i]?, s.4[i]?);
            (ph > 0 && pw > 0)
                .then(|| (sh / ph) * (sw / pw))
                .filter(|p| *p > 0)
        });
        out.push(HeldBuffer {
            device: device.clone(),
            buffer,
            object: objects[i].ok_or_else(torn)?,
            sharded_unknown: sharded && shard_pages.is_none(),
            shard_pages,
        });
    }
    Ok(out)
}
