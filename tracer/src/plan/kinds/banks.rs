//! `BankManager(BufferType const&, <bank offsets>, ..., alignment, ...)`: a bank manager is
//! built, and with it the geometry of one buffer type (bank count, page alignment, minimum
//! block). The bank offsets come as a `std::vector` or, in other releases, a
//! `std::unordered_map`.
use tracer_common::SlotSpec;

use super::{Hit, Values};
use crate::{
    model::{BufferType, Geometry},
    plan::{
        slot::{path, register, spec},
        types::Role,
    },
    runtime::{
        disasm::Chain,
        elf::{parameters, Library},
    },
};

/// Both variants: the buffer type first.
pub const KIND: usize = 0;
/// Vector variant: begin, end, alignment, minimum block.
pub mod vector {
    pub const BEGIN: usize = 1;
    pub const END: usize = 2;
    pub const ALIGNMENT: usize = 3;
    pub const GRANULE: usize = 4;
}
/// Map variant: element count, alignment, minimum block.
pub mod map {
    pub const COUNT: usize = 1;
    pub const ALIGNMENT: usize = 2;
    pub const GRANULE: usize = 3;
}

/// The slot of one constructor, from its parameter types.
pub fn probe(lib: &Library, mangled: &str, demangled: &str) -> Option<(Role, SlotSpec)> {
    let params = parameters(demangled);
    // Every parameter here is of INTEGER class, so parameter i is argument i + 1.
    let args = |pred: &dyn Fn(&str) -> bool| -> Vec<u8> {
        params
            .iter()
            .enumerate()
            .filter(|(_, p)| pred(p))
            .map(|(i, _)| i as u8 + 1)
            .collect()
    };
    let kind = *args(&|p| p.starts_with("tt::tt_metal::BufferType")).first()?;
    let uints = args(&|p| p == "unsigned int");
    // The first `unsigned int` is the page alignment; a second one, where the release has it,
    // is the allocator's minimum block (each bank's share is rounded up to it).
    let align = register(*uints.first()?, 4).ok()?;
    let granule = register(*uints.get(1).unwrap_or(&uints[0]), 4).ok()?;
    let _ = lib.symbol(mangled)?;
    let kind_f = path(kind, &Chain::field(0, 4)).ok()?;
    if let Some(c) = args(&|p| p.starts_with("std::vector<")).first() {
        let begin = path(*c, &Chain::field(0, 8)).ok()?;
        let end = path(*c, &Chain::field(8, 8)).ok()?;
        return Some((
            Role::BanksVector,
            spec(&[kind_f, begin, end, align, granule]),
        ));
    }
    if let Some(c) = args(&|p| p.starts_with("std::unordered_map<")).first() {
        // libstdc++'s _Hashtable: buckets, bucket_count, before_begin, element_count.
        let count = path(*c, &Chain::field(0x18, 8)).ok()?;
        return Some((Role::BanksMap, spec(&[kind_f, count, align, granule])));
    }
    None
}

fn raw(v: &Values, i: usize) -> u64 {
    v.all().get(i).copied().unwrap_or(0)
}

pub fn decode_vector(v: &Values) -> Option<Hit> {
    Some(Hit::Banks {
        kind: BufferType::from_raw(raw(v, KIND))?,
        geometry: Geometry {
            banks: (raw(v, vector::END).saturating_sub(raw(v, vector::BEGIN)) / 8) as u32,
            alignment: raw(v, vector::ALIGNMENT) as u32,
            granularity: raw(v, vector::GRANULE) as u32,
        },
    })
}

pub fn decode_map(v: &Values) -> Option<Hit> {
    Some(Hit::Banks {
        kind: BufferType::from_raw(raw(v, KIND))?,
        geometry: Geometry {
            banks: raw(v, map::COUNT) as u32,
            alignment: raw(v, map::ALIGNMENT) as u32,
            granularity: raw(v, map::GRANULE) as u32,
        },
    })
}
