//! `tracer doctor`: can this machine trace, and what would tracer do with this library?
use std::path::PathBuf;

use anyhow::{bail, Result};

use crate::runtime::{self, calibrate::pretty, discover};

struct Check {
    ok: bool,
    what: String,
    remedy: String,
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
    let btf = std::path::Path::new("/sys/kernel/btf/vmlinux").exists();
    v.push(Check {
        ok: btf,
        what: "kernel BTF (/sys/kernel/btf/vmlinux)".into(),
        remedy: "use a kernel with CONFIG_DEBUG_INFO_BTF=y".into(),
    });
    let tracefs = [
        "/sys/kernel/tracing/events",
        "/sys/kernel/debug/tracing/events",
    ]
    .iter()
    .any(|p| std::path::Path::new(p).is_dir());
    v.push(Check {
        ok: tracefs,
        what: "tracefs (process fork/exit tracepoints)".into(),
        remedy: "mount it: mount -t tracefs nodev /sys/kernel/tracing".into(),
    });
    let unpriv =
        std::fs::read_to_string("/proc/sys/kernel/unprivileged_bpf_disabled").unwrap_or_default();
    v.push(Check {
        ok: true,
        what: format!("kernel.unprivileged_bpf_disabled = {}", unpriv.trim()),
        remedy: String::new(),
    });
    v
}

pub fn doctor(lib: Option<PathBuf>, pid: Option<u32>) -> Result<i32> {
    let mut failed = 0;
    println!("System:");
    for c in checks() {
        println!("  [{}] {}", if c.ok { " ok " } else { "FAIL" }, c.what);
        if !c.ok {
            failed += 1;
            println!("         fix: {}", c.remedy);
        }
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
        // No target named: the runtime this environment would load (active virtualenv,
        // python3 on PATH, TT_METAL_HOME, the linker cache).
        (None, None) => match discover::library_for_command(None, &[]) {
            Ok(found) => {
                println!("found the runtime of this environment (--lib or --pid choose another)");
                Some(found)
            }
            Err(e) => {
                println!("Runtime library:\n  [FAIL] {e:#}");
                None
            }
        },
    };
    if let Some(lib) = lib {
        println!("Runtime library: {}", lib.display());
        match runtime::plan_for(&lib) {
            Ok(plan) => {
                println!(
                    "  build-id: {}",
                    plan.build_id.as_deref().unwrap_or("(none)")
                );
                println!("  layout: {}", plan.layout.describe());
                for (field, how) in &plan.layout.provenance {
                    println!("    {field}: {how}");
                }
                match &plan.allocator {
                    Ok(a) => println!(
                        "  allocator geometry (read after a mid-run attach): {}",
                        a.describe()
                    ),
                    Err(e) => println!(
                        "  allocator geometry after a mid-run attach: NOT calibrated: {e} \
                         (reserved falls back to requested bytes)"
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
