//! Throws of a known message: tt-metal's `tt_throw` gets its format string in `%r8`.
use std::ops::ControlFlow::{self, Continue};

use iced_x86::Register;

use super::{
    engine::{run, Event, Unknown},
    state::State,
    value::Value,
};

/// A call whose format-string register (`%r8`, the `fmt::fstring` of tt-metal's `tt_throw`)
/// was loaded with the address of one of `strings` just before it: the throw of that message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MessageCall {
    /// Address of the call instruction (a uprobe there sees the pushed arguments at `%rsp`).
    pub call: u64,
    pub target: u64,
    pub string: u64,
}

/// Calls that pass one of `strings` in `%r8`, in a linear sweep of the whole function (its
/// throws sit in cold blocks after the body's `ret`).
pub fn message_calls(code: &[u8], ip: u64, strings: &[u64]) -> Vec<MessageCall> {
    let mut out = Vec::new();
    let mut state = State::default();
    run(
        code,
        ip,
        usize::MAX,
        &mut state,
        &Unknown,
        |i, event, s| -> ControlFlow<()> {
            if let (
                Event::Call {
                    target: Some(target),
                },
                Some(Value::Address(string)),
            ) = (event, s.get(Register::R8))
            {
                if strings.contains(string) {
                    out.push(MessageCall {
                        call: i.ip(),
                        target,
                        string: *string,
                    });
                }
            }
            Continue(())
        },
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn reads_past_a_return_and_forgets_at_a_call() {
        // ret ; lea 0x100(%rip),%r8 ; call +0 ; call +0
        let code = [
            0xc3, 0x4c, 0x8d, 0x05, 0x00, 0x01, 0, 0, 0xe8, 0, 0, 0, 0, 0xe8, 0, 0, 0, 0,
        ];
        let calls = message_calls(&code, 0, &[0x108]);
        assert_eq!(calls.len(), 1);
        assert_eq!(calls[0].call, 8);
    }
}
