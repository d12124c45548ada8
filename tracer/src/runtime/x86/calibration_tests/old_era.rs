//! ttnn 0.75.0: `Buffer` keeps its fields itself, most of its accessors are inlined away
//! (calibration falls back to the constructor's stores), and there is no
//! `Buffer::buffer_layout()`.
use super::*;
use crate::runtime::{calibrate::BufferLayout, x86::shard::ShardShape};

const VERSION: &str = "0.75.0";

fn lib() -> Fixture {
    Fixture::of_release(VERSION)
}

fn provenance(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(f, how)| (f.to_string(), how.to_string()))
        .collect()
}

#[test]
fn old_era_layout() {
    let ctor = "constructor store in tt::tt_metal::Buffer::Buffer(tt::tt_metal::IDevice*...)";
    let expected = Layout {
        buffer: BufferLayout {
            device: chain(&[0x10], 8),
            address: chain(&[0x50], 4),
            size: chain(&[0x18], 8),
            page_size: chain(&[0x58], 8),
            kind: chain(&[0x20], 4),
            unique_id: chain(&[0x220], 8),
            // Inlined accessor: the layout comes from what num_dev_pages() checks.
            memory_layout: Some(chain(&[0x24], 4)),
            shard: Some(ShardShape {
                layout: chain(&[0x24], 4),
                present: chain(&[0x98], 1),
                shard: [chain(&[0x78], 4), chain(&[0x7c], 4)],
                page: [chain(&[0x88], 4), chain(&[0x8c], 4)],
            }),
        },
        device_id: chain(&[0x18], 4),
        mesh_devices: Some((vec![0x18, 0x58, 0], 0x178)),
        provenance: provenance(&[
            ("address", "accessor tt::tt_metal::Buffer::address() const"),
            (
                "page_size",
                "accessor tt::tt_metal::Buffer::page_size() const",
            ),
            ("device", ctor),
            ("size", ctor),
            ("buffer_type", ctor),
            ("unique_id", ctor),
            ("device_id", "accessor tt::tt_metal::Device::id() const"),
            (
                "memory_layout",
                "what tt::tt_metal::Buffer::num_dev_pages() const checks first",
            ),
            (
                "shard shape",
                "tt::tt_metal::Buffer::num_dev_pages() const: present +0x98:1 shard \
                 +0x78:4x+0x7c:4 page +0x88:4x+0x8c:4",
            ),
            (
                "mesh_devices",
                "getter tt::tt_metal::distributed::MeshDevice::get_devices() const",
            ),
        ]),
    };
    layout_is(
        &lib(),
        "Buffer{device +0x10:8 address +0x50:4 size +0x18:8 page_size +0x58:8 type +0x20:4 \
         unique_id +0x220:8} Device{id +0x18:4} MeshDevice{devices +0x18->+0x58->+0x0->vector@+0x178}",
        &expected,
    );
}

#[test]
fn old_era_allocator() {
    allocator_is(
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
    // The first by mangled name (the unordered_map variant, C1 and C2) already stores the
    // alignment argument: the vector variant is not read.
    let map = vec![arg(4, 0x40, 8), arg(5, 0x48, 4)];
    assert_eq!(
        stores(&lib, sym::BANK_MANAGER_CTOR, 4096, 1500),
        vec![map.clone(), map]
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

#[test]
fn core_ranges_calibrate_from_two_sources_each() {
    let l = crate::runtime::core_ranges::calibrate(&lib()).unwrap();
    assert_eq!(
        (l.vector, l.stride, l.start, l.end, l.width),
        (0, 32, 0, 16, 8)
    );
    assert_eq!(l.provenance.len(), 3);
    assert!(l.provenance.iter().all(|(_, how)| how.contains(" and ")));
}
