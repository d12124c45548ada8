//! `tracer snapshot --pid PID`: what a running process holds, read from its own memory without
//! probes, checked against what the process itself reports (`ttnn.get_memory_view`, its own
//! count and sizes of the tensors it holds), on the newest and the oldest layout era.
use std::{
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use tracer_tests::*;

/// A running workloads/held_buffers.py holding `count` tensors (and one sharded one).
struct Holder {
    child: Child,
    release: std::path::PathBuf,
    truth: Value,
}

impl Holder {
    fn start(era: &str, count: usize) -> Self {
        let dir = tempdir();
        let (truth, release) = (dir.join("truth.json"), dir.join("release"));
        let mut c = Command::new(python(era));
        mock(&mut c)
            .arg(workload("held_buffers.py"))
            .args(["--count", &count.to_string()])
            .arg("--truth")
            .arg(&truth)
            .arg("--release")
            .arg(&release);
        let child = c
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(240);
        while !truth.exists() {
            assert!(
                Instant::now() < deadline,
                "the workload did not hold its tensors"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        let truth = serde_json::from_str(&std::fs::read_to_string(&truth).unwrap()).unwrap();
        Holder {
            child,
            release,
            truth,
        }
    }

    fn pid(&self) -> u32 {
        self.truth["pid"].as_u64().unwrap() as u32
    }
}

impl Drop for Holder {
    fn drop(&mut self) {
        std::fs::write(&self.release, "").unwrap();
        let _ = self.child.wait();
    }
}

fn snapshot_json(pid: u32) -> Value {
    let out = tracer()
        .args(["snapshot", "--pid", &pid.to_string(), "--json"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn snapshot_equals_the_process(era: &str) {
    let h = Holder::start(era, 24);
    let doc = snapshot_json(h.pid());
    let truth = &h.truth;
    assert_eq!(doc["schema"], "tracer.summary/1");
    assert_eq!(
        doc["snapshot"]["buffers"], truth["buffers"],
        "{}",
        doc["snapshot"]
    );
    assert_eq!(doc["snapshot"]["sharded_without_footprint"], 0);
    let p = &doc["processes"][0];
    assert_eq!(n(&p["pid"]), u64::from(h.pid()));
    assert_eq!(p["reserved_estimated"], 0);
    let devs = devices(p);
    assert_eq!(
        devs.keys().copied().collect::<Vec<_>>(),
        sorted_chips(truth)
    );
    for (chip, d) in &devs {
        let what = format!("{era} chip {chip}");
        assert_eq!(d["live"]["buffers"], truth["buffers"], "{what}");
        // Nothing was allocated while tracer looked: every buffer is one the process held.
        assert_eq!(d["allocations"], 0, "{what}");
        assert_eq!(d["seeded"]["buffers"], truth["buffers"], "{what}");
        for ty in ["DRAM", "L1"] {
            assert_eq!(
                d["live"]["requested"][ty], truth["requested"][ty],
                "{what}: requested {ty} == the tensors' own sizes"
            );
            assert_eq!(
                d["live"]["reserved"][ty], truth["memory_view"][ty],
                "{what}: reserved {ty} == get_memory_view"
            );
        }
    }
    // Every buffer is listed, once per chip, as still held.
    let outstanding = p["outstanding"].as_array().unwrap();
    assert_eq!(
        outstanding.len() as u64,
        n(&truth["buffers"]) * devs.len() as u64
    );
    assert!(outstanding.iter().all(|o| o["class"] == "live_at_detach"));
}

#[test]
fn snapshot_of_a_held_workload_equals_get_memory_view() {
    snapshot_equals_the_process("0.81.1");
}

#[test]
fn snapshot_of_a_held_workload_equals_get_memory_view_0_75_0() {
    snapshot_equals_the_process("0.75.0");
}

/// The text form says how many buffers it read, and per chip what `report` would say.
#[test]
fn snapshot_text_names_every_chip() {
    let h = Holder::start("0.81.1", 4);
    let out = tracer()
        .args(["snapshot", "--pid", &h.pid().to_string()])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains(&format!("{} buffer(s)", h.truth["buffers"])),
        "{text}"
    );
    for chip in sorted_chips(&h.truth) {
        assert!(
            text.contains(&format!("Device {chip}: Buffers: 5,")),
            "{text}"
        );
    }
}

/// A process without the runtime, and one that is gone: a clear error, no numbers.
#[test]
fn snapshot_refuses_what_it_cannot_read() {
    let mut sleeper = Command::new("sleep").arg("30").spawn().unwrap();
    let out = tracer()
        .args(["snapshot", "--pid", &sleeper.id().to_string()])
        .output()
        .unwrap();
    sleeper.kill().unwrap();
    let _ = sleeper.wait();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("does not map the tt-metal runtime"), "{err}");
    let out = tracer()
        .args(["snapshot", "--pid", "999999999"])
        .output()
        .unwrap();
    assert_ne!(out.status.code(), Some(0));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("999999999"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
