//! `tracer run -- CMD`: launch, trace, summarise, exit with the command's code.
use anyhow::Result;

use super::{
    launch,
    session::{monotonic_ns, LiveSession, Stop},
    TraceOpts,
};
use crate::{
    ledger::{Event, EventKind},
    probe::{decode::Decoder, Probes, Scope},
    runtime::{self, discover},
};

pub fn run(opts: TraceOpts, cmd: Vec<String>) -> Result<i32> {
    super::require_root()?;
    launch::check_command(&cmd[0])?;
    let lib = discover::library_for_command(opts.lib.as_deref(), &cmd)?;
    let plan = runtime::plan_for(&lib)?;
    for w in &plan.warnings {
        eprintln!("tracer: warning: {w}");
    }
    let mut child = launch::spawn_gated(&cmd)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let _rt_guard = rt.enter();
    let probes = match Probes::attach(&plan, Scope::Tracked) {
        Ok(p) => p,
        Err(e) => {
            child.abort();
            return Err(e);
        }
    };
    let mut session = LiveSession::new(probes, Decoder::new(plan), opts);
    if let Err(e) = session.start_metrics() {
        child.abort();
        return Err(e);
    }
    let pid = child.pid;
    if let Err(e) = session.open_recording(&cmd.join(" ")) {
        child.abort();
        return Err(e);
    }
    session.probes.track(pid)?;
    session.decoder.announce(pid);
    session.apply(&Event {
        ts_ns: monotonic_ns(),
        pid,
        kind: EventKind::ProcessStart {
            command: cmd.join(" "),
        },
    });
    child.release(&cmd[0])?;
    eprintln!("tracer: tracing PID {pid} ({})", cmd.join(" "));
    let stop = rt.block_on(async {
        let waiter = tokio::task::spawn_blocking(move || launch::wait_exit(pid));
        session
            .run_until(async move { waiter.await.unwrap_or(255) })
            .await
    })?;
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
    Ok(match (own, child_code) {
        (0, Some(c)) => c,
        (0, None) => match stop {
            Stop::Signal(sig) => 128 + sig,
            _ => 0,
        },
        (own, _) => own,
    })
}
