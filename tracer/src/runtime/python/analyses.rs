//! The machine-code patterns of CPython's own accessors that calibration reads: each analysis
//! answers one question about one function, or `None` when the function does not have the
//! expected shape (then calibration says which one failed).
use std::ops::ControlFlow::{Break, Continue};

use iced_x86::{Instruction, Mnemonic, OpKind, Register};

use crate::runtime::x86::{
    engine::{decode, run, Event, Unknown},
    state::State,
    value::Value,
};

/// Registers a call may change.
fn caller_saved(r: Register) -> bool {
    crate::runtime::x86::abi::CALLER_SAVED.contains(&r)
}

/// Instructions read of one accessor at most.
const LIMIT: usize = 64;

/// `lea rdi,[rip+G]; call __tls_get_addr; mov rax,[rax+D]`: the thread state is the TLS
/// variable whose (module, offset) pair sits in the GOT at `G`, at offset `D` of what the
/// call returns. Returns (G, D).
pub fn tls_load(code: &[u8], ip: u64) -> Option<(u64, i32)> {
    let insns: Vec<Instruction> = decode(code, ip, LIMIT).collect();
    for w in insns.windows(3) {
        let (lea, call, load) = (&w[0], &w[1], &w[2]);
        let is_tls_lea = lea.mnemonic() == Mnemonic::Lea
            && lea.op0_register() == Register::RDI
            && lea.is_ip_rel_memory_operand();
        if !is_tls_lea || call.mnemonic() != Mnemonic::Call {
            continue;
        }
        if load.mnemonic() == Mnemonic::Mov
            && load.op0_register() == Register::RAX
            && load.op1_kind() == OpKind::Memory
            && load.memory_base() == Register::RAX
            && load.memory_index() == Register::None
        {
            return Some((
                lea.ip_rel_memory_address(),
                load.memory_displacement64() as i64 as i32,
            ));
        }
        return None;
    }
    None
}

/// `mov R,[rip+G]; ... mov rax,[R+D]`: the thread state is a field at `D` of the object a
/// global pointer slot `G` points to (the interpreter's runtime state). Returns (G, D).
pub fn global_load(code: &[u8], ip: u64) -> Option<(u64, i32)> {
    let mut slot: Option<(Register, u64)> = None;
    for i in decode(code, ip, LIMIT) {
        if matches!(i.mnemonic(), Mnemonic::Call | Mnemonic::Ret | Mnemonic::Jmp) {
            return None;
        }
        if i.mnemonic() != Mnemonic::Mov || i.op1_kind() != OpKind::Memory {
            continue;
        }
        if i.is_ip_rel_memory_operand() && i.op0_register().is_gpr64() {
            slot = Some((i.op0_register(), i.ip_rel_memory_address()));
            continue;
        }
        if let Some((r, g)) = slot {
            if i.memory_base() == r
                && i.memory_index() == Register::None
                && i.op0_register() == Register::RAX
            {
                return Some((g, i.memory_displacement64() as i64 as i32));
            }
        }
    }
    None
}

/// glibc's `__tls_get_addr(tls_index *ti)`: `mov R,fs:[T]` loads the thread's DTV from the
/// TCB at `T`; `shl I,S` scales the module id to an entry; `mov rax,[R+I+E]` reads the
/// module's block. Returns (T, S, E).
pub fn dtv_walk(code: &[u8], ip: u64) -> Option<(i32, u8, i32)> {
    let mut dtv: Option<(Register, i32)> = None;
    let mut shift: Option<(Register, u8)> = None;
    for i in decode(code, ip, 24) {
        match i.mnemonic() {
            Mnemonic::Mov
                if i.op1_kind() == OpKind::Memory
                    && i.segment_prefix() == Register::FS
                    && i.memory_base() == Register::None =>
            {
                dtv = Some((i.op0_register(), i.memory_displacement64() as i64 as i32));
            }
            Mnemonic::Shl
                if i.op0_kind() == OpKind::Register && i.op1_kind() == OpKind::Immediate8 =>
            {
                shift = Some((i.op0_register(), i.immediate8()));
            }
            Mnemonic::Mov if i.op1_kind() == OpKind::Memory => {
                if let (Some((d, t)), Some((x, s))) = (dtv, shift) {
                    if i.memory_base() == d && i.memory_index() == x && i.memory_index_scale() == 1
                    {
                        return Some((t, s, i.memory_displacement64() as i64 as i32));
                    }
                }
            }
            Mnemonic::Ret | Mnemonic::Call => return None,
            _ => {}
        }
    }
    None
}

/// `PyThreadState_SetAsyncExc(unsigned long id, ...)` walks the threads comparing each one's
/// `thread_id` with its first argument: `cmp [T+D],R` where R holds that argument. Returns D.
pub fn compared_with_argument(code: &[u8], ip: u64) -> Option<i32> {
    let mut holds = vec![Register::RDI];
    for i in decode(code, ip, 96) {
        if i.mnemonic() == Mnemonic::Mov
            && i.op0_kind() == OpKind::Register
            && i.op1_kind() == OpKind::Register
        {
            if holds.contains(&i.op1_register().full_register()) {
                holds.push(i.op0_register().full_register());
            } else {
                holds.retain(|r| *r != i.op0_register().full_register());
            }
            continue;
        }
        if i.mnemonic() == Mnemonic::Cmp {
            let (mem, reg) = match (i.op0_kind(), i.op1_kind()) {
                (OpKind::Memory, OpKind::Register) => (true, i.op1_register()),
                (OpKind::Register, OpKind::Memory) => (true, i.op0_register()),
                _ => (false, Register::None),
            };
            if mem
                && reg.is_gpr64()
                && holds.contains(&reg.full_register())
                && i.memory_base() != Register::None
                && !i.is_ip_rel_memory_operand()
            {
                return Some(i.memory_displacement64() as i64 as i32);
            }
        }
        // A call clobbers the argument registers (a callee-saved copy survives).
        if i.mnemonic() == Mnemonic::Call {
            holds.retain(|r| {
                !matches!(
                    r,
                    Register::RDI
                        | Register::RSI
                        | Register::RDX
                        | Register::RCX
                        | Register::R8
                        | Register::R9
                        | Register::RAX
                )
            });
        }
        // Writes to a register that held the argument (other than the moves above).
        if i.op_count() >= 1 && i.op0_kind() == OpKind::Register && i.mnemonic() != Mnemonic::Cmp {
            let r = i.op0_register().full_register();
            if i.mnemonic() != Mnemonic::Test && i.mnemonic() != Mnemonic::Push {
                holds.retain(|h| *h != r);
            }
        }
    }
    None
}

/// One memory access of a sweep.
pub struct Access {
    pub address: Value,
    pub width: u8,
    /// A `mov` into a register (not a compare or arithmetic).
    pub load: bool,
    /// The load replaces its own base register (`mov rdi,[rdi+D]`: walking a list).
    pub self_hop: bool,
    pub ip: u64,
    pub dest: Register,
}

/// Every load and read the straight-line sweep of a function from argument 0 sees, up to its
/// first call.
pub fn loads_from_argument(code: &[u8], ip: u64) -> Vec<Access> {
    let mut out = Vec::new();
    let mut state = State::with_arguments([0]);
    let _: Option<()> = run(code, ip, LIMIT, &mut state, &Unknown, |i, ev, _| {
        match ev {
            Event::Load { address, width } => out.push(Access {
                address: address.clone(),
                width,
                load: true,
                self_hop: i.op0_register().full_register() == i.memory_base().full_register(),
                ip: i.ip(),
                dest: i.op0_register().full_register(),
            }),
            Event::Read { address, width } => out.push(Access {
                address: address.clone(),
                width,
                load: false,
                self_hop: false,
                ip: i.ip(),
                dest: Register::None,
            }),
            Event::Call { .. } => return Break(()),
            _ => {}
        }
        Continue(())
    });
    out
}

/// The chain of loads from argument 0 that addresses `v` (its loads) and the offset added
/// (`v = chain + addend`).
pub fn split(v: &Value) -> Option<(Vec<i32>, i64)> {
    let d = v.derived()?;
    (d.root == 0).then(|| (d.loads.clone(), d.addend))
}

/// `lea R,[B+D]` where B holds the value `load` put there (until B is written again): the
/// `D`s.
pub fn lea_offsets(code: &[u8], ip: u64, load: &Access) -> Vec<i64> {
    let mut out = Vec::new();
    for i in decode(code, ip, LIMIT).filter(|i| i.ip() > load.ip) {
        if i.mnemonic() == Mnemonic::Lea
            && i.op1_kind() == OpKind::Memory
            && i.memory_base().full_register() == load.dest
        {
            out.push(i.memory_displacement64() as i64);
        }
        if i.op_count() >= 1
            && i.op0_kind() == OpKind::Register
            && i.op0_register().full_register() == load.dest
            && !matches!(i.mnemonic(), Mnemonic::Cmp | Mnemonic::Test)
        {
            break;
        }
        if matches!(i.mnemonic(), Mnemonic::Call | Mnemonic::Ret) {
            break;
        }
    }
    out
}

/// `lea esi,[R+R]` (an instruction index doubled into a byte offset for the call that
/// follows): the load from argument 0 that R holds, as (offset, width).
pub fn doubled_load(code: &[u8], ip: u64) -> Option<(i32, u8)> {
    let mut last: Vec<(Register, i32, u8)> = Vec::new();
    for i in decode(code, ip, LIMIT) {
        if matches!(
            i.mnemonic(),
            Mnemonic::Mov | Mnemonic::Movsxd | Mnemonic::Movzx
        ) && i.op1_kind() == OpKind::Memory
            && i.memory_base() == Register::RDI
            && i.memory_index() == Register::None
        {
            let r = i.op0_register().full_register();
            last.retain(|(x, _, _)| *x != r);
            last.push((
                r,
                i.memory_displacement64() as i64 as i32,
                i.memory_size().size() as u8,
            ));
            continue;
        }
        if i.mnemonic() == Mnemonic::Lea
            && i.op1_kind() == OpKind::Memory
            && i.memory_base() != Register::None
            && i.memory_base().full_register() == i.memory_index().full_register()
            && i.memory_index_scale() == 1
            && i.memory_displacement64() == 0
        {
            let r = i.memory_base().full_register();
            return last
                .iter()
                .find(|(x, _, _)| *x == r)
                .map(|(_, o, w)| (*o, *w));
        }
    }
    None
}

/// Immediate bit tests and masks applied to the byte loaded from argument 0 at `at`
/// (`movzx eax,byte [rdi+at]`, then `test al,M` / `and eax,M`): their union.
pub fn state_bits(code: &[u8], ip: u64) -> Option<(i32, u8)> {
    let mut state: Option<(Register, i32)> = None;
    let mut mask = 0u8;
    for i in decode(code, ip, LIMIT) {
        if i.mnemonic() == Mnemonic::Movzx
            && i.op1_kind() == OpKind::Memory
            && i.memory_size().size() == 1
            && i.memory_base() == Register::RDI
            && state.is_none()
        {
            state = Some((
                i.op0_register().full_register(),
                i.memory_displacement64() as i32,
            ));
            continue;
        }
        if let Some((r, _)) = state {
            if matches!(i.mnemonic(), Mnemonic::Test | Mnemonic::And)
                && i.op0_kind() == OpKind::Register
                && i.op0_register().full_register() == r
                && matches!(
                    i.op1_kind(),
                    OpKind::Immediate8 | OpKind::Immediate32 | OpKind::Immediate8to32
                )
            {
                mask |= i.immediate(1) as u8;
            }
        }
    }
    let (_, at) = state?;
    (mask != 0).then_some((at, mask))
}

/// What a function returns of its first argument at each `ret`: `lea rax,[R+D]` (an address
/// inside the object: `(D, false)`) or `mov rax,[R+D]` (a field: `(D, true)`), where R holds
/// the argument (copies through register moves; the epilogue's pops are the caller's
/// registers coming back and do not end a copy in this straight-line sweep).
pub fn returned_offsets(code: &[u8], ip: u64) -> Vec<(i64, bool)> {
    let mut out = Vec::new();
    let mut holds = vec![Register::RDI];
    let mut rax: Option<(i64, bool)> = None;
    for i in decode(code, ip, 96) {
        let dst = (i.op_count() >= 1 && i.op0_kind() == OpKind::Register)
            .then(|| i.op0_register().full_register());
        match i.mnemonic() {
            Mnemonic::Ret => {
                if let Some(r) = rax {
                    out.push(r);
                }
                continue;
            }
            Mnemonic::Call => {
                holds.retain(|r| !caller_saved(*r));
                rax = None;
                continue;
            }
            Mnemonic::Pop | Mnemonic::Push | Mnemonic::Cmp | Mnemonic::Test => continue,
            _ => {}
        }
        let Some(dst) = dst else { continue };
        let from_arg = i.op1_kind() == OpKind::Memory
            && holds.contains(&i.memory_base().full_register())
            && i.memory_index() == Register::None;
        let found = match i.mnemonic() {
            Mnemonic::Lea if from_arg => Some((i.memory_displacement64() as i64, false)),
            Mnemonic::Mov if from_arg && i.memory_size().size() == 8 => {
                Some((i.memory_displacement64() as i64, true))
            }
            _ => None,
        };
        if i.mnemonic() == Mnemonic::Mov && i.op1_kind() == OpKind::Register {
            if holds.contains(&i.op1_register().full_register()) {
                if !holds.contains(&dst) {
                    holds.push(dst);
                }
            } else {
                holds.retain(|h| *h != dst);
            }
        } else {
            holds.retain(|h| *h != dst);
        }
        if dst == Register::RAX {
            rax = found;
        }
    }
    out
}

/// `PyGILState_GetThisThreadState`: `mov R,[rip+G]` (the runtime state's address from the
/// GOT), `lea rdi,[R+K]` (its thread-state key, a `Py_tss_t`), then the call or jump to
/// `PyThread_tss_get`. Returns (G, K).
pub fn key_of_runtime(code: &[u8], ip: u64) -> Option<(u64, i32)> {
    let mut slot: Option<(Register, u64)> = None;
    let mut key: Option<(Register, i32)> = None;
    let mut copies: Vec<Register> = Vec::new();
    for i in decode(code, ip, LIMIT) {
        match i.mnemonic() {
            Mnemonic::Mov
                if i.op1_kind() == OpKind::Memory
                    && i.is_ip_rel_memory_operand()
                    && i.op0_register().is_gpr64() =>
            {
                slot = Some((i.op0_register(), i.ip_rel_memory_address()));
            }
            Mnemonic::Lea if i.op1_kind() == OpKind::Memory => {
                if let Some((r, _)) = slot {
                    if i.memory_base() == r && i.memory_index() == Register::None {
                        key = Some((i.op0_register(), i.memory_displacement64() as i64 as i32));
                        copies = vec![i.op0_register()];
                    }
                }
            }
            Mnemonic::Mov
                if i.op0_kind() == OpKind::Register
                    && i.op1_kind() == OpKind::Register
                    && copies.contains(&i.op1_register()) =>
            {
                copies.push(i.op0_register());
            }
            Mnemonic::Call | Mnemonic::Jmp => {
                if let (Some((_, g)), Some((_, k))) = (slot, key) {
                    if copies.contains(&Register::RDI) {
                        // The first call taking the key may be a check that it exists; the
                        // key is the same either way.
                        return Some((g, k));
                    }
                }
            }
            _ => {}
        }
    }
    None
}

/// `PyThread_tss_get(Py_tss_t *key)`: `mov edi,[rdi+F]` then a jump to
/// `pthread_getspecific`. Returns F (where the pthread key sits in a `Py_tss_t`).
pub fn tss_key_field(code: &[u8], ip: u64) -> Option<i32> {
    let first = decode(code, ip, 4).next()?;
    (first.mnemonic() == Mnemonic::Mov
        && first.op0_register() == Register::EDI
        && first.op1_kind() == OpKind::Memory
        && first.memory_base() == Register::RDI
        && first.memory_index() == Register::None)
        .then(|| first.memory_displacement64() as i64 as i32)
}

/// glibc's `pthread_getspecific(key)`, its fast path for the first block of keys:
/// `add rax,C; shl rax,N; add rax,fs:[S]; mov rdx,[rax+D]`: the value is at
/// `*(tp + S) + ((key + C) << N) + D`. Also the first block's size (`cmp edi,B-1` guards the
/// slow path, or `and`/`shr` tests). Returns (S, C, N, D, B).
pub fn specific_fast_path(code: &[u8], ip: u64) -> Option<(i32, i64, u8, i32, u64)> {
    let (mut add, mut shl, mut selfp) = (None, None, None);
    let mut block = None;
    for i in decode(code, ip, 32) {
        match i.mnemonic() {
            Mnemonic::Cmp
                if i.op0_register() == Register::EDI && i.op1_kind() != OpKind::Register =>
            {
                block.get_or_insert(i.immediate(1) + 1);
            }
            Mnemonic::Add
                if i.op1_kind() == OpKind::Memory
                    && i.segment_prefix() == Register::FS
                    && i.memory_base() == Register::None =>
            {
                selfp = Some(i.memory_displacement64() as i64 as i32);
            }
            Mnemonic::Add
                if matches!(
                    i.op1_kind(),
                    OpKind::Immediate8to64 | OpKind::Immediate32to64
                ) =>
            {
                add = Some(i.immediate(1) as i64);
            }
            Mnemonic::Shl if i.op1_kind() == OpKind::Immediate8 => shl = Some(i.immediate8()),
            Mnemonic::Mov if i.op1_kind() == OpKind::Memory && selfp.is_some() => {
                return Some((
                    selfp?,
                    add.unwrap_or(0),
                    shl?,
                    i.memory_displacement64() as i64 as i32,
                    block.unwrap_or(32),
                ));
            }
            Mnemonic::Ret => return None,
            _ => {}
        }
    }
    None
}
