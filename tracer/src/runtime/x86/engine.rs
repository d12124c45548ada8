//! The symbolic engine: one decode loop that steps instructions over a [`State`] and tells the
//! analysis what happens at the points it cares about ([`Event`]); the analysis answers
//! `Continue` or `Break` with its result.
//!
//! Conditional branches are not taken and unconditional jumps fall through: the code is read
//! as one path, in address order. That is exact for the short accessors calibration reads
//! (their branches guard error paths) and a linear sweep of the longer functions, where the
//! analyses only look for stores or calls whose operands are set just before them.
//!
//! The function's own stack frame is modelled too: `%rsp` is [`Value::Frame`] (its value at
//! entry plus an offset), `push`, `pop`, `sub`/`add` of an immediate move it, and a register
//! stored into a frame slot is what a later load of that slot gives back (a callee-saved
//! register that holds `this` spilled around a stretch of code that needs it for something
//! else, as a long constructor does). A call forgets the slots handed to it by address; a
//! `ret` forgets `%rsp` (the cold code after it runs with a frame the sweep did not see).
use std::ops::ControlFlow::{self, Break, Continue};

use iced_x86::{
    Decoder, DecoderOptions, Instruction, InstructionInfoFactory, InstructionInfoOptions, Mnemonic,
    OpAccess, OpKind, Register,
};

use super::{abi, state::State, value::Value};

/// At most `max` instructions of `code`, which starts at address `ip`.
pub fn decode(code: &[u8], ip: u64, max: usize) -> impl Iterator<Item = Instruction> + '_ {
    let mut d = Decoder::with_ip(64, code, ip, DecoderOptions::NONE);
    std::iter::from_fn(move || d.can_decode().then(|| d.decode())).take(max)
}

/// What memory holds, as far as an analysis knows it (constant tables, a referenced argument).
pub trait Memory {
    /// The value of `width` bytes at `address`; `None` where unknown (a load through a
    /// [`Value::Derived`] address then becomes one more load hop).
    fn load(&self, address: &Value, width: u8) -> Option<Value>;
}

/// Nothing is known of memory.
pub struct Unknown;

impl Memory for Unknown {
    fn load(&self, _: &Value, _: u8) -> Option<Value> {
        None
    }
}

/// What the analysis is told, before the instruction takes effect on the state.
pub enum Event<'a> {
    Return,
    /// `target`: where a direct call goes.
    Call {
        target: Option<u64>,
    },
    /// An unconditional jump (a tail call, or a branch inside the function); `target`: where
    /// a direct one goes.
    Jump {
        target: Option<u64>,
    },
    /// A register is loaded from `address` (a `mov` of any width or extension).
    Load {
        address: &'a Value,
        width: u8,
    },
    /// Another instruction reads `width` bytes at `address` (a `cmp`, `test` or arithmetic
    /// with a memory operand).
    Read {
        address: &'a Value,
        width: u8,
    },
    /// An element of a table is loaded into a register (or read in place): `base` plus an
    /// unknown index (an element of a vector whose begin pointer `base` was loaded from).
    IndexedLoad {
        base: &'a Value,
        width: u8,
    },
    /// An unsigned or signed division of `%rax` (`%rdx:%rax`) by `divisor`.
    Divide {
        divisor: Option<&'a Value>,
    },
    /// A register's `value` (if known) is stored at `address`.
    Store {
        address: &'a Value,
        value: Option<&'a Value>,
        width: u8,
    },
}

/// Steps through at most `limit` instructions of `code` (at `ip`) from `state`, telling `on`
/// each [`Event`]. `Continue` goes on with the next instruction in address order (past a
/// return or a jump too: cold paths follow the body; a call clobbers the caller-saved
/// registers); the result is what `on` breaks with.
pub fn run<T>(
    code: &[u8],
    ip: u64,
    limit: usize,
    state: &mut State,
    memory: &dyn Memory,
    mut on: impl FnMut(&Instruction, Event<'_>, &State) -> ControlFlow<T>,
) -> Option<T> {
    let mut info = InstructionInfoFactory::new();
    if state.get(Register::RSP).is_none() {
        state.set(Register::RSP, Some(Value::Frame(0)));
    }
    for i in decode(code, ip, limit) {
        let flow = match i.mnemonic() {
            Mnemonic::Ret => {
                let flow = on(&i, Event::Return, state);
                state.set(Register::RSP, None);
                flow
            }
            Mnemonic::Call => {
                let target = (i.op0_kind() == OpKind::NearBranch64).then(|| i.near_branch_target());
                let flow = on(&i, Event::Call { target }, state);
                state.forget_passed_slots();
                state.clobber_caller_saved();
                state.set(abi::RETURN, target.map(Value::Returned));
                flow
            }
            Mnemonic::Jmp => {
                let target = (i.op0_kind() == OpKind::NearBranch64).then(|| i.near_branch_target());
                on(&i, Event::Jump { target }, state)
            }
            _ if i.is_jcc_short_or_near() => Continue(()),
            _ => step(&i, state, memory, &mut info, &mut on),
        };
        if let Break(t) = flow {
            return Some(t);
        }
    }
    None
}

/// A register and its value after an instruction (`None`: unknown).
type Write = Option<(Register, Option<Value>)>;

/// One data instruction: the events it makes, then its effect on the registers and the frame.
fn step<T>(
    i: &Instruction,
    state: &mut State,
    memory: &dyn Memory,
    info: &mut InstructionInfoFactory,
    on: &mut impl FnMut(&Instruction, Event<'_>, &State) -> ControlFlow<T>,
) -> ControlFlow<T> {
    if let Some(()) = push_or_pop(i, state) {
        return Continue(());
    }
    if matches!(i.mnemonic(), Mnemonic::Div | Mnemonic::Idiv) {
        let divisor = match i.op0_kind() {
            OpKind::Register => state.get(i.op0_register()).cloned(),
            OpKind::Memory => address(i, state).and_then(|a| load(i, &a, memory)),
            _ => None,
        };
        on(
            i,
            Event::Divide {
                divisor: divisor.as_ref(),
            },
            state,
        )?;
    }
    let modelled = match (i.op_count(), i.op0_kind(), i.op1_kind()) {
        (2, OpKind::Register, _) => into_register(i, state, memory, on)?,
        (2, OpKind::Memory, OpKind::Register) => from_register(i, state, on)?,
        _ => None,
    };
    let used = info.info_options(i, InstructionInfoOptions::NO_MEMORY_USAGE);
    // A memory operand read by anything but a move (a move's load is its own event).
    if i.op_count() == 2
        && i.op1_kind() == OpKind::Memory
        && !matches!(
            i.mnemonic(),
            Mnemonic::Mov | Mnemonic::Movzx | Mnemonic::Movsx | Mnemonic::Movsxd | Mnemonic::Lea
        )
        || i.op0_kind() == OpKind::Memory && matches!(used.op0_access(), OpAccess::Read)
    {
        let width = i.memory_size().size() as u8;
        if let Some(a) = address(i, state) {
            on(i, Event::Read { address: &a, width }, state)?;
        } else if let Some(base) = indexed_base(i, state) {
            // An element of a table tested in place (`cmpq $0, (%rcx,%rax,8)`).
            on(i, Event::IndexedLoad { base: &base, width }, state)?;
        }
    }
    // What the instruction writes into the frame: a register moved there, or unknown.
    if i.op0_kind() == OpKind::Memory
        && !matches!(used.op0_access(), OpAccess::Read | OpAccess::CondRead)
    {
        if let Some(Value::Frame(at)) = address(i, state) {
            let width = i.memory_size().size() as u8;
            let value = (i.mnemonic() == Mnemonic::Mov && i.op1_kind() == OpKind::Register)
                .then(|| state.get(i.op1_register()).cloned())
                .flatten();
            state.set_slot(at, width, value);
        }
    }
    // Whatever else the instruction writes is unknown afterwards.
    for u in used.used_registers() {
        if matches!(
            u.access(),
            OpAccess::Write | OpAccess::CondWrite | OpAccess::ReadWrite | OpAccess::ReadCondWrite
        ) {
            state.set(u.register(), None);
        }
    }
    if let Some((reg, value)) = modelled {
        state.set(reg, value);
    }
    Continue(())
}

/// `push` and `pop` of a register move `%rsp` and the slot it points to (`None`: not one).
fn push_or_pop(i: &Instruction, state: &mut State) -> Option<()> {
    let rsp = state.get(Register::RSP).cloned();
    match (i.mnemonic(), i.op0_kind()) {
        (Mnemonic::Push, kind) => {
            let below = rsp.and_then(|v| v.offset(-8));
            if let Some(Value::Frame(at)) = below {
                let value = (kind == OpKind::Register)
                    .then(|| state.get(i.op0_register()).cloned())
                    .flatten();
                state.set_slot(at, 8, value);
            }
            state.set(Register::RSP, below);
        }
        (Mnemonic::Pop, OpKind::Register) => {
            let value = match rsp {
                Some(Value::Frame(at)) => state.slot(at, 8).cloned(),
                _ => None,
            };
            state.set(Register::RSP, rsp.and_then(|v| v.offset(8)));
            state.set(i.op0_register(), value);
        }
        _ => return None,
    }
    Some(())
}

/// The value an instruction puts into its first operand, a register, where the engine models
/// it: moves, loads, address computations and pointer adjustments.
fn into_register<T>(
    i: &Instruction,
    state: &State,
    memory: &dyn Memory,
    on: &mut impl FnMut(&Instruction, Event<'_>, &State) -> ControlFlow<T>,
) -> ControlFlow<T, Write> {
    let dst = i.op0_register();
    let value = match (i.mnemonic(), i.op1_kind()) {
        (Mnemonic::Mov | Mnemonic::Movzx | Mnemonic::Movsx | Mnemonic::Movsxd, OpKind::Memory) => {
            match address(i, state) {
                Some(a) => {
                    let width = i.memory_size().size() as u8;
                    on(i, Event::Load { address: &a, width }, state)?;
                    match a {
                        Value::Frame(at) => state.slot(at, width).cloned(),
                        _ => load(i, &a, memory),
                    }
                }
                None => {
                    if let Some(base) = indexed_base(i, state) {
                        let width = i.memory_size().size() as u8;
                        on(i, Event::IndexedLoad { base: &base, width }, state)?;
                    }
                    None
                }
            }
        }
        (Mnemonic::Mov, OpKind::Register) => state.get(i.op1_register()).cloned(),
        (
            Mnemonic::Mov,
            OpKind::Immediate8
            | OpKind::Immediate16
            | OpKind::Immediate32
            | OpKind::Immediate32to64
            | OpKind::Immediate64,
        ) => Some(Value::Const(i.immediate(1))),
        (Mnemonic::Lea, OpKind::Memory) => address(i, state),
        (Mnemonic::Add, OpKind::Memory) => state
            .get(dst)
            .zip(address(i, state).and_then(|a| load(i, &a, memory)))
            .and_then(|(v, m)| v.plus(&m)),
        (Mnemonic::Add, OpKind::Immediate8to64 | OpKind::Immediate32to64 | OpKind::Immediate32) => {
            state.get(dst).and_then(|v| v.offset(i.immediate(1) as i64))
        }
        (Mnemonic::Sub, OpKind::Immediate8to64 | OpKind::Immediate32to64 | OpKind::Immediate32) => {
            state
                .get(dst)
                .and_then(|v| v.offset((i.immediate(1) as i64).wrapping_neg()))
        }
        _ => return Continue(None),
    };
    Continue(Some((dst, value)))
}

/// A register written to memory: a store, or a `lock xadd` fetching a counter's old value.
fn from_register<T>(
    i: &Instruction,
    state: &State,
    on: &mut impl FnMut(&Instruction, Event<'_>, &State) -> ControlFlow<T>,
) -> ControlFlow<T, Write> {
    match i.mnemonic() {
        Mnemonic::Mov => {
            if let Some(a) = address(i, state) {
                let event = Event::Store {
                    address: &a,
                    value: state.get(i.op1_register()),
                    width: i.memory_size().size() as u8,
                };
                on(i, event, state)?;
            }
            Continue(None)
        }
        Mnemonic::Xadd => Continue(Some((i.op1_register(), Some(Value::Fetched)))),
        _ => Continue(None),
    }
}

/// Where a memory operand points, where the registers it uses are known.
fn address(i: &Instruction, state: &State) -> Option<Value> {
    // Thread-local storage (the stack protector's canary): not an address in an object.
    if matches!(i.segment_prefix(), Register::FS | Register::GS) {
        return None;
    }
    if i.is_ip_rel_memory_operand() {
        return Some(Value::Address(i.ip_rel_memory_address()));
    }
    let base = match i.memory_base() {
        Register::None => return None,
        r => state.get(r)?.clone(),
    };
    let indexed = match i.memory_index() {
        Register::None => base,
        r => base.plus(&state.get(r)?.scaled(i.memory_index_scale())?)?,
    };
    indexed.offset(i.memory_displacement64() as i64)
}

/// The known part of a memory operand whose index register is unknown: base plus
/// displacement.
fn indexed_base(i: &Instruction, state: &State) -> Option<Value> {
    if i.memory_index() == Register::None || state.get(i.memory_index()).is_some() {
        return None;
    }
    let base = state.get(i.memory_base())?;
    base.offset(i.memory_displacement64() as i64)
}

/// What the memory operand of `i`, at `address`, holds.
fn load(i: &Instruction, address: &Value, memory: &dyn Memory) -> Option<Value> {
    let width = i.memory_size().size() as u8;
    memory.load(address, width).or_else(|| address.load(width))
}

/// How a function ends along its straight line (conditional branches not taken).
pub enum Exit {
    Return(State),
    /// An unconditional jump, with the state it jumps with (a tail call's arguments) and where
    /// it goes, if direct.
    Jump(State, Option<u64>),
    Call,
}

/// Runs a short function from `state` to its first `ret`, `jmp` or call (`None`: none within
/// `limit` instructions).
pub fn straight_line(
    code: &[u8],
    ip: u64,
    limit: usize,
    mut state: State,
    memory: &dyn Memory,
) -> Option<Exit> {
    run(
        code,
        ip,
        limit,
        &mut state,
        memory,
        |_, event, s| match event {
            Event::Return => Break(Exit::Return(s.clone())),
            Event::Jump { target } => Break(Exit::Jump(s.clone(), target)),
            Event::Call { .. } => Break(Exit::Call),
            Event::Load { .. }
            | Event::Read { .. }
            | Event::IndexedLoad { .. }
            | Event::Divide { .. }
            | Event::Store { .. } => Continue(()),
        },
    )
}
