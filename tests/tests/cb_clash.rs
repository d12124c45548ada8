//! A real op refused because its circular buffers clash with L1 buffers: tracer shows both
//! sides (where the CB region would end, the lowest L1 buffer on those cores) and who holds
//! that buffer, and they equal what the runtime's own message and the workload say.
use tracer_tests::*;

fn clash_shows_both_sides(era: &str) {
    let t = trace(era, "cb_clash.py", &[], &[]);
    assert!(t.output.status.success(), "{}", t.stderr());
    let truth = t.truth.as_ref().expect("ground truth");
    assert!(
        truth["message"].is_string(),
        "the op was not refused: {truth}"
    );
    let p = t.process("cb_clash.py");
    let clashes = p["circular_buffer_clashes"].as_array().unwrap();
    assert_eq!(clashes.len(), 1, "{clashes:?}");
    let c = &clashes[0];
    for key in ["program", "l1_buffer_address", "cb_region_end"] {
        assert_eq!(c[key], truth[key], "{key}: {c} vs the runtime's message");
    }
    assert_eq!(c["core_range_text"], truth["core_range"]);
    assert!(c["core_range"].is_string(), "corners parsed: {c}");
    // Who is in the way: the workload's own tensor at that address, on every chip.
    let holder = &truth["holder"].as_array().unwrap()[0];
    let held = &c["l1_buffer_holders"].as_array().unwrap()[0];
    assert_eq!(held["buffer_id"], truth["l1_buffer_address"]);
    assert_eq!(held["requested"], holder["size"]);
    let mut chips: Vec<u64> = held["chips"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_u64().unwrap())
        .collect();
    chips.sort_unstable();
    assert_eq!(
        chips,
        sorted_chips(truth)
            .iter()
            .map(|c| *c as u64)
            .collect::<Vec<_>>()
    );
    // The event line says the same.
    let output = format!("{}{}", t.stdout(), t.stderr());
    let line = output
        .lines()
        .find(|l| l.contains("refused: its circular buffers would end at"))
        .unwrap_or_else(|| panic!("no clash line:\n{output}"));
    assert!(
        line.contains(&format!("at {}", truth["l1_buffer_address"])),
        "{line}"
    );
}

#[test]
fn a_cb_clash_shows_both_sides_on_0_81_1() {
    clash_shows_both_sides("0.81.1");
}

#[test]
fn a_cb_clash_shows_both_sides_on_0_75_0() {
    clash_shows_both_sides("0.75.0");
}
