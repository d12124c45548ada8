//! The ABI shared by the eBPF programs and the userspace collector.
//!
//! The eBPF side knows nothing about tt-metal: userspace calibrates the runtime's layout and
//! writes, per probe slot, a list of [`FieldPath`]s ("start at argument N, follow these
//! offsets"). The eBPF program reads those values and emits a [`RawEvent`]; userspace gives the
//! values their meaning. A new runtime release changes the plan, never the eBPF code.
#![no_std]

/// Values one probe hit can carry.
pub const MAX_VALUES: usize = 10;
/// Memory reads along one path (pointer chasing depth + final read).
pub const MAX_STEPS: usize = 4;
/// Bytes of one object a probe hit can copy at once (see [`SlotSpec::window`]); a power of two.
pub const WINDOW_BYTES: usize = 1024;
/// `FieldPath::arg` value meaning "start from the slot's window copy": the first offset is a
/// position in the window, read `width` bytes there (or 8 when further steps follow).
pub const ARG_WINDOW: u8 = 0xff;
/// Probe slots (one per probed function role); the attach cookie selects the slot.
pub const MAX_SLOTS: u32 = 24;
/// Bytes of an array (e.g. a `std::vector`'s elements) one probe hit can copy out whole, after
/// its values (see [`SlotSpec::tail_begin`]); a power of two.
pub const TAIL_BYTES: usize = 512;

/// Where a value comes from.
///
/// `v = arg[arg]`; then for each of the `steps` offsets: `v = *(v + offset)`, reading 8 bytes
/// for intermediate pointers and `width` bytes for the last read. With `steps == 0` the value is
/// the argument register itself, masked to `width` bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FieldPath {
    /// Word index into the kernel's `struct pt_regs` of the register the path starts from:
    /// an argument register (see [`arg_word`]), the stack pointer, or a callee-saved register
    /// (words 0-5: r15, r14, r13, r12, rbp, rbx).
    pub arg: u8,
    pub steps: u8,
    /// 1, 2, 4 or 8.
    pub width: u8,
    pub _pad: u8,
    pub offsets: [i32; MAX_STEPS],
}

/// The `pt_regs` word holding System V x86-64 argument `n` (0 = first argument, `this` for
/// methods): rdi, rsi, rdx, rcx, r8, r9.
pub const fn arg_word(n: u8) -> u8 {
    match n {
        0 => 14,
        1 => 13,
        2 => 12,
        3 => 11,
        4 => 9,
        _ => 8,
    }
}

/// Process ids per entry of the eBPF `PROCESSES` array (one byte each, the process's state).
pub const PROCESSES_PER_ENTRY: usize = 64;
/// A process's state in `PROCESSES`: not traced (under `--all`: no probe hit yet).
pub const UNTRACKED: u8 = 0;
/// Traced, and so are the children it forks.
pub const TRACKED: u8 = 1;
/// Under `--all`: it hit a probe (or userspace attached to it), so its exit is reported.
pub const SEEN: u8 = 2;
/// Traced like [`TRACKED`], and userspace knows every buffer it holds by its object (it saw
/// each allocation, or read the buffers from the process's memory): frees carry the object
/// alone ([`SLOT_BY_OBJECT`]). Its children inherit it.
pub const BY_OBJECT: u8 = 3;

/// The `pt_regs` word holding the stack pointer (stack-passed arguments are read through it).
pub const PT_REGS_SP: u8 = 19;

/// What one probe slot reads.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SlotSpec {
    pub fields: [FieldPath; MAX_VALUES],
    pub nfields: u32,
    /// Non-zero: value 0 is a device object pointer. The first time a process shows a device
    /// pointer, a [`RawDevice`] describing it precedes the event.
    pub device_field: u16,
    /// Bit 0: this call ends the device's life (close): describe it again if its address is
    /// reused.
    pub flags: u16,
    /// Most fields of a probed call live in one object (a `Buffer` or its pimpl); one bulk read
    /// of `window_len` bytes at `window` + `window_off` replaces a read per field (each user
    /// read costs as much as the rest of the probe). `window_len == 0`: no window.
    pub window: FieldPath,
    pub window_off: i32,
    pub window_len: u32,
    /// Non-zero: the hit also copies the bytes from `tail_begin` up to `tail_end` (at most
    /// [`TAIL_BYTES`]) into a [`RawTailEvent`]: a variable-length array, such as the core ranges
    /// of a circular buffer, that fixed values cannot carry.
    pub tail: u32,
    pub _pad: u32,
    pub tail_begin: FieldPath,
    pub tail_end: FieldPath,
}

/// `SlotSpec::flags` bit: the device object is going away.
pub const SLOT_FORGETS_DEVICE: u16 = 1;
/// `SlotSpec::flags` bit: in a process whose state is [`BY_OBJECT`], a hit carries its
/// window's base object alone (a free, matched by userspace to the allocation it saw).
pub const SLOT_BY_OBJECT: u16 = 2;
/// `SlotSpec::flags` bit: every value is one load at an offset of the window copy (no further
/// pointer to follow, no tail), as for a buffer's allocation, and lies within one aligned
/// 8-byte word of the window. The probe then copies each value as its word shifted down to it
/// and leaves the narrowing to `width` to userspace: the hot path does one load per value,
/// with no branch on its path.
pub const SLOT_WINDOW_VALUES: u16 = 4;
/// Python frames one [`RawStack`] carries at most (innermost first).
pub const MAX_PY_FRAMES: usize = 16;
/// Bytes of one frame object copied at once (its code, back and instruction fields lie in it).
pub const PY_FRAME_BYTES: usize = 128;
/// Loads from the thread pointer (or a global) to the thread state, at most.
pub const PY_TSTATE_STEPS: usize = 4;

/// How to walk one process's CPython stack: calibrated from its interpreter library and its
/// memory by userspace (`runtime/python`), written per process into `PYSTACKS`.
///
/// `v = tstate_base` (0: the thread pointer, `task->thread.fsbase`), then `tstate_steps`
/// loads `v = *(v + tstate_offsets[i])` give the thread state. With `thread_id_off >= 0` the
/// thread state must name the calling thread (`*(tstate + thread_id_off) == fsbase`), or no
/// stack is read. From the thread state, `frame_steps` loads give the innermost frame; each
/// frame's first `frame_len` bytes hold its code object, its instruction (`instr_width`
/// bytes) and the next frame out.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PyStackSpec {
    pub tstate_base: u64,
    pub tstate_offsets: [i64; PY_TSTATE_STEPS],
    pub tstate_steps: u32,
    pub frame_steps: u32,
    pub frame_offsets: [i32; PY_TSTATE_STEPS],
    pub thread_id_off: i32,
    pub code_off: u32,
    pub instr_off: u32,
    pub back_off: u32,
    pub instr_width: u32,
    pub frame_len: u32,
}

/// The Python frames of the thread whose hit follows (`tracer_stack` emits it, then runs
/// `tracer_probe`): (code object, instruction) pairs, innermost first. Userspace resolves code objects to file, function and line.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct RawStack {
    /// Always [`SLOT_STACK`].
    pub slot: u32,
    pub pid: u32,
    pub tid: u32,
    pub nframes: u32,
    pub frames: [[u64; 2]; MAX_PY_FRAMES],
}

pub const SLOT_STACK: u32 = 0xfffb;

/// Device pointers described per event at most (a mesh's chips).
pub const MAX_MESH: usize = 64;

/// A device object, described once per process: what userspace needs to map it to chips.
/// `words` are the `count` pointers of the mesh device list reached through the calibrated
/// path (`CFG_MESH_*`); for a single chip they are garbage and userspace ignores them.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct RawDevice {
    /// Always [`SLOT_DEVICE`].
    pub slot: u32,
    pub pid: u32,
    pub handle: u64,
    pub vptr: u64,
    /// The `Device::id()` field read from the object itself.
    pub id: u64,
    pub count: u64,
    pub words: [u64; MAX_MESH],
    pub vptrs: [u64; MAX_MESH],
    pub ids: [u32; MAX_MESH],
}

pub const SLOT_DEVICE: u32 = 0xfffd;

/// Indexes into the CONFIG array (u64 values written by userspace before attaching). Index 0 is
/// unused: what it held (the scope, the debug switch) is now read-only globals set at load.
/// Offset of `tgid` in the kernel's `struct task_struct` (from the kernel's BTF).
pub const CFG_TASK_TGID_OFF: u32 = 1;
/// Offset of the thread pointer (`thread.fsbase`) in `struct task_struct` (from the BTF): where
/// a thread's TLS starts, and what `pthread_self()` returns.
pub const CFG_TASK_FSBASE_OFF: u32 = 2;
/// `Device::id()` offset in a device object.
pub const CFG_DEVICE_ID_OFF: u32 = 4;
/// Path from a mesh device object to its device-pointer vector: CFG_MESH_HOPS loads at the
/// offsets CFG_MESH_HOP0.., then + CFG_MESH_ADD is the vector's address (begin, end).
pub const CFG_MESH_HOPS: u32 = 5;
pub const CFG_MESH_HOP0: u32 = 6;
pub const CFG_MESH_ADD: u32 = 10;
pub const MESH_MAX_HOPS: u32 = 4;
/// Bytes waiting in the ring buffer past which a record wakes the collector (a quarter of
/// the ring buffer's size, which userspace chooses at load time).
pub const CFG_WAKEUP_BYTES: u32 = 11;
pub const CFG_LEN: u32 = 16;

/// One probe hit, as it leaves the kernel.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RawEvent {
    pub slot: u32,
    /// Thread-group id (the process id users see).
    pub pid: u32,
    pub tid: u32,
    /// Number of valid entries in `values`; reads that faulted leave 0 and clear their bit in
    /// `valid`.
    pub nvalues: u16,
    pub valid: u16,
    pub ts_ns: u64,
    /// The base of the slot's window (`SlotSpec::window`'s value: the `Buffer*` argument, or
    /// the implementation object it points to), 0 for slots without one: what a free that
    /// reads nothing else is matched to its allocation by.
    pub object: u64,
    pub values: [u64; MAX_VALUES],
}

/// The first bytes of a [`RawEvent`], alone: the record of a hit that reads no values (a free
/// matched to its allocation by `object`). A third of the ring buffer bytes of a full record,
/// so a third of the cache lines the two cores pass between them; userspace reads it as a
/// [`RawEvent`] whose values are zero.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RawEventHead {
    pub slot: u32,
    pub pid: u32,
    pub tid: u32,
    pub nvalues: u16,
    pub valid: u16,
    pub ts_ns: u64,
    pub object: u64,
}

const _: () = assert!(
    core::mem::size_of::<RawEventHead>() == core::mem::offset_of!(RawEvent, values)
        && core::mem::offset_of!(RawEventHead, object) == core::mem::offset_of!(RawEvent, object)
        && core::mem::offset_of!(RawEventHead, ts_ns) == core::mem::offset_of!(RawEvent, ts_ns)
);

/// A [`RawEvent`] of a slot with a tail: the array's bytes follow the values.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct RawTailEvent {
    pub event: RawEvent,
    /// Bytes of `tail` copied; `tail_total` is the array's full length (more than `tail_len`:
    /// the array was cut, and userspace says so). Both 0 when the copy faulted.
    pub tail_len: u32,
    pub tail_total: u32,
    pub tail: [u8; TAIL_BYTES],
}

/// Slot number used in `RawEvent.slot` for process exits (values[0] = exit status).
pub const SLOT_PROCESS_EXIT: u32 = 0xffff;
/// Slot number of the dynamic linker's hook: the process (stopped) may have mapped or unmapped
/// libraries; userspace looks and continues it.
pub const SLOT_LIBRARY_CHANGE: u32 = 0xfffc;

#[cfg(feature = "user")]
mod user {
    use super::*;
    // SAFETY: plain-old-data, repr(C), no padding holes with undefined meaning.
    unsafe impl aya::Pod for SlotSpec {}
    unsafe impl aya::Pod for RawEvent {}
    unsafe impl aya::Pod for RawDevice {}
    unsafe impl aya::Pod for RawTailEvent {}
    unsafe impl aya::Pod for PyStackSpec {}

    // The ring buffer's records: any bytes are a valid value, and there is no padding (checked
    // below), so userspace copies them out with bytemuck instead of raw pointer copies.
    // SAFETY: repr(C), integer fields only, size == sum of fields.
    unsafe impl bytemuck::Zeroable for RawEvent {}
    unsafe impl bytemuck::Pod for RawEvent {}
    unsafe impl bytemuck::Zeroable for RawDevice {}
    unsafe impl bytemuck::Pod for RawDevice {}
    unsafe impl bytemuck::Zeroable for RawTailEvent {}
    unsafe impl bytemuck::Pod for RawTailEvent {}
    unsafe impl bytemuck::Zeroable for RawStack {}
    unsafe impl bytemuck::Pod for RawStack {}
    const _: () = assert!(core::mem::size_of::<RawStack>() == 16 + 16 * MAX_PY_FRAMES);
    const _: () = assert!(core::mem::size_of::<PyStackSpec>() == 8 + 8 * 4 + 8 + 16 + 4 * 6);
    const _: () = assert!(
        core::mem::size_of::<RawTailEvent>() == core::mem::size_of::<RawEvent>() + 8 + TAIL_BYTES
    );
    const _: () =
        assert!(core::mem::size_of::<RawEvent>() == 4 * 3 + 2 * 2 + 8 + 8 + 8 * MAX_VALUES);
    const _: () =
        assert!(core::mem::size_of::<RawDevice>() == 4 * 2 + 8 * 4 + (8 + 8 + 4) * MAX_MESH);
}
