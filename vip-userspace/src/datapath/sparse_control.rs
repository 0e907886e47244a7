//! The sparse table's control entry (`MAP_SPARSE_CONTROL`): its hash and key,
//! chosen when a datapath is created and kept in the pins for its life, and the
//! sweep generation the daemon moves on, which ages the slots.

use std::path::Path;

use aya::maps::{Array, Map};
use vip_common::{
    sparse_multipliers, sparse_tag_swept, SparseControl, MAP_SPARSE_CONTROL, MAP_SPARSE_TAG,
    SPARSE_HASH_FMIX, SPARSE_HASH_MULTIPLY,
};

use super::{maps::Maps, pin, DatapathError};

/// The control entry of a new datapath: the multiply hash, a random key,
/// generation 0.
pub(super) fn new() -> Result<SparseControl, DatapathError> {
    let mut key = [0u8; 8];
    getrandom::getrandom(&mut key).map_err(DatapathError::Random)?;
    Ok(with_key(SPARSE_HASH_MULTIPLY, u64::from_ne_bytes(key)))
}

/// A control entry with the given hash and key, generation 0. An unknown
/// `hash_kind` is refused by [`globals`], before anything is loaded.
pub(super) fn with_key(hash_kind: u32, hash_key: u64) -> SparseControl {
    SparseControl {
        hash_key,
        hash_kind,
        ..SparseControl::default()
    }
}

/// The control entry pinned in `dir`; a datapath of layout 5 or 6 has none
/// yet, and the upgrade creates it zeroed: the unkeyed fmix hash, which is
/// where its slots are.
pub(super) fn pinned(dir: &Path, missing: bool) -> Result<SparseControl, DatapathError> {
    if missing {
        return Ok(SparseControl::default());
    }
    let map: Map = pin::open(dir, MAP_SPARSE_CONTROL)?;
    let array: Array<_, SparseControl> = Array::try_from(map).map_err(map_err)?;
    array.get(&0, 0).map_err(map_err)
}

/// The loader constants of the programs that will read `control`: its hash
/// kind and, for the multiply hash, its multipliers.
pub(super) fn globals(control: &SparseControl) -> Result<(u32, [u64; 4]), DatapathError> {
    match control.hash_kind {
        SPARSE_HASH_FMIX => Ok((SPARSE_HASH_FMIX, [0; 4])),
        SPARSE_HASH_MULTIPLY => Ok((SPARSE_HASH_MULTIPLY, sparse_multipliers(control.hash_key))),
        kind => Err(DatapathError::UnknownSparseHash { kind }),
    }
}

/// The control entry as the datapath reads it.
pub fn read(maps: &Maps) -> Result<SparseControl, DatapathError> {
    let array: Array<_, SparseControl> = maps.typed(MAP_SPARSE_CONTROL)?;
    array.get(&0, 0).map_err(map_err)
}

/// The tag word the datapath stamps slots with now (`MAP_SPARSE_TAG`).
pub fn tag_word(maps: &Maps) -> Result<u32, DatapathError> {
    let array: Array<_, u32> = maps.typed(MAP_SPARSE_TAG)?;
    array.get(&0, 0).map_err(|source| DatapathError::Map {
        map: MAP_SPARSE_TAG,
        source,
    })
}

/// Moves the sweep generation on by one: slots that have seen no packet for
/// `vip_common::SPARSE_IDLE_GENERATIONS` sweeps become reclaimable. The
/// daemon is the only writer; the datapath only reads it.
/// The tag word the datapath stamps slots with moves on to the next sweep.
pub fn sweep(maps: &mut Maps) -> Result<u32, DatapathError> {
    let mut control = read(maps)?;
    control.generation = control.generation.wrapping_add(1);
    write(maps, control)?;
    move_tag(maps, sparse_tag_swept)?;
    Ok(control.generation)
}

/// Moves the tag word (`MAP_SPARSE_TAG`) on with `next`. A new map's 0
/// moves to a word that is not 0, so call this before any program of
/// layout 12 runs on a datapath that lacked the map.
pub(super) fn move_tag(maps: &mut Maps, next: fn(u32) -> u32) -> Result<(), DatapathError> {
    let tag_err = |source| DatapathError::Map {
        map: MAP_SPARSE_TAG,
        source,
    };
    let mut array: Array<_, u32> = maps.typed_mut(MAP_SPARSE_TAG)?;
    let word = next(array.get(&0, 0).map_err(tag_err)?);
    array.set(0, word, 0).map_err(tag_err)
}

/// Writes the control entry (a new datapath's before any program runs).
pub(super) fn write(maps: &mut Maps, control: SparseControl) -> Result<(), DatapathError> {
    let mut array: Array<_, SparseControl> = maps.typed_mut(MAP_SPARSE_CONTROL)?;
    array.set(0, control, 0).map_err(map_err)
}

fn map_err(source: aya::maps::MapError) -> DatapathError {
    DatapathError::Map {
        map: MAP_SPARSE_CONTROL,
        source,
    }
}
