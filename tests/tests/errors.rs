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
    let mut bytes = std::fs::read(library("0.81.1")).unwrap();
    let from = symbol.as_bytes();
    let mut renamed = 0;
    let mut i = 0;
    while let Some(pos) = bytes[i..].windows(from.len()).position(|w| w == from) {
        let at = i + pos + from.len() - 20;
        bytes[at] = b'X';
        renamed += 1;
        i += pos + from.len();
    }
    assert!(renamed >= 1, "{symbol} not in the library");
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

/// A copy of the real library whose `AllocatorImpl::get_num_banks` is renamed: the rest still
/// works, and doctor names what failed and the fallback.
#[test]
fn library_without_the_allocator_accessor() {
    let lib = library_with_symbol_renamed(
        "_ZNK2tt8tt_metal13AllocatorImpl13get_num_banksERKNS0_10BufferTypeE",
    );
    let out = doctor_output(&lib);
    assert!(
        out.contains("allocator geometry after a mid-run attach: NOT calibrated")
            && out.contains(
                "AllocatorImpl::get_num_banks(tt::tt_metal::BufferType const&) const` not found"
            )
            && out.contains("reserved falls back to requested bytes"),
        "{out}"
    );
    assert!(out.contains("probe plan"), "{out}");
    assert!(!out.contains("AllocatorGeometry"), "{out}");
}
