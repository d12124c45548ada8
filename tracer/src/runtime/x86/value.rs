//! What the engine knows of a register.
use super::chain::Chain;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Value {
    /// Computed from an entry argument: see [`Derived`].
    Derived(Derived),
    /// A known number: an immediate, an entry of a table in the library.
    Const(u64),
    /// A link-time address in the library (a `%rip`-relative operand): constant data, a
    /// string. Kept apart from numbers: an address plus an argument is a table indexed by the
    /// argument's value, not a field of an object it points to.
    Address(u64),
    /// What a `lock xadd` fetched: a global counter before its increment (a unique id).
    Fetched,
    /// The stack pointer at the function's entry plus this offset: a slot of its own frame.
    Frame(i64),
    /// What the function called at this address returned (`%rax` after a direct call).
    Returned(u64),
}

/// `addend` plus the value reached from entry argument `root` (0 = `this`) by following
/// `loads` (each a pointer hop at that offset; the last reads `width` bytes, 8 without loads).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Derived {
    pub root: usize,
    pub loads: Vec<i32>,
    pub addend: i64,
    pub width: u8,
}

impl Value {
    /// Argument `root` as the function received it.
    pub fn argument(root: usize) -> Self {
        Value::Derived(Derived {
            root,
            loads: vec![],
            addend: 0,
            width: 8,
        })
    }

    pub fn derived(&self) -> Option<&Derived> {
        match self {
            Value::Derived(d) => Some(d),
            _ => None,
        }
    }

    /// `self + by`.
    pub fn offset(&self, by: i64) -> Option<Value> {
        match self {
            Value::Derived(d) => Some(Value::Derived(Derived {
                addend: d.addend.wrapping_add(by),
                ..d.clone()
            })),
            Value::Const(c) => Some(Value::Const(c.wrapping_add(by as u64))),
            Value::Address(a) => Some(Value::Address(a.wrapping_add(by as u64))),
            Value::Frame(at) => Some(Value::Frame(at.wrapping_add(by))),
            Value::Fetched | Value::Returned(_) => None,
        }
    }

    /// `self + other`, where at most one of them is not a number.
    pub fn plus(&self, other: &Value) -> Option<Value> {
        match (self, other) {
            (Value::Const(c), v) | (v, Value::Const(c)) => v.offset(*c as i64),
            _ => None,
        }
    }

    /// `self * scale` (an index register of an address).
    pub fn scaled(&self, scale: u32) -> Option<Value> {
        match self {
            Value::Const(c) => Some(Value::Const(c.wrapping_mul(u64::from(scale)))),
            v if scale == 1 => Some(v.clone()),
            _ => None,
        }
    }

    /// What reading `width` bytes at this address gives, where it follows from the address
    /// alone: one more load hop.
    pub fn load(&self, width: u8) -> Option<Value> {
        let d = self.derived()?;
        let mut loads = d.loads.clone();
        loads.push(d.addend as i32);
        Some(Value::Derived(Derived {
            root: d.root,
            loads,
            addend: 0,
            width,
        }))
    }

    /// The loads from argument `root` that give this value, if it is exactly such a load.
    pub fn chain_from(&self, root: usize) -> Option<Chain> {
        let d = self.derived()?;
        (d.root == root && d.addend == 0 && !d.loads.is_empty()).then(|| Chain {
            offsets: d.loads.clone(),
            width: d.width,
        })
    }
}
