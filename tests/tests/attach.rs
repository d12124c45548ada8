//! `tracer attach` (--pid, --all) and `tracer run` on a process tree, on the real runtime
//! (ttnn 0.81.1 on the 8-chip mock mesh), checked against what each process itself did and what
//! tt-metal reports (`ttnn.get_memory_view`). Other ttnn processes may run on this machine at
//! the same time: every check filters on the PIDs this test started.
use std::{
    collections::BTreeMap,
    io::{BufRead, BufReader},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use tracer_tests::*;

const ERA: &str = "0.81.1";

fn wait_for(what: &str, secs: u64, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// How a target is started (always in its own mount namespace with a private /dev/shm).
#[derive(PartialEq)]
enum How {
    /// The shell execs Python: the target PID is the workload.
    Exec,
    /// Python from a venv mounted at a path only the target's namespace has.
    Container,
    /// The shell stays the parent of the workload.
    UnderShell,
}

/// A running workloads/attach_target.py.
struct Target {
    child: Child,
    pid: u32,
    go: PathBuf,
    truth: PathBuf,
}

impl Target {
    /// Starts it; with `wait`, returns once phase 1 is allocated and it waits for `go()`.
    ///
    /// It runs with a /dev/shm of its own (a private mount namespace, as in a container):
    /// tt-metal's SHM tracker keeps one table per chip shared by every process on the machine
    /// and never reclaims the records of processes that died with their devices open, so on a
    /// busy machine the table fills up and new processes go untracked. A private /dev/shm gives
    /// the workload a tracker of its own, read by tracer through /proc/PID/map_files.
    fn start(env: &[(&str, &str)], wait: bool) -> Self {
        Self::start_era(ERA, env, wait)
    }

    fn start_era(era: &str, env: &[(&str, &str)], wait: bool) -> Self {
        Self::spawn(era, env, wait, How::Exec)
    }

    /// Like a container: the Python environment is mounted at a path that exists only in the
    /// workload's mount namespace, so its /proc/PID/maps names a library the host cannot see
    /// at that path (tracer reaches it through /proc/PID/root).
    fn start_in_container() -> Self {
        Self::spawn(ERA, &[], true, How::Container)
    }

    /// Under a shell that does not use tt-metal itself (a launcher).
    fn start_under_shell() -> Self {
        Self::spawn(ERA, &[], true, How::UnderShell)
    }

    fn spawn(era: &str, env: &[(&str, &str)], wait: bool, how: How) -> Self {
        let dir = tempdir();
        let (ready, go, truth) = (dir.join("ready"), dir.join("go"), dir.join("truth.json"));
        let mut c = Command::new("unshare");
        c.args(["--mount", "--propagation", "private", "sh", "-c"]);
        if how == How::Container {
            let venv = python(era)
                .parent()
                .unwrap()
                .parent()
                .unwrap()
                .to_path_buf();
            c.arg(
                "mount -t tmpfs tmpfs /dev/shm && mount -t tmpfs tmpfs /mnt && mkdir /mnt/venv \
                 && mount --bind \"$0\" /mnt/venv && exec /mnt/venv/bin/python \"$@\"",
            )
            .arg(venv);
        } else if how == How::UnderShell {
            // The shell stays the parent (no exec) and exits after its child.
            c.arg("mount -t tmpfs tmpfs /dev/shm && \"$0\" \"$@\"; exit 0")
                .arg(python(era));
        } else {
            c.arg("mount -t tmpfs tmpfs /dev/shm && exec \"$0\" \"$@\"")
                .arg(python(era));
        }
        mock(&mut c).arg(workload("attach_target.py"));
        if wait {
            c.arg("--ready").arg(&ready).arg("--go").arg(&go);
        }
        c.arg("--truth").arg(&truth);
        for (k, v) in env {
            c.env(k, v);
        }
        let child = c
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let pid = child.id();
        if wait {
            wait_for("the workload's phase 1", 180, || ready.exists());
        }
        Target {
            child,
            pid,
            go,
            truth,
        }
    }

    fn go(&self) {
        std::fs::write(&self.go, "").unwrap();
    }

    /// Waits for the workload to end; returns its ground truth.
    fn finish(mut self) -> Value {
        let st = self.child.wait().unwrap();
        assert!(st.success(), "workload {} failed: {st}", self.pid);
        serde_json::from_str(&std::fs::read_to_string(&self.truth).unwrap()).unwrap()
    }
}

/// A tracer whose stderr and stdout are collected in the background.
struct Tracer {
    child: Child,
    stderr: Arc<Mutex<String>>,
    stdout: Arc<Mutex<String>>,
}

fn collect(r: impl std::io::Read + Send + 'static, into: Arc<Mutex<String>>) {
    std::thread::spawn(move || {
        for line in BufReader::new(r).lines().map_while(Result::ok) {
            let mut s = into.lock().unwrap();
            s.push_str(&line);
            s.push('\n');
        }
    });
}

impl Tracer {
    /// `tracer ARGS --summary-json FILE` in a fresh directory; returns it and FILE.
    fn with_summary(args: &[&str]) -> (Self, PathBuf) {
        Self::with_summary_env(args, &[])
    }

    fn with_summary_env(args: &[&str], env: &[(&str, &str)]) -> (Self, PathBuf) {
        let summary = tempdir().join("summary.json");
        let mut all = args.to_vec();
        all.extend(["--summary-json", summary.to_str().unwrap()]);
        (Self::start(&all, env), summary)
    }

    fn start(args: &[&str], env: &[(&str, &str)]) -> Self {
        let mut c = tracer();
        c.args(args);
        for (k, v) in env {
            c.env(k, v);
        }
        let mut child = c
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let (stderr, stdout) = Default::default();
        collect(child.stderr.take().unwrap(), Arc::clone(&stderr));
        collect(child.stdout.take().unwrap(), Arc::clone(&stdout));
        Tracer {
            child,
            stderr,
            stdout,
        }
    }

    fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    fn stdout(&self) -> String {
        self.stdout.lock().unwrap().clone()
    }

    fn wait_line(&mut self, line: &str) {
        wait_for(line, 60, || {
            if let Ok(Some(st)) = self.child.try_wait() {
                panic!("tracer ended ({st}) before `{line}`:\n{}", self.stderr());
            }
            self.stderr().lines().any(|l| l.starts_with(line))
        });
    }

    fn wait_exit(&mut self, secs: u64) -> i32 {
        let mut code = None;
        wait_for("the tracer to exit", secs, || {
            code = self
                .child
                .try_wait()
                .unwrap()
                .map(|s| s.code().unwrap_or(-1));
            code.is_some()
        });
        // Let the readers take the last lines.
        std::thread::sleep(Duration::from_millis(200));
        code.unwrap()
    }

    fn signal(&self, sig: i32) {
        signal(self.child.id(), sig);
    }
}

fn signal(pid: u32, sig: i32) {
    Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .status()
        .unwrap();
}

fn summary_process(summary: &Path, pid: u32) -> Value {
    let s: Value = serde_json::from_str(&std::fs::read_to_string(summary).unwrap()).unwrap();
    s["processes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["pid"].as_u64() == Some(u64::from(pid)))
        .unwrap_or_else(|| panic!("PID {pid} not in the summary"))
        .clone()
}

/// Per-chip ledger of a process attached mid-run, seeded with the buffers read from its own
/// allocators: exact, against the workload's own counts and `get_memory_view`.
fn check_seeded(p: &Value, truth: &Value) {
    let devs: BTreeMap<i64, Value> = devices(p);
    assert_eq!(
        devs.keys().copied().collect::<Vec<_>>(),
        sorted_chips(truth)
    );
    assert_eq!(p["attach"]["mode"], "seeded", "{p}");
    assert!(
        p["attach"]["source"]
            .as_str()
            .unwrap()
            .contains("own allocators"),
        "{p}"
    );
    assert_eq!(p["reserved_estimated"], 0, "{p}");
    // Every free of a buffer allocated before the attach matched a buffer read at the attach.
    assert_eq!(p["unknown_frees"], 0, "{p}");
    let after = &truth["after"];
    for (chip, d) in &devs {
        let what = format!("PID {} chip {chip}", truth["pid"]);
        // What was seeded is what the process held at the attach, by its own count and by
        // tt-metal's get_memory_view (phase-1 DRAM tensors reserve exactly their size).
        assert_eq!(d["seeded"]["buffers"], truth["before"]["tensors"], "{what}");
        assert_eq!(
            d["seeded"]["requested"]["DRAM"], truth["before"]["requested"]["DRAM"],
            "{what}"
        );
        assert_eq!(
            d["seeded"]["requested"]["DRAM"], truth["before"]["memory_view"]["DRAM"],
            "{what}: seed == get_memory_view at the attach"
        );
        assert_eq!(n(&d["allocations"]), n(&after["allocations"]), "{what}");
        assert_eq!(
            n(&d["deallocations"]),
            n(&after["deallocations"]) + n(&after["pre_attach_frees"]),
            "{what}"
        );
        assert_eq!(n(&d["freed_before_attach"]["count"]), 0, "{what}");
        assert_eq!(
            d["live"]["buffers"], truth["live_buffers"],
            "{what}: live buffers == the workload's"
        );
        for ty in ["DRAM", "L1"] {
            assert_eq!(
                d["live"]["requested"][ty], truth["live_requested"][ty],
                "{what}: live requested {ty}"
            );
            assert_eq!(
                d["live"]["reserved"][ty], truth["memory_view_at_end"][ty],
                "{what}: live reserved {ty} == get_memory_view"
            );
        }
    }
}

#[test]
fn attach_mid_run_seeds_from_the_allocators() {
    attach_mid_run_seeded(ERA, true);
}

/// The other layout era: older `Buffer`, allocator and mesh layouts.
#[test]
fn attach_mid_run_seeds_from_the_allocators_0_75_0() {
    attach_mid_run_seeded("0.75.0", true);
}

/// Without tt-metal's SHM tracker (`TT_METAL_SHM_TRACKING_DISABLED=1`): the same exact seed.
#[test]
fn attach_mid_run_seeds_from_the_allocators_without_shm_tracker() {
    attach_mid_run_seeded(ERA, false);
}

#[test]
fn attach_mid_run_seeds_from_the_allocators_without_shm_tracker_0_75_0() {
    attach_mid_run_seeded("0.75.0", false);
}

fn attach_mid_run_seeded(era: &str, shm: bool) {
    let mut env = vec![("ATTACH_TARGET_ODD_L1", "1")];
    if !shm {
        env.push(("TT_METAL_SHM_TRACKING_DISABLED", "1"));
    }
    let target = Target::start_era(era, &env, true);
    let pid = target.pid.to_string();
    let (mut t, summary) = Tracer::with_summary(&["attach", "--pid", &pid]);
    t.wait_line(&format!("attached: PID {pid}"));
    target.go();
    let truth = target.finish();
    assert_eq!(t.wait_exit(60), 0, "{}", t.stderr());
    let stderr = t.stderr();
    assert!(
        stderr.contains(&format!(
            "seeded with {} live buffer(s) read from the process's own allocators",
            truth["before"]["tensors"]
        )),
        "{stderr}"
    );
    // With the tracker on, it is the cross-check, and it agrees.
    assert!(!stderr.contains("disagrees"), "{stderr}");
    assert!(t
        .stdout()
        .contains("pre-attach state: seeded with the buffers read from"));
    // Allocations after the attach appear on every chip, with their exact size.
    let lines = t.stdout();
    for chip in sorted_chips(&truth) {
        assert!(
            lines.contains(&format!(
                "✓ [PID {pid}] Allocated 1048576 bytes of DRAM on device {chip}"
            )),
            "chip {chip}:\n{lines}"
        );
        assert!(lines.contains(&format!("✗ [PID {pid}] Freed buffer")));
    }
    check_seeded(&summary_process(&summary, target_pid(&truth)), &truth);
    // The workload waited while tracer read it: every free after the attach, of a buffer read
    // from its memory or allocated since, carried its object alone, and each matched.
    let s: Value = serde_json::from_str(&std::fs::read_to_string(&summary).unwrap()).unwrap();
    let hits = &s["probe_hits"];
    assert!(n(&hits["Free"]) > 0, "{s}");
    assert_eq!(hits["FreeByObject"], hits["Free"], "{s}");
}

/// The seed of a release whose allocators cannot be read (forced with TRACER_SEED=shm): the
/// SHM tracker's byte totals, then exact after the attach.
#[test]
fn attach_mid_run_seeds_from_the_shm_tracker_when_memory_is_not_read() {
    let target = Target::start(&[], true);
    let pid = target.pid.to_string();
    let (mut t, summary) =
        Tracer::with_summary_env(&["attach", "--pid", &pid], &[("TRACER_SEED", "shm")]);
    t.wait_line(&format!("attached: PID {pid}"));
    target.go();
    let truth = target.finish();
    assert_eq!(t.wait_exit(60), 0, "{}", t.stderr());
    assert!(
        t.stderr().contains("seeded from tt-metal SHM tracker"),
        "{}",
        t.stderr()
    );
    let p = summary_process(&summary, target_pid(&truth));
    assert_eq!(p["attach"]["mode"], "seeded");
    let after = &truth["after"];
    for (chip, d) in devices(&p) {
        let what = format!("chip {chip}");
        assert_eq!(
            d["seeded"]["requested"]["DRAM"], truth["before"]["memory_view"]["DRAM"],
            "{what}"
        );
        assert_eq!(n(&d["allocations"]), n(&after["allocations"]), "{what}");
        for ty in ["DRAM", "L1"] {
            assert_eq!(
                d["live"]["requested"][ty], truth["live_requested"][ty],
                "{what}: live requested {ty}"
            );
        }
        assert_eq!(
            d["live"]["reserved"]["DRAM"], truth["memory_view_at_end"]["DRAM"],
            "{what}"
        );
        assert_eq!(
            n(&d["freed_before_attach"]["count"]),
            n(&after["pre_attach_frees"])
        );
    }
}

#[test]
fn attach_to_a_process_that_sees_the_library_under_another_root() {
    let target = Target::start_in_container();
    let maps = std::fs::read_to_string(format!("/proc/{}/maps", target.pid)).unwrap();
    assert!(
        maps.contains("/mnt/venv/"),
        "library mapped from the private mount"
    );
    assert!(
        !Path::new("/mnt/venv/bin/python").exists(),
        "not visible from here"
    );
    let pid = target.pid.to_string();
    let (mut t, summary) = Tracer::with_summary(&["attach", "--quiet", "--pid", &pid]);
    t.wait_line(&format!("attached: PID {pid}"));
    assert!(
        t.stderr().contains(&format!("/proc/{pid}/root/mnt/venv/")),
        "{}",
        t.stderr()
    );
    target.go();
    let truth = target.finish();
    assert_eq!(t.wait_exit(60), 0, "{}", t.stderr());
    check_seeded(&summary_process(&summary, target_pid(&truth)), &truth);
}

/// Attaching while the target allocates and frees in a tight loop (one 2048-byte-per-chip DRAM
/// tensor alive at a time): the seed read from its allocators is reconciled by key with the
/// events that raced with the read, so the ledger never holds more than the process can (no
/// double count) and loses nothing (allocations and frees balance).
#[test]
fn attach_to_a_busy_process() {
    let mut c = with_private_shm(python(ERA));
    let mut target = mock(&mut c)
        .arg(workload("alloc_loop.py"))
        .arg("1000000")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let pid = target.id();
    wait_for("the loop to start", 120, || {
        std::fs::read_to_string(format!("/proc/{pid}/maps"))
            .unwrap_or_default()
            .contains("tt_device_")
    });
    std::thread::sleep(Duration::from_millis(500));
    let (mut t, summary) = Tracer::with_summary(&[
        "attach",
        "--quiet",
        "--duration",
        "2",
        "--pid",
        &pid.to_string(),
    ]);
    assert_eq!(t.wait_exit(60), 0, "{}", t.stderr());
    target.kill().unwrap();
    target.wait().unwrap();
    assert!(
        t.stderr()
            .contains("read from the process's own allocators"),
        "{}",
        t.stderr()
    );
    let p = summary_process(&summary, pid);
    assert_eq!(p["attach"]["mode"], "seeded");
    assert_eq!(p["reserved_estimated"], 0, "{p}");
    // At most the one tensor alive at the attach, freed before the read found it.
    assert!(n(&p["unknown_frees"]) <= 1, "{p}");
    for (chip, d) in devices(&p) {
        let what = format!("chip {chip}: {d}");
        let (allocs, frees) = (n(&d["allocations"]), n(&d["deallocations"]));
        assert!(allocs > 100, "{what}");
        let seeded = n(&d["seeded"]["buffers"]);
        assert!(seeded <= 1, "{what}");
        // Every buffer counted once: what was held at the attach plus what was allocated
        // since, minus what was freed, is what is live (0 or 1 tensor).
        let live = n(&d["live"]["buffers"]);
        assert!(live <= 1, "{what}");
        // Frees count pre-attach ones too; a buffer both read and seen allocated is one.
        let pre = n(&d["freed_before_attach"]["count"]);
        let raced = n(&p["attach"]["raced_with_read"]);
        assert_eq!(seeded - raced + allocs, frees - pre + live, "{what}");
        assert!(n(&d["live"]["requested"]["DRAM"]) <= 2048, "{what}");
        assert!(n(&d["peak"]["requested"]["DRAM"]) <= 2048, "{what}");
    }
}

/// `attach --pid` of a launcher that does not use tt-metal: its descendants that do are traced
/// (seeded as usual), each under its own PID.
#[test]
fn attach_to_a_launcher_traces_its_children() {
    let target = Target::start_under_shell();
    let shell = target.pid.to_string();
    let (mut t, summary) = Tracer::with_summary(&["attach", "--quiet", "--pid", &shell]);
    t.wait_line(&format!("attached: PID {shell}"));
    target.go();
    let truth = target.finish();
    assert_eq!(t.wait_exit(60), 0, "{}", t.stderr());
    let child = target_pid(&truth);
    assert_ne!(child.to_string(), shell);
    assert!(
        t.stderr().contains(&format!("attached: PID {child}\n")),
        "{}",
        t.stderr()
    );
    check_seeded(&summary_process(&summary, child), &truth);
}

fn target_pid(truth: &Value) -> u32 {
    n(&truth["pid"]) as u32
}

#[test]
fn attach_without_shm_tracker_counts_since_attach() {
    attach_since_attach(ERA);
}

/// The other layout era (no `Buffer` pimpl, other allocator offsets).
#[test]
fn attach_without_shm_tracker_counts_since_attach_0_75_0() {
    attach_since_attach("0.75.0");
}

/// Attached after the devices were opened (their bank managers built before the probes), with
/// an L1 tensor whose pages are fewer than the banks and not a multiple of the allocator's
/// minimum block: `reserved` still matches what tt-metal reports, from geometry tracer read in
/// the process.
fn attach_since_attach(era: &str) {
    let target = Target::start_era(
        era,
        &[
            ("TT_METAL_SHM_TRACKING_DISABLED", "1"),
            ("ATTACH_TARGET_ODD_L1", "1"),
        ],
        true,
    );
    let pid = target.pid.to_string();
    // Neither the allocators (TRACER_SEED=shm, as for a release whose allocators cannot be
    // read) nor a tracker: counted since the attach.
    let (mut t, summary) = Tracer::with_summary_env(
        &["attach", "--quiet", "--pid", &pid],
        &[("TRACER_SEED", "shm")],
    );
    t.wait_line(&format!("attached: PID {pid}"));
    target.go();
    let truth = target.finish();
    assert_eq!(t.wait_exit(60), 0, "{}", t.stderr());
    assert!(
        t.stderr()
            .contains("no tt-metal SHM tracker in this process; counting since attach"),
        "{}",
        t.stderr()
    );
    let after = &truth["after"];
    let freed_bytes = n(&after["pre_attach_free_requested"]);
    assert!(
        t.stdout().contains(&format!(
            "pre-attach state: since attach ({} free(s) of buffers allocated before attach, {} bytes",
            after["pre_attach_frees"],
            freed_bytes * sorted_chips(&truth).len() as u64
        )),
        "{}",
        t.stdout()
    );
    assert!(
        !t.stdout().contains("allocator geometry unknown"),
        "reserved was estimated:\n{}",
        t.stdout()
    );
    assert!(!t.stderr().contains("allocator geometry"), "{}", t.stderr());
    let p = summary_process(&summary, target_pid(&truth));
    assert_eq!(p["attach"]["mode"], "since_attach");
    assert_eq!(
        p["reserved_estimated"], 0,
        "geometry known for every allocation"
    );
    for (chip, d) in devices(&p) {
        let what = format!("chip {chip}");
        assert_eq!(n(&d["allocations"]), n(&after["allocations"]), "{what}");
        assert_eq!(n(&d["deallocations"]), n(&after["deallocations"]), "{what}");
        for ty in ["DRAM", "L1"] {
            assert_eq!(
                d["live"]["requested"][ty], truth["live_requested_since_attach"][ty],
                "{what}: {ty} held since the attach"
            );
        }
        // What tt-metal says changed in DRAM since the attach, pre-attach frees put back.
        let grown = n(&truth["memory_view_at_end"]["DRAM"]) + freed_bytes
            - n(&truth["before"]["memory_view"]["DRAM"]);
        assert_eq!(n(&d["live"]["reserved"]["DRAM"]), grown, "{what}");
        // No L1 before the attach: all of it is what the ledger saw allocated since.
        let l1 = n(&truth["memory_view_at_end"]["L1"]) - n(&truth["before"]["memory_view"]["L1"]);
        assert_eq!(n(&d["live"]["reserved"]["L1"]), l1, "{what}: reserved L1");
        assert!(
            l1 > n(&d["live"]["requested"]["L1"]),
            "{what}: the allocator pads L1 (banks, alignment, minimum block)"
        );
        assert_eq!(
            n(&d["freed_before_attach"]["count"]),
            n(&after["pre_attach_frees"])
        );
        assert_eq!(n(&d["freed_before_attach"]["requested"]), freed_bytes);
    }
}

#[test]
fn attach_all_keeps_one_exact_ledger_per_process() {
    let a = Target::start(&[], true);
    let b = Target::start(&[], true);
    // Another release (another library file): traced by a probe set of its own.
    let e = Target::start_era("0.75.0", &[], true);
    let lib = library(ERA);
    let (mut t, summary) =
        Tracer::with_summary(&["attach", "--all", "--lib", lib.to_str().unwrap()]);
    t.wait_line("attached: --all");
    for pid in [a.pid, b.pid, e.pid] {
        assert!(
            t.stderr().contains(&format!("attached: PID {pid}\n")),
            "{}",
            t.stderr()
        );
    }
    // The third starts after the tracer: traced from its first runtime call.
    let c = Target::start(&[], false);
    let c_pid = c.pid;
    a.go();
    b.go();
    e.go();
    let truths = [a.finish(), b.finish(), c.finish(), e.finish()];
    // Each exit is reported with the process' final state while the tracer keeps watching.
    wait_for("the exit reports", 30, || {
        truths
            .iter()
            .all(|tr| t.stdout().contains(&format!("PID {} (", target_pid(tr))))
    });
    t.signal(2);
    assert_eq!(t.wait_exit(60), 0, "{}", t.stderr());
    assert!(t.stdout().contains(&format!("✓ [PID {c_pid}] Allocated")));
    check_seeded(
        &summary_process(&summary, target_pid(&truths[0])),
        &truths[0],
    );
    check_seeded(
        &summary_process(&summary, target_pid(&truths[1])),
        &truths[1],
    );
    check_complete(&summary_process(&summary, c_pid), &truths[2]);
    check_seeded(
        &summary_process(&summary, target_pid(&truths[3])),
        &truths[3],
    );
}

/// A process of another release started after the tracer: its library file is found by the
/// periodic scan and probed from then on (seeded like an attach), or, when some process already
/// mapped that file at the start, traced from its first call.
#[test]
fn attach_all_picks_up_a_library_first_used_later() {
    let lib = library(ERA);
    let (mut t, summary) =
        Tracer::with_summary(&["attach", "--all", "--quiet", "--lib", lib.to_str().unwrap()]);
    t.wait_line("attached: --all");
    let old_lib = library("0.75.0");
    let probed_from_start = t
        .stderr()
        .lines()
        .any(|l| l.starts_with("attached: --all") && l.contains(old_lib.to_str().unwrap()));
    eprintln!("0.75.0 library probed from the start: {probed_from_start}");
    let e = Target::start_era("0.75.0", &[], true);
    let pid = e.pid;
    if !probed_from_start {
        t.wait_line(&format!("attached: PID {pid}"));
    }
    e.go();
    let truth = e.finish();
    wait_for("the exit report", 30, || {
        t.stdout().contains(&format!("PID {pid} ("))
    });
    t.signal(2);
    assert_eq!(t.wait_exit(60), 0, "{}", t.stderr());
    let p = summary_process(&summary, pid);
    if probed_from_start {
        check_complete(&p, &truth);
    } else {
        check_seeded(&p, &truth);
    }
}

#[test]
fn run_follows_children_started_by_multiprocessing_and_subprocess() {
    let t = trace(ERA, "two_children.py", &[], &["--quiet"]);
    assert!(t.output.status.success(), "{}", t.stderr());
    let truth = t.truth.as_ref().expect("ground truth");
    let children = truth["children"].as_array().unwrap();
    assert_eq!(children.len(), 2);
    for child in children {
        let pid = n(&child["pid"]);
        let p = t.summary["processes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| n(&p["pid"]) == pid)
            .unwrap_or_else(|| panic!("child {pid} not reported: {}", t.summary));
        check_complete(p, child);
    }
}

// ---- bad input ----

fn attach_once(pid: u32, env: &[(&str, &str)]) -> (i32, String) {
    let mut t = Tracer::start(&["attach", "--quiet", "--pid", &pid.to_string()], env);
    let code = t.wait_exit(120);
    (code, t.stderr())
}

#[test]
fn attach_to_a_pid_that_does_not_exist() {
    let mut gone = Command::new("true").spawn().unwrap();
    let pid = gone.id();
    gone.wait().unwrap();
    let (code, err) = attach_once(pid, &[]);
    assert_eq!(code, 4, "{err}");
    assert!(err.contains(&format!("no process with PID {pid}")), "{err}");
}

#[test]
fn attach_to_a_pid_that_already_exited() {
    // Exited but not reaped yet: /proc still lists it, as a zombie.
    let mut zombie = Command::new("true").spawn().unwrap();
    let pid = zombie.id();
    wait_for("the child to exit", 10, || {
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .map(|s| s.contains(") Z"))
            .unwrap_or(false)
    });
    let (code, err) = attach_once(pid, &[]);
    zombie.wait().unwrap();
    assert_eq!(code, 6, "{err}");
    assert!(
        err.contains(&format!("PID {pid} has already exited")),
        "{err}"
    );
}

#[test]
fn attach_to_a_pid_without_tt_metal() {
    let mut sleeper = Command::new("sleep").arg("60").spawn().unwrap();
    let (code, err) = attach_once(sleeper.id(), &[]);
    sleeper.kill().unwrap();
    sleeper.wait().unwrap();
    assert_eq!(code, 5, "{err}");
    assert!(err.contains("does not map libtt_metal.so"), "{err}");
}

/// A process that has the runtime loaded and sleeps.
fn ttnn_sleeper() -> Child {
    ttnn_sleeper_of(ERA)
}

fn ttnn_sleeper_of(era: &str) -> Child {
    let mut c = Command::new(python(era));
    let child = mock(&mut c)
        .args(["-c", "import ttnn, time; time.sleep(120)"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let maps = format!("/proc/{}/maps", child.id());
    wait_for("ttnn to load", 120, || {
        std::fs::read_to_string(&maps)
            .unwrap_or_default()
            .contains("libtt_metal.so")
    });
    child
}

/// The target exits between the moment tracer found it and the moment the probes are live.
/// Tracer opens the runtime library to calibrate it right after finding the target, and
/// calibrating takes far longer than a signal: the test stops the tracer (SIGSTOP) when the
/// library is opened (inotify), kills the target, then lets the tracer go on. Nothing in
/// tracer knows it is being tested.
#[test]
fn attach_to_a_pid_that_exits_during_attach() {
    use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};
    let mut target = ttnn_sleeper();
    let pid = target.id();
    let watch = Inotify::init(InitFlags::empty()).unwrap();
    watch
        .add_watch(&library(ERA), AddWatchFlags::IN_OPEN)
        .unwrap();
    let mut t = Tracer::start(&["attach", "--quiet", "--pid", &pid.to_string()], &[]);
    watch.read_events().unwrap();
    let tracer_pid = nix::unistd::Pid::from_raw(t.child.id() as i32);
    nix::sys::signal::kill(tracer_pid, nix::sys::signal::Signal::SIGSTOP).unwrap();
    target.kill().unwrap();
    target.wait().unwrap();
    nix::sys::signal::kill(tracer_pid, nix::sys::signal::Signal::SIGCONT).unwrap();
    let code = t.wait_exit(60);
    assert_eq!(code, 6, "{}", t.stderr());
    assert!(
        t.stderr()
            .contains(&format!("PID {pid} exited while tracer was attaching")),
        "{}",
        t.stderr()
    );
}

/// BPF program ids the process holds descriptors of (from /proc/PID/fdinfo).
fn bpf_programs_of(pid: u32) -> Vec<u64> {
    let mut ids: Vec<u64> = std::fs::read_dir(format!("/proc/{pid}/fdinfo"))
        .unwrap()
        .flatten()
        .filter_map(|e| std::fs::read_to_string(e.path()).ok())
        .filter_map(|info| {
            info.lines()
                .find_map(|l| l.strip_prefix("prog_id:"))
                .and_then(|v| v.trim().parse().ok())
        })
        .collect();
    ids.sort();
    ids.dedup();
    ids
}

fn loaded_programs() -> Vec<u64> {
    bpf_programs()
        .iter()
        .filter_map(|p| p["id"].as_u64())
        .collect()
}

#[test]
fn tracer_killed_while_attached_leaves_target_running_and_no_probe() {
    let mut target = ttnn_sleeper();
    let pid = target.id();
    let mut t = Tracer::start(&["attach", "--quiet", "--pid", &pid.to_string()], &[]);
    t.wait_line(&format!("attached: PID {pid}"));
    let ours = bpf_programs_of(t.child.id());
    assert!(ours.len() >= 3, "tracer holds its programs: {ours:?}");
    assert!(ours.iter().all(|id| loaded_programs().contains(id)));
    t.signal(9);
    t.wait_exit(10);
    wait_for("the kernel to drop our programs", 10, || {
        let loaded = loaded_programs();
        ours.iter().all(|id| !loaded.contains(id))
    });
    assert!(
        target.try_wait().unwrap().is_none(),
        "the target keeps running"
    );
    assert!(
        !tracefs_uprobes().contains("tt_metal"),
        "uprobe left in tracefs"
    );
    target.kill().unwrap();
    target.wait().unwrap();
}

/// Calibration reads the library's machine code; the kernel writes each uprobe's breakpoint
/// into private mappings of the probed file, so while probes are live (this tracer's or
/// another's) a private mapping would show `int3` at the probed out-of-memory call and entries,
/// and calibrate differently. Doctor's plan with probes attached equals the plan without.
#[test]
fn calibration_is_the_same_while_probes_are_attached() {
    // 0.75.0: its out-of-memory call site is where a private mapping was seen to show `int3`.
    let lib = library("0.75.0");
    let plan = || {
        let out = tracer()
            .args(["doctor", "--lib", lib.to_str().unwrap()])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| !l.to_lowercase().contains("self-test") && !l.contains("child"))
            .collect::<Vec<_>>()
            .join("\n")
    };
    let before = plan();
    assert!(before.contains("Out of Memory"), "{before}");
    let mut target = ttnn_sleeper_of("0.75.0");
    let pid = target.id();
    let mut t = Tracer::start(&["attach", "--quiet", "--pid", &pid.to_string()], &[]);
    t.wait_line(&format!("attached: PID {pid}"));
    let during = plan();
    t.signal(2);
    t.wait_exit(60);
    target.kill().unwrap();
    target.wait().unwrap();
    assert_eq!(
        before, during,
        "calibration changed while probes were attached"
    );
}
