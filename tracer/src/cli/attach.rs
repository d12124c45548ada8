//! `tracer attach --pid PID...` and `tracer attach --all`: trace processes that are already
//! running (and, for --all, every process that maps the runtime later).
use std::{
    os::fd::{FromRawFd, OwnedFd},
    path::PathBuf,
    time::Instant,
};

use anyhow::{bail, Context, Result};
use tokio::io::unix::AsyncFd;

use super::{
    fail,
    session::{monotonic_ns, LiveSession, Stop},
    TraceOpts, EXIT_NOT_TT_METAL, EXIT_NO_SUCH_PROCESS, EXIT_TARGET_GONE,
};
use crate::{
    ledger::{BufferType, Event, EventKind},
    probe::{
        decode::{command_line, Decoder},
        Loaded, Scope,
    },
    runtime::{self, discover, shm},
};

/// Source name the ledger and the output use for seeded totals.
pub const SHM_SOURCE: &str = "tt-metal SHM tracker";

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

/// Opens the process' ledger: its start, and what came before the attach (seeded from tt-metal's
/// SHM tracker when the process has it, else marked "since attach"). Returns a line saying which.
fn open_ledger(session: &mut LiveSession, pid: u32) -> String {
    let ts_ns = monotonic_ns();
    let ev = |kind| Event { ts_ns, pid, kind };
    session.apply(&ev(EventKind::ProcessStart {
        command: command_line(pid),
    }));
    // Calls whose probe fired before t0 have updated the tracker by the time it is read
    // (the update follows the probe within microseconds); see LiveSession::seed_cutoffs.
    let t0 = monotonic_ns();
    std::thread::sleep(std::time::Duration::from_millis(2));
    let read = shm::holdings(pid);
    let t1 = monotonic_ns();
    match read {
        Ok(Some(h)) => {
            session.seed_cutoffs.insert(pid, (t0, t1));
            for w in &h.warnings {
                eprintln!("tracer: warning: {w}");
            }
            session.apply(&ev(EventKind::Attached {
                seeded_from: Some(SHM_SOURCE.into()),
            }));
            for c in &h.chips {
                for (kind, bytes) in [(BufferType::Dram, c.dram), (BufferType::L1, c.l1)] {
                    session.apply(&ev(EventKind::Seed {
                        chip: c.chip,
                        kind,
                        requested: bytes,
                    }));
                }
            }
            let per_chip: Vec<String> = h
                .chips
                .iter()
                .map(|c| format!("chip {}: DRAM {} L1 {}", c.chip, c.dram, c.l1))
                .collect();
            format!(
                "PID {pid}: live totals seeded from {SHM_SOURCE} ({})",
                per_chip.join(", ")
            )
        }
        other => {
            let why = match other {
                Err(e) => format!("the tt-metal SHM tracker cannot tell ({e:#})"),
                _ => "no tt-metal SHM tracker in this process".to_string(),
            };
            session.apply(&ev(EventKind::Attached { seeded_from: None }));
            format!(
                "PID {pid}: {why}; counting since attach (frees of buffers allocated before the \
                 attach are reported apart)"
            )
        }
    }
}

/// With TRACER_TIMING set, prints how long each attach stage took (latency diagnosis).
fn stage(started: Instant, what: &str) {
    if std::env::var_os("TRACER_TIMING").is_some() {
        eprintln!(
            "tracer: timing: {what} at {:.1} ms",
            started.elapsed().as_secs_f64() * 1e3
        );
    }
}

/// Test hook: pause between finding the targets and attaching, so tests can make a target
/// exit exactly in that window (the only way to produce that case deterministically).
fn test_pause() {
    if let Some(ms) = std::env::var("TRACER_TEST_ATTACH_PAUSE_MS")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
    {
        std::thread::sleep(std::time::Duration::from_millis(ms));
    }
}

pub fn attach(opts: TraceOpts, pids: Vec<u32>, all: bool) -> Result<i32> {
    let started = Instant::now();
    opts.refuse_unimplemented()?;
    super::require_root()?;
    // The kernel verifies the programs while the library is calibrated.
    let loading = std::thread::spawn(Loaded::new);
    if all {
        return attach_all(opts, started, loading);
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
    let plan = runtime::plan_for(&lib)?;
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
    }
    session.finish(monotonic_ns())
}

/// `--all`: probes on the library file trace every process that maps it (started later or
/// loading it later with dlopen included), filtered by nothing in eBPF.
fn joined(loading: std::thread::JoinHandle<Result<Loaded>>) -> Result<Loaded> {
    loading
        .join()
        .map_err(|_| anyhow::anyhow!("loading the eBPF programs panicked"))?
}

fn attach_all(
    opts: TraceOpts,
    started: Instant,
    loading: std::thread::JoinHandle<Result<Loaded>>,
) -> Result<i32> {
    // The libraries to probe: --lib first, then every distinct file running processes map
    // (other venvs, other releases), each with its own calibrated plan and probe set.
    let mut libs: Vec<(PathBuf, (u64, u64))> = Vec::new();
    if let Some(l) = &opts.lib {
        let l = discover::checked(l)?;
        let id = discover::file_id(&l)?;
        libs.push((l, id));
    }
    for (_, path) in discover::processes_with_library() {
        if let Ok(id) = discover::file_id(&path) {
            if !libs.iter().any(|(_, i)| *i == id) {
                libs.push((path, id));
            }
        }
    }
    if libs.is_empty() {
        bail!(
            "no running process maps {}; pass --lib PATH to watch for processes that will load it",
            discover::LIB_NAME
        );
    }
    let mut plans = Vec::new();
    for (i, (lib, id)) in libs.into_iter().enumerate() {
        match runtime::plan_for(&lib) {
            Ok(plan) => {
                for w in &plan.warnings {
                    eprintln!("tracer: warning: {}: {w}", lib.display());
                }
                plans.push((lib, id, plan));
            }
            Err(e) if i == 0 && opts.lib.is_some() => return Err(e),
            Err(e) => eprintln!("tracer: warning: not traced: {e:#}"),
        }
    }
    if plans.is_empty() {
        bail!("no runtime library mapped by a running process could be calibrated");
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let _rt_guard = rt.enter();
    test_pause();
    let ids: Vec<(u64, u64)> = plans.iter().map(|(_, id, _)| *id).collect();
    let names: Vec<String> = plans
        .iter()
        .map(|(l, _, _)| l.display().to_string())
        .collect();
    let mut plans = plans.into_iter().map(|(_, _, p)| p);
    let primary = plans.next().unwrap();
    let probes = joined(loading)?.attach(&primary, Scope::All)?;
    let mut session = LiveSession::new(probes, Decoder::new(primary), opts);
    session.report_exits = true;
    for plan in plans {
        let probes = Loaded::new()?.attach(&plan, Scope::All)?;
        session.extra.push((probes, Decoder::new(plan)));
    }
    // Scanned after the probes are live: a process not in this list is traced from its first
    // runtime call; one in it may hold buffers from before.
    let mut others = Vec::new();
    let mut n = 0;
    for (pid, path) in discover::processes_with_library() {
        let set = discover::file_id(&path)
            .ok()
            .and_then(|id| ids.iter().position(|i| *i == id));
        match set {
            Some(0) => session.decoder.announce(pid),
            Some(i) => session.extra[i - 1].1.announce(pid),
            None => {
                others.push(format!("PID {pid} ({})", path.display()));
                continue;
            }
        }
        let how = open_ledger(&mut session, pid);
        eprintln!("tracer: {how}");
        eprintln!("attached: PID {pid}");
        n += 1;
    }
    if !others.is_empty() {
        eprintln!(
            "tracer: warning: not traced (their {} appeared after the start, or could not be \
             calibrated): {}",
            discover::LIB_NAME,
            others.join(", ")
        );
    }
    eprintln!(
        "attached: --all ({} process(es) running; probing {}; probes live {:.0} ms after start)",
        n,
        names.join(", "),
        started.elapsed().as_secs_f64() * 1e3
    );
    let stop = rt.block_on(session.run_until(std::future::pending::<i32>()))?;
    if let Stop::Signal(sig) = stop {
        eprintln!("tracer: stopped by signal {sig}; detached");
    }
    session.finish(monotonic_ns())
}
