//! Accessors of a per-type object picked through a constant table, e.g.
//! `AllocatorImpl::get_num_banks(BufferType const&) const`, evaluated for one concrete type.
use std::ops::ControlFlow::{Break, Continue};

use super::{
    abi,
    chain::Chain,
    engine::{run, straight_line, Event, Exit, Memory},
    state::State,
    value::Value,
};

/// Evaluates an accessor `T f(BufferType const&) const` for `kind`: constant tables in the
/// library are read with `read(address, width)`; conditional branches are taken as not taken
/// (they guard the error path). Returns the load chain from `this` that ends in `%rax`.
pub fn typed_accessor(
    code: &[u8],
    ip: u64,
    kind: u64,
    read: &dyn Fn(u64, u8) -> Option<u64>,
) -> Option<Chain> {
    let memory = Tables { kind, read };
    match straight_line(code, ip, 32, State::with_arguments([0, 1]), &memory)? {
        Exit::Return(s) => s.get(abi::RETURN)?.chain_from(0),
        Exit::Jump(..) | Exit::Call => None,
    }
}

/// Like [`typed_accessor`], for an accessor that picks the object through the table and then
/// tail-calls the object's own accessor: the chain to the object (`%rdi` at the jump) and the
/// callee.
pub fn typed_tail_call(
    code: &[u8],
    ip: u64,
    kind: u64,
    read: &dyn Fn(u64, u8) -> Option<u64>,
) -> Option<(Chain, u64)> {
    let memory = Tables { kind, read };
    match straight_line(code, ip, 32, State::with_arguments([0, 1]), &memory)? {
        Exit::Jump(s, Some(callee)) => {
            Some((s.get(iced_x86::Register::RDI)?.chain_from(0)?, callee))
        }
        Exit::Jump(..) | Exit::Return(_) | Exit::Call => None,
    }
}

/// Evaluates a method `f(BufferType const&, ...)` for `kind` up to its first call whose target
/// satisfies `is_target`: the load chain from `this` it hands that call as `this` (the per-type
/// object the method works on, e.g. the bank manager `reset_allocator_size` resets).
pub fn typed_member_at_call(
    code: &[u8],
    ip: u64,
    kind: u64,
    read: &dyn Fn(u64, u8) -> Option<u64>,
    is_target: &dyn Fn(u64) -> bool,
) -> Option<Chain> {
    let memory = Tables { kind, read };
    let mut state = State::with_arguments([0, 1]);
    run(
        code,
        ip,
        64,
        &mut state,
        &memory,
        |_, event, s| match event {
            Event::Call { target: Some(t) } if is_target(t) => {
                Break(s.get(iced_x86::Register::RDI).and_then(|v| v.chain_from(0)))
            }
            _ => Continue(()),
        },
    )
    .flatten()
}

/// The library's constant data (at a link-time address, or at one read from a table), and the
/// caller's `BufferType` that argument 1 refers to.
struct Tables<'a> {
    kind: u64,
    read: &'a dyn Fn(u64, u8) -> Option<u64>,
}

impl Memory for Tables<'_> {
    fn load(&self, address: &Value, width: u8) -> Option<Value> {
        match address {
            Value::Address(a) | Value::Const(a) => (self.read)(*a, width).map(Value::Const),
            Value::Derived(d) if d.root == 1 && d.loads.is_empty() && d.addend == 0 => {
                Some(Value::Const(self.kind))
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // AllocatorImpl::get_num_banks(BufferType const&) as tt-metal builds it:
    // mov (%rsi),%ecx ; mov $0x1b,%al ; shr %cl,%al ; cmp $4,%rcx ; ja +0x17 ; test $1,%al ;
    // je +0x13 ; lea 0x100(%rip),%rax ; mov (%rax,%rcx,8),%rax ; mov (%rdi,%rax,1),%rax ;
    // mov 0x20(%rax),%eax ; ret
    const NUM_BANKS: &[u8] = &[
        0x8b, 0x0e, 0xb0, 0x1b, 0xd2, 0xe8, 0x48, 0x83, 0xf9, 0x04, 0x77, 0x17, 0xa8, 0x01, 0x74,
        0x13, 0x48, 0x8d, 0x05, 0x00, 0x01, 0x00, 0x00, 0x48, 0x8b, 0x04, 0xc8, 0x48, 0x8b, 0x04,
        0x07, 0x8b, 0x40, 0x20, 0xc3,
    ];

    #[test]
    fn evaluates_a_table_indexed_accessor_per_type() {
        // The lea ends at 0x17: the table is at 0x117; entries are offsets of the managers.
        let table = |addr: u64, width: u8| {
            assert_eq!(width, 8);
            let i = (addr - 0x117) / 8;
            [0x30u64, 0x38, 0, 0x40, 0x48].get(i as usize).copied()
        };
        let dram = typed_accessor(NUM_BANKS, 0, 0, &table).unwrap();
        assert_eq!(
            dram,
            Chain {
                offsets: vec![0x30, 0x20],
                width: 4
            }
        );
        let l1 = typed_accessor(NUM_BANKS, 0, 1, &table).unwrap();
        assert_eq!(l1.offsets, vec![0x38, 0x20]);
        // Past the table: nothing to read, no chain.
        assert_eq!(typed_accessor(NUM_BANKS, 0, 9, &table), None);
    }

    #[test]
    fn evaluates_a_table_indexed_tail_call_per_type() {
        // ttnn 0.76.0: ... ; lea 0x100(%rip),%rax ; mov (%rax,%rcx,8),%rax ;
        // mov (%rdi,%rax,1),%rdi ; jmp <BankManager::num_banks() const>
        let mut code = NUM_BANKS[..27].to_vec();
        code.extend([0x48, 0x8b, 0x3c, 0x07, 0xe9, 0x00, 0x01, 0, 0]);
        let table = |addr: u64, _: u8| [0x30u64, 0x38].get(((addr - 0x117) / 8) as usize).copied();
        assert_eq!(
            typed_tail_call(&code, 0, 1, &table),
            Some((Chain::field(0x38, 8), 0x124))
        );
        assert_eq!(typed_accessor(&code, 0, 1, &table), None);
    }

    #[test]
    fn finds_the_per_type_object_a_method_hands_on() {
        // reset_allocator_size: mov %rsi,%r15 ; mov %rdi,%r14 ; lea 0x8(%rdi),%rdi ;
        // call <lock> ; mov (%r15),%ecx ; lea 0x100(%rip),%rax ; mov (%rax,%rcx,8),%rax ;
        // mov (%r14,%rax,1),%rdi ; call <reset_size>
        let code = [
            0x49, 0x89, 0xf7, 0x49, 0x89, 0xfe, 0x48, 0x8d, 0x7f, 0x08, 0xe8, 0, 0, 0, 0, 0x41,
            0x8b, 0x0f, 0x48, 0x8d, 0x05, 0x00, 0x01, 0, 0, 0x48, 0x8b, 0x04, 0xc8, 0x49, 0x8b,
            0x3c, 0x06, 0xe8, 0, 0, 0, 0,
        ];
        // The lea ends at 0x19: the table is at 0x119.
        let table = |addr: u64, _: u8| [0x30u64, 0x38].get(((addr - 0x119) / 8) as usize).copied();
        let reset = |t: u64| t == 0x26;
        assert_eq!(
            typed_member_at_call(&code, 0, 1, &table, &reset),
            Some(Chain::field(0x38, 8))
        );
        assert_eq!(
            typed_member_at_call(&code, 0, 1, &table, &|t| t == 0xf),
            None
        );
    }
}
