//! The layout of tt-metal's core ranges, which say on which cores a circular buffer sits:
//! a `CoreRangeSet` holds a `std::vector<CoreRange>`, a `CoreRange` two corners of
//! coordinates. Every figure has two sources in the library's own code, and they must agree.
use super::{
    symbols as sym,
    x86::{array, Image},
};
use crate::model::CoreRange;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CoreRangeLayout {
    /// Offset of the ranges vector (begin, end pointers) in a `CoreRangeSet`.
    pub vector: i32,
    /// Bytes per `CoreRange` element.
    pub stride: u32,
    /// Offsets of the start and end corners in a `CoreRange`; x then y, `width` bytes each.
    pub start: i32,
    pub end: i32,
    pub width: u8,
    /// Which function gave each figure, for `doctor`.
    pub provenance: Vec<(String, String)>,
}

impl CoreRangeLayout {
    /// The ranges in a copy of the vector's elements (a partial last element is dropped).
    pub fn ranges(&self, bytes: &[u8]) -> Vec<CoreRange> {
        let w = usize::from(self.width);
        let extent = self.end.max(self.start) as usize + 2 * w;
        let coordinate = |e: &[u8], at: i32| -> u32 {
            let mut v = [0u8; 8];
            v[..w].copy_from_slice(&e[at as usize..at as usize + w]);
            u64::from_le_bytes(v) as u32
        };
        let w = i32::from(self.width);
        bytes
            .chunks(self.stride as usize)
            .filter(|e| e.len() >= extent)
            .map(|e| CoreRange {
                start: (coordinate(e, self.start), coordinate(e, self.start + w)),
                end: (coordinate(e, self.end), coordinate(e, self.end + w)),
            })
            .collect()
    }

    pub fn describe(&self) -> String {
        format!(
            "CoreRangeSet{{ranges vector@+{:#x}, {} B each}} CoreRange{{start +{:#x} end +{:#x}, {} B coordinates}}",
            self.vector, self.stride, self.start, self.end, self.width
        )
    }
}

fn analyse<T>(lib: &dyn Image, mangled: &str, f: impl Fn(&[u8], u64) -> Option<T>) -> Option<T> {
    let s = lib.symbol(mangled)?;
    f(lib.code(s, 512)?, s.address)
}

/// Two sources for one figure: both when both exist (and then they must agree), else the one.
fn agree<T: PartialEq + std::fmt::Debug + Copy>(
    what: &str,
    a: Option<(T, &str)>,
    b: Option<(T, &str)>,
    provenance: &mut Vec<(String, String)>,
) -> Result<T, String> {
    let pretty = super::calibrate::pretty;
    match (a, b) {
        (Some((x, sa)), Some((y, sb))) if x != y => Err(format!(
            "{what}: {} says {x:?}, {} says {y:?}",
            pretty(sa),
            pretty(sb)
        )),
        (Some((x, sa)), Some((_, sb))) => {
            provenance.push((what.into(), format!("{} and {}", pretty(sa), pretty(sb))));
            Ok(x)
        }
        (Some((x, s)), None) | (None, Some((x, s))) => {
            provenance.push((what.into(), format!("{} only", pretty(s))));
            Ok(x)
        }
        (None, None) => Err(format!("{what}: neither source found in the library")),
    }
}

pub fn calibrate(lib: &dyn Image) -> Result<CoreRangeLayout, String> {
    let mut provenance = Vec::new();
    let walk = analyse(lib, sym::CORE_RANGE_SET_NUM_CORES, array::vector_walk);
    let vector = agree(
        "ranges vector",
        analyse(lib, sym::CORE_RANGE_SET_RANGES, array::member_reference)
            .map(|v| (v, sym::CORE_RANGE_SET_RANGES)),
        walk.map(|(v, _)| (v, sym::CORE_RANGE_SET_NUM_CORES)),
        &mut provenance,
    )?;
    let (start, end, width) = agree(
        "corners",
        analyse(lib, sym::CORE_RANGE_SIZE, array::corner_offsets)
            .map(|c| (c, sym::CORE_RANGE_SIZE)),
        analyse(lib, sym::CORE_RANGE_GRID_SIZE, array::corner_offsets)
            .map(|c| (c, sym::CORE_RANGE_GRID_SIZE)),
        &mut provenance,
    )?;
    // An element is its two corners when nothing else is in it: the loop's stride says so.
    let corners_only = (start.min(end) == 0).then(|| end.max(start) as u32 + 2 * u32::from(width));
    let stride = agree(
        "range size",
        walk.map(|(_, s)| (s, sym::CORE_RANGE_SET_NUM_CORES)),
        corners_only.map(|s| (s, sym::CORE_RANGE_SIZE)),
        &mut provenance,
    )?;
    if (end.max(start) + 2 * i32::from(width)) as u32 > stride {
        return Err(format!(
            "a core range of {stride} bytes cannot hold corners at +{start:#x} and +{end:#x}"
        ));
    }
    Ok(CoreRangeLayout {
        vector,
        stride,
        start,
        end,
        width,
        provenance,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_from_element_bytes() {
        let l = CoreRangeLayout {
            vector: 0,
            stride: 32,
            start: 0,
            end: 16,
            width: 8,
            provenance: vec![],
        };
        let mut bytes = Vec::new();
        for v in [0u64, 0, 7, 0, 0, 1, 3, 2] {
            bytes.extend_from_slice(&v.to_le_bytes());
        }
        bytes.extend_from_slice(&[0; 8]); // a cut element: dropped
        assert_eq!(
            l.ranges(&bytes),
            vec![
                CoreRange {
                    start: (0, 0),
                    end: (7, 0)
                },
                CoreRange {
                    start: (0, 1),
                    end: (3, 2)
                }
            ]
        );
    }
}
