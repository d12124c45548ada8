//! Plain-words explanations: what each chip still holds and why, outstanding buffers grouped
//! by allocation site (a mesh buffer shown once, with its per-chip and total size), and the
//! lifecycle and out-of-memory history.
use std::fmt::Write as _;

use super::{human_bytes, since};
use crate::{
    ledger::{BufferType, HeldBuffer, Outcome, Outstanding, ProcessLedger},
    model::Site,
};

/// Outstanding buffers from the same allocation site: same class, type, size, chips and
/// Python line (when the probes read it).
pub struct Group<'a> {
    pub outcome: Outcome,
    pub kind: BufferType,
    pub size: u64,
    pub chips: Vec<i32>,
    pub site: Option<&'a Site>,
    pub members: Vec<&'a Outstanding>,
}

impl Group<'_> {
    pub fn reserved_per_chip(&self) -> u64 {
        self.members.iter().map(|o| o.held.reserved).sum()
    }
}

/// Without native call stacks (see `call_stacks` in the plan), the site is what the runtime
/// tells: buffer type, size and the device it was allocated on.
pub fn groups(p: &ProcessLedger) -> Vec<Group<'_>> {
    let mut out: Vec<Group> = Vec::new();
    for o in &p.outstanding {
        let b = &o.held.buffer;
        let site = o.held.site.as_deref();
        match out.iter_mut().find(|g| {
            g.outcome == o.outcome
                && g.kind == b.kind
                && g.size == b.size
                && g.chips == o.held.device.chips
                && g.site == site
        }) {
            Some(g) => g.members.push(o),
            None => out.push(Group {
                outcome: o.outcome,
                kind: b.kind,
                size: b.size,
                chips: o.held.device.chips.clone(),
                site,
                members: vec![o],
            }),
        }
    }
    out
}

fn chip_list(chips: &[i32]) -> String {
    chips
        .iter()
        .map(|c| c.to_string())
        .collect::<Vec<_>>()
        .join(",")
}

/// "4 MiB x 8 chips = 32 MiB (DRAM, buffer_id=1048704)": a buffer as the program sees it.
pub fn buffer_line(h: &HeldBuffer, origin: Option<u64>) -> String {
    let b = &h.buffer;
    let n = h.device.chips.len() as u64;
    let size = if n > 1 {
        format!(
            "{} x {n} chips = {}",
            human_bytes(b.size),
            human_bytes(b.size * n)
        )
    } else {
        format!(
            "{} on chip {}",
            human_bytes(b.size),
            chip_list(&h.device.chips)
        )
    };
    let site = h
        .site
        .as_deref()
        .map(|s| format!(", by {}", s.describe()))
        .unwrap_or_default();
    format!(
        "{size} ({}, buffer_id={}, allocated at {}{site})",
        b.kind.name(),
        b.address,
        since(h.allocated_ns, origin)
    )
}

fn group_line(g: &Group, origin: Option<u64>) -> String {
    if g.members.len() == 1 {
        return buffer_line(&g.members[0].held, origin);
    }
    let n = g.chips.len().max(1) as u64;
    let count = g.members.len() as u64;
    let ids: Vec<String> = g
        .members
        .iter()
        .map(|o| o.held.buffer.address.to_string())
        .collect();
    let first = g
        .members
        .iter()
        .map(|o| o.held.allocated_ns)
        .min()
        .unwrap_or(0);
    let last = g
        .members
        .iter()
        .map(|o| o.held.allocated_ns)
        .max()
        .unwrap_or(0);
    let total = human_bytes(g.size * n * count);
    let details = format!(
        "{}, buffer_ids={}, allocated {} .. {}",
        g.kind.name(),
        ids.join(","),
        since(first, origin),
        since(last, origin)
    );
    match g.site {
        // `4 MiB x 8 chips, 12 buffers, allocated at model.py:42 in forward (ttnn.matmul)`
        Some(site) => format!(
            "{} x {n} chip(s), {count} buffers = {total}, allocated at {} ({details})",
            human_bytes(g.size),
            site.describe(),
        ),
        None => format!(
            "{count} buffers of {} x {n} chip(s) = {total} ({details})",
            human_bytes(g.size),
        ),
    }
}

fn why(outcome: Outcome) -> &'static str {
    match outcome {
        Outcome::FreedByClose => "never deallocated; dropped when their device/mesh closed",
        Outcome::Leaked => "still allocated when the process ended with the device open",
        Outcome::LiveAtDetach => "still allocated when the tracer stopped",
    }
}

/// Outstanding buffers grouped by allocation site, per class.
pub fn outstanding(s: &mut String, p: &ProcessLedger, call_stacks: &str) {
    let groups = groups(p);
    if groups.is_empty() {
        return;
    }
    let _ = writeln!(
        s,
        "Buffers still held, grouped by allocation site (type, size, chips, Python line):"
    );
    let _ = writeln!(s, "    (native call stacks: {call_stacks})");
    for outcome in [
        Outcome::FreedByClose,
        Outcome::Leaked,
        Outcome::LiveAtDetach,
    ] {
        let gs: Vec<_> = groups.iter().filter(|g| g.outcome == outcome).collect();
        if gs.is_empty() {
            continue;
        }
        let n: usize = gs.iter().map(|g| g.members.len()).sum();
        let _ = writeln!(s, "{n} buffer(s) {} ({}):", outcome.name(), why(outcome));
        for g in gs {
            let _ = writeln!(s, "    {}", group_line(g, p.first_ns));
        }
    }
}

pub fn lifecycle(s: &mut String, p: &ProcessLedger) {
    if p.lifecycle.is_empty() {
        return;
    }
    let _ = writeln!(s, "Devices opened and closed:");
    for l in &p.lifecycle {
        let what = match (l.device.mesh, l.opened, l.shape) {
            (true, true, Some((r, c))) => {
                format!("Mesh {r}x{c} opened: chips {}", chip_list(&l.device.chips))
            }
            (true, true, None) => format!("Mesh opened: chips {}", chip_list(&l.device.chips)),
            (true, false, _) => format!("Mesh closed: chips {}", chip_list(&l.device.chips)),
            (false, true, _) => format!("Device {} opened", chip_list(&l.device.chips)),
            (false, false, _) => format!("Device {} closed", chip_list(&l.device.chips)),
        };
        let dropped = if l.dropped > 0 {
            format!(
                " ({} buffer(s) never deallocated were dropped: freed_by_close)",
                l.dropped
            )
        } else {
            String::new()
        };
        let _ = writeln!(s, "    {} {what}{dropped}", since(l.at_ns, p.first_ns));
    }
}

pub fn clashes(s: &mut String, p: &ProcessLedger) {
    for c in &p.clashes {
        let _ = writeln!(
            s,
            "Circular buffer clash at {}: {}",
            since(c.at_ns, p.first_ns),
            super::lines::clash(p.pid, c)
        );
    }
}

pub fn ooms(s: &mut String, p: &ProcessLedger) {
    for o in &p.ooms {
        let r = &o.refusal;
        let on = match &o.device {
            Some(d) if d.mesh => format!("mesh chips {}", chip_list(&d.chips)),
            Some(d) => format!("device {}", chip_list(&d.chips)),
            None => "an unknown device".into(),
        };
        let _ = writeln!(
            s,
            "Out of memory at {}: {} allocation of {} ({} B) refused on {on}: each of {} banks needed {} B but had {} B free (largest block {} B){}",
            since(o.at_ns, p.first_ns),
            r.kind.name(),
            human_bytes(r.requested),
            r.requested,
            r.banks,
            r.per_bank,
            r.free_per_bank,
            r.largest_free,
            if o.matched { "" } else { " [device inferred]" }
        );
        if !o.cb_region_tops.is_empty() {
            let tops: Vec<String> = o
                .cb_region_tops
                .iter()
                .map(|(r, top)| format!("{} up to {top}", r.describe()))
                .collect();
            let _ = writeln!(
                s,
                "    circular buffers of live programs end at: {}",
                tops.join(", ")
            );
        }
        // A mesh's chips hold the same buffers: show each distinct holder list once.
        let mut shown: Vec<&Vec<HeldBuffer>> = Vec::new();
        for (_, holders) in &o.holders {
            if shown.contains(&holders) {
                continue;
            }
            shown.push(holders);
            let chips: Vec<i32> = o
                .holders
                .iter()
                .filter(|(_, h)| h == holders)
                .map(|(c, _)| *c)
                .collect();
            let total: u64 = holders.iter().map(|h| h.reserved).sum();
            let _ = writeln!(
                s,
                "    chip(s) {}: {} buffer(s) held {} B of {} then; largest:",
                chip_list(&chips),
                holders.len(),
                total,
                r.kind.name()
            );
            for h in holders.iter().take(5) {
                let _ = writeln!(s, "        {}", buffer_line(h, p.first_ns));
            }
        }
    }
}

/// One sentence per chip: what it still holds at the end and why.
pub fn per_chip(s: &mut String, p: &ProcessLedger) {
    if p.devices.is_empty() {
        return;
    }
    let _ = writeln!(s, "What remains on each chip, and why:");
    for (chip, d) in &p.devices {
        let mine: Vec<&Outstanding> = p
            .outstanding
            .iter()
            .filter(|o| o.held.device.chips.contains(chip))
            .collect();
        if mine.is_empty() && d.live_buffers == 0 {
            let _ = writeln!(
                s,
                "    Device {chip}: nothing. The program deallocated all {} buffer(s) it allocated here.",
                d.allocations
            );
            continue;
        }
        let mut parts = Vec::new();
        for outcome in [
            Outcome::FreedByClose,
            Outcome::Leaked,
            Outcome::LiveAtDetach,
        ] {
            let these: Vec<_> = mine.iter().filter(|o| o.outcome == outcome).collect();
            if these.is_empty() {
                continue;
            }
            let mut by_type: Vec<(BufferType, u64, u64)> = Vec::new();
            for o in &these {
                let (k, size, res) = (o.held.buffer.kind, o.held.buffer.size, o.held.reserved);
                match by_type.iter_mut().find(|(t, _, _)| *t == k) {
                    Some((_, b, r)) => {
                        *b += size;
                        *r += res;
                    }
                    None => by_type.push((k, size, res)),
                }
            }
            let mesh = these.iter().filter(|o| o.held.device.mesh).count();
            let mut what: Vec<String> = by_type
                .iter()
                .map(|(k, b, r)| {
                    format!(
                        "{} of {} requested, {} reserved by the allocator",
                        human_bytes(*b),
                        k.name(),
                        human_bytes(*r)
                    )
                })
                .collect();
            if mesh > 0 {
                what.push(format!(
                    "{mesh} of them mesh buffers, present on every chip of the mesh"
                ));
            }
            let sentence = match outcome {
                Outcome::FreedByClose => format!(
                    "{} buffer(s) ({}) were never deallocated by the program; closing the device/mesh dropped them (freed_by_close), so the chip is empty now, but they stayed allocated until the close",
                    these.len(),
                    what.join(", ")
                ),
                Outcome::Leaked => format!(
                    "{} buffer(s) ({}) were still allocated when the process ended without closing the device (leaked)",
                    these.len(),
                    what.join(", ")
                ),
                Outcome::LiveAtDetach => format!(
                    "{} buffer(s) ({}) were still allocated when the tracer stopped (live_at_detach)",
                    these.len(),
                    what.join(", ")
                ),
            };
            parts.push(sentence);
        }
        let _ = writeln!(
            s,
            "    Device {chip}: {}. The other {} buffer(s) were deallocated.",
            parts.join("; "),
            d.deallocations
        );
    }
}

/// The peak per chip and type, and the buffers that made it.
pub fn peaks(s: &mut String, p: &ProcessLedger, chip: i32) {
    for kind in BufferType::ALL {
        let Some(peak) = p.peaks.get(&(chip, kind)) else {
            continue;
        };
        if peak.reserved == 0 {
            continue;
        }
        let top: Vec<String> = peak
            .holders
            .iter()
            .take(3)
            .map(|h| {
                format!(
                    "{} (buffer_id={}, {} reserved)",
                    human_bytes(h.buffer.size),
                    h.buffer.address,
                    human_bytes(h.reserved)
                )
            })
            .collect();
        let more = peak.holders.len().saturating_sub(top.len());
        let _ = writeln!(
            s,
            "    peak {}: {} bytes reserved at {} by {} buffer(s): {}{}",
            kind.name(),
            peak.reserved,
            since(peak.at_ns, p.first_ns),
            peak.holders.len(),
            top.join(", "),
            if more > 0 {
                format!(" and {more} more")
            } else {
                String::new()
            }
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        ledger::{BufferInfo, DeviceRef, Event, EventKind, Ledger},
        report::human_bytes,
    };

    fn ev(ts: u64, kind: EventKind) -> Event {
        Event {
            ts_ns: ts,
            pid: 9,
            kind,
        }
    }

    fn mesh() -> DeviceRef {
        DeviceRef {
            handle: 1,
            chips: vec![1, 0],
            mesh: true,
        }
    }

    fn dram(uid: u64, size: u64) -> BufferInfo {
        BufferInfo {
            address: 1000 + uid,
            size,
            page_size: 2048,
            kind: BufferType::Dram,
            unique_id: uid,
        }
    }

    #[test]
    fn bytes_for_people() {
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(4 << 20), "4 MiB");
        assert_eq!(human_bytes(20000), "19.53 KiB");
    }

    #[test]
    fn mesh_buffers_are_one_thing_and_sites_group() {
        let mut l = Ledger::new();
        for (ts, uid) in [(1_000_000, 1), (2_000_000, 2)] {
            l.apply(&ev(
                ts,
                EventKind::Alloc {
                    device: mesh(),
                    buffer: dram(uid, 4 << 20),
                },
            ));
        }
        l.apply(&ev(
            3_000_000,
            EventKind::Alloc {
                device: mesh(),
                buffer: dram(3, 8192),
            },
        ));
        l.apply(&ev(4_000_000, EventKind::DeviceClose { device: mesh() }));
        let p = &l.processes[&9];
        let g = groups(p);
        assert_eq!(g.len(), 2);
        assert_eq!(g[0].members.len(), 2);
        assert_eq!(
            group_line(&g[1], p.first_ns),
            "8 KiB x 2 chips = 16 KiB (DRAM, buffer_id=1003, allocated at +0.002 s)"
        );
        assert!(
            group_line(&g[0], p.first_ns).starts_with("2 buffers of 4 MiB x 2 chip(s) = 16 MiB")
        );
        let mut s = String::new();
        per_chip(&mut s, p);
        assert!(s.contains("Device 0: 3 buffer(s)"));
        assert!(s.contains("freed_by_close"));
    }
}
