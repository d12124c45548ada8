//! Which physical chips a device object stands for.
//!
//! A buffer on a `Device` belongs to that chip (`Device::id()`). A buffer on a `MeshDevice`
//! belongs to every chip of the mesh. The probe describes each device object the first time a
//! process shows it ([`RawDevice`]: its vtable pointer, id field, and the device pointers along
//! the mesh path calibrated from `MeshDevice::get_devices()`); this module turns that into chips.
use std::collections::HashMap;

use tracer_common::RawDevice;

use crate::model::DeviceRef;

/// Link-time addresses of the `Device` and `MeshDevice` vtable pointers.
#[derive(Clone, Copy, Debug)]
pub struct Vptrs {
    pub device: u64,
    pub mesh: u64,
}

/// Per-process cache: device object -> chips.
#[derive(Default)]
pub struct DeviceResolver {
    known: HashMap<(u32, u64), DeviceRef>,
}

impl DeviceResolver {
    /// The chips of a described device object.
    pub fn resolve(&self, pid: u32, handle: u64) -> Option<DeviceRef> {
        self.known.get(&(pid, handle)).cloned()
    }

    /// Records what the probe saw of a device object. The runtime's load address is implied:
    /// a mesh's vtable pointer and its devices' must sit at the same distance from their
    /// link-time addresses (a page multiple).
    pub fn describe(&mut self, d: &RawDevice, v: Vptrs) {
        let bias = d.vptr.wrapping_sub(v.mesh);
        let n = (d.count as usize).min(d.words.len());
        let chips: Vec<i32> = (0..n)
            .filter(|i| d.vptrs[*i] == bias.wrapping_add(v.device) && bias.is_multiple_of(0x1000))
            .map(|i| d.ids[i] as i32)
            .collect();
        let is_mesh = bias.is_multiple_of(0x1000);
        let device = if chips.is_empty() && is_mesh {
            // A mesh whose device list was empty or unreadable: its chips are unknown.
            DeviceRef {
                handle: d.handle,
                chips: vec![],
                mesh: true,
            }
        } else if chips.is_empty() {
            // A chip, named by its own id field.
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
        self.known.insert((d.pid, d.handle), device);
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

    const V: Vptrs = Vptrs {
        device: 0x1000_0010,
        mesh: 0x2000_0a30,
    };

    fn raw(vptr: u64, id: u64, devices: &[(u64, u32)]) -> RawDevice {
        let mut d = RawDevice {
            slot: tracer_common::SLOT_DEVICE,
            pid: 7,
            handle: 0x5000,
            vptr,
            id,
            count: devices.len() as u64,
            words: [0; tracer_common::MAX_MESH],
            vptrs: [0; tracer_common::MAX_MESH],
            ids: [0; tracer_common::MAX_MESH],
        };
        for (i, (vp, id)) in devices.iter().enumerate() {
            d.words[i] = 0x9000 + i as u64 * 0x100;
            d.vptrs[i] = *vp;
            d.ids[i] = *id;
        }
        d
    }

    #[test]
    fn mesh_lists_its_chips_in_order() {
        let bias = 0x7f00_0000_0000;
        let mut r = DeviceResolver::default();
        r.describe(
            &raw(
                bias + V.mesh,
                0,
                &[(bias + V.device, 1), (bias + V.device, 0)],
            ),
            V,
        );
        let d = r.resolve(7, 0x5000).unwrap();
        assert!(d.mesh);
        assert_eq!(d.chips, vec![1, 0]);
    }

    #[test]
    fn a_chip_is_named_by_its_id_and_forgotten_on_close() {
        let bias = 0x7f00_0000_0000;
        let mut r = DeviceResolver::default();
        // The "mesh path" of a plain device leads to garbage: not device vtables.
        r.describe(&raw(bias + V.device, 5, &[(0x1234, 9)]), V);
        assert_eq!(r.resolve(7, 0x5000).unwrap().chips, vec![5]);
        r.forget(7, 0x5000);
        assert_eq!(r.resolve(7, 0x5000), None);
    }
}
