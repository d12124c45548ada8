//! Another process's memory, read with `process_vm_readv` (batched: one system call per
//! hop of many objects), for the readers of what a process holds (runtime/held.rs,
//! runtime/programs.rs).
use std::io::IoSliceMut;

use anyhow::{anyhow, Result};
use nix::{
    errno::Errno,
    sys::uio::{process_vm_readv, RemoteIoVec},
    unistd::Pid,
};

use super::x86::Chain;

/// Another process's memory, read with `process_vm_readv`.
pub struct Memory {
    pid: Pid,
}

/// At most this many pieces per `process_vm_readv` (the kernel's `UIO_MAXIOV`).
const MAX_IOV: usize = 1024;

impl Memory {
    /// Checks that `pid` can be read at all (`probe` is an address it has mapped).
    pub fn open(pid: u32, probe: u64) -> Result<Self> {
        let m = Self {
            pid: Pid::from_raw(pid as i32),
        };
        let mut b = [0u8; 8];
        m.read_into(probe, &mut b).map_err(|e| match e {
            Errno::EPERM => anyhow!(
                "cannot read the memory of PID {pid}: permission denied (tracer needs root, \
                 and a ptrace policy such as Yama's ptrace_scope=3 forbids it even then)"
            ),
            Errno::ESRCH => anyhow!("PID {pid} is gone"),
            e => anyhow!("cannot read the memory of PID {pid}: {e}"),
        })?;
        Ok(m)
    }

    /// `buf.len()` bytes at `address`, all of them or an error.
    pub fn read_into(&self, address: u64, buf: &mut [u8]) -> std::result::Result<(), Errno> {
        let len = buf.len();
        let remote = [RemoteIoVec {
            base: address as usize,
            len,
        }];
        let n = process_vm_readv(self.pid, &mut [IoSliceMut::new(buf)], &remote)?;
        if n == len {
            Ok(())
        } else {
            Err(Errno::EFAULT)
        }
    }

    /// `len` bytes at `address`.
    pub fn bytes(&self, address: u64, len: usize) -> Option<Vec<u8>> {
        let mut b = vec![0u8; len];
        self.read_into(address, &mut b).ok()?;
        Some(b)
    }

    pub fn word(&self, address: u64) -> Option<u64> {
        let mut b = [0u8; 8];
        self.read_into(address, &mut b).ok()?;
        Some(u64::from_le_bytes(b))
    }

    /// The 8-byte words at `addresses`, in as few system calls as the kernel allows (`None`
    /// for the unreadable ones).
    pub fn words(&self, addresses: &[u64]) -> Vec<Option<u64>> {
        let mut out = vec![None; addresses.len()];
        let mut buf = vec![0u8; 8 * addresses.len()];
        let mut at = 0;
        while at < addresses.len() {
            let end = (at + MAX_IOV).min(addresses.len());
            let remote: Vec<RemoteIoVec> = addresses[at..end]
                .iter()
                .map(|a| RemoteIoVec {
                    base: *a as usize,
                    len: 8,
                })
                .collect();
            let n = {
                let mut locals: Vec<IoSliceMut> = buf[8 * at..8 * end]
                    .chunks_mut(8)
                    .map(IoSliceMut::new)
                    .collect();
                process_vm_readv(self.pid, &mut locals, &remote).unwrap_or(0)
            };
            // The kernel stops at the first piece it cannot read: skip it, go on after it.
            let whole = n / 8;
            for i in at..at + whole {
                out[i] = Some(u64::from_le_bytes(
                    buf[8 * i..8 * i + 8].try_into().unwrap(),
                ));
            }
            at += whole + 1;
        }
        out
    }

    /// `chain` read from each of `bases`, one batched read per hop.
    pub fn chains(&self, bases: &[u64], chain: &Chain) -> Vec<Option<u64>> {
        let mut at: Vec<Option<u64>> = bases.iter().map(|b| Some(*b)).collect();
        for (i, off) in chain.offsets.iter().enumerate() {
            let addrs: Vec<u64> = at
                .iter()
                .map(|a| a.map_or(0, |a| a.wrapping_add(*off as i64 as u64)))
                .collect();
            let got = self.words(&addrs);
            let last = i + 1 == chain.offsets.len();
            at = at
                .iter()
                .zip(got)
                .map(|(a, w)| {
                    let w = w.filter(|_| a.is_some())?;
                    if last {
                        Some(match chain.width {
                            8 => w,
                            n => w & ((1u64 << (8 * u32::from(n))) - 1),
                        })
                    } else {
                        (w != 0).then_some(w)
                    }
                })
                .collect();
        }
        at
    }
}
