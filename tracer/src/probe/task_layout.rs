//! Where the kernel keeps a task's ids, read from the kernel's own BTF.
//!
//! The fork/exit programs are raw tracepoints: unlike tracefs tracepoints they need no mounted
//! tracefs (a new machine, a container, a minimal host has none), but they see the raw
//! `struct task_struct *` arguments instead of a formatted record. `task_struct` changes between
//! kernels, so its offsets come from `/sys/kernel/btf/vmlinux`, like every other layout tracer
//! reads: calibrated, never assumed.
use anyhow::{bail, Context, Result};

pub const VMLINUX_BTF: &str = "/sys/kernel/btf/vmlinux";

/// Byte offsets of `task_struct.pid` and `task_struct.tgid` (both `pid_t`, 4 bytes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TaskLayout {
    pub pid: u32,
    pub tgid: u32,
    /// `thread.fsbase`: the user thread pointer (x86-64), where Python's thread state is
    /// found; `None` when the kernel's BTF does not describe it.
    pub fsbase: Option<u32>,
}

impl TaskLayout {
    /// Reads the running kernel's layout.
    pub fn of_running_kernel() -> Result<Self> {
        let data = std::fs::read(VMLINUX_BTF).with_context(|| {
            format!(
                "cannot read {VMLINUX_BTF}: tracer follows forks and exits with raw tracepoints \
                 and needs the kernel's BTF (a kernel built with CONFIG_DEBUG_INFO_BTF=y, \
                 standard since Linux 5.4 on most distributions)"
            )
        })?;
        Self::from_btf(&data).with_context(|| format!("in {VMLINUX_BTF}"))
    }

    pub fn from_btf(data: &[u8]) -> Result<Self> {
        let btf = Btf::parse(data)?;
        let members = btf
            .struct_members("task_struct")?
            .context("no `struct task_struct` in the kernel BTF")?;
        let find = |name: &str| -> Result<u32> {
            let bits = members
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, bits)| *bits)
                .with_context(|| format!("`struct task_struct` has no member `{name}`"))?;
            if bits % 8 != 0 {
                bail!("`task_struct.{name}` is a bitfield");
            }
            Ok(bits / 8)
        };
        let fsbase = (|| {
            let thread = find("thread").ok()?;
            let inner = btf.struct_members("thread_struct").ok()??;
            let bits = inner.iter().find(|(n, _)| *n == "fsbase")?.1;
            (bits % 8 == 0).then(|| thread + bits / 8)
        })();
        Ok(Self {
            pid: find("pid")?,
            tgid: find("tgid")?,
            fsbase,
        })
    }
}

/// Just enough of the BTF format (linux/btf.h) to walk the type section.
struct Btf<'a> {
    types: &'a [u8],
    strings: &'a [u8],
}

const BTF_MAGIC: u16 = 0xeb9f;
const KIND_STRUCT: u32 = 4;

impl<'a> Btf<'a> {
    fn parse(data: &'a [u8]) -> Result<Self> {
        let u16_at = |o: usize| data.get(o..o + 2).map(|b| u16::from_le_bytes([b[0], b[1]]));
        let u32_at = |o: usize| {
            data.get(o..o + 4)
                .map(|b| u32::from_le_bytes(b.try_into().unwrap()))
        };
        if u16_at(0) != Some(BTF_MAGIC) {
            bail!("not little-endian BTF (bad magic)");
        }
        let hdr_len = u32_at(4).context("truncated BTF header")? as usize;
        let field = |i: usize| u32_at(8 + 4 * i).context("truncated BTF header");
        let (type_off, type_len) = (field(0)? as usize, field(1)? as usize);
        let (str_off, str_len) = (field(2)? as usize, field(3)? as usize);
        let section = |off: usize, len: usize| {
            data.get(hdr_len + off..hdr_len + off + len)
                .context("BTF section runs past the end of the data")
        };
        Ok(Self {
            types: section(type_off, type_len)?,
            strings: section(str_off, str_len)?,
        })
    }

    fn name(&self, off: u32) -> &'a str {
        let s = self.strings.get(off as usize..).unwrap_or_default();
        let end = s.iter().position(|&b| b == 0).unwrap_or(s.len());
        std::str::from_utf8(&s[..end]).unwrap_or("")
    }

    /// (member name, bit offset) of the first struct called `name`.
    fn struct_members(&self, name: &str) -> Result<Option<Vec<(&'a str, u32)>>> {
        let t = self.types;
        let word = |o: usize| -> Result<u32> {
            t.get(o..o + 4)
                .map(|b| u32::from_le_bytes(b.try_into().unwrap()))
                .context("truncated BTF type")
        };
        let mut at = 0;
        while at < t.len() {
            let name_off = word(at)?;
            let info = word(at + 4)?;
            let kind = (info >> 24) & 0x1f;
            let vlen = (info & 0xffff) as usize;
            let kind_flag = info >> 31 == 1;
            let body = at + 12;
            if kind == KIND_STRUCT && self.name(name_off) == name {
                let mut members = Vec::with_capacity(vlen);
                for m in 0..vlen {
                    let o = body + 12 * m;
                    let raw = word(o + 8)?;
                    // With kind_flag, the low 24 bits are the offset and the top 8 the bitfield size.
                    let bits = if kind_flag { raw & 0xff_ffff } else { raw };
                    members.push((self.name(word(o)?), bits));
                }
                return Ok(Some(members));
            }
            at = body + extra_bytes(kind, vlen)?;
        }
        Ok(None)
    }
}

/// Bytes that follow the 12-byte `struct btf_type` for each kind.
fn extra_bytes(kind: u32, vlen: usize) -> Result<usize> {
    Ok(match kind {
        1 => 4,                    // INT
        3 => 12,                   // ARRAY
        4 | 5 => 12 * vlen,        // STRUCT, UNION
        6 => 8 * vlen,             // ENUM
        13 => 8 * vlen,            // FUNC_PROTO
        14 => 4,                   // VAR
        15 => 12 * vlen,           // DATASEC
        17 => 4,                   // DECL_TAG
        19 => 12 * vlen,           // ENUM64
        2 | 7..=12 | 16 | 18 => 0, // PTR, FWD, TYPEDEF, VOLATILE, CONST, RESTRICT, FUNC, FLOAT, TYPE_TAG
        other => bail!("unknown BTF kind {other}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn running_kernel_has_task_ids_next_to_each_other() {
        if !std::path::Path::new(VMLINUX_BTF).exists() {
            eprintln!("skipped: no {VMLINUX_BTF}");
            return;
        }
        let l = TaskLayout::of_running_kernel().unwrap();
        // pid_t pid; pid_t tgid; are adjacent in every kernel since 2.6.
        assert_eq!(l.tgid, l.pid + 4, "{l:?}");
        assert!(l.pid > 256, "{l:?}");
        assert!(l.fsbase.is_some_and(|f| f > l.tgid), "{l:?}");
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert!(TaskLayout::from_btf(b"").is_err());
        assert!(TaskLayout::from_btf(&[0x9f, 0xeb, 1, 0, 24, 0, 0, 0, 0xff, 0xff]).is_err());
        let mut hdr = vec![0x9f, 0xeb, 1, 0, 24, 0, 0, 0];
        hdr.extend_from_slice(&[0, 0, 0, 0, 12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        hdr.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 0x1f, 0, 0, 0, 0]);
        assert!(TaskLayout::from_btf(&hdr).is_err());
    }
}
