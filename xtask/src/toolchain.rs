//! The pinned eBPF toolchain: one dated nightly (tracer-ebpf/rust-toolchain.toml) whose LLVM
//! major must equal bpf-linker's, or linking fails with an unhelpful `Invalid record`.
use std::{path::PathBuf, process::Command};

use anyhow::{bail, Context, Result};

use crate::{inputs, root};

pub fn pinned() -> Result<String> {
    let pin = inputs::pinned_toolchain(&root()).map_err(anyhow::Error::msg)?;
    let dated = pin
        .strip_prefix("nightly-")
        .is_some_and(|d| d.len() == 10 && d.chars().all(|c| c.is_ascii_digit() || c == '-'));
    if !dated {
        bail!(
            "{}: channel `{pin}` is not a dated nightly (nightly-YYYY-MM-DD); an undated one \
             drifts to whatever LLVM is newest",
            inputs::TOOLCHAIN_FILE
        );
    }
    Ok(pin)
}

pub fn output(cmd: &mut Command) -> Result<String> {
    let out = cmd
        .output()
        .with_context(|| format!("cannot start {cmd:?}"))?;
    if !out.status.success() {
        bail!(
            "{cmd:?} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// LLVM major of the pinned nightly.
fn nightly_llvm_major(pin: &str) -> Result<u32> {
    let vv =
        output(Command::new("rustc").arg(format!("+{pin}")).arg("-vV")).with_context(|| {
            format!("the pinned nightly {pin} is not installed: run `cargo xtask setup --ebpf`")
        })?;
    vv.lines()
        .find_map(|l| l.strip_prefix("LLVM version: "))
        .and_then(|v| v.split('.').next()?.trim().parse().ok())
        .with_context(|| format!("`rustc +{pin} -vV` names no LLVM version"))
}

fn bpf_linker() -> Result<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|d| d.join("bpf-linker"))
        .find(|p| p.is_file())
        .context("bpf-linker is not on PATH: run `cargo xtask setup --ebpf`")
}

pub fn bpf_linker_version() -> Result<String> {
    Ok(output(Command::new(bpf_linker()?).arg("--version"))?
        .trim()
        .to_string())
}

/// The LLVM major bpf-linker was built against: the libLLVM it links (`libLLVM.so.22.1`,
/// `libLLVM-22.so`), else the `llvm-NN` feature cargo recorded when it installed it.
fn bpf_linker_llvm_major() -> Result<u32> {
    let exe = bpf_linker()?;
    let bytes = std::fs::read(&exe).with_context(|| format!("cannot read {}", exe.display()))?;
    if let Some(n) = linked_llvm_major(&bytes) {
        return Ok(n);
    }
    let home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cargo")
        });
    let installs = std::fs::read_to_string(home.join(".crates2.json")).unwrap_or_default();
    if let Some(rest) = installs.split("\"bpf-linker ").nth(1) {
        if let Some(n) = rest
            .split("\"llvm-")
            .nth(1)
            .and_then(|s| s.split('"').next()?.parse().ok())
        {
            return Ok(n);
        }
    }
    bail!(
        "cannot tell which LLVM {} was built with; reinstall it: `cargo xtask setup --ebpf`",
        exe.display()
    )
}

/// The major of the libLLVM an executable links, from its dynamic section's names.
fn linked_llvm_major(bytes: &[u8]) -> Option<u32> {
    for pat in [&b"libLLVM.so."[..], &b"libLLVM-"[..]] {
        if let Some(at) = bytes.windows(pat.len()).position(|w| w == pat) {
            let digits: String = bytes[at + pat.len()..]
                .iter()
                .take_while(|b| b.is_ascii_digit())
                .map(|&b| b as char)
                .collect();
            if let Ok(n) = digits.parse() {
                return Some(n);
            }
        }
    }
    None
}

/// The one-sentence explanation of an LLVM mismatch, with the fix.
fn mismatch(pin: &str, rustc: u32, linker: u32) -> Option<String> {
    (rustc != linker).then(|| {
        format!(
            "{pin} uses LLVM {rustc} but bpf-linker was built with LLVM {linker}: they must match \
             (fix: pin a nightly with LLVM {linker} in {}, or rebuild bpf-linker with \
             --features llvm-{rustc})",
            inputs::TOOLCHAIN_FILE
        )
    })
}

/// The pin is installed and its LLVM matches bpf-linker's; returns the pin.
pub fn check() -> Result<String> {
    let pin = pinned()?;
    let rustc = nightly_llvm_major(&pin)?;
    let linker = bpf_linker_llvm_major()?;
    if let Some(why) = mismatch(&pin, rustc, linker) {
        bail!(why);
    }
    Ok(pin)
}

/// CI's drift check: setup installs and uses exactly the pin, nothing in the project names an
/// undated nightly, and the pin's LLVM equals bpf-linker's.
pub fn drift() -> Result<()> {
    let pin = check()?;
    let setup = output(
        Command::new("bash")
            .arg(root().join("scripts/setup.sh"))
            .arg("--print-toolchain"),
    )?;
    if setup.trim() != pin {
        bail!(
            "scripts/setup.sh would install `{}`, the pin is `{pin}`",
            setup.trim()
        );
    }
    let mut offenders = Vec::new();
    for dir in [
        "scripts",
        "xtask/src",
        "tracer/build.rs",
        ".ci",
        "tests/src",
        "tests/tests",
    ] {
        scan(&root().join(dir), &mut offenders);
    }
    if !offenders.is_empty() {
        bail!(
            "an undated nightly is named outside {}: {}",
            inputs::TOOLCHAIN_FILE,
            offenders.join(", ")
        );
    }
    let active = output(Command::new("rustup").args(["toolchain", "list"]))?;
    eprintln!(
        "ok: eBPF toolchain pinned to {pin} (LLVM {}) = bpf-linker's LLVM; setup installs the pin; \
         installed toolchains: {}",
        nightly_llvm_major(&pin)?,
        active.split_whitespace().filter(|t| t.contains("nightly")).collect::<Vec<_>>().join(" ")
    );
    Ok(())
}

/// Files that name `+nightly`, `install nightly` or `Toolchain::default()` (aya-build's "+nightly").
fn scan(path: &std::path::Path, out: &mut Vec<String>) {
    if path.is_dir() {
        for e in std::fs::read_dir(path).into_iter().flatten().flatten() {
            scan(&e.path(), out);
        }
        return;
    }
    // The checker itself lists the patterns.
    if path.ends_with("xtask/src/toolchain.rs") {
        return;
    }
    let Ok(text) = std::fs::read_to_string(path) else {
        return;
    };
    let undated = [
        "+nightly ",
        "+nightly\"",
        "install nightly ",
        "Toolchain::default()",
    ];
    for (n, line) in text.lines().enumerate() {
        if undated.iter().any(|p| line.contains(p)) {
            out.push(format!("{}:{}", path.display(), n + 1));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn llvm_major_from_the_linked_library_name() {
        assert_eq!(
            linked_llvm_major(b"\0libc.so.6\0libLLVM.so.22.1\0"),
            Some(22)
        );
        assert_eq!(linked_llvm_major(b"\0libLLVM-23.so\0"), Some(23));
        assert_eq!(linked_llvm_major(b"statically linked"), None);
    }

    #[test]
    fn a_mismatch_is_one_sentence_with_the_fix() {
        assert_eq!(mismatch("nightly-2026-05-20", 22, 22), None);
        let why = mismatch("nightly-2026-11-30", 23, 22).unwrap();
        assert!(why.contains("LLVM 23") && why.contains("LLVM 22"), "{why}");
        assert!(
            why.contains("fix:") && why.contains("rust-toolchain.toml"),
            "{why}"
        );
    }

    #[test]
    fn the_drift_scan_finds_an_undated_nightly() {
        let dir = std::env::temp_dir().join(format!("xtask-scan-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("ok.sh"), "rustup toolchain install \"$NIGHTLY\"\n").unwrap();
        let mut found = Vec::new();
        scan(&dir, &mut found);
        assert!(found.is_empty(), "{found:?}");
        std::fs::write(
            dir.join("bad.sh"),
            "x\nrustup toolchain install nightly --profile minimal\n",
        )
        .unwrap();
        scan(&dir, &mut found);
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(found[0].ends_with("bad.sh:2"), "{found:?}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_pin_is_a_dated_nightly() {
        let pin = pinned().unwrap();
        assert!(pin.starts_with("nightly-20"), "{pin}");
    }
}
