//! What a short function reads of an object it is handed, and what it divides by what:
//! fields found where no accessor returns them (`Buffer::is_dram() const` tests the buffer
//! type, `Buffer::num_pages() const` divides the size by the page size).
use std::ops::ControlFlow::{Break, Continue};

use super::{
    chain::Chain,
    engine::{run, Event, Unknown},
    state::State,
    value::Value,
};

/// Every field of argument `arg` (0 = `this`) the function reads before its first `ret` or
/// call, in program order, each as the load chain from `arg` (pointer hops included: a read
/// through a loaded pointer comes after the load of the pointer).
pub fn field_reads(code: &[u8], ip: u64, arg: usize, limit: usize) -> Vec<Chain> {
    let mut out = Vec::new();
    let mut state = State::with_arguments([arg]);
    run(code, ip, limit, &mut state, &Unknown, |_, event, _| {
        match event {
            Event::Return | Event::Call { .. } => return Break(()),
            Event::Load { address, width } | Event::Read { address, width } => {
                if let Some(c) = address.load(width).and_then(|v| v.chain_from(arg)) {
                    out.push(c);
                }
            }
            _ => {}
        }
        Continue(())
    });
    out
}

/// At the function's first division (before any call): the dividend (`%rax`) and the divisor,
/// each as the load chain from `this`.
pub fn quotient(code: &[u8], ip: u64) -> Option<(Chain, Chain)> {
    let mut state = State::with_arguments([0]);
    run(
        code,
        ip,
        64,
        &mut state,
        &Unknown,
        |_, event, s| match event {
            Event::Call { .. } => Break(None),
            Event::Divide { divisor } => Break(
                s.get(super::abi::RETURN)
                    .and_then(|v| v.chain_from(0))
                    .zip(divisor.and_then(|d| d.chain_from(0))),
            ),
            _ => Continue(()),
        },
    )
    .flatten()
}

/// The member of `this` whose pointer a function indexes for what it returns (an element
/// of a vector member: `v_[i]`), as the load chain of that pointer.
pub fn indexed_member(code: &[u8], ip: u64) -> Option<Chain> {
    let mut state = State::with_arguments([0]);
    run(
        code,
        ip,
        64,
        &mut state,
        &Unknown,
        |_, event, _| match event {
            Event::Return | Event::Call { .. } => Break(None),
            Event::IndexedLoad { base, .. } => match base {
                Value::Derived(_) => Break(base.chain_from(0)),
                _ => Continue(()),
            },
            _ => Continue(()),
        },
    )
    .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_the_fields_a_predicate_reads() {
        // testl $0xfffffffb,0x20(%rdi) ; sete %al ; ret
        let flat = [
            0xf7, 0x47, 0x20, 0xfb, 0xff, 0xff, 0xff, 0x0f, 0x94, 0xc0, 0xc3,
        ];
        assert_eq!(field_reads(&flat, 0, 0, 16), vec![Chain::field(0x20, 4)]);
        // mov 0x10(%rdi),%rax ; mov 0x10(%rax),%eax ; and $-3,%eax ; ret
        let pimpl = [
            0x48, 0x8b, 0x47, 0x10, 0x8b, 0x40, 0x10, 0x83, 0xe0, 0xfd, 0xc3,
        ];
        assert_eq!(
            field_reads(&pimpl, 0, 0, 16),
            vec![
                Chain::field(0x10, 8),
                Chain {
                    offsets: vec![0x10, 0x10],
                    width: 4
                }
            ]
        );
        // A key read from the second argument: mov 0x220(%rsi),%rcx ; ret
        let key = [0x48, 0x8b, 0x8e, 0x20, 0x02, 0, 0, 0xc3];
        assert_eq!(field_reads(&key, 0, 1, 16), vec![Chain::field(0x220, 8)]);
        assert!(field_reads(&key, 0, 0, 16).is_empty());
    }

    #[test]
    fn tells_dividend_from_divisor() {
        // mov 0x58(%rdi),%rcx ; test %rcx,%rcx ; je +0 ; mov 0x18(%rdi),%rax ; xor %edx,%edx ;
        // div %rcx ; ret
        let code = [
            0x48, 0x8b, 0x4f, 0x58, 0x48, 0x85, 0xc9, 0x74, 0x00, 0x48, 0x8b, 0x47, 0x18, 0x31,
            0xd2, 0x48, 0xf7, 0xf1, 0xc3,
        ];
        assert_eq!(
            quotient(&code, 0),
            Some((Chain::field(0x18, 8), Chain::field(0x58, 8)))
        );
    }

    #[test]
    fn finds_the_vector_an_element_comes_from() {
        // mov 0x58(%rdi),%eax ; mov %esi,%eax ; mov 0x3b0(%rdi),%rcx ; mov (%rcx,%rax,8),%rax ;
        // ret
        let code = [
            0x8b, 0x47, 0x58, 0x89, 0xf0, 0x48, 0x8b, 0x8f, 0xb0, 0x03, 0, 0, 0x48, 0x8b, 0x04,
            0xc1, 0xc3,
        ];
        assert_eq!(indexed_member(&code, 0), Some(Chain::field(0x3b0, 8)));
    }
}
