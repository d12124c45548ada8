//! Raw probe records -> events: each probe kind (plan::kinds) says what its values mean; the
//! decoder adds which chips a device object stands for and when a process first shows up.
use tracer_common::{
    RawDevice, RawEvent, RawStack, RawTailEvent, MAX_VALUES, SLOT_PROCESS_EXIT, SLOT_WINDOW_VALUES,
};

use super::devices::{DeviceResolver, Vptrs};
use crate::{
    model::{BufferInfo, CircularBuffer, DeviceRef, Event, EventKind, Site},
    plan::{
        kinds::{self, Hit, Values},
        ProbePlan, Role,
    },
    runtime::python::resolve::Resolver,
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
    /// Circular buffers placed by a thread, waiting for the program that registers with their
    /// device next on that thread (tt-metal places a program's CBs, then registers it).
    pending_cbs: rustc_hash::FxHashMap<(u32, u32), Vec<(u64, CircularBuffer)>>,
    /// Programs whose CBs the ledger holds, per process and device object.
    placed: std::collections::HashSet<(u32, u64, u64)>,
    /// CBs no program registration claimed (placed again for a program already registered).
    pub unowned_cbs: u64,
    /// Events the hit being decoded makes before its own (a sharded buffer's footprint, the
    /// allocation's site).
    before: Vec<Event>,
    /// The Python frames each thread's probe read just before its hit, waiting for it.
    stacks: rustc_hash::FxHashMap<(u32, u32), Vec<[u64; 2]>>,
    /// Per process, what resolves its code objects (processes whose interpreter calibrated).
    resolvers: rustc_hash::FxHashMap<u32, Resolver>,
    /// Allocations that came with a stack none of whose frames could be resolved.
    pub unresolved_stacks: u64,
    /// Live buffers by process and object (the base of the allocation's window, see
    /// `plan::kinds::buffer::free_spec`): what a free that carries the object alone is.
    by_object: rustc_hash::FxHashMap<(u32, u64), (Owner, BufferInfo)>,
    /// Frees that carried their object alone, of buffers whose allocation never arrived (lost
    /// in a full ring buffer, or made before a fork): not in the ledger.
    pub unmatched_frees: u64,
    /// Frees that carried their object alone (the rest read every field).
    pub frees_by_object: u64,
    /// Per slot whose probe copies its values unnarrowed ([`SLOT_WINDOW_VALUES`]), each
    /// value's width.
    widths: Vec<Option<[u8; MAX_VALUES]>>,
}

/// The device a buffer known by object lives on.
#[derive(Clone, Debug)]
enum Owner {
    /// Its object pointer, as the allocation's probe read it (resolved at the free).
    Handle(u64),
    /// Read with the buffer from the process's memory.
    Known(DeviceRef),
}

impl Owner {
    fn handle(&self) -> u64 {
        match self {
            Owner::Handle(h) => *h,
            Owner::Known(d) => d.handle,
        }
    }
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
            pending_cbs: Default::default(),
            placed: Default::default(),
            unowned_cbs: 0,
            before: Vec::new(),
            stacks: Default::default(),
            resolvers: Default::default(),
            unresolved_stacks: 0,
            by_object: Default::default(),
            unmatched_frees: 0,
            frees_by_object: 0,
            widths: (0..plan.probes.len())
                .map(|i| {
                    let spec = kinds::slot_spec(&plan, i);
                    (spec.flags & SLOT_WINDOW_VALUES != 0)
                        .then(|| std::array::from_fn(|v| spec.fields[v].width))
                })
                .collect(),
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

    /// `pid`'s Python frames can be resolved with `resolver` from now on.
    pub fn python(&mut self, pid: u32, resolver: Resolver) {
        self.resolvers.insert(pid, resolver);
    }

    /// Whether `pid`'s interpreter is known.
    pub fn has_python(&self, pid: u32) -> bool {
        self.resolvers.contains_key(&pid)
    }

    /// The Python frames the probe of the next hit of thread `tid` read.
    pub fn stack(&mut self, raw: &RawStack) {
        let n = (raw.nframes as usize).min(raw.frames.len());
        self.stacks
            .insert((raw.pid, raw.tid), raw.frames[..n].to_vec());
    }

    /// The site of a stack the thread's probe read before this hit, if any.
    fn site_of(&mut self, pid: u32, tid: u32) -> Option<Site> {
        let frames = self.stacks.remove(&(pid, tid))?;
        let resolver = self.resolvers.get_mut(&pid)?;
        let site = resolver.site(&frames);
        if site.is_none() {
            self.unresolved_stacks += 1;
        }
        site
    }

    /// Marks `pid` as announced (the launcher announces its child itself).
    pub fn announce(&mut self, pid: u32) {
        self.seen.insert(pid);
    }

    /// The buffers `pid` held, by object, as its memory showed them: from here its frees may
    /// carry their object alone.
    pub fn know_objects(
        &mut self,
        pid: u32,
        buffers: impl IntoIterator<Item = (u64, DeviceRef, BufferInfo)>,
    ) {
        for (object, device, buffer) in buffers {
            self.by_object
                .insert((pid, object), (Owner::Known(device), buffer));
        }
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

    /// Decodes one raw event into ledger events: the event itself, preceded by a
    /// `ProcessStart` the first time a process shows up.
    pub fn decode(&mut self, raw: &RawEvent) -> Vec<Event> {
        self.decode_with_tail(raw, None)
    }

    /// A record of a slot that copies an array after its values.
    pub fn decode_tailed(&mut self, raw: &RawTailEvent) -> Vec<Event> {
        let n = (raw.tail_len as usize).min(raw.tail.len());
        self.decode_with_tail(&raw.event, Some((&raw.tail[..n], raw.tail_total)))
    }

    fn decode_with_tail(&mut self, raw: &RawEvent, tail: Option<(&[u8], u32)>) -> Vec<Event> {
        if let Some(n) = self.records.get_mut(raw.slot as usize) {
            *n += 1;
        }
        let mut narrowed;
        let raw = match self.widths.get(raw.slot as usize) {
            Some(Some(widths)) => {
                narrowed = *raw;
                for (v, w) in narrowed.values.iter_mut().zip(widths) {
                    *v = kinds::narrowed(*v, *w);
                }
                &narrowed
            }
            _ => raw,
        };
        if self.plan.role(raw.slot) == Some(Role::AllocatorGeometry) {
            return self.geometry(raw);
        }
        let Some(ev) = self.decode_one(raw, tail) else {
            return Vec::new();
        };
        let mut out = Vec::with_capacity(3);
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
        out.append(&mut self.before);
        out.push(ev);
        out
    }

    fn decode_one(&mut self, raw: &RawEvent, tail: Option<(&[u8], u32)>) -> Option<Event> {
        let event = |kind| Event {
            ts_ns: raw.ts_ns,
            pid: raw.pid,
            kind,
        };
        if raw.slot == SLOT_PROCESS_EXIT {
            self.resolvers.remove(&raw.pid);
            self.stacks.retain(|(p, _), _| *p != raw.pid);
            self.resolver.forget_process(raw.pid);
            self.geometry_gone(raw.pid);
            self.forget_cbs(raw.pid);
            self.by_object.retain(|(pid, _), _| *pid != raw.pid);
            // Only processes that used the runtime have a ledger worth closing.
            if !self.seen.contains(&raw.pid) {
                return None;
            }
            return Some(event(EventKind::ProcessExit { code: None }));
        }
        let role = self.plan.role(raw.slot)?;
        // A free that carries its object alone (the process's state said so, see tracer-
        // common's BY_OBJECT): the buffer is the one the object was allocated (or read) as.
        if role == Role::Free && raw.nvalues == 0 {
            self.frees_by_object += 1;
            let Some((owner, buffer)) = self.by_object.remove(&(raw.pid, raw.object)) else {
                self.unmatched_frees += 1;
                return None;
            };
            let device = match owner {
                Owner::Handle(h) => self.device(raw.pid, h),
                Owner::Known(d) => d,
            };
            return Some(event(EventKind::Free { device, buffer }));
        }
        let mut values = Values::new(&raw.values, raw.nvalues as usize, raw.valid);
        if let Some((bytes, total)) = tail {
            values = values.with_tail(bytes, total);
        }
        let kind = match kinds::decode(&self.plan, role, &values) {
            Hit::Buffer {
                alloc,
                device,
                buffer,
                sharded,
                shard_pages,
            } => {
                let site = self.site_of(raw.pid, raw.tid);
                if let Some(pages) = shard_pages {
                    self.before.push(event(EventKind::ShardFootprint {
                        device,
                        unique_id: buffer.unique_id,
                        pages_per_bank: pages,
                    }));
                } else if sharded {
                    self.sharded_allocations += 1;
                }
                if let (true, Some(site)) = (alloc, site) {
                    self.before.push(event(EventKind::AllocationSite {
                        device,
                        unique_id: buffer.unique_id,
                        site,
                    }));
                }
                if alloc {
                    self.by_object.insert(
                        (raw.pid, raw.object),
                        (Owner::Handle(device), buffer.clone()),
                    );
                } else {
                    self.by_object.remove(&(raw.pid, raw.object));
                }
                let device = self.device(raw.pid, device);
                if alloc {
                    EventKind::Alloc { device, buffer }
                } else {
                    EventKind::Free { device, buffer }
                }
            }
            Hit::Close { device: handle } => {
                // The close frees its buffers (the ledger drops them); their pointers go too.
                self.by_object
                    .retain(|(pid, _), (d, _)| *pid != raw.pid || d.handle() != handle);
                let device = self.device(raw.pid, handle);
                self.resolver.forget(raw.pid, handle);
                EventKind::DeviceClose { device }
            }
            Hit::Open { device, shape } => EventKind::DeviceOpen {
                device: self.device(raw.pid, device),
                shape,
            },
            Hit::Banks { kind, geometry } => EventKind::BankGeometry {
                kind,
                banks: geometry.banks,
                alignment: geometry.alignment,
                granularity: geometry.granularity,
            },
            Hit::Refused(refusal) => EventKind::OutOfMemory { refusal },
            Hit::Clash(clash) => EventKind::CircularBufferClash { clash },
            Hit::CircularBuffer { device, buffer } => {
                self.pending_cbs
                    .entry((raw.pid, raw.tid))
                    .or_default()
                    .push((device, buffer));
                return None;
            }
            Hit::Program {
                device,
                program,
                registered: true,
            } => {
                let pending = self.pending_cbs.get_mut(&(raw.pid, raw.tid))?;
                let (mine, rest): (Vec<_>, Vec<_>) =
                    pending.drain(..).partition(|(d, _)| *d == device);
                *pending = rest;
                if mine.is_empty() {
                    return None;
                }
                self.placed.insert((raw.pid, device, program));
                EventKind::CircularBuffers {
                    device: self.device(raw.pid, device),
                    program,
                    buffers: mine.into_iter().map(|(_, b)| b).collect(),
                }
            }
            Hit::Program {
                device,
                program,
                registered: false,
            } => {
                // Programs placed before the tracer saw them (or without CBs) hold nothing
                // the ledger counts.
                if !self.placed.remove(&(raw.pid, device, program)) {
                    return None;
                }
                EventKind::ProgramReleased {
                    device: self.device(raw.pid, device),
                    program,
                }
            }
            // Several events per hit: decoded in `geometry`.
            Hit::Geometry(_) => return None,
            Hit::Unreadable => {
                // Buffer events and refusals the ledger needed; the others are best effort.
                if matches!(role, Role::Alloc | Role::Free | Role::OutOfMemory) {
                    self.undecodable += 1;
                }
                return None;
            }
        };
        Some(event(kind))
    }

    /// Programs a read of `pid`'s memory found placed on device objects (the seed of a
    /// mid-run attach): their unregistration releases them, like one the probes saw placed.
    pub fn held_programs(&mut self, pid: u32, programs: impl IntoIterator<Item = (u64, u64)>) {
        for (device, program) in programs {
            self.placed.insert((pid, device, program));
        }
    }

    /// A process ended: CBs still waiting for their program never get one.
    fn forget_cbs(&mut self, pid: u32) {
        let mut unowned = 0;
        self.pending_cbs.retain(|(p, _), cbs| {
            if *p == pid {
                unowned += cbs.len() as u64;
            }
            *p != pid
        });
        self.unowned_cbs += unowned;
        self.placed.retain(|(p, _, _)| *p != pid);
    }

    /// The allocator geometry probe's values as `BankGeometry` events, for a process attached
    /// mid-run that has not reported yet (once per process).
    fn geometry(&mut self, raw: &RawEvent) -> Vec<Event> {
        if !self.geometry_wanted.contains(&raw.pid) {
            return Vec::new();
        }
        let values = Values::new(&raw.values, raw.nvalues as usize, raw.valid);
        let Hit::Geometry(found) = kinds::decode(&self.plan, Role::AllocatorGeometry, &values)
        else {
            return Vec::new();
        };
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
}
