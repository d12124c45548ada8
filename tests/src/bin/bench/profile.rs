//! `--profile-probe`: where the probe program's time goes, part by part.
//!
//! The same allocate/deallocate loop runs under the probe program loaded to stop after each of
//! its parts in turn (a read-only global the verifier folds, so each variant runs exactly its
//! parts), with the kernel's run-time counters on; a part's cost is the difference between two
//! consecutive variants. The bare (empty) program on the same functions is the floor.
use std::path::Path;

use anyhow::{Context, Result};

use tracer::{
    exit::require_root,
    plan::{self, Role},
    probe::PROBE_PARTS,
    runtime::discover,
};

use super::overhead::{bare_loop, traced_profiled};

/// ns per program run, from a configuration's run-time counters.
fn per_run(stats: tracer::probe::RunStats) -> Option<f64> {
    let (runs, t) = stats?;
    (runs > 0).then(|| t.as_nanos() as f64 / runs as f64)
}

pub fn bench(python: &Path, pairs: u64, rounds: usize) -> Result<()> {
    require_root()?;
    let lib = discover::library_for_command(None, &[python.display().to_string()])?;
    let plan = plan::for_library(&lib)?;
    let _stats = aya::sys::enable_stats(aya::sys::Stats::RunTime)
        .context("cannot turn on the kernel's BPF run-time statistics")?;
    println!(
        "probe profile: {pairs} allocate+deallocate pairs of a 2x4-mesh DRAM tensor per variant, \
         best of {rounds} rounds, ns inside the eBPF program per hit (kernel run-time counters)"
    );
    for (i, p) in plan.probes.iter().enumerate() {
        if !matches!(p.role, Role::Alloc | Role::Free) {
            continue;
        }
        let spec = tracer::plan::kinds::slot_spec(&plan, i);
        let reads = match (spec.window.steps, spec.window_len) {
            (0, 0) => "no user-memory read".to_string(),
            (_, 0) => "one read (its object's pointer)".to_string(),
            (_, n) => format!("one read (a window of {n} bytes)"),
        };
        if spec.flags & tracer_common::SLOT_BY_OBJECT != 0 {
            // The workload is launched: every allocation is seen, frees carry their object.
            let object = match spec.window.steps {
                0 => "no user-memory read",
                _ => "one read (its object's pointer)",
            };
            println!("  {:?} probe: its buffer's object alone, {object}", p.role);
            continue;
        }
        println!("  {:?} probe: {} values, {reads}", p.role, spec.nfields);
    }
    // Variant 0 is the whole program; it runs last in each round, after every stop.
    let stops: Vec<u32> = (1..=PROBE_PARTS.len() as u32).chain([0]).collect();
    let mut best = vec![f64::INFINITY; stops.len()];
    let mut bare = f64::INFINITY;
    // Wall time of the loop per allocate+free pair (the counters' clock reads included, the
    // same in every variant): what the parts cost the workload, outside the program too.
    let mut wall = vec![f64::INFINITY; stops.len()];
    let mut bare_wall = f64::INFINITY;
    let us_per_pair = |secs: f64| secs * 1e6 / pairs as f64;
    for round in 0..rounds {
        let (secs, k) = bare_loop(python, &plan, pairs)?;
        bare_wall = bare_wall.min(us_per_pair(secs));
        if let Some(ns) = per_run(k) {
            bare = bare.min(ns);
        }
        for (i, stop) in stops.iter().enumerate() {
            let (secs, _, k) = traced_profiled(python, &plan, pairs, (2, 4), *stop)?;
            wall[i] = wall[i].min(us_per_pair(secs));
            if let Some(ns) = per_run(k) {
                best[i] = best[i].min(ns);
            }
        }
        eprintln!("round {} done", round + 1);
    }
    println!(
        "  {:<28} {:>9} {:>9} {:>14}",
        "part", "total", "this part", "loop us/pair"
    );
    println!(
        "  {:<28} {:>9.0} {:>9} {:>14.2}",
        "empty program (bare uprobe)", bare, "", bare_wall
    );
    let mut before = bare;
    for (i, name) in PROBE_PARTS.iter().enumerate() {
        println!(
            "  {:<28} {:>9.0} {:>+9.0} {:>14.2}",
            name,
            best[i],
            best[i] - before,
            wall[i]
        );
        before = best[i];
    }
    let last = stops.len() - 1;
    println!(
        "  {:<28} {:>9.0} {:>+9.0} {:>14.2}",
        "submit (whole program)",
        best[last],
        best[last] - before,
        wall[last]
    );
    Ok(())
}
