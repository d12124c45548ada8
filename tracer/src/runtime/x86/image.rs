//! The library as calibration reads it: symbols, function bytes, constant data. The ELF file
//! is one [`Image`]; stored extracts of real libraries are another (the calibration tests).
use super::super::elf::{Library, Symbol};

pub trait Image {
    /// How messages name the library (its path).
    fn name(&self) -> String;
    fn symbol(&self, mangled: &str) -> Option<Symbol>;
    /// Symbols whose mangled name starts with `mangled_prefix` and whose demangled name starts
    /// with `prefix`, as (mangled, demangled, symbol), by mangled name.
    fn find_demangled(&self, mangled_prefix: &str, prefix: &str) -> Vec<(String, String, Symbol)>;
    /// Code bytes of a function (at most `max` bytes).
    fn code(&self, sym: Symbol, max: usize) -> Option<&[u8]>;
    /// Up to `len` bytes at link-time address `address` (e.g. a table in `.rodata`).
    fn bytes_at_address(&self, address: u64, len: usize) -> Option<&[u8]>;
    /// The (mangled) name of a symbol defined at `address`.
    fn symbol_at(&self, address: u64) -> Option<&str>;
    /// Link-time addresses where `needle` occurs in the loaded image.
    fn find_bytes(&self, _needle: &[u8]) -> Vec<u64> {
        Vec::new()
    }
    /// Pointer slots relocated to the load address of `target`.
    fn pointers_to(&self, _target: u64) -> Vec<u64> {
        Vec::new()
    }
    /// Addresses of the direct branches (calls, jumps) to any of `targets` in the library's
    /// code, as its bytes read (see [`Library::branches_to`]).
    fn branches_to(&self, _targets: &[u64]) -> Vec<u64> {
        Vec::new()
    }
}

impl Image for Library {
    fn name(&self) -> String {
        self.path.display().to_string()
    }

    fn symbol(&self, mangled: &str) -> Option<Symbol> {
        Library::symbol(self, mangled)
    }

    fn find_demangled(&self, mangled_prefix: &str, prefix: &str) -> Vec<(String, String, Symbol)> {
        Library::find_demangled(self, mangled_prefix, prefix)
    }

    fn code(&self, sym: Symbol, max: usize) -> Option<&[u8]> {
        Library::code(self, sym, max)
    }

    fn bytes_at_address(&self, address: u64, len: usize) -> Option<&[u8]> {
        self.bytes_at(self.file_offset(address)? as usize, len)
    }

    fn symbol_at(&self, address: u64) -> Option<&str> {
        Library::symbol_at(self, address)
    }

    fn find_bytes(&self, needle: &[u8]) -> Vec<u64> {
        Library::find_bytes(self, needle)
    }

    fn pointers_to(&self, target: u64) -> Vec<u64> {
        Library::pointers_to(self, target)
    }

    fn branches_to(&self, targets: &[u64]) -> Vec<u64> {
        Library::branches_to(self, targets)
    }
}
