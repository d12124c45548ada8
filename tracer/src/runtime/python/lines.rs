//! Line tables: which source line a bytecode offset belongs to, in the two formats of the
//! supported interpreters (`co_linetable`).
use super::LineFormat;

/// The line of the instruction at `offset` (bytes from the first instruction) in a code
/// object whose first line is `first`; `None` where the table gives no line or does not reach
/// that far (never a guess).
pub fn line_at(format: LineFormat, table: &[u8], first: i32, offset: u64) -> Option<u32> {
    let line = match format {
        LineFormat::Pairs => pairs(table, first, offset),
        LineFormat::Locations => locations(table, first, offset / 2),
    }?;
    u32::try_from(line).ok().filter(|l| *l > 0)
}

/// 3.10: each entry is (bytes of bytecode, signed line delta), -128 meaning "no line".
fn pairs(table: &[u8], first: i32, offset: u64) -> Option<i32> {
    let (mut end, mut line) = (0u64, first);
    for pair in table.as_chunks::<2>().0 {
        let start = end;
        end += u64::from(pair[0]);
        let delta = pair[1] as i8;
        let here = if delta == -128 {
            None
        } else {
            line += i32::from(delta);
            Some(line)
        };
        if (start..end).contains(&offset) {
            return here;
        }
    }
    None
}

/// 3.11+: entries of `(first byte: 1, code:4, length-1:3)` and a code-dependent tail;
/// `offset` is in code units.
fn locations(table: &[u8], first: i32, offset: u64) -> Option<i32> {
    let mut at = 0usize;
    let (mut addr, mut line) = (0u64, first);
    let byte = |at: &mut usize| -> Option<u8> {
        let b = *table.get(*at)?;
        *at += 1;
        Some(b)
    };
    let varint = |at: &mut usize| -> Option<u32> {
        let mut b = byte(at)?;
        let mut v = u32::from(b & 63);
        let mut shift = 6;
        while b & 64 != 0 {
            b = byte(at)?;
            v |= u32::from(b & 63).checked_shl(shift)?;
            shift += 6;
        }
        Some(v)
    };
    let svarint = |at: &mut usize| -> Option<i32> {
        let v = varint(at)?;
        Some(if v & 1 != 0 {
            -((v >> 1) as i32)
        } else {
            (v >> 1) as i32
        })
    };
    while at < table.len() {
        let head = byte(&mut at)?;
        if head & 0x80 == 0 {
            return None;
        }
        let code = (head >> 3) & 15;
        let len = u64::from(head & 7) + 1;
        let here = match code {
            15 => None,
            14 => {
                line += svarint(&mut at)?;
                varint(&mut at)?;
                varint(&mut at)?;
                varint(&mut at)?;
                Some(line)
            }
            13 => {
                line += svarint(&mut at)?;
                Some(line)
            }
            10..=12 => {
                line += i32::from(code - 10);
                byte(&mut at)?;
                byte(&mut at)?;
                Some(line)
            }
            _ => {
                byte(&mut at)?;
                Some(line)
            }
        };
        if (addr..addr + len).contains(&offset) {
            return here;
        }
        addr += len;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_accumulate_and_skip_lineless_entries() {
        // 4 bytes at +0 lines, 6 at +2, 2 without a line, 4 at -1.
        let t = [4, 0, 6, 2, 2, 0x80, 4, 0xff];
        assert_eq!(line_at(LineFormat::Pairs, &t, 10, 0), Some(10));
        assert_eq!(line_at(LineFormat::Pairs, &t, 10, 5), Some(12));
        assert_eq!(line_at(LineFormat::Pairs, &t, 10, 10), None);
        assert_eq!(line_at(LineFormat::Pairs, &t, 10, 13), Some(11));
        assert_eq!(line_at(LineFormat::Pairs, &t, 10, 16), None);
    }

    #[test]
    fn locations_read_every_entry_form() {
        let t = [
            0x80 | (13 << 3),
            0x00, // 1 unit, no columns, line +0
            0x80 | (11 << 3) | 1,
            3,
            9, // 2 units, one-line form, +1
            0x80 | (14 << 3),
            0x04,
            0x00,
            0x01,
            0x02,                 // 1 unit, long form, +2
            0x80 | (15 << 3) | 2, // 3 units, no location
            0x80 | (5 << 3),
            0x11, // 1 unit, short form: same line
            0x80 | (13 << 3),
            0x03, // 1 unit, -1
        ];
        let at = |unit: u64| line_at(LineFormat::Locations, &t, 40, unit * 2);
        assert_eq!(at(0), Some(40));
        assert_eq!(at(1), Some(41));
        assert_eq!(at(2), Some(41));
        assert_eq!(at(3), Some(43));
        assert_eq!(at(4), None);
        assert_eq!(at(7), Some(43));
        assert_eq!(at(8), Some(42));
        assert_eq!(at(9), None);
    }

    #[test]
    fn a_cut_table_is_no_line() {
        assert_eq!(
            line_at(LineFormat::Locations, &[0x80 | (14 << 3)], 1, 0),
            None
        );
        assert_eq!(line_at(LineFormat::Locations, &[0x05], 1, 0), None);
    }
}
