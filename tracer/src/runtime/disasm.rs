//! Reading struct layouts out of machine code (x86-64 System V).
//!
//! Two patterns cover what tt-metal's release binaries offer:
//! - out-of-line accessors (`Buffer::size() const`): a chain of loads from `this` into the
//!   return register, e.g. `mov 0x10(%rdi),%rax; mov 0x8(%rax),%rax; ret`;
//! - constructors that store their arguments into `this`, e.g. `mov %rdx,0x18(%rdi)`, and a
//!   `lock xadd` of a global counter for unique ids.
use iced_x86::{Decoder, DecoderOptions, Instruction, Mnemonic, OpKind, Register};

/// Loads from an argument: `offsets[..n-1]` are pointer hops, the last one reads `width` bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Chain {
    pub offsets: Vec<i32>,
    pub width: u8,
}

impl Chain {
    pub fn field(offset: i32, width: u8) -> Self {
        Self {
            offsets: vec![offset],
            width,
        }
    }

    /// This chain, reached through a pointer that `self` loads (e.g. device -> vtable).
    pub fn then(&self, offset: i32, width: u8) -> Self {
        let mut offsets = self.offsets.clone();
        offsets.push(offset);
        Self { offsets, width }
    }

    pub fn describe(&self) -> String {
        let hops: Vec<_> = self.offsets.iter().map(|o| format!("+{o:#x}")).collect();
        format!("{}:{}", hops.join("->"), self.width)
    }
}

const ARG_REGS: [Register; 6] = [
    Register::RDI,
    Register::RSI,
    Register::RDX,
    Register::RCX,
    Register::R8,
    Register::R9,
];

pub(super) const CALLER_SAVED: [Register; 9] = [
    Register::RAX,
    Register::RCX,
    Register::RDX,
    Register::RSI,
    Register::RDI,
    Register::R8,
    Register::R9,
    Register::R10,
    Register::R11,
];

pub(super) fn decode(code: &[u8], ip: u64, max: usize) -> Vec<Instruction> {
    let mut d = Decoder::with_ip(64, code, ip, DecoderOptions::NONE);
    let mut out = Vec::new();
    while d.can_decode() && out.len() < max {
        out.push(d.decode());
    }
    out
}

fn is_load(i: &Instruction) -> bool {
    matches!(
        i.mnemonic(),
        Mnemonic::Mov | Mnemonic::Movzx | Mnemonic::Movsx | Mnemonic::Movsxd
    )
}

/// Follows loads from `arg` (0 = `this`) until `ret`; returns the chain that ends in RAX.
/// `None` when the function does anything else with its result (calls, arithmetic).
pub fn accessor_chain(code: &[u8], ip: u64, arg: usize) -> Option<Chain> {
    let mut state: std::collections::HashMap<Register, Chain> = Default::default();
    state.insert(
        ARG_REGS[arg],
        Chain {
            offsets: vec![],
            width: 8,
        },
    );
    for i in decode(code, ip, 32) {
        match i.mnemonic() {
            Mnemonic::Ret => {
                return state
                    .get(&Register::RAX)
                    .filter(|c| !c.offsets.is_empty())
                    .cloned()
            }
            Mnemonic::Cmp | Mnemonic::Test | Mnemonic::Nop | Mnemonic::Endbr64 => continue,
            m if i.is_jcc_short_or_near() => {
                let _ = m;
                continue;
            }
            Mnemonic::Call | Mnemonic::Jmp => return None,
            _ => {}
        }
        if i.op_count() == 0 || i.op0_kind() != OpKind::Register {
            continue;
        }
        let dst = i.op0_register().full_register();
        let value = if is_load(&i) && i.op1_kind() == OpKind::Memory {
            let base = i.memory_base().full_register();
            match state.get(&base) {
                Some(c) if i.memory_index() == Register::None => Some(c.then(
                    i.memory_displacement64() as i64 as i32,
                    i.memory_size().size() as u8,
                )),
                _ => None,
            }
        } else if i.mnemonic() == Mnemonic::Mov && i.op1_kind() == OpKind::Register {
            state.get(&i.op1_register().full_register()).cloned()
        } else {
            None
        };
        match value {
            Some(v) => state.insert(dst, v),
            None => state.remove(&dst),
        };
    }
    None
}

/// A value a constructor stores into `this`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stored {
    /// The n-th argument register (1 = first parameter after `this`).
    Arg(usize),
    /// The result of a `lock xadd` (a fetch-and-increment of a global id counter).
    Counter,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Store {
    pub value: Stored,
    pub offset: i32,
    pub width: u8,
}

/// Stores into `this` (RDI on entry) of argument registers and counters, in program order,
/// following a linear sweep of the first `max` instructions.
pub fn constructor_stores(code: &[u8], ip: u64, max: usize) -> Vec<Store> {
    #[derive(Clone, Copy, PartialEq)]
    enum V {
        This,
        Val(Stored),
    }
    let mut state: std::collections::HashMap<Register, V> = Default::default();
    state.insert(Register::RDI, V::This);
    for (n, r) in ARG_REGS.iter().enumerate().skip(1) {
        state.insert(*r, V::Val(Stored::Arg(n)));
    }
    let mut out = Vec::new();
    for i in decode(code, ip, max) {
        match i.mnemonic() {
            Mnemonic::Ret => break,
            Mnemonic::Call => {
                for r in CALLER_SAVED {
                    state.remove(&r);
                }
                continue;
            }
            Mnemonic::Xadd if i.op1_kind() == OpKind::Register => {
                state.insert(i.op1_register().full_register(), V::Val(Stored::Counter));
                continue;
            }
            Mnemonic::Cmp | Mnemonic::Test | Mnemonic::Push => continue,
            _ => {}
        }
        if i.op_count() < 2 {
            continue;
        }
        // Store: mov %reg, disp(%this)
        if i.mnemonic() == Mnemonic::Mov
            && i.op0_kind() == OpKind::Memory
            && i.op1_kind() == OpKind::Register
            && i.memory_index() == Register::None
            && state.get(&i.memory_base().full_register()) == Some(&V::This)
        {
            if let Some(V::Val(v)) = state.get(&i.op1_register().full_register()) {
                out.push(Store {
                    value: *v,
                    offset: i.memory_displacement64() as i64 as i32,
                    width: i.memory_size().size() as u8,
                });
            }
            continue;
        }
        if i.op0_kind() != OpKind::Register {
            continue;
        }
        let dst = i.op0_register().full_register();
        let copied = if i.mnemonic() == Mnemonic::Mov && i.op1_kind() == OpKind::Register {
            state.get(&i.op1_register().full_register()).copied()
        } else {
            None
        };
        match copied {
            Some(v) => state.insert(dst, v),
            None => state.remove(&dst),
        };
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    // mov 0x10(%rdi),%rax ; mov 0x8(%rax),%rax ; ret
    const PIMPL_SIZE: &[u8] = &[0x48, 0x8b, 0x47, 0x10, 0x48, 0x8b, 0x40, 0x08, 0xc3];
    // cmpb $0,0x48(%rdi) ; je +4 ; mov 0x50(%rdi),%eax ; ret ; push %rax
    const GUARDED_ADDRESS: &[u8] = &[
        0x80, 0x7f, 0x48, 0x00, 0x74, 0x04, 0x8b, 0x47, 0x50, 0xc3, 0x50,
    ];

    #[test]
    fn follows_pimpl_accessor() {
        let c = accessor_chain(PIMPL_SIZE, 0x1000, 0).unwrap();
        assert_eq!(c.offsets, vec![0x10, 0x8]);
        assert_eq!(c.width, 8);
    }

    #[test]
    fn skips_status_check_before_load() {
        let c = accessor_chain(GUARDED_ADDRESS, 0x1000, 0).unwrap();
        assert_eq!(c, Chain::field(0x50, 4));
    }

    #[test]
    fn rejects_computed_results() {
        // mov $0xa0,%eax ; add 0x10(%rdi),%rax ; ret
        let code = [0xb8, 0xa0, 0, 0, 0, 0x48, 0x03, 0x47, 0x10, 0xc3];
        assert_eq!(accessor_chain(&code, 0, 0), None);
    }

    #[test]
    fn finds_constructor_stores_through_register_copies() {
        // mov %rsi,%rbp ; mov %rdi,%rbx ; mov %rbp,0x10(%rbx) ; mov %rdx,0x18(%rdi) ;
        // mov %r8d,0x20(%rdi) ; mov $1,%ecx ; lock xadd %rcx,(%rax) ; mov %rcx,0x220(%rbx) ; ret
        let code = [
            0x48, 0x89, 0xf5, 0x48, 0x89, 0xfb, 0x48, 0x89, 0x6b, 0x10, 0x48, 0x89, 0x57, 0x18,
            0x44, 0x89, 0x47, 0x20, 0xb9, 0x01, 0, 0, 0, 0xf0, 0x48, 0x0f, 0xc1, 0x08, 0x48, 0x89,
            0x8b, 0x20, 0x02, 0, 0, 0xc3,
        ];
        let s = constructor_stores(&code, 0, 100);
        assert_eq!(
            s,
            vec![
                Store {
                    value: Stored::Arg(1),
                    offset: 0x10,
                    width: 8
                },
                Store {
                    value: Stored::Arg(2),
                    offset: 0x18,
                    width: 8
                },
                Store {
                    value: Stored::Arg(4),
                    offset: 0x20,
                    width: 4
                },
                Store {
                    value: Stored::Counter,
                    offset: 0x220,
                    width: 8
                },
            ]
        );
    }
}

/// A symbolic value while interpreting a getter: loads from `this` (`Ptr`), an address inside
/// such an object (`Addr`), or a constant.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Sym {
    Ptr(Vec<i32>),
    Addr(Vec<i32>, i64),
    Const(i64),
}

/// Where a getter that returns a `std::vector` by value (`this` in RSI, the result in RDI)
/// finds its source vector: `(loads, offset)` = follow `loads` from `this`, then the vector
/// object (begin, end) sits at `+offset`. Follows one delegation to `callee` when the getter
/// passes a loaded pointer on as the callee's `this`.
pub fn vector_getter(
    code: &[u8],
    ip: u64,
    callee: Option<(&[u8], u64)>,
) -> Option<(Vec<i32>, i64)> {
    interpret_getter(code, ip, Sym::Ptr(vec![]), callee)
}

fn interpret_getter(
    code: &[u8],
    ip: u64,
    this: Sym,
    callee: Option<(&[u8], u64)>,
) -> Option<(Vec<i32>, i64)> {
    let mut state: std::collections::HashMap<Register, Sym> = Default::default();
    state.insert(Register::RSI, this);
    let mut loads: Vec<(Vec<i32>, i64)> = Vec::new();
    // (object loads, offset) of a memory operand whose base register is symbolic.
    let mem_of = |state: &std::collections::HashMap<Register, Sym>, i: &Instruction| {
        if i.memory_index() != Register::None {
            return None;
        }
        let disp = i.memory_displacement64() as i64;
        match state.get(&i.memory_base().full_register())? {
            Sym::Ptr(h) => Some((h.clone(), disp)),
            Sym::Addr(h, a) => Some((h.clone(), a + disp)),
            Sym::Const(_) => None,
        }
    };
    for i in decode(code, ip, 64) {
        match i.mnemonic() {
            Mnemonic::Ret => return None,
            Mnemonic::Call => {
                match state.get(&Register::RSI).cloned() {
                    // A vector passed by reference to a helper (e.g. a filter/copy).
                    Some(Sym::Addr(h, a)) => return Some((h, a)),
                    Some(p @ Sym::Ptr(_)) => {
                        let (code, ip) = callee?;
                        return interpret_getter(code, ip, p, None);
                    }
                    _ => {}
                }
                for r in CALLER_SAVED {
                    state.remove(&r);
                }
                continue;
            }
            _ => {}
        }
        if i.op_count() < 2 || i.op0_kind() != OpKind::Register {
            continue;
        }
        let dst = i.op0_register().full_register();
        let value = match (i.mnemonic(), i.op1_kind()) {
            (Mnemonic::Mov, OpKind::Memory) => mem_of(&state, &i).map(|(h, off)| {
                // Two loads 8 bytes apart from one object: a vector's begin and end.
                if let Some(prev) = loads
                    .iter()
                    .find(|(ph, po)| *ph == h && (po - off).abs() == 8)
                {
                    let at = prev.1.min(off);
                    return Err((h.clone(), at));
                }
                loads.push((h.clone(), off));
                let mut h = h;
                h.push(off as i32);
                Ok(Sym::Ptr(h))
            }),
            (Mnemonic::Mov, OpKind::Register) => state
                .get(&i.op1_register().full_register())
                .cloned()
                .map(Ok),
            (
                Mnemonic::Mov,
                OpKind::Immediate32 | OpKind::Immediate32to64 | OpKind::Immediate64,
            ) => Some(Ok(Sym::Const(i.immediate(1) as i64))),
            (Mnemonic::Lea, OpKind::Memory) => {
                mem_of(&state, &i).map(|(h, off)| Ok(Sym::Addr(h, off)))
            }
            (Mnemonic::Add, OpKind::Memory) => match (state.get(&dst).cloned(), mem_of(&state, &i))
            {
                (Some(Sym::Const(c)), Some((mut h, off))) => {
                    h.push(off as i32);
                    Some(Ok(Sym::Addr(h, c)))
                }
                _ => None,
            },
            (
                Mnemonic::Add,
                OpKind::Immediate8to64 | OpKind::Immediate32to64 | OpKind::Immediate32,
            ) => match state.get(&dst).cloned() {
                Some(Sym::Ptr(h)) => Some(Ok(Sym::Addr(h, i.immediate(1) as i64))),
                Some(Sym::Addr(h, a)) => Some(Ok(Sym::Addr(h, a + i.immediate(1) as i64))),
                _ => None,
            },
            _ => None,
        };
        match value {
            Some(Err(found)) => return Some(found),
            Some(Ok(v)) => {
                state.insert(dst, v);
            }
            None => {
                state.remove(&dst);
            }
        }
    }
    None
}

#[cfg(test)]
mod getter_tests {
    use super::*;

    #[test]
    fn finds_cached_vector_in_pimpl() {
        // mov %rdi,%rbx ; mov 0x18(%rsi),%r12 ; mov 0x78(%r12),%r15 ; mov 0x80(%r12),%r14
        let code = [
            0x48, 0x89, 0xfb, 0x4c, 0x8b, 0x66, 0x18, 0x4d, 0x8b, 0x7c, 0x24, 0x78, 0x4d, 0x8b,
            0xb4, 0x24, 0x80, 0, 0, 0,
        ];
        assert_eq!(vector_getter(&code, 0, None), Some((vec![0x18], 0x78)));
    }

    #[test]
    fn follows_delegation_to_view() {
        // mov 0x18(%rsi),%r14 ; mov 0x58(%r14),%rsi ; call <callee>
        let outer = [
            0x4c, 0x8b, 0x76, 0x18, 0x49, 0x8b, 0x76, 0x58, 0xe8, 0, 0, 0, 0,
        ];
        // mov $0x178,%eax ; add (%rsi),%rax ; mov %rax,%rsi ; call <helper>
        let inner = [
            0xb8, 0x78, 0x01, 0, 0, 0x48, 0x03, 0x06, 0x48, 0x89, 0xc6, 0xe8, 0, 0, 0, 0,
        ];
        assert_eq!(
            vector_getter(&outer, 0, Some((&inner, 0x1000))),
            Some((vec![0x18, 0x58, 0], 0x178))
        );
    }
}

/// A call whose format-string register (`%r8`, the `fmt::fstring` of tt-metal's `tt_throw`)
/// was loaded with the address of one of `strings` just before it: the throw of that message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MessageCall {
    /// Address of the call instruction (a uprobe there sees the pushed arguments at `%rsp`).
    pub call: u64,
    pub target: u64,
    pub string: u64,
}

/// Calls that pass one of `strings` in `%r8`, in a linear sweep of the function.
pub fn message_calls(code: &[u8], ip: u64, strings: &[u64]) -> Vec<MessageCall> {
    let mut pending: Option<u64> = None;
    let mut out = Vec::new();
    for i in decode(code, ip, usize::MAX) {
        if i.mnemonic() == Mnemonic::Lea
            && i.op0_kind() == OpKind::Register
            && i.op0_register().full_register() == Register::R8
        {
            pending = (i.is_ip_rel_memory_operand()
                && strings.contains(&i.ip_rel_memory_address()))
            .then(|| i.ip_rel_memory_address());
            continue;
        }
        if i.mnemonic() == Mnemonic::Call {
            if let (Some(string), OpKind::NearBranch64) = (pending, i.op0_kind()) {
                out.push(MessageCall {
                    call: i.ip(),
                    target: i.near_branch_target(),
                    string,
                });
            }
            pending = None;
        }
    }
    out
}

/// Loads from `this` through a sequence of accessors that tail-call each other, e.g.
/// `MeshDevice::num_rows() -> MeshDeviceView::num_rows() -> Shape2D::height()`: each function
/// but the last must end in a `jmp` with the next one's `this` in `%rdi` (pointer adjustments
/// by `add $imm` are folded into the next load); the last must return a load chain in `%rax`.
/// Conditional branches are assumed not taken (they guard error paths).
pub fn tail_accessor(functions: &[(&[u8], u64)]) -> Option<Chain> {
    // Register -> (loads, pending addend).
    let mut this: (Vec<i32>, i64) = (vec![], 0);
    for (n, (code, ip)) in functions.iter().enumerate() {
        let last = n + 1 == functions.len();
        let mut state: std::collections::HashMap<Register, (Vec<i32>, i64, u8)> =
            Default::default();
        state.insert(Register::RDI, (this.0.clone(), this.1, 8));
        let mut next = None;
        for i in decode(code, *ip, 32) {
            match i.mnemonic() {
                Mnemonic::Ret => {
                    if !last {
                        return None;
                    }
                    let (loads, add, width) = state.get(&Register::RAX)?.clone();
                    return (add == 0 && !loads.is_empty()).then_some(Chain {
                        offsets: loads,
                        width,
                    });
                }
                Mnemonic::Jmp => {
                    let (loads, add, _) = state.get(&Register::RDI)?.clone();
                    next = Some((loads, add));
                    break;
                }
                Mnemonic::Call => return None,
                Mnemonic::Cmp | Mnemonic::Test | Mnemonic::Nop | Mnemonic::Endbr64 => continue,
                _ if i.is_jcc_short_or_near() => continue,
                _ => {}
            }
            if i.op_count() < 2 || i.op0_kind() != OpKind::Register {
                continue;
            }
            let dst = i.op0_register().full_register();
            let value = match (i.mnemonic(), i.op1_kind()) {
                (m, OpKind::Memory) if is_load(&i) && m != Mnemonic::Lea => {
                    match state.get(&i.memory_base().full_register()) {
                        Some((loads, add, _)) if i.memory_index() == Register::None => {
                            let mut loads = loads.clone();
                            loads.push((add + i.memory_displacement64() as i64) as i32);
                            Some((loads, 0, i.memory_size().size() as u8))
                        }
                        _ => None,
                    }
                }
                (Mnemonic::Mov, OpKind::Register) => {
                    state.get(&i.op1_register().full_register()).cloned()
                }
                (
                    Mnemonic::Add,
                    OpKind::Immediate8to64 | OpKind::Immediate32to64 | OpKind::Immediate32,
                ) => state
                    .get(&dst)
                    .map(|(l, a, w)| (l.clone(), a + i.immediate(1) as i64, *w)),
                _ => None,
            };
            match value {
                Some(v) => state.insert(dst, v),
                None => state.remove(&dst),
            };
        }
        this = next?;
        if last {
            return None;
        }
    }
    None
}

/// Whether a function sets up a frame pointer (`mov %rsp,%rbp`) in its prologue: without it,
/// a kernel stack walk cannot get past the probed function.
pub fn sets_frame_pointer(code: &[u8], ip: u64) -> bool {
    decode(code, ip, 12).iter().any(|i| {
        i.mnemonic() == Mnemonic::Mov
            && i.op_count() == 2
            && i.op0_kind() == OpKind::Register
            && i.op1_kind() == OpKind::Register
            && i.op0_register() == Register::RBP
            && i.op1_register() == Register::RSP
    })
}

#[cfg(test)]
mod lifecycle_tests {
    use super::*;

    #[test]
    fn follows_tail_calls_into_the_final_load() {
        // MeshDevice::num_rows: mov 0x18(%rdi),%rax ; mov 0x70(%rax),%rdi ; jmp <view>
        let a = [
            0x48, 0x8b, 0x47, 0x18, 0x48, 0x8b, 0x78, 0x70, 0xe9, 0, 0, 0, 0,
        ];
        // view: mov (%rdi),%rdi ; cmpb $0,0x370(%rdi) ; je +0 ; add $0x360,%rdi ; jmp <shape>
        let b = [
            0x48, 0x8b, 0x3f, 0x80, 0xbf, 0x70, 0x03, 0, 0, 0, 0x74, 0x00, 0x48, 0x81, 0xc7, 0x60,
            0x03, 0, 0, 0xe9, 0, 0, 0, 0,
        ];
        // Shape2D::width: mov 0x8(%rdi),%rax ; ret
        let c = [0x48, 0x8b, 0x47, 0x08, 0xc3];
        let chain = tail_accessor(&[(&a, 0), (&b, 0x100), (&c, 0x200)]).unwrap();
        assert_eq!(chain.offsets, vec![0x18, 0x70, 0, 0x368]);
        assert_eq!(chain.width, 8);
    }

    #[test]
    fn finds_the_call_that_throws_a_message() {
        // lea 0x100(%rip),%r8 ; mov $0xc1,%r9d ; push %rax ; call +0
        let code = [
            0x4c, 0x8d, 0x05, 0x00, 0x01, 0, 0, 0x41, 0xb9, 0xc1, 0, 0, 0, 0x50, 0xe8, 0, 0, 0, 0,
        ];
        let calls = message_calls(&code, 0x1000, &[0x1107]);
        assert_eq!(
            calls,
            vec![MessageCall {
                call: 0x100e,
                target: 0x1013,
                string: 0x1107
            }]
        );
        assert!(message_calls(&code, 0x1000, &[0x2000]).is_empty());
    }

    #[test]
    fn tells_frame_pointer_prologues() {
        // push %rbp ; mov %rsp,%rbp ; ret
        assert!(sets_frame_pointer(&[0x55, 0x48, 0x89, 0xe5, 0xc3], 0));
        // push %rbp ; push %r15 ; ret
        assert!(!sets_frame_pointer(&[0x55, 0x41, 0x57, 0xc3], 0));
    }
}
