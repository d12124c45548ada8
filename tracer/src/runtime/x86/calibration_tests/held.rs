//! The paths from a device object to the buffers its allocators hold (`tracer snapshot`, the
//! seed of a mid-run attach), on the stored extract of every release.
use super::*;
use crate::runtime::{calibrate::calibrate, held};

fn held_of(version: &str) -> Result<held::HeldLayout, String> {
    let lib = Fixture::of_release(version);
    let hops = calibrate(&lib)
        .ok()
        .and_then(|l| l.mesh_devices)
        .map(|m| m.0);
    held::calibrate(&lib, hops.as_deref())
}

#[test]
fn every_release_reaches_its_allocated_buffers() {
    // (impl, tracker, default manager, allocators, Device allocator, allocated buffers), as
    // tracer doctor printed them on each release's library.
    let want: [(&str, [i32; 6]); 5] = [
        ("0.75.0", [0x18, 0xd8, 0x48, 0x68, 0x220, 0x138]),
        ("0.76.0", [0x18, 0xd8, 0x48, 0x68, 0x220, 0x138]),
        ("0.78.0", [0x18, 0xd8, 0x48, 0x68, 0x220, 0x138]),
        ("0.80.0", [0x18, 0x140, 0x48, 0x70, 0x248, 0x130]),
        ("0.81.1", [0x18, 0x1f8, 0x48, 0x70, 0x248, 0x130]),
    ];
    for (version, w) in want {
        let h = held_of(version).unwrap_or_else(|e| panic!("{version}: {e}"));
        let got = [
            h.mesh_impl,
            h.impl_tracker,
            h.tracker_default,
            h.manager_allocators,
            h.device_allocator,
            h.allocated_buffers,
        ];
        assert_eq!(got, w, "{version}: {}", h.describe());
        // Every hop has two sources, which agree; 0.76.0 and 0.78.0 read the default
        // manager's id another way, and keep one source for the default manager.
        for f in &h.provenance {
            let single = matches!(version, "0.76.0" | "0.78.0")
                && f.field == "SubDeviceManagerTracker default manager";
            let want = if single { 0 } else { 1 };
            assert_eq!(
                f.confirming().len(),
                want,
                "{version}: {}: {}",
                f.field,
                f.describe()
            );
        }
    }
}

#[test]
fn a_missing_hop_names_its_function() {
    let full = Fixture::of_release("0.81.1");
    let lib = Without {
        lib: &full,
        hidden: sym::TRACKER_DEFAULT_MANAGER,
    };
    let hops = calibrate(&lib)
        .ok()
        .and_then(|l| l.mesh_devices)
        .map(|m| m.0);
    let e = held::calibrate(&lib, hops.as_deref()).unwrap_err();
    // Without the accessor, the call to it is not recognised either: the first hop that
    // needs it fails, naming the function it read.
    assert!(
        e.contains("MeshDeviceImpl::allocator_impl() const") && e.contains("none of"),
        "{e}"
    );
}

/// No hop depends on one function: with any one of its sources missing, every release reaches
/// the same offsets (where it has a second source).
#[test]
fn every_hop_survives_the_loss_of_any_one_source() {
    let sources = [
        sym::MESH_ALLOCATOR_IMPL,
        sym::MESH_IMPL_ALLOCATOR_IMPL,
        sym::MESH_IMPL_DEFAULT_MANAGER_ID,
        sym::TRACKER_DEFAULT_MANAGER_ID,
        sym::SUB_DEVICE_MANAGER_ALLOCATOR,
        sym::SUB_DEVICE_ALLOCATOR,
        sym::DEVICE_ALLOCATOR_IMPL,
        sym::DEVICE_ALLOCATOR_IMPL_OF,
        sym::ALLOCATOR_ALLOCATED_BUFFERS,
        sym::ALLOCATOR_NUM_ALLOCATED_BUFFERS,
    ];
    let offsets = |h: &held::HeldLayout| {
        [
            h.mesh_impl,
            h.impl_tracker,
            h.tracker_default,
            h.manager_allocators,
            h.device_allocator,
            h.allocated_buffers,
        ]
    };
    for version in RELEASES {
        let full = Fixture::of_release(version);
        let want = offsets(&held_of(version).unwrap());
        for hidden in sources {
            let lib = Without { lib: &full, hidden };
            let hops = calibrate(&lib)
                .ok()
                .and_then(|l| l.mesh_devices)
                .map(|m| m.0);
            let got = held::calibrate(&lib, hops.as_deref())
                .unwrap_or_else(|e| panic!("{version} without {hidden}: {e}"));
            assert_eq!(offsets(&got), want, "{version} without {hidden}");
        }
    }
}
