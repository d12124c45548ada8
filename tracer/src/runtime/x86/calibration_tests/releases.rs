//! The PyPI releases between the two eras, each on its stored extract, and what every release
//! keeps when any one function calibration reads is missing.
use super::*;
use crate::runtime::x86::shard::ShardShape;

/// 0.76.0: the old layout; `get_num_banks` tail-calls `BankManager::num_banks()` instead of
/// reading the count itself (before, the allocator geometry did not calibrate at all).
#[test]
fn release_0_76_0() {
    let lib = Fixture::of_release("0.76.0");
    old_layout_of(&lib, chain(&[0x18, 0x58, 0, 0x178], 8));
    let got = allocator_is(
        &lib,
        "AllocatorImpl{DRAM +0x38->banks+0x20 L1 +0x40->banks+0x20 L1_SMALL +0x48->banks+0x20 \
         TRACE +0x50->banks+0x20} BankManager{alignment +0x48 sub_allocators +0x3b0->[0]->min_block +0x18}",
        &[
            ("DRAM", 0x38, 0x20),
            ("L1", 0x40, 0x20),
            ("L1_SMALL", 0x48, 0x20),
            ("TRACE", 0x50, 0x20),
        ],
        [0x48, 0x3b0, 0x18],
    );
    allocator_sources_are(&got, true, false);
}

/// 0.78.0: the old layout; the constructor spills `this` to its frame and reloads it before
/// it stores the unique id (before, `Buffer::unique_id` did not calibrate: no accessor, and
/// the store was not seen).
#[test]
fn release_0_78_0() {
    let lib = Fixture::of_release("0.78.0");
    let got = old_layout_of(&lib, chain(&[0x18, 0x58, 0, 0x178], 8));
    assert_eq!(
        got.provenance[5].describe().replace("tt::tt_metal::", ""),
        "+0x220:8 from constructor store in `Buffer::Buffer(IDevice*...)`; confirmed by the map \
         key `LightMetalCaptureContext::is_in_map(Buffer const*)` reads; nothing from accessor \
         `Buffer::unique_id() const`"
    );
    let got = allocator_is(
        &lib,
        "AllocatorImpl{DRAM +0x38->banks+0x20 L1 +0x40->banks+0x20 L1_SMALL +0x48->banks+0x20 \
         TRACE +0x50->banks+0x20} BankManager{alignment +0x48 sub_allocators +0x3b0->[0]->min_block +0x18}",
        &[
            ("DRAM", 0x38, 0x20),
            ("L1", 0x40, 0x20),
            ("L1_SMALL", 0x48, 0x20),
            ("TRACE", 0x50, 0x20),
        ],
        [0x48, 0x3b0, 0x18],
    );
    allocator_sources_are(&got, true, true);
}

/// 0.80.0: the pimpl layout, whose `MeshDevice::get_devices()` delegates to the view.
#[test]
fn release_0_80_0() {
    let lib = Fixture::of_release("0.80.0");
    let got = layout_is(
        &lib,
        "Buffer{device +0x10->+0x0:8 address +0x10->+0x40:4 size +0x10->+0x8:8 page_size \
         +0x10->+0x48:8 type +0x10->+0x10:4 unique_id +0x10->+0x218:8} Device{id +0x18:4} \
         MeshDevice{devices +0x18->+0x68->+0x0->vector@+0x178}",
        &BufferLayout {
            device: chain(&[0x10, 0], 8),
            address: chain(&[0x10, 0x40], 4),
            size: chain(&[0x10, 0x8], 8),
            page_size: chain(&[0x10, 0x48], 8),
            kind: chain(&[0x10, 0x10], 4),
            unique_id: chain(&[0x10, 0x218], 8),
            memory_layout: Some(chain(&[0x10, 0x14], 4)),
            shard: Some(ShardShape {
                layout: chain(&[0x10, 0x14], 4),
                present: chain(&[0x10, 0x88], 1),
                shard: [chain(&[0x10, 0x68], 4), chain(&[0x10, 0x6c], 4)],
                page: [chain(&[0x10, 0x78], 4), chain(&[0x10, 0x7c], 4)],
            }),
        },
        chain(&[0x18], 4),
        Some((vec![0x18, 0x68, 0], 0x178)),
    );
    let mut expected = new_sources();
    expected[10] = (
        "MeshDevice::get_devices",
        "getter `distributed::MeshDevice::get_devices() const`",
        1,
    );
    sources_are(&got.provenance, &expected);
    assert!(got.provenance[10].findings[1].source.contains("get_view"));
    let got = allocator_is(
        &lib,
        "AllocatorImpl{DRAM +0x30->banks+0x20 L1 +0x38->banks+0x20 L1_SMALL +0x40->banks+0x20 \
         TRACE +0x48->banks+0x20} BankManager{alignment +0x48 sub_allocators +0x3b0->[0]->min_block +0x18}",
        &[
            ("DRAM", 0x30, 0x20),
            ("L1", 0x38, 0x20),
            ("L1_SMALL", 0x40, 0x20),
            ("TRACE", 0x48, 0x20),
        ],
        [0x48, 0x3b0, 0x18],
    );
    allocator_sources_are(&got, true, true);
}

/// The sources the pimpl era uses, field by field (0.80.0 and 0.81.1).
fn new_sources() -> Vec<(&'static str, &'static str, usize)> {
    vec![
        ("Buffer::impl", "accessor `Buffer::impl() const`", 1),
        ("Buffer::device", "accessor `Buffer::device() const`", 2),
        ("Buffer::address", "accessor `Buffer::address() const`", 1),
        ("Buffer::size", "accessor `Buffer::size() const`", 2),
        (
            "Buffer::page_size",
            "accessor `Buffer::page_size() const`",
            2,
        ),
        (
            "Buffer::buffer_type",
            "accessor `Buffer::buffer_type() const`",
            3,
        ),
        (
            "Buffer::unique_id",
            "accessor `Buffer::unique_id() const`",
            1,
        ),
        (
            "Buffer::buffer_layout",
            "accessor `Buffer::buffer_layout() const`",
            2,
        ),
        (
            "Buffer shard shape",
            "the divisions of `Buffer::num_dev_pages() const` (shard over page, per dimension)",
            0,
        ),
        ("Device::id", "accessor `Device::id() const`", 1),
        (
            "MeshDevice::get_devices",
            "getter `distributed::MeshDevice::get_devices() const`",
            1,
        ),
    ]
}

/// The old layout (0.75.0 to 0.78.0), with the sources each field comes from.
fn old_layout_of(lib: &Fixture, mesh: Chain) -> Layout {
    let (at, hops) = mesh.offsets.split_last().unwrap();
    let got = layout_is(
        lib,
        &format!(
            "Buffer{{device +0x10:8 address +0x50:4 size +0x18:8 page_size +0x58:8 type +0x20:4 \
             unique_id +0x220:8}} Device{{id +0x18:4}} MeshDevice{{devices {}->vector@+{at:#x}}}",
            hops.iter()
                .map(|o| format!("+{o:#x}"))
                .collect::<Vec<_>>()
                .join("->")
        ),
        &BufferLayout {
            device: chain(&[0x10], 8),
            address: chain(&[0x50], 4),
            size: chain(&[0x18], 8),
            page_size: chain(&[0x58], 8),
            kind: chain(&[0x20], 4),
            unique_id: chain(&[0x220], 8),
            memory_layout: Some(chain(&[0x24], 4)),
            shard: Some(ShardShape {
                layout: chain(&[0x24], 4),
                present: chain(&[0x98], 1),
                shard: [chain(&[0x78], 4), chain(&[0x7c], 4)],
                page: [chain(&[0x88], 4), chain(&[0x8c], 4)],
            }),
        },
        chain(&[0x18], 4),
        Some((hops.to_vec(), i64::from(*at))),
    );
    let ctor = "constructor store in `Buffer::Buffer(IDevice*...)`";
    sources_are(
        &got.provenance,
        &[
            ("Buffer::device", ctor, 1),
            ("Buffer::address", "accessor `Buffer::address() const`", 1),
            ("Buffer::size", ctor, 1),
            (
                "Buffer::page_size",
                "accessor `Buffer::page_size() const`",
                2,
            ),
            ("Buffer::buffer_type", ctor, 2),
            ("Buffer::unique_id", ctor, 1),
            (
                "Buffer::buffer_layout",
                "the layout `Buffer::num_dev_pages() const` checks first",
                0,
            ),
            (
                "Buffer shard shape",
                "the divisions of `Buffer::num_dev_pages() const` (shard over page, per dimension)",
                0,
            ),
            ("Device::id", "accessor `Device::id() const`", 1),
            (
                "MeshDevice::get_devices",
                "getter `distributed::MeshDevice::get_devices() const`",
                1,
            ),
        ],
    );
    got
}

#[test]
fn old_era_releases_share_one_layout() {
    for version in ["0.75.0", "0.76.0", "0.78.0"] {
        old_layout_of(
            &Fixture::of_release(version),
            chain(&[0x18, 0x58, 0, 0x178], 8),
        );
    }
    let got = calibrate(&Fixture::of_release("0.81.1")).unwrap();
    sources_are(&got.provenance, &new_sources());
}

/// Every function calibration reads as a source of a field, by (part of) its mangled name.
const SOURCES: &[&str] = &[
    sym::BUFFER_DEVICE,
    sym::BUFFER_ADDRESS,
    sym::BUFFER_SIZE,
    sym::BUFFER_PAGE_SIZE,
    sym::BUFFER_TYPE,
    sym::BUFFER_UNIQUE_ID,
    sym::BUFFER_LAYOUT,
    sym::BUFFER_IMPL,
    sym::BUFFER_IS_DRAM,
    sym::BUFFER_IS_L1,
    sym::BUFFER_NUM_PAGES,
    sym::BUFFER_ALLOCATE_IMPL,
    sym::BUFFER_IMPL_ALLOCATE_IMPL,
    sym::EXTRACT_CONTEXT_ID,
    sym::LIGHT_METAL_IS_IN_MAP,
    sym::SHARDING_ARGS_LAYOUT,
    sym::BUFFER_CTOR.0,
    sym::BUFFER_IMPL_CTOR.0,
    sym::DEVICE_ID,
    sym::DEVICE_CTOR.0,
    sym::MESH_GET_DEVICES,
    sym::MESH_GET_DEVICE,
    sym::MESH_GET_VIEW,
    sym::ALLOCATOR_NUM_BANKS,
    sym::ALLOCATOR_RESET_SIZE,
    sym::BANK_MANAGER_NUM_BANKS,
    sym::BANK_MANAGER_INIT_ALLOCATORS,
    sym::BANK_MANAGER_ALLOCATOR_FROM_ID,
    // The two BankManager constructors (by bank offsets in a map, in a vector).
    "BufferTypeERKSt13unordered_map",
    "BufferTypeERKSt6vector",
];

/// Where one function is the only source left (the library offers no second one): the
/// release, the function, and what goes without it.
const SINGLE_SOURCES: &[(&str, &str, &str)] = &[
    // `reset_allocator_size` picks the manager through a switch, not a table.
    ("0.75.0", sym::ALLOCATOR_NUM_BANKS, "allocator"),
    // `get_num_banks` tail-calls the accessor: one function reads the count.
    ("0.76.0", sym::BANK_MANAGER_NUM_BANKS, "allocator"),
];

/// What calibration makes of a library: the layout as chains, the allocator's alignment,
/// sub-allocators and minimum block offsets, its bank managers.
type Outcome = (Option<Vec<Option<Chain>>>, Option<[i32; 3]>, Vec<String>);

/// What calibration makes of `lib` (the address's width aside: an accessor reads 32 of the 64
/// bits the allocator stores).
fn outcome(lib: &dyn Image) -> Outcome {
    let layout = calibrate(lib).ok().map(|l| {
        let b = l.buffer;
        let mut address = b.address;
        address.width = 0;
        let mesh = l.mesh_devices.map(|(mut hops, at)| {
            hops.push(at as i32);
            chain(&hops, 8)
        });
        vec![
            Some(b.device),
            Some(address),
            Some(b.size),
            Some(b.page_size),
            Some(b.kind),
            Some(b.unique_id),
            b.memory_layout,
            Some(l.device_id),
            mesh,
        ]
    });
    let allocator = allocator::calibrate(lib).ok();
    let geometry = allocator
        .as_ref()
        .map(|a| [a.alignment, a.sub_allocators, a.min_block]);
    let managers = allocator
        .map(|a| {
            a.managers
                .iter()
                .map(|(k, m, b)| format!("{} {m:#x} {b:#x}", k.name()))
                .collect()
        })
        .unwrap_or_default();
    (layout, geometry, managers)
}

/// No field depends on one function: with any one source missing, every release calibrates
/// to the same layout and allocator geometry, except where the library offers no second
/// source ([`SINGLE_SOURCES`]).
#[test]
fn every_field_survives_the_loss_of_any_one_source() {
    for version in RELEASES {
        let lib = Fixture::of_release(version);
        let (layout, geometry, managers) = outcome(&lib);
        assert!(
            layout.is_some() && geometry.is_some(),
            "{version} calibrates"
        );
        for hidden in SOURCES {
            let got = outcome(&Without { lib: &lib, hidden });
            let single = SINGLE_SOURCES
                .iter()
                .find(|(v, h, _)| *v == version && h == hidden);
            match single {
                Some((_, _, "allocator")) => {
                    assert_eq!(got.0, layout, "{version} without {hidden}");
                    assert_eq!(got.1, None, "{version} without {hidden}: single source");
                }
                _ => {
                    assert_eq!(got.0, layout, "{version} without {hidden}");
                    assert_eq!(got.1, geometry, "{version} without {hidden}");
                    assert_eq!(got.2, managers, "{version} without {hidden}");
                }
            }
        }
    }
}
