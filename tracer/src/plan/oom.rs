//! Where the device allocator refuses an allocation: the `tt_throw` of its "Out of Memory"
//! message inside `BankManager::allocate_buffer`, found in the machine code.
//!
//! A uprobe on that call instruction fires only when an allocation fails (nothing is added to
//! the allocation hot path). At the call, tt-metal's `tt_throw<Args...>(file, line, type,
//! condition, fmt::fstring, Args const&...)` has all six argument registers taken by the fixed
//! parameters, so the message arguments are references pushed on the stack: `[%rsp + 8*i]`
//! points at argument `i`. Which argument is what comes from the message text itself; the
//! argument types from the thrower's mangled name.
use tracer_common::FieldPath;

use super::throw::{self, placeholder_after, stack_ref, ThrowSite};
use crate::runtime::elf::Library;

const MESSAGE_PREFIX: &[u8] = b"Out of Memory: Not enough space";
const ALLOCATE_BUFFER: (&str, &str) = (
    "_ZN2tt8tt_metal11BankManager15allocate_buffer",
    "tt::tt_metal::BankManager::allocate_buffer(",
);

/// Values an OOM probe reads, in this order.
pub mod field {
    pub const REQUESTED: usize = 0;
    pub const TYPE_LEN: usize = 1;
    pub const TYPE_CHARS: usize = 2;
    pub const BANKS: usize = 3;
    pub const PER_BANK: usize = 4;
    pub const BANK_SIZE: usize = 5;
    pub const ALLOCATED: usize = 6;
    pub const FREE: usize = 7;
    pub const LARGEST_FREE: usize = 8;
    pub const COUNT: usize = 9;
}

/// The message's arguments as fields, checked against the thrower's argument types.
fn fields_for(message: &str, types: &[String]) -> Result<Vec<FieldPath>, String> {
    let labels = [
        ("requested", "allocate "),
        ("type", " B "),
        ("banks", "across "),
        ("bank_size", "bank size is "),
        ("allocated", "allocated: "),
        ("free", "free: "),
        ("largest_free", "largest free block: "),
    ];
    let mut idx = std::collections::HashMap::new();
    for (name, label) in labels {
        let i = placeholder_after(message, label)
            .ok_or_else(|| format!("no `{label}{{}}` ({name}) in the message"))?;
        idx.insert(name, i);
    }
    // The per-bank share: "needs to store {} B" or "({} B per bank)".
    let per_bank = placeholder_after(message, "store ")
        .or_else(|| placeholder_after(message, "banks ("))
        .ok_or("no per-bank size in the message")?;
    idx.insert("per_bank", per_bank);
    let ty = |name: &str| types.get(idx[name]).map(String::as_str).unwrap_or("");
    for name in [
        "requested",
        "per_bank",
        "bank_size",
        "allocated",
        "free",
        "largest_free",
    ] {
        if ty(name) != "unsigned long" {
            return Err(format!(
                "argument {} ({name}) is `{}`, expected unsigned long",
                idx[name],
                ty(name)
            ));
        }
    }
    if ty("banks") != "unsigned int" {
        return Err(format!("banks argument is `{}`", ty("banks")));
    }
    if !ty("type").starts_with("std::basic_string_view<char") {
        return Err(format!("type argument is `{}`", ty("type")));
    }
    let mut f = vec![FieldPath::default(); field::COUNT];
    f[field::REQUESTED] = stack_ref(idx["requested"], &[0], 8);
    // libstdc++ string_view: {size_t len, const char* str}.
    f[field::TYPE_LEN] = stack_ref(idx["type"], &[0], 8);
    f[field::TYPE_CHARS] = stack_ref(idx["type"], &[8, 0], 8);
    f[field::BANKS] = stack_ref(idx["banks"], &[0], 4);
    f[field::PER_BANK] = stack_ref(idx["per_bank"], &[0], 8);
    f[field::BANK_SIZE] = stack_ref(idx["bank_size"], &[0], 8);
    f[field::ALLOCATED] = stack_ref(idx["allocated"], &[0], 8);
    f[field::FREE] = stack_ref(idx["free"], &[0], 8);
    f[field::LARGEST_FREE] = stack_ref(idx["largest_free"], &[0], 8);
    Ok(f)
}

/// Every out-of-memory throw site in `BankManager::allocate_buffer`, or why none was usable.
pub fn sites(lib: &Library) -> Result<Vec<ThrowSite>, String> {
    let strings = throw::message_strings(lib, MESSAGE_PREFIX);
    if strings.is_empty() {
        return Err(format!(
            "no \"{}...\" message in the library",
            String::from_utf8_lossy(MESSAGE_PREFIX)
        ));
    }
    if lib
        .find_demangled(ALLOCATE_BUFFER.0, ALLOCATE_BUFFER.1)
        .is_empty()
    {
        return Err("no BankManager::allocate_buffer symbol".into());
    }
    let (out, why) = throw::sites(lib, &strings, &[ALLOCATE_BUFFER], fields_for);
    if out.is_empty() {
        return Err(format!(
            "no usable out-of-memory throw in BankManager::allocate_buffer ({})",
            if why.is_empty() {
                "the message is never passed to a call".to_string()
            } else {
                why.join("; ")
            }
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::elf::template_args;
    use tracer_common::PT_REGS_SP;

    #[test]
    fn maps_message_placeholders_to_arguments() {
        let msg = "Out of Memory: Not enough space to allocate {} B {} buffer across {} banks, where each bank needs to store {} B, but bank size is {} B (allocated: {} B, free: {} B, largest free block: {} B).{}";
        let types: Vec<String> = template_args(
            "void tt::assert::detail::tt_throw<unsigned long, std::basic_string_view<char, std::char_traits<char> >, unsigned int, unsigned long, unsigned long, unsigned long, unsigned long, unsigned long, std::__cxx11::basic_string<char> >(char const*, int)",
        );
        assert_eq!(types.len(), 9);
        let f = fields_for(msg, &types).unwrap();
        assert_eq!(f[field::REQUESTED].offsets[..2], [0, 0]);
        assert_eq!(f[field::TYPE_CHARS].offsets[..3], [8, 8, 0]);
        assert_eq!(f[field::BANKS].offsets[0], 16);
        assert_eq!(f[field::BANKS].width, 4);
        assert_eq!(f[field::ALLOCATED].offsets[0], 40);
        assert_eq!(f[field::LARGEST_FREE].offsets[0], 56);
        assert_eq!(f[0].arg, PT_REGS_SP);
    }

    #[test]
    fn rejects_mismatched_argument_types() {
        let msg = "Out of Memory: Not enough space to allocate {} B {} buffer across {} banks, where each bank needs to store {} B, but bank size is {} B (allocated: {} B, free: {} B, largest free block: {} B)";
        let types = vec!["unsigned int".to_string(); 8];
        assert!(fields_for(msg, &types).is_err());
    }
}
