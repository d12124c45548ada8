//! A field as the probes read it: loads from an argument.

/// Loads from an argument: `offsets[..n-1]` are pointer hops, the last one reads `width` bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Chain {
    pub offsets: Vec<i32>,
    pub width: u8,
}

impl Chain {
    pub fn field(offset: i32, width: u8) -> Self {
        Self {
            offsets: vec![offset],
            width,
        }
    }

    pub fn describe(&self) -> String {
        let hops: Vec<_> = self.offsets.iter().map(|o| format!("+{o:#x}")).collect();
        format!("{}:{}", hops.join("->"), self.width)
    }
}
