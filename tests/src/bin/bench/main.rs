//! `cargo xtask bench [ARGS]`: tracer's cost measured side by side in one run, on the real
//! runtime (not part of the shipped binary).
//!
//! - default: the allocate/deallocate loop untraced, under a bare uprobe on the same two
//!   functions and under tracer, block by block in one process; then the same loop in a process
//!   per configuration, with tt-metal's SHM tracker too; traps per mesh allocation;
//!   attach latency; `tracer snapshot` of a process holding 1,000 buffers.
//! - `--real-ops N`: N iterations of real ops (matmul, softmax, add), per op untraced, under
//!   tracer and under the SHM tracker.
//! - `--profile-probe`: the probe program's in-kernel time, part by part.
//! - `--recording`: bytes per event of a real recording, and `report` throughput on a
//!   synthesized stand-in recording.
mod attach;
mod overhead;
mod paired;
mod profile;
mod real_ops;
mod recording;
mod snapshot;

use std::path::PathBuf;

use anyhow::Result;
use clap::Parser;

#[derive(Parser)]
#[command(name = "bench")]
struct Args {
    /// Python with ttnn installed.
    #[arg(long)]
    python: PathBuf,
    /// Allocate+deallocate pairs per configuration.
    #[arg(long, default_value_t = 20000)]
    pairs: u64,
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Instead: bytes per event of a real recording (PAIRS pairs) and `report` throughput on a
    /// synthesized stand-in recording of EVENTS events.
    #[arg(long)]
    recording: bool,
    #[arg(long, default_value_t = recording::STAND_IN_EVENTS)]
    events: u64,
    /// Keep the stand-in recording at FILE (to profile `tracer report FILE`).
    #[arg(long, value_name = "FILE")]
    stand_in: Option<PathBuf>,
    /// Rounds of the in-process comparison (one block per configuration each; 0: skip it).
    #[arg(long, default_value_t = 30)]
    paired_rounds: usize,
    /// Pairs per block of the in-process comparison.
    #[arg(long, default_value_t = 3000)]
    block_pairs: u64,
    /// Only the in-process comparison.
    #[arg(long)]
    paired_only: bool,
    /// Attaches to a live ttnn process, timing command start to `attached:`.
    #[arg(long, default_value_t = 5)]
    attach_rounds: usize,
    /// Only the attach latency (skip the overhead loops).
    #[arg(long)]
    attach_only: bool,
    /// `tracer snapshot` runs on a process holding 1,000 buffers.
    #[arg(long, default_value_t = 5)]
    snapshot_rounds: usize,
    /// Only the snapshot time (skip the overhead loops and the attach latency).
    #[arg(long)]
    snapshot_only: bool,
    /// Instead: real ops, ITERATIONS of matmul + softmax + add, per op untraced, under tracer
    /// and under tt-metal's SHM tracker.
    #[arg(long, value_name = "ITERATIONS")]
    real_ops: Option<u64>,
    /// Instead: the probe program's cost part by part, inside and outside the program
    /// (PAIRED_ROUNDS rounds of one BLOCK_PAIRS block per variant, in one process).
    #[arg(long)]
    profile_probe: bool,
}

fn main() -> Result<()> {
    let a = Args::parse();
    if let Some(iterations) = a.real_ops {
        return real_ops::bench(&a.python, iterations, a.rounds);
    }
    if a.profile_probe {
        return profile::bench(&a.python, a.block_pairs, a.paired_rounds);
    }
    if a.recording {
        return recording::bench_recording(&a.python, a.pairs, a.events, a.stand_in);
    }
    overhead::bench(overhead::BenchOpts {
        python: a.python,
        pairs: a.pairs,
        rounds: a.rounds,
        attach_rounds: a.attach_rounds,
        attach_only: a.attach_only,
        snapshot_rounds: a.snapshot_rounds,
        snapshot_only: a.snapshot_only,
        paired_rounds: a.paired_rounds,
        block_pairs: a.block_pairs,
        paired_only: a.paired_only,
    })
}
