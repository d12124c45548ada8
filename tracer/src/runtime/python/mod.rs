//! The CPython interpreter of a traced process: where its current thread state is, how its
//! frames chain, and how code objects name their file, function and lines, read from the
//! interpreter library's own symbols and machine code (its accessors), never assumed for one
//! build. The eBPF programs walk the frames with what this finds (`PyStackSpec`); userspace
//! resolves the code objects they report ([`resolve`]).
pub mod analyses;
pub mod lines;
pub mod resolve;

#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use super::x86::{accessor_chain, Image};
use analyses as an;

/// Where the current thread's `PyThreadState*` lives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ThreadState {
    /// The thread's own, kept under the interpreter's pthread key (`_PyRuntime`'s
    /// `autoTSSkey`, what `PyGILState_GetThisThreadState` reads): set while the thread runs
    /// C code with the interpreter released too (ttnn's ops release it). The runtime state's
    /// address is in the GOT slot `slot`; its key's `Py_tss_t` at `key_at`, the key itself at
    /// `key_field` in it.
    Key {
        slot: u64,
        key_at: i32,
        key_field: i32,
    },
    /// A field at `offset` of the object that the pointer slot `slot` (a GOT entry) points to:
    /// 3.10's `_PyRuntime.gilstate.tstate_current`, the thread holding the interpreter.
    Global { slot: u64, offset: i32 },
    /// A thread-local variable (3.12's `_Py_tss_tstate`): the GOT's `tls_index` at `slot`
    /// holds the module id (filled in by the dynamic linker) and the variable's offset in the
    /// module's block (`dtpoff`); the pointer is at `offset` of that address.
    Tls { slot: u64, dtpoff: u64, offset: i32 },
}

/// How an interpreter frame records where it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Instruction {
    /// A pointer to the last instruction started (3.12 `prev_instr`): the byte offset is
    /// `instr - (code + code_start)`.
    Pointer { code_start: i32 },
    /// The index of that instruction (3.10 `f_lasti`, `width` bytes): the byte offset is
    /// `index * 2` (one code unit is two bytes, as the accessor's doubling says).
    Index { width: u8 },
}

/// Where a code object keeps what a frame is named by.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CodeFields {
    pub filename: i32,
    /// `co_qualname` (3.11+) or `co_name`.
    pub qualname: i32,
    pub firstlineno: i32,
    pub linetable: i32,
}

/// `str` objects: a compact ASCII string's characters follow its header; others keep a UTF-8
/// copy behind a pointer (when one was made).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StrLayout {
    pub length: i32,
    pub state: i32,
    /// Bits of the state byte that all set mean "compact ASCII".
    pub ascii_mask: u8,
    pub ascii_data: i32,
    pub utf8: i32,
}

/// `bytes` objects (the line table): size and where the bytes start.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BytesLayout {
    pub size: i32,
    pub data: i32,
}

/// The line table's format, from the interpreter's version.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LineFormat {
    /// 3.10: (bytecode delta, line delta) byte pairs.
    Pairs,
    /// 3.11+: the location table (PEP 626 / 657 entries).
    Locations,
}

/// Everything needed to read a stack of this interpreter.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Layout {
    pub version: (u8, u8),
    pub tstate: ThreadState,
    /// `tstate->thread_id` (what `pthread_self()` returned on that thread).
    pub thread_id: Option<i32>,
    /// Loads from the thread state to its innermost frame.
    pub frame: Vec<i32>,
    pub back: i32,
    pub code: i32,
    pub instr_at: i32,
    pub instr: Instruction,
    pub code_fields: CodeFields,
    pub str: StrLayout,
    pub bytes: BytesLayout,
    pub lines: LineFormat,
    /// `ob_type` in every object, and the link-time addresses of the code, str and bytes
    /// types: an object read from a stale pointer (freed and reused, as code objects are when
    /// the interpreter finalizes) is not taken for one.
    pub ob_type: i32,
    pub code_type: u64,
    pub str_type: u64,
    pub bytes_type: u64,
}

/// glibc's thread control block: the DTV pointer's offset from the thread pointer, and the
/// DTV entry's size (as a shift) and the block pointer's offset in it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Dtv {
    pub tcb_offset: i32,
    pub entry_shift: u8,
    pub entry_offset: i32,
}

/// glibc's thread-specific values (`pthread_getspecific`'s fast path): the value of key `k`
/// (below `block`) is at `*(tp + self_off) + ((k + add) << shift) + data`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Specific {
    pub self_off: i32,
    pub add: i64,
    pub shift: u8,
    pub data: i32,
    pub block: u64,
}

/// Reads the C library's `pthread_getspecific`.
pub fn calibrate_specific(libc: &dyn Image) -> Result<Specific> {
    let (code, ip) = function(libc, "pthread_getspecific")?;
    let (self_off, add, shift, data, block) =
        an::specific_fast_path(code, ip).with_context(|| {
            format!(
                "{}: pthread_getspecific has no fast path of the expected shape",
                libc.name()
            )
        })?;
    if shift > 6 || block > 1024 {
        bail!("{}: implausible thread-specific layout", libc.name());
    }
    Ok(Specific {
        self_off,
        add,
        shift,
        data,
        block,
    })
}

/// Reads the dynamic linker's `__tls_get_addr`.
pub fn calibrate_dtv(linker: &dyn Image) -> Result<Dtv> {
    let sym = linker
        .symbol("__tls_get_addr")
        .with_context(|| format!("{}: no symbol __tls_get_addr", linker.name()))?;
    let code = linker
        .code(sym, 64)
        .with_context(|| format!("{}: cannot read __tls_get_addr", linker.name()))?;
    let (tcb_offset, entry_shift, entry_offset) =
        an::dtv_walk(code, sym.address).with_context(|| {
            format!(
                "{}: __tls_get_addr does not read the thread's DTV as expected",
                linker.name()
            )
        })?;
    if entry_shift > 6 {
        bail!("{}: a DTV entry of 2^{entry_shift} bytes", linker.name());
    }
    Ok(Dtv {
        tcb_offset,
        entry_shift,
        entry_offset,
    })
}

/// The code of `name`, for an analysis.
fn function<'a>(img: &'a dyn Image, name: &str) -> Result<(&'a [u8], u64)> {
    let sym = img
        .symbol(name)
        .with_context(|| format!("{}: no symbol {name}", img.name()))?;
    let code = img
        .code(sym, 512)
        .with_context(|| format!("{}: cannot read the code of {name}", img.name()))?;
    Ok((code, sym.address))
}

/// One field found by several functions: they must agree.
fn agree<T: PartialEq + std::fmt::Debug + Clone>(
    what: &str,
    found: &[(&str, Option<T>)],
) -> Result<T> {
    let mut value: Option<(&str, T)> = None;
    for (source, v) in found {
        let Some(v) = v else { continue };
        match &value {
            None => value = Some((source, v.clone())),
            Some((first, w)) if w != v => {
                bail!("{what}: {first} says {w:?}, {source} says {v:?}")
            }
            _ => {}
        }
    }
    let tried: Vec<&str> = found.iter().map(|(s, _)| *s).collect();
    value
        .map(|(_, v)| v)
        .with_context(|| format!("{what}: not found in {}", tried.join(", ")))
}

fn chain_of(img: &dyn Image, name: &str) -> Option<Vec<i32>> {
    let (code, ip) = function(img, name).ok()?;
    accessor_chain(code, ip, 0).map(|c| c.offsets)
}

/// The interpreter's version: `Py_Version` (3.11+), else the library's name (`libpython3.10`).
fn version(img: &dyn Image) -> Result<(u8, u8)> {
    if let Some(sym) = img.symbol("Py_Version") {
        if let Some(b) = img.bytes_at_address(sym.address, 4) {
            let hex = u32::from_le_bytes(b.try_into().unwrap_or_default());
            return Ok(((hex >> 24) as u8, (hex >> 16) as u8));
        }
    }
    let name = img.name();
    let file = Path::new(&name)
        .file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_default();
    let rest = file
        .strip_prefix("libpython")
        .with_context(|| format!("{name}: no Py_Version and not named libpython3.N"))?;
    let mut parts = rest.split(|c: char| !c.is_ascii_digit());
    let major = parts.next().and_then(|p| p.parse().ok());
    let minor = parts.next().and_then(|p| p.parse().ok());
    match (major, minor) {
        (Some(a), Some(b)) => Ok((a, b)),
        _ => bail!("{name}: cannot tell the Python version from the name"),
    }
}

/// The field `member` of a type's `PyMemberDef` table (`{name, type, offset, flags, doc}`,
/// the C API's own description of its objects): found through the relocated pointers to its
/// name. Several tables may name it (a code and a frame type): `owner_also` is another member
/// that the same table must have, right before or after.
fn member(img: &dyn Image, name: &str, neighbours: &[&str]) -> Option<i32> {
    member_among(img, name, &pointer_slots(img, neighbours))
}

/// The slots pointing to any of `names` (NUL-terminated strings of the image).
fn pointer_slots(img: &dyn Image, names: &[&str]) -> std::collections::HashSet<u64> {
    names
        .iter()
        .flat_map(|m| {
            let mut want = m.as_bytes().to_vec();
            want.push(0);
            img.find_bytes(&want)
        })
        .flat_map(|t| img.pointers_to(t))
        .collect()
}

fn member_among(
    img: &dyn Image,
    name: &str,
    neighbour_slots: &std::collections::HashSet<u64>,
) -> Option<i32> {
    const DEF: u64 = 40;
    let mut needle = name.as_bytes().to_vec();
    needle.push(0);
    let mut found = Vec::new();
    for s in img.find_bytes(&needle) {
        for slot in img.pointers_to(s) {
            // A table of members: a neighbouring entry names one of `neighbours`.
            let near = [
                slot.wrapping_sub(DEF),
                slot + DEF,
                slot.wrapping_sub(2 * DEF),
                slot + 2 * DEF,
            ];
            let is_table = near.iter().any(|n| neighbour_slots.contains(n));
            if !is_table {
                continue;
            }
            // `{type: int, offset: Py_ssize_t, flags: int}` after the name: a member of an
            // object type (an object or an int, read-only or not) at a positive offset. A
            // table of keyword names (pointers only) has no such numbers.
            let Some(def) = img.bytes_at_address(slot, DEF as usize) else {
                continue;
            };
            let int = |at: usize| i32::from_le_bytes(def[at..at + 4].try_into().unwrap());
            let offset = i64::from_le_bytes(def[16..24].try_into().unwrap());
            if (1..=32).contains(&int(8))
                && (0..=8).contains(&int(24))
                && (1..=4096).contains(&offset)
            {
                found.push(offset as i32);
            }
        }
    }
    found.sort_unstable();
    found.dedup();
    (found.len() == 1).then(|| found[0])
}

/// Calibrates the interpreter library `img`.
pub fn calibrate(img: &dyn Image) -> Result<Layout> {
    let version = version(img)?;
    if version.0 != 3 || !(10..=12).contains(&version.1) {
        bail!(
            "{}: Python {}.{} (stacks are read for 3.10 to 3.12)",
            img.name(),
            version.0,
            version.1
        );
    }
    let mut sources = Vec::new();
    for name in [
        "PyThreadState_Get",
        "_PyThreadState_GetCurrent",
        "_PyThreadState_UncheckedGet",
    ] {
        let Ok((code, ip)) = function(img, name) else {
            continue;
        };
        let found = if let Some((slot, offset)) = an::tls_load(code, ip) {
            img.bytes_at_address(slot + 8, 8).map(|b| ThreadState::Tls {
                slot,
                dtpoff: u64::from_le_bytes(b.try_into().unwrap_or_default()),
                offset,
            })
        } else {
            an::global_load(code, ip).map(|(slot, offset)| ThreadState::Global { slot, offset })
        };
        sources.push((name, found));
    }
    // The thread's own state under its pthread key is preferred: the current-thread
    // pointers (3.10's GIL holder, 3.12's TLS) are cleared while a thread runs C code with
    // the interpreter released, which is where ttnn's ops allocate.
    let keyed = function(img, "PyGILState_GetThisThreadState")
        .ok()
        .and_then(|(c, ip)| an::key_of_runtime(c, ip))
        .zip(
            function(img, "PyThread_tss_get")
                .ok()
                .and_then(|(c, ip)| an::tss_key_field(c, ip)),
        );
    let tstate = match keyed {
        Some(((slot, key_at), key_field)) => ThreadState::Key {
            slot,
            key_at,
            key_field,
        },
        None => agree("the current thread state", &sources)?,
    };
    let thread_id = function(img, "PyThreadState_SetAsyncExc")
        .ok()
        .and_then(|(code, ip)| an::compared_with_argument(code, ip));
    let str = str_layout(img)?;
    let bytes = bytes_layout(img)?;
    let code_fields = code_fields(img, version)?;
    let lines = if version.1 >= 11 {
        LineFormat::Locations
    } else {
        LineFormat::Pairs
    };
    let frames = if version.1 >= 11 {
        interpreter_frames(img)?
    } else {
        frame_objects(img)?
    };
    let (bcode, bip) = function(img, "PyBytes_Size")?;
    let ob_type = an::loads_from_argument(bcode, bip)
        .iter()
        .find_map(|a| match an::split(&a.address)? {
            (l, off) if l.is_empty() && a.width == 8 => Some(off as i32),
            _ => None,
        })
        .context("PyBytes_Size: no load of its argument's type")?;
    let type_of = |name: &str| {
        img.symbol(name)
            .map(|s| s.address)
            .with_context(|| format!("{}: no symbol {name}", img.name()))
    };
    Ok(Layout {
        version,
        tstate,
        thread_id,
        frame: frames.frame,
        back: frames.back,
        code: frames.code,
        instr_at: frames.instr_at,
        instr: frames.instr,
        code_fields,
        str,
        bytes,
        lines,
        ob_type,
        code_type: type_of("PyCode_Type")?,
        str_type: type_of("PyUnicode_Type")?,
        bytes_type: type_of("PyBytes_Type")?,
    })
}

struct Frames {
    frame: Vec<i32>,
    back: i32,
    code: i32,
    instr_at: i32,
    instr: Instruction,
}

/// 3.10: `tstate->frame` is a `PyFrameObject` with `f_back`, `f_code` and `f_lasti`.
fn frame_objects(img: &dyn Image) -> Result<Frames> {
    let single = |name: &str| chain_of(img, name).filter(|c| c.len() == 1).map(|c| c[0]);
    let frame = agree(
        "the thread state's frame",
        &[("PyThreadState_GetFrame", single("PyThreadState_GetFrame"))],
    )?;
    let back = agree(
        "a frame's f_back",
        &[
            ("PyFrame_GetBack", single("PyFrame_GetBack")),
            (
                "frame members",
                member(img, "f_back", &["f_code", "f_builtins"]),
            ),
        ],
    )?;
    let code = agree(
        "a frame's f_code",
        &[
            ("PyFrame_GetCode", single("PyFrame_GetCode")),
            (
                "frame members",
                member(img, "f_code", &["f_back", "f_builtins"]),
            ),
        ],
    )?;
    let (instr_at, width) = agree(
        "a frame's f_lasti",
        &[(
            "PyFrame_GetLineNumber",
            function(img, "PyFrame_GetLineNumber")
                .ok()
                .and_then(|(c, ip)| an::doubled_load(c, ip)),
        )],
    )?;
    Ok(Frames {
        frame: vec![frame],
        back,
        code,
        instr_at,
        instr: Instruction::Index { width },
    })
}

/// 3.11+: `tstate->cframe->current_frame` is a `_PyInterpreterFrame` with `f_code`,
/// `previous` and `prev_instr`; a frame object points to its interpreter frame (`f_frame`).
fn interpreter_frames(img: &dyn Image) -> Result<Frames> {
    // Accesses at `off` of the value reached by the loads `chain`, of `width` bytes.
    fn at<'a>(accesses: &'a [an::Access], chain: &[i32], width: u8) -> Vec<(i32, &'a an::Access)> {
        accesses
            .iter()
            .filter(|a| a.width == width)
            .filter_map(|a| match an::split(&a.address)? {
                (l, off) if l == chain => Some((off as i32, a)),
                _ => None,
            })
            .collect()
    }
    // PyFrame_GetLasti: f_frame, then f_code and prev_instr in it, and where the code starts.
    let (code, ip) = function(img, "PyFrame_GetLasti")?;
    let loads = an::loads_from_argument(code, ip);
    let f_frame = at(&loads, &[], 8)
        .first()
        .map(|(o, _)| *o)
        .context("PyFrame_GetLasti: no load of the frame object's f_frame")?;
    let in_frame = at(&loads, &[f_frame], 8);
    // The code object is the field whose address plus a constant (its first instruction) is
    // subtracted from the other field (the instruction pointer).
    let mut lasti = None;
    for (c, load) in &in_frame {
        let starts = an::lea_offsets(code, ip, load);
        if let (Some(start), Some((p, _))) = (starts.first(), in_frame.iter().find(|(o, _)| o != c))
        {
            lasti = Some((*c, *p, *start as i32));
            break;
        }
    }
    let (code_off, prev_instr, code_start) =
        lasti.context("PyFrame_GetLasti: no instruction pointer measured from a code object")?;
    agree(
        "a frame's f_code",
        &[
            ("PyFrame_GetLasti", Some(vec![f_frame, code_off])),
            ("PyFrame_GetCode", chain_of(img, "PyFrame_GetCode")),
        ],
    )?;
    // PyFrame_GetBack: f_back, else f_frame->previous.
    let (bcode, bip) = function(img, "PyFrame_GetBack")?;
    let previous = at(&an::loads_from_argument(bcode, bip), &[f_frame], 8)
        .iter()
        .find(|(_, a)| a.load)
        .map(|(o, _)| *o);
    // PyThreadState_GetFrame: the innermost frame (whose code it reads), its prev_instr, and
    // the walk to the previous frame while a frame is incomplete.
    let (tcode, tip) = function(img, "PyThreadState_GetFrame")?;
    let tloads = an::loads_from_argument(tcode, tip);
    let frame = tloads
        .iter()
        .find_map(|a| match an::split(&a.address)? {
            (l, off) if l.len() == 2 && off == i64::from(code_off) && a.width == 8 => Some(l),
            _ => None,
        })
        .context("PyThreadState_GetFrame: no frame's code read through the thread state")?;
    let of_frame = at(&tloads, &frame, 8);
    if !of_frame.iter().any(|(o, _)| *o == prev_instr) {
        bail!(
            "PyThreadState_GetFrame does not read prev_instr at {prev_instr:#x} as PyFrame_GetLasti does"
        );
    }
    let hop = of_frame.iter().find(|(_, a)| a.self_hop).map(|(o, _)| *o);
    let back = agree(
        "an interpreter frame's previous",
        &[
            ("PyFrame_GetBack", previous),
            ("PyThreadState_GetFrame", hop),
        ],
    )?;
    Ok(Frames {
        frame,
        back,
        code: code_off,
        instr_at: prev_instr,
        instr: Instruction::Pointer { code_start },
    })
}

fn code_fields(img: &dyn Image, version: (u8, u8)) -> Result<CodeFields> {
    let near = [
        "co_argcount",
        "co_name",
        "co_filename",
        "co_firstlineno",
        "co_consts",
    ];
    let get = |name: &str| {
        member(img, name, &near).with_context(|| {
            format!(
                "{}: the code type's member `{name}` not found in its member table",
                img.name()
            )
        })
    };
    let qualname = if version.1 >= 11 {
        "co_qualname"
    } else {
        "co_name"
    };
    Ok(CodeFields {
        filename: get("co_filename")?,
        qualname: get(qualname)?,
        firstlineno: get("co_firstlineno")?,
        linetable: get("co_linetable")?,
    })
}

fn str_layout(img: &dyn Image) -> Result<StrLayout> {
    let (code, ip) = function(img, "PyUnicode_AsUTF8AndSize")?;
    let (state, ascii_mask) = an::state_bits(code, ip)
        .context("PyUnicode_AsUTF8AndSize: no test of the string's state byte")?;
    let returns = an::returned_offsets(code, ip);
    let ascii_data = returns
        .iter()
        .find(|(_, field)| !field)
        .map(|(o, _)| *o as i32)
        .context("PyUnicode_AsUTF8AndSize: no return of a compact string's inline characters")?;
    let utf8 = returns
        .iter()
        .find(|(_, field)| *field)
        .map(|(o, _)| *o as i32)
        .context("PyUnicode_AsUTF8AndSize: no return of the UTF-8 pointer")?;
    let length = function(img, "PyUnicode_GetLength")
        .ok()
        .and_then(|(c, ip)| an::returned_offsets(c, ip).into_iter().find(|(_, f)| *f))
        .map(|(o, _)| o as i32)
        .context("PyUnicode_GetLength: no field returned")?;
    if ascii_mask.count_ones() != 2 {
        bail!("PyUnicode_AsUTF8AndSize: state bits {ascii_mask:#x} are not (compact, ascii)");
    }
    Ok(StrLayout {
        length,
        state,
        ascii_mask,
        ascii_data,
        utf8,
    })
}

fn bytes_layout(img: &dyn Image) -> Result<BytesLayout> {
    let ret = |name: &str, field: bool| -> Result<i32> {
        let (c, ip) = function(img, name)?;
        an::returned_offsets(c, ip)
            .into_iter()
            .find(|(_, f)| *f == field)
            .map(|(o, _)| o as i32)
            .with_context(|| format!("{}: {name} returns nothing of its argument", img.name()))
    };
    Ok(BytesLayout {
        size: ret("PyBytes_Size", true)?,
        data: ret("PyBytes_AsString", false)?,
    })
}

/// The interpreter library a process has mapped (`libpython3.N.so...`), with its load
/// address, reachable from here.
pub fn library_in_process(pid: u32) -> Result<Option<(PathBuf, u64)>> {
    for m in super::process::maps(pid)? {
        let procfs::process::MMapPath::Path(file) = &m.pathname else {
            continue;
        };
        let is_python = file
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with("libpython3."));
        if !is_python || m.offset != 0 {
            continue;
        }
        let path = if file.exists() {
            file.clone()
        } else {
            PathBuf::from(format!("/proc/{pid}/root{}", file.display()))
        };
        return Ok(Some((path, m.address.0)));
    }
    Ok(None)
}

/// The dynamic linker a process has mapped (`ld-linux...`).
pub fn linker_in_process(pid: u32) -> Result<Option<PathBuf>> {
    mapped_named(pid, "ld-linux")
}

/// The first file a process maps whose name starts with `prefix`.
fn mapped_named(pid: u32, prefix: &str) -> Result<Option<PathBuf>> {
    for m in super::process::maps(pid)? {
        let procfs::process::MMapPath::Path(file) = &m.pathname else {
            continue;
        };
        if file
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with(prefix))
        {
            let path = if file.exists() {
                file.clone()
            } else {
                PathBuf::from(format!("/proc/{pid}/root{}", file.display()))
            };
            return Ok(Some(path));
        }
    }
    Ok(None)
}

/// What the eBPF side needs for one process: the layout made absolute with the process's
/// load address and the module id the dynamic linker gave the library.
pub fn stack_spec(
    layout: &Layout,
    dtv: Option<Dtv>,
    specific: Option<Specific>,
    pid: u32,
    base: u64,
) -> Result<tracer_common::PyStackSpec> {
    use tracer_common::{PyStackSpec, PY_FRAME_BYTES, PY_TSTATE_STEPS};
    let mut spec = PyStackSpec::default();
    match &layout.tstate {
        ThreadState::Key {
            slot,
            key_at,
            key_field,
        } => {
            let sp = specific.context(
                "the thread state is thread-specific, and the C library's layout is unknown",
            )?;
            let runtime = resolve::read_u64(pid, base + slot).with_context(|| {
                format!("PID {pid}: cannot read the interpreter's runtime pointer")
            })?;
            if runtime == 0 {
                bail!("PID {pid}: the interpreter's runtime pointer is not set yet");
            }
            let at = runtime.wrapping_add((key_at + key_field) as i64 as u64);
            let key = resolve::read(pid, at, 4)
                .map(|b| u32::from_le_bytes(b.try_into().unwrap()))
                .with_context(|| format!("PID {pid}: cannot read the interpreter's thread key"))?;
            if u64::from(key) >= sp.block {
                bail!("PID {pid}: the interpreter's thread key {key} is past the first block");
            }
            spec.tstate_base = 0;
            spec.tstate_offsets[0] = i64::from(sp.self_off);
            spec.tstate_offsets[1] = ((i64::from(key) + sp.add) << sp.shift) + i64::from(sp.data);
            spec.tstate_steps = 2;
        }
        ThreadState::Global { slot, offset } => {
            let runtime = resolve::read_u64(pid, base + slot).with_context(|| {
                format!("PID {pid}: cannot read the interpreter's runtime pointer")
            })?;
            if runtime == 0 {
                bail!("PID {pid}: the interpreter's runtime pointer is not set yet");
            }
            spec.tstate_base = runtime.wrapping_add(*offset as i64 as u64);
            spec.tstate_offsets[0] = 0;
            spec.tstate_steps = 1;
        }
        ThreadState::Tls {
            slot,
            dtpoff,
            offset,
        } => {
            let dtv =
                dtv.context("the thread state is thread-local, and the DTV layout is unknown")?;
            let module = resolve::read_u64(pid, base + slot).with_context(|| {
                format!("PID {pid}: cannot read the interpreter's TLS module id")
            })?;
            if module == 0 || module > 1 << 16 {
                bail!("PID {pid}: implausible TLS module id {module} of the interpreter");
            }
            spec.tstate_base = 0;
            spec.tstate_offsets[0] = i64::from(dtv.tcb_offset);
            spec.tstate_offsets[1] =
                ((module << dtv.entry_shift) as i64) + i64::from(dtv.entry_offset);
            spec.tstate_offsets[2] = (*dtpoff as i64) + i64::from(*offset);
            spec.tstate_steps = 3;
        }
    }
    if layout.frame.len() > PY_TSTATE_STEPS {
        bail!("the frame chain has {} hops", layout.frame.len());
    }
    for (i, o) in layout.frame.iter().enumerate() {
        spec.frame_offsets[i] = *o;
    }
    spec.frame_steps = layout.frame.len() as u32;
    spec.thread_id_off = layout.thread_id.unwrap_or(-1);
    let (width, len) = match layout.instr {
        Instruction::Pointer { .. } => (8u8, layout.instr_at + 8),
        Instruction::Index { width } => (width, layout.instr_at + i32::from(width)),
    };
    let len = len.max(layout.code + 8).max(layout.back + 8);
    if len as usize > PY_FRAME_BYTES || layout.code < 0 || layout.back < 0 || layout.instr_at < 0 {
        bail!("the frame fields lie past the {PY_FRAME_BYTES} bytes a probe copies");
    }
    spec.code_off = layout.code as u32;
    spec.back_off = layout.back as u32;
    spec.instr_off = layout.instr_at as u32;
    spec.instr_width = u32::from(width);
    spec.frame_len = len as u32;
    Ok(spec)
}

/// Calibrations done in this tracer process, by library file (interpreters and linkers are
/// shared by many processes).
type Cache<T> =
    std::sync::Mutex<std::collections::HashMap<PathBuf, std::result::Result<T, String>>>;
static LAYOUTS: std::sync::OnceLock<Cache<std::sync::Arc<Layout>>> = std::sync::OnceLock::new();
static DTVS: std::sync::OnceLock<Cache<Dtv>> = std::sync::OnceLock::new();
static SPECIFICS: std::sync::OnceLock<Cache<Specific>> = std::sync::OnceLock::new();

fn cached<T: Clone>(
    cache: &'static std::sync::OnceLock<Cache<T>>,
    path: &Path,
    make: impl FnOnce(&super::elf::Library) -> Result<T>,
) -> Result<T> {
    let mut map = cache.get_or_init(Default::default).lock().unwrap();
    let entry = map.entry(path.to_path_buf()).or_insert_with(|| {
        super::elf::Library::open(path)
            .and_then(|lib| make(&lib))
            .map_err(|e| format!("{e:#}"))
    });
    entry.clone().map_err(|e| anyhow::anyhow!(e))
}

/// The interpreter of process `pid`: its layout, and how the probes walk its stacks.
/// `Ok(None)`: the process runs no (shared-library) CPython.
pub fn for_process(
    pid: u32,
) -> Result<Option<(std::sync::Arc<Layout>, tracer_common::PyStackSpec, u64)>> {
    let Some((path, base)) = library_in_process(pid)? else {
        return Ok(None);
    };
    let layout = cached(&LAYOUTS, &path, |lib| {
        calibrate(lib).map(std::sync::Arc::new)
    })?;
    let dtv = match layout.tstate {
        ThreadState::Tls { .. } => {
            let linker = linker_in_process(pid)?
                .with_context(|| format!("PID {pid} maps no dynamic linker (ld-linux)"))?;
            Some(cached(&DTVS, &linker, |lib| calibrate_dtv(lib))?)
        }
        ThreadState::Global { .. } | ThreadState::Key { .. } => None,
    };
    let specific = match layout.tstate {
        ThreadState::Key { .. } => {
            let libc = mapped_named(pid, "libc.so")?
                .with_context(|| format!("PID {pid} maps no C library (libc.so)"))?;
            Some(cached(&SPECIFICS, &libc, |lib| calibrate_specific(lib))?)
        }
        _ => None,
    };
    let spec = stack_spec(&layout, dtv, specific, pid, base)?;
    Ok(Some((layout, spec, base)))
}
