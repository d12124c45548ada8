//! `run`: the launched tree stops at each change of its loaded objects (see
//! probe::loader_watch); a runtime library it maps that no probe set covers yet gets probes
//! before the process goes on.
use std::path::Path;

use anyhow::Result;

use super::source::{ProbeSet, Source};
use crate::{
    plan,
    probe::{decode::Decoder, loader_watch::LoaderWatch, Loaded, Scope},
    runtime::{discover, dynamic_linker},
};

pub struct LibraryWatch {
    pub watch: LoaderWatch,
}

impl LibraryWatch {
    pub fn new(watch: LoaderWatch) -> Self {
        Self { watch }
    }

    pub async fn next_stops(&mut self) -> Result<Vec<u32>> {
        self.watch.next_stops().await
    }

    /// `pid` is stopped at the dynamic linker's hook: probe any runtime library it maps that
    /// no probe set covers yet, then let it go on.
    pub fn library_change(&mut self, source: &mut Source, pid: u32) {
        let mapped = dynamic_linker::mapped_libraries(pid).unwrap_or_default();
        for (lib, _) in mapped {
            if let Err(e) = probe_library(source, pid, &lib) {
                eprintln!(
                    "tracer: warning: PID {pid} loaded {}, which cannot be traced: {e:#}",
                    lib.display()
                );
                continue;
            }
            // Stopped, with the runtime mapped: the interpreter (loaded before it) can be
            // read before the first allocation.
            if let Some(set) = discover::file_id(&lib)
                .ok()
                .and_then(|id| source.set_of(id))
            {
                source.python(set, pid);
            }
        }
        self.watch.resume(pid);
    }
}

fn probe_library(source: &mut Source, pid: u32, lib: &Path) -> Result<()> {
    let id = discover::file_id(lib)?;
    if let Some(i) = source.set_of(id) {
        // Known library; a process of the tree not yet followed by that set is added.
        return source.set_mut(i).probes.track(pid);
    }
    let plan = plan::for_library(lib)?;
    for w in &plan.warnings {
        eprintln!("tracer: warning: {}: {w}", lib.display());
    }
    let mut probes = Loaded::new(Scope::Tracked)?.attach(&plan)?;
    // Stopped at the library's load, before any of its code ran: every allocation is seen.
    probes.track_by_object(pid)?;
    eprintln!("tracer: PID {pid} loaded {}: probed", lib.display());
    source.add(ProbeSet::new(probes, Decoder::new(plan)));
    Ok(())
}
