//! The register file of the engine: a value per general-purpose register, where known.
use iced_x86::Register;

use super::{abi, value::Value};

#[derive(Clone, Debug, Default)]
pub struct State {
    /// By register number (RAX = 0 ... R15 = 15).
    regs: [Option<Value>; 16],
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

    fn slot(reg: Register) -> Option<usize> {
        let full = reg.full_register();
        full.is_gpr64().then(|| full.number())
    }

    /// Any width of a register names the whole register (`%eax` is `%rax`).
    pub fn get(&self, reg: Register) -> Option<&Value> {
        self.regs[Self::slot(reg)?].as_ref()
    }

    pub fn set(&mut self, reg: Register, value: Option<Value>) {
        if let Some(n) = Self::slot(reg) {
            self.regs[n] = value;
        }
    }

    pub fn clobber_caller_saved(&mut self) {
        for r in abi::CALLER_SAVED {
            self.set(r, None);
        }
    }
}
