//! `cargo xtask ebpf [--check]`: builds tracer-ebpf with the pinned nightly and bpf-linker into
//! the checked-in object (tracer-ebpf/built/), or proves the checked-in object is exactly what
//! they build from the current sources.
use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{bail, Context, Result};

use crate::{inputs, root, status, toolchain};

/// Builds the object into `target_dir` and returns its path.
fn build_object(target_dir: &Path) -> Result<PathBuf> {
    let root = root();
    let pin = toolchain::check()?;
    let sysroot = toolchain::output(
        Command::new("rustc")
            .arg(format!("+{pin}"))
            .args(["--print", "sysroot"]),
    )?;
    let cargo_home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cargo")
        });
    // Same flags as aya-build, plus path remapping: the object's BTF line info names source
    // files, and the object must not depend on where the checkout or the toolchain lives.
    let flags = [
        "--cfg=bpf_target_arch=\"x86_64\"".to_string(),
        "-Cdebuginfo=2".into(),
        "-Clink-arg=--btf".into(),
        format!("--remap-path-prefix={}=/tracer", root.display()),
        format!("--remap-path-prefix={}=/cargo", cargo_home.display()),
        format!("--remap-path-prefix={}=/rust", sysroot.trim()),
    ];
    let mut cmd = Command::new("rustup");
    cmd.args([
        "run",
        &pin,
        "cargo",
        "build",
        "--package",
        "tracer-ebpf",
        "--bins",
        "--release",
    ])
    .args(["--target", "bpfel-unknown-none", "-Z", "build-std=core"])
    .arg("--target-dir")
    .arg(target_dir)
    .current_dir(&root)
    .env("CARGO_ENCODED_RUSTFLAGS", flags.join("\x1f"));
    // The outer `cargo xtask` exports its own toolchain to children; the pin must win.
    for key in [
        "RUSTC",
        "RUSTC_WORKSPACE_WRAPPER",
        "RUSTUP_TOOLCHAIN",
        "CARGO",
        "RUSTFLAGS",
    ] {
        cmd.env_remove(key);
    }
    status(&mut cmd)?;
    let out = target_dir.join("bpfel-unknown-none/release/tracer");
    if !out.is_file() {
        bail!("the eBPF build finished but {} is missing", out.display());
    }
    Ok(out)
}

pub fn ebpf(check: bool) -> Result<()> {
    let root = root();
    let object = root.join(inputs::OBJECT);
    if check {
        let dir = root.join("target/ebpf-check");
        let built = build_object(&dir)?;
        let fresh =
            std::fs::read(&built).with_context(|| format!("cannot read {}", built.display()))?;
        let checked_in =
            std::fs::read(&object).with_context(|| format!("cannot read {}", object.display()))?;
        if fresh != checked_in {
            bail!(
                "{} is not what the pinned toolchain builds from the current sources \
                 ({} bytes built, {} checked in): run `cargo xtask ebpf` and commit the result",
                inputs::OBJECT,
                fresh.len(),
                checked_in.len()
            );
        }
        if inputs::stored_fingerprint(&root).as_deref() != Some(inputs::fingerprint(&root).as_str())
        {
            bail!(
                "{} is stale: run `cargo xtask ebpf` and commit the result",
                inputs::FINGERPRINT
            );
        }
        eprintln!(
            "ok: {} ({} bytes) is byte-for-byte what {} builds from the current sources",
            inputs::OBJECT,
            fresh.len(),
            toolchain::pinned()?
        );
        return Ok(());
    }
    let built = build_object(&root.join("target/ebpf"))?;
    std::fs::copy(&built, &object).with_context(|| format!("cannot write {}", object.display()))?;
    let header = format!(
        "# sha256 of the inputs of tracer.bpf.o; written by `cargo xtask ebpf`, checked by tracer/build.rs\n# built with {} and {}\n",
        toolchain::pinned()?,
        toolchain::bpf_linker_version()?
    );
    let fp = root.join(inputs::FINGERPRINT);
    std::fs::write(&fp, header + &inputs::fingerprint(&root))
        .with_context(|| format!("cannot write {}", fp.display()))?;
    eprintln!("wrote {} and {}", inputs::OBJECT, inputs::FINGERPRINT);
    Ok(())
}
