//! Lifecycle, leaks, out-of-memory and peaks on the real runtime (ttnn on the 8-chip mock
//! mesh), each compared with what tt-metal itself reports (`get_memory_view`, its exception
//! text, `mesh.get_device_ids()`) or what the workload did.
use std::collections::{BTreeMap, BTreeSet};

use tracer_tests::*;

const ERAS: [&str; 2] = ["0.81.1", "0.75.0"];

fn chips_in_order(truth: &Value) -> Vec<i64> {
    truth["chips"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_i64().unwrap())
        .collect()
}

fn ints(v: &Value) -> Vec<i64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_i64().unwrap())
        .collect()
}

fn joined(v: &[i64]) -> String {
    v.iter()
        .map(|c| c.to_string())
        .collect::<Vec<_>>()
        .join(",")
}

/// The mesh open event names the shape the workload asked for and the chips tt-metal reports.
fn check_mesh_opened(t: &Traced, era: &str) {
    let truth = t.truth.as_ref().unwrap();
    let chips = chips_in_order(truth);
    let line = format!("Mesh 2x4 opened: chips {}", joined(&chips));
    assert!(t.stdout().contains(&line), "{era}: missing `{line}`");
    let p = t.process(".py");
    let opens: Vec<&Value> = p["lifecycle"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|l| l["event"] == "open" && l["mesh"] == true)
        .collect();
    assert_eq!(opens.len(), 1, "{era}: one mesh open");
    assert_eq!(ints(&opens[0]["chips"]), chips, "{era}");
    assert_eq!(ints(&opens[0]["shape"]), vec![2, 4], "{era}");
    // Each chip of the mesh is opened as a device too.
    let device_opens: BTreeSet<i64> = p["lifecycle"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|l| l["event"] == "open" && l["mesh"] == false)
        .flat_map(|l| ints(&l["chips"]))
        .collect();
    assert_eq!(
        device_opens,
        chips.iter().copied().collect::<BTreeSet<_>>(),
        "{era}"
    );
}

/// Acceptance 1: the mesh closes with two tensors never deallocated.
#[test]
fn mesh_close_reports_freed_by_close_on_every_chip() {
    for era in ERAS {
        let t = trace(
            era,
            "seed_scenario.py",
            &["--leave", "2", "--close-with-live"],
            &[],
        );
        assert!(t.output.status.success(), "{}", t.stderr());
        check_mesh_opened(&t, era);
        let truth = t.truth.as_ref().unwrap();
        let chips = chips_in_order(truth);
        let p = t.process("seed_scenario.py");
        let devs = devices(p);
        let kept = truth["kept"].as_array().unwrap();
        assert_eq!(kept.len(), 2);
        let outstanding = p["outstanding"].as_array().unwrap();
        assert_eq!(outstanding.len(), 2 * devs.len(), "{era}");
        assert!(
            t.stdout().contains("freed_by_close"),
            "{era}: the output says why"
        );
        for chip in &chips {
            let d = &devs[chip];
            assert_eq!(
                d["live"]["buffers"], 0,
                "{era} chip {chip}: live after close"
            );
            for ty in ["DRAM", "L1"] {
                assert_eq!(d["live"]["reserved"][ty], 0, "{era} chip {chip}");
                assert_eq!(d["live"]["requested"][ty], 0, "{era} chip {chip}");
            }
            let mine: Vec<_> = outstanding
                .iter()
                .filter(|o| o["device"] == *chip)
                .collect();
            assert_eq!(mine.len(), 2, "{era} chip {chip}");
            for k in kept {
                let o = mine
                    .iter()
                    .find(|o| o["buffer_id"] == k["buffer_id"])
                    .unwrap_or_else(|| panic!("{era} chip {chip}: {} missing", k["name"]));
                assert_eq!(o["class"], "freed_by_close");
                assert_eq!(o["requested"], k["size"]);
                assert_eq!(o["type"], k["type"]);
            }
            // What the close dropped is what tt-metal held just before it.
            for ty in ["DRAM", "L1"] {
                let dropped: u64 = mine
                    .iter()
                    .filter(|o| o["type"] == ty)
                    .map(|o| o["reserved"].as_u64().unwrap())
                    .sum();
                assert_eq!(
                    dropped,
                    truth["memory_view_at_end"][ty].as_u64().unwrap(),
                    "{era} chip {chip} {ty}: dropped == get_memory_view before close"
                );
            }
        }
        // The close is in the lifecycle with its count.
        let closes: Vec<&Value> = p["lifecycle"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|l| l["event"] == "close" && l["mesh"] == true)
            .collect();
        assert_eq!(closes.len(), 1, "{era}");
        assert_eq!(closes[0]["freed_by_close"], 2, "{era}");
        // Mesh tensors as one thing, grouped by site, with the per-chip and total size.
        let groups = p["outstanding_groups"].as_array().unwrap();
        assert_eq!(groups.len(), 2, "{era}: two sites");
        for k in kept {
            let g = groups
                .iter()
                .find(|g| g["buffer_ids"][0] == k["buffer_id"])
                .unwrap();
            assert_eq!(ints(&g["chips"]), chips);
            assert_eq!(g["requested"], k["size"]);
            assert_eq!(
                g["requested_total"].as_u64().unwrap(),
                k["size"].as_u64().unwrap() * chips.len() as u64
            );
            let text = format!(" x {} chips = ", chips.len());
            let id = format!(
                "({}, buffer_id={},",
                k["type"].as_str().unwrap(),
                k["buffer_id"]
            );
            assert!(
                t.stdout()
                    .lines()
                    .any(|l| l.contains(&text) && l.contains(&id)),
                "{era}: no `... x N chips = ... {id}` line"
            );
        }
        let out = t.stdout();
        for chip in &chips {
            let line = out
                .lines()
                .find(|l| {
                    l.trim_start()
                        .starts_with(&format!("Device {chip}: 2 buffer(s)"))
                })
                .unwrap_or_else(|| panic!("{era}: no explanation for chip {chip}"));
            assert!(line.contains("never deallocated") && line.contains("freed_by_close"));
        }
    }
}

/// Acceptance 2: the process exits with the mesh open.
#[test]
fn exit_with_mesh_open_leaks_on_every_chip() {
    for era in ERAS {
        let t = trace(
            era,
            "seed_scenario.py",
            &["--leave", "3", "--exit-open"],
            &["--quiet"],
        );
        assert!(t.output.status.success(), "{}", t.stderr());
        let truth = t.truth.as_ref().unwrap();
        let chips = chips_in_order(truth);
        let p = t.process("seed_scenario.py");
        let kept = truth["kept"].as_array().unwrap();
        let outstanding = p["outstanding"].as_array().unwrap();
        for chip in &chips {
            let mine: Vec<_> = outstanding
                .iter()
                .filter(|o| o["device"] == *chip)
                .collect();
            assert_eq!(mine.len(), kept.len(), "{era} chip {chip}");
            assert!(mine.iter().all(|o| o["class"] == "leaked"), "{era}");
            for k in kept {
                assert!(
                    mine.iter()
                        .any(|o| o["buffer_id"] == k["buffer_id"] && o["requested"] == k["size"]),
                    "{era} chip {chip}: {}",
                    k["name"]
                );
            }
            let leaked_l1: u64 = mine
                .iter()
                .filter(|o| o["type"] == "L1")
                .map(|o| o["reserved"].as_u64().unwrap())
                .sum();
            assert_eq!(
                leaked_l1,
                truth["memory_view_at_end"]["L1"].as_u64().unwrap(),
                "{era} chip {chip}: leaked L1 == get_memory_view at exit"
            );
        }
        assert!(
            !p["lifecycle"]
                .as_array()
                .unwrap()
                .iter()
                .any(|l| l["event"] == "close"),
            "{era}: nothing was closed"
        );
        let out = t.stdout();
        for chip in &chips {
            let line = out
                .lines()
                .find(|l| {
                    l.trim_start()
                        .starts_with(&format!("Device {chip}: {} buffer(s)", kept.len()))
                })
                .unwrap_or_else(|| panic!("{era}: no explanation for chip {chip}:\n{out}"));
            assert!(line.contains("leaked") && line.contains("without closing the device"));
        }
    }
}

/// The numbers of tt-metal's own "Out of Memory" message (from the exception the workload
/// caught): requested bytes, banks, allocated bytes per bank.
fn message_numbers(error: &str) -> (u64, String, u64, u64) {
    let after = |label: &str| -> &str { &error[error.find(label).unwrap() + label.len()..] };
    let num = |s: &str| -> u64 {
        s.chars()
            .take_while(|c| c.is_ascii_digit())
            .collect::<String>()
            .parse()
            .unwrap()
    };
    let requested = num(after("allocate "));
    let ty = after(" B ").split_whitespace().next().unwrap().to_string();
    let banks = num(after("across "));
    let allocated = num(after("allocated: "));
    (requested, ty, banks, allocated)
}

/// Acceptance 3 and 4: allocate L1 until tt-metal refuses; the oom event names chip, type and
/// requested bytes, its holders sum to the chip's reserved L1 (== get_memory_view), and the
/// peak equals the maximum of get_memory_view sampled after each step.
#[test]
fn l1_out_of_memory_names_chip_type_request_and_holders() {
    for era in ERAS {
        let t = trace(era, "l1_oom.py", &[], &[]);
        assert!(t.output.status.success(), "{}", t.stderr());
        check_mesh_opened(&t, era);
        let truth = t.truth.as_ref().unwrap();
        let chips = chips_in_order(truth);
        let error = truth["error"].as_str().expect("tt-metal refused");
        let (requested, ty, banks, allocated) = message_numbers(error);
        let at_oom = truth["l1_at_oom"].as_u64().unwrap();
        let fitted = truth["allocated"].as_u64().unwrap() as usize;
        let ids: BTreeSet<u64> = truth["buffer_ids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap())
            .collect();
        let p = t.process("l1_oom.py");
        let ooms = p["oom"].as_array().unwrap();
        assert_eq!(ooms.len(), 1, "{era}: one refusal");
        let o = &ooms[0];
        assert_eq!(o["type"], ty.as_str(), "{era}");
        assert_eq!(o["type"], "L1");
        assert_eq!(o["requested"].as_u64().unwrap(), requested, "{era}");
        assert_eq!(o["banks"].as_u64().unwrap(), banks, "{era}");
        assert_eq!(o["allocated_per_bank"].as_u64().unwrap(), allocated);
        assert_eq!(o["device_matched"], true, "{era}");
        assert_eq!(o["mesh"], true);
        assert_eq!(ints(&o["chips"]), chips, "{era}: the mesh's chips");
        let holders = o["holders"].as_array().unwrap();
        assert_eq!(holders.len(), chips.len());
        for h in holders {
            let sum: u64 = h["buffers"]
                .as_array()
                .unwrap()
                .iter()
                .map(|b| b["reserved"].as_u64().unwrap())
                .sum();
            assert_eq!(
                sum, at_oom,
                "{era} chip {}: holders == get_memory_view",
                h["device"]
            );
            assert_eq!(h["reserved"].as_u64().unwrap(), at_oom);
            let held: BTreeSet<u64> = h["buffers"]
                .as_array()
                .unwrap()
                .iter()
                .map(|b| b["buffer_id"].as_u64().unwrap())
                .collect();
            assert_eq!(held, ids, "{era}: the holders are the workload's tensors");
            assert_eq!(h["buffers"].as_array().unwrap().len(), fitted);
        }
        // tt-metal's count agrees with the ledger's: allocated per bank x banks.
        assert_eq!(allocated * banks, at_oom, "{era}");
        let line = format!(
            "Out of memory: L1 allocation of {requested} bytes refused on mesh chips {}",
            joined(&chips)
        );
        assert!(t.stdout().contains(&line), "{era}: missing `{line}`");

        // Peak: the maximum of the samples, held by every tensor that fit.
        let max = truth["l1_max"].as_u64().unwrap();
        let samples: Vec<u64> = truth["l1_samples"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap())
            .collect();
        assert_eq!(max, *samples.iter().max().unwrap());
        let devs = devices(p);
        for chip in &chips {
            let peak = &devs[chip]["peak"];
            assert_eq!(
                peak["reserved"]["L1"].as_u64().unwrap(),
                max,
                "{era} chip {chip}"
            );
            let holders = peak["holders"]["L1"].as_array().unwrap();
            assert_eq!(holders.len(), fitted, "{era} chip {chip}: peak holders");
            let sum: u64 = holders
                .iter()
                .map(|b| b["reserved"].as_u64().unwrap())
                .sum();
            assert_eq!(sum, max, "{era} chip {chip}: peak holders sum to the peak");
            assert_eq!(devs[chip]["live"]["reserved"]["L1"], truth["l1_after_free"]);
        }
    }
}

/// Acceptance 4 on a mixed workload: peaks per chip and type equal the maximum of
/// get_memory_view sampled after every step, and the holders listed add up to it.
#[test]
fn peaks_per_chip_and_type_with_the_buffers_that_made_them() {
    let t = trace(ERAS[0], "seed_scenario.py", &[], &["--quiet"]);
    assert!(t.output.status.success(), "{}", t.stderr());
    let truth = t.truth.as_ref().unwrap();
    let tensors: BTreeMap<u64, &Value> = truth["tensors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| (t["buffer_id"].as_u64().unwrap(), t))
        .collect();
    let p = t.process("seed_scenario.py");
    for (chip, d) in devices(p) {
        for ty in ["DRAM", "L1"] {
            let max = truth["memory_view_max"][ty].as_u64().unwrap();
            assert_eq!(
                d["peak"]["reserved"][ty].as_u64().unwrap(),
                max,
                "chip {chip} {ty}"
            );
            let holders = d["peak"]["holders"][ty].as_array().unwrap();
            let sum: u64 = holders
                .iter()
                .map(|b| b["reserved"].as_u64().unwrap())
                .sum();
            assert_eq!(sum, max, "chip {chip} {ty}: holders sum to the peak");
            for h in holders {
                let w = tensors[&h["buffer_id"].as_u64().unwrap()];
                assert_eq!(h["requested"], w["size"]);
                assert_eq!(h["type"], w["type"]);
            }
        }
    }
}

/// Acceptance 5: the README's demo (`cargo xtask demo` = `tracer run --summary-json ... --
/// python workloads/seed_scenario.py`) explains, per chip, what remains and why.
#[test]
fn demo_summary_explains_each_chip_in_plain_words() {
    let t = trace(ERAS[0], "seed_scenario.py", &[], &[]);
    assert!(t.output.status.success(), "{}", t.stderr());
    let truth = t.truth.as_ref().unwrap();
    let out = t.stdout();
    let section = out
        .split("What remains on each chip, and why:")
        .nth(1)
        .expect("the summary explains each chip");
    for chip in chips_in_order(truth) {
        let expected = format!(
            "Device {chip}: nothing. The program deallocated all {} buffer(s) it allocated here.",
            truth["allocations"]
        );
        assert!(
            section.contains(&expected),
            "missing `{expected}` in:\n{section}"
        );
    }
    assert!(
        out.contains(&format!(
            "Mesh 2x4 opened: chips {}",
            joined(&chips_in_order(truth))
        )),
        "the lifecycle names the mesh"
    );
}
