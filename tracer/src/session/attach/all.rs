//! `tracer attach --all`: every process that maps a runtime library, now or later.
use std::{path::PathBuf, time::Instant};

use anyhow::{bail, Result};

use super::{scan, targets::joined};
use crate::{
    plan,
    probe::{decode::Decoder, monotonic_ns, Loaded, Scope},
    runtime::discover,
    session::{source::ProbeSet, Options, Session, Stop},
};

/// `--all`: probes on the library file trace every process that maps it (started later or
/// loading it later with dlopen included), filtered by nothing in eBPF.
pub fn attach_all(
    opts: Options,
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
        match plan::for_library(&lib) {
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
    let ids: Vec<(u64, u64)> = plans.iter().map(|(_, id, _)| *id).collect();
    let names: Vec<String> = plans
        .iter()
        .map(|(l, _, _)| l.display().to_string())
        .collect();
    let mut plans = plans.into_iter().map(|(_, _, p)| p);
    let primary = plans.next().unwrap();
    let probes = joined(loading)?.attach(&primary)?;
    let mut session = Session::new(probes, Decoder::new(primary), opts);
    // The header names the first library's build and layout (the usual single-install case).
    session.open_recording("attach --all")?;
    session.report_exits();
    for plan in plans {
        let probes = Loaded::new(Scope::All)?.attach(&plan)?;
        session
            .source
            .add(ProbeSet::new(probes, Decoder::new(plan)));
    }
    // Scanned after the probes are live: a process not in this list is traced from its first
    // runtime call; one in it may hold buffers from before.
    let mut others = Vec::new();
    let mut n = 0;
    for (pid, path) in discover::processes_with_library() {
        let set = discover::file_id(&path)
            .ok()
            .and_then(|id| ids.iter().position(|i| *i == id));
        let Some(set) = set else {
            others.push(format!("PID {pid} ({})", path.display()));
            continue;
        };
        session.join_mid_run(set, pid);
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
    session.receive_prepared(scan::start(ids));
    let stop = rt.block_on(session.run_until(std::future::pending::<i32>()))?;
    if let Stop::Signal(sig) = stop {
        eprintln!("tracer: stopped by signal {sig}; detached");
    }
    session.finish(monotonic_ns())
}
