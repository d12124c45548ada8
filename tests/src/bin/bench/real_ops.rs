//! `--real-ops N`: the cost of tracing a model's steady state, per op, measured side by side:
//! the same loop of real ops (matmul, softmax, add with L1 outputs, programs cached; see
//! workloads/op_loop.py) untraced, under an empty eBPF program on the functions tracer traps
//! on (the floor: the traps alone), under tracer, and under tt-metal's SHM tracker.
use std::{path::Path, process::Command};

use anyhow::Result;
use tracer::{exit::require_root, plan, runtime::discover};
use tracer_tests::workload as script;

use super::overhead::{bare_command, best, loop_seconds, traced_script};

fn op_loop(python: &Path, iterations: u64) -> Command {
    let mut c = Command::new(python);
    c.arg(script("op_loop.py")).arg(iterations.to_string());
    c
}

fn untraced(python: &Path, iterations: u64, shm: bool) -> Result<f64> {
    let mut c = op_loop(python, iterations);
    if !shm {
        c.env("TT_METAL_SHM_TRACKING_DISABLED", "1");
    }
    loop_seconds(c.output()?)
}

pub fn bench(python: &Path, iterations: u64, rounds: usize) -> Result<()> {
    require_root()?;
    let lib = discover::library_for_command(None, &[python.display().to_string()])?;
    let plan = plan::for_library(&lib)?;
    let ops = 3 * iterations;
    println!("benchmark: {iterations} iterations of matmul + softmax + add on the 2x4 mock mesh ({ops} ops), {rounds} rounds");
    println!("runtime: {}", lib.display());
    let args = [
        script("op_loop.py").display().to_string(),
        iterations.to_string(),
    ];
    let (mut none, mut bare, mut traced, mut shm) = (vec![], vec![], vec![], vec![]);
    let mut traps = None;
    for round in 0..rounds {
        // Rotate the order so a drift in machine load does not favour one configuration.
        for step in 0..4 {
            match (step + round) % 4 {
                0 => none.push(untraced(python, iterations, false)?),
                3 => bare.push(bare_command(&plan, op_loop(python, iterations))?.0),
                1 => {
                    let (t, h, _) = traced_script(python, &plan, &args)?;
                    traced.push(t);
                    traps = Some(h);
                }
                _ => shm.push(untraced(python, iterations, true)?),
            }
        }
        eprintln!(
            "round {}: untraced {:.3}s, bare uprobe {:.3}s, tracer {:.3}s, SHM tracker {:.3}s",
            round + 1,
            none[round],
            bare[round],
            traced[round],
            shm[round]
        );
    }
    let per_op = |t: f64| t / ops as f64 * 1e6;
    let (n, b, t, s) = (best(&none), best(&bare), best(&traced), best(&shm));
    println!("per op (best of {rounds} rounds):");
    println!("  untraced             {:8.2} us", per_op(n));
    println!("  bare uprobe          {:8.2} us", per_op(b));
    println!("  tracer               {:8.2} us", per_op(t));
    println!("  tt-metal SHM tracker {:8.2} us", per_op(s));
    println!(
        "overhead per op vs untraced: tracer {:+.2}%, SHM tracker {:+.2}%; tracer cost / SHM tracker cost: {:.3}",
        (t / n - 1.0) * 100.0,
        (s / n - 1.0) * 100.0,
        (t - n) / (s - n)
    );
    println!(
        "the traps alone (empty program on the same functions): {:+.2}% per op; tracer's own \
         work on top of them: {:+.2}% (tracer / bare uprobe per event: {:.2})",
        (b / n - 1.0) * 100.0,
        (t - b) / n * 100.0,
        (t - n) / (b - n)
    );
    if let Some(h) = traps {
        // Warm-up iterations (3) are traced too.
        let traced_ops = (ops + 9) as f64;
        println!(
            "uprobe traps per op: allocation {:.3}, free {:.3} (records of the probes on the traced run)",
            h.alloc as f64 / traced_ops,
            h.free as f64 / traced_ops
        );
    }
    Ok(())
}
