//! Finding libtt_metal.so before the program that loads it has started.
use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{bail, Context, Result};

pub const LIB_NAME: &str = "libtt_metal.so";

/// Where a library search looked, for the error message.
fn not_found(tried: &[String]) -> anyhow::Error {
    anyhow::anyhow!(
        "could not find {LIB_NAME} for this command (looked in: {}); pass --lib PATH",
        if tried.is_empty() {
            "nothing to look in".to_string()
        } else {
            tried.join(", ")
        }
    )
}

fn which(program: &str) -> Option<PathBuf> {
    if program.contains('/') {
        return Some(PathBuf::from(program));
    }
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join(program))
            .find(|p| p.is_file())
    })
}

/// The Python interpreter a command will run: the command itself, or a script's shebang.
fn interpreter(program: &Path) -> Option<PathBuf> {
    let name = program.file_name()?.to_string_lossy().to_string();
    if name.starts_with("python") {
        return Some(program.to_path_buf());
    }
    let head = std::fs::read(program).ok()?;
    let first = head.split(|b| *b == b'\n').next()?;
    let line = std::str::from_utf8(first).ok()?.strip_prefix("#!")?.trim();
    let mut parts = line.split_whitespace();
    let exe = parts.next()?;
    if exe.ends_with("/env") {
        let py = parts.find(|p| !p.starts_with('-'))?;
        return py.starts_with("python").then(|| which(py)).flatten();
    }
    exe.contains("python").then(|| PathBuf::from(exe))
}

fn find_in(dir: &Path, depth: usize) -> Option<PathBuf> {
    let direct = dir.join(LIB_NAME);
    if direct.is_file() {
        return Some(direct);
    }
    if depth == 0 {
        return None;
    }
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .ok()?
        .flatten()
        .map(|e| e.path())
        .collect();
    entries.sort();
    entries
        .into_iter()
        .filter(|p| p.is_dir())
        .find_map(|p| find_in(&p, depth - 1))
}

/// Asks the command's Python where the `ttnn` package is, without importing it.
fn from_python(python: &Path) -> Option<PathBuf> {
    let out = Command::new(python)
        .args([
            "-c",
            "import importlib.util as u; s = u.find_spec('ttnn'); \
             print(s.submodule_search_locations[0] if s and s.submodule_search_locations else '')",
        ])
        .output()
        .ok()?;
    let dir = String::from_utf8(out.stdout).ok()?.trim().to_string();
    if dir.is_empty() {
        return None;
    }
    let dir = PathBuf::from(dir);
    find_in(&dir.join("build").join("lib"), 0).or_else(|| find_in(&dir, 3))
}

/// Pythons that may run the command, most likely first: the program itself or its shebang, a
/// Python named in the arguments (`sh -c "venv/bin/python x.py"`, `uv run python ...`), the
/// active virtualenv, then `python3` / `python` on PATH.
fn candidate_pythons(program: Option<&Path>, argv: &[String]) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = Vec::new();
    let mut push = |p: PathBuf| {
        if p.is_file() && !out.contains(&p) {
            out.push(p);
        }
    };
    if let Some(py) = program.and_then(interpreter) {
        push(py);
    }
    for word in argv.iter().skip(1).flat_map(|a| a.split_whitespace()) {
        let named_python = Path::new(word)
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with("python"));
        if named_python {
            if let Some(p) = which(word) {
                push(p);
            }
        }
    }
    if let Some(venv) = std::env::var_os("VIRTUAL_ENV") {
        push(PathBuf::from(venv).join("bin/python"));
    }
    for name in ["python3", "python"] {
        if let Some(p) = which(name) {
            push(p);
        }
    }
    out
}

/// The runtime library `argv` will load: from `--lib`, the command's Python environment,
/// `TT_METAL_HOME`, or the dynamic linker's cache.
pub fn library_for_command(lib: Option<&Path>, argv: &[String]) -> Result<PathBuf> {
    if let Some(lib) = lib {
        return checked(lib);
    }
    let mut tried = Vec::new();
    let program = argv.first().and_then(|p| which(p));
    if let Some(dir) = program.as_deref().and_then(Path::parent) {
        // A native program shipped beside the runtime.
        if let Some(found) = find_in(dir, 0) {
            return Ok(found);
        }
    }
    for py in candidate_pythons(program.as_deref(), argv) {
        tried.push(format!("the ttnn package of {}", py.display()));
        if let Some(found) = from_python(&py) {
            return Ok(found);
        }
    }
    if let Some(home) = std::env::var_os("TT_METAL_HOME") {
        let dir = PathBuf::from(home).join("build").join("lib");
        tried.push(dir.display().to_string());
        if let Some(found) = find_in(&dir, 0) {
            return Ok(found);
        }
    }
    tried.push("ldconfig -p".into());
    if let Ok(out) = Command::new("ldconfig").arg("-p").output() {
        let text = String::from_utf8_lossy(&out.stdout);
        if let Some(path) = text
            .lines()
            .filter(|l| l.contains(LIB_NAME))
            .filter_map(|l| l.split("=>").nth(1))
            .map(|p| PathBuf::from(p.trim()))
            .next()
        {
            return Ok(path);
        }
    }
    Err(not_found(&tried))
}

pub fn checked(lib: &Path) -> Result<PathBuf> {
    let meta = std::fs::metadata(lib).with_context(|| format!("--lib {}", lib.display()))?;
    if !meta.is_file() {
        bail!("--lib {} is not a file", lib.display());
    }
    std::fs::canonicalize(lib).with_context(|| format!("--lib {}", lib.display()))
}

/// Where `pid` has the runtime mapped: (path as seen from here, load base).
pub fn library_in_process(pid: u32) -> Result<Option<(PathBuf, u64)>> {
    let path = format!("/proc/{pid}/maps");
    let maps = std::fs::read_to_string(&path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => anyhow::anyhow!("no process with PID {pid}"),
        std::io::ErrorKind::PermissionDenied => anyhow::anyhow!(
            "cannot read {path}: permission denied (tracer needs root; a process of another \
             PID namespace or under a stricter ptrace policy cannot be inspected)"
        ),
        _ => anyhow::Error::new(e).context(format!("cannot read {path}")),
    })?;
    for line in maps.lines() {
        let mut f = line.split_whitespace();
        let (Some(range), _, Some(offset), _, _, Some(path)) =
            (f.next(), f.next(), f.next(), f.next(), f.next(), f.next())
        else {
            continue;
        };
        if !path.ends_with(LIB_NAME) || u64::from_str_radix(offset, 16).ok() != Some(0) {
            continue;
        }
        let start = u64::from_str_radix(range.split('-').next().unwrap_or("0"), 16)?;
        // A process in a container sees its own root; reach the file through it.
        let via_root = PathBuf::from(format!("/proc/{pid}/root{path}"));
        let path = if Path::new(path).exists() {
            PathBuf::from(path)
        } else {
            via_root
        };
        return Ok(Some((path, start)));
    }
    Ok(None)
}

/// The file identity (device, inode) of a library: uprobes attach to the inode, so two paths
/// to the same file are one library.
pub fn file_id(path: &Path) -> Result<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path).with_context(|| format!("cannot stat {}", path.display()))?;
    Ok((m.dev(), m.ino()))
}

/// Every process (but this one) that maps a runtime library now: (pid, library path).
pub fn processes_with_library() -> Vec<(u32, PathBuf)> {
    let me = std::process::id();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut out: Vec<(u32, PathBuf)> = dir
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| *pid != me)
        .filter_map(|pid| Some((pid, library_in_process(pid).ok()??.0)))
        .collect();
    out.sort();
    out
}

/// The state letter of /proc/PID/stat (`Z` for a zombie), `None` when the process is gone.
pub fn process_state(pid: u32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may itself contain ") ".
    stat.rsplit_once(") ")?.1.chars().next()
}

/// Every live descendant of `pid` (children, their children, ...), from /proc/*/stat.
pub fn descendants(pid: u32) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let parent_of: Vec<(u32, u32)> = dir
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|p| {
            let stat = std::fs::read_to_string(format!("/proc/{p}/stat")).ok()?;
            let ppid = stat
                .rsplit_once(") ")?
                .1
                .split_whitespace()
                .nth(1)?
                .parse()
                .ok()?;
            Some((p, ppid))
        })
        .collect();
    let mut out = Vec::new();
    let mut frontier = vec![pid];
    while let Some(parent) = frontier.pop() {
        for (child, _) in parent_of.iter().filter(|(_, pp)| *pp == parent) {
            if !out.contains(child) {
                out.push(*child);
                frontier.push(*child);
            }
        }
    }
    out.sort_unstable();
    out
}

/// Whether `pid` still runs (exists and is not a zombie).
pub fn alive(pid: u32) -> bool {
    matches!(process_state(pid), Some(s) if s != 'Z' && s != 'X')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_state_of_live_and_missing_processes() {
        let me = std::process::id();
        assert!(alive(me));
        assert!(matches!(process_state(me), Some('R' | 'S')));
        // A child that exited and was reaped leaves no /proc entry.
        let mut c = std::process::Command::new("true").spawn().unwrap();
        let pid = c.id();
        c.wait().unwrap();
        assert_eq!(process_state(pid), None);
        assert!(!alive(pid));
    }

    #[test]
    fn finds_descendants() {
        let mut c = std::process::Command::new("sleep")
            .arg("5")
            .spawn()
            .unwrap();
        assert!(descendants(std::process::id()).contains(&c.id()));
        c.kill().unwrap();
        c.wait().unwrap();
    }

    #[test]
    fn finds_no_runtime_in_a_process_without_it() {
        assert_eq!(library_in_process(std::process::id()).unwrap(), None);
    }
}
