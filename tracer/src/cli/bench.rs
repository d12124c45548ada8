//! `tracer bench`: overhead measured side by side in one run, on the real runtime.
//!
//! Configurations, each timing the same allocate/deallocate loop (timed by the workload):
//! untraced; a bare uprobe (empty eBPF program) on the same two functions; the full tracer;
//! tt-metal's own SHM tracker. Also counts uprobe traps per mesh allocation and free.
use std::{path::PathBuf, process::Command, time::Instant};

use anyhow::{bail, Context, Result};

use super::{session::LiveSession, TraceOpts};
use crate::{
    probe::{decode::Decoder, Probes, Scope},
    runtime::{self, discover, plan::Role},
};

pub struct BenchOpts {
    pub python: PathBuf,
    pub pairs: u64,
    pub rounds: usize,
    pub attach_rounds: usize,
    pub attach_only: bool,
}

fn report_attach_latency(opts: &BenchOpts) -> Result<()> {
    if opts.attach_rounds == 0 {
        return Ok(());
    }
    let mut ms = super::bench_attach::attach_latency(&opts.python, opts.attach_rounds)?;
    ms.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "attach latency (command start to `attached:`), {} runs: min {:.0} ms, median {:.0} ms, max {:.0} ms (target < 250 ms; load average {})",
        ms.len(),
        ms[0],
        ms[ms.len() / 2],
        ms[ms.len() - 1],
        load.split_whitespace().take(3).collect::<Vec<_>>().join(" ")
    );
    Ok(())
}

fn workload(opts: &BenchOpts, pairs: u64, shape: (u32, u32), shm: bool) -> Command {
    let mut c = Command::new(&opts.python);
    c.arg("workloads/alloc_loop.py")
        .arg(pairs.to_string())
        .arg(shape.0.to_string())
        .arg(shape.1.to_string());
    if !shm {
        c.env("TT_METAL_SHM_TRACKING_DISABLED", "1");
    }
    c
}

fn loop_seconds(out: std::process::Output) -> Result<f64> {
    if !out.status.success() {
        bail!("workload failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .rev()
        .find(|l| l.starts_with('{'))
        .context("no timing line")?;
    let v: serde_json::Value = serde_json::from_str(line)?;
    v["seconds"].as_f64().context("no seconds")
}

fn quiet_opts() -> TraceOpts {
    TraceOpts {
        output: None,
        summary_json: None,
        lib: None,
        quiet: true,
        strict: false,
        metrics: None,
        duration: None,
    }
}

/// Runs the workload under the full tracer (all processes); returns (loop seconds, hits per
/// slot, events seen by the ledger).
fn traced(
    opts: &BenchOpts,
    plan: &runtime::plan::ProbePlan,
    pairs: u64,
    shape: (u32, u32),
) -> Result<(f64, Vec<u64>)> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let _g = rt.enter();
    let probes = Probes::attach(plan, Scope::All)?;
    let mut session = LiveSession::new(probes, Decoder::new(plan.clone()), quiet_opts());
    let mut cmd = workload(opts, pairs, shape, false);
    let out = rt.block_on(async {
        let child =
            tokio::process::Command::from(std::mem::replace(&mut cmd, Command::new("true")))
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()?;
        let (tx, rx) = tokio::sync::oneshot::channel();
        tokio::spawn(async move {
            let _ = tx.send(child.wait_with_output().await);
        });
        let mut result = None;
        let done = async {
            let r = rx.await;
            result = Some(r);
            0
        };
        session.run_until(done).await?;
        anyhow::Ok(result.unwrap()??)
    })?;
    let hits = session.probes.hits()?;
    Ok((loop_seconds(out)?, hits))
}

fn bare(opts: &BenchOpts, plan: &runtime::plan::ProbePlan, pairs: u64) -> Result<f64> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let _g = rt.enter();
    let _bare = Probes::attach_bare_only(plan, &[Role::Alloc, Role::Free])?;
    loop_seconds(workload(opts, pairs, (2, 4), false).output()?)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

pub fn bench(opts: BenchOpts) -> Result<i32> {
    super::require_root()?;
    let lib = discover::library_for_command(None, &[opts.python.display().to_string()])?;
    let plan = runtime::plan_for(&lib)?;
    let started = Instant::now();
    if opts.attach_only {
        report_attach_latency(&opts)?;
        return Ok(0);
    }
    println!(
        "benchmark: {} allocate+deallocate pairs of a 2x4-mesh DRAM tensor, {} rounds",
        opts.pairs, opts.rounds
    );
    println!("runtime: {}", lib.display());
    let (mut t_none, mut t_bare, mut t_tracer, mut t_shm) = (vec![], vec![], vec![], vec![]);
    let mut hits = Vec::new();
    for round in 0..opts.rounds {
        t_none.push(loop_seconds(
            workload(&opts, opts.pairs, (2, 4), false).output()?,
        )?);
        t_bare.push(bare(&opts, &plan, opts.pairs)?);
        let (t, h) = traced(&opts, &plan, opts.pairs, (2, 4))?;
        t_tracer.push(t);
        hits = h;
        t_shm.push(loop_seconds(
            workload(&opts, opts.pairs, (2, 4), true).output()?,
        )?);
        eprintln!(
            "round {}: untraced {:.3}s, bare uprobe {:.3}s, tracer {:.3}s, SHM tracker {:.3}s",
            round + 1,
            t_none[round],
            t_bare[round],
            t_tracer[round],
            t_shm[round]
        );
    }
    let per_pair = |t: f64| t / opts.pairs as f64 * 1e6;
    let (none, bare_t, tracer_t, shm) = (
        median(t_none),
        median(t_bare),
        median(t_tracer),
        median(t_shm),
    );
    let slot = |role: Role| {
        plan.probes
            .iter()
            .position(|p| p.role == role)
            .map_or(0, |i| hits[i])
    };
    // Warm-up allocations (10 pairs) happen inside the traced window too.
    let traced_pairs = (opts.pairs + 10) as f64;
    println!(
        "per allocate+deallocate pair (median of {} rounds):",
        opts.rounds
    );
    println!("  untraced            {:8.2} us", per_pair(none));
    println!("  bare uprobe x2      {:8.2} us", per_pair(bare_t));
    println!("  tracer              {:8.2} us", per_pair(tracer_t));
    println!("  tt-metal SHM tracker{:8.2} us", per_pair(shm));
    println!(
        "uprobe traps per mesh tensor (8 chips): allocation {:.3}, free {:.3}",
        slot(Role::Alloc) as f64 / traced_pairs,
        slot(Role::Free) as f64 / traced_pairs
    );
    for shape in [(1, 1), (1, 2)] {
        let (_, h) = traced(&opts, &plan, 200, shape)?;
        let s = |role: Role| {
            plan.probes
                .iter()
                .position(|p| p.role == role)
                .map_or(0, |i| h[i])
        };
        println!(
            "uprobe traps per mesh tensor ({}x{} mesh): allocation {:.3}, free {:.3}",
            shape.0,
            shape.1,
            s(Role::Alloc) as f64 / 210.0,
            s(Role::Free) as f64 / 210.0
        );
    }
    let ratio = (tracer_t - none) / (bare_t - none);
    println!("cost per tracked event, tracer / bare uprobe on the same functions: {ratio:.3} (target <= 1.15)");
    println!(
        "overhead vs untraced: tracer {:+.1}%, SHM tracker {:+.1}%; tracer cost / SHM tracker cost: {:.3}",
        (tracer_t / none - 1.0) * 100.0,
        (shm / none - 1.0) * 100.0,
        (tracer_t - none) / (shm - none)
    );
    report_attach_latency(&opts)?;
    println!("(benchmark took {:.0}s)", started.elapsed().as_secs_f64());
    Ok(0)
}
