//! Which physical chips a device object stands for.
//!
//! A buffer on a `Device` belongs to that chip (`Device::id()`, read by the probe). A buffer on
//! a `MeshDevice` belongs to every chip of the mesh; the chips are found once per mesh by reading
//! the process' memory: the mesh object leads, within a few pointer hops, to an array of
//! `Device*` (its view or its device cache), each recognised by its vtable pointer.
use std::{collections::HashMap, fs::File, os::unix::fs::FileExt};

use tracer_common::RawDevice;

use crate::ledger::DeviceRef;

#[derive(Clone, Copy, Debug)]
pub struct Vptrs {
    pub device: u64,
    pub mesh: u64,
}

/// Reads another process' memory.
pub trait Memory {
    fn read(&self, addr: u64, buf: &mut [u8]) -> bool;

    fn u64_at(&self, addr: u64) -> Option<u64> {
        let mut b = [0u8; 8];
        self.read(addr, &mut b).then(|| u64::from_le_bytes(b))
    }
}

pub struct ProcMem(File);

impl ProcMem {
    pub fn open(pid: u32) -> Option<Self> {
        File::open(format!("/proc/{pid}/mem")).ok().map(Self)
    }
}

impl Memory for ProcMem {
    fn read(&self, addr: u64, buf: &mut [u8]) -> bool {
        self.0.read_exact_at(buf, addr).is_ok()
    }
}

fn plausible_pointer(v: u64) -> bool {
    (0x10000..0x8000_0000_0000).contains(&v) && v.is_multiple_of(8)
}

const OBJECT_SCAN: usize = 0x400;
const MAX_DEVICES: u64 = 1024;

/// The first array of `Device*` reachable from `mesh` in at most `depth` pointer hops,
/// breadth-first (the mesh's own view is nearer than global registries).
pub fn mesh_devices(
    mem: &dyn Memory,
    mesh: u64,
    device_vptr: u64,
    depth: usize,
) -> Option<Vec<u64>> {
    let mut frontier = vec![mesh];
    let mut visited = std::collections::HashSet::new();
    for _ in 0..=depth {
        let mut next = Vec::new();
        for obj in frontier {
            if !visited.insert(obj) {
                continue;
            }
            let mut raw = vec![0u8; OBJECT_SCAN];
            if !mem.read(obj, &mut raw) {
                continue;
            }
            let words: Vec<u64> = raw
                .chunks_exact(8)
                .map(|c| u64::from_le_bytes(c.try_into().unwrap()))
                .collect();
            for pair in words.windows(2) {
                if let Some(devs) = device_array(mem, pair[0], pair[1], device_vptr) {
                    return Some(devs);
                }
            }
            next.extend(words.into_iter().filter(|w| plausible_pointer(*w)));
        }
        frontier = next;
    }
    None
}

/// `[begin, end)` as an array of device pointers (stride 8, or 16 for tagged wrappers).
fn device_array(mem: &dyn Memory, begin: u64, end: u64, device_vptr: u64) -> Option<Vec<u64>> {
    if !plausible_pointer(begin) || end <= begin || end - begin > MAX_DEVICES * 16 {
        return None;
    }
    for stride in [8u64, 16] {
        if !(end - begin).is_multiple_of(stride) {
            continue;
        }
        let n = (end - begin) / stride;
        let devs: Option<Vec<u64>> = (0..n)
            .map(|i| {
                let d = mem.u64_at(begin + i * stride)?;
                (plausible_pointer(d) && mem.u64_at(d)? == device_vptr).then_some(d)
            })
            .collect();
        if let Some(devs) = devs {
            return Some(devs);
        }
    }
    None
}

/// Per-process cache: device object -> chips.
#[derive(Default)]
pub struct DeviceResolver {
    known: HashMap<(u32, u64), DeviceRef>,
}

impl DeviceResolver {
    /// `vptr` and `id_word` are what the probe read from the object; `bias` is where the
    /// runtime is loaded in `pid`.
    #[allow(clippy::too_many_arguments)]
    pub fn resolve(
        &mut self,
        pid: u32,
        handle: u64,
        vptr: u64,
        id_word: u64,
        bias: Option<u64>,
        vptrs: Option<Vptrs>,
        id_offset: i32,
    ) -> DeviceRef {
        if let Some(d) = self.known.get(&(pid, handle)) {
            return d.clone();
        }
        let chip = DeviceRef {
            handle,
            chips: vec![id_word as u32 as i32],
            mesh: false,
        };
        let (Some(bias), Some(v)) = (bias, vptrs) else {
            return chip;
        };
        let resolved = if vptr == bias + v.mesh {
            let mem = ProcMem::open(pid);
            let devs = mem
                .as_ref()
                .and_then(|m| mesh_devices(m, handle, bias + v.device, 3).map(|d| (m, d)));
            match devs {
                Some((m, devs)) => {
                    let chips = devs
                        .iter()
                        .filter_map(|d| {
                            let mut b = [0u8; 4];
                            m.read(d.wrapping_add(id_offset as i64 as u64), &mut b)
                                .then(|| i32::from_le_bytes(b))
                        })
                        .collect();
                    DeviceRef {
                        handle,
                        chips,
                        mesh: true,
                    }
                }
                // Unresolvable now (process gone?): keep it visible as the mesh itself.
                None => {
                    return DeviceRef {
                        handle,
                        chips: vec![],
                        mesh: true,
                    }
                }
            }
        } else {
            chip
        };
        self.known.insert((pid, handle), resolved.clone());
        resolved
    }

    /// Records what the probe saw of a device object. The runtime's load address is implied:
    /// a mesh's vtable pointer and its devices' must sit at the same distance from their
    /// link-time addresses.
    pub fn describe(&mut self, d: &RawDevice, v: Vptrs) {
        let bias = d.vptr.wrapping_sub(v.mesh);
        let n = (d.count as usize).min(d.words.len());
        let chips: Vec<i32> = (0..n)
            .filter(|i| d.vptrs[*i] == bias.wrapping_add(v.device) && bias.is_multiple_of(0x1000))
            .map(|i| d.ids[i] as i32)
            .collect();
        let device = if chips.is_empty() {
            // Not a mesh (or its list is empty): a chip, named by its own id field.
            DeviceRef {
                handle: d.handle,
                chips: vec![d.id as u32 as i32],
                mesh: false,
            }
        } else {
            DeviceRef {
                handle: d.handle,
                chips,
                mesh: true,
            }
        };
        // A mesh whose list could not be read stays unknown: the scanner may do better.
        if device.mesh || d.vptr.wrapping_sub(v.device).is_multiple_of(0x1000) {
            self.known.insert((d.pid, d.handle), device);
        }
    }

    /// A device object was closed: its address may be reused by a new one.
    pub fn forget(&mut self, pid: u32, handle: u64) {
        self.known.remove(&(pid, handle));
    }

    pub fn forget_process(&mut self, pid: u32) {
        self.known.retain(|(p, _), _| *p != pid);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fake(HashMap<u64, u64>);
    impl Memory for Fake {
        fn read(&self, addr: u64, buf: &mut [u8]) -> bool {
            for (i, chunk) in buf.chunks_mut(8).enumerate() {
                let w = self.0.get(&(addr + i as u64 * 8)).copied().unwrap_or(0);
                chunk.copy_from_slice(&w.to_le_bytes()[..chunk.len()]);
            }
            true
        }
    }

    #[test]
    fn finds_device_array_two_hops_away() {
        let vptr = 0x7000_0010;
        let mut m = HashMap::new();
        // mesh @0x10000: +0x18 -> pimpl @0x20000; pimpl +0x78/+0x80 = [begin, end)
        m.insert(0x10000 + 0x18, 0x20000);
        m.insert(0x20000 + 0x78, 0x30000);
        m.insert(0x20000 + 0x80, 0x30010);
        m.insert(0x30000, 0x40000);
        m.insert(0x30008, 0x50000);
        m.insert(0x40000, vptr);
        m.insert(0x50000, vptr);
        let devs = mesh_devices(&Fake(m), 0x10000, vptr, 3).unwrap();
        assert_eq!(devs, vec![0x40000, 0x50000]);
    }

    #[test]
    fn rejects_arrays_of_other_objects() {
        let mut m = HashMap::new();
        m.insert(0x10000, 0x30000);
        m.insert(0x10008, 0x30008);
        m.insert(0x30000, 0x40000);
        m.insert(0x40000, 0x1234);
        assert_eq!(mesh_devices(&Fake(m), 0x10000, 0x7000_0010, 2), None);
    }
}
