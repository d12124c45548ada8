//! `tracer snapshot` of a live ttnn process holding 1,000 buffers: how long reading them from
//! its memory takes (the read itself, as tracer reports it, and the whole command, library
//! calibration included).
use std::{
    path::Path,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{bail, Context, Result};

pub const BUFFERS: usize = 1000;

/// Per round: (the read in ms, the whole command in ms), and the buffers it read.
pub fn snapshot_times(python: &Path, rounds: usize) -> Result<(Vec<(f64, f64)>, u64)> {
    let dir = std::env::temp_dir().join(format!("tracer-bench-snapshot-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let (truth, release) = (dir.join("truth.json"), dir.join("release"));
    let log = dir.join("target.log");
    // held_buffers.py holds COUNT tensors and one sharded one.
    let mut target = Command::new(python)
        .arg(tracer_tests::workload("held_buffers.py"))
        .args(["--count", &(BUFFERS - 1).to_string()])
        .arg("--truth")
        .arg(&truth)
        .arg("--release")
        .arg(&release)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log)?)
        .spawn()
        .context("starting workloads/held_buffers.py")?;
    let deadline = Instant::now() + Duration::from_secs(300);
    while !truth.exists() {
        if Instant::now() > deadline || target.try_wait()?.is_some() {
            let _ = target.kill();
            bail!(
                "the snapshot workload did not get ready; its output:\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let pid = target.id().to_string();
    let mut out = Vec::new();
    let mut read = 0;
    for _ in 0..rounds {
        let started = Instant::now();
        let o = Command::new(tracer_tests::tracer_bin())
            .args(["snapshot", "--json", "--pid", &pid])
            .output()?;
        let whole = started.elapsed().as_secs_f64() * 1e3;
        if !o.status.success() {
            let _ = std::fs::write(&release, "");
            bail!(
                "tracer snapshot failed: {}",
                String::from_utf8_lossy(&o.stderr)
            );
        }
        let doc: serde_json::Value = serde_json::from_slice(&o.stdout)?;
        read = doc["snapshot"]["buffers"].as_u64().unwrap_or(0);
        out.push((
            doc["snapshot"]["read_ms"].as_f64().unwrap_or(f64::NAN),
            whole,
        ));
    }
    std::fs::write(&release, "")?;
    let _ = target.wait();
    let _ = std::fs::remove_dir_all(&dir);
    Ok((out, read))
}
