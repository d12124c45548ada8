//! `this` kept in a callee-saved register across a call: `BufferImpl::deallocate_impl` holds
//! its `this` in `%rbx` when it calls `GraphTracker::track_deallocate(Buffer*)`, so a probe
//! on the callee finds the caller's object in that register, without reading memory.
use std::ops::ControlFlow::Continue;

use iced_x86::Register;

use super::{
    engine::{run, Event, Unknown},
    state::State,
    value::Value,
};

/// Registers a callee must give back as it got them, so at its entry they still hold the
/// caller's values.
pub const CALLEE_SAVED: [Register; 6] = [
    Register::RBX,
    Register::RBP,
    Register::R12,
    Register::R13,
    Register::R14,
    Register::R15,
];

/// One call whose destination the analysis was asked about.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeptAt {
    /// The call instruction.
    pub at: u64,
    /// The first callee-saved register holding `this` there.
    pub this_in: Option<Register>,
    /// Whether the caller's argument `passed` is what it hands on as the same argument.
    pub passes_through: bool,
}

/// Every call (or tail jump) in `code` (a function at `ip`, read along its straight line)
/// whose destination satisfies `is_target`: where the caller keeps its `this`, and whether
/// it passes its own argument `passed` on in the same register.
pub fn this_kept_at_calls(
    code: &[u8],
    ip: u64,
    passed: usize,
    is_target: impl Fn(u64) -> bool,
) -> Vec<KeptAt> {
    let mut state = State::with_arguments([0, passed]);
    let mut out = Vec::new();
    let _: Option<()> = run(code, ip, code.len(), &mut state, &Unknown, |i, event, s| {
        let target = match event {
            Event::Call { target } | Event::Jump { target } => target,
            _ => None,
        };
        if target.is_some_and(&is_target) {
            let this = Value::argument(0);
            let arg = super::abi::ARGUMENTS[passed];
            out.push(KeptAt {
                at: i.ip(),
                this_in: CALLEE_SAVED.into_iter().find(|r| s.get(*r) == Some(&this)),
                passes_through: s.get(arg) == Some(&Value::argument(passed)),
            });
        }
        Continue(())
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_this_in_a_callee_saved_register_at_the_call() {
        // push %rbx ; mov %rsi,%r14 ; mov %rdi,%rbx ; call +0 (anything) ;
        // mov %rax,%rdi ; mov %r14,%rsi ; call +0 (the target)
        let code = [
            0x53, 0x49, 0x89, 0xf6, 0x48, 0x89, 0xfb, 0xe8, 0, 0, 0, 0, 0x48, 0x89, 0xc7, 0x4c,
            0x89, 0xf6, 0xe8, 0, 0, 0, 0,
        ];
        let calls = this_kept_at_calls(&code, 0, 1, |t| t == 0x17);
        assert_eq!(
            calls,
            vec![KeptAt {
                at: 0x12,
                this_in: Some(Register::RBX),
                passes_through: true,
            }]
        );
    }

    #[test]
    fn a_register_restored_before_a_tail_jump_holds_nothing_known() {
        // push %rbx ; mov %rdi,%rbx ; pop %rbx ; jmp +0
        let code = [0x53, 0x48, 0x89, 0xfb, 0x5b, 0xe9, 0, 0, 0, 0];
        let calls = this_kept_at_calls(&code, 0, 1, |t| t == 0xa);
        assert_eq!(calls.len(), 1);
        assert_eq!(calls[0].this_in, None);
        assert!(calls[0].passes_through);
    }
}
