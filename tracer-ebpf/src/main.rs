//! eBPF side of tracer: generic, layout-agnostic probes.
//!
//! `probe` is attached once per probed function; the attach cookie is the slot number, and the
//! slot's [`SlotSpec`] (written by userspace from calibration) says which values to read.
#![no_std]
#![no_main]

use aya_ebpf::{
    helpers::{
        bpf_get_attach_cookie, bpf_get_current_pid_tgid, bpf_get_current_task, bpf_ktime_get_ns,
        bpf_probe_read_kernel,
    },
    macros::{map, raw_tracepoint, uprobe},
    maps::{Array, HashMap, LruHashMap, PerCpuArray, ProgramArray, RingBuf},
    programs::{ProbeContext, RawTracePointContext},
    EbpfContext,
};
use aya_log_ebpf::warn;
use tracer_common::{
    FieldPath, PyStackSpec, RawDevice, RawEvent, RawEventHead, RawStack, RawTailEvent, SlotSpec,
    ARG_WINDOW, BY_OBJECT, CFG_DEVICE_ID_OFF, CFG_LEN, CFG_MESH_ADD, CFG_MESH_HOP0, CFG_MESH_HOPS,
    CFG_TASK_FSBASE_OFF, CFG_TASK_TGID_OFF, CFG_WAKEUP_BYTES, MAX_MESH, MAX_PY_FRAMES, MAX_SLOTS,
    MAX_STEPS, MAX_VALUES, MESH_MAX_HOPS, PROCESSES_PER_ENTRY, PY_FRAME_BYTES, PY_TSTATE_STEPS,
    SEEN, SLOT_BY_OBJECT, SLOT_DEVICE, SLOT_FORGETS_DEVICE, SLOT_LIBRARY_CHANGE, SLOT_PROCESS_EXIT,
    SLOT_STACK, SLOT_WINDOW_VALUES, TAIL_BYTES, TRACKED, UNTRACKED, WINDOW_BYTES,
};

#[map]
static EVENTS: RingBuf = RingBuf::with_byte_size(RING_BYTES as u32, 0);

const RING_BYTES: u64 = 1 << 22;

#[map]
static SLOTS: Array<SlotSpec> = Array::with_max_entries(MAX_SLOTS, 0);

#[map]
static CONFIG: Array<u64> = Array::with_max_entries(CFG_LEN, 0);

/// One byte per process id (entry `tgid / 64`, byte `tgid % 64`): [`UNTRACKED`], [`BY_OBJECT`],
/// [`TRACKED`] or [`SEEN`]. An array, not a hash map: an array lookup is a few instructions
/// the verifier inlines, a hash lookup was ~40 ns of every hit. Userspace sizes it to the
/// kernel's pid_max and maps it into its own memory (BPF_F_MMAPABLE), so both sides write
/// single bytes and never overwrite each other's.
#[map]
static PROCESSES: Array<[u8; PROCESSES_PER_ENTRY]> = Array::with_max_entries(512, BPF_F_MMAPABLE);

const BPF_F_MMAPABLE: u32 = 1 << 10;

/// The byte of process `tgid` in [`PROCESSES`].
#[inline(always)]
fn process_state(tgid: u32) -> Option<*mut u8> {
    let entry = PROCESSES.get_ptr_mut(tgid / PROCESSES_PER_ENTRY as u32)?;
    Some(unsafe { (entry as *mut u8).add((tgid % PROCESSES_PER_ENTRY as u32) as usize) })
}

#[inline(always)]
fn state_of(tgid: u32) -> u8 {
    process_state(tgid).map_or(UNTRACKED, |p| unsafe { *p })
}

/// Device objects already described, per process: (tgid, pointer) -> 1. LRU: entries of
/// processes that ended are never removed one by one; an evicted device is described again.
#[map]
static DEVICES_SEEN: LruHashMap<DeviceKey, u8> = LruHashMap::with_max_entries(4096, 0);

#[repr(C)]
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct DeviceKey {
    tgid: u64,
    handle: u64,
}

/// This CPU's last device known to be described, and the [`FORGETS`] count it was checked
/// at: a program works on one device or mesh for long stretches, and this check is a few
/// instructions where the [`DEVICES_SEEN`] lookup was ~50 ns of every hit.
#[map]
static LAST_DEVICE: PerCpuArray<LastDevice> = PerCpuArray::with_max_entries(1, 0);

#[repr(C)]
#[derive(Clone, Copy)]
pub struct LastDevice {
    key: DeviceKey,
    forgets: u64,
}

/// Devices forgotten so far (closed): a CPU's [`LAST_DEVICE`] from before a close is checked
/// again, as the closed object's address may come back as a new device.
#[map]
static FORGETS: Array<u64> = Array::with_max_entries(1, 0);

/// Makes sure `handle` of `tgid` has been described (a [`RawDevice`] before its first event).
#[inline(always)]
fn ensure_described(tgid: u32, handle: u64, forgets_device: bool) {
    let key = DeviceKey {
        tgid: tgid as u64,
        handle,
    };
    let Some(forgets) = FORGETS.get_ptr_mut(0) else {
        return;
    };
    if forgets_device {
        let _ = DEVICES_SEEN.remove(&key);
        // Not atomic: two closes at once may count as one, and the count still changes, which
        // is all a cached device is checked against.
        unsafe { *forgets += 1 };
        return;
    }
    let now = unsafe { core::ptr::read_volatile(forgets) };
    let Some(last) = LAST_DEVICE.get_ptr_mut(0) else {
        return;
    };
    if unsafe { (*last).key == key && (*last).forgets == now } {
        return;
    }
    if unsafe { DEVICES_SEEN.get(&key) }.is_none() {
        if !describe_device(tgid, handle) {
            return;
        }
        let _ = DEVICES_SEEN.insert(&key, &1, 0);
    }
    unsafe {
        (*last).key = key;
        (*last).forgets = now;
    }
}

/// Per-CPU copy of the probed object's window (too big for the eBPF stack); 8 spare bytes
/// so any in-window offset can be read as a u64.
#[map]
static WINDOW: PerCpuArray<[u8; WINDOW_BYTES + 8]> = PerCpuArray::with_max_entries(1, 0);

/// How to walk the Python stack of each traced process (tgid -> spec), written by userspace
/// once it has calibrated the process's interpreter; no entry, no stack.
#[map]
static PYSTACKS: HashMap<u32, PyStackSpec> = HashMap::with_max_entries(16384, 0);

/// Per-CPU copy of one Python frame's first bytes; 8 spare bytes as for `WINDOW`.
#[map]
static PYFRAME: PerCpuArray<[u8; PY_FRAME_BYTES + 8]> = PerCpuArray::with_max_entries(1, 0);

/// Events dropped because the ring buffer was full, per CPU.
#[map]
static LOST: PerCpuArray<u64> = PerCpuArray::with_max_entries(1, 0);

/// The parts of `tracer_probe`, in order, for [`PROFILE_STOP`]: the process filter, the
/// register copy and the slot, the window copy, the device check, the ring buffer
/// reservation, the values.
const PART_FILTER: u32 = 1;
const PART_REGISTERS: u32 = 2;
const PART_WINDOW: u32 = 3;
const PART_DEVICE: u32 = 4;
const PART_RESERVE: u32 = 5;
const PART_VALUES: u32 = 6;

const BPF_RB_NO_WAKEUP: u64 = 1;

/// The probed call's registers that a path can start from (`FieldPath::arg` names their word
/// in `struct pt_regs`: argument registers, the stack pointer, callee-saved registers), loaded
/// straight from the program's context: the kernel allows context loads only at constant
/// offsets, so each word is loaded once up front (copying the struct with a helper instead
/// cost ~100 ns per hit), and picked by one indexed load: a branch per register multiplied
/// the paths the verifier walks through every field's read.
#[derive(Clone, Copy)]
struct Regs {
    words: [u64; REGS_WORDS],
}

/// `struct pt_regs` words 0 (r15) to 19 (rsp).
const REGS_WORDS: usize = 20;

impl Regs {
    #[inline(always)]
    fn of(ctx: &ProbeContext) -> Self {
        let r = ctx.as_ptr() as *const u64;
        let at = |w: usize| unsafe { core::ptr::read_volatile(r.add(w)) };
        Self {
            words: [
                at(0),
                at(1),
                at(2),
                at(3),
                at(4),
                at(5),
                at(6),
                at(7),
                at(8),
                at(9),
                at(10),
                at(11),
                at(12),
                at(13),
                at(14),
                at(15),
                at(16),
                at(17),
                at(18),
                at(19),
            ],
        }
    }

    #[inline(always)]
    fn word(self, w: u8) -> u64 {
        let i = w as usize;
        if i < REGS_WORDS {
            self.words[i]
        } else {
            0
        }
    }
}

/// Records this CPU submitted since it last looked how full the ring buffer is.
#[map]
static SINCE_QUERY: PerCpuArray<u64> = PerCpuArray::with_max_entries(1, 0);

/// Records a CPU submits between two looks at the ring buffer's fill: a few KiB, against a
/// wake-up threshold of a quarter of the ring (at least 16 KiB).
const QUERY_EVERY: u64 = 16;

/// Waking the collector for every event costs a context switch per traced call; it drains
/// on a short timer instead, and is woken only when the ring buffer fills up. How full it
/// is, a helper call, is looked at every [`QUERY_EVERY`] records per CPU.
#[inline(always)]
fn wakeup_flags() -> u64 {
    const BPF_RB_FORCE_WAKEUP: u64 = 2;
    const BPF_RB_AVAIL_DATA: u64 = 0;
    let Some(since) = SINCE_QUERY.get_ptr_mut(0) else {
        return BPF_RB_NO_WAKEUP;
    };
    unsafe {
        *since += 1;
        if *since < QUERY_EVERY {
            return BPF_RB_NO_WAKEUP;
        }
        *since = 0;
    }
    let mut threshold = config(CFG_WAKEUP_BYTES);
    if threshold == 0 {
        threshold = RING_BYTES / 4;
    }
    if EVENTS.query(BPF_RB_AVAIL_DATA) > threshold {
        BPF_RB_FORCE_WAKEUP
    } else {
        BPF_RB_NO_WAKEUP
    }
}

#[inline(always)]
fn config(index: u32) -> u64 {
    CONFIG.get(index).copied().unwrap_or(0)
}

#[inline(always)]
fn bump(map: &PerCpuArray<u64>, index: u32) {
    if let Some(p) = map.get_ptr_mut(index) {
        unsafe { *p += 1 };
    }
}

/// Traced in every mode, its children too.
#[inline(always)]
fn tracked(state: u8) -> bool {
    state == TRACKED || state == BY_OBJECT
}

/// The state of a process whose hits are reported, `None` for the others.
#[inline(always)]
fn traced_state(tgid: u32) -> Option<u8> {
    let state = process_state(tgid)?;
    let now = unsafe { *state };
    if !all_processes() {
        return tracked(now).then_some(now);
    }
    // Under --all, remember who used the runtime: only their exits are reported.
    if now == UNTRACKED {
        unsafe { *state = SEEN };
        return Some(SEEN);
    }
    Some(now)
}

/// Reads `width` bytes (1..=8, little-endian) at `addr`. One helper call with a bounded
/// size instead of a branch per width: branches here multiply the paths the kernel verifier
/// walks, and verification was most of tracer's attach latency.
#[inline(always)]
fn read_user(addr: u64, width: u8) -> Option<u64> {
    let mut size = width as u32;
    if size == 0 || size > 8 {
        size = 8;
    }
    let mut out: u64 = 0;
    let rc = unsafe {
        aya_ebpf::helpers::generated::bpf_probe_read_user(
            &mut out as *mut u64 as *mut aya_ebpf::cty::c_void,
            size,
            addr as *const aya_ebpf::cty::c_void,
        )
    };
    if rc == 0 {
        Some(out)
    } else {
        None
    }
}

/// Like [`read_user`] but without a branch on failure (the helper zeroes the destination
/// when the read faults): in `describe_device`'s unrolled loop, a branch per read multiplied
/// the verifier's paths (100k of 136k verified instructions).
#[inline(always)]
fn read_or_zero(addr: u64, width: u8) -> u64 {
    let mut size = width as u32;
    if size == 0 || size > 8 {
        size = 8;
    }
    let mut out: u64 = 0;
    unsafe {
        aya_ebpf::helpers::generated::bpf_probe_read_user(
            &mut out as *mut u64 as *mut aya_ebpf::cty::c_void,
            size,
            addr as *const aya_ebpf::cty::c_void,
        )
    };
    out
}

#[inline(always)]
fn mask(v: u64, width: u8) -> u64 {
    match width {
        1 => v & 0xff,
        2 => v & 0xffff,
        4 => v & 0xffff_ffff,
        _ => v,
    }
}

/// The benchmark's profile of `tracer_probe` (`cargo xtask bench --profile-probe`): the part
/// after which the program returns, 0 for none (what tracer always loads). A read-only global
/// set at load time, so the verifier removes the parts after the stop and each variant costs
/// exactly its parts, with no branch left on the path that tracer runs.
#[unsafe(no_mangle)]
static PROFILE_STOP: u32 = 0;

/// Set at load: every process that runs the probed code is traced (`attach --all`), not only
/// the tracked ones. Read-only like [`PROFILE_STOP`]: the verifier walks one scope's paths,
/// and a hit reads no configuration to learn it.
#[unsafe(no_mangle)]
static ALL_PROCESSES: u32 = 0;

/// Set at load (`--debug-probes`): the programs log why a read or a record failed (aya-log).
/// Off, the verifier drops every log call with the code that builds it.
#[unsafe(no_mangle)]
static DEBUG_PROBES: u32 = 0;

#[inline(always)]
fn all_processes() -> bool {
    unsafe { core::ptr::read_volatile(&ALL_PROCESSES) != 0 }
}

/// [`PROFILE_STOP`], loaded once per program run: each later check is a compare of a register
/// the verifier knows, instead of a load of the global.
#[derive(Clone, Copy)]
struct Profile(u32);

impl Profile {
    #[inline(always)]
    fn load() -> Self {
        Self(unsafe { core::ptr::read_volatile(&PROFILE_STOP) })
    }

    #[inline(always)]
    fn stops_after(self, part: u32) -> bool {
        self.0 != 0 && self.0 <= part
    }
}

/// How both probe programs start: the process filter, then the hit's slot. `None`: nothing
/// to report (an untraced process, no slot, or a profile stopped after the filter).
#[inline(always)]
fn hit_of(ctx: &ProbeContext, profile: Profile) -> Option<(u64, u8, u32, &'static SlotSpec)> {
    let pid_tgid = bpf_get_current_pid_tgid();
    let state = traced_state((pid_tgid >> 32) as u32)?;
    if profile.stops_after(PART_FILTER) {
        return None;
    }
    let slot = unsafe { bpf_get_attach_cookie(ctx.as_ptr()) } as u32;
    let spec = SLOTS.get(slot)?;
    Some((pid_tgid, state, slot, spec))
}

#[uprobe]
pub fn tracer_probe(ctx: ProbeContext) -> u32 {
    let profile = Profile::load();
    let Some((pid_tgid, state, slot, spec)) = hit_of(&ctx, profile) else {
        return 0;
    };
    let tgid = (pid_tgid >> 32) as u32;
    let regs = Regs::of(&ctx);
    if profile.stops_after(PART_REGISTERS) {
        return 0;
    }
    if state == BY_OBJECT && spec.flags & SLOT_BY_OBJECT != 0 {
        let object = read_path(regs, None, &spec.window).unwrap_or(0);
        if profile.stops_after(PART_WINDOW) {
            return 0;
        }
        if emit_head(object, slot, pid_tgid, profile).is_none() {
            return lost(&ctx, slot, tgid);
        }
        return 0;
    }
    let (object, window) = copy_window(regs, spec);
    if profile.stops_after(PART_WINDOW) {
        return 0;
    }
    if spec.device_field != 0 {
        let handle = read_path(regs, window, &spec.fields[0]).unwrap_or(0);
        if handle != 0 {
            ensure_described(tgid, handle, spec.flags & SLOT_FORGETS_DEVICE != 0);
        }
    }
    if profile.stops_after(PART_DEVICE) {
        return 0;
    }
    let valid = if spec.tail != 0 {
        emit_with_tail(regs, object, window, spec, slot, pid_tgid)
    } else if spec.nfields == 0 {
        emit_head(object, slot, pid_tgid, profile)
    } else {
        let Some(mut entry) = EVENTS.reserve::<RawEvent>(0) else {
            return lost(&ctx, slot, tgid);
        };
        if profile.stops_after(PART_RESERVE) {
            entry.discard(BPF_RB_NO_WAKEUP);
            return 0;
        }
        let valid = fill(
            entry.as_mut_ptr(),
            regs,
            object,
            window,
            spec,
            slot,
            pid_tgid,
        );
        if profile.stops_after(PART_VALUES) {
            entry.discard(BPF_RB_NO_WAKEUP);
            return 0;
        }
        entry.submit(wakeup_flags());
        Some(valid)
    };
    let Some(valid) = valid else {
        return lost(&ctx, slot, tgid);
    };
    let wanted = (1u32 << spec.nfields.min(MAX_VALUES as u32)) - 1;
    if u32::from(valid) != wanted && debugging() {
        warn!(
            &ctx,
            "slot {}, pid {}: values {:x} of {} unreadable (a load on the calibrated path faulted)",
            slot,
            tgid,
            wanted & !u32::from(valid),
            spec.nfields
        );
    }
    0
}

/// Attached instead of `tracer_probe` to the slots whose values all lie in their window
/// ([`SLOT_WINDOW_VALUES`]: a buffer's allocation and free, the hot path). A program of its
/// own, so the verifier walks it apart and its stack holds no register copy.
#[uprobe]
pub fn tracer_buffer(ctx: ProbeContext) -> u32 {
    let profile = Profile::load();
    let Some((pid_tgid, state, slot, spec)) = hit_of(&ctx, profile) else {
        return 0;
    };
    window_values(&ctx, spec, slot, state, pid_tgid, profile)
}

/// The hot path: a buffer's allocation or free. It needs one register (the window's base),
/// loads each value at its window offset with no branch between (userspace narrows them, see
/// [`SLOT_WINDOW_VALUES`]), and never copies the registers or walks a path per value. It logs
/// nothing under `--debug-probes`: the log's code, shared with `tracer_probe`, would be a
/// subprogram whose stack adds to the caller's past the kernel's limit. A full ring buffer
/// is counted all the same, and an unreadable window arrives as values marked unread.
#[inline(always)]
fn window_values(
    ctx: &ProbeContext,
    spec: &SlotSpec,
    slot: u32,
    state: u8,
    pid_tgid: u64,
    profile: Profile,
) -> u32 {
    let tgid = (pid_tgid >> 32) as u32;
    let base = register(ctx, spec.window.arg);
    if profile.stops_after(PART_REGISTERS) {
        return 0;
    }
    let object = follow(base, &spec.window).unwrap_or(0);
    if state == BY_OBJECT && spec.flags & SLOT_BY_OBJECT != 0 {
        if profile.stops_after(PART_WINDOW) {
            return 0;
        }
        if emit_head(object, slot, pid_tgid, profile).is_none() {
            bump(&LOST, 0);
        }
        return 0;
    }
    let Some(scratch) = WINDOW.get_ptr_mut(0) else {
        return 0;
    };
    let copied = copy_into(scratch as *mut u8, object, spec);
    let scratch = scratch as *const u8;
    if profile.stops_after(PART_WINDOW) {
        return 0;
    }
    // The word holding the value, shifted down to it: one aligned load (an unaligned one is
    // eight byte loads in BPF). Userspace only sets the flag when no value straddles a word.
    let at = |i: usize| -> u64 {
        let off = (spec.fields[i].offsets[0] as u32 as usize) & (WINDOW_BYTES - 1);
        let word = unsafe { *(scratch.add(off & !7) as *const u64) };
        word >> ((off & 7) * 8)
    };
    if copied && spec.device_field != 0 {
        let handle = at(0);
        if handle != 0 {
            ensure_described(tgid, handle, spec.flags & SLOT_FORGETS_DEVICE != 0);
        }
    }
    if profile.stops_after(PART_DEVICE) {
        return 0;
    }
    let Some(mut entry) = EVENTS.reserve::<RawEvent>(0) else {
        bump(&LOST, 0);
        return 0;
    };
    if profile.stops_after(PART_RESERVE) {
        entry.discard(BPF_RB_NO_WAKEUP);
        return 0;
    }
    let ev = entry.as_mut_ptr();
    let n = spec.nfields;
    // Every value slot is written, with no branch: past `n`, and when the window could not be
    // read (`valid` 0), userspace ignores them.
    for i in 0..MAX_VALUES {
        unsafe { (*ev).values[i] = at(i) };
    }
    unsafe {
        (*ev).slot = slot;
        (*ev).pid = tgid;
        (*ev).tid = pid_tgid as u32;
        (*ev).ts_ns = bpf_ktime_get_ns();
        (*ev).object = object;
        (*ev).nvalues = n as u16;
        (*ev).valid = if copied {
            ((1u32 << n.min(MAX_VALUES as u32)) - 1) as u16
        } else {
            0
        };
    }
    if profile.stops_after(PART_VALUES) {
        entry.discard(BPF_RB_NO_WAKEUP);
        return 0;
    }
    entry.submit(wakeup_flags());
    0
}

/// Word `w` of the probed call's `struct pt_regs`: one load at a constant offset (the only
/// kind of context load the kernel allows), picked by a branch per word; every branch leaves
/// the same kind of value, so the verifier walks the rest once.
#[inline(always)]
fn register(ctx: &ProbeContext, w: u8) -> u64 {
    let r = ctx.as_ptr() as *const u64;
    let at = |i: usize| unsafe { core::ptr::read_volatile(r.add(i)) };
    match w {
        0 => at(0),
        1 => at(1),
        2 => at(2),
        3 => at(3),
        4 => at(4),
        5 => at(5),
        6 => at(6),
        7 => at(7),
        8 => at(8),
        9 => at(9),
        10 => at(10),
        11 => at(11),
        12 => at(12),
        13 => at(13),
        14 => at(14),
        15 => at(15),
        16 => at(16),
        17 => at(17),
        18 => at(18),
        19 => at(19),
        _ => 0,
    }
}

/// The loads of `path` after its register (`base`): the window's base object.
#[inline(always)]
fn follow(base: u64, path: &FieldPath) -> Option<u64> {
    let mut v = base;
    for s in 0..MAX_STEPS {
        if s as u8 >= path.steps {
            break;
        }
        let width = if s as u8 + 1 == path.steps {
            path.width
        } else {
            8
        };
        v = read_user(v.wrapping_add(path.offsets[s] as i64 as u64), width)?;
    }
    Some(if path.steps == 0 {
        mask(v, path.width)
    } else {
        v
    })
}

#[inline(always)]
fn lost(ctx: &ProbeContext, slot: u32, tgid: u32) -> u32 {
    bump(&LOST, 0);
    if debugging() {
        warn!(
            ctx,
            "slot {}, pid {}: ring buffer full, event lost", slot, tgid
        );
    }
    0
}

/// Writes one hit's values into a reserved record; returns which could be read.
#[inline(always)]
fn fill(
    ev: *mut RawEvent,
    regs: Regs,
    object: u64,
    window: Option<*const u8>,
    spec: &SlotSpec,
    slot: u32,
    pid_tgid: u64,
) -> u16 {
    let mut valid: u16 = 0;
    // Every value slot is written exactly once (no memset: the verifier dislikes its loop).
    for i in 0..MAX_VALUES {
        let mut out = 0u64;
        if (i as u32) < spec.nfields {
            if let Some(v) = read_path(regs, window, &spec.fields[i]) {
                out = v;
                valid |= 1 << i;
            }
        }
        unsafe { (*ev).values[i] = out };
    }
    unsafe {
        (*ev).slot = slot;
        (*ev).pid = (pid_tgid >> 32) as u32;
        (*ev).tid = pid_tgid as u32;
        (*ev).ts_ns = bpf_ktime_get_ns();
        (*ev).object = object;
        (*ev).nvalues = spec.nfields as u16;
        (*ev).valid = valid;
    }
    valid
}

/// A hit that reads no values: its object alone, in a record a third the size of a full one.
#[inline(always)]
fn emit_head(object: u64, slot: u32, pid_tgid: u64, profile: Profile) -> Option<u16> {
    let mut entry = EVENTS.reserve::<RawEventHead>(0)?;
    if profile.stops_after(PART_RESERVE) {
        entry.discard(BPF_RB_NO_WAKEUP);
        return Some(0);
    }
    let ev = entry.as_mut_ptr();
    unsafe {
        (*ev).slot = slot;
        (*ev).pid = (pid_tgid >> 32) as u32;
        (*ev).tid = pid_tgid as u32;
        (*ev).nvalues = 0;
        (*ev).valid = 0;
        (*ev).ts_ns = bpf_ktime_get_ns();
        (*ev).object = object;
    }
    if profile.stops_after(PART_VALUES) {
        entry.discard(BPF_RB_NO_WAKEUP);
        return Some(0);
    }
    entry.submit(wakeup_flags());
    Some(0)
}

/// A hit of a slot with a tail: the values, then the array between the two tail paths
/// (cut at [`TAIL_BYTES`]). Not on the allocation hot path: only slots that ask for it.
#[inline(always)]
fn emit_with_tail(
    regs: Regs,
    object: u64,
    window: Option<*const u8>,
    spec: &SlotSpec,
    slot: u32,
    pid_tgid: u64,
) -> Option<u16> {
    let mut entry = EVENTS.reserve::<RawTailEvent>(0)?;
    let ev = entry.as_mut_ptr();
    let valid = fill(
        unsafe { core::ptr::addr_of_mut!((*ev).event) },
        regs,
        object,
        window,
        spec,
        slot,
        pid_tgid,
    );
    let begin = read_path(regs, None, &spec.tail_begin).unwrap_or(0);
    let end = read_path(regs, None, &spec.tail_end).unwrap_or(0);
    let total = if end > begin { end - begin } else { 0 };
    let mut len = total;
    if len > TAIL_BYTES as u64 {
        len = TAIL_BYTES as u64;
    }
    let mut copied = 0u32;
    if len > 0 {
        let rc = unsafe {
            aya_ebpf::helpers::generated::bpf_probe_read_user(
                (*ev).tail.as_mut_ptr() as *mut core::ffi::c_void,
                len as u32,
                begin as *const core::ffi::c_void,
            )
        };
        if rc == 0 {
            copied = len as u32;
        }
    }
    unsafe {
        (*ev).tail_len = copied;
        (*ev).tail_total = if copied == 0 {
            0
        } else {
            total.min(u32::MAX as u64) as u32
        };
    }
    entry.submit(wakeup_flags());
    Some(valid)
}

/// `tracer_probe` (0) and `tracer_buffer` (1), for `tracer_stack` to hand over to (set by
/// userspace at load).
#[map]
static PROBES: ProgramArray = ProgramArray::with_max_entries(2, 0);

/// Attached instead of `tracer_probe` where a hit is to carry the caller's Python stack (a
/// buffer's allocation): emits the stack, then becomes the slot's probe program (a tail call:
/// the probe's own work, and its stack budget, are untouched; the stack precedes the event).
#[uprobe]
pub fn tracer_stack(ctx: ProbeContext) -> u32 {
    let pid_tgid = bpf_get_current_pid_tgid();
    let tgid = (pid_tgid >> 32) as u32;
    if traced_state(tgid).is_some() {
        emit_stack(tgid, pid_tgid);
    }
    let slot = unsafe { bpf_get_attach_cookie(ctx.as_ptr()) } as u32;
    let next = match SLOTS.get(slot) {
        Some(spec) if spec.flags & SLOT_WINDOW_VALUES != 0 => 1,
        _ => 0,
    };
    unsafe { PROBES.tail_call(&ctx, next) };
    // Only when the tail call failed (no program set): nothing else to do.
    0
}

/// Emits a [`RawStack`] of the calling thread's Python frames, walked as the process's
/// [`PyStackSpec`] says. Any load that faults, a thread state that belongs to another thread
/// (the one holding the interpreter, not the caller), or no frame at all: no record (no stack
/// is better than a wrong one).
#[inline(always)]
fn emit_stack(tgid: u32, pid_tgid: u64) {
    let Some(spec) = (unsafe { PYSTACKS.get(&tgid) }) else {
        return;
    };
    let task = unsafe { bpf_get_current_task() };
    let at = task.wrapping_add(config(CFG_TASK_FSBASE_OFF)) as *const u64;
    let fsbase = unsafe { bpf_probe_read_kernel(at) }.unwrap_or(0);
    if fsbase == 0 {
        return;
    }
    let mut v = if spec.tstate_base == 0 {
        fsbase
    } else {
        spec.tstate_base
    };
    for i in 0..PY_TSTATE_STEPS {
        if i as u32 >= spec.tstate_steps {
            break;
        }
        let Some(next) = read_user(v.wrapping_add(spec.tstate_offsets[i] as u64), 8) else {
            return;
        };
        v = next;
    }
    let tstate = v;
    if tstate == 0 {
        return;
    }
    if spec.thread_id_off >= 0
        && read_user(tstate.wrapping_add(spec.thread_id_off as u64), 8) != Some(fsbase)
    {
        return;
    }
    for i in 0..PY_TSTATE_STEPS {
        if i as u32 >= spec.frame_steps {
            break;
        }
        let Some(next) = read_user(v.wrapping_add(spec.frame_offsets[i] as i64 as u64), 8) else {
            return;
        };
        v = next;
    }
    let mut len = spec.frame_len;
    if len == 0 || v == 0 {
        return;
    }
    if len > PY_FRAME_BYTES as u32 {
        len = PY_FRAME_BYTES as u32;
    }
    let Some(scratch) = PYFRAME.get_ptr_mut(0) else {
        return;
    };
    let scratch = scratch as *mut u8;
    let Some(mut entry) = EVENTS.reserve::<RawStack>(0) else {
        bump(&LOST, 0);
        return;
    };
    let rec = entry.as_mut_ptr();
    let field = |off: u32| unsafe {
        core::ptr::read_unaligned(scratch.add((off as usize) & (PY_FRAME_BYTES - 1)) as *const u64)
    };
    let mut frame = v;
    let mut n = 0u32;
    for i in 0..MAX_PY_FRAMES {
        if frame == 0 {
            break;
        }
        let rc = unsafe {
            aya_ebpf::helpers::generated::bpf_probe_read_user(
                scratch as *mut core::ffi::c_void,
                len,
                frame as *const core::ffi::c_void,
            )
        };
        if rc != 0 {
            break;
        }
        let code = field(spec.code_off);
        let instr = mask(field(spec.instr_off), spec.instr_width as u8);
        unsafe { (*rec).frames[i] = [code, instr] };
        n += 1;
        frame = field(spec.back_off);
    }
    if n == 0 {
        entry.discard(0);
        return;
    }
    unsafe {
        (*rec).slot = SLOT_STACK;
        (*rec).pid = tgid;
        (*rec).tid = pid_tgid as u32;
        (*rec).nframes = n;
    }
    entry.submit(wakeup_flags());
}

/// `--debug-probes`: the programs say why a read or a record failed.
#[inline(always)]
fn debugging() -> bool {
    unsafe { core::ptr::read_volatile(&DEBUG_PROBES) != 0 }
}

/// The slot's object (its window's base: the `Buffer*` argument, or the object it points
/// to) and a copy of its window of user memory in this CPU's scratch, in one read. A slot
/// with an object but no window (a free matched by its object) reads at most the pointer.
#[inline(always)]
fn copy_window(regs: Regs, spec: &SlotSpec) -> (u64, Option<*const u8>) {
    let object = read_path(regs, None, &spec.window).unwrap_or(0);
    (object, read_window(object, spec))
}

/// Copies the slot's window of `object` into this CPU's scratch.
#[inline(always)]
fn read_window(object: u64, spec: &SlotSpec) -> Option<*const u8> {
    let scratch = WINDOW.get_ptr_mut(0)?;
    copy_into(scratch as *mut u8, object, spec).then_some(scratch as *const u8)
}

/// Copies the slot's window of `object` into `scratch`; false if it could not be read.
#[inline(always)]
fn copy_into(scratch: *mut u8, object: u64, spec: &SlotSpec) -> bool {
    let len = spec.window_len as usize;
    if len == 0 || len > WINDOW_BYTES || object == 0 {
        return false;
    }
    let start = object.wrapping_add(spec.window_off as i64 as u64);
    let rc = unsafe {
        aya_ebpf::helpers::generated::bpf_probe_read_user(
            scratch as *mut core::ffi::c_void,
            len as u32,
            start as *const core::ffi::c_void,
        )
    };
    rc == 0
}

/// Follows one [`FieldPath`] from the saved registers (or from the window copy).
#[inline(always)]
fn read_path(regs: Regs, window: Option<*const u8>, f: &FieldPath) -> Option<u64> {
    let mut first = 0;
    let mut v: u64 = if f.arg == ARG_WINDOW {
        let at = (f.offsets[0] as u32 as usize) & (WINDOW_BYTES - 1);
        let raw = unsafe { core::ptr::read_unaligned(window?.add(at) as *const u64) };
        first = 1;
        if f.steps > 1 {
            raw
        } else {
            mask(raw, f.width)
        }
    } else {
        regs.word(f.arg)
    };
    for s in first..MAX_STEPS {
        if s as u8 >= f.steps {
            break;
        }
        let width = if s as u8 + 1 == f.steps { f.width } else { 8 };
        v = read_user(v.wrapping_add(f.offsets[s] as i64 as u64), width)?;
    }
    Some(if f.steps == 0 { mask(v, f.width) } else { v })
}

/// Emits a [`RawDevice`]: the object's vtable pointer and id field, and the device pointers
/// (with their vtable pointers and ids) found along the calibrated mesh path. False when the
/// ring buffer had no room (the next hit on this device tries again). Inlined: as a
/// subprogram (both probe programs use it) its stack would add to theirs past the limit.
#[inline(always)]
fn describe_device(tgid: u32, handle: u64) -> bool {
    let Some(mut entry) = EVENTS.reserve::<RawDevice>(0) else {
        bump(&LOST, 0);
        return false;
    };
    let d = entry.as_mut_ptr();
    let id_off = config(CFG_DEVICE_ID_OFF);
    let mut p = handle;
    let hops = config(CFG_MESH_HOPS);
    let mut ok = hops > 0;
    for h in 0..MESH_MAX_HOPS {
        if !ok || u64::from(h) >= hops {
            break;
        }
        match read_user(p.wrapping_add(config(CFG_MESH_HOP0 + h)), 8) {
            Some(x) => p = x,
            None => ok = false,
        }
    }
    let base = p.wrapping_add(config(CFG_MESH_ADD));
    let begin = if ok {
        read_user(base, 8).unwrap_or(0)
    } else {
        0
    };
    let end = if ok {
        read_user(base.wrapping_add(8), 8).unwrap_or(0)
    } else {
        0
    };
    let mut count = if end > begin { (end - begin) / 8 } else { 0 };
    if count > MAX_MESH as u64 {
        count = MAX_MESH as u64;
    }
    // Entries past `count` are left unwritten (userspace reads `count` entries): an early
    // exit keeps the verifier's paths linear in the mesh size.
    for i in 0..MAX_MESH {
        if i as u64 >= count {
            break;
        }
        let w = read_or_zero(begin + 8 * i as u64, 8);
        let vp = read_or_zero(w, 8);
        let id = read_or_zero(w.wrapping_add(id_off), 4) as u32;
        unsafe {
            (*d).words[i] = w;
            (*d).vptrs[i] = vp;
            (*d).ids[i] = id;
        }
    }
    let vptr = read_or_zero(handle, 8);
    let id = read_or_zero(handle.wrapping_add(id_off), 4);
    unsafe {
        (*d).slot = SLOT_DEVICE;
        (*d).pid = tgid;
        (*d).handle = handle;
        (*d).vptr = vptr;
        (*d).id = id;
        (*d).count = count;
    }
    entry.submit(wakeup_flags());
    true
}

/// Does nothing: the benchmark attaches it beside `probe` to measure the bare trap cost.
#[uprobe]
pub fn tracer_bare(_ctx: ProbeContext) -> u32 {
    0
}

/// The benchmark's floor: the least a probe that reports buffers does on a hit, and nothing
/// more. The cookie is `word << 1 | read`: the `struct pt_regs` word of the buffer's
/// register, and whether to read 8 bytes of user memory at it (the allocation: any report of
/// one reads the buffer); then one record, the smallest there is. What tracer costs over
/// this is its own doing; the rest any such probe pays on this machine.
#[uprobe]
pub fn tracer_floor(ctx: ProbeContext) -> u32 {
    let pid_tgid = bpf_get_current_pid_tgid();
    let cookie = unsafe { bpf_get_attach_cookie(ctx.as_ptr()) };
    let mut object = register(&ctx, (cookie >> 1) as u8);
    if cookie & 1 != 0 {
        object = read_or_zero(object, 8);
    }
    if emit_head(object, 0, pid_tgid, Profile(0)).is_none() {
        bump(&LOST, 0);
    }
    0
}

fn emit_lifecycle(slot: u32, pid: u32, a: u64, b: u64) {
    let Some(mut entry) = EVENTS.reserve::<RawEvent>(0) else {
        bump(&LOST, 0);
        return;
    };
    let ev = entry.as_mut_ptr();
    for i in 0..MAX_VALUES {
        let v = match i {
            0 => a,
            1 => b,
            _ => 0,
        };
        unsafe { (*ev).values[i] = v };
    }
    unsafe {
        (*ev).slot = slot;
        (*ev).pid = pid;
        (*ev).tid = pid;
        (*ev).ts_ns = bpf_ktime_get_ns();
        (*ev).object = 0;
        (*ev).nvalues = 2;
        (*ev).valid = 3;
    }
    entry.submit(wakeup_flags());
}

/// The dynamic linker calls `_dl_debug_state` (its debugger hook, `r_brk`) before and after
/// every change to the list of loaded objects: at start-up, and at each dlopen. A traced
/// process is stopped there, so userspace can see what it mapped and attach probes to a newly
/// loaded runtime before any of its code runs; userspace continues the process.
#[uprobe]
pub fn tracer_loader(_ctx: ProbeContext) -> u32 {
    let pid_tgid = bpf_get_current_pid_tgid();
    let tgid = (pid_tgid >> 32) as u32;
    if !tracked(state_of(tgid)) {
        return 0;
    }
    let Some(mut entry) = EVENTS.reserve::<RawEvent>(0) else {
        // No record, no stop: nobody would know to continue the process.
        bump(&LOST, 0);
        return 0;
    };
    let ev = entry.as_mut_ptr();
    for i in 0..MAX_VALUES {
        unsafe { (*ev).values[i] = 0 };
    }
    unsafe {
        (*ev).slot = SLOT_LIBRARY_CHANGE;
        (*ev).pid = tgid;
        (*ev).tid = pid_tgid as u32;
        (*ev).ts_ns = bpf_ktime_get_ns();
        (*ev).object = 0;
        (*ev).nvalues = 0;
        (*ev).valid = 0;
    }
    // The stop is queued before userspace can see the record: its SIGCONT then either
    // discards the pending stop or ends it; never the other way round (a stop after the
    // continue would never end).
    const SIGSTOP: u32 = 19;
    unsafe { aya_ebpf::helpers::generated::bpf_send_signal(SIGSTOP) };
    // The process waits for userspace: wake it now rather than on its drain timer.
    const BPF_RB_FORCE_WAKEUP: u64 = 2;
    entry.submit(BPF_RB_FORCE_WAKEUP);
    0
}

/// A `pid_t` of a `task_struct`, at the offset userspace read from the kernel's BTF.
#[inline(always)]
fn task_u32(task: u64, offset_index: u32) -> u32 {
    let p = task.wrapping_add(config(offset_index)) as *const u32;
    unsafe { bpf_probe_read_kernel(p) }.unwrap_or(0)
}

/// Follows the process tree of traced processes: children of a traced process are traced.
/// A raw tracepoint (`sched_process_fork(parent, child)`): no tracefs needed.
#[raw_tracepoint(tracepoint = "sched_process_fork")]
pub fn tracer_fork(ctx: RawTracePointContext) -> u32 {
    if all_processes() {
        return 0;
    }
    let tgid = (bpf_get_current_pid_tgid() >> 32) as u32;
    let parent = state_of(tgid);
    if !tracked(parent) {
        return 0;
    }
    let child_task: u64 = ctx.arg(1);
    let child = task_u32(child_task, CFG_TASK_TGID_OFF);
    // A new thread of a traced process is not a new process: nothing to track or report.
    if child == 0 || child == tgid {
        return 0;
    }
    // No event: a child announces itself with its first runtime call.
    if let Some(state) = process_state(child) {
        unsafe { *state = parent };
    }
    0
}

/// `sched_process_exit(task)` runs in the exiting task itself.
#[raw_tracepoint(tracepoint = "sched_process_exit")]
pub fn tracer_exit(_ctx: RawTracePointContext) -> u32 {
    let pid_tgid = bpf_get_current_pid_tgid();
    let tgid = (pid_tgid >> 32) as u32;
    let pid = pid_tgid as u32;
    // Only the process' last word counts: its main thread's exit.
    if pid != tgid {
        return 0;
    }
    // Processes that never used the runtime (every process on the machine, under --all)
    // leave no record: userspace would drop it.
    let Some(state) = process_state(tgid) else {
        return 0;
    };
    if unsafe { *state } != UNTRACKED {
        unsafe { *state = UNTRACKED };
        emit_lifecycle(SLOT_PROCESS_EXIT, tgid, 0, 0);
    }
    0
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
