// The inputs the checked-in eBPF object is built from, and their fingerprint.
//
// Shared, as a source file, by `cargo xtask ebpf` (which writes the fingerprint next to the
// object it builds) and tracer's build.rs (which refuses to embed an object whose sources have
// changed since). The byte-for-byte proof that the object is what the pinned toolchain builds
// from these sources is `cargo xtask ebpf --check`, run by CI.
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

/// The object tracer embeds, relative to the workspace root.
pub const OBJECT: &str = "tracer-ebpf/built/tracer.bpf.o";
/// Its fingerprint file.
pub const FINGERPRINT: &str = "tracer-ebpf/built/tracer.bpf.o.inputs";
/// The toolchain pin (its `channel` is the one nightly that builds the object).
pub const TOOLCHAIN_FILE: &str = "tracer-ebpf/rust-toolchain.toml";

/// Files and folders whose content shapes the object.
const SOURCES: &[&str] = &[
    "tracer-ebpf/Cargo.toml",
    "tracer-ebpf/rust-toolchain.toml",
    "tracer-ebpf/src",
    "tracer-common/Cargo.toml",
    "tracer-common/src",
];

/// The directories build.rs asks cargo to watch.
pub fn watched(root: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = SOURCES.iter().map(|s| root.join(s)).collect();
    v.push(root.join("Cargo.lock"));
    v.push(root.join(FINGERPRINT));
    v
}

/// The pinned nightly, read from the toolchain file.
pub fn pinned_toolchain(root: &Path) -> Result<String, String> {
    let path = root.join(TOOLCHAIN_FILE);
    let text = std::fs::read_to_string(&path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    text.lines()
        .filter_map(|l| l.trim().strip_prefix("channel"))
        .filter_map(|rest| rest.trim().strip_prefix('='))
        .map(|v| v.trim().trim_matches('"').to_string())
        .next()
        .ok_or_else(|| format!("no `channel = \"...\"` in {}", path.display()))
}

fn files_under(root: &Path, rel: &str, out: &mut Vec<String>) {
    let path = root.join(rel);
    if path.is_dir() {
        let mut entries: Vec<String> = std::fs::read_dir(&path)
            .map(|rd| {
                rd.filter_map(|e| e.ok())
                    .map(|e| format!("{rel}/{}", e.file_name().to_string_lossy()))
                    .collect()
            })
            .unwrap_or_default();
        entries.sort();
        for e in entries {
            files_under(root, &e, out);
        }
    } else if path.is_file() {
        out.push(rel.to_string());
    }
}

/// The `[[package]]` entries of Cargo.lock that only the eBPF side uses (`aya-ebpf*`,
/// `aya-log-ebpf*`) and the log format shared with it, so a dependency bump is noticed.
fn lock_entries(root: &Path) -> String {
    let lock = std::fs::read_to_string(root.join("Cargo.lock")).unwrap_or_default();
    lock.split("[[package]]")
        .filter(|block| {
            block.lines().any(|l| {
                let name = l
                    .strip_prefix("name = \"")
                    .and_then(|n| n.strip_suffix('"'));
                matches!(name, Some(n) if n.starts_with("aya-ebpf")
                    || n.starts_with("aya-log-ebpf")
                    || n == "aya-log-common"
                    || n == "aya-log-parser")
            })
        })
        .collect::<Vec<_>>()
        .join("[[package]]")
}

/// One line per input (`sha256  path`), the Cargo.lock entries last. Same sources, same text.
pub fn fingerprint(root: &Path) -> String {
    let mut files = Vec::new();
    for s in SOURCES {
        files_under(root, s, &mut files);
    }
    let mut out = String::new();
    for f in files {
        let bytes = std::fs::read(root.join(&f)).unwrap_or_default();
        out.push_str(&format!("{:x}  {f}\n", Sha256::digest(&bytes)));
    }
    out.push_str(&format!(
        "{:x}  Cargo.lock (eBPF dependencies)\n",
        Sha256::digest(lock_entries(root).as_bytes())
    ));
    out
}

/// The fingerprint as stored, without its comment lines.
pub fn stored_fingerprint(root: &Path) -> Option<String> {
    let text = std::fs::read_to_string(root.join(FINGERPRINT)).ok()?;
    Some(
        text.lines()
            .filter(|l| !l.starts_with('#'))
            .map(|l| format!("{l}\n"))
            .collect(),
    )
}
