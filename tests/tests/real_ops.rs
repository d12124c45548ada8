//! Real ttnn ops on the 8-chip mock mesh (matmul, softmax, layer_norm, eltwise, transpose,
//! layout changes, sharded L1): after every step of the workload, the ledger replayed from the
//! recording up to that moment is compared, per chip, with what tt-metal itself said at that
//! moment (`get_memory_view` per buffer type, the SHM tracker's circular-buffer bytes) and with
//! the workload's own count of live tensors.
use std::ops::ControlFlow;

use serde_json::Value;
use tracer::{
    ledger::{BufferType, Ledger},
    recording::reader::Recording,
};
use tracer_tests::*;

/// `tracer run -o REC -- python workload args` with the kernel cache of `era`.
fn record(era: &str, script: &str, args: &[&str]) -> (Vec<u8>, Value, String) {
    record_on(era, script, args, None).0
}

/// The same on another mock cluster (`cluster`: a descriptor in fixtures/tt-cluster/); also
/// returns the live summary.
fn record_on(
    era: &str,
    script: &str,
    args: &[&str],
    cluster: Option<&str>,
) -> ((Vec<u8>, Value, String), Value) {
    let dir = tempdir();
    let rec = dir.join("run.trace");
    let truth = dir.join("truth.json");
    let summary = dir.join("summary.json");
    // A /dev/shm of its own (a private mount namespace, as the attach tests do): tt-metal's SHM
    // tracker, the CB ground truth here, shares one table per chip between every process on
    // the machine and never reclaims the records of processes that died with devices open, so
    // on a busy machine it fills up and a new process goes untracked.
    let mut cmd = with_private_shm(tracer_bin());
    mock(&mut cmd);
    cmd.args(["run", "--quiet", "-o"])
        .arg(&rec)
        .arg("--summary-json")
        .arg(&summary)
        .arg("--")
        .arg(python(era))
        .arg(workload(script))
        .args(args)
        .env("TRACER_GROUND_TRUTH", &truth)
        // Kernels built by the compiler stand-in, per release.
        .env(
            "TT_METAL_CACHE",
            scratch_dir().join(format!("kernels-{era}")),
        );
    if let Some(c) = cluster {
        cmd.env(
            "TT_METAL_MOCK_CLUSTER_DESC_PATH",
            root().join("fixtures/tt-cluster").join(c),
        );
    }
    let out = cmd.output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{stderr}");
    let truth: Value = serde_json::from_str(
        &std::fs::read_to_string(&truth).unwrap_or_else(|_| panic!("no truth: {stderr}")),
    )
    .unwrap();
    // The recording replays to the live session's circular-buffer figures.
    let replayed = report_json(&rec);
    let live: Value = serde_json::from_str(&std::fs::read_to_string(&summary).unwrap()).unwrap();
    let cbs = |s: &Value| -> Vec<Value> {
        s["processes"][0]["devices"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["circular_buffers"].clone())
            .collect()
    };
    assert_eq!(
        cbs(&replayed),
        cbs(&live),
        "report of the recording vs the live summary"
    );
    assert!(cbs(&live).iter().all(|c| c["peak_bytes"].is_u64()));
    ((std::fs::read(&rec).unwrap(), truth, stderr), live)
}

/// One chip's ground truth at one step, in either workload's words (real_ops.py keeps one
/// figure for the mesh, real_model.py one per chip and the whole SHM record).
struct StepTruth<'a> {
    step: &'a Value,
    chip: i32,
}

impl StepTruth<'_> {
    fn memory_view(&self, kind: &str) -> u64 {
        let v = &self.step["memory_view"];
        v[kind]
            .as_u64()
            .or_else(|| v[self.chip.to_string()][kind].as_u64())
            .unwrap_or_else(|| panic!("no memory view of {kind} in {}", self.step))
    }

    fn live_tensors(&self) -> u64 {
        self.step["live_tensors"]
            .as_u64()
            .or_else(|| self.step["live"]["tensors"].as_u64())
            .unwrap_or_else(|| panic!("no live tensor count in {}", self.step))
    }

    /// tt-metal's SHM tracker's CB bytes for this process on the chip, if it has a record.
    fn cb(&self) -> Option<u64> {
        let chip = self.chip.to_string();
        self.step["cb"][&chip]
            .as_u64()
            .or_else(|| self.step["shm"][&chip]["CB"].as_u64())
    }
}

/// Replays the recording and checks the ledger at each step's moment.
fn check_every_step(data: &[u8], truth: &Value, what: &str) -> usize {
    check_steps(data, truth, what, true).0
}

/// The same, from the recording's first event on (an attach: steps before it are not in the
/// recording); `cbs`: compare circular-buffer bytes too. Returns the steps with circular
/// buffers, and the steps checked.
fn check_steps(data: &[u8], truth: &Value, what: &str, cbs: bool) -> (usize, usize) {
    let rec = Recording::open(data).unwrap();
    let steps = truth["steps"].as_array().unwrap();
    let chips: Vec<i32> = truth["chips"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_i64().unwrap() as i32)
        .collect();
    let mut ledger = Ledger::new();
    let mut next = 0;
    let mut cb_steps = 0;
    let mut check = |ledger: &Ledger, step: &Value| {
        let p = ledger.processes.values().next().expect("a process");
        let at = format!("{what}, step {} ({})", step["op"], step["t_ns"]);
        for chip in &chips {
            let d = &p.devices[chip];
            let truth = StepTruth { step, chip: *chip };
            for (name, kind) in [("DRAM", BufferType::Dram), ("L1", BufferType::L1)] {
                assert_eq!(
                    d.reserved.get(kind),
                    truth.memory_view(name),
                    "{at}: chip {chip} reserved {name} vs get_memory_view"
                );
            }
            assert_eq!(
                d.live_buffers,
                truth.live_tensors(),
                "{at}: chip {chip} live buffers vs the workload's live tensors"
            );
            if let Some(cb) = truth.cb().filter(|_| cbs) {
                assert_eq!(
                    d.circular_buffers.live_bytes, cb,
                    "{at}: chip {chip} CB bytes vs tt-metal's SHM tracker"
                );
                if cb > 0 {
                    cb_steps += 1;
                }
            }
        }
    };
    let mut first = true;
    let mut checked = 0;
    rec.replay(|ev| {
        while next < steps.len() && ev.ts_ns > steps[next]["t_ns"].as_u64().unwrap() {
            // Before the recording's first event, the tracer was not there.
            if !first {
                check(&ledger, &steps[next]);
                checked += 1;
            }
            next += 1;
        }
        first = false;
        ledger.apply(ev);
        ControlFlow::Continue(())
    })
    .unwrap();
    assert_eq!(next, steps.len(), "{what}: steps after the last event");
    (cb_steps, checked)
}

fn real_ops(era: &str) {
    let (data, truth, stderr) = record(era, "real_ops.py", &["--seed", "7", "--ops", "24"]);
    let cb_steps = check_every_step(&data, &truth, &format!("real_ops {era}"));
    // Every kind of memory the issue names was among the steps checked.
    let ops: Vec<&str> = truth["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["op"].as_str().unwrap())
        .collect();
    for op in [
        "height",
        "width",
        "block",
        "dram_height",
        "dram_width",
        "row_major",
        "to_l1",
        "matmul",
    ] {
        assert!(ops.contains(&op), "no {op} step in {ops:?}");
    }
    assert!(
        !stderr.contains("allocation(s) of sharded buffers"),
        "every sharded buffer had its footprint:\n{stderr}"
    );
    // Real ops place real circular buffers: the comparison above was not of zeros.
    assert!(cb_steps > 0, "no step had circular buffers:\n{stderr}");
}

fn real_model(era: &str) {
    let (data, truth, stderr) = record(era, "real_model.py", &["--seed", "3", "--ops", "16"]);
    let cb_steps = check_every_step(&data, &truth, &format!("real_model {era}"));
    assert!(
        truth["steps"].as_array().unwrap().len() > 20,
        "a short model: {stderr}"
    );
    if era == "0.75.0" {
        // 0.81.1's ops mostly use dataflow buffers, which tt-metal's CB figure leaves out.
        assert!(cb_steps > 0, "no step had circular buffers:\n{stderr}");
    }
}

#[test]
fn the_real_model_is_exact_after_every_step_on_0_81_1() {
    real_model("0.81.1");
}

#[test]
fn the_real_model_is_exact_after_every_step_on_0_75_0() {
    real_model("0.75.0");
}

/// A Galaxy-class 32-chip mesh (8x4): the same checks on every chip, and still one uprobe
/// trap per mesh allocation and per free, whatever the number of chips.
#[test]
fn the_real_model_is_exact_on_a_32_chip_mesh() {
    let ((data, truth, stderr), live) = record_on(
        "0.81.1",
        "real_model.py",
        &["--seed", "5", "--ops", "8", "--mesh", "8x4"],
        Some("blackhole_galaxy_32chip.yaml"),
    );
    assert_eq!(truth["chips"].as_array().unwrap().len(), 32, "{stderr}");
    check_every_step(&data, &truth, "real_model on 32 chips");
    let p = &live["processes"][0];
    let devices = p["devices"].as_array().unwrap();
    assert_eq!(devices.len(), 32);
    // Per chip, every buffer is counted once; the probes fired once per mesh buffer.
    let allocations = devices[0]["allocations"].as_u64().unwrap();
    let frees = devices[0]["deallocations"].as_u64().unwrap();
    assert!(devices.iter().all(|d| d["allocations"] == allocations));
    assert_eq!(live["probe_hits"]["Alloc"].as_u64(), Some(allocations));
    assert_eq!(live["probe_hits"]["Free"].as_u64(), Some(frees));
}

#[test]
fn real_ops_are_exact_after_every_step_on_0_81_1() {
    real_ops("0.81.1");
}

#[test]
fn real_ops_are_exact_after_every_step_on_0_75_0() {
    real_ops("0.75.0");
}

/// workloads/real_ops.py held after its 8th step (programs loaded, DRAM, L1 and sharded
/// tensors live), in a /dev/shm of its own (see [`record_on`]): it goes on when told.
struct HeldRealOps {
    child: std::process::Child,
    pid: u32,
    truth: std::path::PathBuf,
    go: std::path::PathBuf,
    _dir: std::path::PathBuf,
}

impl HeldRealOps {
    fn start(era: &str) -> Self {
        Self::start_script(
            era,
            "real_ops.py",
            &["--seed", "7", "--ops", "20", "--hold-at", "8"],
            ("REAL_OPS_READY", "REAL_OPS_GO"),
        )
    }

    /// `script` with `args`, which writes its PID to the file named by `signals.0` and goes
    /// on when the file named by `signals.1` appears.
    fn start_script(era: &str, script: &str, args: &[&str], signals: (&str, &str)) -> Self {
        let dir = tempdir();
        let (truth, ready, go) = (dir.join("truth.json"), dir.join("ready"), dir.join("go"));
        let mut w = with_private_shm(python(era));
        mock(&mut w)
            .arg(workload(script))
            .args(args)
            .env("TRACER_GROUND_TRUTH", &truth)
            .env(signals.0, &ready)
            .env(signals.1, &go)
            .env(
                "TT_METAL_CACHE",
                scratch_dir().join(format!("kernels-{era}")),
            )
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        let mut child = w.spawn().unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(600);
        while !ready.exists() {
            assert!(std::time::Instant::now() < deadline, "{era}: no hold");
            assert!(
                child.try_wait().unwrap().is_none(),
                "{era}: the workload died"
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        let pid = std::fs::read_to_string(&ready)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        Self {
            child,
            pid,
            truth,
            go,
            _dir: dir,
        }
    }

    /// Lets the workload go on to its end; its ground truth.
    fn finish(mut self, era: &str) -> Value {
        std::fs::write(&self.go, "").unwrap();
        assert!(
            self.child.wait().unwrap().success(),
            "{era}: the workload failed"
        );
        serde_json::from_str(&std::fs::read_to_string(&self.truth).unwrap()).unwrap()
    }
}

/// `tracer attach` to a real-op workload held after its 8th step: seeded with the buffers
/// read from its allocators and the CBs of the programs placed on its chips, the ledger
/// replayed from the attach's recording equals `get_memory_view` per chip and type, the
/// workload's count of live tensors and tt-metal's SHM tracker's CB bytes per chip after every
/// later step.
fn attach_to_real_ops(era: &str) {
    let (cb_steps, checked, data) = attach_and_check(era, HeldRealOps::start(era), "real_ops");
    // Steps 9..20, and the free-all one.
    assert!(
        checked >= 12,
        "{era}: only {checked} steps after the attach"
    );
    // The CBs compared were not all zeros.
    assert!(cb_steps > 0, "{era}: no later step had circular buffers");
    sqlite_has_what_was_held(era, &data);
}

/// The SQLite export of an attach's recording, read by the sqlite3 CLI: on every chip, one
/// `buffers` row per buffer read at the attach (as many as the ledger seeded), and the
/// circular buffers of the programs placed before it.
fn sqlite_has_what_was_held(era: &str, data: &[u8]) {
    let file = tempdir().join("attach.trace");
    std::fs::write(&file, data).unwrap();
    let db = export(&file, "sqlite", "sqlite");
    let query = |sql: &str| -> std::collections::BTreeMap<i64, u64> {
        sqlite(&db, sql)
            .lines()
            .map(|l| {
                let (chip, n) = l.split_once('|').unwrap();
                (chip.parse().unwrap(), n.parse().unwrap())
            })
            .collect()
    };
    let held = query(
        "SELECT d.chip, COUNT(*) FROM buffers b JOIN devices d \
         ON d.pid = b.pid AND d.handle = b.device_handle \
         WHERE b.held_at_attach = 1 GROUP BY d.chip",
    );
    let summary = report_json(&file);
    let seeded: std::collections::BTreeMap<i64, u64> = summary["processes"][0]["devices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["device"].as_i64().unwrap(),
                d["seeded"]["buffers"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(held, seeded, "{era}: buffers held at the attach, per chip");
    assert!(held.values().all(|n| *n > 0), "{era}: {held:?}");
    let cbs =
        query("SELECT chip, COUNT(*) FROM circular_buffers WHERE held_at_attach = 1 GROUP BY chip");
    assert_eq!(
        cbs.keys().collect::<Vec<_>>(),
        held.keys().collect::<Vec<_>>(),
        "{era}: circular buffers of programs placed before the attach, on every chip: {cbs:?}"
    );
}

/// Attaches to `w`, lets it finish, and checks the attach's recording against its ground
/// truth (CBs too): the steps with circular buffers, the steps checked, and the recording.
fn attach_and_check(era: &str, w: HeldRealOps, what: &str) -> (usize, usize, Vec<u8>) {
    let dir = tempdir();
    let rec = dir.join("attach.trace");
    let pid = w.pid;
    let mut t = tracer()
        .args(["attach", "--quiet", "--pid", &pid.to_string(), "-o"])
        .arg(&rec)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut err = std::io::BufReader::new(t.stderr.take().unwrap());
    let mut seen = String::new();
    loop {
        let mut line = String::new();
        use std::io::BufRead;
        assert!(err.read_line(&mut line).unwrap() > 0, "{era}: {seen}");
        seen.push_str(&line);
        if line.starts_with(&format!("attached: PID {pid}")) {
            break;
        }
    }
    let truth = w.finish(era);
    assert!(t.wait().unwrap().success(), "{era}: tracer failed: {seen}");
    std::io::Read::read_to_string(&mut err, &mut seen).unwrap();
    assert!(
        seen.contains("read from the process's own allocators")
            && seen.contains("and the circular buffers of"),
        "{era}: {seen}"
    );
    let data = std::fs::read(&rec).unwrap();
    let (cb_steps, checked) = check_steps(&data, &truth, &format!("{what} attached {era}"), true);
    (cb_steps, checked, data)
}

#[test]
fn attach_to_real_ops_is_exact_after_every_later_step_on_0_81_1() {
    attach_to_real_ops("0.81.1");
}

#[test]
fn attach_to_real_ops_is_exact_after_every_later_step_on_0_75_0() {
    attach_to_real_ops("0.75.0");
}

/// `tracer attach` to a workload that keeps placing programs and releasing them (clearing its
/// program cache) while tracer reads them: programs placed or released during the read are
/// reconciled with the probes' events by program, so once the workload is quiet the CB bytes
/// per chip equal tt-metal's SHM tracker's.
fn attach_while_programs_churn(era: &str) {
    let w = HeldRealOps::start_script(
        era,
        "cb_churn.py",
        &["--seed", "5", "--after", "40"],
        ("CB_CHURN_READY", "CB_CHURN_GO"),
    );
    let (cb_steps, checked, data) = attach_and_check(era, w, "cb_churn");
    assert_eq!(checked, 1, "{era}: the quiet step was not checked");
    assert!(cb_steps > 0, "{era}: no circular buffers when quiet");
    // Programs went on being placed after the read (whether the read found any depends on
    // when it ran: right after a clear there are none; attach_to_real_ops checks the seed
    // itself).
    let mut ledger = Ledger::new();
    Recording::open(&data)
        .unwrap()
        .replay(|ev| {
            ledger.apply(ev);
            ControlFlow::Continue(())
        })
        .unwrap();
    let p = ledger.processes.values().next().unwrap();
    for (chip, d) in &p.devices {
        let c = &d.circular_buffers;
        assert!(
            c.placed > 0,
            "{era} chip {chip}: no program placed after the read"
        );
    }
}

#[test]
fn attach_while_programs_churn_ends_exact_on_0_81_1() {
    attach_while_programs_churn("0.81.1");
}

#[test]
fn attach_while_programs_churn_ends_exact_on_0_75_0() {
    attach_while_programs_churn("0.75.0");
}

/// `tracer snapshot` of a real-op workload held after its 8th step: per chip, the CB bytes of
/// the programs placed on it equal tt-metal's SHM tracker's figure at that step, and the
/// buffers equal `get_memory_view` and the workload's live tensors.
fn snapshot_of_real_ops(era: &str) {
    let w = HeldRealOps::start(era);
    let out = tracer()
        .args(["snapshot", "--pid", &w.pid.to_string(), "--json"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{era}: {stderr}");
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    let truth = w.finish(era);
    let step = &truth["steps"][7];
    assert!(
        doc["snapshot"]["circular_buffers_unread"].is_null(),
        "{era}: {}",
        doc["snapshot"]
    );
    let devices = doc["processes"][0]["devices"].as_array().unwrap();
    let chips: Vec<i64> = truth["chips"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_i64().unwrap())
        .collect();
    assert_eq!(devices.len(), chips.len(), "{era}: {}", doc["snapshot"]);
    let mut nonzero = 0;
    for d in devices {
        let chip = d["device"].as_i64().unwrap() as i32;
        let t = StepTruth { step, chip };
        let what = format!("{era} chip {chip}");
        let cb = t.cb().unwrap_or_else(|| panic!("{what}: no SHM record"));
        let c = &d["circular_buffers"];
        assert_eq!(
            c["live_bytes"].as_u64(),
            Some(cb),
            "{what}: CB bytes vs tt-metal's SHM tracker"
        );
        // Every program counted was read from memory, none placed while tracer looked.
        assert_eq!(c["programs_placed"], 0, "{what}");
        assert_eq!(
            c["programs_held"].as_u64(),
            c["live_programs"].as_array().map(|p| p.len() as u64),
            "{what}"
        );
        nonzero += usize::from(cb > 0);
        assert_eq!(
            d["live"]["buffers"].as_u64(),
            Some(t.live_tensors()),
            "{what}: live buffers vs the workload's live tensors"
        );
        for ty in ["DRAM", "L1"] {
            assert_eq!(
                d["live"]["reserved"][ty].as_u64(),
                Some(t.memory_view(ty)),
                "{what}: reserved {ty} vs get_memory_view"
            );
        }
    }
    assert!(nonzero > 0, "{era}: no chip had circular buffers");
}

#[test]
fn a_snapshot_of_real_ops_has_their_circular_buffers_on_0_81_1() {
    snapshot_of_real_ops("0.81.1");
}

#[test]
fn a_snapshot_of_real_ops_has_their_circular_buffers_on_0_75_0() {
    snapshot_of_real_ops("0.75.0");
}

// The releases between the two eras lay programs and CBs out like one or the other (the
// offsets differ: tracer/src/runtime/x86/calibration_tests/programs.rs); each reads exactly.
#[test]
fn a_snapshot_of_real_ops_has_their_circular_buffers_on_0_76_0() {
    snapshot_of_real_ops("0.76.0");
}

#[test]
fn a_snapshot_of_real_ops_has_their_circular_buffers_on_0_78_0() {
    snapshot_of_real_ops("0.78.0");
}

#[test]
fn a_snapshot_of_real_ops_has_their_circular_buffers_on_0_80_0() {
    snapshot_of_real_ops("0.80.0");
}
