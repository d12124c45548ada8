//! Device and mesh lifecycles: `Device::initialize`, `MeshDevice(Impl)::initialize(_impl)`
//! (opens), `Device::close`, `MeshDevice::close`. None is on the allocation hot path.
use anyhow::Result;
use tracer_common::SlotSpec;

use super::{Hit, Values};
use crate::{
    plan::slot::{device_spec, path, register},
    runtime::disasm::Chain,
};

/// Every lifecycle slot reads the device object first.
pub const DEVICE: usize = 0;
/// Mesh opens: rows, then columns.
pub const ROWS: usize = 1;
pub const COLS: usize = 2;

/// `Device::close()`: the object, its vtable pointer and id (read before it goes).
pub fn close_device_spec(id: &Chain) -> Result<SlotSpec> {
    Ok(device_spec(
        &[register(0, 8)?, path(0, &Chain::field(0, 8))?, path(0, id)?],
        true,
    ))
}

/// `MeshDevice::close()`.
pub fn close_mesh_spec() -> Result<SlotSpec> {
    Ok(device_spec(
        &[register(0, 8)?, path(0, &Chain::field(0, 8))?],
        true,
    ))
}

/// `Device::initialize(...)`: `this`.
pub fn open_device_spec() -> Result<SlotSpec> {
    Ok(device_spec(&[register(0, 8)?], false))
}

/// A mesh open: the `MeshDevice*` in argument `arg`, and its shape where calibrated.
pub fn open_mesh_spec(arg: u8, shape: Option<(&Chain, &Chain)>) -> Result<SlotSpec> {
    let mut fields = vec![register(arg, 8)?];
    if let Some((rows, cols)) = shape {
        fields.push(path(arg, rows)?);
        fields.push(path(arg, cols)?);
    }
    Ok(device_spec(&fields, false))
}

pub fn decode_close(v: &Values) -> Option<Hit> {
    Some(Hit::Close {
        device: v.all().get(DEVICE).copied()?,
    })
}

pub fn decode_open(v: &Values) -> Option<Hit> {
    Some(Hit::Open {
        device: v.all().get(DEVICE).copied()?,
        shape: None,
    })
}

pub fn decode_mesh_open(v: &Values) -> Option<Hit> {
    let shape = v
        .get(ROWS)
        .zip(v.get(COLS))
        .map(|(r, c)| (r as u32, c as u32));
    Some(Hit::Open {
        device: v.all().get(DEVICE).copied()?,
        shape,
    })
}
