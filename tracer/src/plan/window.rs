//! Folds a slot's field reads into one bulk copy of the object most of them live in.
//!
//! Each user-memory read from eBPF costs about as much as the rest of a probe hit, and a
//! buffer's fields are ~6 loads through the same pointer. Copying the span that holds them once
//! (`SlotSpec::window`) and picking the fields out of the copy keeps the probe near the cost of
//! a bare uprobe. Nothing here knows tt-metal: it works on whatever paths calibration produced.
use tracer_common::{FieldPath, SlotSpec, ARG_WINDOW, MAX_STEPS, SLOT_WINDOW_VALUES, WINDOW_BYTES};

/// The fields that load through the same `prefix` (argument + leading offsets) and then read
/// at least one more offset.
fn shares_prefix(f: &FieldPath, arg: u8, prefix: &[i32]) -> bool {
    f.arg == arg && usize::from(f.steps) > prefix.len() && f.offsets[..prefix.len()] == *prefix
}

/// Rewrites `spec` to read through a window when at least two fields share a base object and
/// their span fits [`WINDOW_BYTES`]; otherwise returns it unchanged.
pub fn with_window(mut spec: SlotSpec) -> SlotSpec {
    let fields = &spec.fields[..spec.nfields as usize];
    // Candidate bases: every field's own prefix (all loads but the last).
    let best = fields
        .iter()
        .filter(|f| f.steps >= 1)
        .map(|f| (f.arg, f.offsets[..usize::from(f.steps) - 1].to_vec()))
        .map(|(arg, prefix)| {
            let members: Vec<usize> = (0..fields.len())
                .filter(|i| shares_prefix(&fields[*i], arg, &prefix))
                .collect();
            (arg, prefix, members)
        })
        .filter(|(_, prefix, members)| {
            let k = prefix.len();
            let lo = members.iter().map(|i| fields[*i].offsets[k]).min();
            let hi = members.iter().map(|i| end_of(&fields[*i], k)).max();
            members.len() >= 2
                && matches!((lo, hi), (Some(lo), Some(hi)) if (hi - i64::from(lo)) as usize <= WINDOW_BYTES)
        })
        .max_by_key(|(_, prefix, members)| (members.len(), std::cmp::Reverse(prefix.len())));
    let Some((arg, prefix, members)) = best else {
        return spec;
    };
    let k = prefix.len();
    let lo = members
        .iter()
        .map(|i| spec.fields[*i].offsets[k])
        .min()
        .unwrap();
    let hi = members
        .iter()
        .map(|i| end_of(&spec.fields[*i], k))
        .max()
        .unwrap();
    let mut base = FieldPath {
        arg,
        steps: k as u8,
        width: 8,
        _pad: 0,
        offsets: [0; MAX_STEPS],
    };
    base.offsets[..k].copy_from_slice(&prefix);
    spec.window = base;
    spec.window_off = lo;
    spec.window_len = (hi - i64::from(lo)) as u32;
    for i in members {
        let f = spec.fields[i];
        let rest = &f.offsets[k + 1..usize::from(f.steps)];
        let mut w = FieldPath {
            arg: ARG_WINDOW,
            steps: 1 + rest.len() as u8,
            width: f.width,
            _pad: 0,
            offsets: [0; MAX_STEPS],
        };
        w.offsets[0] = f.offsets[k] - lo;
        w.offsets[1..1 + rest.len()].copy_from_slice(rest);
        spec.fields[i] = w;
    }
    spec
}

/// End of the bytes a field reads at level `k` of its path (a pointer if more loads follow).
fn end_of(f: &FieldPath, k: usize) -> i64 {
    let width = if usize::from(f.steps) == k + 1 {
        f.width
    } else {
        8
    };
    i64::from(f.offsets[k]) + i64::from(width)
}

/// Sets [`SLOT_WINDOW_VALUES`] on a slot whose every value is one load in its window, within
/// one 8-byte word of it. The window starts on a word boundary of the object (moved down to
/// one), so a naturally aligned field never straddles two words.
pub fn mark_window_values(spec: SlotSpec) -> SlotSpec {
    let n = (spec.nfields as usize).min(tracer_common::MAX_VALUES);
    let plain = spec.fields[..n]
        .iter()
        .all(|f| f.arg == ARG_WINDOW && f.steps == 1);
    if n == 0 || !plain || spec.window_len == 0 || spec.tail != 0 {
        return spec;
    }
    let mut aligned = spec;
    let shift = spec.window_off.rem_euclid(8);
    aligned.window_off -= shift;
    aligned.window_len += shift as u32;
    for f in &mut aligned.fields[..n] {
        f.offsets[0] += shift;
    }
    let within_words = aligned.fields[..n].iter().all(|f| {
        let width = if f.width == 0 || f.width > 8 {
            8
        } else {
            f.width
        };
        (f.offsets[0] & 7) + i32::from(width) <= 8
    });
    if !within_words || aligned.window_len as usize > WINDOW_BYTES {
        return spec;
    }
    aligned.flags |= SLOT_WINDOW_VALUES;
    aligned
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(arg: u8, offsets: &[i32], width: u8) -> FieldPath {
        let mut p = FieldPath {
            arg,
            steps: offsets.len() as u8,
            width,
            _pad: 0,
            offsets: [0; MAX_STEPS],
        };
        p.offsets[..offsets.len()].copy_from_slice(offsets);
        p
    }

    fn spec(fields: &[FieldPath]) -> SlotSpec {
        let mut s = SlotSpec {
            nfields: fields.len() as u32,
            ..Default::default()
        };
        s.fields[..fields.len()].copy_from_slice(fields);
        s
    }

    #[test]
    fn pimpl_fields_share_one_window() {
        // Buffer* in arg word 13; pimpl at +0x10; fields at +0x0 .. +0x218.
        let s = with_window(spec(&[
            path(13, &[0x10, 0x0], 8),
            path(13, &[0x10, 0x40], 4),
            path(13, &[0x10, 0x8], 8),
            path(13, &[0x10, 0x218], 8),
        ]));
        assert_eq!(s.window, path(13, &[0x10], 8));
        assert_eq!((s.window_off, s.window_len), (0, 0x220));
        assert_eq!(s.fields[1], path(ARG_WINDOW, &[0x40], 4));
        assert_eq!(s.fields[3], path(ARG_WINDOW, &[0x218], 8));
    }

    #[test]
    fn inline_fields_window_starts_at_the_lowest_offset() {
        let s = with_window(spec(&[
            path(13, &[0x10], 8),
            path(13, &[0x50], 4),
            path(13, &[0x10, 0x18], 4), // device -> id: one load after the window
        ]));
        assert_eq!(s.window.steps, 0);
        assert_eq!((s.window_off, s.window_len), (0x10, 0x44));
        assert_eq!(s.fields[0], path(ARG_WINDOW, &[0], 8));
        assert_eq!(s.fields[1], path(ARG_WINDOW, &[0x40], 4));
        assert_eq!(s.fields[2], path(ARG_WINDOW, &[0, 0x18], 4));
    }

    #[test]
    fn no_window_for_lone_or_scattered_fields() {
        let lone = spec(&[path(13, &[0x10], 8), path(12, &[], 8)]);
        assert_eq!(with_window(lone), lone);
        let far = spec(&[path(13, &[0x0], 8), path(13, &[0x10_000], 8)]);
        assert_eq!(with_window(far), far);
    }

    /// One value one load into the window at `off`.
    fn word(off: i32, width: u8) -> FieldPath {
        path(ARG_WINDOW, &[off], width)
    }

    fn windowed(window_off: i32, window_len: u32, fields: &[FieldPath]) -> SlotSpec {
        SlotSpec {
            window_off,
            window_len,
            ..spec(fields)
        }
    }

    #[test]
    fn word_aligned_window_values_are_flagged_unchanged() {
        let s = windowed(0x10, 0x10, &[word(0, 8), word(8, 4), word(0xc, 4)]);
        let m = mark_window_values(s);
        assert_ne!(m.flags & SLOT_WINDOW_VALUES, 0);
        assert_eq!((m.window_off, m.window_len), (0x10, 0x10));
        assert_eq!(m.fields[2].offsets[0], 0xc);
    }

    #[test]
    fn a_window_starting_inside_a_word_moves_down_to_it() {
        // Object offsets 0x14 (4 bytes) and 0x18 (8 bytes).
        let s = windowed(0x14, 0xc, &[word(0, 4), word(4, 8)]);
        let m = mark_window_values(s);
        assert_ne!(m.flags & SLOT_WINDOW_VALUES, 0);
        assert_eq!((m.window_off, m.window_len), (0x10, 0x10));
        assert_eq!((m.fields[0].offsets[0], m.fields[1].offsets[0]), (4, 8));
    }

    #[test]
    fn a_value_across_two_words_keeps_the_general_path() {
        let s = windowed(0, 0x10, &[word(4, 8), word(0, 4)]);
        let m = mark_window_values(s);
        assert_eq!(m.flags & SLOT_WINDOW_VALUES, 0);
        assert_eq!(m.fields[0].offsets[0], 4);
    }

    #[test]
    fn a_value_behind_a_pointer_keeps_the_general_path() {
        let s = windowed(0, 0x10, &[word(0, 8), path(ARG_WINDOW, &[8, 0], 8)]);
        assert_eq!(mark_window_values(s).flags & SLOT_WINDOW_VALUES, 0);
        let tailed = SlotSpec {
            tail: 1,
            ..windowed(0, 8, &[word(0, 8)])
        };
        assert_eq!(mark_window_values(tailed).flags & SLOT_WINDOW_VALUES, 0);
    }
}
