//! Overhead measured side by side in one run, on the real runtime.
//!
//! Configurations, each timing the same allocate/deallocate loop (timed by the workload):
//! untraced; a bare uprobe (empty eBPF program) on the same two functions; the full tracer;
//! tt-metal's own SHM tracker. Also counts uprobe traps per mesh allocation and free.
use std::{path::PathBuf, process::Command, time::Instant};

use anyhow::{bail, Context, Result};

use tracer::{
    exit::require_root,
    plan::{self, ProbePlan, Role},
    probe::{decode::Decoder, Loaded, Probes, Reference, RunStats, Scope},
    runtime::discover,
    session::{launch, Options, Session, Stop},
};
use tracer_tests::workload as script;

pub struct BenchOpts {
    pub python: PathBuf,
    pub pairs: u64,
    pub rounds: usize,
    pub attach_rounds: usize,
    pub attach_only: bool,
    pub snapshot_rounds: usize,
    pub snapshot_only: bool,
    pub paired_rounds: usize,
    pub block_pairs: u64,
    pub paired_only: bool,
}

fn report_snapshot_time(opts: &BenchOpts) -> Result<()> {
    if opts.snapshot_rounds == 0 {
        return Ok(());
    }
    let (mut t, buffers) = super::snapshot::snapshot_times(&opts.python, opts.snapshot_rounds)?;
    t.sort_by(|a, b| a.0.partial_cmp(&b.0).unwrap());
    let mut whole: Vec<f64> = t.iter().map(|x| x.1).collect();
    whole.sort_by(|a, b| a.partial_cmp(b).unwrap());
    println!(
        "snapshot of a process holding {} buffers ({buffers} read), {} runs: reading its memory min {:.1} ms, median {:.1} ms, max {:.1} ms (target < 100 ms); the whole command (library calibration included) median {:.0} ms",
        super::snapshot::BUFFERS,
        t.len(),
        t[0].0,
        t[t.len() / 2].0,
        t[t.len() - 1].0,
        whole[whole.len() / 2]
    );
    Ok(())
}

fn report_attach_latency(opts: &BenchOpts) -> Result<()> {
    if opts.attach_rounds == 0 {
        return Ok(());
    }
    let mut ms = super::attach::attach_latency(&opts.python, opts.attach_rounds)?;
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

/// The allocate/deallocate loop (it prints its own timing), the SHM tracker on or off.
fn workload(python: &std::path::Path, pairs: u64, shape: (u32, u32), shm: bool) -> Command {
    let mut c = Command::new(python);
    c.arg(script("alloc_loop.py"))
        .arg(pairs.to_string())
        .arg(shape.0.to_string())
        .arg(shape.1.to_string());
    if !shm {
        c.env("TT_METAL_SHM_TRACKING_DISABLED", "1");
    }
    c
}

pub fn loop_seconds(out: std::process::Output) -> Result<f64> {
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

fn quiet_opts() -> Options {
    Options {
        quiet: true,
        ..Default::default()
    }
}

/// Probe records of the workload's allocations and frees (one per uprobe trap).
#[derive(Default, Clone, Copy)]
pub struct Traps {
    pub alloc: u64,
    pub free: u64,
}

/// Program runs and in-kernel nanoseconds, summed over the runs of a configuration.
#[derive(Default, Clone, Copy)]
struct KernelTime {
    runs: u64,
    ns: u128,
}

impl KernelTime {
    fn add(&mut self, s: RunStats) {
        if let Some((runs, t)) = s {
            self.runs += runs;
            self.ns += t.as_nanos();
        }
    }

    fn per_run(&self) -> f64 {
        self.ns as f64 / self.runs.max(1) as f64
    }
}

/// Runs the workload under the full tracer (only its own process); returns (loop seconds, hits per
/// slot, the probe program's run statistics).
fn traced(
    opts: &BenchOpts,
    plan: &ProbePlan,
    pairs: u64,
    shape: (u32, u32),
) -> Result<(f64, Traps, RunStats)> {
    let args = [
        script("alloc_loop.py").display().to_string(),
        pairs.to_string(),
        shape.0.to_string(),
        shape.1.to_string(),
    ];
    traced_script(&opts.python, plan, &args)
}

/// Runs `python ARGS... TIMING_FILE` under the full tracer (the SHM tracker off).
pub fn traced_script(
    python: &std::path::Path,
    plan: &ProbePlan,
    args: &[String],
) -> Result<(f64, Traps, RunStats)> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let _g = rt.enter();
    // Only the workload's own hits count: other ttnn processes on the machine hit the same
    // probes. Like `tracer run`, it is held until the probes are attached.
    let out_file = std::env::temp_dir().join(format!("tracer-bench-{}.json", std::process::id()));
    let _ = std::fs::remove_file(&out_file);
    let mut argv: Vec<String> = vec![
        "sh".into(),
        "-c".into(),
        "TT_METAL_SHM_TRACKING_DISABLED=1 exec \"$0\" \"$@\" >/dev/null 2>&1".into(),
        python.display().to_string(),
    ];
    argv.extend(args.iter().cloned());
    argv.push(out_file.display().to_string());
    let mut child = launch::spawn_gated(&argv, None)?;
    let probes = match Loaded::new(Scope::Tracked).and_then(|l| l.attach(plan)) {
        Ok(p) => p,
        Err(e) => {
            child.abort();
            return Err(e);
        }
    };
    let mut session = Session::new(probes, Decoder::new(plan.clone()), quiet_opts());
    let pid = child.pid;
    // Held until now: every allocation is seen, so frees carry their object alone.
    session.source.primary_mut().probes.track_by_object(pid)?;
    child.release("sh")?;
    let code = rt.block_on(async {
        let waiter = tokio::task::spawn_blocking(move || launch::wait_exit(pid));
        session
            .run_until(async move { waiter.await.unwrap_or(255) })
            .await
    })?;
    if code != Stop::ChildExited(0) {
        bail!("workload under tracer failed: {code:?}");
    }
    let timing = std::fs::read_to_string(&out_file)
        .with_context(|| format!("workload wrote no timing to {}", out_file.display()))?;
    let _ = std::fs::remove_file(&out_file);
    let seconds = serde_json::from_str::<serde_json::Value>(&timing)?["seconds"]
        .as_f64()
        .context("no seconds in the workload's timing")?;
    let first = session.source.primary();
    let traps = Traps {
        alloc: first.decoder.records_of(Role::Alloc),
        free: first.decoder.records_of(Role::Free),
    };
    // With stacks, allocations enter through `tracer_stack` (which tail-calls the probe: its
    // run time includes the probe's); without, every hit runs a probe program.
    let stats = if Probes::stacks_enabled() {
        first.probes.run_stats("tracer_stack")
    } else {
        first.probes.probe_run_stats()
    };
    Ok((seconds, traps, stats))
}

/// The same, with the Python stack reading of allocations on or off.
fn traced_stacks(
    opts: &BenchOpts,
    plan: &ProbePlan,
    pairs: u64,
    stacks: bool,
) -> Result<(f64, Traps, RunStats)> {
    tracer::probe::set_python_stacks(stacks);
    let r = traced(opts, plan, pairs, (2, 4));
    tracer::probe::set_python_stacks(false);
    r
}

/// The loop under the do-nothing program on the allocation and free functions.
pub fn bare_loop(
    python: &std::path::Path,
    plan: &ProbePlan,
    pairs: u64,
) -> Result<(f64, RunStats)> {
    bare_command(plan, workload(python, pairs, (2, 4), false))
}

/// `workload` (it prints its timing) under the do-nothing program on the allocation and free
/// functions, the SHM tracker off: the cost of the traps alone.
pub fn bare_command(plan: &ProbePlan, mut workload: Command) -> Result<(f64, RunStats)> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let _g = rt.enter();
    let bare = Probes::attach_reference(plan, Reference::Empty, &[Role::Alloc, Role::Free])?;
    workload.env("TT_METAL_SHM_TRACKING_DISABLED", "1");
    let t = loop_seconds(workload.output()?)?;
    Ok((t, tracer::probe::run_stats(&bare, "tracer_bare")))
}

/// Best of the rounds: other load on the machine only ever adds time.
pub fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    match s.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => s[n / 2],
        n => (s[n / 2 - 1] + s[n / 2]) / 2.0,
    }
}

pub fn best(v: &[f64]) -> f64 {
    v.iter().copied().fold(f64::INFINITY, f64::min)
}

pub fn bench(opts: BenchOpts) -> Result<()> {
    require_root()?;
    let lib = discover::library_for_command(None, &[opts.python.display().to_string()])?;
    let plan = plan::for_library(&lib)?;
    let started = Instant::now();
    if opts.attach_only {
        return report_attach_latency(&opts);
    }
    if opts.snapshot_only {
        return report_snapshot_time(&opts);
    }
    println!("runtime: {}", lib.display());
    if opts.paired_rounds > 0 {
        super::paired::overhead(&opts.python, &plan, opts.block_pairs, opts.paired_rounds)?
            .print_overhead();
    }
    if opts.paired_only {
        return Ok(());
    }
    println!(
        "in a process per configuration: {} allocate+deallocate pairs of a 2x4-mesh DRAM tensor, {} rounds",
        opts.pairs, opts.rounds
    );
    let (mut t_none, mut t_bare, mut t_tracer, mut t_shm) = (vec![], vec![], vec![], vec![]);
    let mut t_nostacks = vec![];
    let (mut k_bare, mut k_tracer) = (KernelTime::default(), KernelTime::default());
    let mut hits = Traps::default();
    for round in 0..opts.rounds {
        // Rotate the order so a drift in machine load does not favour one configuration.
        for step in 0..5 {
            match (step + round) % 5 {
                0 => t_none.push(loop_seconds(
                    workload(&opts.python, opts.pairs, (2, 4), false).output()?,
                )?),
                1 => t_bare.push(bare_loop(&opts.python, &plan, opts.pairs)?.0),
                2 => {
                    let (t, h, _) = traced_stacks(&opts, &plan, opts.pairs, true)?;
                    t_tracer.push(t);
                    hits = h;
                }
                3 => t_nostacks.push(traced_stacks(&opts, &plan, opts.pairs, false)?.0),
                _ => t_shm.push(loop_seconds(
                    workload(&opts.python, opts.pairs, (2, 4), true).output()?,
                )?),
            }
        }
        eprintln!(
            "round {}: untraced {:.3}s, bare uprobe {:.3}s, tracer --python-stacks {:.3}s, tracer {:.3}s, SHM tracker {:.3}s",
            round + 1,
            t_none[round],
            t_bare[round],
            t_tracer[round],
            t_nostacks[round],
            t_shm[round]
        );
    }
    // In-kernel time per hit, in a pass of its own: the kernel's run-time counters read the
    // clock twice per program run, which would add the same cost to both timed configurations.
    let stats = aya::sys::enable_stats(aya::sys::Stats::RunTime).ok();
    let (_, k) = bare_loop(&opts.python, &plan, opts.pairs)?;
    k_bare.add(k);
    let (_, _, k) = traced_stacks(&opts, &plan, opts.pairs, true)?;
    k_tracer.add(k);
    let mut k_nostacks = KernelTime::default();
    let (_, _, k) = traced_stacks(&opts, &plan, opts.pairs, false)?;
    k_nostacks.add(k);
    let per_pair = |t: f64| t / opts.pairs as f64 * 1e6;
    let (none, bare_t, tracer_t, shm) =
        (best(&t_none), best(&t_bare), best(&t_tracer), best(&t_shm));
    // Warm-up allocations (10 pairs) happen inside the traced window too.
    let traced_pairs = (opts.pairs + 10) as f64;
    println!(
        "per allocate+deallocate pair (best of {} rounds):",
        opts.rounds
    );
    println!("  untraced            {:8.2} us", per_pair(none));
    println!("  bare uprobe x2      {:8.2} us", per_pair(bare_t));
    // `tracer` is the default configuration (no Python stacks); `stacks_t` with them.
    let (stacks_t, tracer_t) = (tracer_t, best(&t_nostacks));
    println!("  tracer              {:8.2} us", per_pair(tracer_t));
    println!("  tracer, Py stacks   {:8.2} us", per_pair(stacks_t));
    println!("  tt-metal SHM tracker{:8.2} us", per_pair(shm));
    println!(
        "uprobe traps per mesh tensor (8 chips): allocation {:.3}, free {:.3}",
        hits.alloc as f64 / traced_pairs,
        hits.free as f64 / traced_pairs
    );
    for shape in [(1, 1), (1, 2)] {
        let (_, h, _) = traced(&opts, &plan, 200, shape)?;
        println!(
            "uprobe traps per mesh tensor ({}x{} mesh): allocation {:.3}, free {:.3}",
            shape.0,
            shape.1,
            h.alloc as f64 / 210.0,
            h.free as f64 / 210.0
        );
    }
    let ratio = (tracer_t - none) / (bare_t - none);
    println!("cost per tracked event, tracer / bare uprobe on the same functions: {ratio:.3} (target <= 1.3; {:.3} with --python-stacks)", (stacks_t - none) / (bare_t - none));
    // The best round of each configuration may come from different moments; on a noisy
    // machine a lucky round of one of them moves the ratio a lot. Each round ran every
    // configuration back to back: the median of each one's overhead within its round is the
    // steadier figure.
    let overheads = |t: &[f64]| -> Vec<f64> { t.iter().zip(&t_none).map(|(t, u)| t - u).collect() };
    let (m_bare, m_tracer, m_shm) = (
        median(&overheads(&t_bare)),
        median(&overheads(&t_nostacks)),
        median(&overheads(&t_shm)),
    );
    println!(
        "the same from each round's overheads over its own untraced run (median of {} rounds): tracer / bare uprobe {:.3}, tracer / SHM tracker {:.3}",
        opts.rounds,
        m_tracer / m_bare,
        m_tracer / m_shm
    );
    println!(
        "overhead vs untraced: tracer {:+.1}%, SHM tracker {:+.1}%; tracer cost / SHM tracker cost: {:.3} (target <= 0.5)",
        (tracer_t / none - 1.0) * 100.0,
        (shm / none - 1.0) * 100.0,
        (tracer_t - none) / (shm - none)
    );
    if stats.is_some() && k_bare.runs > 0 && k_nostacks.runs > 0 {
        let trap_ns = (bare_t - none) / opts.pairs as f64 / 2.0 * 1e9;
        println!(
            "per probe hit: bare uprobe {:.0} ns in all ({:.0} ns inside its eBPF program); \
             tracer's eBPF program {:.0} ns",
            trap_ns,
            k_bare.per_run(),
            k_nostacks.per_run()
        );
    }
    // One Python stack is read per allocation (frees read none): the difference of the two
    // traced configurations is all allocations'.
    let stack_us = (stacks_t - tracer_t) / opts.pairs as f64 * 1e6;
    println!(
        "cost per tracked allocation, Python stacks on / off: {:.3} (a stack adds {stack_us:.2} us per allocation in the workload; tracer cost vs untraced {:.2} us with, {:.2} us without)",
        (stacks_t - none) / (tracer_t - none),
        per_pair(stacks_t - none),
        per_pair(tracer_t - none)
    );
    if stats.is_some() && k_tracer.runs > 0 && k_nostacks.runs > 0 {
        println!(
            "in-kernel per allocation hit: {:.0} ns with the stack (tracer_stack, the probe included), {:.0} ns per hit without (the probe programs)",
            k_tracer.per_run(),
            k_nostacks.per_run()
        );
    }
    report_attach_latency(&opts)?;
    report_snapshot_time(&opts)?;
    println!("(benchmark took {:.0}s)", started.elapsed().as_secs_f64());
    Ok(())
}
