//! Accessors of a per-type object picked through a constant table, e.g.
//! `AllocatorImpl::get_num_banks(BufferType const&) const`, evaluated for one concrete type.
use super::{
    abi,
    chain::Chain,
    engine::{straight_line, Exit, Memory},
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
        Exit::Jump(_) | Exit::Call => None,
    }
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
}
