//! Allocator geometry of a process that opened its devices before tracer attached.
//!
//! The bank managers' constructors (probed for geometry) ran before the probes existed, so the
//! geometry is read from the allocator itself, in the process, by a probe on
//! `AllocatorImpl::allocate_buffer(Buffer*)` (entered before every allocation, `this` is the
//! allocator; tracer removes that probe once each attached process has reported). The paths
//! come from the runtime's own code:
//! - `AllocatorImpl::get_num_banks(BufferType const&) const` picks the bank manager of a type
//!   through a table in `.rodata` and reads its bank count (or tail-calls the manager's
//!   `num_banks()`, whose own load is the count's second source): evaluated per buffer type;
//! - the `BankManager` constructor stores the page alignment argument into the manager;
//! - `BankManager::init_allocators` builds the per-bank sub-allocators (a vector of
//!   `unique_ptr<allocator::Algorithm>`; `BankManager::get_allocator_from_id` indexes the same
//!   vector), and the `FreeListOpt` constructor stores its minimum block (the granule each
//!   bank's share is rounded up to).
use super::{
    calibrate::{is_function, pretty, FieldSources, Finding},
    elf::{demangle, parameters},
    symbols as sym,
    x86::{
        accessor_chain, constructor_stores, indexed_member, this_lea_at_call, typed_accessor,
        typed_member_at_call, typed_tail_call, Chain, Image, Stored,
    },
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
    /// How each value was found, for `doctor` (see [`FieldSources`]).
    pub provenance: Vec<FieldSources>,
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

/// One source's answer: the offset it found (a chain of one load of `width` bytes).
pub(super) fn finding(source: String, offset: Option<i32>, width: u8) -> Finding {
    Finding {
        source,
        chain: offset.map(|o| Chain::field(o, width)),
    }
}

/// Cross-checks the sources of one value (the first that found it is used; another one that
/// found something else is an error naming both).
pub(super) fn resolve(
    lib: &dyn Image,
    field: &str,
    findings: Vec<Finding>,
) -> Result<(i32, FieldSources), String> {
    let sources = FieldSources {
        field: field.to_string(),
        findings,
        if_missing: None,
    };
    let Some(used) = sources.used() else {
        let tried: Vec<&str> = sources.findings.iter().map(|f| f.source.as_str()).collect();
        return Err(format!("{field}: none of {} found it", tried.join(", ")));
    };
    let chain = used.chain.clone().expect("used has a chain");
    for other in sources.confirming() {
        let c = other.chain.as_ref().expect("confirming has a chain");
        if c.offsets != chain.offsets {
            return Err(format!(
                "{field}: its sources disagree in {}: {} gives {} but {} gives {}",
                lib.name(),
                used.source,
                chain.describe(),
                other.source,
                c.describe()
            ));
        }
    }
    Ok((chain.offsets[0], sources))
}

/// A constructor's name with its first two parameter types, template arguments elided (enough
/// to tell the overloads apart).
fn shorter(demangled: &str) -> String {
    let mut out = String::new();
    let mut depth = 0;
    for ch in demangled.chars() {
        match ch {
            '<' => {
                if depth == 0 {
                    out.push_str("<...>");
                }
                depth += 1;
            }
            '>' => depth -= 1,
            _ if depth == 0 => out.push(ch),
            _ => {}
        }
    }
    let mut parts = out.splitn(3, ", ");
    match (parts.next(), parts.next(), parts.next()) {
        (Some(a), Some(b), Some(_)) => format!("{a}, {b}, ...)"),
        _ => out,
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
    let mut provenance = Vec::new();
    // Where the probe sits: without it, nothing reads the geometry.
    code_of(sym::ALLOCATOR_ALLOCATE_BUFFER)?;
    let read = |addr: u64, width: u8| -> Option<u64> {
        let b = lib.bytes_at_address(addr, usize::from(width))?;
        let mut v = [0u8; 8];
        v[..b.len()].copy_from_slice(b);
        Some(u64::from_le_bytes(v))
    };
    let function = |mangled: &str| {
        lib.symbol(mangled)
            .and_then(|s| Some((lib.code(s, 512)?, s.address)))
    };
    let num_banks = pretty(sym::ALLOCATOR_NUM_BANKS);
    let bank_count = pretty(sym::BANK_MANAGER_NUM_BANKS);
    let get_num_banks = function(sym::ALLOCATOR_NUM_BANKS);
    let reset = function(sym::ALLOCATOR_RESET_SIZE);
    let is_reset = |t: u64| is_function(lib, t, sym::BANK_MANAGER_RESET_SIZE);
    // Per type: the manager's offset, from the accessor of its bank count (which reads the
    // count itself or tail-calls the manager's own accessor) and from the method that resets
    // it (both pick the manager through a table indexed by the type).
    let mut managers = Vec::new();
    let mut inline_banks = None;
    for kind in [
        BufferType::Dram,
        BufferType::L1,
        BufferType::L1Small,
        BufferType::Trace,
    ] {
        let k = kind.index() as u64;
        let mut from_banks = None;
        if let Some((code, ip)) = get_num_banks {
            if let Some(c) = typed_accessor(code, ip, k, &read) {
                if c.offsets.len() == 2 && c.width == 4 {
                    from_banks = Some(c.offsets[0]);
                    inline_banks = inline_banks.or(Some(c.offsets[1]));
                }
            } else if let Some((c, callee)) = typed_tail_call(code, ip, k, &read) {
                if c.offsets.len() == 1 && is_function(lib, callee, sym::BANK_MANAGER_NUM_BANKS) {
                    from_banks = Some(c.offsets[0]);
                }
            }
        }
        let from_reset = reset
            .and_then(|(c, ip)| typed_member_at_call(c, ip, k, &read, &is_reset))
            .filter(|c| c.offsets.len() == 1)
            .map(|c| c.offsets[0]);
        if from_banks.is_none() && from_reset.is_none() {
            continue; // No manager of this type (buffer type 2 has none).
        }
        let (at, sources) = resolve(
            lib,
            &format!("AllocatorImpl {} bank manager", kind.name()),
            vec![
                finding(format!("`{num_banks}` for {}", kind.name()), from_banks, 8),
                finding(
                    format!(
                        "the manager `{}` resets for {}",
                        pretty(sym::ALLOCATOR_RESET_SIZE),
                        kind.name()
                    ),
                    from_reset,
                    8,
                ),
            ],
        )?;
        managers.push((kind, at));
        provenance.push(sources);
    }
    if managers.is_empty() {
        return Err(format!(
            "neither `{num_banks}` nor `{}` picks a bank manager through a table",
            pretty(sym::ALLOCATOR_RESET_SIZE)
        ));
    }
    let accessor_banks = lib
        .symbol(sym::BANK_MANAGER_NUM_BANKS)
        .and_then(|s| accessor_chain(lib.code(s, 64)?, s.address, 0))
        .filter(|c| c.offsets.len() == 1 && c.width == 4)
        .map(|c| c.offsets[0]);
    let (banks, sources) = resolve(
        lib,
        "BankManager bank count",
        vec![
            finding(format!("the load in `{num_banks}`"), inline_banks, 4),
            finding(format!("accessor `{bank_count}`"), accessor_banks, 4),
        ],
    )?;
    provenance.push(sources);
    let managers = managers
        .into_iter()
        .map(|(kind, at)| (kind, at, banks))
        .collect();
    // Each BankManager constructor (one per way of giving the bank offsets) stores the
    // alignment: every distinct body is a source.
    let mut bodies = Vec::new();
    let mut alignments = Vec::new();
    for (_, demangled, s) in lib.find_demangled(sym::BANK_MANAGER_CTOR.0, sym::BANK_MANAGER_CTOR.1)
    {
        if bodies.contains(&s.address) {
            continue; // C1 and C2 share one body.
        }
        bodies.push(s.address);
        let params = parameters(&demangled);
        let stored = params
            .iter()
            .position(|p| p == "unsigned int")
            .and_then(|i| {
                constructor_stores(lib.code(s, 4096)?, s.address, 1500)
                    .into_iter()
                    .find(|st| st.value == Stored::Arg(i + 1) && st.width == 4)
                    .map(|st| st.offset)
            });
        alignments.push(finding(
            format!(
                "constructor store of the alignment argument in `{}`",
                shorter(&demangled)
            ),
            stored,
            4,
        ));
    }
    if alignments.is_empty() {
        alignments.push(finding(
            format!("constructor store in `{}...)`", sym::BANK_MANAGER_CTOR.1),
            None,
            4,
        ));
    }
    let (alignment, sources) = resolve(lib, "BankManager alignment", alignments)?;
    provenance.push(sources);
    let resized = function(sym::BANK_MANAGER_INIT_ALLOCATORS).and_then(|(code, ip)| {
        this_lea_at_call(code, ip, |target| {
            lib.symbol_at(target)
                .and_then(demangle)
                .is_some_and(|d| d.contains("unique_ptr<tt::tt_metal::allocator::Algorithm"))
        })
    });
    let indexed = lib
        .symbol(sym::BANK_MANAGER_ALLOCATOR_FROM_ID)
        .and_then(|s| indexed_member(lib.code(s, 256)?, s.address))
        .filter(|c| c.offsets.len() == 1)
        .map(|c| c.offsets[0]);
    let (sub_allocators, sources) = resolve(
        lib,
        "BankManager sub-allocators",
        vec![
            finding(
                format!(
                    "the vector of allocator::Algorithm `{}` sizes",
                    pretty(sym::BANK_MANAGER_INIT_ALLOCATORS)
                ),
                resized,
                8,
            ),
            finding(
                format!(
                    "the vector `{}` indexes",
                    pretty(sym::BANK_MANAGER_ALLOCATOR_FROM_ID)
                ),
                indexed,
                8,
            ),
        ],
    )?;
    provenance.push(sources);
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
        });
    let (min_block, sources) = resolve(
        lib,
        "FreeListOpt minimum block",
        vec![finding(
            format!(
                "constructor store of the minimum allocation size in `{}...)`",
                sym::FREE_LIST_CTOR.1
            ),
            min_block,
            8,
        )],
    )?;
    provenance.push(sources);
    Ok(AllocatorLayout {
        managers,
        alignment,
        sub_allocators,
        min_block,
        provenance,
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
            provenance: vec![],
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
