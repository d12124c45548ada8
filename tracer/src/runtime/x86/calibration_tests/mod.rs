//! Calibration on stored extracts of real libraries (`fixtures/calibration/`): one module per
//! layout era (0.75.0 and 0.81.1, every analysis checked), and `releases` for the PyPI
//! releases between them. The expected numbers are what calibration found on the real
//! libraries (and what `tracer doctor --lib` printed), and the traced workloads confirmed
//! against `ttnn.get_memory_view`: ground truth from the binaries, not guesses.
mod free_object;
mod held;
mod new_era;
mod old_era;
mod programs;
mod releases;

use super::{
    super::{
        allocator::{self, AllocatorLayout},
        calibrate::{calibrate, BufferLayout, FieldSources, Layout},
        symbols as sym,
    },
    accessor_chain,
    chain::Chain,
    constructor::{Store, Stored},
    constructor_stores,
    fixture::Fixture,
    message_calls,
    messages::MessageCall,
    sets_frame_pointer, tail_accessor, this_lea_at_call, typed_accessor, vector_getter, Image,
};
use crate::runtime::elf::{demangle, Symbol};

/// Every release with a stored extract.
const RELEASES: [&str; 5] = ["0.75.0", "0.76.0", "0.78.0", "0.80.0", "0.81.1"];

/// A library in which the functions whose mangled names contain `hidden` do not exist: an
/// accessor inlined away, a function a release does not have.
struct Without<'a> {
    lib: &'a Fixture,
    hidden: &'a str,
}

impl Image for Without<'_> {
    fn name(&self) -> String {
        self.lib.name()
    }

    fn symbol(&self, mangled: &str) -> Option<Symbol> {
        if mangled.contains(self.hidden) {
            return None;
        }
        self.lib.symbol(mangled)
    }

    fn find_demangled(&self, mangled_prefix: &str, prefix: &str) -> Vec<(String, String, Symbol)> {
        let mut found = self.lib.find_demangled(mangled_prefix, prefix);
        found.retain(|(m, _, _)| !m.contains(self.hidden));
        found
    }

    fn code(&self, sym: Symbol, max: usize) -> Option<&[u8]> {
        self.lib.code(sym, max)
    }

    fn bytes_at_address(&self, address: u64, len: usize) -> Option<&[u8]> {
        self.lib.bytes_at_address(address, len)
    }

    fn symbol_at(&self, address: u64) -> Option<&str> {
        self.lib
            .symbol_at(address)
            .filter(|n| !n.contains(self.hidden))
    }

    fn branches_to(&self, targets: &[u64]) -> Vec<u64> {
        self.lib.branches_to(targets)
    }
}

fn chain(offsets: &[i32], width: u8) -> Chain {
    Chain {
        offsets: offsets.to_vec(),
        width,
    }
}

fn arg(n: usize, offset: i32, width: u8) -> Store {
    Store {
        value: Stored::Arg(n),
        offset,
        width,
    }
}

fn counter(offset: i32, width: u8) -> Store {
    Store {
        value: Stored::Counter,
        offset,
        width,
    }
}

/// A function's bytes (at most `max`) and address, by mangled name.
fn code<'a>(lib: &'a Fixture, mangled: &str, max: usize) -> Option<(&'a [u8], u64)> {
    let s = lib.symbol(mangled)?;
    Some((lib.code(s, max)?, s.address))
}

/// The whole layout, as `tracer doctor` prints it, and field by field.
fn layout_is(
    lib: &Fixture,
    describe: &str,
    buffer: &BufferLayout,
    device_id: Chain,
    mesh_devices: Option<(Vec<i32>, i64)>,
) -> Layout {
    let got = calibrate(lib).unwrap();
    assert_eq!(got.describe(), describe);
    assert_eq!(&got.buffer, buffer);
    assert_eq!(got.device_id, device_id);
    assert_eq!(got.mesh_devices, mesh_devices);
    got
}

/// Per field (as `doctor` names it): the source whose chain is used, without the namespace
/// `tt::tt_metal::`, and how many other sources found the same field.
fn sources_are(provenance: &[FieldSources], expected: &[(&str, &str, usize)]) {
    let got: Vec<(String, String, usize)> = provenance
        .iter()
        .map(|f| {
            let used = f.used().map_or("", |u| u.source.as_str());
            (
                f.field.clone(),
                used.replace("tt::tt_metal::", ""),
                f.confirming().len(),
            )
        })
        .collect();
    let expected: Vec<(String, String, usize)> = expected
        .iter()
        .map(|(f, u, n)| (f.to_string(), u.to_string(), *n))
        .collect();
    assert_eq!(got, expected);
}

/// The allocator paths, as `tracer doctor` prints them, and per buffer type.
fn allocator_is(
    lib: &Fixture,
    describe: &str,
    managers: &[(&str, i32, i32)],
    rest: [i32; 3],
) -> AllocatorLayout {
    let got: AllocatorLayout = allocator::calibrate(lib).unwrap();
    assert_eq!(got.describe(), describe);
    let by_name: Vec<_> = got
        .managers
        .iter()
        .map(|(k, m, b)| (k.name(), *m, *b))
        .collect();
    assert_eq!(by_name, managers);
    assert_eq!([got.alignment, got.sub_allocators, got.min_block], rest);
    got
}

/// The sources of the allocator paths: `reset` whether `reset_allocator_size` confirms the
/// bank managers (a table like `get_num_banks`', not a switch), `inline` whether
/// `get_num_banks` reads the bank count itself (or tail-calls `BankManager::num_banks()`).
fn allocator_sources_are(got: &AllocatorLayout, reset: bool, inline: bool) {
    let managers: Vec<String> = ["DRAM", "L1", "L1_SMALL", "TRACE"]
        .iter()
        .map(|k| format!("AllocatorImpl {k} bank manager"))
        .collect();
    let by_type: Vec<String> = ["DRAM", "L1", "L1_SMALL", "TRACE"]
        .iter()
        .map(|k| format!("`AllocatorImpl::get_num_banks(BufferType const&) const` for {k}"))
        .collect();
    let mut expected: Vec<(&str, &str, usize)> = managers
        .iter()
        .zip(&by_type)
        .map(|(m, t)| (m.as_str(), t.as_str(), usize::from(reset)))
        .collect();
    expected.extend([
        if inline {
            (
                "BankManager bank count",
                "the load in `AllocatorImpl::get_num_banks(BufferType const&) const`",
                1,
            )
        } else {
            (
                "BankManager bank count",
                "accessor `BankManager::num_banks() const`",
                0,
            )
        },
        (
            "BankManager alignment",
            "constructor store of the alignment argument in `BankManager::BankManager(BufferType \
             const&, std::unordered_map<...> const&, ...)`",
            1,
        ),
        (
            "BankManager sub-allocators",
            "the vector of allocator::Algorithm `BankManager::init_allocators(unsigned long, \
             unsigned int, unsigned long)` sizes",
            1,
        ),
        (
            "FreeListOpt minimum block",
            "constructor store of the minimum allocation size in \
             `allocator::FreeListOpt::FreeListOpt(...)`",
            0,
        ),
    ]);
    sources_are(&got.provenance, &expected);
}

/// Each out-of-line accessor calibration asks for, in `sym` order (`None`: not in this
/// library, or not a load chain).
fn accessors(lib: &Fixture) -> Vec<Option<Chain>> {
    [
        sym::BUFFER_DEVICE,
        sym::BUFFER_ADDRESS,
        sym::BUFFER_SIZE,
        sym::BUFFER_PAGE_SIZE,
        sym::BUFFER_TYPE,
        sym::BUFFER_UNIQUE_ID,
        sym::BUFFER_LAYOUT,
        sym::DEVICE_ID,
    ]
    .iter()
    .map(|m| code(lib, m, 256).and_then(|(c, ip)| accessor_chain(c, ip, 0)))
    .collect()
}

/// The stores of each constructor found by `(mangled, demangled)` prefix whose code
/// calibration read (it stops at the first that answers), as it sweeps them.
fn stores(lib: &Fixture, ctor: (&str, &str), max: usize, limit: usize) -> Vec<Vec<Store>> {
    lib.find_demangled(ctor.0, ctor.1)
        .into_iter()
        .filter_map(|(_, _, s)| Some(constructor_stores(lib.code(s, max)?, s.address, limit)))
        .collect()
}

/// `MeshDevice::get_devices() const` with its delegation to the view, and the view's own.
fn mesh_getters(lib: &Fixture) -> [Option<(Vec<i32>, i64)>; 2] {
    let view = code(lib, sym::VIEW_GET_DEVICES, 512);
    let (c, ip) = code(lib, sym::MESH_GET_DEVICES, 512).unwrap();
    let (vc, vip) = view.unwrap();
    [vector_getter(c, ip, view), vector_getter(vc, vip, None)]
}

/// `AllocatorImpl::get_num_banks` evaluated for the buffer types with a bank manager: DRAM,
/// L1, L1 small and trace (type indices 0, 1, 3, 4).
fn banks_per_type(lib: &Fixture) -> Vec<Option<Chain>> {
    let (c, ip) = code(lib, sym::ALLOCATOR_NUM_BANKS, 512).unwrap();
    let read = |addr: u64, width: u8| {
        let b = lib.bytes_at_address(addr, usize::from(width))?;
        let mut v = [0u8; 8];
        v[..b.len()].copy_from_slice(b);
        Some(u64::from_le_bytes(v))
    };
    [0, 1, 3, 4]
        .map(|k| typed_accessor(c, ip, k, &read))
        .to_vec()
}

/// The member of the bank manager that `init_allocators` resizes (its sub-allocators).
fn sub_allocators(lib: &Fixture) -> Option<i32> {
    let (c, ip) = code(lib, sym::BANK_MANAGER_INIT_ALLOCATORS, 512).unwrap();
    this_lea_at_call(c, ip, |t| {
        lib.symbol_at(t)
            .and_then(demangle)
            .is_some_and(|d| d.contains("unique_ptr<tt::tt_metal::allocator::Algorithm"))
    })
}

/// The out-of-memory throws of `BankManager::allocate_buffer`, each with its thrower.
fn oom_throws(lib: &Fixture) -> Vec<(MessageCall, String)> {
    let mut out = Vec::new();
    for (_, _, s) in lib.find_demangled(
        "_ZN2tt8tt_metal11BankManager15allocate_buffer",
        "tt::tt_metal::BankManager::allocate_buffer(",
    ) {
        let code = lib.code(s, 1 << 16).unwrap();
        for call in message_calls(code, s.address, &lib.oom_strings) {
            let thrower = lib.symbol_at(call.target).unwrap_or_default().to_string();
            out.push((call, thrower));
        }
    }
    out
}

/// Mesh rows and columns through the tail-calling accessors.
fn mesh_shape(lib: &Fixture) -> [Option<Chain>; 2] {
    [sym::MESH_NUM_ROWS, sym::MESH_NUM_COLS].map(|names| {
        let functions: Option<Vec<_>> = names.iter().map(|n| code(lib, n, 256)).collect();
        tail_accessor(&functions?)
    })
}

fn frame_pointer(lib: &Fixture) -> bool {
    let (c, ip) = code(lib, sym::TRACK_ALLOCATE, 64).unwrap();
    sets_frame_pointer(c, ip)
}
