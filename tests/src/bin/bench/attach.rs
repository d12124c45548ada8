//! Attach latency: from the start of `tracer attach --pid` to its `attached:` line, on a live
//! ttnn process that holds the real runtime library.
use std::{
    io::{BufRead, BufReader},
    path::Path,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{bail, Context, Result};

/// Runs `rounds` attaches to one waiting workload; returns the latencies in milliseconds.
pub fn attach_latency(python: &Path, rounds: usize) -> Result<Vec<f64>> {
    let dir = std::env::temp_dir().join(format!("tracer-bench-attach-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let (ready, go) = (dir.join("ready"), dir.join("go"));
    // The runtime's own log lines would interleave with the benchmark's report.
    let log = dir.join("target.log");
    let mut target = Command::new(python)
        .arg(tracer_tests::workload("attach_target.py"))
        .arg("--ready")
        .arg(&ready)
        .arg("--go")
        .arg(&go)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log)?)
        .spawn()
        .context("starting workloads/attach_target.py")?;
    let deadline = Instant::now() + Duration::from_secs(180);
    while !ready.exists() {
        if Instant::now() > deadline || target.try_wait()?.is_some() {
            let _ = target.kill();
            bail!(
                "the attach workload did not get ready; its output:\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let pid = target.id().to_string();
    let me = tracer_tests::tracer_bin();
    let mut out = Vec::new();
    for _ in 0..rounds {
        let started = Instant::now();
        let mut t = Command::new(&me)
            .args(["attach", "--quiet", "--pid", &pid])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()?;
        let mut err = BufReader::new(t.stderr.take().unwrap());
        let mut line = String::new();
        let ok = loop {
            line.clear();
            if err.read_line(&mut line)? == 0 {
                break false;
            }
            if line.starts_with("attached: PID") {
                break true;
            }
        };
        let ms = started.elapsed().as_secs_f64() * 1e3;
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(t.id() as i32),
            nix::sys::signal::Signal::SIGINT,
        )?;
        std::thread::spawn(move || for _ in err.lines() {});
        t.wait()?;
        if !ok {
            bail!("tracer attach ended without `attached:`");
        }
        out.push(ms);
    }
    std::fs::write(&go, "")?;
    target.wait()?;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(out)
}
