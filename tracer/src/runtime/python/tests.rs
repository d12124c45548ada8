use super::*;

use crate::runtime::x86::fixture::Fixture;

/// What calibration found on the real interpreters (3.12.1 and 3.10.13 as pyenv builds them)
/// and C library (glibc 2.36), from the stored extracts: no interpreter needed.
#[test]
fn calibrates_stored_interpreters() {
    let l = calibrate(&Fixture::of_file("libpython3.12.so.1.0")).unwrap();
    assert_eq!(l.version, (3, 12));
    assert_eq!(
        l.tstate,
        ThreadState::Key {
            slot: 0x543d00,
            key_at: 0x608,
            key_field: 4
        }
    );
    assert_eq!(l.thread_id, Some(0x88));
    assert_eq!(
        (l.frame.as_slice(), l.back, l.code, l.instr_at),
        (&[0x38, 0][..], 8, 0, 0x38)
    );
    assert_eq!(l.instr, Instruction::Pointer { code_start: 0xc0 });
    assert_eq!(
        l.code_fields,
        CodeFields {
            filename: 0x70,
            qualname: 0x80,
            firstlineno: 0x44,
            linetable: 0x88
        }
    );
    assert_eq!(
        (l.str.ascii_data, l.str.utf8, l.str.ascii_mask),
        (0x28, 0x30, 0x60)
    );
    assert_eq!(l.lines, LineFormat::Locations);

    let l = calibrate(&Fixture::of_file("libpython3.10.so.1.0")).unwrap();
    assert_eq!(l.version, (3, 10));
    assert_eq!(
        l.tstate,
        ThreadState::Key {
            slot: 0x373d30,
            key_at: 0x248,
            key_field: 4
        }
    );
    assert_eq!(l.thread_id, Some(0xb0));
    assert_eq!(
        (l.frame.as_slice(), l.back, l.code, l.instr_at),
        (&[0x18][..], 0x18, 0x20, 0x60)
    );
    assert_eq!(l.instr, Instruction::Index { width: 4 });
    assert_eq!(
        l.code_fields,
        CodeFields {
            filename: 0x68,
            qualname: 0x70,
            firstlineno: 0x28,
            linetable: 0x78
        }
    );
    assert_eq!((l.str.ascii_data, l.str.utf8), (0x30, 0x38));
    assert_eq!(l.lines, LineFormat::Pairs);

    let s = calibrate_specific(&Fixture::of_file("libc.so.6")).unwrap();
    assert_eq!(
        (s.self_off, s.add, s.shift, s.data, s.block),
        (0x10, 0x31, 4, 8, 32)
    );
    let d = calibrate_dtv(&Fixture::of_file("ld-linux-x86-64.so.2")).unwrap();
    assert_eq!(
        d,
        Dtv {
            tcb_offset: 8,
            entry_shift: 4,
            entry_offset: 0
        }
    );
}

/// An interpreter whose accessors lost their shape calibrates to an error, never to a layout.
#[test]
fn a_missing_accessor_is_an_error() {
    let text = std::fs::read_to_string(crate::runtime::x86::fixture::python_path_of(
        "libpython3.12.so.1.0",
    ))
    .unwrap();
    let cut: String = text
        .lines()
        .filter(|l| !l.starts_with("symbol PyFrame_GetLasti "))
        .map(|l| format!("{l}\n"))
        .collect();
    let e = calibrate(&Fixture::parse(&cut).unwrap()).unwrap_err();
    assert!(format!("{e:#}").contains("PyFrame_GetLasti"), "{e:#}");
}

/// The layout made into the eBPF side's spec: the thread state through the thread pointer's
/// specific values, the frame fields inside the bytes one probe copies.
#[test]
fn the_probe_spec_of_a_stored_layout() {
    let l = calibrate(&Fixture::of_file("libpython3.10.so.1.0")).unwrap();
    // Without a process the runtime pointer cannot be read: an error naming the PID.
    let e = stack_spec(&l, None, None, u32::MAX, 0).unwrap_err();
    assert!(
        format!("{e:#}").contains("specific") || format!("{e:#}").contains(&u32::MAX.to_string()),
        "{e:#}"
    );
}
