//! `tracer attach --pid PID...`: trace processes that are already running (`--all` is in
//! attach_all.rs).
use std::{
    os::fd::{FromRawFd, OwnedFd},
    path::PathBuf,
    time::Instant,
};

use anyhow::{bail, Context, Result};
use tokio::io::unix::AsyncFd;

use super::{
    fail,
    seed::open_ledger,
    session::{monotonic_ns, LiveSession, Stop},
    TraceOpts, EXIT_NOT_TT_METAL, EXIT_NO_SUCH_PROCESS, EXIT_TARGET_GONE,
};
use crate::{
    probe::{
        decode::{command_line, Decoder},
        Loaded, Scope,
    },
    runtime::{self, discover},
};

/// The runtime library `pid` maps, or the exit-coded reason it cannot be traced.
fn library_of(pid: u32) -> Result<PathBuf> {
    match discover::process_state(pid) {
        None => {
            return Err(fail(
                EXIT_NO_SUCH_PROCESS,
                format!("no process with PID {pid}"),
            ))
        }
        Some('Z' | 'X') => {
            return Err(fail(
                EXIT_TARGET_GONE,
                format!("PID {pid} has already exited (zombie)"),
            ))
        }
        Some(_) => {}
    }
    match discover::library_in_process(pid) {
        Ok(Some((path, _))) => Ok(path),
        Ok(None) => Err(fail(
            EXIT_NOT_TT_METAL,
            format!(
                "PID {pid} ({}) does not map {}: it does not use tt-metal (or has not loaded it yet)",
                command_line(pid),
                discover::LIB_NAME
            ),
        )),
        Err(_) if !discover::alive(pid) => Err(fail(
            EXIT_TARGET_GONE,
            format!("PID {pid} exited while tracer was looking at it"),
        )),
        Err(e) => Err(e),
    }
}

fn is_code(e: &anyhow::Error, code: i32) -> bool {
    e.downcast_ref::<super::Failure>()
        .is_some_and(|f| f.code == code)
}

/// Opens a pidfd: readable once the process has exited (works for processes that are not our
/// children, unlike waitpid).
fn pidfd(pid: u32) -> Result<AsyncFd<OwnedFd>> {
    // SAFETY: plain syscall; a non-negative result is a new descriptor we own.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
    if fd < 0 {
        let e = std::io::Error::last_os_error();
        if e.raw_os_error() == Some(libc::ESRCH) {
            return Err(fail(
                EXIT_TARGET_GONE,
                format!("PID {pid} exited while tracer was attaching"),
            ));
        }
        return Err(e).with_context(|| format!("pidfd_open({pid})"));
    }
    // SAFETY: fd is a fresh descriptor returned by pidfd_open.
    let fd = unsafe { OwnedFd::from_raw_fd(fd as i32) };
    // SAFETY: the AsyncFd owns the descriptor and deregisters it before closing it.
    Ok(unsafe { AsyncFd::register(fd) }?)
}

/// With TRACER_TIMING set, prints how long each attach stage took (latency diagnosis).
pub(super) fn stage(started: Instant, what: &str) {
    if std::env::var_os("TRACER_TIMING").is_some() {
        eprintln!(
            "tracer: timing: {what} at {:.1} ms",
            started.elapsed().as_secs_f64() * 1e3
        );
    }
}

/// Test hook: pause between finding the targets and attaching, so tests can make a target
/// exit exactly in that window (the only way to produce that case deterministically).
pub(super) fn test_pause() {
    if let Some(ms) = std::env::var("TRACER_TEST_ATTACH_PAUSE_MS")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
    {
        std::thread::sleep(std::time::Duration::from_millis(ms));
    }
}

pub fn attach(opts: TraceOpts, pids: Vec<u32>, all: bool) -> Result<i32> {
    let started = Instant::now();
    super::require_root()?;
    // The kernel verifies the programs while the library is calibrated.
    let loading = std::thread::spawn(Loaded::new);
    if all {
        return super::attach_all::attach_all(opts, started, loading);
    }
    let mut lib = opts.lib.as_deref().map(discover::checked).transpose()?;
    // Processes that get a ledger: the given ones that use the runtime and their descendants
    // that do (a launcher that does not use it itself is followed, not reported).
    let mut ledgers = Vec::new();
    let mut tracked = pids.clone();
    let mut found = Vec::new();
    for pid in &pids {
        let children = discover::descendants(*pid);
        tracked.extend(&children);
        let mut using: Vec<(u32, PathBuf)> = children
            .iter()
            .filter_map(|c| Some((*c, discover::library_in_process(*c).ok()??.0)))
            .collect();
        match library_of(*pid) {
            Ok(mapped) => using.insert(0, (*pid, mapped)),
            Err(e) if !using.is_empty() && is_code(&e, EXIT_NOT_TT_METAL) => {}
            Err(e) => return Err(e),
        }
        found.extend(using);
    }
    for (pid, mapped) in found {
        if ledgers.contains(&pid) {
            continue;
        }
        ledgers.push(pid);
        match &lib {
            None => lib = Some(mapped),
            Some(l) if discover::file_id(l)? != discover::file_id(&mapped)? => bail!(
                "PID {pid} maps {}, not {}: attach to processes of one runtime library at a \
                 time (--lib chooses)",
                mapped.display(),
                l.display()
            ),
            Some(_) => {}
        }
    }
    let lib = lib.context("no PID given")?;
    stage(started, "target found");
    let mut plan = runtime::plan_for(&lib)?;
    // The processes may have opened their devices already.
    plan.mid_run = true;
    stage(started, "library calibrated");
    for w in &plan.warnings {
        eprintln!("tracer: warning: {w}");
    }
    eprintln!(
        "tracer: attaching to PID {} ({})",
        ledgers
            .iter()
            .map(|p| p.to_string())
            .collect::<Vec<_>>()
            .join(", "),
        lib.display()
    );
    test_pause();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let _rt_guard = rt.enter();
    let loaded = joined(loading)?;
    stage(started, "programs verified");
    let probes = loaded.attach(&plan, Scope::Tracked)?;
    stage(started, "probes attached");
    let mut session = LiveSession::new(probes, Decoder::new(plan), opts);
    let what = pids.iter().map(|p| p.to_string()).collect::<Vec<_>>();
    session.open_recording(&format!("attach --pid {}", what.join(" ")))?;
    let mut exits = Vec::new();
    for pid in &tracked {
        session.probes.track(*pid)?;
    }
    for pid in &pids {
        // From here the probes report the process; it must still be there.
        exits.push(pidfd(*pid)?);
        if !discover::alive(*pid) {
            return Err(fail(
                EXIT_TARGET_GONE,
                format!("PID {pid} exited while tracer was attaching"),
            ));
        }
    }
    for pid in &ledgers {
        session.decoder.announce(*pid);
        session.decoder.attached(*pid);
        let how = open_ledger(&mut session, *pid);
        eprintln!("tracer: {how}");
    }
    for pid in pids
        .iter()
        .chain(ledgers.iter().filter(|p| !pids.contains(p)))
    {
        eprintln!("attached: PID {pid}");
    }
    eprintln!(
        "tracer: probes live {:.0} ms after start",
        started.elapsed().as_secs_f64() * 1e3
    );
    let stop = rt.block_on(async {
        let all_gone = async move {
            for fd in exits {
                let _ = fd.readable().await;
            }
            0
        };
        session.run_until(all_gone).await
    })?;
    match stop {
        Stop::ChildExited(_) => {}
        Stop::Signal(sig) => {
            eprintln!("tracer: stopped by signal {sig}; detached, the processes keep running")
        }
        Stop::Duration => eprintln!("tracer: --duration reached; detached"),
        Stop::Quit => eprintln!("tracer: quit; detached, the processes keep running"),
    }
    session.finish(monotonic_ns())
}

pub(super) fn joined(loading: std::thread::JoinHandle<Result<Loaded>>) -> Result<Loaded> {
    loading
        .join()
        .map_err(|_| anyhow::anyhow!("loading the eBPF programs panicked"))?
}
