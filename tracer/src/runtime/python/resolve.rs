//! Code objects of a live process -> file, function and line: read once with
//! `process_vm_readv` per code object (and again only when the object at that address
//! changed), the line from its line table.
use std::{collections::HashMap, sync::Arc};

use anyhow::{bail, Context, Result};

use super::{lines::line_at, Instruction, Layout};
use crate::model::{Frame, Site};

/// Frames a site keeps (innermost user frames, after the library frames inside them).
pub const SITE_FRAMES: usize = 8;

/// `len` bytes of process `pid` at `addr`.
pub fn read(pid: u32, addr: u64, len: usize) -> Result<Vec<u8>> {
    let mut buf = vec![0u8; len];
    let remote = [nix::sys::uio::RemoteIoVec {
        base: addr as usize,
        len,
    }];
    let n = nix::sys::uio::process_vm_readv(
        nix::unistd::Pid::from_raw(pid as i32),
        &mut [std::io::IoSliceMut::new(&mut buf)],
        &remote,
    )
    .with_context(|| format!("cannot read {len} bytes at {addr:#x} of PID {pid}"))?;
    if n != len {
        bail!("PID {pid}: short read at {addr:#x} ({n} of {len} bytes)");
    }
    Ok(buf)
}

pub fn read_u64(pid: u32, addr: u64) -> Result<u64> {
    let b = read(pid, addr, 8)?;
    Ok(u64::from_le_bytes(b.try_into().unwrap()))
}

fn word(b: &[u8], at: i32, width: usize) -> Option<u64> {
    let at = usize::try_from(at).ok()?;
    let mut out = [0u8; 8];
    out[..width].copy_from_slice(b.get(at..at + width)?);
    Some(u64::from_le_bytes(out))
}

/// What a code object names.
#[derive(Debug)]
struct Code {
    /// The header it was read from: the same bytes at the same address are the same object.
    header: Vec<u8>,
    file: String,
    function: String,
    first: i32,
    table: Vec<u8>,
}

/// Resolves the frames of one process.
pub struct Resolver {
    pid: u32,
    layout: Arc<Layout>,
    /// Where the interpreter library is loaded (its types' addresses are link-time).
    base: u64,
    codes: HashMap<u64, Arc<Code>>,
    header_len: usize,
    /// Stacks whose frames could not be read at all (the process gone, a layout mismatch).
    pub failed: u64,
    /// The op a program line calls, by (file, line).
    ops: HashMap<(String, u32), Option<String>>,
    /// Sites of stacks seen recently, by their raw frames: a loop allocating from one line
    /// makes the same stack again and again, and reading its code objects each time (a
    /// system call per frame) made the tracer fall behind. An entry is read again once it is
    /// [`STACK_FRESH`] old, so a code object freed and another made at its address is caught
    /// too (never a wrong frame for long; the same instruction pointers in every frame of a
    /// new code object at the same addresses within that time is all it would take).
    stacks: HashMap<Vec<[u64; 2]>, (std::time::Instant, Option<Site>)>,
}

/// How long a resolved stack is reused without reading its code objects again.
const STACK_FRESH: std::time::Duration = std::time::Duration::from_millis(500);

impl Resolver {
    pub fn new(pid: u32, layout: Arc<Layout>, base: u64) -> Self {
        let f = layout.code_fields;
        let header_len = [
            f.filename,
            f.qualname,
            f.firstlineno,
            f.linetable,
            layout.ob_type,
        ]
        .into_iter()
        .max()
        .unwrap_or(0) as usize
            + 8;
        Self {
            pid,
            layout,
            base,
            codes: HashMap::new(),
            header_len,
            failed: 0,
            ops: HashMap::new(),
            stacks: HashMap::new(),
        }
    }

    /// Whether the object whose first bytes are `head` is of the type at link-time address
    /// `ty`.
    fn is(&self, head: &[u8], ty: u64) -> bool {
        word(head, self.layout.ob_type, 8) == Some(self.base.wrapping_add(ty))
    }

    fn string(&self, ptr: u64) -> Option<String> {
        let s = self.layout.str;
        let head = [s.length, s.state, s.ascii_data, s.utf8, self.layout.ob_type]
            .into_iter()
            .max()? as usize
            + 8;
        let h = read(self.pid, ptr, head).ok()?;
        if !self.is(&h, self.layout.str_type) {
            return None;
        }
        let len = word(&h, s.length, 8)? as usize;
        if len > 4096 {
            return None;
        }
        let state = word(&h, s.state, 1)? as u8;
        let bytes = if state & s.ascii_mask == s.ascii_mask {
            read(self.pid, ptr + s.ascii_data as u64, len).ok()?
        } else {
            let utf8 = word(&h, s.utf8, 8)?;
            if utf8 == 0 {
                return None;
            }
            let mut b = read(self.pid, utf8, (len * 4).min(4096)).ok()?;
            let end = b.iter().position(|c| *c == 0)?;
            b.truncate(end);
            b
        };
        String::from_utf8(bytes).ok()
    }

    fn bytes(&self, ptr: u64) -> Option<Vec<u8>> {
        let b = self.layout.bytes;
        let head = read(
            self.pid,
            ptr,
            (b.size.max(self.layout.ob_type) + 8) as usize,
        )
        .ok()?;
        if !self.is(&head, self.layout.bytes_type) {
            return None;
        }
        let size = word(&head, b.size, 8)? as usize;
        if size > 1 << 20 {
            return None;
        }
        read(self.pid, ptr + b.data as u64, size).ok()
    }

    fn code(&mut self, addr: u64) -> Option<Arc<Code>> {
        let header = read(self.pid, addr, self.header_len).ok()?;
        if !self.is(&header, self.layout.code_type) {
            return None;
        }
        if let Some(c) = self.codes.get(&addr) {
            if c.header == header {
                return Some(c.clone());
            }
        }
        let f = self.layout.code_fields;
        let code = Arc::new(Code {
            file: self.string(word(&header, f.filename, 8)?)?,
            function: self.string(word(&header, f.qualname, 8)?)?,
            first: word(&header, f.firstlineno, 4)? as u32 as i32,
            table: self.bytes(word(&header, f.linetable, 8)?)?,
            header,
        });
        self.codes.insert(addr, code.clone());
        Some(code)
    }

    /// One frame: its code object and instruction as the probe read them.
    pub fn frame(&mut self, code: u64, instr: u64) -> Option<Frame> {
        let c = self.code(code)?;
        let offset = match self.layout.instr {
            Instruction::Pointer { code_start } => {
                instr.checked_sub(code.checked_add(code_start as u64)?)
            }
            Instruction::Index { width } => {
                let signed = match width {
                    4 => i64::from(instr as u32 as i32),
                    2 => i64::from(instr as u16 as i16),
                    _ => instr as i64,
                };
                u64::try_from(signed).ok().map(|i| i * 2)
            }
        };
        let line = offset
            .and_then(|o| line_at(self.layout.lines, &c.table, c.first, o))
            .unwrap_or(0);
        Some(Frame {
            file: c.file.clone(),
            function: c.function.clone(),
            line,
        })
    }

    /// The site of a stack (innermost frame first); `None` when no frame could be read.
    pub fn site(&mut self, frames: &[[u64; 2]]) -> Option<Site> {
        let now = std::time::Instant::now();
        if let Some((at, site)) = self.stacks.get(frames) {
            if now.duration_since(*at) < STACK_FRESH {
                return site.clone();
            }
        }
        let site = self.read_site(frames);
        if self.stacks.len() > 1 << 16 {
            self.stacks
                .retain(|_, (at, _)| now.duration_since(*at) < STACK_FRESH);
        }
        self.stacks.insert(frames.to_vec(), (now, site.clone()));
        site
    }

    fn read_site(&mut self, frames: &[[u64; 2]]) -> Option<Site> {
        let mut all = Vec::with_capacity(frames.len());
        let mut cut = false;
        for [code, instr] in frames {
            match self.frame(*code, *instr) {
                Some(f) => all.push(f),
                // A frame that cannot be read ends the stack (what lies past it is unknown:
                // the code object is gone, e.g. freed by the interpreter's finalization before
                // the tracer read it).
                None => {
                    cut = true;
                    break;
                }
            }
        }
        // Interpreter shims (3.12 runs its entry frames on a trampoline code object) are
        // not lines of any program.
        all.retain(|f| !(f.file.is_empty() || f.file.starts_with("<shim")));
        // A cut stack of library frames only would name ttnn's own code as the site.
        let user = all.iter().any(|f| !Site::is_library_file(&f.file));
        if all.is_empty() || cut && !user {
            self.failed += 1;
            return None;
        }
        let mut site = trim(all);
        if site.op.is_none() {
            site.op = self.op_on_line(&site);
        }
        Some(site)
    }

    /// The ttnn operation the program's line calls, when the frame inside it is ttnn's
    /// operation wrapper (which every operation shares, so its code names none): the one
    /// `ttnn.NAME(` the line's source text calls. A line calling several, or none by that
    /// name (an alias), gives no op rather than a guess.
    fn op_on_line(&mut self, site: &Site) -> Option<String> {
        let user = site
            .frames
            .iter()
            .position(|f| !Site::is_library_file(&f.file))?;
        let inner = site.frames.get(user.checked_sub(1)?)?;
        if !inner.file.contains("/ttnn/") {
            return None;
        }
        let f = &site.frames[user];
        let key = (f.file.clone(), f.line);
        if let Some(op) = self.ops.get(&key) {
            return op.clone();
        }
        let path = format!("/proc/{}/root{}", self.pid, f.file);
        let text = std::fs::read_to_string(&path)
            .or_else(|_| std::fs::read_to_string(&f.file))
            .ok();
        let op = text.and_then(|t| {
            let line = t.lines().nth((f.line as usize).checked_sub(1)?)?;
            called_op(line)
        });
        self.ops.insert(key, op.clone());
        op
    }
}

/// The one distinct `ttnn.NAME(` (NAME an identifier, dotted submodules allowed, not a
/// class) a line of source calls; `None` for none or several.
fn called_op(line: &str) -> Option<String> {
    let code = line.split('#').next().unwrap_or(line);
    let mut found: Vec<String> = Vec::new();
    let mut rest = code;
    while let Some(at) = rest.find("ttnn.") {
        let before = rest[..at].chars().next_back();
        let tail = &rest[at + 5..];
        let name: String = tail
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '.')
            .collect();
        let after = tail[name.len()..].trim_start();
        let standalone = !before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.');
        // `ttnn.Shape(...)`: constructing a value, not calling an operation.
        let class = name
            .rsplit('.')
            .next()
            .is_some_and(|n| n.starts_with(|c: char| c.is_ascii_uppercase()));
        if standalone && !class && !name.is_empty() && after.starts_with('(') {
            let op = format!("ttnn.{name}");
            if !found.contains(&op) {
                found.push(op);
            }
        }
        rest = &tail[name.len()..];
    }
    (found.len() == 1).then(|| found.remove(0))
}

/// Keeps the innermost library frame next to the program (the entry point the program
/// called) and the program's frames out from there, at most [`SITE_FRAMES`].
fn trim(all: Vec<Frame>) -> Site {
    let first_user = all.iter().position(|f| !Site::is_library_file(&f.file));
    let from = first_user.map_or(0, |u| u.saturating_sub(1));
    let op = first_user.and_then(|u| entry_point(&all[..u]));
    Site {
        frames: all.into_iter().skip(from).take(SITE_FRAMES).collect(),
        op,
    }
}

/// The ttnn function the program called, from the library frames inside it (outermost
/// last): a frame of ttnn's own Python whose function is not its operation wrapper.
fn entry_point(library: &[Frame]) -> Option<String> {
    library.iter().rev().find_map(|f| {
        let at = f.file.rfind("/ttnn/")?;
        let module = f.file[at + 1..].strip_suffix(".py")?.replace('/', ".");
        let module = module
            .strip_suffix(".__init__")
            .unwrap_or(&module)
            .to_string();
        let wrapper = module.ends_with("decorators") || f.function.contains('<');
        (!wrapper).then(|| format!("{module}.{}", f.function))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_op_a_line_calls() {
        assert_eq!(
            called_op("    b = ttnn.matmul(a, a); note(line(), 'ops')"),
            Some("ttnn.matmul".into())
        );
        assert_eq!(
            called_op("x = ttnn.experimental.foo (a)"),
            Some("ttnn.experimental.foo".into())
        );
        // Arguments that are ttnn constants are not calls.
        assert_eq!(
            called_op("t = ttnn.allocate_tensor_on_device(ttnn.Shape([1]), ttnn.bfloat16, mesh, ttnn.DRAM_MEMORY_CONFIG)"),
            Some("ttnn.allocate_tensor_on_device".into())
        );
        assert_eq!(called_op("y = ttnn.add(ttnn.matmul(a, b), c)"), None);
        assert_eq!(called_op("y = mm(a, b)  # ttnn.matmul(a, b)"), None);
        assert_eq!(called_op("y = myttnn.add(a)"), None);
        assert_eq!(called_op("s = ttnn.Shape([1, 2])"), None);
    }

    #[test]
    fn a_site_keeps_the_entry_point_and_the_program_frames() {
        let f = |file: &str, line, function: &str| Frame {
            file: file.into(),
            line,
            function: function.into(),
        };
        let site = trim(vec![
            f("/v/site-packages/ttnn/operations/core.py", 10, "to_device"),
            f("/v/site-packages/ttnn/decorators.py", 650, "__call__"),
            f("/home/u/model.py", 42, "forward"),
            f("/home/u/main.py", 7, "<module>"),
        ]);
        assert_eq!(site.frames.len(), 3);
        assert_eq!(site.frames[0].function, "__call__");
        assert_eq!(site.op.as_deref(), Some("ttnn.operations.core.to_device"));
        assert_eq!(
            site.describe(),
            "model.py:42 in forward (ttnn.operations.core.to_device)"
        );
    }
}
