//! The tight loop's cost per event, configuration against configuration, in one process.
//!
//! Separate processes differ by ~1% in loop time on this VM (memory layout, which core, what
//! else ran), as much as a third of a uprobe's cost: ratios of differences between them swing
//! from run to run. Here one workload process (`alloc_loop.py --serve`) runs timed blocks on
//! request, and between blocks the benchmark switches what traps its allocation and free
//! ("arms"): nothing, the do-nothing program, tracer's own probes with the whole session
//! (decoder, ledger) consuming behind them as in `tracer run`, the same with the session idle
//! until the block ends, or a profile variant of the probe program. Rounds rotate the order.
//! A block's figure is its median 100-pair chunk.
use std::{
    io::{BufRead, BufReader, Write},
    path::Path,
    process::{Command, Stdio},
    time::Duration,
};

use anyhow::{bail, Context, Result};

use tracer::{
    plan::{ProbePlan, Role},
    probe::{decode::Decoder, Loaded, Probes, Reference, Scope},
    session::{Options, Session},
};
use tracer_tests::workload as script;

use super::overhead::{best, median};

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Arm {
    Untraced,
    /// The do-nothing program on the same two functions: the trap alone.
    Bare,
    /// The floor program on them (`Reference::Floor`): the trap, one read of the allocation's
    /// buffer and one record per hit, what any probe that reports buffers pays.
    Floor,
    /// Tracer's probes, the session taking their records as they come.
    Tracer,
    /// Tracer's probes, the session taking their records only after the block: the cost in
    /// the traced process alone, without the collector working beside it.
    TracerIdle,
    /// The probe program loaded to stop after part N (`Loaded::profiled`); the session idle.
    Stop(u32),
}

/// What the blocks measured.
pub struct Blocks {
    pub arms: Vec<Arm>,
    /// Per arm, seconds per pair of each counted block.
    pub per_pair: Vec<Vec<f64>>,
    /// Per arm, program runs and in-kernel time (with the kernel's run-time counters on).
    pub kernel: Vec<(u64, Duration)>,
    pub block_pairs: u64,
    /// Allocations and frees the tracer's decoder saw, and the pairs its blocks ran.
    pub seen: (u64, u64),
    pub traced_pairs: u64,
    /// Records the floor program's ring buffer held after its blocks, and the events they ran.
    pub floor_records: (u64, u64),
    /// Records the session took while the workload ran, and its time decoding and applying.
    pub consumed: (u64, Duration),
}

impl Blocks {
    pub fn of(&self, a: Arm) -> &[f64] {
        &self.per_pair[self.arms.iter().position(|x| *x == a).unwrap()]
    }

    /// ns per program run of `a`, if the counters were on.
    pub fn kernel_ns(&self, a: Arm) -> Option<f64> {
        let (runs, t) = self.kernel[self.arms.iter().position(|x| *x == a).unwrap()];
        (runs > 0).then(|| t.as_nanos() as f64 / runs as f64)
    }

    /// ns per event (two per pair) that `a` adds to the loop over untraced, medians.
    pub fn loop_ns(&self, a: Arm) -> f64 {
        (median(self.of(a)) - median(self.of(Arm::Untraced))) / 2.0 * 1e9
    }

    /// (a - untraced) / (bare - untraced) from `stat` of each arm's blocks.
    fn ratio(&self, a: Arm, stat: fn(&[f64]) -> f64) -> f64 {
        let none = stat(self.of(Arm::Untraced));
        (stat(self.of(a)) - none) / (stat(self.of(Arm::Bare)) - none)
    }

    pub fn print_overhead(&self) {
        let us = |v: f64| v * 1e6;
        let rounds = self.of(Arm::Untraced).len();
        println!(
            "in one process ({rounds} rounds of one {}-pair block per configuration, order rotated; a block's figure is its median 100-pair chunk), per pair:",
            self.block_pairs
        );
        for (a, name) in [
            (Arm::Untraced, "untraced"),
            (Arm::Bare, "bare uprobe x2"),
            (Arm::Floor, "floor x2"),
            (Arm::Tracer, "tracer"),
            (Arm::TracerIdle, "tracer, idle session"),
        ] {
            if !self.arms.contains(&a) {
                continue;
            }
            let v = self.of(a);
            println!(
                "  {name:<22} best {:6.2} us, median {:6.2} us",
                us(best(v)),
                us(median(v))
            );
        }
        // Per round: the tracer's overhead over the bare uprobe's, each over the untraced
        // block of the same round.
        let (none, bare, tracer) = (
            self.of(Arm::Untraced),
            self.of(Arm::Bare),
            self.of(Arm::Tracer),
        );
        let mut per_round: Vec<f64> = (0..rounds)
            .map(|i| (tracer[i] - none[i]) / (bare[i] - none[i]))
            .filter(|r| r.is_finite())
            .collect();
        per_round.sort_by(f64::total_cmp);
        let q = |f: f64| per_round[((per_round.len() - 1) as f64 * f).round() as usize];
        println!(
            "cost per tracked event in one process, tracer / bare uprobe: {:.3} from the best blocks, {:.3} from the median blocks (target <= 1.3); per round: median {:.3}, quartiles {:.3}-{:.3}",
            self.ratio(Arm::Tracer, best),
            self.ratio(Arm::Tracer, median),
            q(0.5),
            q(0.25),
            q(0.75)
        );
        let trap = self.loop_ns(Arm::Bare);
        println!(
            "  per event: a bare uprobe costs {trap:.0} ns, tracer {:.0} ns more; with the session idle during the block {:.0} ns more (the difference is the collector working beside the program)",
            self.loop_ns(Arm::Tracer) - trap,
            self.loop_ns(Arm::TracerIdle) - trap
        );
        if self.arms.contains(&Arm::Floor) {
            println!(
                "  the floor (the trap, one 8-byte read of the allocation's buffer, one 40-byte record per event): {:.3} of a bare uprobe from the best blocks, {:.3} from the median; tracer is {:.3} of the floor (best), {:.0} ns per event above it (median)",
                self.ratio(Arm::Floor, best),
                self.ratio(Arm::Floor, median),
                self.ratio(Arm::Tracer, best) / self.ratio(Arm::Floor, best),
                self.loop_ns(Arm::Tracer) - self.loop_ns(Arm::Floor)
            );
            println!(
                "  the floor's blocks: {} events run, {} records taken",
                self.floor_records.1, self.floor_records.0
            );
        }
        println!(
            "  the tracer's blocks: {} pairs run, {} allocations and {} frees decoded",
            self.traced_pairs, self.seen.0, self.seen.1
        );
        if self.consumed.0 > 0 {
            println!(
                "  the session decoded and applied {} records while blocks ran, {:.0} ns of its own CPU each",
                self.consumed.0,
                self.consumed.1.as_nanos() as f64 / self.consumed.0 as f64
            );
        }
    }
}

/// The workload's answer to one block.
fn block_seconds(line: &str) -> Result<f64> {
    let v: serde_json::Value =
        serde_json::from_str(line).with_context(|| format!("workload said {line:?}"))?;
    v["median_chunk_pair_seconds"]
        .as_f64()
        .context("no median_chunk_pair_seconds in the workload's answer")
}

/// The blocks' workload: one process serving timed blocks, from a thread of its own so the
/// session drains the ring buffer while a block runs.
struct Workload {
    child: std::process::Child,
    ask: Option<std::sync::mpsc::Sender<u64>>,
    told: tokio::sync::mpsc::UnboundedReceiver<Result<f64>>,
    driver: Option<std::thread::JoinHandle<Result<()>>>,
}

impl Workload {
    /// Started, not yet opening its mesh: `open` lets it, once tracing is in place.
    fn start(python: &Path) -> Result<(Self, impl FnOnce() -> Result<()>)> {
        let mut child = Command::new(python)
            .arg(script("alloc_loop.py"))
            .args(["--serve", "2", "4"])
            .env("TT_METAL_SHM_TRACKING_DISABLED", "1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .context("cannot start workloads/alloc_loop.py --serve")?;
        let mut to_child = child.stdin.take().unwrap();
        let mut from_child = BufReader::new(child.stdout.take().unwrap());
        let (ask, asked) = std::sync::mpsc::channel::<u64>();
        let (tell, told) = tokio::sync::mpsc::unbounded_channel::<Result<f64>>();
        let (go, gone) = std::sync::mpsc::channel::<()>();
        let driver = std::thread::spawn(move || -> Result<()> {
            if gone.recv().is_err() {
                return Ok(());
            }
            writeln!(to_child, "go")?;
            let mut line = String::new();
            from_child.read_line(&mut line)?;
            if !line.contains("ready") {
                bail!("workload did not start: {line:?}");
            }
            for n in asked {
                writeln!(to_child, "{n}")?;
                line.clear();
                from_child.read_line(&mut line)?;
                if tell.send(block_seconds(line.trim())).is_err() {
                    break;
                }
            }
            Ok(())
        });
        let open = move || go.send(()).context("the block driver stopped");
        Ok((
            Self {
                child,
                ask: Some(ask),
                told,
                driver: Some(driver),
            },
            open,
        ))
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn ask(&self, pairs: u64) -> Result<()> {
        self.ask
            .as_ref()
            .unwrap()
            .send(pairs)
            .context("the block driver stopped")
    }

    fn finish(mut self) -> Result<()> {
        drop(self.ask.take());
        self.driver
            .take()
            .unwrap()
            .join()
            .map_err(|_| anyhow::anyhow!("block driver panicked"))??;
        let status = self.child.wait()?;
        if !status.success() {
            bail!("workload alloc_loop.py --serve failed: {status}");
        }
        Ok(())
    }
}

fn take_all(session: &mut Session) {
    let mut raws = Vec::new();
    session.source.drain(&mut raws);
    session.decode_and_apply(raws);
}

/// Runs `rounds` rounds (after one uncounted warm-up round) of one block per arm.
pub fn run(
    python: &Path,
    plan: &ProbePlan,
    arms: &[Arm],
    block_pairs: u64,
    rounds: usize,
) -> Result<Blocks> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let _g = rt.enter();
    tracer::probe::set_python_stacks(false);
    let (mut workload, open) = Workload::start(python)?;
    let pid = workload.pid();
    // Every probe set is in place, its hot probes off, before the workload opens its mesh:
    // each sees the mesh open, and the process is tracked by object from its first
    // allocation on, as under `tracer run`.
    let mut probes = Probes::attach(plan, Scope::Tracked)?;
    probes.set_hot_probes(false)?;
    probes.track_by_object(pid)?;
    let mut session = Session::new(
        probes,
        Decoder::new(plan.clone()),
        Options {
            quiet: true,
            ..Default::default()
        },
    );
    let mut variants: Vec<(u32, Session)> = Vec::new();
    for a in arms {
        if let Arm::Stop(stop) = a {
            let mut p = Loaded::profiled(*stop)?.attach(plan)?;
            p.set_hot_probes(false)?;
            p.track_by_object(pid)?;
            let s = Session::new(
                p,
                Decoder::new(plan.clone()),
                Options {
                    quiet: true,
                    ..Default::default()
                },
            );
            variants.push((*stop, s));
        }
    }
    open()?;
    let mut per_pair = vec![Vec::new(); arms.len()];
    let mut kernel = vec![(0u64, Duration::ZERO); arms.len()];
    let mut traced_pairs = 0;
    let mut consumed = (0u64, Duration::ZERO);
    let mut floor_records = (0u64, 0u64);
    for round in 0..=rounds {
        for step in 0..arms.len() {
            let i = (step + round) % arms.len();
            let arm = arms[i];
            let reference = match arm {
                Arm::Bare => Some(Reference::Empty),
                Arm::Floor => Some(Reference::Floor),
                _ => None,
            };
            let mut reference_probes = match reference {
                Some(r) => Some(Probes::attach_reference(
                    plan,
                    r,
                    &[Role::Alloc, Role::Free],
                )?),
                None => None,
            };
            let target: Option<&mut Session> = match arm {
                Arm::Tracer | Arm::TracerIdle => Some(&mut session),
                Arm::Stop(stop) => variants
                    .iter_mut()
                    .find(|(s, _)| *s == stop)
                    .map(|(_, s)| s),
                _ => None,
            };
            let before = target
                .as_ref()
                .and_then(|s| s.source.primary().probes.probe_run_stats());
            let mut target = target;
            if let Some(s) = target.as_deref_mut() {
                s.source.primary_mut().probes.set_hot_probes(true)?;
            }
            workload.ask(block_pairs)?;
            let consuming = arm == Arm::Tracer;
            let seconds = rt.block_on(async {
                loop {
                    let Some(s) = target.as_deref_mut().filter(|_| consuming) else {
                        return workload.told.recv().await.context("the workload stopped")?;
                    };
                    let mut raws = Vec::new();
                    tokio::select! {
                        r = s.source.next_batch(&mut raws) => r?,
                        t = workload.told.recv() => return t.context("the workload stopped")?,
                    }
                    let t = std::time::Instant::now();
                    consumed.0 += raws.len() as u64;
                    s.decode_and_apply(raws);
                    consumed.1 += t.elapsed();
                }
            })?;
            let mut ran = None;
            if let Some(s) = target {
                s.source.primary_mut().probes.set_hot_probes(false)?;
                take_all(s);
                ran = s.source.primary().probes.probe_run_stats();
            }
            if let (Some(mut b), Some(r)) = (reference_probes.take(), reference) {
                ran = tracer::probe::run_stats(&b, r.program());
                if r == Reference::Floor {
                    floor_records.0 += tracer::probe::drain_reference(&mut b)?;
                    floor_records.1 += 2 * block_pairs;
                }
            }
            if matches!(arm, Arm::Tracer | Arm::TracerIdle) {
                traced_pairs += block_pairs;
            }
            if round > 0 {
                per_pair[i].push(seconds);
                if let Some((runs, t)) = ran {
                    let (runs0, t0) = before.unwrap_or_default();
                    kernel[i].0 += runs - runs0;
                    kernel[i].1 += t - t0;
                }
            }
        }
    }
    workload.finish()?;
    take_all(&mut session);
    let d = &session.source.primary().decoder;
    Ok(Blocks {
        arms: arms.to_vec(),
        per_pair,
        kernel,
        block_pairs,
        seen: (d.records_of(Role::Alloc), d.records_of(Role::Free)),
        traced_pairs,
        floor_records,
        consumed,
    })
}

/// The default comparison: untraced, bare, tracer, tracer with the session idle.
pub fn overhead(
    python: &Path,
    plan: &ProbePlan,
    block_pairs: u64,
    rounds: usize,
) -> Result<Blocks> {
    run(
        python,
        plan,
        &[
            Arm::Untraced,
            Arm::Bare,
            Arm::Floor,
            Arm::Tracer,
            Arm::TracerIdle,
        ],
        block_pairs,
        rounds,
    )
}
