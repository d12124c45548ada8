//! Short methods that return or hand on a member of `this`, the hops from a device object to
//! its allocator and from an allocator to its set of buffers:
//! - `Device::allocator_impl() const` returns the address of a member (`lea d(%rdi),%rax`);
//! - `MeshDevice::allocator_impl() const` tail-calls its implementation object's method with
//!   a member pointer in `%rdi` (a pimpl hop);
//! - `AllocatorImpl::get_num_allocated_buffers() const` returns a member it loads after
//!   locking the allocator's mutex (a call on the way);
//! - `AllocatorImpl::get_allocated_buffers() const` returns its set by value: `this` is the
//!   second argument, and the member's address goes to the set's copy constructor.
use std::ops::ControlFlow::{Break, Continue};

use iced_x86::Register;

use super::{
    abi,
    chain::Chain,
    engine::{run, straight_line, Event, Exit, Unknown},
    state::State,
    value::Value,
};

/// `d` of a function that returns `this + d` (the address of a member object).
pub fn returned_member_address(code: &[u8], ip: u64) -> Option<i32> {
    match straight_line(code, ip, 16, State::with_arguments([0]), &Unknown)? {
        Exit::Return(s) => {
            let d = s.get(abi::RETURN)?.derived()?;
            (d.root == 0 && d.loads.is_empty() && d.addend > 0).then_some(d.addend as i32)
        }
        Exit::Jump(..) | Exit::Call => None,
    }
}

/// The loads from `this` of what a function hands on in `%rdi` to the function it jumps to
/// (its tail call).
pub fn forwarded_member(code: &[u8], ip: u64) -> Option<Chain> {
    match straight_line(code, ip, 16, State::with_arguments([0]), &Unknown)? {
        Exit::Jump(s, _) => s.get(Register::RDI)?.chain_from(0),
        Exit::Return(_) | Exit::Call => None,
    }
}

/// The loads from `this` that give what the function returns at its first `ret`, calls on
/// the way allowed (`this` kept in a callee-saved register across them).
pub fn returned_after_calls(code: &[u8], ip: u64, limit: usize) -> Option<Chain> {
    let mut state = State::with_arguments([0]);
    run(
        code,
        ip,
        limit,
        &mut state,
        &Unknown,
        |_, event, s| match event {
            Event::Return => Break(s.get(abi::RETURN).and_then(|v| v.chain_from(0))),
            _ => Continue(()),
        },
    )
    .flatten()
}

/// `d` of the `lea d(arg)` in `reg` when a call whose target satisfies `is_target` is made
/// (a member object of argument `arg` handed to a helper).
pub fn member_lea_at_call(
    code: &[u8],
    ip: u64,
    arg: usize,
    reg: Register,
    limit: usize,
    is_target: impl Fn(u64) -> bool,
) -> Option<i32> {
    let mut state = State::with_arguments([arg]);
    run(
        code,
        ip,
        limit,
        &mut state,
        &Unknown,
        |_, event, s| match event {
            Event::Call { target: Some(t) } if is_target(t) => {
                match s.get(reg).and_then(Value::derived) {
                    Some(d) if d.root == arg && d.loads.is_empty() && d.addend > 0 => {
                        Break(Some(d.addend as i32))
                    }
                    _ => Break(None),
                }
            }
            _ => Continue(()),
        },
    )
    .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_member_address_returned() {
        // lea 0x248(%rdi),%rax ; ret
        let code = [0x48, 0x8d, 0x87, 0x48, 0x02, 0, 0, 0xc3];
        assert_eq!(returned_member_address(&code, 0), Some(0x248));
        // mov 0x248(%rdi),%rax ; ret: a value, not an address.
        let code = [0x48, 0x8b, 0x87, 0x48, 0x02, 0, 0, 0xc3];
        assert_eq!(returned_member_address(&code, 0), None);
    }

    #[test]
    fn a_pimpl_handed_on() {
        // mov 0x18(%rdi),%rdi ; mov (%rdi),%rax ; jmp *0xc8(%rax)
        let code = [
            0x48, 0x8b, 0x7f, 0x18, 0x48, 0x8b, 0x07, 0xff, 0xa0, 0xc8, 0, 0, 0,
        ];
        assert_eq!(forwarded_member(&code, 0), Some(Chain::field(0x18, 8)));
    }

    #[test]
    fn a_member_returned_after_a_lock() {
        // push %r14 ; mov %rdi,%r14 ; call +0 ; mov 0x148(%r14),%r14 ; call +0 ;
        // mov %r14,%rax ; pop %r14 ; ret
        let code = [
            0x41, 0x56, 0x49, 0x89, 0xfe, 0xe8, 0, 0, 0, 0, 0x4d, 0x8b, 0xb6, 0x48, 0x01, 0, 0,
            0xe8, 0, 0, 0, 0, 0x4c, 0x89, 0xf0, 0x41, 0x5e, 0xc3,
        ];
        assert_eq!(
            returned_after_calls(&code, 0, 32),
            Some(Chain::field(0x148, 8))
        );
    }

    #[test]
    fn a_member_of_the_second_argument_at_a_call() {
        // mov %rsi,%r15 ; lea 0x130(%r15),%rsi ; call +0
        let code = [
            0x49, 0x89, 0xf7, 0x49, 0x8d, 0xb7, 0x30, 0x01, 0, 0, 0xe8, 0, 0, 0, 0,
        ];
        let at = |t| member_lea_at_call(&code, 0, 1, Register::RSI, 16, |x| x == t);
        assert_eq!(at(0xf), Some(0x130));
        assert_eq!(at(0x99), None);
    }
}
