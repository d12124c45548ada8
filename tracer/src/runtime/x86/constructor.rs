//! Constructors that store their arguments into `this`, and a `lock xadd` of a global counter
//! for unique ids: field offsets where the accessors were inlined away.
use std::ops::ControlFlow::{Break, Continue};

use super::{
    engine::{run, Event, Unknown},
    state::State,
    value::Value,
};

/// A value a constructor stores into `this`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stored {
    /// The n-th argument register (1 = first parameter after `this`).
    Arg(usize),
    /// The result of a `lock xadd` (a fetch-and-increment of a global id counter).
    Counter,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Store {
    pub value: Stored,
    pub offset: i32,
    pub width: u8,
}

/// Stores into `this` (RDI on entry) of argument registers and counters, in program order,
/// following a linear sweep of the first `max` instructions up to the first `ret`.
pub fn constructor_stores(code: &[u8], ip: u64, max: usize) -> Vec<Store> {
    let mut out = Vec::new();
    let mut state = State::with_arguments(0..6);
    run(code, ip, max, &mut state, &Unknown, |_, event, _| {
        match event {
            Event::Return => return Break(()),
            Event::Store {
                address,
                value,
                width,
            } => {
                if let (Some(offset), Some(value)) = (member_of_this(address), stored(value)) {
                    out.push(Store {
                        value,
                        offset,
                        width,
                    });
                }
            }
            _ => {}
        }
        Continue(())
    });
    out
}

/// A member of `this` that receives what a direct call returned: `(callee, offset, width)`, in
/// program order, in a linear sweep of the first `max` instructions (e.g. the address
/// `Buffer::allocate_impl` gets from the allocator).
pub fn result_stores(code: &[u8], ip: u64, max: usize) -> Vec<(u64, i32, u8)> {
    let mut out = Vec::new();
    let mut state = State::with_arguments([0]);
    run(code, ip, max, &mut state, &Unknown, |_, event, _| {
        if let Event::Store {
            address,
            value: Some(Value::Returned(callee)),
            width,
        } = event
        {
            if let Some(offset) = member_of_this(address) {
                out.push((*callee, offset, width));
            }
        }
        Continue::<()>(())
    });
    out
}

/// Stores into `this` of a value loaded through argument `arg` (a field of an object the
/// constructor is handed): `(loads from the argument, offset, width)`, in program order.
pub fn copied_stores(code: &[u8], ip: u64, max: usize, arg: usize) -> Vec<(Vec<i32>, i32, u8)> {
    let mut out = Vec::new();
    let mut state = State::with_arguments(0..6);
    run(code, ip, max, &mut state, &Unknown, |_, event, _| {
        match event {
            Event::Return => return Break(()),
            Event::Store {
                address,
                value: Some(Value::Derived(d)),
                width,
            } if d.root == arg && d.addend == 0 && !d.loads.is_empty() => {
                if let Some(offset) = member_of_this(address) {
                    out.push((d.loads.clone(), offset, width));
                }
            }
            _ => {}
        }
        Continue(())
    });
    out
}

fn member_of_this(address: &Value) -> Option<i32> {
    let d = address.derived()?;
    (d.root == 0 && d.loads.is_empty()).then_some(d.addend as i32)
}

fn stored(value: Option<&Value>) -> Option<Stored> {
    match value? {
        Value::Fetched => Some(Stored::Counter),
        Value::Derived(d) if d.root > 0 && d.loads.is_empty() && d.addend == 0 => {
            Some(Stored::Arg(d.root))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_constructor_stores_through_register_copies() {
        // mov %rsi,%rbp ; mov %rdi,%rbx ; mov %rbp,0x10(%rbx) ; mov %rdx,0x18(%rdi) ;
        // mov %r8d,0x20(%rdi) ; mov $1,%ecx ; lock xadd %rcx,(%rax) ; mov %rcx,0x220(%rbx) ; ret
        let code = [
            0x48, 0x89, 0xf5, 0x48, 0x89, 0xfb, 0x48, 0x89, 0x6b, 0x10, 0x48, 0x89, 0x57, 0x18,
            0x44, 0x89, 0x47, 0x20, 0xb9, 0x01, 0, 0, 0, 0xf0, 0x48, 0x0f, 0xc1, 0x08, 0x48, 0x89,
            0x8b, 0x20, 0x02, 0, 0, 0xc3,
        ];
        let s = constructor_stores(&code, 0, 100);
        assert_eq!(
            s,
            vec![
                Store {
                    value: Stored::Arg(1),
                    offset: 0x10,
                    width: 8
                },
                Store {
                    value: Stored::Arg(2),
                    offset: 0x18,
                    width: 8
                },
                Store {
                    value: Stored::Arg(4),
                    offset: 0x20,
                    width: 4
                },
                Store {
                    value: Stored::Counter,
                    offset: 0x220,
                    width: 8
                },
            ]
        );
    }

    /// `this` kept in %rbx, spilled to the frame while %rbx does other work, reloaded before
    /// the unique id is stored (ttnn 0.78.0's `Buffer` constructor). `passed` is the frame
    /// slot whose address the call in between gets.
    fn spilled_this(passed: u8) -> Vec<u8> {
        vec![
            0x53, // push %rbx
            0x48, 0x89, 0xfb, // mov %rdi,%rbx
            0x48, 0x83, 0xec, 0x30, // sub $0x30,%rsp
            0x48, 0x89, 0x5c, 0x24, 0x28, // mov %rbx,0x28(%rsp)
            0x31, 0xdb, // xor %ebx,%ebx
            0x48, 0x8d, 0x7c, 0x24, passed, // lea passed(%rsp),%rdi
            0xe8, 0, 0, 0, 0, // call +0
            0x48, 0x8b, 0x5c, 0x24, 0x28, // mov 0x28(%rsp),%rbx
            0xb9, 0x01, 0, 0, 0, // mov $1,%ecx
            0xf0, 0x48, 0x0f, 0xc1, 0x08, // lock xadd %rcx,(%rax)
            0x48, 0x89, 0x8b, 0x20, 0x02, 0, 0, // mov %rcx,0x220(%rbx)
            0x48, 0x83, 0xc4, 0x30, // add $0x30,%rsp
            0x5b, // pop %rbx
            0xc3, // ret
        ]
    }

    #[test]
    fn follows_this_through_a_frame_slot() {
        // The call gets the object at +0x0: the spill at +0x28 survives it.
        assert_eq!(
            constructor_stores(&spilled_this(0), 0, 100),
            vec![Store {
                value: Stored::Counter,
                offset: 0x220,
                width: 8
            }]
        );
        // The call gets the spill slot itself: what it reloads is unknown.
        assert!(constructor_stores(&spilled_this(0x28), 0, 100).is_empty());
    }

    #[test]
    fn finds_the_member_a_call_result_goes_to() {
        // mov %rdi,%rbx ; call +0 ; mov %rax,0x50(%rbx) ; call +0 ; mov %eax,0x8(%rax) ; ret
        let code = [
            0x48, 0x89, 0xfb, 0xe8, 0, 0, 0, 0, 0x48, 0x89, 0x43, 0x50, 0xe8, 0, 0, 0, 0, 0x89,
            0x40, 0x08, 0xc3,
        ];
        assert_eq!(result_stores(&code, 0, 100), vec![(0x8, 0x50, 8)]);
    }

    #[test]
    fn finds_a_field_copied_from_an_argument() {
        // mov (%r9),%rax ; mov 0x158(%rax),%eax ; mov %eax,0x14(%rdi) ; ret
        let code = [
            0x49, 0x8b, 0x01, 0x8b, 0x80, 0x58, 0x01, 0, 0, 0x89, 0x47, 0x14, 0xc3,
        ];
        assert_eq!(
            copied_stores(&code, 0, 100, 5),
            vec![(vec![0, 0x158], 0x14, 4)]
        );
        assert!(copied_stores(&code, 0, 100, 4).is_empty());
    }

    #[test]
    fn a_call_clobbers_the_argument_registers() {
        // call +0 ; mov %rsi,0x10(%rdi) ; ret
        let code = [0xe8, 0, 0, 0, 0, 0x48, 0x89, 0x77, 0x10, 0xc3];
        assert!(constructor_stores(&code, 0, 100).is_empty());
    }
}
