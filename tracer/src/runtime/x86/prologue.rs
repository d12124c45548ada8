//! What a function's prologue tells about unwinding through it.
use iced_x86::{Mnemonic, OpKind, Register};

use super::engine::decode;

/// Whether a function sets up a frame pointer (`mov %rsp,%rbp`) in its prologue: without it,
/// a kernel stack walk cannot get past the probed function.
pub fn sets_frame_pointer(code: &[u8], ip: u64) -> bool {
    decode(code, ip, 12).any(|i| {
        i.mnemonic() == Mnemonic::Mov
            && i.op_count() == 2
            && i.op0_kind() == OpKind::Register
            && i.op1_kind() == OpKind::Register
            && i.op0_register() == Register::RBP
            && i.op1_register() == Register::RSP
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tells_frame_pointer_prologues() {
        // push %rbp ; mov %rsp,%rbp ; ret
        assert!(sets_frame_pointer(&[0x55, 0x48, 0x89, 0xe5, 0xc3], 0));
        // push %rbp ; push %r15 ; ret
        assert!(!sets_frame_pointer(&[0x55, 0x41, 0x57, 0xc3], 0));
    }
}
