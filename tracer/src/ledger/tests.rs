use super::*;

const MESH: u64 = 0x1000;
const CHIP3: u64 = 0x2000;

fn mesh() -> DeviceRef {
    DeviceRef {
        handle: MESH,
        chips: vec![1, 0, 2, 3, 5, 4, 6, 7],
        mesh: true,
    }
}

fn chip3() -> DeviceRef {
    DeviceRef {
        handle: CHIP3,
        chips: vec![3],
        mesh: false,
    }
}

fn buf(uid: u64, size: u64, page: u64, kind: BufferType) -> BufferInfo {
    BufferInfo {
        address: 1_048_704 + uid * 0x10000,
        size,
        page_size: page,
        kind,
        unique_id: uid,
    }
}

fn ev(ts: u64, kind: EventKind) -> Event {
    Event {
        ts_ns: ts,
        pid: 7,
        kind,
    }
}

fn geometry(kind: BufferType, banks: u32, alignment: u32, granularity: u32) -> Event {
    ev(
        0,
        EventKind::BankGeometry {
            kind,
            banks,
            alignment,
            granularity,
        },
    )
}

fn blackhole() -> Ledger {
    let mut l = Ledger::new();
    l.apply(&geometry(BufferType::Dram, 8, 64, 64));
    l.apply(&geometry(BufferType::L1, 110, 16, 64));
    l
}

#[test]
fn reserved_matches_measured_examples() {
    let dram = Geometry {
        banks: 8,
        alignment: 64,
        granularity: 64,
    };
    let l1 = Geometry {
        banks: 110,
        alignment: 16,
        granularity: 64,
    };
    // 100x100 row-major bf16 DRAM: 100 pages of 200 B -> 13 pages x 256 B x 8 banks.
    assert_eq!(reserved_bytes(20_000, 200, dram), 26_624);
    // 8192-byte tile L1 tensor: 4 pages of 2048 B -> 1 page per bank x 110 banks.
    assert_eq!(reserved_bytes(8192, 2048, l1), 225_280);
    // 550x50 row-major L1: 550 pages of 100 B (aligned 112): 5 per bank = 560 -> 576.
    assert_eq!(reserved_bytes(55_000, 100, l1), 576 * 110);
    // 330x10: 20 B pages (aligned 32), 3 per bank = 96 -> 128.
    assert_eq!(reserved_bytes(6_600, 20, l1), 128 * 110);
    // A 4 MiB DRAM shard is bank-aligned: exactly its size.
    assert_eq!(reserved_bytes(4 << 20, 2048, dram), 4 << 20);
}

#[test]
fn mesh_allocation_and_free_land_on_every_chip() {
    let mut l = blackhole();
    let b = buf(1, 4 << 20, 2048, BufferType::Dram);
    l.apply(&ev(
        10,
        EventKind::Alloc {
            device: mesh(),
            buffer: b.clone(),
        },
    ));
    let p = &l.processes[&7];
    assert_eq!(p.devices.len(), 8);
    for d in p.devices.values() {
        assert_eq!(d.live_buffers, 1);
        assert_eq!(d.requested.get(BufferType::Dram), 4 << 20);
        assert_eq!(d.reserved.get(BufferType::Dram), 4 << 20);
    }
    l.apply(&ev(
        20,
        EventKind::Free {
            device: mesh(),
            buffer: b,
        },
    ));
    for d in l.processes[&7].devices.values() {
        assert_eq!((d.allocations, d.deallocations, d.live_buffers), (1, 1, 0));
        assert_eq!(d.requested.get(BufferType::Dram), 0);
        assert_eq!(d.peak_reserved.get(BufferType::Dram), 4 << 20);
    }
}

#[test]
fn single_chip_buffers_stay_on_their_chip() {
    let mut l = blackhole();
    l.apply(&ev(
        1,
        EventKind::Alloc {
            device: chip3(),
            buffer: buf(2, 8192, 2048, BufferType::L1),
        },
    ));
    let p = &l.processes[&7];
    assert_eq!(p.devices.keys().copied().collect::<Vec<_>>(), vec![3]);
    assert_eq!(p.devices[&3].reserved.get(BufferType::L1), 225_280);
    assert_eq!(p.devices[&3].requested.get(BufferType::L1), 8192);
}

#[test]
fn close_drops_buffers_as_freed_by_close() {
    let mut l = blackhole();
    l.apply(&ev(
        1,
        EventKind::Alloc {
            device: mesh(),
            buffer: buf(1, 4096, 2048, BufferType::Dram),
        },
    ));
    l.apply(&ev(
        2,
        EventKind::Alloc {
            device: mesh(),
            buffer: buf(2, 2048, 2048, BufferType::L1),
        },
    ));
    l.apply(&ev(
        3,
        EventKind::Alloc {
            device: chip3(),
            buffer: buf(3, 2048, 2048, BufferType::L1),
        },
    ));
    l.apply(&ev(4, EventKind::DeviceClose { device: mesh() }));
    let p = &l.processes[&7];
    assert_eq!(p.outstanding.len(), 2);
    assert!(p
        .outstanding
        .iter()
        .all(|o| o.outcome == Outcome::FreedByClose));
    assert_eq!(
        p.outstanding[0].held.buffer.unique_id, 1,
        "in allocation order"
    );
    assert_eq!(p.devices[&0].live_buffers, 0);
    assert_eq!(
        p.devices[&0].deallocations, 0,
        "a close is not a deallocation"
    );
    // The single-chip buffer on chip 3 belongs to another device object: still live.
    assert_eq!(p.devices[&3].live_buffers, 1);
    // A late free of a buffer the close already dropped is not double-counted.
    l.apply(&ev(
        5,
        EventKind::Free {
            device: mesh(),
            buffer: buf(1, 4096, 2048, BufferType::Dram),
        },
    ));
    assert_eq!(l.processes[&7].unknown_frees, 1);
    assert_eq!(
        l.processes[&7].devices[&0].requested.get(BufferType::Dram),
        0
    );
}

#[test]
fn finish_classifies_by_process_state() {
    let mut l = blackhole();
    l.apply(&ev(
        1,
        EventKind::Alloc {
            device: mesh(),
            buffer: buf(1, 4096, 2048, BufferType::Dram),
        },
    ));
    let mut detached = l.clone();
    l.apply(&ev(2, EventKind::ProcessExit { code: Some(0) }));
    l.finish(3);
    let p = &l.processes[&7];
    assert_eq!(p.outstanding[0].outcome, Outcome::Leaked);
    assert_eq!(p.exit_code, Some(0));
    // Live totals stay: they are what the process held when it ended.
    assert_eq!(p.devices[&5].live_buffers, 1);
    detached.finish(3);
    assert_eq!(
        detached.processes[&7].outstanding[0].outcome,
        Outcome::LiveAtDetach
    );
}

#[test]
fn unknown_geometry_falls_back_to_requested_and_says_so() {
    let mut l = Ledger::new();
    l.apply(&ev(
        1,
        EventKind::Alloc {
            device: chip3(),
            buffer: buf(1, 5000, 100, BufferType::L1),
        },
    ));
    let p = &l.processes[&7];
    assert_eq!(p.devices[&3].reserved.get(BufferType::L1), 5000);
    assert_eq!(p.reserved_estimated, 1);
}

#[test]
fn repeated_key_replaces_stale_record() {
    let mut l = blackhole();
    let b = buf(1, 2048, 2048, BufferType::L1);
    l.apply(&ev(
        1,
        EventKind::Alloc {
            device: chip3(),
            buffer: b.clone(),
        },
    ));
    l.apply(&ev(
        2,
        EventKind::Alloc {
            device: chip3(),
            buffer: b,
        },
    ));
    let d = &l.processes[&7].devices[&3];
    assert_eq!(d.live_buffers, 1);
    assert_eq!(d.requested.get(BufferType::L1), 2048);
}

#[test]
fn processes_are_kept_apart() {
    let mut l = blackhole();
    l.apply(&ev(
        1,
        EventKind::Alloc {
            device: mesh(),
            buffer: buf(1, 4096, 2048, BufferType::Dram),
        },
    ));
    l.apply(&Event {
        ts_ns: 2,
        pid: 8,
        kind: EventKind::Free {
            device: mesh(),
            buffer: buf(1, 4096, 2048, BufferType::Dram),
        },
    });
    assert_eq!(l.processes[&7].devices[&0].live_buffers, 1);
    assert_eq!(l.processes[&8].unknown_frees, 1);
}

fn alloc(ts: u64, device: DeviceRef, b: BufferInfo) -> Event {
    ev(ts, EventKind::Alloc { device, buffer: b })
}

fn free(ts: u64, device: DeviceRef, b: BufferInfo) -> Event {
    ev(ts, EventKind::Free { device, buffer: b })
}

fn l1_refusal(allocated_per_bank: u64, requested: u64) -> EventKind {
    EventKind::OutOfMemory {
        refusal: Refusal {
            kind: BufferType::L1,
            requested,
            banks: 110,
            per_bank: requested / 110,
            bank_size: 1_461_120,
            allocated_per_bank,
            free_per_bank: 1_461_120 - allocated_per_bank,
            largest_free: 1_461_120 - allocated_per_bank,
        },
    }
}

#[test]
fn lifecycle_records_opens_and_closes_with_shape() {
    let mut l = blackhole();
    l.apply(&ev(
        1,
        EventKind::DeviceOpen {
            device: mesh(),
            shape: Some((2, 4)),
        },
    ));
    l.apply(&alloc(2, mesh(), buf(1, 8192, 2048, BufferType::L1)));
    l.apply(&ev(3, EventKind::DeviceClose { device: mesh() }));
    let p = &l.processes[&7];
    assert_eq!(p.lifecycle.len(), 2);
    assert!(p.lifecycle[0].opened);
    assert_eq!(p.lifecycle[0].shape, Some((2, 4)));
    assert!(!p.lifecycle[1].opened);
    assert_eq!(p.lifecycle[1].dropped, 1);
    assert_eq!(p.first_ns, Some(0));
}

#[test]
fn oom_names_the_device_whose_count_matches_the_allocator() {
    let mut l = blackhole();
    l.apply(&ev(
        1,
        EventKind::DeviceOpen {
            device: chip3(),
            shape: None,
        },
    ));
    l.apply(&ev(
        1,
        EventKind::DeviceOpen {
            device: mesh(),
            shape: Some((2, 4)),
        },
    ));
    // The mesh and chip 3 have separate allocators; only the mesh's count matches.
    l.apply(&alloc(2, mesh(), buf(1, 8192, 2048, BufferType::L1)));
    l.apply(&alloc(3, mesh(), buf(2, 2_097_152, 2048, BufferType::L1)));
    l.apply(&alloc(4, chip3(), buf(3, 8192, 2048, BufferType::L1)));
    let mesh_per_bank = (225_280
        + reserved_bytes(
            2_097_152,
            2048,
            Geometry {
                banks: 110,
                alignment: 16,
                granularity: 64,
            },
        ))
        / 110;
    l.apply(&ev(5, l1_refusal(mesh_per_bank, 2_097_152)));
    let p = &l.processes[&7];
    let o = &p.ooms[0];
    assert!(o.matched);
    assert_eq!(o.device.as_ref().unwrap().handle, MESH);
    assert_eq!(o.holders.len(), 8);
    // Holders on chip 3 include its own device's buffer too: they sum to the chip's L1.
    let (chip, h3) = o.holders.iter().find(|(c, _)| *c == 3).unwrap();
    assert_eq!(*chip, 3);
    let sum: u64 = h3.iter().map(|h| h.reserved).sum();
    assert_eq!(sum, p.devices[&3].reserved.get(BufferType::L1));
    assert_eq!(h3.len(), 3);
    // Largest first.
    assert_eq!(h3[0].buffer.unique_id, 2);
    // Chip 1 holds only the mesh's buffers: they sum to the allocator's own count.
    let (_, h1) = o.holders.iter().find(|(c, _)| *c == 1).unwrap();
    assert_eq!(
        h1.iter().map(|h| h.reserved).sum::<u64>(),
        mesh_per_bank * 110
    );
}

#[test]
fn oom_without_a_match_falls_back_to_the_open_mesh_and_says_so() {
    let mut l = blackhole();
    l.apply(&ev(
        1,
        EventKind::DeviceOpen {
            device: mesh(),
            shape: None,
        },
    ));
    l.apply(&alloc(2, mesh(), buf(1, 8192, 2048, BufferType::L1)));
    l.apply(&ev(3, l1_refusal(999, 1 << 30)));
    let o = &l.processes[&7].ooms[0];
    assert!(!o.matched);
    assert_eq!(o.device.as_ref().unwrap().handle, MESH);
}

#[test]
fn peak_keeps_the_buffers_that_made_it() {
    let mut l = blackhole();
    let a = buf(1, 8192, 2048, BufferType::L1);
    let b = buf(2, 2_097_152, 2048, BufferType::L1);
    let c = buf(3, 1024, 1024, BufferType::L1);
    l.apply(&alloc(10, mesh(), a.clone()));
    l.apply(&alloc(20, mesh(), b.clone()));
    l.apply(&free(30, mesh(), a.clone()));
    // A smaller rise later does not move the peak.
    l.apply(&alloc(40, mesh(), c.clone()));
    l.apply(&free(50, mesh(), b.clone()));
    l.finish(60);
    let p = &l.processes[&7];
    for chip in [1, 0, 2, 3, 5, 4, 6, 7] {
        let peak = &p.peaks[&(chip, BufferType::L1)];
        assert_eq!(peak.at_ns, 20);
        assert_eq!(
            peak.reserved,
            p.devices[&chip].peak_reserved.get(BufferType::L1)
        );
        let ids: Vec<u64> = peak.holders.iter().map(|h| h.buffer.unique_id).collect();
        assert_eq!(ids, vec![2, 1]);
        assert_eq!(
            peak.holders.iter().map(|h| h.reserved).sum::<u64>(),
            peak.reserved
        );
    }
}

#[test]
fn peak_still_held_at_the_end_is_settled_by_finish() {
    let mut l = blackhole();
    l.apply(&alloc(10, chip3(), buf(1, 8192, 2048, BufferType::Dram)));
    l.finish(20);
    let peak = &l.processes[&7].peaks[&(3, BufferType::Dram)];
    assert_eq!(peak.holders.len(), 1);
    assert_eq!(peak.at_ns, 10);
}

#[test]
fn buffer_type_names_parse_from_prefixes() {
    assert_eq!(BufferType::from_name("L1"), Some(BufferType::L1));
    assert_eq!(BufferType::from_name("DRAM"), Some(BufferType::Dram));
    assert_eq!(BufferType::from_name("L1_SMALL"), Some(BufferType::L1Small));
    assert_eq!(
        BufferType::from_name("SYSTEM_M"),
        Some(BufferType::SystemMemory)
    );
    assert_eq!(BufferType::from_name("L"), None);
}

fn attached(seeded_from: Option<&str>) -> Event {
    ev(
        1,
        EventKind::Attached {
            seeded_from: seeded_from.map(String::from),
        },
    )
}

fn seed(chip: i32, kind: BufferType, requested: u64) -> Event {
    ev(
        1,
        EventKind::Seed {
            chip,
            kind,
            requested,
        },
    )
}

#[test]
fn seeded_attach_counts_pre_attach_frees_against_the_seed() {
    let mut l = Ledger::new();
    l.apply(&attached(Some("shm")));
    for chip in mesh().chips {
        l.apply(&seed(chip, BufferType::Dram, 3 * 2_097_152));
        l.apply(&seed(chip, BufferType::L1, 8192));
    }
    // A buffer allocated before the attach is freed: it leaves the seeded totals.
    let old = buf(1, 2_097_152, 2048, BufferType::Dram);
    l.apply(&ev(
        5,
        EventKind::Free {
            device: mesh(),
            buffer: old,
        },
    ));
    // A new one is allocated after the attach.
    let new = buf(9, 4096, 2048, BufferType::Dram);
    l.apply(&ev(
        6,
        EventKind::Alloc {
            device: mesh(),
            buffer: new,
        },
    ));
    let p = &l.processes[&7];
    assert_eq!(p.pre_attach, Some(PreAttach::Seeded("shm".into())));
    assert_eq!(p.unknown_frees, 1);
    assert_eq!(p.unknown_free_bytes, 2_097_152 * 8);
    for chip in mesh().chips {
        let d = &p.devices[&chip];
        assert_eq!(d.requested.get(BufferType::Dram), 2 * 2_097_152 + 4096);
        assert_eq!(d.requested.get(BufferType::L1), 8192);
        assert_eq!(d.seeded_left.get(BufferType::Dram), 2 * 2_097_152);
        assert_eq!(d.peak_requested.get(BufferType::Dram), 3 * 2_097_152);
        assert_eq!((d.allocations, d.deallocations), (1, 1));
        assert_eq!(
            d.live_buffers, 1,
            "only buffers seen are counted as buffers"
        );
        assert_eq!(d.freed_before_attach, 1);
    }
}

#[test]
fn since_attach_keeps_pre_attach_frees_apart() {
    let mut l = Ledger::new();
    l.apply(&attached(None));
    l.apply(&ev(
        5,
        EventKind::Free {
            device: chip3(),
            buffer: buf(1, 5000, 1000, BufferType::L1),
        },
    ));
    l.apply(&ev(
        6,
        EventKind::Alloc {
            device: chip3(),
            buffer: buf(2, 4096, 2048, BufferType::Dram),
        },
    ));
    let p = &l.processes[&7];
    assert_eq!(p.pre_attach, Some(PreAttach::SinceAttach));
    assert_eq!((p.unknown_frees, p.unknown_free_bytes), (1, 5000));
    let d = &p.devices[&3];
    assert_eq!(
        d.requested.get(BufferType::L1),
        0,
        "never negative, never lied"
    );
    assert_eq!(d.requested.get(BufferType::Dram), 4096);
    assert_eq!((d.allocations, d.deallocations), (1, 0));
    assert_eq!(
        (d.freed_before_attach, d.freed_before_attach_bytes),
        (1, 5000)
    );
}

#[test]
fn close_drops_what_is_left_of_the_seed() {
    let mut l = Ledger::new();
    l.apply(&attached(Some("shm")));
    for chip in mesh().chips {
        l.apply(&seed(chip, BufferType::Dram, 65536));
    }
    l.apply(&ev(9, EventKind::DeviceClose { device: mesh() }));
    for d in l.processes[&7].devices.values() {
        assert_eq!(d.requested.get(BufferType::Dram), 0);
        assert_eq!(d.reserved.get(BufferType::Dram), 0);
        assert_eq!(d.peak_requested.get(BufferType::Dram), 65536);
    }
}

fn cbs(size: u64) -> Vec<crate::model::CircularBuffer> {
    vec![crate::model::CircularBuffer {
        address: 100_000,
        size,
        global: false,
        cores: vec![crate::model::CoreRange {
            start: (0, 0),
            end: (10, 9),
        }],
        cut: false,
    }]
}

#[test]
fn circular_buffers_of_a_mesh_program_sit_on_every_chip_until_released() {
    let mut l = Ledger::new();
    l.apply(&ev(
        1,
        EventKind::CircularBuffers {
            device: mesh(),
            program: 0xa,
            buffers: cbs(4096),
        },
    ));
    l.apply(&ev(
        2,
        EventKind::CircularBuffers {
            device: chip3(),
            program: 0xb,
            buffers: cbs(8192),
        },
    ));
    let p = &l.processes[&7];
    for (chip, d) in &p.devices {
        let want = if *chip == 3 { 8192 * 110 } else { 4096 * 110 };
        assert_eq!(d.circular_buffers.live_bytes, want, "chip {chip}");
        // CBs are not buffers: the buffer figures stay untouched.
        assert_eq!((d.live_buffers, d.reserved.get(BufferType::L1)), (0, 0));
    }
    l.apply(&ev(
        3,
        EventKind::ProgramReleased {
            device: chip3(),
            program: 0xb,
        },
    ));
    let c = &l.processes[&7].devices[&3].circular_buffers;
    assert_eq!((c.live_bytes, c.peak_bytes), (4096 * 110, 8192 * 110));
    l.apply(&ev(4, EventKind::DeviceClose { device: mesh() }));
    for d in l.processes[&7].devices.values() {
        assert_eq!(d.circular_buffers.live_bytes, 0);
        assert!(d.circular_buffers.programs.is_empty());
    }
}

/// CBs read from the process's memory at an attach: live, not counted as placed; the probes'
/// later release or re-placement of the same program acts on them.
#[test]
fn held_circular_buffers_are_released_and_replaced_like_placed_ones() {
    let mut l = Ledger::new();
    l.apply(&attached(Some("memory")));
    for (program, size) in [(0xa, 4096), (0xb, 8192)] {
        l.apply(&ev(
            1,
            EventKind::HeldCircularBuffers {
                device: chip3(),
                program,
                buffers: cbs(size),
            },
        ));
    }
    let c = &l.processes[&7].devices[&3].circular_buffers;
    // One program from the same base covers the other's range: the union per core.
    assert_eq!((c.live_bytes, c.held, c.placed), (8192 * 110, 2, 0));
    // Placed again after the attach (a racing registration): replaced, not added.
    l.apply(&ev(
        2,
        EventKind::CircularBuffers {
            device: chip3(),
            program: 0xb,
            buffers: cbs(2048),
        },
    ));
    let c = &l.processes[&7].devices[&3].circular_buffers;
    assert_eq!(
        (c.live_bytes, c.programs.len(), c.placed),
        (4096 * 110, 2, 1)
    );
    l.apply(&ev(
        3,
        EventKind::ProgramReleased {
            device: chip3(),
            program: 0xa,
        },
    ));
    let p = &l.processes[&7];
    let c = &p.devices[&3].circular_buffers;
    assert_eq!((c.live_bytes, c.released), (2048 * 110, 1));
    assert_eq!(p.unknown_program_releases, 0);
    assert_eq!(c.peak_bytes, 8192 * 110);
}

#[test]
fn an_l1_refusal_names_where_the_live_cbs_end() {
    let mut l = Ledger::new();
    l.apply(&ev(
        0,
        EventKind::DeviceOpen {
            device: mesh(),
            shape: Some((2, 4)),
        },
    ));
    l.apply(&ev(
        1,
        EventKind::CircularBuffers {
            device: mesh(),
            program: 0xa,
            buffers: cbs(4096),
        },
    ));
    l.apply(&ev(2, l1_refusal(0, 2048 * 110)));
    let o = &l.processes[&7].ooms[0];
    let tops: Vec<(String, u64)> = o
        .cb_region_tops
        .iter()
        .map(|(r, t)| (r.describe(), *t))
        .collect();
    assert_eq!(tops, vec![("(0,0)-(10,9)".to_string(), 100_000 + 4096)]);
}

#[test]
fn a_sharded_buffer_reserves_one_shard_in_every_bank() {
    let mut l = Ledger::new();
    l.apply(&geometry(BufferType::L1, 110, 32, 32));
    // 16 pages of 2048 B over 4 cores: 4 pages per shard, in each of the 110 banks.
    let b = buf(1, 16 * 2048, 2048, BufferType::L1);
    l.apply(&ev(
        1,
        EventKind::ShardFootprint {
            device: MESH,
            unique_id: 1,
            pages_per_bank: 4,
        },
    ));
    l.apply(&ev(
        2,
        EventKind::Alloc {
            device: mesh(),
            buffer: b.clone(),
        },
    ));
    // The same buffer interleaved would hold one page per bank.
    l.apply(&ev(
        3,
        EventKind::Alloc {
            device: chip3(),
            buffer: buf(2, 16 * 2048, 2048, BufferType::L1),
        },
    ));
    let p = &l.processes[&7];
    assert_eq!(p.held(MESH, 1).unwrap().reserved, 4 * 2048 * 110);
    assert_eq!(p.held(CHIP3, 2).unwrap().reserved, 2048 * 110);
    assert_eq!(p.devices[&0].reserved.get(BufferType::L1), 4 * 2048 * 110);
}

#[test]
fn an_announced_site_sticks_to_its_buffer_only() {
    use crate::model::{Frame, Site};
    let mut l = Ledger::new();
    let site = Site {
        frames: vec![Frame {
            file: "/home/u/model.py".into(),
            function: "forward".into(),
            line: 42,
        }],
        op: Some("ttnn.matmul".into()),
    };
    l.apply(&ev(
        1,
        EventKind::AllocationSite {
            device: MESH,
            unique_id: 1,
            site: site.clone(),
        },
    ));
    for (t, id) in [(2, 1), (3, 2)] {
        l.apply(&ev(
            t,
            EventKind::Alloc {
                device: mesh(),
                buffer: buf(id, 4096, 2048, BufferType::Dram),
            },
        ));
    }
    let p = &l.processes[&7];
    assert_eq!(p.held(MESH, 1).unwrap().site.as_deref(), Some(&site));
    assert_eq!(p.held(MESH, 2).unwrap().site, None);
}

/// A seed read from the process's memory: real buffers, reconciled by key with the events
/// that raced with the read (an allocation seen by the probes AND found by the read is one
/// buffer; a free of a read buffer is an ordinary free; a free of a buffer the read missed,
/// because it was freed first, is a pre-attach free).
#[test]
fn a_seed_of_real_buffers_reconciles_with_racing_events() {
    let mut l = blackhole();
    l.apply(&attached(Some("memory")));
    let held = |uid, size| {
        ev(
            2,
            EventKind::Held {
                device: mesh(),
                buffer: buf(uid, size, 2048, BufferType::Dram),
            },
        )
    };
    for uid in 1..=3 {
        l.apply(&held(uid, 2_097_152));
    }
    // uid 3 was allocated just after the probes went live, before the read found it.
    l.apply(&ev(
        3,
        EventKind::Alloc {
            device: mesh(),
            buffer: buf(3, 2_097_152, 2048, BufferType::Dram),
        },
    ));
    // uid 1 is freed: the read had it.
    l.apply(&ev(
        4,
        EventKind::Free {
            device: mesh(),
            buffer: buf(1, 2_097_152, 2048, BufferType::Dram),
        },
    ));
    // uid 0 was allocated before the attach and freed before the read.
    l.apply(&ev(
        5,
        EventKind::Free {
            device: mesh(),
            buffer: buf(0, 4096, 2048, BufferType::Dram),
        },
    ));
    let p = &l.processes[&7];
    assert_eq!(p.unknown_frees, 1);
    for chip in mesh().chips {
        let d = &p.devices[&chip];
        assert_eq!(d.live_buffers, 2, "chip {chip}");
        assert_eq!(d.requested.get(BufferType::Dram), 2 * 2_097_152);
        assert_eq!(d.reserved.get(BufferType::Dram), 2 * 2_097_152);
        assert_eq!((d.allocations, d.deallocations), (1, 2));
        assert_eq!(d.seeded_buffers, 3);
        assert_eq!(d.seeded.get(BufferType::Dram), 3 * 2_097_152);
    }
    // Later frees of read buffers are exact: nothing unknown.
    let mut l2 = l.clone();
    l2.apply(&ev(
        9,
        EventKind::Free {
            device: mesh(),
            buffer: buf(2, 2_097_152, 2048, BufferType::Dram),
        },
    ));
    assert_eq!(l2.processes[&7].unknown_frees, 1);
    assert_eq!(l2.processes[&7].devices[&0].live_buffers, 1);
}
