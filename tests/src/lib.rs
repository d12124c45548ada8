//! Helpers for the integration tests: run the real `tracer` binary on real ttnn workloads on
//! the bundled 8-chip mock mesh, and read the ground truth the workloads write.
use std::{
    path::{Path, PathBuf},
    process::{Command, Output},
};

pub use serde_json::Value;

pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

pub fn tracer_bin() -> PathBuf {
    let bin = root().join("target/release/tracer");
    assert!(
        bin.exists(),
        "build tracer first: cargo build --release -p tracer"
    );
    bin
}

fn venv_root() -> PathBuf {
    std::env::var_os("TRACER_VENV_ROOT")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap()).join(".cache/tracer/venvs")
        })
}

/// Whether scripts/setup.sh made the ttnn `era` environment.
pub fn has_venv(era: &str) -> bool {
    venv_root().join(format!("ttnn-{era}/bin/python")).exists()
}

/// The Python of the ttnn `era` environment made by scripts/setup.sh.
pub fn python(era: &str) -> PathBuf {
    let p = venv_root().join(format!("ttnn-{era}/bin/python"));
    assert!(
        p.exists(),
        "{} missing: run scripts/setup.sh --all",
        p.display()
    );
    p
}

pub fn library(era: &str) -> PathBuf {
    let out = Command::new(python(era))
        .args([
            "-c",
            "import importlib.util as u; print(u.find_spec('ttnn').submodule_search_locations[0])",
        ])
        .output()
        .unwrap();
    PathBuf::from(String::from_utf8(out.stdout).unwrap().trim()).join("build/lib/libtt_metal.so")
}

pub fn workload(name: &str) -> PathBuf {
    root().join("workloads").join(name)
}

/// The environment that makes the real runtime open the bundled 8-chip mock mesh, for any
/// process a test starts (tracer, or a workload it attaches to).
/// `program` in a mount namespace of its own with a private /dev/shm: tt-metal's SHM tracker,
/// a ground truth of several tests, shares one table per chip between every process on the
/// machine and never reclaims the records of processes that died with devices open, so on a
/// busy machine it fills up and a new process goes untracked.
pub fn with_private_shm(program: impl AsRef<std::ffi::OsStr>) -> Command {
    let mut c = Command::new("unshare");
    c.args(["--mount", "--propagation", "private", "sh", "-c"])
        .arg("mount -t tmpfs tmpfs /dev/shm && exec \"$0\" \"$@\"")
        .arg(program);
    c
}

pub fn mock(c: &mut Command) -> &mut Command {
    c.env(
        "TT_METAL_MOCK_CLUSTER_DESC_PATH",
        root().join("fixtures/tt-cluster/blackhole_8xP150.yaml"),
    )
    .env("ARCH_NAME", "blackhole")
    .env("TT_METAL_LOGGER_LEVEL", "ERROR")
    .current_dir(scratch_dir())
}

/// Where workloads run: tt-metal writes files (generated/fabric/*.yaml) into its working
/// directory, and they must not land in the checkout.
pub fn scratch_dir() -> PathBuf {
    let d = std::env::temp_dir().join("tracer-tests-cwd");
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A tracer command with the mock-mesh environment.
pub fn tracer() -> Command {
    let mut c = Command::new(tracer_bin());
    mock(&mut c);
    c
}

pub struct Traced {
    pub output: Output,
    pub summary: Value,
    pub truth: Option<Value>,
}

impl Traced {
    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.output.stdout).into_owned()
    }
    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.output.stderr).into_owned()
    }
    /// The only process of the summary whose command runs `script`.
    pub fn process(&self, script: &str) -> &Value {
        self.summary["processes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["command"].as_str().unwrap_or("").contains(script))
            .unwrap_or_else(|| panic!("no process running {script} in {}", self.summary))
    }
}

/// `tracer run [extra] -- python workload args`, with ground truth and summary JSON.
pub fn trace(era: &str, script: &str, args: &[&str], extra: &[&str]) -> Traced {
    let dir = tempdir();
    let summary = dir.join("summary.json");
    let truth = dir.join("truth.json");
    let output = tracer()
        .arg("run")
        .args(extra)
        .arg("--summary-json")
        .arg(&summary)
        .arg("--")
        .arg(python(era))
        .arg(workload(script))
        .args(args)
        .env("TRACER_GROUND_TRUTH", &truth)
        .output()
        .unwrap();
    let summary: Value =
        serde_json::from_str(&std::fs::read_to_string(&summary).unwrap_or_else(|_| {
            panic!(
                "no summary written; stderr:\n{}",
                String::from_utf8_lossy(&output.stderr)
            )
        }))
        .unwrap();
    let truth = std::fs::read_to_string(&truth)
        .ok()
        .map(|t| serde_json::from_str(&t).unwrap());
    Traced {
        output,
        summary,
        truth,
    }
}

pub fn tempdir() -> PathBuf {
    let d = std::env::temp_dir().join(format!(
        "tracer-test-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    ));
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Every BPF program loaded in the kernel, as `bpftool -j prog show` describes it.
pub fn bpf_programs() -> Vec<Value> {
    let out = Command::new("bpftool")
        .args(["-j", "prog", "show"])
        .output()
        .expect("bpftool");
    match serde_json::from_slice(&out.stdout) {
        Ok(Value::Array(v)) => v,
        _ => vec![],
    }
}

/// A workload's chips (`truth["chips"]`), sorted.
pub fn sorted_chips(truth: &Value) -> Vec<i64> {
    let mut c: Vec<i64> = truth["chips"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_i64().unwrap())
        .collect();
    c.sort();
    c
}

/// Names of BPF programs of ours currently loaded in the kernel.
pub fn our_bpf_programs() -> Vec<String> {
    bpf_programs()
        .iter()
        .filter_map(|p| p["name"].as_str())
        .filter(|n| n.starts_with("tracer_"))
        .map(String::from)
        .collect()
}

/// Uprobes/uretprobes registered through tracefs (tracer uses none; checked anyway).
pub fn tracefs_uprobes() -> String {
    [
        "/sys/kernel/tracing/uprobe_events",
        "/sys/kernel/debug/tracing/uprobe_events",
    ]
    .iter()
    .find_map(|p| std::fs::read_to_string(p).ok())
    .unwrap_or_default()
}

/// Chip -> device entry of a summary process.
pub fn devices(process: &Value) -> std::collections::BTreeMap<i64, Value> {
    process["devices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| (d["device"].as_i64().unwrap(), d.clone()))
        .collect()
}

/// `workloads/hold_tensors.py` under a tracer command: the workload holds its tensors until
/// [`Held::release`].
pub struct Held {
    pub truth_file: PathBuf,
    release_file: PathBuf,
}

/// What `hold_tensors.py` reported once its tensors were held.
pub struct HeldTruth {
    pub pid: u64,
    pub chips: Vec<i64>,
    /// `get_memory_view` per buffer type (same on every chip).
    pub dram: u64,
    pub l1: u64,
}

impl Held {
    /// Adds the workload (after `--`) and its environment to `cmd`.
    pub fn new(cmd: &mut Command, dir: &Path) -> Self {
        cmd.arg("--").arg(python("0.81.1"));
        Self::args(cmd, dir)
    }

    /// The workload alone (not under tracer).
    pub fn alone(dir: &Path) -> (Command, Self) {
        let mut cmd = Command::new(python("0.81.1"));
        mock(&mut cmd);
        let held = Self::args(&mut cmd, dir);
        (cmd, held)
    }

    fn args(cmd: &mut Command, dir: &Path) -> Self {
        let held = Self {
            truth_file: dir.join("truth.json"),
            release_file: dir.join("release"),
        };
        cmd.arg(workload("hold_tensors.py"))
            .env("TRACER_GROUND_TRUTH", &held.truth_file)
            .env("TRACER_RELEASE", &held.release_file);
        held
    }

    /// Waits until the tensors are held; returns the workload's ground truth.
    pub fn wait(&self) -> HeldTruth {
        let start = std::time::Instant::now();
        while !self.truth_file.exists() {
            assert!(
                start.elapsed() < std::time::Duration::from_secs(60),
                "workload never held its tensors"
            );
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        let t: Value =
            serde_json::from_str(&std::fs::read_to_string(&self.truth_file).unwrap()).unwrap();
        HeldTruth {
            pid: t["pid"].as_u64().unwrap(),
            chips: t["chips"]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| c.as_i64().unwrap())
                .collect(),
            dram: t["memory_view"]["DRAM"].as_u64().unwrap(),
            l1: t["memory_view"]["L1"].as_u64().unwrap(),
        }
    }

    /// Lets the workload free everything and exit.
    pub fn release(&self) {
        std::fs::write(&self.release_file, b"").unwrap();
    }
}

/// A summary number.
pub fn n(v: &Value) -> u64 {
    v.as_u64().unwrap_or_else(|| panic!("not a number: {v}"))
}

/// A process traced from its start (`attach_target.py`'s ground truth `truth`): its ledger on
/// every chip equals what the workload did and what `get_memory_view` said at its end.
pub fn check_complete(p: &Value, truth: &Value) {
    let devs = devices(p);
    assert_eq!(
        devs.keys().copied().collect::<Vec<_>>(),
        sorted_chips(truth)
    );
    assert!(p["attach"].is_null(), "{p}");
    let after = &truth["after"];
    for (chip, d) in &devs {
        let what = format!("PID {} chip {chip}", truth["pid"]);
        assert_eq!(
            n(&d["allocations"]),
            n(&truth["before"]["tensors"]) + n(&after["allocations"]),
            "{what}"
        );
        assert_eq!(
            n(&d["deallocations"]),
            n(&after["deallocations"]) + n(&after["pre_attach_frees"]),
            "{what}"
        );
        for ty in ["DRAM", "L1"] {
            assert_eq!(
                d["live"]["requested"][ty], truth["live_requested"][ty],
                "{what}: requested {ty}"
            );
            assert_eq!(
                d["live"]["reserved"][ty], truth["memory_view_at_end"][ty],
                "{what}: reserved {ty} == get_memory_view"
            );
        }
    }
}

/// The seed scenario's ledger (`workloads/seed_scenario.py`, nothing left): every chip shows each
/// tensor's allocation and free line and ends empty; per chip, peak reserved == the maximum of
/// `get_memory_view`, counts == the workload's, nothing outstanding.
pub fn check_seed_scenario_ledger(t: &Traced, what: &str) {
    let truth = t.truth.as_ref().expect("ground truth");
    let chips = sorted_chips(truth);
    let out = t.stdout();
    for chip in &chips {
        for tensor in truth["tensors"].as_array().unwrap() {
            let (size, id, ty) = (
                &tensor["size"],
                &tensor["buffer_id"],
                tensor["type"].as_str().unwrap(),
            );
            let alloc = format!("Allocated {size} bytes of {ty} on device {chip} (buffer_id={id})");
            let free = format!("Freed buffer {id} on device {chip} ({size} bytes)");
            assert!(out.contains(&alloc), "{what}: missing `{alloc}`");
            assert!(out.contains(&free), "{what}: missing `{free}`");
        }
        assert!(
            out.contains(&format!("Device {chip}: Buffers: 0, DRAM: 0 bytes")),
            "{what}: chip {chip} not empty at the end"
        );
    }
    let p = t.process("seed_scenario.py");
    let devs = devices(p);
    assert_eq!(devs.keys().copied().collect::<Vec<_>>(), chips, "{what}");
    for (chip, d) in &devs {
        assert_eq!(d["live"]["buffers"], 0, "{what} chip {chip}");
        for ty in ["DRAM", "L1"] {
            assert_eq!(d["live"]["reserved"][ty], 0, "{what} chip {chip} {ty}");
            assert_eq!(
                d["peak"]["reserved"][ty], truth["memory_view_max"][ty],
                "{what} chip {chip}: peak reserved {ty} == max of get_memory_view"
            );
        }
        assert_eq!(d["allocations"], truth["allocations"], "{what} chip {chip}");
        assert_eq!(
            d["deallocations"], truth["deallocations"],
            "{what} chip {chip}"
        );
    }
    assert!(p["outstanding"].as_array().unwrap().is_empty(), "{what}");
}

/// PyTorch's memory tool (`torch/cuda/_memory_viz.py`), fetched by scripts/setup.sh --all.
pub fn torch_memory_viz() -> PathBuf {
    let p = venv_root().join("torch-2.9.1/_memory_viz.py");
    assert!(
        p.exists(),
        "{} missing: run scripts/setup.sh --all",
        p.display()
    );
    p
}

/// The flamegraph.pl that Debian's libdevel-nytprof-perl ships (scripts/setup.sh --all).
pub const FLAMEGRAPH_PL: &str = "/usr/share/perl5/Devel/NYTProf/flamegraph.pl";

/// `tracer report FILE --json`: the summary a recording replays to.
pub fn report_json(file: &Path) -> serde_json::Value {
    let out = tracer()
        .arg("report")
        .arg(file)
        .arg("--json")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "report {}: {}",
        file.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// `tracer export FILE --format FORMAT -o FILE.EXT`; returns the written file.
/// What the real sqlite3 CLI prints for `sql` on the database `db` (rows as `a|b|c` lines).
pub fn sqlite(db: &Path, sql: &str) -> String {
    let out = Command::new("sqlite3")
        .arg(db)
        .arg(sql)
        .output()
        .expect("sqlite3 CLI (scripts/setup.sh installs it)");
    assert!(
        out.status.success(),
        "sqlite3 {}: {}",
        db.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

pub fn export(file: &Path, format: &str, ext: &str) -> PathBuf {
    let out_file = file.with_extension(ext);
    let out = tracer()
        .arg("export")
        .arg(file)
        .args(["--format", format, "-o"])
        .arg(&out_file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "export {format}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out_file
}
