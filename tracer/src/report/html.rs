//! `--format html`: one self-contained page (inline CSS, JS and SVG, no request to anywhere)
//! that a browser opens from disk. Per chip: the bytes reserved over time per buffer type (all
//! processes), circular buffers, the peaks and refused allocations marked; per process, the
//! summary's peaks and the buffers that held them, grouped by allocation site (by type and
//! size where no site was read).
//!
//! The page is a template (`html_page.html`) plus the data as JSON in a script element; the
//! drawing code reads that JSON, so what is drawn and what `report --json` says come from one
//! replay of the same ledger.
use std::{
    collections::{BTreeMap, HashMap},
    path::Path,
    sync::Arc,
};

use anyhow::{Context, Result};
use serde_json::{json, Value};

use super::{chips::ChipTotals, human_bytes};
use crate::{
    ledger::{BufferType, EventKind, HeldBuffer, Ledger, Site},
    recording::reader::{Recording, Replayed},
    report::replay::Replay,
};

const PAGE: &str = include_str!("html_page.html");
const DATA_MARK: &str = "/*TRACER_DATA*/";

/// Points a series keeps at most; longer ones are thinned (see [`thin`]).
const MAX_POINTS: usize = 4000;
/// Holder groups listed per peak before the rest is summed up in one line.
const TOP_HOLDERS: usize = 10;

/// The label of a series of circular buffers (not a tt-metal buffer type).
const CB: &str = "CB";

pub fn export(rec: &Recording, out: &Path) -> Result<Replayed> {
    let (data, read) = data(rec)?;
    std::fs::write(out, page(&data)).with_context(|| format!("cannot write {}", out.display()))?;
    Ok(read)
}

/// What the page shows, from one replay.
fn data(rec: &Recording) -> Result<(Value, Replayed)> {
    let base = rec.header.monotonic_base_ns;
    let secs = |ns: u64| ns.saturating_sub(base) as f64 / 1e9;
    let mut totals = ChipTotals::default();
    let mut series: BTreeMap<(i32, String), Vec<(f64, u64)>> = BTreeMap::new();
    let mut cb_last: BTreeMap<i32, u64> = BTreeMap::new();
    let mut cb_peaks: BTreeMap<i32, (u64, u64)> = BTreeMap::new();
    let replay = Replay::run(rec, None, |ledger, ev| {
        let t = secs(ev.ts_ns);
        for (chip, ty, bytes) in totals.changes(ledger, ev) {
            series
                .entry((chip, ty.name().to_string()))
                .or_default()
                .push((t, bytes));
        }
        if matches!(
            ev.kind,
            EventKind::CircularBuffers { .. }
                | EventKind::ProgramReleased { .. }
                | EventKind::DeviceClose { .. }
        ) {
            for (chip, bytes) in chip_cb_bytes(ledger, ev.pid) {
                if cb_last.insert(chip, bytes) != Some(bytes) {
                    series
                        .entry((chip, CB.to_string()))
                        .or_default()
                        .push((t, bytes));
                    let peak = cb_peaks.entry(chip).or_default();
                    if bytes > peak.0 {
                        *peak = (bytes, ev.ts_ns);
                    }
                }
            }
        }
    })?;
    let end_ns = match &replay.read.trailer {
        Some(t) => t.end_ns,
        None => replay.read.last_ns.unwrap_or(base),
    };
    let mut chips: Vec<Value> = Vec::new();
    let chip_ids: std::collections::BTreeSet<i32> = series
        .keys()
        .map(|(c, _)| *c)
        .chain(
            replay
                .ledger
                .processes
                .values()
                .flat_map(|p| p.devices.keys().copied()),
        )
        .collect();
    for chip in chip_ids {
        let order = |ty: &str| {
            BufferType::ALL
                .iter()
                .position(|t| t.name() == ty)
                .unwrap_or(BufferType::ALL.len())
        };
        let mut chip_series: Vec<(&String, &Vec<(f64, u64)>)> = series
            .iter()
            .filter(|((c, _), _)| *c == chip)
            .map(|((_, ty), pts)| (ty, pts))
            .collect();
        chip_series.sort_by_key(|(ty, _)| order(ty));
        let mut peaks: Vec<Value> = BufferType::ALL
            .iter()
            .filter_map(|t| totals.peaks.get(&(chip, *t)).map(|p| (t.name(), *p)))
            .chain(cb_peaks.get(&chip).map(|p| (CB, *p)))
            .filter(|(_, (bytes, _))| *bytes > 0)
            .map(|(ty, (bytes, at))| json!({"type": ty, "bytes": bytes, "t": secs(at)}))
            .collect();
        peaks.sort_by_key(|p| order(p["type"].as_str().unwrap_or_default()));
        chips.push(json!({
                "chip": chip,
                "series": chip_series.iter().map(|(ty, pts)| json!({
                    "type": ty,
                    "points": thin(pts, MAX_POINTS).iter().map(|(t, b)| json!([t, b])).collect::<Vec<_>>(),
                })).collect::<Vec<_>>(),
                "peaks": peaks,
                "ooms": ooms(&replay.ledger, chip, &secs),
                "processes": processes(&replay.ledger, chip, &secs),
        }));
    }
    let h = &rec.header;
    let data = json!({
        "command": h.command,
        "host": h.host,
        "tool_version": h.tool_version,
        "start_unix_ns": h.start_unix_ns,
        "duration_s": secs(end_ns),
        "events": replay.read.events,
        "truncated": replay.read.truncated.as_ref().map(|t| t.describe(replay.read.chunks)),
        "damaged": replay.read.damage_note(),
        "call_stacks": replay.info.call_stacks,
        "chips": chips,
    });
    Ok((data, replay.read))
}

/// The page with `data` in it. `<` is escaped so that no string in the data (a file name, a
/// command line) can end the script element.
pub fn page(data: &Value) -> String {
    let json = data.to_string().replace('<', "\\u003c");
    PAGE.replacen(DATA_MARK, &json, 1)
}

/// The L1 the circular buffers of every process hold on each chip of `pid`'s devices.
fn chip_cb_bytes(ledger: &Ledger, pid: u32) -> Vec<(i32, u64)> {
    let chips: Vec<i32> = ledger
        .processes
        .get(&pid)
        .map(|p| p.devices.keys().copied().collect())
        .unwrap_or_default();
    chips
        .into_iter()
        .map(|chip| {
            let bytes = ledger
                .processes
                .values()
                .filter_map(|q| q.devices.get(&chip))
                .map(|d| d.circular_buffers.live_bytes)
                .sum();
            (chip, bytes)
        })
        .collect()
}

/// At most about `max` points of a step series, keeping its shape where it matters: the
/// highest point of each stretch (so no peak is lost) and the stretch's last point (so the
/// level after it is right), in time order.
pub fn thin(points: &[(f64, u64)], max: usize) -> Vec<(f64, u64)> {
    if points.len() <= max {
        return points.to_vec();
    }
    let stretch = points.len().div_ceil(max / 2);
    let mut out = Vec::with_capacity(max + 2);
    for chunk in points.chunks(stretch) {
        let mut top = 0;
        for (i, p) in chunk.iter().enumerate() {
            if p.1 > chunk[top].1 {
                top = i;
            }
        }
        out.push(chunk[top]);
        if top + 1 < chunk.len() {
            out.push(chunk[chunk.len() - 1]);
        }
    }
    out
}

fn ooms(ledger: &Ledger, chip: i32, secs: &impl Fn(u64) -> f64) -> Vec<Value> {
    ledger
        .processes
        .values()
        .flat_map(|p| p.ooms.iter().map(move |o| (p.pid, o)))
        .filter(|(_, o)| o.device.as_ref().is_some_and(|d| d.chips.contains(&chip)))
        .map(|(pid, o)| {
            let r = &o.refusal;
            json!({
                "t": secs(o.at_ns),
                "pid": pid,
                "type": r.kind.name(),
                "requested": r.requested,
                "free": r.free_per_bank * u64::from(r.banks),
                "largest_free": r.largest_free,
                "device_matched": o.matched,
            })
        })
        .collect()
}

/// Each process's peaks on `chip` (the summary's), with their holders grouped.
fn processes(ledger: &Ledger, chip: i32, secs: &impl Fn(u64) -> f64) -> Vec<Value> {
    ledger
        .processes
        .values()
        .filter_map(|p| {
            let d = p.devices.get(&chip)?;
            let mut peaks: Vec<Value> = BufferType::ALL
                .iter()
                .filter_map(|t| p.peaks.get(&(chip, *t)).map(|pk| (t, pk)))
                .filter(|(_, pk)| pk.reserved > 0)
                .map(|(t, pk)| {
                    let (groups, more) = holder_groups(&pk.holders);
                    json!({
                        "type": t.name(),
                        "bytes": pk.reserved,
                        "t": secs(pk.at_ns),
                        "buffers": pk.holders.len(),
                        "holders": groups,
                        "more": more,
                    })
                })
                .collect();
            let cb = &d.circular_buffers;
            if cb.peak_bytes > 0 {
                peaks.push(json!({
                    "type": CB, "bytes": cb.peak_bytes, "t": secs(cb.peak_ns),
                    "buffers": Value::Null, "holders": [], "more": Value::Null,
                }));
            }
            Some(json!({"pid": p.pid, "command": p.command, "peaks": peaks}))
        })
        .collect()
}

/// Holders grouped by site (by type and requested size where there is none), most bytes
/// first: the first [`TOP_HOLDERS`] groups, and what the rest add up to.
fn holder_groups(holders: &[HeldBuffer]) -> (Vec<Value>, Value) {
    #[derive(PartialEq, Eq, Hash)]
    enum Key {
        Site(Arc<Site>),
        Unattributed(BufferType, u64),
    }
    let mut groups: HashMap<Key, (u64, u64)> = HashMap::new();
    for h in holders {
        let key = match &h.site {
            Some(s) => Key::Site(s.clone()),
            None => Key::Unattributed(h.buffer.kind, h.buffer.size),
        };
        let g = groups.entry(key).or_default();
        g.0 += 1;
        g.1 += h.reserved;
    }
    let mut groups: Vec<Value> = groups
        .into_iter()
        .map(|(key, (buffers, bytes))| match key {
            Key::Site(s) => json!({
                "site": s.describe(),
                "label": s.describe(),
                "frames": s.frames.iter().map(|f| format!("{}:{} in {}", f.file, f.line, f.function)).collect::<Vec<_>>(),
                "buffers": buffers,
                "bytes": bytes,
            }),
            Key::Unattributed(kind, size) => json!({
                "site": Value::Null,
                "label": format!("{} buffers of {} (no site)", kind.name(), human_bytes(size)),
                "frames": [],
                "buffers": buffers,
                "bytes": bytes,
            }),
        })
        .collect();
    let n = |g: &Value, k: &str| g[k].as_u64().unwrap_or(0);
    groups.sort_by(|a, b| {
        n(b, "bytes")
            .cmp(&n(a, "bytes"))
            .then(n(b, "buffers").cmp(&n(a, "buffers")))
            .then(a["label"].as_str().cmp(&b["label"].as_str()))
    });
    let rest = groups.split_off(groups.len().min(TOP_HOLDERS));
    let shown = groups;
    let more = if rest.is_empty() {
        Value::Null
    } else {
        json!({
            "groups": rest.len(),
            "buffers": rest.iter().map(|g| n(g, "buffers")).sum::<u64>(),
            "bytes": rest.iter().map(|g| n(g, "bytes")).sum::<u64>(),
        })
    };
    (shown, more)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peaks_list_their_holders_by_site_and_ooms_are_on_their_chips() {
        let raw = crate::report::test_recording::with_sites();
        let rec = Recording::open(&raw).unwrap();
        let (data, _) = data(&rec).unwrap();
        let chips = data["chips"].as_array().unwrap();
        assert_eq!(chips.len(), 2);
        for chip in chips {
            let p = &chip["processes"][0];
            let dram = &p["peaks"][0];
            assert_eq!(dram["type"], "DRAM");
            assert_eq!(dram["buffers"], 2);
            let g = &dram["holders"][0];
            assert_eq!(g["site"], "model.py:42 in forward (ttnn.matmul)");
            assert_eq!(g["buffers"], 2);
            assert_eq!(g["bytes"], dram["bytes"]);
            assert_eq!(
                g["frames"],
                json!([
                    "/v/site-packages/ttnn/decorators.py:300 in __call__",
                    "/home/u/model.py:42 in forward"
                ])
            );
            let l1 = &p["peaks"][1];
            assert_eq!(l1["holders"][0]["label"], "L1 buffers of 2 KiB (no site)");
            assert_eq!(chip["ooms"].as_array().unwrap().len(), 1);
            assert_eq!(chip["ooms"][0]["requested"], 1 << 20);
            // The chip-wide DRAM series rises twice and falls once.
            let dram_series = &chip["series"][0];
            assert_eq!(dram_series["type"], "DRAM");
            assert_eq!(dram_series["points"].as_array().unwrap().len(), 3);
            assert_eq!(chip["peaks"][0]["bytes"], dram["bytes"]);
        }
    }

    #[test]
    fn thinning_keeps_every_peak_and_the_last_level() {
        let points: Vec<(f64, u64)> = (0..10_000u64)
            .map(|i| (i as f64, if i == 7777 { 1 << 30 } else { i % 97 }))
            .collect();
        let thin = thin(&points, 400);
        assert!(thin.len() <= 402, "{}", thin.len());
        assert!(thin.contains(&(7777.0, 1 << 30)));
        assert_eq!(thin.last(), points.last());
        assert!(thin.windows(2).all(|w| w[0].0 < w[1].0));
        assert_eq!(super::thin(&points[..10], 400), points[..10].to_vec());
    }

    #[test]
    fn the_data_cannot_close_the_script_element() {
        let page = page(&json!({"command": "python </script><script>alert(1)</script>"}));
        assert!(!page.contains("</script><script>alert"));
        assert!(page.contains("\\u003c/script>"));
        assert!(!page.contains(DATA_MARK));
    }

    #[test]
    fn holders_group_by_site_then_by_type_and_size() {
        use crate::{
            ledger::{BufferInfo, DeviceRef},
            model::Frame,
        };
        let site = Arc::new(Site {
            frames: vec![Frame {
                file: "/home/u/model.py".into(),
                function: "forward".into(),
                line: 42,
            }],
            op: Some("ttnn.matmul".into()),
        });
        let held = |uid: u64, size: u64, site: Option<Arc<Site>>| HeldBuffer {
            device: DeviceRef {
                handle: 1,
                chips: vec![0],
                mesh: false,
            },
            buffer: BufferInfo {
                address: uid * 4096,
                size,
                page_size: 2048,
                kind: BufferType::Dram,
                unique_id: uid,
            },
            reserved: size,
            allocated_ns: uid,
            site,
        };
        let (groups, more) = holder_groups(&[
            held(1, 100, Some(site.clone())),
            held(2, 100, Some(site.clone())),
            held(3, 300, None),
            held(4, 50, None),
        ]);
        assert_eq!(groups[0]["label"], "DRAM buffers of 300 B (no site)");
        assert_eq!(groups[1]["site"], "model.py:42 in forward (ttnn.matmul)");
        assert_eq!(groups[1]["buffers"], 2);
        assert_eq!(groups[1]["bytes"], 200);
        assert_eq!(groups[1]["frames"][0], "/home/u/model.py:42 in forward");
        assert_eq!(groups.len(), 3);
        assert!(more.is_null());
    }
}
