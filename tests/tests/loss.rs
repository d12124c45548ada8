//! A full ring buffer: lost events are counted, reported, and fail `--strict`.
//!
//! The real runtime produces events far slower than tracer drains them, so the test makes the
//! collector fall behind from outside: it stops the tracer process (SIGSTOP) once
//! `alloc_loop.py`'s timed loop starts, lets the loop emit ~120k events into a 64 KiB ring
//! buffer (`--ring-buffer`), and continues the tracer once the workload has exited (a zombie
//! the stopped tracer cannot reap yet). Nothing in tracer knows it is being tested.
use std::{
    io::{BufRead, BufReader},
    process::Stdio,
    time::{Duration, Instant},
};

use tracer_tests::*;

const PAIRS: u64 = 60_000;
/// The loop's warm-up pairs.
const WARMUP: u64 = 10;

/// A process's state letter in /proc/PID/stat (None: gone).
fn state(pid: u32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(") ")?.1.chars().next()
}

fn kill(pid: u32, sig: &str) {
    std::process::Command::new("kill")
        .args([sig, &pid.to_string()])
        .status()
        .unwrap();
}

struct Stalled {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

fn stalled_run(extra: &[&str]) -> (Stalled, Value) {
    let dir = tempdir();
    let summary = dir.join("summary.json");
    let mut child = tracer()
        .args(["run", "--quiet", "--ring-buffer", "64KiB", "--summary-json"])
        .arg(&summary)
        .args(extra)
        .arg("--")
        .arg(python("0.81.1"))
        .arg(workload("alloc_loop.py"))
        .arg(PAIRS.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let tracer_pid = child.id();
    let stdout = child.stdout.take().unwrap();
    let out = std::thread::spawn(move || std::io::read_to_string(stdout).unwrap());
    let mut err = BufReader::new(child.stderr.take().unwrap());
    let (mut stderr, mut line, mut workload_pid) = (String::new(), String::new(), None);
    loop {
        line.clear();
        assert!(
            err.read_line(&mut line).unwrap() > 0,
            "tracer ended before the loop:\n{stderr}"
        );
        stderr.push_str(&line);
        if let Some(rest) = line.strip_prefix("tracer: tracing PID ") {
            workload_pid = rest.split(' ').next().and_then(|p| p.parse::<u32>().ok());
        }
        if line.starts_with("alloc_loop: timed loop starts") {
            break;
        }
    }
    let pid = workload_pid.expect("tracer names the workload's PID");
    kill(tracer_pid, "-STOP");
    // The loop runs against a stopped collector; its exit leaves a zombie the stopped tracer
    // cannot reap. A stop at a library load would wait for the tracer: continue it then too.
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut stopped_since = None;
    while Instant::now() < deadline {
        match state(pid) {
            Some('Z') | None => break,
            Some('t' | 'T') => {
                let since = *stopped_since.get_or_insert_with(Instant::now);
                if since.elapsed() > Duration::from_secs(1) {
                    break;
                }
            }
            _ => stopped_since = None,
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    kill(tracer_pid, "-CONT");
    let rest = std::io::read_to_string(err).unwrap();
    stderr.push_str(&rest);
    let status = child.wait().unwrap();
    let run = Stalled {
        code: status.code(),
        stdout: out.join().unwrap(),
        stderr,
    };
    let summary = serde_json::from_str(&std::fs::read_to_string(&summary).unwrap()).unwrap();
    (run, summary)
}

#[test]
fn lost_events_are_counted_reported_and_fail_strict() {
    let (out, summary) = stalled_run(&["--strict"]);
    let (stderr, stdout) = (&out.stderr, &out.stdout);
    assert_eq!(out.code, Some(3), "--strict exit code; stderr:\n{stderr}");
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
fn without_strict_the_command_exit_code_wins_and_the_loss_is_still_said_by_the_probes_too() {
    let (out, summary) = stalled_run(&["--debug-probes"]);
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    // The eBPF programs' own log (aya-log) says which records they could not emit.
    assert!(
        out.stderr.contains("tracer: probe: slot ") && out.stderr.contains("ring buffer full"),
        "{}",
        out.stderr
    );
    assert!(summary["lost_events"].as_u64().unwrap() > 0);
    assert!(out.stdout.contains("event(s) lost (ring buffer full)"));
}
