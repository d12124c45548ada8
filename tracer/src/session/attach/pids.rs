//! `tracer attach --pid PID...`: trace processes that are already running.
use std::{path::PathBuf, time::Instant};

use anyhow::{bail, Context, Result};

use super::targets::{joined, library_of, pidfd, stage};
use crate::{
    exit::{fail, is_code, NOT_TT_METAL, TARGET_GONE},
    plan,
    probe::{decode::Decoder, monotonic_ns, Loaded},
    runtime::discover,
    session::{Options, Session, Stop},
};

/// `started`: when tracer started (the attach latency is reported from it); `loading`: the
/// programs, being verified by the kernel while the library is calibrated.
pub fn attach_pids(
    opts: Options,
    pids: Vec<u32>,
    started: Instant,
    loading: std::thread::JoinHandle<Result<Loaded>>,
) -> Result<i32> {
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
            Err(e) if !using.is_empty() && is_code(&e, NOT_TT_METAL) => {}
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
    let mut plan = plan::for_library(&lib)?;
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
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let _rt_guard = rt.enter();
    let loaded = joined(loading)?;
    stage(started, "programs verified");
    let probes = loaded.attach(&plan)?;
    stage(started, "probes attached");
    let mut session = Session::new(probes, Decoder::new(plan), opts);
    let what = pids.iter().map(|p| p.to_string()).collect::<Vec<_>>();
    session.open_recording(&format!("attach --pid {}", what.join(" ")))?;
    let mut exits = Vec::new();
    for pid in &tracked {
        session.source.primary_mut().probes.track(*pid)?;
    }
    for pid in &pids {
        // From here the probes report the process; it must still be there.
        exits.push(pidfd(*pid)?);
        if !discover::alive(*pid) {
            return Err(fail(
                TARGET_GONE,
                format!("PID {pid} exited while tracer was attaching"),
            ));
        }
    }
    for pid in &ledgers {
        session.join_mid_run(0, *pid);
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
