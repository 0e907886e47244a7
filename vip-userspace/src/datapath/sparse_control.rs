//! The sparse table's control entry (`MAP_SPARSE_CONTROL`): its hash key, drawn
//! when a datapath is created and kept in the pins for its life, and the sweep
//! generation the daemon moves on, which ages the slots.

use aya::maps::Array;
use vip_common::{SparseControl, MAP_SPARSE_CONTROL};

use super::{maps::Maps, DatapathError};

/// The control entry of a new datapath: a random key, generation 0.
pub(super) fn create(maps: &mut Maps) -> Result<(), DatapathError> {
    let mut key = [0u8; 8];
    getrandom::getrandom(&mut key).map_err(DatapathError::Random)?;
    write(
        maps,
        SparseControl {
            hash_key: u64::from_ne_bytes(key),
            ..SparseControl::default()
        },
    )
}

/// The control entry as the datapath reads it.
pub fn read(maps: &Maps) -> Result<SparseControl, DatapathError> {
    let map = maps.map(MAP_SPARSE_CONTROL).ok_or(DatapathError::Missing {
        kind: "map",
        name: MAP_SPARSE_CONTROL,
    })?;
    let array: Array<_, SparseControl> = Array::try_from(map).map_err(map_err)?;
    array.get(&0, 0).map_err(map_err)
}

/// Moves the sweep generation on by one: slots that have seen no packet for
/// `vip_common::SPARSE_IDLE_GENERATIONS` sweeps become reclaimable. The
/// daemon is the only writer; the datapath only reads it.
pub fn sweep(maps: &mut Maps) -> Result<u32, DatapathError> {
    let mut control = read(maps)?;
    control.generation = control.generation.wrapping_add(1);
    write(maps, control)?;
    Ok(control.generation)
}

fn write(maps: &mut Maps, control: SparseControl) -> Result<(), DatapathError> {
    let mut array: Array<_, SparseControl> = maps.typed_mut(MAP_SPARSE_CONTROL)?;
    array.set(0, control, 0).map_err(map_err)
}

fn map_err(source: aya::maps::MapError) -> DatapathError {
    DatapathError::Map {
        map: MAP_SPARSE_CONTROL,
        source,
    }
}
