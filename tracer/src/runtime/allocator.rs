//! Allocator geometry of a process that opened its devices before tracer attached.
//!
//! The bank managers' constructors (probed for geometry) ran before the probes existed, so the
//! geometry is read from the allocator itself, in the process, by a probe on
//! `AllocatorImpl::allocate_buffer(Buffer*)` (entered before every allocation, `this` is the
//! allocator; tracer removes that probe once each attached process has reported). The paths
//! come from the runtime's own code:
//! - `AllocatorImpl::get_num_banks(BufferType const&) const` picks the bank manager of a type
//!   through a table in `.rodata` and reads its bank count: evaluated per buffer type;
//! - the `BankManager` constructor stores the page alignment argument into the manager;
//! - `BankManager::init_allocators` builds the per-bank sub-allocators (a vector of
//!   `unique_ptr<allocator::Algorithm>`), and the `FreeListOpt` constructor stores its minimum
//!   block (the granule each bank's share is rounded up to).
use std::collections::HashMap;

use iced_x86::{Mnemonic, OpKind, Register};

use super::{
    calibrate::pretty,
    disasm::{constructor_stores, decode, Chain, Stored, CALLER_SAVED},
    elf::{demangle, parameters, Library},
    symbols as sym,
};
use crate::model::{BufferType, Geometry};

/// Where the geometry of each buffer type lives, from an `AllocatorImpl*`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AllocatorLayout {
    /// Per buffer type: offset in the `AllocatorImpl` of its bank manager pointer, and the
    /// offset of the bank count (u32) in the manager.
    pub managers: Vec<(BufferType, i32, i32)>,
    /// Offset of the page alignment (u32) in a bank manager.
    pub alignment: i32,
    /// Offset in a bank manager of its sub-allocator vector (begin pointer first).
    pub sub_allocators: i32,
    /// Offset in a sub-allocator of its minimum block (`FreeListOpt`'s, 8 bytes).
    pub min_block: i32,
}

impl AllocatorLayout {
    pub fn describe(&self) -> String {
        let managers: Vec<String> = self
            .managers
            .iter()
            .map(|(k, at, banks)| format!("{} +{at:#x}->banks+{banks:#x}", k.name()))
            .collect();
        format!(
            "AllocatorImpl{{{}}} BankManager{{alignment +{:#x} \
             sub_allocators +{:#x}->[0]->min_block +{:#x}}}",
            managers.join(" "),
            self.alignment,
            self.sub_allocators,
            self.min_block
        )
    }
}

/// Calibrates the allocator paths of `lib`; the error names the symbol or pattern that failed.
pub fn calibrate(lib: &Library) -> Result<AllocatorLayout, String> {
    let code_of = |mangled: &str| {
        let s = lib
            .symbol(mangled)
            .ok_or_else(|| format!("`{}` not found", pretty(mangled)))?;
        let code = lib
            .code(s, 512)
            .ok_or_else(|| format!("no code for `{}`", pretty(mangled)))?;
        Ok::<_, String>((code, s.address))
    };
    // Where the probe sits: without it, nothing reads the geometry.
    code_of(sym::ALLOCATOR_ALLOCATE_BUFFER)?;
    let (code, ip) = code_of(sym::ALLOCATOR_NUM_BANKS)?;
    let read = |addr: u64, width: u8| -> Option<u64> {
        let off = lib.file_offset(addr)? as usize;
        let b = lib.bytes_at(off, usize::from(width))?;
        let mut v = [0u8; 8];
        v[..b.len()].copy_from_slice(b);
        Some(u64::from_le_bytes(v))
    };
    let mut managers = Vec::new();
    for kind in [
        BufferType::Dram,
        BufferType::L1,
        BufferType::L1Small,
        BufferType::Trace,
    ] {
        let c = typed_accessor(code, ip, kind.index() as u64, &read);
        match c {
            Some(c) if c.offsets.len() == 2 && c.width == 4 => {
                managers.push((kind, c.offsets[0], c.offsets[1]))
            }
            _ => {}
        }
    }
    if managers.is_empty() {
        return Err(format!(
            "`{}` is not a table-indexed bank manager load",
            pretty(sym::ALLOCATOR_NUM_BANKS)
        ));
    }
    let alignment = lib
        .find_demangled(sym::BANK_MANAGER_CTOR.0, sym::BANK_MANAGER_CTOR.1)
        .into_iter()
        .find_map(|(_, demangled, s)| {
            let params = parameters(&demangled);
            let arg = params.iter().position(|p| p == "unsigned int")? + 1;
            let code = lib.code(s, 4096)?;
            constructor_stores(code, s.address, 1500)
                .into_iter()
                .find(|st| st.value == Stored::Arg(arg) && st.width == 4)
                .map(|st| st.offset)
        })
        .ok_or_else(|| {
            format!(
                "no store of the alignment argument found in `{}...)`",
                sym::BANK_MANAGER_CTOR.1
            )
        })?;
    let (code, ip) = code_of(sym::BANK_MANAGER_INIT_ALLOCATORS)?;
    let sub_allocators = this_lea_at_call(code, ip, |target| {
        lib.symbol_at(target)
            .and_then(demangle)
            .is_some_and(|d| d.contains("unique_ptr<tt::tt_metal::allocator::Algorithm"))
    })
    .ok_or_else(|| {
        format!(
            "`{}` does not size a vector of allocator::Algorithm",
            pretty(sym::BANK_MANAGER_INIT_ALLOCATORS)
        )
    })?;
    let min_block = lib
        .find_demangled(sym::FREE_LIST_CTOR.0, sym::FREE_LIST_CTOR.1)
        .into_iter()
        .find_map(|(_, _, s)| {
            // FreeListOpt(max_size, offset, min_allocation_size, alignment, policy).
            let code = lib.code(s, 1024)?;
            constructor_stores(code, s.address, 200)
                .into_iter()
                .find(|st| st.value == Stored::Arg(3) && st.width == 8)
                .map(|st| st.offset)
        })
        .ok_or_else(|| {
            format!(
                "no store of the minimum allocation size found in `{}...)`",
                sym::FREE_LIST_CTOR.1
            )
        })?;
    Ok(AllocatorLayout {
        managers,
        alignment,
        sub_allocators,
        min_block,
    })
}

/// What the geometry probe reads, as loads from the `AllocatorImpl*`: per buffer type (the
/// first `max_types` calibrated ones), the bank count, the alignment and the minimum block.
pub fn probe_chains(layout: &AllocatorLayout, max_types: usize) -> Vec<(BufferType, [Chain; 3])> {
    layout
        .managers
        .iter()
        .take(max_types)
        .map(|(kind, manager, banks)| {
            let m = *manager;
            (
                *kind,
                [
                    Chain {
                        offsets: vec![m, *banks],
                        width: 4,
                    },
                    Chain {
                        offsets: vec![m, layout.alignment],
                        width: 4,
                    },
                    Chain {
                        offsets: vec![m, layout.sub_allocators, 0, layout.min_block],
                        width: 8,
                    },
                ],
            )
        })
        .collect()
}

/// The geometry in the probe's values (three per type, in [`probe_chains`] order). A type
/// whose manager does not exist (unreadable) or whose values are implausible is left out.
pub fn geometry_from(
    kinds: &[BufferType],
    values: &[u64],
    valid: u16,
) -> Vec<(BufferType, Geometry)> {
    let mut out = Vec::new();
    for (i, kind) in kinds.iter().enumerate() {
        let at = 3 * i;
        if at + 3 > values.len() || (0..3).any(|j| valid & (1 << (at + j)) == 0) {
            continue;
        }
        let (banks, alignment, granule) = (values[at], values[at + 1], values[at + 2]);
        // A bank count and powers of two, as tt-metal's allocator asserts.
        if banks > 0
            && banks < 1 << 16
            && alignment.is_power_of_two()
            && alignment < 1 << 32
            && granule.is_power_of_two()
            && granule < 1 << 32
        {
            out.push((
                *kind,
                Geometry {
                    banks: banks as u32,
                    alignment: alignment as u32,
                    granularity: granule as u32,
                },
            ));
        }
    }
    out
}

/// A value while evaluating an accessor for one concrete buffer type.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Val {
    /// Loads from `this` (empty: `this` itself).
    Obj(Vec<i32>, u8),
    /// A known number (the type, an offset read from `.rodata`, an address in the library).
    Const(u64),
    /// The address of the caller's `BufferType` (passed by reference).
    TypeRef,
}

/// Evaluates an accessor `T f(BufferType [const&]) const` for `kind`: constant tables in the
/// library are read with `read(address, width)`; conditional branches are taken as not taken
/// (they guard the error path). Returns the load chain from `this` that ends in `%rax`.
fn typed_accessor(
    code: &[u8],
    ip: u64,
    kind: u64,
    read: &dyn Fn(u64, u8) -> Option<u64>,
) -> Option<Chain> {
    let mut state: HashMap<Register, Val> = HashMap::new();
    state.insert(Register::RDI, Val::Obj(vec![], 8));
    // By reference or by value: the first load through %rsi tells.
    state.insert(Register::RSI, Val::TypeRef);
    let by_value = |s: &mut HashMap<Register, Val>, r: Register| {
        if s.get(&r) == Some(&Val::TypeRef) {
            s.insert(r, Val::Const(kind));
        }
    };
    for i in decode(code, ip, 32) {
        match i.mnemonic() {
            Mnemonic::Ret => {
                return match state.get(&Register::RAX)? {
                    Val::Obj(h, w) if !h.is_empty() => Some(Chain {
                        offsets: h.clone(),
                        width: *w,
                    }),
                    _ => None,
                }
            }
            Mnemonic::Call | Mnemonic::Jmp => return None,
            Mnemonic::Cmp | Mnemonic::Test | Mnemonic::Push | Mnemonic::Nop => continue,
            _ if i.is_jcc_short_or_near() => continue,
            _ => {}
        }
        if i.op_count() < 2 || i.op0_kind() != OpKind::Register {
            continue;
        }
        let dst = i.op0_register().full_register();
        let width = i.memory_size().size() as u8;
        let value = match (i.mnemonic(), i.op1_kind()) {
            (Mnemonic::Lea, OpKind::Memory) if i.is_ip_rel_memory_operand() => {
                Some(Val::Const(i.ip_rel_memory_address()))
            }
            (Mnemonic::Mov | Mnemonic::Movzx | Mnemonic::Movsxd, OpKind::Memory) => {
                if i.is_ip_rel_memory_operand() {
                    read(i.ip_rel_memory_address(), width).map(Val::Const)
                } else {
                    let base = state.get(&i.memory_base().full_register()).cloned();
                    let index = match i.memory_index() {
                        Register::None => None,
                        r => Some(state.get(&r.full_register()).cloned()),
                    };
                    let disp = i.memory_displacement64();
                    let scale = u64::from(i.memory_index_scale());
                    match (base, index) {
                        (Some(Val::TypeRef), None) if disp == 0 => Some(Val::Const(kind)),
                        (Some(Val::Obj(mut h, _)), None) => {
                            h.push(disp as i64 as i32);
                            Some(Val::Obj(h, width))
                        }
                        (Some(Val::Obj(mut h, _)), Some(Some(Val::Const(c))))
                        | (Some(Val::Const(c)), Some(Some(Val::Obj(mut h, _))))
                            if scale == 1 =>
                        {
                            h.push(c.wrapping_add(disp) as i64 as i32);
                            Some(Val::Obj(h, width))
                        }
                        (Some(Val::Const(a)), Some(Some(Val::Const(c)))) => read(
                            a.wrapping_add(c.wrapping_mul(scale)).wrapping_add(disp),
                            width,
                        )
                        .map(Val::Const),
                        (Some(Val::Const(a)), None) => {
                            read(a.wrapping_add(disp), width).map(Val::Const)
                        }
                        _ => None,
                    }
                }
            }
            (Mnemonic::Mov, OpKind::Register) => {
                let src = i.op1_register().full_register();
                by_value(&mut state, src);
                state.get(&src).cloned()
            }
            (Mnemonic::Mov, OpKind::Immediate8 | OpKind::Immediate32 | OpKind::Immediate64)
            | (Mnemonic::Mov, OpKind::Immediate32to64) => Some(Val::Const(i.immediate(1))),
            _ => None,
        };
        match value {
            Some(v) => state.insert(dst, v),
            None => state.remove(&dst),
        };
    }
    None
}

/// The displacement `d` of a `lea d(this)` that is in `%rdi` when a call whose target
/// satisfies `is_target` is made (a member object passed to a helper).
fn this_lea_at_call(code: &[u8], ip: u64, is_target: impl Fn(u64) -> bool) -> Option<i32> {
    #[derive(Clone, Copy, PartialEq)]
    enum V {
        This,
        Member(i32),
    }
    let mut state: HashMap<Register, V> = HashMap::new();
    state.insert(Register::RDI, V::This);
    for i in decode(code, ip, 64) {
        match i.mnemonic() {
            Mnemonic::Ret => return None,
            Mnemonic::Call => {
                if i.op0_kind() == OpKind::NearBranch64 && is_target(i.near_branch_target()) {
                    if let Some(V::Member(d)) = state.get(&Register::RDI) {
                        return Some(*d);
                    }
                }
                for r in CALLER_SAVED {
                    state.remove(&r);
                }
                continue;
            }
            _ => {}
        }
        if i.op_count() < 2 || i.op0_kind() != OpKind::Register {
            continue;
        }
        let dst = i.op0_register().full_register();
        let value = match (i.mnemonic(), i.op1_kind()) {
            (Mnemonic::Lea, OpKind::Memory) if i.memory_index() == Register::None => {
                match state.get(&i.memory_base().full_register()) {
                    Some(V::This) => Some(V::Member(i.memory_displacement64() as i64 as i32)),
                    _ => None,
                }
            }
            (Mnemonic::Mov, OpKind::Register) => {
                state.get(&i.op1_register().full_register()).copied()
            }
            _ => None,
        };
        match value {
            Some(v) => state.insert(dst, v),
            None => state.remove(&dst),
        };
    }
    None
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
    }

    #[test]
    fn finds_the_member_handed_to_a_call() {
        // mov %rdi,%r13 ; lea 0x3b0(%rdi),%r12 ; mov %r12,%rdi ; call +0
        let code = [
            0x49, 0x89, 0xfd, 0x4c, 0x8d, 0xa7, 0xb0, 0x03, 0, 0, 0x4c, 0x89, 0xe7, 0xe8, 0, 0, 0,
            0,
        ];
        assert_eq!(this_lea_at_call(&code, 0, |t| t == 0x12), Some(0x3b0));
    }

    #[test]
    fn reads_geometry_from_the_probe_values() {
        let layout = AllocatorLayout {
            managers: vec![(BufferType::Dram, 0x30, 0x20), (BufferType::L1, 0x38, 0x20)],
            alignment: 0x48,
            sub_allocators: 0x3b0,
            min_block: 0x18,
        };
        let chains = probe_chains(&layout, 3);
        assert_eq!(chains[1].1[2].offsets, vec![0x38, 0x3b0, 0, 0x18]);
        let kinds: Vec<_> = chains.iter().map(|(k, _)| *k).collect();
        // DRAM read fine; L1's minimum block was unreadable (valid bit 5 clear).
        let got = geometry_from(&kinds, &[8, 64, 64, 110, 16, 0], 0b01_1111);
        assert_eq!(
            got,
            vec![(
                BufferType::Dram,
                Geometry {
                    banks: 8,
                    alignment: 64,
                    granularity: 64
                }
            )]
        );
        // Garbage (a manager that is not one) is refused.
        assert!(geometry_from(&kinds[..1], &[8, 48, 64], 0b111).is_empty());
    }
}
