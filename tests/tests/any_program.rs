//! The runtime library is found the way the dynamic loader finds it, for programs whose command
//! line names no ttnn package: a native program linked against libtt_metal.so (through its
//! RUNPATH, or LD_LIBRARY_PATH alone), and a Python whose ttnn is a source build (the package
//! in <tree>/ttnn/ttnn, the library in <tree>/build/lib, tied by the extension module's
//! RUNPATH). Each runs the seed scenario under `tracer run` without --lib and must be exact on
//! all 8 chips.
use std::{
    ffi::OsString,
    path::{Path, PathBuf},
    process::Command,
};

use tracer_tests::*;

const ERA: &str = "0.81.1";

/// The wheel's ttnn/build/lib (libtt_metal.so and its siblings).
fn wheel_lib_dir() -> PathBuf {
    library(ERA).parent().unwrap().to_path_buf()
}

/// The wheel's `ttnn` package directory.
fn wheel_package() -> PathBuf {
    wheel_lib_dir()
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .to_path_buf()
}

fn run_ok(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `python3.X-config --embed` beside the base interpreter of the venv's Python.
fn python_config(flag: &str) -> Vec<String> {
    let info = run_ok(Command::new(python(ERA)).args([
        "-c",
        "import sys, sysconfig; print(sys.base_prefix); print(sysconfig.get_config_var('VERSION'))",
    ]));
    let mut lines = info.lines();
    let (base, version) = (lines.next().unwrap(), lines.next().unwrap());
    let config = Path::new(base).join(format!("bin/python{version}-config"));
    run_ok(Command::new(&config).args(["--embed", flag]))
        .split_whitespace()
        .map(String::from)
        .collect()
}

/// Builds tests/programs/embed_python.c into `out`, NEEDED libtt_metal.so kept (no
/// --as-needed: the program calls nothing in it), with `extra` linker arguments.
fn build_native(out: &Path, extra: &[&str]) {
    let source = root().join("tests/programs/embed_python.c");
    run_ok(
        Command::new("cc")
            .args(python_config("--cflags"))
            .arg(&source)
            .arg("-o")
            .arg(out)
            .args(python_config("--ldflags"))
            .arg("-Wl,--no-as-needed")
            .arg(format!("-L{}", wheel_lib_dir().display()))
            .arg("-ltt_metal")
            .args(extra),
    );
}

/// `readelf -d` of a file: its NEEDED, RPATH and RUNPATH lines.
fn dynamic_section(file: &Path) -> String {
    run_ok(Command::new("readelf").arg("-d").arg(file))
}

/// `tracer run --summary-json S -- argv` from `cwd` with `env`, ground truth to a file.
fn trace_command(cwd: &Path, argv: &[OsString], env: &[(&str, OsString)]) -> Traced {
    let dir = tempdir();
    let summary = dir.join("summary.json");
    let truth = dir.join("truth.json");
    let output = tracer()
        .current_dir(cwd)
        .args(["run", "--summary-json"])
        .arg(&summary)
        .arg("--")
        .args(argv)
        .env("TRACER_GROUND_TRUTH", &truth)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .output()
        .unwrap();
    let text = std::fs::read_to_string(&summary).unwrap_or_else(|_| {
        panic!(
            "no summary written; stderr:\n{}",
            String::from_utf8_lossy(&output.stderr)
        )
    });
    let truth = std::fs::read_to_string(&truth)
        .ok()
        .map(|t| serde_json::from_str(&t).unwrap());
    let _ = std::fs::remove_dir_all(&dir);
    Traced {
        output,
        summary: serde_json::from_str(&text).unwrap(),
        truth,
    }
}

/// The seed scenario's ledger is exact on every chip (the checks of real_runtime.rs), and the
/// library was found before the command started (not caught when it loaded), as `library`.
fn check_seed(t: &Traced, library: &Path, what: &str) {
    let stderr = t.stderr();
    assert!(t.output.status.success(), "{what}: {stderr}");
    assert!(
        !stderr.contains("could not find"),
        "{what}: not found up front:\n{stderr}"
    );
    assert_eq!(
        t.summary["runtime"]["library"].as_str().map(PathBuf::from),
        Some(library.to_path_buf()),
        "{what}: probed library"
    );
    let truth = t.truth.as_ref().expect("ground truth");
    assert_eq!(sorted_chips(truth).len(), 8, "{what}: {truth}");
    check_seed_scenario_ledger(t, what);
    let p = t.process("seed_scenario.py");
    assert_eq!(p["exit_code"], 0, "{what}");
}

/// `tracer doctor -- argv`: its stdout.
fn doctor(cwd: &Path, argv: &[OsString], env: &[(&str, OsString)]) -> String {
    let out = tracer()
        .current_dir(cwd)
        .args(["doctor", "--"])
        .args(argv)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A native program with NEEDED libtt_metal.so and a RUNPATH `$ORIGIN/../lib` (its lib/ is
/// the wheel's), run as `./native seed_scenario.py` from its own directory.
#[test]
fn native_program_with_runpath_is_traced_without_lib() {
    let dir = tempdir();
    std::fs::create_dir_all(dir.join("app/bin")).unwrap();
    std::os::unix::fs::symlink(wheel_lib_dir(), dir.join("app/lib")).unwrap();
    let bin = dir.join("app/bin");
    build_native(
        &bin.join("native"),
        &["-Wl,--enable-new-dtags", "-Wl,-rpath,$ORIGIN/../lib"],
    );
    let d = dynamic_section(&bin.join("native"));
    assert!(d.contains("Shared library: [libtt_metal.so]"), "{d}");
    let runpath = d
        .lines()
        .find(|l| l.contains("(RUNPATH)"))
        .unwrap_or_else(|| panic!("no RUNPATH: {d}"));
    assert!(runpath.contains("$ORIGIN/../lib"), "{runpath}");
    assert!(!d.contains("(RPATH)"), "{d}");

    let env = [("EMBED_PYTHON", python(ERA).into_os_string())];
    let argv: Vec<OsString> = vec!["./native".into(), workload("seed_scenario.py").into()];
    let report = doctor(&bin, &argv, &env);
    assert!(
        report.contains("./native: NEEDED libtt_metal.so via RUNPATH $ORIGIN/../lib (= "),
        "{report}"
    );
    let library = std::fs::canonicalize(library(ERA)).unwrap();
    assert!(
        report.contains(&format!("Runtime library: {}", library.display())),
        "{report}"
    );
    let t = trace_command(&bin, &argv, &env);
    check_seed(&t, &library, "native, RUNPATH");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The same program linked with no path to the runtime: only LD_LIBRARY_PATH in the child's
/// environment leads to it.
#[test]
fn native_program_found_through_ld_library_path_only() {
    let dir = tempdir();
    let native = dir.join("native");
    build_native(&native, &[]);
    let d = dynamic_section(&native);
    assert!(d.contains("Shared library: [libtt_metal.so]"), "{d}");
    let lib_dir = wheel_lib_dir();
    for l in d.lines().filter(|l| l.contains("PATH)")) {
        assert!(
            !l.contains(&*lib_dir.to_string_lossy()) && !l.contains("$ORIGIN"),
            "{l}"
        );
    }
    // Without it the program does not even start.
    let alone = Command::new(&native).args(["-c", "pass"]).output().unwrap();
    assert!(!alone.status.success());
    assert!(
        String::from_utf8_lossy(&alone.stderr).contains("libtt_metal.so"),
        "{alone:?}"
    );

    let argv: Vec<OsString> = vec![native.clone().into(), workload("seed_scenario.py").into()];
    // Without it tracer says what it followed.
    let report = doctor(&scratch_dir(), &argv, &[]);
    assert!(
        report.contains("NEEDED libtt_metal.so not found (searched "),
        "{report}"
    );
    let env = [
        ("EMBED_PYTHON", python(ERA).into_os_string()),
        (
            "LD_LIBRARY_PATH",
            format!("/nonexistent:{}", lib_dir.display()).into(),
        ),
    ];
    let report = doctor(&scratch_dir(), &argv, &env);
    assert!(
        report.contains("NEEDED libtt_metal.so via LD_LIBRARY_PATH (= "),
        "{report}"
    );
    let t = trace_command(&scratch_dir(), &argv, &env);
    let library = std::fs::canonicalize(library(ERA)).unwrap();
    check_seed(&t, &library, "native, LD_LIBRARY_PATH");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Hard-links `from` to `to`, copying where a link cannot be made (another file system).
fn link_or_copy(from: &Path, to: &Path) {
    if std::fs::hard_link(from, to).is_err() {
        std::fs::copy(from, to).unwrap_or_else(|e| panic!("copy {}: {e}", from.display()));
    }
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap().flatten() {
        let (src, dst) = (e.path(), to.join(e.file_name()));
        let kind = e.file_type().unwrap();
        if kind.is_dir() {
            copy_tree(&src, &dst);
        } else if kind.is_symlink() {
            std::os::unix::fs::symlink(std::fs::read_link(&src).unwrap(), &dst).unwrap();
        } else {
            std::fs::copy(&src, &dst).unwrap();
        }
    }
}

/// The wheel rearranged as a source build lays it out:
///   <tree>/ttnn/ttnn      the Python package (copied: ttnn tells an editable install by the
///                         real path of its files, then takes <tree> as its root)
///   <tree>/build/lib      libtt_metal.so (a copy, its own inode: the probes fire only if this
///                         copy is what the workload loads) and its siblings
///   <tree>/tt_metal, <tree>/runtime   the runtime's data, where a checkout has it
/// The extension module gets `$ORIGIN/../../build/lib:$ORIGIN`, as a source build has it.
fn source_build(dir: &Path) -> PathBuf {
    let tree = dir.join("tree");
    let wheel = wheel_package();
    let package = tree.join("ttnn/ttnn");
    std::fs::create_dir_all(&package).unwrap();
    for e in std::fs::read_dir(&wheel).unwrap().flatten() {
        let name = e.file_name();
        if ["build", "tt_metal", "runtime"].contains(&&*name.to_string_lossy()) {
            continue;
        }
        if e.file_type().unwrap().is_dir() {
            copy_tree(&e.path(), &package.join(&name));
        } else {
            std::fs::copy(e.path(), package.join(&name)).unwrap();
        }
    }
    let lib = tree.join("build/lib");
    std::fs::create_dir_all(&lib).unwrap();
    for e in std::fs::read_dir(wheel_lib_dir()).unwrap().flatten() {
        if e.file_name() == "libtt_metal.so" {
            std::fs::copy(e.path(), lib.join(e.file_name())).unwrap();
        } else {
            link_or_copy(&e.path(), &lib.join(e.file_name()));
        }
    }
    // The wheel's libraries reach its bundled MPI at $ORIGIN/../../../ttnn.libs: beside the
    // tree here.
    let bundled = wheel.parent().unwrap().join("ttnn.libs");
    if bundled.is_dir() {
        std::fs::create_dir_all(dir.join("ttnn.libs")).unwrap();
        for e in std::fs::read_dir(&bundled).unwrap().flatten() {
            link_or_copy(&e.path(), &dir.join("ttnn.libs").join(e.file_name()));
        }
    }
    for data in ["tt_metal", "runtime"] {
        std::os::unix::fs::symlink(wheel.join(data), tree.join(data)).unwrap();
    }
    let modules: Vec<PathBuf> = std::fs::read_dir(&package)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            name.starts_with("_ttnn") && name.ends_with(".so")
        })
        .collect();
    assert!(
        !modules.is_empty(),
        "no extension module in {}",
        wheel.display()
    );
    for m in &modules {
        run_ok(
            Command::new("patchelf")
                .args(["--set-rpath", "$ORIGIN/../../build/lib:$ORIGIN"])
                .arg(m),
        );
        let d = dynamic_section(m);
        assert!(d.contains("[$ORIGIN/../../build/lib:$ORIGIN]"), "{d}");
    }
    tree
}

#[test]
fn source_build_layout_runs_the_seed_scenario_without_lib() {
    let dir = tempdir();
    let tree = source_build(&dir);
    let env = [("PYTHONPATH", tree.join("ttnn").into_os_string())];
    // The layout is real: ttnn imports from the tree and maps the tree's library.
    let loaded = run_ok(
        mock(&mut Command::new(python(ERA)))
            .args([
                "-c",
                "import ttnn; print(ttnn.__file__); \
                 print([l.split()[-1] for l in open('/proc/self/maps') if 'libtt_metal' in l][0])",
            ])
            .envs(env.iter().map(|(k, v)| (k, v))),
    );
    let library = std::fs::canonicalize(tree.join("build/lib/libtt_metal.so")).unwrap();
    let mut lines = loaded.lines().filter(|l| l.starts_with('/'));
    let init = lines.next().unwrap_or_default();
    assert!(
        Path::new(init).starts_with(tree.join("ttnn/ttnn")),
        "{loaded}"
    );
    assert_eq!(
        lines.next().map(PathBuf::from),
        Some(library.clone()),
        "{loaded}"
    );

    let argv: Vec<OsString> = vec![python(ERA).into(), workload("seed_scenario.py").into()];
    let report = doctor(&scratch_dir(), &argv, &env);
    assert!(
        report.contains("NEEDED libtt_metal.so via RUNPATH $ORIGIN/../../build/lib (= "),
        "{report}"
    );
    assert!(
        report.contains(&format!("Runtime library: {}", library.display())),
        "{report}"
    );
    let t = trace_command(&scratch_dir(), &argv, &env);
    check_seed(&t, &library, "source build");
    std::fs::remove_dir_all(&dir).unwrap();
}
