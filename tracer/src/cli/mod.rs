//! Command-line interface: clap definitions and the wiring of the stages.
mod attach;
mod attach_all;
mod bench;
mod bench_attach;
mod bench_recording;
mod doctor;
mod export;
mod launch;
mod report;
mod run;
mod seed;
mod session;

use std::path::PathBuf;

use anyhow::Result;
use clap::{Args, Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "tracer",
    version,
    about = "Device memory per process and per chip for tt-metal, from eBPF uprobes"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Launch CMD and trace it (and its children) until it exits.
    Run {
        #[command(flatten)]
        opts: TraceOpts,
        /// The command to run, after `--`.
        #[arg(required = true, last = true)]
        cmd: Vec<String>,
    },
    /// The summary of a recording (`run`/`attach -o FILE`), replayed through the ledger.
    Report {
        file: PathBuf,
        /// The tracer.summary/1 JSON (plus a "recording" object) instead of text.
        #[arg(long)]
        json: bool,
        /// The ledger as it was SECONDS after the session start.
        #[arg(long, value_name = "SECONDS")]
        at: Option<f64>,
    },
    /// Convert a recording: Chrome/Perfetto trace JSON, CSV (one row per event) or SQLite.
    Export {
        file: PathBuf,
        #[arg(long, value_enum)]
        format: export::Format,
        #[arg(short = 'o', long = "output")]
        output: PathBuf,
    },
    /// Live per-chip view of device memory of running processes (--pid, --all) or of a
    /// command it launches (after `--`). Full-screen table (q quits), or plain snapshots with
    /// --batch.
    Top {
        #[command(flatten)]
        opts: TraceOpts,
        /// Print plain-text snapshots instead of the full-screen table.
        #[arg(long)]
        batch: bool,
        /// Seconds between snapshots (--batch).
        #[arg(long, default_value_t = 1.0)]
        interval: f64,
        /// Processes to watch (and their children).
        #[arg(long, num_args = 1.., conflicts_with = "all")]
        pid: Vec<u32>,
        /// Every process that maps the runtime library, now or later.
        #[arg(long)]
        all: bool,
        /// A command to launch and watch, after `--`.
        #[arg(last = true, conflicts_with_all = ["pid", "all"])]
        cmd: Vec<String>,
    },
    /// Attach to running processes (--pid) or to every process that maps the runtime (--all),
    /// until they exit, Ctrl-C/SIGTERM, or --duration.
    Attach {
        #[command(flatten)]
        opts: TraceOpts,
        /// Processes to trace (and, from now on, their children).
        #[arg(long, num_args = 1.., required_unless_present = "all", conflicts_with = "all")]
        pid: Vec<u32>,
        /// Every process that maps the runtime library, now or later.
        #[arg(long)]
        all: bool,
    },
    /// Measure overhead side by side: untraced, bare uprobe, tracer, tt-metal's SHM tracker.
    Bench {
        /// Python with ttnn installed.
        #[arg(long)]
        python: PathBuf,
        /// Allocate+deallocate pairs per configuration.
        #[arg(long, default_value_t = 20000)]
        pairs: u64,
        #[arg(long, default_value_t = 3)]
        rounds: usize,
        /// Instead: bytes per event of a real recording (PAIRS pairs) and `report` throughput
        /// on a synthesized stand-in recording of EVENTS events.
        #[arg(long)]
        recording: bool,
        #[arg(long, default_value_t = bench_recording::STAND_IN_EVENTS)]
        events: u64,
        /// Keep the stand-in recording at FILE (to profile `tracer report FILE`).
        #[arg(long, value_name = "FILE")]
        stand_in: Option<PathBuf>,
        /// Attaches to a live ttnn process, timing command start to `attached:`.
        #[arg(long, default_value_t = 5)]
        attach_rounds: usize,
        /// Only the attach latency (skip the overhead loops).
        #[arg(long)]
        attach_only: bool,
    },
    /// Check kernel, permissions and the runtime library; print the probe plan and layout.
    Doctor {
        /// The runtime library to calibrate.
        #[arg(long)]
        lib: Option<PathBuf>,
        /// A running process whose runtime library to calibrate.
        #[arg(long)]
        pid: Option<u32>,
        /// A command (after `--`): which runtime library it would load, and how that was found.
        #[arg(last = true, conflicts_with_all = ["lib", "pid"])]
        cmd: Vec<String>,
    },
}

/// Options shared by the tracing modes.
#[derive(Args, Clone, Debug)]
pub struct TraceOpts {
    /// Record the session to FILE.
    #[arg(short = 'o', long = "output")]
    pub output: Option<PathBuf>,
    /// Write the tracer.summary/1 JSON to FILE ("-" for stdout).
    #[arg(long)]
    pub summary_json: Option<PathBuf>,
    /// The runtime library (default: found from the command's Python environment).
    #[arg(long)]
    pub lib: Option<PathBuf>,
    /// No event lines; only the summary.
    #[arg(long)]
    pub quiet: bool,
    /// Exit non-zero if any event was lost.
    #[arg(long)]
    pub strict: bool,
    /// Serve Prometheus metrics at http://ADDR/metrics (PORT, :PORT or HOST:PORT; a bare port
    /// listens on 127.0.0.1 only).
    #[arg(long)]
    pub metrics: Option<String>,
    /// Stop tracing after SECS seconds.
    #[arg(long)]
    pub duration: Option<f64>,
    /// Set by `tracer top`: show the live table instead of event lines.
    #[arg(skip)]
    pub top: Option<crate::live::top::TopMode>,
}

pub fn main() -> Result<i32> {
    let cli = Cli::parse();
    match cli.command {
        Command::Run { opts, cmd } => run::run(opts, cmd),
        Command::Top {
            mut opts,
            batch,
            interval,
            pid,
            all,
            cmd,
        } => {
            use crate::live::top::{ChildOutput, TopMode};
            let launching = !all && pid.is_empty() && !cmd.is_empty();
            let child_output = if launching && !batch {
                let out = ChildOutput::create(&child_log_dir(&opts), &cmd)?;
                launch::give_to_invoker(&out.path);
                Some(out)
            } else {
                None
            };
            opts.top = Some(if batch {
                TopMode::Batch(std::time::Duration::from_secs_f64(interval.max(0.05)))
            } else {
                TopMode::Screen(child_output.clone())
            });
            if all || !pid.is_empty() {
                attach::attach(opts, pid, all)
            } else if launching {
                let result = run::run(opts, cmd);
                if let Some(out) = child_output {
                    out.finish(result.is_ok());
                }
                result
            } else {
                anyhow::bail!("tracer top: give --pid PID..., --all, or -- CMD [ARGS...]")
            }
        }
        Command::Attach { opts, pid, all } => attach::attach(opts, pid, all),
        Command::Report { file, json, at } => report::report(&file, json, at),
        Command::Export {
            file,
            format,
            output,
        } => export::export(&file, format, &output),
        Command::Doctor { lib, pid, cmd } => doctor::doctor(lib, pid, cmd),
        Command::Bench {
            python,
            pairs,
            recording: true,
            events,
            stand_in,
            ..
        } => bench_recording::bench_recording(&python, pairs, events, stand_in),
        Command::Bench {
            python,
            pairs,
            rounds,
            attach_rounds,
            attach_only,
            ..
        } => bench::bench(bench::BenchOpts {
            python,
            pairs,
            rounds,
            attach_rounds,
            attach_only,
        }),
    }
}

/// Where `tracer top -- CMD` puts the command's output: next to the recording if there is
/// one (the user chose that place to keep things), else the temp dir.
fn child_log_dir(opts: &TraceOpts) -> PathBuf {
    match &opts.output {
        Some(output) => std::path::absolute(output)
            .ok()
            .and_then(|o| o.parent().map(PathBuf::from))
            .unwrap_or_else(|| PathBuf::from(".")),
        None => std::env::temp_dir(),
    }
}

/// Exit code when `--strict` finds lost events.
pub const EXIT_LOST_EVENTS: i32 = 3;
/// `attach`: no process has that PID.
pub const EXIT_NO_SUCH_PROCESS: i32 = 4;
/// `attach`: the process does not map the runtime library.
pub const EXIT_NOT_TT_METAL: i32 = 5;
/// `attach`: the process exited before the probes were live.
pub const EXIT_TARGET_GONE: i32 = 6;

/// An error that ends tracer with its own exit code (bad input, as opposed to failures).
#[derive(Debug)]
pub struct Failure {
    pub code: i32,
    pub message: String,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Failure {}

pub fn fail(code: i32, message: String) -> anyhow::Error {
    Failure { code, message }.into()
}

pub fn require_root() -> Result<()> {
    if !nix::unistd::geteuid().is_root() {
        anyhow::bail!(
            "tracer needs root to load eBPF programs and attach uprobes; run it with sudo \
             (the traced command still runs as you)"
        );
    }
    Ok(())
}
