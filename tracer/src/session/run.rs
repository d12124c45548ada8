//! `tracer run -- CMD`: launch, trace, summarise, exit with the command's code.
use anyhow::Result;

use super::{launch, library_watch::LibraryWatch, Options, Session, Stop};
use crate::{
    exit::require_root,
    model::{Event, EventKind},
    plan,
    probe::{decode::Decoder, loader_watch::LoaderWatch, monotonic_ns, Probes, Scope},
    runtime::{discover, dynamic_linker},
};

enum FirstLoad {
    /// `by` mapped `lib` and waits, stopped, for the probes.
    Loaded {
        lib: std::path::PathBuf,
        by: u32,
    },
    Exited(i32),
}

/// Continues each stop of the launched tree until one of its processes maps a runtime
/// library (left stopped), or the command exits.
async fn first_library(
    watch: &mut LoaderWatch,
    waiter: &mut tokio::task::JoinHandle<i32>,
) -> Result<FirstLoad> {
    loop {
        tokio::select! {
            stops = watch.next_stops() => {
                for pid in stops? {
                    let mapped = dynamic_linker::mapped_libraries(pid).unwrap_or_default();
                    if let Some((lib, _)) = mapped.into_iter().next() {
                        return Ok(FirstLoad::Loaded { lib, by: pid });
                    }
                    watch.resume(pid);
                }
            }
            code = &mut *waiter => return Ok(FirstLoad::Exited(code.unwrap_or(255))),
        }
    }
}

pub fn run(opts: Options, cmd: Vec<String>) -> Result<i32> {
    require_root()?;
    crate::probe::configure(opts.probes);
    launch::check_command(&cmd[0])?;
    // Found up front (--lib, or what the command names), or caught when the tree loads it.
    let up_front = match discover::library_for_command(opts.lib.as_deref(), &cmd) {
        Ok(lib) => Some(lib),
        Err(e) if opts.lib.is_some() => return Err(e),
        Err(e) => {
            // What was followed is long; doctor shows it.
            let text = format!("{e:#}");
            eprintln!(
                "tracer: {} (`tracer doctor -- CMD` shows what was followed)",
                text.lines().next().unwrap_or_default()
            );
            eprintln!(
                "tracer: watching the command for the moment it loads {}",
                discover::LIB_NAME
            );
            None
        }
    };
    let plan = match &up_front {
        Some(lib) => Some(plan::for_library(lib)?),
        None => None,
    };
    for w in plan.iter().flat_map(|p| &p.warnings) {
        eprintln!("tracer: warning: {w}");
    }
    let linker = dynamic_linker::for_command(&cmd[0]);
    let log = opts.top.as_ref().and_then(|t| t.child_output());
    let mut child = launch::spawn_gated(&cmd, log.map(|l| &*l.file))?;
    let pid = child.pid;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let _rt_guard = rt.enter();
    let mut watch = match LoaderWatch::attach(&linker).and_then(|mut w| w.track(pid).map(|()| w)) {
        Ok(w) => w,
        Err(e) => {
            child.abort();
            return Err(e);
        }
    };
    // One waiter for the whole run: a second waitpid of the same child would get nothing.
    let mut waiter = None;
    let (plan, stopped) = match plan {
        Some(plan) => (plan, None),
        None => {
            child.release(&cmd[0])?;
            eprintln!("tracer: PID {pid} ({}) started", cmd.join(" "));
            let w = waiter.insert(tokio::task::spawn_blocking(move || launch::wait_exit(pid)));
            match rt.block_on(first_library(&mut watch, w))? {
                FirstLoad::Loaded { lib, by } => {
                    eprintln!("tracer: PID {by} loaded {}", lib.display());
                    (plan::for_library(&lib)?, Some(by))
                }
                FirstLoad::Exited(code) => {
                    eprintln!(
                        "tracer: PID {pid} exited ({code}) without loading {}: nothing to trace",
                        discover::LIB_NAME
                    );
                    return Ok(code);
                }
            }
        }
    };
    let probes = match Probes::attach(&plan, Scope::Tracked) {
        Ok(p) => p,
        Err(e) => {
            if stopped.is_none() {
                child.abort();
            }
            return Err(e);
        }
    };
    let mut session = Session::new(probes, Decoder::new(plan), opts);
    if let Err(e) = session.start_metrics() {
        child.abort();
        return Err(e);
    }
    if let Err(e) = session.open_recording(&cmd.join(" ")) {
        child.abort();
        return Err(e);
    }
    let first = session.source.primary_mut();
    // Launched, and held until the probes are live: every allocation it makes is seen.
    first.probes.track_by_object(pid)?;
    // Caught late: the tree may have grown since the launch.
    if stopped.is_some() {
        for p in discover::descendants(pid) {
            first.probes.track(p)?;
        }
    }
    first.decoder.announce(pid);
    session.apply(&Event {
        ts_ns: monotonic_ns(),
        pid,
        kind: EventKind::ProcessStart {
            command: cmd.join(" "),
        },
    });
    match stopped {
        None => child.release(&cmd[0])?,
        Some(by) => watch.resume(by),
    }
    session.loader = Some(LibraryWatch::new(watch));
    eprintln!("tracer: tracing PID {pid} ({})", cmd.join(" "));
    let stop = rt.block_on(async {
        let waiter =
            waiter.unwrap_or_else(|| tokio::task::spawn_blocking(move || launch::wait_exit(pid)));
        session
            .run_until(async move { waiter.await.unwrap_or(255) })
            .await
    })?;
    // Nothing stops at library loads once tracer stops watching.
    if let Some(w) = session.loader.take() {
        if std::env::var_os("TRACER_TIMING").is_some() {
            eprintln!("tracer: timing: {} stop(s) at library loads", w.watch.hits);
        }
    }
    let child_code = match stop {
        Stop::ChildExited(code) => {
            session.apply(&Event {
                ts_ns: monotonic_ns(),
                pid,
                kind: EventKind::ProcessExit { code: Some(code) },
            });
            Some(code)
        }
        Stop::Signal(sig) => {
            eprintln!("tracer: stopped by signal {sig}; PID {pid} keeps running untraced");
            None
        }
        Stop::Duration => {
            eprintln!("tracer: --duration reached; PID {pid} keeps running untraced");
            None
        }
        Stop::Quit => {
            eprintln!("tracer: quit; PID {pid} keeps running untraced");
            None
        }
    };
    let own = session.finish(monotonic_ns())?;
    // A child that keeps running untraced still has a thread blocked in waitpid: do not wait
    // for it on the way out.
    drop(_rt_guard);
    rt.shutdown_background();
    Ok(match (own, child_code) {
        (0, Some(c)) => c,
        (0, None) => match stop {
            Stop::Signal(sig) => 128 + sig,
            _ => 0,
        },
        (own, _) => own,
    })
}
