//! The runtime library as a file: symbols from `.dynsym` and `.symtab`, code bytes, build-id.
use std::{collections::HashMap, path::Path};

use anyhow::{bail, Context, Result};
use object::{Object, ObjectSegment, ObjectSymbol, SymbolKind};

#[derive(Clone, Copy, Debug)]
pub struct Symbol {
    pub address: u64,
    pub size: u64,
}

pub struct Library {
    pub path: std::path::PathBuf,
    data: &'static [u8],
    /// Mangled name -> symbol (first definition wins; .dynsym and .symtab agree).
    symbols: HashMap<&'static str, Symbol>,
    pub build_id: Option<String>,
    /// (vaddr, file offset, size) of loadable segments, to turn addresses into file offsets.
    segments: Vec<(u64, u64, u64)>,
    /// The same, of the executable ones only.
    code_segments: Vec<(u64, u64, u64)>,
    /// Pointer slots the dynamic linker fills with a link-time address (`R_X86_64_RELATIVE`),
    /// by that address; read on first use.
    relative: std::sync::OnceLock<HashMap<u64, Vec<u64>>>,
}

impl Library {
    pub fn open(path: &Path) -> Result<Self> {
        let data = map(path)?;
        let (symbols, build_id, segments, code_segments) = Self::index(data, path)?;
        Ok(Self {
            path: path.to_path_buf(),
            data,
            symbols,
            build_id,
            segments,
            code_segments,
            relative: Default::default(),
        })
    }

    #[allow(clippy::type_complexity)]
    fn index(
        data: &'static [u8],
        path: &Path,
    ) -> Result<(
        HashMap<&'static str, Symbol>,
        Option<String>,
        Vec<(u64, u64, u64)>,
        Vec<(u64, u64, u64)>,
    )> {
        let file = object::File::parse(data)
            .with_context(|| format!("{} is not an ELF shared library", path.display()))?;
        let mut symbols = HashMap::new();
        for sym in file.dynamic_symbols().chain(file.symbols()) {
            if sym.kind() == SymbolKind::Text || sym.kind() == SymbolKind::Data {
                if let Ok(name) = sym.name() {
                    if sym.address() != 0 {
                        symbols.entry(name).or_insert(Symbol {
                            address: sym.address(),
                            size: sym.size(),
                        });
                    }
                }
            }
        }
        if symbols.is_empty() {
            bail!(
                "{} has no symbols (stripped?); tracer needs .dynsym or .symtab",
                path.display()
            );
        }
        let build_id = file
            .build_id()
            .ok()
            .flatten()
            .map(|b| b.iter().map(|x| format!("{x:02x}")).collect());
        let range = |s: &object::Segment| (s.address(), s.file_range().0, s.file_range().1);
        let segments = file.segments().map(|s| range(&s)).collect();
        let code_segments = file
            .segments()
            .filter(|s| {
                matches!(s.flags(), object::SegmentFlags::Elf { p_flags } if p_flags & object::elf::PF_X != 0)
            })
            .map(|s| range(&s))
            .collect();
        Ok((symbols, build_id, segments, code_segments))
    }

    pub fn symbol(&self, mangled: &str) -> Option<Symbol> {
        self.symbols.get(mangled).copied()
    }

    /// Symbols whose mangled name starts with `mangled_prefix` and whose demangled name starts
    /// with `prefix` (e.g. a constructor's qualified name and first parameter).
    pub fn find_demangled(
        &self,
        mangled_prefix: &str,
        prefix: &str,
    ) -> Vec<(String, String, Symbol)> {
        let mut out: Vec<_> = self
            .symbols
            .iter()
            .filter(|(m, _)| m.starts_with(mangled_prefix))
            .filter_map(|(m, s)| {
                let d = demangle(m)?;
                d.starts_with(prefix).then(|| (m.to_string(), d, *s))
            })
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    /// File offset of a virtual address (what the kernel's uprobe attach wants).
    pub fn file_offset(&self, vaddr: u64) -> Option<u64> {
        self.segments
            .iter()
            .find(|(a, _, len)| vaddr >= *a && vaddr < a + len)
            .map(|(a, off, _)| vaddr - a + off)
    }

    /// Virtual addresses where `needle` occurs in a loadable segment (e.g. a message in
    /// `.rodata`).
    pub fn find_bytes(&self, needle: &[u8]) -> Vec<u64> {
        let mut out = Vec::new();
        for (vaddr, off, len) in &self.segments {
            let (off, len) = (*off as usize, *len as usize);
            let Some(hay) = self.data.get(off..(off + len).min(self.data.len())) else {
                continue;
            };
            out.extend(memchr::memmem::find_iter(hay, needle).map(|i| vaddr + i as u64));
        }
        out
    }

    /// Addresses of the direct calls and jumps (`call`/`jmp`/`jcc` with a 32- or 8-bit
    /// displacement) whose destination is one of `targets`, found by their bytes in the
    /// executable segments without decoding: a byte run that only looks like such a branch
    /// is listed too, so a caller found here may be none, never the reverse.
    pub fn branches_to(&self, targets: &[u64]) -> Vec<u64> {
        let mut out = Vec::new();
        for (vaddr, off, len) in &self.code_segments {
            let (off, len) = (*off as usize, *len as usize);
            let Some(code) = self.data.get(off..(off + len).min(self.data.len())) else {
                continue;
            };
            out.extend(branch_sites(code, *vaddr, targets));
        }
        out.sort_unstable();
        out.dedup();
        out
    }

    /// Slots that the dynamic linker sets to the load address of `target` (pointers in
    /// relocated constant data, such as a table of names).
    pub fn pointers_to(&self, target: u64) -> Vec<u64> {
        let map = self.relative.get_or_init(|| {
            let mut map: HashMap<u64, Vec<u64>> = HashMap::new();
            let Ok(file) = object::File::parse(self.data) else {
                return map;
            };
            for (slot, r) in file.dynamic_relocations().into_iter().flatten() {
                if r.kind() == object::RelocationKind::Relative
                    || matches!(r.flags(), object::RelocationFlags::Elf { r_type } if r_type == object::elf::R_X86_64_RELATIVE)
                {
                    map.entry(r.addend() as u64).or_default().push(slot);
                }
            }
            map
        });
        let mut out = map.get(&target).cloned().unwrap_or_default();
        out.sort_unstable();
        out
    }

    /// The (mangled) name of a symbol defined at `address`, PLT stubs included (`name$plt`).
    pub fn symbol_at(&self, address: u64) -> Option<&str> {
        self.symbols
            .iter()
            .filter(|(_, s)| s.address == address)
            .map(|(n, _)| *n)
            .min()
    }

    /// Up to `len` bytes of the file from `offset`.
    pub fn bytes_at(&self, offset: usize, len: usize) -> Option<&[u8]> {
        self.data
            .get(offset..(offset + len).min(self.data.len()))
            .filter(|b| !b.is_empty())
    }

    /// Code bytes of a function (at most `max` bytes).
    pub fn code(&self, sym: Symbol, max: usize) -> Option<&[u8]> {
        let off = self.file_offset(sym.address)? as usize;
        let len = if sym.size > 0 { sym.size as usize } else { max }.min(max);
        self.data
            .get(off..off + len.min(self.data.len().saturating_sub(off)))
    }
}

/// Every (address, destination) of what reads as a direct near branch in `code` (at `vaddr`)
/// to one of `targets`. 32-bit displacements are found from their opcode bytes (memchr: the
/// library is tens of MB); 8-bit ones can only reach a target from its own neighbourhood.
fn branch_sites(code: &[u8], vaddr: u64, targets: &[u64]) -> Vec<u64> {
    let rel32 = |at: usize| -> Option<i64> {
        Some(i64::from(i32::from_le_bytes(
            code.get(at..at + 4)?.try_into().ok()?,
        )))
    };
    let hits = |at: u64, len: u64, rel: i64| {
        targets.contains(&at.wrapping_add(len).wrapping_add(rel as u64))
    };
    let mut out = Vec::new();
    for i in memchr::memchr3_iter(0xe8, 0xe9, 0x0f, code) {
        let at = vaddr + i as u64;
        let found = match (code[i], code.get(i + 1)) {
            (0xe8 | 0xe9, _) => rel32(i + 1).is_some_and(|r| hits(at, 5, r)),
            (0x0f, Some(0x80..=0x8f)) => rel32(i + 2).is_some_and(|r| hits(at, 6, r)),
            _ => false,
        };
        if found {
            out.push(at);
        }
    }
    for t in targets {
        let lo = t.saturating_sub(130).max(vaddr);
        let hi = (t + 130).min(vaddr + code.len() as u64);
        for at in lo..hi {
            let i = (at - vaddr) as usize;
            if let (0xeb | 0x70..=0x7f, Some(r)) = (code[i], code.get(i + 1)) {
                if hits(at, 2, i64::from(*r as i8)) {
                    out.push(at);
                }
            }
        }
    }
    out
}

/// Maps the library read-only for the rest of the process. Only the pages calibration reads
/// (symbol tables, a few functions) are touched: reading all of a 35 MB library and copying every
/// symbol name took most of the attach latency. The mapping is never unmapped (a CLI opens a
/// handful of libraries at most); a library rewritten in place while tracer reads it is the
/// caller's problem, as with any mmap.
///
/// The mapping is shared, not private: the kernel writes each uprobe's breakpoint into every
/// private executable-capable mapping of the probed file, so a private mapping shows `int3`
/// where any tracer (this one, or another) has a probe, and calibration would misread the code.
fn map(path: &Path) -> Result<&'static [u8]> {
    let file =
        std::fs::File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
    if file.metadata()?.len() == 0 {
        bail!("{} is empty", path.display());
    }
    // SAFETY: a read-only shared mapping of a file we opened; it is leaked, so the slice lives
    // as long as the process.
    let mapped = unsafe { memmap2::Mmap::map(&file) }
        .with_context(|| format!("cannot map {}", path.display()))?;
    Ok(Box::leak(Box::new(mapped)))
}

/// A symbol as messages name it: demangled where it can be.
pub fn pretty(mangled: &str) -> String {
    demangle(mangled).unwrap_or_else(|| mangled.to_string())
}

pub fn demangle(mangled: &str) -> Option<String> {
    let sym = cpp_demangle::Symbol::new(mangled).ok()?;
    sym.demangle(&Default::default()).ok()
}

/// Top-level parameters of a demangled function signature, e.g.
/// `A::f(int, std::vector<long, x> const&)` -> ["int", "std::vector<long, x> const&"].
pub fn parameters(demangled: &str) -> Vec<String> {
    top_level_list(demangled, '(', ')')
}

/// Top-level template arguments of a demangled `f<A, B<C, D>, E>(...)`.
pub fn template_args(demangled: &str) -> Vec<String> {
    top_level_list(demangled, '<', '>')
}

/// The comma-separated items between the first `open` and its matching `close`, split only
/// at the top level of nested `<>`, `()` and `[]`.
fn top_level_list(text: &str, open: char, close: char) -> Vec<String> {
    let Some(at) = text.find(open) else {
        return Vec::new();
    };
    let (mut depth, mut cur, mut out) = (0i32, String::new(), Vec::new());
    for c in text[at + open.len_utf8()..].chars() {
        match c {
            c if c == close && depth == 0 => break,
            '<' | '(' | '[' => depth += 1,
            '>' | ')' | ']' => depth -= 1,
            ',' if depth == 0 => {
                out.push(cur.trim().to_string());
                cur.clear();
                continue;
            }
            _ => {}
        }
        cur.push(c);
    }
    if !cur.trim().is_empty() {
        out.push(cur.trim().to_string());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_parameters_at_top_level() {
        let p = parameters(
            "tt::tt_metal::BankManager::BankManager(tt::tt_metal::BufferType const&, std::vector<long, std::allocator<long> > const&, unsigned long, unsigned int)",
        );
        assert_eq!(
            p,
            vec![
                "tt::tt_metal::BufferType const&",
                "std::vector<long, std::allocator<long> > const&",
                "unsigned long",
                "unsigned int"
            ]
        );
        assert!(parameters("f()").is_empty());
    }
}
