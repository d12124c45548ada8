//! `tracer top --batch`: the live per-chip table, checked against what tt-metal reports while a
//! ttnn workload holds tensors on the 8-chip mock mesh.
use std::{process::Stdio, time::Duration};

use tracer_tests::*;

/// Chip rows (chip -> (DRAM, L1) reserved) of every snapshot in `text`.
fn snapshots(text: &str) -> Vec<std::collections::BTreeMap<i64, (u64, u64)>> {
    let mut out = Vec::new();
    for block in text.split("tracer top: ").skip(1) {
        let mut chips = std::collections::BTreeMap::new();
        let mut lines = block.lines().skip(1);
        if !lines
            .next()
            .is_some_and(|h| h.trim_start().starts_with("CHIP"))
        {
            continue;
        }
        for l in lines {
            let f: Vec<&str> = l.split_whitespace().collect();
            if f.first() == Some(&"PID") || f.len() != 8 {
                break;
            }
            chips.insert(
                f[0].parse().unwrap(),
                (f[3].parse().unwrap(), f[4].parse().unwrap()),
            );
        }
        out.push(chips);
    }
    out
}

#[test]
fn batch_snapshots_match_memory_view_on_every_chip() {
    let dir = tempdir();
    let mut cmd = tracer();
    cmd.args(["top", "--batch", "--interval", "0.2"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let held = Held::new(&mut cmd, &dir);
    let child = cmd.spawn().unwrap();
    let truth = held.wait();
    // A few snapshots while the tensors are held.
    std::thread::sleep(Duration::from_millis(1000));
    held.release();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let want = (truth.dram, truth.l1);
    let chips = truth.chips;
    let text = String::from_utf8_lossy(&out.stdout);
    let shots = snapshots(&text);
    assert!(shots.len() >= 3, "too few snapshots:\n{text}");
    assert!(
        shots
            .iter()
            .any(|s| s.len() == 8 && chips.iter().all(|c| s.get(c) == Some(&want))),
        "no snapshot shows get_memory_view {want:?} on all 8 chips:\n{text}"
    );
    // After the workload freed everything, the last snapshot is empty on every chip.
    let last = shots.last().unwrap();
    assert!(last.values().all(|v| *v == (0, 0)), "{last:?}");
}

/// Per chip (DRAM, L1) reserved of `pid` in every snapshot's process table.
fn process_rows(text: &str, pid: u64) -> Vec<std::collections::BTreeMap<i64, (u64, u64)>> {
    text.split("tracer top: ")
        .skip(1)
        .map(|block| {
            block
                .lines()
                .skip_while(|l| !l.trim_start().starts_with("PID"))
                .skip(1)
                .filter_map(|l| {
                    let f: Vec<&str> = l.split_whitespace().collect();
                    (f.len() >= 8 && f[0] == pid.to_string()).then(|| {
                        (
                            f[1].parse().unwrap(),
                            (f[3].parse().unwrap(), f[4].parse().unwrap()),
                        )
                    })
                })
                .collect()
        })
        .collect()
}

#[test]
fn top_all_shows_a_process_started_after_it_exactly() {
    let dir = tempdir();
    let tracer = tracer()
        .args([
            "top",
            "--all",
            "--batch",
            "--interval",
            "0.2",
            "--duration",
            "30",
            "--lib",
        ])
        .arg(library("0.81.1"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The probes are on the library file from the start; give them a moment.
    std::thread::sleep(Duration::from_millis(1500));
    let (mut cmd, held) = Held::alone(&dir);
    let mut workload = cmd.stdout(Stdio::null()).spawn().unwrap();
    let truth = held.wait();
    std::thread::sleep(Duration::from_millis(1000));
    held.release();
    assert!(workload.wait().unwrap().success());
    std::thread::sleep(Duration::from_millis(500));
    nix_kill_int(tracer.id());
    let out = tracer.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let rows = process_rows(&text, truth.pid);
    assert!(
        rows.iter().any(|r| r.len() == 8
            && truth
                .chips
                .iter()
                .all(|c| r.get(c) == Some(&(truth.dram, truth.l1)))),
        "PID {} never showed get_memory_view ({}, {}) on all 8 chips:\n{text}\n{}",
        truth.pid,
        truth.dram,
        truth.l1,
        String::from_utf8_lossy(&out.stderr)
    );
}

fn nix_kill_int(pid: u32) {
    let _ = std::process::Command::new("kill")
        .args(["-INT", &pid.to_string()])
        .status();
}
