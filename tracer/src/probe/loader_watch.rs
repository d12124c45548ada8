//! Watching a launched process tree for the moment it maps a runtime library.
//!
//! A probe on the dynamic linker's debugger hook stops a traced process at each change of its
//! loaded objects (see `tracer_loader` in tracer-ebpf); userspace looks at its maps, attaches
//! probes to a newly mapped `libtt_metal.so`, then continues it, so no allocation is missed
//! even when nothing on the command line names the library.
use std::path::Path;

use anyhow::{anyhow, Context, Result};
use aya::{
    maps::{Array, MapData, RingBuf},
    programs::{RawTracePoint, UProbe},
    Ebpf,
};
use nix::{sys::signal::Signal, unistd::Pid};
use tokio::io::unix::AsyncFd;
use tracer_common::{RawEvent, CFG_TASK_TGID_OFF, SLOT_LIBRARY_CHANGE};

use super::{task_layout::TaskLayout, PROCESS_TRACEPOINTS};
use crate::runtime::dynamic_linker;

/// The longest a stop can go unseen if a wake-up is missed.
const RECHECK: std::time::Duration = std::time::Duration::from_millis(10);

/// The processes whose stops are in the ring buffer.
fn drain(ring: &mut RingBuf<MapData>) -> Vec<u32> {
    let mut out = Vec::new();
    while let Some(item) = ring.next() {
        let ev: RawEvent = super::read_pod(&item);
        if ev.slot == SLOT_LIBRARY_CHANGE && !out.contains(&ev.pid) {
            out.push(ev.pid);
        }
    }
    out
}

pub struct LoaderWatch {
    ebpf: Ebpf,
    ring: AsyncFd<RingBuf<MapData>>,
    /// Processes stopped at the hook and not yet continued.
    stopped: Vec<u32>,
    /// Hook hits so far (each one stopped a process once).
    pub hits: u64,
    processes: super::processes::ProcessStates,
}

impl LoaderWatch {
    /// Probes `linker`'s hook for the processes given to [`Self::track`] and their descendants.
    pub fn attach(linker: &Path) -> Result<Self> {
        let mut ebpf = super::load_object(0, super::Scope::Tracked)
            .map_err(|e| anyhow!("cannot load the eBPF programs: {e}"))?;
        let task = TaskLayout::of_running_kernel()?;
        Array::<_, u64>::try_from(ebpf.map_mut("CONFIG").context("no CONFIG map")?)?.set(
            CFG_TASK_TGID_OFF,
            u64::from(task.tgid),
            0,
        )?;
        for (prog, tp) in PROCESS_TRACEPOINTS {
            let p: &mut RawTracePoint = ebpf.program_mut(prog).unwrap().try_into()?;
            p.load().with_context(|| format!("loading {prog}"))?;
            p.attach(tp)
                .with_context(|| format!("cannot attach to the raw tracepoint {tp}"))?;
        }
        let hook: &mut UProbe = ebpf.program_mut("tracer_loader").unwrap().try_into()?;
        hook.load()
            .context("the kernel rejected the dynamic linker hook program")?;
        hook.attach(
            dynamic_linker::HOOK,
            linker,
            aya::programs::uprobe::UProbeScope::AllProcesses,
        )
        .with_context(|| {
            format!(
                "cannot attach a uprobe to {} in {}",
                dynamic_linker::HOOK,
                linker.display()
            )
        })?;
        let ring = RingBuf::try_from(ebpf.take_map("EVENTS").unwrap())?;
        // SAFETY: the ring buffer owns its descriptor and lives exactly as long as the AsyncFd.
        let ring = unsafe { AsyncFd::register(ring) }
            .map_err(|e| anyhow!("cannot poll the loader ring buffer: {e}"))?;
        Ok(Self {
            processes: super::processes::ProcessStates::of(&ebpf)?,
            ebpf,
            ring,
            stopped: Vec::new(),
            hits: 0,
        })
    }

    pub fn track(&mut self, pid: u32) -> Result<()> {
        self.processes
            .set(pid, tracer_common::TRACKED)
            .with_context(|| format!("cannot watch PID {pid}"))
    }

    /// Waits until some process stopped at the hook; returns them (to look at, then
    /// [`Self::resume`]).
    pub async fn next_stops(&mut self) -> Result<Vec<u32>> {
        loop {
            // Readiness is an edge: a record that lands between the last read and clearing it
            // would wake nobody, and its process would stay stopped. So read again after
            // clearing, and never wait longer than a short timer.
            tokio::select! {
                guard = self.ring.readable_mut() => {
                    let mut guard = guard?;
                    let mut stopped = drain(guard.get_inner_mut());
                    guard.clear_ready();
                    stopped.extend(drain(self.ring.get_mut()));
                    if let Some(s) = self.took(stopped) {
                        return Ok(s);
                    }
                }
                _ = tokio::time::sleep(RECHECK) => {
                    let stopped = drain(self.ring.get_mut());
                    if let Some(s) = self.took(stopped) {
                        return Ok(s);
                    }
                }
            }
        }
    }

    fn took(&mut self, mut stopped: Vec<u32>) -> Option<Vec<u32>> {
        stopped.dedup();
        if stopped.is_empty() {
            return None;
        }
        self.hits += stopped.len() as u64;
        self.stopped.extend(&stopped);
        Some(stopped)
    }

    /// Continues a process stopped at the hook.
    pub fn resume(&mut self, pid: u32) {
        self.stopped.retain(|p| *p != pid);
        // Gone already is fine: a SIGKILL'ed process needs no continuing.
        let _ = nix::sys::signal::kill(Pid::from_raw(pid as i32), Signal::SIGCONT);
    }

    /// Continues every process still stopped, and any whose stop is still in the ring buffer.
    pub fn resume_all(&mut self) {
        let pending = drain(self.ring.get_mut());
        self.stopped.extend(pending);
        for pid in std::mem::take(&mut self.stopped) {
            self.resume(pid);
        }
    }
}

impl Drop for LoaderWatch {
    /// Never leave a process stopped behind: the hook goes with our descriptors, the stops
    /// already delivered are undone here.
    fn drop(&mut self) {
        // The hook first, so nothing stops between the resumes and the unload.
        if let Some(Ok(hook)) = self
            .ebpf
            .program_mut("tracer_loader")
            .map(<&mut UProbe>::try_from)
        {
            let _ = hook.unload();
        }
        self.resume_all();
    }
}
