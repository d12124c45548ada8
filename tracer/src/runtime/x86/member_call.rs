//! A member object of `this` handed to a helper, e.g. `BankManager::init_allocators` resizing
//! its vector of sub-allocators: the member's offset.
use std::ops::ControlFlow::{Break, Continue};

use iced_x86::Register;

use super::{
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
}
