//! Project tasks: `cargo xtask demo | test | bench | setup | ebpf`.
//!
//! Each task first runs `scripts/setup.sh` (installs what is missing, says what it does), then
//! builds tracer in release mode and runs against the real tt-metal runtime on the bundled
//! 8-chip mock mesh.
mod ebpf;
#[path = "../../tracer-ebpf/inputs.rs"]
#[allow(dead_code)] // `watched` is build.rs's
mod inputs;
mod layers;
mod toolchain;

use std::{
    path::{Path, PathBuf},
    process::{Command, ExitCode},
};

use anyhow::{bail, Context, Result};

pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn venv_root() -> PathBuf {
    std::env::var_os("TRACER_VENV_ROOT")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_else(|| "/root".into()))
                .join(".cache/tracer/venvs")
        })
}

pub fn python(era: &str) -> PathBuf {
    venv_root().join(format!("ttnn-{era}")).join("bin/python")
}

pub fn status(cmd: &mut Command) -> Result<()> {
    eprintln!("\x1b[1m==> {cmd:?}\x1b[0m");
    let st = cmd
        .status()
        .with_context(|| format!("cannot start {cmd:?}"))?;
    if !st.success() {
        bail!("{cmd:?} failed: {st}");
    }
    Ok(())
}

/// The environment that makes the real runtime open the bundled mock mesh.
fn mock_env(cmd: &mut Command) -> &mut Command {
    cmd.env(
        "TT_METAL_MOCK_CLUSTER_DESC_PATH",
        root().join("fixtures/tt-cluster/blackhole_8xP150.yaml"),
    )
    .env("ARCH_NAME", "blackhole")
    .env("TRACER_VENV_ROOT", venv_root())
    .env("TT_METAL_LOGGER_LEVEL", "ERROR")
}

/// `flag`: "" (what running tracer needs), "--ebpf" or "--all" (see scripts/setup.sh).
fn setup(flag: &str) -> Result<()> {
    let mut cmd = Command::new("bash");
    cmd.arg(root().join("scripts/setup.sh"));
    if !flag.is_empty() {
        cmd.arg(flag);
    }
    status(&mut cmd)
}

fn build() -> Result<()> {
    status(
        Command::new("cargo")
            .current_dir(root())
            .args(["build", "--release", "-p", "tracer"]),
    )
}

/// Builds tracer the way a user does: stable Rust alone and no bpf-linker reachable, so the
/// eBPF object is the checked-in one. This is CI's build of tracer (the tests run this
/// binary), so it costs no second build. Cargo is the stable toolchain's own binary, not
/// rustup's proxy (which puts $CARGO_HOME/bin, and so the usual bpf-linker, on PATH), and PATH
/// holds the toolchain's directory and the system's, minus any that has a bpf-linker. Then the
/// binary must embed exactly that object and pass doctor's self-test of the programs.
fn stable_only_build() -> Result<()> {
    let mut which = Command::new("rustup");
    which
        .args(["which", "cargo"])
        .env_remove("RUSTUP_TOOLCHAIN")
        .current_dir(root());
    let cargo = PathBuf::from(toolchain::output(&mut which)?.trim());
    let toolchain_bin = cargo.parent().context("cargo's directory")?.to_path_buf();
    let path = path_for_user(&toolchain_bin)?;
    let env = |c: &mut Command| {
        c.current_dir(root())
            .env("PATH", &path)
            .env_remove("RUSTUP_TOOLCHAIN")
            .env_remove("RUSTC")
            .env_remove("CARGO");
    };
    let mut vv = Command::new(toolchain_bin.join("rustc"));
    env(&mut vv);
    let rustc = toolchain::output(vv.arg("-vV"))?;
    let release = rustc
        .lines()
        .find_map(|l| l.strip_prefix("release: "))
        .unwrap_or("?");
    if release.contains("nightly") {
        bail!("the user build must use stable Rust, not {release} (the default toolchain)");
    }
    let mut reach = Command::new("sh");
    env(&mut reach);
    if reach
        .args(["-c", "command -v bpf-linker || command -v rustup"])
        .output()?
        .status
        .success()
    {
        bail!("bpf-linker (or a rustup proxy) is still reachable for the stable-only build");
    }
    eprintln!(
        "\x1b[1m==> stable-only build: rustc {release}, no bpf-linker or rustup on PATH\x1b[0m"
    );
    let mut build = Command::new(&cargo);
    env(&mut build);
    status(build.args(["build", "--release", "-p", "tracer"]))?;
    let target = root().join("target");
    let binary_path = target.join("release/tracer");
    let object = std::fs::read(root().join(inputs::OBJECT))?;
    let binary = std::fs::read(&binary_path)?;
    let head = &object[..64];
    let embedded = binary
        .windows(head.len())
        .enumerate()
        .filter(|(_, w)| *w == head)
        .any(|(at, _)| binary.get(at..at + object.len()) == Some(&object[..]));
    if !embedded {
        bail!(
            "{} does not embed {}",
            binary_path.display(),
            inputs::OBJECT
        );
    }
    let ttnn = toolchain::output(Command::new(python("0.81.1")).args([
        "-c",
        "import importlib.util as u; print(u.find_spec('ttnn').submodule_search_locations[0])",
    ]))?;
    let lib = Path::new(ttnn.trim()).join("build/lib/libtt_metal.so");
    let out = toolchain::output(
        Command::new(&binary_path)
            .arg("doctor")
            .arg("--lib")
            .arg(lib),
    )?;
    if !out.contains("Self-test") || out.contains("FAIL") {
        bail!("the stable-only binary's doctor failed:\n{out}");
    }
    eprintln!(
        "ok: the stable-only binary embeds {} and its self-test passes",
        inputs::OBJECT
    );
    Ok(())
}

/// PATH for a user build: the toolchain's own directory first, then the directories of PATH
/// that hold neither bpf-linker nor rustup's proxies.
fn path_for_user(toolchain_bin: &Path) -> Result<std::ffi::OsString> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let mut dirs = vec![toolchain_bin.to_path_buf()];
    for dir in std::env::split_paths(&path) {
        if !dir.join("bpf-linker").exists() && !dir.join("rustup").exists() {
            dirs.push(dir);
        }
    }
    Ok(std::env::join_paths(dirs)?)
}

fn tracer() -> PathBuf {
    root().join("target/release/tracer")
}

fn demo() -> Result<()> {
    setup("")?;
    build()?;
    eprintln!(
        "\x1b[1m==> tracer run on a small real model (8-chip mock mesh, real tt-metal and real ops)\x1b[0m"
    );
    // tt-metal writes generated/fabric/*.yaml into its working directory: not the checkout.
    let workdir = std::env::temp_dir().join("tracer-demo");
    std::fs::create_dir_all(&workdir)?;
    let summary = root().join("target/demo-summary.json");
    status(
        mock_env(&mut Command::new(tracer()))
            .current_dir(&workdir)
            // Kernels the compiler stand-in builds (they compute nothing).
            .env("TT_METAL_CACHE", workdir.join("kernels"))
            .arg("run")
            .arg("--summary-json")
            .arg(&summary)
            .arg("--")
            .arg(python("0.81.1"))
            .arg(root().join("workloads/real_model.py"))
            .args(["--ops", "8"]),
    )?;
    eprintln!("summary JSON: {}", summary.display());
    Ok(())
}

fn test() -> Result<()> {
    setup("--all")?;
    eprintln!("\x1b[1m==> the eBPF toolchain is pinned and matches bpf-linker\x1b[0m");
    toolchain::drift()?;
    eprintln!("\x1b[1m==> the embedded eBPF object is what the pinned toolchain builds\x1b[0m");
    ebpf::ebpf(true)?;
    eprintln!("\x1b[1m==> the stages import one way only\x1b[0m");
    layers::check(&root().join("tracer/src"))?;
    stable_only_build()?;
    status(
        Command::new("cargo")
            .current_dir(root())
            .args(["fmt", "--all", "--check"]),
    )?;
    status(Command::new("cargo").current_dir(root()).args([
        "clippy",
        "--release",
        "-p",
        "tracer",
        "-p",
        "tracer-common",
        "-p",
        "xtask",
        "-p",
        "tracer-tests",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ]))?;
    status(
        mock_env(&mut Command::new("cargo"))
            .current_dir(root())
            .args([
                "test",
                "--release",
                "-p",
                "tracer",
                "-p",
                "tracer-common",
                "-p",
                "xtask",
                "-p",
                "tracer-tests",
            ])
            .args(["--", "--test-threads=1"]),
    )
}

/// The benchmark lives in the tests crate (tests/src/bin/bench/), not in the shipped binary;
/// it measures the library and runs the built tracer. `--ttnn VERSION` picks the release
/// (default 0.81.1; 0.75.0 is the older layout era, whose frees read no user memory).
fn bench(args: &[String]) -> Result<()> {
    let mut args = args.to_vec();
    let mut era = "0.81.1".to_string();
    if let Some(i) = args.iter().position(|a| a == "--ttnn") {
        era = args
            .get(i + 1)
            .cloned()
            .context("--ttnn needs a version, e.g. --ttnn 0.75.0")?;
        args.drain(i..i + 2);
    }
    setup(if era == "0.81.1" { "" } else { "--releases" })?;
    build()?;
    status(
        mock_env(&mut Command::new("cargo"))
            .current_dir(root())
            .args([
                "run",
                "--quiet",
                "--release",
                "-p",
                "tracer-tests",
                "--bin",
                "bench",
                "--",
            ])
            .arg("--python")
            .arg(python(&era))
            .args(args),
    )
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let r = match args.first().map(String::as_str) {
        Some("demo") => demo(),
        Some("test") => test(),
        Some("bench") => bench(&args[1..]),
        Some("layers") => layers::check(&root().join("tracer/src")),
        Some("setup") => setup(args.get(1).map_or("", String::as_str)),
        Some("ebpf") => {
            setup("--ebpf").and_then(|()| ebpf::ebpf(args.iter().any(|a| a == "--check")))
        }
        Some("toolchain-check") => toolchain::drift(),
        Some("stable-build") => stable_only_build(),
        _ => {
            eprintln!(
                "usage: cargo xtask demo | test | bench [ARGS] | setup [--ebpf|--all] | ebpf [--check] | toolchain-check | stable-build | layers"
            );
            return ExitCode::from(2);
        }
    };
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: {e:#}");
            ExitCode::FAILURE
        }
    }
}
