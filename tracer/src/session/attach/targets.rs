//! Finding what to attach to, and the pieces every attach shares.
use std::{os::fd::OwnedFd, path::PathBuf, time::Instant};

use anyhow::{Context, Result};
use tokio::io::unix::AsyncFd;

use crate::{
    exit::{fail, NOT_TT_METAL, NO_SUCH_PROCESS, TARGET_GONE},
    probe::Loaded,
    runtime::{discover, process::command_line},
};

/// The runtime library `pid` maps, or the exit-coded reason it cannot be traced.
pub fn library_of(pid: u32) -> Result<PathBuf> {
    match discover::process_state(pid) {
        None => return Err(fail(NO_SUCH_PROCESS, format!("no process with PID {pid}"))),
        Some('Z' | 'X') => {
            return Err(fail(
                TARGET_GONE,
                format!("PID {pid} has already exited (zombie)"),
            ))
        }
        Some(_) => {}
    }
    match discover::library_in_process(pid) {
        Ok(Some((path, _))) => Ok(path),
        Ok(None) => Err(fail(
            NOT_TT_METAL,
            format!(
                "PID {pid} ({}) does not map {}: it does not use tt-metal (or has not loaded it yet)",
                command_line(pid),
                discover::LIB_NAME
            ),
        )),
        Err(_) if !discover::alive(pid) => Err(fail(
            TARGET_GONE,
            format!("PID {pid} exited while tracer was looking at it"),
        )),
        Err(e) => Err(e),
    }
}

/// Opens a pidfd: readable once the process has exited (works for processes that are not our
/// children, unlike waitpid).
pub fn pidfd(pid: u32) -> Result<AsyncFd<OwnedFd>> {
    let target = rustix::process::Pid::from_raw(pid as i32)
        .with_context(|| format!("PID {pid} is not a process id"))?;
    let fd = match rustix::process::pidfd_open(target, rustix::process::PidfdFlags::empty()) {
        Ok(fd) => fd,
        Err(rustix::io::Errno::SRCH) => {
            return Err(fail(
                TARGET_GONE,
                format!("PID {pid} exited while tracer was attaching"),
            ))
        }
        Err(e) => return Err(e).with_context(|| format!("pidfd_open({pid})")),
    };
    // SAFETY: the AsyncFd owns the descriptor and deregisters it before closing it.
    Ok(unsafe { AsyncFd::register(fd) }?)
}

/// With TRACER_TIMING set, prints how long each attach stage took (latency diagnosis).
pub fn stage(started: Instant, what: &str) {
    if std::env::var_os("TRACER_TIMING").is_some() {
        eprintln!(
            "tracer: timing: {what} at {:.1} ms",
            started.elapsed().as_secs_f64() * 1e3
        );
    }
}

pub fn joined(loading: std::thread::JoinHandle<Result<Loaded>>) -> Result<Loaded> {
    loading
        .join()
        .map_err(|_| anyhow::anyhow!("loading the eBPF programs panicked"))?
}
