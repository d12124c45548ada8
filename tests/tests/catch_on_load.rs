//! Programs that load the runtime from a path nothing on their command line names: tracer
//! finds nothing up front, stops the process when the dynamic linker maps libtt_metal.so,
//! probes that file and lets it go on. Exact from the first allocation.
use std::{path::Path, process::Command};

use tracer_tests::*;

const ERA: &str = "0.81.1";

fn python_value(expr: &str) -> String {
    let out = Command::new(python(ERA))
        .args(["-c", &format!("import sys, sysconfig; print({expr})")])
        .output()
        .unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// Every chip of the mesh, from its first allocation: counts and bytes equal what the
/// workload did and what `get_memory_view` said.
fn check_exact_from_the_start(p: &Value, truth: &Value) {
    let devs = devices(p);
    assert_eq!(
        devs.keys().copied().collect::<Vec<_>>(),
        sorted_chips(truth)
    );
    assert_eq!(devs.len(), 8, "{p}");
    for (chip, d) in &devs {
        assert_eq!(d["allocations"], truth["allocations"], "chip {chip}");
        assert_eq!(d["deallocations"], truth["deallocations"], "chip {chip}");
        for ty in ["DRAM", "L1"] {
            assert_eq!(
                d["live"]["reserved"][ty], truth["memory_view_at_end"][ty],
                "chip {chip}: live reserved {ty} == get_memory_view"
            );
            assert_eq!(
                d["peak"]["reserved"][ty], truth["memory_view_max"][ty],
                "chip {chip}: peak reserved {ty}"
            );
        }
    }
}

fn run_traced(cmd: &[&std::ffi::OsStr], summary: &Path, truth: &Path) -> (String, Value, Value) {
    let out = tracer()
        .args(["run", "--quiet", "--summary-json"])
        .arg(summary)
        .arg("--")
        .args(cmd)
        .env("TRACER_GROUND_TRUTH", truth)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let summary = serde_json::from_str(&std::fs::read_to_string(summary).unwrap()).unwrap();
    let truth = serde_json::from_str(&std::fs::read_to_string(truth).unwrap()).unwrap();
    (stderr, summary, truth)
}

fn only_process(summary: &Value) -> &Value {
    let procs = summary["processes"].as_array().unwrap();
    let with_devices: Vec<_> = procs
        .iter()
        .filter(|p| !p["devices"].as_array().unwrap().is_empty())
        .collect();
    assert_eq!(with_devices.len(), 1, "{summary}");
    with_devices[0]
}

#[test]
fn native_program_embedding_python_is_traced_from_the_first_allocation() {
    let dir = tempdir();
    let base = python_value("sys.base_prefix");
    let version = python_value("sysconfig.get_python_version()");
    let site = python_value("sysconfig.get_paths()['purelib']");
    let config = Path::new(&base).join(format!("bin/python{version}-config"));
    let flags = Command::new(&config)
        .args(["--cflags", "--ldflags", "--embed"])
        .output()
        .unwrap();
    assert!(flags.status.success(), "{}", config.display());
    let flags = String::from_utf8(flags.stdout).unwrap();
    let exe = dir.join("embed_venv_in_code");
    let cc = Command::new("cc")
        .arg(root().join("tests/programs/embed_venv_in_code.c"))
        .arg(format!("-DVENV_SITE=\"{site}\""))
        .arg(format!("-DPYTHON_HOME=\"{base}\""))
        .args(flags.split_whitespace())
        .arg("-o")
        .arg(&exe)
        .output()
        .unwrap();
    assert!(
        cc.status.success(),
        "{}",
        String::from_utf8_lossy(&cc.stderr)
    );
    let script = workload("seed_scenario.py");
    let (stderr, summary, truth) = run_traced(
        &[
            exe.as_os_str(),
            script.as_os_str(),
            "--leave".as_ref(),
            "3".as_ref(),
            "--exit-open".as_ref(),
        ],
        &dir.join("summary.json"),
        &dir.join("truth.json"),
    );
    // Nothing named the library: it was caught when the program loaded it.
    assert!(
        stderr.contains("watching the command for the moment it loads"),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!("loaded {}", library(ERA).display())),
        "{stderr}"
    );
    check_exact_from_the_start(only_process(&summary), &truth);
}

#[test]
fn library_loaded_from_a_copy_is_the_one_traced() {
    let dir = tempdir();
    // The copy: libtt_metal.so itself copied, its sibling libraries and the wheel's bundled
    // ones linked where its RPATH ($ORIGIN, $ORIGIN/../../../ttnn.libs) looks.
    let copy = dir.join("elsewhere/build/lib");
    std::fs::create_dir_all(&copy).unwrap();
    let original = library(ERA);
    let bundled = original.parent().unwrap().join("../../../ttnn.libs");
    std::os::unix::fs::symlink(
        std::fs::canonicalize(bundled).unwrap(),
        dir.join("ttnn.libs"),
    )
    .unwrap();
    for entry in std::fs::read_dir(original.parent().unwrap()).unwrap() {
        let path = entry.unwrap().path();
        let target = copy.join(path.file_name().unwrap());
        if path == original {
            std::fs::copy(&path, &target).unwrap();
        } else {
            std::os::unix::fs::symlink(&path, &target).unwrap();
        }
    }
    let copied = std::fs::canonicalize(copy.join("libtt_metal.so")).unwrap();
    let script = workload("seed_scenario.py");
    let py = python(ERA);
    let preload = workload("preload_copy.py");
    let (stderr, summary, truth) = run_traced(
        &[
            py.as_os_str(),
            preload.as_os_str(),
            copy.as_os_str(),
            script.as_os_str(),
            "--leave".as_ref(),
            "2".as_ref(),
            "--exit-open".as_ref(),
        ],
        &dir.join("summary.json"),
        &dir.join("truth.json"),
    );
    // The command's own ttnn package was probed up front, but the process mapped the copy.
    assert!(
        stderr.contains(&format!("loaded {}: probed", copied.display())),
        "{stderr}"
    );
    let p = only_process(&summary);
    check_exact_from_the_start(p, &truth);
    assert_eq!(p["library"], copied.display().to_string(), "{p}");
}
