//! The command line: clap definitions, and which stage each command runs. Nothing else lives
//! here: the modes are in the library (`session`, `report::offline`, `doctor`).
use std::path::PathBuf;

use anyhow::Result;
use clap::{Args, Parser, Subcommand};
use tracer::{
    doctor,
    report::offline::{self, ExportFormat},
    session::{self, Options},
};

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
    /// Convert a recording: Chrome/Perfetto trace JSON, CSV (one row per event), SQLite, an
    /// offline HTML page, or a PyTorch memory snapshot.
    Export {
        file: PathBuf,
        #[arg(long, value_enum)]
        format: Format,
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
    /// What a running process holds now, read from its own memory (no probes): per chip and
    /// buffer type, and every buffer.
    Snapshot {
        /// The process to read.
        #[arg(long)]
        pid: u32,
        /// The tracer.summary/1 JSON (plus a "snapshot" object) instead of text.
        #[arg(long)]
        json: bool,
        /// The runtime library (default: the one the process maps).
        #[arg(long)]
        lib: Option<PathBuf>,
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
    /// The event ring buffer's size (power of two, 4KiB..1GiB; default 4MiB): bigger absorbs
    /// longer bursts, smaller loses events sooner.
    #[arg(long, value_name = "SIZE", value_parser = tracer::probe::ring_bytes)]
    pub ring_buffer: Option<u32>,
    /// The eBPF programs say on stderr why a read or a record failed.
    #[arg(long)]
    pub debug_probes: bool,
    /// Read the calling thread's Python stack at each buffer allocation: every buffer gets its
    /// allocation site (file, line, function, ttnn op). Off by default: it makes a traced
    /// allocation cost about 1.5x as much (see `cargo xtask bench`).
    #[arg(long)]
    pub python_stacks: bool,
}

impl From<TraceOpts> for Options {
    fn from(o: TraceOpts) -> Self {
        Options {
            output: o.output,
            summary_json: o.summary_json,
            lib: o.lib,
            quiet: o.quiet,
            strict: o.strict,
            metrics: o.metrics,
            duration: o.duration,
            top: None,
            probes: tracer::probe::Settings {
                ring_bytes: o.ring_buffer,
                debug: o.debug_probes,
                stacks: o.python_stacks,
            },
        }
    }
}

/// `tracer export --format`.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum Format {
    Chrome,
    Csv,
    Sqlite,
    /// One self-contained page: memory over time per chip, peaks, OOMs, top holders.
    Html,
    /// The pickle of torch.cuda.memory._snapshot(), for PyTorch's memory tools.
    PytorchSnapshot,
}

impl From<Format> for ExportFormat {
    fn from(f: Format) -> Self {
        match f {
            Format::Chrome => ExportFormat::Chrome,
            Format::Csv => ExportFormat::Csv,
            Format::Sqlite => ExportFormat::Sqlite,
            Format::Html => ExportFormat::Html,
            Format::PytorchSnapshot => ExportFormat::PytorchSnapshot,
        }
    }
}

pub fn main() -> Result<i32> {
    match Cli::parse().command {
        Command::Run { opts, cmd } => session::run::run(opts.into(), cmd),
        Command::Top {
            opts,
            batch,
            interval,
            pid,
            all,
            cmd,
        } => session::top::top(
            opts.into(),
            session::top::Target {
                batch,
                interval,
                pids: pid,
                all,
                cmd,
            },
        ),
        Command::Attach { opts, pid, all } => session::attach::attach(opts.into(), pid, all),
        Command::Report { file, json, at } => offline::report(&file, json, at),
        Command::Export {
            file,
            format,
            output,
        } => offline::export(&file, format.into(), &output),
        Command::Doctor { lib, pid, cmd } => doctor::doctor(lib, pid, cmd),
        Command::Snapshot { pid, json, lib } => session::snapshot::snapshot(pid, json, lib),
    }
}
