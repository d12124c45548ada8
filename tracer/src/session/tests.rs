//! Round trips, truncation at every byte, corruption, hostile lengths and a bounded
//! random-mutation fuzz of the reader (the `fuzz/` cargo-fuzz target drives the same code).
use super::{
    format::{chunk_crc, frame, Header, CHUNK_MAGIC, KIND_EVENTS, PREAMBLE_LEN},
    reader::{read_all, Recording},
    writer::Recorder,
};
use crate::ledger::{BufferInfo, BufferType, DeviceRef, Event, EventKind};

const BASE: u64 = 5_000_000_000;

fn header() -> Header {
    Header {
        tool: "tracer".into(),
        tool_version: "test".into(),
        command: "python t.py".into(),
        library: "libtt_metal.so".into(),
        build_id: Some("abc".into()),
        layout: "layout".into(),
        monotonic_base_ns: BASE,
        ..Default::default()
    }
}

fn mesh(handle: u64) -> DeviceRef {
    DeviceRef {
        handle,
        chips: vec![1, 0, 2, 3, 5, 4, 6, 7],
        mesh: true,
    }
}

fn buffer(uid: u64, kind: BufferType) -> BufferInfo {
    BufferInfo {
        address: 1_048_576 + uid * 4096,
        size: 4096 * (uid % 5 + 1),
        page_size: 2048,
        kind,
        unique_id: uid,
    }
}

/// A session with every event kind, two devices, and a timestamp going backwards once.
fn events() -> Vec<Event> {
    let mut v = vec![Event {
        ts_ns: BASE + 10,
        pid: 7,
        kind: EventKind::ProcessStart {
            command: "python t.py".into(),
        },
    }];
    v.push(Event {
        ts_ns: BASE + 20,
        pid: 7,
        kind: EventKind::BankGeometry {
            kind: BufferType::L1,
            banks: 110,
            alignment: 16,
            granularity: 64,
        },
    });
    let mut ts = BASE + 100;
    for uid in 0..40u64 {
        let dev = if uid % 3 == 0 {
            mesh(0x1000)
        } else {
            mesh(0x2000)
        };
        let kind = if uid % 2 == 0 {
            BufferType::Dram
        } else {
            BufferType::L1
        };
        ts += 1000 + uid * 7;
        v.push(Event {
            ts_ns: ts,
            pid: 7,
            kind: EventKind::Alloc {
                device: dev.clone(),
                buffer: buffer(uid, kind),
            },
        });
        if uid % 4 == 1 {
            v.push(Event {
                ts_ns: ts - 3,
                pid: 7,
                kind: EventKind::Free {
                    device: dev,
                    buffer: buffer(uid, kind),
                },
            });
        }
    }
    v.push(Event {
        ts_ns: ts + 5,
        pid: 7,
        kind: EventKind::DeviceClose {
            device: mesh(0x1000),
        },
    });
    v.push(Event {
        ts_ns: ts + 9,
        pid: 7,
        kind: EventKind::ProcessExit { code: Some(0) },
    });
    v
}

/// The file, and the byte offset where each chunk ends.
fn recording(max_events: u32) -> (Vec<u8>, Vec<usize>, Vec<usize>) {
    let mut rec = Recorder::new(Vec::new(), &header()).unwrap();
    rec.max_events = max_events;
    let mut ends = Vec::new();
    let mut events_before = Vec::new();
    let mut n = 0;
    for ev in events() {
        let chunks = rec.chunks;
        rec.record(&ev).unwrap();
        n += 1;
        if rec.chunks != chunks {
            ends.push(rec.bytes as usize);
            events_before.push(n);
        }
    }
    rec.flush().unwrap();
    if ends.last() != Some(&(rec.bytes as usize)) {
        ends.push(rec.bytes as usize);
        events_before.push(n);
    }
    (
        rec.finish(BASE + 1_000_000, 3).unwrap(),
        ends,
        events_before,
    )
}

#[test]
fn round_trip_keeps_every_event_and_the_trailer() {
    let (data, ends, _) = recording(7);
    assert!(ends.len() > 3, "several chunks");
    let (h, evs, read) = read_all(&data).unwrap();
    assert_eq!(h, header());
    assert_eq!(evs, events());
    assert_eq!(read.chunks as usize, ends.len());
    assert!(read.truncated.is_none());
    let t = read.trailer.unwrap();
    assert_eq!(
        (t.end_ns, t.lost_events, t.events),
        (BASE + 1_000_000, 3, events().len() as u64)
    );
}

#[test]
fn a_cut_at_any_byte_reads_the_complete_chunks_and_says_truncated() {
    let (data, ends, events_before) = recording(7);
    let all = events();
    let body = ends[0] - {
        // The first chunk's length: its frame says it.
        let pos = PREAMBLE_LEN + u32::from_le_bytes(data[12..16].try_into().unwrap()) as usize + 4;
        ends[0] - pos
    };
    for cut in 0..data.len() {
        match read_all(&data[..cut]) {
            Err(e) => {
                assert!(cut < body, "cut {cut} after the header must read: {e:#}");
                let msg = format!("{e:#}");
                assert!(msg.contains("truncated"), "cut {cut}: {msg}");
            }
            Ok((_, evs, read)) => {
                let complete = ends.iter().filter(|e| **e <= cut).count();
                assert_eq!(read.chunks as usize, complete, "cut {cut}");
                let n = if complete == 0 {
                    0
                } else {
                    events_before[complete - 1]
                };
                assert_eq!(
                    evs,
                    all[..n],
                    "cut {cut}: the events of the complete chunks"
                );
                let t = read.truncated.expect("says truncated");
                assert_eq!(
                    t.valid_bytes as usize,
                    if complete == 0 {
                        body
                    } else {
                        ends[complete - 1]
                    }
                );
                assert!(t.describe(read.chunks).contains("truncated"));
            }
        }
    }
}

fn expect_err(data: &[u8], what: &str) -> String {
    let msg = match read_all(data) {
        Ok(_) => panic!("expected an error about {what}"),
        Err(e) => format!("{e:#}"),
    };
    assert!(msg.contains(what), "{msg}");
    assert!(msg.contains("byte"), "says where: {msg}");
    msg
}

#[test]
fn corruption_is_an_error_that_says_what_and_where() {
    let (data, ends, _) = recording(7);
    let mut bad = data.clone();
    bad[ends[1] + 30] ^= 0x40;
    let msg = expect_err(&bad, "checksum mismatch");
    assert!(
        msg.contains(&format!("chunk 2 at byte {}", ends[1])),
        "{msg}"
    );
    let mut bad = data.clone();
    bad[ends[0]] = b'X';
    expect_err(&bad, "bad chunk magic");
    let mut bad = data.clone();
    bad[0] = b'Z';
    expect_err(&bad, "not a tracer recording");
    let mut bad = data.clone();
    bad[8] = 9;
    expect_err(&bad, "format version 9");
    let mut bad = data.clone();
    bad[20] ^= 1;
    expect_err(&bad, "header checksum mismatch");
    let mut extra = data.clone();
    extra.extend_from_slice(b"junk");
    expect_err(&extra, "after the trailer");
}

#[test]
fn hostile_lengths_are_refused_before_allocating() {
    let (data, ends, _) = recording(7);
    let mut bad = data.clone();
    bad[12..16].copy_from_slice(&u32::MAX.to_le_bytes());
    expect_err(&bad, "exceeds");
    for field in [12usize, 16] {
        let mut bad = data.clone();
        bad[ends[0] + field..ends[0] + field + 4].copy_from_slice(&u32::MAX.to_le_bytes());
        expect_err(&bad, "exceed the limits");
    }
}

/// Appends a frame with `payload` (uncompressed `raw`) to a header-only recording.
fn with_chunk(raw: &[u8], count: u32) -> Vec<u8> {
    let mut data = Recorder::new(Vec::new(), &header()).unwrap().finish_raw();
    let payload = zstd::bulk::compress(raw, 3).unwrap();
    let f = frame(KIND_EVENTS, count, raw.len() as u32, payload.len() as u32);
    data.extend_from_slice(CHUNK_MAGIC);
    data.extend_from_slice(&f);
    data.extend_from_slice(&chunk_crc(&f, &payload).to_le_bytes());
    data.extend_from_slice(&payload);
    data
}

#[test]
fn an_event_kind_from_a_newer_tracer_is_a_clear_error() {
    // dt 0, pid 1, Body::Event, EventKind variant 60 (unknown here).
    let data = with_chunk(&[0, 1, 0, 60, 0, 0], 1);
    expect_err(&data, "newer tracer");
    // A device index never defined in the chunk.
    let data = with_chunk(&[0, 1, 2, 5, 0, 0, 0, 0, 0], 1);
    expect_err(&data, "not defined");
    // A count that cannot fit.
    let data = with_chunk(&[0, 1, 0, 0], 100);
    expect_err(&data, "cannot fit");
}

/// Bounded random mutations of valid recordings: the reader must answer every one with
/// events or an error that says where, never a panic. `cargo fuzz run reader` goes further.
#[test]
fn random_mutations_never_panic() {
    let seeds = [recording(7).0, recording(1000).0];
    let mut rng = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let (mut ok, mut err) = (0, 0);
    for i in 0..20_000 {
        let mut d = seeds[i % 2].clone();
        for _ in 0..=next() % 4 {
            let r = next();
            let at = (r >> 8) as usize % d.len().max(1);
            match r % 6 {
                0 => d[at] ^= 1 << ((r >> 40) % 8),
                1 => d.truncate(at),
                2 => d.insert(at, r as u8),
                3 if at + 4 <= d.len() => {
                    d[at..at + 4].copy_from_slice(&((r >> 32) as u32).to_le_bytes())
                }
                4 if !d.is_empty() => {
                    d.remove(at);
                }
                _ => d[at] = (r >> 16) as u8,
            }
            if d.is_empty() {
                break;
            }
        }
        match read_all(&d) {
            Ok(_) => ok += 1,
            Err(e) => {
                let msg = format!("{e:#}");
                assert!(
                    msg.contains("byte") || msg.contains("truncated"),
                    "an error must say where: {msg}"
                );
                err += 1;
            }
        }
    }
    assert!(
        ok > 0 && err > 0,
        "the mutations reached both outcomes ({ok} ok, {err} errors)"
    );
}

#[test]
fn replay_at_a_time_stops_there() {
    let (data, _, _) = recording(7);
    let rec = Recording::open(&data).unwrap();
    let all = events();
    let cut_ns = all[20].ts_ns;
    let at_s = (cut_ns - BASE) as f64 / 1e9;
    let r = super::replay::Replay::run(&rec, Some(at_s), |_, ev| assert!(ev.ts_ns <= cut_ns + 1))
        .unwrap();
    // The ledger holds exactly the events up to the cut (the recording keeps their order).
    let mut expect = crate::ledger::Ledger::new();
    for ev in all.iter().take_while(|e| e.ts_ns <= cut_ns + 1) {
        expect.apply(ev);
    }
    assert_eq!(
        format!("{:?}", r.ledger.processes[&7].devices),
        format!("{:?}", expect.processes[&7].devices)
    );
    assert!(r.read.events < all.len() as u64);
}

/// Writes the fuzz target's seed corpus (synthetic sessions, nothing from this machine):
/// `cargo test --release -p tracer write_fuzz_seed_corpus -- --ignored`.
#[test]
#[ignore]
fn write_fuzz_seed_corpus() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/reader");
    std::fs::create_dir_all(&dir).unwrap();
    for (name, max) in [("chunks-of-7.trec", 7), ("one-chunk.trec", 1000)] {
        std::fs::write(dir.join(name), recording(max).0).unwrap();
    }
    let cut = recording(7).0;
    std::fs::write(dir.join("truncated.trec"), &cut[..cut.len() * 2 / 3]).unwrap();
}

/// Every input the fuzzer ever flagged (tracer/src/session/regressions/) reads to events or
/// to an error that says where, through the threaded decoder too.
/// - fuzz-leak-threads.trec: a valid multi-chunk file; LeakSanitizer flagged glibc's
///   per-thread exit bookkeeping of the decoder threads (the fuzz build decodes inline).
#[test]
fn fuzz_regressions() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/session/regressions");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let data = std::fs::read(&path).unwrap();
        if let Err(e) = read_all(&data) {
            let msg = format!("{e:#}");
            assert!(
                msg.contains("byte") || msg.contains("truncated"),
                "{}: {msg}",
                path.display()
            );
        }
        n += 1;
    }
    assert!(n > 0, "the regression inputs are in {}", dir.display());
}
