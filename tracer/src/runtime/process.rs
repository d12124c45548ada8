//! What /proc says about a process (through the procfs crate).
use anyhow::Result;
use procfs::process::{MemoryMap, Process};

/// The process's command line as one line ("" when the process is gone).
pub fn command_line(pid: u32) -> String {
    Process::new(pid as i32)
        .and_then(|p| p.cmdline())
        .map(|args| {
            args.into_iter()
                .filter(|a| !a.is_empty())
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_default()
}

/// The process's memory maps, with errors that say what is wrong with the PID.
pub fn maps(pid: u32) -> Result<Vec<MemoryMap>> {
    let path = format!("/proc/{pid}/maps");
    let read = Process::new(pid as i32).and_then(|p| p.maps());
    read.map(|m| m.0).map_err(|e| match e {
        procfs::ProcError::NotFound(_) => anyhow::anyhow!("no process with PID {pid}"),
        procfs::ProcError::PermissionDenied(_) => anyhow::anyhow!(
            "cannot read {path}: permission denied (tracer needs root; a process of another \
             PID namespace or under a stricter ptrace policy cannot be inspected)"
        ),
        e => anyhow::Error::new(e).context(format!("cannot read {path}")),
    })
}

/// The state letter of /proc/PID/stat (`Z` for a zombie), `None` when the process is gone.
pub fn state(pid: u32) -> Option<char> {
    Some(Process::new(pid as i32).ok()?.stat().ok()?.state)
}

/// Every live descendant of `pid` (children, their children, ...).
pub fn descendants(pid: u32) -> Vec<u32> {
    let parent_of: Vec<(u32, u32)> = procfs::process::all_processes()
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|p| {
            let stat = p.stat().ok()?;
            Some((stat.pid as u32, stat.ppid as u32))
        })
        .collect();
    let mut out = Vec::new();
    let mut frontier = vec![pid];
    while let Some(parent) = frontier.pop() {
        for (child, _) in parent_of.iter().filter(|(_, pp)| *pp == parent) {
            if !out.contains(child) {
                out.push(*child);
                frontier.push(*child);
            }
        }
    }
    out
}

/// Every process id now, but this process's.
pub fn others() -> Vec<u32> {
    let me = std::process::id();
    procfs::process::all_processes()
        .into_iter()
        .flatten()
        .flatten()
        .map(|p| p.pid as u32)
        .filter(|p| *p != me)
        .collect()
}
