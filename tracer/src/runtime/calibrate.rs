//! Calibration: the offsets of the runtime's objects, read from its own machine code.
//!
//! Every field has several sources, each a different function of the library read by a
//! different analysis: its out-of-line accessor, the constructor that stores it, and a
//! function that uses it without returning it (a predicate on it, a division by it, a call it
//! is handed to). An accessor inlined away in one release therefore costs one source, never
//! the field. The first source that finds a field gives its load chain; every other one that
//! finds it must agree (the same offsets; a narrower read of the same member, as
//! `Buffer::address()` returning 32 of the 64 bits the allocator stored, is the same field),
//! or calibration fails naming both. [`FieldSources`] keeps what each source found, for
//! `tracer doctor`.
use anyhow::{anyhow, bail, Result};
use iced_x86::Register;

use super::{
    elf::parameters,
    free_object::FreeObject,
    symbols as sym,
    x86::{
        accessor_chain, constructor_stores, copied_stores, field_reads, member_at_call, quotient,
        result_stores, shard::shard_shape, shard::ShardShape, vector_getter, vector_scan, Chain,
        Image, Stored,
    },
};

/// Where each fact about a `Buffer` lives, as loads from the `Buffer*`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BufferLayout {
    pub device: Chain,
    pub address: Chain,
    pub size: Chain,
    pub page_size: Chain,
    pub kind: Chain,
    pub unique_id: Chain,
    /// `TensorMemoryLayout` (interleaved or sharded), where an accessor gives it: `reserved`
    /// of a sharded buffer follows another formula (per shard, not per page round-robin), so
    /// tracer must at least know which buffers are sharded.
    pub memory_layout: Option<Chain>,
    /// Where a sharded buffer's shard and page shapes live (its `reserved` is pages per shard
    /// in every bank).
    pub shard: Option<ShardShape>,
}

impl BufferLayout {
    /// The offset of the `Buffer`'s pointer to the object that holds its fields (a
    /// `BufferImpl`), where every field is one hop behind it; `None` where the fields lie in
    /// the `Buffer` itself. That object is what a free is matched to its allocation by.
    pub fn pimpl(&self) -> Option<i32> {
        let fields = [
            &self.device,
            &self.address,
            &self.size,
            &self.page_size,
            &self.kind,
            &self.unique_id,
        ];
        let hop = *fields[0].offsets.first()?;
        fields
            .iter()
            .all(|c| c.offsets.len() == 2 && c.offsets[0] == hop)
            .then_some(hop)
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Layout {
    pub buffer: BufferLayout,
    /// `Device::id()` as a load from the `Device*`.
    pub device_id: Chain,
    /// From a `MeshDevice*`: pointer loads, then the offset of its `std::vector` of device
    /// pointers (from `MeshDevice::get_devices() const`).
    pub mesh_devices: Option<(Vec<i32>, i64)>,
    /// The register a free finds its buffer's object in (so it reads no memory), or why
    /// frees take it from the call's `Buffer*`.
    pub free_object: Result<FreeObject, String>,
    /// How each field was found, for `doctor`.
    pub provenance: Vec<FieldSources>,
}

impl Layout {
    pub fn describe(&self) -> String {
        let b = &self.buffer;
        let mesh = match &self.mesh_devices {
            Some((hops, at)) => {
                let hops: Vec<_> = hops.iter().map(|o| format!("+{o:#x}")).collect();
                format!(
                    " MeshDevice{{devices {}->vector@+{at:#x}}}",
                    hops.join("->")
                )
            }
            None => " MeshDevice{devices: scan}".to_string(),
        };
        format!(
            "Buffer{{device {} address {} size {} page_size {} type {} unique_id {}}} Device{{id {}}}{mesh}",
            b.device.describe(),
            b.address.describe(),
            b.size.describe(),
            b.page_size.describe(),
            b.kind.describe(),
            b.unique_id.describe(),
            self.device_id.describe()
        )
    }
}

/// What one source found of a field.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finding {
    /// The analysis and the function it read, e.g. "accessor `tt::tt_metal::Buffer::size()
    /// const`".
    pub source: String,
    /// `None`: the function is not in this library, or does not show the field.
    pub chain: Option<Chain>,
}

impl Finding {
    fn new(source: String, chain: Option<Chain>) -> Self {
        Self { source, chain }
    }
}

/// Every source of one field, in order of preference, with what each found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldSources {
    pub field: String,
    pub findings: Vec<Finding>,
    /// What it means when no source found the field (for optional fields).
    pub if_missing: Option<String>,
}

impl FieldSources {
    /// The source whose chain is used.
    pub fn used(&self) -> Option<&Finding> {
        self.findings.iter().find(|f| f.chain.is_some())
    }

    /// The chain calibration uses.
    pub fn chain(&self) -> Option<&Chain> {
        self.used().and_then(|f| f.chain.as_ref())
    }

    /// The other sources that found the field too (they agree: calibration checked).
    pub fn confirming(&self) -> Vec<&Finding> {
        self.findings
            .iter()
            .filter(|f| f.chain.is_some())
            .skip(1)
            .collect()
    }

    /// One line for `doctor`: the chain, the source used, the ones that agree and the ones
    /// that found nothing.
    pub fn describe(&self) -> String {
        let absent: Vec<&str> = self
            .findings
            .iter()
            .filter(|f| f.chain.is_none())
            .map(|f| f.source.as_str())
            .collect();
        let mut out = match self.used() {
            Some(used) => {
                let chain = used.chain.as_ref().expect("used has a chain");
                let confirming: Vec<String> = self
                    .confirming()
                    .iter()
                    .map(|f| {
                        let c = f.chain.as_ref().expect("confirming has a chain");
                        if c.width == chain.width {
                            f.source.clone()
                        } else {
                            format!("{} ({})", f.source, c.describe())
                        }
                    })
                    .collect();
                let check = if confirming.is_empty() {
                    "single source".to_string()
                } else {
                    format!("confirmed by {}", confirming.join(", "))
                };
                format!("{} from {}; {check}", chain.describe(), used.source)
            }
            None => format!(
                "not found{}",
                self.if_missing
                    .as_ref()
                    .map(|m| format!(": {m}"))
                    .unwrap_or_default()
            ),
        };
        if !absent.is_empty() {
            out.push_str(&format!("; nothing from {}", absent.join(", ")));
        }
        out
    }
}

/// Whether `b` reads the field `a` reads: the same offsets (widths may differ, see the module
/// comment).
fn same_field(a: &Chain, b: &Chain) -> bool {
    a.offsets == b.offsets
}

/// Cross-checks the findings of `field` and keeps them. Fails when two sources disagree.
fn resolve(
    lib: &dyn Image,
    field: &str,
    findings: Vec<Finding>,
    if_missing: Option<&str>,
) -> Result<FieldSources> {
    let sources = FieldSources {
        field: field.to_string(),
        findings,
        if_missing: if_missing.map(str::to_string),
    };
    if let Some(used) = sources.used() {
        let chain = used.chain.as_ref().expect("used has a chain");
        for other in sources.confirming() {
            let c = other.chain.as_ref().expect("confirming has a chain");
            if !same_field(chain, c) {
                bail!(
                    "calibration failed for {field}: its sources disagree in {}: {} gives {} but \
                     {} gives {}",
                    lib.name(),
                    used.source,
                    chain.describe(),
                    other.source,
                    c.describe()
                );
            }
        }
    }
    Ok(sources)
}

/// Like [`resolve`], for a field tracer cannot do without.
fn required(lib: &dyn Image, field: &str, findings: Vec<Finding>) -> Result<(Chain, FieldSources)> {
    let sources = resolve(lib, field, findings, None)?;
    let chain = sources.chain().cloned().ok_or_else(|| {
        let tried: Vec<&str> = sources.findings.iter().map(|f| f.source.as_str()).collect();
        anyhow!(
            "calibration failed for {field}: none of its sources found it in {}: {}",
            lib.name(),
            tried.join(", ")
        )
    })?;
    Ok((chain, sources))
}

fn accessor(lib: &dyn Image, mangled: &str) -> Option<Chain> {
    let s = lib.symbol(mangled)?;
    accessor_chain(lib.code(s, 256)?, s.address, 0)
}

fn accessor_finding(lib: &dyn Image, mangled: &str) -> Finding {
    Finding::new(
        format!("accessor `{}`", pretty(mangled)),
        accessor(lib, mangled),
    )
}

/// The code of a function and its address.
fn code_of<'a>(lib: &'a dyn Image, mangled: &str, max: usize) -> Option<(&'a [u8], u64)> {
    let s = lib.symbol(mangled)?;
    Some((lib.code(s, max)?, s.address))
}

/// Whether the function at `address` (or its PLT stub) is `mangled`.
pub fn is_function(lib: &dyn Image, address: u64, mangled: &str) -> bool {
    lib.symbol_at(address)
        .is_some_and(|n| n.strip_suffix("$plt").unwrap_or(n) == mangled)
}

/// `chain`, read from the object whose pointer sits at `hop` (the `BufferImpl` of a `Buffer`).
fn through(hop: Option<i32>, mut chain: Chain) -> Chain {
    if let Some(h) = hop {
        chain.offsets.insert(0, h);
    }
    chain
}

/// Field offsets from a constructor `(IDevice*, size, page_size, BufferType, ...)`.
struct CtorFields {
    name: String,
    device: Option<Chain>,
    size: Option<Chain>,
    page_size: Option<Chain>,
    kind: Option<Chain>,
    unique_id: Option<Chain>,
    /// The member the sharding argument's layout is copied into.
    layout: Option<Chain>,
}

fn constructor_fields(lib: &dyn Image, (mangled, prefix): (&str, &str)) -> CtorFields {
    let mut out = CtorFields {
        name: format!("constructor store in `{prefix}...)`"),
        device: None,
        size: None,
        page_size: None,
        kind: None,
        unique_id: None,
        layout: None,
    };
    let Some((_, demangled, s)) = lib.find_demangled(mangled, prefix).into_iter().next() else {
        return out;
    };
    let params = parameters(&demangled);
    // Parameter index -> argument register (argument 0 is `this`).
    let arg_of = |pred: &dyn Fn(&str) -> bool, nth: usize| {
        params
            .iter()
            .enumerate()
            .filter(|(_, p)| pred(p))
            .nth(nth)
            .map(|(i, _)| i + 1)
    };
    let Some(code) = lib.code(s, 4096) else {
        return out;
    };
    let stores = constructor_stores(code, s.address, 1500);
    let find = |arg: Option<usize>| {
        let arg = arg?;
        stores
            .iter()
            .find(|st| st.value == Stored::Arg(arg))
            .map(|st| Chain::field(st.offset, st.width))
    };
    out.device = find(arg_of(&|p| p.ends_with("IDevice*"), 0));
    out.size = find(arg_of(&|p| p == "unsigned long", 0));
    out.page_size = find(arg_of(&|p| p == "unsigned long", 1));
    out.kind = find(arg_of(&|p| p == "tt::tt_metal::BufferType", 0));
    out.unique_id = stores
        .iter()
        .find(|st| st.value == Stored::Counter)
        .map(|st| Chain::field(st.offset, st.width));
    // Where the sharding argument keeps the layout, from its own accessor.
    let sharding = arg_of(&|p| p == "tt::tt_metal::BufferShardingArgs const&", 0);
    if let (Some(arg), Some(held)) = (sharding, accessor(lib, sym::SHARDING_ARGS_LAYOUT)) {
        out.layout = copied_stores(code, s.address, 1500, arg)
            .into_iter()
            .find(|(loads, _, width)| *loads == held.offsets && *width == held.width)
            .map(|(_, offset, width)| Chain::field(offset, width));
    }
    out
}

/// What `allocate_impl` shows: the member the allocator's address goes to, and the member it
/// hands to `extract_context_id(IDevice const*)` (the device).
struct AllocationFields {
    name: String,
    address: Option<Chain>,
    device: Option<Chain>,
}

fn allocation_fields(lib: &dyn Image, mangled: &str) -> AllocationFields {
    let name = pretty(mangled);
    let Some((code, ip)) = code_of(lib, mangled, 2048) else {
        return AllocationFields {
            name,
            address: None,
            device: None,
        };
    };
    let address = result_stores(code, ip, 256)
        .into_iter()
        .find(|(callee, _, _)| is_function(lib, *callee, sym::ALLOCATOR_ALLOCATE_BUFFER))
        .map(|(_, offset, width)| Chain::field(offset, width));
    let device = member_at_call(code, ip, Register::RDI, 256, |t| {
        is_function(lib, t, sym::EXTRACT_CONTEXT_ID)
    })
    .filter(|c| c.width == 8);
    AllocationFields {
        name,
        address,
        device,
    }
}

/// The one field a predicate on the `Buffer` reads (its last read: the earlier ones are the
/// pointer hops to it).
fn predicate_field(lib: &dyn Image, mangled: &str) -> Finding {
    let chain = code_of(lib, mangled, 256)
        .and_then(|(code, ip)| field_reads(code, ip, 0, 32).pop())
        .filter(|c| c.width == 4);
    Finding::new(format!("the field `{}` tests", pretty(mangled)), chain)
}

/// Calibrates the layout of `lib`. Fails naming the field and every source it tried, or the
/// two sources that disagree.
pub fn calibrate(lib: &dyn Image) -> Result<Layout> {
    let mut provenance = Vec::new();
    let accessors = [
        sym::BUFFER_DEVICE,
        sym::BUFFER_ADDRESS,
        sym::BUFFER_SIZE,
        sym::BUFFER_PAGE_SIZE,
        sym::BUFFER_TYPE,
        sym::BUFFER_UNIQUE_ID,
    ]
    .map(|m| accessor(lib, m));

    // The pimpl era keeps the fields in a BufferImpl behind a pointer of the Buffer: the
    // accessors all hop through it, and `Buffer::impl()` returns it.
    let known: Vec<&Chain> = accessors.iter().flatten().collect();
    let shared_hop = match known.first() {
        Some(c)
            if known
                .iter()
                .all(|k| k.offsets.len() == 2 && k.offsets[0] == c.offsets[0]) =>
        {
            Some(Chain::field(c.offsets[0], 8))
        }
        _ => None,
    };
    let impl_accessor = accessor(lib, sym::BUFFER_IMPL).filter(|c| c.offsets.len() == 1);
    let impl_sources = vec![
        Finding::new(
            format!("accessor `{}`", pretty(sym::BUFFER_IMPL)),
            impl_accessor,
        ),
        Finding::new(
            "the first hop of every out-of-line Buffer accessor".into(),
            shared_hop,
        ),
    ];
    let pimpl = if impl_sources.iter().any(|f| f.chain.is_some()) {
        let (c, sources) = required(lib, "Buffer::impl", impl_sources)?;
        provenance.push(sources);
        Some(c.offsets[0])
    } else {
        None
    };
    // The functions that store or use the fields: the BufferImpl's in the pimpl era.
    let (ctor, allocation) = match pimpl {
        Some(_) => (
            constructor_fields(lib, sym::BUFFER_IMPL_CTOR),
            allocation_fields(lib, sym::BUFFER_IMPL_ALLOCATE_IMPL),
        ),
        None => (
            constructor_fields(lib, sym::BUFFER_CTOR),
            allocation_fields(lib, sym::BUFFER_ALLOCATE_IMPL),
        ),
    };
    let stored = |c: &Option<Chain>| c.clone().map(|c| through(pimpl, c));
    let division = code_of(lib, sym::BUFFER_NUM_PAGES, 256).and_then(|(c, ip)| quotient(c, ip));
    let num_pages = pretty(sym::BUFFER_NUM_PAGES);
    let [device, address, size, page_size, kind, unique_id] = accessors;
    let acc = |m: &str, c: Option<Chain>| Finding::new(format!("accessor `{}`", pretty(m)), c);

    let mut field = |name: &str, findings: Vec<Finding>| -> Result<Chain> {
        let (c, sources) = required(lib, name, findings)?;
        provenance.push(sources);
        Ok(c)
    };
    let device = field(
        "Buffer::device",
        vec![
            acc(sym::BUFFER_DEVICE, device),
            Finding::new(ctor.name.clone(), stored(&ctor.device)),
            Finding::new(
                format!(
                    "the device `{}` hands to `{}`",
                    allocation.name,
                    pretty(sym::EXTRACT_CONTEXT_ID)
                ),
                stored(&allocation.device),
            ),
        ],
    )?;
    let address = field(
        "Buffer::address",
        vec![
            acc(sym::BUFFER_ADDRESS, address),
            Finding::new(
                format!(
                    "the member `{}` stores `{}`'s result in",
                    allocation.name,
                    pretty(sym::ALLOCATOR_ALLOCATE_BUFFER)
                ),
                stored(&allocation.address),
            ),
        ],
    )?;
    let size = field(
        "Buffer::size",
        vec![
            acc(sym::BUFFER_SIZE, size),
            Finding::new(ctor.name.clone(), stored(&ctor.size)),
            Finding::new(
                format!("the dividend of `{num_pages}`"),
                division.as_ref().map(|(n, _)| n.clone()),
            ),
        ],
    )?;
    let page_size = field(
        "Buffer::page_size",
        vec![
            acc(sym::BUFFER_PAGE_SIZE, page_size),
            Finding::new(ctor.name.clone(), stored(&ctor.page_size)),
            Finding::new(
                format!("the divisor of `{num_pages}`"),
                division.as_ref().map(|(_, d)| d.clone()),
            ),
        ],
    )?;
    let kind = field(
        "Buffer::buffer_type",
        vec![
            acc(sym::BUFFER_TYPE, kind),
            Finding::new(ctor.name.clone(), stored(&ctor.kind)),
            predicate_field(lib, sym::BUFFER_IS_DRAM),
            predicate_field(lib, sym::BUFFER_IS_L1),
        ],
    )?;
    // Light Metal capture keys its map by the unique id (where it reads the field itself).
    let capture_key = code_of(lib, sym::LIGHT_METAL_IS_IN_MAP, 512)
        .and_then(|(c, ip)| field_reads(c, ip, 1, 16).into_iter().next())
        .filter(|c| c.width == 8);
    let unique_id = field(
        "Buffer::unique_id",
        vec![
            acc(sym::BUFFER_UNIQUE_ID, unique_id),
            Finding::new(ctor.name.clone(), stored(&ctor.unique_id)),
            Finding::new(
                format!("the map key `{}` reads", pretty(sym::LIGHT_METAL_IS_IN_MAP)),
                capture_key,
            ),
        ],
    )?;
    // `Buffer::num_dev_pages()` checks the layout first, then divides the shard's shape by
    // the page's: the layout's third source, and the shard footprint.
    let shard = code_of(lib, sym::BUFFER_NUM_DEV_PAGES, 512).and_then(|(c, ip)| shard_shape(c, ip));
    let num_dev_pages = pretty(sym::BUFFER_NUM_DEV_PAGES);
    let layout_sources = resolve(
        lib,
        "Buffer::buffer_layout",
        vec![
            accessor_finding(lib, sym::BUFFER_LAYOUT),
            Finding::new(
                format!("{} of `{}`", ctor.name, pretty(sym::SHARDING_ARGS_LAYOUT)),
                stored(&ctor.layout),
            ),
            Finding::new(
                format!("the layout `{num_dev_pages}` checks first"),
                shard.as_ref().map(|s| s.layout.clone()),
            ),
        ],
        Some("sharded buffers are not told apart"),
    )?;
    let memory_layout = layout_sources.chain().cloned();
    provenance.push(layout_sources);
    provenance.push(FieldSources {
        field: "Buffer shard shape".into(),
        findings: vec![Finding::new(
            format!("the divisions of `{num_dev_pages}` (shard over page, per dimension)"),
            shard.as_ref().map(|s| s.present.clone()),
        )],
        if_missing: Some("sharded buffers' reserved bytes are computed as if interleaved".into()),
    });

    let (device_id, sources) = required(
        lib,
        "Device::id",
        vec![
            Finding::new(
                format!("accessor `{}`", pretty(sym::DEVICE_ID)),
                accessor(lib, sym::DEVICE_ID).filter(|c| c.offsets.len() == 1),
            ),
            device_id_store(lib),
        ],
    )?;
    provenance.push(sources);

    let mesh = mesh_devices(lib)?;
    let mesh_devices = mesh.chain().map(|c| {
        let (hops, at) = c.offsets.split_at(c.offsets.len() - 1);
        (hops.to_vec(), i64::from(at[0]))
    });
    provenance.push(mesh);
    Ok(Layout {
        buffer: BufferLayout {
            device,
            address,
            size,
            page_size,
            kind,
            unique_id,
            memory_layout,
            shard,
        },
        device_id,
        mesh_devices,
        free_object: match pimpl {
            Some(_) => super::free_object::calibrate(lib),
            None => Err("the freed `Buffer*` is the object itself".into()),
        },
        provenance,
    })
}

/// `Device::Device(..., int device_id, ...)` storing its `int` parameter.
fn device_id_store(lib: &dyn Image) -> Finding {
    let chain = lib
        .find_demangled(sym::DEVICE_CTOR.0, sym::DEVICE_CTOR.1)
        .into_iter()
        .find_map(|(_, demangled, s)| {
            let arg = parameters(&demangled).iter().position(|p| p == "int")? + 1;
            constructor_stores(lib.code(s, 4096)?, s.address, 1500)
                .into_iter()
                .find(|st| st.value == Stored::Arg(arg) && st.width == 4)
                .map(|st| Chain::field(st.offset, st.width))
        });
    Finding::new(
        format!("constructor store in `{}int...)`", sym::DEVICE_CTOR.1),
        chain,
    )
}

/// The devices vector of a `MeshDevice` as a chain whose last offset is the vector's (its
/// begin pointer, 8 bytes). Sources: the getter; then, where the getter keeps the vector
/// itself, `get_device(int)` walking the same vector, and where it delegates to the mesh's
/// view, `get_view()` with the view's own getter. (Where the getter keeps a vector of its
/// own, the view's is another copy of the devices, not a source of the same field.)
fn mesh_devices(lib: &dyn Image) -> Result<FieldSources> {
    let as_chain = |(mut hops, at): (Vec<i32>, i64)| {
        hops.push(at as i32);
        Chain {
            offsets: hops,
            width: 8,
        }
    };
    let view = code_of(lib, sym::VIEW_GET_DEVICES, 512);
    let getter = code_of(lib, sym::MESH_GET_DEVICES, 512);
    let found = getter.and_then(|(c, ip)| vector_getter(c, ip, view));
    // Whether the getter's own vector is the one it returns, or the view's.
    let delegates = getter.is_some_and(|(c, ip)| vector_getter(c, ip, None).is_none());
    let scan = code_of(lib, sym::MESH_GET_DEVICE, 512).and_then(|(c, ip)| vector_scan(c, ip));
    let mut findings = vec![Finding::new(
        format!("getter `{}`", pretty(sym::MESH_GET_DEVICES)),
        found.map(as_chain),
    )];
    if !delegates {
        findings.push(Finding::new(
            format!("the vector `{}` walks", pretty(sym::MESH_GET_DEVICE)),
            scan.clone().map(as_chain),
        ));
    }
    // The view's vector is the devices vector where the getter delegates to it (or where
    // nothing else shows one).
    if delegates || getter.is_none() && scan.is_none() {
        let through_view = accessor(lib, sym::MESH_GET_VIEW).and_then(|v| {
            let (c, ip) = view?;
            let (hops, at) = vector_getter(c, ip, None)?;
            let mut offsets = v.offsets;
            offsets.extend(hops);
            Some(as_chain((offsets, at)))
        });
        findings.push(Finding::new(
            format!(
                "`{}` then `{}`",
                pretty(sym::MESH_GET_VIEW),
                pretty(sym::VIEW_GET_DEVICES)
            ),
            through_view,
        ));
    }
    resolve(
        lib,
        "MeshDevice::get_devices",
        findings,
        Some("the chips of a mesh are found by a scan"),
    )
}

pub use super::elf::pretty;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::elf::Symbol;

    /// A library that has nothing but a name.
    struct Named;

    impl Image for Named {
        fn name(&self) -> String {
            "libtt_metal.so of a test".into()
        }
        fn symbol(&self, _: &str) -> Option<Symbol> {
            None
        }
        fn find_demangled(&self, _: &str, _: &str) -> Vec<(String, String, Symbol)> {
            vec![]
        }
        fn code(&self, _: Symbol, _: usize) -> Option<&[u8]> {
            None
        }
        fn bytes_at_address(&self, _: u64, _: usize) -> Option<&[u8]> {
            None
        }
        fn symbol_at(&self, _: u64) -> Option<&str> {
            None
        }
    }

    fn found(source: &str, offsets: &[i32], width: u8) -> Finding {
        Finding::new(
            source.into(),
            Some(Chain {
                offsets: offsets.to_vec(),
                width,
            }),
        )
    }

    #[test]
    fn sources_that_disagree_fail_naming_both() {
        let e = required(
            &Named,
            "Buffer::size",
            vec![
                Finding::new("accessor `size()`".into(), None),
                found("constructor store", &[0x18], 8),
                found("the dividend of `num_pages()`", &[0x20], 8),
            ],
        )
        .unwrap_err()
        .to_string();
        assert_eq!(
            e,
            "calibration failed for Buffer::size: its sources disagree in libtt_metal.so of a \
             test: constructor store gives +0x18:8 but the dividend of `num_pages()` gives +0x20:8"
        );
    }

    #[test]
    fn the_first_source_that_finds_a_field_is_used_and_the_others_confirm_it() {
        let (chain, sources) = required(
            &Named,
            "Buffer::address",
            vec![
                found("accessor `address()`", &[0x50], 4),
                Finding::new("a function this release lacks".into(), None),
                found("the allocation's store", &[0x50], 8),
            ],
        )
        .unwrap();
        assert_eq!(chain, Chain::field(0x50, 4));
        assert_eq!(
            sources.describe(),
            "+0x50:4 from accessor `address()`; confirmed by the allocation's store (+0x50:8); \
             nothing from a function this release lacks"
        );
        let e = required(
            &Named,
            "Buffer::unique_id",
            vec![Finding::new("accessor `unique_id()`".into(), None)],
        )
        .unwrap_err()
        .to_string();
        assert_eq!(
            e,
            "calibration failed for Buffer::unique_id: none of its sources found it in \
             libtt_metal.so of a test: accessor `unique_id()`"
        );
    }
}
