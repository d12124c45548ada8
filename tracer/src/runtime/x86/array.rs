//! Array members and the layout of their elements, from the small functions that walk them:
//! a reference accessor (`CoreRangeSet::ranges() const`), a loop over a `std::vector`
//! (`CoreRangeSet::num_cores() const`) and an element's own arithmetic (`CoreRange::size()`).
use iced_x86::{Instruction, Mnemonic, OpKind, Register};

use super::engine::decode;

/// The member a reference accessor returns: `mov %rdi,%rax` is offset 0, `lea d(%rdi),%rax`
/// is `d`; `None` for anything else before its `ret`.
pub fn member_reference(code: &[u8], ip: u64) -> Option<i32> {
    for i in decode(code, ip, 8) {
        match i.mnemonic() {
            Mnemonic::Mov
                if i.op0_kind() == OpKind::Register
                    && i.op0_register() == Register::RAX
                    && i.op1_kind() == OpKind::Register
                    && i.op1_register() == Register::RDI =>
            {
                return next_is_ret(code, ip, &i).then_some(0);
            }
            Mnemonic::Lea
                if i.op0_register() == Register::RAX
                    && i.memory_base() == Register::RDI
                    && i.memory_index() == Register::None =>
            {
                return next_is_ret(code, ip, &i).then_some(i.memory_displacement64() as i32);
            }
            Mnemonic::Endbr64 | Mnemonic::Nop => {}
            _ => return None,
        }
    }
    None
}

fn next_is_ret(code: &[u8], ip: u64, after: &Instruction) -> bool {
    let at = (after.next_ip() - ip) as usize;
    code.get(at..)
        .and_then(|rest| decode(rest, after.next_ip(), 1).next())
        .is_some_and(|i| i.mnemonic() == Mnemonic::Ret)
}

/// A loop over a `std::vector` member of `this`: the offset of its begin pointer (loaded
/// with its end pointer 8 bytes further, first thing) and the element size (the loop's
/// `shr $k` of `end - begin`).
pub fn vector_walk(code: &[u8], ip: u64) -> Option<(i32, u32)> {
    let mut loads = Vec::new();
    let mut shift = None;
    for i in decode(code, ip, 24) {
        if i.mnemonic() == Mnemonic::Mov
            && i.op_count() == 2
            && i.op1_kind() == OpKind::Memory
            && i.memory_base() == Register::RDI
            && i.memory_index() == Register::None
        {
            loads.push(i.memory_displacement64() as i64 as i32);
        }
        if matches!(i.mnemonic(), Mnemonic::Shr | Mnemonic::Sar)
            && i.op1_kind() == OpKind::Immediate8
            && shift.is_none()
        {
            shift = Some(u32::from(i.immediate8()));
        }
    }
    let begin = *loads.first()?;
    if !loads.contains(&(begin + 8)) {
        return None;
    }
    let k = shift.filter(|k| (3..=10).contains(k))?;
    Some((begin, 1 << k))
}

/// An element's two corners from a function that subtracts one from the other
/// (`CoreRange::size()`: `end - start + 1` per coordinate): (start offset, end offset,
/// coordinate width). Reads the memory operands off `this` up to the first `ret`.
pub fn corner_offsets(code: &[u8], ip: u64) -> Option<(i32, i32, u8)> {
    let mut seen: Vec<(i32, usize)> = Vec::new();
    let mut packed = None;
    for i in decode(code, ip, 32) {
        if i.mnemonic() == Mnemonic::Ret {
            break;
        }
        for op in 0..i.op_count() {
            if i.op_kind(op) == OpKind::Memory
                && i.memory_base() == Register::RDI
                && i.memory_index() == Register::None
            {
                let size = i.memory_size().size();
                seen.push((i.memory_displacement64() as i64 as i32, size));
                if matches!(i.mnemonic(), Mnemonic::Vpsubq | Mnemonic::Psubq) {
                    packed = Some(8u8);
                } else if matches!(i.mnemonic(), Mnemonic::Vpsubd | Mnemonic::Psubd) {
                    packed = Some(4u8);
                }
            }
        }
    }
    let mut offsets: Vec<i32> = seen.iter().map(|s| s.0).collect();
    offsets.sort_unstable();
    offsets.dedup();
    match (packed, offsets.as_slice()) {
        // Both coordinates of a corner in one vector load each.
        (Some(width), [start, end]) => Some((*start, *end, width)),
        // Scalar code: x and y of each corner.
        (None, [sx, sy, ex, ey]) if sy - sx == ey - ex && ex > sy => {
            let width = (sy - sx) as u8;
            matches!(width, 4 | 8).then_some((*sx, *ex, width))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reference_accessors() {
        // mov %rdi,%rax ; ret
        assert_eq!(member_reference(&[0x48, 0x89, 0xf8, 0xc3], 0), Some(0));
        // lea 0x18(%rdi),%rax ; ret
        assert_eq!(
            member_reference(&[0x48, 0x8d, 0x47, 0x18, 0xc3], 0),
            Some(0x18)
        );
        // mov (%rdi),%rax ; ret  -- a load, not a reference
        assert_eq!(member_reference(&[0x48, 0x8b, 0x07, 0xc3], 0), None);
    }

    #[test]
    fn a_vector_loop_over_32_byte_elements() {
        // mov (%rdi),%rsi ; mov 0x8(%rdi),%rcx ; cmp %rcx,%rsi ; mov %rcx,%rdi ; sub %rsi,%rdi ;
        // shr $0x5,%rdi ; ret
        let code = [
            0x48, 0x8b, 0x37, 0x48, 0x8b, 0x4f, 0x08, 0x48, 0x39, 0xce, 0x48, 0x89, 0xcf, 0x48,
            0x29, 0xf7, 0x48, 0xc1, 0xef, 0x05, 0xc3,
        ];
        assert_eq!(vector_walk(&code, 0), Some((0, 32)));
    }

    #[test]
    fn packed_corner_subtraction() {
        // vmovdqu 0x10(%rdi),%xmm0 ; vpsubq (%rdi),%xmm0,%xmm0 ; ret
        let code = [0xc5, 0xfa, 0x6f, 0x47, 0x10, 0xc5, 0xf9, 0xfb, 0x07, 0xc3];
        assert_eq!(corner_offsets(&code, 0), Some((0, 0x10, 8)));
    }
}
