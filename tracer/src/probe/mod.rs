//! The kernel side, from userspace: load the eBPF object, write the probe plan into it,
//! attach the uprobes and the process tracepoints, and stream raw events out of the ring
//! buffer.
pub mod decode;
pub mod devices;
pub mod loader_watch;
pub mod processes;
pub mod self_test;
pub mod task_layout;

use anyhow::{anyhow, bail, Context, Result};
use aya::{
    maps::{Array, MapData, PerCpuArray, RingBuf},
    programs::{
        uprobe::{UProbeAttachLocation, UProbeAttachPoint, UProbeScope},
        RawTracePoint, UProbe,
    },
    Ebpf,
};
use tokio::io::unix::AsyncFd;
use tracer_common::{
    PyStackSpec, RawDevice, RawEvent, RawStack, RawTailEvent, CFG_DEVICE_ID_OFF, CFG_MESH_ADD,
    CFG_MESH_HOP0, CFG_MESH_HOPS, CFG_TASK_FSBASE_OFF, CFG_TASK_TGID_OFF, CFG_WAKEUP_BYTES,
    MAX_SLOTS, MESH_MAX_HOPS, SLOT_DEVICE, SLOT_STACK,
};

use crate::plan::{ProbePlan, Role};

/// How often the collector drains the ring buffer when the kernel does not wake it.
const DRAIN_EVERY: std::time::Duration = std::time::Duration::from_millis(20);

/// Built from tracer-ebpf/ by `cargo xtask ebpf` and checked in, so tracer builds with stable
/// Rust alone; build.rs refuses an object older than its sources.
static OBJECT: &[u8] = aya::include_bytes_aligned!("../../../tracer-ebpf/built/tracer.bpf.o");

/// How the probes of this tracer process are loaded (set once, before any probe is).
#[derive(Clone, Copy, Debug, Default)]
pub struct Settings {
    /// The event ring buffer's size in bytes (a power of two, at least a page); default 4 MiB.
    pub ring_bytes: Option<u32>,
    /// The programs log why a read or a record failed (aya-log), printed on stderr.
    pub debug: bool,
    /// Allocations read the Python stack (`--python-stacks`).
    pub stacks: bool,
}

static SETTINGS: std::sync::OnceLock<Settings> = std::sync::OnceLock::new();

/// Sets how probes load; the first call wins (a session sets it once at its start).
pub fn configure(s: Settings) {
    set_python_stacks(s.stacks);
    let _ = SETTINGS.set(s);
}

/// Whether probe sets attached from now on read Python stacks at allocations
/// (`--python-stacks`; the benchmark turns it on and off to compare).
static STACKS: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

pub fn set_python_stacks(on: bool) {
    STACKS.store(on, std::sync::atomic::Ordering::Relaxed);
}

fn python_stacks() -> bool {
    STACKS.load(std::sync::atomic::Ordering::Relaxed)
}

fn settings() -> Settings {
    SETTINGS.get().copied().unwrap_or_default()
}

/// The ring buffer size the user asked for, checked: the kernel wants a power of two, a
/// multiple of the page size.
pub fn ring_bytes(spec: &str) -> Result<u32> {
    let s = spec.trim();
    let (num, unit) = match s.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => s.split_at(i),
        None => (s, ""),
    };
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kib" => 1 << 10,
        "m" | "mib" => 1 << 20,
        _ => bail!("--ring-buffer {spec:?}: expected bytes, KiB or MiB (e.g. 64KiB, 4MiB)"),
    };
    let bytes = num
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(mult))
        .with_context(|| format!("--ring-buffer {spec:?}: not a size"))?;
    let page = 4096u64;
    if !bytes.is_power_of_two() || bytes < page || bytes > 1 << 30 {
        bail!("--ring-buffer {spec:?}: the size must be a power of two from 4KiB to 1GiB");
    }
    Ok(bytes as u32)
}

/// Loads the object without kernel BTF relocations (the programs read kernel memory only at
/// offsets userspace found in the kernel's BTF, see [`task_layout`]) and without verifier
/// logs: relocating against vmlinux BTF and logging the verifier's work took most of the
/// attach latency.
fn load_object(profile_stop: u32, scope: Scope) -> Result<Ebpf, aya::EbpfError> {
    load_object_logged(profile_stop, scope, aya::VerifierLogLevel::DISABLE)
}

/// The read-only globals (the profile stop, the scope, the debug switch) are set here: the
/// verifier folds them, so each load walks and runs only the paths they leave.
fn load_object_logged(
    profile_stop: u32,
    scope: Scope,
    log: aya::VerifierLogLevel,
) -> Result<Ebpf, aya::EbpfError> {
    let mut loader = aya::EbpfLoader::new();
    let all = u32::from(scope == Scope::All);
    let debug = u32::from(settings().debug);
    loader
        .btf(None)
        .verifier_log_level(log)
        .override_global("PROFILE_STOP", &profile_stop, true)
        .override_global("ALL_PROCESSES", &all, true)
        .override_global("DEBUG_PROBES", &debug, true);
    if let Some(bytes) = settings().ring_bytes {
        loader.map_max_entries("EVENTS", bytes);
    }
    loader.map_max_entries(processes::MAP, processes::entries());
    loader.load(OBJECT)
}

/// The probe programs, in the order of `tracer_stack`'s tail-call array: any slot, and the
/// slots whose values all lie in their window (`SLOT_WINDOW_VALUES`, the hot path).
const PROBE_PROGRAMS: [&str; 2] = ["tracer_probe", "tracer_buffer"];

/// The program a slot's uprobe runs (without a Python stack).
fn probe_program(spec: &tracer_common::SlotSpec) -> &'static str {
    if spec.flags & tracer_common::SLOT_WINDOW_VALUES != 0 {
        PROBE_PROGRAMS[1]
    } else {
        PROBE_PROGRAMS[0]
    }
}

/// Loads `tracer_stack` and points its tail calls at the loaded probe programs.
fn load_stack_program(ebpf: &mut Ebpf) -> Result<()> {
    let mut fds = Vec::new();
    for name in PROBE_PROGRAMS {
        let probe: &mut UProbe = ebpf.program_mut(name).unwrap().try_into()?;
        fds.push(probe.fd()?.try_clone()?);
    }
    let stack: &mut UProbe = ebpf.program_mut("tracer_stack").unwrap().try_into()?;
    stack
        .load()
        .context("the kernel rejected the Python stack program")?;
    let mut next = aya::maps::ProgramArray::try_from(ebpf.map_mut("PROBES").unwrap())?;
    for (i, fd) in fds.iter().enumerate() {
        next.set(i as u32, fd, 0)?;
    }
    Ok(())
}

/// The last lines of the verifier's log for the probe program (loaded again with logging on,
/// which the normal load skips for speed).
fn verifier_log_tail(stop: u32, scope: Scope, program: &str) -> String {
    let logged =
        load_object_logged(stop, scope, aya::VerifierLogLevel::VERBOSE).map_err(|e| e.to_string());
    let failure = logged.and_then(|mut ebpf| {
        let probe: &mut UProbe = ebpf
            .program_mut(program)
            .ok_or(format!("no {program} program"))?
            .try_into()
            .map_err(|e: aya::programs::ProgramError| e.to_string())?;
        match probe.load() {
            Ok(()) => Err("(it passed when loaded again)".to_string()),
            Err(e) => Ok(e.to_string()),
        }
    });
    let text = failure.unwrap_or_else(|e| e);
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}

/// Prints the programs' log records (`--debug-probes`) on stderr.
struct ProbeLog;

impl log::Log for ProbeLog {
    fn enabled(&self, _: &log::Metadata) -> bool {
        true
    }

    fn log(&self, record: &log::Record) {
        eprintln!("tracer: probe: {}", record.args());
    }

    fn flush(&self) {}
}

/// Which processes the probes report.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    /// Only processes added with [`Probes::track`] and their descendants.
    Tracked,
    /// Every process that runs the probed code.
    All,
}

pub struct Probes {
    ebpf: Ebpf,
    ring: AsyncFd<RingBuf<MapData>>,
    /// `--debug-probes`: the programs' log records.
    log: Option<aya_log::EbpfLogger<ProbeLog>>,
    /// The allocator geometry probes (mid-run attach only), removed once not needed.
    geometry_links: Vec<(&'static str, aya::programs::uprobe::UProbeLinkId)>,
    /// The allocation and free probes (program, slot, file offset, link while attached), for
    /// [`Probes::set_hot_probes`].
    hot: Vec<HotProbe>,
    library: std::path::PathBuf,
    processes: processes::ProcessStates,
}

struct HotProbe {
    program: &'static str,
    slot: usize,
    file_offset: u64,
    link: Option<aya::programs::uprobe::UProbeLinkId>,
}

/// The raw tracepoints that follow the traced process tree (program, tracepoint).
const PROCESS_TRACEPOINTS: [(&str, &str); 2] = [
    ("tracer_fork", "sched_process_fork"),
    ("tracer_exit", "sched_process_exit"),
];

/// The eBPF object with its programs verified by the kernel but not attached: what can be
/// done before the runtime library is calibrated (the two run in parallel for `attach`).
pub struct Loaded {
    ebpf: Ebpf,
}

/// The parts of the probe program in the order it runs them, for [`Loaded::profiled`]: a
/// program loaded with part N returns after it (the verifier drops the rest).
pub const PROBE_PARTS: [&str; 6] = [
    "process filter",
    "registers + slot",
    "window copy",
    "device check",
    "ring buffer reserve",
    "values",
];

impl Loaded {
    /// The programs for the processes of `scope` (fixed at load: the verifier walks that
    /// scope's paths alone).
    pub fn new(scope: Scope) -> Result<Self> {
        Self::load(0, scope)
    }

    /// The benchmark's profile: the probe program stops after part `stop` (1-based, see
    /// [`PROBE_PARTS`]; 0 runs it whole), for tracked processes.
    pub fn profiled(stop: u32) -> Result<Self> {
        Self::load(stop, Scope::Tracked)
    }

    fn load(stop: u32, scope: Scope) -> Result<Self> {
        let t = std::time::Instant::now();
        let mut ebpf = load_object(stop, scope).map_err(|e| {
            anyhow!("cannot load the eBPF programs: {e}. Is this root, on a kernel with BPF? (`tracer doctor` checks)")
        })?;
        let timing = std::env::var_os("TRACER_TIMING").is_some();
        if timing {
            eprintln!(
                "tracer: timing: object loaded in {:.1} ms",
                t.elapsed().as_secs_f64() * 1e3
            );
        }
        for (prog, _) in PROCESS_TRACEPOINTS {
            let p: &mut RawTracePoint = ebpf.program_mut(prog).unwrap().try_into()?;
            p.load().with_context(|| format!("loading {prog}"))?;
        }
        for name in PROBE_PROGRAMS {
            let probe: &mut UProbe = ebpf.program_mut(name).unwrap().try_into()?;
            if let Err(e) = probe.load() {
                bail!(
                    "the kernel rejected the uprobe program {name} ({e}); the verifier said:\n{}",
                    verifier_log_tail(stop, scope, name)
                );
            }
        }
        if timing {
            let insns: Vec<_> = PROBE_PROGRAMS
                .iter()
                .map(|p| {
                    ebpf.program(p)
                        .and_then(|p| p.info().ok())
                        .and_then(|i| i.verified_instruction_count())
                })
                .collect();
            eprintln!(
                "tracer: timing: programs verified in {:.1} ms ({insns:?} instructions verified)",
                t.elapsed().as_secs_f64() * 1e3
            );
        }
        if python_stacks() {
            // Without it, allocations are traced as before, only without their sites.
            if let Err(e) = load_stack_program(&mut ebpf) {
                eprintln!("tracer: warning: no Python stacks: {e:#}");
                set_python_stacks(false);
            }
        }
        Ok(Self { ebpf })
    }

    /// Writes the plan into the maps and attaches. Probes detach when the result is dropped,
    /// and the kernel detaches them by itself if the tracer dies (they live only as long as
    /// our descriptors).
    pub fn attach(self, plan: &ProbePlan) -> Result<Probes> {
        let mut ebpf = self.ebpf;
        let stacks;
        if plan.probes.len() as u32 > MAX_SLOTS {
            bail!(
                "probe plan has {} probes; at most {MAX_SLOTS} fit",
                plan.probes.len()
            );
        }
        {
            let mut config: Array<_, u64> = Array::try_from(ebpf.map_mut("CONFIG").unwrap())?;
            let ring = settings().ring_bytes.map_or(4 << 20, u64::from);
            config.set(CFG_WAKEUP_BYTES, ring / 4, 0)?;
            let task = task_layout::TaskLayout::of_running_kernel()?;
            config.set(CFG_TASK_TGID_OFF, u64::from(task.tgid), 0)?;
            if let Some(fsbase) = task.fsbase {
                config.set(CFG_TASK_FSBASE_OFF, u64::from(fsbase), 0)?;
            }
            config.set(
                CFG_DEVICE_ID_OFF,
                plan.layout.device_id.offsets[0] as i64 as u64,
                0,
            )?;
            if let Some((hops, at)) = &plan.layout.mesh_devices {
                if hops.len() as u32 <= MESH_MAX_HOPS {
                    config.set(CFG_MESH_HOPS, hops.len() as u64, 0)?;
                    for (i, h) in hops.iter().enumerate() {
                        config.set(CFG_MESH_HOP0 + i as u32, *h as i64 as u64, 0)?;
                    }
                    config.set(CFG_MESH_ADD, *at as u64, 0)?;
                }
            }
            let mut slots: Array<_, tracer_common::SlotSpec> =
                Array::try_from(ebpf.map_mut("SLOTS").unwrap())?;
            for i in 0..plan.probes.len() {
                slots.set(i as u32, crate::plan::kinds::slot_spec(plan, i), 0)?;
            }
            let loaded = ebpf
                .program("tracer_stack")
                .and_then(|p| <&UProbe>::try_from(p).ok())
                .is_some_and(|p| p.fd().is_ok());
            stacks = python_stacks() && loaded && task.fsbase.is_some();
        }
        for (prog, tp) in PROCESS_TRACEPOINTS {
            let p: &mut RawTracePoint = ebpf.program_mut(prog).unwrap().try_into()?;
            p.attach(tp)
                .with_context(|| format!("cannot attach to the raw tracepoint {tp}"))?;
        }
        let mut geometry_links = Vec::new();
        let mut hot = Vec::new();
        {
            for (slot, p) in plan.probes.iter().enumerate() {
                let geometry = p.role == Role::AllocatorGeometry;
                if geometry && !plan.mid_run {
                    continue;
                }
                // A buffer's allocation is preceded by its thread's Python stack (for the
                // processes whose interpreter was calibrated, see `set_python_stack`).
                let program = if p.role == Role::Alloc && stacks {
                    "tracer_stack"
                } else {
                    probe_program(&crate::plan::kinds::slot_spec(plan, slot))
                };
                let probe: &mut UProbe = ebpf.program_mut(program).unwrap().try_into()?;
                let point = UProbeAttachPoint {
                    location: UProbeAttachLocation::AbsoluteOffset(p.file_offset),
                    cookie: Some(slot as u64),
                };
                let link = probe
                    .attach(point, &plan.library, UProbeScope::AllProcesses)
                    .with_context(|| {
                        format!(
                            "cannot attach a uprobe to {} in {}",
                            crate::runtime::calibrate::pretty(&p.symbol),
                            plan.library.display()
                        )
                    })?;
                if geometry {
                    geometry_links.push((program, link));
                } else if matches!(p.role, Role::Alloc | Role::Free) {
                    hot.push(HotProbe {
                        program,
                        slot,
                        file_offset: p.file_offset,
                        link: Some(link),
                    });
                }
            }
        }
        let log = if settings().debug {
            Some(
                aya_log::EbpfLogger::init_with_logger(&mut ebpf, ProbeLog)
                    .map_err(|e| anyhow!("--debug-probes: cannot read the programs' log: {e}"))?,
            )
        } else {
            None
        };
        let ring = RingBuf::try_from(ebpf.take_map("EVENTS").unwrap())?;
        // SAFETY: the ring buffer owns its descriptor and lives exactly as long as the AsyncFd.
        let ring = unsafe { AsyncFd::register(ring) }
            .map_err(|e| anyhow!("cannot poll the ring buffer: {e}"))?;
        Ok(Probes {
            processes: processes::ProcessStates::of(&ebpf)?,
            ebpf,
            ring,
            log,
            geometry_links,
            hot,
            library: plan.library.clone(),
        })
    }
}

impl Probes {
    /// Loads and attaches everything.
    pub fn attach(plan: &ProbePlan, scope: Scope) -> Result<Self> {
        Loaded::new(scope)?.attach(plan)
    }

    /// A reference program alone on the functions of `roles`, what the benchmark measures
    /// tracer against. Take the floor's records with [`drain_reference`].
    pub fn attach_reference(
        plan: &ProbePlan,
        reference: Reference,
        roles: &[Role],
    ) -> Result<Ebpf> {
        let mut ebpf = load_object(0, Scope::Tracked)?;
        let program: &mut UProbe = ebpf.program_mut(reference.program()).unwrap().try_into()?;
        program.load()?;
        for (i, p) in plan.probes.iter().enumerate() {
            if !roles.contains(&p.role) {
                continue;
            }
            let cookie = match reference {
                Reference::Empty => None,
                Reference::Floor => {
                    let word = crate::plan::kinds::slot_spec(plan, i).window.arg as u64;
                    Some(word << 1 | u64::from(p.role == Role::Alloc))
                }
            };
            let point = UProbeAttachPoint {
                location: UProbeAttachLocation::AbsoluteOffset(p.file_offset),
                cookie,
            };
            program
                .attach(point, &plan.library, UProbeScope::AllProcesses)
                .with_context(|| {
                    format!(
                        "cannot attach {} at {:#x} in {}",
                        reference.program(),
                        p.file_offset,
                        plan.library.display()
                    )
                })?;
        }
        Ok(ebpf)
    }

    /// Removes the allocator geometry probes (every process attached mid-run has reported):
    /// they trap on every allocation.
    pub fn detach_geometry(&mut self) {
        for (program, link) in self.geometry_links.drain(..) {
            let Some(Ok(probe)) = self.ebpf.program_mut(program).map(<&mut UProbe>::try_from)
            else {
                continue;
            };
            if let Err(e) = probe.detach(link) {
                eprintln!("tracer: warning: cannot remove the allocator geometry probe: {e}");
            }
        }
    }

    /// Removes (`false`) or puts back (`true`) the allocation and free probes, everything else
    /// staying as it is: the benchmark's in-process comparison, where one process runs its
    /// loop untraced, under a bare uprobe and under tracer in turn. Not for tracing: a buffer
    /// allocated while they are off is never seen.
    pub fn set_hot_probes(&mut self, on: bool) -> Result<()> {
        for h in &mut self.hot {
            let probe: &mut UProbe = self.ebpf.program_mut(h.program).unwrap().try_into()?;
            match (on, h.link.take()) {
                (false, Some(link)) => probe.detach(link)?,
                (true, None) => {
                    let point = UProbeAttachPoint {
                        location: UProbeAttachLocation::AbsoluteOffset(h.file_offset),
                        cookie: Some(h.slot as u64),
                    };
                    h.link = Some(
                        probe
                            .attach(point, &self.library, UProbeScope::AllProcesses)
                            .with_context(|| {
                                format!(
                                    "cannot attach slot {} again in {}",
                                    h.slot,
                                    self.library.display()
                                )
                            })?,
                    );
                }
                (_, link) => h.link = link,
            }
        }
        Ok(())
    }

    /// Starts reporting `pid` (and, from now on, its descendants); one already reported with
    /// frees by object ([`Self::track_by_object`]) stays so.
    pub fn track(&mut self, pid: u32) -> Result<()> {
        if self.processes.get(pid)? == tracer_common::BY_OBJECT {
            return Ok(());
        }
        self.processes
            .set(pid, tracer_common::TRACKED)
            .with_context(|| format!("cannot track PID {pid}"))
    }

    /// Reports `pid` (and its descendants) with frees that carry the buffer's object alone:
    /// the decoder knows every buffer it holds by object, because the probes see its every
    /// allocation (launched, or stopped before its runtime ran) or its buffers were read
    /// from its memory ([`super::Decoder::know_objects`]).
    pub fn track_by_object(&mut self, pid: u32) -> Result<()> {
        self.processes
            .set(pid, tracer_common::BY_OBJECT)
            .with_context(|| format!("cannot track PID {pid}"))
    }

    /// Under `--all`: report the exit of `pid`, a process tracer attached to before it hit a
    /// probe (the programs report exits only of processes that used the runtime).
    pub fn watch_exit(&mut self, pid: u32) -> Result<()> {
        if self.processes.get(pid)? == tracer_common::UNTRACKED {
            self.processes.set(pid, tracer_common::SEEN)?;
        }
        Ok(())
    }

    /// How the probes walk `pid`'s Python stack (its calibrated interpreter).
    pub fn set_python_stack(&mut self, pid: u32, spec: &PyStackSpec) -> Result<()> {
        let mut m: aya::maps::HashMap<_, u32, PyStackSpec> =
            aya::maps::HashMap::try_from(self.ebpf.map_mut("PYSTACKS").unwrap())?;
        m.insert(pid, *spec, 0)
            .with_context(|| format!("cannot set the Python stack layout of PID {pid}"))?;
        Ok(())
    }

    /// Whether allocations read Python stacks at all in this session.
    pub fn stacks_enabled() -> bool {
        python_stacks()
    }

    /// Events the kernel dropped because the ring buffer was full.
    pub fn lost(&self) -> Result<u64> {
        let m: PerCpuArray<_, u64> = PerCpuArray::try_from(self.ebpf.map("LOST").unwrap())?;
        Ok(m.get(&0, 0)?.iter().sum())
    }

    /// Runs and in-kernel time of `program` so far (counted while [`aya::sys::enable_stats`] is
    /// on).
    pub fn run_stats(&self, program: &str) -> RunStats {
        run_stats(&self.ebpf, program)
    }

    /// The same, summed over the probe programs (`tracer_probe`, `tracer_buffer`).
    pub fn probe_run_stats(&self) -> RunStats {
        let mut sum = None::<(u64, std::time::Duration)>;
        for p in PROBE_PROGRAMS {
            if let Some((runs, t)) = run_stats(&self.ebpf, p) {
                let (r0, t0) = sum.unwrap_or_default();
                sum = Some((r0 + runs, t0 + t));
            }
        }
        sum
    }

    /// Waits for events (woken when the ring buffer fills, or after `DRAIN_EVERY`) and hands
    /// each to `f`; returns after one batch.
    pub async fn next_batch(&mut self, mut f: impl FnMut(Raw)) -> Result<()> {
        if let Some(log) = &mut self.log {
            log.flush();
        }
        tokio::select! {
            guard = self.ring.readable_mut() => {
                let mut guard = guard?;
                let ring = guard.get_inner_mut();
                while let Some(item) = ring.next() {
                    f(parse(&item));
                }
                guard.clear_ready();
            }
            _ = tokio::time::sleep(DRAIN_EVERY) => self.drain(f),
        }
        Ok(())
    }

    /// Takes whatever is already in the ring buffer without waiting.
    pub fn drain(&mut self, mut f: impl FnMut(Raw)) {
        if let Some(log) = &mut self.log {
            log.flush();
        }
        let ring = self.ring.get_mut();
        while let Some(item) = ring.next() {
            f(parse(&item));
        }
    }
}

/// What comes out of the ring buffer.
pub enum Raw {
    Event(RawEvent),
    /// An event of a slot that copies an array after its values.
    Tailed(Box<RawTailEvent>),
    Device(Box<RawDevice>),
    /// The Python frames of the thread whose hit follows.
    Stack(Box<RawStack>),
}

/// Copies a plain-data record out of ring buffer bytes (shorter input leaves zeros).
fn read_pod<T: bytemuck::Pod>(bytes: &[u8]) -> T {
    let mut out = T::zeroed();
    let dst = bytemuck::bytes_of_mut(&mut out);
    let n = bytes.len().min(dst.len());
    dst[..n].copy_from_slice(&bytes[..n]);
    out
}

fn parse(bytes: &[u8]) -> Raw {
    let slot = u32::from_ne_bytes(bytes[..4].try_into().unwrap_or([0; 4]));
    if slot == SLOT_DEVICE && bytes.len() >= std::mem::size_of::<RawDevice>() {
        return Raw::Device(Box::new(read_pod::<RawDevice>(bytes)));
    }
    if slot == SLOT_STACK && bytes.len() >= std::mem::size_of::<RawStack>() {
        return Raw::Stack(Box::new(read_pod::<RawStack>(bytes)));
    }
    if bytes.len() >= std::mem::size_of::<RawTailEvent>() {
        return Raw::Tailed(Box::new(read_pod::<RawTailEvent>(bytes)));
    }
    Raw::Event(read_pod::<RawEvent>(bytes))
}

/// A program's runs and its accumulated in-kernel time (None: statistics unavailable).
pub type RunStats = Option<(u64, std::time::Duration)>;

/// Runs and in-kernel time of one of the loaded programs (see [`Probes::run_stats`]).
/// What the benchmark compares tracer's probe programs with.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Reference {
    /// The do-nothing program: the trap alone.
    Empty,
    /// The least a probe that reports buffers does: one 8-byte read of the allocation's
    /// buffer, one small record per hit.
    Floor,
}

impl Reference {
    pub fn program(self) -> &'static str {
        match self {
            Reference::Empty => "tracer_bare",
            Reference::Floor => "tracer_floor",
        }
    }
}

/// Takes every record a reference program left in its ring buffer; how many.
pub fn drain_reference(ebpf: &mut Ebpf) -> Result<u64> {
    let mut ring = RingBuf::try_from(
        ebpf.map_mut("EVENTS")
            .context("the eBPF object has no EVENTS ring buffer")?,
    )?;
    let mut n = 0;
    while ring.next().is_some() {
        n += 1;
    }
    Ok(n)
}

pub fn run_stats(ebpf: &Ebpf, program: &str) -> RunStats {
    let info = ebpf.program(program)?.info().ok()?;
    Some((info.run_count(), info.run_time()))
}

/// CLOCK_MONOTONIC, the clock of `bpf_ktime_get_ns` and so of every event.
pub fn monotonic_ns() -> u64 {
    let t = nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC).unwrap();
    t.tv_sec() as u64 * 1_000_000_000 + t.tv_nsec() as u64
}
