//! `--profile-probe`: where the probe program's time goes, part by part, and how much of a
//! part's cost lands outside the program.
//!
//! The probe program is loaded once per variant, stopped after each of its parts in turn (a
//! read-only global the verifier folds, so each variant runs exactly its parts), all variants
//! at once beside the bare (empty) program; one workload process runs a block under each in
//! turn (`paired`), with the kernel's run-time counters on. Per variant: ns inside the program
//! per hit, and ns it adds to the workload's loop per event. Their difference is what the
//! variant costs outside its program: the trap's own machinery for the bare program, and for
//! the parts what they evict from the caches the workload comes back to.
use std::path::Path;

use anyhow::{Context, Result};

use tracer::{
    exit::require_root,
    plan::{self, Role},
    probe::PROBE_PARTS,
    runtime::discover,
};

use super::paired::{self, Arm, Blocks};

pub fn bench(python: &Path, block_pairs: u64, rounds: usize) -> Result<()> {
    require_root()?;
    let lib = discover::library_for_command(None, &[python.display().to_string()])?;
    let plan = plan::for_library(&lib)?;
    let _stats = aya::sys::enable_stats(aya::sys::Stats::RunTime)
        .context("cannot turn on the kernel's BPF run-time statistics")?;
    println!(
        "probe profile: {rounds} rounds of one {block_pairs}-pair block (2x4-mesh DRAM tensor) per variant in one process; \
         ns per hit inside the eBPF program (kernel run-time counters), ns per event the loop takes over untraced (median blocks)"
    );
    println!("runtime: {}", lib.display());
    for (i, p) in plan.probes.iter().enumerate() {
        if !matches!(p.role, Role::Alloc | Role::Free) {
            continue;
        }
        let spec = tracer::plan::kinds::slot_spec(&plan, i);
        let reads = match (spec.window.steps, spec.window_len) {
            (0, 0) => "no user-memory read".to_string(),
            (_, 0) => "one read (its object's pointer)".to_string(),
            (0, n) => format!("one read (a window of {n} bytes)"),
            (_, n) => format!("two reads (its object's pointer, then a window of {n} bytes)"),
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
    // Stop 0 is the whole program.
    let stops: Vec<u32> = (1..=PROBE_PARTS.len() as u32).chain([0]).collect();
    let mut arms = vec![Arm::Untraced, Arm::Bare, Arm::Floor];
    arms.extend(stops.iter().map(|s| Arm::Stop(*s)));
    let b = paired::run(python, &plan, &arms, block_pairs, rounds)?;
    let names = PROBE_PARTS
        .iter()
        .copied()
        .chain(["submit (whole program)"]);
    println!(
        "  {:<28} {:>9} {:>9} {:>11} {:>13} {:>11}",
        "part", "in kernel", "this part", "loop/event", "outside prog", "this part"
    );
    let bare = Cost::of(&b, Arm::Bare);
    row("empty program (bare uprobe)", bare, None, "");
    let floor = Cost::of(&b, Arm::Floor);
    row(
        "floor: 1 read + 1 record",
        floor,
        Some(bare),
        "   (not a part: the least any such probe does)",
    );
    let mut before = bare;
    for (stop, name) in stops.iter().zip(names) {
        let part = Cost::of(&b, Arm::Stop(*stop));
        row(name, part, Some(before), "");
        before = part;
    }
    let whole = Cost::of(&b, Arm::Stop(0));
    println!(
        "  whole program over the bare uprobe: {:.0} ns per event inside the program, {:.0} ns outside it; ratio to the bare uprobe {:.3}",
        whole.inside - bare.inside,
        whole.outside() - bare.outside(),
        whole.total / bare.total
    );
    println!(
        "  the floor over the bare uprobe: {:.0} ns per event inside, {:.0} ns outside; ratio {:.3}; the whole program is {:.0} ns per event above the floor",
        floor.inside - bare.inside,
        floor.outside() - bare.outside(),
        floor.total / bare.total,
        whole.total - floor.total
    );
    Ok(())
}

/// A variant's line: ns per hit inside its program, ns per event it adds to the loop.
#[derive(Clone, Copy)]
struct Cost {
    inside: f64,
    total: f64,
}

impl Cost {
    fn of(b: &Blocks, arm: Arm) -> Self {
        Self {
            inside: b.kernel_ns(arm).unwrap_or(f64::NAN),
            total: b.loop_ns(arm),
        }
    }

    /// What the variant costs outside its program.
    fn outside(self) -> f64 {
        self.total - self.inside
    }
}

/// Prints `c`, with its differences from `against` when there is one.
fn row(name: &str, c: Cost, against: Option<Cost>, note: &str) {
    match against {
        None => println!(
            "  {:<28} {:>9.0} {:>9} {:>11.0} {:>13.0} {:>11}",
            name,
            c.inside,
            "",
            c.total,
            c.outside(),
            ""
        ),
        Some(a) => println!(
            "  {:<28} {:>9.0} {:>+9.0} {:>11.0} {:>13.0} {:>+11.0}{note}",
            name,
            c.inside,
            c.inside - a.inside,
            c.total,
            c.outside(),
            c.outside() - a.outside()
        ),
    }
}
