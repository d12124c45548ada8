//! Allocation sites: the Python line behind every buffer, read by the probes from the
//! interpreter's frames (3.12 with ttnn 0.81.1, 3.10 with 0.75.0). `workloads/sites.py`
//! allocates from known lines and reads each line's number itself (`inspect`); every buffer
//! still held at the end must name that file, line and function, and the op the line calls
//! (real matmul, add and softmax included); the lines whose tensors were freed must not show.
//! Without `--python-stacks` (the default), no buffer has a site.
use std::collections::BTreeMap;

use serde_json::Value;
use tracer_tests::*;

fn run(era: &str) -> (Value, Value, String) {
    let dir = tempdir();
    let summary = dir.join("summary.json");
    let truth = dir.join("truth.json");
    let rec = dir.join("run.trace");
    let out = tracer()
        .args(["run", "--quiet", "--python-stacks", "-o"])
        .arg(&rec)
        .arg("--summary-json")
        .arg(&summary)
        .arg("--")
        .arg(python(era))
        .arg(workload("sites.py"))
        .arg("ops")
        .env("TRACER_GROUND_TRUTH", &truth)
        // Kernels built by the compiler stand-in, per release (as the real-ops tests do).
        .env(
            "TT_METAL_CACHE",
            scratch_dir().join(format!("kernels-{era}")),
        )
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{stderr}");
    let read = |p: &std::path::Path| -> Value {
        serde_json::from_str(
            &std::fs::read_to_string(p).unwrap_or_else(|_| panic!("no {}: {stderr}", p.display())),
        )
        .unwrap()
    };
    let live = read(&summary);
    // The recording carries the sites: its replay lists the same ones.
    let replayed = report_json(&rec);
    let sites = |s: &Value| -> Vec<Value> {
        s["processes"][0]["outstanding"]
            .as_array()
            .unwrap()
            .iter()
            .map(|o| o["site"].clone())
            .collect()
    };
    assert_eq!(
        sites(&replayed),
        sites(&live),
        "sites replayed from the recording"
    );
    (live, read(&truth), stderr)
}

fn every_outstanding_buffer_names_its_line(era: &str) {
    if !has_venv(era) {
        eprintln!("skipped: no ttnn {era} environment (scripts/setup.sh --all)");
        return;
    }
    let (summary, truth, stderr) = run(era);
    let p = &summary["processes"][0];
    // One entry per chip: a mesh buffer is one buffer with one site.
    let mut buffers: BTreeMap<u64, &Value> = BTreeMap::new();
    for o in p["outstanding"].as_array().unwrap() {
        let id = o["buffer_id"].as_u64().unwrap();
        if let Some(seen) = buffers.insert(id, o) {
            assert_eq!(
                seen["site"], o["site"],
                "buffer {id}: one site on every chip"
            );
        }
    }
    let file = truth["file"].as_str().unwrap();
    let mut per_line: BTreeMap<(u64, String, String), u64> = BTreeMap::new();
    for (id, o) in &buffers {
        let site = &o["site"];
        assert!(
            site.is_object(),
            "buffer {id} ({} {} bytes) has no site\n{stderr}",
            o["type"],
            o["requested"]
        );
        assert_eq!(site["file"], file, "buffer {id}: {site}");
        let stack = site["stack"].as_array().unwrap();
        assert!(
            stack
                .iter()
                .any(|f| f["file"] == file && f["line"] == site["line"]),
            "{site}"
        );
        let key = (
            site["line"].as_u64().unwrap(),
            site["function"].as_str().unwrap().to_string(),
            site["op"].as_str().unwrap_or("").to_string(),
        );
        *per_line.entry(key).or_default() += 1;
    }
    let expected: BTreeMap<(u64, String, String), u64> = truth["held"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| {
            (
                (
                    h["line"].as_u64().unwrap(),
                    h["function"].as_str().unwrap().to_string(),
                    h["op"].as_str().unwrap().to_string(),
                ),
                h["count"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        per_line, expected,
        "(line, function, op) -> buffers still held, tracer vs the workload"
    );
    for line in truth["freed"].as_array().unwrap() {
        assert!(
            !per_line.keys().any(|(l, _, _)| Some(*l) == line.as_u64()),
            "line {line} freed its tensor"
        );
    }
    // The grouped text names the sites too.
    assert!(
        p["outstanding_groups"]
            .as_array()
            .unwrap()
            .iter()
            .all(|g| g["site"].is_object()),
        "{}",
        p["outstanding_groups"]
    );
}

#[test]
fn no_sites_without_the_flag() {
    let era = "0.81.1";
    if !has_venv(era) {
        eprintln!("skipped: no ttnn {era} environment");
        return;
    }
    let t = trace(era, "sites.py", &[], &["--quiet"]);
    let p = t.process("sites.py");
    let outstanding = p["outstanding"].as_array().unwrap();
    assert!(!outstanding.is_empty());
    assert!(
        outstanding.iter().all(|o| o["site"].is_null()),
        "{outstanding:?}"
    );
}

#[test]
fn sites_on_python_3_12() {
    every_outstanding_buffer_names_its_line("0.81.1");
}

#[test]
fn sites_on_python_3_10() {
    every_outstanding_buffer_names_its_line("0.75.0");
}
