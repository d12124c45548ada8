//! Which files the dynamic loader will map for a program, worked out before the program runs:
//! glibc's search (ld.so(8)) over DT_NEEDED, breadth first, from an executable or from modules
//! the program will dlopen. A library that nothing on the command line names (a native program
//! linked against the runtime, a Python extension module whose RPATH points into a source
//! build) is found the way the program itself will find it.
//!
//! Only ELF headers and dynamic sections are read: the objects on the way (the runtime's own
//! dependencies among them) are tens of megabytes each.
use std::{
    collections::{HashSet, VecDeque},
    fs::File,
    io::Read,
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context, Result};
use object::{
    elf,
    read::elf::{Dyn, FileHeader, ProgramHeader},
    Endianness, ReadCache, ReadRef, StringTable,
};

/// Where glibc keeps its cache of library names (written by ldconfig).
pub const CACHE: &str = "/etc/ld.so.cache";

/// An upper bound on the objects one search reads: a real dependency graph has tens.
const MAX_OBJECTS: usize = 2000;

/// What the loader reads from an object to load its dependencies.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Dynamic {
    pub needed: Vec<String>,
    pub rpath: Option<String>,
    pub runpath: Option<String>,
    pub soname: Option<String>,
    /// DF_1_NODEFLIB: the cache and the default directories are not searched for its
    /// dependencies.
    pub nodeflib: bool,
    /// (64-bit, e_machine): the loader passes over a candidate of another class or machine.
    pub class: (bool, u16),
}

/// The dynamic section of `path`; `Ok(None)` when it is not an ELF file (a script).
pub fn read_dynamic(path: &Path) -> Result<Option<Dynamic>> {
    let file = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let cache = ReadCache::new(file);
    let data = &cache;
    let Ok(ident) = data.read_bytes_at(0, 5) else {
        return Ok(None);
    };
    if ident[..4] != elf::ELFMAG {
        return Ok(None);
    }
    let parsed = match ident[4] {
        elf::ELFCLASS64 => parse::<elf::FileHeader64<Endianness>>(data),
        elf::ELFCLASS32 => parse::<elf::FileHeader32<Endianness>>(data),
        _ => return Ok(None),
    };
    parsed
        .map(Some)
        .with_context(|| format!("cannot read the dynamic section of {}", path.display()))
}

fn parse<Elf: FileHeader<Endian = Endianness>>(data: &ReadCache<File>) -> Result<Dynamic> {
    let header = Elf::parse(data)?;
    let endian = header.endian()?;
    let segments = header.program_headers(endian, data)?;
    let mut out = Dynamic {
        class: (header.is_class_64(), header.e_machine(endian)),
        ..Dynamic::default()
    };
    let Some(dynamic) = segments
        .iter()
        .find_map(|s| s.dynamic(endian, data).transpose())
        .transpose()?
    else {
        // Statically linked: the loader has nothing to do for it.
        return Ok(out);
    };
    let entries: Vec<_> = dynamic
        .iter()
        .take_while(|d| d.d_tag(endian).into() != u64::from(elf::DT_NULL))
        .collect();
    let value = |tag: u32| {
        entries
            .iter()
            .find(|d| d.tag32(endian) == Some(tag))
            .map(|d| d.d_val(endian).into())
    };
    let (Some(strtab), Some(strsz)) = (value(elf::DT_STRTAB), value(elf::DT_STRSZ)) else {
        return Ok(out);
    };
    // DT_STRTAB is an address: the file offset comes from the PT_LOAD segment holding it.
    let offset = segments
        .iter()
        .filter(|s| s.p_type(endian) == elf::PT_LOAD)
        .find_map(|s| {
            let vaddr: u64 = s.p_vaddr(endian).into();
            let size: u64 = s.p_filesz(endian).into();
            (vaddr..vaddr + size)
                .contains(&strtab)
                .then(|| s.p_offset(endian).into() + (strtab - vaddr))
        })
        .context("DT_STRTAB lies outside every PT_LOAD segment")?;
    let strings = StringTable::new(data, offset, offset + strsz);
    let string = |d: &&Elf::Dyn| -> Result<String> {
        let at = d
            .val32(endian)
            .context("dynamic string offset out of range")?;
        let bytes = strings
            .get(at)
            .map_err(|()| anyhow::anyhow!("dynamic string at {at:#x} outside DT_STRTAB"))?;
        Ok(String::from_utf8_lossy(bytes).into_owned())
    };
    for d in &entries {
        match d.tag32(endian) {
            Some(elf::DT_NEEDED) => out.needed.push(string(d)?),
            Some(elf::DT_RPATH) => out.rpath = Some(string(d)?),
            Some(elf::DT_RUNPATH) => out.runpath = Some(string(d)?),
            Some(elf::DT_SONAME) => out.soname = Some(string(d)?),
            Some(elf::DT_FLAGS_1) => {
                out.nodeflib = d.val32(endian).unwrap_or(0) & elf::DF_1_NODEFLIB != 0
            }
            _ => {}
        }
    }
    Ok(out)
}

/// (64-bit, e_machine) of an ELF file, from its first 20 bytes.
fn elf_class(path: &Path) -> Option<(bool, u16)> {
    let mut head = [0u8; 20];
    File::open(path).ok()?.read_exact(&mut head).ok()?;
    if head[..4] != elf::ELFMAG {
        return None;
    }
    let machine = match head[5] {
        elf::ELFDATA2MSB => u16::from_be_bytes([head[18], head[19]]),
        _ => u16::from_le_bytes([head[18], head[19]]),
    };
    Some((head[4] == elf::ELFCLASS64, machine))
}

/// The loader environment of the process that will load: what it reads from its environment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Env {
    pub library_path: Option<String>,
    pub preload: Option<String>,
}

impl Env {
    /// This process' own: a launched command inherits it.
    pub fn inherited() -> Self {
        let var = |n| std::env::var_os(n).map(|v| v.to_string_lossy().into_owned());
        Self {
            library_path: var("LD_LIBRARY_PATH"),
            preload: var("LD_PRELOAD"),
        }
    }

    /// Applies `NAME=value` (or an unset, `None`) to the variables the loader reads.
    pub fn set(&mut self, name: &str, value: Option<&str>) {
        match name {
            "LD_LIBRARY_PATH" => self.library_path = value.map(String::from),
            "LD_PRELOAD" => self.preload = value.map(String::from),
            _ => {}
        }
    }
}

fn multiarch() -> String {
    format!("{}-linux-gnu", std::env::consts::ARCH)
}

/// What `$LIB` may stand for: glibc builds it in (Debian `lib/<triplet>`, Fedora `lib64`), so
/// every one is tried.
fn lib_values() -> Vec<String> {
    vec![format!("lib/{}", multiarch()), "lib64".into(), "lib".into()]
}

/// glibc's trusted system directories, for the distributions' layouts (multiarch first).
fn default_dirs() -> Vec<PathBuf> {
    let m = multiarch();
    [
        format!("/lib/{m}"),
        format!("/usr/lib/{m}"),
        "/lib64".into(),
        "/usr/lib64".into(),
        "/lib".into(),
        "/usr/lib".into(),
    ]
    .into_iter()
    .map(PathBuf::from)
    .collect()
}

/// The directories one search-path entry names, its dynamic string tokens expanded
/// (ld.so(8)): `$ORIGIN`/`${ORIGIN}` the directory of the object, `$PLATFORM` the machine,
/// `$LIB` each of [`lib_values`]. An entry that needs an origin nobody knows names nothing, as
/// in the loader; an empty entry is the current directory.
pub fn expand(entry: &str, origin: Option<&Path>) -> Vec<PathBuf> {
    if entry.is_empty() {
        return vec![PathBuf::from(".")];
    }
    let mut out = vec![String::new()];
    let mut rest = entry;
    while let Some(at) = rest.find('$') {
        for o in &mut out {
            o.push_str(&rest[..at]);
        }
        let after = &rest[at + 1..];
        let token = ["ORIGIN", "PLATFORM", "LIB"].into_iter().find_map(|t| {
            if let Some(r) = after.strip_prefix(&format!("{{{t}}}")) {
                return Some((t, r));
            }
            // A bare token ends where a name character would continue it.
            let r = after.strip_prefix(t)?;
            (!r.starts_with(|c: char| c.is_ascii_alphanumeric() || c == '_')).then_some((t, r))
        });
        let Some((token, r)) = token else {
            for o in &mut out {
                o.push('$');
            }
            rest = after;
            continue;
        };
        let values = match token {
            "ORIGIN" => match origin {
                Some(o) => vec![o.display().to_string()],
                None => return Vec::new(),
            },
            "PLATFORM" => vec![std::env::consts::ARCH.to_string()],
            _ => lib_values(),
        };
        out = out
            .iter()
            .flat_map(|o| values.iter().map(move |v| format!("{o}{v}")))
            .collect();
        rest = r;
    }
    out.into_iter().map(|o| PathBuf::from(o + rest)).collect()
}

/// One entry of the loader cache.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheEntry {
    pub name: String,
    pub path: PathBuf,
    /// Set for glibc-hwcaps subdirectory entries (used only on CPUs that have the feature).
    pub hwcap: u64,
}

const CACHE_NEW: &[u8] = b"glibc-ld.so.cache1.1";
const CACHE_OLD: &[u8] = b"ld.so-1.7.0";

/// The entries of an ld.so.cache image (the "new" format glibc has written since 2.32, alone
/// or after the old one), in the file's order; `None` when it is neither.
pub fn parse_cache(data: &[u8]) -> Option<Vec<CacheEntry>> {
    let u32_at = |d: &[u8], at: usize| -> Option<u32> {
        Some(u32::from_le_bytes(d.get(at..at + 4)?.try_into().ok()?))
    };
    let start = if data.starts_with(CACHE_NEW) {
        0
    } else if data.starts_with(CACHE_OLD) {
        // Old header: magic padded to 12 bytes, entry count, 12-byte entries; the new part
        // follows, aligned to 8.
        let n = u32_at(data, 12)? as usize;
        (16 + n * 12).div_ceil(8) * 8
    } else {
        return None;
    };
    let new = data.get(start..)?;
    if !new.starts_with(CACHE_NEW) {
        return None;
    }
    // Byte 28: 2 = little-endian, 3 = big-endian (0 = written before the field existed).
    if new.get(28) == Some(&3) {
        return None;
    }
    let n = u32_at(new, 20)? as usize;
    let string = |at: u32| -> Option<String> {
        let s = new.get(at as usize..)?;
        let end = s.iter().position(|b| *b == 0)?;
        Some(String::from_utf8_lossy(&s[..end]).into_owned())
    };
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let e = 48 + i * 24;
        let flags = u32_at(new, e)?;
        // FLAG_ELF_LIBC6 in the low byte: the other kinds (libc5, a.out) are not loadable here.
        if flags & 0xff != 3 {
            continue;
        }
        let hwcap = u64::from_le_bytes(new.get(e + 16..e + 24)?.try_into().ok()?);
        out.push(CacheEntry {
            name: string(u32_at(new, e + 4)?)?,
            path: PathBuf::from(string(u32_at(new, e + 8)?)?),
            hwcap,
        });
    }
    Some(out)
}

/// The cache as `ldconfig -p` prints it, when the file cannot be read.
pub fn parse_ldconfig_output(text: &str) -> Vec<CacheEntry> {
    text.lines()
        .filter_map(|l| {
            let (left, path) = l.split_once(" => ")?;
            let name = left.trim().split(" (").next()?.to_string();
            Some(CacheEntry {
                name,
                path: PathBuf::from(path.trim()),
                hwcap: u64::from(left.contains("hwcap")),
            })
        })
        .collect()
}

/// The loader cache of this machine: the file, else what `ldconfig -p` prints.
pub fn system_cache() -> Vec<CacheEntry> {
    if let Some(entries) = std::fs::read(CACHE).ok().and_then(|d| parse_cache(&d)) {
        return entries;
    }
    Command::new("ldconfig")
        .arg("-p")
        .output()
        .map(|o| parse_ldconfig_output(&String::from_utf8_lossy(&o.stdout)))
        .unwrap_or_default()
}

/// Where a library was found, and the chain of loads that leads to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    pub path: PathBuf,
    /// One line per load from the root, e.g. `./native: NEEDED libtt_metal.so via RUNPATH
    /// $ORIGIN/lib (= /x/lib) -> /x/lib/libtt_metal.so`.
    pub chain: Vec<String>,
}

struct Node {
    /// As the loader opens it (symlinks kept: `$ORIGIN` of a library is not resolved).
    path: PathBuf,
    origin: Option<PathBuf>,
    dynamic: Dynamic,
    /// The object whose load brought this one in (glibc's `l_loader`).
    parent: Option<usize>,
    /// (`NEEDED` or `LD_PRELOAD`, the name asked for); `None` for a root.
    asked: Option<(&'static str, String)>,
    /// How the search came to it (the directory's origin; for a root, how it is loaded).
    how: String,
    /// Found in the cache or a default directory: the system's, not worth listing.
    system: bool,
}

/// One breadth-first load, as the loader does it, stopping at a wanted library.
pub struct Search {
    env: Env,
    cache: Option<Vec<CacheEntry>>,
    nodes: Vec<Node>,
    queue: VecDeque<usize>,
    names: HashSet<String>,
    files: HashSet<(u64, u64)>,
    main: Option<usize>,
    misses: Vec<String>,
}

impl Search {
    pub fn new(env: Env) -> Self {
        Self {
            env,
            cache: None,
            nodes: Vec::new(),
            queue: VecDeque::new(),
            names: HashSet::new(),
            files: HashSet::new(),
            main: None,
            misses: Vec::new(),
        }
    }

    /// Uses `entries` instead of this machine's loader cache.
    #[cfg(test)]
    pub fn with_cache(mut self, entries: Vec<CacheEntry>) -> Self {
        self.cache = Some(entries);
        self
    }

    /// The program the kernel starts. Its `$ORIGIN` is its real directory (the loader reads
    /// /proc/self/exe), its RPATH applies to every load of the process.
    pub fn executable(&mut self, path: &Path) -> Result<usize> {
        let real = std::fs::canonicalize(path)
            .with_context(|| format!("cannot resolve {}", path.display()))?;
        let i = self.root(
            path,
            real.parent().map(Path::to_path_buf),
            None,
            "the program the command runs",
        )?;
        self.main = Some(i);
        Ok(i)
    }

    /// A module the program will dlopen by path (a Python extension module); `by` is the
    /// object that opens it, whose RPATH chain applies to the module's dependencies.
    pub fn dlopen(&mut self, path: &Path, by: Option<usize>, how: &str) -> Result<usize> {
        self.root(path, path.parent().map(Path::to_path_buf), by, how)
    }

    fn root(
        &mut self,
        path: &Path,
        origin: Option<PathBuf>,
        parent: Option<usize>,
        how: &str,
    ) -> Result<usize> {
        let dynamic = read_dynamic(path)?
            .with_context(|| format!("{} is not an ELF file", path.display()))?;
        if let Some(id) = file_id(path) {
            self.files.insert(id);
        }
        self.names.insert(path.display().to_string());
        self.names.extend(dynamic.soname.clone());
        self.nodes.push(Node {
            path: path.to_path_buf(),
            origin,
            dynamic,
            parent,
            asked: None,
            how: how.to_string(),
            system: false,
        });
        let i = self.nodes.len() - 1;
        self.queue.push_back(i);
        Ok(i)
    }

    /// Loads what is queued, breadth first, until an object named `wanted` (by its NEEDED
    /// name or its SONAME) is found; `None` once everything reachable was loaded.
    pub fn find(&mut self, wanted: &str) -> Option<Found> {
        if let Some(i) = self
            .nodes
            .iter()
            .position(|n| names_it(wanted, &n.path, &n.dynamic))
        {
            return Some(self.found(i));
        }
        while let Some(i) = self.queue.pop_front() {
            let mut asks: Vec<(&'static str, String)> = Vec::new();
            if Some(i) == self.main {
                // Preloads come after the executable and before its dependencies.
                let preload = self.env.preload.clone().unwrap_or_default();
                asks.extend(
                    preload
                        .split([' ', ':'])
                        .filter(|p| !p.is_empty())
                        .map(|p| ("LD_PRELOAD", p.to_string())),
                );
            }
            asks.extend(
                self.nodes[i]
                    .dynamic
                    .needed
                    .iter()
                    .map(|n| ("NEEDED", n.clone())),
            );
            for (kind, name) in asks {
                if self.nodes.len() >= MAX_OBJECTS {
                    return None;
                }
                if self.names.contains(&name) {
                    continue;
                }
                let (path, how, system) = match self.resolve(i, &name) {
                    Ok(hit) => hit,
                    Err(searched) => {
                        self.misses.push(format!(
                            "{}: {kind} {name} not found (searched {searched})",
                            self.nodes[i].path.display()
                        ));
                        continue;
                    }
                };
                self.names.insert(name.clone());
                let dynamic = read_dynamic(&path).ok().flatten().unwrap_or_default();
                self.names.extend(dynamic.soname.clone());
                if let Some(id) = file_id(&path) {
                    if !self.files.insert(id) {
                        continue;
                    }
                }
                let matched = names_it(wanted, Path::new(&name), &dynamic);
                self.nodes.push(Node {
                    origin: path.parent().map(Path::to_path_buf),
                    path,
                    dynamic,
                    parent: Some(i),
                    asked: Some((kind, name)),
                    how,
                    system,
                });
                let j = self.nodes.len() - 1;
                if matched {
                    return Some(self.found(j));
                }
                self.queue.push_back(j);
            }
        }
        None
    }

    fn found(&self, i: usize) -> Found {
        let mut chain = Vec::new();
        let mut at = Some(i);
        while let Some(k) = at {
            let n = &self.nodes[k];
            match (&n.asked, n.parent) {
                (Some((kind, name)), Some(p)) => chain.push(format!(
                    "{}: {kind} {name} via {} -> {}",
                    self.nodes[p].path.display(),
                    n.how,
                    n.path.display()
                )),
                _ => chain.push(format!("{}: {}", n.path.display(), n.how)),
            }
            // Roots opened by another object: that object is context, not part of the chain.
            at = n.asked.as_ref().and(n.parent);
        }
        chain.reverse();
        Found {
            path: self.nodes[i].path.clone(),
            chain,
        }
    }

    /// What the search read and what it could not find, for an error message.
    pub fn followed(&self) -> Vec<String> {
        let mut out = Vec::new();
        let mut system = Vec::new();
        for n in &self.nodes {
            if n.system {
                system.push(n.path.file_name().unwrap_or_default().to_string_lossy());
                continue;
            }
            let d = &n.dynamic;
            let mut line = match n.asked {
                Some(_) => format!("{} (via {})", n.path.display(), n.how),
                None => format!("{} ({})", n.path.display(), n.how),
            };
            if !d.needed.is_empty() {
                line += &format!(": NEEDED {}", d.needed.join(", "));
            }
            if let Some(r) = &d.rpath {
                line += &format!("; RPATH {r}");
            }
            if let Some(r) = &d.runpath {
                line += &format!("; RUNPATH {r}");
            }
            out.push(line);
        }
        if !system.is_empty() {
            out.push(format!(
                "{} system libraries from the loader cache and default directories ({})",
                system.len(),
                system.join(", ")
            ));
        }
        out.extend(self.misses.iter().cloned());
        if !self.nodes.is_empty() {
            out.push(match &self.env.library_path {
                Some(p) => format!("LD_LIBRARY_PATH={p}"),
                None => "LD_LIBRARY_PATH unset".into(),
            });
        }
        out
    }

    /// The directories searched for a dependency of `requester`, in the loader's order,
    /// each with how the search came to it.
    fn search_path(&self, requester: usize) -> Vec<(String, PathBuf)> {
        let mut out = Vec::new();
        let labelled = |what: &str, entries: &str, origin: Option<&Path>, of: Option<&Path>| {
            let mut v = Vec::new();
            for entry in entries.split(':') {
                for dir in expand(entry, origin) {
                    let mut label = format!("{what} {entry}");
                    if dir != Path::new(entry) {
                        label += &format!(" (= {})", dir.display());
                    }
                    if let Some(of) = of {
                        label += &format!(" of {}", of.display());
                    }
                    v.push((label, dir));
                }
            }
            v
        };
        let me = &self.nodes[requester];
        // DT_RPATH counts only when the object has no DT_RUNPATH (glibc drops it then), and
        // is inherited: the requester's, its loader's, and so on, then the executable's.
        if me.dynamic.runpath.is_none() {
            let mut at = Some(requester);
            let mut saw_main = false;
            while let Some(k) = at {
                let n = &self.nodes[k];
                saw_main |= Some(k) == self.main;
                if let (None, Some(rpath)) = (&n.dynamic.runpath, &n.dynamic.rpath) {
                    let of = (k != requester).then_some(n.path.as_path());
                    out.extend(labelled("RPATH", rpath, n.origin.as_deref(), of));
                }
                at = n.parent;
            }
            if let Some(m) = self.main.filter(|_| !saw_main) {
                let n = &self.nodes[m];
                if let (None, Some(rpath)) = (&n.dynamic.runpath, &n.dynamic.rpath) {
                    out.extend(labelled(
                        "RPATH",
                        rpath,
                        n.origin.as_deref(),
                        Some(n.path.as_path()),
                    ));
                }
            }
        }
        if let Some(lp) = &self.env.library_path {
            let main_origin = self.main.and_then(|m| self.nodes[m].origin.as_deref());
            for entry in lp.split([':', ';']) {
                for dir in expand(entry, main_origin) {
                    out.push((format!("LD_LIBRARY_PATH (= {})", dir.display()), dir));
                }
            }
        }
        if let Some(runpath) = &me.dynamic.runpath {
            out.extend(labelled("RUNPATH", runpath, me.origin.as_deref(), None));
        }
        out
    }

    /// The file `requester` gets for `name`: (path, how, from the system), or what was
    /// searched.
    fn resolve(&mut self, requester: usize, name: &str) -> Result<(PathBuf, String, bool), String> {
        let class = self.nodes[requester].dynamic.class;
        let fits = |p: &Path| p.is_file() && elf_class(p).is_some_and(|c| c == class);
        if name.contains('/') {
            let p = PathBuf::from(name);
            return if fits(&p) {
                Ok((p, "its path".into(), false))
            } else {
                Err("nothing: it is a path to no loadable file".into())
            };
        }
        let mut searched: Vec<String> = Vec::new();
        for (label, dir) in self.search_path(requester) {
            let p = dir.join(name);
            if fits(&p) {
                return Ok((p, label, false));
            }
            searched.push(label);
        }
        if !self.nodes[requester].dynamic.nodeflib {
            let cache = self.cache.get_or_insert_with(system_cache);
            // Entries for hwcaps subdirectories serve only CPUs with the feature: plain first.
            let mut hits: Vec<&CacheEntry> = cache.iter().filter(|e| e.name == name).collect();
            hits.sort_by_key(|e| e.hwcap != 0);
            if let Some(e) = hits.into_iter().find(|e| fits(&e.path)) {
                return Ok((e.path.clone(), format!("the loader cache ({CACHE})"), true));
            }
            searched.push(format!("the loader cache ({CACHE})"));
            for dir in default_dirs() {
                let p = dir.join(name);
                if fits(&p) {
                    return Ok((p, format!("the default directory {}", dir.display()), true));
                }
            }
            searched.push("the default directories".into());
        }
        Err(searched.join(", "))
    }
}

/// Whether an object asked for as `name` is the library `wanted` (by file name or SONAME).
fn names_it(wanted: &str, name: &Path, dynamic: &Dynamic) -> bool {
    name.file_name().is_some_and(|n| n == wanted) || dynamic.soname.as_deref() == Some(wanted)
}

fn file_id(path: &Path) -> Option<(u64, u64)> {
    let m = std::fs::metadata(path).ok()?;
    Some((m.dev(), m.ino()))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Builds a C source with the system compiler; `None` (the test skips) without one.
    pub(crate) fn cc(dir: &Path, out: &str, source: &str, args: &[&str]) -> Option<PathBuf> {
        let src = dir.join(format!("{out}.c"));
        std::fs::write(&src, source).unwrap();
        let target = dir.join(out);
        let status = Command::new("cc")
            .arg(&src)
            .arg("-o")
            .arg(&target)
            .args(args)
            .status();
        match status {
            Ok(s) => {
                assert!(s.success(), "cc {out} {args:?} failed");
                Some(target)
            }
            Err(e) => {
                eprintln!("skipped: no C compiler ({e})");
                None
            }
        }
    }

    /// <d>/rt/libtt_metal.so, <d>/mid/libmid.so (NEEDED libtt_metal.so, `mid_flags`) and an
    /// executable <d>/bin/app (NEEDED libmid.so, `app_flags`).
    pub(crate) fn build_tree(d: &Path, mid_flags: &[&str], app_flags: &[&str]) -> Option<PathBuf> {
        for sub in ["rt", "mid", "bin"] {
            std::fs::create_dir_all(d.join(sub)).unwrap();
        }
        let rt = d.join("rt");
        cc(
            &rt,
            "libtt_metal.so",
            "int tt_metal_marker(void) { return 1; }\n",
            &["-shared", "-fPIC", "-Wl,-soname,libtt_metal.so"],
        )?;
        let rt_flag = format!("-L{}", rt.display());
        let link_rt = format!("-Wl,-rpath-link,{}", rt.display());
        let mut args = vec![
            "-shared",
            "-fPIC",
            "-Wl,-soname,libmid.so",
            "-Wl,--no-as-needed",
            &rt_flag,
            "-ltt_metal",
        ];
        args.extend(mid_flags);
        cc(
            &d.join("mid"),
            "libmid.so",
            "int tt_metal_marker(void);\nint mid(void) { return tt_metal_marker(); }\n",
            &args,
        )?;
        let mid_flag = format!("-L{}", d.join("mid").display());
        let mut args = vec!["-Wl,--no-as-needed", &mid_flag, &link_rt, "-lmid"];
        args.extend(app_flags);
        cc(
            &d.join("bin"),
            "app",
            "int mid(void);\nint main(void) { return mid() - 1; }\n",
            &args,
        )
    }

    fn search(env: Env, exe: &Path) -> (Option<Found>, Vec<String>) {
        let mut s = Search::new(env);
        s.executable(exe).unwrap();
        (s.find("libtt_metal.so"), s.followed())
    }

    #[test]
    fn expands_dynamic_string_tokens() {
        let o = Path::new("/opt/x");
        assert_eq!(
            expand("$ORIGIN/lib", Some(o)),
            [PathBuf::from("/opt/x/lib")]
        );
        assert_eq!(
            expand("${ORIGIN}/../l", Some(o)),
            [PathBuf::from("/opt/x/../l")]
        );
        assert_eq!(expand("$ORIGIN", None), Vec::<PathBuf>::new());
        assert_eq!(expand("", Some(o)), [PathBuf::from(".")]);
        assert_eq!(
            expand("/a/$ORIGINAL", Some(o)),
            [PathBuf::from("/a/$ORIGINAL")]
        );
        let arch = std::env::consts::ARCH;
        assert_eq!(
            expand("/p/$PLATFORM/${PLATFORM}", None),
            [PathBuf::from(format!("/p/{arch}/{arch}"))]
        );
        let libs = expand("/usr/$LIB/tt", None);
        assert_eq!(libs.len(), lib_values().len());
        assert!(libs.contains(&PathBuf::from("/usr/lib64/tt")), "{libs:?}");
        assert!(libs.contains(&PathBuf::from("/usr/lib/tt")), "{libs:?}");
    }

    #[test]
    fn reads_the_loader_cache_as_ldconfig_does() {
        let Ok(data) = std::fs::read(CACHE) else {
            eprintln!("skipped: no {CACHE}");
            return;
        };
        let ours = parse_cache(&data).expect("a glibc cache");
        assert!(!ours.is_empty());
        let Ok(out) = Command::new("ldconfig").arg("-p").output() else {
            eprintln!("skipped: no ldconfig");
            return;
        };
        let theirs = parse_ldconfig_output(&String::from_utf8_lossy(&out.stdout));
        assert!(!theirs.is_empty());
        for e in &theirs {
            assert!(
                ours.iter().any(|o| o.name == e.name && o.path == e.path),
                "{e:?} missing from the parsed cache"
            );
        }
        assert!(parse_cache(b"not a cache").is_none());
        let libc = ours.iter().find(|e| e.name == "libc.so.6").expect("libc");
        assert!(libc.path.is_file(), "{libc:?}");
    }

    #[test]
    fn reads_needed_and_search_paths() {
        let d = tempfile::tempdir().unwrap();
        let Some(app) = build_tree(
            d.path(),
            &["-Wl,--enable-new-dtags", "-Wl,-rpath,$ORIGIN/../rt"],
            &["-Wl,--disable-new-dtags", "-Wl,-rpath,$ORIGIN/../mid"],
        ) else {
            return;
        };
        let a = read_dynamic(&app).unwrap().unwrap();
        assert!(a.needed.contains(&"libmid.so".to_string()), "{a:?}");
        assert_eq!(a.rpath.as_deref(), Some("$ORIGIN/../mid"));
        assert_eq!(a.runpath, None);
        let m = read_dynamic(&d.path().join("mid/libmid.so"))
            .unwrap()
            .unwrap();
        assert_eq!(m.soname.as_deref(), Some("libmid.so"));
        assert_eq!(m.runpath.as_deref(), Some("$ORIGIN/../rt"));
        assert_eq!(m.rpath, None);
        assert!(m.needed.contains(&"libtt_metal.so".to_string()));
        let script = d.path().join("script");
        std::fs::write(&script, "#!/bin/sh\n").unwrap();
        assert_eq!(read_dynamic(&script).unwrap(), None);
    }

    #[test]
    fn follows_rpath_then_runpath_through_a_dependency() {
        let d = tempfile::tempdir().unwrap();
        let Some(app) = build_tree(
            d.path(),
            &["-Wl,--enable-new-dtags", "-Wl,-rpath,$ORIGIN/../rt"],
            &["-Wl,--disable-new-dtags", "-Wl,-rpath,$ORIGIN/../mid"],
        ) else {
            return;
        };
        let (found, _) = search(Env::default(), &app);
        let found = found.expect("found");
        let root = std::fs::canonicalize(d.path()).unwrap();
        assert_eq!(found.path, root.join("bin/../mid/../rt/libtt_metal.so"));
        assert_eq!(found.chain.len(), 3, "{:#?}", found.chain);
        assert!(found.chain[1].contains("NEEDED libmid.so via RPATH $ORIGIN/../mid (= "));
        assert!(
            found.chain[2].contains("libmid.so: NEEDED libtt_metal.so via RUNPATH $ORIGIN/../rt")
        );
        // It really is what the loader maps: the program runs.
        assert!(Command::new(&app).status().unwrap().success());
    }

    #[test]
    fn rpath_is_inherited_and_runpath_is_not() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path().display().to_string();
        let rpath = format!("-Wl,-rpath,{root}/mid:{root}/rt");
        // libmid has no search path of its own: the executable's RPATH serves it.
        let Some(app) = build_tree(d.path(), &[], &["-Wl,--disable-new-dtags", &rpath]) else {
            return;
        };
        let (found, _) = search(Env::default(), &app);
        let found = found.expect("inherited RPATH");
        assert!(
            found.chain[2].contains(&format!("via RPATH {root}/rt of ")),
            "{:#?}",
            found.chain
        );
        // The same as RUNPATH: libmid's dependency is not found, as the loader would not.
        let e = tempfile::tempdir().unwrap();
        let root = e.path().display().to_string();
        let runpath = format!("-Wl,-rpath,{root}/mid:{root}/rt");
        let app = build_tree(e.path(), &[], &["-Wl,--enable-new-dtags", &runpath]).unwrap();
        let (found, followed) = search(Env::default(), &app);
        assert_eq!(found, None);
        let all = followed.join("\n");
        assert!(
            all.contains("libmid.so: NEEDED libtt_metal.so not found (searched "),
            "{all}"
        );
        assert!(
            all.contains(&format!("RUNPATH {root}/mid:{root}/rt")),
            "{all}"
        );
        assert!(all.contains("LD_LIBRARY_PATH unset"), "{all}");
        let out = Command::new(&app).output().unwrap();
        assert!(!out.status.success());
        // LD_LIBRARY_PATH serves every object.
        let env = Env {
            library_path: Some(format!("/nonexistent:{root}/rt")),
            preload: None,
        };
        let (found, _) = search(env, &app);
        let found = found.expect("LD_LIBRARY_PATH");
        assert!(
            found.chain[2].contains(&format!("via LD_LIBRARY_PATH (= {root}/rt)")),
            "{:#?}",
            found.chain
        );
    }

    #[test]
    fn system_libraries_come_from_the_cache() {
        let sh = std::fs::canonicalize("/bin/sh").unwrap();
        let mut s = Search::new(Env::default());
        s.executable(&sh).unwrap();
        let libc = s.find("libc.so.6").expect("libc of /bin/sh");
        assert!(
            libc.chain[1].contains("the loader cache"),
            "{:#?}",
            libc.chain
        );
        // With an empty cache the default directories still have it.
        let mut s = Search::new(Env::default()).with_cache(Vec::new());
        s.executable(&sh).unwrap();
        let libc = s.find("libc.so.6").expect("libc of /bin/sh");
        assert!(
            libc.chain[1].contains("the default directory"),
            "{:#?}",
            libc.chain
        );
    }
}
