//! A full ring buffer: lost events are counted, reported, and fail `--strict`.
//!
//! The real runtime produces events far slower than tracer drains them, so the test makes the
//! collector fall behind (`TRACER_TEST_STALL_MS`, a test hook that sleeps once before the event
//! loop) while `alloc_loop.py` emits ~120k events into the 4 MiB ring buffer.
use tracer_tests::*;

const PAIRS: u64 = 60_000;
/// The loop's warm-up pairs.
const WARMUP: u64 = 10;

fn stalled_run(extra: &[&str]) -> (std::process::Output, Value) {
    let dir = tempdir();
    let summary = dir.join("summary.json");
    let out = tracer()
        .args(["run", "--quiet", "--summary-json"])
        .arg(&summary)
        .args(extra)
        .arg("--")
        .arg(python("0.81.1"))
        .arg(workload("alloc_loop.py"))
        .arg(PAIRS.to_string())
        .env("TRACER_TEST_STALL_MS", "4000")
        .output()
        .unwrap();
    let summary = serde_json::from_str(&std::fs::read_to_string(&summary).unwrap()).unwrap();
    (out, summary)
}

#[test]
fn lost_events_are_counted_reported_and_fail_strict() {
    let (out, summary) = stalled_run(&["--strict"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(3),
        "--strict exit code; stderr:\n{stderr}"
    );
    assert!(stderr.contains("lost and --strict is set"), "{stderr}");
    assert!(
        stderr.contains("the kernel dropped"),
        "warned while running: {stderr}"
    );
    // The workload prints its own timing line first; the summary leads with the loss.
    let summary_text = stdout
        .split_once("\nWARNING:")
        .map(|(_, rest)| rest)
        .unwrap_or("");
    assert!(
        summary_text.contains("event(s) lost (ring buffer full)")
            && summary_text.find("event(s) lost") < summary_text.find("PID "),
        "summary leads with the loss:\n{stdout}"
    );
    let lost = summary["lost_events"].as_u64().unwrap();
    assert!(lost > 0);
    // Every probe hit is either in the ledger or counted as lost: on each chip, allocations +
    // deallocations + frees of never-seen buffers + lost == the loop's 2 events per pair, plus
    // the few lifecycle events (device/mesh open and close, allocator geometry) that share the
    // ring buffer.
    let p = &summary["processes"][0];
    let expected = 2 * (PAIRS + WARMUP);
    for d in p["devices"].as_array().unwrap() {
        let seen = d["allocations"].as_u64().unwrap()
            + d["deallocations"].as_u64().unwrap()
            + p["unknown_frees"].as_u64().unwrap();
        assert!(
            (expected..expected + 64).contains(&(seen + lost)),
            "chip {}: seen {seen} + lost {lost} != {expected} (+ lifecycle)",
            d["device"]
        );
    }
}

#[test]
fn without_strict_the_command_exit_code_wins_and_the_loss_is_still_said() {
    let (out, summary) = stalled_run(&[]);
    assert_eq!(out.status.code(), Some(0));
    assert!(summary["lost_events"].as_u64().unwrap() > 0);
    assert!(String::from_utf8_lossy(&out.stdout).contains("event(s) lost (ring buffer full)"));
}
