//! Every ttnn release on PyPI that tracer supports, on the real runtime and the 8-chip mock
//! mesh: its library calibrates with a second source for every field (`tracer doctor`), a
//! traced workload's ledger equals `ttnn.get_memory_view` on every chip, and so does the
//! ledger of a process attached after it opened its devices (the allocator geometry read in
//! the process). `scripts/setup.sh --all` (what `cargo xtask test` runs) installs every one;
//! a release whose environment is missing is skipped, saying so.
use std::{
    io::{BufRead, BufReader},
    process::{Command, Stdio},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use tracer_tests::*;

const TYPES: [&str; 2] = ["DRAM", "L1"];

/// The fields that have two sources in every release (the FreeListOpt minimum block has one
/// constructor; `Buffer::buffer_layout` has none in the old era).
const CONFIRMED: [&str; 10] = [
    "Buffer::device",
    "Buffer::address",
    "Buffer::size",
    "Buffer::page_size",
    "Buffer::buffer_type",
    "Buffer::unique_id",
    "Device::id",
    "MeshDevice::get_devices",
    "BankManager alignment",
    "BankManager sub-allocators",
];

/// The fields with two sources in `era` besides: 0.75.0 resets a bank manager through a
/// switch (one source of the managers), 0.76.0's `get_num_banks` tail-calls the bank count's
/// accessor (one source of the count); 0.80.0 and 0.81.1 copy the sharding argument's layout.
fn confirmed_in(era: &str) -> Vec<&'static str> {
    let mut fields = CONFIRMED.to_vec();
    if era != "0.75.0" {
        fields.extend([
            "AllocatorImpl DRAM bank manager",
            "AllocatorImpl L1 bank manager",
        ]);
    }
    if era != "0.76.0" {
        fields.push("BankManager bank count");
    }
    if era >= "0.80.0" {
        fields.push("Buffer::buffer_layout");
    }
    fields
}

fn present(era: &str) -> bool {
    let here = has_venv(era);
    if !here {
        eprintln!("skipping ttnn {era}: no environment (run scripts/setup.sh --all)");
    }
    here
}

/// `tracer doctor --lib`: the layout and the allocator geometry calibrate, and each field
/// names the source it used and the sources that confirm it.
fn doctor(era: &str) {
    let o = tracer()
        .arg("doctor")
        .arg("--lib")
        .arg(library(era))
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    let library = out
        .split_once("Runtime library:")
        .unwrap_or_else(|| panic!("{era}: {out}"))
        .1;
    assert!(!library.contains("[FAIL]"), "{era}: {library}");
    assert!(library.contains("  layout: Buffer{"), "{era}: {library}");
    assert!(
        library.contains("allocator geometry (read after a mid-run attach): AllocatorImpl{"),
        "{era}: {library}"
    );
    // A buffer's allocation and free take the hot path (tracer_buffer) on every release.
    for role in ["Alloc", "Free"] {
        let slot = library
            .split(&format!(": {role} at file offset"))
            .nth(1)
            .unwrap_or_else(|| panic!("{era}: no {role} slot:\n{library}"));
        let next = slot.find("    slot ").unwrap_or(slot.len());
        assert!(
            slot[..next].contains("hot path: every value one word of the window"),
            "{era}: the {role} slot is not on the hot path:\n{}",
            &slot[..next]
        );
    }
    for field in confirmed_in(era) {
        let line = library
            .lines()
            .find(|l| l.trim_start().starts_with(&format!("{field}: ")))
            .unwrap_or_else(|| panic!("{era}: no line for {field}:\n{library}"));
        assert!(
            line.contains(" from ") && line.contains("; confirmed by "),
            "{era}: {field} has a second source: {line}"
        );
    }
}

/// The seed scenario, ending with 3 tensors held and the mesh open: per chip, live and peak
/// `reserved` equal `get_memory_view`, and the counts equal the workload's.
fn traced(era: &str) {
    let t = trace(
        era,
        "seed_scenario.py",
        &["--leave", "3", "--exit-open"],
        &["--quiet"],
    );
    assert!(t.output.status.success(), "{era}: {}", t.stderr());
    let truth = t.truth.as_ref().expect("ground truth");
    let p = t.process("seed_scenario.py");
    let devs = devices(p);
    assert_eq!(
        devs.keys().copied().collect::<Vec<_>>(),
        sorted_chips(truth),
        "{era}: one ledger per chip"
    );
    assert_eq!(p["reserved_estimated"], 0, "{era}: {p}");
    for (chip, d) in &devs {
        for ty in TYPES {
            assert_eq!(
                d["live"]["reserved"][ty], truth["memory_view_at_end"][ty],
                "{era} chip {chip}: live reserved {ty} == get_memory_view"
            );
            assert_eq!(
                d["peak"]["reserved"][ty], truth["memory_view_max"][ty],
                "{era} chip {chip}: peak reserved {ty} == max of get_memory_view"
            );
        }
        assert_eq!(
            d["allocations"], truth["allocations"],
            "{era} chip {chip}: allocations"
        );
        assert_eq!(
            d["deallocations"], truth["deallocations"],
            "{era} chip {chip}: deallocations"
        );
    }
}

fn wait_for(what: &str, secs: u64, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `tracer attach` to a process that opened its mesh and allocated before (no SHM tracker),
/// then allocates DRAM and L1, an L1 tensor of pages fewer than the banks and smaller than the
/// minimum block among them, and frees tensors of before and after the attach: seeded with the
/// buffers read from its allocators, the ledger ends equal to `get_memory_view` per chip and to
/// the workload's own count of live buffers, with no unknown frees.
fn attached(era: &str) {
    let dir = tempdir();
    let (ready, go, truth_file) = (dir.join("ready"), dir.join("go"), dir.join("truth.json"));
    let mut target = Command::new(python(era));
    mock(&mut target)
        .arg(workload("attach_target.py"))
        .arg("--ready")
        .arg(&ready)
        .arg("--go")
        .arg(&go)
        .arg("--truth")
        .arg(&truth_file)
        .env("TT_METAL_SHM_TRACKING_DISABLED", "1")
        .env("ATTACH_TARGET_ODD_L1", "1")
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut target = target.spawn().unwrap();
    wait_for("the workload's phase 1", 180, || ready.exists());
    let summary = dir.join("summary.json");
    let pid = target.id().to_string();
    let mut t = tracer()
        .args(["attach", "--quiet", "--pid", &pid, "--summary-json"])
        .arg(&summary)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = Arc::new(Mutex::new(String::new()));
    let lines = BufReader::new(t.stderr.take().unwrap());
    let into = Arc::clone(&stderr);
    std::thread::spawn(move || {
        for line in lines.lines().map_while(Result::ok) {
            let mut s = into.lock().unwrap();
            s.push_str(&line);
            s.push('\n');
        }
    });
    let attached = format!("attached: PID {pid}");
    wait_for(&attached, 60, || {
        stderr
            .lock()
            .unwrap()
            .lines()
            .any(|l| l.starts_with(&attached))
    });
    std::fs::write(&go, "").unwrap();
    assert!(
        target.wait().unwrap().success(),
        "{era}: the workload failed"
    );
    let st = t.wait().unwrap();
    assert!(
        st.success(),
        "{era}: tracer {st}:\n{}",
        stderr.lock().unwrap()
    );
    let truth: Value =
        serde_json::from_str(&std::fs::read_to_string(&truth_file).unwrap()).unwrap();
    let s: Value = serde_json::from_str(&std::fs::read_to_string(&summary).unwrap()).unwrap();
    let p = s["processes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["pid"].as_u64() == Some(n(&truth["pid"])))
        .unwrap_or_else(|| panic!("{era}: the workload is not in {s}"));
    assert_eq!(p["attach"]["mode"], "seeded", "{era}: {p}");
    assert_eq!(p["unknown_frees"], 0, "{era}: every free matched: {p}");
    assert_eq!(p["reserved_estimated"], 0, "{era}: geometry known: {p}");
    let devs = devices(p);
    assert_eq!(
        devs.keys().copied().collect::<Vec<_>>(),
        sorted_chips(&truth),
        "{era}: one ledger per chip"
    );
    for (chip, d) in devs {
        let what = format!("{era} chip {chip}");
        assert_eq!(
            d["live"]["buffers"], truth["live_buffers"],
            "{what}: buffers"
        );
        for ty in ["DRAM", "L1"] {
            assert_eq!(
                d["live"]["reserved"][ty], truth["memory_view_at_end"][ty],
                "{what}: {ty} reserved == get_memory_view"
            );
            assert_eq!(
                d["live"]["requested"][ty], truth["live_requested"][ty],
                "{what}: {ty} requested"
            );
        }
        assert!(
            n(&d["live"]["reserved"]["L1"]) > n(&d["live"]["requested"]["L1"]),
            "{what}: L1 padded"
        );
    }
}

fn release(era: &str) {
    if !present(era) {
        return;
    }
    doctor(era);
    traced(era);
    attached(era);
}

#[test]
fn release_0_75_0() {
    release("0.75.0");
}

#[test]
fn release_0_76_0() {
    release("0.76.0");
}

#[test]
fn release_0_78_0() {
    release("0.78.0");
}

#[test]
fn release_0_80_0() {
    release("0.80.0");
}

#[test]
fn release_0_81_1() {
    release("0.81.1");
}
