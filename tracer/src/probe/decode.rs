//! Raw probe values -> ledger events, using the probe plan to give values their meaning.
use tracer_common::{RawDevice, RawEvent, SLOT_PROCESS_EXIT};

use super::devices::{DeviceResolver, Vptrs};
use crate::{
    model::{BufferInfo, BufferType, DeviceRef, Event, EventKind, Refusal},
    plan::{field, ProbePlan, Role, GEOMETRY_TYPES},
    runtime::allocator::{geometry_from, probe_chains},
};

pub struct Decoder {
    plan: ProbePlan,
    resolver: DeviceResolver,
    seen: std::collections::HashSet<u32>,
    pub undecodable: u64,
    /// Buffer events on device objects the probe could not describe (no chips known).
    pub undescribed: u64,
    /// Allocations of sharded buffers (`TensorMemoryLayout` past INTERLEAVED): their
    /// `reserved` is computed as if interleaved, which undercounts (see the summary warning).
    pub sharded_allocations: u64,
    /// Processes attached mid-run whose allocator geometry is still to come from the
    /// [`Role::AllocatorGeometry`] probe (their bank managers were built before the probes).
    geometry_wanted: std::collections::HashSet<u32>,
    /// Why the geometry of a process attached mid-run is not known (for the summary).
    pub geometry_notes: Vec<String>,
    /// Records received per slot: one per probe hit that reached userspace (what the
    /// benchmark counts traps with).
    records: Vec<u64>,
}

impl Decoder {
    pub fn new(plan: ProbePlan) -> Self {
        Self {
            resolver: DeviceResolver::default(),
            seen: Default::default(),
            undecodable: 0,
            undescribed: 0,
            sharded_allocations: 0,
            geometry_wanted: Default::default(),
            geometry_notes: Vec::new(),
            records: vec![0; plan.probes.len()],
            plan,
        }
    }

    /// Records received from the probes of `role`.
    pub fn records_of(&self, role: Role) -> u64 {
        self.plan
            .probes
            .iter()
            .zip(&self.records)
            .filter(|(p, _)| p.role == role)
            .map(|(_, n)| n)
            .sum()
    }

    pub fn plan(&self) -> &ProbePlan {
        &self.plan
    }

    /// The chips behind a device object. The probe describes every device object the first
    /// time a process shows it; one it could not describe (ring buffer full) has no chips and
    /// is counted, so the summary can say so.
    fn device(&mut self, pid: u32, handle: u64) -> DeviceRef {
        self.resolver.resolve(pid, handle).unwrap_or_else(|| {
            self.undescribed += 1;
            DeviceRef {
                handle,
                chips: vec![],
                mesh: false,
            }
        })
    }

    /// Learns what a device object is from the probe's description of it.
    pub fn describe(&mut self, d: &RawDevice) {
        let (Some(device_vptr), Some(mesh_vptr)) = (self.plan.device_vptr, self.plan.mesh_vptr)
        else {
            return;
        };
        self.resolver.describe(
            d,
            Vptrs {
                device: device_vptr,
                mesh: mesh_vptr,
            },
        );
    }

    /// Marks `pid` as announced (the launcher announces its child itself).
    pub fn announce(&mut self, pid: u32) {
        self.seen.insert(pid);
    }

    /// `pid` was attached after it started: its devices (and their allocators) may predate the
    /// probes, so its geometry comes from the allocator geometry probe.
    pub fn attached(&mut self, pid: u32) {
        match &self.plan.allocator {
            Ok(_) => {
                self.geometry_wanted.insert(pid);
            }
            Err(e) => self.geometry_notes.push(format!(
                "PID {pid}: allocator geometry not calibrated for this library ({e})"
            )),
        }
    }

    /// No process attached mid-run is waiting for its geometry any more.
    pub fn geometry_done(&self) -> bool {
        self.geometry_wanted.is_empty()
    }

    /// A process ended before reporting its geometry.
    fn geometry_gone(&mut self, pid: u32) {
        self.geometry_wanted.remove(&pid);
    }

    /// The allocator geometry probe's values as `BankGeometry` events, for a process attached
    /// mid-run that has not reported yet (once per process).
    fn geometry(&mut self, raw: &RawEvent) -> Vec<Event> {
        let Ok(layout) = &self.plan.allocator else {
            return Vec::new();
        };
        if !self.geometry_wanted.contains(&raw.pid) {
            return Vec::new();
        }
        let kinds: Vec<BufferType> = probe_chains(layout, GEOMETRY_TYPES)
            .into_iter()
            .map(|(k, _)| k)
            .collect();
        let n = (raw.nvalues as usize).min(raw.values.len());
        let found = geometry_from(&kinds, &raw.values[..n], raw.valid);
        if found.is_empty() {
            return Vec::new();
        }
        self.geometry_wanted.remove(&raw.pid);
        found
            .into_iter()
            .map(|(kind, g)| Event {
                ts_ns: raw.ts_ns,
                pid: raw.pid,
                kind: EventKind::BankGeometry {
                    kind,
                    banks: g.banks,
                    alignment: g.alignment,
                    granularity: g.granularity,
                },
            })
            .collect()
    }

    /// Decodes one raw event into ledger events: the event itself, preceded by a
    /// `ProcessStart` the first time a process shows up.
    pub fn decode(&mut self, raw: &RawEvent) -> Vec<Event> {
        if let Some(n) = self.records.get_mut(raw.slot as usize) {
            *n += 1;
        }
        if self.plan.role(raw.slot) == Some(Role::AllocatorGeometry) {
            return self.geometry(raw);
        }
        let Some(ev) = self.decode_one(raw) else {
            return Vec::new();
        };
        let mut out = Vec::with_capacity(2);
        if !matches!(ev.kind, EventKind::ProcessExit { .. }) && self.seen.insert(ev.pid) {
            out.push(Event {
                ts_ns: ev.ts_ns,
                pid: ev.pid,
                // The command line is read by whoever does I/O (the session); decoding is pure.
                kind: EventKind::ProcessStart {
                    command: String::new(),
                },
            });
        }
        out.push(ev);
        out
    }

    fn decode_one(&mut self, raw: &RawEvent) -> Option<Event> {
        let v = &raw.values;
        let has = |i: usize| raw.valid & (1 << i) != 0;
        let kind = match raw.slot {
            SLOT_PROCESS_EXIT => {
                self.resolver.forget_process(raw.pid);
                self.geometry_gone(raw.pid);
                // Only processes that used the runtime have a ledger worth closing.
                if !self.seen.contains(&raw.pid) {
                    return None;
                }
                EventKind::ProcessExit { code: None }
            }
            slot => match self.plan.role(slot)? {
                role @ (Role::Alloc | Role::Free) => {
                    let needed = [
                        field::DEVICE,
                        field::ADDRESS,
                        field::SIZE,
                        field::KIND,
                        field::UNIQUE_ID,
                    ];
                    let kind = BufferType::from_raw(v[field::KIND]);
                    if !needed.iter().all(|i| has(*i)) || kind.is_none() {
                        self.undecodable += 1;
                        return None;
                    }
                    let device = self.device(raw.pid, v[field::DEVICE]);
                    let buffer = BufferInfo {
                        address: v[field::ADDRESS],
                        size: v[field::SIZE],
                        page_size: v[field::PAGE_SIZE],
                        kind: kind?,
                        unique_id: v[field::UNIQUE_ID],
                    };
                    // tt-metal's TensorMemoryLayout: INTERLEAVED = 0, (SINGLE_BANK = 1,) then
                    // the sharded layouts.
                    if role == Role::Alloc
                        && has(field::MEMORY_LAYOUT)
                        && raw.nvalues as usize > field::MEMORY_LAYOUT
                        && v[field::MEMORY_LAYOUT] >= 2
                    {
                        self.sharded_allocations += 1;
                    }
                    if role == Role::Alloc {
                        EventKind::Alloc { device, buffer }
                    } else {
                        EventKind::Free { device, buffer }
                    }
                }
                Role::DeviceClose | Role::MeshClose => {
                    let device = self.device(raw.pid, v[0]);
                    self.resolver.forget(raw.pid, v[0]);
                    EventKind::DeviceClose { device }
                }
                Role::BanksVector => EventKind::BankGeometry {
                    kind: BufferType::from_raw(v[0])?,
                    banks: (v[2].saturating_sub(v[1]) / 8) as u32,
                    alignment: v[3] as u32,
                    granularity: v[4] as u32,
                },
                Role::DeviceOpen => {
                    use crate::plan::lifecycle::field as f;
                    let device = self.device(raw.pid, v[f::DEVICE]);
                    EventKind::DeviceOpen {
                        device,
                        shape: None,
                    }
                }
                Role::MeshOpen => {
                    use crate::plan::lifecycle::field as f;
                    let device = self.device(raw.pid, v[f::DEVICE]);
                    let shape = (raw.nvalues as usize > f::COLS && has(f::ROWS) && has(f::COLS))
                        .then(|| (v[f::ROWS] as u32, v[f::COLS] as u32));
                    EventKind::DeviceOpen { device, shape }
                }
                // Decoded in `decode` (several events per hit).
                Role::AllocatorGeometry => return None,
                Role::OutOfMemory => {
                    use crate::plan::oom::field as f;
                    let len = (v[f::TYPE_LEN] as usize).min(8);
                    let chars = v[f::TYPE_CHARS].to_le_bytes();
                    let name = String::from_utf8_lossy(&chars[..len]).into_owned();
                    let Some(kind) = BufferType::from_name(&name) else {
                        self.undecodable += 1;
                        return None;
                    };
                    EventKind::OutOfMemory {
                        refusal: Refusal {
                            kind,
                            requested: v[f::REQUESTED],
                            banks: v[f::BANKS] as u32,
                            per_bank: v[f::PER_BANK],
                            bank_size: v[f::BANK_SIZE],
                            allocated_per_bank: v[f::ALLOCATED],
                            free_per_bank: v[f::FREE],
                            largest_free: v[f::LARGEST_FREE],
                        },
                    }
                }
                Role::BanksMap => EventKind::BankGeometry {
                    kind: BufferType::from_raw(v[0])?,
                    banks: v[1] as u32,
                    alignment: v[2] as u32,
                    granularity: v[3] as u32,
                },
            },
        };
        Some(Event {
            ts_ns: raw.ts_ns,
            pid: raw.pid,
            kind,
        })
    }
}
