//! The dynamic linker a command runs under, and the runtime libraries a process has mapped:
//! what tracer needs to catch `libtt_metal.so` at the moment a program loads it (a path nothing
//! on the command line names: an embedded interpreter, `ctypes.CDLL`, a plugin's dlopen).
use std::path::{Path, PathBuf};

use anyhow::Result;
use object::{Object, ObjectSegment};

use super::LIB_NAME;

/// The linker's debugger hook (`r_debug.r_brk`): called before and after every change to the
/// list of loaded objects, at start-up and at each dlopen. glibc exports it from ld.so.
pub const HOOK: &str = "_dl_debug_state";

/// Where the x86-64 linker lives when a program does not say (`PT_INTERP` of most binaries).
const DEFAULT: &str = "/lib64/ld-linux-x86-64.so.2";

/// The dynamic linker `program` (a path or a PATH name) will run under: its `PT_INTERP`,
/// through a `#!` line (and `env`) for scripts; the system default for anything else.
pub fn for_command(program: &str) -> PathBuf {
    let found = resolve(program)
        .and_then(|exe| interp_of(&exe, 4))
        .unwrap_or_else(|| PathBuf::from(DEFAULT));
    // Uprobes attach to a file: name it by its real path, not a symlink.
    std::fs::canonicalize(&found).unwrap_or(found)
}

fn resolve(program: &str) -> Option<PathBuf> {
    if program.contains('/') {
        return Some(PathBuf::from(program));
    }
    let paths = std::env::var_os("PATH")?;
    std::env::split_paths(&paths)
        .map(|d| d.join(program))
        .find(|p| p.is_file())
}

fn interp_of(exe: &Path, hops: u32) -> Option<PathBuf> {
    let data = std::fs::read(exe).ok()?;
    if let Some(line) = data.strip_prefix(b"#!") {
        if hops == 0 {
            return None;
        }
        let line = line.split(|b| *b == b'\n').next()?;
        let line = std::str::from_utf8(line).ok()?;
        let mut words = line.split_whitespace();
        let mut next = words.next()?.to_string();
        if next.ends_with("/env") {
            next = words
                .find(|w| !w.starts_with('-') && !w.contains('='))?
                .to_string();
        }
        return interp_of(&resolve(&next)?, hops - 1);
    }
    let file = object::File::parse(&*data).ok()?;
    // PT_INTERP is a segment holding the path, NUL-terminated.
    let interp = file.segments().find_map(|s| {
        let bytes = s.data().ok()?;
        let path = bytes.strip_suffix(b"\0")?;
        (path.starts_with(b"/") && path.windows(3).any(|w| w == b"ld-"))
            .then(|| PathBuf::from(String::from_utf8_lossy(path).into_owned()))
    });
    interp.or_else(|| Some(PathBuf::from(DEFAULT)))
}

/// Every runtime library file `pid` maps now (as reachable from here) with its load base,
/// in map order, each file once.
pub fn mapped_libraries(pid: u32) -> Result<Vec<(PathBuf, u64)>> {
    let mut out: Vec<(PathBuf, u64)> = Vec::new();
    for m in super::process::maps(pid)? {
        let procfs::process::MMapPath::Path(file) = &m.pathname else {
            continue;
        };
        let is_runtime = file
            .file_name()
            .is_some_and(|n| n.to_string_lossy() == LIB_NAME);
        if !is_runtime || m.offset != 0 {
            continue;
        }
        // A process in a container sees its own root; reach the file through it.
        let path = if file.exists() {
            file.clone()
        } else {
            PathBuf::from(format!("/proc/{pid}/root{}", file.display()))
        };
        if !out.iter().any(|(p, _)| *p == path) {
            out.push((path, m.address.0));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_linker_of_a_binary_and_of_a_script() {
        let sh = for_command("sh");
        let name = sh.file_name().unwrap().to_string_lossy().into_owned();
        assert!(name.starts_with("ld-linux"), "{}", sh.display());
        assert!(sh.is_file());
        let dir = std::env::temp_dir().join(format!("tracer-ld-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let script = dir.join("s");
        std::fs::write(&script, "#!/usr/bin/env -S sh -e\necho\n").unwrap();
        assert_eq!(for_command(script.to_str().unwrap()), sh);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_hook_is_exported_by_the_linker() {
        let ld = for_command("sh");
        let data = std::fs::read(&ld).unwrap();
        let file = object::File::parse(&*data).unwrap();
        use object::ObjectSymbol;
        assert!(
            file.dynamic_symbols().any(|s| s.name() == Ok(HOOK)),
            "{} does not export {HOOK}",
            ld.display()
        );
    }

    #[test]
    fn no_runtime_mapped_here() {
        assert!(mapped_libraries(std::process::id()).unwrap().is_empty());
    }
}
