//! Bad input gets a clear error and a non-zero exit; a library tracer can only partly
//! calibrate degrades with the failing symbol named.
use std::process::Command;

use tracer_tests::*;

fn run_err(cmd: &mut Command) -> (i32, String) {
    let out = cmd.output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn not_root() {
    let (code, err) = run_err(
        Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
            .arg(tracer_bin())
            .args(["run", "--", "true"]),
    );
    assert_ne!(code, 0);
    assert!(err.contains("needs root") && err.contains("sudo"), "{err}");
}

#[test]
fn lib_that_is_not_tt_metal() {
    let (code, err) = run_err(tracer().args(["run", "--lib", "/bin/ls", "--", "true"]));
    assert_ne!(code, 0);
    assert!(
        err.contains("/ls") && err.contains("track_allocate") && err.contains("not found"),
        "{err}"
    );
    let text = tempdir().join("notes.txt");
    std::fs::write(&text, "hello").unwrap();
    let (code, err) = run_err(
        tracer()
            .arg("run")
            .arg("--lib")
            .arg(&text)
            .args(["--", "true"]),
    );
    assert_ne!(code, 0);
    assert!(err.contains("not an ELF"), "{err}");
}

#[test]
fn command_that_does_not_exist() {
    let (code, err) = run_err(
        tracer()
            .arg("run")
            .arg("--lib")
            .arg(library("0.81.1"))
            .args(["--", "no-such-command-xyz"]),
    );
    assert_eq!(code, 127, "{err}");
    assert!(
        err.contains("command not found: no-such-command-xyz"),
        "{err}"
    );
    // Without --lib, the missing command is still what the user hears about, not the library.
    let (code, err) = run_err(tracer().args(["run", "--", "/nonexistent/cmd", "arg"]));
    assert_eq!(code, 127, "{err}");
    assert!(
        err.contains("command not found: /nonexistent/cmd") && !err.contains("libtt_metal"),
        "{err}"
    );
}

#[test]
fn command_that_is_not_executable() {
    let script = tempdir().join("script.sh");
    std::fs::write(&script, "#!/bin/sh\necho hi\n").unwrap();
    let (code, err) = run_err(tracer().arg("run").arg("--").arg(&script));
    assert_eq!(code, 126, "{err}");
    assert!(
        err.contains("not executable") && err.contains("script.sh") && !err.contains("libtt_metal"),
        "{err}"
    );
    let dir = tempdir();
    let (code, err) = run_err(tracer().arg("run").arg("--").arg(&dir));
    assert_eq!(code, 126, "{err}");
    assert!(err.contains("is a directory"), "{err}");
}

/// A copy of the real 0.81.1 library with one (mangled) symbol renamed in its symbol tables.
fn library_with_symbol_renamed(symbol: &str) -> std::path::PathBuf {
    library_with_symbols_renamed(&[symbol])
}

/// A copy of the real 0.81.1 library with (mangled) symbols renamed in its symbol tables.
fn library_with_symbols_renamed(symbols: &[&str]) -> std::path::PathBuf {
    let mut bytes = std::fs::read(library("0.81.1")).unwrap();
    for symbol in symbols {
        let from = symbol.as_bytes();
        let mut renamed = 0;
        let mut i = 0;
        while let Some(pos) = bytes[i..].windows(from.len()).position(|w| w == from) {
            // A character of the name itself (not of its parameter types, which other
            // symbols share): the name ends well before the last 8 characters.
            let at = i + pos + from.len().min(24) - 8;
            bytes[at] = b'X';
            renamed += 1;
            i += pos + from.len();
        }
        assert!(renamed >= 1, "{symbol} not in the library");
    }
    let lib = tempdir().join("libtt_metal.so");
    std::fs::write(&lib, bytes).unwrap();
    lib
}

/// A copy of the real library with `GraphTracker::track_allocate` renamed in its symbol tables.
#[test]
fn library_with_a_missing_symbol() {
    let lib =
        library_with_symbol_renamed("_ZN2tt8tt_metal12GraphTracker14track_allocateEPKNS0_6BufferE");
    let (code, err) = run_err(
        tracer()
            .arg("run")
            .arg("--lib")
            .arg(&lib)
            .args(["--", "true"]),
    );
    assert_ne!(code, 0);
    assert!(err.contains("GraphTracker::track_allocate"), "{err}");
    let (code, out) = {
        let o = tracer()
            .arg("doctor")
            .arg("--lib")
            .arg(&lib)
            .output()
            .unwrap();
        (
            o.status.code().unwrap(),
            String::from_utf8_lossy(&o.stdout).into_owned(),
        )
    };
    assert_ne!(code, 0);
    assert!(
        out.contains("FAIL") && out.contains("track_allocate"),
        "{out}"
    );
}

fn doctor_output(lib: &std::path::Path) -> String {
    let o = tracer()
        .arg("doctor")
        .arg("--lib")
        .arg(lib)
        .output()
        .unwrap();
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// A copy of the real library whose `AllocatorImpl::get_num_banks` is renamed: the bank
/// managers come from `reset_allocator_size`, the bank count from `BankManager::num_banks()`;
/// without `reset_allocator_size` too, the rest still works, and doctor names what failed and
/// the fallback.
#[test]
fn library_without_the_allocator_accessor() {
    const NUM_BANKS: &str = "_ZNK2tt8tt_metal13AllocatorImpl13get_num_banksERKNS0_10BufferTypeE";
    let out = doctor_output(&library_with_symbol_renamed(NUM_BANKS));
    assert!(
        out.contains("allocator geometry (read after a mid-run attach): AllocatorImpl{DRAM +0x30->banks+0x20"),
        "{out}"
    );
    assert!(
        out.contains(
            "AllocatorImpl DRAM bank manager: +0x30:8 from the manager \
             `tt::tt_metal::AllocatorImpl::reset_allocator_size(tt::tt_metal::BufferType const&)` \
             resets for DRAM; single source"
        ),
        "{out}"
    );
    assert!(out.contains("AllocatorGeometry"), "{out}");
    let lib = library_with_symbols_renamed(&[
        NUM_BANKS,
        "_ZN2tt8tt_metal13AllocatorImpl20reset_allocator_sizeERKNS0_10BufferTypeE",
    ]);
    let out = doctor_output(&lib);
    assert!(
        out.contains("allocator geometry after a mid-run attach: NOT calibrated")
            && out.contains(
                "neither `tt::tt_metal::AllocatorImpl::get_num_banks(tt::tt_metal::BufferType \
                 const&) const` nor `tt::tt_metal::AllocatorImpl::reset_allocator_size("
            )
            && out.contains("reserved falls back to requested bytes"),
        "{out}"
    );
    assert!(out.contains("probe plan"), "{out}");
    assert!(!out.contains("AllocatorGeometry"), "{out}");
}

/// A copy of the real library without the `Buffer` accessors a release may inline: the layout
/// is the same, from the `BufferImpl` constructor and the functions that use the fields.
#[test]
fn library_without_buffer_accessors() {
    let layout = |out: &str| {
        out.lines()
            .find(|l| l.starts_with("  layout: "))
            .unwrap_or_else(|| panic!("{out}"))
            .to_string()
    };
    let whole = doctor_output(&library("0.81.1"));
    let lib = library_with_symbols_renamed(&[
        "_ZNK2tt8tt_metal6Buffer6deviceEv",
        "_ZNK2tt8tt_metal6Buffer4sizeEv",
        "_ZNK2tt8tt_metal6Buffer11buffer_typeEv",
        "_ZNK2tt8tt_metal6Buffer9unique_idEv",
    ]);
    let out = doctor_output(&lib);
    assert_eq!(layout(&out), layout(&whole));
    assert!(
        out.contains(
            "Buffer::unique_id: +0x10->+0x218:8 from constructor store in \
             `tt::tt_metal::BufferImpl::BufferImpl(tt::tt_metal::IDevice*...)`; single source"
        ),
        "{out}"
    );
    assert!(
        out.contains(
            "Buffer::size: +0x10->+0x8:8 from constructor store in \
             `tt::tt_metal::BufferImpl::BufferImpl(tt::tt_metal::IDevice*...)`; confirmed by the \
             dividend of `tt::tt_metal::Buffer::num_pages() const`"
        ),
        "{out}"
    );
}
