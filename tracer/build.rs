//! tracer embeds the eBPF object checked in at tracer-ebpf/built/, so building tracer needs
//! only stable Rust. This script refuses an object whose sources changed since it was built:
//! `cargo xtask ebpf` rebuilds it with the pinned nightly and bpf-linker.
#[path = "../tracer-ebpf/inputs.rs"]
#[allow(dead_code)] // the toolchain helpers are xtask's
mod inputs;

fn main() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    for p in inputs::watched(&root) {
        println!("cargo:rerun-if-changed={}", p.display());
    }
    let current = inputs::fingerprint(&root);
    match inputs::stored_fingerprint(&root) {
        Some(stored) if stored == current => {}
        Some(_) => {
            eprintln!(
                "error: the eBPF sources (tracer-ebpf/, tracer-common/) changed since {} was \
                 built.\n       Rebuild it with the pinned toolchain: cargo xtask ebpf",
                inputs::OBJECT
            );
            std::process::exit(1);
        }
        None => {
            eprintln!(
                "error: {} is missing. Build the eBPF object: cargo xtask ebpf",
                inputs::FINGERPRINT
            );
            std::process::exit(1);
        }
    }
}
