//! The System V x86-64 calling convention, as far as the analyses rely on it.
use iced_x86::Register;

/// Integer argument registers, in order (argument 0 is `this` for a method).
pub const ARGUMENTS: [Register; 6] = [
    Register::RDI,
    Register::RSI,
    Register::RDX,
    Register::RCX,
    Register::R8,
    Register::R9,
];

/// Registers a call may change: after one, nothing is known of them.
pub const CALLER_SAVED: [Register; 9] = [
    Register::RAX,
    Register::RCX,
    Register::RDX,
    Register::RSI,
    Register::RDI,
    Register::R8,
    Register::R9,
    Register::R10,
    Register::R11,
];

pub const RETURN: Register = Register::RAX;
