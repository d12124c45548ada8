//! `attach --all`: a thread that looks for processes mapping a library file no probe set
//! covers yet (a venv or release first used after the start), calibrates it and has the kernel
//! verify its programs, off the event loop, which attaches what it sends.
use std::time::Duration;

use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver};

use crate::{
    plan,
    probe::{Loaded, Scope},
    runtime::discover,
    session::source::PreparedSet,
};

/// How often the scan looks.
const EVERY: Duration = Duration::from_secs(2);

/// Starts the scan; `known`: the identities of the library files already probed.
pub fn start(mut known: Vec<(u64, u64)>) -> UnboundedReceiver<PreparedSet> {
    let (tx, rx) = unbounded_channel();
    std::thread::spawn(move || loop {
        std::thread::sleep(EVERY);
        let running = discover::processes_with_library();
        for (_, path) in &running {
            let Ok(id) = discover::file_id(path) else {
                continue;
            };
            if known.contains(&id) {
                continue;
            }
            known.push(id);
            let prepared = plan::for_library(path).and_then(|mut plan| {
                // Its processes opened their devices before the probes.
                plan.mid_run = true;
                Ok((plan, Loaded::new(Scope::All)?))
            });
            let (plan, loaded) = match prepared {
                Ok(p) => p,
                Err(e) => {
                    eprintln!("tracer: warning: not traced: {e:#}");
                    continue;
                }
            };
            let users = running
                .iter()
                .filter(|(_, p)| discover::file_id(p).ok() == Some(id))
                .map(|(pid, _)| *pid)
                .collect();
            let set = PreparedSet {
                plan,
                loaded,
                users,
            };
            if tx.send(set).is_err() {
                return; // The session is over.
            }
        }
    });
    rx
}
