//! `tracer top`: the live per-chip view, of running processes (like `attach`) or of a command
//! it launches (like `run`).
use std::{path::PathBuf, time::Duration};

use anyhow::{bail, Result};

use super::{attach, launch, run, Options};
use crate::live::top::{ChildOutput, TopMode};

/// What `top` watches and how it shows it.
pub struct Target {
    /// Plain-text snapshots every `interval` instead of the full-screen table.
    pub batch: bool,
    pub interval: f64,
    pub pids: Vec<u32>,
    pub all: bool,
    pub cmd: Vec<String>,
}

pub fn top(mut opts: Options, t: Target) -> Result<i32> {
    let launching = !t.all && t.pids.is_empty() && !t.cmd.is_empty();
    // Anything the command printed on the terminal would land in the middle of the table.
    let child_output = if launching && !t.batch {
        let out = ChildOutput::create(&child_log_dir(&opts), &t.cmd)?;
        launch::give_to_invoker(&out.path);
        Some(out)
    } else {
        None
    };
    opts.top = Some(if t.batch {
        TopMode::Batch(Duration::from_secs_f64(t.interval.max(0.05)))
    } else {
        TopMode::Screen(child_output.clone())
    });
    if t.all || !t.pids.is_empty() {
        attach::attach(opts, t.pids, t.all)
    } else if launching {
        let result = run::run(opts, t.cmd);
        if let Some(out) = child_output {
            out.finish(result.is_ok());
        }
        result
    } else {
        bail!("tracer top: give --pid PID..., --all, or -- CMD [ARGS...]")
    }
}

/// Where `tracer top -- CMD` puts the command's output: next to the recording if there is
/// one (the user chose that place to keep things), else the temp dir.
fn child_log_dir(opts: &Options) -> PathBuf {
    match &opts.output {
        Some(output) => std::path::absolute(output)
            .ok()
            .and_then(|o| o.parent().map(PathBuf::from))
            .unwrap_or_else(|| PathBuf::from(".")),
        None => std::env::temp_dir(),
    }
}
