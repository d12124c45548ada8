//! A sharded buffer's pages per shard, from `Buffer::num_dev_pages() const`: when the buffer
//! has shard parameters (a presence flag compared with 1), it divides the shard's height and
//! width by the page's, `(shard_h / page_h) * (shard_w / page_w)` pages per shard; the
//! allocator reserves that many aligned pages in every bank.
use std::ops::ControlFlow::{Break, Continue};

use iced_x86::{Mnemonic, Register};

use super::{
    chain::Chain,
    engine::{run, Event, Unknown},
    state::State,
};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShardShape {
    /// The `TensorMemoryLayout` the function checks first (sharded or not): a second source
    /// for it where `Buffer::buffer_layout()` is inlined away.
    pub layout: Chain,
    /// The shard parameters' presence flag (1 byte, 1 = present).
    pub present: Chain,
    /// Shard height and width (elements), page height and width: 4-byte loads.
    pub shard: [Chain; 2],
    pub page: [Chain; 2],
}

pub fn shard_shape(code: &[u8], ip: u64) -> Option<ShardShape> {
    let mut layout = None;
    let mut present = None;
    let mut divisions: Vec<(Chain, Chain)> = Vec::new();
    let mut state = State::with_arguments([0]);
    run(code, ip, 64, &mut state, &Unknown, |i, event, s| {
        match event {
            Event::Load { address, width: 4 } if layout.is_none() => {
                layout = address.load(4).and_then(|v| v.chain_from(0));
            }
            // `cmpb $1, flag`: the shard parameters' presence.
            Event::Read { address, width: 1 }
                if present.is_none() && i.mnemonic() == Mnemonic::Cmp && i.immediate(1) == 1 =>
            {
                present = address.load(1).and_then(|v| v.chain_from(0));
            }
            Event::Divide { divisor: Some(d) } if present.is_some() => {
                let n = s.get(Register::RAX).and_then(|n| n.chain_from(0));
                if let (Some(n), Some(d)) = (n, d.chain_from(0)) {
                    divisions.push((n, d));
                }
            }
            Event::Return => return Break(()),
            _ => {}
        }
        if divisions.len() == 2 {
            Break(())
        } else {
            Continue(())
        }
    });
    let [(sh, ph), (sw, pw)]: [(Chain, Chain); 2] = divisions.try_into().ok()?;
    if [&sh, &ph, &sw, &pw].iter().any(|c| c.width != 4) {
        return None;
    }
    Some(ShardShape {
        layout: layout?,
        present: present?,
        shard: [sh, sw],
        page: [ph, pw],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_per_shard_of_the_pimpl_era() {
        // mov 0x10(%rdi),%rdi ; mov 0x14(%rdi),%eax ; cmpb $0x1,0x88(%rdi) ; mov 0x78(%rdi),%esi ; mov 0x68(%rdi),%eax
        // ; xor %edx,%edx ; div %esi ; mov %eax,%ecx ; mov 0x7c(%rdi),%esi ; mov 0x6c(%rdi),%eax
        // ; xor %edx,%edx ; div %esi ; ret
        let code = [
            0x48, 0x8b, 0x7f, 0x10, 0x8b, 0x47, 0x14, 0x80, 0xbf, 0x88, 0x00, 0x00, 0x00, 0x01,
            0x8b, 0x77, 0x78, 0x8b, 0x47, 0x68, 0x31, 0xd2, 0xf7, 0xf6, 0x89, 0xc1, 0x8b, 0x77,
            0x7c, 0x8b, 0x47, 0x6c, 0x31, 0xd2, 0xf7, 0xf6, 0xc3,
        ];
        let s = shard_shape(&code, 0).unwrap();
        assert_eq!(
            s.layout,
            Chain {
                offsets: vec![0x10, 0x14],
                width: 4
            }
        );
        assert_eq!(s.present.offsets, vec![0x10, 0x88]);
        assert_eq!(s.shard[0].offsets, vec![0x10, 0x68]);
        assert_eq!(s.shard[1].offsets, vec![0x10, 0x6c]);
        assert_eq!(s.page[0].offsets, vec![0x10, 0x78]);
        assert_eq!(s.page[1].offsets, vec![0x10, 0x7c]);
    }
}
