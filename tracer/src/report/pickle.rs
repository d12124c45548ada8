//! A small streaming pickle writer (protocol 2 opcodes only): what PyTorch's memory tools read,
//! both Python's `pickle` and the JavaScript unpickler of PyTorch's memory visualizer, which
//! knows a fixed subset of opcodes (this writer uses nothing outside it).
//!
//! Containers are written as they are walked (`begin_*`, items, `end`), so an export of a long
//! recording never holds the whole object tree; lists are flushed every [`BATCH`] items, as
//! Python's own pickler does, because the JavaScript unpickler spreads one batch into a
//! function call's arguments.
use std::io::{self, Write};

/// Items per APPENDS / SETITEMS.
const BATCH: usize = 1000;

const PROTO: u8 = 0x80;
const STOP: u8 = b'.';
const NONE: u8 = b'N';
const NEWTRUE: u8 = 0x88;
const NEWFALSE: u8 = 0x89;
const BININT1: u8 = b'K';
const BININT: u8 = b'J';
const LONG1: u8 = 0x8a;
const BINFLOAT: u8 = b'G';
const BINUNICODE: u8 = b'X';
const EMPTY_LIST: u8 = b']';
const EMPTY_DICT: u8 = b'}';
const MARK: u8 = b'(';
const APPENDS: u8 = b'e';
const SETITEMS: u8 = b'u';
const LONG_BINPUT: u8 = b'r';
const LONG_BINGET: u8 = b'j';

pub struct Pickler<W: Write> {
    w: W,
    /// Open containers: is it a dict, and items written since its last MARK (a dict counts
    /// keys and values).
    open: Vec<(bool, usize)>,
    next_memo: u32,
}

impl<W: Write> Pickler<W> {
    pub fn new(mut w: W) -> io::Result<Self> {
        w.write_all(&[PROTO, 2])?;
        Ok(Self {
            w,
            open: Vec::new(),
            next_memo: 0,
        })
    }

    /// Ends the pickle; the one value written at the top level is what `pickle.load` returns.
    pub fn finish(mut self) -> io::Result<W> {
        assert!(self.open.is_empty(), "pickle: a container is still open");
        self.w.write_all(&[STOP])?;
        Ok(self.w)
    }

    /// Called before every value: a full batch in the enclosing container is flushed.
    fn item(&mut self) -> io::Result<()> {
        if let Some((dict, n)) = self.open.last_mut() {
            let per_batch = if *dict { 2 * BATCH } else { BATCH };
            if *n == per_batch {
                let op = if *dict { SETITEMS } else { APPENDS };
                self.w.write_all(&[op, MARK])?;
                *n = 0;
            }
            *n += 1;
        }
        Ok(())
    }

    pub fn none(&mut self) -> io::Result<()> {
        self.item()?;
        self.w.write_all(&[NONE])
    }

    pub fn bool(&mut self, v: bool) -> io::Result<()> {
        self.item()?;
        self.w.write_all(&[if v { NEWTRUE } else { NEWFALSE }])
    }

    pub fn int(&mut self, v: i64) -> io::Result<()> {
        self.item()?;
        if (0..256).contains(&v) {
            self.w.write_all(&[BININT1, v as u8])
        } else if let Ok(small) = i32::try_from(v) {
            self.w.write_all(&[BININT])?;
            self.w.write_all(&small.to_le_bytes())
        } else {
            // Two's complement, little-endian, in as few bytes as keep the sign.
            let bytes = v.to_le_bytes();
            let mut n = 8;
            while n > 1 {
                let (top, next) = (bytes[n - 1], bytes[n - 2]);
                let redundant = (top == 0 && next & 0x80 == 0) || (top == 0xff && next & 0x80 != 0);
                if !redundant {
                    break;
                }
                n -= 1;
            }
            self.w.write_all(&[LONG1, n as u8])?;
            self.w.write_all(&bytes[..n])
        }
    }

    /// An unsigned count or address; PyTorch's values fit in an i64.
    pub fn uint(&mut self, v: u64) -> io::Result<()> {
        self.int(i64::try_from(v).unwrap_or(i64::MAX))
    }

    pub fn float(&mut self, v: f64) -> io::Result<()> {
        self.item()?;
        self.w.write_all(&[BINFLOAT])?;
        self.w.write_all(&v.to_be_bytes())
    }

    pub fn str(&mut self, s: &str) -> io::Result<()> {
        self.item()?;
        self.w.write_all(&[BINUNICODE])?;
        self.w.write_all(&(s.len() as u32).to_le_bytes())?;
        self.w.write_all(s.as_bytes())
    }

    pub fn begin_list(&mut self) -> io::Result<()> {
        self.item()?;
        self.w.write_all(&[EMPTY_LIST, MARK])?;
        self.open.push((false, 0));
        Ok(())
    }

    pub fn begin_dict(&mut self) -> io::Result<()> {
        self.item()?;
        self.w.write_all(&[EMPTY_DICT, MARK])?;
        self.open.push((true, 0));
        Ok(())
    }

    /// Closes the innermost list or dict.
    pub fn end(&mut self) -> io::Result<()> {
        let (dict, n) = self.open.pop().expect("pickle: end without begin");
        assert!(!dict || n % 2 == 0, "pickle: a dict key without its value");
        self.w.write_all(&[if dict { SETITEMS } else { APPENDS }])
    }

    /// A `key: value` entry whose value is written by `value`.
    pub fn key(&mut self, k: &str) -> io::Result<()> {
        debug_assert!(self.open.last().is_some_and(|(d, n)| *d && n % 2 == 0));
        self.str(k)
    }

    /// Remembers the value just written (the innermost closed container or last scalar), so
    /// that [`Self::get`] can refer to it again: one copy in the file, one shared object when
    /// read.
    pub fn put(&mut self) -> io::Result<u32> {
        let id = self.next_memo;
        self.next_memo += 1;
        self.w.write_all(&[LONG_BINPUT])?;
        self.w.write_all(&id.to_le_bytes())?;
        Ok(id)
    }

    pub fn get(&mut self, id: u32) -> io::Result<()> {
        self.item()?;
        self.w.write_all(&[LONG_BINGET])?;
        self.w.write_all(&id.to_le_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Bytes checked against CPython 3.12: `pickle.loads(bytes)` of each gives the value in the
    /// comment.
    #[test]
    fn scalars_and_containers_encode_as_python_reads_them() {
        let mut p = Pickler::new(Vec::new()).unwrap();
        // {'a': [1, -1, 300, 2**40, -2**40, None, True, 'é'], 'b': 0.5}
        p.begin_dict().unwrap();
        p.key("a").unwrap();
        p.begin_list().unwrap();
        for v in [1, -1, 300, 1 << 40, -(1 << 40)] {
            p.int(v).unwrap();
        }
        p.none().unwrap();
        p.bool(true).unwrap();
        p.str("é").unwrap();
        p.end().unwrap();
        p.key("b").unwrap();
        p.float(0.5).unwrap();
        p.end().unwrap();
        let bytes = p.finish().unwrap();
        let expect: &[u8] = b"\x80\x02}(X\x01\x00\x00\x00a](K\x01J\xff\xff\xff\xffJ\x2c\x01\x00\x00\
            \x8a\x06\x00\x00\x00\x00\x00\x01\x8a\x06\x00\x00\x00\x00\x00\xffN\x88X\x02\x00\x00\x00\xc3\xa9e\
            X\x01\x00\x00\x00bG\x3f\xe0\x00\x00\x00\x00\x00\x00u.";
        assert_eq!(bytes, expect);
    }

    #[test]
    fn long_lists_are_flushed_in_batches_and_memo_refers_back() {
        let mut p = Pickler::new(Vec::new()).unwrap();
        p.begin_list().unwrap();
        p.begin_list().unwrap();
        p.end().unwrap();
        let id = p.put().unwrap();
        for _ in 0..BATCH {
            p.get(id).unwrap();
        }
        p.end().unwrap();
        let bytes = p.finish().unwrap();
        // One APPENDS + MARK after the first 1000 items, the closing APPENDS, STOP.
        let appends = bytes.windows(2).filter(|w| w == &[APPENDS, MARK]).count();
        assert_eq!(appends, 1);
        assert_eq!(&bytes[bytes.len() - 2..], &[APPENDS, STOP]);
        assert_eq!(bytes.len(), 2 + 2 + 2 + 1 + 5 + BATCH * 5 + 2 + 1 + 1);
    }
}
