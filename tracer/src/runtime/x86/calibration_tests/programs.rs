//! The paths from a chip's `Device` to its registered programs and their circular buffers
//! (the CB seed of a mid-run attach, `tracer snapshot`), on the stored extract of every
//! release.
use super::*;
use crate::runtime::programs::{self, ProgramLayout};

fn offsets(p: &ProgramLayout) -> [i32; 8] {
    [
        p.device_programs,
        p.program_cbs,
        p.core_ranges,
        p.size,
        p.global,
        p.local_address,
        p.local_engaged,
        p.global_address,
    ]
}

#[test]
fn every_release_reaches_its_programs_circular_buffers() {
    // (programs, CB vector, core ranges, size, global flag, local address, its engaged flag,
    // global address), as read by hand in each release's `Device::register_program`,
    // `ProgramImpl::circular_buffers() const` and `CircularBufferImpl::address() const`.
    let cb = [0x8, 0x28, 0x30, 0x1170, 0x1174, 0x1178];
    let want: [(&str, i32, i32); 5] = [
        ("0.75.0", 0x230, 0x138),
        ("0.76.0", 0x230, 0x138),
        ("0.78.0", 0x230, 0x140),
        ("0.80.0", 0x258, 0x160),
        ("0.81.1", 0x258, 0x160),
    ];
    for (version, set, vector) in want {
        let p = programs::calibrate(&Fixture::of_release(version))
            .unwrap_or_else(|e| panic!("{version}: {e}"));
        let mut w = vec![set, vector];
        w.extend(cb);
        assert_eq!(offsets(&p).to_vec(), w, "{version}: {}", p.describe());
        // Every field has a second source that agrees, but the local address: only
        // `address() const` reads it (the allocation that stores it is inlined).
        for f in &p.provenance {
            let want = match f.field.as_str() {
                "CircularBufferImpl locally allocated address" => 0,
                "CircularBufferImpl core ranges" => 2,
                _ => 1,
            };
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

/// No field depends on one function where it has a second source: with any one of them
/// missing, every release reaches the same offsets.
#[test]
fn every_hop_survives_the_loss_of_any_one_source() {
    let sources = [
        sym::DEVICE_REGISTER_PROGRAM,
        sym::DEVICE_UNREGISTER_PROGRAM,
        sym::PROGRAM_IMPL_CIRCULAR_BUFFERS,
        sym::PROGRAM_CIRCULAR_BUFFERS,
        sym::CB_CORE_RANGES,
        sym::CB_IMPL_ON_CORE_RANGE,
        sym::CB_IMPL_ON_CORE,
        sym::CB_SIZE,
        sym::CB_IMPL_NUM_PAGES,
        sym::CB_GLOBALLY_ALLOCATED,
        sym::CB_IMPL_ASSIGN_GLOBAL_ADDRESS,
    ];
    for version in RELEASES {
        let full = Fixture::of_release(version);
        let want = offsets(&programs::calibrate(&full).unwrap());
        for hidden in sources {
            let lib = Without { lib: &full, hidden };
            let got = programs::calibrate(&lib)
                .unwrap_or_else(|e| panic!("{version} without {hidden}: {e}"));
            assert_eq!(offsets(&got), want, "{version} without {hidden}");
        }
    }
}

/// The one function without a second source: its loss is a clear refusal (no CB seed), never
/// a guess.
#[test]
fn without_the_address_accessor_nothing_is_guessed() {
    let full = Fixture::of_release("0.81.1");
    let lib = Without {
        lib: &full,
        hidden: sym::CB_IMPL_ADDRESS,
    };
    let e = programs::calibrate(&lib).unwrap_err();
    assert!(
        e.contains("locally allocated address")
            && e.contains("CircularBufferImpl::address() const"),
        "{e}"
    );
}
