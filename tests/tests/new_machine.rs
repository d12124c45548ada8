//! What a new machine of this kind looks like: no tracefs mounted. tracer follows forks and
//! exits with raw tracepoints, so the ledger is exact without it.
use std::process::Command;

use tracer_tests::*;

/// Runs `tracer ARGS` in a private mount namespace where no tracefs is mounted (unmounted
/// there if the host has one; the host keeps its mounts).
fn tracer_without_tracefs(args: &[&std::ffi::OsStr]) -> std::process::Output {
    const SCRIPT: &str = r#"
for m in /sys/kernel/debug/tracing /sys/kernel/tracing /sys/kernel/debug; do
    umount -l "$m" 2>/dev/null
done
if [ -e /sys/kernel/tracing/events ] || [ -e /sys/kernel/debug/tracing/events ]; then
    echo "tracefs is still mounted in the namespace" >&2
    exit 99
fi
exec "$@"
"#;
    let mut c = Command::new("unshare");
    mock(&mut c)
        .args([
            "--mount",
            "--propagation",
            "private",
            "--",
            "sh",
            "-c",
            SCRIPT,
            "sh",
        ])
        .arg(tracer_bin())
        .args(args);
    c.output().unwrap()
}

#[test]
fn run_follows_children_without_tracefs() {
    let dir = tempdir();
    let summary = dir.join("summary.json");
    let truth = dir.join("truth.json");
    let python = python("0.81.1");
    let script = workload("two_children.py");
    let out = tracer_without_tracefs(&[
        "run".as_ref(),
        "--quiet".as_ref(),
        "--summary-json".as_ref(),
        summary.as_os_str(),
        "--".as_ref(),
        "env".as_ref(),
        format!("TRACER_GROUND_TRUTH={}", truth.display()).as_ref(),
        python.as_os_str(),
        script.as_os_str(),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let summary: Value = serde_json::from_str(&std::fs::read_to_string(&summary).unwrap()).unwrap();
    let truth: Value = serde_json::from_str(&std::fs::read_to_string(&truth).unwrap()).unwrap();
    let children = truth["children"].as_array().unwrap();
    assert_eq!(children.len(), 2, "{truth}");
    for child in children {
        let pid = n(&child["pid"]);
        let p = summary["processes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| n(&p["pid"]) == pid)
            .unwrap_or_else(|| panic!("child {pid} not followed: {summary}"));
        // Every chip of the mesh, exactly what the child did and what get_memory_view said.
        check_complete(p, child);
        assert_eq!(sorted_chips(child).len(), 8);
        // The exit tracepoint closed its ledger: the process is reported as exited.
        assert_eq!(p["exited"], true, "{p}");
    }
}

#[test]
fn doctor_self_test_passes_without_tracefs() {
    let lib = library("0.81.1");
    let out = tracer_without_tracefs(&["doctor".as_ref(), "--lib".as_ref(), lib.as_os_str()]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    for step in [
        "the eBPF programs load",
        "task_struct layout from kernel BTF",
        "a uprobe with an attach cookie fires",
        "raw tracepoints sched_process_fork/exit follow a child process",
    ] {
        let line = stdout
            .lines()
            .find(|l| l.contains(step))
            .unwrap_or_else(|| panic!("no `{step}` in:\n{stdout}"));
        assert!(line.contains("[ ok ]"), "{line}");
    }
    assert!(!stdout.contains("FAIL"), "{stdout}");
}
