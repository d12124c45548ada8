//! `tracer attach`: processes already running, by PID ([`pids`]) or every process that maps
//! the runtime ([`all`]). What a process held before the attach comes from session::seeding.
mod all;
mod pids;
mod scan;
mod targets;

use std::time::Instant;

use anyhow::Result;

use super::Options;
use crate::{
    exit::require_root,
    probe::{Loaded, Scope},
};

pub fn attach(opts: Options, pids: Vec<u32>, all: bool) -> Result<i32> {
    let started = Instant::now();
    require_root()?;
    crate::probe::configure(opts.probes);
    // The kernel verifies the programs while the library is calibrated.
    let scope = if all { Scope::All } else { Scope::Tracked };
    let loading = std::thread::spawn(move || Loaded::new(scope));
    if all {
        all::attach_all(opts, started, loading)
    } else {
        pids::attach_pids(opts, pids, started, loading)
    }
}
