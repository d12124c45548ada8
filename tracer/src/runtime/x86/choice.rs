//! Accessors that choose between members, and members reached without a load of their own:
//! - `CircularBufferImpl::address() const` returns the address of the L1 buffer a globally
//!   allocated CB sits on, else its locally allocated address (a `std::optional<uint32_t>`,
//!   whose engaged flag it checks): one load per `ret`, each after the tests that pick it
//!   ([`returned_paths`]);
//! - `CircularBuffer::core_ranges() const` returns the address of a member of its
//!   implementation object, `CircularBufferImpl::is_on_logical_corerange` hands one on to the
//!   `CoreRangeSet` method it tail-calls ([`member_address`]);
//! - `CircularBufferImpl::assign_global_address()` stores a computed value into a member
//!   ([`member_stores`]).
use std::ops::ControlFlow::{Break, Continue};

use iced_x86::{Instruction, Mnemonic, OpKind, Register};

use super::{
    abi,
    chain::Chain,
    engine::{decode, run, Event, Unknown},
    state::State,
    value::Value,
};

/// A field a path tests (`cmp`/`test` with a memory operand), with the constant it tests it
/// against or with (a `test`'s mask, a `cmp`'s operand), where known.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tested {
    pub field: Chain,
    pub with: Option<u64>,
}

/// One way through a function to a `ret`: the fields tested on the way, and what it returns.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Path {
    pub tested: Vec<Tested>,
    pub returned: Option<Chain>,
}

/// The paths of a short accessor of `this`, in address order. The engine reads one straight
/// line; after each `ret`, the code that follows is reached by a conditional branch taken
/// earlier, and it is read again from the registers as they were at that branch (known where
/// the instruction before the branch was a test the walk saw; else only `this` in `%rdi`:
/// accessors whose branches only test fields). Ends at the first call or after `limit`
/// instructions.
pub fn returned_paths(code: &[u8], ip: u64, limit: usize) -> Vec<Path> {
    // Conditional branches: (where the branch is, where it goes).
    let branches: Vec<(u64, u64)> = decode(code, ip, limit)
        .filter(|i| i.is_jcc_short_or_near())
        .map(|i| (i.ip(), i.near_branch_target()))
        .collect();
    // The registers before each test the walks saw, by the address right after the test.
    let mut before: Vec<(u64, State)> = Vec::new();
    let mut out = Vec::new();
    let mut at = ip;
    let mut budget = limit;
    let mut state = State::with_arguments([0]);
    while budget > 0 && at < ip + code.len() as u64 {
        let start = (at - ip) as usize;
        let mut tested = Vec::new();
        let mut steps = 0usize;
        let end = run(
            &code[start..],
            at,
            budget,
            &mut state,
            &Unknown,
            |i, event, s| {
                steps += 1;
                match event {
                    Event::Call { .. } => Break(None),
                    Event::Return => Break(Some((
                        i.next_ip(),
                        s.get(abi::RETURN).and_then(|v| v.chain_from(0)),
                    ))),
                    Event::Read { address, width }
                        if matches!(i.mnemonic(), Mnemonic::Test | Mnemonic::Cmp) =>
                    {
                        before.push((i.next_ip(), s.clone()));
                        if let Some(field) = address.load(width).and_then(|v| v.chain_from(0)) {
                            tested.push(Tested {
                                field,
                                with: constant_operand(i, s),
                            });
                        }
                        Continue(())
                    }
                    _ => Continue(()),
                }
            },
        );
        let Some(Some((next, returned))) = end else {
            break;
        };
        out.push(Path { tested, returned });
        budget = budget.saturating_sub(steps.max(1));
        at = next;
        state = branches
            .iter()
            .find(|(_, to)| *to == next)
            .and_then(|(from, _)| before.iter().find(|(after, _)| after == from))
            .map(|(_, s)| s.clone())
            .unwrap_or_else(|| State::with_arguments([0]));
    }
    out
}

/// The constant a `test` or `cmp` with a memory operand uses: its immediate, or a register
/// the engine knows the value of.
fn constant_operand(i: &Instruction, s: &State) -> Option<u64> {
    let other = if i.op0_kind() == OpKind::Memory { 1 } else { 0 };
    match i.op_kind(other) {
        OpKind::Register => match s.get(i.op_register(other))? {
            Value::Const(c) => Some(*c),
            _ => None,
        },
        OpKind::Immediate8
        | OpKind::Immediate16
        | OpKind::Immediate32
        | OpKind::Immediate8to32
        | OpKind::Immediate8to64
        | OpKind::Immediate32to64 => Some(i.immediate(other)),
        _ => None,
    }
}

/// The address a short function returns in `%rax`, or hands on in `%rdi` to the function it
/// jumps to: `(pointer loads from this, displacement)` of a member object (`lea d(%rdi)`, or
/// `d` past a pointer member's target).
pub fn member_address(code: &[u8], ip: u64) -> Option<(Vec<i32>, i32)> {
    let mut state = State::with_arguments([0]);
    let got = run(
        code,
        ip,
        16,
        &mut state,
        &Unknown,
        |_, event, s| match event {
            Event::Return => Break(s.get(abi::RETURN).cloned()),
            Event::Jump { .. } => Break(s.get(Register::RDI).cloned()),
            Event::Call { .. } => Break(None),
            _ => Continue(()),
        },
    )??;
    let d = got.derived()?;
    (d.root == 0 && d.addend > 0).then(|| (d.loads.clone(), d.addend as i32))
}

/// Members of `this` a function stores into before its first `ret`, whatever it stores (a
/// computed value too): `(offset, width)` in program order. `this` may be kept in a
/// callee-saved register across calls.
pub fn member_stores(code: &[u8], ip: u64, limit: usize) -> Vec<(i32, u8)> {
    let mut out = Vec::new();
    let mut state = State::with_arguments([0]);
    run(code, ip, limit, &mut state, &Unknown, |_, event, _| {
        match event {
            Event::Return => return Break(()),
            Event::Store { address, width, .. } => {
                if let Some(d) = address.derived() {
                    if d.root == 0 && d.loads.is_empty() {
                        out.push((d.addend as i32, width));
                    }
                }
            }
            _ => {}
        }
        Continue(())
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_return_after_its_tests() {
        // movabs $0x100000000,%rax ; cmpb $0,0x1174(%rdi) ; je L1 ; test %rax,0x2c(%rdi) ;
        // jne L2 ; add $0x1170,%rdi ; mov (%rdi),%eax ; ret ;
        // L1: test %rax,0x2c(%rdi) ; je L3 ; L2: add $0x1178,%rdi ; mov (%rdi),%eax ; ret ;
        // L3: push %rax ; call +0
        let code = [
            0x48, 0xb8, 0, 0, 0, 0, 1, 0, 0, 0, 0x80, 0xbf, 0x74, 0x11, 0, 0, 0, 0x74, 0x10, 0x48,
            0x85, 0x47, 0x2c, 0x75, 0x10, 0x48, 0x81, 0xc7, 0x70, 0x11, 0, 0, 0x8b, 0x07, 0xc3,
            0x48, 0x85, 0x47, 0x2c, 0x74, 0x0a, 0x48, 0x81, 0xc7, 0x78, 0x11, 0, 0, 0x8b, 0x07,
            0xc3, 0x50, 0xe8, 0, 0, 0, 0,
        ];
        let paths = returned_paths(&code, 0x1000, 64);
        let bit = Some(1u64 << 32);
        assert_eq!(
            paths,
            vec![
                Path {
                    tested: vec![
                        Tested {
                            field: Chain::field(0x1174, 1),
                            with: Some(0)
                        },
                        Tested {
                            field: Chain::field(0x2c, 8),
                            with: bit
                        },
                    ],
                    returned: Some(Chain::field(0x1170, 4)),
                },
                Path {
                    tested: vec![Tested {
                        field: Chain::field(0x2c, 8),
                        with: bit
                    }],
                    returned: Some(Chain::field(0x1178, 4)),
                },
            ]
        );
    }

    #[test]
    fn member_addresses_returned_or_handed_on() {
        // mov (%rdi),%rax ; add $0x8,%rax ; ret
        let pimpl = [0x48, 0x8b, 0x07, 0x48, 0x83, 0xc0, 0x08, 0xc3];
        assert_eq!(member_address(&pimpl, 0), Some((vec![0], 8)));
        // add $0x8,%rdi ; jmp +0
        let forwarded = [0x48, 0x83, 0xc7, 0x08, 0xe9, 0, 0, 0, 0];
        assert_eq!(member_address(&forwarded, 0), Some((vec![], 8)));
        // mov 0x8(%rdi),%rax ; ret: a value, not an address.
        let value = [0x48, 0x8b, 0x47, 0x08, 0xc3];
        assert_eq!(member_address(&value, 0), None);
    }

    #[test]
    fn a_computed_store_into_a_member() {
        // push %rbx ; mov %rdi,%rbx ; mov 0x20(%rdi),%rdi ; call +0 ; add 0x116c(%rbx),%eax ;
        // mov %eax,0x1178(%rbx) ; pop %rbx ; ret
        let code = [
            0x53, 0x48, 0x89, 0xfb, 0x48, 0x8b, 0x7f, 0x20, 0xe8, 0, 0, 0, 0, 0x03, 0x83, 0x6c,
            0x11, 0, 0, 0x89, 0x83, 0x78, 0x11, 0, 0, 0x5b, 0xc3,
        ];
        assert_eq!(member_stores(&code, 0, 32), vec![(0x1178, 4)]);
    }
}
