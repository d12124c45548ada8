//! Round trips, truncation at every byte, damage skipped to the next chunk (every bit of every
//! chunk flipped), header damage, hostile lengths and a bounded random-mutation fuzz of the
//! reader (the `fuzz/` cargo-fuzz target drives the same code).
use super::{
    format::{chunk_crc, frame, Header, CHUNK_MAGIC, KIND_EVENTS, PREAMBLE_LEN},
    reader::{read_all, Damage},
    writer::Recorder,
};
use crate::model::{BufferInfo, BufferType, DeviceRef, Event, EventKind};

pub(crate) const BASE: u64 = 5_000_000_000;

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
pub(crate) fn events() -> Vec<Event> {
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
pub(crate) fn recording(max_events: u32) -> (Vec<u8>, Vec<usize>, Vec<usize>) {
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
fn a_damaged_header_or_a_junk_tail_is_an_error_that_says_what_and_where() {
    let (data, _, _) = recording(7);
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

/// Where the first chunk starts (after the preamble, the header JSON and its checksum).
fn body(data: &[u8]) -> usize {
    PREAMBLE_LEN + u32::from_le_bytes(data[12..16].try_into().unwrap()) as usize + 4
}

type Range = std::ops::Range<usize>;

/// Each chunk of events of `recording()`: its bytes and its events (indices into `events()`).
fn chunk_spans(data: &[u8], ends: &[usize], events_before: &[usize]) -> Vec<(Range, Range)> {
    let mut out = Vec::new();
    let (mut pos, mut ev) = (body(data), 0);
    for (end, n) in ends.iter().zip(events_before) {
        out.push((pos..*end, ev..*n));
        (pos, ev) = (*end, *n);
    }
    out
}

/// The events written, less those of the chunks numbered in `lost`.
fn events_without(spans: &[(Range, Range)], lost: &[usize]) -> Vec<Event> {
    let all = events();
    let mut out = Vec::new();
    for (k, (_, evs)) in spans.iter().enumerate() {
        if !lost.contains(&k) {
            out.extend_from_slice(&all[evs.clone()]);
        }
    }
    out
}

fn damage(start: usize, end: usize, chunks_lost: u64, exact: bool) -> Damage {
    Damage {
        start: start as u64,
        end: end as u64,
        chunks_lost,
        exact,
    }
}

/// Every single-bit flip anywhere in chunk k costs chunk k and nothing else, and says so: the
/// exact bytes, one chunk, and an exact count unless the flip hit the magic or a length.
#[test]
fn a_flipped_bit_anywhere_in_a_chunk_loses_that_chunk_only() {
    let (data, ends, events_before) = recording(7);
    let spans = chunk_spans(&data, &ends, &events_before);
    assert!(spans.len() > 3, "several chunks");
    for (k, (bytes, _)) in spans.iter().enumerate() {
        let expect = events_without(&spans, &[k]);
        for at in bytes.clone() {
            for bit in [0, 3, 7] {
                let mut bad = data.clone();
                bad[at] ^= 1 << bit;
                let offset = at - bytes.start;
                let what = format!("chunk {k}, byte {at} (+{offset}), bit {bit}");
                let (_, evs, read) = read_all(&bad).unwrap_or_else(|e| panic!("{what}: {e:#}"));
                assert_eq!(evs, expect, "{what}: the other chunks' events");
                assert_eq!(read.damaged.len(), 1, "{what}: {:?}", read.damaged);
                let d = &read.damaged[0];
                assert_eq!(
                    (d.start as usize, d.end as usize, d.chunks_lost),
                    (bytes.start, bytes.end, 1),
                    "{what}"
                );
                let in_magic_or_lengths = offset < 4 || (12..20).contains(&offset);
                if !in_magic_or_lengths {
                    assert!(d.exact, "{what}: an intact frame gives an exact count");
                }
                assert_eq!(read.chunks as usize, spans.len() - 1, "{what}");
                assert!(read.trailer.is_some() && read.truncated.is_none(), "{what}");
                assert_eq!(read.chunks_lost(), 1);
            }
        }
    }
}

#[test]
fn the_damage_note_names_the_bytes_and_the_chunks_lost() {
    let (data, ends, events_before) = recording(7);
    let spans = chunk_spans(&data, &ends, &events_before);
    let bytes = spans[2].0.clone();
    let mut bad = data.clone();
    bad[bytes.start + 30] ^= 0x40;
    let (_, _, read) = read_all(&bad).unwrap();
    let note = read.damage_note().expect("a note");
    let range = format!(
        "bytes {}-{} ({} bytes) unreadable, 1 chunk lost",
        bytes.start,
        bytes.end - 1,
        bytes.len()
    );
    assert!(note.starts_with("recording damaged: "), "{note}");
    assert!(note.contains(&range), "{note}");
    assert!(note.contains("everything else was read"), "{note}");
    assert!(!note.contains("no trailer"), "{note}");
    assert_eq!(read.chunks_lost_text(), "1 chunk");
    assert_eq!(read_all(&data).unwrap().2.damage_note(), None);
}

/// A chunk overwritten with garbage (its frame too): the other chunks are read, the exact
/// bytes are reported, and the count of one chunk is an estimate (no frame to follow).
#[test]
fn a_chunk_overwritten_with_garbage_loses_that_chunk_only() {
    let (data, ends, events_before) = recording(7);
    let spans = chunk_spans(&data, &ends, &events_before);
    let mut rng = 0x2545_f491_4f6c_dd1du64;
    for k in [0, spans.len() / 2, spans.len() - 1] {
        let bytes = spans[k].0.clone();
        let mut bad = data.clone();
        for b in &mut bad[bytes.clone()] {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            *b = rng as u8;
        }
        assert!(!bad[bytes.clone()].windows(4).any(|w| w == CHUNK_MAGIC));
        let (_, evs, read) = read_all(&bad).unwrap();
        assert_eq!(evs, events_without(&spans, &[k]), "chunk {k}");
        assert_eq!(
            read.damaged,
            vec![damage(bytes.start, bytes.end, 1, false)],
            "chunk {k}"
        );
        let note = read.damage_note().unwrap();
        assert!(note.contains("about 1 chunk lost"), "{note}");
        assert!(read.trailer.is_some());
    }
}

#[test]
fn two_damaged_chunks_are_two_ranges_and_adjacent_ones_one() {
    let (data, ends, events_before) = recording(7);
    let spans = chunk_spans(&data, &ends, &events_before);
    assert!(spans.len() > 4);
    let mid = |k: usize| (spans[k].0.start + spans[k].0.end) / 2;
    let mut bad = data.clone();
    bad[mid(1)] ^= 0x10;
    bad[mid(3)] ^= 0x01;
    let (_, evs, read) = read_all(&bad).unwrap();
    assert_eq!(evs, events_without(&spans, &[1, 3]));
    assert_eq!(
        read.damaged,
        vec![
            damage(spans[1].0.start, spans[1].0.end, 1, true),
            damage(spans[3].0.start, spans[3].0.end, 1, true),
        ]
    );
    assert_eq!(read.chunks as usize, spans.len() - 2);
    let note = read.damage_note().unwrap();
    assert_eq!(note.matches("1 chunk lost").count(), 2, "{note}");
    // Neighbours: one stretch, two chunks, counted by following their intact frames.
    let mut bad = data.clone();
    bad[mid(1)] ^= 0x10;
    bad[mid(2)] ^= 0x10;
    let (_, evs, read) = read_all(&bad).unwrap();
    assert_eq!(evs, events_without(&spans, &[1, 2]));
    assert_eq!(
        read.damaged,
        vec![damage(spans[1].0.start, spans[2].0.end, 2, true)]
    );
    assert!(read.damage_note().unwrap().contains("2 chunks lost"));
}

#[test]
fn bytes_inserted_between_chunks_are_skipped_and_lose_nothing() {
    let (data, ends, _) = recording(7);
    let mut bad = data.clone();
    bad.splice(ends[1]..ends[1], *b"xyz");
    let (_, evs, read) = read_all(&bad).unwrap();
    assert_eq!(evs, events(), "every event");
    assert_eq!(read.damaged, vec![damage(ends[1], ends[1] + 3, 0, false)]);
    let note = read.damage_note().unwrap();
    assert!(
        note.contains("too short to have held a whole chunk"),
        "{note}"
    );
}

/// The trailer is a chunk like the others: damaged, every event is still read, the trailer's
/// facts are unknown, and the note says the damage runs to the end of the file. A length made
/// to point past the end is indistinguishable from a file cut inside the trailer: truncated.
#[test]
fn a_damaged_trailer_is_reported_and_every_event_read() {
    let (data, ends, _) = recording(7);
    let last = *ends.last().unwrap();
    for at in last..data.len() {
        let mut bad = data.clone();
        bad[at] ^= 0x04;
        let what = format!("trailer byte {at} (+{})", at - last);
        let (_, evs, read) = read_all(&bad).unwrap_or_else(|e| panic!("{what}: {e:#}"));
        assert_eq!(evs, events(), "{what}");
        assert!(read.trailer.is_none(), "{what}");
        if let Some(t) = &read.truncated {
            assert!((16..20).contains(&(at - last)), "{what}: {t:?}");
            assert_eq!(t.valid_bytes as usize, last, "{what}");
            assert!(read.damaged.is_empty(), "{what}");
            continue;
        }
        assert_eq!(
            read.damaged
                .iter()
                .map(|d| (d.start as usize, d.end as usize, d.chunks_lost))
                .collect::<Vec<_>>(),
            vec![(last, data.len(), 1)],
            "{what}"
        );
        let note = read.damage_note().unwrap();
        assert!(note.contains("no trailer was read"), "{note}");
    }
}

/// A flip anywhere in the preamble or header is an error saying where, never a panic (the
/// reserved bytes 10..12 are not read, so a flip there changes nothing).
#[test]
fn a_damaged_header_at_any_byte_is_a_clear_error() {
    let (data, _, _) = recording(7);
    for at in 0..body(&data) {
        let mut bad = data.clone();
        bad[at] ^= 0x20;
        match read_all(&bad) {
            Ok((_, evs, read)) => {
                assert!((10..12).contains(&at), "byte {at}: read as valid");
                assert_eq!(evs, events());
                assert!(read.damaged.is_empty());
            }
            Err(e) => {
                let msg = format!("{e:#}");
                assert!(
                    msg.contains("byte") || msg.contains("truncated"),
                    "byte {at}: {msg}"
                );
            }
        }
    }
}

/// Damage early and a cut late: both are reported, and the chunks between them read.
#[test]
fn damage_and_truncation_together() {
    let (data, ends, events_before) = recording(7);
    let spans = chunk_spans(&data, &ends, &events_before);
    let n = spans.len();
    let cut = spans[n - 1].0.start + 10;
    let mut bad = data[..cut].to_vec();
    bad[spans[1].0.start + 28] ^= 0x80;
    let (_, evs, read) = read_all(&bad).unwrap();
    assert_eq!(evs, events_without(&spans, &[1, n - 1]));
    assert_eq!(
        read.damaged,
        vec![damage(spans[1].0.start, spans[1].0.end, 1, true)]
    );
    let t = read.truncated.expect("says truncated");
    assert_eq!(
        (t.valid_bytes as usize, t.file_bytes as usize),
        (spans[n - 1].0.start, cut)
    );
    // The last chunk of events damaged and the file cut inside the trailer.
    let cut = data.len() - 3;
    let mut bad = data[..cut].to_vec();
    bad[spans[n - 1].0.start + 30] ^= 0x80;
    let (_, evs, read) = read_all(&bad).unwrap();
    assert_eq!(evs, events_without(&spans, &[n - 1]));
    assert_eq!(
        read.damaged,
        vec![damage(spans[n - 1].0.start, spans[n - 1].0.end, 1, true)]
    );
    assert_eq!(
        read.truncated.map(|t| t.valid_bytes as usize),
        Some(spans[n - 1].0.end)
    );
}

#[test]
fn hostile_lengths_are_refused_before_allocating() {
    let (data, ends, events_before) = recording(7);
    let mut bad = data.clone();
    bad[12..16].copy_from_slice(&u32::MAX.to_le_bytes());
    expect_err(&bad, "exceeds");
    // A chunk's lengths past the limits make its frame damaged: skipped, never allocated for.
    let spans = chunk_spans(&data, &ends, &events_before);
    for field in [12usize, 16] {
        let mut bad = data.clone();
        bad[ends[0] + field..ends[0] + field + 4].copy_from_slice(&u32::MAX.to_le_bytes());
        let (_, evs, read) = read_all(&bad).unwrap();
        assert_eq!(evs, events_without(&spans, &[1]), "field {field}");
        assert_eq!(
            read.damaged,
            vec![damage(spans[1].0.start, spans[1].0.end, 1, false)],
            "field {field}"
        );
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
    let all = events();
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
            Ok((_, evs, read)) => {
                // Only chunks that pass their checksum are read: what comes out is events
                // that were written, in order, and the damage is disjoint stretches of the file.
                let mut written = all.iter();
                assert!(
                    evs.iter().all(|e| written.any(|w| w == e)),
                    "mutation {i}: events that were never written"
                );
                let mut at = 0;
                for r in &read.damaged {
                    assert!(at <= r.start && r.start < r.end, "mutation {i}: {read:?}");
                    at = r.end;
                }
                assert!(at <= d.len() as u64, "mutation {i}: {read:?}");
                ok += 1
            }
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

/// Every input the fuzzer ever flagged (tracer/src/recording/regressions/) reads to events or
/// to an error that says where, through the threaded decoder too.
/// - fuzz-leak-threads.trec: a valid multi-chunk file; LeakSanitizer flagged glibc's
///   per-thread exit bookkeeping of the decoder threads (the fuzz build decodes inline).
#[test]
fn fuzz_regressions() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/recording/regressions");
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
