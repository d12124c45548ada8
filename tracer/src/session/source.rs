//! The session's one source of events: every probe set (one per runtime library file being
//! traced), each with the decoder that gives its raw values their meaning.
use std::collections::BTreeMap;

use anyhow::Result;

use crate::{
    model::{Event, EventKind},
    plan::ProbePlan,
    probe::{decode::Decoder, Loaded, Probes, Raw},
    runtime::{
        process,
        python::{self, resolve::Resolver},
    },
};

/// The probes on one library file and their decoder.
pub struct ProbeSet {
    pub probes: Probes,
    pub decoder: Decoder,
}

impl ProbeSet {
    pub fn new(probes: Probes, decoder: Decoder) -> Self {
        Self { probes, decoder }
    }
}

/// A library file found after the session started (by the `--all` scan), calibrated and its
/// programs verified off the event loop; the loop attaches it and opens the ledgers of the
/// processes already using it.
pub struct PreparedSet {
    pub plan: ProbePlan,
    /// Loaded for every process (`Scope::All`).
    pub loaded: Loaded,
    /// Processes already using the library: attached mid-run.
    pub users: Vec<u32>,
}

pub struct Source {
    /// The first set is awaited (woken by its ring buffer); the others are drained with it.
    sets: Vec<ProbeSet>,
    /// Which set's library each process ran on.
    libraries: BTreeMap<u32, String>,
    /// Per process, how often its interpreter was looked at, and whether that is settled
    /// (its stacks are read, or they cannot be).
    python_tries: BTreeMap<u32, (u8, bool)>,
}

impl Source {
    pub fn new(first: ProbeSet) -> Self {
        Self {
            sets: vec![first],
            libraries: BTreeMap::new(),
            python_tries: BTreeMap::new(),
        }
    }

    pub fn primary(&self) -> &ProbeSet {
        &self.sets[0]
    }

    pub fn primary_mut(&mut self) -> &mut ProbeSet {
        &mut self.sets[0]
    }

    pub fn sets(&self) -> &[ProbeSet] {
        &self.sets
    }

    pub fn set_mut(&mut self, i: usize) -> &mut ProbeSet {
        &mut self.sets[i]
    }

    pub fn add(&mut self, set: ProbeSet) {
        self.sets.push(set);
    }

    /// Waits for the next batch of the first set (or its drain timer), then takes whatever
    /// the others have; each raw record comes with the index of its set.
    pub async fn next_batch(&mut self, out: &mut Vec<(usize, Raw)>) -> Result<()> {
        self.sets[0].probes.next_batch(|r| out.push((0, r))).await?;
        self.drain_others(out);
        Ok(())
    }

    /// Takes what every set already holds, without waiting.
    pub fn drain(&mut self, out: &mut Vec<(usize, Raw)>) {
        self.sets[0].probes.drain(|r| out.push((0, r)));
        self.drain_others(out);
    }

    fn drain_others(&mut self, out: &mut Vec<(usize, Raw)>) {
        for (i, s) in self.sets.iter_mut().enumerate().skip(1) {
            s.probes.drain(|r| out.push((i, r)));
        }
    }

    /// Raw output of set `set` -> events, noting which library the process runs on. A new
    /// process's command line is read here, not by the (pure) decoder.
    pub fn decode(&mut self, set: usize, raw: Raw) -> Vec<Event> {
        let decoder = &mut self.sets[set].decoder;
        let mut events = match raw {
            Raw::Event(e) => decoder.decode(&e),
            Raw::Tailed(e) => decoder.decode_tailed(&e),
            Raw::Device(d) => {
                decoder.describe(&d);
                return Vec::new();
            }
            Raw::Stack(s) => {
                decoder.stack(&s);
                return Vec::new();
            }
        };
        // The interpreter is looked at with a process's first event from the runtime (it
        // has long been loaded then; a launched command may not have started it when the
        // session announced the process).
        if let Some(pid) = events.first().map(|e| e.pid) {
            self.python(set, pid);
        }
        for ev in &mut events {
            if let EventKind::ProcessStart { command } = &mut ev.kind {
                if command.is_empty() {
                    *command = process::command_line(ev.pid);
                }
            }
            if !self.libraries.contains_key(&ev.pid) {
                let lib = self.sets[set].decoder.plan().library.display().to_string();
                self.libraries.insert(ev.pid, lib);
            }
        }
        events
    }

    /// Starts reading the Python stacks of `pid` at its allocations, if it runs a CPython
    /// that calibrates. Called at every stop of a launched process at the dynamic linker's
    /// hook and with a process's events, until settled: early in a process's life its
    /// interpreter may not be relocated yet (a note on stderr when it never works out: its
    /// buffers just have no site).
    pub fn python(&mut self, set: usize, pid: u32) {
        const TRIES: u8 = 16;
        let tries = self.python_tries.entry(pid).or_insert((0, false));
        if tries.1 || !Probes::stacks_enabled() {
            return;
        }
        tries.0 += 1;
        let last = tries.0 >= TRIES;
        let s = &mut self.sets[set];
        let settled = match python::for_process(pid) {
            Ok(Some((layout, spec, base))) => match s.probes.set_python_stack(pid, &spec) {
                Ok(()) => {
                    s.decoder.python(pid, Resolver::new(pid, layout, base));
                    true
                }
                Err(e) => {
                    eprintln!("tracer: warning: PID {pid}: no Python stacks: {e:#}");
                    true
                }
            },
            Ok(None) => true,
            Err(e) => {
                if last {
                    eprintln!("tracer: note: PID {pid}: no Python stacks: {e:#}");
                }
                last
            }
        };
        if let Some(t) = self.python_tries.get_mut(&pid) {
            t.1 = settled;
        }
    }

    /// Events the kernel dropped so far, over every set.
    pub fn lost(&self) -> u64 {
        self.sets.iter().map(|s| s.probes.lost().unwrap_or(0)).sum()
    }

    /// Removes the allocator geometry probes of sets whose mid-run processes all reported
    /// (each trap costs an allocation some microseconds).
    pub fn drop_geometry_probes(&mut self) {
        for s in &mut self.sets {
            if s.decoder.geometry_done() {
                s.probes.detach_geometry();
            }
        }
    }

    /// The set probing the library file with this identity.
    pub fn set_of(&self, id: (u64, u64)) -> Option<usize> {
        self.sets.iter().position(|s| {
            crate::runtime::discover::file_id(&s.decoder.plan().library).ok() == Some(id)
        })
    }

    /// The library each process ran on; processes seen only by their start or exit ran on
    /// the first one (as a replay of the recording, which names that one, says too).
    pub fn take_libraries(&mut self, pids: impl Iterator<Item = u32>) -> BTreeMap<u32, String> {
        let first = self.sets[0].decoder.plan().library.display().to_string();
        let mut libs = std::mem::take(&mut self.libraries);
        for pid in pids {
            libs.entry(pid).or_insert_with(|| first.clone());
        }
        libs
    }
}
