//! The HTML page and the PyTorch memory snapshot of a recording, read by their real consumers:
//! the page rendered by Debian's headless Chromium (no network: it runs in a network namespace
//! of its own), the snapshot by PyTorch's own `torch/cuda/_memory_viz.py` (from the torch
//! wheel on PyPI, on a plain Python). What they show is checked against `tracer report --json`
//! of the same recording and against tt-metal's own numbers (`ttnn.get_memory_view`, the
//! workload's counts).
use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    process::Command,
};

use tracer::report::human_bytes;
use tracer_tests::*;

const ERA: &str = "0.81.1";

/// seed_scenario keeping its last 3 tensors (2 L1, ... see the workload) and exiting with the
/// mesh open: the recording, the live run (ground truth), and `report --json` of the file.
fn recorded() -> (Traced, PathBuf, Value) {
    let dir = tempdir();
    let file = dir.join("session.trec");
    let t = trace(
        ERA,
        "seed_scenario.py",
        &["--leave", "3", "--exit-open"],
        &["--quiet", "--python-stacks", "-o", file.to_str().unwrap()],
    );
    assert!(t.output.status.success(), "{}", t.stderr());
    let report = report_json(&file);
    (t, file, report)
}

/// The one process of a report.
fn only_process(report: &Value) -> &Value {
    let ps = report["processes"].as_array().unwrap();
    assert_eq!(ps.len(), 1, "one traced process: {report}");
    &ps[0]
}

/// A site's Python frames as the ledger reports them (`site.stack`, innermost first, each
/// with `file`, `line`, `function`), or None for a buffer without a site.
fn ledger_frames(buffer: &Value) -> Option<Vec<(String, u64, String)>> {
    let site = buffer.get("site").filter(|s| !s.is_null())?;
    let stack = site
        .get("stack")
        .or_else(|| site.get("frames"))
        .and_then(Value::as_array)
        .unwrap_or_else(|| panic!("a site without its stack: {site}"));
    Some(
        stack
            .iter()
            .map(|f| {
                (
                    f["file"].as_str().unwrap().to_string(),
                    f["line"].as_u64().unwrap(),
                    f["function"].as_str().unwrap().to_string(),
                )
            })
            .collect(),
    )
}

/// Headless Chromium in a network namespace of its own (nothing but a down loopback), with a
/// fresh profile; `args` says what to produce.
fn chromium(page: &Path, args: &[&str]) -> std::process::Output {
    let profile = tempdir().join("chromium-profile");
    let out = Command::new("unshare")
        .arg("--net")
        .arg("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
            "--force-device-scale-factor=1",
            "--window-size=1100,1400",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .arg(format!("file://{}", page.display()))
        .output()
        .expect("chromium (scripts/setup.sh --all installs it)");
    assert!(
        out.status.success(),
        "chromium {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// The text of the element whose opening tag contains `attr` (e.g. `id="x"`), tags inside it
/// removed.
fn element_text(dom: &str, attr: &str) -> Option<String> {
    let at = dom.find(attr)?;
    let open_end = at + dom[at..].find('>')? + 1;
    let tag_start = dom[..at].rfind('<')?;
    let name: String = dom[tag_start + 1..]
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric())
        .collect();
    let close = open_end + dom[open_end..].find(&format!("</{name}>"))?;
    Some(strip_tags(&dom[open_end..close]))
}

/// Markup without its tags (a leading tag's tail, `attr="..">`, goes too).
fn strip_tags(markup: &str) -> String {
    let markup = match markup.find('>') {
        Some(i) if !markup[..i].contains('<') && markup[..i].contains('=') => &markup[i + 1..],
        _ => markup,
    };
    let mut text = String::new();
    let mut in_tag = false;
    for c in markup.chars() {
        match c {
            '<' => in_tag = true,
            '>' => in_tag = false,
            c if !in_tag => text.push(c),
            _ => {}
        }
    }
    text.replace("&amp;", "&")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
}

/// `4 MiB (4194304 B)` -> 4194304, checking that the two figures agree.
fn exact_bytes(shown: &str) -> u64 {
    let (human, rest) = shown.split_once(" (").unwrap_or_else(|| panic!("{shown}"));
    let n: u64 = rest.trim_end_matches(" B)").parse().unwrap();
    assert_eq!(human, human_bytes(n), "{shown}");
    n
}

/// Pixels of the screenshot inside `(x, y, w, h)` whose colour is within 40 of `rgb` in every
/// channel.
fn pixels_like(png_file: &Path, (x, y, w, h): (u32, u32, u32, u32), rgb: [u8; 3]) -> usize {
    let decoder = png::Decoder::new(std::io::BufReader::new(
        std::fs::File::open(png_file).unwrap(),
    ));
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buf).unwrap();
    assert_eq!(info.bit_depth, png::BitDepth::Eight);
    let channels = match info.color_type {
        png::ColorType::Rgb => 3,
        png::ColorType::Rgba => 4,
        other => panic!("screenshot colour type {other:?}"),
    };
    let mut n = 0;
    for py in y..(y + h).min(info.height) {
        for px in x..(x + w).min(info.width) {
            let i = (py as usize * info.width as usize + px as usize) * channels;
            if (0..3).all(|c| buf[i + c].abs_diff(rgb[c]) <= 40) {
                n += 1;
            }
        }
    }
    n
}

#[test]
fn html_page_renders_offline_in_chromium_with_the_summarys_peaks() {
    let (t, file, report) = recorded();
    let page = export(&file, "html", "html");
    let html = std::fs::read_to_string(&page).unwrap();
    // Self-contained: the only URL in the page is the SVG namespace name, which is no request.
    let urls: Vec<&str> = html
        .match_indices("http")
        .map(|(i, _)| &html[i..(i + 30).min(html.len())])
        .filter(|u| !u.starts_with("http://www.w3.org/2000/svg"))
        .collect();
    assert!(urls.is_empty(), "the page refers to {urls:?}");
    assert!(!html.contains(" src=") && !html.contains(" href="));

    let dom =
        String::from_utf8(chromium(&page, &["--dump-dom", "--virtual-time-budget=5000"]).stdout)
            .unwrap();
    // What the script built links only within the page.
    assert!(!dom.contains(" src="), "the rendered page loads something");
    for (i, _) in dom.match_indices(" href=\"") {
        assert!(dom[i + 7..].starts_with('#'), "{}", &dom[i..i + 40]);
    }
    let p = only_process(&report);
    let pid = p["pid"].as_u64().unwrap();
    let truth = t.truth.as_ref().unwrap();
    let chips = devices(p);
    assert_eq!(chips.len(), 8, "the mesh's 8 chips");
    for chip in chips.keys() {
        assert!(
            dom.contains(&format!("href=\"#chip-{chip}\"")),
            "chip {chip} at a glance"
        );
    }
    assert!(
        dom.contains(&format!("data-rendered=\"{}\"", chips.len())),
        "the page's script ran and drew every chip"
    );
    for (chip, d) in &chips {
        for ty in ["DRAM", "L1"] {
            let summary_peak = d["peak"]["reserved"][ty].as_u64().unwrap();
            assert_eq!(
                summary_peak,
                truth["memory_view_max"][ty].as_u64().unwrap(),
                "the summary's peak is tt-metal's highest get_memory_view({ty})"
            );
            let shown = element_text(&dom, &format!("id=\"peak-c{chip}-p{pid}-{ty}\""))
                .unwrap_or_else(|| panic!("no {ty} peak of chip {chip} on the page"));
            assert_eq!(
                exact_bytes(&shown),
                summary_peak,
                "chip {chip} {ty}: the page's peak == the summary's"
            );
            // Who held it: the page's groups are the summary's holders grouped by site (by
            // type and size where they have none), with their frames.
            let holders = d["peak"]["holders"][ty].as_array().unwrap();
            let mut expect: BTreeMap<String, (u64, u64)> = BTreeMap::new();
            for h in holders {
                let key = match ledger_frames(h) {
                    Some(frames) => format!("{frames:?}"),
                    None => format!("{} {}", h["type"], h["requested"]),
                };
                let g = expect.entry(key).or_default();
                g.0 += 1;
                g.1 += h["reserved"].as_u64().unwrap();
            }
            let table = element_text(&dom, &format!("id=\"holders-c{chip}-p{pid}-{ty}\""))
                .unwrap_or_else(|| panic!("no {ty} holders of chip {chip} on the page"));
            let mut got: Vec<(u64, u64)> = Vec::new();
            let rows_start = dom
                .find(&format!("id=\"holders-c{chip}-p{pid}-{ty}\""))
                .unwrap();
            let rows = &dom[rows_start..rows_start + dom[rows_start..].find("</table>").unwrap()];
            for row in rows.split("<tr>").skip(2) {
                let cells: Vec<String> = row.split("<td").skip(1).map(strip_tags).collect();
                got.push((cells[1].parse().unwrap(), exact_bytes(&cells[2])));
            }
            let mut want: Vec<(u64, u64)> = expect.values().copied().collect();
            got.sort_unstable();
            want.sort_unstable();
            assert_eq!(
                got, want,
                "chip {chip} {ty} holders (buffers, bytes): {table}"
            );
            assert_eq!(got.iter().map(|g| g.1).sum::<u64>(), summary_peak);
            for h in holders {
                for (file, line, function) in ledger_frames(h).unwrap_or_default() {
                    let frame = format!("{file}:{line} in {function}");
                    assert!(table.contains(&frame), "{frame} missing from {table}");
                }
                if ledger_frames(h).is_none() {
                    assert!(table.contains("(no site)"), "{table}");
                }
            }
        }
    }
    // The plot's own peak labels (chip-wide, all processes: here the one process).
    let d0 = &chips[&0];
    for ty in ["DRAM", "L1"] {
        let label = element_text(&dom, &format!("class=\"peak-label\" data-type=\"{ty}\""))
            .unwrap_or_else(|| panic!("no {ty} peak marked on chip 0's plot"));
        assert_eq!(
            label,
            format!(
                "peak {ty} {}",
                human_bytes(d0["peak"]["reserved"][ty].as_u64().unwrap())
            )
        );
    }

    // The screenshot: chip 0's plot, where the page says it landed, has both series drawn.
    let shot = tempdir().join("page.png");
    chromium(
        &page,
        &[
            &format!("--screenshot={}", shot.display()),
            "--virtual-time-budget=5000",
        ],
    );
    let box_attr = "data-chip=\"0\" data-box=\"";
    let at = dom.find(box_attr).expect("chip 0's plot has its box") + box_attr.len();
    let b: Vec<u32> = dom[at..at + dom[at..].find('"').unwrap()]
        .split(',')
        .map(|v| v.parse().unwrap())
        .collect();
    let plot_box = (b[0], b[1], b[2], b[3]);
    assert!(
        b[1] + b[3] <= 1400,
        "chip 0's plot is in the first screen: {b:?}"
    );
    let dram = pixels_like(&shot, plot_box, [0x1f, 0x77, 0xb4]);
    let l1 = pixels_like(&shot, plot_box, [0xd6, 0x27, 0x28]);
    // The L1 level holds from its rise to the end of the recording: hundreds of pixels of line.
    assert!(dram > 100 && l1 > 100, "plot pixels: DRAM {dram}, L1 {l1}");
    let outside = pixels_like(&shot, (0, 0, 1100, 15), [0x1f, 0x77, 0xb4]);
    assert_eq!(outside, 0, "no series colour above the page's heading");
}

/// Runs PyTorch's `_memory_viz.py` on a plain Python; `home` holds the flamegraph.pl it would
/// otherwise download (~/.cache/flamegraph.pl).
fn memory_viz(args: &[&str], home: &Path) -> String {
    let out = Command::new("python3")
        .arg(torch_memory_viz())
        .args(args)
        .env("HOME", home)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "_memory_viz.py {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The folded stacks `_memory_viz.memory` feeds flamegraph.pl, for one device's segments,
/// from the module itself.
fn folded_memory(pickle: &Path, chip: i64) -> Vec<String> {
    let script = format!(
        "import pickle, sys\n\
         sys.path.insert(0, {dir:?})\n\
         import _memory_viz as m\n\
         d = pickle.load(open({pickle:?}, 'rb'))\n\
         d['segments'] = [s for s in d['segments'] if s['device'] == {chip}]\n\
         print(m.memory(d, format_flamegraph=lambda lines: lines), end='')\n",
        dir = torch_memory_viz().parent().unwrap().display().to_string(),
        pickle = pickle.display().to_string(),
    );
    let out = Command::new("python3")
        .args(["-c", &script])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect()
}

/// `_memory_viz.py trace`'s output per device.
fn trace_sections(trace: &str) -> BTreeMap<i64, String> {
    let mut out = BTreeMap::new();
    // Its last line per device ("TOTAL MEM: ...") has no newline: the next header follows.
    for part in trace.split("Device ").skip(1) {
        let (n, body) = part.split_once(" ----------------\n").unwrap();
        out.insert(n.parse().unwrap(), body.to_string());
    }
    out
}

/// Allocations (`b = a[offset:size]`) and completed frees of one device's trace.
fn trace_counts(section: &str) -> (u64, u64) {
    let allocs = section
        .lines()
        .filter_map(|l| l.split_once(" = ").map(|(_, rhs)| rhs))
        .filter(|rhs| !rhs.starts_with("cudaMalloc(") && rhs.contains('['))
        .count();
    let frees = section
        .lines()
        .filter(|l| l.starts_with("# free completed for "))
        .count();
    (allocs as u64, frees as u64)
}

/// Whether `_memory_viz.py` shows a frame (its `_frame_filter` drops the interpreter's and
/// PyTorch's own C++ frames by name).
fn torch_shows(file: &str, function: &str) -> bool {
    const FUNCTIONS: [&str; 8] = [
        "unwind::unwind",
        "CapturedTraceback::gather",
        "gather_with_cpp",
        "_start",
        "__libc_start_main",
        "PyEval_",
        "PyObject_",
        "PyFunction_",
    ];
    const FILES: [&str; 10] = [
        "core/boxing",
        "/Register",
        "/Redispatch",
        "pythonrun.c",
        "Modules/main.c",
        "Objects/call.c",
        "Objects/methodobject.c",
        "pycore_ceval.h",
        "ceval.c",
        "cpython/abstract.h",
    ];
    !FUNCTIONS.iter().any(|f| function.contains(f)) && !FILES.iter().any(|f| file.contains(f))
}

/// `_memory_viz.py`'s own size format (`_format_size`).
fn torch_size(n: u64) -> String {
    let mut v = n as f64;
    for unit in ["", "Ki", "Mi", "Gi", "Ti"] {
        if v.abs() < 1024.0 {
            return format!("{v:3.1}{unit}B");
        }
        v /= 1024.0;
    }
    format!("{v:.1}PiB")
}

#[test]
fn pytorch_snapshot_is_read_by_pytorchs_memory_viz_and_agrees_with_the_ledger() {
    let (t, file, report) = recorded();
    let pickle = export(&file, "pytorch-snapshot", "pickle");
    let p = only_process(&report);
    let truth = t.truth.as_ref().unwrap();
    let chips = devices(p);
    let home = tempdir();
    std::fs::create_dir_all(home.join(".cache")).unwrap();
    std::os::unix::fs::symlink(FLAMEGRAPH_PL, home.join(".cache/flamegraph.pl")).unwrap();
    let pickle_arg = pickle.to_str().unwrap();

    // trace: one section per chip, an alloc line per allocation, a completed free per free
    // (the program's deallocations; nothing was dropped by a close: the process exited open).
    let trace = memory_viz(&["trace", pickle_arg], &home);
    let sections: BTreeMap<i64, (u64, u64)> = trace_sections(&trace)
        .into_iter()
        .map(|(chip, s)| (chip, trace_counts(&s)))
        .collect();
    assert_eq!(
        sections.keys().copied().collect::<Vec<_>>(),
        chips.keys().copied().collect::<Vec<_>>(),
        "one device per chip: {trace}"
    );
    for (chip, d) in &chips {
        assert_eq!(
            sections[chip],
            (
                d["allocations"].as_u64().unwrap(),
                d["deallocations"].as_u64().unwrap()
            ),
            "chip {chip}: (allocations, frees) in _memory_viz's trace == the ledger's"
        );
        assert_eq!(sections[chip].0, truth["allocations"].as_u64().unwrap());
        assert_eq!(sections[chip].1, truth["deallocations"].as_u64().unwrap());
    }

    // stats: the allocator state at the end is what the ledger and tt-metal say is held.
    let stats = memory_viz(&["stats", pickle_arg], &home);
    let live_reserved: u64 = chips
        .values()
        .map(|d| {
            d["live"]["reserved"]
                .as_object()
                .unwrap()
                .values()
                .map(n)
                .sum::<u64>()
        })
        .sum();
    let live_requested: u64 = chips
        .values()
        .map(|d| {
            d["live"]["requested"]
                .as_object()
                .unwrap()
                .values()
                .map(n)
                .sum::<u64>()
        })
        .sum();
    let tt_metal: u64 = ["DRAM", "L1"]
        .iter()
        .map(|ty| truth["memory_view_at_end"][ty].as_u64().unwrap())
        .sum::<u64>()
        * chips.len() as u64;
    assert_eq!(
        live_reserved, tt_metal,
        "the ledger holds what tt-metal reports"
    );
    let outstanding = p["outstanding"].as_array().unwrap();
    // Recorded with --python-stacks: the frames compared below are real ones, not all absent.
    assert!(
        outstanding
            .iter()
            .any(|o| ledger_frames(o).is_some_and(|f| !f.is_empty())),
        "no outstanding buffer has Python frames: {p}"
    );
    for want in [
        format!("segments: {}", outstanding.len()),
        format!("total_reserved: {}", torch_size(live_reserved)),
        format!("total_allocated: {}", torch_size(live_requested)),
    ] {
        assert!(stats.lines().any(|l| l == want), "{want:?} not in {stats}");
    }

    // memory, per chip, from the module's own functions: exact bytes and frames per block.
    for (chip, d) in &chips {
        let mut got = folded_memory(&pickle, *chip);
        let mut want = Vec::new();
        for o in outstanding.iter().filter(|o| o["device"] == *chip) {
            let frames = match ledger_frames(o) {
                Some(f) if !f.is_empty() => f
                    .iter()
                    .rev()
                    .filter(|(file, _, function)| torch_shows(file, function))
                    .map(|(file, line, function)| {
                        format!("{}:{line}:{function}", file.rsplit('/').next().unwrap())
                    })
                    .collect::<Vec<_>>()
                    .join(";"),
                _ => "<non-python>".to_string(),
            };
            let (requested, reserved) = (n(&o["requested"]), n(&o["reserved"]));
            want.push(format!("stream_0;active_allocated;{frames} {requested}"));
            if reserved > requested {
                want.push(format!(
                    "stream_0;active_allocated;<gaps> {}",
                    reserved - requested
                ));
            }
        }
        got.sort();
        want.sort();
        assert_eq!(
            got, want,
            "chip {chip}: blocks, bytes and frames == the ledger's"
        );
        let reserved: u64 = d["live"]["reserved"]
            .as_object()
            .unwrap()
            .values()
            .map(n)
            .sum();
        let folded: u64 = got
            .iter()
            .map(|l| l.rsplit(' ').next().unwrap().parse::<u64>().unwrap())
            .sum();
        assert_eq!(folded, reserved, "chip {chip}: live bytes");
    }

    // memory and segments as commands: flame graphs over every chip, drawn by flamegraph.pl.
    for cmd in ["memory", "segments"] {
        let svg = home.join(format!("{cmd}.svg"));
        memory_viz(&[cmd, pickle_arg, "-o", svg.to_str().unwrap()], &home);
        let svg = std::fs::read_to_string(&svg).unwrap();
        let total = svg
            .split("<title>all (")
            .nth(1)
            .and_then(|s| s.split(' ').next())
            .unwrap_or_else(|| panic!("{cmd}: no total in the flame graph"))
            .replace(',', "");
        assert_eq!(
            total.parse::<u64>().unwrap(),
            live_reserved,
            "{cmd}: the flame graph's total is the bytes held"
        );
        for o in outstanding {
            let innermost = ledger_frames(o).and_then(|f| {
                f.into_iter()
                    .find(|(file, _, func)| torch_shows(file, func))
            });
            if let Some((file, line, function)) = innermost {
                let frame = format!("{}:{line}:{function}", file.rsplit('/').next().unwrap());
                assert!(svg.contains(&frame), "{cmd}: {frame} missing");
            }
        }
    }
}

/// The text of chip `chip`'s section of the rendered page.
fn chip_section(dom: &str, chip: i64) -> &str {
    let start = dom
        .find(&format!("<section id=\"chip-{chip}\">"))
        .unwrap_or_else(|| panic!("no section of chip {chip}"));
    let end = start + dom[start..].find("</section>").unwrap();
    &dom[start..end]
}

/// A run that fills L1 until tt-metal refuses: the refusal is marked on every chip of the mesh
/// in the page, and is an `oom` action of every chip's trace in the snapshot.
#[test]
fn a_refused_allocation_is_marked_on_the_page_and_in_the_snapshot() {
    let dir = tempdir();
    let file = dir.join("oom.trec");
    let t = trace(
        ERA,
        "l1_oom.py",
        &[],
        &["--quiet", "-o", file.to_str().unwrap()],
    );
    assert!(t.output.status.success(), "{}", t.stderr());
    let truth = t.truth.as_ref().unwrap();
    let p = t.process("l1_oom.py");
    let ooms = p["oom"].as_array().unwrap();
    assert_eq!(ooms.len(), 1, "one refusal: {ooms:?}");
    let oom = &ooms[0];
    let requested = n(&oom["requested"]);
    let free = n(&oom["free_per_bank"]) * n(&oom["banks"]);
    let oom_chips: Vec<i64> = oom["chips"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_i64().unwrap())
        .collect();
    assert_eq!(
        oom_chips.len(),
        truth["chips"].as_array().unwrap().len(),
        "the refusal is the mesh's"
    );

    let page = export(&file, "html", "html");
    let dom =
        String::from_utf8(chromium(&page, &["--dump-dom", "--virtual-time-budget=5000"]).stdout)
            .unwrap();
    let pid = p["pid"].as_u64().unwrap();
    for chip in &oom_chips {
        let section = chip_section(&dom, *chip);
        let label = element_text(section, "class=\"oom-label\"")
            .unwrap_or_else(|| panic!("no refusal marked on chip {chip}'s plot"));
        assert_eq!(label, format!("OOM L1 {}", human_bytes(requested)));
        let table = element_text(section, "class=\"ooms\"").unwrap();
        assert!(
            table.contains(&format!("{} ({requested} B)", human_bytes(requested))),
            "{table}"
        );
        let peak = element_text(section, &format!("id=\"peak-c{chip}-p{pid}-L1\"")).unwrap();
        assert_eq!(
            exact_bytes(&peak),
            n(&truth["l1_max"]),
            "chip {chip}: the page's L1 peak is tt-metal's highest get_memory_view(L1)"
        );
    }

    let pickle = export(&file, "pytorch-snapshot", "pickle");
    let trace = memory_viz(&["trace", pickle.to_str().unwrap()], &dir);
    let want = format!(
        "raise OutOfMemoryError # {} requested, {} free in CUDA",
        torch_size(requested),
        torch_size(free)
    );
    let sections = trace_sections(&trace);
    for chip in &oom_chips {
        let section = &sections[chip];
        assert!(
            section.lines().any(|l| l == want),
            "chip {chip}: {want:?} not in {section}"
        );
        assert_eq!(
            trace_counts(section),
            (n(&truth["allocated"]), n(&truth["allocated"])),
            "chip {chip}: (allocations, frees): every tensor that fit, allocated and freed"
        );
    }
    // Everything was freed before the close: no segment is left.
    let stats = memory_viz(&["stats", pickle.to_str().unwrap()], &dir);
    assert!(stats.lines().any(|l| l == "segments: 0"), "{stats}");
}

/// The real model on ttnn 0.75.0 (real ops, circular buffers; every chip's ground truth is
/// tt-metal's own after each step), traced with a /dev/shm of its own as tests/real_ops.rs
/// does: the recording, the truth, `report --json` of the recording.
fn recorded_real_model() -> (PathBuf, Value, Value) {
    let era = "0.75.0";
    let dir = tempdir();
    let file = dir.join("model.trec");
    let truth_file = dir.join("truth.json");
    let mut cmd = with_private_shm(tracer_bin());
    mock(&mut cmd);
    let out = cmd
        .args(["run", "--quiet", "-o"])
        .arg(&file)
        .arg("--")
        .arg(python(era))
        .arg(workload("real_model.py"))
        .args(["--seed", "3", "--ops", "16"])
        .env("TRACER_GROUND_TRUTH", &truth_file)
        .env(
            "TT_METAL_CACHE",
            scratch_dir().join(format!("kernels-{era}")),
        )
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let truth = serde_json::from_str(&std::fs::read_to_string(&truth_file).unwrap()).unwrap();
    let report = report_json(&file);
    (file, truth, report)
}

/// A real model's recording: the page shows each chip's DRAM, L1 and circular-buffer peaks as
/// the summary has them, and in the snapshot no two live segments of a device ever overlap
/// (PyTorch's tools lay blocks out by address), every free finds its allocation, and the
/// counts per chip are the ledger's.
#[test]
fn a_real_models_page_and_snapshot_agree_with_the_ledger() {
    let (file, truth, report) = recorded_real_model();
    let p = only_process(&report);
    let pid = p["pid"].as_u64().unwrap();
    let chips = devices(p);
    let steps = truth["steps"].as_array().unwrap();
    assert!(steps.len() > 20, "a short model");

    let page = export(&file, "html", "html");
    let dom =
        String::from_utf8(chromium(&page, &["--dump-dom", "--virtual-time-budget=5000"]).stdout)
            .unwrap();
    for (chip, d) in &chips {
        let shown = |ty: &str| {
            element_text(&dom, &format!("id=\"peak-c{chip}-p{pid}-{ty}\""))
                .map(|s| exact_bytes(&s))
                .unwrap_or_else(|| panic!("no {ty} peak of chip {chip} on the page"))
        };
        for ty in ["DRAM", "L1"] {
            let peak = n(&d["peak"]["reserved"][ty]);
            assert_eq!(shown(ty), peak, "chip {chip} {ty}");
            let highest_seen = steps
                .iter()
                .map(|s| {
                    let v = &s["memory_view"];
                    v[ty]
                        .as_u64()
                        .or_else(|| v[chip.to_string()][ty].as_u64())
                        .unwrap()
                })
                .max()
                .unwrap();
            assert!(
                peak >= highest_seen,
                "chip {chip} {ty}: {peak} < tt-metal's {highest_seen}"
            );
        }
        let cb_peak = n(&d["circular_buffers"]["peak_bytes"]);
        assert!(
            cb_peak > 0,
            "chip {chip}: the model's ops placed circular buffers"
        );
        assert_eq!(shown("CB"), cb_peak, "chip {chip} CB");
    }

    let pickle = export(&file, "pytorch-snapshot", "pickle");
    let home = tempdir();
    let trace = memory_viz(&["trace", pickle.to_str().unwrap()], &home);
    for (chip, section) in trace_sections(&trace) {
        let d = &chips[&chip];
        let dropped: u64 = p["outstanding"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|o| o["device"] == chip && o["class"] == "freed_by_close")
            .count() as u64;
        assert_eq!(
            trace_counts(&section),
            (n(&d["allocations"]), n(&d["deallocations"]) + dropped),
            "chip {chip}: (allocations, frees + dropped by the close)"
        );
        // A free of an address with no live allocation is printed with the bare address.
        for l in section.lines() {
            let freed = l
                .strip_prefix("del ")
                .or_else(|| l.strip_prefix("# free completed for "));
            if let Some(name) = freed {
                assert!(
                    !name.starts_with(|c: char| c.is_ascii_digit()),
                    "chip {chip}: {l}"
                );
            }
        }
    }
    // The snapshot's own segment events, from the pickle: live segments never overlap.
    let script = format!(
        "import json, pickle\n\
         d = pickle.load(open({:?}, 'rb'))\n\
         print(json.dumps([[[e['action'], e['addr'], e['size']] for e in t] for t in d['device_traces']]))\n",
        pickle.display().to_string()
    );
    let out = Command::new("python3")
        .args(["-c", &script])
        .output()
        .unwrap();
    assert!(out.status.success());
    let traces: Vec<Vec<(String, u64, u64)>> = serde_json::from_slice(&out.stdout).unwrap();
    for (chip, t) in traces.iter().enumerate() {
        let mut live: BTreeMap<u64, u64> = BTreeMap::new();
        for (action, addr, size) in t {
            match action.as_str() {
                "segment_alloc" => {
                    let before = live.range(..=addr).next_back();
                    let after = live.range(addr..).next();
                    assert!(
                        before.is_none_or(|(a, s)| a + s <= *addr)
                            && after.is_none_or(|(a, _)| addr + size <= *a),
                        "chip {chip}: segment {addr}+{size} overlaps {before:?} / {after:?}"
                    );
                    live.insert(*addr, *size);
                }
                "segment_free" => {
                    assert_eq!(
                        live.remove(addr),
                        Some(*size),
                        "chip {chip}: free of {addr}"
                    )
                }
                _ => {}
            }
        }
    }
}
