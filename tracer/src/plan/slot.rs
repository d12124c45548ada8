//! Building slot specs: how the eBPF program reads each value of a probed call.
use anyhow::{anyhow, Result};
use tracer_common::{arg_word, FieldPath, SlotSpec, MAX_STEPS, PT_REGS_SP, SLOT_FORGETS_DEVICE};

use super::window;
use crate::runtime::disasm::Chain;

/// Loads `chain` from argument `arg` (0 = `this`). Integer arguments past the sixth live on the
/// stack at entry: `[rsp + 8 + 8 * (arg - 6)]` (rsp points at the return address).
pub fn path(arg: u8, chain: &Chain) -> Result<FieldPath> {
    let mut hops = chain.offsets.clone();
    let base = if arg < 6 {
        arg_word(arg)
    } else {
        hops.insert(0, 8 + 8 * (i32::from(arg) - 6));
        PT_REGS_SP
    };
    if hops.len() > MAX_STEPS {
        return Err(anyhow!(
            "layout chain {} deeper than {MAX_STEPS} loads",
            chain.describe()
        ));
    }
    let mut offsets = [0i32; MAX_STEPS];
    offsets[..hops.len()].copy_from_slice(&hops);
    Ok(FieldPath {
        arg: base,
        steps: hops.len() as u8,
        width: chain.width,
        _pad: 0,
        offsets,
    })
}

/// The value of argument `arg` itself (`width` bytes of it).
pub fn register(arg: u8, width: u8) -> Result<FieldPath> {
    if arg < 6 {
        return Ok(FieldPath {
            arg: arg_word(arg),
            steps: 0,
            width,
            _pad: 0,
            offsets: [0; MAX_STEPS],
        });
    }
    let mut stack = path(arg, &Chain::field(0, width))?;
    // `path` added the stack slot hop in front of the field read; the slot IS the value.
    stack.steps -= 1;
    Ok(stack)
}

/// A callee-saved register's own value: its word in `struct pt_regs` (r15, r14, r13, r12,
/// rbp, rbx come first there).
pub fn saved_register(reg: iced_x86::Register) -> Option<FieldPath> {
    use iced_x86::Register as R;
    let word = match reg {
        R::R15 => 0,
        R::R14 => 1,
        R::R13 => 2,
        R::R12 => 3,
        R::RBP => 4,
        R::RBX => 5,
        _ => return None,
    };
    Some(FieldPath {
        arg: word,
        steps: 0,
        width: 8,
        _pad: 0,
        offsets: [0; MAX_STEPS],
    })
}

pub fn spec(fields: &[FieldPath]) -> SlotSpec {
    let mut s = SlotSpec {
        nfields: fields.len() as u32,
        ..Default::default()
    };
    s.fields[..fields.len()].copy_from_slice(fields);
    window::with_window(s)
}

/// A slot whose first value is a device object pointer (described on first sight; `forgets`
/// when the call ends that object's life).
pub fn device_spec(fields: &[FieldPath], forgets: bool) -> SlotSpec {
    let mut s = spec(fields);
    s.device_field = 1;
    if forgets {
        s.flags |= SLOT_FORGETS_DEVICE;
    }
    s
}
