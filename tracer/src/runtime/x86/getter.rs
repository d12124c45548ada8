//! Getters that return a `std::vector` member by value: where the source vector sits.
use std::ops::ControlFlow::{Break, Continue};

use iced_x86::Register;

use super::{
    engine::{run, Event, Unknown},
    state::State,
    value::Value,
};

/// Where a getter that returns a `std::vector` by value (`this` in RSI, the result in RDI)
/// finds its source vector: `(loads, offset)` = follow `loads` from `this`, then the vector
/// object (begin, end) sits at `+offset`. Follows one delegation to `callee` when the getter
/// passes a loaded pointer on as the callee's `this`.
pub fn vector_getter(
    code: &[u8],
    ip: u64,
    callee: Option<(&[u8], u64)>,
) -> Option<(Vec<i32>, i64)> {
    getter_from(code, ip, Value::argument(1), callee)
}

/// Where a method (`this` in RDI) that walks a `std::vector` member finds it (e.g.
/// `MeshDevice::get_device(int) const` searching the devices): `(loads, offset)` as for
/// [`vector_getter`].
pub fn vector_scan(code: &[u8], ip: u64) -> Option<(Vec<i32>, i64)> {
    scan_from(code, ip, Register::RDI, Value::argument(0), None)
}

fn getter_from(
    code: &[u8],
    ip: u64,
    this: Value,
    callee: Option<(&[u8], u64)>,
) -> Option<(Vec<i32>, i64)> {
    scan_from(code, ip, Register::RSI, this, callee)
}

fn scan_from(
    code: &[u8],
    ip: u64,
    reg: Register,
    this: Value,
    callee: Option<(&[u8], u64)>,
) -> Option<(Vec<i32>, i64)> {
    // (object loads, offset) of every load from a known object so far.
    let mut loads: Vec<(Vec<i32>, i64)> = Vec::new();
    let mut state = State::only(reg, this);
    run(
        code,
        ip,
        64,
        &mut state,
        &Unknown,
        |_, event, s| match event {
            Event::Return => Break(None),
            Event::Call { .. } => {
                match s.get(Register::RSI).and_then(Value::derived) {
                    // A vector passed by reference to a helper (e.g. a filter/copy).
                    Some(d) if d.addend != 0 => Break(Some((d.loads.clone(), d.addend))),
                    Some(d) => Break(callee.and_then(|(code, ip)| {
                        getter_from(code, ip, Value::Derived(d.clone()), None)
                    })),
                    None => Continue(()),
                }
            }
            Event::Load { address, .. } => {
                let Some(d) = address.derived() else {
                    return Continue(());
                };
                // Two loads 8 bytes apart from one object: a vector's begin and end.
                if let Some((h, at)) = loads
                    .iter()
                    .find(|(h, at)| *h == d.loads && at.abs_diff(d.addend) == 8)
                {
                    return Break(Some((h.clone(), (*at).min(d.addend))));
                }
                loads.push((d.loads.clone(), d.addend));
                Continue(())
            }
            _ => Continue(()),
        },
    )
    .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_cached_vector_in_pimpl() {
        // mov %rdi,%rbx ; mov 0x18(%rsi),%r12 ; mov 0x78(%r12),%r15 ; mov 0x80(%r12),%r14
        let code = [
            0x48, 0x89, 0xfb, 0x4c, 0x8b, 0x66, 0x18, 0x4d, 0x8b, 0x7c, 0x24, 0x78, 0x4d, 0x8b,
            0xb4, 0x24, 0x80, 0, 0, 0,
        ];
        assert_eq!(vector_getter(&code, 0, None), Some((vec![0x18], 0x78)));
    }

    #[test]
    fn follows_delegation_to_view() {
        // mov 0x18(%rsi),%r14 ; mov 0x58(%r14),%rsi ; call <callee>
        let outer = [
            0x4c, 0x8b, 0x76, 0x18, 0x49, 0x8b, 0x76, 0x58, 0xe8, 0, 0, 0, 0,
        ];
        // mov $0x178,%eax ; add (%rsi),%rax ; mov %rax,%rsi ; call <helper>
        let inner = [
            0xb8, 0x78, 0x01, 0, 0, 0x48, 0x03, 0x06, 0x48, 0x89, 0xc6, 0xe8, 0, 0, 0, 0,
        ];
        assert_eq!(
            vector_getter(&outer, 0, Some((&inner, 0x1000))),
            Some((vec![0x18, 0x58, 0], 0x178))
        );
        // Without the callee's code, the delegation is a dead end.
        assert_eq!(vector_getter(&outer, 0, None), None);
    }

    #[test]
    fn finds_the_vector_a_method_walks() {
        // mov 0x18(%rdi),%rax ; mov %esi,0x14(%rsp) ; mov 0x78(%rax),%r15 ; mov 0x80(%rax),%r12
        let code = [
            0x48, 0x8b, 0x47, 0x18, 0x89, 0x74, 0x24, 0x14, 0x4c, 0x8b, 0x78, 0x78, 0x4c, 0x8b,
            0xa0, 0x80, 0, 0, 0,
        ];
        assert_eq!(vector_scan(&code, 0), Some((vec![0x18], 0x78)));
    }
}
