//! ttnn 0.75.0: `Buffer` keeps its fields itself, most of its accessors are inlined away
//! (calibration falls back to the constructor's stores), and there is no
//! `Buffer::buffer_layout()`.
use super::*;
use crate::runtime::{calibrate::BufferLayout, x86::shard::ShardShape};

const VERSION: &str = "0.75.0";

fn lib() -> Fixture {
    Fixture::of_release(VERSION)
}

#[test]
fn old_era_layout() {
    let got = layout_is(
        &lib(),
        "Buffer{device +0x10:8 address +0x50:4 size +0x18:8 page_size +0x58:8 type +0x20:4 \
         unique_id +0x220:8} Device{id +0x18:4} MeshDevice{devices +0x18->+0x58->+0x0->vector@+0x178}",
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
        Some((vec![0x18, 0x58, 0], 0x178)),
    );
    // Four accessors are inlined: the constructor gives those fields, and another function
    // that uses each one confirms it.
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
    let describe: Vec<String> = got
        .provenance
        .iter()
        .map(|f| f.describe().replace("tt::tt_metal::", ""))
        .collect();
    assert_eq!(
        describe[1],
        "+0x50:4 from accessor `Buffer::address() const`; confirmed by the member \
         `Buffer::allocate_impl()` stores `AllocatorImpl::allocate_buffer(Buffer*)`'s result in \
         (+0x50:8)"
    );
    assert_eq!(
        describe[6],
        "+0x24:4 from the layout `Buffer::num_dev_pages() const` checks first; single source; \
         nothing from accessor `Buffer::buffer_layout() const`, constructor store in \
         `Buffer::Buffer(IDevice*...)` of `BufferShardingArgs::buffer_layout() const`"
    );
}

#[test]
fn old_era_allocator() {
    let got = allocator_is(
        &lib(),
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
    allocator_sources_are(&got, false, true);
}

#[test]
fn old_era_accessors() {
    // device, address, size, page_size, buffer_type, unique_id, buffer_layout, Device::id.
    assert_eq!(
        accessors(&lib()),
        vec![
            None,
            Some(chain(&[0x50], 4)),
            None,
            Some(chain(&[0x58], 8)),
            None,
            None,
            None,
            Some(chain(&[0x18], 4)),
        ]
    );
}

#[test]
fn old_era_constructor_stores() {
    let lib = lib();
    // C1 and C2 share one body. (device, size, page_size, type, ..., the unique id.)
    let buffer = vec![
        arg(1, 0x10, 8),
        arg(2, 0x18, 8),
        arg(4, 0x20, 4),
        arg(3, 0x58, 8),
        counter(0x220, 8),
    ];
    assert_eq!(
        stores(&lib, sym::BUFFER_CTOR, 4096, 1500),
        vec![buffer.clone(), buffer]
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
fn old_era_getters_and_allocator_paths() {
    let lib = lib();
    assert_eq!(
        mesh_getters(&lib),
        [Some((vec![0x18, 0x58, 0], 0x178)), Some((vec![0], 0x178))]
    );
    assert_eq!(
        banks_per_type(&lib),
        [0x38, 0x40, 0x48, 0x50].map(|m| Some(chain(&[m, 0x20], 4)))
    );
    assert_eq!(sub_allocators(&lib), Some(0x3b0));
}

#[test]
fn old_era_lifecycle_analyses() {
    let lib = lib();
    let throws = oom_throws(&lib);
    let calls: Vec<MessageCall> = throws.iter().map(|(c, _)| *c).collect();
    assert_eq!(
        calls,
        vec![
            MessageCall {
                call: 0x985dd8,
                target: 0x6760c0,
                string: 0x663e8a
            },
            MessageCall {
                call: 0x986229,
                target: 0x6760c0,
                string: 0x5eef8f
            },
        ]
    );
    assert!(throws.iter().all(|(_, t)| t.contains("tt_throw")));
    assert_eq!(
        mesh_shape(&lib),
        [
            Some(chain(&[0x18, 0x58, 0, 0x360], 8)),
            Some(chain(&[0x18, 0x58, 0, 0x368], 8))
        ]
    );
    assert!(!frame_pointer(&lib));
}
