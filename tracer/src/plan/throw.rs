//! Probes on a `tt_throw` call: where the runtime refuses something (an allocation, a program)
//! with a message whose arguments say why. A uprobe on the call instruction fires only on the
//! refusal, and at the call the message arguments are references on the stack (tt_throw's six
//! fixed parameters take every argument register): `[%rsp + 8*i]` points at argument `i`.
use tracer_common::{FieldPath, SlotSpec, MAX_STEPS, PT_REGS_SP};

use super::types::{PlannedProbe, Role};
use crate::runtime::{
    disasm::message_calls,
    elf::{demangle, template_args, Library},
};

/// One throw of a known message, with what the probe reads there.
#[derive(Clone, Debug)]
pub struct ThrowSite {
    /// Address of the call instruction (link-time).
    pub address: u64,
    /// The function it lies in (mangled) and the offset in it.
    pub function: String,
    pub offset: u64,
    pub message: String,
    pub fields: Vec<FieldPath>,
}

/// Placeholder index of the `{}` that follows `label` in `message`.
pub fn placeholder_after(message: &str, label: &str) -> Option<usize> {
    let at = message.find(label)? + label.len();
    let rest = &message[at..];
    if !rest.starts_with("{}") {
        return None;
    }
    Some(message[..at].matches("{}").count())
}

/// Message argument `index` (a reference on the stack), then the loads `then` from it.
pub fn stack_ref(index: usize, then: &[i32], width: u8) -> FieldPath {
    let mut offsets = [0i32; MAX_STEPS];
    offsets[0] = 8 * index as i32;
    offsets[1..1 + then.len()].copy_from_slice(then);
    FieldPath {
        arg: PT_REGS_SP,
        steps: 1 + then.len() as u8,
        width,
        _pad: 0,
        offsets,
    }
}

fn read_c_string(lib: &Library, vaddr: u64) -> Option<String> {
    let off = lib.file_offset(vaddr)? as usize;
    let bytes = lib.bytes_at(off, 512)?;
    let end = bytes.iter().position(|b| *b == 0)?;
    String::from_utf8(bytes[..end].to_vec()).ok()
}

/// Addresses of the strings that start with `prefix` (not tails of longer strings).
pub fn message_strings(lib: &Library, prefix: &[u8]) -> Vec<u64> {
    lib.find_bytes(prefix)
        .into_iter()
        .filter(|a| {
            lib.file_offset(a - 1)
                .and_then(|o| lib.bytes_at(o as usize, 1))
                .is_some_and(|b| b[0] == 0)
        })
        .collect()
}

/// Every `tt_throw` of one of `strings` inside the functions named by `functions`
/// ((mangled prefix, demangled prefix) pairs), with the fields `fields_for` maps its message
/// and argument types to; and why each other call was not usable.
pub fn sites(
    lib: &Library,
    strings: &[u64],
    functions: &[(&str, &str)],
    fields_for: impl Fn(&str, &[String]) -> Result<Vec<FieldPath>, String>,
) -> (Vec<ThrowSite>, Vec<String>) {
    let mut out = Vec::new();
    let mut why = Vec::new();
    for (prefix, demangled) in functions {
        for (mangled, _, sym) in lib.find_demangled(prefix, demangled) {
            let Some(code) = lib.code(sym, 1 << 16) else {
                continue;
            };
            for call in message_calls(code, sym.address, strings) {
                let thrower = lib
                    .symbol_at(call.target)
                    .map(|n| n.trim_end_matches("$plt").to_string())
                    .and_then(|n| demangle(&n));
                let Some(thrower) = thrower.filter(|t| t.contains("tt_throw<")) else {
                    why.push(format!("call at {:#x} is not a tt_throw", call.call));
                    continue;
                };
                let Some(message) = read_c_string(lib, call.string) else {
                    continue;
                };
                match fields_for(&message, &template_args(&thrower)) {
                    Ok(fields) => out.push(ThrowSite {
                        address: call.call,
                        function: mangled.clone(),
                        offset: call.call - sym.address,
                        message,
                        fields,
                    }),
                    Err(e) => why.push(format!("call at {:#x}: {e}", call.call)),
                }
            }
        }
    }
    (out, why)
}

/// The probes of `sites`, for `role`.
pub fn probes(lib: &Library, sites: Vec<ThrowSite>, role: Role) -> Vec<PlannedProbe> {
    sites
        .into_iter()
        .filter_map(|site| {
            let file_offset = lib.file_offset(site.address)?;
            let mut spec = SlotSpec {
                nfields: site.fields.len() as u32,
                ..Default::default()
            };
            spec.fields[..site.fields.len()].copy_from_slice(&site.fields);
            let short: String = site.message.chars().take(60).collect();
            Some(PlannedProbe {
                role,
                symbol: site.function.clone(),
                file_offset,
                spec,
                detail: format!(
                    "+{:#x}: the tt_throw call of \"{short}...\" (arguments read at %rsp)",
                    site.offset
                ),
            })
        })
        .collect()
}
