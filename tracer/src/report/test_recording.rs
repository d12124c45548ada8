//! A small recording whose allocations carry sites, for the exports' unit tests: two DRAM
//! buffers from one Python line, an L1 buffer without a site at the same device address as
//! the first, a free, and a refused L1 allocation, on a 2-chip mesh.
use crate::{
    model::{BufferInfo, BufferType, DeviceRef, Event, EventKind, Frame, Refusal, Site},
    recording::{format::Header, writer::Recorder},
};

const BASE: u64 = 1_000_000_000;
const MESH: u64 = 0x5000;

pub fn site() -> Site {
    Site {
        frames: vec![
            Frame {
                file: "/v/site-packages/ttnn/decorators.py".into(),
                function: "__call__".into(),
                line: 300,
            },
            Frame {
                file: "/home/u/model.py".into(),
                function: "forward".into(),
                line: 42,
            },
        ],
        op: Some("ttnn.matmul".into()),
    }
}

fn mesh() -> DeviceRef {
    DeviceRef {
        handle: MESH,
        chips: vec![0, 1],
        mesh: true,
    }
}

fn buffer(uid: u64, kind: BufferType, address: u64, size: u64) -> BufferInfo {
    BufferInfo {
        address,
        size,
        page_size: 2048,
        kind,
        unique_id: uid,
    }
}

pub fn with_sites() -> Vec<u8> {
    let b1 = buffer(1, BufferType::Dram, 0x1000, 8192);
    let b2 = buffer(2, BufferType::Dram, 0x10000, 4096);
    let b3 = buffer(3, BufferType::L1, 0x1000, 2048);
    let kinds = vec![
        EventKind::ProcessStart {
            command: "python model.py".into(),
        },
        EventKind::BankGeometry {
            kind: BufferType::Dram,
            banks: 8,
            alignment: 32,
            granularity: 32,
        },
        EventKind::BankGeometry {
            kind: BufferType::L1,
            banks: 4,
            alignment: 16,
            granularity: 16,
        },
        EventKind::DeviceOpen {
            device: mesh(),
            shape: Some((1, 2)),
        },
        EventKind::AllocationSite {
            device: MESH,
            unique_id: 1,
            site: site(),
        },
        EventKind::Alloc {
            device: mesh(),
            buffer: b1,
        },
        EventKind::AllocationSite {
            device: MESH,
            unique_id: 2,
            site: site(),
        },
        EventKind::Alloc {
            device: mesh(),
            buffer: b2.clone(),
        },
        EventKind::Alloc {
            device: mesh(),
            buffer: b3,
        },
        EventKind::Free {
            device: mesh(),
            buffer: b2,
        },
        EventKind::OutOfMemory {
            refusal: Refusal {
                kind: BufferType::L1,
                requested: 1 << 20,
                banks: 4,
                per_bank: 1 << 18,
                bank_size: 1 << 19,
                allocated_per_bank: 512,
                free_per_bank: 1000,
                largest_free: 1000,
            },
        },
        EventKind::ProcessExit { code: Some(0) },
    ];
    let header = Header {
        tool: "tracer".into(),
        command: "python model.py".into(),
        monotonic_base_ns: BASE,
        ..Default::default()
    };
    let mut rec = Recorder::new(Vec::new(), &header).unwrap();
    let n = kinds.len() as u64;
    for (i, kind) in kinds.into_iter().enumerate() {
        rec.record(&Event {
            ts_ns: BASE + 1000 * (i as u64 + 1),
            pid: 9,
            kind,
        })
        .unwrap();
    }
    rec.finish(BASE + 1000 * (n + 1), 0).unwrap()
}
