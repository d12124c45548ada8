//! ttnn 0.81.1: `Buffer` keeps its fields in a `BufferImpl` behind a pointer (at +0x10), every
//! accessor is out of line, and `Buffer::buffer_layout()` exists.
use super::*;
use crate::runtime::{calibrate::BufferLayout, x86::shard::ShardShape};

const VERSION: &str = "0.81.1";

fn lib() -> Fixture {
    Fixture::of_release(VERSION)
}

#[test]
fn new_era_layout() {
    let got = layout_is(
        &lib(),
        "Buffer{device +0x10->+0x0:8 address +0x10->+0x40:4 size +0x10->+0x8:8 page_size \
         +0x10->+0x48:8 type +0x10->+0x10:4 unique_id +0x10->+0x218:8} Device{id +0x18:4} \
         MeshDevice{devices +0x18->vector@+0x78}",
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
        Some((vec![0x18], 0x78)),
    );
    // Every accessor is out of line and used; each field has a second source besides.
    sources_are(
        &got.provenance,
        &[
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
        ],
    );
    // Light Metal asks the accessor for the unique id here: no source of its own.
    let unique_id = &got.provenance[6];
    assert_eq!(
        unique_id.describe().replace("tt::tt_metal::", ""),
        "+0x10->+0x218:8 from accessor `Buffer::unique_id() const`; confirmed by constructor \
         store in `BufferImpl::BufferImpl(IDevice*...)`; nothing from the map key \
         `LightMetalCaptureContext::is_in_map(Buffer const*)` reads"
    );
}

#[test]
fn new_era_allocator() {
    let got = allocator_is(
        &lib(),
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

#[test]
fn new_era_accessors() {
    // device, address, size, page_size, buffer_type, unique_id, buffer_layout, Device::id.
    assert_eq!(
        accessors(&lib()),
        vec![
            Some(chain(&[0x10, 0], 8)),
            Some(chain(&[0x10, 0x40], 4)),
            Some(chain(&[0x10, 0x8], 8)),
            Some(chain(&[0x10, 0x48], 8)),
            Some(chain(&[0x10, 0x10], 4)),
            Some(chain(&[0x10, 0x218], 8)),
            Some(chain(&[0x10, 0x14], 4)),
            Some(chain(&[0x18], 4)),
        ]
    );
}

#[test]
fn new_era_constructor_stores() {
    let lib = lib();
    // The BufferImpl constructor (C1 and C2 share one body): device, size, type, page size,
    // ..., the unique id; the second source of each (behind `Buffer::impl()`, +0x10).
    let buffer_impl = vec![
        arg(1, 0, 8),
        arg(2, 0x8, 8),
        arg(4, 0x10, 4),
        arg(3, 0x48, 8),
        counter(0x218, 8),
    ];
    assert_eq!(
        stores(&lib, sym::BUFFER_IMPL_CTOR, 4096, 1500),
        vec![buffer_impl.clone(), buffer_impl]
    );
    // Both BankManager constructors (by unordered_map and by vector, C1 and C2 each) store
    // the alignment argument: each body is a source of it.
    let map = vec![arg(4, 0x40, 8), arg(5, 0x48, 4)];
    let vector = vec![arg(4, 0x48, 4)];
    assert_eq!(
        stores(&lib, sym::BANK_MANAGER_CTOR, 4096, 1500),
        vec![map.clone(), vector.clone(), map, vector]
    );
    let free_list = vec![
        arg(1, 0x8, 8),
        arg(2, 0x10, 8),
        arg(3, 0x18, 8),
        arg(4, 0x20, 8),
        arg(5, 0x120, 4),
    ];
    assert_eq!(
        stores(&lib, sym::FREE_LIST_CTOR, 1024, 200),
        vec![free_list.clone(), free_list]
    );
}

#[test]
fn new_era_getters_and_allocator_paths() {
    let lib = lib();
    assert_eq!(
        mesh_getters(&lib),
        [Some((vec![0x18], 0x78)), Some((vec![0], 0x178))]
    );
    assert_eq!(
        banks_per_type(&lib),
        [0x30, 0x38, 0x40, 0x48].map(|m| Some(chain(&[m, 0x20], 4)))
    );
    assert_eq!(sub_allocators(&lib), Some(0x3b0));
}

#[test]
fn new_era_lifecycle_analyses() {
    let lib = lib();
    let throws = oom_throws(&lib);
    let calls: Vec<MessageCall> = throws.iter().map(|(c, _)| *c).collect();
    assert_eq!(
        calls,
        vec![
            MessageCall {
                call: 0xa7d398,
                target: 0x787960,
                string: 0x74a6bf
            },
            MessageCall {
                call: 0xa7d686,
                target: 0x787970,
                string: 0x6eac8d
            },
        ]
    );
    assert!(throws.iter().all(|(_, t)| t.contains("tt_throw")));
    assert_eq!(
        mesh_shape(&lib),
        [
            Some(chain(&[0x18, 0x70, 0, 0x360], 8)),
            Some(chain(&[0x18, 0x70, 0, 0x368], 8))
        ]
    );
    assert!(!frame_pointer(&lib));
}
