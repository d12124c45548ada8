//! The register file of the engine: a value per general-purpose register, where known.
use std::collections::BTreeMap;

use iced_x86::Register;

use super::{abi, value::Value};

/// How many bytes from its start a frame slot handed to a call by address may be written by
/// it (an out-parameter or a small object; spill slots are never handed out).
const PASSED_OBJECT: i64 = 32;

#[derive(Clone, Debug, Default)]
pub struct State {
    /// By register number (RAX = 0 ... R15 = 15).
    regs: [Option<Value>; 16],
    /// The function's frame: registers stored there, by offset from `%rsp` at entry (see
    /// [`Value::Frame`]), with the width they were stored with.
    frame: BTreeMap<i64, (u8, Value)>,
}

impl State {
    /// Each register of `arguments` (0 = `this`) holds its argument.
    pub fn with_arguments(arguments: impl IntoIterator<Item = usize>) -> Self {
        let mut s = Self::default();
        for n in arguments {
            s.set(abi::ARGUMENTS[n], Some(Value::argument(n)));
        }
        s
    }

    /// Only `reg` known, holding `value` (what a callee sees of its caller).
    pub fn only(reg: Register, value: Value) -> Self {
        let mut s = Self::default();
        s.set(reg, Some(value));
        s
    }

    fn index(reg: Register) -> Option<usize> {
        let full = reg.full_register();
        full.is_gpr64().then(|| full.number())
    }

    /// Any width of a register names the whole register (`%eax` is `%rax`).
    pub fn get(&self, reg: Register) -> Option<&Value> {
        self.regs[Self::index(reg)?].as_ref()
    }

    pub fn set(&mut self, reg: Register, value: Option<Value>) {
        if let Some(n) = Self::index(reg) {
            self.regs[n] = value;
        }
    }

    /// What a load of `width` bytes at frame offset `at` gives: the register stored there
    /// with that width.
    pub fn slot(&self, at: i64, width: u8) -> Option<&Value> {
        self.frame
            .get(&at)
            .filter(|(w, _)| *w == width)
            .map(|(_, v)| v)
    }

    /// `width` bytes at frame offset `at` now hold `value` (`None`: something unknown).
    pub fn set_slot(&mut self, at: i64, width: u8, value: Option<Value>) {
        let end = at + i64::from(width);
        self.frame
            .retain(|start, (w, _)| *start + i64::from(*w) <= at || *start >= end);
        if let Some(v) = value {
            self.frame.insert(at, (width, v));
        }
    }

    /// Before a call: the slots whose address an argument register holds may be written by
    /// the callee.
    pub fn forget_passed_slots(&mut self) {
        let passed: Vec<i64> = abi::ARGUMENTS
            .iter()
            .filter_map(|r| match self.get(*r) {
                Some(Value::Frame(at)) => Some(*at),
                _ => None,
            })
            .collect();
        for at in passed {
            self.frame
                .retain(|start, _| *start < at || *start >= at + PASSED_OBJECT);
        }
    }

    pub fn clobber_caller_saved(&mut self) {
        for r in abi::CALLER_SAVED {
            self.set(r, None);
        }
    }
}
