//! A member of `this` handed to a helper: a member object, e.g. `BankManager::init_allocators`
//! resizing its vector of sub-allocators (the member's offset), or a member's value, e.g.
//! `Buffer::allocate_impl` passing its device to `extract_context_id(IDevice const*)` (the
//! member's load chain).
use std::ops::ControlFlow::{Break, Continue};

use iced_x86::Register;

use super::{
    chain::Chain,
    engine::{run, Event, Unknown},
    state::State,
    value::Value,
};

/// The displacement `d` of a `lea d(this)` that is in `%rdi` when a call whose target
/// satisfies `is_target` is made (a member object passed to a helper).
pub fn this_lea_at_call(code: &[u8], ip: u64, is_target: impl Fn(u64) -> bool) -> Option<i32> {
    let mut state = State::with_arguments([0]);
    run(
        code,
        ip,
        64,
        &mut state,
        &Unknown,
        |_, event, s| match event {
            Event::Return => Break(None),
            Event::Call { target: Some(t) } if is_target(t) => {
                match s.get(Register::RDI).and_then(Value::derived) {
                    // `this` itself (offset 0) is no member: a method gets it anyway.
                    Some(d) if d.root == 0 && d.loads.is_empty() && d.addend != 0 => {
                        Break(Some(d.addend as i32))
                    }
                    _ => Continue(()),
                }
            }
            _ => Continue(()),
        },
    )
    .flatten()
}

/// The load chain from `this` of the value in `reg` when the first call whose target
/// satisfies `is_target` is made, within the first `limit` instructions.
pub fn member_at_call(
    code: &[u8],
    ip: u64,
    reg: Register,
    limit: usize,
    is_target: impl Fn(u64) -> bool,
) -> Option<Chain> {
    let mut state = State::with_arguments([0]);
    run(
        code,
        ip,
        limit,
        &mut state,
        &Unknown,
        |_, event, s| match event {
            Event::Call { target: Some(t) } if is_target(t) => {
                Break(s.get(reg).and_then(|v| v.chain_from(0)))
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
    fn finds_the_member_handed_to_a_call() {
        // mov %rdi,%r13 ; lea 0x3b0(%rdi),%r12 ; mov %r12,%rdi ; call +0
        let code = [
            0x49, 0x89, 0xfd, 0x4c, 0x8d, 0xa7, 0xb0, 0x03, 0, 0, 0x4c, 0x89, 0xe7, 0xe8, 0, 0, 0,
            0,
        ];
        assert_eq!(this_lea_at_call(&code, 0, |t| t == 0x12), Some(0x3b0));
        assert_eq!(this_lea_at_call(&code, 0, |t| t == 0x99), None);
    }

    #[test]
    fn finds_the_member_value_handed_to_a_call() {
        // mov %rdi,%rbx ; call +0 ; mov 0x10(%rbx),%rdi ; call +0
        let code = [
            0x48, 0x89, 0xfb, 0xe8, 0, 0, 0, 0, 0x48, 0x8b, 0x7b, 0x10, 0xe8, 0, 0, 0, 0,
        ];
        let at = |t| member_at_call(&code, 0, Register::RDI, 16, |x| x == t);
        assert_eq!(at(0x11), Some(Chain::field(0x10, 8)));
        // At the first call %rdi is `this` itself, no member.
        assert_eq!(at(0x8), None);
    }
}
