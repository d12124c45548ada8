//! `tracer doctor`: can this machine trace, and what would tracer do with this library?
use std::path::PathBuf;

use anyhow::{bail, Result};

use crate::{
    plan,
    runtime::{calibrate::pretty, discover},
};

struct Check {
    ok: bool,
    what: String,
    remedy: String,
}

/// What tracer uses from the kernel, with the release that brought it.
const KERNEL_FEATURES: &[(u32, u32, &str)] = &[
    (
        4,
        17,
        "uprobes through perf_event_open's uprobe PMU, raw tracepoints (no tracefs needed)",
    ),
    (5, 5, "bpf_probe_read_user"),
    (5, 8, "BPF ring buffer"),
    (
        5,
        15,
        "BPF attach cookies on uprobes (one program for every probed function)",
    ),
];

/// (major, minor) of a kernel release string such as `6.1.0-18-amd64`.
fn kernel_version(release: &str) -> Option<(u32, u32)> {
    let mut parts = release.split(|c: char| !c.is_ascii_digit());
    Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?))
}

fn checks() -> Vec<Check> {
    let mut v = Vec::new();
    let root = nix::unistd::geteuid().is_root();
    v.push(Check {
        ok: root,
        what: "running as root".into(),
        remedy: "run tracer with sudo: loading eBPF and attaching uprobes needs CAP_BPF + CAP_PERFMON (root)".into(),
    });
    let uprobe_pmu = std::path::Path::new("/sys/bus/event_source/devices/uprobe/type").exists();
    v.push(Check {
        ok: uprobe_pmu,
        what: "kernel uprobe PMU (/sys/bus/event_source/devices/uprobe)".into(),
        remedy: "use a kernel built with CONFIG_UPROBE_EVENTS=y (4.17 or newer)".into(),
    });
    let btf = std::path::Path::new(crate::probe::task_layout::VMLINUX_BTF).exists();
    v.push(Check {
        ok: btf,
        what: "kernel BTF (/sys/kernel/btf/vmlinux: where task_struct keeps a process id)".into(),
        remedy: "use a kernel built with CONFIG_DEBUG_INFO_BTF=y (the default of most distributions since 5.4)".into(),
    });
    let release = nix::sys::utsname::uname()
        .map(|u| u.release().to_string_lossy().into_owned())
        .unwrap_or_default();
    let have = kernel_version(&release);
    for (major, minor, feature) in KERNEL_FEATURES {
        let ok = have.is_some_and(|v| v >= (*major, *minor));
        v.push(Check {
            ok,
            what: format!("kernel {release} >= {major}.{minor}: {feature}"),
            remedy: format!(
                "upgrade to Linux {major}.{minor} or newer (a distribution kernel with the feature \
                 backported also works: the self-test below is what counts)"
            ),
        });
    }
    let unpriv =
        std::fs::read_to_string("/proc/sys/kernel/unprivileged_bpf_disabled").unwrap_or_default();
    v.push(Check {
        ok: true,
        what: format!("kernel.unprivileged_bpf_disabled = {}", unpriv.trim()),
        remedy: String::new(),
    });
    v
}

/// `cmd`: the command whose runtime library to find (as `tracer run -- CMD` would) and
/// calibrate; empty for the runtime of this environment.
pub fn doctor(lib: Option<PathBuf>, pid: Option<u32>, cmd: Vec<String>) -> Result<i32> {
    let mut failed = 0;
    println!("System:");
    let root = nix::unistd::geteuid().is_root();
    for c in checks() {
        println!("  [{}] {}", if c.ok { " ok " } else { "FAIL" }, c.what);
        if !c.ok {
            failed += 1;
            println!("         fix: {}", c.remedy);
        }
    }
    if root {
        println!("Self-test (the real programs, on this kernel):");
        for o in crate::probe::self_test::run() {
            match o.result {
                Ok(detail) => println!("  [ ok ] {}: {detail}", o.what),
                Err(e) => {
                    failed += 1;
                    println!("  [FAIL] {}: {e:#}", o.what);
                    println!("         fix: {}", self_test_remedy(&format!("{e:#}")));
                }
            }
        }
    } else {
        println!("Self-test: skipped (needs root)");
    }
    let lib = match (lib, pid) {
        (Some(l), _) => Some(discover::checked(&l)?),
        (None, Some(pid)) => match discover::library_in_process(pid)? {
            Some((path, base)) => {
                println!(
                    "PID {pid} maps the runtime at {base:#x}: {}",
                    path.display()
                );
                Some(path)
            }
            None => bail!(
                "PID {pid} does not map {} (does it use tt-metal?)",
                discover::LIB_NAME
            ),
        },
        // A command: the library it would load, found as `tracer run` finds it. None: the
        // runtime of this environment (active virtualenv, python3 on PATH, TT_METAL_HOME, the
        // loader cache).
        (None, None) => match discover::find_for_command(None, &cmd) {
            Ok(found) => {
                if cmd.is_empty() {
                    println!(
                        "found the runtime of this environment (--lib, --pid or -- CMD choose another)"
                    );
                } else {
                    println!("`{}` would load the runtime found this way:", cmd.join(" "));
                }
                for step in &found.how {
                    println!("  {step}");
                }
                Some(found.path)
            }
            Err(e) => {
                println!("Runtime library:\n  [FAIL] {e:#}");
                None
            }
        },
    };
    if let Some(lib) = lib {
        println!("Runtime library: {}", lib.display());
        match plan::for_library(&lib) {
            Ok(plan) => {
                println!(
                    "  build-id: {}",
                    plan.build_id.as_deref().unwrap_or("(none)")
                );
                println!("  layout: {}", plan.layout.describe());
                for f in &plan.layout.provenance {
                    println!("    {}: {}", f.field, f.describe());
                }
                match &plan.layout.free_object {
                    Ok(f) => println!("    free: the buffer's object from a register: {}", f.how),
                    Err(e) => {
                        println!("    free: the buffer's object from the call's argument ({e})")
                    }
                }
                match &plan.allocator {
                    Ok(a) => {
                        println!(
                            "  allocator geometry (read after a mid-run attach): {}",
                            a.describe()
                        );
                        for f in &a.provenance {
                            println!("    {}: {}", f.field, f.describe());
                        }
                    }
                    Err(e) => println!(
                        "  allocator geometry after a mid-run attach: NOT calibrated: {e} \
                         (reserved falls back to requested bytes)"
                    ),
                }
                match &plan.held {
                    Ok(h) => {
                        println!(
                            "  live buffers (snapshot, seed of a mid-run attach): {}",
                            h.describe()
                        );
                        for f in &h.provenance {
                            println!("    {}: {}", f.field, f.describe());
                        }
                    }
                    Err(e) => println!(
                        "  live buffers: NOT readable from a process's memory: {e} (a mid-run \
                         attach seeds from tt-metal's SHM tracker; no snapshot)"
                    ),
                }
                match &plan.core_ranges {
                    Ok(l) => {
                        println!("  circular buffers: core ranges {}", l.describe());
                        for (field, how) in &l.provenance {
                            println!("    {field}: {how}");
                        }
                    }
                    Err(e) => println!("  circular buffers: NOT tracked: {e}"),
                }
                match &plan.programs {
                    Ok(p) => {
                        println!(
                            "  circular buffers of loaded programs (snapshot, seed of a mid-run \
                             attach): {}",
                            p.describe()
                        );
                        for f in &p.provenance {
                            println!("    {}: {}", f.field, f.describe());
                        }
                    }
                    Err(e) => println!(
                        "  circular buffers of loaded programs: NOT readable from a process's \
                         memory: {e} (a mid-run attach counts CBs of programs placed after it)"
                    ),
                }
                let vptr =
                    |v: Option<u64>| v.map_or("not found".to_string(), |a| format!("{a:#x}"));
                println!(
                    "  vtable pointers: Device {}, MeshDevice {}",
                    vptr(plan.device_vptr),
                    vptr(plan.mesh_vptr)
                );
                println!("  probe plan ({} uprobes):", plan.probes.len());
                for (slot, p) in plan.probes.iter().enumerate() {
                    println!(
                        "    slot {slot}: {:?} at file offset {:#x}: {}",
                        p.role,
                        p.file_offset,
                        pretty(&p.symbol)
                    );
                    let reads = p.spec.fields[..p.spec.nfields as usize]
                        .iter()
                        .map(|f| {
                            let window = f.arg == tracer_common::ARG_WINDOW;
                            usize::from(f.steps) - usize::from(window && f.steps > 0)
                        })
                        .sum::<usize>()
                        + usize::from(p.spec.window_len > 0)
                            * (1 + usize::from(p.spec.window.steps));
                    println!(
                        "      reads {} values with {reads} user-memory load(s){}",
                        p.spec.nfields,
                        if p.spec.window_len > 0 {
                            format!(" ({} bytes copied at once)", p.spec.window_len)
                        } else {
                            String::new()
                        }
                    );
                    let spec = crate::plan::kinds::slot_spec(&plan, slot);
                    if spec.flags & tracer_common::SLOT_WINDOW_VALUES != 0 {
                        println!(
                            "      hot path: every value one word of the window (program tracer_buffer)"
                        );
                    }
                    if !p.detail.is_empty() {
                        println!("        {}", p.detail);
                    }
                }
                println!("  call stacks: {}", plan.call_stacks);
                for w in &plan.warnings {
                    println!("  warning: {w}");
                }
            }
            Err(e) => {
                println!("  [FAIL] {e:#}");
                failed += 1;
            }
        }
    } else {
        failed += 1;
    }
    Ok(if failed > 0 { 1 } else { 0 })
}

/// What to do about a failed self-test step, from the kernel's answer.
fn self_test_remedy(error: &str) -> &'static str {
    if error.contains("Operation not permitted") || error.contains("EPERM") {
        "run as root (CAP_BPF and CAP_PERFMON); under a container, allow bpf() and perf_event_open() \
         (e.g. --privileged); check that kernel lockdown is not in confidentiality mode"
    } else if error.contains("BTF") {
        "use a kernel with CONFIG_DEBUG_INFO_BTF=y"
    } else if error.contains("Invalid argument") || error.contains("verifier") {
        "this kernel rejects a program or attach type tracer needs: use Linux 5.15 or newer"
    } else {
        "see the error above; `tracer doctor` re-runs this test"
    }
}

#[cfg(test)]
mod tests {
    use super::kernel_version;

    #[test]
    fn kernel_versions() {
        assert_eq!(kernel_version("6.1.0-18-amd64"), Some((6, 1)));
        assert_eq!(
            kernel_version("5.15.153.1-microsoft-standard-WSL2"),
            Some((5, 15))
        );
        assert_eq!(kernel_version("4.18.0-513.el8.x86_64"), Some((4, 18)));
        assert_eq!(kernel_version("garbage"), None);
    }
}
