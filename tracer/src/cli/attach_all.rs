//! `tracer attach --all`: every process that maps a runtime library, now or later.
use std::{path::PathBuf, time::Instant};

use anyhow::{bail, Result};

use super::{
    attach::{joined, test_pause},
    seed::open_ledger,
    session::{monotonic_ns, LiveSession, Stop},
    TraceOpts,
};
use crate::{
    probe::{decode::Decoder, Loaded, Scope},
    runtime::{self, discover},
};

/// `--all`: probes on the library file trace every process that maps it (started later or
/// loading it later with dlopen included), filtered by nothing in eBPF.
pub fn attach_all(
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
            Ok(mut plan) => {
                // Running processes may have opened their devices already.
                plan.mid_run = true;
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
    // The header names the first library's build and layout (the usual single-install case).
    session.open_recording("attach --all")?;
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
            Some(0) => {
                session.decoder.announce(pid);
                session.decoder.attached(pid);
            }
            Some(i) => {
                session.extra[i - 1].1.announce(pid);
                session.extra[i - 1].1.attached(pid);
            }
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
            "tracer: warning: not traced (their {} could not be calibrated): {}",
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
    let mut known = ids;
    session.tick = Some(Box::new(move |s: &mut LiveSession| {
        watch_new_libraries(s, &mut known)
    }));
    let stop = rt.block_on(session.run_until(std::future::pending::<i32>()))?;
    if let Stop::Signal(sig) = stop {
        eprintln!("tracer: stopped by signal {sig}; detached");
    }
    session.finish(monotonic_ns())
}

/// A process mapping a library file no probe set covers yet (a venv or release first used
/// after the start): calibrate it, attach a probe set, and open the ledgers of the processes
/// using it (as attached mid-run: their first calls happened before the probes).
fn watch_new_libraries(session: &mut LiveSession, known: &mut Vec<(u64, u64)>) {
    let running = discover::processes_with_library();
    for (_, path) in &running {
        let Ok(id) = discover::file_id(path) else {
            continue;
        };
        if known.contains(&id) {
            continue;
        }
        known.push(id);
        let probes = runtime::plan_for(path).and_then(|mut plan| {
            plan.mid_run = true;
            let probes = Loaded::new()?.attach(&plan, Scope::All)?;
            Ok((probes, Decoder::new(plan)))
        });
        let (probes, mut decoder) = match probes {
            Ok(p) => p,
            Err(e) => {
                eprintln!("tracer: warning: not traced: {e:#}");
                continue;
            }
        };
        let users: Vec<u32> = running
            .iter()
            .filter(|(_, p)| discover::file_id(p).ok() == Some(id))
            .map(|(pid, _)| *pid)
            .collect();
        for pid in &users {
            decoder.announce(*pid);
            decoder.attached(*pid);
        }
        session.extra.push((probes, decoder));
        eprintln!("tracer: now probing {} too", path.display());
        for pid in users {
            let how = open_ledger(session, pid);
            eprintln!("tracer: {how}");
            eprintln!("attached: PID {pid}");
        }
    }
}
