//! Where a free finds its buffer's object (runtime/free_object.rs), on the stored releases.
use iced_x86::Register;

use super::*;
use crate::runtime::free_object;

fn targets(lib: &Fixture) -> Vec<u64> {
    let mut t: Vec<u64> = [
        sym::TRACK_DEALLOCATE.to_string(),
        format!("{}$plt", sym::TRACK_DEALLOCATE),
    ]
    .iter()
    .filter_map(|m| lib.symbol(m))
    .map(|s| s.address)
    .collect();
    t.sort_unstable();
    t
}

#[test]
fn pimpl_releases_keep_the_freed_buffers_object_in_rbx() {
    for version in ["0.80.0", "0.81.1"] {
        let lib = Fixture::of_release(version);
        // One call, from the method: what `objdump -d` shows at that address.
        assert_eq!(lib.branches_to(&targets(&lib)).len(), 1, "{version}");
        let got = calibrate(&lib).unwrap().free_object.unwrap();
        assert_eq!(got.register, Register::RBX, "{version}");
        assert!(
            got.how.contains("BufferImpl::deallocate_impl") && got.how.contains("%rbx"),
            "{version}: {}",
            got.how
        );
    }
}

#[test]
fn old_releases_free_by_the_buffer_pointer_itself() {
    for version in ["0.75.0", "0.76.0", "0.78.0"] {
        let got = calibrate(&Fixture::of_release(version)).unwrap();
        assert!(got.free_object.is_err(), "{version}");
    }
}

#[test]
fn another_caller_of_track_deallocate_means_no_register() {
    let mut lib = Fixture::of_release("0.81.1");
    let t = targets(&lib);
    let mut sites = lib.branches_to(&t);
    // A call from somewhere else in the library (its registers are its own).
    sites.push(0x1000);
    lib.add_branches(&t, &sites);
    let e = free_object::calibrate(&lib).unwrap_err();
    assert!(e.contains("outside"), "{e}");
}

#[test]
fn a_call_the_byte_scan_found_but_the_method_does_not_make_means_no_register() {
    let mut lib = Fixture::of_release("0.81.1");
    let t = targets(&lib);
    let caller = lib.symbol(sym::BUFFER_IMPL_DEALLOCATE_IMPL).unwrap();
    let mut sites = lib.branches_to(&t);
    // A second branch inside the method that its straight-line reading did not see as a
    // call (a conditional tail jump would look like this).
    sites.push(caller.address + 4);
    lib.add_branches(&t, &sites);
    let e = free_object::calibrate(&lib).unwrap_err();
    assert!(e.contains("read as calls"), "{e}");
}

#[test]
fn without_the_method_frees_read_the_object() {
    let lib = Fixture::of_release("0.81.1");
    let without = Without {
        lib: &lib,
        hidden: "deallocate_impl",
    };
    let e = free_object::calibrate(&without).unwrap_err();
    assert!(e.contains("deallocate_impl"), "{e}");
}
