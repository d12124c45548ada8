//! Calibration: the offsets of the runtime's objects, read from its own machine code.
use anyhow::{anyhow, bail, Result};

use super::{
    elf::{demangle, parameters},
    symbols as sym,
    x86::{
        accessor_chain, constructor_stores, shard::shard_shape, shard::ShardShape, vector_getter,
        Chain, Image, Stored,
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

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Layout {
    pub buffer: BufferLayout,
    /// `Device::id()` as a load from the `Device*`.
    pub device_id: Chain,
    /// From a `MeshDevice*`: pointer loads, then the offset of its `std::vector` of device
    /// pointers (from `MeshDevice::get_devices() const`).
    pub mesh_devices: Option<(Vec<i32>, i64)>,
    /// How each field was found, for `doctor` and the recording header.
    pub provenance: Vec<(String, String)>,
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

fn accessor(lib: &dyn Image, mangled: &str) -> Option<Chain> {
    let s = lib.symbol(mangled)?;
    accessor_chain(lib.code(s, 256)?, s.address, 0)
}

/// Field offsets from a constructor `(IDevice*, size, page_size, BufferType, ...)`.
struct CtorFields {
    device: Option<Chain>,
    size: Option<Chain>,
    page_size: Option<Chain>,
    kind: Option<Chain>,
    unique_id: Option<Chain>,
}

fn constructor_fields(lib: &dyn Image, (mangled, prefix): (&str, &str)) -> Option<CtorFields> {
    let (_, demangled, s) = lib.find_demangled(mangled, prefix).into_iter().next()?;
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
    let device_arg = arg_of(&|p| p.ends_with("IDevice*"), 0);
    let size_arg = arg_of(&|p| p == "unsigned long", 0);
    let page_arg = arg_of(&|p| p == "unsigned long", 1);
    let kind_arg = arg_of(&|p| p == "tt::tt_metal::BufferType", 0);
    let stores = constructor_stores(lib.code(s, 4096)?, s.address, 1500);
    let find = |arg: Option<usize>| {
        let arg = arg?;
        stores
            .iter()
            .find(|st| st.value == Stored::Arg(arg))
            .map(|st| Chain::field(st.offset, st.width))
    };
    Some(CtorFields {
        device: find(device_arg),
        size: find(size_arg),
        page_size: find(page_arg),
        kind: find(kind_arg),
        unique_id: stores
            .iter()
            .find(|st| st.value == Stored::Counter)
            .map(|st| Chain::field(st.offset, st.width)),
    })
}

/// Calibrates the layout of `lib`. Accessors first (exact), constructor stores for fields
/// whose accessors were inlined away. Fails naming the field and the symbols it tried.
pub fn calibrate(lib: &dyn Image) -> Result<Layout> {
    let mut provenance = Vec::new();
    let mut get = |field: &str, mangled: &str| {
        let c = accessor(lib, mangled);
        if let Some(c) = &c {
            provenance.push((field.to_string(), format!("accessor {}", pretty(mangled))));
            let _ = c;
        }
        c
    };
    let device = get("device", sym::BUFFER_DEVICE);
    let address = get("address", sym::BUFFER_ADDRESS);
    let size = get("size", sym::BUFFER_SIZE);
    let page_size = get("page_size", sym::BUFFER_PAGE_SIZE);
    let kind = get("buffer_type", sym::BUFFER_TYPE);
    let unique_id = get("unique_id", sym::BUFFER_UNIQUE_ID);
    let memory_layout = get("memory_layout", sym::BUFFER_LAYOUT);

    // A pimpl era (all accessors hop through one pointer) keeps fields in BufferImpl.
    let known: Vec<&Chain> = [&device, &address, &size, &page_size, &kind, &unique_id]
        .into_iter()
        .flatten()
        .collect();
    let pimpl = match known.first() {
        Some(c) if c.offsets.len() == 2 && known.iter().all(|k| k.offsets[0] == c.offsets[0]) => {
            Some(c.offsets[0])
        }
        _ => None,
    };
    let ctor = if [&device, &size, &page_size, &kind, &unique_id]
        .iter()
        .any(|c| c.is_none())
    {
        match pimpl {
            Some(_) => constructor_fields(lib, sym::BUFFER_IMPL_CTOR),
            None => constructor_fields(lib, sym::BUFFER_CTOR),
        }
    } else {
        None
    };
    let ctor_name = if pimpl.is_some() {
        sym::BUFFER_IMPL_CTOR.1
    } else {
        sym::BUFFER_CTOR.1
    };
    let mut fill = |field: &str, c: Option<Chain>, from_ctor: Option<Chain>| -> Result<Chain> {
        if let Some(c) = c {
            return Ok(c);
        }
        let mut c = from_ctor.ok_or_else(|| {
            anyhow!(
                "calibration failed for Buffer::{field}: no out-of-line accessor and no store of it \
                 found in the constructor `{ctor_name}...)` of {}",
                lib.name()
            )
        })?;
        if let Some(p) = pimpl {
            c.offsets.insert(0, p);
        }
        provenance.push((
            field.to_string(),
            format!("constructor store in {ctor_name}...)"),
        ));
        Ok(c)
    };
    let device = fill(
        "device",
        device,
        ctor.as_ref().and_then(|c| c.device.clone()),
    )?;
    let size = fill("size", size, ctor.as_ref().and_then(|c| c.size.clone()))?;
    let page_size = fill(
        "page_size",
        page_size,
        ctor.as_ref().and_then(|c| c.page_size.clone()),
    )?;
    let kind = fill(
        "buffer_type",
        kind,
        ctor.as_ref().and_then(|c| c.kind.clone()),
    )?;
    let unique_id = fill(
        "unique_id",
        unique_id,
        ctor.as_ref().and_then(|c| c.unique_id.clone()),
    )?;
    let Some(address) = address else {
        bail!(
            "calibration failed for Buffer::address: expected an out-of-line accessor `{}` in {}",
            pretty(sym::BUFFER_ADDRESS),
            lib.name()
        );
    };
    let device_id = accessor(lib, sym::DEVICE_ID).ok_or_else(|| {
        anyhow!(
            "calibration failed for Device::id: expected `{}` (a load from `this`) in {}",
            pretty(sym::DEVICE_ID),
            lib.name()
        )
    })?;
    if device_id.offsets.len() != 1 {
        bail!(
            "calibration failed for Device::id: `{}` is not a plain field load",
            pretty(sym::DEVICE_ID)
        );
    }
    provenance.push((
        "device_id".into(),
        format!("accessor {}", pretty(sym::DEVICE_ID)),
    ));
    let shard = lib
        .symbol(sym::BUFFER_NUM_DEV_PAGES)
        .and_then(|s| shard_shape(lib.code(s, 512)?, s.address));
    let memory_layout = match (memory_layout, &shard) {
        (Some(a), Some(s)) if a != s.layout => bail!(
            "calibration failed for Buffer::buffer_layout: `{}` reads {} but `{}` checks {}",
            pretty(sym::BUFFER_LAYOUT),
            a.describe(),
            pretty(sym::BUFFER_NUM_DEV_PAGES),
            s.layout.describe()
        ),
        (Some(a), Some(_)) => {
            provenance.push((
                "memory_layout (cross-check)".into(),
                format!("also what {} checks", pretty(sym::BUFFER_NUM_DEV_PAGES)),
            ));
            Some(a)
        }
        (None, Some(s)) => {
            provenance.push((
                "memory_layout".into(),
                format!("what {} checks first", pretty(sym::BUFFER_NUM_DEV_PAGES)),
            ));
            Some(s.layout.clone())
        }
        (a, None) => a,
    };
    match &shard {
        Some(s) => provenance.push((
            "shard shape".into(),
            format!(
                "{}: present {} shard {}x{} page {}x{}",
                pretty(sym::BUFFER_NUM_DEV_PAGES),
                s.present.describe(),
                s.shard[0].describe(),
                s.shard[1].describe(),
                s.page[0].describe(),
                s.page[1].describe()
            ),
        )),
        None => provenance.push((
            "shard shape".into(),
            format!(
                "not found in `{}`: sharded buffers' reserved bytes are computed as if interleaved",
                pretty(sym::BUFFER_NUM_DEV_PAGES)
            ),
        )),
    }
    if memory_layout.is_none() {
        provenance.push((
            "memory_layout".into(),
            format!(
                "not found (no out-of-line `{}`): sharded buffers are not told apart",
                pretty(sym::BUFFER_LAYOUT)
            ),
        ));
    }
    let mesh_devices = lib.symbol(sym::MESH_GET_DEVICES).and_then(|s| {
        let callee = lib
            .symbol(sym::VIEW_GET_DEVICES)
            .and_then(|c| lib.code(c, 512).map(|code| (code, c.address)));
        vector_getter(lib.code(s, 512)?, s.address, callee)
    });
    if mesh_devices.is_some() {
        provenance.push((
            "mesh_devices".into(),
            format!("getter {}", pretty(sym::MESH_GET_DEVICES)),
        ));
    }
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
        provenance,
    })
}

pub fn pretty(mangled: &str) -> String {
    demangle(mangled).unwrap_or_else(|| mangled.to_string())
}
