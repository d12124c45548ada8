//! Runtime discovery: find libtt_metal.so (in a command's environment or a running process),
//! read its symbols, and calibrate its layout from its machine code.
pub mod allocator;
pub mod calibrate;
pub mod core_ranges;
pub mod disasm;
pub mod discover;
pub mod dynamic_linker;
pub mod elf;
pub mod free_object;
pub mod held;
pub mod loader;
pub mod memory;
pub mod process;
pub mod programs;
pub mod python;
pub mod shm;
pub mod symbols;
pub mod x86;

/// The runtime library's file name.
pub const LIB_NAME: &str = "libtt_metal.so";
