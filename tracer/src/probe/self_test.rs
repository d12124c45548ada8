//! `tracer doctor`'s proof that this kernel runs what tracer uses: the real programs are
//! loaded, a uprobe with an attach cookie fires on a function of tracer's own binary and
//! delivers its record through the ring buffer, and the raw fork/exit tracepoints see a real
//! child come and go (which also proves the `task_struct` offsets read from BTF).
use std::{
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{bail, Context, Result};
use aya::{
    maps::{Array, RingBuf},
    programs::{
        uprobe::{UProbeAttachLocation, UProbeAttachPoint, UProbeScope},
        RawTracePoint, UProbe,
    },
};
use tracer_common::{RawEvent, SlotSpec, CFG_TASK_TGID_OFF};

use super::{processes::ProcessStates, task_layout::TaskLayout, Loaded, PROCESS_TRACEPOINTS};

/// What the uprobe test attaches to: a function that exists only for this purpose.
#[no_mangle]
#[inline(never)]
pub extern "C" fn tracer_self_test_target(x: u64) -> u64 {
    std::hint::black_box(x).wrapping_add(1)
}

const TEST_COOKIE: u64 = 3;

/// One observed fact, or what failed.
pub struct Outcome {
    pub what: &'static str,
    pub result: Result<String>,
}

/// Runs every step that can run; a step that cannot (an earlier one failed) is left out.
pub fn run() -> Vec<Outcome> {
    let mut out = Vec::new();
    let loaded = Loaded::new(super::Scope::Tracked);
    out.push(Outcome {
        what: "the eBPF programs load (the kernel's verifier accepts them)",
        result: loaded
            .as_ref()
            .map(|_| "loaded".to_string())
            .map_err(|e| anyhow::anyhow!("{e:#}")),
    });
    let task = TaskLayout::of_running_kernel();
    out.push(Outcome {
        what: "task_struct layout from kernel BTF",
        result: task
            .as_ref()
            .map(|t| format!("pid at +{:#x}, tgid at +{:#x}", t.pid, t.tgid))
            .map_err(|e| anyhow::anyhow!("{e:#}")),
    });
    let (Ok(mut loaded), Ok(task)) = (loaded, task) else {
        return out;
    };
    if let Err(e) = track_self(&mut loaded) {
        out.push(Outcome {
            what: "the PROCESSES array takes tracer's own PID",
            result: Err(e),
        });
        return out;
    }
    out.push(Outcome {
        what: "a uprobe with an attach cookie fires and its record arrives through the ring buffer",
        result: uprobe_round_trip(&mut loaded),
    });
    out.push(Outcome {
        what: "raw tracepoints sched_process_fork/exit follow a child process (no tracefs needed)",
        result: fork_and_exit(&mut loaded, task),
    });
    out
}

/// Both tests watch tracer itself (the probe's process filter) and its child.
fn track_self(loaded: &mut Loaded) -> Result<()> {
    ProcessStates::of(&loaded.ebpf)?.set(std::process::id(), tracer_common::TRACKED)
}

fn uprobe_round_trip(loaded: &mut Loaded) -> Result<String> {
    let ebpf = &mut loaded.ebpf;
    let me = std::process::id();
    Array::<_, SlotSpec>::try_from(ebpf.map_mut("SLOTS").context("no SLOTS map")?)?.set(
        TEST_COOKIE as u32,
        SlotSpec::default(),
        0,
    )?;
    let exe = std::env::current_exe().context("cannot find tracer's own executable")?;
    let probe: &mut UProbe = ebpf
        .program_mut("tracer_probe")
        .context("no tracer_probe program")?
        .try_into()?;
    let link = probe
        .attach(
            UProbeAttachPoint {
                location: UProbeAttachLocation::Symbol("tracer_self_test_target"),
                cookie: Some(TEST_COOKIE),
            },
            &exe,
            UProbeScope::AllProcesses,
        )
        .with_context(|| format!("cannot attach a uprobe to {}", exe.display()))?;
    let calls = 3;
    for i in 0..calls {
        std::hint::black_box(tracer_self_test_target(i));
    }
    let probe: &mut UProbe = ebpf.program_mut("tracer_probe").unwrap().try_into()?;
    probe.detach(link)?;
    let mut ring = RingBuf::try_from(ebpf.map_mut("EVENTS").context("no EVENTS map")?)?;
    let mut seen = 0;
    while let Some(item) = ring.next() {
        let ev: RawEvent = super::read_pod(&item);
        if ev.pid == me && u64::from(ev.slot) == TEST_COOKIE {
            seen += 1;
        }
    }
    if seen != calls {
        bail!("{calls} calls, {seen} records with the cookie arrived");
    }
    Ok(format!(
        "{calls} calls, {seen} records, cookie {TEST_COOKIE} seen"
    ))
}

fn fork_and_exit(loaded: &mut Loaded, task: TaskLayout) -> Result<String> {
    let ebpf = &mut loaded.ebpf;
    Array::<_, u64>::try_from(ebpf.map_mut("CONFIG").context("no CONFIG map")?)?.set(
        CFG_TASK_TGID_OFF,
        u64::from(task.tgid),
        0,
    )?;
    let mut links = Vec::new();
    for (prog, tp) in PROCESS_TRACEPOINTS {
        let p: &mut RawTracePoint = ebpf.program_mut(prog).unwrap().try_into()?;
        links.push((
            prog,
            p.attach(tp)
                .with_context(|| format!("cannot attach to {tp}"))?,
        ));
    }
    let states = ProcessStates::of(ebpf)?;
    let tracked = |_: &aya::Ebpf, pid: u32| -> Result<bool> {
        Ok(states.get(pid)? == tracer_common::TRACKED)
    };
    // A child that waits for its stdin to close: alive while we look, then gone.
    let mut child = Command::new("cat")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .context("cannot start a test child (cat)")?;
    let pid = child.id();
    let after_fork = tracked(ebpf, pid)?;
    drop(child.stdin.take());
    child.wait()?;
    // The exit program runs before the parent is told; allow for scheduling anyway.
    let deadline = Instant::now() + Duration::from_secs(2);
    let mut after_exit = tracked(ebpf, pid)?;
    while after_exit && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
        after_exit = tracked(ebpf, pid)?;
    }
    for (prog, link) in links {
        let p: &mut RawTracePoint = ebpf.program_mut(prog).unwrap().try_into()?;
        p.detach(link)?;
    }
    match (after_fork, after_exit) {
        (true, false) => Ok(format!("child PID {pid} tracked at fork, released at exit")),
        (false, _) => bail!(
            "the fork of PID {pid} was not seen (task_struct.tgid at +{:#x} may be wrong)",
            task.tgid
        ),
        (true, true) => bail!("the exit of PID {pid} was not seen"),
    }
}
