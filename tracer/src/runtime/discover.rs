//! Finding libtt_metal.so before the program that loads it has started: the way the dynamic
//! loader will find it ([`loader`]), from the command's executable or from the ttnn extension
//! modules its Python will import.
use std::{
    collections::VecDeque,
    io::Read,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{bail, Context, Result};

use super::loader::{self, Env, Search};

pub use super::LIB_NAME;

/// The runtime library a command will load, and how it was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Discovery {
    pub path: PathBuf,
    /// From the command to the library, one step a line.
    pub how: Vec<String>,
}

/// Everything the search followed, each line once, for the error message.
fn not_found(followed: &[String]) -> anyhow::Error {
    let mut lines: Vec<&str> = Vec::new();
    for l in followed {
        if !lines.contains(&l.as_str()) {
            lines.push(l);
        }
    }
    anyhow::anyhow!(
        "could not find {LIB_NAME} for this command; pass --lib PATH. Followed:\n  {}",
        if lines.is_empty() {
            "nothing to follow".to_string()
        } else {
            lines.join("\n  ")
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

/// The path of the file a real path names (uprobes attach to the file; /proc/PID/maps shows
/// it resolved).
fn real(path: &Path) -> PathBuf {
    std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf())
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

/// What a command line executes once `env` and `#!` lines are followed.
#[derive(Debug, Default)]
struct Launch {
    /// The ELF file the kernel ends up running, as named (a virtualenv's `python` is a
    /// symlink whose name matters to Python).
    exe: Option<PathBuf>,
    /// Every program on the way (the command, `env`, script interpreters).
    programs: Vec<PathBuf>,
    /// The loader's variables in the environment the executable gets.
    env: Env,
    /// The `env` command's changes on the way: (name, value); (None, None) clears all.
    vars: Vec<(Option<String>, Option<String>)>,
    steps: Vec<String>,
}

impl Launch {
    fn set(&mut self, name: &str, value: Option<&str>) {
        self.env.set(name, value);
        self.vars
            .push((Some(name.to_string()), value.map(String::from)));
    }

    /// Gives `cmd` the environment changes the command line makes.
    fn apply(&self, cmd: &mut Command) {
        for (name, value) in &self.vars {
            match (name, value) {
                (None, _) => {
                    cmd.env_clear();
                }
                (Some(n), Some(v)) => {
                    cmd.env(n, v);
                }
                (Some(n), None) => {
                    cmd.env_remove(n);
                }
            }
        }
    }
}

/// Consumes the options and `NAME=value` words of an `env` command.
fn env_args(words: &mut VecDeque<String>, launch: &mut Launch) {
    while let Some(w) = words.pop_front() {
        if w == "-i" || w == "--ignore-environment" || w == "-" {
            launch.env = Env::default();
            launch.vars.push((None, None));
        } else if w == "-u" || w == "--unset" {
            if let Some(name) = words.pop_front() {
                launch.set(&name, None);
            }
        } else if let Some(name) = w.strip_prefix("--unset=") {
            launch.set(name, None);
        } else if w == "-C" || w == "--chdir" {
            words.pop_front();
        } else if let Some(rest) = w.strip_prefix("-S") {
            // `-S STRING` splits STRING into words (how a `#!` line passes several).
            let string = if rest.trim().is_empty() {
                words.pop_front().unwrap_or_default()
            } else {
                rest.to_string()
            };
            for part in string.split_whitespace().rev() {
                words.push_front(part.to_string());
            }
        } else if w == "--" {
            return;
        } else if w.starts_with('-') {
            // An option without an argument (-v, -0, --debug).
        } else if let Some((name, value)) = w.split_once('=') {
            launch.set(name, Some(value));
        } else {
            words.push_front(w);
            return;
        }
    }
}

fn head(path: &Path) -> std::io::Result<Vec<u8>> {
    let mut buf = Vec::with_capacity(512);
    std::fs::File::open(path)?.take(512).read_to_end(&mut buf)?;
    Ok(buf)
}

/// Follows `argv` as exec would: `env` prefixes, `#!` lines, PATH look-ups.
fn follow(argv: &[String]) -> Launch {
    let mut launch = Launch {
        env: Env::inherited(),
        ..Launch::default()
    };
    let mut words: VecDeque<String> = argv.iter().cloned().collect();
    // A handful of hops: `env`, a script's `#!`, the `env` on that line, its interpreter.
    for _ in 0..8 {
        let Some(first) = words.pop_front() else {
            break;
        };
        let Some(program) = which(&first) else {
            launch.steps.push(format!("{first}: not found on PATH"));
            break;
        };
        launch.programs.push(program.clone());
        if program.file_name().is_some_and(|n| n == "env") {
            env_args(&mut words, &mut launch);
            continue;
        }
        let data = match head(&program) {
            Ok(d) => d,
            Err(e) => {
                launch
                    .steps
                    .push(format!("{}: cannot read: {e}", program.display()));
                break;
            }
        };
        if let Some(line) = data.strip_prefix(b"#!") {
            let line = line.split(|b| *b == b'\n').next().unwrap_or_default();
            let line = String::from_utf8_lossy(line).trim().to_string();
            launch
                .steps
                .push(format!("{}: #!{line}", program.display()));
            // The kernel passes the rest of the line as one argument, then the script.
            words.push_front(program.display().to_string());
            match line.split_once([' ', '\t']) {
                Some((interp, arg)) => {
                    words.push_front(arg.trim().to_string());
                    words.push_front(interp.to_string());
                }
                None => words.push_front(line),
            }
            continue;
        }
        if data.starts_with(b"\x7fELF") {
            launch.exe = Some(program);
        }
        break;
    }
    launch
}

fn named_python(p: &Path) -> bool {
    p.file_name()
        .is_some_and(|n| n.to_string_lossy().starts_with("python"))
}

/// Pythons that may run the command, most likely first: the program itself or a script's
/// interpreter, a Python named in the arguments (`sh -c "venv/bin/python x.py"`, `uv run
/// python ...`), the active virtualenv, then `python3` / `python` on PATH.
fn candidate_pythons(launch: &Launch, argv: &[String]) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = Vec::new();
    let mut push = |p: PathBuf| {
        if p.is_file() && !out.contains(&p) {
            out.push(p);
        }
    };
    for p in launch.programs.iter().chain(&launch.exe) {
        if named_python(p) {
            push(p.clone());
        }
    }
    for word in argv.iter().skip(1).flat_map(|a| a.split_whitespace()) {
        if named_python(Path::new(word)) {
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

/// Asks a Python (without importing ttnn) where the package is and which file suffixes its
/// extension modules have.
const ASK_PYTHON: &str = "import importlib.util as u, importlib.machinery as m; \
    s = u.find_spec('ttnn'); \
    print(s.submodule_search_locations[0] if s and s.submodule_search_locations else ''); \
    print(*m.EXTENSION_SUFFIXES, sep=chr(10))";

/// The extension modules directly in the package, `_ttnn*` first (the one that links the
/// runtime).
fn extension_modules(dir: &Path, suffixes: &[&str]) -> Vec<PathBuf> {
    let suffixes = if suffixes.is_empty() {
        &[".so"][..]
    } else {
        suffixes
    };
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out: Vec<PathBuf> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_file())
        .filter(|p| {
            let name = p.file_name().unwrap_or_default().to_string_lossy();
            suffixes.iter().any(|s| name.ends_with(s))
        })
        .collect();
    out.sort();
    out.sort_by_key(|p| {
        !p.file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .starts_with("_ttnn")
    });
    out
}

/// The runtime the ttnn package of `python` loads: what its extension modules NEED, searched
/// as the loader does when Python imports them; the lines followed when it is not found.
fn from_python(python: &Path, launch: &Launch) -> std::result::Result<Discovery, Vec<String>> {
    let label = format!("the ttnn package of {}", python.display());
    let mut cmd = Command::new(python);
    cmd.args(["-c", ASK_PYTHON]);
    launch.apply(&mut cmd);
    let out = cmd
        .output()
        .map_err(|e| vec![format!("{label}: cannot run the interpreter: {e}")])?;
    let text = String::from_utf8_lossy(&out.stdout);
    let mut lines = text.lines();
    let dir = lines.next().unwrap_or_default().trim();
    if dir.is_empty() {
        return Err(vec![format!("{label}: not installed")]);
    }
    let suffixes: Vec<&str> = lines.map(str::trim).filter(|s| !s.is_empty()).collect();
    let dir = PathBuf::from(dir);
    let mut how = vec![format!(
        "{}: the ttnn package is {}",
        python.display(),
        dir.display()
    )];
    let modules = extension_modules(&dir, &suffixes);
    let mut search = Search::new(launch.env.clone());
    // A virtualenv's python is a symlink to an interpreter; a pyenv shim is a script.
    let by = search.executable(python).ok();
    let mut found = search.find(LIB_NAME);
    if found.is_none() {
        let opened_by = format!("imported by {}", python.display());
        for m in &modules {
            if let Err(e) = search.dlopen(m, by, &opened_by) {
                how.push(format!("{e:#}"));
            }
        }
        found = search.find(LIB_NAME);
    }
    if let Some(f) = found {
        how.extend(f.chain);
        return Ok(Discovery {
            path: real(&f.path),
            how,
        });
    }
    // The wheel's layout, for a package whose modules did not lead to it.
    if let Some(p) = find_in(&dir.join("build").join("lib"), 0).or_else(|| find_in(&dir, 3)) {
        how.push(format!(
            "{}: found under the package (no extension module NEEDS it)",
            p.display()
        ));
        return Ok(Discovery {
            path: real(&p),
            how,
        });
    }
    let names: Vec<String> = modules
        .iter()
        .map(|m| {
            m.file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    how.push(format!(
        "{label}: extension modules {}",
        if names.is_empty() {
            "none".to_string()
        } else {
            names.join(", ")
        }
    ));
    how.extend(search.followed());
    how.push(format!("{label}: no {LIB_NAME} under {}", dir.display()));
    Err(how)
}

/// The runtime the command's executable loads: what it NEEDS, as the loader resolves it, or
/// a library beside it (which it may dlopen).
fn native(launch: &Launch, followed: &mut Vec<String>) -> Option<Discovery> {
    let exe = launch.exe.as_ref()?;
    let mut search = Search::new(launch.env.clone());
    match search.executable(exe) {
        Ok(_) => {
            if let Some(found) = search.find(LIB_NAME) {
                let mut how = launch.steps.clone();
                how.extend(found.chain);
                return Some(Discovery {
                    path: real(&found.path),
                    how,
                });
            }
            followed.extend(search.followed());
        }
        Err(e) => followed.push(format!("{e:#}")),
    }
    let p = find_in(exe.parent()?, 0)?;
    let mut how = launch.steps.clone();
    how.push(format!(
        "{}: beside the program {}",
        p.display(),
        exe.display()
    ));
    Some(Discovery {
        path: real(&p),
        how,
    })
}

/// The runtime library `argv` will load, and how it was found: `--lib`; the command's
/// executable and what it NEEDS, as the dynamic loader resolves it; the ttnn extension
/// modules of the command's Python, the same way; `TT_METAL_HOME`; the loader cache.
pub fn find_for_command(lib: Option<&Path>, argv: &[String]) -> Result<Discovery> {
    if let Some(lib) = lib {
        return Ok(Discovery {
            path: checked(lib)?,
            how: vec![format!("--lib {}", lib.display())],
        });
    }
    let launch = follow(argv);
    let mut followed = launch.steps.clone();
    if let Some(found) = native(&launch, &mut followed) {
        return Ok(found);
    }
    for py in candidate_pythons(&launch, argv) {
        match from_python(&py, &launch) {
            Ok(mut found) => {
                let mut how = launch.steps.clone();
                how.append(&mut found.how);
                return Ok(Discovery { how, ..found });
            }
            Err(lines) => followed.extend(lines),
        }
    }
    match std::env::var_os("TT_METAL_HOME") {
        Some(home) => {
            let dir = PathBuf::from(&home).join("build").join("lib");
            if let Some(p) = find_in(&dir, 0) {
                return Ok(Discovery {
                    path: real(&p),
                    how: vec![format!(
                        "TT_METAL_HOME={}: {}",
                        home.to_string_lossy(),
                        p.display()
                    )],
                });
            }
            followed.push(format!("TT_METAL_HOME: no {LIB_NAME} in {}", dir.display()));
        }
        None => followed.push("TT_METAL_HOME unset".into()),
    }
    // What dlopen("libtt_metal.so") of a program with no search path of its own would get.
    let listed = loader::system_cache().into_iter().find(|e| {
        (e.name == LIB_NAME || e.name.starts_with(&format!("{LIB_NAME}."))) && e.path.is_file()
    });
    if let Some(e) = listed {
        return Ok(Discovery {
            path: real(&e.path),
            how: vec![format!(
                "the loader cache ({}): {} => {}",
                loader::CACHE,
                e.name,
                e.path.display()
            )],
        });
    }
    followed.push(format!(
        "the loader cache ({}): no {LIB_NAME}",
        loader::CACHE
    ));
    Err(not_found(&followed))
}

/// [`find_for_command`], the path alone.
pub fn library_for_command(lib: Option<&Path>, argv: &[String]) -> Result<PathBuf> {
    find_for_command(lib, argv).map(|d| d.path)
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
    Ok(super::dynamic_linker::mapped_libraries(pid)?
        .into_iter()
        .next())
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
    let mut out: Vec<(u32, PathBuf)> = super::process::others()
        .into_iter()
        .filter_map(|pid| Some((pid, library_in_process(pid).ok()??.0)))
        .collect();
    out.sort();
    out
}

pub use super::process::{descendants, state as process_state};

/// Whether `pid` is running (not gone, not a zombie).
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

    fn strings(words: &[&str]) -> Vec<String> {
        words.iter().map(|w| w.to_string()).collect()
    }

    /// A native program whose dependency finds the runtime only through LD_LIBRARY_PATH, set
    /// on the command line by `env` or a script's `#!` line.
    #[test]
    fn follows_env_and_shebang_to_the_executable() {
        let d = tempfile::tempdir().unwrap();
        let Some(app) = crate::runtime::loader::tests::build_tree(
            d.path(),
            &[],
            &["-Wl,--enable-new-dtags", "-Wl,-rpath,$ORIGIN/../mid"],
        ) else {
            return;
        };
        let rt = d.path().join("rt");
        let app_s = app.display().to_string();
        let with = format!("LD_LIBRARY_PATH={}", rt.display());
        let mut followed = Vec::new();
        let launch = follow(&strings(&["env", "-u", "LD_PRELOAD", &with, &app_s]));
        assert_eq!(launch.exe.as_deref(), Some(app.as_path()));
        let found = native(&launch, &mut followed).expect("through LD_LIBRARY_PATH");
        assert_eq!(found.path, real(&rt.join(LIB_NAME)));
        let how = found.how.join("\n");
        assert!(
            how.contains("NEEDED libtt_metal.so via LD_LIBRARY_PATH (= "),
            "{how}"
        );
        assert!(
            how.contains("NEEDED libmid.so via RUNPATH $ORIGIN/../mid"),
            "{how}"
        );

        let script = d.path().join("start");
        std::fs::write(
            &script,
            format!("#!/usr/bin/env -S {with} {app_s} --flag\n"),
        )
        .unwrap();
        let launch = follow(&strings(&[&script.display().to_string(), "arg"]));
        assert_eq!(launch.exe.as_deref(), Some(app.as_path()));
        assert!(
            launch.steps[0].contains("#!/usr/bin/env -S"),
            "{:?}",
            launch.steps
        );
        assert!(native(&launch, &mut followed).is_some());

        // Cleared environment: nothing leads to it, and the error says what was followed.
        let mut followed = Vec::new();
        let launch = follow(&strings(&["env", "-i", &app_s]));
        assert_eq!(launch.env.library_path, None);
        assert!(native(&launch, &mut followed).is_none());
        let text = format!("{:#}", not_found(&followed));
        assert!(text.contains("pass --lib PATH"), "{text}");
        assert!(
            text.contains("libmid.so: NEEDED libtt_metal.so not found (searched the loader cache"),
            "{text}"
        );
        assert!(text.contains("LD_LIBRARY_PATH unset"), "{text}");
    }

    /// A source build: the package in <tree>/ttnn/ttnn, the runtime in <tree>/build/lib, tied
    /// by the extension module's RUNPATH; nothing under the package leads there.
    #[test]
    fn follows_the_extension_module_of_a_source_build() {
        use crate::runtime::loader::tests::cc;
        let d = tempfile::tempdir().unwrap();
        let tree = d.path().join("tree");
        let lib = tree.join("build/lib");
        let pkg = tree.join("ttnn/ttnn");
        std::fs::create_dir_all(&lib).unwrap();
        std::fs::create_dir_all(&pkg).unwrap();
        let Some(_) = cc(
            &lib,
            LIB_NAME,
            "int tt_metal_marker(void) { return 1; }\n",
            &["-shared", "-fPIC"],
        ) else {
            return;
        };
        let link = format!("-L{}", lib.display());
        cc(
            &pkg,
            "_ttnn.cpython-312-x86_64-linux-gnu.so",
            "int tt_metal_marker(void);\nint init(void) { return tt_metal_marker(); }\n",
            &[
                "-shared",
                "-fPIC",
                "-Wl,--no-as-needed",
                &link,
                "-ltt_metal",
                "-Wl,--enable-new-dtags",
                "-Wl,-rpath,$ORIGIN/../../build/lib:$ORIGIN",
            ],
        )
        .unwrap();
        std::fs::write(pkg.join("__init__.py"), "").unwrap();
        // A stand-in interpreter answering the question tracer asks.
        let python = d.path().join("python3");
        std::fs::write(
            &python,
            format!(
                "#!/bin/sh\necho {}\necho .cpython-312-x86_64-linux-gnu.so\necho .so\n",
                pkg.display()
            ),
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&python, std::fs::Permissions::from_mode(0o755)).unwrap();
        let launch = follow(&strings(&[&python.display().to_string(), "x.py"]));
        assert_eq!(
            candidate_pythons(&launch, &strings(&["x"])).first(),
            Some(&python)
        );
        let found = from_python(&python, &launch).expect("found");
        assert_eq!(found.path, real(&lib.join(LIB_NAME)));
        let how = found.how.join("\n");
        assert!(how.contains("the ttnn package is "), "{how}");
        assert!(
            how.contains(
                "_ttnn.cpython-312-x86_64-linux-gnu.so: NEEDED libtt_metal.so via RUNPATH \
                 $ORIGIN/../../build/lib (= "
            ),
            "{how}"
        );
        // Without the link, the old search under the package finds nothing either.
        std::fs::remove_file(lib.join(LIB_NAME)).unwrap();
        let lines = from_python(&python, &launch).unwrap_err().join("\n");
        assert!(lines.contains("NEEDED libtt_metal.so not found"), "{lines}");
        assert!(
            lines.contains("extension modules _ttnn.cpython-312"),
            "{lines}"
        );
    }

    #[test]
    fn finds_no_runtime_in_a_process_without_it() {
        assert_eq!(library_in_process(std::process::id()).unwrap(), None);
    }
}
