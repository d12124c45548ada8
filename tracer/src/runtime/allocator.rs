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
use super::{
    calibrate::pretty,
    elf::{demangle, parameters},
    symbols as sym,
    x86::{constructor_stores, this_lea_at_call, typed_accessor, Chain, Image, Stored},
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
pub fn calibrate(lib: &dyn Image) -> Result<AllocatorLayout, String> {
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
        let b = lib.bytes_at_address(addr, usize::from(width))?;
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

#[cfg(test)]
mod tests {
    use super::*;

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
