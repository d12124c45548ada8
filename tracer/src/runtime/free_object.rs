//! Where a free finds its buffer's object without reading memory.
//!
//! A free is matched to its allocation by the object the allocation's fields were read from
//! (the `Buffer*`, or in the pimpl era the `BufferImpl*` behind it). In the pimpl era the probe
//! would have to load that pointer from the `Buffer` (one user-memory read, the costliest part
//! of a hit), but `track_deallocate`'s only caller is a `BufferImpl` method that keeps its
//! `this` in a callee-saved register across the call: at the callee's entry that register
//! still holds it. This finds that register, and proves from the machine code that every
//! direct branch to `track_deallocate` in the library comes from that method and keeps `this`
//! in the same register while handing on the `Buffer&` it was given.
use iced_x86::Register;

use super::{
    elf::pretty,
    symbols as sym,
    x86::{kept::this_kept_at_calls, Image},
};

/// A callee-saved register that holds the freed buffer's object at `track_deallocate`'s entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FreeObject {
    pub register: Register,
    /// Which caller keeps it there, for `doctor`.
    pub how: String,
}

/// The register, or why frees must read the object from memory.
pub fn calibrate(lib: &dyn Image) -> Result<FreeObject, String> {
    let caller_name = pretty(sym::BUFFER_IMPL_DEALLOCATE_IMPL);
    let callee = lib
        .symbol(sym::TRACK_DEALLOCATE)
        .ok_or_else(|| format!("no `{}`", pretty(sym::TRACK_DEALLOCATE)))?;
    let caller = lib
        .symbol(sym::BUFFER_IMPL_DEALLOCATE_IMPL)
        .ok_or_else(|| format!("no `{caller_name}`"))?;
    // Calls from inside the library go through its PLT stub (the symbol is exported).
    let mut targets = vec![callee.address];
    targets.extend(
        lib.symbol(&format!("{}$plt", sym::TRACK_DEALLOCATE))
            .map(|s| s.address),
    );
    targets.sort_unstable();
    let sites = lib.branches_to(&targets);
    let inside = |at: u64| at >= caller.address && at < caller.address + caller.size;
    if let Some(other) = sites.iter().find(|at| !inside(**at)) {
        return Err(format!(
            "a branch to `track_deallocate` at {other:#x} lies outside `{caller_name}`"
        ));
    }
    if !lib.pointers_to(callee.address).is_empty() {
        return Err("`track_deallocate`'s address is stored in data (an indirect caller)".into());
    }
    let code = lib
        .code(caller, 4096)
        .ok_or_else(|| format!("cannot read `{caller_name}`"))?;
    let calls = this_kept_at_calls(code, caller.address, 1, |t| targets.contains(&t));
    // The straight-line read must have seen every branch the byte scan found (a conditional
    // one would be missed), and the scan every call the read saw.
    let seen: Vec<u64> = calls.iter().map(|c| c.at).collect();
    if calls.is_empty() || seen != sites {
        return Err(format!(
            "`{caller_name}` branches to `track_deallocate` at {sites:#x?}, read as calls at {seen:#x?}"
        ));
    }
    let register = calls[0]
        .this_in
        .filter(|r| {
            calls
                .iter()
                .all(|c| c.this_in == Some(*r) && c.passes_through)
        })
        .ok_or_else(|| {
            format!(
                "`{caller_name}` does not keep `this` in one callee-saved register at its calls"
            )
        })?;
    let name = format!("{register:?}").to_lowercase();
    let plural = if calls.len() > 1 { "s" } else { "" };
    Ok(FreeObject {
        register,
        how: format!(
            "`{caller_name}`, the only caller, keeps `this` in %{name} at its call{plural}"
        ),
    })
}
