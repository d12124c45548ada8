//! Where the runtime refuses a program because its circular buffers would run into L1 buffers:
//! the `tt_throw` of "Statically allocated circular (or dataflow) buffers in program {} clash
//! with L1 buffers on core range {}. L1 buffer allocated at {} and static ... region ends at {}"
//! inside `ProgramImpl::validate_circular_buffer_region` (and its dataflow-buffer twin).
//!
//! As for out-of-memory (plan/oom.rs), a uprobe on the call instruction fires only when the
//! refusal happens, and the message's arguments are references on the stack at the call.
use tracer_common::FieldPath;

use super::throw::{self, placeholder_after, stack_ref, ThrowSite};
use crate::runtime::elf::Library;

const MESSAGES: [&[u8]; 2] = [
    b"Statically allocated circular buffers in program {} clash with L1 buffers",
    b"Statically allocated dataflow buffers in program {} clash with L1 buffers",
];
const VALIDATORS: [(&str, &str); 2] = [
    (
        "_ZN2tt8tt_metal6detail11ProgramImpl31validate_circular_buffer_region",
        "tt::tt_metal::detail::ProgramImpl::validate_circular_buffer_region(",
    ),
    (
        "_ZN2tt8tt_metal6detail11ProgramImpl31validate_dataflow_buffer_region",
        "tt::tt_metal::detail::ProgramImpl::validate_dataflow_buffer_region(",
    ),
];

/// Values a clash probe reads, in this order.
pub mod field {
    pub const PROGRAM: usize = 0;
    /// The core range, as the string the runtime formatted (`CoreRange::str()`): its length,
    /// then its first [`RANGE_WORDS`] words of characters.
    pub const RANGE_LEN: usize = 1;
    pub const RANGE_CHARS: usize = 2;
    pub const RANGE_WORDS: usize = 4;
    pub const L1_BUFFER: usize = 6;
    pub const REGION_END: usize = 7;
    pub const COUNT: usize = 8;
}

/// The message's arguments as fields.
fn fields_for(message: &str, types: &[String]) -> Result<Vec<FieldPath>, String> {
    let at = |label: &str| {
        placeholder_after(message, label).ok_or_else(|| format!("no `{label}{{}}` in the message"))
    };
    let (program, range, l1, end) = (
        at("in program ")?,
        at("on core range ")?,
        at("allocated at ")?,
        at("region ends at ")?,
    );
    let ty = |i: usize| types.get(i).map(String::as_str).unwrap_or("");
    if !ty(range).starts_with("std::__cxx11::basic_string<char") {
        return Err(format!("core range argument is `{}`", ty(range)));
    }
    for (name, i) in [("program", program), ("L1 buffer", l1), ("region end", end)] {
        if !matches!(ty(i), "unsigned long" | "unsigned int" | "long" | "int") {
            return Err(format!("{name} argument is `{}`", ty(i)));
        }
    }
    let width = |i: usize| if ty(i).ends_with("long") { 8 } else { 4 };
    let mut f = vec![FieldPath::default(); field::COUNT];
    f[field::PROGRAM] = stack_ref(program, &[0], width(program));
    // libstdc++ std::string: {char* data, size_t length, ...}.
    f[field::RANGE_LEN] = stack_ref(range, &[8], 8);
    for w in 0..field::RANGE_WORDS {
        f[field::RANGE_CHARS + w] = stack_ref(range, &[0, 8 * w as i32], 8);
    }
    f[field::L1_BUFFER] = stack_ref(l1, &[0], width(l1));
    f[field::REGION_END] = stack_ref(end, &[0], width(end));
    Ok(f)
}

/// Every clash throw site, or why none was usable.
pub fn sites(lib: &Library) -> Result<Vec<ThrowSite>, String> {
    let strings: Vec<u64> = MESSAGES
        .iter()
        .flat_map(|m| throw::message_strings(lib, m))
        .collect();
    if strings.is_empty() {
        return Err("no \"... clash with L1 buffers ...\" message in the library".into());
    }
    let (out, why) = throw::sites(lib, &strings, &VALIDATORS, fields_for);
    if out.is_empty() {
        return Err(format!(
            "no usable clash throw in ProgramImpl::validate_circular_buffer_region ({})",
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

    #[test]
    fn maps_the_clash_message_to_arguments() {
        let msg = "Statically allocated circular buffers in program {} clash with L1 buffers on core range {}. L1 buffer allocated at {} and static circular buffer region ends at {}";
        let types = vec![
            "unsigned long".to_string(),
            "std::__cxx11::basic_string<char, std::char_traits<char>, std::allocator<char> >"
                .to_string(),
            "unsigned long".to_string(),
            "unsigned long".to_string(),
        ];
        let f = fields_for(msg, &types).unwrap();
        assert_eq!(f[field::PROGRAM].offsets[..2], [0, 0]);
        assert_eq!(f[field::RANGE_LEN].offsets[..2], [8, 8]);
        assert_eq!(f[field::RANGE_CHARS + 3].offsets[..3], [8, 0, 24]);
        assert_eq!(f[field::REGION_END].offsets[0], 24);
        assert!(fields_for(msg, &types[..2]).is_err());
    }
}
