//! Session recordings of the real runtime (ttnn 0.81.1 on the 8-chip mock mesh): `report`
//! replays them to the live summary, cut files and a SIGKILLed tracer still report their
//! complete chunks, and the exports agree with the ledger and with tt-metal's own numbers.
use std::{
    path::{Path, PathBuf},
    process::{Command, Output},
    time::{Duration, Instant},
};

use tracer_tests::*;

const ERA: &str = "0.81.1";
/// Bytes of a chunk's frame before its payload.
const FRAME: usize = 24;

/// `tracer run -o FILE` of seed_scenario: the live run, its recording.
fn record(args: &[&str]) -> (Traced, PathBuf) {
    record_era(ERA, args)
}

fn record_era(era: &str, args: &[&str]) -> (Traced, PathBuf) {
    let dir = tempdir();
    let file = dir.join("session.trec");
    let f = file.to_str().unwrap();
    let t = trace(era, "seed_scenario.py", args, &["--quiet", "-o", f]);
    assert!(t.output.status.success(), "{}", t.stderr());
    assert!(file.exists(), "no recording written");
    (t, file)
}

fn report(file: &Path, extra: &[&str]) -> Output {
    tracer()
        .arg("report")
        .arg(file)
        .args(extra)
        .output()
        .unwrap()
}

/// A live summary without its live-only part (the probes' hit counts, which a recording does
/// not carry), to compare with the report of the recording (whose report-only part,
/// `recording`, is taken off the other side).
fn live_part(summary: &Value) -> Value {
    let mut s = summary.clone();
    let hits = s.as_object_mut().unwrap().remove("probe_hits");
    assert!(
        hits.is_some_and(|h| h["Alloc"].as_u64().unwrap_or(0) > 0),
        "a live summary counts its probe hits"
    );
    s
}

fn report_json(file: &Path, extra: &[&str]) -> (Value, String) {
    let out = report(file, &[&["--json"], extra].concat());
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "report {}: {stderr}", file.display());
    (serde_json::from_slice(&out.stdout).unwrap(), stderr)
}

/// Where each complete chunk of events ends, read from the frames alone (an independent
/// reading of the format: preamble 16 bytes + header + crc, frames of 24 bytes + payload).
fn chunk_ends(data: &[u8]) -> Vec<usize> {
    let header = u32::from_le_bytes(data[12..16].try_into().unwrap()) as usize;
    let mut pos = 16 + header + 4;
    let mut ends = Vec::new();
    while pos + 24 <= data.len() {
        assert_eq!(&data[pos..pos + 4], b"TRCK", "frame at {pos}");
        let comp = u32::from_le_bytes(data[pos + 16..pos + 20].try_into().unwrap()) as usize;
        let end = pos + 24 + comp;
        if end > data.len() {
            break;
        }
        if data[pos + 4] == 1 {
            ends.push(end);
        }
        pos = end;
    }
    ends
}

#[test]
fn report_of_a_recording_is_the_live_summary() {
    let (t, file) = record(&["--leave", "3", "--exit-open"]);
    let (mut doc, stderr) = report_json(&file, &[]);
    let rec = doc.as_object_mut().unwrap().remove("recording").unwrap();
    assert_eq!(
        doc,
        live_part(&t.summary),
        "report --json == live --summary-json"
    );
    assert_eq!(rec["truncated"], false, "{stderr}");
    assert!(rec["events"].as_u64().unwrap() > 0);
    assert!(!stderr.contains("truncated"));
    // The text report is the live text summary, after a line about the recording.
    let text = String::from_utf8(report(&file, &[]).stdout).unwrap();
    let (first, rest) = text.split_once('\n').unwrap();
    assert!(first.starts_with("recording of `"), "{first}");
    // (The live stdout starts with the workload's own prints.)
    assert!(
        t.stdout().ends_with(rest),
        "report text == live summary text:\n{rest}\nlive:\n{}",
        t.stdout()
    );
    // Peaks and their times: the peak equals tt-metal's highest get_memory_view sample, and it
    // was reached inside the session.
    let truth = t.truth.as_ref().unwrap();
    let p = t.process("seed_scenario.py");
    for (chip, d) in devices(p) {
        for ty in ["DRAM", "L1"] {
            assert_eq!(
                d["peak"]["reserved"][ty], truth["memory_view_max"][ty],
                "chip {chip}"
            );
            let at = d["peak"]["reserved_at_ns"][ty].as_u64().unwrap();
            assert!(
                at > rec["monotonic_base_ns"].as_u64().unwrap(),
                "chip {chip} {ty} peak time"
            );
        }
    }
    assert!(text.contains("peak reserved: DRAM: "), "{text}");
}

/// The older layout era (ttnn 0.75.0, Python 3.10) records and replays the same way.
#[test]
fn report_of_a_recording_is_the_live_summary_on_0_75_0() {
    let (t, file) = record_era("0.75.0", &["--leave", "2"]);
    let (mut doc, _) = report_json(&file, &[]);
    doc.as_object_mut().unwrap().remove("recording");
    assert_eq!(
        doc,
        live_part(&t.summary),
        "report --json == live --summary-json"
    );
}

/// Event kinds added after the format (device opens, refused allocations) are recorded and
/// replayed with no change to it: the out-of-memory workload's report equals its live summary.
#[test]
fn out_of_memory_session_replays_to_the_live_summary() {
    let dir = tempdir();
    let file = dir.join("oom.trec");
    let t = trace(
        ERA,
        "l1_oom.py",
        &[],
        &["--quiet", "-o", file.to_str().unwrap()],
    );
    assert!(t.output.status.success(), "{}", t.stderr());
    let (mut doc, _) = report_json(&file, &[]);
    doc.as_object_mut().unwrap().remove("recording");
    assert_eq!(
        doc,
        live_part(&t.summary),
        "report --json == live --summary-json"
    );
    let p = t.process("l1_oom.py");
    assert!(
        !p["oom"].as_array().unwrap().is_empty(),
        "the session has a refused allocation: {p}"
    );
}

#[test]
fn report_at_a_moment_is_the_ledger_then() {
    let (t, file) = record(&["--leave", "2"]);
    let truth = t.truth.as_ref().unwrap();
    // The CSV gives each event's offset; the last allocation is the moment tt-metal's
    // memory_view_at_peak was sampled after.
    let csv = std::fs::read_to_string(export(&file, "csv", "csv")).unwrap();
    let mut lines = csv.lines();
    let cols: Vec<&str> = lines.next().unwrap().split(',').collect();
    let col = |name: &str| cols.iter().position(|c| *c == name).unwrap();
    let rows: Vec<Vec<&str>> = lines.map(|l| l.split(',').collect()).collect();
    let allocs: Vec<&Vec<&str>> = rows.iter().filter(|r| r[col("event")] == "alloc").collect();
    assert_eq!(
        allocs.len() as u64,
        truth["allocations"].as_u64().unwrap(),
        "one CSV row per allocation"
    );
    let (full, _) = report_json(&file, &[]);
    assert_eq!(
        rows.len() as u64,
        full["recording"]["events"].as_u64().unwrap(),
        "one CSV row per event"
    );
    let last_alloc = allocs.last().unwrap()[col("t_s")];
    let (at, _) = report_json(&file, &["--at", last_alloc]);
    let p = &at["processes"][0];
    for (chip, d) in devices(p) {
        for ty in ["DRAM", "L1"] {
            assert_eq!(
                d["live"]["reserved"][ty], truth["memory_view_at_peak"][ty],
                "--at {last_alloc}: chip {chip} {ty} == get_memory_view after the allocations"
            );
        }
        assert_eq!(d["deallocations"], 0, "chip {chip}: nothing freed yet");
    }
    assert_eq!(
        at["recording"]["at_s"].as_f64().unwrap(),
        last_alloc.parse::<f64>().unwrap()
    );
    // At the start, nothing is held.
    let (zero, _) = report_json(&file, &["--at", "0"]);
    for p in zero["processes"].as_array().unwrap() {
        assert!(devices(p).values().all(|d| d["allocations"] == 0), "{zero}");
    }
}

/// A recording with several chunks: alloc_loop with the 250 ms flush.
fn long_recording(pairs: u32) -> PathBuf {
    let dir = tempdir();
    let file = dir.join("loop.trec");
    let out = tracer()
        .args(["run", "--quiet", "-o"])
        .arg(&file)
        .arg("--")
        .arg(python(ERA))
        .arg(workload("alloc_loop.py"))
        .arg(pairs.to_string())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    file
}

/// Enough pairs for several 250 ms chunks even on a fast machine.
const PAIRS: u32 = 25000;

#[test]
fn a_cut_recording_reports_its_complete_chunks_and_says_truncated() {
    let file = long_recording(PAIRS);
    let data = std::fs::read(&file).unwrap();
    let ends = chunk_ends(&data);
    assert!(ends.len() >= 2, "several chunks: {ends:?}");
    let header_end = 16 + u32::from_le_bytes(data[12..16].try_into().unwrap()) as usize + 4;
    let mut cuts: Vec<usize> = vec![0, 10, header_end - 1, header_end, header_end + 7];
    for e in &ends {
        cuts.extend([*e - 1, *e, *e + 1]);
    }
    // Arbitrary offsets too (a fixed xorshift sequence).
    let mut r = 88172645463325252u64;
    for _ in 0..12 {
        r ^= r << 13;
        r ^= r >> 7;
        r ^= r << 17;
        cuts.push(r as usize % data.len());
    }
    let dir = file.parent().unwrap();
    let mut last_allocs = 0;
    cuts.sort();
    for cut in cuts.into_iter().filter(|c| *c < data.len()) {
        let f = dir.join(format!("cut-{cut}.trec"));
        std::fs::write(&f, &data[..cut]).unwrap();
        let out = report(&f, &["--json"]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        if cut < header_end {
            assert!(
                !out.status.success(),
                "cut {cut} inside the header must fail"
            );
            assert!(stderr.contains("truncated"), "cut {cut}: {stderr}");
            continue;
        }
        assert!(out.status.success(), "cut {cut}: {stderr}");
        assert!(
            stderr.contains("truncated"),
            "cut {cut}: stderr says truncated: {stderr}"
        );
        let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(doc["recording"]["truncated"], true, "cut {cut}");
        let complete = ends.iter().filter(|e| **e <= cut).count() as u64;
        assert_eq!(
            doc["recording"]["chunks"], complete,
            "cut {cut}: every complete chunk"
        );
        // Later cuts never know less.
        let allocs: u64 = doc["processes"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|p| devices(p).into_values())
            .map(|d| d["allocations"].as_u64().unwrap())
            .sum();
        assert!(allocs >= last_allocs, "cut {cut}");
        last_allocs = allocs;
        let text = String::from_utf8(report(&f, &[]).stdout).unwrap();
        assert!(
            text.contains("truncated"),
            "text says truncated at cut {cut}"
        );
    }
    // The whole file is not truncated and knows the most.
    let (full, _) = report_json(&file, &[]);
    assert_eq!(full["recording"]["truncated"], false);
    let p = &full["processes"][0];
    for (chip, d) in devices(p) {
        // alloc_loop.py's count: its 10 warm-up pairs and the N timed ones, all freed.
        assert_eq!(d["allocations"], PAIRS + 10, "chip {chip}");
        assert_eq!(d["deallocations"], PAIRS + 10, "chip {chip}");
    }
}

type Counts = (std::collections::BTreeMap<i64, (u64, u64)>, u64, u64);

/// Per chip: (allocations, deallocations) of the only process (none yet: no chips); its
/// unknown frees; the events read.
fn counts(doc: &Value) -> Counts {
    let procs = doc["processes"].as_array().unwrap();
    assert!(procs.len() <= 1, "one process: {doc}");
    let Some(p) = procs.first() else {
        return (
            Default::default(),
            0,
            doc["recording"]["events"].as_u64().unwrap(),
        );
    };
    let chips = devices(p)
        .into_iter()
        .map(|(chip, d)| {
            let n = |k: &str| d[k].as_u64().unwrap();
            (chip, (n("allocations"), n("deallocations")))
        })
        .collect();
    (
        chips,
        p["unknown_frees"].as_u64().unwrap(),
        doc["recording"]["events"].as_u64().unwrap(),
    )
}

/// One chunk damaged in the middle of a real recording: `report` skips it and reads on. It
/// exits 0, as for a truncated file (the loss is reported, not an error), says which bytes and
/// how many chunks were lost, and counts the events of every other chunk: the lost chunk's
/// share is measured on the undamaged file, cut just before and just after that chunk.
#[test]
fn a_damaged_chunk_in_the_middle_is_skipped_and_the_loss_reported() {
    let file = long_recording(PAIRS);
    let data = std::fs::read(&file).unwrap();
    let ends = chunk_ends(&data);
    assert!(
        ends.len() >= 3,
        "chunks on both sides of a middle one: {ends:?}"
    );
    let k = ends.len() / 2;
    let (start, end) = (ends[k - 1], ends[k]);
    let dir = file.parent().unwrap();
    let cut = |at: usize| {
        let f = dir.join(format!("upto-{at}.trec"));
        std::fs::write(&f, &data[..at]).unwrap();
        counts(&report_json(&f, &[]).0)
    };
    let (before, through) = (cut(start), cut(end));
    let (full_doc, _) = report_json(&file, &[]);
    let full = counts(&full_doc);
    assert_eq!(full.1, 0, "traced from the start: no unknown frees");

    let bad = dir.join("damaged.trec");
    let mut damaged = data.clone();
    damaged[(start + FRAME + end) / 2] ^= 0xff;
    std::fs::write(&bad, &damaged).unwrap();
    let range = format!(
        "recording damaged: bytes {start}-{} ({} bytes) unreadable, 1 chunk lost",
        end - 1,
        end - start
    );

    let out = report(&bad, &["--json"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "a damaged file is reported: {stderr}");
    assert!(stderr.contains(&range), "stderr: {stderr}");
    assert!(stderr.contains("everything else was read"), "{stderr}");
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    let rec = &doc["recording"];
    assert_eq!(rec["damaged"], true);
    assert_eq!(
        rec["damage"],
        serde_json::json!([{
            "start": start, "end": end, "bytes": end - start,
            "chunks_lost": 1, "chunks_lost_exact": true,
        }])
    );
    assert_eq!(rec["chunks_lost"], 1);
    assert!(rec["damage_note"].as_str().unwrap().starts_with(&range));
    assert_eq!(rec["chunks"], ends.len() as u64 - 1, "every other chunk");
    assert_eq!(rec["truncated"], false, "the trailer was read");
    assert_eq!(full_doc["recording"]["damaged"], false);

    // Every event of the other chunks: allocations exactly so; a free whose allocation was in
    // the lost chunk counts as an unknown free instead of a deallocation.
    let got = counts(&doc);
    assert_eq!(
        got.2,
        full.2 - (through.2 - before.2),
        "events == undamaged - the lost chunk's"
    );
    assert_eq!(got.0.len(), 8, "all 8 chips");
    assert_eq!(
        got.0.keys().collect::<Vec<_>>(),
        full.0.keys().collect::<Vec<_>>()
    );
    let of = |c: &Counts, chip: &i64| c.0.get(chip).copied().unwrap_or_default();
    for (chip, (allocs, frees)) in &got.0 {
        let (full_allocs, full_frees) = of(&full, chip);
        let (lost_allocs, lost_frees) = {
            let (b, t) = (of(&before, chip), of(&through, chip));
            (t.0 - b.0, t.1 - b.1)
        };
        assert!(
            lost_allocs > 0,
            "chip {chip}: the lost chunk held allocations"
        );
        assert_eq!(
            *allocs,
            full_allocs - lost_allocs,
            "chip {chip}: allocations == undamaged - the lost chunk's"
        );
        assert_eq!(
            frees + got.1,
            full_frees - lost_frees,
            "chip {chip}: deallocations (+ unknown frees) == undamaged - the lost chunk's"
        );
    }

    let out = report(&bad, &[]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let mut lines = text.lines();
    assert!(
        lines.next().unwrap().starts_with("recording of `"),
        "{text}"
    );
    let warning = lines.next().unwrap();
    assert!(warning.starts_with(&format!("WARNING: {range}")), "{text}");
    assert!(
        text.contains("NOTE: the recording is damaged: the summary above lacks 1 chunk"),
        "{text}"
    );
    // The exports read past the damage too.
    let csv = std::fs::read_to_string(export(&bad, "csv", "csv")).unwrap();
    assert_eq!(
        csv.lines().count() as u64 - 1,
        got.2,
        "one CSV row per event read"
    );
}

/// Processes whose parent is `pid` (from /proc/N/stat; any thread of `pid` may have forked).
fn children(pid: u32) -> Vec<u32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|n| {
            std::fs::read_to_string(format!("/proc/{n}/stat"))
                .ok()
                .and_then(|s| {
                    let after = s
                        .rsplit_once(')')?
                        .1
                        .split_whitespace()
                        .nth(1)?
                        .parse()
                        .ok();
                    after
                })
                == Some(pid)
        })
        .collect()
}

#[test]
fn a_sigkilled_tracer_leaves_a_readable_recording() {
    let dir = tempdir();
    let file = dir.join("killed.trec");
    let mut tracer_proc = tracer()
        .args(["run", "--quiet", "-o"])
        .arg(&file)
        .arg("--")
        .arg(python(ERA))
        .arg(workload("alloc_loop.py"))
        .arg("10000000")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let pid = tracer_proc.id();
    // Wait until the tracer has written a few chunks while the workload keeps allocating.
    let start = Instant::now();
    loop {
        let n = std::fs::read(&file)
            .map(|d| chunk_ends(&d).len())
            .unwrap_or(0);
        if n >= 3 {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(90),
            "no chunks written in 90 s"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let kids = children(pid);
    assert!(!kids.is_empty(), "the workload runs under the tracer");
    tracer_proc.kill().unwrap(); // SIGKILL
    tracer_proc.wait().unwrap();
    // The workload outlives its tracer (untraced): end it, it is ours.
    for k in &kids {
        let _ = Command::new("kill")
            .args(["-9", &k.to_string()])
            .stderr(std::process::Stdio::null())
            .status();
    }
    let data = std::fs::read(&file).unwrap();
    let ends = chunk_ends(&data);
    let (doc, stderr) = report_json(&file, &[]);
    assert!(stderr.contains("truncated"), "{stderr}");
    assert_eq!(doc["recording"]["truncated"], true);
    assert_eq!(doc["recording"]["chunks"], ends.len() as u64);
    let p = &doc["processes"][0];
    assert!(p["command"].as_str().unwrap().contains("alloc_loop.py"));
    let devs = devices(p);
    assert_eq!(devs.len(), 8, "all 8 chips of the mesh");
    for (chip, d) in devs {
        let a = d["allocations"].as_u64().unwrap();
        let f = d["deallocations"].as_u64().unwrap();
        // The workload holds at most one tensor at a time.
        assert!(
            a > 10 && a - f <= 1,
            "chip {chip}: {a} allocations, {f} frees"
        );
    }
    let text = String::from_utf8(report(&file, &[]).stdout).unwrap();
    assert!(text.contains("truncated"), "{text}");
}

/// The README's query, between its markers.
fn readme_query() -> String {
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    let start = readme
        .find("<!-- peak-query -->")
        .expect("query marker in README");
    let block = &readme[start..];
    let sql = block
        .split("```sql")
        .nth(1)
        .unwrap()
        .split("```")
        .next()
        .unwrap();
    sql.trim().to_string()
}

#[test]
fn sqlite_export_answers_who_held_the_most_l1_on_chip_3_at_the_peak() {
    let (t, file) = record(&["--leave", "3", "--exit-open"]);
    let db = export(&file, "sqlite", "sqlite");
    let row = sqlite(&db, &readme_query());
    let fields: Vec<&str> = row.trim().split('|').collect();
    assert_eq!(fields.len(), 4, "pid|command|chip|bytes: {row}");
    let p = t.process("seed_scenario.py");
    let truth = t.truth.as_ref().unwrap();
    assert_eq!(fields[0], p["pid"].to_string(), "{row}");
    assert!(fields[1].contains("seed_scenario.py"));
    assert_eq!(fields[2], "3", "{row}");
    assert_eq!(
        fields[3],
        truth["memory_view_max"]["L1"].to_string(),
        "L1 bytes held at the peak == tt-metal's highest get_memory_view(L1)"
    );
}

#[test]
fn chrome_export_has_a_counter_track_per_chip_and_type_ending_at_the_ledger() {
    let (t, file) = record(&["--leave", "3", "--exit-open"]);
    let trace: Value =
        serde_json::from_str(&std::fs::read_to_string(export(&file, "chrome", "chrome")).unwrap())
            .unwrap();
    let events = trace["traceEvents"].as_array().unwrap();
    let mut last: std::collections::BTreeMap<String, u64> = Default::default();
    let mut pids = std::collections::BTreeSet::new();
    for e in events.iter().filter(|e| e["ph"] == "C") {
        pids.insert(e["pid"].as_i64().unwrap());
        last.insert(
            e["name"].as_str().unwrap().to_string(),
            e["args"]["reserved"].as_u64().unwrap(),
        );
    }
    assert_eq!(
        pids.len(),
        1,
        "the counter tracks live in one pseudo-process"
    );
    let truth = t.truth.as_ref().unwrap();
    let p = t.process("seed_scenario.py");
    let mut expect = std::collections::BTreeMap::new();
    for (chip, d) in devices(p) {
        for ty in ["DRAM", "L1"] {
            expect.insert(
                format!("chip {chip} {ty}"),
                d["live"]["reserved"][ty].as_u64().unwrap(),
            );
            assert_eq!(d["live"]["reserved"][ty], truth["memory_view_at_end"][ty]);
        }
    }
    assert_eq!(
        last, expect,
        "one counter track per chip and type; last values == ledger at end"
    );
    let instants = events
        .iter()
        .filter(|e| e["ph"] == "i" && e["name"].as_str().unwrap().starts_with("alloc"))
        .count();
    assert_eq!(
        instants as u64,
        truth["allocations"].as_u64().unwrap(),
        "an instant per allocation"
    );
}

/// `attach -o FILE` records through the same sink: a process attached mid-run (its ledger
/// seeded from tt-metal's own tracker, then live events) replays to the live summary.
#[test]
fn attach_recording_reports_the_live_summary() {
    let dir = tempdir();
    let (ready, go, truth) = (dir.join("ready"), dir.join("go"), dir.join("truth.json"));
    // A private /dev/shm, as the attach tests do: tt-metal's SHM tracker of its own.
    let mut target = with_private_shm(python(ERA))
        .arg(workload("attach_target.py"))
        .arg("--ready")
        .arg(&ready)
        .arg("--go")
        .arg(&go)
        .arg("--truth")
        .arg(&truth)
        .env(
            "TT_METAL_MOCK_CLUSTER_DESC_PATH",
            root().join("fixtures/tt-cluster/blackhole_8xP150.yaml"),
        )
        .env("ARCH_NAME", "blackhole")
        .env("TT_METAL_LOGGER_LEVEL", "ERROR")
        // tt-metal writes a generated/ folder into its working directory.
        .current_dir(scratch_dir())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while !ready.exists() {
        assert!(
            start.elapsed() < Duration::from_secs(180),
            "workload phase 1"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let (file, summary, log) = (
        dir.join("attach.trec"),
        dir.join("summary.json"),
        dir.join("stderr"),
    );
    let mut t = tracer()
        .args(["attach", "--quiet", "--pid", &target.id().to_string(), "-o"])
        .arg(&file)
        .arg("--summary-json")
        .arg(&summary)
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let attached = format!("attached: PID {}", target.id());
    while !std::fs::read_to_string(&log).unwrap().contains(&attached) {
        assert!(
            t.try_wait().unwrap().is_none(),
            "{}",
            std::fs::read_to_string(&log).unwrap()
        );
        assert!(start.elapsed() < Duration::from_secs(240), "attach");
        std::thread::sleep(Duration::from_millis(50));
    }
    std::fs::write(&go, "").unwrap();
    assert!(target.wait().unwrap().success());
    assert!(
        t.wait().unwrap().success(),
        "{}",
        std::fs::read_to_string(&log).unwrap()
    );
    let live: Value = serde_json::from_str(&std::fs::read_to_string(&summary).unwrap()).unwrap();
    let (mut doc, _) = report_json(&file, &[]);
    let rec = doc.as_object_mut().unwrap().remove("recording").unwrap();
    assert_eq!(
        doc,
        live_part(&live),
        "report --json == live --summary-json"
    );
    assert!(rec["command"].as_str().unwrap().starts_with("attach --pid"));
    let truth: Value = serde_json::from_str(&std::fs::read_to_string(&truth).unwrap()).unwrap();
    let p = &doc["processes"][0];
    assert_eq!(p["attach"]["mode"], "seeded", "{p}");
    for (chip, d) in devices(p) {
        // Replayed seed and live totals == the workload's own counts and tt-metal's view.
        assert_eq!(
            d["seeded"]["requested"]["DRAM"], truth["before"]["memory_view"]["DRAM"],
            "chip {chip}: seed == get_memory_view at the attach"
        );
        for ty in ["DRAM", "L1"] {
            assert_eq!(
                d["live"]["requested"][ty], truth["live_requested"][ty],
                "chip {chip}: live requested {ty}"
            );
        }
        assert_eq!(
            d["live"]["reserved"]["DRAM"], truth["memory_view_at_end"]["DRAM"],
            "chip {chip}: live reserved DRAM == get_memory_view"
        );
    }
}
