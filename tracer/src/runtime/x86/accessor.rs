//! Out-of-line accessors: a chain of loads from an argument into the return register.
use super::{
    abi,
    chain::Chain,
    engine::{straight_line, Exit, Unknown},
    state::State,
};

/// Follows loads from `arg` (0 = `this`) until `ret`; returns the chain that ends in RAX.
/// `None` when the function does anything else with its result (calls, arithmetic).
pub fn accessor_chain(code: &[u8], ip: u64, arg: usize) -> Option<Chain> {
    match straight_line(code, ip, 32, State::with_arguments([arg]), &Unknown)? {
        Exit::Return(s) => s.get(abi::RETURN)?.chain_from(arg),
        Exit::Jump(..) | Exit::Call => None,
    }
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
    fn rejects_calls_and_jumps() {
        // mov 0x10(%rdi),%rax ; call +0 ; ret
        let call = [0x48, 0x8b, 0x47, 0x10, 0xe8, 0, 0, 0, 0, 0xc3];
        assert_eq!(accessor_chain(&call, 0, 0), None);
        // mov 0x10(%rdi),%rax ; jmp +0 ; ret
        let jump = [0x48, 0x8b, 0x47, 0x10, 0xe9, 0, 0, 0, 0, 0xc3];
        assert_eq!(accessor_chain(&jump, 0, 0), None);
    }

    #[test]
    fn reads_from_another_argument() {
        // mov 0x8(%rsi),%eax ; ret
        let code = [0x8b, 0x46, 0x08, 0xc3];
        assert_eq!(accessor_chain(&code, 0, 1), Some(Chain::field(8, 4)));
        assert_eq!(accessor_chain(&code, 0, 0), None);
    }
}
