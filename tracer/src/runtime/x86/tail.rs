//! Accessors that tail-call each other (`MeshDevice::num_rows() -> MeshDeviceView::num_rows()
//! -> Shape2D::height()`), as one load chain from the first one's `this`.
use iced_x86::Register;

use super::{
    abi,
    chain::Chain,
    engine::{straight_line, Exit, Unknown},
    state::State,
    value::Value,
};

/// Each function but the last must end in a `jmp` with the next one's `this` in `%rdi`
/// (pointer adjustments by `add $imm` are folded into the next load); the last must return a
/// load chain in `%rax`. Conditional branches are assumed not taken (they guard error paths).
pub fn tail_accessor(functions: &[(&[u8], u64)]) -> Option<Chain> {
    let ((last, last_ip), through) = functions.split_last()?;
    let mut this = Value::argument(0);
    for (code, ip) in through {
        match straight_line(code, *ip, 32, State::only(Register::RDI, this), &Unknown)? {
            Exit::Jump(s, _) => this = passed_on(s.get(Register::RDI)?)?,
            Exit::Return(_) | Exit::Call => return None,
        }
    }
    match straight_line(
        last,
        *last_ip,
        32,
        State::only(Register::RDI, this),
        &Unknown,
    )? {
        Exit::Return(s) => s.get(abi::RETURN)?.chain_from(0),
        Exit::Jump(..) | Exit::Call => None,
    }
}

/// A pointer handed to the next function is a whole register, whatever width it was loaded
/// with.
fn passed_on(v: &Value) -> Option<Value> {
    let mut d = v.derived()?.clone();
    d.width = 8;
    Some(Value::Derived(d))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn follows_tail_calls_into_the_final_load() {
        // MeshDevice::num_rows: mov 0x18(%rdi),%rax ; mov 0x70(%rax),%rdi ; jmp <view>
        let a = [
            0x48, 0x8b, 0x47, 0x18, 0x48, 0x8b, 0x78, 0x70, 0xe9, 0, 0, 0, 0,
        ];
        // view: mov (%rdi),%rdi ; cmpb $0,0x370(%rdi) ; je +0 ; add $0x360,%rdi ; jmp <shape>
        let b = [
            0x48, 0x8b, 0x3f, 0x80, 0xbf, 0x70, 0x03, 0, 0, 0, 0x74, 0x00, 0x48, 0x81, 0xc7, 0x60,
            0x03, 0, 0, 0xe9, 0, 0, 0, 0,
        ];
        // Shape2D::width: mov 0x8(%rdi),%rax ; ret
        let c = [0x48, 0x8b, 0x47, 0x08, 0xc3];
        let chain = tail_accessor(&[(&a, 0), (&b, 0x100), (&c, 0x200)]).unwrap();
        assert_eq!(chain.offsets, vec![0x18, 0x70, 0, 0x368]);
        assert_eq!(chain.width, 8);
        // A chain cut short: the view's jump is not a return.
        assert_eq!(tail_accessor(&[(&a, 0), (&b, 0x100)]), None);
        assert_eq!(tail_accessor(&[]), None);
    }
}
