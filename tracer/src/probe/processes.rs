//! The eBPF side's process states (`PROCESSES`: one byte per process id, see tracer-common's
//! `TRACKED`), mapped into tracer's memory so that userspace and the programs each write single
//! bytes: no read-modify-write of a shared word that could undo what the other side wrote.
use std::os::fd::{AsFd, AsRawFd};

use anyhow::{bail, Context, Result};
use aya::{maps::Map, Ebpf};
use tracer_common::PROCESSES_PER_ENTRY;

/// The map's name in the object.
pub const MAP: &str = "PROCESSES";

/// Entries the map needs for every process id this kernel hands out (`kernel.pid_max`).
pub fn entries() -> u32 {
    let pid_max = std::fs::read_to_string("/proc/sys/kernel/pid_max")
        .ok()
        .and_then(|s| s.trim().parse::<u32>().ok())
        // The largest the kernel allows, when the file cannot be read.
        .unwrap_or(1 << 22);
    pid_max.div_ceil(PROCESSES_PER_ENTRY as u32)
}

pub struct ProcessStates {
    bytes: memmap2::MmapMut,
}

impl ProcessStates {
    /// Maps the loaded object's `PROCESSES` array.
    pub fn of(ebpf: &Ebpf) -> Result<Self> {
        let Some(Map::Array(data)) = ebpf.map(MAP) else {
            bail!("the eBPF object has no {MAP} array");
        };
        let info = data
            .info()
            .context("cannot read the PROCESSES map's size")?;
        let len = info.max_entries() as usize * PROCESSES_PER_ENTRY;
        let fd = data.fd().as_fd().as_raw_fd();
        // SAFETY: the kernel keeps the array alive while it is mapped; only single bytes are
        // read and written, with volatile accesses, because the programs change them too.
        let bytes = unsafe { memmap2::MmapOptions::new().len(len).map_mut(fd) }.context(
            "cannot map the PROCESSES array (the kernel needs BPF_F_MMAPABLE arrays, 5.5+)",
        )?;
        Ok(Self { bytes })
    }

    fn byte(&self, pid: u32) -> Result<*mut u8> {
        let i = pid as usize;
        if i >= self.bytes.len() {
            bail!(
                "PID {pid} is beyond kernel.pid_max as it was when the probes were loaded ({})",
                self.bytes.len()
            );
        }
        Ok(unsafe { self.bytes.as_ptr().add(i) as *mut u8 })
    }

    pub fn set(&mut self, pid: u32, state: u8) -> Result<()> {
        let p = self.byte(pid)?;
        unsafe { std::ptr::write_volatile(p, state) };
        Ok(())
    }

    pub fn get(&self, pid: u32) -> Result<u8> {
        Ok(unsafe { std::ptr::read_volatile(self.byte(pid)?) })
    }
}
