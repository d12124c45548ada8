//! The programs a running process has placed on its chips and their circular buffers, read
//! from its memory (no probes): what a mid-run attach seeds the CB ledger with, and what
//! `tracer snapshot` shows.
//!
//! A program's CBs are placed on a chip when it first runs there:
//! `ProgramImpl::allocate_circular_buffers` gives each local CB its address, then
//! `Device::register_program(ProgramImpl*)` inserts the program into the chip's
//! `std::unordered_set<ProgramImpl*>` (the set `Device::get_total_cb_allocated() const` walks,
//! tt-metal's own CB figure); `deallocate_circular_buffers` erases it when the program goes.
//! From each `Device`:
//! - the set (the member `register_program` and `unregister_program` hand to the hashtable's
//!   insert and erase), walked like the allocators' sets of buffers;
//! - each program's `std::vector<std::shared_ptr<CircularBufferImpl>>` (the span
//!   `ProgramImpl::circular_buffers() const` returns, the vector `Program::circular_buffers()
//!   const` copies through its implementation pointer);
//! - each CB's core ranges (the `CoreRangeSet` member `CircularBuffer::core_ranges() const`
//!   returns and `is_on_logical_corerange` / `is_on_logical_core` hand on), size
//!   (`CircularBuffer::size() const`, the dividend of `num_pages`), whether it is globally
//!   allocated (`CircularBuffer::globally_allocated() const`, the bit `address() const` tests)
//!   and its address: `CircularBufferImpl::address() const` returns the address of the L1
//!   buffer a globally allocated CB sits on (the member `assign_global_address()` stores),
//!   else its locally allocated `std::optional<uint32_t>`, whose engaged flag it checks.
use super::{
    allocator::{finding, resolve},
    calibrate::{pretty, FieldSources, Finding},
    core_ranges::CoreRangeLayout,
    symbols as sym,
    x86::{
        accessor_chain, field_reads, member_address, member_lea_at_call, member_stores,
        returned_paths, Chain, Image, Path,
    },
};
use crate::model::{CircularBuffer, DeviceRef};

/// Where the programs of a `Device` and their CBs live.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProgramLayout {
    /// `Device` -> its `std::unordered_set<ProgramImpl*>` of registered programs.
    pub device_programs: i32,
    /// `ProgramImpl` -> its vector of `shared_ptr<CircularBufferImpl>` (begin pointer first).
    pub program_cbs: i32,
    /// `CircularBufferImpl` -> its `CoreRangeSet`.
    pub core_ranges: i32,
    /// `CircularBufferImpl` -> its size (u32, bytes per core).
    pub size: i32,
    /// `CircularBufferImpl` -> the byte whose bit 0 says it is globally allocated.
    pub global: i32,
    /// `CircularBufferImpl` -> its locally allocated address (u32), and that optional's
    /// engaged flag (a byte).
    pub local_address: i32,
    pub local_engaged: i32,
    /// `CircularBufferImpl` -> the address of the L1 buffer it sits on, when global (u32).
    pub global_address: i32,
    pub provenance: Vec<FieldSources>,
}

impl ProgramLayout {
    pub fn describe(&self) -> String {
        format!(
            "Device{{programs +{:#x}}} ProgramImpl{{circular buffers +{:#x}}} \
             CircularBufferImpl{{core ranges +{:#x} size +{:#x}:4 global +{:#x}:1 local address \
             +{:#x}:4 (engaged +{:#x}) global address +{:#x}:4}}",
            self.device_programs,
            self.program_cbs,
            self.core_ranges,
            self.size,
            self.global,
            self.local_address,
            self.local_engaged,
            self.global_address
        )
    }
}

/// The second offset of a chain through a pointer at the start of its object (the
/// `CircularBuffer` and `Program` handles hold their implementation pointer first).
fn through_handle(c: Option<Chain>, width: u8) -> Option<i32> {
    c.filter(|c| c.offsets.len() == 2 && c.offsets[0] == 0 && c.width == width)
        .map(|c| c.offsets[1])
}

/// What `CircularBufferImpl::address() const` tells: (the globally allocated byte, the local
/// address with its engaged flag, the global address). The local address is the path that
/// checks the byte 4 past what it returns (a `std::optional<uint32_t>`); the global one the
/// other; the flag is the single bit both paths test.
fn address_choice(paths: &[Path]) -> Option<(i32, (i32, i32), i32)> {
    let returned = |p: &Path| {
        p.returned
            .as_ref()
            .filter(|c| c.offsets.len() == 1 && c.width == 4)
            .map(|c| c.offsets[0])
    };
    let ways: Vec<(&Path, i32)> = paths
        .iter()
        .filter_map(|p| returned(p).map(|r| (p, r)))
        .collect();
    let is_local = |(p, r): &(&Path, i32)| {
        p.tested
            .iter()
            .any(|t| t.field == Chain::field(r + 4, 1) && t.with == Some(0))
    };
    let local = ways.iter().find(|w| is_local(w))?;
    let global = ways.iter().find(|w| !is_local(w))?;
    // The flag: a one-bit mask over a field every path tests, as the byte holding that bit.
    let flag = |p: &Path| -> Vec<i32> {
        p.tested
            .iter()
            .filter(|t| t.field.offsets.len() == 1)
            .filter_map(|t| {
                let m = t.with?;
                (m.count_ones() == 1 && m.trailing_zeros() % 8 == 0)
                    .then(|| t.field.offsets[0] + (m.trailing_zeros() / 8) as i32)
            })
            .collect()
    };
    let flags = flag(local.0);
    let global_flag = flag(global.0).into_iter().find(|f| flags.contains(f))?;
    Some((global_flag, (local.1, local.1 + 4), global.1))
}

/// Calibrates the paths of `lib` to the programs of a `Device` and their CBs.
pub fn calibrate(lib: &dyn Image) -> Result<ProgramLayout, String> {
    let function = |mangled: &str| {
        lib.symbol(mangled)
            .and_then(|s| Some((lib.code(s, 512)?, s.address)))
    };
    let name = |mangled: &str| pretty(mangled);
    let mut provenance = Vec::new();
    let mut one = |field: &str, findings: Vec<Finding>| {
        let (at, sources) = resolve(lib, field, findings)?;
        provenance.push(sources);
        Ok::<i32, String>(at)
    };
    let is_programs = |t: u64| {
        lib.symbol_at(t)
            .map(|n| n.strip_suffix("$plt").unwrap_or(n))
            .and_then(super::elf::demangle)
            .is_some_and(|d| d.contains("_Hashtable<tt::tt_metal::detail::ProgramImpl*"))
    };
    let handed = |mangled: &str| {
        function(mangled).and_then(|(c, ip)| {
            member_lea_at_call(c, ip, 0, iced_x86::Register::RDI, 32, is_programs)
        })
    };
    let device_programs = one(
        "Device registered programs",
        vec![
            finding(
                format!(
                    "the set `{}` inserts into",
                    name(sym::DEVICE_REGISTER_PROGRAM)
                ),
                handed(sym::DEVICE_REGISTER_PROGRAM),
                8,
            ),
            finding(
                format!(
                    "the set `{}` erases from",
                    name(sym::DEVICE_UNREGISTER_PROGRAM)
                ),
                handed(sym::DEVICE_UNREGISTER_PROGRAM),
                8,
            ),
        ],
    )?;
    let span = function(sym::PROGRAM_IMPL_CIRCULAR_BUFFERS)
        .and_then(|(c, ip)| field_reads(c, ip, 0, 16).into_iter().next())
        .filter(|c| c.offsets.len() == 1 && c.width == 8)
        .map(|c| c.offsets[0]);
    // `this` of the by-value copy is its second argument.
    let copied = function(sym::PROGRAM_CIRCULAR_BUFFERS).and_then(|(c, ip)| {
        field_reads(c, ip, 1, 16)
            .into_iter()
            .find(|c| c.offsets.len() == 2)
            .and_then(|c| through_handle(Some(c), 8))
    });
    let program_cbs = one(
        "ProgramImpl circular buffers",
        vec![
            finding(
                format!(
                    "the span `{}` returns",
                    name(sym::PROGRAM_IMPL_CIRCULAR_BUFFERS)
                ),
                span,
                8,
            ),
            finding(
                format!(
                    "the vector `{}` copies",
                    name(sym::PROGRAM_CIRCULAR_BUFFERS)
                ),
                copied,
                8,
            ),
        ],
    )?;
    let on_range = |mangled: &str| {
        function(mangled)
            .and_then(|(c, ip)| member_address(c, ip))
            .filter(|(loads, _)| loads.is_empty())
            .map(|(_, d)| d)
    };
    let returned_ranges = function(sym::CB_CORE_RANGES)
        .and_then(|(c, ip)| member_address(c, ip))
        .filter(|(loads, _)| loads == &[0])
        .map(|(_, d)| d);
    let core_ranges = one(
        "CircularBufferImpl core ranges",
        vec![
            finding(
                format!("the member `{}` returns", name(sym::CB_CORE_RANGES)),
                returned_ranges,
                8,
            ),
            finding(
                format!("the member `{}` hands on", name(sym::CB_IMPL_ON_CORE_RANGE)),
                on_range(sym::CB_IMPL_ON_CORE_RANGE),
                8,
            ),
            finding(
                format!("the member `{}` hands on", name(sym::CB_IMPL_ON_CORE)),
                on_range(sym::CB_IMPL_ON_CORE),
                8,
            ),
        ],
    )?;
    let size_accessor = through_handle(
        function(sym::CB_SIZE).and_then(|(c, ip)| accessor_chain(c, ip, 0)),
        4,
    );
    let dividend = function(sym::CB_IMPL_NUM_PAGES)
        .and_then(|(c, ip)| field_reads(c, ip, 0, 16).into_iter().next())
        .filter(|c| c.offsets.len() == 1 && c.width == 4)
        .map(|c| c.offsets[0]);
    let size = one(
        "CircularBufferImpl size",
        vec![
            finding(
                format!("accessor `{}`", name(sym::CB_SIZE)),
                size_accessor,
                4,
            ),
            finding(
                format!(
                    "the field `{}` reads before its division",
                    name(sym::CB_IMPL_NUM_PAGES)
                ),
                dividend,
                4,
            ),
        ],
    )?;
    let flag_accessor = function(sym::CB_GLOBALLY_ALLOCATED)
        .and_then(|(c, ip)| through_handle(field_reads(c, ip, 0, 16).into_iter().last(), 1));
    let choice = function(sym::CB_IMPL_ADDRESS)
        .map(|(c, ip)| returned_paths(c, ip, 32))
        .and_then(|p| address_choice(&p));
    let address = name(sym::CB_IMPL_ADDRESS);
    let global = one(
        "CircularBufferImpl globally allocated",
        vec![
            finding(
                format!("accessor `{}`", name(sym::CB_GLOBALLY_ALLOCATED)),
                flag_accessor,
                1,
            ),
            finding(
                format!("the bit both paths of `{address}` test"),
                choice.map(|c| c.0),
                1,
            ),
        ],
    )?;
    let local_address = one(
        "CircularBufferImpl locally allocated address",
        vec![finding(
            format!(
                "the `std::optional` one path of `{address}` returns (its engaged flag checked)"
            ),
            choice.map(|c| c.1 .0),
            4,
        )],
    )?;
    let stored = function(sym::CB_IMPL_ASSIGN_GLOBAL_ADDRESS)
        .map(|(c, ip)| member_stores(c, ip, 32))
        .filter(|s| s.len() == 1 && s[0].1 == 4)
        .map(|s| s[0].0);
    let global_address = one(
        "CircularBufferImpl global address",
        vec![
            finding(
                format!("what the other path of `{address}` returns"),
                choice.map(|c| c.2),
                4,
            ),
            finding(
                format!(
                    "the member `{}` stores",
                    name(sym::CB_IMPL_ASSIGN_GLOBAL_ADDRESS)
                ),
                stored,
                4,
            ),
        ],
    )?;
    let (_, local_engaged) = choice.expect("the local address came from it").1;
    Ok(ProgramLayout {
        device_programs,
        program_cbs,
        core_ranges,
        size,
        global,
        local_address,
        local_engaged,
        global_address,
        provenance,
    })
}

/// One program registered on a chip, with its CBs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HeldProgram {
    /// The chip's `Device` object (what the register/unregister probes report).
    pub device: DeviceRef,
    /// The `ProgramImpl*` (what they report as the program).
    pub program: u64,
    pub buffers: Vec<CircularBuffer>,
}

/// More CBs than this in one program, core ranges in one CB, or a larger CB, is a torn read.
const MAX_CBS: u64 = 4096;
const MAX_RANGES: u64 = 1024;
const MAX_CB_BYTES: u64 = 1 << 26;
const MAX_COORDINATE: u32 = 1 << 12;

/// The programs registered on `device` (a chip's `Device` object), read with `mem`: the
/// elements `programs` of its set. An error says what did not hold together (the process
/// changed it under the read: read again).
pub fn read(
    mem: &super::memory::Memory,
    l: &ProgramLayout,
    ranges: &CoreRangeLayout,
    device: &DeviceRef,
    programs: &[u64],
) -> Result<Vec<HeldProgram>, String> {
    let at = |base: u64, off: i32| base.wrapping_add(off as i64 as u64);
    // Each program's vector of CBs.
    let mut vectors = Vec::with_capacity(2 * programs.len());
    for p in programs {
        vectors.push(at(*p, l.program_cbs));
        vectors.push(at(*p, l.program_cbs + 8));
    }
    let bounds = mem.words(&vectors);
    let mut out = Vec::with_capacity(programs.len());
    for (i, p) in programs.iter().enumerate() {
        let (Some(begin), Some(end)) = (bounds[2 * i], bounds[2 * i + 1]) else {
            return Err(format!("program {p:#x} unreadable"));
        };
        if end < begin || (end - begin) % 16 != 0 || (end - begin) / 16 > MAX_CBS {
            return Err(format!("program {p:#x} has no vector of CBs"));
        }
        // A `shared_ptr` is {element, control block}: every other word.
        let slots: Vec<u64> = (begin..end).step_by(16).collect();
        let impls: Vec<u64> = mem.words(&slots).into_iter().flatten().collect();
        if impls.len() != slots.len() || impls.contains(&0) {
            return Err(format!("the CBs of program {p:#x} unreadable"));
        }
        out.push(HeldProgram {
            device: device.clone(),
            program: *p,
            buffers: read_cbs(mem, l, ranges, &impls)?,
        });
    }
    Ok(out)
}

/// The CBs at `impls` (`CircularBufferImpl*`); CBs not yet given an address are left out
/// (nothing of L1 is theirs).
fn read_cbs(
    mem: &super::memory::Memory,
    l: &ProgramLayout,
    ranges: &CoreRangeLayout,
    impls: &[u64],
) -> Result<Vec<CircularBuffer>, String> {
    let at = |base: u64, off: i32| base.wrapping_add(off as i64 as u64);
    let fields = [
        l.core_ranges + ranges.vector,
        l.core_ranges + ranges.vector + 8,
        l.size,
        l.global,
        l.local_address,
        l.local_engaged,
        l.global_address,
    ];
    let addresses: Vec<u64> = impls
        .iter()
        .flat_map(|b| fields.iter().map(move |f| at(*b, *f)))
        .collect();
    let words = mem.words(&addresses);
    let mut out = Vec::with_capacity(impls.len());
    for (n, cb) in impls.iter().enumerate() {
        let w = |k: usize| words[fields.len() * n + k];
        let torn = || format!("CB {cb:#x} unreadable");
        let (begin, end) = (w(0).ok_or_else(torn)?, w(1).ok_or_else(torn)?);
        let size = w(2).ok_or_else(torn)? & 0xffff_ffff;
        let global = w(3).ok_or_else(torn)? & 1 != 0;
        let engaged = w(5).ok_or_else(torn)? & 0xff != 0;
        let address = if global {
            w(6).ok_or_else(torn)? & 0xffff_ffff
        } else if engaged {
            w(4).ok_or_else(torn)? & 0xffff_ffff
        } else {
            continue;
        };
        let stride = u64::from(ranges.stride);
        if end < begin || (end - begin) % stride != 0 || (end - begin) / stride > MAX_RANGES {
            return Err(format!("CB {cb:#x} has no core range vector"));
        }
        if size == 0 || size > MAX_CB_BYTES {
            return Err(format!("CB {cb:#x} counts {size} bytes"));
        }
        let bytes = if end > begin {
            mem.bytes(begin, (end - begin) as usize)
                .ok_or_else(|| format!("the core ranges of CB {cb:#x} unreadable"))?
        } else {
            Vec::new()
        };
        let cores = ranges.ranges(&bytes);
        if cores.iter().any(|r| {
            r.start.0 > r.end.0 || r.start.1 > r.end.1 || r.end.0.max(r.end.1) >= MAX_COORDINATE
        }) {
            return Err(format!("CB {cb:#x} has no core ranges"));
        }
        out.push(CircularBuffer {
            address,
            size,
            global,
            cores,
            cut: false,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        model::CoreRange,
        runtime::{core_ranges, memory::Memory, x86::fixture::Fixture},
    };

    /// A `CircularBufferImpl` as `l` lays it out, on `ranges`.
    struct FakeCb {
        object: Vec<u8>,
        _ranges: Vec<u8>,
    }

    fn put(b: &mut [u8], at: i32, v: u64, width: usize) {
        b[at as usize..at as usize + width].copy_from_slice(&v.to_le_bytes()[..width]);
    }

    fn fake_cb(
        l: &ProgramLayout,
        r: &CoreRangeLayout,
        size: u64,
        local: Option<u64>,
        global: Option<u64>,
        corners: &[CoreRange],
    ) -> FakeCb {
        let w = usize::from(r.width);
        let mut ranges = vec![0u8; corners.len() * r.stride as usize];
        for (i, c) in corners.iter().enumerate() {
            let e = &mut ranges[i * r.stride as usize..];
            put(e, r.start, u64::from(c.start.0), w);
            put(e, r.start + w as i32, u64::from(c.start.1), w);
            put(e, r.end, u64::from(c.end.0), w);
            put(e, r.end + w as i32, u64::from(c.end.1), w);
        }
        let mut object = vec![0u8; l.global_address as usize + 16];
        let begin = ranges.as_ptr() as u64;
        put(&mut object, l.core_ranges + r.vector, begin, 8);
        put(
            &mut object,
            l.core_ranges + r.vector + 8,
            begin + ranges.len() as u64,
            8,
        );
        put(&mut object, l.size, size, 4);
        put(&mut object, l.global, u64::from(global.is_some()), 1);
        if let Some(a) = local {
            put(&mut object, l.local_address, a, 4);
            put(&mut object, l.local_engaged, 1, 1);
        }
        put(&mut object, l.global_address, global.unwrap_or(0), 4);
        FakeCb {
            object,
            _ranges: ranges,
        }
    }

    /// The reader on objects laid out as 0.81.1 lays them out, in this very process.
    #[test]
    fn reads_a_programs_cbs_as_the_runtime_lays_them_out() {
        let lib = Fixture::of_release("0.81.1");
        let l = calibrate(&lib).unwrap();
        let r = core_ranges::calibrate(&lib).unwrap();
        let row = CoreRange {
            start: (0, 0),
            end: (7, 0),
        };
        let square = CoreRange {
            start: (1, 2),
            end: (2, 3),
        };
        let cbs = [
            fake_cb(&l, &r, 4096, Some(100_000), None, &[row, square]),
            fake_cb(&l, &r, 65_536, None, Some(900_000), &[square]),
            // Not given an address yet: no L1 of its own.
            fake_cb(&l, &r, 2048, None, None, &[row]),
        ];
        let shared: Vec<u64> = cbs
            .iter()
            .flat_map(|c| [c.object.as_ptr() as u64, 0])
            .collect();
        let mut program = vec![0u8; l.program_cbs as usize + 16];
        let begin = shared.as_ptr() as u64;
        put(&mut program, l.program_cbs, begin, 8);
        put(
            &mut program,
            l.program_cbs + 8,
            begin + 8 * shared.len() as u64,
            8,
        );
        let mem = Memory::open(std::process::id(), begin).unwrap();
        let device = DeviceRef {
            handle: 0xd,
            chips: vec![3],
            mesh: false,
        };
        let p = program.as_ptr() as u64;
        let got = read(&mem, &l, &r, &device, &[p]).unwrap();
        assert_eq!(
            got,
            vec![HeldProgram {
                device,
                program: p,
                buffers: vec![
                    CircularBuffer {
                        address: 100_000,
                        size: 4096,
                        global: false,
                        cores: vec![row, square],
                        cut: false
                    },
                    CircularBuffer {
                        address: 900_000,
                        size: 65_536,
                        global: true,
                        cores: vec![square],
                        cut: false
                    },
                ],
            }]
        );
    }

    #[test]
    fn a_torn_cb_is_read_again() {
        let lib = Fixture::of_release("0.75.0");
        let l = calibrate(&lib).unwrap();
        let r = core_ranges::calibrate(&lib).unwrap();
        let one = CoreRange {
            start: (0, 0),
            end: (0, 0),
        };
        // A CB of no bytes: memory reused under the read.
        let cb = fake_cb(&l, &r, 0, Some(100_000), None, &[one]);
        let shared = [cb.object.as_ptr() as u64, 0];
        let mut program = vec![0u8; l.program_cbs as usize + 16];
        let begin = shared.as_ptr() as u64;
        put(&mut program, l.program_cbs, begin, 8);
        put(&mut program, l.program_cbs + 8, begin + 16, 8);
        let mem = Memory::open(std::process::id(), begin).unwrap();
        let device = DeviceRef {
            handle: 0xd,
            chips: vec![0],
            mesh: false,
        };
        let e = read(&mem, &l, &r, &device, &[program.as_ptr() as u64]).unwrap_err();
        assert!(e.contains("counts 0 bytes"), "{e}");
    }
}
