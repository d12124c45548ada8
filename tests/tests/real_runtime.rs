//! The real tt-metal runtime (ttnn from PyPI) on the 8-chip mock mesh, both layout eras,
//! checked against what tt-metal itself reports (`ttnn.get_memory_view`) and what the workload
//! did.
use tracer_tests::*;

const ERAS: [&str; 2] = ["0.81.1", "0.75.0"];
const TYPES: [&str; 2] = ["DRAM", "L1"];

/// Exits with the mesh open and 3 tensors kept: the summary is the ledger at exit.
fn check_exit_with_live_buffers(era: &str) {
    let t = trace(
        era,
        "seed_scenario.py",
        &["--leave", "3", "--exit-open"],
        &["--quiet"],
    );
    assert!(t.output.status.success(), "{}", t.stderr());
    let truth = t.truth.as_ref().expect("ground truth");
    let p = t.process("seed_scenario.py");
    let devs = devices(p);
    assert_eq!(
        devs.keys().copied().collect::<Vec<_>>(),
        sorted_chips(truth),
        "one ledger per physical chip"
    );
    let allocations = truth["allocations"].as_u64().unwrap();
    let deallocations = truth["deallocations"].as_u64().unwrap();
    // Launched: every allocation was seen, so every free carried its buffer's object alone.
    let hits = &t.summary["probe_hits"];
    assert_eq!(hits["Free"].as_u64(), Some(deallocations), "{hits}");
    assert_eq!(hits["FreeByObject"], hits["Free"], "{hits}");
    for (chip, d) in &devs {
        for ty in TYPES {
            assert_eq!(
                d["live"]["reserved"][ty], truth["memory_view_at_end"][ty],
                "{era} chip {chip}: live reserved {ty} == get_memory_view"
            );
            assert_eq!(
                d["peak"]["reserved"][ty], truth["memory_view_max"][ty],
                "{era} chip {chip}: peak reserved {ty} == max of get_memory_view samples"
            );
        }
        assert_eq!(
            d["allocations"].as_u64().unwrap(),
            allocations,
            "{era} chip {chip}"
        );
        assert_eq!(
            d["deallocations"].as_u64().unwrap(),
            deallocations,
            "{era} chip {chip}"
        );
        assert_eq!(
            d["live"]["buffers"].as_u64().unwrap(),
            allocations - deallocations
        );
    }
    // The kept tensors are reported as leaked on every chip, with their real sizes.
    let kept = truth["kept"].as_array().unwrap();
    let outstanding = p["outstanding"].as_array().unwrap();
    assert_eq!(outstanding.len(), kept.len() * devs.len());
    for k in kept {
        let on: Vec<_> = outstanding
            .iter()
            .filter(|o| o["buffer_id"] == k["buffer_id"])
            .collect();
        assert_eq!(on.len(), devs.len(), "{era}: {} on every chip", k["name"]);
        for o in on {
            assert_eq!(
                o["requested"], k["size"],
                "{era}: requested == buffer size of {}",
                k["name"]
            );
            assert_eq!(o["type"], k["type"]);
            assert_eq!(o["class"], "leaked");
        }
    }
    assert_eq!(p["exit_code"], 0);
}

#[test]
fn ledger_equals_memory_view_on_0_81_1() {
    check_exit_with_live_buffers(ERAS[0]);
}

#[test]
fn ledger_equals_memory_view_on_0_75_0() {
    check_exit_with_live_buffers(ERAS[1]);
}

/// The seed scenario: every chip shows its allocation and deallocation lines; zero live at the
/// end; requested sizes are the tensors' buffer sizes.
fn check_seed_scenario(era: &str) {
    let t = trace(era, "seed_scenario.py", &[], &[]);
    assert!(t.output.status.success(), "{}", t.stderr());
    check_seed_scenario_ledger(&t, era);
}

#[test]
fn seed_scenario_on_every_chip_0_81_1() {
    check_seed_scenario(ERAS[0]);
}

#[test]
fn seed_scenario_on_every_chip_0_75_0() {
    check_seed_scenario(ERAS[1]);
}

/// The library is found from the command's Python without --lib, and the child's exit code is
/// the tracer's.
#[test]
fn finds_library_and_propagates_exit_code() {
    let out = tracer()
        .args(["run", "--quiet", "--"])
        .arg(python(ERAS[0]))
        .args(["-c", "import ttnn, sys; sys.exit(7)"])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(7),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The allocator geometry paths (read after a mid-run attach) calibrate on both layout eras.
#[test]
fn doctor_shows_the_allocator_geometry_paths() {
    for era in ["0.81.1", "0.75.0"] {
        let o = tracer()
            .arg("doctor")
            .arg("--lib")
            .arg(library(era))
            .output()
            .unwrap();
        let out = String::from_utf8_lossy(&o.stdout);
        let line = out
            .lines()
            .find(|l| l.contains("allocator geometry (read after a mid-run attach)"))
            .unwrap_or_else(|| panic!("{era}: {out}"));
        for part in ["DRAM +0x", "L1 +0x", "alignment +0x", "min_block +0x"] {
            assert!(line.contains(part), "{era}: {line}");
        }
        assert!(out.contains("AllocatorGeometry"), "{era}: {out}");
    }
}

/// Sharded buffers: `requested` and `reserved` (a shard's pages in every bank) are exact on
/// every chip, with no warning; interleaved runs carry none either.
#[test]
fn sharded_buffers_are_exact_in_requested_and_reserved() {
    let t = trace("0.81.1", "sharded.py", &[], &[]);
    assert!(t.output.status.success(), "{}", t.stderr());
    let truth = t.truth.as_ref().unwrap();
    let size = truth["size"].as_u64().unwrap();
    let p = t.process("sharded.py");
    for chip in sorted_chips(truth) {
        let d = &devices(p)[&chip];
        assert_eq!(d["allocations"], 1, "chip {chip}");
        assert_eq!(
            d["peak"]["requested"]["L1"].as_u64(),
            Some(size),
            "chip {chip}"
        );
        // A whole shard in every L1 bank, as tt-metal's own view says.
        assert_eq!(
            d["peak"]["reserved"]["L1"], truth["memory_view_l1"],
            "chip {chip}"
        );
    }
    assert!(
        !t.stderr().contains("allocation(s) of sharded buffers"),
        "{}",
        t.stderr()
    );
    let interleaved = trace("0.81.1", "seed_scenario.py", &[], &[]);
    assert!(
        !interleaved.stderr().contains("sharded"),
        "{}",
        interleaved.stderr()
    );
}
